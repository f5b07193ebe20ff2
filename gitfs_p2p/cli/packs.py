"""`gitp2p packs` and `gitp2p pack`: the commit packs of a repository."""

from __future__ import annotations

import argparse
import sys

from ..errors import GitfsError
from .common import cache_option, jobs_option, open_source, progress_printer, write_output

__all__ = ["register"]


def cmd_packs(args) -> int:
    source = open_source(args.repo, args.cache_bytes)
    try:
        commits = source.commits(args.revs)
        out = sys.stdout
        for commit, size in source.sizes(commits, progress=progress_printer("building packs"), jobs=args.jobs):
            out.write(f"{commit.id.decode()} {size}\n")
    finally:
        source.close()
        source.repo.close()
    return 0


def cmd_pack(args) -> int:
    source = open_source(args.repo, args.cache_bytes)
    try:
        source.repo.check_not_shallow()
        commit_id = source.repo.resolve(args.commit)
        data = source.pack(commit_id)
    finally:
        source.close()
        source.repo.close()
    dest = args.output or f"{commit_id.decode()}.pack"
    if dest == "-":
        if sys.stdout.isatty():
            raise GitfsError("refusing to write a binary pack to a terminal; use -o FILE or redirect stdout")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        write_output(dest, data)
        print(f"{commit_id.decode()} {len(data)} {dest}")
    return 0


def register(sub) -> None:
    cache_opt = cache_option()
    p = sub.add_parser(
        "packs",
        parents=[cache_opt, jobs_option()],
        help="list commits and the sizes of their packs, oldest first",
        description="Print `COMMIT-ID SIZE` for every commit reachable from REVs (default: all\n"
        "refs), parents before children. Sizes come from the persistent cache in REPO's\n"
        "git dir; missing ones are built once, on every core (with progress on stderr).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("repo", metavar="REPO", help="path to a git repository (work tree or bare)")
    p.add_argument("revs", metavar="REV", nargs="*", help="revisions to list (default: every ref)")
    p.set_defaults(func=cmd_packs)

    p = sub.add_parser(
        "pack",
        parents=[cache_opt],
        help="write one commit's pack",
        description="Write the deterministic thin pack of one commit. It holds the commit and\n"
        "every tree and blob its parents do not have. Import it in a repository that\n"
        "has the parents with:\n\n"
        "    git index-pack --stdin --fix-thin < COMMIT-ID.pack",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("repo", metavar="REPO", help="path to a git repository")
    p.add_argument("commit", metavar="COMMIT", help="commit id, abbreviated id, branch or tag")
    p.add_argument("-o", "--output", metavar="FILE", help="where to write (default: COMMIT-ID.pack; - for stdout)")
    p.set_defaults(func=cmd_pack)
