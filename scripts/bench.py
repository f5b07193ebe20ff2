#!/usr/bin/env python3
"""`make bench`: sizes, times and memory, each as a ratio to a reference measured in the same run.

    scripts/bench.py [--commits 5000] [--out bench-out]

Histories: a generated one (scripts/gen_history.py, kept in OUT between
runs) and this project's own git history. Results go to stdout and to
OUT/results.md; BENCHMARKS.md records them with this command.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import shutil
import subprocess
import sys
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

from gitfs_p2p.testing.history import generate


def run_measured(cmd: list[str], *, cwd: str | None = None, stdin=None, stdout=subprocess.DEVNULL) -> tuple[float, int]:
    """(wall seconds, peak RSS in bytes) of one child process."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, stdin=stdin, stdout=stdout, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}")
    return elapsed, usage.ru_maxrss * 1024


def git_pack_size_and_time(repo: str, out_dir: str) -> tuple[int, float, int]:
    """git pack-objects of every commit reachable from all refs: no reuse, one thread."""
    dest = os.path.join(out_dir, "git-reference.pack")
    with open(dest, "wb") as fh:
        t, rss = run_measured(
            ["git", "pack-objects", "--no-reuse-delta", "--threads=1", "--stdout", "--revs", "--all"],
            cwd=repo,
            stdin=subprocess.DEVNULL,
            stdout=fh,
        )
    size = os.path.getsize(dest)
    os.unlink(dest)
    return size, t, rss


def bench_packs(name: str, repo: str, out_dir: str) -> dict:
    gitp2p = [sys.executable, "-m", "gitfs_p2p.cli"]
    cache = os.path.join(subprocess.check_output(["git", "rev-parse", "--absolute-git-dir"], cwd=repo, text=True).strip(), "gitp2p")
    shutil.rmtree(cache, ignore_errors=True)
    listing = os.path.join(out_dir, f"{name}.packs.txt")
    with open(listing, "w") as fh:
        gen_time, gen_rss = run_measured([*gitp2p, "packs", repo], stdout=fh)
    with open(listing) as fh:
        rows = [line.split() for line in fh]
    total = sum(int(size) for _, size in rows)
    with open(os.devnull, "w") as fh:
        warm_time, warm_rss = run_measured([*gitp2p, "packs", repo], stdout=fh)
    git_size, git_time, git_rss = git_pack_size_and_time(repo, out_dir)
    return {
        "history": name,
        "commits": len(rows),
        "packs_bytes": total,
        "git_bytes": git_size,
        "size_ratio": total / git_size,
        "gen_s": gen_time,
        "git_s": git_time,
        "time_ratio": gen_time / git_time,
        "gen_peak_mb": gen_rss / 2**20,
        "git_peak_mb": git_rss / 2**20,
        "warm_list_s": warm_time,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commits", type=int, default=5000, help="size of the generated history (default 5000)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-out"), help="work directory (default bench-out/)")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    gen = os.path.join(args.out, f"history-{args.commits}")
    if not os.path.isdir(gen):
        print(f"bench: generating a {args.commits}-commit history in {gen}", file=sys.stderr)
        generate(gen, args.commits, seed=1)

    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"zlib {zlib.ZLIB_RUNTIME_VERSION}, {subprocess.check_output(['git', '--version'], text=True).strip()}",
        "",
        "## Commit packs (issue 2)",
        "",
        "Reference: `git pack-objects --no-reuse-delta --threads=1 --revs --all` "
        "of the same commits, in the same run.",
        "",
        "| history | commits | sum of commit packs | git pack | size ratio | build all (cold cache) | git | time ratio | peak RSS build | peak RSS git | 2nd listing (warm) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    results = []
    for name, repo in (("generated", gen), ("gitfs-p2p itself", ROOT)):
        print(f"bench: commit packs of {name}", file=sys.stderr)
        r = bench_packs(name.split()[0], repo, args.out)
        results.append(r)
        lines.append(
            f"| {name} | {r['commits']} | {r['packs_bytes'] / 2**20:.2f} MiB | {r['git_bytes'] / 2**20:.2f} MiB "
            f"| **{r['size_ratio']:.3f}** | {r['gen_s']:.2f} s | {r['git_s']:.2f} s | **{r['time_ratio']:.2f}x** "
            f"| {r['gen_peak_mb']:.0f} MB | {r['git_peak_mb']:.0f} MB | {r['warm_list_s']:.2f} s |"
        )

    # Parts measured by other modules, when present.
    for module, title, call in (
        ("bench_mount", "Mount (issue 3)", lambda m, out: m.run(gen, out)),
        ("bench_watch", "Watcher import (issue 5)", lambda m, out: m.run(gen, os.path.join(args.out, "watch"), out)),
        ("bench_torrent", "Torrents (issue 4)", lambda m, out: m.run(gen, os.path.join(args.out, "torrent"), out)),
        ("bench_swarm", "Swarm transfer (issue 6)", lambda m, out: m.run(gen, os.path.join(args.out, "swarm"), out)),
        ("bench_e2e", "End to end (issue 13)", lambda m, out: m.run(gen, os.path.join(args.out, "e2e"), out)),
        ("bench_clone", "git clone gitp2p:: (issue 14)", lambda m, out: m.run(gen, os.path.join(args.out, "clone"), out)),
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        print(f"bench: {title}", file=sys.stderr)
        out: dict = {}
        call(mod, out)
        lines += ["", f"## {title}", ""]
        lines += [f"- {key}: {value}" for key, value in out.items()]

    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "results.md"), "w") as fh:
        fh.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
