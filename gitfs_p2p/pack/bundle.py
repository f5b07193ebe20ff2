"""The pack the receiver writes: many verified packs' objects as one self-contained pack.

Pure: verified packs in, (pack bytes, index rows, pack checksum) out; the .idx v2 is
written from the rows by dulwich (git/receiving.py), the repository side.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

from .packfile import OBJ_REF_DELTA, entry_header
from .verify import VerifiedPack

__all__ = ["build_pack"]


def build_pack(packs: list[VerifiedPack]) -> tuple[bytes, list[tuple[bytes, int, int]], bytes]:
    """One self-contained pack (and its index rows) holding the objects of verified packs.

    The received entries are copied verbatim, in the packs' order (parents first),
    an object already written left out, except that a delta whose base is not
    written before it (a base in the repository, or later in the batch) is written
    whole instead, as `git index-pack --fix-thin` completes a thin pack.  A kept
    delta's base is then always earlier in the pack, so chains lead back to whole
    objects and never form a cycle: two packs may each hold a delta against an
    object the other holds as a delta (A against B in one, B against A in the other).
    A pack with OFS deltas (whose entries depend on their neighbours' offsets) is
    copied whole, after the bases it took from outside itself, written whole.
    Returns (pack, rows sorted by id: (id, offset, crc32), pack checksum).
    """
    parts: list[bytes] = [b""]
    rows: list[tuple[bytes, int, int]] = []  # id, offset, crc32
    have: set[bytes] = set()
    pos = 12

    def add(oid: bytes, raw) -> None:
        nonlocal pos
        parts.append(raw)
        rows.append((oid, pos, zlib.crc32(raw)))
        have.add(oid)
        pos += len(raw)

    def whole(oid: bytes, type_num: int, content: bytes) -> None:
        add(oid, entry_header(type_num, len(content)) + zlib.compress(content, 1))

    for vp in packs:
        view = memoryview(vp.data)
        if vp.has_ofs_delta:
            for oid, (type_num, content) in vp.external.items():
                if oid not in have:
                    whole(oid, type_num, content)
            for e in vp.entries:
                add(e.id, view[e.start : e.end])
            continue
        for e in vp.entries:
            if e.id in have:
                continue
            if e.type_num == OBJ_REF_DELTA and e.base_id not in have:
                whole(e.id, *vp.objects[e.id])
            else:
                add(e.id, view[e.start : e.end])
    parts[0] = struct.pack(">4sLL", b"PACK", 2, len(rows))
    sha = hashlib.sha1()
    for p in parts:
        sha.update(p)
    trailer = sha.digest()
    pack = b"".join(parts) + trailer
    return pack, sorted(rows), trailer
