"""Helpers for torrentcore tests: stock-client discovery, data files, process handling.

Imported as ``tc_support`` (a unique name: tests/conftest.py is also called conftest)."""

import os
import random
import shutil
import signal
from urllib.parse import quote_from_bytes

import pytest

# python3-libtorrent is built for Debian's /usr/bin/python3 and links Debian's boost;
# the test venv may run another interpreter build (pyenv, a newer Python), and adding
# /usr/lib/python3/dist-packages to sys.path would also shadow the venv's own packages
# (trio, pytest) with Debian's. So libtorrent is always driven in a subprocess of
# /usr/bin/python3, which also keeps a libtorrent crash from taking pytest down.
# The probe and the interpreter are the stock-client drivers' (gitfs_p2p/testing/procs.py),
# shared with tests/interop, the demo and the bench.
from gitfs_p2p.testing.lt import run_lt_script
from gitfs_p2p.testing.procs import libtorrent_available


_PACKAGES = {"aria2c": "aria2", "transmission-show": "transmission-cli",
             "transmission-cli": "transmission-cli"}


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install {_PACKAGES.get(name, name)})")
    return path


def require_libtorrent() -> None:
    if not libtorrent_available():
        pytest.skip("python3-libtorrent is not installed for /usr/bin/python3 "
                    "(apt-get install python3-libtorrent)")


def run_libtorrent(name: str, *args: str, timeout: float = 120) -> str:
    """Run gitfs_p2p/testing/lt/NAME.py with /usr/bin/python3 (libtorrent importable); its stdout."""
    done = run_lt_script(name, *args, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout


def random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by *pid* (started with start_new_session=True)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ------------------------------------------------------------------ tracker requests

IH = b"\x00\x01 %&+=?\xff" + b"i" * 11   # bytes that need percent-encoding
IH2 = b"\x02" * 20


def pid(n):
    return b"-TC0001-" + str(n).zfill(12).encode()


def query(**params):
    parts = []
    for key, value in params.items():
        if isinstance(value, int):
            value = str(value).encode()
        elif isinstance(value, str):
            value = value.encode()
        parts.append(f"{key}={quote_from_bytes(value, safe='')}")
    return "&".join(parts).encode()


def announce_target(ih=IH, peer=1, port=6881, left=100, **extra):
    return b"/announce?" + query(info_hash=ih, peer_id=pid(peer), port=port, left=left,
                                 uploaded=0, downloaded=0, **extra)
