"""BEP 44 mutable items and BEP 46 values (torrentcore.mutable): the spec's own test vectors,
our keys, and items that must be refused."""

import hashlib
import os

import pytest

from torrentcore.mutable import (ItemError, MutableItem, SigningKey, info_hash_of, parse_public_key, signed_bytes,
                                 target, value_for, verify)

# BEP 44, "test vectors": a mutable item "Hello World!", seq 1, without and with salt "foobar"
BEP44_KEY = bytes.fromhex("77ff84905a91936367c01360803104f92432fcd904a43511876df5cdf3e7e548")
BEP44_VALUE = b"12:Hello World!"
BEP44_SIG = bytes.fromhex("305ac8aeb6c9c151fa120f120ea2cfb923564e11552d06a5d856091e5e853cff"
                          "1260d3f39e4999684aa92eb73ffd136e6f4f3ecbfda0ce53a1608ecd7ae21f01")
BEP44_SIG_SALT = bytes.fromhex("6834284b6b24c3204eb2fea824d82f88883a3d95e8b4a21b8c0ded553d17d17d"
                               "df9a8a7104b1258f30bed3787e6cb896fca78c58f8e03b5f18f14951a87d9a08")


def test_signed_bytes_and_targets_are_bep44s():
    assert signed_bytes(b"", 1, BEP44_VALUE) == b"3:seqi1e1:v12:Hello World!"
    assert signed_bytes(b"foobar", 1, BEP44_VALUE) == b"4:salt6:foobar3:seqi1e1:v12:Hello World!"
    assert target(BEP44_KEY, b"").hex() == "4a533d47ec9c7d95b1ad75f576cffc641853b750"
    assert target(BEP44_KEY, b"foobar").hex() == "411eba73b6f087ca51a3795d9c8c938d365e32c1"


def test_the_spec_vectors_verify():
    verify(MutableItem(BEP44_KEY, b"", 1, BEP44_VALUE, BEP44_SIG))
    verify(MutableItem(BEP44_KEY, b"foobar", 1, BEP44_VALUE, BEP44_SIG_SALT))


@pytest.mark.parametrize("change", ["salt", "seq", "value", "signature", "key"])
def test_any_changed_part_is_a_bad_signature(change):
    item = dict(public_key=BEP44_KEY, salt=b"foobar", seq=1, value=BEP44_VALUE, signature=BEP44_SIG_SALT)
    if change == "salt":
        item["salt"] = b"foobaz"
    elif change == "seq":
        item["seq"] = 2  # a replay with a higher number needs a new signature
    elif change == "value":
        item["value"] = b"12:Hello World?"
    elif change == "signature":
        item["signature"] = BEP44_SIG_SALT[:-1] + bytes([BEP44_SIG_SALT[-1] ^ 1])
    else:
        item["public_key"] = SigningKey(bytes(32)).public
    with pytest.raises(ItemError, match="bad signature"):
        verify(MutableItem(**item))


def test_our_key_signs_what_verify_accepts_and_keeps_its_seed_out_of_repr():
    seed = os.urandom(32)
    key = SigningKey(seed)
    value = value_for(bytes(range(20)))
    item = MutableItem(key.public, b"repo", 7, value, key.sign(b"repo", 7, value))
    verify(item)
    assert seed.hex() not in repr(key) and key.public.hex() in repr(key)


def test_expanded_key_is_libtorrents_form():
    """Clamped SHA-512 of the seed: the scalar half is what the public key is made from."""
    seed = bytes(range(32))
    expanded = SigningKey(seed).expanded
    h = hashlib.sha512(seed).digest()
    assert len(expanded) == 64 and expanded[32:] == h[32:]
    assert expanded[0] & 7 == 0 and expanded[31] & 0xC0 == 0x40


def test_the_value_names_an_info_hash_plain_or_inside_a_string():
    ih = bytes(range(20))
    assert value_for(ih) == b"d2:ih20:" + ih + b"e"
    assert info_hash_of(value_for(ih)) == ih  # a BEP 46 dict as v
    assert info_hash_of(b"29:" + value_for(ih)) == ih  # our items: the dict inside v's string
    for bad in (b"12:Hello World!", b"d2:ih3:abce", b"i5e", b"not bencode"):
        with pytest.raises(ItemError):
            info_hash_of(bad)


def test_sizes_bep44_allows():
    key = SigningKey(bytes(32))
    with pytest.raises(ItemError, match="salt"):
        verify(MutableItem(key.public, b"x" * 65, 1, b"1:a", bytes(64)))
    with pytest.raises(ItemError, match="value"):
        verify(MutableItem(key.public, b"", 1, b"1001:" + b"a" * 1001, bytes(64)))


def test_public_keys_are_64_hex_digits():
    assert parse_public_key(BEP44_KEY.hex()) == BEP44_KEY
    assert parse_public_key(BEP44_KEY.hex().upper()) == BEP44_KEY
    for bad in ("", "77ff", BEP44_KEY.hex() + "00", "g" * 64):
        with pytest.raises(ItemError):
            parse_public_key(bad)
