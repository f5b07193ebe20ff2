"""The mount without mounting: layout, inode numbers, ref refresh, pack store and the error boundary."""

from __future__ import annotations

import errno
import os

import pyfuse3
import pytest

from gitfs_p2p.pack.manifest import RefManifest
import trio

from gitfs_p2p.git.repo import GitRepo
from gitfs_p2p.mount.fs import PackFS
from gitfs_p2p.mount.service import MountService
from gitfs_p2p.git.snapshot import read_snapshot
from gitfs_p2p.mount.store import PackStore
from gitfs_p2p.store.builders import Workers
from gitfs_p2p.mount.layout import (
    Dir,
    File,
    Inodes,
    Link,
    PackDir,
    RepoSnapshot,
    StaticContent,
    build_layout,
    pack_name,
)
from gitfs_p2p.store.source import PackSource
from testutil import git


def _snapshot(repo_path: str) -> RepoSnapshot:
    with GitRepo(repo_path) as repo:
        return read_snapshot(repo, None)


def _layout(snapshot, contributors=()):
    return build_layout(
        snapshot,
        pack_content=lambda cid: StaticContent(b"pack " + cid, key=("pack", cid)),
        readme=b"readme\n",
        started=1_700_000_000,
        contributors=contributors,
    )


def test_snapshot_lists_every_reachable_commit_parents_first(repo60):
    snap = _snapshot(repo60)
    want = set(git("rev-list", "--all", cwd=repo60).split())
    assert {c.decode() for c in snap.commits.ids} == want
    position = snap.commits.index
    for cid in snap.commits.ids[:20]:
        for parent in git("rev-parse", f"{cid.decode()}^@", cwd=repo60).split():
            assert position[parent.encode()] < position[cid]
    # annotated tag peeled, HEAD present
    assert snap.refs["refs/tags/v0.1"].decode() == git("rev-parse", "v0.1^{commit}", cwd=repo60).strip()
    assert snap.refs["HEAD"] == snap.refs["refs/heads/main"]
    assert snap.head == "refs/heads/main"


def test_layout_paths_links_and_mtimes(repo60):
    snap = _snapshot(repo60)
    layout = _layout(snap)
    root = layout.directory("")
    assert [root.name_at(i) for i in range(len(root))] == ["HEAD", "README", "packs", "refs", "torrents"]
    packs = layout.directory("packs")
    # a pack per commit and per annotated tag, and the HEAD and all manifests from the start
    assert snap.tags, "the history has an annotated tag"
    assert isinstance(packs, PackDir) and len(packs) == len(snap.commits) + len(snap.tags) + 2
    names = {packs.name_at(i) for i in range(len(packs))}
    assert {"HEAD.gitp2p-refs", "all.gitp2p-refs"} <= names
    for tag, mtime in snap.tags.items():
        assert packs.get(pack_name(tag)).mtime == mtime == int(
            git("for-each-ref", "--format=%(taggerdate:unix)", "refs/tags/v0.1", cwd=repo60))
    # a manifest for any label `gitp2p torrent REPO REF...` makes, found by name
    manifest = RefManifest.from_bytes(packs.get("v0.1+main.gitp2p-refs").content.data)
    assert set(manifest.refs) == {"refs/tags/v0.1", "refs/heads/main"}
    assert manifest.refs["refs/tags/v0.1"] == git("rev-parse", "v0.1", cwd=repo60).strip()
    with pytest.raises(KeyError):
        packs.get("no-such-branch.gitp2p-refs")
    main = snap.refs["refs/heads/main"]
    link = layout.directory("refs/heads").get("main")
    assert link == Link(f"../../packs/{pack_name(main)}", snap.commits.time_of(main))
    assert layout.directory("").get("HEAD").target == f"packs/{pack_name(main)}"
    entry = packs.get(pack_name(main))
    assert isinstance(entry, File)
    assert entry.mtime == int(git("log", "-1", "--format=%ct", main.decode(), cwd=repo60))
    with pytest.raises(KeyError):
        packs.get("0" * 40 + ".pack")
    with pytest.raises(KeyError):
        layout.directory("refs/nothing")


def test_contributors_add_files_but_never_replace(repo60):
    snap = _snapshot(repo60)
    main = snap.refs["refs/heads/main"]

    def torrents(snapshot):
        yield "packs/main.gitp2p-refs", File(StaticContent(b"manifest\n"), 1)
        yield "torrents/main.torrent", File(StaticContent(b"d4:infod...ee"), 1)
        yield f"packs/{pack_name(main)}", File(StaticContent(b"evil"), 1)  # conflicts: skipped
        yield "refs/heads/main", File(StaticContent(b"evil"), 1)  # conflicts: skipped

    layout = _layout(snap, [torrents])
    packs = layout.directory("packs")
    assert packs.name_at(len(packs) - 1) == "main.gitp2p-refs"
    assert packs.get("main.gitp2p-refs").content.data == b"manifest\n"
    assert layout.directory("torrents").get("main.torrent").content.data == b"d4:infod...ee"
    assert packs.get(pack_name(main)).content.data == b"pack " + main
    assert isinstance(layout.directory("refs/heads").get("main"), Link)

    def broken(snapshot):
        raise RuntimeError("contributor bug")

    assert len(_layout(snap, [broken]).directory("packs")) == len(snap.commits) + len(snap.tags) + 2


def test_inode_numbers_are_stable_and_never_reused():
    inodes = Inodes()
    a = inodes.ino_for(1, "packs", Dir("packs"))
    assert inodes.ino_for(1, "packs", Dir("packs")) == a
    content = StaticContent(b"x", key=("pack", b"1" * 40))
    f1 = inodes.ino_for(a, "x.pack", File(content, 5))
    assert inodes.ino_for(a, "x.pack", File(StaticContent(b"x", key=("pack", b"1" * 40)), 5)) == f1
    l1 = inodes.ino_for(1, "HEAD", Link("packs/a.pack", 1))
    l2 = inodes.ino_for(1, "HEAD", Link("packs/b.pack", 2))
    assert len({a, f1, l1, l2, Inodes.ROOT}) == 5
    assert inodes.node(l1)[2].target == "packs/a.pack"  # the old link still answers
    with pytest.raises(KeyError):
        inodes.node(9999)


def test_refresh_reads_new_commits_incrementally_and_starts_over_on_rewind(moving_repo):
    first = _snapshot(moving_repo)
    old_main = first.refs["refs/heads/main"]
    with open(os.path.join(moving_repo, "new.txt"), "w") as fh:
        fh.write("new\n")
    git("add", "new.txt", cwd=moving_repo)
    git("commit", "-q", "-m", "one more", cwd=moving_repo)
    git("commit", "-q", "--allow-empty", "-m", "and another", cwd=moving_repo)
    with GitRepo(moving_repo) as repo:
        second = read_snapshot(repo, first)
        assert read_snapshot(repo, second) is second  # nothing moved
    assert second.commits.ids[: len(first.commits)] == first.commits.ids
    assert len(second.commits) == len(first.commits) + 2
    assert second.commits.ids[-1].decode() == git("rev-parse", "HEAD", cwd=moving_repo).strip()
    # A rewind drops commits: the list is rebuilt and matches a fresh walk.
    git("reset", "-q", "--hard", old_main.decode(), cwd=moving_repo)
    with GitRepo(moving_repo) as repo:
        third = read_snapshot(repo, second)
    assert set(third.commits.ids) == set(_snapshot(moving_repo).commits.ids) == set(first.commits.ids)


def test_a_new_mount_starts_from_the_history_kept_in_the_cache(tmp_path, repo60, monkeypatch, caplog):
    """The commits of the last snapshot are kept in the pack cache: a new mount of the same
    refs reads no commit, one of refs moved forward reads only the new commits, and a
    rewind or a damaged row reads the history again; each time the same commits as a
    fresh walk."""
    import shutil

    import gitfs_p2p.git.snapshot as snapshot_mod
    from gitfs_p2p.store.cache import PackCache

    repo = str(tmp_path / "copy")
    shutil.copytree(repo60, repo, symlinks=True, ignore=shutil.ignore_patterns("gitp2p"))
    walks = []
    real_walk = snapshot_mod.read_history
    monkeypatch.setattr(snapshot_mod, "read_history", lambda r, tips: walks.append(tips) or real_walk(r, tips))

    def walked_ids():  # the oracle: a fresh walk, not counted
        with GitRepo(repo) as r:
            return [c.id for c in real_walk(r, sorted(set(r.refs().values())))]

    def mount_snapshot():
        cache = PackCache(os.path.join(repo, ".git"))
        try:
            with GitRepo(repo) as r:
                return read_snapshot(r, None, cache)
        finally:
            cache.close()

    first = mount_snapshot()
    assert len(walks) == 1 and first.commits.ids == walked_ids()
    again = mount_snapshot()
    assert len(walks) == 1 and again.commits == first.commits and again.refs == first.refs
    old_main = first.refs["refs/heads/main"]
    git("commit", "-q", "--allow-empty", "-m", "one more", cwd=repo)
    moved = mount_snapshot()
    assert len(walks) == 1  # only the new commit was read
    assert moved.commits.ids == first.commits.ids + [git("rev-parse", "HEAD", cwd=repo).strip().encode()]
    assert mount_snapshot().commits == moved.commits and len(walks) == 1
    git("reset", "-q", "--hard", f"{old_main.decode()}~3", cwd=repo)  # a rewind: commits leave
    rewound = mount_snapshot()
    assert len(walks) == 2 and rewound.commits.ids == walked_ids()
    assert len(rewound.commits) < len(first.commits)
    cache = PackCache(os.path.join(repo, ".git"))
    try:
        cache._db.execute("UPDATE history SET times = X'00'")
    finally:
        cache.close()
    with caplog.at_level("WARNING"):
        damaged = mount_snapshot()
    assert len(walks) == 3 and damaged.commits == rewound.commits and "damaged" in caplog.text


def _mapped_kb(path_part: str, suffix: str = ".pack") -> int:
    """Resident KB of this process's mappings of pack files (or, with suffix ".idx", their
    indexes) whose path holds path_part."""
    total, counting = 0, False
    with open("/proc/self/smaps") as fh:
        for line in fh:
            fields = line.split()
            if fields and "-" in fields[0] and not fields[0].endswith(":"):
                counting = len(fields) > 5 and path_part in fields[5] and fields[5].endswith(suffix)
            elif counting and fields[0] == "Rss:":
                total += int(fields[1])
    return total


def test_a_history_walk_does_not_keep_the_pack_pages_it_read(tmp_path):
    """dulwich maps pack files whole; the walk lets go of the pages it touched, so a
    large history does not count its pack file in RSS (GitRepo.drop_mapped_pages)."""
    from testutil import generate

    from gitfs_p2p.git.walk import read_history

    repo = str(tmp_path / "repo")
    generate(repo, 300, seed=5)
    git("gc", "-q", cwd=repo)
    pack_dir = os.path.join(repo, ".git", "objects", "pack")
    with GitRepo(repo) as r:
        tips = sorted(set(r.refs().values()))
        for tip in tips:  # read without the walk: the pages stay
            r.read_raw(tip)
        for info in read_history(r, tips)[:50]:
            r.read_raw(info.tree)
        assert _mapped_kb(pack_dir) > 0 and _mapped_kb(pack_dir, ".idx") > 0
        r.drop_mapped_pages()
        assert _mapped_kb(pack_dir) == 0
        assert _mapped_kb(pack_dir, ".idx") == 0  # the index's pages too
        assert len(read_history(r, tips)) == 300
        assert _mapped_kb(pack_dir) == 0  # the walk drops them itself


def test_packs_built_in_this_process_do_not_keep_the_pack_pages(tmp_path, monkeypatch):
    """`gitp2p packs -j 1` builds in its own process: every DROP_PAGES_EVERY packs it lets go
    of the pack pages the builds touched, as a worker does after each job."""
    from testutil import generate

    from gitfs_p2p.store import source as source_module

    repo = str(tmp_path / "repo")
    generate(repo, 120, seed=5)
    git("gc", "-q", cwd=repo)
    pack_dir = os.path.join(repo, ".git", "objects", "pack")
    monkeypatch.setattr(source_module, "DROP_PAGES_EVERY", 20)
    with GitRepo(repo) as r:
        source = PackSource(r)
        try:
            commits = source.commits()
            r.drop_mapped_pages()  # the walk's own
            assert [size for _, size in source.sizes(commits[:60])]
            assert _mapped_kb(pack_dir) == 0  # 60 built: dropped after the 60th
            assert [size for _, size in source.sizes(commits[60:70])]
            assert _mapped_kb(pack_dir) > 0  # 10 more: held until the 80th
        finally:
            source.close()


class CountingSource(PackSource):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.builds = 0

    def _build(self, commit_id):
        self.builds += 1
        return super()._build(commit_id)


def test_sizes_then_reads_build_each_pack_once(tmp_path, repo60):
    import shutil

    repo = str(tmp_path / "copy")
    shutil.copytree(repo60, repo, symlinks=True, ignore=shutil.ignore_patterns("gitp2p"))
    snap = _snapshot(repo)
    source = CountingSource(GitRepo(repo))
    seen = []
    store = PackStore(source, read_cache_bytes=1 << 20, progress=lambda d, t: seen.append((d, t)))

    async def main():
        await store.ensure_pack_sizes(snap.commits.ids)
        await store.ensure_pack_sizes(snap.commits.ids)
        assert source.builds == len(snap.commits)
        async with trio.open_nursery() as nursery:
            for cid in snap.commits.ids:
                nursery.start_soon(store.read, store.content(cid))
        for cid in snap.commits.ids[::7]:
            data = await store.read(store.content(cid))
            assert len(data) == store.sizes[cid]

    trio.run(main)
    assert source.builds == len(snap.commits)
    assert seen[0] == (0, len(snap.commits)) and seen[-1] == (len(snap.commits), len(snap.commits))
    # A new store (a new mount) takes every size from the persistent cache.
    fresh = CountingSource(GitRepo(repo))
    again = PackStore(fresh)
    trio.run(again.ensure_pack_sizes, snap.commits.ids)
    assert fresh.builds == 0 and again.sizes == store.sizes
    source.close()
    fresh.close()


def test_operations_translate_errors_at_one_boundary(repo60):
    """Handlers called directly: ENOENT, EROFS, exact reads past the end, bugs become EIO."""
    source = PackSource(GitRepo(repo60))
    service = MountService(source, "/nonexistent")

    async def main():
        snap = await trio.to_thread.run_sync(service._read_snapshot, None)
        fs = PackFS(service._layout(snap), service.store, started=1)
        root = pyfuse3.ROOT_INODE
        with pytest.raises(pyfuse3.FUSEError) as err:
            await fs.lookup(root, b"nope", None)
        assert err.value.errno == errno.ENOENT
        packs = await fs.lookup(root, b"packs", None)
        main_id = snap.refs["refs/heads/main"]
        attr = await fs.lookup(packs.st_ino, pack_name(main_id).encode(), None)
        assert attr.st_mode & 0o777 == 0o444 and attr.st_size == len(source.pack(main_id))
        assert (await fs.getattr(attr.st_ino, None)).st_ino == attr.st_ino
        with pytest.raises(pyfuse3.FUSEError) as err:
            await fs.open(attr.st_ino, os.O_WRONLY, None)
        assert err.value.errno == errno.EROFS
        for refused in (fs.write(1, 0, b"x"), fs.mkdir(root, b"d", 0o755, None), fs.unlink(root, b"README", None)):
            with pytest.raises(pyfuse3.FUSEError) as err:
                await refused
            assert err.value.errno == errno.EROFS
        info = await fs.open(attr.st_ino, os.O_RDONLY, None)
        assert info.keep_cache and not info.direct_io
        assert await fs.read(info.fh, 0, attr.st_size + 100) == source.pack(main_id)
        assert await fs.read(info.fh, attr.st_size, 10) == b""
        await fs.release(info.fh)
        head = await fs.lookup(root, b"HEAD", None)
        assert await fs.readlink(head.st_ino, None) == f"packs/{pack_name(main_id)}".encode()

        class Broken:
            key = "broken"

            def size_nowait(self):
                raise ZeroDivisionError("a bug")

        fs.inodes._nodes[424242] = (root, "broken", File(Broken(), 0))
        with pytest.raises(pyfuse3.FUSEError) as err:
            await fs.getattr(424242, None)
        assert err.value.errno == errno.EIO

    try:
        trio.run(main)
    finally:
        source.close()
        source.repo.close()


def test_worker_processes_serve_the_same_bytes_and_snapshots(repo60, tmp_path):
    """The mount's PackSource builds nothing itself: worker processes (spawned, recycled
    after a few jobs here) build, read snapshots and make torrents; same answers as here."""
    import shutil

    from gitfs_p2p.store.torrents import build_repo_torrent, select_refs

    repo = str(tmp_path / "copy")
    shutil.copytree(repo60, repo, symlinks=True, ignore=shutil.ignore_patterns("gitp2p"))
    here = PackSource(GitRepo(repo))
    workers = Workers(repo, cache_bytes=0, tasks_per_worker=2)  # a new process every two jobs
    remote = PackSource(git_dir=here.git_dir, cache_bytes=0, workers=workers)
    store = PackStore(remote)
    snap = _snapshot(repo)
    try:
        async def main():
            await store.ensure_pack_sizes(snap.commits.ids)
            for cid in snap.commits.ids[::5]:
                assert await store.read(store.content(cid)) == here.pack(cid)

        trio.run(main)
        assert store.sizes == {cid: len(here.pack(cid)) for cid in snap.commits.ids}
        assert workers.snapshot(None) == snap
        manifest, label = select_refs(here, [], all_refs=True)
        assert workers.torrent(manifest, label).info_hash == build_repo_torrent(here, manifest, label).info_hash
    finally:
        workers.close()
        store.close()
        here.close()
        here.repo.close()


def test_refs_signature_sees_every_kind_of_ref_change(moving_repo):
    from gitfs_p2p.git.snapshot import refs_signature

    git_dir = os.path.join(moving_repo, ".git")
    before = refs_signature(git_dir)
    assert refs_signature(git_dir) == before
    changes = [
        ("commit", "-q", "--allow-empty", "-m", "x"),
        ("tag", "-a", "t1", "-m", "tag"),
        ("pack-refs", "--all"),
        ("branch", "b2"),
        ("checkout", "-q", "b2"),
    ]
    for change in changes:
        git(*change, cwd=moving_repo)
        after = refs_signature(git_dir)
        assert after != before, change
        before = after
    # A worker process reads the same snapshot this process would, extending the previous one.
    previous = _snapshot(moving_repo)
    workers = Workers(moving_repo, cache_bytes=0)
    try:
        assert workers.snapshot(previous) == previous
        git("commit", "-q", "--allow-empty", "-m", "y", cwd=moving_repo)
        child = workers.snapshot(previous)
    finally:
        workers.close()
    here = _snapshot(moving_repo)
    assert child.refs == here.refs and child.head == here.head == "refs/heads/b2"
    assert child.commits.ids[: len(previous.commits)] == previous.commits.ids
    assert set(child.commits.ids) == set(here.commits.ids)


def test_a_mount_is_found_through_a_symlinked_directory(tmp_path):
    """The kernel lists a mountpoint under its real directory: a path through a symlink to
    that directory must find it too (a bench run from a symlinked checkout left its mounts
    behind, its unmount finding nothing there).  /proc is a real mount on every Linux."""
    from gitfs_p2p.mount.daemon import find_mount, kernel_path

    (tmp_path / "root").symlink_to("/")
    assert find_mount("/proc") == "proc"
    assert kernel_path(str(tmp_path / "root" / "proc")) == "/proc"
    assert find_mount(str(tmp_path / "root" / "proc")) == "proc"
    assert find_mount(str(tmp_path / "root")) is None  # the symlink itself is no mountpoint


def test_stopped_workers_cancel_their_queued_builds(repo60, tmp_path, monkeypatch):
    """When a mount ends while its worker builds are queued (a cold mount of a big history
    queues thousands), stop() cancels every job no worker has taken: the thread waiting on
    them gets WorkersStopped at once and the rest is never built, where before the server
    waited for every queued build after its unmount (ten minutes of both cores on the
    200,000-commit history).  The one worker is kept busy by 30 jobs of 0.2 s queued first,
    so the 60 builds (one pack a job) are all still queued when stop() comes."""
    import shutil
    import threading
    import time

    from gitfs_p2p.pack.commitpack import FORMAT_VERSION
    from gitfs_p2p.store import builders
    from gitfs_p2p.store.builders import WorkersStopped
    from gitfs_p2p.store.cache import PackCache

    repo = str(tmp_path / "copy")
    shutil.copytree(repo60, repo, symlinks=True, ignore=shutil.ignore_patterns("gitp2p"))
    ids = [c.decode() for c in _snapshot(repo).commits.ids]
    monkeypatch.setattr(builders, "BUILD_CHUNK", 1)  # the ids are cut into jobs in this process
    workers = Workers(repo, cache_bytes=0, workers=1)
    outcome = []

    def build():
        try:
            outcome.append(workers.build(ids))
        except WorkersStopped as exc:
            outcome.append(exc)

    try:
        workers.start()
        busy = [workers._submit(time.sleep, 0.2) for _ in range(30)]
        thread = threading.Thread(target=build)
        thread.start()
        for _ in range(600):  # until the thread's 60 jobs are queued behind them (bounded)
            if len(workers._jobs) >= len(busy) + len(ids) or not thread.is_alive():
                break
            time.sleep(0.01)
        workers.stop()
        thread.join(60)
        assert not thread.is_alive()
        assert sum(f.cancelled() for f in busy) >= len(busy) - 5
        with pytest.raises(WorkersStopped):
            workers.snapshot(None)  # nothing new is taken either
    finally:
        workers.close()
    assert len(outcome) == 1 and isinstance(outcome[0], WorkersStopped), outcome
    cache = PackCache(os.path.join(repo, ".git"))
    try:
        assert cache.sizes(FORMAT_VERSION, ids) == {}  # not one of the queued builds ran
    finally:
        cache.close()
