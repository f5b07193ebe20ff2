"""`git clone gitp2p::...` and `git fetch` through git-remote-gitp2p, against real seeders.

A generated history is mounted (a real FUSE mount) with a tracker on 127.0.0.1 in its
torrents; stock clients (transmission, aria2, rtorrent, qBittorrent, python3-libtorrent)
seed the mount, and real git runs the helper.  Our engine listens on 127.0.0.1 over TCP
(uTP on loopback is slow, ../shared/DESIGN.md).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.request

import pytest

from gitfs_p2p.testing.clients import CLIENTS
from gitfs_p2p.testing.history import generate
from gitfs_p2p.testing.netns import own_network_namespace, why_no_namespace
from gitfs_p2p.testing.procs import client_available, free_port, kill_group, torrent_info_hash, wait_until
from gitfs_p2p.testing.seeding import Seed
from gitfs_p2p.testing.swarm import Mount
from gitfs_p2p.testing.trackers import EmbeddedTracker

NO_FUSE = not os.path.exists("/dev/fuse")
#: The helper is a console script beside this Python; git finds it on PATH.
ENV = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
       "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"}
#: Loopback, TCP only; no data for 30 s fails the test instead of hanging it.
LOOPBACK = ["-c", "gitp2p.listen=127.0.0.1:0", "-c", "gitp2p.utp=false", "-c", "gitp2p.timeout=30"]


def git(*args: str, cwd=None, check: bool = True, timeout: float = 180, env=None) -> subprocess.CompletedProcess:
    proc = subprocess.run(["git", *args], cwd=cwd, env={**ENV, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def refs(repo: str, pattern: str = "") -> dict[str, str]:
    out = git("for-each-ref", "--format=%(objectname) %(refname)", *([pattern] if pattern else []), cwd=repo).stdout
    return {name: oid for oid, name in (line.split(" ", 1) for line in out.splitlines())}


def assert_clone_of(clone: str, source: str) -> None:
    """Branches as origin/*, tags as themselves, HEAD's branch checked out, fsck clean."""
    src = refs(source)
    got = refs(clone)
    for name, oid in src.items():
        if name.startswith("refs/heads/"):
            assert got.get("refs/remotes/origin/" + name[len("refs/heads/"):]) == oid, name
        else:
            assert got.get(name) == oid, name
    head = git("symbolic-ref", "HEAD", cwd=source).stdout.strip()
    assert git("symbolic-ref", "HEAD", cwd=clone).stdout.strip() == head
    assert got[head] == src[head]
    fsck = git("fsck", "--strict", "--no-dangling", cwd=clone, check=False)
    assert fsck.returncode == 0, fsck.stderr
    assert git("rev-list", "--count", "--all", cwd=clone).stdout == git("rev-list", "--count", "--all", cwd=source).stdout
    assert git("log", "--oneline", "-3", cwd=clone).stdout
    assert git("status", "--porcelain", cwd=clone).stdout == ""
    assert git("config", "remote.origin.url", cwd=clone).stdout.startswith("gitp2p::")


@pytest.fixture(scope="module")
def swarm(tmp_path_factory):
    """(source repo, its mount, tracker): 80 commits, branches, an annotated (signed-like) and a light tag."""
    if NO_FUSE:
        pytest.skip("/dev/fuse is absent")
    base = tmp_path_factory.mktemp("remote")
    source = str(base / "source")
    generate(source, 80, seed=14)
    git("tag", "-a", "v1.0", "-m", "release 1.0", "HEAD~3", cwd=source)
    git("tag", "-a", "v1.0-note", "-m", "a tag of a tag", "v1.0", cwd=source)
    git("tag", "light", "HEAD~7", cwd=source)
    tracker = EmbeddedTracker(base / "tracker").start()
    mount = Mount(source, base / "mnt", tracker=tracker.announce_url).start()
    try:
        yield source, mount, tracker
    finally:
        mount.stop()
        tracker.stop()


def seeding(name: str, workdir, torrent, mount: Mount, tracker):
    """A stock client seeding the mount, checked, known to the tracker."""
    reason = client_available(name)
    if reason is not None:
        pytest.skip(reason)
    client = CLIENTS[name](workdir)
    client.seed(torrent, mount.path)
    st = client.wait_checked(timeout=120)
    assert client.verified_fraction() == 1.0, (name, st, client.details())
    tracker.wait_peers(torrent_info_hash(torrent), seeders=1, timeout=60)
    return client


@pytest.mark.parametrize("seeder", ["transmission", "aria2", "rtorrent", "qbittorrent", "libtorrent"])
def test_clone_from_a_stock_seeder(seeder, swarm, tmp_path):
    source, mount, tracker = swarm
    torrent = mount.torrent("all")
    # rechoking: transmission unchokes the clone's engine at once, not at its next 10 s pulse
    with seeding(seeder, tmp_path / "client", torrent, mount, tracker) as client, client.rechoking():
        clone = str(tmp_path / "clone")
        # (git prints what the helper says)
        proc = git(*LOOPBACK, "clone", "--progress", f"gitp2p::{torrent}", clone,
                   env={"GIT_TRANSPORT_HELPER_DEBUG": "1"})
    assert re.search(r"Receiving packs: 100% \(\d+/\d+\), .*, done\.", proc.stderr), proc.stderr
    assert re.search(r"Importing packs: 100% \((\d+)/\1\), done\.", proc.stderr), proc.stderr
    assert_clone_of(clone, source)
    # git asked us to check the clone's connectivity, and was told it holds, with the pack
    # of the tips kept until the refs were set (then git removed the .keep)
    assert "Debug: Remote helper: -> option check-connectivity true" in proc.stderr, proc.stderr
    assert "Debug: Remote helper: <- connectivity-ok" in proc.stderr, proc.stderr
    lock = re.search(r"Debug: Remote helper: <- lock (\S+\.keep)$", proc.stderr, re.M)
    assert lock, proc.stderr
    assert os.path.dirname(lock.group(1)) == os.path.realpath(os.path.join(clone, ".git", "objects", "pack"))
    assert not os.path.exists(lock.group(1))
    with open(lock.group(1)[: -len(".keep")] + ".idx", "rb") as idx:
        shown = subprocess.run(["git", "show-index"], stdin=idx, capture_output=True, text=True, check=True)
    assert {line.split()[1] for line in shown.stdout.splitlines()} == set(refs(clone).values())
    ih = torrent_info_hash(torrent)
    # kept for `gitp2p seed`: the same torrent, and its manifest
    received = os.path.join(clone, ".git", "gitp2p", "received")
    with open(os.path.join(received, ih + ".torrent"), "rb") as fh, open(torrent, "rb") as want:
        assert fh.read() == want.read()
    assert not os.listdir(os.path.join(clone, ".git", "gitp2p", "fetch")), "download directories left behind"


def test_clone_by_magnet_then_fetch_new_commits(swarm, tmp_path):
    """Metadata from a peer (BEP 9), quiet with -q; then the source moves on, and `git fetch`
    of the torrent path brings only the new packs."""
    source, mount, tracker = swarm
    torrent = mount.torrent("all")
    ih = torrent_info_hash(torrent)
    clone = str(tmp_path / "clone")
    with seeding("transmission", tmp_path / "client", torrent, mount, tracker) as client, client.rechoking():
        magnet = f"magnet:?xt=urn:btih:{ih}&tr={tracker.announce_url}"
        proc = git(*LOOPBACK, "clone", "-q", f"gitp2p::{magnet}", clone)
        assert proc.stderr == "", proc.stderr
        assert_clone_of(clone, source)

        # the publisher moves on: 20 new commits on main
        work = str(tmp_path / "work")
        git("clone", "-q", source, work)
        for i in range(20):
            with open(os.path.join(work, f"new-{i}.txt"), "w") as fh:
                fh.write(f"change {i}\n" * (i + 1))
            git("add", ".", cwd=work)
            git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", f"new {i}", cwd=work)
        # (the source's main moves; the tests before this one cloned the unmoved source)
        git("config", "receive.denyCurrentBranch", "updateInstead", cwd=source)
        git("push", "-q", "origin", "main", cwd=work)
        new_torrent = mount.torrent("all", not_hash=ih)
        new_ih = torrent_info_hash(new_torrent)
        client.seed(new_torrent, mount.path)
        client.wait_checked(timeout=120)
        tracker.wait_peers(new_ih, seeders=1, timeout=60)

        git("config", "remote.origin.url", f"gitp2p::{new_torrent}", cwd=clone)
        proc = git(*LOOPBACK, "fetch", "-v", "origin", cwd=clone)
    assert_clone_of_fetch = refs(clone, "refs/remotes/origin/main")
    assert assert_clone_of_fetch == {"refs/remotes/origin/main": refs(source, "refs/heads/main")["refs/heads/main"]}
    m = re.search(r"gitp2p: (\d+) packs \((\d+) bytes\) fetched, (\d+) were here already; (\d+) bytes received",
                  proc.stderr)
    assert m, proc.stderr
    packs, pack_bytes, skipped, received = map(int, m.groups())
    assert packs == 20 and skipped > 0, proc.stderr
    manifest = os.path.getsize(mount.path / "packs" / "all.gitp2p-refs")
    assert received <= 1.2 * (pack_bytes + manifest) + 2 * 16384, (received, pack_bytes, manifest)
    git("fsck", "--strict", "--no-dangling", cwd=clone)


def test_no_peers_is_one_clear_line_and_nothing_is_left(tmp_path):
    ih = "c4ae68bd" * 5
    clone = str(tmp_path / "clone")
    proc = git("-c", "gitp2p.listen=127.0.0.1:0", "-c", "gitp2p.utp=false", "-c", "gitp2p.timeout=1",
               "clone", f"gitp2p::magnet:?xt=urn:btih:{ih}", clone, check=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("gitp2p: error:")]
    assert len(errors) == 1 and ih in errors[0] and "gitp2p.lan" in errors[0] and "tracker" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not os.path.exists(clone)


def test_bad_addresses_are_refused_clearly(tmp_path):
    not_ours = tmp_path / "other.torrent"
    from torrentcore.metainfo import build_info, build_torrent

    not_ours.write_bytes(build_torrent(build_info([(("a.txt",), 100)], [b"x" * 100], name="data")))
    cases = {
        str(tmp_path / "missing.torrent"): "cannot read",
        str(not_ours): "not a gitp2p repository torrent",
        "magnet:?xt=urn:btih:nothex": "bad magnet link",
        "ftp://example.org/x.torrent": "unsupported gitp2p address",
    }
    for address, why in cases.items():
        clone = str(tmp_path / "clone")
        proc = git(*LOOPBACK, "clone", f"gitp2p::{address}", clone, check=False)
        assert proc.returncode != 0, address
        assert why in proc.stderr and "Traceback" not in proc.stderr, (address, proc.stderr)
        assert not os.path.exists(clone)
        shutil.rmtree(clone, ignore_errors=True)


def test_helper_help_and_usage():
    helper = os.path.join(os.path.dirname(sys.executable), "git-remote-gitp2p")
    out = subprocess.run([helper, "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "gitp2p.timeout" in out.stdout and "git clone gitp2p::" in out.stdout
    bad = subprocess.run([helper], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "usage:" in bad.stderr


def test_kill_9_during_a_fetch_loses_nothing(swarm, tmp_path):
    """The helper is SIGKILLed right after it imported its first batch of packs: no ref
    moves, the repository stays fsck-clean, and the next fetch completes it."""
    source, mount, tracker = swarm
    torrent = mount.torrent("all")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "git-remote-gitp2p"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -m gitfs_p2p.testing.crashing after-cache:1 "
                       f"git-remote-gitp2p \"$@\"\n")
    wrapper.chmod(0o755)
    repo = str(tmp_path / "repo")
    git("init", "-q", repo)
    git("remote", "add", "origin", f"gitp2p::{torrent}", cwd=repo)
    with seeding("libtorrent", tmp_path / "client", torrent, mount, tracker):
        env = {**ENV, "PATH": f"{bindir}{os.pathsep}{ENV['PATH']}"}
        killed = subprocess.run(["git", *LOOPBACK, "fetch", "origin"], cwd=repo, env=env,
                                capture_output=True, text=True, timeout=180)
        assert killed.returncode != 0, killed.stderr
        assert refs(repo) == {}, "a ref moved although the fetch was killed"
        fsck = git("fsck", "--no-dangling", cwd=repo, check=False)
        assert fsck.returncode == 0, fsck.stderr
        assert git("count-objects", "-v", cwd=repo).stdout.count("packs: 0") == 0, "nothing was imported before the kill"
        git(*LOOPBACK, "fetch", "origin", cwd=repo)
    got = refs(repo, "refs/remotes/origin/")
    want = {"refs/remotes/origin/" + n[len("refs/heads/"):]: o for n, o in refs(source, "refs/heads/").items()}
    assert got == want
    assert refs(repo, "refs/tags/") == refs(source, "refs/tags/")
    git("fsck", "--strict", "--no-dangling", cwd=repo)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False


def test_clone_from_a_web_seed_alone(tmp_path):
    """BEP 19: no peer and no tracker, only a plain web server (busybox httpd, which answers
    Range requests) serving the mount's files at the URL the mount wrote into its torrents."""
    if NO_FUSE:
        pytest.skip("/dev/fuse is absent")
    if shutil.which("busybox") is None:
        pytest.skip("busybox (its httpd is the web seed) is not installed: scripts/setup.sh installs it")
    source = str(tmp_path / "source")
    generate(source, 30, seed=19)
    git("tag", "-a", "v2", "-m", "over HTTP", "HEAD~1", cwd=source)
    port = free_port()
    mount = Mount(source, tmp_path / "mnt", args=("--web-seed", f"http://127.0.0.1:{port}/")).start()
    httpd = None
    try:
        torrent = mount.torrent("all")
        httpd = subprocess.Popen(["busybox", "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", str(mount.path)],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
        wait_until(lambda: _http_ok(f"http://127.0.0.1:{port}/packs/all.gitp2p-refs"), 30, "busybox httpd to answer")
        clone = str(tmp_path / "clone")
        proc = git(*LOOPBACK, "clone", "--progress", f"gitp2p::{torrent}", clone)
        assert re.search(r"Receiving packs: 100% \(\d+/\d+\), .*, done\.", proc.stderr), proc.stderr
    finally:
        kill_group(httpd)
        mount.stop()
    assert_clone_of(clone, source)


# ------------------------------------------------------------------ a room without a tracker

#: Three laptops on one LAN: one /24 on the namespace's lo (LSD ignores announces from
#: outside its own network), each peer listening on its own address.
ROOM = ("10.77.0.1", "10.77.0.2", "10.77.0.3")
ROOM_PORT = 6881


def in_the_room(address: str) -> list[str]:
    """git -c options for the helper on `address`: local service discovery only."""
    return ["-c", "gitp2p.lan=true", "-c", f"gitp2p.listen={address}:{ROOM_PORT}", "-c", "gitp2p.utp=false",
            "-c", "gitp2p.timeout=30"]


def test_a_room_without_a_tracker_clones_and_fetches_by_lsd(tmp_path):
    """A seeds with --lan, no tracker anywhere; B clones A's magnet (discovery by BEP 14
    local service discovery only) and seeds its clone; C clones from the room; A moves on
    and C fetches the new commits from A's new magnet.  All in a network namespace this
    test creates (10.77.0.1-3/24 on its lo).

    Not by DHT: a node's announce is stored by the other nodes, never by itself, so with
    A and B up, B's lookup asks A's node, which holds B's announce and not A's: B found
    itself (tried).  B and C cloning at once (three nodes) passed 1 run in 7: whoever
    finishes first leaves, and the room is two nodes again.  A DHT needs three nodes
    that stay; LSD needs none (docs/remote-helper.md)."""
    if NO_FUSE:
        pytest.skip("/dev/fuse is absent")
    reason = why_no_namespace()
    if reason is not None:
        pytest.skip(reason)
    source = str(tmp_path / "A")
    generate(source, 40, seed=41)
    git("tag", "-a", "v0.1", "-m", "first", "HEAD~2", cwd=source)
    clone_b, clone_c = str(tmp_path / "B"), str(tmp_path / "C")
    with own_network_namespace(ROOM, prefix=24):
        seed_a = Seed(source, tmp_path / "seed-a", listen=ROOM[0], port=ROOM_PORT, announce_every=0,
                      args=("--lan",))
        seed_b = Seed(clone_b, tmp_path / "seed-b", listen=ROOM[1], port=ROOM_PORT, announce_every=0,
                      args=("--lan",))
        try:
            seed_a.start()
            ih = next(ih for label, origin, ih in seed_a.seeded() if label == "all")
            # the magnet A prints, to hand over; no tr=: nobody in the room runs a tracker
            magnet = seed_a.magnet(ih)
            assert "tr=" not in magnet, magnet

            git(*in_the_room(ROOM[1]), "clone", "-q", f"gitp2p::{magnet}", clone_b)
            assert_clone_of(clone_b, source)
            seed_b.start()
            seed_b.wait_seeding(ih)

            proc = git(*in_the_room(ROOM[2]), "clone", "--progress", f"gitp2p::{magnet}", clone_c)
            assert re.search(r"Receiving packs: 100% \(\d+/\d+\), .*, done\.", proc.stderr), proc.stderr
            assert_clone_of(clone_c, source)

            # A moves on: 5 new commits on main; its seed follows the ref and says the new magnet
            work = str(tmp_path / "work")
            git("clone", "-q", source, work)
            for i in range(5):
                with open(os.path.join(work, f"room-{i}.txt"), "w") as fh:
                    fh.write(f"said in the room {i}\n")
                git("add", ".", cwd=work)
                git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", f"room {i}", cwd=work)
            git("config", "receive.denyCurrentBranch", "updateInstead", cwd=source)
            git("push", "-q", "origin", "main", cwd=work)
            new_ih = seed_a.wait_seeding_new("all", not_hash=ih, timeout=120)

            git("remote", "set-url", "origin", f"gitp2p::{seed_a.magnet(new_ih)}", cwd=clone_c)
            git(*in_the_room(ROOM[2]), "pull", "-q", "--ff-only", cwd=clone_c)
        finally:
            seed_b.stop()
            seed_a.stop()
    main = refs(source, "refs/heads/main")["refs/heads/main"]
    assert refs(clone_c, "refs/remotes/origin/main") == {"refs/remotes/origin/main": main}
    assert git("rev-parse", "HEAD", cwd=clone_c).stdout.strip() == main
    assert refs(clone_c, "refs/tags/") == refs(source, "refs/tags/")
    git("fsck", "--strict", "--no-dangling", cwd=clone_c)
