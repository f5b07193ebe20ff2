"""The trio tracker server on 127.0.0.1 (HTTP and UDP); its command line: tests/torrents/test_tracker_cli.py."""

import socket
import struct

import pytest
import trio
from tc_support import IH, announce_target, pid, query

from torrentcore import bencode
from torrentcore.tracker import UDP_PROTOCOL_ID
from torrentcore.tracker.server import TrackerServer, load_allow_list


async def http_get(port, raw_request):
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(raw_request)
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body


def get(target):
    return b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nUser-Agent: test\r\n\r\n"


def test_http_and_udp_on_one_port():
    async def scenario():
        server = TrackerServer(host="127.0.0.1", port=0, interval=60)
        async with trio.open_nursery() as nursery:
            http_port, udp_port = await nursery.start(server.run)
            assert http_port == udp_port != 0
            with trio.fail_after(30):
                status, body = await http_get(http_port, get(announce_target(peer=1, port=7001)))
                assert status == b"HTTP/1.1 200 OK"
                assert bencode.decode(body)[b"incomplete"] == 1

                status, body = await http_get(http_port, get(b"/scrape?" + query(info_hash=IH)))
                assert bencode.decode(body)[b"files"][IH][b"incomplete"] == 1

                assert (await http_get(http_port, get(b"/x")))[0] == b"HTTP/1.1 404 Not Found"
                post = b"POST /announce HTTP/1.1\r\nHost: x\r\n\r\n"
                assert (await http_get(http_port, post))[0] == b"HTTP/1.1 405 Method Not Allowed"
                huge = b"GET /announce?" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n"
                assert (await http_get(http_port, huge))[0].startswith(b"HTTP/1.1 431")
                # HTTP/1.0 without Host, and bare LF line endings, are served at once.
                status, body = await http_get(
                    http_port, b"GET " + announce_target(peer=3, port=7003) + b" HTTP/1.0\n\n")
                assert status == b"HTTP/1.1 200 OK"
                assert bencode.decode(body)[b"incomplete"] == 2

                sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                with sock:
                    await sock.connect(("127.0.0.1", udp_port))
                    await sock.send(struct.pack(">QII", UDP_PROTOCOL_ID, 0, 1))
                    action, txid, conn = struct.unpack(">IIQ", await sock.recv(100))
                    assert (action, txid) == (0, 1)
                    await sock.send(struct.pack(">QII20s20sQQQIIIiH", conn, 1, 2, IH, pid(2), 0,
                                                0, 0, 2, 0, 0, -1, 7002))
                    reply = await sock.recv(1000)
                    assert struct.unpack(">IIIII", reply[:20]) == (1, 2, 60, 2, 1)
                    assert sorted(reply[20 + i:26 + i] for i in (0, 6)) == sorted(
                        bytes([127, 0, 0, 1]) + struct.pack(">H", p) for p in (7001, 7003))
                    # Junk does not stop the server.
                    await sock.send(b"junk")
            assert {p.port for p in server.tracker.peers(IH)} == {7001, 7002, 7003}
            nursery.cancel_scope.cancel()

    trio.run(scenario)


def test_http_client_that_never_finishes_its_request_is_dropped():
    async def scenario():
        server = TrackerServer(port=0, udp=False)
        async with trio.open_nursery() as nursery:
            http_port, udp_port = await nursery.start(server.run)
            assert udp_port is None
            stream = await trio.open_tcp_stream("127.0.0.1", http_port)
            await stream.send_all(b"GET /announce")
            with trio.fail_after(60):  # REQUEST_TIMEOUT is 10 s; the autojump clock skips it
                assert await stream.receive_some(100) == b""
            nursery.cancel_scope.cancel()

    trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0.1))


def test_load_allow_list():
    text = f"# hashes\n{IH.hex()}\n\n{'AB' * 20}  # upper case\n"
    assert load_allow_list(text) == {IH, b"\xab" * 20}
    with pytest.raises(ValueError, match="line 1"):
        load_allow_list("abc\n")
    with pytest.raises(ValueError, match="not hex"):
        load_allow_list("z" * 40)
