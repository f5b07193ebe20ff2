"""A guardian that removes the mount when its server dies without unmounting (kill -9).

libfuse's `auto_unmount` (a fusermount3 helper that waits for the server's end of a
socket) normally does this, but it was seen to leave the dead mount behind now and then
(about 1 kill in 6 on a loaded machine: no helper left, nothing holding /dev/fuse, and
the mount point answering ENOTCONN for good). So each mount also starts this small
process (`python -m gitfs_p2p.mount.guard SERVER_PID MOUNT_ID MOUNTPOINT`, no imports
beyond the standard library). It polls, and once its server is gone:

* if the mount it was started for (the kernel's mount id, so never a newer mount at the
  same path) is still there and its root answers ENOTCONN (no server behind it), it
  detaches it, as `gitp2p umount --lazy` would;
* in every other case it exits without touching anything.

It also exits once that mount is gone (a normal unmount), and its server ends it on a
clean shutdown. It keeps no file open on the mount and runs from `/`.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time

from ..errors import MountError
from .daemon import mount_entry, unmount

__all__ = ["start_guard", "mount_id"]

#: Seconds between looks at the server and the mount table.
POLL_S = 0.2
#: How long a dead mount's root may keep answering something other than ENOTCONN (the
#: kernel aborts the connection once the last /dev/fuse file closes) before giving up.
SETTLE_S = 10.0


def mount_id(mountpoint: str) -> str | None:
    """The kernel's id of the mount exactly at mountpoint (/proc/self/mountinfo), or None."""
    entry = mount_entry(mountpoint)
    return entry[0] if entry is not None else None


def start_guard(mountpoint: str) -> subprocess.Popen | None:
    """Start the guardian of the mount at mountpoint (this process serves it), or None when
    the mount cannot be found (then there is nothing to guard)."""
    mid = mount_id(mountpoint)
    if mid is None:
        return None
    return subprocess.Popen(
        [sys.executable, "-m", "gitfs_p2p.mount.guard", str(os.getpid()), mid, os.path.abspath(mountpoint)],
        cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True,
    )


def _dead(mountpoint: str) -> bool:
    """The mount's root answers ENOTCONN: no server is behind it.  Asked in a thread,
    since a mount whose /dev/fuse is still open somewhere makes the question hang."""
    answer: list[bool] = []

    def ask() -> None:
        try:
            os.stat(mountpoint)
        except OSError as exc:
            answer.append(exc.errno == errno.ENOTCONN)
        else:
            answer.append(False)

    t = threading.Thread(target=ask, daemon=True)
    t.start()
    t.join(2.0)
    return bool(answer and answer[0])


def guard(server: int, mid: str, mountpoint: str) -> int:
    while os.getppid() == server:  # our parent: when it dies we are reparented
        if mount_id(mountpoint) != mid:
            return 0  # unmounted the normal way
        time.sleep(POLL_S)
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        if mount_id(mountpoint) != mid:
            return 0  # auto_unmount (or someone) did it
        if _dead(mountpoint):
            try:
                unmount(mountpoint, lazy=True)  # as `gitp2p umount --lazy` would
            except MountError:
                pass  # nothing more a guardian can do; `gitp2p mount` names a dead mount
            return 0
        time.sleep(POLL_S)
    return 0


if __name__ == "__main__":
    sys.exit(guard(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
