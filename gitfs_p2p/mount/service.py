"""The mount as a service: mount, serve, follow the refs, publish torrents, unmount.

`MountService.run` mounts (pyfuse3), serves until cancelled, reads the refs every
`poll_interval` (a worker process does the reading) and swaps in a new layout when they
move; contributors that work in the background (the torrent publisher) run as tasks of
its nursery.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Sequence

import pyfuse3
import trio

from ..errors import GitfsError, MountError
from ..store.source import PackSource, Progress
from .fs import PackFS
from ..git.snapshot import RepoSnapshot, read_snapshot, refs_signature
from .guard import start_guard
from .layout import Contributor, Layout, build_layout, readme_text
from .store import DEFAULT_READ_CACHE_BYTES, PackStore

__all__ = ["MountService", "mount_options", "bound_malloc", "POLL_INTERVAL"]

log = logging.getLogger(__name__)

#: How often the refs are read.
POLL_INTERVAL = 2.0
#: The kernel reads ahead this much of a file of the mount (READs of up to 1 MiB: libfuse
#: offers the kernel 256 pages a request); FUSE's default is 128 KiB.
READAHEAD_KB = 1024
#: glibc malloc in the serving process: at most this many arenas (one per thread by
#: default, each keeping what its thread freed) ...
MALLOC_ARENAS = 2
#: ... and blocks from this size up mapped on their own, so a pack or roll-up chunk the
#: read cache drops goes back to the system at once (glibc would otherwise raise this
#: threshold as such blocks are freed, and keep them in the heap).
MALLOC_MMAP_THRESHOLD = 128 << 10


def bound_malloc() -> None:
    """Make this process's RSS follow the bytes it holds (glibc only; elsewhere nothing).

    Measured on git.git's check (docs/mount.md): without it the server's peak RSS during a
    stock client's full check was 80-100 MB above the read cache's bound plus its inodes.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(-8, MALLOC_ARENAS)  # M_ARENA_MAX
    mallopt(-3, MALLOC_MMAP_THRESHOLD)  # M_MMAP_THRESHOLD (also ends its dynamic raising)


def set_readahead(st_dev: int, kb: int) -> None:
    """Let the kernel read ahead kb KiB of a file of this mount at a time (its own
    backing device's read_ahead_kb, which FUSE starts at 128).  Only root may; for
    others the default stays."""
    path = f"/sys/class/bdi/{os.major(st_dev)}:{os.minor(st_dev)}/read_ahead_kb"
    try:
        with open(path, "w") as fh:
            fh.write(str(kb))
    except OSError as exc:
        log.debug("readahead stays as it is (%s: %s)", path, exc.strerror)


def mount_options(repo_name: str, *, allow_other: bool = False) -> set[str]:
    safe = "".join(c if c.isalnum() or c in "._-/" else "_" for c in repo_name)[-64:] or "repo"
    options = set(pyfuse3.default_options)  # default_permissions: the kernel checks the modes
    options |= {"ro", "noatime", "auto_unmount", f"fsname=gitp2p:{safe}", "subtype=gitp2p"}
    if allow_other:
        options.add("allow_other")
    return options


class MountService:
    """Mounts `source` at `mountpoint` and serves it until cancelled (then unmounts)."""

    def __init__(
        self,
        source: PackSource,
        mountpoint: str,
        *,
        contributors: Sequence[Contributor] = (),
        poll_interval: float = POLL_INTERVAL,
        read_cache_bytes: int = DEFAULT_READ_CACHE_BYTES,
        allow_other: bool = False,
        progress: Progress | None = None,
    ):
        self.source = source
        self.repo_path = source.repo.path if source.repo is not None else source.workers.repo_path
        self.git_dir = source.git_dir
        self._signature: tuple | None = None
        self._last_read = 0.0
        self._unmounted_outside = False
        self._refresh_now = trio.Event()  # set: refresh before the next poll is due
        self._learning: trio.Event | None = None  # set while a pass of _learn_sizes runs
        self._writing_rollups: bool | None = None  # None: idle; False: writing; True: and again after
        self._nursery: trio.Nursery | None = None
        self.mountpoint = os.path.abspath(mountpoint)
        self.contributors = list(contributors)
        self.poll_interval = poll_interval
        self.allow_other = allow_other
        self.store = PackStore(source, read_cache_bytes=read_cache_bytes, progress=progress,
                               rollup_files=source.rollup_files)
        self.repo_name = os.path.abspath(self.repo_path)
        self.fs: PackFS | None = None
        self._started = int(time.time())
        self._readme = readme_text(self.repo_name)

    def start_workers(self) -> None:
        """Start the worker processes now (they inherit this process's stdio as it is)."""
        if self.source.workers is not None:
            self.source.workers.start()

    def close(self) -> None:
        """Stop the worker processes and close the cache."""
        self.store.close()
        if self.source.workers is not None:
            self.source.workers.close()

    def _read_snapshot(self, previous: RepoSnapshot | None) -> RepoSnapshot:
        """The current snapshot (blocking: a worker thread).

        Skipped while no file that holds refs changed (re-read anyway every
        30 s).  With worker processes (the real mount) the read runs there, so the
        pages of the repository's packs it touches never count against this
        process; without (tests), here, with a repository opened for this read.
        """
        signature = refs_signature(self.git_dir) if self.git_dir else None
        fresh = time.monotonic() - self._last_read < 30.0
        if previous is not None and signature is not None and signature == self._signature and fresh:
            return previous
        if self.source.workers is not None:
            snapshot = self.source.workers.snapshot(previous)
        else:
            from ..git.repo import GitRepo

            with GitRepo(self.repo_path) as repo:
                snapshot = read_snapshot(repo, previous, self.source.cache)
        self._signature = signature
        self._last_read = time.monotonic()
        return snapshot

    def _layout(self, snapshot: RepoSnapshot) -> Layout:
        return build_layout(
            snapshot,
            pack_content=self.store.content,
            readme=self._readme,
            started=self._started,
            contributors=self.contributors,
        )

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        bound_malloc()
        snapshot = await trio.to_thread.run_sync(self._read_snapshot, None)
        layout = await trio.to_thread.run_sync(self._layout, snapshot)
        log.info("%s: %d refs, %d commits", self.repo_name, len(snapshot.refs), len(snapshot.commits))
        self.fs = PackFS(layout, self.store, started=self._started)
        try:
            pyfuse3.init(self.fs, self.mountpoint, mount_options(self.repo_name, allow_other=self.allow_other))
        except RuntimeError as exc:
            raise MountError(f"{self.mountpoint}: cannot mount ({exc})") from None
        guard = start_guard(self.mountpoint)  # removes the mount if this process is killed
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._stop_workers_when_cancelled)
                nursery.start_soon(self._serve_fuse, nursery.cancel_scope)
                # Answered only once the kernel's INIT is done and the root works.
                st = await trio.to_thread.run_sync(os.stat, self.mountpoint)
                set_readahead(st.st_dev, READAHEAD_KB)
                for contributor in self.contributors:
                    if hasattr(contributor, "on_changed"):
                        contributor.on_changed = lambda: self._refresh_now.set()
                nursery.start_soon(self._watch_refs)
                self.fs.on_walk = lambda path: nursery.start_soon(self._list_ahead, path)
                # Every size the persistent cache knows, so lookups need no worker thread.
                nursery.start_soon(self._learn_sizes, snapshot)
                for contributor in self.contributors:
                    if hasattr(contributor, "run"):  # it works in the background (torrents)
                        nursery.start_soon(contributor.run)
                log.info("mounted %s at %s", self.repo_name, self.mountpoint)
                task_status.started()
        finally:
            log.info("FUSE operations served: %s", " ".join(f"{k}={v}" for k, v in sorted(self.fs.ops.items())))
            log.info("FUSE handlers' time, ms: %s",
                     " ".join(f"{k}={1e3 * v:.1f}" for k, v in sorted(self.fs.op_seconds.items())))
            self.fs.close()
            # After an unmount from outside (gitp2p umount) the kernel side is gone already.
            pyfuse3.close(unmount=not self._unmounted_outside)
            if guard is not None:  # the process this mount started, and only it
                guard.terminate()
                guard.wait()

    async def _stop_workers_when_cancelled(self) -> None:
        """When the mount ends (unmounted from outside, a signal), the worker jobs not yet
        started are cancelled at once: the threads waiting on them (a cold mount's pack
        builds, a snapshot queued behind them) return, and the nursery can end, within
        the jobs already running, not after every queued one."""
        try:
            await trio.sleep_forever()
        finally:
            if self.source.workers is not None:
                self.source.workers.stop()

    async def _serve_fuse(self, scope: trio.CancelScope) -> None:
        await pyfuse3.main()
        self._unmounted_outside = True
        log.info("%s was unmounted", self.mountpoint)
        scope.cancel()

    async def _watch_refs(self) -> None:
        """Refresh every poll_interval, or at once when a contributor has new files."""
        assert self.fs is not None
        while True:
            with trio.move_on_after(self.poll_interval):
                await self._refresh_now.wait()
            self._refresh_now = trio.Event()
            await self.refresh()

    async def _list_ahead(self, path: str) -> None:
        """List packs/ (or packs/rollups/) through the mount, so the kernel caches every
        entry (READDIRPLUS).

        Called when a client looks packs up one by one (a torrent check): the listing
        runs ahead of it and its remaining lookups are answered by the kernel.
        """

        def list_dir() -> int:
            with os.scandir(os.path.join(self.mountpoint, path)) as it:
                return sum(1 for _ in it)

        try:
            count = await trio.to_thread.run_sync(list_dir)
        except OSError as exc:
            log.warning("%s/ not listed ahead: %s", path, exc)
            return
        log.info("%s/ listed ahead of a client walking it (%d entries)", path, count)

    async def _learn_sizes(self, snapshot: RepoSnapshot) -> None:
        """Every pack size the persistent cache knows, so lookups need no worker thread.

        One pass at a time: a pass asked for while one runs waits for it, and then asks
        the cache only for what that pass did not learn (on 200,000 commits a pass
        takes seconds, and two at once only compete for the cache).
        """
        while self._learning is not None:
            await self._learning.wait()
        self._learning = trio.Event()
        try:
            await self.store.learn_cached_sizes(snapshot.commits.ids)
        except GitfsError as exc:
            log.warning("pack sizes not read ahead: %s", exc)
        finally:
            self._learning.set()
            self._learning = None

    async def _write_rollups(self) -> None:
        """Write the files of the published roll-ups that are not written yet (PackStore.
        write_rollups), so that a client checking the torrent reads them from a file; one
        pass at a time, another after it if the layout changed meanwhile."""
        if self._writing_rollups is not None:
            self._writing_rollups = True
            return
        try:
            while True:
                self._writing_rollups = False
                contents = [c for contributor in self.contributors if hasattr(contributor, "published_rollups")
                            for c in contributor.published_rollups()]
                await self.store.write_rollups(contents)
                if not self._writing_rollups:
                    break
        except GitfsError as exc:
            log.warning("roll-ups not written ahead: %s", exc)
        except Exception:
            log.exception("BUG: roll-ups not written ahead")
        finally:
            self._writing_rollups = None

    async def refresh(self) -> bool:
        """Read the refs now; swap in a new layout if they moved.  True if they did."""
        assert self.fs is not None
        current = self.fs.layout.snapshot
        try:
            snapshot = await trio.to_thread.run_sync(self._read_snapshot, current)
            # Contributors that build in the background say when they have new files.
            ready = [c.changed() for c in self.contributors if hasattr(c, "changed")]
            if snapshot is current and not any(ready):
                return False
            layout = await trio.to_thread.run_sync(self._layout, snapshot)
        except GitfsError as exc:
            log.warning("refs not refreshed: %s", exc)
            return False
        except Exception:
            log.exception("BUG: refs not refreshed")
            return False
        self.fs.layout = layout
        if self._nursery is not None:
            self._nursery.start_soon(self._write_rollups)
        if snapshot is current:
            log.info("new files laid out (refs unchanged)")
        else:
            log.info("refs moved: %d refs, %d commits", len(snapshot.refs), len(snapshot.commits))
            # In the background: a contributor's new files (a torrent just built) must not
            # wait behind the sizes of a long history.
            if self._nursery is not None:
                self._nursery.start_soon(self._learn_sizes, snapshot)
            else:
                await self._learn_sizes(snapshot)
        return True


