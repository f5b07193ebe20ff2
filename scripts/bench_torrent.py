#!/usr/bin/env python3
"""Incremental torrents with a stock client: bytes downloaded for N new commits vs their packs.

    scripts/bench_torrent.py REPO [--new 20]

`run(repo_path, workdir, out)` is what `make bench` calls.  It copies REPO,
mounts the copy, and has libtorrent (python3-libtorrent, run by
/usr/bin/python3) seed `torrents/HEAD.torrent` straight from the mount
while a second libtorrent session downloads it into a plain directory.
Then the copy gains N linear commits; the seeder switches to the new
`HEAD.torrent`, and the downloader loads it over the same directory.  The
bytes the downloader fetches the second time are compared with the size of
the N new packs plus the new manifest (ratio; 1.0 would be perfect, the
excess is the boundary piece(s) where the old manifest was).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

from gitfs_p2p.testing.lt import lt_script

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GITP2P = [sys.executable, "-m", "gitfs_p2p.cli"]

__all__ = ["run"]

# Seeds one torrent from a save path and downloads it into another, peers
# connected directly on loopback (TCP, no DHT/LSD/uTP), then prints what the
# downloader fetched.  Bounded by a deadline.


def _git(*args: str, cwd: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b.invalid",
               GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@b.invalid")
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def _wait_for_torrent(mount: str, not_equal: bytes | None, timeout: float = 600) -> bytes:
    path = os.path.join(mount, "torrents", "HEAD.torrent")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
            if data != not_equal:
                return data
        except FileNotFoundError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{path} did not appear (or change) within {timeout} s")


def _transfer(torrent: bytes, mount: str, dest: str, work: str) -> tuple[int, int, int]:
    path = os.path.join(work, "current.torrent")
    with open(path, "wb") as fh:
        fh.write(torrent)
    out = subprocess.run(["/usr/bin/python3", lt_script("pair_download"), path, mount, dest],
                         capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    done, downloaded, total, piece = map(int, out.stdout.split())
    if not done:
        raise RuntimeError("libtorrent did not complete the download")
    return downloaded, total, piece


def run(repo_path: str, workdir: str, out: dict, *, new_commits: int = 20) -> None:
    repo_path = os.path.abspath(repo_path)
    os.makedirs(workdir, exist_ok=True)
    work = tempfile.mkdtemp(dir=workdir)
    repo = os.path.join(work, "repo")
    mount = os.path.join(work, "mnt")
    dest = os.path.join(work, "download")
    os.makedirs(mount)
    os.makedirs(dest)
    # A copy that we can move forward; branch main only, so HEAD's history is linear at the tip.
    _git("clone", "-q", "--single-branch", repo_path, repo, cwd=work)
    proc = subprocess.run([*GITP2P, "mount", repo, mount], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    try:
        first = _wait_for_torrent(mount, None)
        got1, total1, piece1 = _transfer(first, mount, dest, work)
        old_tip = _git("rev-parse", "HEAD", cwd=repo).strip()
        for i in range(new_commits):
            with open(os.path.join(repo, f"bench-new-{i}.txt"), "w") as fh:
                fh.write(f"new commit {i}\n" * (50 + 37 * i))
            _git("add", "-A", cwd=repo)
            _git("commit", "-qm", f"bench new {i}", cwd=repo)
        second = _wait_for_torrent(mount, first)
        new_ids = _git("rev-list", f"{old_tip}..HEAD", cwd=repo).split()
        new_bytes = sum(os.stat(os.path.join(mount, "packs", f"{c}.pack")).st_size for c in new_ids)
        manifest = os.stat(os.path.join(mount, "packs", "HEAD.gitp2p-refs")).st_size
        got2, total2, piece2 = _transfer(second, mount, dest, work)
    finally:
        subprocess.run([*GITP2P, "umount", mount], capture_output=True)
    out["first_download_bytes"] = got1
    out["first_torrent_bytes"] = total1
    out["new_commits"] = len(new_ids)
    out["new_packs_bytes"] = new_bytes
    out["new_manifest_bytes"] = manifest
    out["second_download_bytes"] = got2
    out["piece_length"] = piece2
    out["second_over_new_ratio"] = round(got2 / (new_bytes + manifest), 3)
    out["excess_bytes"] = got2 - new_bytes - manifest
    shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("repo")
    ap.add_argument("--new", type=int, default=20, help="commits to add (default 20)")
    args = ap.parse_args(argv)
    out: dict = {}
    run(args.repo, tempfile.mkdtemp(prefix="gitp2p-bench-torrent-"), out, new_commits=args.new)
    for key, value in out.items():
        print(f"{key:24} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
