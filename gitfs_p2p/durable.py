"""Small state files written so that a crash leaves either the old bytes or the new ones."""

from __future__ import annotations

import os

__all__ = ["write_durably"]


def write_durably(path: str, data: bytes) -> None:
    """Replace path with data: a temporary file, fsync, rename, fsync of the directory."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
