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
