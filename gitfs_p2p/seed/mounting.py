"""The mount `gitp2p seed` seeds from: one it starts (`gitp2p mount --foreground` as a child
process) or one already there (a gitp2p mount of the same repository, left mounted).

Why a child process and not the MountService in this process: the engine reads the
packs through mmap, and a page fault on a FUSE file served by the faulting process's own
event loop is one blocked call away from a deadlock; in a child, the FUSE server never
shares a process, a GIL or a crash with the engine, and it is exactly the tested
`gitp2p mount` that users run themselves.  The child gets SIGTERM when this process dies
(PR_SET_PDEATHSIG), and libfuse's auto_unmount removes the mount when the child dies, so
not even `kill -9` of the seed leaves a mount behind.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Callable

from ..errors import MountError
from ..mount.daemon import check_mountpoint, find_mount, unmount

__all__ = ["SeedMount", "mounted_repo", "wait_for_torrents", "LABELS"]

log = logging.getLogger(__name__)

#: The torrents every mount publishes (mount/layout.py's PUBLISHED_LABELS).
LABELS = ("HEAD", "all")
#: Seconds for `gitp2p mount` to answer once started.
MOUNT_TIMEOUT = 300.0
PR_SET_PDEATHSIG = 1


def mounted_repo(mountpoint: str) -> str | None:
    """The repository path a gitp2p mount at mountpoint serves (its README's first line)."""
    try:
        with open(os.path.join(mountpoint, "README"), encoding="utf-8", errors="replace") as fh:
            first = fh.readline()
    except OSError:
        return None
    prefix, suffix = "gitp2p mount of ", "  (read-only)"
    first = first.rstrip("\n")
    if first.startswith(prefix) and first.endswith(suffix):
        return first[len(prefix) : -len(suffix)]
    return None


def _die_with_parent() -> Callable[[], None]:
    """A preexec_fn: the child gets SIGTERM when the thread that started it ends (so start
    it from the main thread).  libc is loaded here, not between fork and exec."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return preexec


class SeedMount:
    """A gitp2p mount to seed from; `stop()` unmounts it only if this object mounted it."""

    def __init__(self, mountpoint: str, *, owned: bool, proc: subprocess.Popen | None = None,
                 log_path: str | None = None):
        self.path = mountpoint
        self.owned = owned
        self.proc = proc
        self.log_path = log_path

    @classmethod
    def adopt_or_start(cls, repo_path: str, git_dir: str, mountpoint: str, *, trackers: list[str],
                       poll: float, log_path: str, same_repo: Callable[[str], bool]) -> "SeedMount":
        """The gitp2p mount of this repository at mountpoint if there is one, else a new one
        there (mountpoint must then be an empty directory)."""
        if find_mount(mountpoint) == "fuse.gitp2p":
            served = mounted_repo(mountpoint)
            if served is not None and same_repo(served):
                log.info("seeding from the existing mount at %s", mountpoint)
                return cls(mountpoint, owned=False)
            raise MountError(f"{mountpoint}: a gitp2p mount of {served or 'another repository'} is there, "
                             f"not of {repo_path}")
        check_mountpoint(mountpoint)
        cmd = [sys.executable, "-m", "gitfs_p2p.cli", "mount", "--foreground", "--poll", str(poll),
               repo_path, mountpoint]
        for url in trackers:
            cmd += ["--tracker", url]
        try:
            log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            raise MountError(f"{log_path}: cannot write the mount's log ({exc.strerror})") from None
        start = os.fstat(log_fd).st_size
        try:
            # its own session: Ctrl-C in the terminal reaches the seed, which stops the
            # engine before it unmounts (an engine reading an unmounted file gets SIGBUS)
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd,
                                    start_new_session=True, preexec_fn=_die_with_parent())
        finally:
            os.close(log_fd)
        mount = cls(mountpoint, owned=True, proc=proc, log_path=log_path)
        try:
            mount._wait_mounted(start)
        except BaseException:
            mount.stop()
            raise
        return mount

    def _wait_mounted(self, log_start: int) -> None:
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise MountError(self._child_error(log_start))
            if find_mount(self.path) == "fuse.gitp2p":
                try:
                    os.stat(self.path)
                    return
                except OSError:
                    pass
            time.sleep(0.05)
        raise MountError(f"{self.path}: the mount did not answer within {MOUNT_TIMEOUT:.0f} s; see {self.log_path}")

    def _child_error(self, log_start: int) -> str:
        """The mount's own one-line error, or its exit status and log."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(log_start)
                text = fh.read().decode("utf-8", errors="replace")
        except OSError:
            text = ""
        for line in reversed(text.splitlines()):
            if line.startswith("gitp2p: error: "):
                return line[len("gitp2p: error: "):]
        return f"gitp2p mount exited with status {self.proc.returncode}; see {self.log_path}"

    def alive(self) -> bool:
        """The mount is still there (a child we started has not exited)."""
        if self.proc is not None and self.proc.poll() is not None:
            return False
        return find_mount(self.path) is not None

    def stop(self) -> None:
        """Unmount (only a mount this object started) and wait for its server to exit."""
        if not self.owned or self.proc is None:
            return
        if find_mount(self.path) is not None:
            try:
                unmount(self.path)
            except MountError as exc:
                log.warning("%s; unmounting lazily", exc)
                try:
                    unmount(self.path, lazy=True)
                except MountError as exc2:
                    log.warning("%s", exc2)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.terminate()  # the child we started; SIGTERM unmounts it too
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def wait_for_torrents(mountpoint: str, timeout: float, progress: Callable[[str], None],
                      alive: Callable[[], bool]) -> list[str]:
    """Wait until torrents/<label>.torrent exists for every label whose manifest the mount
    lays out (packs/<label>.gitp2p-refs: there at once when the refs have one).  The labels;
    MountError after timeout seconds or when the mount goes away."""
    labels = [l for l in LABELS if os.path.exists(os.path.join(mountpoint, "packs", l + ".gitp2p-refs"))]
    started = time.monotonic()
    said = started
    while True:
        missing = [l for l in labels if not os.path.exists(os.path.join(mountpoint, "torrents", l + ".torrent"))]
        if not missing:
            return labels
        now = time.monotonic()
        if now - started > timeout:
            raise MountError(
                f"the mount built no {', '.join(t + '.torrent' for t in missing)} within {timeout:.0f} s "
                "(a large history builds every pack once: `gitp2p packs REPO > /dev/null` fills the "
                "cache ahead, or give more --wait)")
        if not alive():
            raise MountError(f"{mountpoint}: the mount went away while its torrents were built")
        if now - said >= 5:
            said = now
            progress(f"waiting for the mount to build {', '.join(t + '.torrent' for t in missing)} "
                     f"({now - started:.0f} s)")
        time.sleep(0.2)
