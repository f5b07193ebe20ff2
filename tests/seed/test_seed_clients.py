"""`gitp2p seed` end to end: a real FUSE mount, our engine, a tracker on 127.0.0.1, stock clients.

One seed for the module (a generated history long enough for two roll-ups,
`gitp2p tracker` on 127.0.0.1, TCP only): each stock client downloads
torrents/all.torrent from it into a plain directory, gets the mount's bytes, and the
watcher imports them into the sender's refs; the seed follows a commit (new all.torrent
seeded, the old one dropped at the tracker); SIGINT unmounts and exits 0.  The last test
stops the shared seed, so it stays last in this file.
"""

from __future__ import annotations

import shutil
import socket
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from torrentcore import bencode
from torrentcore.metainfo import parse_torrent

from gitfs_p2p.pack.rollup import ROLLUP_SPAN
from gitfs_p2p.receive.importer import Importer
from gitfs_p2p.testing.clients import CLIENTS
from gitfs_p2p.testing.procs import client_available, torrent_info_hash, wait_until
from gitfs_p2p.testing.seeding import Seed
from gitfs_p2p.testing.swarm import advance, git, is_mounted, make_sample_repo, pid_alive
from gitfs_p2p.testing.trackers import EmbeddedTracker

pytestmark = pytest.mark.timeout(300)

COMMITS = 2 * ROLLUP_SPAN + 250  # about 2 MB: two roll-ups, then a tail of commit packs
DOWNLOAD_TIMEOUT = 90  # seconds for ~2 MB on loopback (takes 1-10 s)


@pytest.fixture(scope="module")
def swarm(tmp_path_factory):
    """(repo, tracker, seed): `gitp2p seed` of a fresh history, announcing to a local tracker."""
    if not Path("/dev/fuse").exists():
        pytest.skip("no /dev/fuse")
    root = tmp_path_factory.mktemp("seed-swarm")
    started = []
    try:
        tracker = EmbeddedTracker(root / "tracker")
        started.append(tracker)
        tracker.start()
        repo = make_sample_repo(root / "A", COMMITS, seed=11)
        seed = Seed(repo, root / "seed", tracker=tracker.announce_url)
        started.append(seed)
        seed.start()
        yield repo, tracker, seed
    finally:
        for thing in reversed(started):
            thing.stop()


def _same_files(torrent: Path, downloaded: Path, mount: Path) -> list[str]:
    names = ["/".join(f.path) for f in parse_torrent(torrent.read_bytes()).files]
    return [n for n in names if (downloaded / n).read_bytes() != (mount / "packs" / n).read_bytes()]


@pytest.mark.parametrize("client_name", ["transmission", "aria2", "rtorrent", "qbittorrent"])
def test_stock_client_downloads_from_seed(swarm, tmp_path, client_name):
    reason = client_available(client_name)
    if reason:
        pytest.skip(reason)
    repo, tracker, seed = swarm
    torrent = tmp_path / "all.torrent"
    shutil.copyfile(seed.mountpoint / "torrents" / "all.torrent", torrent)
    info_hash = torrent_info_hash(torrent)
    seed.wait_seeding(info_hash)
    tracker.wait_peers(info_hash, seeders=1, timeout=30)
    client = CLIENTS[client_name](tmp_path / "client", label=f"leech-{client_name}")
    try:
        dest = tmp_path / "download"
        client.download(torrent, dest)
        status = client.wait_complete(DOWNLOAD_TIMEOUT, rechoke=(client,))
        assert status["info_hash"].lower() == info_hash
        assert client.downloaded_bytes() >= status["total"], client.details()
        assert _same_files(torrent, dest / "packs", seed.mountpoint) == []
        names = ["/".join(f.path) for f in parse_torrent(torrent.read_bytes()).files]
        assert sum(n.startswith("rollups/") for n in names) == 2
        with Importer(str(dest), str(tmp_path / "received"), bare=True, settle=0.0) as imp:
            result = imp.run_pass(final=True)
        assert result.finished, result.progress_line()
        assert _refs(tmp_path / "received") == _refs(repo, heads_and_tags=True)
    finally:
        client.stop()


def test_seed_follows_a_commit(swarm, tmp_path):
    repo, tracker, seed = swarm
    old = torrent_info_hash(seed.mountpoint / "torrents" / "all.torrent")
    seed.wait_seeding(old)
    advance(repo, 2, stamp=7)

    def new_all():
        try:
            ih = torrent_info_hash(seed.mountpoint / "torrents" / "all.torrent")
        except (OSError, ValueError):
            return None
        return ih if ih != old else None
    new = wait_until(new_all, 60, "the mount to publish the new all.torrent", details=seed.details)
    seed.wait_seeding(new)
    assert f"all: refs moved, seeding {new} instead of {old}" in seed.output()
    tracker.wait_peers(new, seeders=1, timeout=30)
    # the old torrent is dropped: libtorrent tells the tracker it stopped.  (Not a scrape
    # count: the clients of the tests above may still be listed as seeders of it.)
    seed_peer = ("127.0.0.1", seed.port)
    assert seed_peer in _tracker_peers(tracker, new)
    wait_until(lambda: seed_peer not in _tracker_peers(tracker, old), 30,
               f"the tracker to drop the seed of {old}", details=seed.details)


def test_sigint_unmounts_and_exits_0(swarm):
    repo, tracker, seed = swarm
    mountpoint = seed.mountpoint
    assert is_mounted(mountpoint)
    mount_pid = _mount_server_pid(mountpoint)
    assert mount_pid is not None
    assert seed.interrupt() == 0, seed.details()
    assert not is_mounted(mountpoint)
    wait_until(lambda: not pid_alive(mount_pid), 10, "the mount server to exit")
    assert "Traceback" not in seed.err_path.read_text()


def _refs(repo: Path, *, heads_and_tags: bool = False) -> dict[str, str]:
    out = git("for-each-ref", "--format=%(objectname) %(refname)", cwd=repo)
    refs = dict(reversed(line.split(" ", 1)) for line in out.splitlines())
    return {k: v for k, v in refs.items() if not heads_and_tags or k.startswith(("refs/heads/", "refs/tags/"))}


def _tracker_peers(tracker, info_hash: str) -> set[tuple[str, int]]:
    """The peers the tracker hands out for info_hash (asked as a leecher on port 1)."""
    query = urllib.parse.urlencode({"peer_id": "-GP0001-seedtestpeer", "port": 1, "uploaded": 0,
                                    "downloaded": 0, "left": 1, "compact": 1, "numwant": 200})
    url = f"{tracker.announce_url}?info_hash={urllib.parse.quote_from_bytes(bytes.fromhex(info_hash))}&{query}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        peers = bencode.decode(resp.read()).get(b"peers", b"")
    return {(socket.inet_ntoa(peers[i:i + 4]), int.from_bytes(peers[i + 4:i + 6], "big"))
            for i in range(0, len(peers) - 5, 6)}


def _mount_server_pid(mountpoint: Path) -> int | None:
    """The `gitp2p mount --foreground` child serving mountpoint (from /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--foreground" in cmdline and str(mountpoint).encode() in cmdline:
            return int(entry.name)
    return None
