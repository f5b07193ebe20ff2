"""The mount's packs: every size in memory, recently read bytes, the PackSource beneath.

Blocking work runs in worker threads (a pack being sized or loaded is never asked for
twice at once), and the PackSource beneath builds nothing in this process: it asks the
worker processes (store/builders.py), so this long-lived process stays small.  A roll-up
(pack/rollup.py) is never held whole: it is read in chunks (ROLLUP_CHUNK bytes, assembled
from its header and the member packs each covers in one query), kept in the same read
cache, the next ones loaded ahead of a reader.  With `rollup_files` (the mount), a
roll-up is written whole to a file beside the pack cache at its first open
(store/rollupfiles.py) and served from it with pread: no SQLite, no joining; the chunks
remain the way when no file can be written.
"""

from __future__ import annotations

import bisect
import errno
import logging
import os
import threading
import time
from array import array
from typing import Sequence

import trio

from ..pack.lru import LRU
from ..pack.rollup import Rollup, header_size, rollup_header
from ..store.rollupfiles import RollupFiles
from ..store.source import PackSource, Progress
from .layout import Content

__all__ = ["PackStore", "PackContent", "RollupContent", "DEFAULT_READ_CACHE_BYTES", "WORKER_THREADS", "PREFETCH_PACKS", "ROLLUP_CHUNK", "ROLLUP_AHEAD", "ROLLUP_SHARE"]

log = logging.getLogger(__name__)

#: Bytes of recently read packs kept in memory (at least one pack, whatever its size).
DEFAULT_READ_CACHE_BYTES = 64 << 20
#: Worker threads for pack work at one time.
WORKER_THREADS = 4
#: Packs sized per question to the workers during a cold fill.
SIZE_CHUNK = 256
#: A read that has to go to the persistent cache also takes up to this many of the packs
#: listed after it (clients check and seed a torrent's files in that order), in one
#: worker-thread trip, so most opens find their bytes at hand: each trip to a worker
#: thread costs the event loop more than reading a small pack from SQLite.
PREFETCH_PACKS = 64
#: ... and up to this many bytes of them.
PREFETCH_BYTES = 1 << 20
#: A roll-up is read from the persistent cache and kept in the read cache in chunks of
#: this many bytes (one worker-thread trip and one query each) ...
ROLLUP_CHUNK = 1 << 20
#: ... and this many chunks after the one a reader asked for are loaded meanwhile.
ROLLUP_AHEAD = 2
#: Roll-up chunks are kept in 1/ROLLUP_SHARE of the read cache (the rest is for packs).
ROLLUP_SHARE = 4


class PackContent:
    """The content of packs/<commit>.pack."""

    __slots__ = ("commit_id", "key", "_store")

    def __init__(self, store: "PackStore", commit_id: bytes):
        self.commit_id = commit_id
        self.key = ("pack", commit_id)
        self._store = store

    def size_nowait(self) -> int | None:
        return self._store.sizes.get(self.commit_id)

    def data_nowait(self) -> None:
        return None

    def size(self) -> int:
        return self._store.size_sync(self.commit_id)

    def read(self) -> bytes:
        return self._store.read_pack_sync(self.commit_id)


class RollupContent:
    """The content of packs/rollups/<boundary>.rollup (or <id>.tags, a tag group): its
    header, then its members' packs.

    Read by range only (PackStore.read_range), never whole.  `size` is the size the
    torrent lists, so the attributes need no work; the members' offsets are learned on
    the first read.
    """

    __slots__ = ("rollup", "size", "key", "offsets")

    def __init__(self, rollup: Rollup, size: int):
        self.rollup = rollup
        self.size = size
        self.key = ("rollup", rollup.boundary)
        self.offsets: array | None = None  # where each member starts, and the end (PackStore)

    def size_nowait(self) -> int:
        return self.size

    def data_nowait(self) -> None:
        return None


class PackStore:
    """Sizes (all of them, in memory) and recently read bytes of packs, PackSource beneath.

    Blocking work runs in worker threads; a pack being sized or loaded is
    never built a second time by a concurrent request.
    """

    def __init__(
        self,
        source: PackSource,
        *,
        read_cache_bytes: int = DEFAULT_READ_CACHE_BYTES,
        progress: Progress | None = None,
        rollup_files: RollupFiles | None = None,
    ):
        self.source = source
        #: where roll-ups are kept whole (None: served in chunks only)
        self.rollup_files = rollup_files
        self._nowait_reads = hasattr(os, "RWF_NOWAIT")
        #: (boundary, size) of the roll-up files known whole -> when this process last marked them used
        self._rollups_written: dict[tuple[bytes, int], float] = {}
        self.sizes: dict[bytes, int] = {}
        self.progress = progress
        self._lock = threading.Lock()
        self._sizing: dict[bytes, threading.Event] = {}
        # The read cache: roll-up chunks get their own share of it, so that a client going
        # through 100 MB of roll-ups does not push out the packs it opens on every check.
        chunk_bytes = read_cache_bytes // ROLLUP_SHARE
        self._recent = LRU(read_cache_bytes - chunk_bytes)  # key -> bytes of packs read lately, by length
        self._chunks = LRU(chunk_bytes)  # roll-up chunks read lately, by length
        self._read_cache_bytes = read_cache_bytes
        #: roll-ups are read in chunks of this many bytes: ROLLUP_CHUNK, less if the read
        #: cache is small (its share holds the chunk asked for and the ROLLUP_AHEAD after it)
        self.rollup_chunk = max(4096, min(ROLLUP_CHUNK, chunk_bytes // (1 + ROLLUP_AHEAD)))
        self._loading: dict[object, trio.Event] = {}
        self._limiter_obj: trio.CapacityLimiter | None = None

    def content(self, commit_id: bytes) -> PackContent:
        return PackContent(self, commit_id)

    @property
    def _limiter(self) -> trio.CapacityLimiter:
        if self._limiter_obj is None:
            self._limiter_obj = trio.CapacityLimiter(WORKER_THREADS)
        return self._limiter_obj

    # -- sizes: blocking halves (worker threads) ----------------------------------------------
    def size_sync(self, commit_id: bytes) -> int:
        for _ in range(3):
            size = self.sizes.get(commit_id)
            if size is not None:
                return size
            with self._lock:
                busy = self._sizing.get(commit_id)
                mine = busy is None
                if mine:
                    busy = self._sizing[commit_id] = threading.Event()
            if not mine:
                busy.wait()
                continue
            try:
                size = self.sizes[commit_id] = self.source.size(commit_id)
                return size
            finally:
                with self._lock:
                    del self._sizing[commit_id]
                busy.set()
        return self.source.size(commit_id)

    def read_pack_sync(self, commit_id: bytes) -> bytes:
        return self.source.pack(commit_id)

    def _load_cached_sizes_sync(self, commit_ids: Sequence[bytes]) -> None:
        source = self.source
        for i in range(0, len(commit_ids), 5000):
            chunk = [c.decode() for c in commit_ids[i : i + 5000]]
            for cid, size in source.cache.sizes(source.format, chunk).items():
                self.sizes[cid.encode()] = size

    def _cached_packs_sync(self, commit_ids: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
        """(id, bytes) of those packs whose bytes the persistent cache holds; builds nothing."""
        source = self.source
        datas = source.cache.datas(source.format, [c.decode() for c in commit_ids])
        return [(cid, datas[cid.decode()]) for cid in commit_ids if cid.decode() in datas]

    def _build_sizes_sync(self, commit_ids: Sequence[bytes]) -> None:
        for cid, size in self.source.build_sizes([c.decode() for c in commit_ids]).items():
            self.sizes[cid.encode()] = size

    def close(self) -> None:
        self.source.close()

    # -- sizes: async halves ------------------------------------------------------------------
    async def size(self, content: Content) -> int:
        size = content.size_nowait()
        if size is None:
            size = await trio.to_thread.run_sync(content.size, limiter=self._limiter)
        return size

    async def learn_cached_sizes(self, commit_ids: Sequence[bytes]) -> None:
        """Take the sizes of these packs that the persistent cache knows, in bulk; builds nothing.

        Then a lookup of one of them is answered without a trip to a worker thread.
        """
        missing = [c for c in commit_ids if c not in self.sizes]
        if missing:
            await trio.to_thread.run_sync(self._load_cached_sizes_sync, missing, limiter=self._limiter)

    async def ensure_pack_sizes(self, commit_ids: Sequence[bytes]) -> None:
        """Know the size of each of these packs: from the cache, else built once, in this order.

        Long fills report progress(done, total), starting with done == 0.
        """
        await self.learn_cached_sizes(commit_ids)
        missing = [c for c in commit_ids if c not in self.sizes]
        if not missing:
            return
        total = len(missing)
        log.info("building %d packs to learn their sizes", total)
        if self.progress is not None and total > 1:
            self.progress(0, total)
        for done in range(0, total, SIZE_CHUNK):  # oldest first: the order that builds fastest
            chunk = missing[done : done + SIZE_CHUNK]
            await trio.to_thread.run_sync(self._build_sizes_sync, chunk, limiter=self._limiter)
            if self.progress is not None and total > 1:
                self.progress(min(done + SIZE_CHUNK, total), total)

    # -- bytes --------------------------------------------------------------------------------
    def read_nowait(self, content: Content) -> bytes | None:
        """content's bytes if at hand or recently read, else None."""
        data = content.data_nowait()
        if data is None:
            data = self._recent.get_hit(content.key)
        return data

    async def read(self, content: Content, *, following: Sequence[bytes] = ()) -> bytes:
        """All of content's bytes: at hand, recently read, or loaded in a worker thread.

        `following` names packs (commit ids) likely read next: when content has to be
        loaded, those of them the persistent cache holds come along in the same trip
        (up to PREFETCH_PACKS and PREFETCH_BYTES) and wait in the read cache.
        """
        data = content.data_nowait()
        if data is not None:
            return data
        key = content.key
        data = await self._loaded(key)
        if data is not None:
            return data
        loading = trio.Event()
        self._loading.setdefault(key, loading)
        along = self._prefetch_ids(following, loading)
        try:
            data, found = await trio.to_thread.run_sync(self._load_sync, content, along, limiter=self._limiter)
        finally:
            for k in [key, *(("pack", cid) for cid in along)]:
                if self._loading.get(k) is loading:
                    del self._loading[k]
            loading.set()
        self._remember(key, data)
        for cid, pack in found:
            self._remember(("pack", cid), pack)
        return data

    async def _loaded(self, key: object, cache: LRU | None = None) -> bytes | None:
        """key's bytes if in the read cache, or once a load of them under way ends; else None."""
        cache = self._recent if cache is None else cache
        for _ in range(4):
            data = cache.get_hit(key)
            if data is not None:
                return data
            loading = self._loading.get(key)
            if loading is None:
                break
            await loading.wait()
        return None

    def _prefetch_ids(self, following: Sequence[bytes], loading: trio.Event) -> list[bytes]:
        """Which of `following` to load along (marked as loading); stops at the first one at hand."""
        along: list[bytes] = []
        nbytes = 0
        for cid in following[:PREFETCH_PACKS]:
            key = ("pack", cid)
            size = self.sizes.get(cid)
            if key in self._recent or key in self._loading or size is None:
                break  # read already, or someone is loading it: so is what follows, likely
            nbytes += size
            if nbytes > PREFETCH_BYTES or nbytes > self._read_cache_bytes // 4:
                break
            along.append(cid)
            self._loading[key] = loading
        return along

    def _load_sync(self, content: Content, along: Sequence[bytes]) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        data = content.read()
        return data, (self._cached_packs_sync(along) if along else [])

    def _remember(self, key: object, data: bytes) -> None:
        self._recent.put(key, data, len(data))

    # -- roll-ups -----------------------------------------------------------------------------
    async def read_range(self, content: RollupContent, off: int, size: int) -> bytes:
        """Exactly the bytes of [off, off + size) of a roll-up, cut at its end.

        A roll-up is served in chunks of ROLLUP_CHUNK bytes, each assembled once in a
        worker thread (its members' bytes in one query to the persistent cache) and kept
        in the read cache; the next ROLLUP_AHEAD chunks are loaded in the background
        meanwhile, so a reader going through the file (a client checking it) mostly
        finds its next range at hand.  If the members do not add up to the listed size
        (a bug, logged), the range is still served whole, so a reader never sees a
        short read.
        """
        end = min(off + size, content.size)
        if off >= end:
            return b""
        if content.offsets is None:
            await trio.to_thread.run_sync(self._rollup_offsets_sync, content, limiter=self._limiter)
        step = self.rollup_chunk
        first, last = off // step, (end - 1) // step
        parts = []
        for k in range(first, last + 1):
            chunk = await self._rollup_chunk(content, k)
            start = k * step
            parts.append(chunk[max(off, start) - start : min(end, start + step) - start])
        for k in range(last + 1, min(last + 1 + ROLLUP_AHEAD, (content.size - 1) // step + 1)):
            if self._chunk_key(content, k) not in self._chunks and self._chunk_key(content, k) not in self._loading:
                trio.lowlevel.spawn_system_task(self._rollup_chunk_ahead, content, k)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def open_rollup(self, content: RollupContent) -> int | None:
        """A descriptor of the roll-up's whole file, written first if there is none (in a
        worker thread, once however many ask at a time); None when there are no roll-up
        files here or it cannot be written (then read_range serves it in chunks).  The
        caller closes it."""
        files = self.rollup_files
        if files is None:
            return None
        touched = self._rollups_written.get((content.rollup.boundary, content.size))
        if touched is not None and time.monotonic() - touched < files.keep_used_s / 2:
            # Whole, and marked used lately: opened here, no worker thread (a check opens
            # every file of the torrent, and each trip to a thread costs more than this).
            try:
                fd = files.open(content.rollup, content.size, touch=False)
            except OSError:
                fd = None
            if fd is not None:
                return fd
        key = ("rollup file", content.rollup.boundary, content.size)
        for _ in range(3):
            loading = self._loading.get(key)
            if loading is None:
                break
            await loading.wait()
        loading = self._loading[key] = trio.Event()
        try:
            return await trio.to_thread.run_sync(self._open_rollup_sync, content, limiter=self._limiter)
        finally:
            if self._loading.get(key) is loading:
                del self._loading[key]
            loading.set()

    async def write_rollups(self, contents: Sequence[RollupContent]) -> None:
        """Have the files of these roll-ups written, in this order (the torrent's, the order a
        client checks them in), one at a time; those written before cost an open each."""
        for content in contents:
            key = (content.rollup.boundary, content.size)
            if self.rollup_files is None:
                return
            if key in self._rollups_written:
                continue
            fd = await self.open_rollup(content)
            if fd is not None:
                os.close(fd)

    def _open_rollup_sync(self, content: RollupContent) -> int | None:
        files = self.rollup_files
        if files is None:
            return None
        try:
            fd = files.open(content.rollup, content.size)
            if fd is None:
                offsets = self._rollup_offsets_sync(content)
                if offsets[-1] != content.size:
                    return None  # a bug, logged: the chunks serve it, padded to the listed size
                chunks = range(-(-content.size // self.rollup_chunk))
                if not files.write(content.rollup, content.size, (self._rollup_chunk_sync(content, k) for k in chunks)):
                    return None
                fd = files.open(content.rollup, content.size)
            if fd is not None:
                self._rollups_written[(content.rollup.boundary, content.size)] = time.monotonic()
            return fd
        except OSError as exc:
            log.warning("roll-ups are served in chunks from now on: %s", exc)
            self.rollup_files = None
            return None

    async def read_file(self, fd: int, size: int, off: int, length: int) -> bytes:
        """Exactly the bytes of [off, off + length) of an open file of `size` bytes (a roll-up's,
        open_rollup), cut at its end.  Read here when the page cache holds them
        (RWF_NOWAIT), else in a worker thread."""
        end = min(off + length, size)
        if off >= end:
            return b""
        buf = bytearray(end - off)
        got = 0
        if self._nowait_reads:
            try:
                got = os.preadv(fd, [buf], off, os.RWF_NOWAIT)
            except BlockingIOError:
                pass
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                self._nowait_reads = False  # not on this file system
        if got < len(buf):
            await trio.to_thread.run_sync(_read_into, fd, buf, got, off, limiter=self._limiter)
        return bytes(buf)

    @staticmethod
    def _chunk_key(content: RollupContent, k: int) -> tuple:
        return ("rollup chunk", content.rollup.boundary, content.size, k)

    def read_range_nowait(self, content: RollupContent, off: int, end: int) -> bytes:
        """As much of [off, end) of a roll-up as its chunks in the read cache hold, from off."""
        step = self.rollup_chunk
        parts = []
        pos = off
        while pos < min(end, content.size):
            k = pos // step
            chunk = self._chunks.get(self._chunk_key(content, k))
            if chunk is None:
                break
            parts.append(chunk[pos - k * step : min(end, (k + 1) * step) - k * step])
            pos = min(end, (k + 1) * step)
        return b"".join(parts)

    async def _rollup_chunk_ahead(self, content: RollupContent, k: int) -> None:
        try:
            await self._rollup_chunk(content, k)
        except Exception:  # a reader asking for it will see the error (and answer EIO)
            log.exception("roll-up %s: chunk %d not read ahead", content.rollup.boundary.decode(), k)

    async def _rollup_chunk(self, content: RollupContent, k: int) -> bytes:
        """Bytes [k * rollup_chunk, (k + 1) * rollup_chunk) of the roll-up (less at its end)."""
        key = self._chunk_key(content, k)
        data = await self._loaded(key, self._chunks)
        if data is not None:
            return data
        loading = self._loading[key] = trio.Event()
        try:
            data = await trio.to_thread.run_sync(self._rollup_chunk_sync, content, k, limiter=self._limiter)
        finally:
            if self._loading.get(key) is loading:
                del self._loading[key]
            loading.set()
        self._chunks.put(key, data, len(data))
        return data

    def _rollup_chunk_sync(self, content: RollupContent, k: int) -> bytes:
        offsets = content.offsets
        assert offsets is not None
        members = content.rollup.members
        start = k * self.rollup_chunk
        end = min(start + self.rollup_chunk, content.size)
        parts = []
        pos = start
        if pos < offsets[0]:
            sizes = [(c, offsets[i + 1] - offsets[i]) for i, c in enumerate(members)]
            parts.append(rollup_header(sizes, content.rollup.magic)[pos:end])
            pos = min(end, offsets[0])
        i = bisect.bisect_right(offsets, pos) - 1
        j = min(bisect.bisect_left(offsets, end), len(members))  # members [i, j) cover [pos, end)
        source = self.source
        found = source.cache.datas(source.format, [c.decode() for c in members[i:j]]) if pos < end else {}
        while pos < end and i < len(members):
            begin, stop = offsets[i], offsets[i + 1]
            data = found.get(members[i].decode())
            if data is None:  # not cached (or evicted from the cache): built by the workers
                data = source.pack(members[i])
            if len(data) != stop - begin:
                log.error("BUG: roll-up %s: member %s has %d bytes, its header says %d",
                          content.rollup.boundary.decode(), members[i].decode(), len(data), stop - begin)
            parts.append(data[pos - begin : min(end, stop) - begin].ljust(min(end, stop) - pos, b"\0"))
            pos = min(end, stop)
            i += 1
        out = b"".join(parts)
        return out.ljust(end - start, b"\0")  # past the members' end: only if they fall short of the listed size

    def _rollup_offsets_sync(self, content: RollupContent) -> array:
        """Where each member of the roll-up starts (after the header), and where the last ends."""
        if content.offsets is not None:
            return content.offsets
        members = content.rollup.members
        missing = [c for c in members if c not in self.sizes]
        if missing:
            self._load_cached_sizes_sync(missing)
        offsets = array("q", [header_size(len(members))])
        for c in members:
            offsets.append(offsets[-1] + self.size_sync(c))
        if offsets[-1] != content.size:
            log.error("BUG: roll-up %s: its members add up to %d bytes, the torrent lists %d",
                      content.rollup.boundary.decode(), offsets[-1], content.size)
        content.offsets = offsets
        return offsets


def _read_into(fd: int, buf: bytearray, got: int, off: int) -> None:
    """Fill buf[got:] from the file at off + got."""
    view = memoryview(buf)
    while got < len(buf):
        n = os.preadv(fd, [view[got:]], off + got)
        if n == 0:
            raise OSError(errno.EIO, "a roll-up file ends before its listed size")
        got += n
