#!/usr/bin/env python3
"""Start-up time of commands from two trees: runs interleaved, median of N each.

    scripts/bench_startup.py [--runs 10] OLD_TREE NEW_TREE COMMAND...

Each COMMAND (one shell-quoted string) is run with PYTHONPATH=OLD_TREE and then
PYTHONPATH=NEW_TREE, N times round, stdin and output discarded, from this directory.
Prints each command's two medians and their ratio, and `python -c pass` as the floor.
For the receiver (BENCHMARKS.md):

    scripts/bench_startup.py OLD NEW ".venv/bin/gitp2p --version" \\
        ".venv/bin/gitp2p watch --help" ".venv/bin/gitp2p tracker --help" \\
        ".venv/bin/gitp2p watch /nonexistent --into /nonexistent --bare --once"

(the last imports all a watch run imports, then fails on the missing directory).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("commands", nargs="+")
    args = ap.parse_args()
    commands = [shlex.split(c) for c in args.commands] + [[sys.executable, "-c", "pass"]]
    times: dict[tuple[int, str], list[float]] = {}
    for _ in range(args.runs):
        for i, cmd in enumerate(commands):
            for tree in (args.old, args.new):
                env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
                start = time.perf_counter()
                subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=300)
                times.setdefault((i, tree), []).append(time.perf_counter() - start)
    print(f"load {os.getloadavg()[0]:.1f}; medians of {args.runs}")
    for i, cmd in enumerate(commands):
        old, new = (statistics.median(times[(i, t)]) for t in (args.old, args.new))
        print(f"{shlex.join(cmd)}: {old * 1000:.0f} ms -> {new * 1000:.0f} ms ({new / old:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
