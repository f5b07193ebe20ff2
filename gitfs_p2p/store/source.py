"""PackSource: the packs of one repository, served through the persistent cache.

This is the API the command line, the mount and the torrent builder use.  Bytes come
from the cache (received bytes verbatim); what is missing is built, either here (a
short-lived command owns the repository: `repo` given) or by worker processes
(`workers` given: the long-lived mount, which must not hold dulwich's state).
Thread-safe.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from ..pack.commitpack import FORMAT_VERSION, CommitPacker
from ..pack.objects import CommitInfo
from .cache import DEFAULT_CACHE_BYTES, PackCache, build_locked
from .rollupfiles import RollupFiles

if TYPE_CHECKING:
    from ..git.repo import GitRepo
    from .builders import Workers

__all__ = ["PackSource", "Progress"]

log = logging.getLogger(__name__)

#: Fewer packs than this to build are built in this process (worker start-up costs more).
PARALLEL_MIN = 256

#: Packs built in this process between two drops of the repository's pack pages they
#: touched (GitRepo.drop_mapped_pages; a worker drops them after each job of as many).
DROP_PAGES_EVERY = 64

#: progress(done, total) is called now and then during long work.
Progress = Callable[[int, int], None]


class PackSource:
    def __init__(
        self,
        repo: "GitRepo | None" = None,
        *,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        git_dir: str | None = None,
        workers: "Workers | None" = None,
        packer: CommitPacker | None = None,
        cache: PackCache | None = None,
    ):
        if repo is None and (workers is None or git_dir is None):
            raise ValueError("a PackSource needs a repository, or workers and a git dir")
        self.repo = repo
        self.git_dir = git_dir if git_dir is not None else repo.git_dir
        self.format = FORMAT_VERSION
        self.workers = workers
        self._cache_bytes = cache_bytes
        self._cache = cache
        self._rollup_files: RollupFiles | None = None
        self._packer = packer if packer is not None or repo is None else CommitPacker(repo)
        self._build_lock = threading.Lock()
        self._built = 0  # packs built in this process (DROP_PAGES_EVERY)
        self._cache_lock = threading.Lock()

    @property
    def cache(self) -> PackCache:
        """The cache, opened on first use (so bad input writes nothing)."""
        with self._cache_lock:
            if self._cache is None:
                self._cache = PackCache(self.git_dir, max_bytes=self._cache_bytes)
            return self._cache

    @property
    def rollup_files(self) -> RollupFiles:
        """Roll-ups kept whole beside the cache (store/rollupfiles.py), up to as many bytes."""
        with self._cache_lock:
            if self._rollup_files is None:
                self._rollup_files = RollupFiles(os.path.join(self.git_dir, "gitp2p"), max_bytes=self._cache_bytes)
            return self._rollup_files

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()

    # -- history (a repository in this process) ---------------------------------------
    def tips(self, revs: Iterable[str] | None = None) -> list[bytes]:
        """Commit ids for the given revisions; every ref's commit by default."""
        revs = list(revs or [])
        if revs:
            return [self.repo.resolve(r) for r in revs]
        return sorted(set(self.repo.refs().values()))

    def commits(self, revs: Iterable[str] | None = None) -> list[CommitInfo]:
        return self.commits_from(self.tips(revs))

    def commits_from(self, tips: Iterable[bytes]) -> list[CommitInfo]:
        """Every commit reachable from tips (hex commit ids), parents first.

        From the history the cache keeps (a mount's snapshot walked it just before) when it
        holds every tip, else walked."""
        self.repo.check_not_shallow()
        tips = list(tips)
        kept = self._kept_history(tips)
        if kept is not None:
            return kept
        return self.repo.commits_oldest_first(tips)

    def _kept_history(self, tips: list[bytes]) -> list[CommitInfo] | None:
        """The commits reachable from tips, in walk order, from the cache's graph; None if
        it lacks a tip.  A history is a pure function of its commits, and the walk's order
        of a part closed under parents is the order of the whole with the rest left out
        (no commit outside it is a parent of one inside, so none delays one inside)."""
        graph = self.cache.get_graph()
        if graph is None:
            return None
        index = {c.id: i for i, c in enumerate(graph)}
        if not all(t in index for t in tips):
            return None
        reached = bytearray(len(graph))
        stack = [index[t] for t in tips]
        while stack:
            i = stack.pop()
            if not reached[i]:
                reached[i] = 1
                stack.extend(index[p] for p in graph[i].parents)
        if all(reached):
            return graph
        return [c for c, r in zip(graph, reached) if r]

    def _build_in_processes(self, ids: list[str], jobs: int, progress: Progress | None) -> dict[str, int]:
        from .builders import Workers

        pool = Workers(self.repo.path, cache_bytes=self._cache_bytes, workers=jobs)
        out: dict[str, int] = {}
        try:
            last = time.monotonic()
            for chunk in pool.build_chunks(ids):
                out.update(chunk)
                if progress is not None and (time.monotonic() - last > 0.5 or len(out) == len(ids)):
                    progress(len(out), len(ids))
                    last = time.monotonic()
        finally:
            pool.close()
        return out

    # -- packs --------------------------------------------------------------------
    def _build(self, object_id: bytes) -> bytes:
        oid = object_id.decode()
        if self.workers is not None:
            return self.workers.build([oid], want_bytes=True)[oid][1]
        with self._build_lock:  # the packer's caches are not for two threads at once
            data = build_locked(self.git_dir, self.cache, self._packer, oid)
            self._built += 1
            # Building reads trees and blobs all over the pack files, which dulwich maps
            # whole: without this `gitp2p packs -j 1` of a 200,000-commit history held
            # 560 MB of their pages (754 MB RSS, 190 MB anonymous).
            if self._built % DROP_PAGES_EVERY == 0 and hasattr(self.repo, "drop_mapped_pages"):
                self.repo.drop_mapped_pages()
            return data

    def pack(self, commit_id: bytes) -> bytes:
        """The pack's bytes: cached (or received) bytes verbatim, else built and cached.

        commit_id names a commit or an annotated tag (tag packs share the cache)."""
        hit = self.cache.get(self.format, commit_id.decode())
        if hit is not None and hit.data is not None:
            return hit.data
        return self._build(commit_id)

    def size(self, commit_id: bytes) -> int:
        hit = self.cache.get(self.format, commit_id.decode(), with_data=False)
        if hit is not None:
            return hit.size
        return len(self.pack(commit_id))

    def build_sizes(self, ids: list[str]) -> dict[str, int]:
        """Build (or find) the packs of ids, oldest first; their sizes.  Holds no bytes."""
        if self.workers is not None:
            return {oid: size for oid, (size, _) in self.workers.build(ids).items()}
        return {oid: len(self.pack(oid.encode())) for oid in ids}

    def sizes(
        self, commits: list[CommitInfo], *, progress: Progress | None = None, jobs: int = 1
    ) -> Iterator[tuple[CommitInfo, int]]:
        """(commit, pack size) for each commit, building only what is not cached.

        Yields in the given order; holds at most one pack's bytes at a time.  With
        jobs > 1 and at least PARALLEL_MIN packs to build, they are built first by that
        many worker processes (commits are independent once their parents' trees are
        read: each worker reads them from the repository).
        """
        known = self.cache.sizes(self.format, [c.id.decode() for c in commits])
        missing = [c.id.decode() for c in commits if c.id.decode() not in known]
        todo = len(missing)
        if jobs > 1 and self.workers is None and todo >= PARALLEL_MIN:
            known.update(self._build_in_processes(missing, jobs, progress))
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
