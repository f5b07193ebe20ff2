"""The `gitp2p` command line: argument parsing and the one place errors become exit codes."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
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


# The commands, in the order `gitp2p --help` lists them, and the module that registers each.
# A run of one command imports and registers only that command's module: registering the
# others costs their imports (the tracker's pulls in trio and the tracker server, about a
# tenth of a second) and nothing of theirs is used. tests/packs/test_cli_commands.py checks this
# table against what the modules register.
COMMANDS = {
    "packs": "packs", "pack": "packs",
    "mount": "mount", "umount": "mount",
    "watch": "watch",
    "torrent": "torrent",
    "tracker": "tracker",
    "seed": "seed", "publish": "seed",
}


def build_parser(modules: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line, or the top level and the commands of the named modules only
    (see _modules_for)."""
    parser = argparse.ArgumentParser(
        prog="gitp2p", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"gitp2p {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for name in dict.fromkeys(COMMANDS.values()) if modules is None else modules:
        importlib.import_module(f".{name}", __name__).register(sub)
    return parser


def _modules_for(argv: list[str]) -> list[str] | None:
    """The command modules a run of argv needs, None for all: the one of its command (its
    first word after the top level's own options, which take no values), none when
    --version comes first (argparse prints it and exits there). All for anything else (no
    command, an unknown word, `--`, `-`, a misspelt option, top-level --help): the whole
    parser then says what it always said. Every message of a run, --help included, is
    the same as the whole parser's."""
    for word in argv:
        if len(word) > 2 and "--version".startswith(word):
            return []
        if re.fullmatch(r"-v+", word) or (len(word) > 2 and "--verbose".startswith(word)):
            continue
        return [COMMANDS[word]] if word in COMMANDS else None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_modules_for(argv))
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
