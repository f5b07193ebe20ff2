"""`gitp2p seed`'s command line: clear one-line errors, --daemon, an existing mount, and the
pure planning of what to add and drop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from gitfs_p2p.seed.catalog import Offer, ReceivedTorrents, plan, received_dir
from gitfs_p2p.testing.procs import LOOPBACK, free_port, wait_until
from gitfs_p2p.testing.swarm import GITP2P, Mount, is_mounted, make_sample_repo, pid_alive
from torrentcore.metainfo import build_info, build_torrent, parse_torrent

pytestmark = pytest.mark.timeout(180)

needs_fuse = pytest.mark.skipif(not Path("/dev/fuse").exists(), reason="no /dev/fuse")


def seed_cmd(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*GITP2P, "seed", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gitp2p: error: "), proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def small_repo(tmp_path_factory) -> Path:
    return make_sample_repo(tmp_path_factory.mktemp("seed-cli") / "R", 12, seed=4)


def test_missing_repo(tmp_path):
    proc = seed_cmd(str(tmp_path / "nope"))
    assert proc.returncode == 1
    assert "nope: not a directory" in _one_error_line(proc)


def test_not_a_repository(tmp_path):
    proc = seed_cmd(str(tmp_path))
    assert proc.returncode == 1
    assert "not a git repository" in _one_error_line(proc)


def test_bad_port_is_a_usage_error(small_repo):
    proc = seed_cmd(str(small_repo), "--port", "70000")
    assert proc.returncode == 2 and "65535" in proc.stderr


@needs_fuse
def test_port_in_use_says_so_before_mounting(small_repo):
    with socket.socket() as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = seed_cmd(str(small_repo), "--listen", LOOPBACK, "--port", str(port))
    assert proc.returncode == 2
    assert f"port {port} is in use" in _one_error_line(proc)
    assert not is_mounted(small_repo / ".git" / "gitp2p" / "seed-mount")


@needs_fuse
def test_mountpoint_of_another_repository(small_repo, tmp_path):
    other = make_sample_repo(tmp_path / "other", 5, seed=9)
    with Mount(other, tmp_path / "mnt") as mount:
        proc = seed_cmd(str(small_repo), "--mountpoint", str(mount.path), "--listen", LOOPBACK,
                        "--port", "0")
        assert proc.returncode == 1
        assert f"a gitp2p mount of {other}" in _one_error_line(proc)
        assert is_mounted(mount.path)


@needs_fuse
def test_daemon_uses_an_existing_mount_and_leaves_it(small_repo, tmp_path):
    """--daemon returns once seeding, prints what to hand out; SIGTERM stops it; the mount it
    found (`gitp2p mount`, the user's) stays mounted."""
    pid_file = tmp_path / "seed.pid"
    with Mount(small_repo, tmp_path / "mnt") as mount:
        mount.torrent("all")
        proc = seed_cmd(str(small_repo), "--daemon", "--pid-file", str(pid_file), "--mountpoint",
                        str(mount.path), "--listen", LOOPBACK, "--port", str(free_port()), "--no-utp",
                        "--log", str(tmp_path / "seed.log"))
        assert proc.returncode == 0, proc.stderr
        pid = int(pid_file.read_text())
        try:
            assert f"seeding from the existing mount at {mount.path} (left mounted)" in proc.stdout
            assert "seeding all (from the mount): info-hash " in proc.stdout
            assert f"git clone gitp2p::{mount.path}/torrents/all.torrent R" in proc.stdout
            assert f"`kill {pid}` stops it" in proc.stdout
        finally:
            os.kill(pid, signal.SIGTERM)  # the seed this test started
            wait_until(lambda: not pid_alive(pid), 30, "the seed daemon to exit")
        assert not pid_file.exists()
        assert is_mounted(mount.path)


# -- planning (pure) ----------------------------------------------------------------------

def _offer(label: str, ih: str, origin: str = "mount") -> Offer:
    return Offer(label, origin, ih * 40, b"", f"/m/torrents/{label}.torrent")


def test_plan_adds_drops_and_pairs_moved_refs():
    head, all_old, all_new = _offer("HEAD", "1"), _offer("all", "2"), _offer("all", "3")
    p = plan({head.info_hash: head, all_old.info_hash: all_old}, [head, all_new])
    assert p.add == (all_new,)
    assert p.drop == (all_old.info_hash,)
    assert p.moved == ((all_old.info_hash, all_new),)


def test_plan_seeds_an_info_hash_once():
    mine = _offer("all", "4")
    received = _offer("all", "4", origin="received")
    p = plan({}, [mine, received])
    assert p.add == (mine,) and p.drop == () and p.moved == ()
    assert plan({mine.info_hash: mine}, [mine, received]) == plan({mine.info_hash: mine}, [mine])


def test_a_received_torrent_is_seeded_as_soon_as_the_pack_it_lacked_is_in_the_mount(tmp_path):
    """A clone's seed that fetched: the remote helper leaves the new torrent, and the mount lays
    out its new packs a poll or two later.  The torrent is looked at again when the pack it
    lacked appears, not only when the mount's own torrents change or RECHECK seconds later
    (a --follow seed started seeding the publisher's new torrent 30 s late, seen in
    tests/trust/test_names_swarm.py)."""
    packs = tmp_path / "mount" / "packs"
    packs.mkdir(parents=True)
    pack, manifest = b"PACK" + os.urandom(60), b"refs\n"
    names = ["a" * 40 + ".pack", "all.gitp2p-refs"]
    info = build_info([((names[0],), len(pack)), ((names[1],), len(manifest))],
                      [pack + manifest], "packs", multi_file=True)
    data = build_torrent(info)
    ih = parse_torrent(data).info_hash.hex()
    received = Path(received_dir(str(tmp_path / "git")))
    received.mkdir(parents=True)
    (received / f"{ih}.torrent").write_bytes(data)
    (received / f"{ih}.gitp2p-refs").write_bytes(manifest)
    catalog = ReceivedTorrents(str(tmp_path / "git"), str(tmp_path / "mount"))

    offers, notes = catalog.scan()
    assert offers == [] and notes == [f"not seeding received {ih}.torrent: 1 of 1 packs are not in the mount "
                                      f"(packs/{names[0]}, ...)"]
    assert catalog.scan() == ([], [])  # still lacking: said once
    (packs / names[0]).write_bytes(pack)
    offers, notes = catalog.scan()  # at once: no recheck asked for, well within RECHECK
    assert [(o.label, o.origin, o.info_hash) for o in offers] == [("all", "received", ih)] and notes == []
