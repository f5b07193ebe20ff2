#!/usr/bin/env python3
"""The receiver after the last piece, without a swarm: a download simulated into DIR.

    scripts/bench_last_piece.py FILES [--runs 3] [--workdir DIR] [--span 0.3]

FILES: a torrent's files as a client leaves them (`scripts/bench_large.py --write-files
HISTORY FILES`).  Each run starts `gitp2p watch DIR --into REPO --bare` on an empty DIR
whose files are pre-allocated (zeros, as libtorrent leaves them), waits for its first
pass, then writes the files' bytes in 16 KiB pieces of the whole torrent, in random order,
over --span seconds, and times from the last write to the watcher's line that every pack is
imported.  Then `gitp2p watch --once` of FILES into an empty repository, timed the same way
(the pass alone, with its start-up), so the difference is what the watcher waits before its
pass.  Same machine, same run: read the two together.
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
import threading
import time

PIECE = 16384
IMPORTED = re.compile(r"imported (\d+)/(\d+) packs")


def _files(src: str) -> list[tuple[str, bytes]]:
    out = []
    for root, _, names in os.walk(src):
        for name in sorted(names):
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                out.append((os.path.relpath(path, src), fh.read()))
    return sorted(out)


def _watch(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gitfs_p2p.cli", "watch", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def one_run(files: list[tuple[str, bytes]], work: str, span: float, seed: int, timeout: float = 300) -> float:
    """Seconds from the last write to `imported N/N packs` (all of them)."""
    shutil.rmtree(work, ignore_errors=True)
    dest, repo = os.path.join(work, "dl"), os.path.join(work, "repo.git")
    spans, pos = [], 0
    for rel, data in files:
        path = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.truncate(len(data))
        spans.append((path, pos, pos + len(data), data))
        pos += len(data)
    pieces = list(range(-(-pos // PIECE)))
    random.Random(seed).shuffle(pieces)
    lines: list[tuple[float, str]] = []
    proc = _watch([dest, "--into", repo, "--bare", "--settle", "30"])
    threading.Thread(target=lambda: lines.extend((time.monotonic(), ln.strip()) for ln in proc.stderr),
                     daemon=True).start()
    try:
        deadline = time.monotonic() + timeout
        while not any(IMPORTED.search(ln) for _, ln in lines):  # its first pass is over
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gitp2p watch did not start: {lines[-5:]}")
            time.sleep(0.02)
        fds = {path: os.open(path, os.O_WRONLY) for path, _, _, _ in spans}
        start = time.monotonic()
        for k, piece in enumerate(pieces):
            lo, hi = piece * PIECE, min(pos, (piece + 1) * PIECE)
            for path, first, end, data in spans:
                if first < hi and end > lo:
                    a, b = max(lo, first), min(hi, end)
                    os.pwrite(fds[path], data[a - first:b - first], a - first)
            pause = start + span * (k + 1) / len(pieces) - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        for fd in fds.values():
            os.close(fd)
        last = time.monotonic()
        while time.monotonic() < deadline:
            done = [t for t, ln in lines if t > last and (m := IMPORTED.search(ln)) and m.group(1) == m.group(2)]
            if done:
                return done[0] - last
            if proc.poll() is not None:
                raise RuntimeError(f"gitp2p watch exited: {lines[-5:]}")
            time.sleep(0.02)
        raise RuntimeError(f"not every pack imported within {timeout} s: {lines[-5:]}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def once(src: str, work: str) -> float:
    shutil.rmtree(work, ignore_errors=True)
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "gitfs_p2p.cli", "watch", src, "--into", os.path.join(work, "repo.git"),
                    "--bare", "--once"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.monotonic() - start
    shutil.rmtree(work, ignore_errors=True)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", default="/tmp/bench-last-piece")
    ap.add_argument("--span", type=float, default=0.3, help="seconds the simulated download takes")
    args = ap.parse_args(argv)
    files = _files(args.files)
    after, alone = [], []
    for i in range(args.runs):
        after.append(one_run(files, args.workdir, args.span, seed=i))
        alone.append(once(args.files, args.workdir))
        print(f"run {i}: last write -> every pack imported {after[-1]:.2f} s; "
              f"`watch --once` of the same files {alone[-1]:.2f} s; load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"median: after the last write {statistics.median(after):.2f} s, "
          f"`watch --once` {statistics.median(alone):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
