"""`gitp2p tracker` (gitfs_p2p/cli/tracker.py): options, usage errors through the CLI's one
boundary (exit 2, one `gitp2p: error:` line), and a real server on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import sys
from urllib.parse import quote_from_bytes

import pytest

from gitfs_p2p.cli import main
from torrentcore import bencode

TRACKER = [sys.executable, "-m", "gitfs_p2p.cli", "tracker"]


def test_port_in_use_is_one_line_exit_2():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([*TRACKER, "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"gitp2p: error: cannot listen on 127.0.0.1:{port}: Address already in use"]


def test_help_states_the_defaults(capsys):
    with pytest.raises(SystemExit) as info:
        main(["tracker", "--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "usage: gitp2p tracker" in out and "--allow FILE" in out
    assert "--interval S announce interval sent to clients, in seconds (default: 1800" in out
    assert "max(interval, 600), i.e. 2700 with the default interval" in out
    for option, default in [("--source-rate R", "50.0"), ("--source-burst N", "500"),
                            ("--max-peers N", "100000"), ("--max-peers-per-source N", "1000"),
                            ("--max-connections N", "512"),
                            ("--max-connections-per-source N", "64")]:
        assert option in out and f"(default: {default})" in out, option


def test_bad_options_and_allow_lists_are_usage_errors(tmp_path, capsys):
    bad = tmp_path / "allow"
    bad.write_text("nothex\n")
    assert main(["tracker", "--allow", str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"gitp2p: error: bad allow-list {bad}: line 1:")
    assert main(["tracker", "--allow", str(tmp_path / "missing")]) == 2
    assert "gitp2p: error: cannot read allow-list" in capsys.readouterr().err
    for option in ("--interval", "--peer-ttl", "--source-rate", "--max-peers",
                   "--max-connections-per-source"):
        assert main(["tracker", option, "0"]) == 2
        assert capsys.readouterr().err == f"gitp2p: error: {option} must be positive\n"
    assert main(["tracker", "--port", "70000"]) == 2
    assert capsys.readouterr().err == "gitp2p: error: --port must be from 0 to 65535\n"


def test_interval_reaches_clients_and_sets_the_ttl():
    """`gitp2p tracker --interval 5` (what the interop drivers run): clients are told 5 s,
    and peers are still kept 900 s, since real clients announce far less often."""
    proc = subprocess.Popen([*TRACKER, "--port", "0", "--interval", "5", "--no-udp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        line = ""
        for _ in range(100):  # bounded: the first lines it writes
            line = proc.stderr.readline()
            if "listening on" in line or not line:
                break
        assert "gitp2p tracker: listening on http://127.0.0.1:" in line, line
        assert "(interval 5 s, peers kept 900 s)" in line
        port = int(line.split("127.0.0.1:", 1)[1].split("/", 1)[0])
        query = "&".join([f"info_hash={quote_from_bytes(b'i' * 20)}", f"peer_id={quote_from_bytes(b'-TC0001-' + b'0' * 12)}",
                          "port=6881", "uploaded=0", "downloaded=0", "left=100"])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(f"GET /announce?{query} HTTP/1.1\r\nHost: x\r\nUser-Agent: test\r\n\r\n".encode())
            data = b""
            for _ in range(100):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        body = bencode.decode(data.partition(b"\r\n\r\n")[2])
        assert (body[b"interval"], body[b"min interval"]) == (5, 2)
    finally:
        proc.kill()  # the tracker this test started
        proc.wait(timeout=30)
        proc.stderr.close()
