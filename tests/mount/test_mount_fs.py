"""A real mount, read by real tools: ls, stat, cp, git index-pack, threads, mmap; writes refused."""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import sys
import shutil
import stat
import subprocess
import threading

import pytest

from gitfs_p2p.git.repo import GitRepo
from gitfs_p2p.store.source import PackSource
from mounthelp import cli, needs_fuse, wait_for
from testutil import git

pytestmark = [needs_fuse, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def expected(repo60):
    """commit hex -> the bytes `gitp2p pack` writes (the same PackSource, in this process)."""
    source = PackSource(GitRepo(repo60))
    try:
        yield {cid: source.pack(cid.encode()) for cid in git("rev-list", "--all", cwd=repo60).split()}
    finally:
        source.close()
        source.repo.close()


def test_ls_shows_the_layout(mounted60, repo60):
    assert sorted(os.listdir(mounted60.path)) == ["HEAD", "README", "packs", "refs", "torrents"]
    commits = set(git("rev-list", "--all", cwd=repo60).split())
    tags = set(git("for-each-ref", "--format=%(objectname)", "refs/tags/v0.1", cwd=repo60).split())
    # a pack per commit and per annotated tag; the HEAD and all manifests from the first moment
    assert sorted(os.listdir(mounted60.p("packs"))) == sorted(
        [f"{c}.pack" for c in commits | tags] + ["HEAD.gitp2p-refs", "all.gitp2p-refs"])
    heads = set(git("for-each-ref", "--format=%(refname:lstrip=2)", "refs/heads", cwd=repo60).split())
    assert set(os.listdir(mounted60.p("refs", "heads"))) == heads
    assert set(os.listdir(mounted60.p("refs", "tags"))) == {"v0.1", "light"}
    # torrents appear once built, or at once when the pack cache holds them (an earlier mount)
    assert set(os.listdir(mounted60.p("torrents"))) <= {"HEAD.torrent", "all.torrent"}
    with open(mounted60.p("README")) as fh:
        assert "packs/<commit-id>.pack" in fh.read()
    listing = subprocess.run(["ls", "-l", mounted60.p("packs")], capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0 and len(listing.stdout.splitlines()) == len(commits) + len(tags) + 2 + 1


def test_stat_is_exact_read_only_and_stable(mounted60, repo60, expected):
    for cid, data in list(expected.items())[:15]:
        st = os.stat(mounted60.p("packs", f"{cid}.pack"))
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o444
        assert st.st_size == len(data)
        assert st.st_mtime == int(git("log", "-1", "--format=%ct", cid, cwd=repo60))
        assert os.stat(mounted60.p("packs", f"{cid}.pack")).st_ino == st.st_ino
    main = git("rev-parse", "main", cwd=repo60).strip()
    link = os.lstat(mounted60.p("refs", "heads", "main"))
    assert stat.S_ISLNK(link.st_mode)
    assert os.readlink(mounted60.p("refs", "heads", "main")) == f"../../packs/{main}.pack"
    assert os.readlink(mounted60.p("HEAD")) == f"packs/{main}.pack"
    tag = git("rev-parse", "v0.1^{commit}", cwd=repo60).strip()
    assert os.readlink(mounted60.p("refs", "tags", "v0.1")) == f"../../packs/{tag}.pack"  # peeled
    assert os.stat(mounted60.p("refs", "heads", "main")).st_ino == os.stat(mounted60.p("packs", f"{main}.pack")).st_ino


def test_cp_of_packs_and_refs_equals_gitp2p_pack(mounted60, repo60, expected, tmp_path):
    for ref in ("refs/heads/main", "refs/tags/v0.1", "refs/tags/light", "HEAD"):
        dest = tmp_path / ref.replace("/", "_")
        subprocess.run(["cp", mounted60.p(*ref.split("/")), str(dest)], check=True, timeout=60)
        assert dest.read_bytes() == cli_pack(repo60, ref), ref
    for cid, data in expected.items():
        dest = tmp_path / f"{cid}.pack"
        subprocess.run(["cp", mounted60.p("packs", f"{cid}.pack"), str(dest)], check=True, timeout=60)
        assert dest.read_bytes() == data, cid


def test_cp_matches_the_cli_byte_for_byte(mounted60, repo60, tmp_path):
    """The same check through `gitp2p pack -o FILE` for a few commits, no shortcuts."""
    for rev in ("main", "main~3", "v0.1"):
        cid = git("rev-parse", f"{rev}^{{commit}}", cwd=repo60).strip()
        out = cli("pack", repo60, rev, "-o", str(tmp_path / "cli.pack"))
        assert out.returncode == 0, out.stderr
        shutil.copyfile(mounted60.p("packs", f"{cid}.pack"), tmp_path / "mnt.pack")
        assert (tmp_path / "mnt.pack").read_bytes() == (tmp_path / "cli.pack").read_bytes()


def test_packs_from_the_mount_import_next_to_their_parents(mounted60, repo60, tmp_path):
    """Every pack, oldest first, through `git index-pack --fix-thin --stdin`; then fsck is clean."""
    dest = str(tmp_path / "dest")
    git("init", "-q", "--bare", dest)
    order = git("rev-list", "--reverse", "--topo-order", "--all", cwd=repo60).split()
    for cid in order:
        with open(mounted60.p("packs", f"{cid}.pack"), "rb") as fh:
            proc = subprocess.run(
                ["git", "index-pack", "--fix-thin", "--stdin"], cwd=dest, stdin=fh, capture_output=True, timeout=60
            )
        assert proc.returncode == 0, (cid, proc.stderr.decode())
    main = git("rev-parse", "main", cwd=repo60).strip()
    git("update-ref", "refs/heads/main", main, cwd=dest)
    git("fsck", "--full", "--no-dangling", cwd=dest)
    assert git("rev-list", "--count", "main", cwd=dest).strip() == git("rev-list", "--count", "main", cwd=repo60).strip()


def test_eight_concurrent_readers_and_mmap(mounted60, expected):
    biggest = sorted(expected, key=lambda c: len(expected[c]), reverse=True)[:8]
    results: dict[str, bytes] = {}
    errors: list[BaseException] = []

    def reader(cid: str, chunk: int) -> None:
        try:
            parts = []
            with open(mounted60.p("packs", f"{cid}.pack"), "rb", buffering=0) as fh:
                for _ in range(100_000):
                    part = fh.read(chunk)
                    if not part:
                        break
                    parts.append(part)
            results[cid] = b"".join(parts)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(cid, 1000 + 4093 * i)) for i, cid in enumerate(biggest)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and not any(t.is_alive() for t in threads)
    assert all(results[cid] == expected[cid] for cid in biggest)

    cid = biggest[0]
    with open(mounted60.p("packs", f"{cid}.pack"), "rb") as fh:
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            assert len(mm) == len(expected[cid])
            assert mm[len(mm) // 2 :] == expected[cid][len(mm) // 2 :]
            assert mm[:] == expected[cid]
    # Reads at odd offsets and lengths are exact, none short.
    data = expected[cid]
    with open(mounted60.p("packs", f"{cid}.pack"), "rb", buffering=0) as fh:
        for off, size in ((0, 1), (1, 4095), (len(data) - 3, 3), (len(data) - 3, 100), (len(data), 10)):
            assert os.pread(fh.fileno(), size, off) == data[off : off + size]


def test_writes_fail_with_erofs(mounted60, expected):
    pack = mounted60.p("packs", f"{next(iter(expected))}.pack")
    attempts = [
        lambda: open(mounted60.p("new-file"), "wb"),
        lambda: open(mounted60.p("packs", "new.pack"), "xb"),
        lambda: open(pack, "r+b"),
        lambda: open(pack, "ab"),
        lambda: os.truncate(pack, 0),
        lambda: os.rename(pack, mounted60.p("packs", "renamed.pack")),
        lambda: os.unlink(pack),
        lambda: os.mkdir(mounted60.p("dir")),
        lambda: os.rmdir(mounted60.p("torrents")),
        lambda: os.symlink("packs", mounted60.p("link")),
        lambda: os.chmod(pack, 0o644),
        lambda: os.utime(pack, (0, 0)),
    ]
    for attempt in attempts:
        with pytest.raises(OSError) as err:
            attempt()
        assert err.value.errno == errno.EROFS, attempt


def test_moved_refs_show_up_and_open_files_keep_their_bytes(mount_of, moving_repo):
    m = mount_of(moving_repo)
    old = git("rev-parse", "main", cwd=moving_repo).strip()
    old_path = m.p("packs", f"{old}.pack")
    old_ino = os.stat(old_path).st_ino
    held = open(m.p("refs", "heads", "main"), "rb")
    try:
        first = held.read(10)
        with open(os.path.join(moving_repo, "moved.txt"), "w") as fh:
            fh.write("a new file\n")
        git("add", "moved.txt", cwd=moving_repo)
        git("commit", "-q", "-m", "moved while mounted", cwd=moving_repo)
        new = git("rev-parse", "main", cwd=moving_repo).strip()
        target = f"../../packs/{new}.pack"
        assert wait_for(lambda: os.readlink(m.p("refs", "heads", "main")) == target, timeout=30)
        assert os.readlink(m.p("HEAD")) == f"packs/{new}.pack"
        held.seek(0)
        rest = held.read()
        assert rest[:10] == first and rest == open(old_path, "rb").read()
    finally:
        held.close()
    assert os.stat(old_path).st_ino == old_ino
    with open(m.p("refs", "heads", "main"), "rb") as fh:
        assert fh.read() == cli_pack(moving_repo, new)

    git("tag", "-a", "v-moved", "-m", "annotated", cwd=moving_repo)
    git("branch", "side", f"{old}", cwd=moving_repo)
    git("pack-refs", "--all", cwd=moving_repo)
    assert wait_for(lambda: os.path.exists(m.p("refs", "tags", "v-moved")), timeout=30)
    assert os.readlink(m.p("refs", "tags", "v-moved")) == f"../../packs/{new}.pack"
    assert os.readlink(m.p("refs", "heads", "side")) == f"../../packs/{old}.pack"
    git("branch", "-D", "side", cwd=moving_repo)
    assert wait_for(lambda: not os.path.lexists(m.p("refs", "heads", "side")), timeout=30)


def test_a_replaced_name_leads_to_the_new_thing_at_once(mount_of, moving_repo):
    """When a ref moves, the manifest, the torrents and the refs' links at the same names are
    new inodes.  The first lookup after the new layout is in must find them, even right
    after the old ones were looked up: a name the kernel kept led to the old manifest, and a
    seed that added the new torrent at once served the old manifest's bytes as the new
    one's (peers banned it for corrupt pieces)."""
    m = mount_of(moving_repo)
    manifest = m.p("packs", "all.gitp2p-refs")
    with open(manifest, "rb") as fh:
        before = fh.read()
    with open(os.path.join(moving_repo, "replaced.txt"), "w") as fh:
        fh.write("a new file\n")
    git("add", "replaced.txt", cwd=moving_repo)
    git("commit", "-q", "-m", "names replaced while mounted", cwd=moving_repo)
    new = git("rev-parse", "main", cwd=moving_repo).strip()
    new_pack = m.p("packs", f"{new}.pack")  # never looked up before: found once the new layout is in

    def laid_out() -> bool:
        os.stat(manifest)  # the old manifest's name, looked up again and again meanwhile
        os.readlink(m.p("refs", "heads", "main"))
        return os.path.exists(new_pack)

    assert wait_for(laid_out, timeout=30, step=0.01)
    with open(manifest, "rb") as fh:
        after = fh.read()
    assert after != before and new.encode() in after
    assert os.readlink(m.p("refs", "heads", "main")) == f"../../packs/{new}.pack"


def cli_pack(repo: str, rev: str) -> bytes:
    proc = subprocess.run(
        [sys.executable, "-m", "gitfs_p2p.cli", "pack", repo, rev, "-o", "-"], capture_output=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_an_open_file_reads_the_same_bytes_after_its_commit_is_pruned(mount_of, tmp_path):
    """Small caches; the commit of an open pack becomes unreachable and `git gc` prunes it:
    the open file still reads the bytes it had, until it is closed."""
    from testutil import generate

    repo = str(tmp_path / "repo")
    generate(repo, 30, seed=9)
    git("checkout", "-q", "-b", "doomed", "main~3", cwd=repo)
    (tmp_path / "repo" / "doomed.txt").write_text("only on the doomed branch\n" * 200)
    git("add", "doomed.txt", cwd=repo)
    git("commit", "-q", "-m", "doomed", cwd=repo)
    doomed = git("rev-parse", "HEAD", cwd=repo).strip()
    git("checkout", "-q", "main", cwd=repo)
    m = mount_of(repo, "--cache-bytes", "0", "--read-cache", "0", "--poll", "0.2")
    path = m.p("packs", f"{doomed}.pack")
    expected_size = os.stat(path).st_size
    with open(path, "rb") as fh:
        git("branch", "-D", "doomed", cwd=repo)
        git("reflog", "expire", "--expire=now", "--all", cwd=repo)
        git("gc", "-q", "--prune=now", cwd=repo)
        assert subprocess.run(["git", "-C", repo, "cat-file", "-e", doomed]).returncode != 0, "not pruned"
        gone = lambda: f"{doomed}.pack" not in os.listdir(m.p("packs"))  # noqa: E731
        assert wait_for(gone, timeout=30), "the mount never saw the branch go"
        for name in os.listdir(m.p("packs"))[:20]:  # other reads pass through the (empty) caches
            with open(m.p("packs", name), "rb") as other:
                other.read()
        data = fh.read()
    assert len(data) == expected_size
    assert data[:4] == b"PACK" and hashlib.sha1(data[:-20]).digest() == data[-20:]
