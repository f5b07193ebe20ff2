"""After import, the receiver presents byte-identical files: same info-hash, and a stock client verifies 100%."""

from __future__ import annotations

import os
import subprocess

import pytest

from wsupport import deliver, write_manifest

from gitfs_p2p.git.repo import GitRepo
from gitfs_p2p.pack.manifest import RefManifest
from gitfs_p2p.store.source import PackSource
from gitfs_p2p.receive.importer import Importer
from torrentcore.metainfo import build_info, build_torrent, info_hash

SYSTEM_PYTHON = "/usr/bin/python3"

_LT_CHECK = r"""
import sys, time
import libtorrent as lt
torrent, save_path = sys.argv[1], sys.argv[2]
session = lt.session({"enable_dht": False, "enable_lsd": False, "enable_upnp": False,
                      "enable_natpmp": False, "listen_interfaces": "127.0.0.1:0"}, 0)
params = lt.add_torrent_params()
params.ti = lt.torrent_info(torrent)
params.save_path = save_path
handle = session.add_torrent(params)
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    st = handle.status()
    if st.state not in (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data,
                        lt.torrent_status.allocating) and st.has_metadata:
        break
    time.sleep(0.1)
st = handle.status()
print(st.progress, st.is_seeding, st.num_pieces, handle.torrent_file().num_pieces())
"""


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

    if not os.access(SYSTEM_PYTHON, os.X_OK) or subprocess.run(
        [SYSTEM_PYTHON, "-c", "import libtorrent"], capture_output=True
    ).returncode:
        pytest.skip("python3-libtorrent is not installed (apt-get install python3-libtorrent)")
    seed_dir = tmp_path / "seed"
    _write_tree(str(seed_dir), served)
    torrent = tmp_path / "packs.torrent"
    torrent.write_bytes(build_torrent(sent_info))
    out = subprocess.run(
        [SYSTEM_PYTHON, "-c", _LT_CHECK, str(torrent), str(seed_dir)], capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr
    progress, seeding, have, total = out.stdout.split()
    assert float(progress) == 1.0 and seeding == "True" and have == total, out.stdout
