"""A small disk: a huge file in DIR never fills it, and a full disk loses nothing.

REPO lies on a 24 MiB tmpfs this test mounts (and unmounts); DIR on the ordinary disk,
so refused files cannot be renamed into REPO's quarantine.  A 20 GiB sparse file named
like a pack is refused without a byte copied (it stays where it is, recorded, and is not
read again); then the tmpfs is filled to the last byte while new packs arrive: the
import fails with a one-line error, the repository and the pack cache stay as they were
(git fsck clean, refs unmoved, cache readable), and once space is freed the next run
finishes the job.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from wsupport import deliver, fsck_clean, refs_of, write_manifest

from gitfs_p2p.store.cache import PackCache
from gitfs_p2p.pack.commitpack import FORMAT_VERSION

BASE = 20


def _mount_tmpfs(path) -> None:
    os.makedirs(path)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "gitp2p-test", str(path)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.decode().strip()}")


def _watch_once(d, repo) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gitfs_p2p.cli", "watch", str(d), "--into", str(repo), "--bare", "--once",
         "--settle", "0"],
        capture_output=True, text=True, timeout=300,
    )


def _free(path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _fill(path) -> None:
    """Write zeros until the file system is full (bounded by its size)."""
    with open(os.path.join(path, "filler"), "wb") as fh:
        block = b"\0" * (256 << 10)
        for _ in range((64 << 20) // len(block)):
            try:
                fh.write(block)
                fh.flush()
            except OSError:
                break


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_huge_file_and_full_disk(tmp_path, sender):
    small = tmp_path / "small"
    _mount_tmpfs(small)
    try:
        d, repo = tmp_path / "dl", small / "repo"
        deliver(str(d), sender, sender.commits[:BASE])
        write_manifest(str(d), sender.manifest({"refs/heads/main": sender.commits[BASE - 1]}))
        assert _watch_once(d, repo).returncode == 0

        huge = d / "packs" / f"{'e' * 40}.pack"
        with open(huge, "wb") as fh:
            fh.truncate(20 << 30)  # sparse: 20 GiB that take no space
        before = _free(small)
        first = _watch_once(d, repo)
        assert first.returncode == 3 and f"quarantined packs/{'e' * 40}.pack" in first.stderr, first.stderr
        assert "left where it is" in first.stderr
        assert huge.exists() and _free(small) >= before - (1 << 20), "the huge file was copied"
        again = _watch_once(d, repo)
        assert "quarantined packs/" not in again.stderr  # recorded: not read, not reported as new
        os.unlink(huge)

        # the disk fills up while the rest arrives
        refs_before = refs_of(str(repo))
        deliver(str(d), sender, sender.commits[BASE:])
        write_manifest(str(d), sender.manifest())
        _fill(small)
        full = _watch_once(d, repo)
        assert full.returncode == 1, full.stderr
        assert "Traceback" not in full.stderr and "no space left" in full.stderr.lower(), full.stderr
        assert full.stderr.count("\n") == 1, full.stderr  # one line
        assert refs_of(str(repo)) == refs_before
        ok, text = fsck_clean(str(repo))
        assert ok, text
        os.unlink(small / "filler")
        cache = PackCache(str(repo))  # readable, rows intact
        assert cache.get(FORMAT_VERSION, sender.commits[0], with_data=False).received
        cache.close()
        done = _watch_once(d, repo)
        assert done.returncode == 0, done.stderr
        assert refs_of(str(repo)) == sender.refs
        ok, text = fsck_clean(str(repo))
        assert ok, text
    finally:
        subprocess.run(["umount", str(small)], check=False)
