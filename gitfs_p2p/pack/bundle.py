"""The pack the receiver writes: many verified packs' objects as one self-contained pack.

Pure: verified packs in, (pack bytes, index rows, pack checksum) out; the .idx v2 is
written from the rows by dulwich (git/receiving.py), the repository side.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

from .packfile import entry_header
from .verify import VerifiedPack

__all__ = ["build_pack"]


def build_pack(packs: list[VerifiedPack]) -> tuple[bytes, list[tuple[bytes, int, int]], bytes]:
    """One self-contained pack (and its index rows) holding the objects of verified packs.

    Delta bases a pack took from outside itself (the repository, or another
    pack of the batch) go first, whole, as `git index-pack --fix-thin` does.
    Then the received entries, copied verbatim; an object already written is
    left out (only from packs without OFS deltas, whose entries may depend on
    their neighbours' offsets).  Bases first is what keeps the pack readable:
    two packs may each hold a delta against an object the other holds as a
    delta (A against B in one, B against A in the other), and keeping both
    deltas would make a cycle that git cannot resolve.  A kept entry's base is
    then always a whole object, an entry of its own pack, or the kept copy of
    an entry from an earlier pack, so chains only ever lead back to whole
    objects.  Returns (pack, rows sorted by id: (id, offset, crc32), pack checksum).
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

    for vp in packs:
        for oid, (type_num, content) in vp.external.items():
            if oid not in have:
                add(oid, entry_header(type_num, len(content)) + zlib.compress(content, 1))
    for vp in packs:
        dedupe = not vp.has_ofs_delta
        view = memoryview(vp.data)
        for e in vp.entries:
            if dedupe and e.id in have:
                continue
            add(e.id, view[e.start : e.end])
    parts[0] = struct.pack(">4sLL", b"PACK", 2, len(rows))
    sha = hashlib.sha1()
    for p in parts:
        sha.update(p)
    trailer = sha.digest()
    pack = b"".join(parts) + trailer
    return pack, sorted(rows), trailer
