"""The pack the receiver writes: many verified packs' objects as one self-contained pack and its index.

Pure: verified packs in, (pack bytes, .idx v2 bytes, name) out.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

from .packfile import entry_header
from .verify import VerifiedPack

__all__ = ["build_pack"]


def build_pack(packs: list[VerifiedPack]) -> tuple[bytes, bytes, str]:
    """One self-contained pack (and its .idx v2) holding the objects of verified packs.

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
    objects.  Returns (pack, idx, pack name hex).
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
    return pack, _build_idx(rows, trailer), trailer.hex()


def _build_idx(rows: list[tuple[bytes, int, int]], pack_sha: bytes) -> bytes:
    rows = sorted(rows)
    fanout = [0] * 256
    for oid, _, _ in rows:
        fanout[oid[0]] += 1
    total = 0
    for i in range(256):
        total += fanout[i]
        fanout[i] = total
    small = []
    large = []
    for _, offset, _ in rows:
        if offset < 0x80000000:
            small.append(offset)
        else:
            small.append(0x80000000 | len(large))
            large.append(offset)
    n = len(rows)
    body = b"".join(
        [
            b"\377tOc",
            struct.pack(">L", 2),
            struct.pack(">256L", *fanout),
            b"".join(oid for oid, _, _ in rows),
            struct.pack(f">{n}L", *(crc for _, _, crc in rows)),
            struct.pack(f">{n}L", *small),
            struct.pack(f">{len(large)}Q", *large),
            pack_sha,
        ]
    )
    return body + hashlib.sha1(body).digest()
