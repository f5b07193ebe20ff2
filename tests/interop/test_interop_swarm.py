"""End to end with stock clients: mount A -> torrent -> tracker -> seed -> download -> watch -> B.

For every seeder/downloader pair among transmission, aria2 and libtorrent, and for both
trackers (`gitp2p tracker` and Debian's opentracker), on 127.0.0.1 over TCP:

1. repository A (300 commits, merged side branches, an unmerged branch, a lightweight
   and an annotated tag; generated once per module, each scenario mounts its own copy),
   mount it, take the mount's torrents/all.torrent,
   start the tracker (opentracker: put the info-hash on its allow-list);
2. the seeder checks the mount (save path = the mount, no copy) at 100% and seeds it;
3. the downloader fetches everything into a plain directory;
4. `gitp2p watch` imports that directory into an empty repository B while it downloads;
5. B (a mirror, `watch --bare`) has A's refs as `git for-each-ref` lists them (annotated tags as their
   tag objects) and commits, `git fsck --full` is clean, and B's own mount
   publishes a torrent with the same info-hash that a client of the downloader's kind
   verifies at 100%;
6. A gets three more commits and a tag; the mount's new torrent is seeded, the downloader
   fetches it into the same directory and, by its own count, fetches the new packs and
   nothing before the piece where the old torrent ended; B catches up.

rtorrent and qbittorrent-nox run the same scenario in a few pairs (EXTRA_PAIRS, embedded
tracker only), each of them as seeder and as downloader.

transmission -> transmission cannot meet on 127.0.0.1 (transmission never dials loopback
peers, so each waits for the other to dial): that pair runs, and must pass, in a network
namespace the test creates instead (the `private_network` fixture, 10.77.0.1-4 on its lo).
The limitation itself is test_transmission_dials.py, which shows it in seconds.

Each scenario is bounded (every wait has a limit; pytest-timeout as a backstop) and stops
every process it started (by pid / process group) and unmounts every mount, pass or fail.
Clients and their settings: gitfs_p2p/testing/clients/ and docs/clients.md.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from torrentcore.metainfo import parse_torrent

from gitfs_p2p.testing.clients import CLIENTS, Client
from gitfs_p2p.testing.procs import (
    LOOPBACK,
    client_available,
    torrent_info_hash,
    tracker_available,
    wait_until,
)
from gitfs_p2p.testing.trackers import TRACKERS
from gitfs_p2p.testing.swarm import (
    Mount,
    Watcher,
    advance,
    all_commits,
    fsck_full,
    is_mounted,
    make_sample_repo,
    new_bytes_range,
    published_refs,
)

NAMES = ["transmission", "aria2", "libtorrent"]
#: rtorrent and qBittorrent are not in the full matrix (two more clients there would add 20
#: scenarios); these pairs, with the embedded tracker, run each of them as seeder and as
#: downloader, against each other and against aria2 and transmission. Not here: rtorrent ->
#: aria2 (rtorrent keeps dropping aria2's connections, a transfer takes ~80 s: docs/clients.md)
EXTRA_PAIRS = [("rtorrent", "qbittorrent"), ("qbittorrent", "rtorrent"), ("aria2", "rtorrent"),
               ("qbittorrent", "aria2"), ("aria2", "qbittorrent"), ("rtorrent", "transmission")]
COMMITS = 300
CHECK_TIMEOUT = 60       # seconds for a client to hash-check ~0.7 MB
DOWNLOAD_TIMEOUT = 90    # seconds for a download of ~0.7 MB on loopback (takes 1-15 s)
REFS_TIMEOUT = 60        # seconds for the watcher to set every ref once the files are there
SCENARIO_TIMEOUT = 420   # pytest-timeout backstop for a whole scenario


def _cannot_meet(seeder: str, downloader: str) -> bool:
    """Neither client connects out to a peer on 127.0.0.0/8."""
    return not CLIENTS[seeder].dials_loopback and not CLIENTS[downloader].dials_loopback


def _cases():
    for tracker in TRACKERS:
        marks = [pytest.mark.timeout(SCENARIO_TIMEOUT)]
        if tracker == "opentracker":
            marks.append(pytest.mark.slow)
        for seeder in NAMES:
            for downloader in NAMES:
                if _cannot_meet(seeder, downloader):
                    # Not on 127.0.0.1, where neither dials the other and nothing would move
                    # (test_transmission_dials.py shows that); the same pair where it can
                    # meet: a private network namespace, 10.77.0.1-4.
                    yield pytest.param(seeder, downloader, tracker, "netns", marks=marks,
                                       id=f"{seeder}-to-{downloader}-{tracker}-netns")
                else:
                    yield pytest.param(seeder, downloader, tracker, "loopback", marks=marks,
                                       id=f"{seeder}-to-{downloader}-{tracker}")
    for seeder, downloader in EXTRA_PAIRS:
        yield pytest.param(seeder, downloader, "embedded", "loopback",
                           marks=[pytest.mark.timeout(SCENARIO_TIMEOUT)],
                           id=f"{seeder}-to-{downloader}-embedded")


@pytest.fixture
def cleanup():
    """Register objects with a stop() method; they are stopped, pass or fail: first the
    clients and the watcher together (each stop() in a thread of its own: each waits for
    its process to exit, aria2 alone takes 1 s), then the rest (mounts, tracker) in reverse
    order, once nothing started here reads a mount or announces any more."""
    started = []
    yield started.append
    errors = []

    def stop(thing):
        try:
            thing.stop()
        except Exception as exc:  # keep stopping the others; report at the end
            errors.append(f"{thing!r}: {exc}")

    together = [t for t in started if isinstance(t, (Client, Watcher))]
    threads = [threading.Thread(target=stop, args=(t,), name=f"stop {t!r}") for t in together]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for thing in reversed(started):
        if thing not in together:
            stop(thing)
    leftover = [t.path for t in started if isinstance(t, Mount) and is_mounted(t.path)]
    assert not errors and not leftover, f"cleanup failed: {errors} mounts left: {leftover}"


@pytest.fixture(scope="module")
def generated_a(tmp_path_factory) -> Path:
    """Repository A as make_sample_repo() generates it (COMMITS commits, seed 3), once for
    the module instead of once a scenario (0.5-1 s each). Every scenario works on a copy
    (step 6 moves A forward); this one is never mounted, so no copy starts with packs or
    torrents cached in its git dir: each mount builds them as before."""
    return make_sample_repo(tmp_path_factory.mktemp("interop-history") / "A", COMMITS, seed=3)


def _seed_announces_after(seeder, downloader) -> None:
    """A downloader that never dials loopback peers (transmission) waits for the seed to
    learn its address from the tracker and dial it: once the downloader's own announce has
    gone through, have the seed announce at once instead of at its next tick (~3 s)."""
    wait_until(downloader.last_announce, 30, f"{downloader.label} to announce",
               details=downloader.details)
    seeder.reannounce()


def _same_files(torrent_dir: Path, src: Path, names) -> list[str]:
    return [n for n in names if (torrent_dir / n).read_bytes() != (src / n).read_bytes()]


@pytest.mark.parametrize("seeder_name,downloader_name,tracker_name,network", list(_cases()))
def test_swarm_mount_to_watcher(tmp_path, request, record_property, generated_a,
                                seeder_name, downloader_name, tracker_name, network):
    for reason in (client_available(seeder_name), client_available(downloader_name),
                   tracker_available(tracker_name)):
        if reason:
            pytest.skip(reason)
    # the namespace is entered before `cleanup` is set up, so everything stops inside it
    hosts = request.getfixturevalue("private_network") if network == "netns" else [LOOPBACK] * 4
    cleanup = request.getfixturevalue("cleanup")

    # 1. repository A, its mount and torrent, the tracker
    tracker = TRACKERS[tracker_name](tmp_path / "tracker", host=hosts[0])
    cleanup(tracker)
    tracker.start()
    repo_a = Path(shutil.copytree(generated_a, tmp_path / "A", symlinks=True))
    mount_a = Mount(repo_a, tmp_path / "mnt-A", tracker=tracker.announce_url)
    cleanup(mount_a)
    mount_a.start()
    torrent = tmp_path / "all-1.torrent"
    shutil.copyfile(mount_a.torrent("all"), torrent)
    info_hash = torrent_info_hash(torrent)
    tracker.allow(info_hash)

    # 2. a stock client seeds straight from the mount
    seeder = CLIENTS[seeder_name](tmp_path / "seeder", label=f"seeder-{seeder_name}", host=hosts[1])
    cleanup(seeder)
    seeder.seed(torrent, mount_a.path)
    seeder.wait_checked(CHECK_TIMEOUT)
    assert seeder.verified_fraction() == 1.0, seeder.details()
    assert seeder.downloaded_bytes() == 0
    tracker.wait_peers(info_hash, seeders=1, timeout=60)

    # 3 + 4. another client downloads into a plain directory while the watcher imports it
    dest = tmp_path / "download"
    repo_b = tmp_path / "B"
    watcher = Watcher(dest, repo_b, log=tmp_path / "watch.log")
    cleanup(watcher)
    watcher.start()
    downloader = CLIENTS[downloader_name](tmp_path / "downloader", label=f"downloader-{downloader_name}", host=hosts[2])
    cleanup(downloader)
    downloader.download(torrent, dest)
    # A client that cannot dial loopback peers is reached when the seed re-announces.
    if network == "loopback" and not downloader.dials_loopback:
        _seed_announces_after(seeder, downloader)
    downloader.wait_complete(DOWNLOAD_TIMEOUT, nudge=seeder.reannounce, rechoke=(seeder, downloader))
    total = downloader.status()["total"]
    fetched = downloader.downloaded_bytes()
    record_property("full_download_bytes", fetched)
    assert fetched >= total, f"{downloader_name} says it fetched {fetched} of {total} bytes"
    names = ["/".join(f.path) for f in parse_torrent(torrent.read_bytes()).files]
    assert _same_files(dest / "packs", mount_a.path / "packs", names) == []

    # 5. B matches A; B's own mount serves the same torrent, verified at 100%
    expected = published_refs(repo_a)
    watcher.wait_refs(expected, REFS_TIMEOUT)
    assert all_commits(repo_b) == all_commits(repo_a)
    clean, report = fsck_full(repo_b)
    assert clean, report
    mount_b = Mount(repo_b, tmp_path / "mnt-B", tracker=tracker.announce_url)
    cleanup(mount_b)
    mount_b.start()
    assert torrent_info_hash(mount_b.torrent("all")) == info_hash
    verifier = CLIENTS[downloader_name](tmp_path / "verifier", label=f"verifier-{downloader_name}", host=hosts[3])
    cleanup(verifier)
    verifier.seed(mount_b.path / "torrents" / "all.torrent", mount_b.path)
    verifier.wait_checked(CHECK_TIMEOUT)
    assert verifier.verified_fraction() == 1.0, verifier.details()
    assert verifier.downloaded_bytes() == 0
    verifier.stop()

    # 6. A moves forward; only the new bytes travel; B catches up
    advance(repo_a, 3, tag="v0.3")
    torrent2 = tmp_path / "all-2.torrent"
    shutil.copyfile(mount_a.torrent("all", not_hash=info_hash), torrent2)
    info_hash2 = torrent_info_hash(torrent2)
    tracker.allow(info_hash2)
    seeder.seed(torrent2, mount_a.path)
    seeder.wait_checked(CHECK_TIMEOUT)
    assert seeder.verified_fraction() == 1.0, seeder.details()
    tracker.wait_peers(info_hash2, seeders=1, timeout=60)
    downloader.download(torrent2, dest)
    if network == "loopback" and not downloader.dials_loopback:
        _seed_announces_after(seeder, downloader)
    downloader.wait_complete(DOWNLOAD_TIMEOUT, nudge=seeder.reannounce, rechoke=(seeder, downloader))
    update = new_bytes_range(torrent, torrent2)
    fetched2 = downloader.downloaded_bytes()
    record_property("update", {**update, "fetched": fetched2})
    print(f"update: {downloader_name} fetched {fetched2} bytes for {update['new_packs']} new packs "
          f"of {update['new_pack_bytes']} bytes; the pieces from the first changed byte hold "
          f"{update['needed_bytes']} of {update['total']}")
    assert update["new_pack_bytes"] <= fetched2 <= update["needed_bytes"], (update, fetched2)
    expected2 = published_refs(repo_a)
    assert expected2 != expected
    watcher.wait_refs(expected2, REFS_TIMEOUT)
    assert all_commits(repo_b) == all_commits(repo_a)
    clean, report = fsck_full(repo_b)
    assert clean, report
