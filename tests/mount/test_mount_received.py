"""A receiver re-seeds what it got: watch into B, mount B, same torrent, 100% verified by a stock client."""

from __future__ import annotations

import os
import sys

from mounthelp import cli, wait_for
from testutil import client_download, generate, git

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "torrentcore"))
from tc_support import require_libtorrent, run_libtorrent  # noqa: E402


TRACKER = "http://127.0.0.1:6969/announce"

VERIFY = r"""
import sys, time, libtorrent as lt
s = lt.session({'listen_interfaces': '127.0.0.1:0', 'enable_dht': False, 'enable_lsd': False,
                'enable_upnp': False, 'enable_natpmp': False})
ti = lt.torrent_info(sys.argv[1])
h = s.add_torrent({'ti': ti, 'save_path': sys.argv[2]})
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    st = h.status()
    if st.state in (lt.torrent_status.seeding, lt.torrent_status.finished):
        break
    time.sleep(0.2)
st = h.status()
print(st.num_pieces, ti.num_pieces(), st.total_payload_download)
"""


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
    have, total, downloaded = map(int, run_libtorrent(VERIFY, path, m.path).split())
    assert have == total and downloaded == 0
