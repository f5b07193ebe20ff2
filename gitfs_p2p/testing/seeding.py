"""`gitp2p seed` as a process on 127.0.0.1 (tests, demo): start it, read what it printed,
wait for a torrent to be seeded, stop it with SIGINT as a user's Ctrl-C would."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

from .procs import Background, ClientError, LOOPBACK, free_port, kill_group, tail, wait_until
from .swarm import GITP2P, published_torrent

__all__ = ["Seed", "SEEDING_LINE"]

#: "seeding LABEL (from the mount|received): info-hash HEX"
SEEDING_LINE = re.compile(r"^seeding (\S+) \((from the mount|received)\): info-hash ([0-9a-f]{40})$")


class Seed(Background):
    """`gitp2p -v seed REPO --listen 127.0.0.1 --port P --no-utp` in its own session.

    On loopback it announces every `announce_every` seconds (transmission never dials a
    loopback peer: the seed must learn of it from the tracker and dial it).  `listen`
    gives another address (in a test's own network namespace)."""

    def __init__(self, repo, workdir, *, tracker: str | None = None, port: int | None = None,
                 announce_every: float = 2.0, poll: float = 0.5, args: tuple[str, ...] = (),
                 listen: str = LOOPBACK):
        self.repo = Path(repo)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tracker = tracker
        self.listen = listen
        self.port = port or free_port()
        self.announce_every = announce_every
        self.poll = poll
        self.args = tuple(args)
        self.out_path = self.workdir / "seed.out"
        self.err_path = self.workdir / "seed.err"
        self.proc: subprocess.Popen | None = None

    @property
    def mountpoint(self) -> Path:
        """The default mountpoint: REPO's git dir, gitp2p/seed-mount."""
        git_dir = self.repo / ".git" if (self.repo / ".git").is_dir() else self.repo
        return git_dir / "gitp2p" / "seed-mount"

    def command(self) -> list[str]:
        cmd = [*GITP2P, "-v", "seed", str(self.repo), "--listen", self.listen, "--port", str(self.port),
               "--no-utp", "--poll", str(self.poll), "--wait", "120"]
        if self.announce_every:
            cmd += ["--announce-every", str(self.announce_every)]
        if self.tracker:
            cmd += ["--tracker", self.tracker]
        return cmd + list(self.args)

    def start(self) -> "Seed":
        self.launch()
        wait_until(self._ready, 180, "gitp2p seed to start seeding", details=self.details)
        return self

    def launch(self) -> "Seed":
        """Start the process and return at once (start() also waits until it seeds)."""
        with open(self.out_path, "ab") as out, open(self.err_path, "ab") as err:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         start_new_session=True)
        return self

    def _ready(self) -> bool:
        self._check_alive()
        return "gitp2p: seeding; Ctrl-C stops" in self.err_path.read_text(errors="replace")

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ClientError(f"gitp2p seed exited with code {self.proc.returncode}\n{self.details()}")

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def seeded(self) -> list[tuple[str, str, str]]:
        """(label, origin, info-hash) of every "seeding ..." line so far, in order."""
        found = []
        for line in self.output().splitlines():
            m = SEEDING_LINE.match(line)
            if m:
                found.append((m.group(1), "mount" if m.group(2) == "from the mount" else "received", m.group(3)))
        return found

    def wait_seeding(self, info_hash: str, timeout: float = 60) -> None:
        def seen():
            self._check_alive()
            return any(ih == info_hash for _, _, ih in self.seeded())
        wait_until(seen, timeout, f"gitp2p seed to seed {info_hash}", details=self.details)

    def torrent(self, label: str = "all", *, timeout: float = 120, step: float = 0.25) -> Path:
        """Path of torrents/LABEL.torrent in the seed's mount once it is published."""
        return published_torrent(self.mountpoint, label, timeout=timeout, step=step, details=self.details,
                                 check=self._check_alive)

    def magnet(self, info_hash: str) -> str:
        """The magnet link the seed printed for `info_hash`."""
        prefix = f"magnet:?xt=urn:btih:{info_hash}"
        for line in self.output().splitlines():
            if line.strip().startswith(prefix):
                return line.strip()
        raise ClientError(f"gitp2p seed printed no magnet link for {info_hash}\n{self.details()}")

    def wait_seeding_new(self, label: str, not_hash: str, timeout: float = 60) -> str:
        """The info-hash of the first torrent `label` seeded that is not `not_hash` (after refs moved)."""
        def new() -> str | None:
            self._check_alive()
            return next((ih for lab, _, ih in self.seeded() if lab == label and ih != not_hash), None)
        return wait_until(new, timeout, f"gitp2p seed to seed a new {label} torrent", details=self.details)

    def interrupt(self, timeout: float = 60) -> int:
        """SIGINT (Ctrl-C) to the seed process alone; its exit status."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ClientError(f"gitp2p seed did not stop within {timeout:.0f} s of SIGINT\n{self.details()}") from None

    def details(self) -> str:
        return (f"--- seed stdout\n{tail(self.out_path)}\n--- seed stderr\n{tail(self.err_path)}\n"
                f"--- its mount's log\n{tail(self.mountpoint.parent / 'seed-mount.log')}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.interrupt(30)
            except ClientError:
                pass
        kill_group(self.proc)
        self.proc = None
