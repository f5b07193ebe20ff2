"""The read-only FUSE filesystem over a repository's commit packs (the only module that uses pyfuse3).

Three parts, as in s3ql: `PackFS`, an `Operations` subclass that only
translates between FUSE and the layer beneath (errors are translated at one
boundary, `_fuse_boundary`); the layout and inode table (mount_layout.py);
and `PackStore`, which gets sizes and bytes from `PackSource` in worker
threads.  `MountService` ties them together, mounts, and polls the refs.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import heapq
import logging
import os
import stat
import threading
import time
from collections import OrderedDict
from typing import Callable, Sequence

import pyfuse3
import trio

from ..errors import UserError
from ..git.repo import GitRepo
from ..pack.objects import clamp_time
from .layout import (
    CommitList,
    Content,
    Contributor,
    Dir,
    Directory,
    File,
    Inodes,
    Layout,
    Link,
    PackDir,
    RepoSnapshot,
    build_layout,
    readme_text,
)
from .snapshot import refs_signature, snapshot_in_child
from ..store.source import PackSource, Progress

__all__ = [
    "PackFS",
    "PackStore",
    "PackContent",
    "MountService",
    "read_snapshot",
    "walk_here",
    "mount_options",
    "serve_until_signal",
    "POLL_INTERVAL",
]

log = logging.getLogger(__name__)

#: Packs never change: the kernel may keep their names and attributes this long.
LONG_TIMEOUT = 3600.0
#: Names that follow moving refs (and directories) are re-checked this often.
SHORT_TIMEOUT = 1.0
#: How often the refs are read.
POLL_INTERVAL = 2.0
#: Bytes of recently read packs kept in memory (at least one pack, whatever its size).
DEFAULT_READ_CACHE_BYTES = 64 << 20
#: Worker threads for pack work at one time (builds are serialised by PackSource anyway).
WORKER_THREADS = 4
#: Past this resident size, PackStore reopens the repository (see PackStore._bound_memory).
REOPEN_ABOVE_RSS = 200 << 20
REOPEN_MIN_USES = 16
BLOCK_SIZE = 128 << 10


# -- the repository, read in worker threads ----------------------------------------------
def walk_here(repo: GitRepo, tips: list[bytes]) -> CommitList:
    """Every commit reachable from tips, parents first, walked in this process."""
    repo.check_not_shallow()
    infos = repo.commits_oldest_first(tips)
    return CommitList([c.id for c in infos], [c.commit_time for c in infos])


def read_snapshot(
    repo: GitRepo,
    previous: RepoSnapshot | None,
    *,
    full_walk: Callable[[GitRepo, list[bytes]], CommitList] = walk_here,
) -> RepoSnapshot:
    """The refs and every commit they reach; `previous` itself if nothing moved.

    Blocking (dulwich): call it in a worker thread.  When every ref that
    moved moved forward, only the new commits are read; otherwise
    `full_walk` reads them all.
    """
    refs = repo.refs()
    head = repo.head_target()
    published = repo.published_refs()
    if previous is not None and refs == previous.refs and head == previous.head and published == previous.published:
        return previous
    tips = sorted(set(refs.values()))
    commits = _extend_commits(repo, previous, tips) if previous is not None else None
    if commits is None:
        commits = full_walk(repo, tips)
    return RepoSnapshot(refs, head, commits, published, _tag_times(repo, published, commits))


def _tag_times(repo: GitRepo, published: dict, commits: CommitList) -> dict[bytes, int]:
    """Each annotated tag the published refs reach -> its mtime: the tagger's date, or
    (for a tag without a tagger line) the date of the commit it peels to."""
    out: dict[bytes, int] = {}
    for target in published.values():
        for tag in target.tags:
            if tag not in out:
                date = repo.read_tag(tag).date
                if not date and target.commit is not None and target.commit in commits:
                    date = commits.time_of(target.commit)
                out[tag] = clamp_time(date)
    return out


def _extend_commits(repo: GitRepo, previous: RepoSnapshot, tips: list[bytes]) -> CommitList | None:
    """previous's commits plus the new ones, or None if some commit may have become unreachable."""
    known = previous.commits
    new: dict[bytes, tuple[int, tuple[bytes, ...]]] = {}
    reached_known: set[bytes] = set()
    stack = [t for t in tips if t not in known]
    while stack:
        oid = stack.pop()
        if oid in new:
            continue
        try:
            info = repo.read_commit(oid)
        except KeyError:
            raise UserError(f"{repo.path}: commit {oid.decode()} is missing (incomplete repository?)") from None
        new[oid] = (info.commit_time, info.parents)
        for p in info.parents:
            if p in known:
                reached_known.add(p)
            elif p not in new:
                stack.append(p)
    # Every old tip that is no longer a tip must be a parent of a new commit:
    # then everything reachable before is still reachable.  Otherwise (a
    # deleted branch, a reset, a force push) start over.
    dropped = set(previous.refs.values()) - set(tips)
    if not dropped <= reached_known:
        return None
    if not new:
        return known
    # Parents before children; ties by committer time then id, as GitRepo orders them.
    waiting = {oid: sum(1 for p in set(parents) if p in new) for oid, (_, parents) in new.items()}
    children: dict[bytes, list[bytes]] = {}
    for oid, (_, parents) in new.items():
        for p in set(parents):
            if p in new:
                children.setdefault(p, []).append(oid)
    ready = [(new[oid][0], oid) for oid, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    ids: list[bytes] = []
    times: list[int] = []
    while ready:
        t, oid = heapq.heappop(ready)
        ids.append(oid)
        times.append(t)
        for child in children.get(oid, ()):
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (new[child][0], child))
    return known.extended(ids, times)


# -- pack sizes and bytes ------------------------------------------------------------------
def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _malloc_trim() -> None:
    """Hand freed heap back to the system (glibc); harmless elsewhere."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _close_source(source: PackSource) -> None:
    source.close()
    source.repo.close()


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
        reopen_source: Callable[[], PackSource] | None = None,
        reopen_above_rss: int = REOPEN_ABOVE_RSS,
    ):
        self.source = source
        self.sizes: dict[bytes, int] = {}
        self.progress = progress
        self.reopens = 0
        self._reopen_source = reopen_source
        self._reopen_above_rss = reopen_above_rss
        self._uses = 0  # pack work done by the current source
        self._users: dict[int, int] = {}  # id(source) -> threads using it
        self._lock = threading.Lock()
        self._sizing: dict[bytes, threading.Event] = {}
        self._recent: OrderedDict[object, bytes] = OrderedDict()
        self._recent_bytes = 0
        self._read_cache_bytes = read_cache_bytes
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
                if busy is None:
                    busy = self._sizing[commit_id] = threading.Event()
                    mine = True
                else:
                    mine = False
            if not mine:
                busy.wait()
                continue
            try:
                with self._using_source() as source:
                    size = source.size(commit_id)
                self.sizes[commit_id] = size
                return size
            finally:
                with self._lock:
                    del self._sizing[commit_id]
                busy.set()
        with self._using_source() as source:
            return source.size(commit_id)

    def read_pack_sync(self, commit_id: bytes) -> bytes:
        with self._using_source() as source:
            return source.pack(commit_id)

    def _load_cached_sizes_sync(self, commit_ids: Sequence[bytes]) -> None:
        with self._using_source() as source:
            for i in range(0, len(commit_ids), 5000):
                chunk = [c.decode() for c in commit_ids[i : i + 5000]]
                for cid, size in source.cache.sizes(source.format, chunk).items():
                    self.sizes[cid.encode()] = size

    # -- keeping memory bounded ---------------------------------------------------------------
    @contextlib.contextmanager
    def _using_source(self):
        """The current PackSource, kept open while the caller uses it."""
        with self._lock:
            source = self.source
            self._users[id(source)] = self._users.get(id(source), 0) + 1
        try:
            yield source
        finally:
            with self._lock:
                left = self._users[id(source)] - 1
                if left:
                    self._users[id(source)] = left
                else:
                    del self._users[id(source)]
                retired = not left and source is not self.source
            if retired:
                _close_source(source)
                del source
                _malloc_trim()
        self._bound_memory()

    def _bound_memory(self) -> None:
        """Past the RSS bound, swap in a freshly opened PackSource (worker threads only).

        What grows while packs are built belongs to the source: dulwich's maps
        of the repository's pack files and its delta-base cache, the packer's
        tree and closure caches.  A fresh source starts small; the old one is
        closed when its last user is done.  A source does at least
        REOPEN_MIN_USES pieces of work first, so a process that is large for
        other reasons does not reopen all the time.
        """
        if self._reopen_source is None:
            return
        self._uses += 1
        if self._uses < REOPEN_MIN_USES or _resident_bytes() <= self._reopen_above_rss:
            return
        with self._lock:
            if self._uses < REOPEN_MIN_USES:
                return
            self._uses = 0
        fresh = self._reopen_source()
        with self._lock:
            old, self.source = self.source, fresh
            idle = id(old) not in self._users
        self.reopens += 1
        if idle:
            _close_source(old)
        del old
        _malloc_trim()
        log.info("resident memory above %d MB: reopened the repository", self._reopen_above_rss >> 20)

    def close(self) -> None:
        with self._lock:
            source = self.source
        _close_source(source)

    def _size_some_sync(self, commit_ids: Sequence[bytes], start: int, budget: float = 0.25) -> int:
        """Size commit_ids[start:] for about `budget` seconds; the index reached."""
        deadline = time.monotonic() + budget
        i = start
        while i < len(commit_ids):
            self.size_sync(commit_ids[i])
            i += 1
            if time.monotonic() > deadline:
                break
        return i

    # -- sizes: async halves ------------------------------------------------------------------
    async def size(self, content: Content) -> int:
        size = content.size_nowait()
        if size is None:
            size = await trio.to_thread.run_sync(content.size, limiter=self._limiter)
        return size

    async def ensure_pack_sizes(self, commit_ids: Sequence[bytes]) -> None:
        """Know the size of each of these packs: from the cache, else built once, in this order.

        Long fills report progress(done, total), starting with done == 0.
        """
        missing = [c for c in commit_ids if c not in self.sizes]
        if not missing:
            return
        await trio.to_thread.run_sync(self._load_cached_sizes_sync, missing, limiter=self._limiter)
        missing = [c for c in missing if c not in self.sizes]
        if not missing:
            return
        total = len(missing)
        log.info("building %d packs to learn their sizes", total)
        if self.progress is not None and total > 1:
            self.progress(0, total)
        done = 0
        while done < total:
            done = await trio.to_thread.run_sync(self._size_some_sync, missing, done, limiter=self._limiter)
            if self.progress is not None and total > 1:
                self.progress(done, total)

    # -- bytes --------------------------------------------------------------------------------
    async def read(self, content: Content) -> bytes:
        """All of content's bytes: at hand, recently read, or loaded in a worker thread."""
        data = content.data_nowait()
        if data is not None:
            return data
        key = content.key
        for _ in range(4):
            data = self._recent.get(key)
            if data is not None:
                self._recent.move_to_end(key)
                return data
            loading = self._loading.get(key)
            if loading is None:
                break
            await loading.wait()
        loading = trio.Event()
        self._loading.setdefault(key, loading)
        try:
            data = await trio.to_thread.run_sync(content.read, limiter=self._limiter)
        finally:
            if self._loading.get(key) is loading:
                del self._loading[key]
            loading.set()
        self._remember(key, data)
        return data

    def _remember(self, key: object, data: bytes) -> None:
        if key in self._recent:
            return
        self._recent[key] = data
        self._recent_bytes += len(data)
        while self._recent_bytes > self._read_cache_bytes and len(self._recent) > 1:
            _, old = self._recent.popitem(last=False)
            self._recent_bytes -= len(old)


# -- the filesystem -----------------------------------------------------------------------
def _fuse_boundary(handler):
    """The one place errors become errnos: KeyError -> ENOENT, OSError -> its errno.

    Anything else is a bug: logged with its traceback, answered with EIO,
    and the mount keeps serving.
    """

    @functools.wraps(handler)
    async def translated(self, *args):
        try:
            return await handler(self, *args)
        except pyfuse3.FUSEError:
            raise
        except KeyError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except UserError as exc:
            log.error("%s: %s", handler.__name__, exc)
            raise pyfuse3.FUSEError(errno.EIO) from None
        except Exception:
            log.exception("BUG in %s%r; answered EIO", handler.__name__, args[:2])
            raise pyfuse3.FUSEError(errno.EIO) from None

    return translated


def _read_only(name: str):
    async def refuse(self, *args, **kwargs):
        raise pyfuse3.FUSEError(errno.EROFS)

    refuse.__name__ = name
    return refuse


class PackFS(pyfuse3.Operations):
    """Serves the current `Layout`; assign `layout` to swap in a new one."""

    supports_dot_lookup = True
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, layout: Layout, store: PackStore, *, started: int):
        super().__init__()
        self.layout = layout
        self.store = store
        self.inodes = Inodes()
        self.started = started
        self._uid = os.getuid()
        self._gid = os.getgid()
        self._files: dict[int, tuple[Content, bytes]] = {}  # open file -> (content, its bytes)
        self._dirs: dict[int, tuple[int, Directory]] = {}
        self._next_fh = 1

    # -- helpers --------------------------------------------------------------------------------
    def _new_fh(self) -> int:
        fh = self._next_fh
        self._next_fh += 1
        return fh

    def _dir_of(self, inode: int) -> tuple[Dir, Directory]:
        _, _, entry = self.inodes.node(inode)
        if not isinstance(entry, Dir):
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return entry, self.layout.directory(entry.path)

    async def _attr(self, inode: int, entry) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = inode
        a.generation = 0
        a.st_uid = self._uid
        a.st_gid = self._gid
        a.st_blksize = BLOCK_SIZE
        if isinstance(entry, File):
            size = await self.store.size(entry.content)
            a.st_mode = stat.S_IFREG | 0o444
            a.st_nlink = 1
            a.st_size = size
            mtime = entry.mtime
            # A pack's name never changes meaning; other files may be replaced (new inode).
            a.entry_timeout = LONG_TIMEOUT if isinstance(entry.content, PackContent) else SHORT_TIMEOUT
            a.attr_timeout = LONG_TIMEOUT
        elif isinstance(entry, Link):
            a.st_mode = stat.S_IFLNK | 0o777
            a.st_nlink = 1
            a.st_size = len(os.fsencode(entry.target))
            mtime = entry.mtime
            a.entry_timeout = SHORT_TIMEOUT
            a.attr_timeout = LONG_TIMEOUT
        else:
            try:
                subdirs = self.layout.directory(entry.path).subdir_count()
            except KeyError:
                subdirs = 0
            a.st_mode = stat.S_IFDIR | 0o555
            a.st_nlink = 2 + subdirs
            a.st_size = 0
            mtime = self.started
            a.entry_timeout = SHORT_TIMEOUT
            a.attr_timeout = SHORT_TIMEOUT
        a.st_blocks = (a.st_size + 511) // 512
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = mtime * 1_000_000_000
        return a

    # -- lookups ------------------------------------------------------------------------------
    @_fuse_boundary
    async def lookup(self, parent_inode, name, ctx=None):
        parent, directory = self._dir_of(parent_inode)
        text = os.fsdecode(name)
        if text == ".":
            return await self._attr(parent_inode, parent)
        if text == "..":
            grandparent = self.inodes.node(parent_inode)[0]
            return await self._attr(grandparent, self.inodes.node(grandparent)[2])
        entry = directory.get(text)
        inode = self.inodes.ino_for(parent_inode, text, entry)
        return await self._attr(inode, entry)

    @_fuse_boundary
    async def getattr(self, inode, ctx=None):
        _, _, entry = self.inodes.node(inode)
        return await self._attr(inode, entry)

    @_fuse_boundary
    async def readlink(self, inode, ctx=None):
        _, _, entry = self.inodes.node(inode)
        if not isinstance(entry, Link):
            raise pyfuse3.FUSEError(errno.EINVAL)
        return os.fsencode(entry.target)

    # -- directories --------------------------------------------------------------------------
    @_fuse_boundary
    async def opendir(self, inode, ctx=None):
        _, directory = self._dir_of(inode)
        fh = self._new_fh()
        self._dirs[fh] = (inode, directory)  # listed as it is now, whatever moves meanwhile
        return fh

    @_fuse_boundary
    async def readdir(self, fh, start_id, token):
        inode, directory = self._dirs[fh]
        count = len(directory)
        packs = directory if isinstance(directory, PackDir) else None
        if packs is not None and start_id == 0:
            # The first listing learns every size, oldest first (the order that builds fastest).
            await self.store.ensure_pack_sizes(packs.commits.ids)
        i = start_id
        while i < count:
            name = directory.name_at(i)
            if packs is not None:
                cid = packs.commit_at(i)
                if cid is not None and cid not in self.store.sizes:
                    await self.store.ensure_pack_sizes(packs.commits.ids[i : i + 256])
            entry = directory.get(name)
            child = self.inodes.ino_for(inode, name, entry)
            attr = await self._attr(child, entry)
            if not pyfuse3.readdir_reply(token, os.fsencode(name), attr, i + 1):
                break
            i += 1

    @_fuse_boundary
    async def releasedir(self, fh):
        self._dirs.pop(fh, None)

    # -- files --------------------------------------------------------------------------------
    @_fuse_boundary
    async def open(self, inode, flags, ctx=None):
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & (os.O_TRUNC | os.O_APPEND | os.O_CREAT):
            raise pyfuse3.FUSEError(errno.EROFS)
        _, _, entry = self.inodes.node(inode)
        if isinstance(entry, Dir):
            raise pyfuse3.FUSEError(errno.EISDIR)
        if not isinstance(entry, File):
            raise pyfuse3.FUSEError(errno.ELOOP)
        # The bytes are taken now and held until release: an open file reads the same bytes
        # until it is closed, even if its commit is pruned from the repository meanwhile.
        data = await self.store.read(entry.content)
        fh = self._new_fh()
        self._files[fh] = (entry.content, data)
        # keep_cache: the bytes never change; never direct_io (mmap readers need the page cache).
        return pyfuse3.FileInfo(fh=fh, keep_cache=True, direct_io=False)

    @_fuse_boundary
    async def read(self, fh, off, size):
        opened = self._files.get(fh)
        if opened is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        content, data = opened
        expected = content.size_nowait()
        if expected is not None and expected != len(data):
            log.error(
                "BUG: %r has %d bytes but its size was given as %d; readers will see wrong data",
                content.key,
                len(data),
                expected,
            )
        return data[off : off + size]

    @_fuse_boundary
    async def release(self, fh):
        self._files.pop(fh, None)

    async def flush(self, fh):
        # Nothing is ever written: ENOSYS once and the kernel stops sending a
        # FLUSH round trip with every close().
        raise pyfuse3.FUSEError(errno.ENOSYS)

    @_fuse_boundary
    async def statfs(self, ctx=None):
        s = pyfuse3.StatvfsData()
        s.f_bsize = BLOCK_SIZE
        s.f_frsize = BLOCK_SIZE
        s.f_blocks = s.f_bfree = s.f_bavail = 0
        s.f_files = len(self.inodes)
        s.f_ffree = s.f_favail = 0
        s.f_namemax = 255
        return s

    # -- everything that would write ------------------------------------------------------------
    setattr = _read_only("setattr")
    mknod = _read_only("mknod")
    mkdir = _read_only("mkdir")
    unlink = _read_only("unlink")
    rmdir = _read_only("rmdir")
    symlink = _read_only("symlink")
    rename = _read_only("rename")
    link = _read_only("link")
    write = _read_only("write")
    create = _read_only("create")
    setxattr = _read_only("setxattr")
    removexattr = _read_only("removexattr")


# -- mounting -------------------------------------------------------------------------------
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
        reopen_source: Callable[[], PackSource] | None = None,
        snapshots_in_child: bool = True,
    ):
        # Only the store keeps the source (it may swap it for a fresh one).
        self.repo_path = source.repo.path
        self.snapshots_in_child = snapshots_in_child
        self.git_dir = source.repo.git_dir
        self._signature: tuple | None = None
        self._last_read = 0.0
        self._unmounted_outside = False
        self.mountpoint = os.path.abspath(mountpoint)
        self.contributors = list(contributors)
        self.poll_interval = poll_interval
        self.allow_other = allow_other
        self.store = PackStore(
            source, read_cache_bytes=read_cache_bytes, progress=progress, reopen_source=reopen_source
        )
        self.repo_name = os.path.abspath(self.repo_path)
        self.fs: PackFS | None = None
        self._started = int(time.time())
        self._readme = readme_text(self.repo_name)

    def _read_snapshot(self, previous: RepoSnapshot | None) -> RepoSnapshot:
        """The current snapshot (blocking: a worker thread).

        Skipped while no file that holds refs changed (re-read anyway every
        30 s).  The read itself runs in a child process (mount_walk), so the
        pages of the repository's packs it touches never count against this
        process; `snapshots_in_child=False` reads here, with a repository
        opened for this read alone.
        """
        signature = refs_signature(self.git_dir) if self.git_dir else None
        fresh = time.monotonic() - self._last_read < 30.0
        if previous is not None and signature is not None and signature == self._signature and fresh:
            return previous
        if self.snapshots_in_child:
            snapshot = snapshot_in_child(self.repo_path, previous)
        else:
            with GitRepo(self.repo_path) as repo:
                snapshot = read_snapshot(repo, previous)
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
        snapshot = await trio.to_thread.run_sync(self._read_snapshot, None)
        layout = await trio.to_thread.run_sync(self._layout, snapshot)
        log.info("%s: %d refs, %d commits", self.repo_name, len(snapshot.refs), len(snapshot.commits))
        self.fs = PackFS(layout, self.store, started=self._started)
        try:
            pyfuse3.init(self.fs, self.mountpoint, mount_options(self.repo_name, allow_other=self.allow_other))
        except RuntimeError as exc:
            raise UserError(f"{self.mountpoint}: cannot mount ({exc})") from None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._serve_fuse, nursery.cancel_scope)
                # Answered only once the kernel's INIT is done and the root works.
                await trio.to_thread.run_sync(os.stat, self.mountpoint)
                nursery.start_soon(self._watch_refs)
                log.info("mounted %s at %s", self.repo_name, self.mountpoint)
                task_status.started()
        finally:
            # After an unmount from outside (gitp2p umount) the kernel side is gone already.
            pyfuse3.close(unmount=not self._unmounted_outside)

    async def _serve_fuse(self, scope: trio.CancelScope) -> None:
        await pyfuse3.main()
        self._unmounted_outside = True
        log.info("%s was unmounted", self.mountpoint)
        scope.cancel()

    async def _watch_refs(self) -> None:
        assert self.fs is not None
        while True:
            await trio.sleep(self.poll_interval)
            await self.refresh()

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
        except UserError as exc:
            log.warning("refs not refreshed: %s", exc)
            return False
        except Exception:
            log.exception("BUG: refs not refreshed")
            return False
        self.fs.layout = layout
        log.info("refs moved: %d refs, %d commits", len(snapshot.refs), len(snapshot.commits))
        return True


async def serve_until_signal(service: MountService, on_ready: Callable[[], None]) -> None:
    """Run the service; SIGINT, SIGTERM or SIGHUP (or an outside unmount) end it cleanly."""
    import signal

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:

            async def run_service(task_status=trio.TASK_STATUS_IGNORED):
                await service.run(task_status=task_status)
                nursery.cancel_scope.cancel()  # unmounted from outside

            await nursery.start(run_service)
            on_ready()
            async for signum in signals:
                log.info("%s: unmounting", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
