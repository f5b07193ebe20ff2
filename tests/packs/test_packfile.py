"""The pack writer and the bounded reader, fed bytes (no repository)."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitfs_p2p.pack.packfile import (
    OBJ_BLOB,
    OBJ_COMMIT,
    OBJ_REF_DELTA,
    Limits,
    PackEntry,
    PackError,
    entry_header,
    object_id,
    read_pack,
    write_pack,
)


def _blob_pack(*blobs: bytes) -> bytes:
    return write_pack([PackEntry(OBJ_BLOB, b) for b in blobs])


def test_round_trip_and_git_accepts_it(tmp_path):
    blobs = [b"", b"hello\n", os.urandom(70000), b"x" * 100000]
    data = _blob_pack(*blobs)
    entries = list(read_pack(data))
    assert [e.data for e in entries] == blobs
    assert all(e.type_num == OBJ_BLOB for e in entries)
    repo = tmp_path / "r.git"
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    subprocess.run(["git", "index-pack", "--stdin"], cwd=repo, input=data, check=True, capture_output=True)
    for b in blobs:
        oid = object_id(OBJ_BLOB, b).hex()
        out = subprocess.run(["git", "cat-file", "blob", oid], cwd=repo, capture_output=True, check=True).stdout
        assert out == b


def test_object_id_matches_git():
    out = subprocess.run(["git", "hash-object", "--stdin"], input=b"abc", capture_output=True, check=True)
    assert object_id(OBJ_BLOB, b"abc").hex() == out.stdout.decode().strip()


def _retrailer(body: bytes) -> bytes:
    return body + hashlib.sha1(body).digest()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: b"", "too short"),
        (lambda p: p[:20], "too short"),
        (lambda p: b"KCAP" + p[4:], "SHA-1|signature"),
        (lambda p: _retrailer(b"KCAP" + p[4:-20]), "signature"),
        (lambda p: _retrailer(p[:4] + struct.pack(">L", 9) + p[8:-20]), "version"),
        (lambda p: p[:-1] + bytes([p[-1] ^ 1]), "SHA-1"),
        (lambda p: _retrailer(p[:8] + struct.pack(">L", 5) + p[12:-20]), "ends before"),
        (lambda p: _retrailer(p[:8] + struct.pack(">L", 1) + p[12:-20]), "unexpected bytes"),
        (lambda p: _retrailer(p[:-25] + p[-24:-20]), "truncated|bad compressed|inflates"),
        (lambda p: _retrailer(p[:-20] + b"junk"), "unexpected bytes"),
        (lambda p: os.urandom(200), "SHA-1|signature"),
    ],
)
def test_malformed_packs_are_rejected(make, message):
    good = _blob_pack(b"hello world\n", b"second object " * 20)
    with pytest.raises(PackError, match=message):
        list(read_pack(make(good)))


def test_bounds_reject_before_inflating():
    # Declares 2 GiB for one object: rejected from the header alone.
    header = b"PACK" + struct.pack(">LL", 2, 1)
    size = 2 << 30
    entry = bytearray([(OBJ_BLOB << 4) | (size & 0x0F) | 0x80])
    size >>= 4
    while size:
        entry.append((size & 0x7F) | (0x80 if size >> 7 else 0))
        size >>= 7
    data = _retrailer(header + bytes(entry) + zlib.compress(b"x"))
    with pytest.raises(PackError, match="more than the bound"):
        list(read_pack(data))
    with pytest.raises(PackError, match="objects, more than"):
        list(read_pack(_blob_pack(b"a", b"b", b"c"), Limits(max_objects=2)))


def test_zip_bomb_is_cut_at_its_declared_size():
    # An object that declares 10 bytes but inflates to 10 MB.
    header = b"PACK" + struct.pack(">LL", 2, 1)
    data = _retrailer(header + bytes([(OBJ_BLOB << 4) | 10]) + zlib.compress(b"\0" * (10 << 20)))
    with pytest.raises(PackError, match="inflates past"):
        list(read_pack(data))


def test_ref_delta_entries_carry_their_base():
    base = object_id(OBJ_BLOB, b"base")
    data = write_pack([PackEntry(OBJ_COMMIT, b"tree x\n"), PackEntry(OBJ_REF_DELTA, b"\x04\x04\x04base", base)])
    entries = list(read_pack(data))
    assert entries[1].type_num == OBJ_REF_DELTA and entries[1].base_id == base


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_only_ever_raise_pack_error(junk):
    good = _blob_pack(b"hello")
    for data in (junk, good[:12] + junk, _retrailer(good[:12] + junk)):
        try:
            list(read_pack(data, Limits(max_objects=1000, max_object_size=1 << 20)))
        except PackError:
            pass


@st.composite
def damaged_packs(draw):
    """Packs of a few blobs and deltas (REF and OFS), then bytes cut, spliced or flipped; the
    trailer mostly made to match again, so that the entry loop itself meets the damage."""
    from gitfs_p2p.pack.packfile import OBJ_OFS_DELTA, compress

    entries = []
    for i in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["blob", "ref", "ofs", "empty"]))
        body = draw(st.binary(max_size=40))
        if kind == "ref":
            entries.append(PackEntry(OBJ_REF_DELTA, body, base_id=draw(st.binary(min_size=20, max_size=20))))
        elif kind == "ofs" and i:
            entries.append(("ofs", body, draw(st.integers(0, 200))))
        else:
            entries.append(PackEntry(OBJ_BLOB, b"" if kind == "empty" else body))
    parts, offsets = [], []
    pos = 12
    for e in entries:
        offsets.append(pos)
        if isinstance(e, tuple):
            _, body, back = e
            rel = back
            raw = entry_header(OBJ_OFS_DELTA, len(body))
            enc = [rel & 0x7F]
            rel >>= 7
            while rel:
                rel -= 1
                enc.append(0x80 | (rel & 0x7F))
                rel >>= 7
            raw += bytes(reversed(enc)) + compress(body)
        else:
            raw = entry_header(e.type_num, len(e.data)) + (e.base_id or b"") + compress(e.data)
        parts.append(raw)
        pos += len(raw)
    body = b"PACK" + (2).to_bytes(4, "big") + len(entries).to_bytes(4, "big") + b"".join(parts)
    if draw(st.booleans()):
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(max_size=3)) + body[at + draw(st.integers(0, 3)) :]
    return body + (hashlib.sha1(body).digest() if draw(st.integers(0, 9)) else bytes(20))


def _entries_or_error(read, data, limits):
    try:
        return list(read(data, limits))
    except PackError as exc:
        return ("refused", str(exc))


@settings(max_examples=2000, deadline=None)
@given(damaged_packs(), st.sampled_from([Limits(), Limits(max_objects=2, max_object_size=30, max_total_inflated=60)]))
def test_compiled_entry_reader_agrees_with_the_reference(data, limits):
    """read_pack_all (the loop compiled: _speedups.pack_entries) reads what read_pack reads and
    refuses what it refuses, with its message."""
    from gitfs_p2p.pack import packfile

    assert packfile._compiled_entries is not None, "setup builds the compiled reader"
    assert _entries_or_error(packfile.read_pack_all, data, limits) == _entries_or_error(packfile.read_pack, data, limits)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=3000) | st.builds(lambda n, b: b * n, st.integers(0, 5000), st.binary(min_size=1, max_size=3)),
                max_size=12),
       st.integers(1, 4))
def test_whole_objects_compressed_beside_the_checks_are_zlibs(contents, per_pack):
    """The objects a batch writes whole, compressed in a thread as packs are planned
    (bundle.WholeCompressor, _speedups.compress_all) and put back into the plan, come out as
    zlib.compress(c, 1), in the plan's order, and the plan reads and writes the same."""
    from gitfs_p2p.pack import bundle

    assert bundle._compiled_compress_all is not None, "setup builds the compiled twin"
    assert bundle._compiled_compress_all(contents, 1) == [zlib.compress(c, 1) for c in contents]
    entries = [(bytes([i]) * 20, (OBJ_BLOB, c) if i % 2 else memoryview(entry_header(OBJ_BLOB, 1) + zlib.compress(b"v")))
               for i, c in enumerate(contents)]
    reference = bundle.write_plan(dict(entries).items())
    for job_bytes in (bundle.COMPRESS_JOB_BYTES, 1000):  # one job at the end; jobs as the plan grows
        plan: dict = {}
        zipper = bundle.WholeCompressor()
        saved, bundle.COMPRESS_JOB_BYTES = bundle.COMPRESS_JOB_BYTES, job_bytes
        try:
            for i in range(0, len(entries), per_pack):
                plan.update(entries[i : i + per_pack])
                zipper.add(entries[i : i + per_pack])
                zipper.settle(plan)
        finally:
            bundle.COMPRESS_JOB_BYTES = saved
        zipper.settle(plan, wait=True)
        assert list(plan) == [oid for oid, _ in entries]
        assert [what for what in plan.values() if isinstance(what, tuple)] == [
            (OBJ_BLOB, len(what[1]), zlib.compress(what[1], 1)) for _, what in entries if isinstance(what, tuple)]
        for oid, what in entries:
            assert bundle.read_planned(plan, oid, lambda _: None) == (what if isinstance(what, tuple) else (OBJ_BLOB, b"v"))
        assert bundle.write_plan(plan.items()) == reference
