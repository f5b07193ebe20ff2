"""python3-libtorrent in a /usr/bin/python3 subprocess running gitfs_p2p/testing/lt/agent.py."""

from __future__ import annotations

import json
import os
import subprocess

from ..procs import SYSTEM_PYTHON, torrent_info_hash, wait_until
from ..lt import lt_script
from .base import Client


class Libtorrent(Client):
    """python3-libtorrent 2.0 in a /usr/bin/python3 subprocess (it is built for Debian's
    Python and boost, not the venv's), commanded by JSON lines on its stdin."""

    name = "libtorrent"

    def __init__(self, workdir, **kw):
        super().__init__(workdir, **kw)
        self.status_file = self.config_dir / "status.json"

    def _ensure_running(self) -> None:
        if self.proc is not None:
            return
        agent = lt_script("agent")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                [SYSTEM_PYTHON, str(agent), self.host, str(self.port), str(self.status_file)],
                cwd=str(self.config_dir), stdin=subprocess.PIPE, stdout=log_file,
                stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "HOME": str(self.config_dir)})

    def _command(self, **cmd) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def _add(self, torrent, save_path, mode):
        self._ensure_running()
        try:
            self.status_file.unlink()
        except FileNotFoundError:
            pass
        self._command(cmd="add", torrent=str(torrent), save_path=str(save_path), mode=mode)
        self.torrent, self.save_path, self.mode = torrent, save_path, mode
        ih = torrent_info_hash(torrent)
        wait_until(lambda: self._alive_status(lambda s: s.get("info_hash") == ih), 30,
                   "libtorrent to load the torrent", details=self.details)

    def status(self) -> dict:
        return json.loads(self.status_file.read_text())

    def reannounce(self) -> None:
        self._command(cmd="reannounce")

    def stop(self) -> None:
        self._command(cmd="quit")
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            if self.proc.stdin:
                self.proc.stdin.close()
        super().stop()
