"""Helpers for tests: real git, the gitp2p CLI in a subprocess, generated histories."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.join(ROOT, "scripts") not in sys.path:
    sys.path.insert(0, os.path.join(ROOT, "scripts"))

from gen_history import generate  # noqa: E402,F401

# Tests must not depend on the user's git configuration.
os.environ.update(
    GIT_CONFIG_GLOBAL=os.devnull,
    GIT_CONFIG_NOSYSTEM="1",
    GIT_AUTHOR_NAME="Test",
    GIT_AUTHOR_EMAIL="test@example.invalid",
    GIT_COMMITTER_NAME="Test",
    GIT_COMMITTER_EMAIL="test@example.invalid",
)


def git(*args: str, cwd: str | os.PathLike | None = None, input: bytes | None = None, check: bool = True) -> str:
    """Run real git; return stdout as text."""
    proc = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode()


def gitp2p(*args: str, input: bytes | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess (bytes stdout/stderr)."""
    return subprocess.run(
        [sys.executable, "-m", "gitfs_p2p.cli", *args],
        input=input,
        capture_output=True,
        timeout=timeout,
    )


