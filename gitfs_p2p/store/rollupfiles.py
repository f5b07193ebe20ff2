"""Roll-ups kept whole on disk beside the pack cache (GIT_DIR/gitp2p/rollups/), so that
serving one is a pread of a file, not a join of its member packs read from SQLite.

A roll-up (or tag group) is a pure function of its boundary, span and members (pack/rollup.py),
and its bytes are its header and its members' packs as the pack cache holds them, so a
file written once serves every later read and every later mount.  Files are written whole
to a temporary name, synced and renamed, so a crash leaves a file whole or absent; a file
whose size is not the one the torrent lists is removed and written again.  They take at most
`max_bytes` together (the pack cache's bound): the least recently used go first, but
never one used in the last KEEP_USED_S seconds (then the new one is not written).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from typing import Iterable

from ..pack.commitpack import FORMAT_VERSION
from ..pack.rollup import ROLLUP_SUFFIX, TAGS_SUFFIX, Rollup

__all__ = ["RollupFiles", "ROLLUP_FILES_DIR", "KEEP_USED_S"]

log = logging.getLogger(__name__)

#: Under the pack cache's directory (GIT_DIR/gitp2p), then one directory per pack format.
ROLLUP_FILES_DIR = "rollups"
#: A file used (opened) this recently is not removed to make room.
KEEP_USED_S = 600


class RollupFiles:
    """The roll-up files of one repository (thread-safe: every write is a rename)."""

    def __init__(self, cache_dir: str, *, max_bytes: int):
        self.dir = os.path.join(cache_dir, ROLLUP_FILES_DIR, f"format-{FORMAT_VERSION}")
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._total: int | None = None  # bytes of the files, as last counted plus written since

    def path(self, rollup: Rollup, size: int) -> str:
        suffix = TAGS_SUFFIX if rollup.tags else ROLLUP_SUFFIX
        return os.path.join(self.dir, f"{rollup.boundary.decode('ascii')}-{size}{suffix}")

    def open(self, rollup: Rollup, size: int) -> int | None:
        """A read-only descriptor of the roll-up's file, or None if there is none (or it
        was not whole: then it is removed).  Marks the file used (its mtime)."""
        path = self.path(rollup, size)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            if os.fstat(fd).st_size != size:
                log.warning("%s: not %d bytes long; writing it again", path, size)
                os.close(fd)
                self._remove(path)
                return None
            os.utime(fd)
        except OSError:
            os.close(fd)
            raise
        return fd

    def write(self, rollup: Rollup, size: int, chunks: Iterable[bytes]) -> bool:
        """Write the roll-up's file from its bytes in order; False (nothing kept) when they
        do not add up to size or the file would not fit the bound."""
        if size > self.max_bytes:
            return False
        os.makedirs(self.dir, exist_ok=True)
        if not self._make_room(size):
            return False
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-")
        try:
            written = 0
            with os.fdopen(fd, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
                    written += len(chunk)
                    if written > size:
                        break
                fh.flush()
                os.fdatasync(fh.fileno())
            if written != size:
                log.error("BUG: roll-up %s: its bytes add up to %s, the torrent lists %d",
                          rollup.boundary.decode(), f"more than {size}" if written > size else written, size)
                return False
            os.rename(tmp, self.path(rollup, size))
            tmp = None
            with self._lock:
                if self._total is not None:
                    self._total += size
            return True
        finally:
            if tmp is not None:
                self._remove(tmp)

    def _make_room(self, nbytes: int) -> bool:
        """Remove the least recently used files until nbytes more fit the bound (and an
        eighth of it more, so that the next writes need not list the directory again);
        False when they do not fit even so.  The directory is listed only when the bytes
        counted so far say they may not fit (other processes may write files too).

        Files used in the last KEEP_USED_S seconds stay: when the roll-ups a client
        goes through outweigh the bound, the first ones stay files and the rest are
        served in chunks, instead of each check writing every file anew."""
        with self._lock:
            if self._total is None or self._total + nbytes > self.max_bytes:
                self._total = self._evict(nbytes + self.max_bytes // 8)
            return self._total + nbytes <= self.max_bytes

    def _evict(self, nbytes: int) -> int:
        files = []
        now = time.time_ns()
        stale = now - 3600 * 10**9  # a temporary file this old was left by a crash
        used = now - KEEP_USED_S * 10**9
        with os.scandir(self.dir) as it:
            for entry in it:
                try:
                    st = entry.stat()
                except OSError:
                    continue
                if entry.name.startswith(".tmp-") and st.st_mtime_ns > stale:
                    continue  # being written
                files.append((st.st_mtime_ns, st.st_size, entry.path))
        total = sum(size for _, size, _ in files)
        for mtime, size, path in sorted(files):
            if total + nbytes <= self.max_bytes or mtime > used:
                break
            self._remove(path)
            total -= size
        return total

    @staticmethod
    def _remove(path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
