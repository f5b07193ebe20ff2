"""PackSource: commit packs of one repository, served through the persistent cache.

This is the API the CLI, the mount and the torrent builder use.  It is
thread-safe; building is serialised (the packer's caches are not shared
state a second thread could use at the same time).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterable, Iterator

from .cache import DEFAULT_CACHE_BYTES, PackCache
from ..pack.commitpack import FORMAT_VERSION, CommitPacker
from ..git.repo import CommitInfo, GitRepo

__all__ = ["PackSource", "Progress"]

log = logging.getLogger(__name__)

#: progress(done, total) is called now and then during long work.
Progress = Callable[[int, int], None]


class PackSource:
    def __init__(self, repo: GitRepo, *, cache_bytes: int = DEFAULT_CACHE_BYTES):
        self.repo = repo
        self.format = FORMAT_VERSION
        self._cache_bytes = cache_bytes
        self._cache: PackCache | None = None
        self._packer = CommitPacker(repo)
        self._build_lock = threading.Lock()
        self._cache_lock = threading.Lock()

    @property
    def cache(self) -> PackCache:
        """The cache, opened on first use (so bad input writes nothing)."""
        with self._cache_lock:
            if self._cache is None:
                self._cache = PackCache(self.repo.git_dir, max_bytes=self._cache_bytes)
            return self._cache

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()

    # -- history ----------------------------------------------------------------
    def tips(self, revs: Iterable[str] | None = None) -> list[bytes]:
        """Commit ids for the given revisions; every ref's commit by default."""
        revs = list(revs or [])
        if revs:
            return [self.repo.resolve(r) for r in revs]
        return sorted(set(self.repo.refs().values()))

    def commits(self, revs: Iterable[str] | None = None) -> list[CommitInfo]:
        self.repo.check_not_shallow()
        return self.repo.commits_oldest_first(self.tips(revs))

    # -- packs --------------------------------------------------------------------
    def _build(self, object_id: bytes) -> bytes:
        with self._build_lock:
            return self._packer.build_object(object_id)

    def pack(self, commit_id: bytes) -> bytes:
        """The pack's bytes: cached (or received) bytes verbatim, else built and cached.

        commit_id names a commit or an annotated tag (tag packs share the cache)."""
        key = commit_id.decode()
        hit = self.cache.get(self.format, key)
        if hit is not None and hit.data is not None:
            return hit.data
        data = self._build(commit_id)
        self.cache.put(self.format, key, data)
        return data

    def size(self, commit_id: bytes) -> int:
        hit = self.cache.get(self.format, commit_id.decode(), with_data=False)
        if hit is not None:
            return hit.size
        return len(self.pack(commit_id))

    def sizes(
        self, commits: list[CommitInfo], *, progress: Progress | None = None
    ) -> Iterator[tuple[CommitInfo, int]]:
        """(commit, pack size) for each commit, building only what is not cached.

        Yields in the given order; holds at most one pack's bytes at a time.
        """
        known = self.cache.sizes(self.format, [c.id.decode() for c in commits])
        todo = sum(1 for c in commits if c.id.decode() not in known)
        done = 0
        last = time.monotonic()
        for c in commits:
            size = known.get(c.id.decode())
            if size is None:
                size = len(self.pack(c.id))
                done += 1
                if progress is not None and (time.monotonic() - last > 0.5 or done == todo):
                    progress(done, todo)
                    last = time.monotonic()
            yield c, size
