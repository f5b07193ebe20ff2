"""After import, the receiver presents byte-identical files: same info-hash, and a stock client verifies 100%."""

from __future__ import annotations

import json
import os

import pytest

from gitfs_p2p.testing.lt import run_lt_script
from gitfs_p2p.testing.procs import libtorrent_available

from wsupport import deliver, write_manifest

from gitfs_p2p.git.repo import GitRepo
from gitfs_p2p.pack.manifest import RefManifest
from gitfs_p2p.store.source import PackSource
from gitfs_p2p.receive.importer import Importer
from torrentcore.metainfo import build_info, build_torrent, info_hash

SYSTEM_PYTHON = "/usr/bin/python3"



def _files(commits, pack_of, manifest: bytes):
    """Torrent layout: packs parents first, then the manifest (what changes shifts nothing)."""
    files = [((f"{c}.pack",), pack_of(c)) for c in commits]
    files.append((("demo.gitp2p-refs",), manifest))
    return files


def _write_tree(root, files):
    for path, data in files:
        target = os.path.join(root, "packs", *path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as fh:
            fh.write(data)


def _info(files):
    return build_info([(p, len(d)) for p, d in files], (d for _, d in files), "packs", multi_file=True)


def test_receiver_seeds_the_same_torrent(tmp_path, sender):
    d, repo = tmp_path / "dl", tmp_path / "repo"
    deliver(str(d), sender, reversed(sender.commits))
    write_manifest(str(d), sender.manifest())
    with Importer(str(d), str(repo), bare=True, settle=0.0) as imp:
        imp.run_pass(final=True)

    sent = _files(sender.commits, sender.packs.__getitem__, sender.manifest())
    with GitRepo(str(repo)) as received:
        source = PackSource(received)
        try:
            refs = {n: o.decode() for n, o in received.refs().items() if n != "HEAD"}
            manifest = RefManifest(refs, received.head_target()).to_bytes()
            served = _files(sender.commits, lambda c: source.pack(c.encode()), manifest)
        finally:
            source.close()
    assert [d for _, d in served] == [d for _, d in sent]
    sent_info, served_info = _info(sent), _info(served)
    assert info_hash(served_info) == info_hash(sent_info)

    if not libtorrent_available():
        pytest.skip("python3-libtorrent is not installed (apt-get install python3-libtorrent)")
    seed_dir = tmp_path / "seed"
    _write_tree(str(seed_dir), served)
    torrent = tmp_path / "packs.torrent"
    torrent.write_bytes(build_torrent(sent_info))
    done = run_lt_script("check_seed", str(torrent), str(seed_dir), timeout=180)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["progress"] == 1.0 and out["seeding"] and out["have"] == out["total"], out
