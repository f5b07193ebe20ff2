"""Torrents in the mount: they appear, match `gitp2p torrent`, follow moving refs, and a stock client verifies them."""

from __future__ import annotations

import json
import os


from mounthelp import cli, wait_for
from testutil import git

from tc_support import require_libtorrent, run_libtorrent

from torrentcore.metainfo import parse_torrent

TRACKER = "http://127.0.0.1:6969/announce"



def _torrent_bytes(m, label: str) -> bytes:
    path = m.p("torrents", f"{label}.torrent")
    assert wait_for(lambda: os.path.exists(path), timeout=60), f"{label}.torrent did not appear"
    with open(path, "rb") as fh:
        return fh.read()


def test_torrents_appear_and_equal_the_cli_torrent(repo60, mount_of, tmp_path):
    m = mount_of(repo60, "--tracker", TRACKER)
    data = _torrent_bytes(m, "HEAD")
    cli_out = tmp_path / "cli.torrent"
    proc = cli("torrent", repo60, "-o", str(cli_out), "--tracker", TRACKER)
    assert proc.returncode == 0, proc.stderr
    assert cli_out.read_bytes() == data
    t = parse_torrent(data)
    assert t.trackers == (TRACKER,)
    # Every file the torrent names is in the mount, at that path, with that size.
    for f in t.files:
        st = os.stat(m.p(t.name, *f.path))
        assert st.st_size == f.length
    all_t = parse_torrent(_torrent_bytes(m, "all"))
    assert all_t.files[-1].path == ("all.gitp2p-refs",)


def test_a_new_mount_publishes_torrents_kept_in_the_cache_without_building(repo60, mount_of, tmp_path):
    """The second mount of unchanged refs takes both torrents from the pack cache (no worker
    builds them), and they are the first mount's bytes."""
    import shutil

    repo = str(tmp_path / "repo")
    shutil.copytree(repo60, repo, symlinks=True, ignore=shutil.ignore_patterns("gitp2p"))
    logs = [str(tmp_path / "first.log"), str(tmp_path / "second.log")]
    m = mount_of(repo, "--log", logs[0])
    first = {label: _torrent_bytes(m, label) for label in ("HEAD", "all")}
    m.stop()
    m = mount_of(repo, "--log", logs[1])
    assert {label: _torrent_bytes(m, label) for label in ("HEAD", "all")} == first
    with open(logs[0]) as fh:
        assert "(kept in the pack cache)" not in fh.read()
    with open(logs[1]) as fh:
        text = fh.read()
    for label in ("HEAD", "all"):
        assert f"{label} torrent ready (kept in the pack cache)" in text, text


def test_a_stock_client_verifies_the_mount_at_100_percent(repo60, mount_of):
    require_libtorrent()
    m = mount_of(repo60, "--tracker", TRACKER)
    _torrent_bytes(m, "HEAD")
    out = json.loads(run_libtorrent("check_seed", m.p("torrents", "HEAD.torrent"), m.path))
    state, have, total, downloaded = out["state"], out["have"], out["total"], out["downloaded"]
    assert state in ("seeding", "finished")
    assert have == total and downloaded == 0, "verified from the mount, nothing downloaded"


def test_torrent_follows_a_moving_ref(moving_repo, mount_of):
    m = mount_of(moving_repo)
    before = parse_torrent(_torrent_bytes(m, "HEAD"))
    (open(os.path.join(moving_repo, "added.txt"), "w")).write("one more commit\n")
    git("add", "-A", cwd=moving_repo)
    git("commit", "-qm", "one more", cwd=moving_repo)
    head = git("rev-parse", "HEAD", cwd=moving_repo).strip()

    def moved() -> bool:
        try:
            with open(m.p("torrents", "HEAD.torrent"), "rb") as fh:
                return parse_torrent(fh.read()).info_hash != before.info_hash
        except FileNotFoundError:
            return False

    assert wait_for(moved, timeout=60), "the HEAD torrent did not follow the new commit"
    after = parse_torrent(_torrent_bytes(m, "HEAD"))
    assert after.files[: len(before.files) - 1] == before.files[:-1]
    assert after.files[-2].path == (f"{head}.pack",)


def test_a_torrent_made_elsewhere_checks_at_100_percent_on_a_fresh_mount(repo60, mount_of, tmp_path):
    """The torrent of `gitp2p torrent REPO v0.1 main` (label main+v0.1), made before the mount,
    and a fresh mount with an empty pack cache: every file it names, its manifest included, is
    in the mount from the first moment (a stock client used to stop at 99.9%)."""
    require_libtorrent()
    made = tmp_path / "made.torrent"
    proc = cli("torrent", repo60, "v0.1", "main", "-o", str(made), "--tracker", TRACKER)
    assert proc.returncode == 0, proc.stderr
    t = parse_torrent(made.read_bytes())
    assert t.files[-1].path == ("main+v0.1.gitp2p-refs",)
    repo = str(tmp_path / "copy")
    git("clone", "-q", "--mirror", repo60, repo)  # no pack cache in it: the mount starts cold
    m = mount_of(repo, "--tracker", TRACKER)
    out = json.loads(run_libtorrent("check_seed", str(made), m.path))
    state, have, total, downloaded = out["state"], out["have"], out["total"], out["downloaded"]
    assert state in ("seeding", "finished")
    assert have == total and downloaded == 0, "verified from the mount, nothing downloaded"
