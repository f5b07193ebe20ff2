#!/usr/bin/env python3
"""`make demo`: show commit packs end to end on a sample repository.

Builds a sample history (or takes --repo), lists its commit packs, then
rebuilds the repository from those packs alone with `git index-pack` and
proves it matches. Leaves everything under demo-out/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from gen_history import generate  # noqa: E402

from gitfs_p2p.gitrepo import GitRepo  # noqa: E402
from gitfs_p2p.source import PackSource  # noqa: E402

GITP2P = [sys.executable, "-m", "gitfs_p2p.cli"]


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def git(*args: str, cwd: str, input: bytes | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True, check=True).stdout.decode()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", help="an existing repository to use instead of a generated one")
    ap.add_argument("--out", default=os.path.join(ROOT, "demo-out"))
    ap.add_argument("--commits", type=int, default=300, help="size of the generated sample (default 300)")
    args = ap.parse_args(argv)

    os.makedirs(args.out, exist_ok=True)
    repo = args.repo
    if repo is None:
        repo = os.path.join(args.out, "sample")
        if not os.path.isdir(repo):
            step(f"building a sample repository of {args.commits} commits in {repo}")
            generate(repo, args.commits, seed=1)
    repo = os.path.abspath(repo)

    step(f"commit packs of {repo} (oldest first: COMMIT-ID SIZE)")
    proc = subprocess.run([*GITP2P, "packs", repo], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        return proc.returncode
    rows = [line.split() for line in proc.stdout.splitlines()]
    for commit, size in rows[:5]:
        print(f"  {commit}  {int(size):>8} bytes")
    if len(rows) > 10:
        print(f"  ... {len(rows) - 10} more ...")
    for commit, size in rows[-5:] if len(rows) > 5 else []:
        print(f"  {commit}  {int(size):>8} bytes")
    total = sum(int(s) for _, s in rows)
    print(f"  {len(rows)} commits, {total / 2**20:.2f} MiB of packs in all")

    rebuilt = os.path.join(args.out, "rebuilt.git")
    shutil.rmtree(rebuilt, ignore_errors=True)
    step(f"rebuilding the repository from the packs alone in {rebuilt}")
    git("init", "-q", "--bare", rebuilt, cwd=args.out)
    source = PackSource(GitRepo(repo))
    try:
        for i, (commit, _) in enumerate(rows, 1):
            git("index-pack", "--stdin", "--fix-thin", cwd=rebuilt, input=source.pack(commit.encode()))
            if i % 50 == 0 or i == len(rows):
                print(f"\r  imported {i}/{len(rows)} packs", end="", flush=True)
    finally:
        source.close()
        source.repo.close()
    print()
    for line in git("for-each-ref", "--format=%(objectname) %(refname)", cwd=repo).splitlines():
        oid, name = line.split()
        git("update-ref", name, git("rev-parse", f"{oid}^{{commit}}", cwd=repo).strip(), cwd=rebuilt)

    step("checking")
    fsck = subprocess.run(["git", "fsck", "--full"], cwd=rebuilt, capture_output=True, text=True)
    same = set(git("rev-list", "--all", cwd=repo).split()) == set(git("rev-list", "--all", cwd=rebuilt).split())
    print(f"  git fsck --full: {'clean' if fsck.returncode == 0 else 'FAILED'}")
    print(f"  same {len(rows)} commit ids as the original: {'yes' if same else 'NO'}")
    print(git("log", "--oneline", "-3", "main" if "refs/heads/main" in git("show-ref", cwd=rebuilt) else "HEAD", cwd=rebuilt))
    return 0 if (fsck.returncode == 0 and same) else 1


if __name__ == "__main__":
    sys.exit(main())
