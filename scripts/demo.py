#!/usr/bin/env python3
"""`make demo`: a complete local swarm of stock BitTorrent clients, from one repository to another.

    scripts/demo.py [--repo REPO] [--seeder transmission] [--downloader aria2] [--out demo-out]

1. take a repository (default: a generated 300-commit history with branches and tags;
   `--repo PATH` for any other, e.g. `--repo .` for this project's own);
2. mount it read-only (`gitp2p mount`): every commit is a pack file, and the mount
   publishes torrents/all.torrent (every branch and tag);
3. start the embedded tracker (`gitp2p tracker`) on 127.0.0.1;
4. a stock client seeds the torrent straight from the mount (no copy);
5. another stock client downloads it into a plain directory, while
6. `gitp2p watch` imports what arrives into a fresh repository;
7. the received repository's own mount publishes the same torrent (same info-hash),
   and the downloader's kind of client verifies it at 100%;
8. `git log --oneline -3` of the received repository and the counts that prove it matches.

Everything stays under demo-out/ (logs, torrent, download directory, received repository,
summary.json). Processes and mounts are stopped on exit, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
from gitfs_p2p.cli.common import human_size
from gitfs_p2p.testing.clients import CLIENTS
from gitfs_p2p.testing.procs import ClientError, client_available, torrent_info_hash
from gitfs_p2p.testing.trackers import EmbeddedTracker
from gitfs_p2p.testing.swarm import (
    Mount,
    Watcher,
    all_commits,
    fsck_findings,
    git,
    is_mounted,
    make_sample_repo,
    published_refs,
    unmount,
)

from torrentcore.metainfo import parse_torrent  # noqa: E402

TTY = sys.stdout.isatty()


def step(n: int, text: str) -> None:
    print(f"\n[{n}/8] {text}", flush=True)


def info(text: str) -> None:
    print(f"      {text}", flush=True)


class Progress:
    """One line that redraws itself on a terminal; every 10% otherwise."""

    def __init__(self, label: str):
        self.label = label
        self.last_decile = -1
        self.start = time.monotonic()

    def __call__(self, status, extra: str = "") -> None:
        if not status:
            return
        fraction = status["verified"] / status["total"] if status.get("total") else 0.0
        bar = "#" * int(fraction * 30)
        line = (f"      {self.label} [{bar:<30}] {fraction * 100:5.1f}%  "
                f"{human_size(status['verified'])}/{human_size(status.get('total', 0))}  "
                f"peers {status.get('peers', 0)}  {time.monotonic() - self.start:5.1f} s  {extra}")
        if TTY:
            print("\r" + line[:150].ljust(150), end="", flush=True)
        elif int(fraction * 10) != self.last_decile:
            self.last_decile = int(fraction * 10)
            print(line, flush=True)

    def done(self) -> None:
        if TTY:
            print(flush=True)


class Demo:
    def __init__(self, args):
        self.args = args
        self.out = Path(args.out).resolve()
        self.logs = self.out / "logs"
        self.running: list = []  # things with stop(), stopped in reverse order
        self.summary: dict = {"seeder": args.seeder, "downloader": args.downloader}

    def keep(self, thing):
        self.running.append(thing)
        return thing

    def cleanup(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if self.running:
            print("\ncleaning up: stopping clients, watcher, tracker; unmounting", flush=True)
        while self.running:
            thing = self.running.pop()
            try:
                thing.stop()
            except Exception as exc:  # keep going: every other process must still stop
                print(f"  could not stop {thing!r}: {exc}", file=sys.stderr)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def prepare_out(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        for name in ("mnt-source", "mnt-received"):  # a mount left by a run killed with -9
            if is_mounted(self.out / name):
                unmount(self.out / name)
        for name in ("download", "received", "logs", "mnt-source", "mnt-received", "clients",
                     "rebuilt.git"):  # rebuilt.git: left by the earlier, packs-only demo
            shutil.rmtree(self.out / name, ignore_errors=True)
        self.logs.mkdir()

    def run(self) -> int:
        args = self.args
        for name in (args.seeder, args.downloader):
            reason = client_available(name)
            if reason:
                print(f"demo: error: {reason}", file=sys.stderr)
                return 1
        self.prepare_out()

        # 1. the repository
        if args.repo:
            repo = Path(args.repo).resolve()
            step(1, f"repository: {repo}")
        else:
            repo = self.out / "source"
            step(1, f"repository: a generated history of {args.commits} commits in {repo}")
            if not (repo / ".git").is_dir():
                shutil.rmtree(repo, ignore_errors=True)
                make_sample_repo(repo, args.commits, seed=1)
        refs = published_refs(repo)
        commits = len(all_commits(repo))
        info(f"{commits} commits, {len([r for r in refs if r.startswith('refs/heads/')])} branches, "
             f"{len([r for r in refs if r.startswith('refs/tags/')])} tags; HEAD -> {refs.get('HEAD ->', '(detached)')}")

        # 2 + 3. tracker, mount and torrent
        step(2, "starting the embedded tracker: gitp2p tracker --host 127.0.0.1 --port 0")
        tracker = self.keep(EmbeddedTracker(self.logs)).start()
        info(f"announce URL {tracker.announce_url}")

        step(3, f"mounting it read-only: gitp2p mount {repo} {self.out / 'mnt-source'} --tracker URL")
        mount_a = self.keep(Mount(repo, self.out / "mnt-source", tracker=tracker.announce_url,
                                  log=self.logs / "mount-source.log")).start()
        info("waiting for the mount to publish torrents/all.torrent (it hashes every pack once)")
        published = mount_a.torrent("all", timeout=args.timeout)
        torrent = self.out / "all.torrent"
        shutil.copyfile(published, torrent)
        meta = parse_torrent(torrent.read_bytes())
        info_hash = meta.info_hash.hex()
        info(f"{len(meta.files) - 1} packs + ref manifest, {human_size(meta.total_length)}, "
             f"{len(meta.pieces)} pieces of {human_size(meta.piece_length)}")
        info(f"info-hash {info_hash} (copy in {torrent})")

        # 4. seed from the mount
        step(4, f"{args.seeder} seeds it with the mount as its download directory (no copy)")
        seeder = self.keep(CLIENTS[args.seeder](self.out / "clients", label=f"seeder-{args.seeder}"))
        seeder.seed(torrent, mount_a.path)
        progress = Progress("checking")
        st = seeder.wait_checked(args.timeout)
        progress(st)
        progress.done()
        info(f"{args.seeder} verified {seeder.verified_fraction() * 100:.0f}% of the mount; "
             "waiting for the tracker to list it as a seed")
        tracker.wait_peers(info_hash, seeders=1, timeout=60)
        info("tracker: 1 seed")

        # 5 + 6. download into a plain directory, import with the watcher
        dest = self.out / "download"
        received = self.out / "received"
        step(5, f"{args.downloader} downloads into {dest}; "
                f"gitp2p watch {dest} --into {received} imports as packs arrive")
        watcher = self.keep(Watcher(dest, received, log=self.logs / "watch.log")).start()
        downloader = self.keep(CLIENTS[args.downloader](self.out / "clients",
                                                        label=f"downloader-{args.downloader}"))
        started = time.monotonic()
        downloader.download(torrent, dest)
        progress = Progress("download")
        st = downloader.wait_complete(args.timeout, nudge=seeder.reannounce,
                                      on_progress=lambda s: progress(s, watcher.last_progress()))
        progress(st, watcher.last_progress())
        progress.done()
        elapsed = time.monotonic() - started
        fetched = downloader.downloaded_bytes()
        info(f"{args.downloader} fetched {human_size(fetched)} in {elapsed:.1f} s; "
             f"{args.seeder} uploaded {human_size(seeder.uploaded_bytes())}")
        self.summary.update(download_seconds=round(elapsed, 2), downloaded_bytes=fetched,
                            torrent_bytes=meta.total_length, info_hash=info_hash)

        step(6, "the watcher sets the refs once each one's whole history is in")
        got = watcher.wait_refs(refs, args.timeout)
        info(watcher.last_progress() or "imported")
        info(f"{len(got) - 1} refs set in {received}")
        watcher.stop()

        # 7. the received repository seeds the same torrent
        step(7, "the received repository's own mount publishes the same torrent")
        mount_b = self.keep(Mount(received, self.out / "mnt-received", tracker=tracker.announce_url,
                                  log=self.logs / "mount-received.log")).start()
        info_hash_b = torrent_info_hash(mount_b.torrent("all", timeout=args.timeout))
        verifier = self.keep(CLIENTS[args.downloader](self.out / "clients",
                                                      label=f"verifier-{args.downloader}"))
        verifier.seed(mount_b.path / "torrents" / "all.torrent", mount_b.path)
        verifier.wait_checked(args.timeout)
        verified = verifier.verified_fraction()
        info(f"info-hash {info_hash_b}: {'the same' if info_hash_b == info_hash else 'DIFFERENT'}; "
             f"{args.downloader} verifies the received mount at {verified * 100:.0f}%")

        # 8. proof
        step(8, f"git log --oneline -3 in {received}")
        print(git("log", "--oneline", "-3", cwd=received), end="", flush=True)
        got_commits = all_commits(received)
        same_commits = got_commits == all_commits(repo)
        got_refs = published_refs(received)
        # Faithful, not "clean": a history git clones may hold objects fsck frowns on (a
        # +051800 time zone); the received repository must say exactly what the source says.
        theirs, ours = fsck_findings(repo), fsck_findings(received)
        clean = ours == theirs
        fsck_text = ("clean" if not ours else f"the source's own {len(ours)} findings, no more") if clean else \
            "\n".join(sorted(ours ^ theirs))
        checks = {
            "commits": (f"{commits} sent, {len(got_commits)} received, "
                        f"{'same ids' if same_commits else 'DIFFERENT ids'}", same_commits),
            "refs": (f"{len(refs) - 1} sent, {len(got_refs) - 1} received, "
                     f"{'same targets' if got_refs == refs else 'DIFFERENT'} (HEAD -> {got_refs.get('HEAD ->')})",
                     got_refs == refs),
            "git fsck --full": (fsck_text.strip()[:500], clean),
            "info-hash": (f"{info_hash} sent, {info_hash_b} served by the received mount",
                          info_hash == info_hash_b),
            "re-seed check": (f"{args.downloader} verifies the received mount at {verified * 100:.0f}%",
                              verified == 1.0),
        }
        print()
        for name, (text, ok) in checks.items():
            print(f"  {'ok ' if ok else 'BAD'} {name + ':':17} {text}")
        ok = all(good for _, good in checks.values())
        self.summary.update(commits=commits, refs=len(refs) - 1,
                            checks={k: {"ok": good, "detail": text} for k, (text, good) in checks.items()},
                            ok=ok)
        print(f"\n{'The received repository matches.' if ok else 'MISMATCH: see above.'} "
              f"Results and logs: {self.out}")
        return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", help="an existing repository to share (default: a generated sample)")
    ap.add_argument("--out", default=str(ROOT / "demo-out"), help="where everything goes (default: demo-out)")
    ap.add_argument("--commits", type=int, default=300, help="size of the generated sample (default 300)")
    ap.add_argument("--seeder", choices=sorted(CLIENTS), default="transmission")
    ap.add_argument("--downloader", choices=sorted(CLIENTS), default="aria2")
    ap.add_argument("--timeout", type=float, default=600, help="limit for each wait, in seconds (default 600)")
    args = ap.parse_args(argv)
    if args.repo and not Path(args.repo).is_dir():
        print(f"demo: error: {args.repo} is not a directory", file=sys.stderr)
        return 1
    if args.seeder == args.downloader == "transmission":
        print("demo: error: transmission cannot download from transmission on 127.0.0.1 "
              "(it never dials loopback peers; docs/clients.md); pick another --downloader",
              file=sys.stderr)
        return 1

    demo = Demo(args)

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    code = 1
    try:
        code = demo.run()
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        code = 130
    except (ClientError, subprocess.SubprocessError, OSError) as exc:
        print(f"\ndemo: error: {exc}", file=sys.stderr)
        code = 1
    finally:
        demo.cleanup()
        demo.summary["exit_code"] = code
        try:
            (demo.out / "summary.json").write_text(json.dumps(demo.summary, indent=2) + "\n")
        except OSError:
            pass
    return code


if __name__ == "__main__":
    sys.exit(main())
