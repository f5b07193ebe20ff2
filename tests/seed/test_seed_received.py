"""`gitp2p seed` of a clone seeds the torrents it received, with the same info-hashes.

Repository A publishes `all` (every branch and tag); B is a plain `git clone` of A, whose
own torrents differ (its branches are only main; A's others are remote-tracking refs).
A's all torrent and its manifest are placed where the remote helper leaves them
(B/.git/gitp2p/received/<info-hash>.torrent and .gitp2p-refs); `gitp2p seed B` seeds that
info-hash from B's mount with the manifest taken from the stored file, and our own engine
in the test downloads it completely from the seed.  A received torrent naming a pack B
lacks is left out with a one-line note.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import trio

from torrentcore.metainfo import build_info, build_torrent, parse_torrent
from torrentcore.session import Engine, EngineConfig

from gitfs_p2p.git.repo import GitRepo
from gitfs_p2p.pack.rollup import ROLLUP_SPAN
from gitfs_p2p.store.source import PackSource
from gitfs_p2p.store.torrents import build_repo_torrent, select_refs
from gitfs_p2p.testing.procs import LOOPBACK, free_port
from gitfs_p2p.testing.seeding import Seed
from gitfs_p2p.testing.swarm import git, make_sample_repo
from testutil import git as tgit

pytestmark = pytest.mark.timeout(240)


def _all_torrent(repo: Path):
    """A's `all` torrent as `gitp2p torrent A --all` builds it (a RepoTorrent)."""
    source = PackSource(GitRepo(str(repo)))
    try:
        manifest, label = select_refs(source, [], all_refs=True)
        return build_repo_torrent(source, manifest, label)
    finally:
        source.close()
        source.repo.close()


def _lacking_torrent() -> tuple[bytes, bytes, str]:
    """A repository torrent naming a pack nobody has: (torrent, manifest, info-hash hex)."""
    pack = b"P" * 100
    manifest = b"gitp2p-refs 1\n"
    files = [(("0" * 40 + ".pack",), len(pack)), (("x.gitp2p-refs",), len(manifest))]
    info = build_info(files, [pack + manifest], "packs", multi_file=True)
    data = build_torrent(info)
    return data, manifest, parse_torrent(data).info_hash.hex()


@pytest.fixture(scope="module")
def clone_seed(tmp_path_factory):
    if not Path("/dev/fuse").exists():
        pytest.skip("no /dev/fuse")
    root = tmp_path_factory.mktemp("seed-received")
    repo_a = make_sample_repo(root / "A", 30, seed=21)
    clone = root / "B"
    git("clone", "-q", str(repo_a), str(clone), cwd=root)
    sent = _all_torrent(repo_a)
    received = clone / ".git" / "gitp2p" / "received"
    received.mkdir(parents=True)
    ih = sent.info_hash.hex()
    (received / f"{ih}.torrent").write_bytes(sent.torrent)
    (received / f"{ih}.gitp2p-refs").write_bytes(sent.manifest_bytes)
    lacking, lacking_manifest, lacking_ih = _lacking_torrent()
    (received / f"{lacking_ih}.torrent").write_bytes(lacking)
    (received / f"{lacking_ih}.gitp2p-refs").write_bytes(lacking_manifest)
    seed = Seed(clone, root / "seed", announce_every=0)
    try:
        seed.start()
        yield seed, sent, lacking_ih
    finally:
        seed.stop()


def test_received_torrent_is_seeded_with_its_info_hash(clone_seed):
    seed, sent, _ = clone_seed
    ih = sent.info_hash.hex()
    seeded = seed.seeded()
    assert ("all", "received", ih) in seeded, seed.output()
    # B's own all torrent differs (its refs are not A's): the manifest really is the stored one
    assert ("all", "mount", ih) not in seeded


def test_engine_downloads_received_torrent_from_seed(clone_seed, tmp_path):
    seed, sent, _ = clone_seed
    dest = tmp_path / "download"
    dest.mkdir()

    async def download():
        config = EngineConfig(listen=(f"{LOOPBACK}:{free_port()}",), utp=False, loopback=True)
        async with trio.open_nursery() as nursery:
            engine = await nursery.start(Engine(config).run)
            torrent = await engine.add_torrent(sent.torrent, str(dest))
            torrent.connect_peer(LOOPBACK, seed.port)
            await torrent.wait_for(lambda: torrent.status().finished, 60, "download from gitp2p seed")
            assert torrent.status().downloaded >= sum(size for _, size in sent.files)
            nursery.cancel_scope.cancel()

    trio.run(download)
    for name, _ in sent.files[:-1]:
        assert (dest / "packs" / name).read_bytes() == (seed.mountpoint / "packs" / name).read_bytes()
    assert (dest / "packs" / sent.manifest_name).read_bytes() == sent.manifest_bytes


def test_received_torrent_lacking_packs_is_left_out(clone_seed):
    seed, _, lacking_ih = clone_seed
    assert all(ih != lacking_ih for _, _, ih in seed.seeded())
    notes = [line for line in seed.output().splitlines() if line.startswith(f"not seeding received {lacking_ih}")]
    assert len(notes) == 1, seed.output()
    assert "1 of 1 packs are not in the mount" in notes[0]


def _tag_sealed_history(repo: Path) -> list[str]:
    """Annotated tags on A's sealed history (a signed one, a tag of it, a plain one) and a
    tag of a tree and one of a blob: all's torrent then carries two tag groups."""
    chain = tgit("rev-list", "--first-parent", "--reverse", "main", cwd=str(repo)).split()
    assert len(chain) > ROLLUP_SPAN + 10

    def tag(name: str, target: str, kind: str, signed: bool = False) -> str:
        body = f"object {target}\ntype {kind}\ntag {name}\ntagger T <t@example.invalid> 1313590000 +0000\n\n{name}\n"
        if signed:
            body += "-----BEGIN PGP SIGNATURE-----\n\niQEzBAABCAAdFiEE\n=abcd\n-----END PGP SIGNATURE-----\n"
        tid = tgit("hash-object", "-w", "-t", "tag", "--stdin", cwd=str(repo), input=body.encode()).strip()
        tgit("update-ref", f"refs/tags/{name}", tid, cwd=str(repo))
        return tid

    signed = tag("rel-1", chain[100], "commit", signed=True)
    tag("rel-1-outer", signed, "tag")
    tag("rel-2", chain[200], "commit")
    tag("tree-tag", tgit("rev-parse", f"{chain[50]}^{{tree}}", cwd=str(repo)).strip(), "tree")
    tag("blob-tag", tgit("hash-object", "-w", "--stdin", cwd=str(repo), input=b"a blob only a tag names\n").strip(), "blob")
    return ["rel-1", "rel-1-outer", "rel-2", "tree-tag", "blob-tag"]


@pytest.mark.parametrize("commits, tagged", [(12, False), (ROLLUP_SPAN + 150, False), (ROLLUP_SPAN + 150, True)],
                         ids=["short", "with-a-rollup", "with-tag-groups"])
def test_clone_through_remote_helper_seeds_same_info_hash(tmp_path, commits, tagged):
    """The whole path: `git clone gitp2p::A's all.torrent` from `gitp2p seed A`, then
    `gitp2p seed` of the clone seeds A's info-hash (and HEAD's, whose refs are the same),
    also when the torrent carries a roll-up (the clone rebuilds it from what it received)
    and tag groups (a signed tag, a tag of a tag, of a tree, of a blob)."""
    helper = Path(sys.executable).parent / "git-remote-gitp2p"
    if not helper.exists():
        pytest.skip(f"{helper} is not installed (pip install -e .)")
    if not Path("/dev/fuse").exists():
        pytest.skip("no /dev/fuse")
    repo_a = make_sample_repo(tmp_path / "A", commits, seed=31)
    tags = _tag_sealed_history(repo_a) if tagged else []
    with Seed(repo_a, tmp_path / "seed-A", announce_every=0) as seed_a:
        torrent = tmp_path / "A-all.torrent"
        torrent.write_bytes((seed_a.mountpoint / "torrents" / "all.torrent").read_bytes())
        sent = {label: ih for label, _, ih in seed_a.seeded()}
        files = ["/".join(f.path) for f in parse_torrent(torrent.read_bytes()).files]
        assert any(f.startswith("rollups/") and f.endswith(".rollup") for f in files) == (commits > ROLLUP_SPAN)
        assert sum(1 for f in files if f.startswith("rollups/") and f.endswith(".tags")) == (2 if tagged else 0)
        env = {"PATH": f"{helper.parent}{os.pathsep}{os.environ['PATH']}"}
        git("-c", f"gitp2p.peer={LOOPBACK}:{seed_a.port}", "-c", f"gitp2p.listen={LOOPBACK}:0",
            "-c", "gitp2p.utp=false", "-c", "gitp2p.timeout=60",
            "clone", "-q", f"gitp2p::{torrent}", str(tmp_path / "C"), cwd=tmp_path, env=env)
    for name in tags:  # every tag came through its group, byte for byte
        assert git("cat-file", "-p", name, cwd=tmp_path / "C") == git("cat-file", "-p", name, cwd=repo_a)
    with Seed(tmp_path / "C", tmp_path / "seed-C", announce_every=0) as seed_c:
        seeded = seed_c.seeded()
    assert ("all", "received", sent["all"]) in seeded, seed_c.output()
    assert ("HEAD", "mount", sent["HEAD"]) in seeded, seed_c.output()
