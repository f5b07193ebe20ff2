"""The `gitp2p` command line: argument parsing and the one place errors become exit codes."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .. import __version__
from ..errors import GitfsError

__all__ = ["main", "build_parser"]

log = logging.getLogger("gitp2p")

DESCRIPTION = """\
Share git repositories peer to peer with stock BitTorrent clients.

Every commit becomes one deterministic, thin git pack (named by the commit
id): anyone holding the same commit builds the same bytes, so everybody
seeds the same torrent.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gitp2p", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"gitp2p {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands():
    """Each command module registers its own subcommands (imports stay light)."""
    from . import mount, packs, seed, torrent, tracker, watch

    return (packs.register, mount.register, watch.register, torrent.register, tracker.register, seed.register)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # A command whose trailing positionals may come after its options (`publish REPO --name N
    # main v1.0`) says which (set_defaults(intermixed=DEST)); argparse alone stops at the option.
    tail = getattr(args, "intermixed", None)
    if extra and tail and not any(e.startswith("-") for e in extra):
        getattr(args, tail).extend(extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="gitp2p: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args)
    except GitfsError as exc:
        print(f"gitp2p: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("gitp2p: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `gitp2p packs REPO | head`: the reader left; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
