"""Repository torrents: layout, reproducibility across clones, stock tools agree on the info-hash."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import threading

import pytest

from gitfs_p2p.git.repo import GitRepo
from gitfs_p2p.pack.manifest import RefManifest
from gitfs_p2p.store.source import PackSource
from gitfs_p2p.store.torrents import build_repo_torrent, select_refs
from testutil import git, gitp2p
from torrentcore.metainfo import parse_torrent

GITP2P = [sys.executable, "-m", "gitfs_p2p.cli"]


def _torrent(path: str, refs=(), all_refs=False):
    source = PackSource(GitRepo(path))
    try:
        manifest, label = select_refs(source, list(refs), all_refs=all_refs)
        return build_repo_torrent(source, manifest, label, trackers=["http://127.0.0.1:1/announce"]), source
    finally:
        source.close()
        source.repo.close()


def test_layout_packs_oldest_first_then_manifest(history):
    t, _ = _torrent(history)
    parsed = parse_torrent(t.torrent)
    assert parsed.info_hash == t.info_hash
    names = [f.path for f in parsed.files]
    assert names[-1] == ("HEAD.gitp2p-refs",)
    listed = gitp2p("packs", history, "main").stdout.decode().split()
    assert [n[0] for n in names[:-1]] == [f"{c}.pack" for c in listed[0::2]]
    assert [f.length for f in parsed.files[:-1]] == [int(s) for s in listed[1::2]]
    manifest = RefManifest.from_bytes(t.manifest_bytes)
    assert manifest.head == "refs/heads/main"
    assert manifest.refs == {"refs/heads/main": git("rev-parse", "main", cwd=history).strip()}


def test_pieces_hash_the_real_pack_bytes(history, tmp_path):
    t, _ = _torrent(history)
    parsed = parse_torrent(t.torrent)
    source = PackSource(GitRepo(history))
    try:
        data = b"".join(source.pack(name[0][:-5].encode()) for name in (f.path for f in parsed.files[:-1]))
    finally:
        source.close()
        source.repo.close()
    data += t.manifest_bytes
    pl = parsed.piece_length
    digests = b"".join(hashlib.sha1(data[i : i + pl]).digest() for i in range(0, len(data), pl))
    assert digests == b"".join(parsed.pieces)


def test_same_info_hash_in_a_differently_packed_clone(history, tmp_path):
    t, _ = _torrent(history, all_refs=True)
    clone = str(tmp_path / "clone")
    git("clone", "-q", "--mirror", "--no-local", history, clone)
    git("repack", "-adf", "-q", "--window=250", cwd=clone)
    git("symbolic-ref", "HEAD", "refs/heads/main", cwd=clone)
    t2, _ = _torrent(clone, all_refs=True)
    assert t2.info_hash == t.info_hash and t2.torrent == t.torrent
    assert set(t.manifest.refs) == {
        line.split()[1] for line in git("for-each-ref", "--format=%(objectname) %(refname)", cwd=history).splitlines()
    }


def test_stock_tools_compute_the_same_info_hash(history, tmp_path):
    if shutil.which("transmission-show") is None:
        pytest.skip("transmission-show is not installed (apt package transmission-cli)")
    out = tmp_path / "repo.torrent"
    proc = gitp2p("torrent", history, "-o", str(out), "--tracker", "http://127.0.0.1:6969/announce")
    assert proc.returncode == 0, proc.stderr
    printed = re.search(r"info-hash ([0-9a-f]{40})", proc.stdout.decode()).group(1)
    shown = subprocess.run(["transmission-show", str(out)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"Hash: ([0-9a-f]{40})", shown).group(1) == printed
    assert f"magnet:?xt=urn:btih:{printed}" in proc.stdout.decode()


def test_a_newer_tip_only_appends(fresh_history, tmp_path):
    old, _ = _torrent(fresh_history)
    for i in range(3):
        (tmp_path / "repo" / f"new{i}.txt").write_text(f"new file {i}\n" * 50)
        git("add", "-A", cwd=fresh_history)
        git("commit", "-qm", f"new {i}", cwd=fresh_history)
    new, _ = _torrent(fresh_history)
    assert new.files[: len(old.files) - 1] == old.files[:-1], "old packs keep their place"
    assert len(new.files) == len(old.files) + 3
    assert new.files[-1][0] == old.files[-1][0] == "HEAD.gitp2p-refs"


def test_cli_errors_are_one_line(fresh_history, tmp_path):
    proc = gitp2p("torrent", fresh_history, "no-such-branch", "-o", str(tmp_path / "x.torrent"))
    assert proc.returncode == 1 and b"not a ref" in proc.stderr and b"Traceback" not in proc.stderr
    proc = gitp2p("torrent", fresh_history, "--label", "../evil", "-o", str(tmp_path / "x.torrent"))
    assert proc.returncode == 1 and b"label" in proc.stderr and b"Traceback" not in proc.stderr
    assert not (tmp_path / "x.torrent").exists()


def test_cli_prints_a_summary_and_writes_only_when_asked(fresh_history, tmp_path):
    proc = subprocess.run([*GITP2P, "torrent", fresh_history, "--all"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(tmp_path) == ["repo"], "a file was left behind without -o"
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("info-hash ") and lines[1].startswith("magnet magnet:?xt=urn:btih:")
    assert len(lines) <= 4 and all(len(line) < 300 for line in lines)
    assert "branch" in lines[2] and "all.gitp2p-refs" in lines[2]


def test_cli_output_onto_a_device_or_fifo_writes_into_it(fresh_history, tmp_path):
    """-o /dev/null must leave /dev/null a device (it once became a regular file, run as root)."""
    proc = gitp2p("torrent", fresh_history, "--all", "-o", os.devnull)
    assert proc.returncode == 0, proc.stderr.decode()
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    proc = gitp2p("torrent", fresh_history, "--all", "-o", str(fifo))
    reader.join(timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert parse_torrent(got[0]).info_hash.hex() in proc.stdout.decode()
    out = tmp_path / "x.torrent"
    link = tmp_path / "link.torrent"
    link.symlink_to(out)
    assert gitp2p("torrent", fresh_history, "-o", str(link)).returncode == 0
    assert link.is_symlink() and parse_torrent(out.read_bytes())  # written through the link
    proc = gitp2p("torrent", fresh_history, "-o", str(tmp_path))
    assert proc.returncode == 1 and b"is a directory" in proc.stderr


def test_a_torrent_built_once_comes_from_the_cache(fresh_history, caplog):
    """The pack cache keeps built torrents under everything that decides their bytes; a
    damaged row is built again, never served."""
    import sqlite3

    first, _ = _torrent(fresh_history)
    db_path = os.path.join(fresh_history, ".git", "gitp2p", "cache.sqlite3")
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT COUNT(*) FROM torrents").fetchone()[0] == 1
    again, _ = _torrent(fresh_history)
    assert again == first
    other, _ = _torrent(fresh_history, all_refs=True)  # another label and refs: another row
    assert other.info_hash != first.info_hash
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT COUNT(*) FROM torrents").fetchone()[0] == 2
        db.execute("UPDATE torrents SET torrent = ?", (b"d4:infoi1ee",))
    rebuilt, _ = _torrent(fresh_history)
    assert rebuilt == first
    assert "does not parse" in caplog.text


def test_torrents_read_the_history_a_snapshot_walked_and_get_the_same_bytes(history, tmp_path, caplog):
    """A mount's snapshot keeps the commit graph it walked (PackCache.put_graph), and the
    torrents built next read it instead of walking again: the same commits in the same
    order for every set of tips it holds (a part of the history, closed under parents, in
    the order of the whole), the same info-hash; tips it lacks, or a damaged graph, walk."""
    import sqlite3

    from gitfs_p2p.git.snapshot import read_snapshot
    from gitfs_p2p.git.walk import read_history

    repo_path = str(tmp_path / "copy.git")
    git("clone", "-q", "--mirror", history, repo_path)
    walked_torrent = None
    with GitRepo(repo_path) as repo:
        source = PackSource(repo)
        manifest, label = select_refs(source, [], all_refs=True)
        walked_torrent = build_repo_torrent(source, manifest, label)  # no graph kept yet: walked
        source.cache._db.execute("DELETE FROM torrents")
        tips = sorted(set(repo.refs().values()))
        snapshot = read_snapshot(repo, None, source.cache)
        graph = source.cache.get_graph()
        assert graph == read_history(repo, tips) and [c.id for c in graph] == snapshot.commits.ids
        # parts of it: one branch, and commits in the middle of the history (merges among them)
        merges = [c.id for c in graph if len(c.parents) > 1]
        assert merges, "the history has merges"
        for part in ([repo.resolve("main")], [graph[len(graph) // 3].id, merges[0]], merges[-2:], tips):
            read = []
            source.repo.commits_oldest_first = lambda t: read.append(t) or read_history(repo, t)
            assert source.commits_from(part) == read_history(repo, part) and read == [], part
        # the torrent from the kept graph: the same bytes, and no commit read for the walk
        read = []
        source.repo.commits_oldest_first = lambda t: read.append(t) or read_history(repo, t)
        assert build_repo_torrent(source, manifest, label) == walked_torrent and read == []
        # a tip the graph lacks: walked
        outside = subprocess.run(["git", "commit-tree", "main^{tree}", "-p", "main", "-m", "new"], cwd=repo_path,
                                 capture_output=True, text=True, check=True).stdout.strip().encode()
        assert source.commits_from([outside]) == read_history(repo, [outside]) and read == [[outside]], "walked"
        # a damaged graph: said, and walked
        source.cache._db.execute("UPDATE graph SET parents = x'01000000'")
        with caplog.at_level("WARNING"):
            assert source.cache.get_graph() is None
        assert "kept commit graph is damaged" in caplog.text
        source.close()
    db = sqlite3.connect(os.path.join(repo_path, "gitp2p", "cache.sqlite3"))
    assert db.execute("SELECT COUNT(*) FROM graph").fetchone() == (1,)
    db.close()
