"""What a BitTorrent client's check costs the mount: every pack opened by name, in order.

A client checking a torrent never lists packs/: it looks each file up by name, opens
and reads it, oldest first.  The mount must hand it exact bytes, and it should not
cost one LOOKUP and one READ round trip per file (see docs/mount.md, "A client's check").
"""

from __future__ import annotations

import mmap
import os
import re

import pytest

from gitfs_p2p.git.repo import GitRepo
from gitfs_p2p.mount.fs import WALK_LOOKUPS
from gitfs_p2p.store.source import PackSource
from mounthelp import cli, needs_fuse
from testutil import generate

pytestmark = [needs_fuse, pytest.mark.timeout(300)]

COMMITS = 300


@pytest.fixture(scope="module")
def repo300(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("repo300") / "repo")
    generate(path, COMMITS, seed=13)
    return path


def _served(log_path: str) -> dict[str, int]:
    """The FUSE operations the server logged when it was unmounted."""
    with open(log_path) as fh:
        lines = [line for line in fh if "FUSE operations served:" in line]
    assert len(lines) == 1, lines
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", lines[0].split("served:", 1)[1])}


def test_a_walk_by_name_reads_exact_bytes_in_few_round_trips(mount_of, repo300, tmp_path):
    listing = cli("packs", repo300)  # fills the persistent cache; lists packs oldest first
    assert listing.returncode == 0, listing.stderr
    order = [line.split()[0] for line in listing.stdout.splitlines()]
    assert len(order) == COMMITS
    source = PackSource(GitRepo(repo300))
    try:
        expected = {cid: source.pack(cid.encode()) for cid in order}
    finally:
        source.close()
        source.repo.close()

    log_path = str(tmp_path / "mount.log")
    m = mount_of(repo300, "--log", log_path)
    for i, cid in enumerate(order):  # what a client's check does, file after file
        path = m.p("packs", f"{cid}.pack")
        assert os.stat(path).st_size == len(expected[cid])
        with open(path, "rb", buffering=0) as fh:
            if i % 2:
                with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                    data = mm[:]
            else:
                data = fh.read(len(expected[cid]) + 1)
        assert data == expected[cid], cid
    # Again, now that the kernel caches them: still exact.
    for cid in order:
        with open(m.p("packs", f"{cid}.pack"), "rb") as fh:
            assert fh.read() == expected[cid], cid
    m.stop()

    served = _served(log_path)
    # Once a client walks packs/ by name, the directory is listed for it (a few
    # READDIRPLUS round trips), so most of its names never reach the server...
    assert served["lookup"] < WALK_LOOKUPS + COMMITS // 4, served
    # ... and the bytes of a small pack reach the page cache with its first open.
    assert served.get("read", 0) < COMMITS // 10, served
    assert served["open"] >= COMMITS, served


def test_a_reader_that_drops_the_pages_at_close_gets_them_again_with_the_next_open(mount_of, repo300, tmp_path):
    """transmission checks a file, then drops its pages (POSIX_FADV_DONTNEED): its next check
    of the same file still finds the bytes in the page cache, pushed with the open."""
    listing = cli("packs", repo300)
    assert listing.returncode == 0, listing.stderr
    order = [line.split()[0] for line in listing.stdout.splitlines()][:100]
    log_path = str(tmp_path / "mount.log")
    m = mount_of(repo300, "--log", log_path)
    contents = {}
    for check in range(3):
        for cid in order:
            fd = os.open(m.p("packs", f"{cid}.pack"), os.O_RDONLY)
            try:
                data = os.pread(fd, 1 << 20, 0)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
            assert contents.setdefault(cid, data) == data, cid
    m.stop()
    served = _served(log_path)
    assert served["open"] == 3 * len(order), served
    assert served.get("read", 0) < len(order) // 10, served  # not one READ per file and check
