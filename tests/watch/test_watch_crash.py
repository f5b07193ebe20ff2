"""kill -9 at any moment loses nothing: a restart finishes the job, and no ref ever shows an incomplete history."""

from __future__ import annotations

import random
import subprocess
import sys
import time

import pytest

from wsupport import check_invariant, deliver, fsck_clean, git, refs_of, write_manifest

POINTS = [
    "before-pack-rename",
    "between-pack-and-idx",
    "after-objects",
    "after-cache",
    "after-cache:25",
    "before-ref",
    "after-refs",  # refs move in one transaction: there is no point between two of them
]


def _watch(d, repo, *extra, crash_at: str | None = None):
    """`gitp2p watch` in a subprocess; with crash_at, killed (SIGKILL) at that moment (gitfs_p2p.faults)."""
    command = ["gitfs_p2p.cli"] if crash_at is None else ["gitfs_p2p.testing.crashing", crash_at]
    return subprocess.Popen(
        [sys.executable, "-m", *command, "watch", str(d), "--into", str(repo), "--bare", "--settle", "0", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _finish_and_check(d, repo, sender):
    proc = _watch(d, repo, "--once")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert refs_of(str(repo)) == sender.refs
    ok, text = fsck_clean(str(repo))
    assert ok, text
    garbage = git("count-objects", "-v", cwd=repo)
    assert "garbage: 0" in garbage, garbage
    assert git("rev-list", "--all", cwd=repo).split() == git("rev-list", "--all", cwd=sender.path).split()


@pytest.mark.parametrize("point", POINTS)
def test_kill_at_each_step_then_restart(tmp_path, sender, point):
    d, repo = tmp_path / "dl", tmp_path / "repo"
    commits = list(sender.commits)
    random.Random(2).shuffle(commits)
    deliver(str(d), sender, commits)
    write_manifest(str(d), sender.manifest())
    proc = _watch(d, repo, "--once", crash_at=point)
    proc.communicate(timeout=300)
    assert proc.returncode == -9, f"the crash point {point} was not reached"
    check_invariant(str(repo))
    _finish_and_check(d, repo, sender)


def test_kill_after_random_delays_while_files_arrive(tmp_path, sender):
    """The long-running watcher is killed again and again mid-import; refs stay safe throughout."""
    rng = random.Random(7)
    d, repo = tmp_path / "dl", tmp_path / "repo"
    commits = list(sender.commits)
    rng.shuffle(commits)
    write_manifest(str(d), sender.manifest())
    step = max(1, len(commits) // 8)
    for i in range(0, len(commits), step):
        deliver(str(d), sender, commits[i : i + step])
        proc = _watch(d, repo)
        deadline = time.monotonic() + rng.uniform(0.2, 1.5)
        while time.monotonic() < deadline:
            check_invariant(str(repo))
            time.sleep(0.05)
        proc.kill()
        proc.wait(timeout=30)
        check_invariant(str(repo))
    _finish_and_check(d, repo, sender)
