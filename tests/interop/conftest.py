"""Markers and a private network namespace for the interop tests.  The stock-client drivers
and the git side of a swarm are gitfs_p2p.testing, shared with `make demo` and `make bench`."""

import contextlib
import os
import ctypes
import shutil
import subprocess

import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: a longer interop scenario (the opentracker variants); deselect with -m 'not slow'")


# ------------------------------------------------------------------ a private network

CLONE_NEWNET = 0x40000000
#: one address per role (tracker, seeder, downloader, verifier): transmission keeps one
#: peer per IP address, so peers sharing an address hide each other from it
PRIVATE_ADDRESSES = ("10.77.0.1", "10.77.0.2", "10.77.0.3", "10.77.0.4")


@contextlib.contextmanager
def _own_network_namespace(addresses):
    """Move this thread, and so every process it starts, into a new network namespace with
    `lo` up and *addresses* on it; move back afterwards. The namespace has no name and no
    route out: it goes away with the last process in it (the test stops them all)."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
        try:
            for cmd in (["ip", "link", "set", "lo", "up"],
                        *(["ip", "addr", "add", f"{a}/32", "dev", "lo"] for a in addresses)):
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
                if proc.returncode != 0:
                    raise OSError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
            yield addresses
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns back to the test's own network: {os.strerror(err)}")
    finally:
        os.close(home)


@pytest.fixture
def private_network():
    """Non-loopback addresses (10.77.0.1-4) in a network namespace this test creates: for the
    clients that will not dial 127.0.0.0/8 (transmission). Needs root and iproute2's `ip`."""
    if os.geteuid() != 0:
        pytest.skip("a network namespace needs root (CAP_SYS_ADMIN)")
    if shutil.which("ip") is None:
        pytest.skip("iproute2's `ip` is not installed (apt-get install iproute2)")
    with _own_network_namespace(PRIVATE_ADDRESSES) as addresses:
        yield addresses
