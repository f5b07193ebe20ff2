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
from typing import Iterable, Iterator

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
        self.keep_used_s = KEEP_USED_S
        self._lock = threading.Lock()
        self._total: int | None = None  # bytes of the files, as last counted plus written since

    def path(self, rollup: Rollup, size: int) -> str:
        suffix = TAGS_SUFFIX if rollup.tags else ROLLUP_SUFFIX
        return os.path.join(self.dir, f"{rollup.boundary.decode('ascii')}-{size}{suffix}")

    def open(self, rollup: Rollup, size: int, *, touch: bool = True) -> int | None:
        """A read-only descriptor of the roll-up's file, or None if there is none (or it
        was not whole: then it is removed).  touch: mark the file used (its mtime)."""
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
            if touch:
                os.utime(fd)
        except OSError:
            os.close(fd)
            raise
        return fd

    def write(self, rollup: Rollup, size: int, chunks: Iterable[bytes]) -> bool:
        """Write the roll-up's file from its bytes in order; False (nothing kept) when they
        do not add up to size or the file would not fit the bound."""
        out = _Writer(self, rollup, size)
        try:
            if out.fh is None:
                return False
            for chunk in chunks:
                out.add(chunk)
                if out.written > size:
                    break
            return out.finish()
        finally:
            out.abandon()

    def writing(self, rollup: Rollup, size: int, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """The roll-up's bytes as they come (to a torrent build hashing them), its file
        written from them on the way unless it is there already.  A file that cannot be
        written is left out with a warning; the bytes come all the same."""
        if os.path.exists(self.path(rollup, size)):
            yield from chunks
            return
        out: _Writer | None = None
        try:
            out = _Writer(self, rollup, size)
            if out.fh is None:
                out = None
        except OSError as exc:
            log.warning("roll-up %s: no file written (%s)", rollup.boundary.decode(), exc)
        try:
            for chunk in chunks:
                if out is not None:
                    try:
                        out.add(chunk)
                    except OSError as exc:
                        log.warning("roll-up %s: no file written (%s)", rollup.boundary.decode(), exc)
                        out.abandon()
                        out = None
                yield chunk
            if out is not None:
                try:
                    out.finish()
                except OSError as exc:
                    log.warning("roll-up %s: no file written (%s)", rollup.boundary.decode(), exc)
        finally:
            if out is not None:
                out.abandon()

    def _added(self, size: int) -> None:
        with self._lock:
            if self._total is not None:
                self._total += size

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
        used = now - int(self.keep_used_s * 10**9)
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


class _Writer:
    """One roll-up's file being written: a temporary file, synced and renamed when whole."""

    def __init__(self, files: RollupFiles, rollup: Rollup, size: int):
        self.files, self.rollup, self.size = files, rollup, size
        self.fh = None
        self.tmp: str | None = None
        self.written = 0
        if size > files.max_bytes:
            return
        os.makedirs(files.dir, exist_ok=True)
        if not files._make_room(size):
            return
        fd, self.tmp = tempfile.mkstemp(dir=files.dir, prefix=".tmp-")
        self.fh = os.fdopen(fd, "wb")

    def add(self, chunk: bytes) -> None:
        self.fh.write(chunk)
        self.written += len(chunk)

    def finish(self) -> bool:
        """Keep the file if it is whole (True); else say so (a bug) and drop it."""
        self.fh.flush()
        os.fdatasync(self.fh.fileno())
        self.fh.close()
        self.fh = None
        if self.written != self.size:
            log.error("BUG: roll-up %s: its bytes add up to %s, the torrent lists %d", self.rollup.boundary.decode(),
                      f"more than {self.size}" if self.written > self.size else self.written, self.size)
            return False
        os.rename(self.tmp, self.files.path(self.rollup, self.size))
        self.tmp = None
        self.files._added(self.size)
        return True

    def abandon(self) -> None:
        """Close and remove whatever was not kept."""
        if self.fh is not None:
            self.fh.close()
            self.fh = None
        if self.tmp is not None:
            self.files._remove(self.tmp)
            self.tmp = None
