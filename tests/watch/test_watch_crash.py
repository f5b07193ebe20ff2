"""kill -9 at any moment loses nothing: a restart finishes the job, and no ref ever shows an incomplete history."""

from __future__ import annotations

import os
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


def _watch(d, repo, *extra, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "gitfs_p2p.cli", "watch", str(d), "--into", str(repo), "--bare", "--settle", "0", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
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
    env = dict(os.environ, GITP2P_WATCH_CRASH=point)
    proc = _watch(d, repo, "--once", env=env)
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
