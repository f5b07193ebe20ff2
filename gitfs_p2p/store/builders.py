"""Building packs: in this process, or in worker processes that own dulwich.

A long-lived process (the mount) never builds: it asks `Workers`, a pool of spawned
interpreters, so whatever dulwich and the packer keep (pack file maps, delta bases,
tree caches, all bounded) never lands in the server.  A worker opens the repository once (again when its packs or
refs changed), builds what the cache lacks, stores it, and answers.  Short-lived
commands (`gitp2p packs`, `gitp2p torrent`) build in their own process, through the
same locks (`cache.build_locked`, `cache.BuildBatch`), which keep one build of a given pack at a time on this
machine, whoever asks.
"""

from __future__ import annotations

import concurrent.futures
import mmap
import multiprocessing
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING, Iterator

from ..errors import GitfsError
from ..pack.commitpack import CommitPacker
from .cache import BuildBatch, PackCache

if TYPE_CHECKING:  # the server never imports the git layer (dulwich); workers do
    from ..git.snapshot import RepoSnapshot
    from ..pack.manifest import RefManifest
    from .torrents import RepoTorrent

__all__ = ["Workers", "TASKS_PER_WORKER"]

#: A worker process is replaced after this many jobs (what it cached goes with it); None:
#: never.  Not used by default: on Python 3.11, ProcessPoolExecutor's max_tasks_per_child
#: stops spawning replacements while jobs are queued (CPython gh-115634), and every caller
#: then waits forever (seen: a cold `ls packs/` of 5,000 commits stuck after 256 packs, no
#: worker left).
TASKS_PER_WORKER = None
#: How often a worker checks that the process owning its pool is alive (seconds).
PARENT_CHECK_S = 1.0
#: Ids per build job (a job builds them oldest first, sharing the packer's caches).
BUILD_CHUNK = 64


# -- in a worker process ------------------------------------------------------------------


class _Opened:
    """The repository as one worker holds it, reopened when its packs or refs change."""

    def __init__(self, repo_path: str, cache_bytes: int):
        from ..git.repo import GitRepo

        self.repo = GitRepo(repo_path)
        self.stamp = _stamp(self.repo.git_dir)
        self.packer = CommitPacker(self.repo)
        self.cache = PackCache(self.repo.git_dir, max_bytes=cache_bytes)

    def close(self) -> None:
        self.cache.close()
        self.repo.close()


_OPENED: dict[tuple[str, int], _Opened] = {}


def _stamp(git_dir: str) -> tuple:
    out = []
    for name in ("objects/pack", "packed-refs", "refs"):
        try:
            st = os.stat(os.path.join(git_dir, name))
            out.append((st.st_ino, st.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


def _opened(repo_path: str, cache_bytes: int) -> _Opened:
    key = (repo_path, cache_bytes)
    held = _OPENED.get(key)
    if held is not None and _stamp(held.repo.git_dir) != held.stamp:
        held.close()
        held = None
    if held is None:
        held = _OPENED[key] = _Opened(repo_path, cache_bytes)
    return held


#: File pages (the repository's mapped pack files) a worker holds before it lets go of them.
MAPPED_PAGES_MAX = 64 << 20


def _file_pages() -> int:
    """Bytes of file pages this process has mapped (/proc/self/statm's shared pages: the
    repository's pack files and indexes, and the libraries); 0 where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[2]) * mmap.PAGESIZE
    except (OSError, ValueError, IndexError):
        return 0


def _drop_mapped_pages() -> None:
    """Let go of the pack pages of every repository this worker holds open."""
    for held in list(_OPENED.values()):
        held.repo.drop_mapped_pages()


def _job_build(repo_path: str, cache_bytes: int, ids: list[str], want_bytes: bool) -> list[tuple[str, int, bytes | None]]:
    held = _opened(repo_path, cache_bytes)
    out = []
    with BuildBatch(held.repo.git_dir, held.cache, held.packer) as batch:  # one cache write for the job
        batch.look_up(ids)
        for oid in ids:
            out.append((oid, *batch.pack(oid, want_bytes=want_bytes)))
            # One job's builds can touch 280 MB of a 556 MB pack (the 200,000-commit history's
            # first commits: every blob of their trees): let go of them as they pass the bound.
            if _file_pages() > MAPPED_PAGES_MAX:
                _drop_mapped_pages()
    # Building reads trees and blobs all over the repository's pack files, which dulwich
    # maps whole: without this a worker's RSS grows to their size (GitRepo.drop_mapped_pages).
    _drop_mapped_pages()
    return out


def _job_snapshot(repo_path: str, previous: "RepoSnapshot | None") -> "RepoSnapshot | None":
    """The new snapshot, or None when nothing moved (the caller keeps its own)."""
    from ..git.snapshot import read_snapshot

    held = _opened(repo_path, 0)
    snapshot = read_snapshot(held.repo, previous, held.cache)
    # Its repository is not the builds' (another cache size): what the walk touched last
    # would otherwise stay mapped for the worker's life (93 MB of the 200,000-commit history).
    held.repo.drop_mapped_pages()
    return None if snapshot is previous else snapshot


def _job_torrent(repo_path: str, cache_bytes: int, manifest: "RefManifest", label: str,
                 trackers: list[str], web_seeds: list[str], signature: bytes | None = None) -> "RepoTorrent":
    from .rollups import with_rollups
    from .source import PackSource
    from .torrents import build_repo_torrent

    held = _opened(repo_path, cache_bytes)
    # The pool builds a torrent's missing packs before it asks for the torrent, so the
    # packer's caches (recent trees, objects and tree diffs, grown over many builds) would
    # only add to what hashing the torrent holds: a fresh packer, and the pack pages let go.
    held.packer = CommitPacker(held.repo)
    _drop_mapped_pages()
    source = PackSource(held.repo, cache_bytes=cache_bytes, packer=held.packer, cache=held.cache)
    return with_rollups(source, build_repo_torrent(source, manifest, label, trackers=trackers, web_seeds=web_seeds,
                                                   signature=signature))


def _noop() -> None:
    pass


def _start_worker(log_path: str | None, parent: int) -> None:
    """In a new worker: stdio detached, and an exit of its own when the parent is gone."""
    _detach_stdio(log_path)
    threading.Thread(target=_exit_with_parent, args=(parent,), name="gitp2p-parent-watch", daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A pool's workers hold both ends of its queues, so they never see EOF when the process
    that owns the pool dies (kill -9, a crash): each checks once a second that its parent
    is still the one that started it, and leaves when it is not."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def _detach_stdio(log_path: str | None) -> None:
    """stdin and stdout from /dev/null, stderr to the log (or /dev/null)."""
    null = os.open(os.devnull, os.O_RDWR)
    err = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if log_path else null
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(err, 2)
    for fd in {null, err}:
        os.close(fd)


# -- the pool ---------------------------------------------------------------------------------


class WorkersStopped(GitfsError):
    """A job was cancelled, or not taken, because the workers are stopping."""


class Workers:
    """Worker processes for one repository; thread-safe (each call waits for its job).

    Each worker is a pool of its own (a ProcessPoolExecutor of one process), so that the
    builds of a run of commits go to one worker in order: its packer then moves from each
    commit to the next, where chunks dealt out in turn made both workers jump 64 commits
    at every chunk (15% more CPU for the 5,000-commit history's packs).  Other jobs go to
    the worker with the fewest waiting.
    """

    def __init__(self, repo_path: str, *, cache_bytes: int, workers: int = 1, tasks_per_worker: int | None = TASKS_PER_WORKER,
                 log_path: str | None = None):
        """log_path: where the workers' stderr goes (default /dev/null): a worker must never
        hold the terminal or a caller's pipe open (a background mount's caller waits for EOF)."""
        self.repo_path = repo_path
        self.cache_bytes = cache_bytes
        self._stopped = False
        self._jobs: weakref.WeakSet[concurrent.futures.Future] = weakref.WeakSet()  # for stop()
        self._jobs_lock = threading.Lock()
        self._pools = [
            concurrent.futures.ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                max_tasks_per_child=tasks_per_worker,
                initializer=_start_worker,
                initargs=(log_path, os.getpid()),
            )
            for _ in range(max(1, workers))
        ]
        # each pool's jobs not yet done (for the choice of a pool)
        self._queued: list[weakref.WeakSet[concurrent.futures.Future]] = [weakref.WeakSet() for _ in self._pools]

    def start(self) -> None:
        """Start the worker processes (and multiprocessing's resource tracker) now, and wait
        until the first is ready; the others get ready meanwhile (while the first reads
        the snapshot a mount starts with).

        What they inherit is what the caller has at this moment (a process is started when
        its pool's first job is queued): a background mount starts them while its stderr is
        its log, so no worker holds its caller's terminal or pipe."""
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
        started = [pool.submit(_noop) for pool in self._pools]
        started[0].result()

    def processes(self) -> list[int]:
        """The worker processes' ids (those started so far)."""
        return [pid for pool in self._pools for pid in (getattr(pool, "_processes", None) or {})]

    def close(self) -> None:
        """Cancel every job not started (on every pool first, so that none starts while
        another pool's running job is waited for), then wait for the running ones."""
        self.stop()
        for pool in self._pools:
            pool.shutdown(wait=True, cancel_futures=True)

    def stop(self) -> None:
        """Cancel every job not yet started and take no new one, without waiting: each thread
        waiting on a job gets WorkersStopped as soon as the jobs already running end (at most
        one chunk a worker), instead of after every queued build (the cold mount of a
        200,000-commit history queues 3,000 chunks, ten minutes of both cores)."""
        with self._jobs_lock:
            self._stopped = True
            jobs = list(self._jobs)
        for future in jobs:
            future.cancel()  # a job a worker has taken runs on; close() waits for it

    def _submit(self, fn, *args, pool: int | None = None) -> concurrent.futures.Future:
        """Queue a job on the given pool, or on the one with the fewest jobs not done."""
        with self._jobs_lock:
            if self._stopped:
                raise WorkersStopped("stopping: no new build is started")
            if pool is None:
                pool = min(range(len(self._pools)),
                           key=lambda k: sum(1 for f in list(self._queued[k]) if not f.done()))
            future = self._pools[pool].submit(fn, *args)
            self._jobs.add(future)
            self._queued[pool].add(future)
        return future

    def _result(self, future: concurrent.futures.Future):
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise WorkersStopped("stopping: the builds not yet started were cancelled") from None

    def _run_builds(self, ids: list[str], want_bytes: bool) -> Iterator[list[tuple[str, int, bytes | None]]]:
        """Build jobs of BUILD_CHUNK ids, every one queued at once; yields each job's result
        as it ends (in no particular order).

        Worker k takes the k-th of as many runs of consecutive chunks (module docstring);
        a worker whose run is done takes over the last chunk still queued for another, so
        all end together.  Leaving early (an error, Ctrl-C) cancels the jobs not started.
        """
        chunks = [ids[i : i + BUILD_CHUNK] for i in range(0, len(ids), BUILD_CHUNK)]
        n = len(self._pools)
        lanes: list[list[concurrent.futures.Future]] = []  # per pool, its jobs not done, in order
        pending: dict[concurrent.futures.Future, list[str]] = {}
        try:
            for k in range(n):
                lane = []
                for chunk in chunks[len(chunks) * k // n : len(chunks) * (k + 1) // n]:
                    f = self._submit(_job_build, self.repo_path, self.cache_bytes, chunk, want_bytes, pool=k)
                    pending[f] = chunk
                    lane.append(f)
                lanes.append(lane)
            while pending:
                done, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for f in done:
                    del pending[f]
                    for lane in lanes:
                        if f in lane:
                            lane.remove(f)
                    yield self._result(f)
                for k in range(n):
                    if not lanes[k]:
                        self._take_over(k, lanes, pending, want_bytes)
        finally:
            for f in pending:  # the caller stopped early: drop the rest
                f.cancel()

    def _take_over(self, k: int, lanes: list[list[concurrent.futures.Future]],
                   pending: dict[concurrent.futures.Future, list[str]], want_bytes: bool) -> None:
        """Move the last job not yet started of the longest other lane to pool k."""
        other = max(range(len(lanes)), key=lambda j: len(lanes[j]))
        for f in reversed(lanes[other][1:]):  # its first is running (or about to)
            if f.cancel():  # still queued: not started, and now never will be
                lanes[other].remove(f)
                chunk = pending.pop(f)
                moved = self._submit(_job_build, self.repo_path, self.cache_bytes, chunk, want_bytes, pool=k)
                pending[moved] = chunk
                lanes[k].append(moved)
                return

    def build(self, ids: list[str], *, want_bytes: bool = False) -> dict[str, tuple[int, bytes | None]]:
        """Build (or find in the cache) the packs of ids: id -> (size, bytes if wanted)."""
        out: dict[str, tuple[int, bytes | None]] = {}
        for result in self._run_builds(ids, want_bytes):
            for oid, size, data in result:
                out[oid] = (size, data)
        return out

    def build_chunks(self, ids: list[str]) -> Iterator[dict[str, int]]:
        """Build (or find) the packs of ids on every worker at once; yields each chunk's
        sizes as it ends (chunks of BUILD_CHUNK ids, in no particular order)."""
        for result in self._run_builds(ids, False):
            yield {oid: size for oid, size, _ in result}

    def snapshot(self, previous: "RepoSnapshot | None") -> "RepoSnapshot":
        """The refs and every commit they reach (git/snapshot.py), read in a worker."""
        snapshot = self._result(self._submit(_job_snapshot, self.repo_path, previous))
        return previous if snapshot is None else snapshot

    def torrent(self, manifest: "RefManifest", label: str, *, trackers=(), web_seeds=(),
                signature: bytes | None = None) -> "RepoTorrent":
        """The repository torrent of these refs (store/torrents.py), built in a worker;
        its `rollups` are always known (store/rollups.py), even when it was cached."""
        return self._result(self._submit(
            _job_torrent, self.repo_path, self.cache_bytes, manifest, label, list(trackers), list(web_seeds), signature
        ))
