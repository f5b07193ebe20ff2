"""Git pack files: the pinned writer for commit packs and a bounded reader.

Pure: no repository, no file system.  The writer fixes every byte-level
choice of the pack format (version 2, see docs/pack-format.md); the reader parses any
version-2 pack entry by entry with bounds on counts and sizes, so hostile
input ends in PackError instead of exhausting memory.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass
from typing import Iterator, NamedTuple

__all__ = [
    "OBJ_COMMIT",
    "OBJ_TREE",
    "OBJ_BLOB",
    "OBJ_TAG",
    "OBJ_OFS_DELTA",
    "OBJ_REF_DELTA",
    "TYPE_NAMES",
    "ZLIB_LEVEL",
    "PackError",
    "PackEntry",
    "Limits",
    "compress",
    "entry_header",
    "object_id",
    "write_pack",
    "read_pack",
    "read_pack_all",
    "RawEntry",
]

OBJ_COMMIT = 1
OBJ_TREE = 2
OBJ_BLOB = 3
OBJ_TAG = 4
OBJ_OFS_DELTA = 6
OBJ_REF_DELTA = 7
TYPE_NAMES = {OBJ_COMMIT: b"commit", OBJ_TREE: b"tree", OBJ_BLOB: b"blob", OBJ_TAG: b"tag"}

#: zlib parameters of the pack format (versions 1 and 2): level 9, deflate, 32 KiB window
#: (wbits 15, zlib header), memLevel 8, default strategy, one full flush.
ZLIB_LEVEL = 9
_ZLIB_ARGS = (ZLIB_LEVEL, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY)

_HEADER = struct.Struct(">4sLL")


class PackError(ValueError):
    """A pack that is malformed or exceeds a bound."""


def compress(data: bytes) -> bytes:
    c = zlib.compressobj(*_ZLIB_ARGS)
    return c.compress(data) + c.flush()


def object_id(type_num: int, data: bytes) -> bytes:
    """The binary SHA-1 git gives an object of this type and content."""
    h = hashlib.sha1(TYPE_NAMES[type_num])
    h.update(b" %d\0" % len(data))
    h.update(data)
    return h.digest()


def entry_header(type_num: int, size: int) -> bytes:
    """Git's type-and-size header of one pack entry."""
    byte = (type_num << 4) | (size & 0x0F)
    size >>= 4
    out = bytearray()
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


@dataclass(frozen=True)
class PackEntry:
    """One object as stored: whole (type 1-4) or a REF_DELTA against base_id."""

    type_num: int
    data: bytes  # the object's content, or the delta for OBJ_REF_DELTA
    base_id: bytes | None = None  # binary id of the delta base
    compressed: bytes | None = None  # compress(data), when already computed


def write_pack(entries: list[PackEntry]) -> bytes:
    """Serialise entries, in the given order, as a version-2 pack."""
    parts = [_HEADER.pack(b"PACK", 2, len(entries))]
    for e in entries:
        parts.append(entry_header(e.type_num, len(e.data)))
        if e.type_num == OBJ_REF_DELTA:
            assert e.base_id is not None and len(e.base_id) == 20
            parts.append(e.base_id)
        parts.append(e.compressed if e.compressed is not None else compress(e.data))
    body = b"".join(parts)
    return body + hashlib.sha1(body).digest()


@dataclass(frozen=True)
class Limits:
    """Bounds a pack must respect before any of it is trusted."""

    max_objects: int = 1_000_000
    max_object_size: int = 512 << 20  # declared or inflated size of one object
    max_total_inflated: int = 4 << 30


class RawEntry(NamedTuple):
    """An entry as read: offset in the pack, type, base reference and payload (a tuple, so
    that the compiled reader makes them as cheaply as tree entries)."""

    offset: int
    type_num: int
    data: bytes  # inflated content, or the inflated delta
    base_id: bytes | None = None  # REF_DELTA
    base_offset: int | None = None  # OFS_DELTA: absolute offset of the base


def _inflate(buf: memoryview, pos: int, size: int, what: str) -> tuple[bytes, int]:
    d = zlib.decompressobj()
    out = []
    got = 0
    chunk = 65536
    while not d.eof:
        if pos >= len(buf):
            raise PackError(f"{what}: compressed data is truncated")
        piece = buf[pos : pos + chunk]
        try:
            data = d.decompress(piece, size + 1 - got)
        except zlib.error as exc:
            raise PackError(f"{what}: bad compressed data ({exc})") from None
        got += len(data)
        out.append(data)
        if got > size:
            raise PackError(f"{what}: inflates past its declared size of {size} bytes")
        consumed = len(piece) - len(d.unused_data) - len(d.unconsumed_tail)
        pos += consumed
        if consumed == 0 and not d.eof:
            raise PackError(f"{what}: compressed data does not end")
    if got != size:
        raise PackError(f"{what}: inflates to {got} bytes, declared {size}")
    return b"".join(out), pos


def read_pack_all(data: bytes, limits: Limits = Limits()) -> list[RawEntry]:
    """list(read_pack(data, limits)); the loop compiled when built (_speedups.pack_entries),
    the reference reading whatever the compiled one does not take (and raising its errors)."""
    if _compiled_entries is not None and len(data) >= _HEADER.size + 20:
        if hashlib.sha1(memoryview(data)[:-20]).digest() == data[-20:]:
            out = _compiled_entries(data, limits.max_objects, limits.max_object_size, limits.max_total_inflated,
                                    RawEntry)
            if out is not None:
                return out
    return list(read_pack(data, limits))


def read_pack(data: bytes, limits: Limits = Limits()) -> Iterator[RawEntry]:
    """Yield the entries of a pack, checking structure, bounds and trailer.

    The trailer is checked before the first entry is yielded, so a caller
    that stops at the first PackError has looked at nothing unverified.
    """
    if len(data) < _HEADER.size + 20:
        raise PackError(f"too short to be a pack ({len(data)} bytes)")
    magic, version, count = _HEADER.unpack_from(data)
    if magic != b"PACK":
        raise PackError("missing PACK signature")
    if version not in (2, 3):
        raise PackError(f"unsupported pack version {version}")
    if count > limits.max_objects:
        raise PackError(f"declares {count} objects, more than the bound of {limits.max_objects}")
    if hashlib.sha1(memoryview(data)[:-20]).digest() != data[-20:]:
        raise PackError("trailing SHA-1 does not match the contents")
    buf = memoryview(data)[:-20]
    pos = _HEADER.size
    total = 0
    for index in range(count):
        what = f"object {index} at offset {pos}"
        start = pos
        if pos >= len(buf):
            raise PackError(f"{what}: pack ends before its {count} objects")
        byte = buf[pos]
        pos += 1
        type_num = (byte >> 4) & 7
        size = byte & 0x0F
        shift = 4
        while byte & 0x80:
            if pos >= len(buf) or shift > 60:
                raise PackError(f"{what}: bad entry header")
            byte = buf[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
        if size > limits.max_object_size:
            raise PackError(f"{what}: declares {size} bytes, more than the bound of {limits.max_object_size}")
        base_id = base_offset = None
        if type_num == OBJ_REF_DELTA:
            if pos + 20 > len(buf):
                raise PackError(f"{what}: truncated delta base id")
            base_id = bytes(buf[pos : pos + 20])
            pos += 20
        elif type_num == OBJ_OFS_DELTA:
            byte = buf[pos] if pos < len(buf) else None
            if byte is None:
                raise PackError(f"{what}: truncated delta offset")
            pos += 1
            rel = byte & 0x7F
            while byte & 0x80:
                if pos >= len(buf) or rel > (1 << 56):
                    raise PackError(f"{what}: bad delta offset")
                byte = buf[pos]
                pos += 1
                rel = ((rel + 1) << 7) | (byte & 0x7F)
            base_offset = start - rel
            if base_offset < _HEADER.size or rel == 0:
                raise PackError(f"{what}: delta base offset outside the pack")
        elif type_num not in TYPE_NAMES:
            raise PackError(f"{what}: unknown object type {type_num}")
        total += size
        if total > limits.max_total_inflated:
            raise PackError(f"inflated size passes the bound of {limits.max_total_inflated} bytes")
        content, pos = _inflate(buf, pos, size, what)
        yield RawEntry(start, type_num, content, base_id, base_offset)
    if pos != len(buf):
        raise PackError(f"{len(buf) - pos} unexpected bytes after the last object")


try:
    from ._speedups import pack_entries as _compiled_entries
except ImportError:  # not built (a source tree without `pip install`): the reference
    _compiled_entries = None
