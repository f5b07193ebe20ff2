"""The git side of a local swarm: sample repositories, `gitp2p mount`, `gitp2p watch`, checks.

Shared by scripts/demo.py, scripts/bench_swarm.py and the tests. Every process is started
in its own session and stopped by its pid; every mount is unmounted by `fusermount3 -u`.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from torrentcore.metainfo import parse_torrent

from ..mount.daemon import find_mount
from .procs import Background, ClientError, kill_group, tail, wait_until

__all__ = [
    "GITP2P", "git", "make_sample_repo", "advance", "published_refs", "all_commits", "fsck_full",
    "Mount", "Watcher", "published_torrent", "is_mounted", "pid_alive", "unmount", "new_bytes_range", "fsck_findings",
]

GITP2P = [sys.executable, "-m", "gitfs_p2p.cli"]

GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Interop", "GIT_AUTHOR_EMAIL": "interop@example.invalid",
    "GIT_COMMITTER_NAME": "Interop", "GIT_COMMITTER_EMAIL": "interop@example.invalid",
}


def git(*args: str, cwd, check: bool = True, env: dict | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=str(cwd), capture_output=True,
                          env={**os.environ, **GIT_ENV, **(env or {})})
    if check and proc.returncode != 0:
        raise ClientError(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode()


def make_sample_repo(path, commits: int = 300, *, seed: int = 1) -> Path:
    """A generated history (side branches merged back, renames, binaries) plus extra
    branches and tags: a lightweight tag, an annotated tag, an unmerged branch."""
    from .history import generate

    path = Path(path)
    generate(str(path), commits, seed=seed)
    git("tag", "v0.1", f"HEAD~{commits // 2}", cwd=path)
    git("tag", "-a", "v0.2", "-m", "release 0.2", f"HEAD~{commits // 10}", cwd=path)
    git("branch", "topic", f"HEAD~{commits // 5}", cwd=path)
    return path


def advance(repo, commits: int, *, tag: str | None = None, stamp: int = 0) -> list[str]:
    """Add *commits* commits on HEAD's branch (and optionally a tag); return their ids."""
    repo = Path(repo)
    ids = []
    base = int(git("log", "-1", "--format=%ct", cwd=repo).strip())
    for i in range(commits):
        f = repo / "interop" / f"update-{stamp}-{i}.txt"
        f.parent.mkdir(exist_ok=True)
        rng = random.Random(f"{stamp}.{i}")  # ~10 KB of text that compresses only about 2:1
        f.write_text("".join(f"{n:5} {rng.getrandbits(128):032x}\n" for n in range(250 + 40 * i)))
        when = f"{base + 60 * (i + 1)} +0000"
        git("add", "-A", cwd=repo)
        git("commit", "-q", "-m", f"interop update {stamp}.{i}", cwd=repo,
            env={"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when})
        ids.append(git("rev-parse", "HEAD", cwd=repo).strip())
    if tag:
        git("tag", tag, cwd=repo)
    return ids


def published_refs(repo) -> dict[str, str]:
    """Every branch and tag with the object it names, as `git for-each-ref` lists them (an
    annotated tag names its tag object, which travels since pack format 2), plus HEAD's target."""
    if not Path(repo).exists():
        return {}
    out = git("for-each-ref", "--format=%(refname) %(objectname)", "refs/heads", "refs/tags", cwd=repo, check=False)
    refs = {}
    for line in out.splitlines():
        name, oid = line.split(" ")
        refs[name] = oid
    head = git("symbolic-ref", "-q", "HEAD", cwd=repo, check=False).strip()
    if head:
        refs["HEAD ->"] = head
    return refs


def fsck_findings(repo) -> set[str]:
    """The object findings of `git fsck --full` (errors and warnings about objects), as lines."""
    proc = subprocess.run(["git", "fsck", "--full", "--no-dangling", "--no-progress"], cwd=str(repo),
                          capture_output=True, env={**os.environ, **GIT_ENV})
    text = (proc.stdout + proc.stderr).decode(errors="replace")
    return {line for line in text.splitlines() if line.startswith(("error", "warning", "missing", "broken"))}


def all_commits(repo) -> set[str]:
    return set(git("rev-list", "--all", cwd=repo).split())


def fsck_full(repo) -> tuple[bool, str]:
    proc = subprocess.run(["git", "fsck", "--full", "--no-dangling", "--no-progress"], cwd=str(repo),
                          capture_output=True, env={**os.environ, **GIT_ENV})
    text = (proc.stdout + proc.stderr).decode(errors="replace")
    return proc.returncode == 0 and not text.strip(), text


def new_bytes_range(old_torrent, new_torrent) -> dict:
    """What an update from old to new must fetch: the new packs, and the pieces from the
    one holding the first byte that differs to the end (the manifest is the last file)."""
    old = parse_torrent(Path(old_torrent).read_bytes())
    new = parse_torrent(Path(new_torrent).read_bytes())
    old_files = {f.path: (f.offset, f.length) for f in old.files}
    new_packs = [f for f in new.files if f.path not in old_files and f.path[-1].endswith(".pack")]
    first_diff = next((f.offset for f in new.files
                       if old_files.get(f.path) != (f.offset, f.length)), new.total_length)
    first_piece = first_diff // new.piece_length
    return {
        "piece_length": new.piece_length,
        "total": new.total_length,
        "new_pack_bytes": sum(f.length for f in new_packs),
        "new_packs": len(new_packs),
        "manifest_bytes": new.files[-1].length,
        "first_changed_byte": first_diff,
        # every byte of the pieces from the first changed one to the end
        "needed_bytes": new.total_length - first_piece * new.piece_length,
        "needed_pieces": len(new.pieces) - first_piece,
    }


# ------------------------------------------------------------------ mounts

def is_mounted(path) -> bool:
    return find_mount(str(path)) is not None


def unmount(path) -> None:
    if not is_mounted(path):
        return
    subprocess.run(["fusermount3", "-u", str(path)], capture_output=True, timeout=30)
    if is_mounted(path):
        subprocess.run(["fusermount3", "-u", "-z", str(path)], capture_output=True, timeout=30)


def published_torrent(mountpoint, label: str = "all", *, timeout: float = 120, not_hash: str | None = None,
                      step: float = 0.25, details=None, check=None) -> Path:
    """Path of MOUNTPOINT/torrents/LABEL.torrent once the mount publishes it (and its
    manifest), optionally once its info-hash differs from *not_hash*; check() is called at
    each look (it raises when the process serving the mount is gone)."""
    path = Path(mountpoint) / "torrents" / f"{label}.torrent"
    manifest = Path(mountpoint) / "packs" / f"{label}.gitp2p-refs"

    def ready():
        if check is not None:
            check()
        try:
            ih = parse_torrent(path.read_bytes()).info_hash.hex()
        except (OSError, ValueError):
            return None
        if not_hash is not None and ih == not_hash:
            return None
        return path if manifest.exists() else None
    what = f"the mount to publish torrents/{label}.torrent and packs/{label}.gitp2p-refs"
    return wait_until(ready, timeout, what + (" for the new refs" if not_hash else ""), step=step, details=details)


class Mount(Background):
    """`gitp2p mount REPO MOUNTPOINT --tracker URL [ARGS]` in the background; stop() unmounts."""

    def __init__(self, repo, mountpoint, *, tracker: str | None = None, log=None, args: tuple[str, ...] = ()):
        self.repo = Path(repo)
        self.path = Path(mountpoint)
        self.tracker = tracker
        self.args = tuple(args)
        self.pid_file = self.path.parent / (self.path.name + ".pid")
        self.log = Path(log) if log else self.path.parent / (self.path.name + ".log")
        self.pid: int | None = None

    def start(self) -> "Mount":
        self.path.mkdir(parents=True, exist_ok=True)
        cmd = [*GITP2P, "mount", str(self.repo), str(self.path), "--pid-file", str(self.pid_file),
               "--poll", "0.5", "--log", str(self.log)]
        if self.tracker:
            cmd += ["--tracker", self.tracker]
        cmd += self.args
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0 or not is_mounted(self.path):
            raise ClientError(f"gitp2p mount failed ({proc.returncode}): {proc.stderr.strip()}")
        try:
            self.pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            self.pid = None
        return self

    def torrent(self, label: str = "all", *, timeout: float = 120, not_hash: str | None = None,
                step: float = 0.25) -> Path:
        """Path of torrents/LABEL.torrent once the mount publishes it (and its manifest),
        optionally waiting until its info-hash differs from *not_hash*."""
        return published_torrent(self.path, label, timeout=timeout, not_hash=not_hash, step=step,
                                 details=lambda: tail(self.log))

    def stop(self) -> None:
        unmount(self.path)
        if self.pid is not None:
            for _ in range(100):
                if not pid_alive(self.pid):
                    break
                time.sleep(0.1)
            else:
                try:
                    os.kill(self.pid, signal.SIGKILL)  # the server this object started
                except ProcessLookupError:
                    pass
            self.pid = None


def pid_alive(pid: int) -> bool:
    """True while pid runs (a zombie left for its parent to reap counts as gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except OSError:
        return False
    return False


# ------------------------------------------------------------------ watcher

class Watcher(Background):
    """`gitp2p watch DIR --into REPO` running in the background while a client downloads."""

    def __init__(self, directory, repo, *, log):
        self.directory = Path(directory)
        self.repo = Path(repo)
        self.log = Path(log)
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Watcher":
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(
                # --bare: a mirror, whose refs are the sender's and whose mount re-seeds them all
                [*GITP2P, "watch", str(self.directory), "--into", str(self.repo), "--bare", "--settle", "30"],
                stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_refs(self, expected: dict[str, str], timeout: float = 120, *, step: float = 0.5) -> dict[str, str]:
        def matched():
            if self.proc is not None and self.proc.poll() is not None:
                raise ClientError(f"gitp2p watch exited with code {self.proc.returncode}\n{tail(self.log)}")
            refs = published_refs(self.repo)
            return refs if refs == expected else None
        return wait_until(matched, timeout, f"the watcher to set {len(expected) - 1} refs in {self.repo}",
                          step=step, details=lambda: f"have {published_refs(self.repo)}\n"
                          f"want {expected}\n--- watcher log\n{tail(self.log)}")

    def last_progress(self) -> str:
        for line in reversed(tail(self.log, 20).splitlines()):
            if "imported" in line:
                return line.strip()
        return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        kill_group(self.proc)
        self.proc = None
