#!/usr/bin/env python3
"""A cold mount, timed: code trees interleaved, until torrents/all.torrent reads whole.

    scripts/bench_cold_mount.py REPO TREE [TREE...] [--runs 3] [--workdir DIR] [--timeline]

Each run copies REPO (`cp -a`, then its `gitp2p/` cache removed: the cache lives in
the git dir, so a bare REPO is best), starts `gitp2p mount COPY MNT` in the background
with PYTHONPATH=TREE (as scripts/bench_e2e.py starts it), and reads
MNT/torrents/all.torrent every 0.05 s until it reads whole.  Printed per run: the load,
when the command returned ("mounted"), when all.torrent was readable, the CPU (user +
system) of the mount's processes by then (the server, its workers, the guard), and each
process's peak RSS (VmHWM) and largest RssAnon seen (sampled every 0.1 s), with when.  The trees take
turns, run after run, so that the machine's load falls on each alike; the load goes with
every line, and on a shared machine the CPU is the steadier figure.

--timeline prints, for the last run of each tree, the CPU each process used in every
half second: where one core idles.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")


def _tree_pids(pid: int) -> list[int]:
    out = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                for child in fh.read().split():
                    out += _tree_pids(int(child))
    except OSError:
        pass
    return out


def _sample(pid: int) -> tuple[float, int, int] | None:
    """(CPU seconds, VmHWM MB, RssAnon MB) of one process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        mem = {}
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "RssAnon"):
                    mem[key] = int(value.split()[0]) // 1024
    except (OSError, IndexError, ValueError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICK, mem.get("VmHWM", 0), mem.get("RssAnon", 0)


def one_run(repo: str, tree: str, work: str, timeout: float = 1800) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    copy, mnt = os.path.join(work, "repo"), os.path.join(work, "mnt")
    os.makedirs(mnt)
    subprocess.run(["cp", "-a", repo, copy], check=True)
    git_dir = subprocess.run(["git", "rev-parse", "--absolute-git-dir"], cwd=copy, capture_output=True, text=True,
                             check=True).stdout.strip()
    shutil.rmtree(os.path.join(git_dir, "gitp2p"), ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=tree)
    pid_file = os.path.join(work, "pid")
    load = os.getloadavg()[0]
    start = time.monotonic()
    # cwd: `python -m` puts it first on sys.path, before PYTHONPATH (run from a tree, that
    # tree's code would run whatever TREE says)
    subprocess.run([sys.executable, "-m", "gitfs_p2p.cli", "mount", copy, mnt, "--pid-file", pid_file,
                    "--poll", "0.5", "--log", os.path.join(work, "mount.log")], env=env, check=True,
                   capture_output=True, cwd=work)
    mounted = time.monotonic() - start
    with open(pid_file) as fh:
        server = int(fh.read())
    seen: dict[int, tuple[float, int, int]] = {}
    anon_at: dict[int, float] = {}  # when each process's largest RssAnon was first seen
    timeline: list[tuple[float, dict[int, float]]] = []
    target = os.path.join(mnt, "torrents", "all.torrent")
    try:
        while True:
            now = time.monotonic() - start
            row = {}
            for pid in _tree_pids(server):
                got = _sample(pid)
                if got is not None:
                    old = seen.get(pid, (0.0, 0, 0))
                    seen[pid] = (got[0], max(old[1], got[1]), max(old[2], got[2]))
                    if got[2] > old[2]:
                        anon_at[pid] = now
                    row[pid] = got[0]
            timeline.append((now, row))
            try:
                with open(target, "rb") as fh:
                    fh.read()
                break
            except OSError:
                pass
            if now > timeout:
                raise RuntimeError(f"no all.torrent after {timeout:.0f} s; see {work}/mount.log")
            time.sleep(0.05 if now < 1 else 0.1)
        ready = time.monotonic() - start
    finally:
        subprocess.run(["fusermount3", "-u", mnt], capture_output=True)
    return {"load": load, "mounted": mounted, "ready": ready, "cpu": sum(c for c, _, _ in seen.values()),
            "peaks": {("server" if pid == server else str(pid)): (hwm, anon, anon_at.get(pid, 0.0))
                      for pid, (_, hwm, anon) in seen.items()},
            "timeline": timeline, "server": server}


def print_timeline(result: dict) -> None:
    pids = sorted({pid for _, row in result["timeline"] for pid in row})
    names = ["server" if p == result["server"] else str(p) for p in pids]
    print("    s      " + "  ".join(f"{n:>7}" for n in names))
    last: dict[int, float] = {}
    edge = result["timeline"][0][0] if result["timeline"] else 0.0
    for now, row in result["timeline"]:
        if now < edge:
            continue
        cells = []
        for pid in pids:
            if pid in row:
                cells.append(f"{row[pid] - last.get(pid, 0.0):7.2f}")
                last[pid] = row[pid]
            else:
                cells.append("      -")
        print(f"    {now:5.2f}  " + "  ".join(cells))
        edge += 0.5


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("repo")
    ap.add_argument("trees", nargs="+", metavar="TREE", help="a checkout of gitfs-p2p (its C part built)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", default=os.path.join(ROOT, "bench-out", "cold-mount"))
    ap.add_argument("--timeline", action="store_true")
    args = ap.parse_args(argv)
    last = {}
    for i in range(args.runs):
        for tree in args.trees:
            r = one_run(os.path.abspath(args.repo), os.path.abspath(tree), os.path.join(args.workdir, "run"))
            peaks = " ".join(f"{name} {hwm}/{anon}@{at:.0f}s" for name, (hwm, anon, at) in r["peaks"].items())
            print(f"{tree}: load {r['load']:.2f}, mounted {r['mounted']:.2f} s, all.torrent {r['ready']:.2f} s, "
                  f"CPU {r['cpu']:.2f} s; peak MB (VmHWM/anon@when): {peaks}", flush=True)
            last[tree] = r
    shutil.rmtree(os.path.join(args.workdir, "run"), ignore_errors=True)
    if args.timeline:
        for tree, r in last.items():
            print(f"{tree}: CPU seconds per process in each half second")
            print_timeline(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
