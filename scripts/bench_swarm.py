#!/usr/bin/env python3
"""Swarm transfer time with stock clients against `git clone` over `git daemon`, same run.

    scripts/bench_swarm.py REPO [--workdir DIR] [--seeder libtorrent] [--downloaders aria2,libtorrent,transmission]

`make bench` calls ``run(repo_path, workdir, out)`` on its generated history. REPO is
mounted (`gitp2p mount`), its torrents/all.torrent (every branch and tag) is seeded from
the mount by one stock client, and each downloader in turn fetches it into an empty
directory while `gitp2p watch` imports it into an empty repository. Two times per
downloader, both from the moment the download is handed to the client (client start-up
included) to:

- transfer: the client reports every piece verified;
- usable: the watcher has set every ref (the received repository matches).

Reference, in the same run: `git clone --mirror git://127.0.0.1:PORT/served.git` from
`git daemon` on loopback (median of three), which also ends with every ref set. The
served repository is a mirror of REPO repacked with `git repack -adf` (what a server
holds after gc), so git sends a well-deltified pack, not the generator's. Ratios
are swarm / git (above 1: slower than git). Loopback only; nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
from gitfs_p2p.testing.clients import CLIENTS
from gitfs_p2p.testing.procs import client_available, free_port, kill_group, wait_until
from gitfs_p2p.testing.swarm import Mount, Watcher, all_commits, published_refs
from gitfs_p2p.testing.trackers import EmbeddedTracker

from torrentcore.metainfo import parse_torrent  # noqa: E402

DEFAULT_SEEDER = "libtorrent"  # announces every 3 s and dials leechers, so transmission can download
DOWNLOADERS = ("aria2", "libtorrent", "transmission")
TIMEOUT = 900


def git_daemon_clone_seconds(repo: Path, workdir: Path, runs: int = 3, *, mirror: bool = True) -> tuple[float, int]:
    """Median wall time of `git clone --mirror` (or, mirror=False, a plain `git clone` with its
    checkout) over git daemon on 127.0.0.1; and its pack size."""
    port = free_port()
    base = workdir / "served"
    served = base / "served.git"
    subprocess.run(["git", "clone", "--mirror", "-q", "--no-local", str(repo), str(served)], check=True,
                   capture_output=True)
    subprocess.run(["git", "-C", str(served), "repack", "-adf", "-q"], check=True, capture_output=True)
    log = open(workdir / "git-daemon.log", "wb")
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={base}", "--listen=127.0.0.1",
         f"--port={port}", "--informative-errors", str(base)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"git://127.0.0.1:{port}/served.git"
    try:
        wait_until(lambda: subprocess.run(["git", "ls-remote", url], capture_output=True).returncode == 0,
                   30, "git daemon to answer")
        times, size = [], 0
        for i in range(runs):
            dest = workdir / f"git-clone-{i}.git"
            shutil.rmtree(dest, ignore_errors=True)
            start = time.monotonic()
            subprocess.run(["git", "clone", *(["--mirror"] if mirror else []), "-q", url, str(dest)], check=True,
                           capture_output=True)
            times.append(time.monotonic() - start)
            packs = (dest / "objects" / "pack") if mirror else (dest / ".git" / "objects" / "pack")
            size = sum(p.stat().st_size for p in packs.glob("*.pack"))
            shutil.rmtree(dest, ignore_errors=True)
        return statistics.median(times), size
    finally:
        kill_group(daemon)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def run(repo_path, workdir, out: dict, *, seeder_name: str = DEFAULT_SEEDER,
        downloaders=DOWNLOADERS) -> None:
    repo = Path(repo_path).resolve()
    workdir = Path(workdir).resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    reason = client_available(seeder_name)
    if reason:
        out["skipped"] = f"seeder {seeder_name}: {reason}"
        return
    expected = published_refs(repo)
    commits = len(all_commits(repo))

    git_s, git_pack = git_daemon_clone_seconds(repo, workdir)
    out["reference"] = (f"`git clone --mirror git://127.0.0.1/...` of {commits} commits "
                        f"({git_pack / 2**20:.2f} MiB pack): {git_s:.2f} s (median of 3)")

    running = []
    try:
        tracker = EmbeddedTracker(workdir / "tracker").start()
        running.append(tracker)
        mount = Mount(repo, workdir / "mnt", tracker=tracker.announce_url)
        running.append(mount)
        mount.start()
        start = time.monotonic()
        torrent = workdir / "all.torrent"
        shutil.copyfile(mount.torrent("all", timeout=TIMEOUT), torrent)
        meta = parse_torrent(torrent.read_bytes())
        ih = meta.info_hash.hex()
        out["torrent"] = (f"{len(meta.files) - 1} packs + manifest, {meta.total_length / 2**20:.2f} MiB, "
                          f"{len(meta.pieces)} pieces of {meta.piece_length // 1024} KiB; published by "
                          f"the mount {time.monotonic() - start:.1f} s after mounting")
        seeder = CLIENTS[seeder_name](workdir / "clients", label=f"seeder-{seeder_name}")
        running.append(seeder)
        seeder.seed(torrent, mount.path)
        seeder.wait_checked(TIMEOUT)
        tracker.wait_peers(ih, seeders=1, timeout=60)
        out["seeder"] = f"{seeder_name}, from the mount (verified {seeder.verified_fraction() * 100:.0f}%)"

        for name in downloaders:
            reason = client_available(name)
            if reason:
                out[f"{name}"] = f"skipped: {reason}"
                continue
            if name == seeder_name == "transmission":
                out[name] = "skipped: transmission cannot download from transmission on 127.0.0.1"
                continue
            dest, received = workdir / f"dl-{name}", workdir / f"received-{name}"
            watcher = Watcher(dest, received, log=workdir / f"watch-{name}.log").start()
            client = CLIENTS[name](workdir / "clients", label=f"downloader-{name}")
            try:
                start = time.monotonic()
                client.download(torrent, dest)
                client.wait_complete(TIMEOUT, nudge=seeder.reannounce, on_progress=None)
                transfer_s = time.monotonic() - start
                watcher.wait_refs(expected, TIMEOUT)
                usable_s = time.monotonic() - start
                fetched = client.downloaded_bytes()
            finally:
                client.stop()
                watcher.stop()
            same = all_commits(received) == all_commits(repo)
            out[name] = (f"transfer {transfer_s:.2f} s (**{transfer_s / git_s:.1f}x** git clone), "
                         f"usable repository {usable_s:.2f} s (**{usable_s / git_s:.1f}x**), "
                         f"fetched {fetched / 2**20:.2f} MiB, {'same commits' if same else 'COMMITS DIFFER'}")
            shutil.rmtree(dest, ignore_errors=True)
            shutil.rmtree(received, ignore_errors=True)
    finally:
        for thing in reversed(running):
            thing.stop()


def print_results(out: dict) -> int:
    """A bench script's results as `- key: value` lines (its command line's output)."""
    for key, value in out.items():
        print(f"- {key}: {value}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("repo")
    ap.add_argument("--workdir", default=str(ROOT / "bench-out" / "swarm"))
    ap.add_argument("--seeder", choices=sorted(CLIENTS), default=DEFAULT_SEEDER)
    ap.add_argument("--downloaders", default=",".join(DOWNLOADERS))
    args = ap.parse_args(argv)
    out: dict = {}
    run(args.repo, args.workdir, out, seeder_name=args.seeder,
        downloaders=[d for d in args.downloaders.split(",") if d])
    return print_results(out)


if __name__ == "__main__":
    sys.exit(main())
