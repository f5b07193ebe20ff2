"""Looking at DIR: which files are packs and manifests, and reading one whole and unchanged.

Never follows a symbolic link (`scandir` without following, `open(O_NOFOLLOW)`);
client sidecar and partial files are never read (docs/watcher.md).
"""

from __future__ import annotations

import os
import stat
from typing import Callable

from ..pack.manifest import MANIFEST_SUFFIX
from ..pack.rollup import rollup_from_name
from ..pack.verify import commit_from_name
from ..trust.sigfile import SIGNATURE_SUFFIX

__all__ = ["DirScanner", "SIDECAR_SUFFIXES", "file_key"]

#: Partial and sidecar files of common clients; never read.
SIDECAR_SUFFIXES = (".part", ".!qB", ".aria2", ".parts", ".fastresume", ".resume", ".torrent", ".!ut", ".tmp")
#: How deep under DIR directories are looked at.
MAX_DEPTH = 32


def file_key(st: os.stat_result) -> tuple:
    """A file's identity and state: it changed when this changed."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class DirScanner:
    """The files of DIR (recursively), skipping the directories named in `skip` (REPO inside DIR)."""

    def __init__(self, directory: str, skip: set[str], report: Callable[[str], None]):
        self.dir = directory
        self.skip = skip
        self.report = report
        self.dirs: list[str] = []  # directories seen by the last scan (for inotify)
        self._noted: set[tuple[str, str]] = set()

    def rel(self, path: str) -> str:
        return os.path.relpath(path, self.dir)

    def note(self, path: str, what: str) -> None:
        """Say once that a file is ignored, and why."""
        if (path, what) not in self._noted:
            self._noted.add((path, what))
            self.report(f"ignoring {self.rel(path)}: {what}")

    def scan(self) -> tuple[list[tuple[str, os.stat_result]], list[tuple[str, os.stat_result]], list[tuple[str, str]]]:
        """(pack and roll-up files, manifest and signature files, symlinks named like ours) under DIR; never
        follows a link."""
        packs, manifests, links = [], [], []
        dirs = [self.dir]
        stack = [(self.dir, 0)]
        skip = self.skip
        while stack:
            top, depth = stack.pop()
            try:
                with os.scandir(top) as it:
                    entries = list(it)
            except OSError as exc:
                self.note(top, f"cannot list ({exc.strerror})")
                continue
            for entry in entries:
                name = entry.name
                ours = (
                    commit_from_name(name) is not None
                    or rollup_from_name(name) is not None
                    or name.endswith((MANIFEST_SUFFIX, SIGNATURE_SUFFIX))
                )
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if ours:
                        self.note(entry.path, "a directory, not a file")
                    if entry.path not in skip and depth < MAX_DEPTH:
                        stack.append((entry.path, depth + 1))
                        dirs.append(entry.path)
                    continue
                if not ours or name.endswith(SIDECAR_SUFFIXES):
                    continue
                if stat.S_ISLNK(st.st_mode):
                    links.append((entry.path, "a symbolic link (never followed)"))
                elif not stat.S_ISREG(st.st_mode):
                    self.note(entry.path, "not a regular file")
                elif name.endswith((MANIFEST_SUFFIX, SIGNATURE_SUFFIX)):  # manifests and their signatures
                    manifests.append((entry.path, st))
                else:
                    packs.append((entry.path, st))
        self.dirs = dirs
        packs.sort()
        manifests.sort()
        return packs, manifests, links

    def in_progress(self, path: str) -> bool:
        """A client's control file says it is still downloading this file (or its torrent)."""
        parent = os.path.dirname(path)
        return any(os.path.exists(p) for p in (path + ".aria2", parent + ".aria2", path + ".part", path + ".!qB"))

    def read(self, path: str, st: os.stat_result, start: int = 0, end: int | None = None) -> bytes | None:
        """The file's bytes (or bytes start:end of it), or None if it changed while read or
        vanished."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode) or file_key(before) != file_key(st):
                return None
            end = before.st_size if end is None else min(end, before.st_size)
            chunks = []
            pos = start
            while pos < end:
                chunk = os.pread(fd, min(end - pos, 16 << 20), pos)
                if not chunk:
                    break
                chunks.append(chunk)
                pos += len(chunk)
            if file_key(os.fstat(fd)) != file_key(before):
                return None
            return b"".join(chunks)
        finally:
            os.close(fd)
