"""The read-only FUSE filesystem (the only module that uses pyfuse3's operations).

As in s3ql: `PackFS` only translates between FUSE and the layer beneath, with errors
translated at one boundary (`_fuse_boundary`); the layout and inodes are mount/layout.py,
the bytes mount/store.py.
"""

from __future__ import annotations

import collections
import errno
import functools
import logging
import os
import queue
import stat
import threading
import time
from typing import Callable

import pyfuse3

from ..errors import GitfsError
from ..pack.rollup import ROLLUP_DIR
from .layout import PACKS_DIR, Content, Dir, Directory, File, Inodes, Layout, Link, PackDir
from .store import PREFETCH_PACKS, PackContent, PackStore, RollupContent

__all__ = ["PackFS", "LONG_TIMEOUT", "SHORT_TIMEOUT", "REPLACEABLE_TIMEOUT", "BLOCK_SIZE", "WALK_LOOKUPS", "WALK_SHARE"]

log = logging.getLogger(__name__)

#: Packs never change: the kernel may keep their names and attributes this long.
LONG_TIMEOUT = 3600.0
#: Directories are re-checked this often.
SHORT_TIMEOUT = 1.0
#: Names that follow moving refs (manifests, torrents, refs' links, README) are asked for at
#: every path lookup: when a ref moves, the new thing at the same name is a new inode, and
#: a name the kernel kept would lead to the old one.  A seed that adds the new torrent as
#: soon as it reads it (its pieces taken as verified: they were hashed from these bytes)
#: would then serve the old manifest's bytes for the new one's: peers banned it for
#: corrupt pieces (tests/remote, the room without a tracker, 1 run in 3 or 4).  These are
#: a few small files; packs keep LONG_TIMEOUT.
REPLACEABLE_TIMEOUT = 0.0
BLOCK_SIZE = 128 << 10
#: Where a torrent's roll-ups and tag groups are (a check looks each one up).
ROLLUPS_PATH = f"{PACKS_DIR}/{ROLLUP_DIR}"
PAGE = 4096
#: Files up to this size have their bytes handed to the kernel's page cache when opened
#: (FUSE_NOTIFY_STORE), so the reader's first read needs no round trip to this process; a
#: client checking thousands of small packs saves one READ per file.  Every open pushes
#: (transmission drops a file's pages when it closes it: POSIX_FADV_DONTNEED).
PUSH_BYTES = 256 << 10
#: Pushes wait for the pusher thread in a queue of at most this many bytes (beyond it an
#: open pushes nothing: its reads come as READs).
PUSH_QUEUE_BYTES = 4 << 20
#: After this many lookups of names in packs/ (or packs/rollups/) a client is walking the
#: packs (checking a torrent): `on_walk(path)` is called, once per layout, and lists the directory, so that the
#: kernel learns every name and attribute in a few READDIRPLUS round trips instead of
#: one LOOKUP per file.
WALK_LOOKUPS = 32
#: ... and only once the client has looked up at least 1/WALK_SHARE of the directory's
#: names: listing costs the server an inode per entry (about 1 KB each) and the time to
#: answer for each, and a torrent with roll-ups names few of them (its tail and tags),
#: not the 5,000 or 100,000 packs of a history that its roll-ups hold.  (At 1/64 a
#: check of the 5,000-commit history's 150 tail packs listed all 5,000: 0.07-0.08 s more
#: for its LOOKUPs, none saved.)
WALK_SHARE = 8


def _fuse_boundary(handler):
    """The one place errors become errnos: KeyError -> ENOENT, OSError -> its errno.

    Anything else is a bug: logged with its traceback, answered with EIO,
    and the mount keeps serving.
    """

    name = handler.__name__

    @functools.wraps(handler)
    async def translated(self, *args):
        self.ops[name] += 1
        t0 = time.perf_counter()
        try:
            return await handler(self, *args)
        except pyfuse3.FUSEError:
            raise
        except KeyError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except GitfsError as exc:
            log.error("%s: %s", handler.__name__, exc)
            raise pyfuse3.FUSEError(errno.EIO) from None
        except Exception:
            log.exception("BUG in %s%r; answered EIO", handler.__name__, args[:2])
            raise pyfuse3.FUSEError(errno.EIO) from None
        finally:
            self.op_seconds[name] += time.perf_counter() - t0

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
        self._files: dict[int, tuple[Content, bytes | None]] = {}  # open file -> (content, its bytes; None: by range)
        self._opened: dict[int, int] = {}  # file handle of a pack -> its inode
        self._fds: dict[int, int] = {}  # file handle of a roll-up -> its file's descriptor (PackStore.open_rollup)
        self._open_counts: collections.Counter[int] = collections.Counter()  # inode -> handles open
        #: (inode, offset, bytes) for the pusher thread; None stops it
        self._push_queue: queue.SimpleQueue[tuple[int, int, bytes] | None] = queue.SimpleQueue()
        self._ahead: dict[int, int] = {}  # open roll-up -> where its bytes pushed ahead end
        self._push_lock = threading.Lock()
        self._push_queued = 0  # bytes in the queue
        self._pusher: threading.Thread | None = None
        #: called (from the trio thread) when a client walks packs/ by name; see WALK_LOOKUPS
        self.on_walk: Callable[[str], None] | None = None
        self._walk_lookups: collections.Counter[str] = collections.Counter()  # by directory path
        self._walked: dict[str, object] = {}  # directory path -> the directory on_walk was last called for
        self._dirs: dict[int, tuple[int, Directory]] = {}
        self._next_fh = 1
        #: FUSE operations served, by handler name (logged at unmount)
        self.ops: collections.Counter[str] = collections.Counter()
        #: seconds spent in each handler, awaits included (logged at unmount)
        self.op_seconds: collections.Counter[str] = collections.Counter()

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
            # A pack's (or roll-up's) name never changes meaning; other files may be replaced (new inode).
            a.entry_timeout = LONG_TIMEOUT if isinstance(entry.content, (PackContent, RollupContent)) else REPLACEABLE_TIMEOUT
            a.attr_timeout = LONG_TIMEOUT
        elif isinstance(entry, Link):
            a.st_mode = stat.S_IFLNK | 0o777
            a.st_nlink = 1
            a.st_size = len(os.fsencode(entry.target))
            mtime = entry.mtime
            a.entry_timeout = REPLACEABLE_TIMEOUT
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

    def _packs_after(self, parent: int, entry: File) -> list[bytes]:
        """The packs listed after entry's in packs/: what a client checking a torrent opens next."""
        if not isinstance(entry.content, PackContent):
            return []
        try:
            directory = self.layout.directory(self.inodes.node(parent)[2].path)
        except KeyError:
            return []
        if not isinstance(directory, PackDir):
            return []
        oid = entry.content.commit_id
        # A torrent lists a tag after the packs it names, not next to the other tags, but
        # loading the tags listed next to it still saves most of their trips.
        return directory.commits_after(oid, PREFETCH_PACKS) or directory.tags_after(oid, PREFETCH_PACKS)

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
        if (isinstance(directory, PackDir) or parent.path == ROLLUPS_PATH) and self._walked.get(parent.path) is not directory:
            self._count_walk(parent.path, directory)
        return await self._attr(inode, entry)

    def _count_walk(self, path: str, directory: Directory) -> None:
        self._walk_lookups[path] += 1
        if self._walk_lookups[path] >= max(WALK_LOOKUPS, len(directory) // WALK_SHARE) and self.on_walk is not None:
            self._walked[path], self._walk_lookups[path] = directory, 0
            self.on_walk(path)

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
        parent, _, entry = self.inodes.node(inode)
        if isinstance(entry, Dir):
            raise pyfuse3.FUSEError(errno.EISDIR)
        if not isinstance(entry, File):
            raise pyfuse3.FUSEError(errno.ELOOP)
        if isinstance(entry.content, RollupContent):  # read by range, never held whole
            fd = await self.store.open_rollup(entry.content)  # its file (None: in chunks)
            fh = self._new_fh()
            if fd is not None:
                self._fds[fh] = fd
            self._files[fh] = (entry.content, None)
            self._opened[fh] = inode
            self._open_counts[inode] += 1
            return pyfuse3.FileInfo(fh=fh, keep_cache=True, direct_io=False)
        # The bytes are taken now and held until release: an open file reads the same bytes
        # until it is closed, even if its commit is pruned from the repository meanwhile.
        data = self.store.read_nowait(entry.content)
        if data is None:
            data = await self.store.read(entry.content, following=self._packs_after(parent, entry))
        fh = self._new_fh()
        self._files[fh] = (entry.content, data)
        self._opened[fh] = inode
        self._open_counts[inode] += 1
        if len(data) <= PUSH_BYTES:
            if self._open_counts[inode] == 1:
                self._push(inode, data)
            else:
                self._push_later(inode, data)
        # keep_cache: the bytes never change; never direct_io (mmap readers need the page cache).
        return pyfuse3.FileInfo(fh=fh, keep_cache=True, direct_io=False)

    def _push(self, inode: int, data: bytes) -> None:
        """Put a file's bytes in the kernel's page cache now (they never change: keep_cache).

        Only for a file no other handle has open: then no READ of it is in flight (a
        READ holds a reference to its file, so the file's RELEASE comes after it), and
        no page it would fill is locked by one.  The reader's first read is then never
        a round trip, even when it dropped the pages at its last close (transmission:
        POSIX_FADV_DONTNEED).
        """
        try:
            pyfuse3.notify_store(inode, 0, data)
        except OSError as exc:  # ENOSYS (old kernel), ENOENT (forgotten): reads still work
            log.debug("notify_store(%d): %s", inode, exc)

    def _push_later(self, inode: int, data: bytes, offset: int = 0) -> bool:
        """Have a file's bytes put in the page cache by the pusher thread: the file is
        open elsewhere too, so a READ of it may be in flight and hold a page's lock that
        storing would wait for, a lock that only this thread's answer to that READ
        releases.  (A reader may ask before the push is done: its READ is answered as usual.)
        """
        if self._pusher is None:
            self._pusher = threading.Thread(target=self._push_loop, name="notify_store", daemon=True)
            self._pusher.start()
        with self._push_lock:
            if self._push_queued + len(data) > PUSH_QUEUE_BYTES:
                return False
            self._push_queued += len(data)
        self._push_queue.put((inode, offset, data))
        return True

    def _push_loop(self) -> None:
        while (item := self._push_queue.get()) is not None:
            inode, offset, data = item
            with self._push_lock:
                self._push_queued -= len(data)
            try:
                pyfuse3.notify_store(inode, offset, data)
            except OSError as exc:  # ENOSYS (old kernel), ENOENT (forgotten): reads still work
                log.debug("notify_store(%d): %s", inode, exc)

    def close(self) -> None:
        """Stop the pusher thread (before the FUSE session closes); close roll-up files."""
        while self._fds:
            os.close(self._fds.popitem()[1])
        if self._pusher is not None:
            while True:
                try:
                    self._push_queue.get_nowait()  # what is left to push is not needed
                except queue.Empty:
                    break
            self._push_queue.put(None)
            self._pusher.join(timeout=10)
            if self._pusher.is_alive():
                log.warning("the notify_store thread did not stop within 10 s")
            self._pusher = None

    @_fuse_boundary
    async def read(self, fh, off, size):
        opened = self._files.get(fh)
        if opened is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        content, data = opened
        if data is None:
            fd = self._fds.get(fh)
            if fd is not None:
                # Nothing pushed ahead: the kernel's readahead asks soon enough, and pushing
                # took more of the cores than it saved (docs/mount.md, "A client's check").
                return await self.store.read_file(fd, content.size, off, size)
            out = await self.store.read_range(content, off, size)
            self._push_ahead(fh, content, off + len(out))
            return out
        expected = content.size_nowait()
        if expected is not None and expected != len(data):
            log.error(
                "BUG: %r has %d bytes but its size was given as %d; readers will see wrong data",
                content.key,
                len(data),
                expected,
            )
        return data[off : off + size]

    def _push_ahead(self, fh: int, content: RollupContent, pos: int) -> None:
        """After a read of a roll-up served in chunks up to pos: have the bytes after it,
        up to the end of the next chunk, that the read cache holds put in the page cache
        (by the pusher thread), so a reader going on finds them there instead of asking.
        Whole pages only, each range once per open file."""
        start = max(-(-pos // PAGE) * PAGE, self._ahead.get(fh, 0))
        step = self.store.rollup_chunk
        end = min(content.size, (pos // step + 2) * step)
        if end <= start:
            return
        ahead = self.store.read_range_nowait(content, start, end)
        if start + len(ahead) < content.size:
            ahead = ahead[: len(ahead) // PAGE * PAGE]
        if ahead and self._push_later(self._opened[fh], ahead, start):
            self._ahead[fh] = start + len(ahead)

    @_fuse_boundary
    async def release(self, fh):
        self._files.pop(fh, None)
        self._ahead.pop(fh, None)
        fd = self._fds.pop(fh, None)
        if fd is not None:  # no READ of it is in flight: the kernel releases after them
            os.close(fd)
        inode = self._opened.pop(fh, None)
        if inode is not None:
            self._open_counts[inode] -= 1
            if self._open_counts[inode] <= 0:
                del self._open_counts[inode]

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


