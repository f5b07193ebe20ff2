"""Roll-ups in the mount: packs/rollups/<boundary>.rollup for every roll-up the published
torrents list, exact bytes for any range, and a stock client checks such a torrent at 100%."""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import random
import shutil
import sqlite3

import pytest
import trio

from gitfs_p2p.git.repo import GitRepo
from gitfs_p2p.git.snapshot import CommitList, RepoSnapshot, read_snapshot
from gitfs_p2p.mount.fs import WALK_LOOKUPS, WALK_SHARE, PackFS
from gitfs_p2p.mount.layout import Dir, File, PackDir, StaticContent, build_layout
from gitfs_p2p.mount.store import ROLLUP_AHEAD, ROLLUP_SHARE, PackStore, RollupContent
from gitfs_p2p.pack.rollup import ROLLUP_SPAN, TAG_GROUP_SPAN, header_size, parse_rollup, plan_history
from gitfs_p2p.store.rollupfiles import RollupFiles
from gitfs_p2p.store.rollups import rollup_boundaries, with_rollups
from gitfs_p2p.store.source import PackSource
from gitfs_p2p.store.torrents import build_repo_torrent, rollup_chunks, select_refs
from mounthelp import NO_FUSE, Mount, needs_fuse, wait_for
from tc_support import require_libtorrent, run_libtorrent
from testutil import generate, git
from torrentcore.metainfo import parse_torrent

pytestmark = pytest.mark.timeout(300)

#: 536 first-parent commits (seed 17): two roll-ups and a tail.
COMMITS = 650


@pytest.fixture(scope="module")
def repo650(tmp_path_factory) -> str:
    """A history of two roll-ups and a tail, annotated tags in sealed history (one tag group:
    two tags and a tag of a tag) and one in the tail."""
    path = str(tmp_path_factory.mktemp("repo650") / "repo")
    generate(path, COMMITS, seed=17)
    git("tag", "-a", "sealed", "-m", "a tag on sealed history", "HEAD~300", cwd=path)
    git("tag", "-a", "sealed-2", "-m", "another", "HEAD~310", cwd=path)
    git("-c", "advice.nestedTag=false", "tag", "-a", "sealed-outer", "-m", "a tag of a tag", "sealed", cwd=path)
    git("tag", "-a", "recent", "-m", "a tag on the tail", "HEAD~3", cwd=path)
    return path


@pytest.fixture(scope="module")
def sent(repo650):
    """({label: RepoTorrent} as `gitp2p torrent` builds them, no trackers as the mounts here,
    roll-ups included; a PackSource on the repository for the expected bytes).  Their roll-ups
    are checked against the rule applied here (main's first-parent chain)."""
    source = PackSource(GitRepo(repo650))
    try:
        main = source.repo.resolve("main")
        plan = plan_history(source.commits_from([main]), [main])
        assert len(plan.rollups) == 2 == 536 // ROLLUP_SPAN
        out = {}
        for label, all_refs in (("HEAD", False), ("all", True)):
            manifest, _ = select_refs(source, [], all_refs=all_refs)
            out[label] = with_rollups(source, build_repo_torrent(source, manifest, label))
            assert [r for r in out[label].rollups if not r.tags] == list(plan.rollups)
        groups = [r for r in out["all"].rollups if r.tags]
        assert [len(g.members) for g in groups] == [3] and not any(r.tags for r in out["HEAD"].rollups)
        yield out, source
    finally:
        source.close()
        source.repo.close()


@pytest.fixture(scope="module")
def mounted650(repo650, tmp_path_factory):
    """repo650 mounted for the whole module, its torrents built (by the mount itself, on a
    cold cache, when it comes first in a test's arguments)."""
    if NO_FUSE:
        pytest.skip("/dev/fuse is absent")
    m = Mount(repo650, str(tmp_path_factory.mktemp("mnt650") / "mnt"))
    try:
        m.start()
        for label in ("HEAD", "all"):
            path = m.p("torrents", f"{label}.torrent")
            assert wait_for(lambda: os.path.exists(path), timeout=120), f"{label}.torrent did not appear"
        yield m
    finally:
        m.stop()


def verify_against_torrent(torrent: bytes, root: str) -> int:
    """Every file the torrent lists is under root with the listed size, and the files read
    back to back match every piece hash.  Returns the number of pieces."""
    t = parse_torrent(torrent)
    pending = bytearray()
    index = 0
    for f in t.files:
        path = os.path.join(root, t.name, *f.path)
        assert os.stat(path).st_size == f.length, path
        with open(path, "rb") as fh:
            data = fh.read()
        assert len(data) == f.length, path
        pending += data
        while len(pending) >= t.piece_length:
            assert hashlib.sha1(pending[: t.piece_length]).digest() == t.pieces[index], f"piece {index}"
            del pending[: t.piece_length]
            index += 1
    if pending:
        assert hashlib.sha1(pending).digest() == t.pieces[index], f"piece {index}"
        index += 1
    assert index == len(t.pieces)
    return index


# -- through the mount -----------------------------------------------------------------------------
@needs_fuse
def test_the_torrents_files_are_all_in_the_mount_and_match_every_piece(mounted650, sent, repo650):
    torrents, _ = sent
    listed = set()
    for label, t in torrents.items():
        with open(mounted650.p("torrents", f"{label}.torrent"), "rb") as fh:
            assert fh.read() == t.torrent, f"{label}.torrent is the torrent `gitp2p torrent` makes"
        assert verify_against_torrent(t.torrent, mounted650.path) > 1
        listed |= {r.path.split("/")[1] for r in t.rollups}
    # packs/rollups/ lists the union of the torrents' roll-ups and tag groups, each dated as
    # its boundary commit (a group: as its newest tag)
    assert sorted(os.listdir(mounted650.p("packs", "rollups"))) == sorted(listed)
    assert sum(1 for name in listed if name.endswith(".tags")) == 1
    for name in listed:
        if name.endswith(".tags"):
            group = next(r for r in torrents["all"].rollups if r.path.endswith(name))
            when = max(int(git("for-each-ref", "--format=%(taggerdate:unix)", f"refs/tags/{tag}", cwd=repo650))
                       for tag in ("sealed", "sealed-2", "sealed-outer"))
            assert len(group.members) == 3
        else:
            when = int(git("log", "-1", "--format=%ct", name.split(".")[0], cwd=repo650))
        assert os.stat(mounted650.p("packs", "rollups", name)).st_mtime == when
    assert "rollups" in os.listdir(mounted650.p("packs"))
    assert os.stat(mounted650.p("packs")).st_nlink == 3


@needs_fuse
def test_rollup_ranges_read_exactly_through_read_and_mmap(mounted650, sent):
    torrents, source = sent
    rng = random.Random(3)
    for r in torrents["all"].rollups:
        expected = b"".join(rollup_chunks(source, r))
        members = parse_rollup(expected, magic=r.magic)
        assert [m.encode() for m, _, _ in members] == list(r.members)
        path = mounted650.p("packs", r.path)
        fd = os.open(path, os.O_RDONLY)
        try:
            # Ranges that start in the header, cross member boundaries, end at and past the end.
            starts = [0, header_size(len(r.members)) - 3, *(start - 5 for _, start, _ in members[1:6]),
                      len(expected) - 10, *(rng.randrange(len(expected)) for _ in range(40))]
            for start in starts:
                length = rng.choice([1, 7, 4096, 70_000, 300_000])
                assert os.pread(fd, length, start) == expected[start : start + length]
            assert os.pread(fd, 100, len(expected)) == b""
            with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mm:
                assert mm[:] == expected
        finally:
            os.close(fd)


@needs_fuse
def test_a_stock_client_checks_a_mount_with_rollups_at_100_percent(mounted650, sent):
    require_libtorrent()
    found = json.loads(run_libtorrent("check_seed", mounted650.p("torrents", "all.torrent"), mounted650.path))
    assert found["state"] in ("seeding", "finished")
    assert found["have"] == found["total"] and found["downloaded"] == 0, found


@needs_fuse
def test_a_cached_torrent_whose_rollups_were_never_recorded_is_served_whole(mounted650, sent, repo650, mount_of):
    """A second mount finds the torrents in the pack cache (their roll-ups' members are not
    there: the table is emptied, as for a torrent `gitp2p torrent` made): it walks the history
    again, records them, and serves every file."""
    cache = sqlite3.connect(os.path.join(repo650, ".git", "gitp2p", "cache.sqlite3"), isolation_level=None)
    try:
        assert cache.execute("SELECT COUNT(*) FROM rollups").fetchone()[0] == 3  # and the tag group
        cache.execute("DELETE FROM rollups")
        m = mount_of(repo650)
        path = m.p("torrents", "all.torrent")
        assert wait_for(lambda: os.path.exists(path), timeout=120)
        verify_against_torrent(sent[0]["all"].torrent, m.path)
        assert cache.execute("SELECT COUNT(*) FROM rollups").fetchone()[0] == 3
    finally:
        cache.close()


def _copy_without_rollup_files(repo650: str, dest: str) -> str:
    shutil.copytree(repo650, dest, symlinks=True)
    shutil.rmtree(os.path.join(dest, ".git", "gitp2p", "rollups"), ignore_errors=True)
    return dest


@needs_fuse
def test_the_mount_writes_each_rollups_file_once_its_torrent_is_published(mounted650, sent, repo650, mount_of,
                                                                          tmp_path):
    """Beside the pack cache, so that a client's check reads roll-ups from files: each
    published roll-up and tag group whole, with exactly the bytes the torrent hashed
    (here the torrents are in the pack cache, their roll-ups' files are not)."""
    torrents, source = sent
    repo = _copy_without_rollup_files(repo650, str(tmp_path / "repo"))
    mount_of(repo)
    files = RollupFiles(os.path.join(repo, ".git", "gitp2p"), max_bytes=1 << 30)
    for t in torrents.values():
        sizes = dict(t.files)
        for r in t.rollups:
            path = files.path(r, sizes[r.path])
            assert wait_for(lambda: os.path.exists(path), timeout=60), path
            with open(path, "rb") as fh:
                assert fh.read() == b"".join(rollup_chunks(source, r)), path


def _resident_pages(path: str) -> int:
    """How many of the file's pages are in the page cache (mincore of a mapping; reads nothing)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    size = os.stat(path).st_size
    pages = -(-size // mmap.PAGESIZE)
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
        try:
            vec = ctypes.create_string_buffer(pages)
            assert libc.mincore(addr, size, vec) == 0, ctypes.get_errno()
            return sum(b & 1 for b in vec.raw)
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


@needs_fuse
def test_a_rollup_read_from_the_start_has_the_rest_pushed_into_the_page_cache(repo650, sent, mount_of, tmp_path):
    """Where no roll-up file can be written (here: a plain file is in the way), roll-ups are
    served in chunks, and a read of a roll-up's first page puts the bytes after it that the
    server has at hand in the page cache (the reader's next reads are then no round trips),
    and they are the roll-up's bytes."""
    torrents, source = sent
    log_path = str(tmp_path / "mount.log")
    repo = _copy_without_rollup_files(repo650, str(tmp_path / "repo"))
    with open(os.path.join(repo, ".git", "gitp2p", "rollups"), "w") as fh:
        fh.write("not a directory")
    m = mount_of(repo, "--log", log_path)
    rollup = torrents["all"].rollups[-1]
    path = m.p("packs", rollup.path)
    assert wait_for(lambda: os.path.exists(path), timeout=120)
    expected = b"".join(rollup_chunks(source, rollup))
    assert len(expected) > 16 * mmap.PAGESIZE
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no readahead: the first read asks for one page
        assert os.pread(fd, 4096, 0) == expected[:4096]
        assert wait_for(lambda: _resident_pages(path) == -(-len(expected) // mmap.PAGESIZE), timeout=30)
        data = b"".join(os.pread(fd, 65536, off) for off in range(0, len(expected) + 1, 65536))
    finally:
        os.close(fd)
    assert data == expected
    m.stop()
    with open(log_path) as fh:
        served = [line for line in fh if "FUSE operations served:" in line][0]
    assert " read=1 " in served or served.rstrip().endswith(" read=1"), served
    with open(log_path) as fh:
        assert "roll-ups are served in chunks from now on" in fh.read()


# -- without mounting ------------------------------------------------------------------------------
def test_a_cached_torrent_gets_its_rollups_from_the_record_or_the_history(repo650, sent):
    torrents, _ = sent
    source = PackSource(GitRepo(repo650))
    try:
        manifest, _ = select_refs(source, [], all_refs=True)
        cached = build_repo_torrent(source, manifest, "all")
        assert cached.rollups is None and cached.torrent == torrents["all"].torrent  # from the cache
        assert rollup_boundaries(cached) == [r.boundary for r in torrents["all"].rollups if not r.tags]
        assert rollup_boundaries(cached, tags=True) == [r.boundary for r in torrents["all"].rollups if r.tags]
        source.cache._query("DELETE FROM rollups")
        assert with_rollups(source, cached).rollups == torrents["all"].rollups  # planned again
        assert with_rollups(source, cached).rollups == torrents["all"].rollups  # as recorded then
        assert source.cache.rollups(ROLLUP_SPAN, rollup_boundaries(cached)) == {
            r.boundary: r for r in torrents["all"].rollups if not r.tags}
        assert source.cache.rollups(TAG_GROUP_SPAN, rollup_boundaries(cached, tags=True)) == {
            r.boundary: r for r in torrents["all"].rollups if r.tags}
    finally:
        source.close()
        source.repo.close()


def test_a_torrent_build_writes_its_rollups_files_as_it_hashes_them(repo650, sent, tmp_path):
    """Each roll-up's and tag group's file, whole, beside the pack cache of the repository the
    torrent is built from (and nothing left half-written); the torrent is the same."""
    torrents, source = sent
    repo = _copy_without_rollup_files(repo650, str(tmp_path / "repo"))
    cache = sqlite3.connect(os.path.join(repo, ".git", "gitp2p", "cache.sqlite3"), isolation_level=None)
    cache.execute("DELETE FROM torrents")  # built again, not found
    cache.close()
    copy = PackSource(GitRepo(repo))
    try:
        manifest, _ = select_refs(copy, [], all_refs=True)
        t = build_repo_torrent(copy, manifest, "all")
        assert t.torrent == torrents["all"].torrent
        sizes = dict(t.files)
        files = copy.rollup_files
        assert sorted(os.listdir(files.dir)) == sorted(os.path.basename(files.path(r, sizes[r.path])) for r in t.rollups)
        for r in t.rollups:
            with open(files.path(r, sizes[r.path]), "rb") as fh:
                assert fh.read() == b"".join(rollup_chunks(source, r))
    finally:
        copy.close()
        copy.repo.close()


def test_a_rollup_is_served_from_its_file_written_once(repo650, sent, tmp_path, monkeypatch):
    """With roll-up files (as the mount has them): the first open writes a roll-up's file
    whole, any range reads exactly (from the page cache or, once dropped, from the disk), and
    a later store (a later mount) opens the file without asking the pack cache for a member."""
    torrents, source = sent
    sizes = dict(torrents["all"].files)
    rollups = torrents["all"].rollups
    files = RollupFiles(str(tmp_path / "gitp2p"), max_bytes=64 << 20)
    expected = {r.boundary: b"".join(rollup_chunks(source, r)) for r in rollups}
    rng = random.Random(7)

    async def main(store, drop):
        for r in rollups:
            content = RollupContent(r, sizes[r.path])
            fd = await store.open_rollup(content)
            assert fd is not None
            try:
                if drop:  # the file's pages are dropped: reads go to a worker thread
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                ranges = [(rng.randrange(content.size + 10), rng.choice([1, 4096, 131072, 1 << 20])) for _ in range(40)]
                for off, size in [(0, content.size), *ranges]:
                    assert await store.read_file(fd, content.size, off, size) == expected[r.boundary][off : off + size]
            finally:
                os.close(fd)
            with open(files.path(r, content.size), "rb") as fh:
                assert fh.read() == expected[r.boundary]

    trio.run(main, PackStore(source, rollup_files=files), False)
    queries = []
    monkeypatch.setattr(source.cache, "datas", lambda fmt, ids: queries.append(ids) or {})
    trio.run(main, PackStore(source, rollup_files=files), True)
    assert queries == []


def test_rollup_files_keep_their_bound_and_a_damaged_one_is_written_again(repo650, sent, tmp_path):
    """A file that does not fit without removing one used lately is not written (the roll-up
    is served in chunks); one used long ago makes room; one of the wrong size is written again."""
    torrents, source = sent
    sizes = dict(torrents["all"].files)
    r1, r2 = [r for r in torrents["all"].rollups if not r.tags][:2]
    files = RollupFiles(str(tmp_path / "gitp2p"), max_bytes=max(sizes[r1.path], sizes[r2.path]) + 100)  # room for one
    store = PackStore(source, rollup_files=files)
    c1, c2 = RollupContent(r1, sizes[r1.path]), RollupContent(r2, sizes[r2.path])
    expected2 = b"".join(rollup_chunks(source, r2))

    async def main():
        os.close(await store.open_rollup(c1))
        assert await store.open_rollup(c2) is None  # c1's file was used just now
        assert not os.path.exists(files.path(r2, c2.size))
        assert await store.read_range(c2, 0, c2.size) == expected2
        os.utime(files.path(r1, c1.size), ns=(0, 0))  # used long ago
        os.close(await store.open_rollup(c2))
        assert not os.path.exists(files.path(r1, c1.size))
        os.truncate(files.path(r2, c2.size), 10)
        fd = await store.open_rollup(c2)
        try:
            assert await store.read_file(fd, c2.size, 0, c2.size) == expected2
        finally:
            os.close(fd)
        assert sorted(os.listdir(files.dir)) == [os.path.basename(files.path(r2, c2.size))]

    trio.run(main)
    assert store.rollup_files is files  # nothing failed


def test_read_range_serves_any_range_from_a_small_read_cache(repo650, sent, caplog):
    torrents, source = sent
    store = PackStore(source, read_cache_bytes=64 << 10)  # far less than a roll-up
    rollups = torrents["all"].rollups
    sizes = dict(torrents["all"].files)
    expected = {r.boundary: b"".join(rollup_chunks(source, r)) for r in rollups}
    rng = random.Random(5)

    async def main():
        contents = [RollupContent(r, sizes[r.path]) for r in rollups]
        ranges = [(c, rng.randrange(c.size + 10), rng.choice([1, 100, 131072])) for c in contents for _ in range(60)]
        found = {}

        async def read(i, content, off, size):
            found[i] = await store.read_range(content, off, size)

        async with trio.open_nursery() as nursery:  # at once, as the kernel's readahead asks
            for i, (content, off, size) in enumerate(ranges):
                nursery.start_soon(read, i, content, off, size)
        for i, (content, off, size) in enumerate(ranges):
            assert found[i] == expected[content.rollup.boundary][off : off + size], (off, size)
        largest = max(max(len(source.pack(c)) for r in rollups for c in r.members), header_size(len(rollups[0].members)))
        assert store._recent.weight + store._chunks.weight <= (64 << 10) + max(largest, store.rollup_chunk)

        # Members that fall short of the listed size (a bug) still give whole ranges, and say so.
        wrong = RollupContent(rollups[0], sizes[rollups[0].path] + 10)
        with caplog.at_level(logging.ERROR):
            tail = await store.read_range(wrong, wrong.size - 20, 4096)
        assert tail == expected[rollups[0].boundary][-10:] + bytes(10)
        assert "the torrent lists" in caplog.text

    trio.run(main)


def test_a_rollup_read_through_is_assembled_once_per_chunk_within_the_read_cache(repo650, sent, monkeypatch):
    """A reader going through a roll-up (a client checking it) costs one query to the pack
    cache per chunk, chunks read ahead included, and the read cache stays within its bound."""
    torrents, source = sent
    budget = 1 << 20
    store = PackStore(source, read_cache_bytes=budget)
    assert store.rollup_chunk * (1 + ROLLUP_AHEAD) <= budget // ROLLUP_SHARE
    rollup = torrents["all"].rollups[0]
    expected = b"".join(rollup_chunks(source, rollup))
    queries = []
    datas = source.cache.datas
    monkeypatch.setattr(source.cache, "datas", lambda fmt, ids: queries.append(len(ids)) or datas(fmt, ids))
    chunks = -(-len(expected) // store.rollup_chunk)
    assert chunks > 2

    async def main():
        content = RollupContent(rollup, len(expected))
        pack = store.content(rollup.members[0])
        await store.read(pack)
        got = bytearray()
        for off in range(0, len(expected), 131072):
            got += await store.read_range(content, off, 131072)
            assert store._recent.weight + store._chunks.weight <= budget
        assert got == expected
        assert len(expected) > budget // ROLLUP_SHARE and store.read_nowait(pack) is not None  # packs stay
        assert store._chunks and all(len(chunk) <= store.rollup_chunk for chunk in store._chunks.values())
        assert store._chunks.weight <= budget // ROLLUP_SHARE

    trio.run(main)
    assert len(queries) == chunks  # each chunk once (a chunk wholly header needs no query)
    assert sum(queries) >= len(rollup.members)


def test_contributed_rollups_make_a_directory_inside_packs(repo650):
    with GitRepo(repo650) as repo:
        snap = read_snapshot(repo, None)

    def rollups(snapshot):
        yield "packs/rollups/a.rollup", File(StaticContent(b"a"), 1)
        yield "packs/rollups/b.rollup", File(StaticContent(b"b"), 2)
        yield "packs/0123456789012345678901234567890123456789.pack/x", File(StaticContent(b"x"), 1)  # skipped

    layout = build_layout(snap, pack_content=lambda cid: StaticContent(b"pack " + cid, key=("pack", cid)),
                          readme=b"readme\n", started=1, contributors=[rollups])
    packs = layout.directory("packs")
    assert isinstance(packs, PackDir) and packs.get("rollups") == Dir("packs/rollups")
    assert packs.subdir_count() == 1
    inside = layout.directory("packs/rollups")
    assert [inside.name_at(i) for i in range(len(inside))] == ["a.rollup", "b.rollup"]
    assert "packs/0123456789012345678901234567890123456789.pack" not in layout.dirs


def _walked_fs(ids: list[bytes], contributors=()) -> tuple[PackFS, list[str]]:
    """A PackFS on a layout of these commits (and contributed files), and the paths its
    on_walk is called with."""
    snap = RepoSnapshot({}, None, CommitList(ids, [1] * len(ids)))
    layout = build_layout(snap, pack_content=lambda cid: StaticContent(b"pack " + cid, key=("pack", cid)),
                          readme=b"readme\n", started=1, contributors=contributors)

    class Sizes:
        async def size(self, content):
            return content.size_nowait()

    fs = PackFS(layout, Sizes(), started=1)
    walks: list[str] = []
    fs.on_walk = walks.append
    return fs, walks


def test_a_walk_of_few_names_in_a_long_packs_dir_lists_nothing():
    """A torrent with roll-ups names few files in packs/ (its tail and tags): looking those up
    does not make the server list 100,000 entries (an inode each); looking up a share does."""
    ids = [b"%040x" % i for i in range(WALK_SHARE * WALK_LOOKUPS * 4)]
    fs, walks = _walked_fs(ids)

    async def look_up(names):
        packs = await fs.lookup(1, b"packs", None)
        for name in names:
            await fs.lookup(packs.st_ino, name, None)

    trio.run(look_up, [cid + b".pack" for cid in ids[: WALK_LOOKUPS * 2]])
    assert walks == []
    trio.run(look_up, [cid + b".pack" for cid in ids[: len(ids) // WALK_SHARE]])
    assert walks == ["packs"]


def test_a_walk_of_the_rollups_lists_them():
    """A check looks every roll-up up by name in packs/rollups/ (a few hundred to 2,000 of
    them): after WALK_LOOKUPS lookups the server lists that directory, once."""
    names = [f"{i:040x}.rollup" for i in range(WALK_LOOKUPS * 3)]

    def rollups(snapshot):
        for name in names:
            yield f"packs/rollups/{name}", File(StaticContent(name.encode()), 1)

    fs, walks = _walked_fs([b"%040x" % i for i in range(10)], [rollups])

    async def look_up(names):
        packs = await fs.lookup(1, b"packs", None)
        inside = await fs.lookup(packs.st_ino, b"rollups", None)
        for name in names:
            await fs.lookup(inside.st_ino, name.encode(), None)

    trio.run(look_up, names[: WALK_LOOKUPS - 1])
    assert walks == []
    trio.run(look_up, names)
    assert walks == ["packs/rollups"]


def test_a_tag_pack_is_read_with_the_tags_listed_after_it():
    ids = [f"{i:040x}".encode() for i in range(3)]
    tags = {b"c" * 40: 1, b"a" * 40: 2, b"b" * 40: 3}
    packs = PackDir(CommitList(ids, [1] * len(ids)), lambda cid: StaticContent(cid), tags)
    assert packs.tags_after(b"a" * 40, 5) == [b"b" * 40, b"c" * 40]
    assert packs.tags_after(b"b" * 40, 1) == [b"c" * 40]
    assert packs.tags_after(b"c" * 40, 5) == []
    assert packs.tags_after(b"d" * 40, 5) == packs.tags_after(ids[0], 5) == []
    assert packs.commits_after(b"a" * 40, 5) == []
