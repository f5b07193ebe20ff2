"""A private network namespace for tests: this thread moves into a new one, with `lo` up and
the test's own addresses on it, and back afterwards.

Every process the thread starts meanwhile (stock clients, `gitp2p seed`, git and its remote
helper) lives in that namespace: it has no route out, and it goes away with the last
process in it (the test stops them all).  Needs root (CAP_SYS_ADMIN) and iproute2's `ip`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess

__all__ = ["CLONE_NEWNET", "own_network_namespace", "why_no_namespace"]

CLONE_NEWNET = 0x40000000


def why_no_namespace() -> str | None:
    """None if this process can make a network namespace, else why not (a skip reason)."""
    if os.geteuid() != 0:
        return "a network namespace needs root (CAP_SYS_ADMIN)"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed (apt-get install iproute2)"
    return None


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise OSError(f"{' '.join(cmd)}: {proc.stderr.strip()}")


@contextlib.contextmanager
def own_network_namespace(addresses, prefix: int = 32):
    """Move this thread, and so every process it starts, into a new network namespace with
    `lo` up and *addresses* on it as /prefix; move back afterwards.

    prefix 32 keeps every address alone (stock clients that must not see the others as
    one network); 24 puts them in one subnet, as laptops on one LAN are, which local
    service discovery (BEP 14) needs: libtorrent ignores announces from outside its
    listen address's network."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
        try:
            _run(["ip", "link", "set", "lo", "up"])
            for address in addresses:
                _run(["ip", "addr", "add", f"{address}/{prefix}", "dev", "lo"])
            yield tuple(addresses)
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns back to the test's own network: {os.strerror(err)}")
    finally:
        os.close(home)
