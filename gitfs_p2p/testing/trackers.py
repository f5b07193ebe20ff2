"""Tracker processes on 127.0.0.1: this project's own (`gitp2p tracker`) and Debian's opentracker."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from torrentcore import bencode

from .procs import Background, ClientError, LOOPBACK, free_port, kill_group, start, tail, wait_until


class Tracker(Background):
    """A tracker process on 127.0.0.1; announce URLs are HTTP (aria2 cannot use UDP
    trackers with its DHT off)."""

    name = "tracker"

    def __init__(self, workdir, *, host: str = LOOPBACK):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.log_path = self.workdir / f"{self.name}.log"
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def announce_url(self) -> str:
        return f"http://{self.host}:{self.port}/announce"

    def allow(self, info_hash_hex: str) -> None:
        """Serve this info-hash (only needed by trackers with an allow-list)."""

    def scrape(self, info_hash_hex: str) -> tuple[int, int]:
        """(seeders, leechers) the tracker knows for the info-hash; (0, 0) when unknown."""
        ih = bytes.fromhex(info_hash_hex)
        url = f"http://{self.host}:{self.port}/scrape?info_hash=" + urllib.parse.quote_from_bytes(ih)
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                data = bencode.decode(resp.read())
        except (OSError, urllib.error.URLError, ValueError):
            return 0, 0
        stats = data.get(b"files", {}).get(ih)
        if not stats:
            return 0, 0
        return stats.get(b"complete", 0), stats.get(b"incomplete", 0)

    def wait_peers(self, info_hash_hex: str, *, seeders: int = 0, leechers: int = 0,
                   timeout: float = 60) -> None:
        def enough():
            self._check_alive()
            s, l = self.scrape(info_hash_hex)
            return s >= seeders and l >= leechers
        wait_until(enough, timeout, f"the tracker to list {seeders} seeder(s) and {leechers} "
                   f"leecher(s) of {info_hash_hex}", details=lambda: tail(self.log_path))

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ClientError(f"{self.name} exited with code {self.proc.returncode}\n{tail(self.log_path)}")

    def stop(self) -> None:
        kill_group(self.proc)
        self.proc = None


class EmbeddedTracker(Tracker):
    """`gitp2p tracker --host 127.0.0.1 --port 0 --interval 5` (this project's own)."""

    name = "gitp2p-tracker"

    def start(self) -> "EmbeddedTracker":
        self.proc = start([sys.executable, "-m", "gitfs_p2p.cli", "tracker", "--host", self.host,
                            "--port", "0", "--interval", "5"], self.log_path, cwd=self.workdir)

        def listening():
            self._check_alive()
            for line in tail(self.log_path, 50).splitlines():
                if "listening on http://" in line:
                    return int(line.split("listening on http://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
            return None
        self.port = wait_until(listening, 30, "gitp2p tracker to listen",
                               details=lambda: tail(self.log_path))
        return self


class OpenTracker(Tracker):
    """Debian's opentracker: built with an allow-list (whitelist) of info-hashes.

    `opentracker -i 127.0.0.1 -p PORT -P PORT -d DIR -w whitelist.txt`: it chroots into DIR
    and drops to user nobody when started as root (so DIR and the list must be readable by
    nobody), reads the list relative to DIR, and reloads it on SIGHUP."""

    name = "opentracker"

    def __init__(self, workdir, **kw):
        super().__init__(workdir, **kw)
        self.root = Path(tempfile.mkdtemp(prefix="opentracker-", dir=self.workdir))
        os.chmod(self.root, 0o755)
        self.whitelist = self.root / "whitelist.txt"
        self.allowed: list[str] = []
        self._write_list()

    def _write_list(self) -> None:
        tmp = self.root / "whitelist.tmp"
        tmp.write_text("".join(f"{ih}\n" for ih in self.allowed))
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.whitelist)

    def start(self) -> "OpenTracker":
        self.port = free_port()
        self.proc = start(["opentracker", "-i", self.host, "-p", str(self.port), "-P", str(self.port),
                            "-d", str(self.root), "-w", "whitelist.txt"], self.log_path, cwd=self.root)

        def answers():
            self._check_alive()
            try:
                with urllib.request.urlopen(f"http://{self.host}:{self.port}/scrape", timeout=2):
                    return True
            except urllib.error.HTTPError:
                return True
            except (OSError, urllib.error.URLError):
                return False
        wait_until(answers, 30, "opentracker to answer", details=lambda: tail(self.log_path))
        return self

    def allow(self, info_hash_hex: str) -> None:
        if info_hash_hex in self.allowed:
            return
        self.allowed.append(info_hash_hex)
        self._write_list()
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGHUP)

            # the list is reloaded by a worker thread: wait until an announce is accepted
            def accepted():
                self._check_alive()
                return self._announce_ok(info_hash_hex)
            wait_until(accepted, 20, f"opentracker to reload its allow-list with {info_hash_hex}",
                       details=lambda: tail(self.log_path))

    def _announce_ok(self, info_hash_hex: str) -> bool:
        # A scrape of an unknown hash says nothing; a "stopped" announce of a made-up peer
        # is refused only when the hash is not on the list, and leaves no peer behind.
        q = urllib.parse.urlencode({"peer_id": "-GP0001-allowlistchk", "port": 1, "uploaded": 0,
                                    "downloaded": 0, "left": 0, "event": "stopped", "compact": 1})
        url = (f"http://{self.host}:{self.port}/announce?info_hash="
               + urllib.parse.quote_from_bytes(bytes.fromhex(info_hash_hex)) + "&" + q)
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return b"failure reason" not in resp.read()
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.root, ignore_errors=True)


TRACKERS = {"embedded": EmbeddedTracker, "opentracker": OpenTracker}
