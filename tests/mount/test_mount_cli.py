"""`gitp2p mount` / `umount` as a user meets them: clear errors, signals, crashes, memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from mounthelp import cli, is_mounted, needs_fuse, pid_alive, unmount, wait_for
from testutil import git

pytestmark = [needs_fuse, pytest.mark.timeout(300)]


def _one_clear_line(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gitp2p: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_user_errors_are_one_line(repo60, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    full = tmp_path / "full"
    full.mkdir()
    (full / "file").write_text("x")
    _one_clear_line(cli("mount", repo60, str(tmp_path / "missing")), "no such directory")
    _one_clear_line(cli("mount", repo60, str(full)), "not empty")
    _one_clear_line(cli("mount", str(tmp_path), str(empty)), "not a git repository")
    _one_clear_line(cli("mount", str(tmp_path / "nope"), str(empty)), "not a directory")
    _one_clear_line(cli("umount", str(empty)), "not mounted")
    assert not is_mounted(str(empty))


def test_already_mounted(mount_of, repo60):
    m = mount_of(repo60)
    _one_clear_line(cli("mount", repo60, m.path), "already mounted")


def test_umount_command_unmounts_and_the_server_exits(mount_of, repo60):
    m = mount_of(repo60)
    with open(m.p("README")) as fh:
        fh.read()
    proc = cli("umount", m.path)
    assert proc.returncode == 0, proc.stderr
    assert not is_mounted(m.path)
    assert wait_for(lambda: not pid_alive(m.pid), timeout=20)
    assert not os.path.exists(m.pid_file)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_foreground_unmounts_cleanly_on_signal(repo60, tmp_path, signum):
    mnt = str(tmp_path / "mnt")
    os.mkdir(mnt)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gitfs_p2p.cli", "mount", "--foreground", repo60, mnt],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(lambda: is_mounted(mnt) and "README" in os.listdir(mnt), timeout=60), "never mounted"
        assert len(os.listdir(os.path.join(mnt, "packs"))) == 60 + 1 + 2  # commits, the annotated tag, 2 manifests
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "mounted" in err and "Traceback" not in err  # it logs
        assert not is_mounted(mnt)
    finally:
        if proc.poll() is None:
            proc.kill()  # the process this test started
            proc.wait(10)
        unmount(mnt)


def test_a_crash_leaves_no_mount_behind(mount_of, repo60):
    m = mount_of(repo60)
    os.listdir(m.p("packs"))
    os.kill(m.pid, signal.SIGKILL)  # the serving process this test started
    assert wait_for(lambda: not is_mounted(m.path), timeout=20), "a dead mount was left behind"
    # ... and the directory can be mounted again at once.
    again = cli("mount", repo60, m.path, "--pid-file", m.pid_file)
    assert again.returncode == 0, again.stderr
    with open(m.pid_file) as fh:
        m.pid = int(fh.read())
    assert "README" in os.listdir(m.path)


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command name) of pid's child processes."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    stat = fh.read()
            except OSError:
                continue
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                out.append((int(entry), name))
    return out


def test_a_crash_leaves_no_mount_behind_even_if_libfuse_does_not_clean_up(mount_of, repo60):
    """libfuse's auto_unmount helper (a fusermount3 child of the server) was seen to leave a
    dead mount now and then; the mount's own guardian (mount/guard.py) removes it too."""
    m = mount_of(repo60)
    children = _children(m.pid)
    helpers = [pid for pid, name in children if name.startswith("fusermount")]
    assert helpers and any(name.startswith("python") for _, name in children), children
    for pid in helpers:  # processes of the mount this test started
        os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not any(pid_alive(p) for p in helpers), timeout=10)
    assert is_mounted(m.path)
    os.kill(m.pid, signal.SIGKILL)
    assert wait_for(lambda: not is_mounted(m.path), timeout=20), "a dead mount was left behind"
    # ... and a clean unmount ends the guardian with its server
    again = cli("mount", repo60, m.path, "--pid-file", m.pid_file)
    assert again.returncode == 0, again.stderr
    with open(m.pid_file) as fh:
        m.pid = int(fh.read())
    guards = [pid for pid, name in _children(m.pid) if name.startswith("python")]
    m.stop()
    assert wait_for(lambda: not any(pid_alive(p) for p in guards), timeout=10)


def test_the_server_never_holds_the_repository_and_stays_small(mount_of, tmp_path):
    """Mount a generated history and read every pack: the serving process must not have one
    of the repository's pack files mapped (building happens in worker processes, which own
    dulwich: store/builders.py), and its peak RSS stays far under the 300 MB bound."""
    from testutil import generate

    repo = str(tmp_path / "repo")
    generate(repo, 400, seed=21)
    git("gc", "-q", cwd=repo)  # everything in pack files, which dulwich would map
    m = mount_of(repo)
    names = [n for n in os.listdir(m.p("packs")) if n.endswith(".pack")]
    assert len(names) == int(git("rev-list", "--all", "--count", cwd=repo))  # 400 commits, no annotated tag
    total = 0
    for name in names:
        with open(m.p("packs", name), "rb") as fh:
            total += len(fh.read())
    assert total > 0
    pack_dir = os.path.realpath(os.path.join(repo, ".git", "objects", "pack"))
    with open(f"/proc/{m.pid}/maps") as fh:
        mapped = [line.split()[-1] for line in fh if pack_dir in line]
    assert mapped == [], f"the server maps the repository's pack files: {mapped}"
    with open(f"/proc/{m.pid}/status") as fh:
        status = dict(line.split(":", 1) for line in fh if ":" in line)
    peak_kb = int(status["VmHWM"].split()[0])
    assert peak_kb < 150 * 1024, f"peak RSS {peak_kb // 1024} MB"
