"""The pack the receiver writes: many verified packs' objects as one self-contained pack.

Pure: verified packs in, (pack bytes, index rows, pack checksum) out; the .idx v2 is
written from the rows by git/receiving.py (pack_index_v2), the repository side.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import itertools
import operator
import os
import struct
import zlib
from collections import deque
from typing import BinaryIO, Callable, Collection, Iterator

from .delta import apply_delta
from .packfile import OBJ_OFS_DELTA, OBJ_REF_DELTA, entry_header
from .verify import VerifiedPack

__all__ = ["build_pack", "pack_plan", "read_planned", "write_plan", "write_plan_to", "PlanEntry", "WholeCompressor", "MAX_DEPTH"]

#: The longest chain of deltas the written pack holds (git's pack.depth default): a delta
#: that would lie deeper is written whole, so a reader (git, or read_planned) applies at
#: most this many deltas to get an object.
MAX_DEPTH = 50


#: One entry of the written pack: its id, and either received bytes to copy verbatim,
#: (type, content) to write whole, or (type, size, zlib bytes): written whole, compressed
#: already (WholeCompressor).
PlanEntry = tuple[bytes, "memoryview | tuple[int, bytes] | tuple[int, int, bytes]"]


def build_pack(packs: list[VerifiedPack]) -> tuple[bytes, list[tuple[bytes, int, int]], bytes]:
    """One self-contained pack (and its index rows) holding the objects of verified packs.

    The received entries are copied verbatim, in the packs' order (parents first),
    an object already written left out, except that a delta whose base is not
    written before it (a base in the repository, or later in the batch) is written
    whole instead, as `git index-pack --fix-thin` completes a thin pack.  A kept
    delta's base is then always earlier in the pack, so chains lead back to whole
    objects and never form a cycle: two packs may each hold a delta against an
    object the other holds as a delta (A against B in one, B against A in the other).
    A delta that would lie more than MAX_DEPTH deltas deep is written whole too.
    A pack with OFS deltas (whose entries depend on their neighbours' offsets) is
    copied whole, after the bases it took from outside itself, written whole.
    Returns (pack, rows sorted by id: (id, offset, crc32), pack checksum).
    """
    have: dict[bytes, int] = {}
    plan: list[PlanEntry] = []
    for vp in packs:
        plan += pack_plan(vp, have)
    return write_plan(plan)


def pack_plan(vp: VerifiedPack, have: dict[bytes, int]) -> list[PlanEntry]:
    """What one verified pack adds to the written pack (see build_pack), given the ids
    written before it, each with its depth (the deltas to apply to read it: 0 for an
    object written whole); adds its own to `have`.  Holds only the contents written
    whole, so a caller that keeps the plan may let the pack's inflated objects go."""
    plan: list[PlanEntry] = []

    def take(oid: bytes, what, depth: int = 0) -> None:
        plan.append((oid, what))
        have[oid] = depth

    view = memoryview(vp.data)
    if vp.has_ofs_delta:  # its own chains are not followed: such a pack is written alone
        for oid, found in vp.external.items():
            if oid not in have:
                take(oid, found)
        for e in vp.entries:
            take(e.id, view[e.start : e.end], 1 if e.type_num in (OBJ_OFS_DELTA, OBJ_REF_DELTA) else 0)
        return plan
    for e in vp.entries:
        if e.id in have:
            continue
        if e.type_num != OBJ_REF_DELTA:
            take(e.id, view[e.start : e.end])
            continue
        depth = have.get(e.base_id, MAX_DEPTH) + 1
        if depth > MAX_DEPTH:  # a base not written before it, or a chain long enough
            take(e.id, vp.objects[e.id])
        else:
            take(e.id, view[e.start : e.end], depth)
    return plan


def read_planned(written: dict[bytes, "memoryview | tuple[int, bytes] | tuple[int, int, bytes]"], oid: bytes,
                 known: Callable[[bytes], tuple[int, bytes] | None]) -> tuple[int, bytes] | None:
    """An object of a plan not written yet (written: id -> what the plan writes for it), as
    (type, content): inflated, and its deltas applied along the plan's own chain (a kept
    delta's base is always earlier in the plan); known(id) answers first for the bases
    kept at hand.  None if the plan does not hold it, or holds it in an OFS-delta pack
    (whose entries only make sense at their offsets: write the plan, then read the pack)."""
    deltas: list[bytes] = []
    while True:
        what = written.get(oid)
        if what is None or isinstance(what, tuple):
            base = what if what is None or len(what) == 2 else (what[0], zlib.decompress(what[2]))
            break
        type_num, pos = _entry_type(what)
        if type_num == OBJ_OFS_DELTA:
            return None
        if type_num != OBJ_REF_DELTA:
            base = (type_num, zlib.decompress(what[pos:]))
            break
        deltas.append(zlib.decompress(what[pos + 20 :]))
        oid = bytes(what[pos : pos + 20])
        base = known(oid)
        if base is not None:
            break
    if base is None:
        return None
    content = base[1]
    for delta in reversed(deltas):
        content = apply_delta(content, delta)
    return base[0], content


def _entry_type(entry: memoryview) -> tuple[int, int]:
    """A pack entry's type and where its header (type and size) ends."""
    pos = 1
    byte = entry[0]
    type_num = (byte >> 4) & 7
    while byte & 0x80:
        byte = entry[pos]
        pos += 1
    return type_num, pos


def write_plan(plan: Collection[PlanEntry]) -> tuple[bytes, list[tuple[bytes, int, int]], bytes]:
    """The pack of a plan (pack_plan's entries, in order): (pack, sorted index rows, checksum)."""
    out = io.BytesIO()
    rows, trailer = write_plan_to(plan, out)
    return out.getvalue(), rows, trailer


def write_plan_to(plan: Collection[PlanEntry], out: BinaryIO) -> tuple[list[tuple[bytes, int, int]], bytes]:
    """Write the pack of a plan into `out` as it goes (entries built, hashed and written
    WRITE_CHUNK bytes at a time, not one by one): (sorted index rows, checksum)."""
    wholes = _compressed([what[1] for _, what in plan if isinstance(what, tuple) and len(what) == 2])
    sha = hashlib.sha1()
    header = struct.pack(">4sLL", b"PACK", 2, len(plan))
    sha.update(header)
    out.write(header)
    ids: list[bytes] = []
    raws: list = []
    crcs: list[int] = []
    lengths: list[int] = []
    held = 0
    for oid, what in plan:
        if not isinstance(what, tuple):
            raw = what
        elif len(what) == 2:
            raw = entry_header(what[0], len(what[1])) + next(wholes)
        else:
            raw = entry_header(what[0], what[1]) + what[2]
        raws.append(raw)
        ids.append(oid)
        held += len(raw)
        if held >= WRITE_CHUNK:
            _write_chunk(raws, sha, out, crcs, lengths)
            held = 0
    _write_chunk(raws, sha, out, crcs, lengths)
    trailer = sha.digest()
    out.write(trailer)
    offsets = itertools.accumulate(lengths, initial=len(header))  # one more than ids: zip stops
    # Ids are unique in a plan, so the id alone orders the rows (cheaper than whole tuples).
    return sorted(zip(ids, offsets, crcs), key=_row_id), trailer


#: Bytes of pack entries built, hashed and written as one piece.
WRITE_CHUNK = 1 << 20
_row_id = operator.itemgetter(0)


def _write_chunk(raws: list, sha, out: BinaryIO, crcs: list[int], lengths: list[int]) -> None:
    """Hash and write these entries as one piece, note their crc32s and lengths; empties raws."""
    crcs += map(zlib.crc32, raws)
    lengths += map(len, raws)
    piece = b"".join(raws)
    sha.update(piece)
    out.write(piece)
    raws.clear()


class WholeCompressor:
    """Compresses the contents a plan writes whole as the plan grows, in a thread beside the
    caller (zlib lets go of the GIL: on another core while the next packs are checked), and
    puts them back into the plan compressed (settle), so that a batch holds its objects
    written whole compressed, and writing the plan only waits for what is left."""

    def __init__(self) -> None:
        self._jobs: deque[tuple[concurrent.futures.Future, list[tuple[bytes, tuple[int, bytes]]]]] = deque()
        self._pending: list[tuple[bytes, tuple[int, bytes]]] = []
        self._pending_bytes = 0

    def add(self, part: list[PlanEntry]) -> None:
        """The entries just put into the plan (pack_plan's output for one pack)."""
        for oid, what in part:
            if isinstance(what, tuple) and len(what) == 2:
                self._pending.append((oid, what))
                self._pending_bytes += len(what[1])
        if self._pending_bytes >= COMPRESS_JOB_BYTES:
            self._submit()

    def _submit(self) -> None:
        # A job a megabyte at least: the thread takes the GIL twice a job (compress_all lets
        # it go for the whole list), so the checks beside it are rarely interrupted.
        if self._pending:
            job = _background().submit(_compress_all, [content for _, (_, content) in self._pending])
            self._jobs.append((job, self._pending))
            self._pending, self._pending_bytes = [], 0

    def settle(self, plan: dict[bytes, object], *, wait: bool = False) -> None:
        """Put the contents compressed so far into the plan (id -> what, as the batch keeps
        it) as (type, size, zlib bytes); wait: every one, the last ones compressed now."""
        if wait:
            self._submit()
        while self._jobs and (wait or self._jobs[0][0].done()):
            job, part = self._jobs.popleft()
            for (oid, (type_num, content)), compressed in zip(part, job.result(), strict=True):
                plan[oid] = (type_num, len(content), compressed)


#: Contents gathered before WholeCompressor hands them to its thread.
COMPRESS_JOB_BYTES = 1 << 20


_pool: concurrent.futures.ThreadPoolExecutor | None = None


def _background() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="compress")
    return _pool


def _compressed(contents: list[bytes]) -> Iterator[bytes]:
    """zlib level 1 of each content, in order; on every core (zlib lets go of the GIL)."""
    if len(contents) < 64:
        return iter([zlib.compress(c, 1) for c in contents])
    jobs = max(1, min(os.cpu_count() or 1, 8))
    step = -(-len(contents) // jobs)
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        chunks = list(pool.map(_compress_all, [contents[i : i + step] for i in range(0, len(contents), step)]))
    return itertools.chain.from_iterable(chunks)


def _compress_all(contents: list[bytes]) -> list[bytes]:
    if _compiled_compress_all is not None:
        return _compiled_compress_all(contents, 1)
    return [zlib.compress(c, 1) for c in contents]


try:
    from ._speedups import compress_all as _compiled_compress_all
except ImportError:  # not built: zlib, taking the GIL back between objects
    _compiled_compress_all = None
