#!/usr/bin/env python3
"""End to end: from `gitp2p mount` of REPO to every ref set in an empty receiving repository.

    scripts/bench_e2e.py REPO [--workdir DIR] [--downloader libtorrent] [--seeder both]

`make bench` calls ``run(repo_path, workdir, out)`` on its generated history.  Two runs
per seeder, on a mirror of REPO: first with an empty pack cache on the sending side
("cold"), then again with the cache that run left ("warm").  Two seeders, each a
libtorrent seed from the mount:

- "stock": `gitp2p mount`, then a stock libtorrent client given all.torrent and the mount
  as its save path, which checks every piece before it seeds;
- "gitp2p seed": `gitp2p seed REPO`, which mounts REPO itself and seeds the mount's
  torrents with our engine (libtorrent) in seed mode: the mount made those bytes and
  their piece hashes, so nothing is read before a peer asks (docs/seed.md).

Each run, timed from the moment `gitp2p mount` (or `gitp2p seed`) is started:

- build:    the mount publishes torrents/all.torrent (every branch and tag);
- check:    the seeder is ready to upload: the stock client has verified every piece
            (its start-up included), or `gitp2p seed` says it seeds all.torrent;
- transfer: one stock downloader (started together with the seeder, with `gitp2p watch`
            on its download directory) reports every piece verified;
- import:   the watcher has set every ref of REPO in the empty repository.

Reference, in the same run: `git clone --mirror git://127.0.0.1:PORT/...` from `git
daemon` of a repacked mirror (median of three; bench_swarm.py).  Ratios are total /
git.  Loopback only: an embedded tracker on 127.0.0.1, nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

from bench_swarm import git_daemon_clone_seconds, print_results
from gitfs_p2p.testing.clients import CLIENTS
from gitfs_p2p.testing.procs import client_available, torrent_info_hash
from gitfs_p2p.testing.seeding import Seed
from gitfs_p2p.testing.swarm import Mount, Watcher, all_commits, published_refs
from gitfs_p2p.testing.trackers import EmbeddedTracker

__all__ = ["run"]

SEEDER = "libtorrent"
SEEDERS = ("stock", "gitp2p seed")
DEFAULT_DOWNLOADER = "libtorrent"
TIMEOUT = 900


def _one_run(repo: Path, work: Path, tracker, downloader: str, expected: dict[str, str],
             seeder_kind: str = "stock") -> dict[str, float]:
    """Phase end times (seconds since `gitp2p mount` or `gitp2p seed` started) of one run."""
    running = []
    marks: dict[str, float] = {}
    try:
        torrent = work / "all.torrent"
        if seeder_kind == "stock":
            mount = Mount(repo, work / "mnt", tracker=tracker.announce_url, log=work / "mount.log")
            running.append(mount)
            start = time.monotonic()
            mount.start()
            shutil.copyfile(mount.torrent("all", timeout=TIMEOUT, step=0.05), torrent)
            marks["build"] = time.monotonic() - start
            seeder = CLIENTS[SEEDER](work / "clients", label="seeder")
            running.append(seeder)
            seeder.seed(torrent, mount.path)
            wait_seeding, nudge = seeder.wait_checked, seeder.reannounce
        else:
            seed = Seed(repo, work / "seed", tracker=tracker.announce_url, poll=0.5)
            running.append(seed)
            start = time.monotonic()
            seed.launch()
            shutil.copyfile(seed.torrent("all", timeout=TIMEOUT, step=0.05), torrent)
            info_hash = torrent_info_hash(torrent)
            marks["build"] = time.monotonic() - start
            wait_seeding, nudge = (lambda timeout: seed.wait_seeding(info_hash, timeout)), None
        dest, received = work / "download", work / "received.git"
        watcher = Watcher(dest, received, log=work / "watch.log").start()
        running.append(watcher)
        client = CLIENTS[downloader](work / "clients", label="downloader")
        running.append(client)
        client.download(torrent, dest)
        wait_seeding(TIMEOUT)
        marks["check"] = time.monotonic() - start
        client.wait_complete(TIMEOUT, nudge=nudge, on_progress=None)
        marks["transfer"] = time.monotonic() - start
        watcher.wait_refs(expected, TIMEOUT, step=0.05)
        marks["import"] = time.monotonic() - start
        if all_commits(received) != all_commits(repo):
            raise RuntimeError("the received repository's commits differ from the source's")
    finally:
        for thing in reversed(running):
            thing.stop()
    return marks


def _line(marks: dict[str, float], git_s: float) -> str:
    total = marks["import"]
    phases, last = [], 0.0
    for name in ("build", "check", "transfer", "import"):
        phases.append(f"{name} {marks[name] - last:.2f} s")
        last = max(last, marks[name])
    return f"**{total / git_s:.1f}x** git clone: {total:.2f} s in all ({', '.join(phases)})"


def run(repo_path, workdir, out: dict, *, downloader: str = DEFAULT_DOWNLOADER,
        seeders: tuple[str, ...] = SEEDERS) -> None:
    workdir = Path(workdir).resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    for name in (SEEDER, downloader):
        reason = client_available(name)
        if reason:
            out["skipped"] = f"{name}: {reason}"
            return
    # A mirror of our own: its pack cache is emptied for the cold run.
    repo = workdir / "sender.git"
    subprocess.run(["git", "clone", "--mirror", "-q", str(Path(repo_path).resolve()), str(repo)], check=True)
    expected = published_refs(repo)
    git_s, git_pack = git_daemon_clone_seconds(repo, workdir)
    out["reference"] = (f"`git clone --mirror git://127.0.0.1/...` of {len(all_commits(repo))} commits "
                        f"({git_pack / 2**20:.2f} MiB pack): {git_s:.2f} s (median of 3)")
    out["clients"] = (f"seeder: a stock {SEEDER} client from `gitp2p mount` (\"stock\"), or `gitp2p seed` "
                      f"(\"gitp2p seed\"); downloader {downloader}; `gitp2p watch` importing")
    tracker = EmbeddedTracker(workdir / "tracker").start()
    try:
        for seeder_kind in seeders:
            for kind in ("cold", "warm"):
                work = workdir / kind
                work.mkdir()
                if kind == "cold":
                    shutil.rmtree(repo / "gitp2p", ignore_errors=True)
                marks = _one_run(repo, work, tracker, downloader, expected, seeder_kind)
                label = kind if seeder_kind == "stock" else f"{kind}, {seeder_kind}"
                out[f"{label} cache"] = _line(marks, git_s)
                out[f"{label}_total_ratio"] = round(marks["import"] / git_s, 2)
                shutil.rmtree(work, ignore_errors=True)
    finally:
        tracker.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("repo")
    ap.add_argument("--workdir", default=str(ROOT / "bench-out" / "e2e"))
    ap.add_argument("--downloader", choices=sorted(CLIENTS), default=DEFAULT_DOWNLOADER)
    ap.add_argument("--seeder", choices=(*SEEDERS, "both"), default="both",
                    help="the seeder(s) to time (default: both, one after the other)")
    args = ap.parse_args(argv)
    out: dict = {}
    seeders = SEEDERS if args.seeder == "both" else (args.seeder,)
    run(args.repo, args.workdir, out, downloader=args.downloader, seeders=seeders)
    return print_results(out)


if __name__ == "__main__":
    sys.exit(main())
