"""Helpers for mount tests: the real `gitp2p mount` in a subprocess, bounded waits.

Every mount is started with the real CLI in a subprocess and always
unmounted in a finalizer; every wait is bounded.  Tests that need a real
mount are skipped only when /dev/fuse is absent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from gitfs_p2p.testing.procs import wait_for
from gitfs_p2p.testing.swarm import is_mounted, pid_alive, unmount  # noqa: F401  (shared with make demo)


NO_FUSE = not os.path.exists("/dev/fuse")
needs_fuse = pytest.mark.skipif(NO_FUSE, reason="/dev/fuse is absent")


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `gitp2p ARGS` in a subprocess; text output."""
    return subprocess.run(
        [sys.executable, "-m", "gitfs_p2p.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Mount:
    """One `gitp2p mount` in the background; `pid` is the serving process."""

    def __init__(self, repo: str, path: str):
        self.repo = repo
        self.path = path
        self.pid_file = path + ".pid"
        self.pid: int | None = None

    def start(self, *extra: str) -> "Mount":
        os.makedirs(self.path, exist_ok=True)
        proc = cli("mount", self.repo, self.path, "--pid-file", self.pid_file, "--poll", "0.5", *extra)
        assert proc.returncode == 0, proc.stderr
        assert is_mounted(self.path)
        with open(self.pid_file) as fh:
            self.pid = int(fh.read())
        return self

    def stop(self) -> None:
        unmount(self.path)
        if self.pid is not None and not wait_for(lambda: not pid_alive(self.pid), timeout=20):
            os.kill(self.pid, signal.SIGKILL)  # the process this fixture started, and only it
            wait_for(lambda: not pid_alive(self.pid), timeout=10)
        assert not is_mounted(self.path)

    def p(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)


