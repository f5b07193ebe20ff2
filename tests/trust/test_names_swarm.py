"""gitp2p://KEY/NAME end to end on 127.0.0.1: a room's DHT (four nodes that stay), a publisher
running `gitp2p publish` (its seed, a real FUSE mount, signing its manifests with an ssh
key), and real git cloning and fetching by the name through git-remote-gitp2p.  Peers are
found through the DHT too: nobody runs a tracker.

One swarm for the module (set up once): the tests run in order, each leaving the publisher
a little further on."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
import trio

from gitfs_p2p.testing.dhtroom import DhtRoom
from gitfs_p2p.testing.procs import wait_until
from gitfs_p2p.testing.seeding import Seed
from gitfs_p2p.trust.names import publisher_key
from testutil import git
from torrentcore.mutable import value_for
from torrentcore.session import Engine, EngineConfig
from tsupport import Publisher, allowed_signers, make_key, refs_of

NO_FUSE = not os.path.exists("/dev/fuse")
ENV = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
       "GIT_TERMINAL_PROMPT": "0"}
PUBLISHED = re.compile(r"^published (gitp2p://[0-9a-f]{64}/\S+): torrent ([0-9a-f]{40}), sequence number (\d+)",
                       re.M)


class Publishing(Seed):
    """`gitp2p -v publish REPO NAME --dht-node ...` (a seed that also puts the name), or with
    refs, `gitp2p -v publish REPO --name NAME REF... --dht-node ...`."""

    def __init__(self, repo, workdir, name: str, nodes: list[str], refs: tuple[str, ...] = ()):
        super().__init__(repo, workdir, announce_every=0, args=tuple(a for n in nodes for a in ("--dht-node", n)))
        self.name = name
        self.refs = refs

    def command(self) -> list[str]:
        cmd = super().command()
        at = cmd.index("seed")
        named = ["--name", self.name, *self.refs] if self.refs else [self.name]  # the form of before
        return cmd[:at] + ["publish", cmd[at + 1], *named] + cmd[at + 2:]

    def published(self) -> list[tuple[str, str, int]]:
        return [(a, ih, int(seq)) for a, ih, seq in PUBLISHED.findall(self.output())]

    def wait_published(self, not_hash: str | None = None, timeout: float = 120) -> tuple[str, str, int]:
        """What was published last, once it is not `not_hash` (a torrent published before)."""
        def new():
            self._check_alive()
            published = self.published()
            return published[-1] if published and published[-1][1] != not_hash else None
        return wait_until(new, timeout, "the name to be published", details=self.details)


def run_git(*args: str, cwd=None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["git", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=180)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def swarm(tmp_path_factory):
    if NO_FUSE:
        pytest.skip("/dev/fuse is absent")
    base = tmp_path_factory.mktemp("names")
    keys = base / "keys"
    keys.mkdir()
    alice, mallory = make_key(keys, "alice"), make_key(keys, "mallory")
    publisher = Publisher(base / "pub", alice)
    with DhtRoom(base / "room", 4) as room:
        seed = Publishing(publisher.path, base / "seed", "project", room.nodes)
        with seed:
            address, ih, seq = seed.wait_published()
            yield {"base": base, "room": room, "seed": seed, "publisher": publisher, "address": address,
                   "first": (ih, seq), "alice": alice, "mallory": mallory,
                   "allowed": allowed_signers(base / "allowed", ("alice@example.org", alice)),
                   "not_allowed": allowed_signers(base / "not-allowed", ("mallory@example.org", mallory))}


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`gitp2p ARGS`, which must succeed."""
    done = subprocess.run([sys.executable, "-m", "gitfs_p2p.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV)
    assert done.returncode == 0, done.stderr
    return done


def room_config(room, allowed=None) -> list[str]:
    out = ["-c", "gitp2p.listen=127.0.0.1:0", "-c", "gitp2p.utp=false", "-c", "gitp2p.timeout=30"]
    if allowed is not None:
        out += ["-c", f"gitp2p.allowedSignersFile={allowed}"]
    for node in room.nodes:
        out += ["-c", f"gitp2p.dhtNode={node}"]
    return out


def test_publish_prints_the_address_made_from_the_repositorys_key(swarm):
    key = publisher_key(str(swarm["publisher"].path / ".git"))
    assert swarm["address"] == f"gitp2p://{key.public.hex()}/project"
    out = swarm["seed"].output()
    assert f"git clone {swarm['address']} pub" in out
    assert key.seed.hex() not in out + swarm["seed"].err_path.read_text()  # the secret is never printed
    assert git("config", "gitp2p.publishName", cwd=swarm["publisher"].path).strip() == "project"


def test_clone_by_name_then_fetch_follows_the_publisher(swarm):
    clone = swarm["base"] / "clone"
    done = run_git("clone", *room_config(swarm["room"], swarm["allowed"]), swarm["address"], str(clone))
    assert "verified" in done.stderr  # the manifest's signature, by alice's key
    pub = refs_of(swarm["publisher"].path)
    assert refs_of(clone)["refs/remotes/origin/main"] == pub["refs/heads/main"]
    assert run_git("fsck", "--strict", cwd=clone).returncode == 0
    assert run_git("config", "remote.origin.url", cwd=clone).stdout.strip() == swarm["address"]

    # the publisher moves on: its seed puts the name again, with a higher sequence number
    ih1, seq1 = swarm["first"]
    new = swarm["publisher"].commit("after the clone")
    _, ih2, seq2 = swarm["seed"].wait_published(not_hash=ih1)
    assert seq2 > seq1
    run_git("fetch", "origin", cwd=clone)
    assert refs_of(clone)["refs/remotes/origin/main"] == new
    assert run_git("fsck", "--strict", cwd=clone).returncode == 0
    swarm["fetched"] = (ih2, seq2)


def test_a_key_not_allowed_moves_nothing(swarm):
    clone = swarm["base"] / "clone-not-allowed"
    done = run_git("clone", *room_config(swarm["room"], swarm["not_allowed"]), swarm["address"], str(clone),
                   check=False)
    assert done.returncode != 0
    assert "refs not updated" in done.stderr and "allowed" in done.stderr, done.stderr


def test_an_older_item_from_other_nodes_is_a_replay(swarm, tmp_path):
    """The attacker's DHT (nodes of its own) holds a real, older item of the publisher: it names
    the first torrent with sequence number 1, lower than the one the clone accepted."""
    assert "fetched" in swarm, "runs after test_clone_by_name_then_fetch_follows_the_publisher"
    clone = swarm["base"] / "clone"
    key = publisher_key(str(swarm["publisher"].path / ".git"))
    before = refs_of(clone)
    with DhtRoom(tmp_path / "attacker", 3) as other:
        args = ["-c", "gitp2p.timeout=30"] + [a for n in other.nodes for a in ("-c", f"gitp2p.dhtNode={n}")]

        def fetch() -> subprocess.CompletedProcess:
            # git -c adds to the clone's own gitp2p.dhtNode list: give the attacker's nodes alone
            shutil.copy(clone / ".git" / "config", tmp_path / "config")
            run_git("config", "--unset-all", "gitp2p.dhtNode", cwd=clone)
            try:
                return run_git(*args, "fetch", "origin", cwd=clone, check=False)
            finally:
                shutil.copy(tmp_path / "config", clone / ".git" / "config")

        async def plant_then_fetch():
            config = EngineConfig(listen=("127.0.0.1:0",), dht=True, dht_nodes=tuple(other.nodes), utp=False,
                                  loopback=True)
            async with trio.open_nursery() as nursery:
                engine = await nursery.start(Engine(config).run)
                with trio.fail_after(60):
                    seq, _ = await engine.put_mutable(key, b"project", value_for(bytes.fromhex(swarm["first"][0])))
                # the planting node stays while git fetches (a node that left makes lookups wait for it)
                done = await trio.to_thread.run_sync(fetch)
                nursery.cancel_scope.cancel()
            return seq, done

        planted, done = trio.run(plant_then_fetch)
    assert planted < swarm["fetched"][1]
    assert done.returncode != 0
    assert f"replay: the DHT's item has sequence number {planted}, older than {swarm['fetched'][1]}" in done.stderr
    assert refs_of(clone) == before


def test_git_push_publishes_from_the_repository_holding_the_key(swarm, tmp_path):
    """A second publisher with no seed: `gitp2p publish --no-seed` gives its address, and
    `git push` to it starts a background seed that publishes; a later push hands over to it.
    In a room of its own: its seed is stopped at the end, and a DHT node that left makes
    every put and lookup of the nodes that stay wait for it (docs/names.md)."""
    base = swarm["base"]
    with DhtRoom(tmp_path / "room", 4) as room:
        _push_and_hand_over(swarm, base, room)


def _push_and_hand_over(swarm, base, room) -> None:
    other = Publisher(base / "other", None)
    made = cli("publish", str(other.path), "other", "--no-seed", timeout=60)
    address = re.search(r"gitp2p://[0-9a-f]{64}/other", made.stdout).group(0)
    engine = room_config(room)
    seed_pid = None
    try:
        pushed = run_git(*engine, "push", address, "main", cwd=other.path)
        seed_pid = int(re.search(r"kill (\d+)", pushed.stderr).group(1))
        assert "* [new branch]      main -> main" in pushed.stderr, pushed.stderr

        clone = base / "clone-other"
        run_git("clone", *engine, address, str(clone))
        assert refs_of(clone)["refs/remotes/origin/main"] == refs_of(other.path)["refs/heads/main"]

        # the running seed publishes a moved main by itself (within a second or so): a push of
        # main could find it published already ("Everything up-to-date").  A push to another
        # name makes that ref, so it always has something to hand over to the seed.
        new = other.commit("pushed later")
        again = run_git(*engine, "push", address, "main:release", cwd=other.path)
        assert f"(pid {seed_pid})" in again.stderr and "kill" not in again.stderr  # the running seed took it
        assert "main -> release" in again.stderr, again.stderr
        run_git("fetch", "origin", cwd=clone)
        assert refs_of(clone)["refs/remotes/origin/release"] == new
        assert refs_of(clone)["refs/remotes/origin/main"] == new

        # a repository without the key cannot push to the name
        refused = run_git(*engine, "push", address, "main", cwd=swarm["publisher"].path, check=False)
        assert refused.returncode != 0 and "publishes under key" in refused.stderr, refused.stderr
    finally:
        if seed_pid is not None:
            os.kill(seed_pid, 15)
            wait_until(lambda: not os.path.exists(f"/proc/{seed_pid}"), 60, "the pushed seed to stop")


def test_a_clones_seed_follows_the_name(swarm):
    """`gitp2p seed CLONE --follow`: the clone fetches its gitp2p:// remote by itself and seeds
    the publisher's new torrent, with the publisher's info-hash."""
    clone = swarm["base"] / "clone"
    assert (clone / ".git" / "gitp2p" / "received").is_dir(), "runs after the clone test"
    follower = Seed(clone, swarm["base"] / "follower", announce_every=0,
                    args=("--follow", "1", *[a for n in swarm["room"].nodes for a in ("--dht-node", n)]))
    with follower:
        _, current, _ = swarm["seed"].wait_published()
        follower.wait_seeding(current)  # what the clone fetched last (or fetches now)
        new = swarm["publisher"].commit("followed")
        _, newer, _ = swarm["seed"].wait_published(not_hash=current)
        follower.wait_seeding(newer, timeout=120)
        assert ("all", "received", newer) in follower.seeded()
        assert refs_of(clone)["refs/remotes/origin/main"] == new
        # it switched: the torrent fetched before is dropped (the fetch replaced it), at once or,
        # when the new one waits a poll for the mount to lay out its packs, before
        out = follower.output()
        assert (f"all: refs moved, seeding {newer} instead of {current}" in out
                or f"stopped seeding all {current} (no longer offered)" in out), out
        assert "following origin: up to date with its name" in follower.output()


def test_publish_chosen_refs_and_push_adds_one(swarm, tmp_path):
    """`gitp2p publish REPO --name chosen main v1.0`: the name publishes the torrent `gitp2p torrent
    REPO main v1.0` makes (same info-hash), a clone by the name gets exactly main and v1.0 (not the
    branch wip, nor its commit); `git push NAME wip` then adds wip to what the name publishes.
    In a room of its own, as the seeds of the tests before it (stopped) are not in it."""
    with DhtRoom(tmp_path / "room", 4) as room:
        _chosen_refs(swarm, swarm["base"], room)


def _chosen_refs(swarm, base, room) -> None:
    pub = Publisher(base / "chosen", swarm["alice"])
    git("tag", "-a", "-m", "release", "v1.0", cwd=pub.path)
    git("checkout", "-q", "-b", "wip", cwd=pub.path)
    wip = pub.commit("not published")
    git("checkout", "-q", "main", cwd=pub.path)
    pub.commit("after the tag")
    expected = re.search(r"info-hash ([0-9a-f]{40})", cli("torrent", str(pub.path), "main", "v1.0").stdout).group(1)
    engine = room_config(room)

    seed = Publishing(pub.path, base / "chosen-seed", "chosen", room.nodes, refs=("main", "v1.0"))
    with seed:
        address, ih, _ = seed.wait_published()
        assert address.endswith("/chosen") and ih == expected
        assert "(main, v1.0) as gitp2p://" in seed.output()
        clone = base / "clone-chosen"
        done = run_git("clone", *room_config(room, swarm["allowed"]), address, str(clone))
        assert "verified" in done.stderr
        pub_refs, got = refs_of(pub.path), refs_of(clone)
        assert got["refs/remotes/origin/main"] == pub_refs["refs/heads/main"]
        assert got["refs/tags/v1.0"] == pub_refs["refs/tags/v1.0"]  # the tag object itself
        assert sorted(r for r in got if not r.startswith("refs/heads/")) == [
            "refs/remotes/origin/HEAD", "refs/remotes/origin/main", "refs/tags/v1.0"]
        assert run_git("cat-file", "-e", wip, cwd=clone, check=False).returncode != 0  # wip's commit: not sent
        assert run_git("fsck", "--strict", cwd=clone).returncode == 0

        pushed = run_git(*engine, "push", address, "wip", cwd=pub.path)
        assert "refs/heads/wip added to the refs" in pushed.stderr, pushed.stderr
        assert f"(pid {seed.proc.pid})" in pushed.stderr and "kill" not in pushed.stderr  # the running seed
        assert git("config", "gitp2p.publishRefs", cwd=pub.path).split() == [
            "refs/heads/main", "refs/heads/wip", "refs/tags/v1.0"]
        run_git("fetch", "origin", cwd=clone)
        assert refs_of(clone)["refs/remotes/origin/wip"] == wip
        assert run_git("fsck", "--strict", cwd=clone).returncode == 0
