"""What every stock-client driver shares: a process in its own session, a config dir, a log, a port."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ..procs import ClientError, LOOPBACK, free_port, kill_group, tail, wait_until


class Client:
    """Common part: a process in its own session, a temp config dir, a log, a listen port."""

    name = "client"
    #: False when the client never connects *out* to a peer on 127.0.0.0/8 (then a peer of
    #: it must dial it, after learning its address from a later announce).
    dials_loopback = True

    def __init__(self, workdir, *, label: str | None = None, host: str = LOOPBACK):
        self.workdir = Path(workdir)
        #: the address peers reach it at (its RPC stays on 127.0.0.1)
        self.host = host
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.label = label or self.name
        self.config_dir = Path(tempfile.mkdtemp(prefix=f"{self.label}-config-", dir=self.workdir))
        self.log_path = self.workdir / f"{self.label}.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.torrent: Path | None = None
        self.save_path: Path | None = None
        self.mode: str | None = None

    # -- interface ---------------------------------------------------------------

    def seed(self, torrent_file, save_path) -> None:
        """Check the data at save_path against torrent_file and seed it (no copy)."""
        self._add(Path(torrent_file), Path(save_path), "seed")

    def download(self, torrent_file, dest_dir) -> None:
        """Fetch torrent_file into dest_dir (what is already there is checked and kept)."""
        Path(dest_dir).mkdir(parents=True, exist_ok=True)
        self._add(Path(torrent_file), Path(dest_dir), "download")

    def status(self) -> dict:
        """{'checked': bool, 'progress': 0..1, 'verified': bytes, 'total': bytes,
        'downloaded': bytes, 'uploaded': bytes, 'peers': n, 'error': str}"""
        raise NotImplementedError

    def wait_checked(self, timeout: float = 60) -> dict:
        return wait_until(lambda: self._alive_status(lambda s: s["checked"]), timeout,
                          f"{self.label} to finish checking {self.torrent}", details=self.details)

    def wait_complete(self, timeout: float = 120, *, on_progress=None, nudge=None, rechoke=()) -> dict:
        """Wait until every byte is verified; on_progress(status) each poll; nudge() every ~3 s;
        rechoke_now() of each client in *rechoke* (this one, its seeds) each poll."""
        last_nudge = [time.monotonic()]

        def done():
            for client in rechoke:
                client.rechoke_now()
            st = self._alive_status(lambda s: True)
            if on_progress is not None:
                on_progress(st)
            if nudge is not None and time.monotonic() - last_nudge[0] > 3:
                last_nudge[0] = time.monotonic()
                nudge()
            return st if st["checked"] and st["total"] and st["verified"] == st["total"] else None

        return wait_until(done, timeout, f"{self.label} to complete {self.torrent}",
                          details=self.details)

    def verified_fraction(self) -> float:
        st = self.status()
        return st["verified"] / st["total"] if st["total"] else 0.0

    def downloaded_bytes(self) -> int:
        """Payload bytes this client fetched from peers for its current torrent (its own count)."""
        return self.status()["downloaded"]

    def uploaded_bytes(self) -> int:
        return self.status()["uploaded"]

    def reannounce(self) -> None:
        """Announce again now, so the client learns of peers that arrived after it."""

    def rechoke_now(self) -> None:
        """If a connected peer waits on this client to unchoke it or to say it is interested,
        and the client would decide that only at a later periodic pulse, make it decide now.
        Nothing to do for a client that decides as soon as a peer arrives."""

    @contextlib.contextmanager
    def rechoking(self, every: float = 0.25):
        """While the block runs (a download by a process of its own, such as `git clone`,
        that no wait_complete() polls), call rechoke_now() every *every* seconds from a
        thread; it ends with the block. A failed call is left to the block to notice."""
        done = threading.Event()

        def pulse():
            while not done.wait(every):
                try:
                    self.rechoke_now()
                except (OSError, urllib.error.URLError, ValueError, ClientError):
                    pass

        thread = threading.Thread(target=pulse, name=f"rechoke {self.label}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            done.set()
            thread.join(timeout=30)

    def last_announce(self) -> tuple[int, int] | None:
        """(time, peers the tracker returned) of the last successful announce of the current
        torrent; None before one, or when the client does not say."""
        return None

    def stop(self) -> None:
        kill_group(self.proc)
        self.proc = None
        shutil.rmtree(self.config_dir, ignore_errors=True)

    def details(self) -> str:
        try:
            st = json.dumps(self.status())
        except Exception as exc:  # the client may be dead; its log says why
            st = f"(no status: {exc})"
        return f"--- {self.label}: status {st}\n--- {self.label}: log {self.log_path}\n{tail(self.log_path)}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- helpers -----------------------------------------------------------------

    def _add(self, torrent: Path, save_path: Path, mode: str) -> None:
        raise NotImplementedError

    def _wait_answering(self, probe, what: str, timeout: float = 30) -> None:
        """Wait until probe() (a call to the control interface just started) returns without
        an error; ClientError at once if the process exits."""
        def answers():
            if self.proc.poll() is not None:
                raise ClientError(f"{self.label} exited with code {self.proc.returncode}\n"
                                  f"{tail(self.log_path)}")
            try:
                probe()
                return True
            except (OSError, urllib.error.URLError, ValueError):
                return False
        wait_until(answers, timeout, what, details=self.details)

    def _alive_status(self, accept):
        if self.proc is not None and self.proc.poll() is not None:
            raise ClientError(f"{self.label} exited with code {self.proc.returncode}\n{self.details()}")
        try:
            st = self.status()
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            return None
        return st if accept(st) else None
