"""The delta codec: round trips, the compiled encoder against the reference; git
compatibility is covered by index-pack tests."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitfs_p2p.pack import delta
from gitfs_p2p.pack.delta import (
    MAX_COPY,
    DeltaError,
    apply_delta,
    apply_delta_py,
    create_delta,
    create_delta_py,
    delta_sizes,
)


@st.composite
def base_and_target(draw):
    base = draw(st.binary(max_size=4000))
    target = bytearray(base)
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(target)))
        if draw(st.booleans()):
            target[at:at] = draw(st.binary(max_size=60))
        else:
            del target[at : at + draw(st.integers(0, 80))]
    return base, bytes(target)


@settings(max_examples=300, deadline=None)
@given(base_and_target())
def test_round_trip(pair):
    base, target = pair
    delta = create_delta(base, target)
    assert apply_delta(base, delta) == target
    assert delta_sizes(delta)[:2] == (len(base), len(target))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000), st.binary(max_size=2000))
def test_round_trip_unrelated(base, target):
    assert apply_delta(base, create_delta(base, target)) == target


def test_the_compiled_encoder_is_built():
    """setup builds gitfs_p2p/pack/_speedups.c; without it packs are the same, only slower,
    and every comparison below would compare the reference with itself."""
    assert delta.COMPILED and delta._compiled_apply is not None


def _decoded(base, data, max_size):
    try:
        return apply_delta_py(base, data, max_size=max_size)
    except DeltaError:
        return None


@settings(max_examples=500, deadline=None)
@given(base_and_target(), st.binary(max_size=12), st.integers(0, 40), st.sampled_from([None, 0, 100, 1 << 20]))
def test_compiled_decoder_accepts_exactly_what_the_reference_accepts(pair, noise, at, max_size):
    """The compiled decoder gives the reference's bytes, or None (then the reference runs and
    says why) on every delta the reference refuses: valid ones, damaged ones, random bytes."""
    base, target = pair
    good = create_delta(base, target)
    for data in (good, good[:at] + noise + good[at:], good[: len(good) - at], noise):
        compiled = delta._compiled_apply(base, data, -1 if max_size is None else max_size)
        assert compiled == _decoded(base, data, max_size)


@settings(max_examples=500, deadline=None)
@given(base_and_target())
def test_compiled_encoder_gives_the_references_bytes(pair):
    base, target = pair
    assert create_delta(base, target) == create_delta_py(base, target)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=300), st.integers(1, 40))
def test_compiled_encoder_on_repetitive_input(unit, other, times):
    """Repeated blocks: more than CANDIDATES offsets per block, ties between candidates."""
    base = unit * times + other
    target = other + unit * (times + 1)
    assert create_delta(base, target) == create_delta_py(base, target)


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 32, 33, MAX_COPY, MAX_COPY + 1, 3 * MAX_COPY + 5])
def test_compiled_encoder_at_the_edges(size):
    """Sizes around a block and around the longest copy; prefix-only, suffix-only, disjoint."""
    base = bytes(i * 7 % 251 for i in range(size))
    for target in (base, base + b"tail", b"head" + base, base[: size // 2] + b"mid" + base[size // 2 :], b"x" * size):
        assert create_delta(base, target) == create_delta_py(base, target)


def test_is_deterministic_and_small_for_small_edits():
    base = b"".join(b"line %d of a text file\n" % i for i in range(5000))
    target = base.replace(b"line 2500 of", b"LINE 2500 OF")
    delta = create_delta(base, target)
    assert delta == create_delta(base, target)
    assert len(delta) < 40
    assert apply_delta(base, delta) == target


def test_long_copies_are_split():
    base = bytes(range(256)) * 1024  # 256 KiB
    delta = create_delta(base, base)
    assert apply_delta(base, delta) == base
    assert len(delta) > 4 * 3, "at least four copies of at most MAX_COPY bytes"
    assert len(base) // MAX_COPY == 4


@pytest.mark.parametrize(
    "delta, message",
    [
        (b"", "truncated"),
        (b"\x05", "truncated"),
        (b"\x05\x05\x00", "reserved"),
        (b"\x05\x05\x91\x04\x05", "past the end"),
        (b"\x05\x05\x03ab", "truncated"),
        (b"\x05\x02\x03abc", "more bytes"),
        (b"\x05\x09\x02ab", "produced 2 bytes"),
        (b"\x09\x05\x05abcde", "expects a base of 9"),
        (b"\x80", "truncated"),
    ],
)
def test_malformed_deltas_raise_delta_error(delta, message):
    with pytest.raises(DeltaError, match=message):
        apply_delta(b"hello", delta)


def test_declared_result_size_is_bounded_before_inflating():
    huge = b"\x05" + b"\xff\xff\xff\xff\x0f" + b"\x90\x00"
    with pytest.raises(DeltaError, match="exceeds the bound"):
        apply_delta(b"hello", huge, max_size=1 << 20)
