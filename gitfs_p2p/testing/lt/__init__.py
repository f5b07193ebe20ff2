"""Scripts run by Debian's /usr/bin/python3, which has python3-libtorrent (the venv's Python
may be another build).  They are plain files, importing nothing from this project."""

from __future__ import annotations

import os

__all__ = ["lt_script", "run_lt_script"]


def lt_script(name: str) -> str:
    """The path of gitfs_p2p/testing/lt/NAME.py, to run as `/usr/bin/python3 PATH ARGS`."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    return path


def run_lt_script(name: str, *args: str, timeout: float = 120):
    """Run gitfs_p2p/testing/lt/NAME.py ARGS with /usr/bin/python3; the CompletedProcess (text)."""
    import subprocess

    from ..procs import SYSTEM_PYTHON

    return subprocess.run([SYSTEM_PYTHON, lt_script(name), *args], capture_output=True, text=True, timeout=timeout)
