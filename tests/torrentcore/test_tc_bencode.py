"""Unit and fuzz tests of torrentcore.bencode: canonical form, bounds, round trips."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentcore.bencode import (
    MAX_INT_DIGITS,
    DecodeError,
    EncodeError,
    decode,
    encode,
    validate,
)

VALID = [
    (b"i0e", 0),
    (b"i42e", 42),
    (b"i-7e", -7),
    (b"i123456789012345678901234567890e", 123456789012345678901234567890),
    (b"0:", b""),
    (b"4:spam", b"spam"),
    (b"3:\x00\xff\x80", b"\x00\xff\x80"),  # bytes stay bytes, no UTF-8 guessing
    (b"le", []),
    (b"de", {}),
    (b"l4:spami3ee", [b"spam", 3]),
    (b"d3:cow3:moo4:spam4:eggse", {b"cow": b"moo", b"spam": b"eggs"}),
    (b"d0:i1e1:ai2e2:aai3e1:bi4ee", {b"": 1, b"a": 2, b"aa": 3, b"b": 4}),
    (b"d1:ald1:bleeee", {b"a": [{b"b": []}]}),
    (b"d1:\x00i0e1:\xffi1ee", {b"\x00": 0, b"\xff": 1}),  # keys sort as raw bytes
]


@pytest.mark.parametrize("data,value", VALID)
def test_valid_whole(data, value):
    assert decode(data) == value
    assert encode(value) == data


@pytest.mark.parametrize("data,value", VALID)
def test_valid_every_truncation_fails(data, value):
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode(data[:cut])


@pytest.mark.parametrize("data,value", VALID)
@pytest.mark.parametrize("tail", [b"e", b"i1e", b"x", b"\x00", b"0:"])
def test_valid_with_trailing_data_fails(data, value, tail):
    with pytest.raises(DecodeError, match="trailing"):
        decode(data + tail)


INVALID = [
    (b"", "empty"),
    (b"i01e", "non-canonical"),
    (b"i-0e", "non-canonical"),
    (b"i-01e", "non-canonical"),
    (b"i00e", "non-canonical"),
    (b"ie", "malformed integer"),
    (b"i-e", "malformed integer"),
    (b"i+1e", "malformed integer"),
    (b"i 1e", "malformed integer"),
    (b"i1_000e", "malformed integer"),
    (b"i1.5e", "malformed integer"),
    (b"i" + b"1" * 40 + b"e", "too long"),
    (b"01:a", "leading zero"),
    (b"-1:a", "unexpected byte"),
    (b"5:abc", "runs past the end"),
    (b"99999999999999:x", "runs past the end"),
    (b"1a:x", "malformed string length"),
    (b"d1:bi1e1:ai2ee", "unsorted"),
    (b"d1:ai1e1:ai2ee", "duplicate"),
    (b"d2:aai1e1:ai2ee", "unsorted"),
    (b"di1ei2ee", "not a byte string"),
    (b"dlei1ee", "not a byte string"),
    (b"d1:ae", "without a value"),
    (b"e", "unexpected byte"),
    (b"x", "unexpected byte"),
    (b"l", "truncated"),
    (b"lee", "trailing"),
]


@pytest.mark.parametrize("data,message", INVALID)
def test_invalid(data, message):
    with pytest.raises(DecodeError, match=message):
        decode(data)


def test_decode_error_is_value_error():
    assert issubclass(DecodeError, ValueError)


def test_non_bytes_input():
    with pytest.raises(DecodeError, match="must be bytes"):
        decode("i1e")
    assert decode(bytearray(b"i1e")) == 1
    assert decode(memoryview(b"i1e")) == 1


def test_depth_bound():
    ok = b"l" * 64 + b"e" * 64
    decode(ok)
    with pytest.raises(DecodeError, match="deeper than 64"):
        decode(b"l" * 65 + b"e" * 65)
    with pytest.raises(DecodeError, match="deeper than 3"):
        decode(b"lllleeee", max_depth=3)
    # Very deep hostile input fails fast without RecursionError.
    with pytest.raises(DecodeError, match="deeper"):
        decode(b"l" * 1_000_000)
    with pytest.raises(DecodeError, match="deeper"):
        decode(b"d1:a" * 100_000)


def test_size_bound():
    decode(b"4:spam", max_size=6)
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode(b"4:spam", max_size=5)


def test_item_bound():
    data = b"l" + b"le" * 100 + b"e"
    decode(data, max_items=101)
    with pytest.raises(DecodeError, match="more than 100 values"):
        decode(data, max_items=100)


def test_encode_types():
    assert encode("ünï") == b"5:" + "ünï".encode()
    assert encode((1, b"a")) == b"li1e1:ae"
    assert encode({"b": 1, b"a": 2}) == b"d1:ai2e1:bi1ee"
    assert encode(bytearray(b"xy")) == b"2:xy"


@pytest.mark.parametrize("value,message", [
    (True, "bool"),
    (1.5, "float"),
    (None, "NoneType"),
    ({1: 2}, "dict key"),
    ({"a": 1, b"a": 2}, "duplicate"),
    ([[[[1]]]], "deeper"),
    (10**32, "more than 32 digits"),
    (-(10**32), "more than 32 digits"),
])
def test_encode_errors(value, message):
    with pytest.raises(EncodeError, match=message):
        encode(value, max_depth=3)


# ------------------------------------------------------------------ the integer bound

def test_33_digit_integer_is_refused_both_ways():
    """The example that once got through: the decoder's search window for the closing
    "e" is a sign plus MAX_INT_DIGITS digits, so a positive 33-digit literal fitted it."""
    literal = b"i" + b"1" * 33 + b"e"
    with pytest.raises(DecodeError, match="more than 32 digits"):
        decode(literal)
    with pytest.raises(EncodeError, match="more than 32 digits"):
        encode(int(b"1" * 33))


@pytest.mark.parametrize("body", [
    b"9" * MAX_INT_DIGITS, b"-" + b"9" * MAX_INT_DIGITS, b"1" + b"0" * (MAX_INT_DIGITS - 1),
])
def test_longest_integers_round_trip(body):
    literal = b"i" + body + b"e"
    assert encode(decode(literal)) == literal


@pytest.mark.parametrize("digits", [MAX_INT_DIGITS + 1, MAX_INT_DIGITS + 2, 200])
@pytest.mark.parametrize("sign", [b"", b"-"])
def test_longer_integers_refused(digits, sign):
    with pytest.raises(DecodeError, match="too long"):
        decode(b"i" + sign + b"7" * digits + b"e")
    with pytest.raises(EncodeError):
        encode(int(sign + b"7" * digits))


@given(st.integers(min_value=1, max_value=MAX_INT_DIGITS + 3), st.booleans(),
       st.integers(min_value=0, max_value=9))
def test_decoder_and_encoder_share_the_integer_bound(digits, negative, lead):
    """An integer literal is decoded exactly when the encoder would write it."""
    text = str(max(lead, 1)) + "3" * (digits - 1)
    value = -int(text) if negative else int(text)
    literal = b"i" + str(value).encode() + b"e"
    try:
        encoded = encode(value)
    except EncodeError:
        with pytest.raises(DecodeError):
            decode(literal)
    else:
        assert encoded == literal
        assert decode(literal) == value


# ------------------------------------------------------------------ property tests

bencodable = st.recursive(
    st.integers(min_value=-(10**MAX_INT_DIGITS) + 1, max_value=10**MAX_INT_DIGITS - 1)
    | st.binary(max_size=40),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.binary(max_size=8), children, max_size=5),
    max_leaves=30,
)


@given(bencodable)
def test_round_trip(value):
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data


@given(st.binary(max_size=200))
@settings(max_examples=2000)
def test_fuzz_decode_raises_only_decode_error(data):
    try:
        value = decode(data, max_size=150, max_depth=8)
    except DecodeError:
        return
    # Whatever is accepted is canonical: it re-encodes to the very same bytes.
    assert len(data) <= 150
    assert encode(value) == data


@given(bencodable, st.integers(min_value=0, max_value=10_000), st.binary(min_size=1, max_size=3))
@settings(max_examples=1000)
def test_fuzz_mutated_valid_input(value, where, patch):
    data = encode(value)
    where %= len(data)
    mutated = data[:where] + patch + data[where + len(patch):]
    try:
        result = decode(mutated)
    except DecodeError:
        return
    assert encode(result) == mutated


def test_validate_accepts_exactly_what_decode_accepts():
    validate(b"d1:ai1ee")
    with pytest.raises(DecodeError):
        validate(b"d1:ai1e")
