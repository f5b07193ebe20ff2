"""Processes and bounded waits shared by the stock-client drivers, the swarm helpers, the
demo, the benchmarks and the tests: loopback ports, process groups, polls with a limit."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from torrentcore.metainfo import parse_torrent


__all__ = [
    "SYSTEM_PYTHON", "LOOPBACK", "ClientError", "free_port", "kill_group", "wait_for", "wait_until", "tail",
    "torrent_info_hash", "start", "post_json", "libtorrent_available", "client_available",
    "tracker_available", "Background",
]

SYSTEM_PYTHON = "/usr/bin/python3"
LOOPBACK = "127.0.0.1"


class Background:
    """A process a test starts and stops: `with X(...) as x` runs start(), then stop()."""

    def start(self):
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class ClientError(RuntimeError):
    """A client or tracker failed, or a bounded wait ran out; the message carries its log."""


# ------------------------------------------------------------------ small helpers

def free_port() -> int:
    """A port free a moment ago for both TCP and UDP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as tcp:
            tcp.bind((LOOPBACK, 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((LOOPBACK, port))
                except OSError:
                    continue
            return port
    raise ClientError("no free loopback port found in 50 tries")


def kill_group(proc: subprocess.Popen | None, *, grace: float = 5.0) -> None:
    """SIGTERM the process group led by proc (started with start_new_session), then SIGKILL."""
    if proc is None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            # the leader is gone; make sure nothing it started lingers in its group
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break
        except subprocess.TimeoutExpired:
            continue


def wait_for(predicate, *, timeout: float = 20.0, step: float = 0.1):
    """Poll predicate() at most timeout/step times (and once more); its first truthy value,
    or its last falsy one."""
    for _ in range(max(1, int(timeout / step))):
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def wait_until(predicate, timeout: float, what: str, *, step: float = 0.25, details=None):
    """wait_for() that raises ClientError naming *what* (plus details(), if given) when
    predicate() never holds; its first truthy value otherwise."""
    value = wait_for(predicate, timeout=timeout, step=step)
    if value:
        return value
    polls = max(1, int(timeout / step))
    extra = f"\n{details()}" if details is not None else ""
    raise ClientError(f"gave up after {timeout:.0f} s ({polls} polls) waiting for {what}{extra}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = Path(path).read_text(errors="replace").replace("\r", "\n")
    except OSError:
        return "(no log)"
    return "\n".join(line for line in text.splitlines()[-lines:] if line.strip())


def torrent_info_hash(torrent_file) -> str:
    return parse_torrent(Path(torrent_file).read_bytes()).info_hash.hex()


def start(cmd: list[str], log_path: Path, *, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            cmd, cwd=str(cwd), stdin=subprocess.DEVNULL, stdout=log_file,
            stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **(env or {})})


def post_json(url: str, payload: dict, headers: dict | None = None, timeout: float = 10):
    req = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


@functools.cache
def libtorrent_available() -> bool:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return False
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import libtorrent"], capture_output=True,
                           timeout=60)
    return probe.returncode == 0


def client_available(name: str) -> str | None:
    """None if client *name* can run here, else the reason (with the package to install)."""
    if name == "libtorrent":
        return None if libtorrent_available() else \
            "python3-libtorrent is not importable by /usr/bin/python3 (apt-get install python3-libtorrent)"
    binary, package = {"transmission": ("transmission-daemon", "transmission-daemon"),
                       "aria2": ("aria2c", "aria2"), "rtorrent": ("rtorrent", "rtorrent"),
                       "qbittorrent": ("qbittorrent-nox", "qbittorrent-nox")}[name]
    if name == "transmission" and shutil.which("transmission-remote") is None:
        return "transmission-remote is not installed (apt-get install transmission-cli)"
    return None if shutil.which(binary) else f"{binary} is not installed (apt-get install {package})"


def tracker_available(name: str) -> str | None:
    if name == "opentracker" and shutil.which("opentracker") is None:
        return "opentracker is not installed (apt-get install opentracker)"
    return None


# ------------------------------------------------------------------ clients
