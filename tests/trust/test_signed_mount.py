"""A mount of a repository that signs its manifests: its torrents end in the signature,
`packs/<label>.gitp2p-sig` serves it, and a receiver with allowed signers takes the refs;
`gitp2p seed` (which serves from such a mount) seeds it to a verifying `git clone`.

A real FUSE mount (gitp2p mount), real ssh-keygen, real git; the files a client would
download are read from the mount and checked piece by piece against the mount's torrent.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from gitfs_p2p.testing.procs import LOOPBACK
from gitfs_p2p.testing.seeding import Seed
from gitfs_p2p.testing.swarm import Mount
from gitfs_p2p.trust import sigfile
from torrentcore.metainfo import parse_torrent
from tsupport import Publisher, receiver, refs_of, watch_once

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="/dev/fuse is absent: no FUSE mount can be made here")


def _download(torrent, mount: Mount, dest) -> list[str]:
    """Each file of the torrent, read from the mount into DEST/packs/, every piece checked."""
    meta = parse_torrent(torrent.read_bytes())
    packs = dest / "packs"
    packs.mkdir(parents=True, exist_ok=True)
    stream = b""
    for f in meta.files:
        data = (mount.path / "packs" / "/".join(f.path)).read_bytes()
        assert len(data) == f.length
        target = packs.joinpath(*f.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        stream += data
    pl = meta.piece_length
    assert [hashlib.sha1(stream[i:i + pl]).digest() for i in range(0, len(stream), pl)] == list(meta.pieces)
    return ["/".join(f.path) for f in meta.files]


def test_a_signing_mount_publishes_verifiable_torrents(tmp_path, keys, allowed):
    alice = keys["alice"]
    pub = Publisher(tmp_path / "pub", alice)
    mount = Mount(pub.path, tmp_path / "mnt").start()
    try:
        torrent = mount.torrent("all")
        first_hash = parse_torrent(torrent.read_bytes()).info_hash.hex()
        names = _download(torrent, mount, tmp_path / "dl1")
        assert names[-2:] == ["all.gitp2p-refs", "all.gitp2p-sig"]
        sig = sigfile.parse((tmp_path / "dl1" / "packs" / "all.gitp2p-sig").read_bytes())
        assert sig.name == "all"
        head_names = _download(mount.torrent("HEAD"), mount, tmp_path / "dl-head")
        assert head_names[-1] == "HEAD.gitp2p-sig"

        into = receiver(tmp_path / "recv.git", allowed)
        rc, err = watch_once(tmp_path / "dl1", into)
        assert rc == 0, err
        assert refs_of(into) == refs_of(pub.path)

        # the refs move: the mount signs the new manifest with a newer sequence number
        pub.commit("moved on")
        torrent = mount.torrent("all", not_hash=first_hash)
        _download(torrent, mount, tmp_path / "dl2")
        newer = sigfile.parse((tmp_path / "dl2" / "packs" / "all.gitp2p-sig").read_bytes())
        assert newer.seq > sig.seq
        rc, err = watch_once(tmp_path / "dl2", into)
        assert rc == 0, err
        assert refs_of(into) == refs_of(pub.path)
        second_hash = parse_torrent(torrent.read_bytes()).info_hash.hex()
    finally:
        mount.stop()
    # mounted again on unchanged refs: the kept signature, so the same info-hash
    mount = Mount(pub.path, tmp_path / "mnt2").start()
    try:
        assert parse_torrent(mount.torrent("all").read_bytes()).info_hash.hex() == second_hash
    finally:
        mount.stop()


def test_gitp2p_seed_signs_and_a_verified_clone_seeds_the_same_info_hash(tmp_path, keys, allowed):
    """The whole path with our own engine on 127.0.0.1: `gitp2p seed A` (A signs), `git clone
    -c gitp2p.allowedSignersFile=... gitp2p::A's all.torrent` verifies the signature, and
    `gitp2p seed` of the clone seeds A's info-hash, the signature file renamed in place."""
    helper = os.path.join(os.path.dirname(sys.executable), "git-remote-gitp2p")
    if not os.path.exists(helper):
        pytest.skip(f"{helper} is not installed (pip install -e .)")
    alice = keys["alice"]
    pub = Publisher(tmp_path / "A", alice)
    with Seed(pub.path, tmp_path / "seed-A", announce_every=0) as seed_a:
        torrent = tmp_path / "A-all.torrent"
        torrent.write_bytes((seed_a.mountpoint / "torrents" / "all.torrent").read_bytes())
        sent = {label: ih for label, _, ih in seed_a.seeded()}
        assert tuple(parse_torrent(torrent.read_bytes()).files[-1].path) == ("all.gitp2p-sig",)
        env = {**os.environ, "PATH": f"{os.path.dirname(helper)}{os.pathsep}{os.environ['PATH']}",
               "GIT_CONFIG_GLOBAL": os.devnull}
        proc = subprocess.run(
            ["git", "-c", f"gitp2p.peer={LOOPBACK}:{seed_a.port}", "-c", f"gitp2p.listen={LOOPBACK}:0",
             "-c", "gitp2p.utp=false", "-c", "gitp2p.timeout=60", "clone",
             "-c", f"gitp2p.allowedSignersFile={allowed}", f"gitp2p::{torrent}", str(tmp_path / "C")],
            env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert "signed by alice@example.org" in proc.stderr and "verified" in proc.stderr
    assert refs_of(tmp_path / "C")["refs/remotes/origin/main"] == refs_of(pub.path)["refs/heads/main"]
    with Seed(tmp_path / "C", tmp_path / "seed-C", announce_every=0) as seed_c:
        seeded = seed_c.seeded()
    assert ("all", "received", sent["all"]) in seeded, seed_c.output()
