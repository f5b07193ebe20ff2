"""The trio tracker server on 127.0.0.1 (HTTP and UDP), and its command line."""

import socket
import struct
import subprocess
import sys

import pytest
import trio
from tc_support import IH, announce_target, pid, query

from torrentcore import bencode
from torrentcore.tracker import UDP_PROTOCOL_ID
from torrentcore.tracker_server import (
    RequestError,
    TrackerServer,
    build_http_response,
    load_allow_list,
    main,
    parse_request_head,
)


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
                assert status == b"HTTP/1.0 200 OK"
                assert bencode.decode(body)[b"incomplete"] == 1

                status, body = await http_get(http_port, get(b"/scrape?" + query(info_hash=IH)))
                assert bencode.decode(body)[b"files"][IH][b"incomplete"] == 1

                assert (await http_get(http_port, get(b"/x")))[0] == b"HTTP/1.0 404 Not Found"
                assert (await http_get(http_port, b"POST /announce HTTP/1.1\r\n\r\n"))[0] == \
                    b"HTTP/1.0 405 Method Not Allowed"
                huge = b"GET /announce?" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n"
                assert (await http_get(http_port, huge))[0].startswith(b"HTTP/1.0 431")

                sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                with sock:
                    await sock.connect(("127.0.0.1", udp_port))
                    await sock.send(struct.pack(">QII", UDP_PROTOCOL_ID, 0, 1))
                    action, txid, conn = struct.unpack(">IIQ", await sock.recv(100))
                    assert (action, txid) == (0, 1)
                    await sock.send(struct.pack(">QII20s20sQQQIIIiH", conn, 1, 2, IH, pid(2), 0,
                                                0, 0, 2, 0, 0, -1, 7002))
                    reply = await sock.recv(1000)
                    assert struct.unpack(">IIIII", reply[:20]) == (1, 2, 60, 1, 1)
                    assert reply[20:] == bytes([127, 0, 0, 1]) + struct.pack(">H", 7001)
                    # Junk does not stop the server.
                    await sock.send(b"junk")
            assert {p.port for p in server.tracker.peers(IH)} == {7001, 7002}
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


@pytest.mark.parametrize("head,status", [
    (b"GET /announce?x HTTP/1.1\r\nHost: a", None),
    (b"GET /announce HTTP/2", 400),
    (b"GET  /announce HTTP/1.1", 400),
    (b"PUT /announce HTTP/1.1", 405),
    (b"GET announce HTTP/1.1", 400),
    (b"GET /" + b"a" * 5000 + b" HTTP/1.1", 431),
])
def test_parse_request_head(head, status):
    if status is None:
        assert parse_request_head(head) == b"/announce?x"
    else:
        with pytest.raises(RequestError) as info:
            parse_request_head(head)
        assert info.value.status == status


def test_build_http_response():
    assert build_http_response(200, b"de") == (
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
        b"Connection: close\r\n\r\nde")


def test_load_allow_list():
    text = f"# hashes\n{IH.hex()}\n\n{'AB' * 20}  # upper case\n"
    assert load_allow_list(text) == {IH, b"\xab" * 20}
    with pytest.raises(ValueError, match="line 1"):
        load_allow_list("abc\n")
    with pytest.raises(ValueError, match="not hex"):
        load_allow_list("z" * 40)


# ------------------------------------------------------------------ command line


def test_cli_port_in_use_is_one_line_exit_2():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-c", "import sys; from torrentcore.tracker_server import main; "
             "sys.exit(main(sys.argv[1:]))", "--port", str(port)],
            capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"gitp2p tracker: cannot listen on 127.0.0.1:{port}: Address already in use"]


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: gitp2p tracker" in out and "--allow FILE" in out and "--interval S" in out


def test_cli_bad_allow_list(tmp_path, capsys):
    bad = tmp_path / "allow"
    bad.write_text("nothex\n")
    assert main(["--allow", str(bad)]) == 2
    assert capsys.readouterr().err.startswith("gitp2p tracker: bad allow-list")
    assert main(["--allow", str(tmp_path / "missing")]) == 2
    assert "cannot read allow-list" in capsys.readouterr().err
    assert main(["--interval", "0"]) == 2
