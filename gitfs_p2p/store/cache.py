"""The persistent pack cache under a repository's git dir (gitp2p/cache.sqlite3).

Pack rows are keyed by (format version, commit id).  Every row holds the pack's
size and sha256; pack bytes are kept for the most recently stored rows up to
a byte bound, except received packs (kept verbatim, never evicted, so a
receiver re-seeds exactly what it downloaded).  SQLite makes every write
atomic, so a crash or kill -9 leaves either the old or the new row.

The `torrents` table keeps the last TORRENTS_KEPT repository torrents built here,
keyed by everything that decides their bytes (store/torrents.py), so a new mount of
unchanged refs, or `gitp2p torrent` run again, has its torrent at once.  The `rollups`
table keeps which commits each roll-up holds (pack/rollup.py), keyed by the span and
its boundary commit, of which it is a pure function: a torrent read back from the
`torrents` table names its roll-ups, and the mount serves them without walking the
history again.  The `history` table keeps the commits the mount's last snapshot of
the refs reached (git/snapshot.py), so a new mount reads only what is new since; the
`graph` table, the last whole history walked (parents, trees and dates too), so that
the torrents built right after a snapshot's walk (store/torrents.py) do not walk it again.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import contextlib
import logging
import os
import sqlite3
import struct
import threading
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from ..errors import CacheError
from ..pack.commitpack import FORMAT_VERSION
from ..pack.objects import CommitInfo
from ..pack.rollup import TAG_GROUP_SPAN, Rollup

if TYPE_CHECKING:
    from ..pack.commitpack import CommitPacker

__all__ = ["PackCache", "CachedPack", "DEFAULT_CACHE_BYTES", "BuildBatch", "build_locked"]

log = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 256 << 20
#: Repository torrents kept (the newest; one per label and set of refs).
TORRENTS_KEPT = 32
#: `received` column: 0 built here; 1 received by a format-1 watcher; 2 received and checked
#: by today's watcher (only those count as complete histories).
RECEIVED_CHECKED = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS packs (
    format    INTEGER NOT NULL,
    commit_id TEXT    NOT NULL,
    size      INTEGER NOT NULL,
    sha256    BLOB    NOT NULL,
    data      BLOB,
    received  INTEGER NOT NULL DEFAULT 0,
    seq       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (format, commit_id)
);
CREATE INDEX IF NOT EXISTS packs_evictable ON packs (received, seq) WHERE data IS NOT NULL;
-- sizes() reads only this index: without it each lookup reads the row's page, beside the
-- pack's bytes (a mount of 200,000 commits: 1.3-2.4 s instead of 0.6-0.8 s).
CREATE INDEX IF NOT EXISTS packs_sizes ON packs (format, commit_id, size);
CREATE TABLE IF NOT EXISTS torrents (
    key       BLOB    PRIMARY KEY,
    torrent   BLOB    NOT NULL,
    tag_ids   TEXT    NOT NULL,
    seq       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    slot      INTEGER PRIMARY KEY CHECK (slot = 0),
    tips      BLOB    NOT NULL,
    ids       BLOB    NOT NULL,
    times     BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS graph (
    slot      INTEGER PRIMARY KEY CHECK (slot = 0),
    ids       BLOB    NOT NULL,
    trees     BLOB    NOT NULL,
    times     BLOB    NOT NULL,
    parents   BLOB    NOT NULL
);
CREATE TABLE IF NOT EXISTS rollups (
    span      INTEGER NOT NULL,
    boundary  TEXT    NOT NULL,
    depth     INTEGER NOT NULL,
    members   BLOB    NOT NULL,
    PRIMARY KEY (span, boundary)
);
"""


def _disk_full(path: str) -> bool:
    try:
        st = os.statvfs(os.path.dirname(path))
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (1 << 20)


def _cache_error(path: str, exc: Exception) -> CacheError:
    """A disk that is full is said so (the cache is fine: SQLite rolled the write back);
    SQLite often reports that as a plain "disk I/O error"."""
    text = str(exc)
    if "full" in text or getattr(exc, "errno", None) == errno.ENOSPC or _disk_full(path):
        return CacheError(f"{path}: no space left on the file system holding the pack cache ({text}); "
                         "free some and run again, nothing was lost")
    return CacheError(f"{path}: pack cache is unreadable ({text}); move it away to rebuild it")


#: Ids per `IN (...)` query: SQLite allows 999 parameters (before 3.32).
IN_CHUNK = 500


def _chunks(ids: list[str]) -> Iterator[tuple[list[str], str]]:
    """ids IN_CHUNK at a time, each with its `?,?,...` for an `IN (...)` query."""
    for i in range(0, len(ids), IN_CHUNK):
        chunk = ids[i : i + IN_CHUNK]
        yield chunk, ",".join("?" * len(chunk))


def _hexes(blob: bytes) -> list[bytes]:
    """20-byte binary ids back to hex."""
    hexed = blob.hex().encode("ascii")
    return [hexed[i : i + 40] for i in range(0, len(hexed), 40)]


@dataclass(frozen=True)
class CachedPack:
    size: int
    sha256: bytes
    data: bytes | None
    received: bool


class PackCache:
    """Thread-safe handle on one repository's cache file."""

    def __init__(self, git_dir: str, *, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.dir = os.path.join(git_dir, "gitp2p")
        self.path = os.path.join(self.dir, "cache.sqlite3")
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        try:
            os.makedirs(self.dir, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            # Format 2 kept format 1's commit packs byte for byte (it added tag packs), so the
            # rows move over; received ones keep received = 1: a format-1 watcher checked them
            # less than today's does, so they are served, but not trusted as checked (2).
            self._db.execute("UPDATE OR IGNORE packs SET format = 2 WHERE format = 1")
            row = self._db.execute(
                "SELECT COALESCE(SUM(LENGTH(data)), 0), COALESCE(MAX(seq), 0) FROM packs WHERE received = 0"
            ).fetchone()
        except (sqlite3.DatabaseError, OSError) as exc:
            raise _cache_error(self.path, exc) from None
        self._evictable_bytes, self._seq = row

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction (self._lock held): committed at the end, rolled back on
        any error; the database's errors as CacheError."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            raise _cache_error(self.path, exc) from None

    def _query(self, sql: str, args=()):
        try:
            return self._db.execute(sql, args)
        except sqlite3.DatabaseError as exc:
            raise _cache_error(self.path, exc) from None

    def get(self, fmt: int, commit_hex: str, *, with_data: bool = True) -> CachedPack | None:
        cols = "size, sha256, data, received" if with_data else "size, sha256, NULL, received"
        with self._lock:
            row = self._query(f"SELECT {cols} FROM packs WHERE format=? AND commit_id=?", (fmt, commit_hex)).fetchone()
        if row is None:
            return None
        return CachedPack(row[0], row[1], row[2], bool(row[3]))

    def datas(self, fmt: int, commit_hexes: list[str]) -> dict[str, bytes]:
        """The bytes of those of these packs whose bytes the cache holds, by id, in one
        query per 500 ids (a roll-up's members are read a run at a time)."""
        out: dict[str, bytes] = {}
        with self._lock:
            for chunk, marks in _chunks(commit_hexes):
                query = f"SELECT commit_id, data FROM packs WHERE format=? AND commit_id IN ({marks}) AND data IS NOT NULL"
                for cid, data in self._query(query, (fmt, *chunk)):
                    out[cid] = data
        return out

    def received_ids(self, fmt: int) -> set[str]:
        """The ids of every pack the watcher received and checked as it checks today
        (received = 2; rows from a format-1 watcher have 1)."""
        with self._lock:
            query = "SELECT commit_id FROM packs WHERE format=? AND received=?"
            return {row[0] for row in self._query(query, (fmt, RECEIVED_CHECKED))}

    def sizes(self, fmt: int, commit_hexes: list[str], *, stored: bool = False) -> dict[str, int]:
        """Known sizes for the given commits (missing ones are absent); stored: only of the
        packs whose bytes the cache holds."""
        held = " AND data IS NOT NULL" if stored else ""
        out: dict[str, int] = {}
        for chunk, marks in _chunks(commit_hexes):
            with self._lock:  # per chunk: a long list must not hold up every other reader
                rows = self._query(
                    f"SELECT commit_id, size FROM packs WHERE format=? AND commit_id IN ({marks}){held}", (fmt, *chunk)
                ).fetchall()
            out.update(rows)
        return out

    def put(self, fmt: int, commit_hex: str, data: bytes, *, received: bool = False) -> None:
        """Record a pack; keep its bytes if received or if they fit the bound."""
        digest = hashlib.sha256(data).digest()
        with self._lock:
            self._put_row(fmt, commit_hex, data, digest, received)
            self._evict()

    def put_built(self, fmt: int, packs: list[tuple[str, bytes]]) -> None:
        """Record packs built here (id in hex, bytes), as put() would one by one, in one
        transaction: a worker building a run of packs takes the database's write lock once
        for all of them instead of once a pack (with two workers writing a pack each every
        millisecond, waiting for that lock took 40% of a cold mount's build time)."""
        rows = [(oid, data, hashlib.sha256(data).digest()) for oid, data in packs]
        with self._lock:
            counted = self._evictable_bytes
            try:
                with self._transaction():
                    for oid, data, digest in rows:
                        self._put_row(fmt, oid, data, digest, False)
            except BaseException:
                self._evictable_bytes = counted  # nothing of it was written
                raise
            self._evict()

    def _put_row(self, fmt: int, commit_hex: str, data: bytes, digest: bytes, received: bool) -> None:
        """One row of put() (self._lock held); eviction is the caller's."""
        self._seq += 1
        keep = received or (len(data) <= self.max_bytes)
        row = self._query(
            "SELECT received, LENGTH(data) FROM packs WHERE format=? AND commit_id=?", (fmt, commit_hex)
        ).fetchone()
        if row is not None and row[0] and not received:
            return  # never replace received bytes with regenerated ones
        if row is not None and not row[0] and row[1]:
            self._evictable_bytes -= row[1]
        self._query(
            "INSERT OR REPLACE INTO packs (format, commit_id, size, sha256, data, received, seq)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (fmt, commit_hex, len(data), digest, data if keep else None,
             RECEIVED_CHECKED if received else 0, self._seq),
        )
        if keep and not received:
            self._evictable_bytes += len(data)

    def put_received(self, fmt: int, packs: list[tuple[str, bytes]]) -> None:
        """Record received packs (commit or tag id in hex, bytes), kept verbatim, in one
        transaction: all of them or none (one commit instead of one a pack).  One query per
        500 ids finds rows built here that they replace, one statement inserts them all."""
        rows = [(fmt, oid, len(data), hashlib.sha256(data).digest(), data, RECEIVED_CHECKED)
                for oid, data in packs]
        with self._lock:
            with self._transaction():
                freed = 0  # bytes of rows built here (evictable) that received ones replace
                for chunk, marks in _chunks([oid for oid, _ in packs]):
                    query = (f"SELECT COALESCE(SUM(LENGTH(data)), 0) FROM packs WHERE format=? AND received=0"
                             f" AND data IS NOT NULL AND commit_id IN ({marks})")
                    freed += self._db.execute(query, (fmt, *chunk)).fetchone()[0]
                first = self._seq + 1
                self._seq += len(rows)
                self._db.executemany(
                    "INSERT OR REPLACE INTO packs (format, commit_id, size, sha256, data, received, seq)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)", [(*row, seq) for seq, row in enumerate(rows, first)])
            self._evictable_bytes -= freed

    def get_torrent(self, key: bytes) -> tuple[bytes, str] | None:
        """(torrent bytes, tag ids text) stored under key, if any."""
        with self._lock:
            return self._query("SELECT torrent, tag_ids FROM torrents WHERE key=?", (key,)).fetchone()

    def put_torrent(self, key: bytes, torrent: bytes, tag_ids: str) -> None:
        """Keep a torrent under key, and only the newest TORRENTS_KEPT."""
        with self._lock:
            self._seq += 1
            self._query("INSERT OR REPLACE INTO torrents (key, torrent, tag_ids, seq) VALUES (?, ?, ?, ?)",
                        (key, torrent, tag_ids, self._seq))
            self._query("DELETE FROM torrents WHERE key NOT IN "
                        "(SELECT key FROM torrents ORDER BY seq DESC LIMIT ?)", (TORRENTS_KEPT,))

    def rollups(self, span: int, boundaries: list[bytes]) -> dict[bytes, Rollup]:
        """The roll-ups of these boundary commits (hex) that are recorded, by boundary;
        span TAG_GROUP_SPAN: the tag groups of these ids."""
        out: dict[bytes, Rollup] = {}
        with self._lock:
            for chunk, marks in _chunks([b.decode("ascii") for b in boundaries]):
                query = f"SELECT boundary, depth, members FROM rollups WHERE span=? AND boundary IN ({marks})"
                for boundary, depth, members in self._query(query, (span, *chunk)):
                    ids = tuple(members[j : j + 20].hex().encode("ascii") for j in range(0, len(members), 20))
                    out[boundary.encode("ascii")] = Rollup(boundary.encode("ascii"), depth, ids,
                                                           tags=span == TAG_GROUP_SPAN)
        return out

    def get_history(self) -> tuple[list[bytes], list[bytes], array] | None:
        """(tips, commit ids, commit times) of the last snapshot kept here, or None.  Ids
        are hex, the commits parents first (git/snapshot.py)."""
        with self._lock:
            row = self._query("SELECT tips, ids, times FROM history WHERE slot = 0").fetchone()
        if row is None:
            return None
        tips, ids, times = row
        if len(tips) % 20 or len(ids) % 20 or len(times) != len(ids) // 20 * 8:
            log.warning("%s: the kept history is damaged; reading the history again", self.path)
            return None
        when = array("q")
        when.frombytes(times)
        return _hexes(tips), _hexes(ids), when

    def put_history(self, tips: list[bytes], ids: list[bytes], times) -> None:
        """Keep a snapshot's commits (replacing the last one kept)."""
        row = (b"".join(bytes.fromhex(t.decode("ascii")) for t in tips),
               bytes.fromhex(b"".join(ids).decode("ascii")), array("q", times).tobytes())
        with self._lock:
            self._query("INSERT OR REPLACE INTO history (slot, tips, ids, times) VALUES (0, ?, ?, ?)", row)

    def put_graph(self, commits: list[CommitInfo], index: dict[bytes, int] | None = None) -> None:
        """Keep a whole walked history (git/walk.py's order, parents first), replacing the
        last one kept: a pure function of its commits, so whoever walks the same commits
        later may read it instead (PackSource.commits_from).  index: id -> position in
        commits, if the caller has it.  A history that is not whole, or whose dates do not
        fit 64 bits, is not kept."""
        if index is None:
            index = {c.id: i for i, c in enumerate(commits)}
        parents = array("i")
        ids, trees = bytearray(), bytearray()  # binary, 20 bytes a commit (no hex copy of them all)
        try:
            for c in commits:
                parents.append(len(c.parents))
                parents.extend(index[p] for p in c.parents)
                ids += bytes.fromhex(c.id.decode("ascii"))
                trees += bytes.fromhex(c.tree.decode("ascii"))
            times = array("q", (c.commit_time for c in commits))
        except (KeyError, OverflowError) as exc:
            log.info("commit graph not kept (%s: %s)", type(exc).__name__, exc)
            return
        row = (ids, trees, times.tobytes(), parents.tobytes())
        del parents, times
        with self._lock:
            self._query("INSERT OR REPLACE INTO graph (slot, ids, trees, times, parents) VALUES (0, ?, ?, ?, ?)", row)

    def get_graph(self) -> list[CommitInfo] | None:
        """The history put_graph kept, or None."""
        with self._lock:
            row = self._query("SELECT ids, trees, times, parents FROM graph WHERE slot = 0").fetchone()
        if row is None:
            return None
        ids, trees, times = _hexes(row[0]), _hexes(row[1]), array("q")
        parents = array("i")
        try:
            times.frombytes(row[2])
            parents.frombytes(row[3])
            del row  # its blobs (11 MB at 200,000 commits) are not held while the list is made
            if not len(ids) == len(trees) == len(times):
                raise ValueError("lengths")
            out: list[CommitInfo] = []
            j = 0
            for i, oid in enumerate(ids):
                n = parents[j]
                own = tuple(ids[k] for k in parents[j + 1 : j + 1 + n])
                if len(own) != n or any(k >= i or k < 0 for k in parents[j + 1 : j + 1 + n]):
                    raise ValueError("parents")
                out.append(CommitInfo(oid, trees[i], own, times[i]))
                j += 1 + n
            if j != len(parents):
                raise ValueError("parents")
        except (ValueError, IndexError):
            log.warning("%s: the kept commit graph is damaged; walking the history again", self.path)
            return None
        return out

    def put_rollups(self, span: int, rollups: list[Rollup]) -> None:
        """Record which commits these roll-ups hold (a pure function of span and boundary)."""
        rows = [(span, r.boundary.decode("ascii"), r.depth, bytes.fromhex(b"".join(r.members).decode("ascii")))
                for r in rollups]
        with self._lock:
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO rollups (span, boundary, depth, members) VALUES (?, ?, ?, ?)", rows)
            except sqlite3.DatabaseError as exc:
                raise _cache_error(self.path, exc) from None

    def put_size(self, fmt: int, commit_hex: str, size: int, sha256: bytes) -> None:
        """Record only a pack's size and digest (bytes not kept)."""
        with self._lock:
            self._query(
                "INSERT OR IGNORE INTO packs (format, commit_id, size, sha256, data, received, seq)"
                " VALUES (?, ?, ?, ?, NULL, 0, 0)",
                (fmt, commit_hex, size, sha256),
            )

    def _evict(self) -> None:
        while self._evictable_bytes > self.max_bytes:
            rows = self._query(
                "SELECT commit_id, format, LENGTH(data) FROM packs"
                " WHERE received = 0 AND data IS NOT NULL ORDER BY seq LIMIT 64"
            ).fetchall()
            if not rows:
                self._evictable_bytes = 0
                return
            for cid, fmt, length in rows:
                self._query("UPDATE packs SET data = NULL WHERE format=? AND commit_id=?", (fmt, cid))
                self._evictable_bytes -= length
                if self._evictable_bytes <= self.max_bytes:
                    return


#: Packs being built are locked as single bytes of one file, GIT_DIR/gitp2p/locks/packs: the
#: byte at the offset its id's first 15 hex digits spell (an open file description lock,
#: fcntl(2), so that a batch holds many at once and lets go of them all by closing it).
_PACK_LOCKS = "packs"
_FLOCK = struct.Struct("hhqqi")  # struct flock: l_type, l_whence, l_start, l_len, l_pid
#: Bytes of built packs a BuildBatch holds before it stores them.
BATCH_BYTES = 1 << 20  # a job of 64 packs of a few KB each is one batch; a worker holds at most 1 MB more


def _open_pack_locks(git_dir: str) -> int:
    locks = os.path.join(git_dir, "gitp2p", "locks")
    os.makedirs(locks, exist_ok=True)
    return os.open(os.path.join(locks, _PACK_LOCKS), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


def _lock_pack(fd: int, oid: str, *, wait: bool) -> bool:
    """Lock oid's byte of the lock file open as fd; False if another holds it (wait=False)."""
    arg = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, int(oid[:15], 16), 1, 0)
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLKW if wait else fcntl.F_OFD_SETLK, arg)
    except OSError as exc:
        if not wait and exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def build_locked(git_dir: str, cache: PackCache, packer: "CommitPacker", oid: str) -> bytes:
    """The pack of oid (a commit or tag, hex): from the cache, or built once and stored.

    One build of a given pack at a time on this machine, whoever asks (BuildBatch too):
    oid's lock (_lock_pack), then the cache is read again.
    """
    hit = cache.get(FORMAT_VERSION, oid)
    if hit is not None and hit.data is not None:
        return hit.data
    fd = _open_pack_locks(git_dir)
    try:
        _lock_pack(fd, oid, wait=True)
        hit = cache.get(FORMAT_VERSION, oid)  # built meanwhile by someone else?
        if hit is not None and hit.data is not None:
            return hit.data
        data = packer.build_object(oid.encode())
        cache.put(FORMAT_VERSION, oid, data)
        return data
    finally:
        os.close(fd)  # releases the lock


class BuildBatch:
    """Packs built one after another and stored together (PackCache.put_built): what a
    worker's build job uses, so that it writes the cache once a run of packs.

    Each pack built is locked (as build_locked locks it) until the batch is stored, so
    whoever else wants it meanwhile waits and then finds it in the cache; a batch that
    would wait for another's lock first stores what it holds (so two batches never wait
    for each other).  Use as a context manager: leaving it stores what is left.
    """

    def __init__(self, git_dir: str, cache: PackCache, packer: "CommitPacker", *, max_bytes: int = BATCH_BYTES):
        self.git_dir = git_dir
        self.cache = cache
        self.packer = packer
        self.max_bytes = max_bytes
        self._fd: int | None = None  # the lock file, open while this batch holds locks
        self._pending: dict[str, bytes] = {}
        self._pending_bytes = 0
        self._stored: dict[str, int] = {}  # id -> size, of packs whose bytes the cache held
        self._absent: set[str] = set()  # ids look_up found without bytes (asked again once locked)

    def __enter__(self) -> "BuildBatch":
        return self

    def __exit__(self, *exc) -> None:
        self.flush()

    def look_up(self, oids: list[str]) -> None:
        """Find which of oids the cache holds, in one query per 500 (pack() asks for each)."""
        stored = self.cache.sizes(FORMAT_VERSION, oids, stored=True)
        self._stored.update(stored)
        self._absent.update(oid for oid in oids if oid not in stored)

    def pack(self, oid: str, *, want_bytes: bool = True) -> tuple[int, bytes | None]:
        """(size, bytes or None if not wanted) of oid's pack: from the cache, or built."""
        size = self._stored.pop(oid, None)
        if size is not None and not want_bytes:
            return size, None
        data = self._pending.get(oid)
        if data is None and oid not in self._absent:
            data = self._from_cache(oid)
        self._absent.discard(oid)
        if data is None:
            if self._fd is None:
                self._fd = _open_pack_locks(self.git_dir)
            if not _lock_pack(self._fd, oid, wait=False):
                self.flush()  # hold nothing while waiting
                self._fd = _open_pack_locks(self.git_dir)
                _lock_pack(self._fd, oid, wait=True)
            data = self._from_cache(oid)  # built meanwhile by someone else?
            if data is None:
                data = self.packer.build_object(oid.encode())
                self._pending[oid] = data
                self._pending_bytes += len(data)
                if self._pending_bytes >= self.max_bytes:
                    self.flush()
        return len(data), data if want_bytes else None

    def _from_cache(self, oid: str) -> bytes | None:
        hit = self.cache.get(FORMAT_VERSION, oid)
        return hit.data if hit is not None else None

    def flush(self) -> None:
        """Store the packs built so far, then let go of their locks."""
        try:
            if self._pending:
                self.cache.put_built(FORMAT_VERSION, list(self._pending.items()))
        finally:
            self._pending = {}
            self._pending_bytes = 0
            if self._fd is not None:
                os.close(self._fd)  # releases every lock this batch held
                self._fd = None
