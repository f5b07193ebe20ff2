"""A receiver re-seeds what it got: watch into B, mount B, same torrent, 100% verified by a stock client."""

from __future__ import annotations

import json
import os

from mounthelp import cli, wait_for
from testutil import client_download, generate, git

from tc_support import require_libtorrent, run_libtorrent


TRACKER = "http://127.0.0.1:6969/announce"



def test_receiver_mount_serves_the_senders_torrent(tmp_path, mount_of):
    require_libtorrent()
    sender = str(tmp_path / "sender")
    generate(sender, 50, seed=11)
    # What a client would leave in its download directory.
    sent = client_download(sender, tmp_path / "downloads", trackers=[TRACKER])

    receiver = str(tmp_path / "receiver")
    proc = cli("watch", str(tmp_path / "downloads"), "--into", receiver, "--once")
    assert proc.returncode == 0, proc.stderr
    assert git("rev-parse", "refs/heads/main", cwd=receiver) == git("rev-parse", "refs/heads/main", cwd=sender)

    m = mount_of(receiver, "--tracker", TRACKER)
    path = m.p("torrents", "HEAD.torrent")
    assert wait_for(lambda: os.path.exists(path), timeout=60), "the receiver's mount published no torrent"
    with open(path, "rb") as fh:
        assert fh.read() == sent.torrent, "the receiver's torrent differs from the sender's"
    out = json.loads(run_libtorrent("check_seed", path, m.path))
    have, total, downloaded = out["have"], out["total"], out["downloaded"]
    assert have == total and downloaded == 0
