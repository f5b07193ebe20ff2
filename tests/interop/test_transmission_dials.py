"""transmission 3.00 never dials a peer on 127.0.0.0/8: the limitation that keeps the
transmission -> transmission pair of test_interop_swarm.py off 127.0.0.1 (it runs in a
private network namespace there instead), shown directly and without waiting out a timeout.

In a network namespace of the test's own (10.77.0.1-3 on its lo), a scripted tracker
answers transmission's announce with two peers in one reply: 127.0.0.1:P (loopback) and
10.77.0.2:Q (not loopback), both sockets of this test. transmission dials Q: it has read
the reply and dials the peers it accepts. Both peers arrived together and transmission
dials up to 6 candidates every 0.5 s (libtransmission/peer-mgr.c: RECONNECT_PERIOD_MSEC,
MAX_CONNECTIONS_PER_PULSE), so had it accepted P it would have dialled P in the same pulse
as Q; P is watched for a few more pulses after Q's connection (OBSERVE_AFTER seconds) and
must stay silent. A control shows that P is reachable from transmission's address, so the
silence is transmission's choice (its "martian" address filter, net.c isMartianAddr), not
the kernel's. If a later transmission dials loopback peers, this test fails: set
Transmission.dials_loopback and run the pair on 127.0.0.1 again.
"""

from __future__ import annotations

import http.server
import select
import socket
import struct
import threading

import pytest

from torrentcore import bencode
from torrentcore.metainfo import build_info, build_torrent

from gitfs_p2p.testing.clients import Transmission
from gitfs_p2p.testing.procs import client_available

REPLY_TIMEOUT = 30    # seconds for transmission to announce and dial the peer it accepts
OBSERVE_AFTER = 2.0   # seconds (4 of its reconnect pulses) P is watched after Q is dialled


def _listener(host: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((host, 0))
    sock.listen(8)
    sock.setblocking(False)
    return sock


def _compact(host: str, port: int) -> bytes:
    return socket.inet_aton(host) + struct.pack(">H", port)


class _ScriptedTracker(http.server.ThreadingHTTPServer):
    """Answers every announce with the same peer list; counts the announces."""

    daemon_threads = True

    def __init__(self, host: str, peers: bytes):
        self.peers = peers
        self.announces = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(handler):
                server = handler.server
                server.announces += 1
                body = bencode.encode({b"interval": 1800, b"min interval": 1800,
                                       b"complete": 2, b"incomplete": 0, b"peers": server.peers})
                handler.send_response(200)
                handler.send_header("Content-Type", "text/plain")
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

            def log_message(handler, *args):
                pass

        super().__init__((host, 0), Handler)


@pytest.mark.timeout(120)
def test_transmission_never_dials_a_loopback_peer(tmp_path, request):
    reason = client_available("transmission")
    if reason:
        pytest.skip(reason)
    tracker_host, other_host, own_host = request.getfixturevalue("private_network")[:3]
    loopback_peer = _listener("127.0.0.1")
    other_peer = _listener(other_host)
    sockets = [loopback_peer, other_peer]
    transmission = None
    tracker = None
    try:
        # control: from transmission's own address, the loopback peer can be reached
        with socket.socket() as probe:
            probe.bind((own_host, 0))
            probe.settimeout(5)
            probe.connect(loopback_peer.getsockname())
            control, _ = select.select([loopback_peer], [], [], 5)[0][0].accept()
            assert control.getpeername()[0] == own_host
            control.close()

        peers = _compact("127.0.0.1", loopback_peer.getsockname()[1]) + \
            _compact(other_host, other_peer.getsockname()[1])
        tracker = _ScriptedTracker(tracker_host, peers)
        threading.Thread(target=tracker.serve_forever, daemon=True).start()
        announce = f"http://{tracker_host}:{tracker.server_address[1]}/announce"
        torrent = tmp_path / "wanted.torrent"
        torrent.write_bytes(build_torrent(build_info([(("wanted.bin",), 1 << 16)], [bytes(1 << 16)],
                                                     "wanted.bin"), [announce]))

        transmission = Transmission(tmp_path / "transmission", host=own_host)
        transmission.download(torrent, tmp_path / "download")

        ready, _, _ = select.select([other_peer], [], [], REPLY_TIMEOUT)
        assert ready, (f"transmission dialled neither peer within {REPLY_TIMEOUT} s "
                       f"({tracker.announces} announce(s))\n{transmission.details()}")
        conn, (dialled_from, _) = other_peer.accept()
        sockets.append(conn)
        assert dialled_from == own_host
        assert tracker.announces >= 1
        # the same reply listed the loopback peer: within the next pulses it stays silent
        dialled, _, _ = select.select([loopback_peer], [], [], OBSERVE_AFTER)
        assert dialled == [], "transmission dialled a peer on 127.0.0.0/8: set Transmission.dials_loopback"
    finally:
        if transmission is not None:
            transmission.stop()
        if tracker is not None:
            tracker.shutdown()
            tracker.server_close()
        for sock in sockets:
            sock.close()
