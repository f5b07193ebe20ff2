#!/usr/bin/env python3
"""`git clone gitp2p::` from a warm `gitp2p seed`, against `git clone git://` (issue 14).

    scripts/bench_clone.py REPO [--workdir DIR] [--runs 3]

`make bench` calls ``run(repo_path, workdir, out)`` on its generated history.  On a mirror
of REPO:

- reference: `git clone git://127.0.0.1:PORT/...` (with its checkout) from `git daemon` of a
  repacked copy, median of `runs` (bench_swarm.py);
- `gitp2p seed` of the mirror (its own mount, our engine on 127.0.0.1, an embedded tracker
  named in its torrents) is started and left seeding until the tracker knows it: "warm";
- clone: `git clone gitp2p::MAGNET` (metadata from the seed, BEP 9; then the manifest, the
  packs, the import and git's checkout), process start-up included, median of `runs`;
- fetch: 20 new commits pushed to the mirror; once the seed seeds the new `all` torrent, a
  clone fetches it (`git fetch -v` of the new magnet).  Bytes received (payload, as the
  helper reports them) over the bytes of the new packs plus the manifest.

Loopback only: nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

from bench_swarm import git_daemon_clone_seconds, print_results
from gitfs_p2p.testing.seeding import Seed
from gitfs_p2p.testing.swarm import all_commits, fsck_findings, published_refs
from gitfs_p2p.testing.trackers import EmbeddedTracker

__all__ = ["run"]

NEW_COMMITS = 20
TIMEOUT = 900
#: The helper on loopback, over TCP (uTP on loopback is slow, ../shared/DESIGN.md).
HELPER = ["-c", "gitp2p.listen=127.0.0.1:0", "-c", "gitp2p.utp=false", "-c", "gitp2p.timeout=120"]
FETCHED = re.compile(r"gitp2p: (\d+) packs \((\d+) bytes\) fetched, (\d+) were here already; (\d+) bytes received")


def _env() -> dict:
    """git finds git-remote-gitp2p beside this Python; no user configuration."""
    return {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
            "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"}


def _git(*args: str, cwd=None) -> subprocess.CompletedProcess:
    proc = subprocess.run(["git", *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def _clone_seconds(address: str, dest: Path, expected: dict[str, str], findings: set[str]) -> float:
    """Time one clone; then check it is faithful (outside the timing): every branch as
    origin/*, every tag, and `git fsck` finding what it finds in the source, no more (real
    histories hold objects git accepts but fsck frowns on)."""
    shutil.rmtree(dest, ignore_errors=True)
    start = time.monotonic()
    _git(*HELPER, "clone", "-q", f"gitp2p::{address}", str(dest))
    elapsed = time.monotonic() - start
    listed = _git("for-each-ref", "--format=%(refname) %(objectname)", cwd=dest).stdout.split("\n")
    got = dict(line.split(" ") for line in listed if line)
    got["HEAD ->"] = _git("symbolic-ref", "HEAD", cwd=dest).stdout.strip()
    for name, oid in expected.items():
        mine = "refs/remotes/origin/" + name[len("refs/heads/"):] if name.startswith("refs/heads/") else name
        if got.get(mine) != oid:
            raise RuntimeError(f"the clone's {mine} is {got.get(mine)}, the source's {name} is {oid}")
    found = fsck_findings(dest)
    if found != findings:
        raise RuntimeError(f"git fsck of the clone differs from the source's: {sorted(found ^ findings)[:5]}")
    return elapsed


def _new_commits(repo: Path, work: Path, count: int) -> None:
    """`count` commits on the mirror's HEAD branch, pushed from a scratch clone; each edits
    two files of the history and adds one, about as much as an average commit of the
    generated history (a few KiB of pack)."""
    _git("clone", "-q", str(repo), str(work))
    rng = random.Random(14)
    words = "pack commit tree blob peer seed torrent piece tracker mount watcher ref head tag".split()
    texts = sorted(p for p in _git("ls-files", cwd=work).stdout.split() if p.endswith((".py", ".md", ".txt")))

    def lines(n: int) -> str:
        return "".join(" ".join(rng.choice(words) for _ in range(rng.randrange(3, 12))) + "\n" for _ in range(n))

    for i in range(count):
        for path in rng.sample(texts, 2):
            with open(work / path, "a") as fh:
                fh.write(lines(rng.randrange(5, 30)))
        (work / f"bench-new-{i}.txt").write_text(lines(40))
        _git("add", ".", cwd=work)
        _git("-c", "user.name=bench", "-c", "user.email=bench@example.org", "commit", "-q", "-m", f"new {i}",
             cwd=work)
    _git("push", "-q", "origin", "HEAD", cwd=work)


def run(repo_path, workdir, out: dict, *, runs: int = 3) -> None:
    workdir = Path(workdir).resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    if not os.path.exists("/dev/fuse"):
        out["skipped"] = "no /dev/fuse"
        return
    repo = workdir / "sender.git"
    subprocess.run(["git", "clone", "--mirror", "-q", str(Path(repo_path).resolve()), str(repo)], check=True)
    expected = published_refs(repo)
    commits = len(all_commits(repo))
    git_s, git_pack = git_daemon_clone_seconds(repo, workdir, runs, mirror=False)
    out["reference"] = (f"`git clone git://127.0.0.1/...` (with checkout) of {commits} commits "
                        f"({git_pack / 2**20:.2f} MiB pack): {git_s:.2f} s (median of {runs})")
    tracker = EmbeddedTracker(workdir / "tracker").start()
    seed = Seed(repo, workdir / "seed", tracker=tracker.announce_url, poll=1.0)
    try:
        start = time.monotonic()
        seed.start()
        ih = next(ih for label, _, ih in seed.seeded() if label == "all")
        tracker.wait_peers(ih, seeders=1, timeout=120)
        out["seed start"] = f"{time.monotonic() - start:.2f} s from `gitp2p seed` to seeding (mount built its torrents)"
        magnet = seed.magnet(ih)
        findings = fsck_findings(repo)
        times = [_clone_seconds(magnet, workdir / f"clone-{i}", expected, findings) for i in range(runs)]
        clone_s = statistics.median(times)
        out["clone"] = (f"`git clone gitp2p::MAGNET` from the warm seed: {clone_s:.2f} s (median of {runs}: "
                        f"{', '.join(f'{t:.2f}' for t in times)}), **{clone_s / git_s:.2f}x** git clone")
        out["clone_ratio"] = round(clone_s / git_s, 2)

        _new_commits(repo, workdir / "work", NEW_COMMITS)
        new_ih = seed.wait_seeding_new("all", not_hash=ih, timeout=TIMEOUT)
        tracker.wait_peers(new_ih, seeders=1, timeout=120)
        clone = workdir / "clone-0"
        _git("remote", "set-url", "origin", f"gitp2p::{seed.magnet(new_ih)}", cwd=clone)
        proc = _git(*HELPER, "fetch", "-v", "origin", cwd=clone)
        m = FETCHED.search(proc.stderr)
        if not m:
            raise RuntimeError(f"the fetch did not report what it received:\n{proc.stderr[-3000:]}")
        packs, pack_bytes, skipped, received = map(int, m.groups())
        manifest = (seed.mountpoint / "packs" / "all.gitp2p-refs").stat().st_size
        out["fetch"] = (f"{NEW_COMMITS} new commits: {packs} packs ({pack_bytes} bytes) fetched, {skipped} skipped; "
                        f"{received} bytes received for {pack_bytes + manifest} bytes of packs and manifest: "
                        f"**{received / (pack_bytes + manifest):.2f}x**")
        out["fetch_bytes_ratio"] = round(received / (pack_bytes + manifest), 2)
    finally:
        seed.stop()
        tracker.stop()
        for i in range(runs):
            shutil.rmtree(workdir / f"clone-{i}", ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("repo")
    ap.add_argument("--workdir", default=str(ROOT / "bench-out" / "clone"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    out: dict = {}
    run(args.repo, args.workdir, out, runs=args.runs)
    return print_results(out)


if __name__ == "__main__":
    sys.exit(main())
