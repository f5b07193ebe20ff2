#!/usr/bin/env python3
"""Generate a realistic, reproducible git history (gitfs_p2p/testing/history.py).

    scripts/gen_history.py DEST --commits 5000 [--seed 1] [--bare]
"""

from __future__ import annotations

import argparse
import os
import sys

from gitfs_p2p.testing.history import generate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dest", help="directory to create (must not exist)")
    ap.add_argument("--commits", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bare", action="store_true")
    args = ap.parse_args(argv)
    if os.path.exists(args.dest):
        print(f"gen_history: {args.dest} already exists", file=sys.stderr)
        return 1
    generate(args.dest, args.commits, seed=args.seed, bare=args.bare)
    return 0


if __name__ == "__main__":
    sys.exit(main())
