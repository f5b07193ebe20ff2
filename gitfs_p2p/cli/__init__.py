"""The `gitp2p` command line: argument parsing and the one place errors become exit codes."""

from __future__ import annotations

import argparse
import logging
import os
import stat
import sys
import tempfile
import time

from .. import __version__
from ..store.cache import DEFAULT_CACHE_BYTES
from ..errors import UserError

__all__ = ["main", "build_parser"]

log = logging.getLogger("gitp2p")

DESCRIPTION = """\
Share git repositories peer to peer with stock BitTorrent clients.

Every commit becomes one deterministic, thin git pack (named by the commit
id): anyone holding the same commit builds the same bytes, so everybody
seeds the same torrent.
"""


def _progress_printer(what: str):
    """A progress callback that stays quiet for short jobs."""
    start = time.monotonic()
    tty = sys.stderr.isatty()
    shown = False

    def progress(done: int, total: int) -> None:
        nonlocal shown
        if not shown and time.monotonic() - start < 1.5:
            return
        shown = True
        end = "\n" if (done >= total or not tty) else ""
        sys.stderr.write(f"\r{what}: {done}/{total}{end}")
        sys.stderr.flush()

    return progress


def _open_source(path: str, cache_bytes: int):
    from ..git.repo import GitRepo
    from ..store.source import PackSource
    from ..git.vectors import selfcheck

    selfcheck()
    return PackSource(GitRepo(path), cache_bytes=cache_bytes)


def cmd_packs(args) -> int:
    source = _open_source(args.repo, args.cache_bytes)
    try:
        commits = source.commits(args.revs)
        out = sys.stdout
        for commit, size in source.sizes(commits, progress=_progress_printer("building packs")):
            out.write(f"{commit.id.decode()} {size}\n")
    finally:
        source.close()
        source.repo.close()
    return 0


def cmd_pack(args) -> int:
    source = _open_source(args.repo, args.cache_bytes)
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
            raise UserError("refusing to write a binary pack to a terminal; use -o FILE or redirect stdout")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        _write_atomically(dest, data)
        print(f"{commit_id.decode()} {len(data)} {dest}")
    return 0


def _write_atomically(dest: str, data: bytes) -> None:
    """Write an output file the user named with -o.

    A regular file (or a new name) is replaced atomically: a temporary file beside it,
    then a rename, so a reader never sees half of it.  Anything else that is not a
    directory (a character device such as /dev/null, a FIFO, a socket) is written
    into, never replaced; a symbolic link is followed.
    """
    target = os.path.realpath(dest) if os.path.islink(dest) else dest
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise UserError(f"{dest}: cannot write ({exc.strerror})") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise UserError(f"{dest}: is a directory")
    if st is not None and not stat.S_ISREG(st.st_mode):
        try:
            with open(target, "wb") as fh:
                fh.write(data)
        except OSError as exc:
            raise UserError(f"{dest}: cannot write ({exc.strerror})") from None
        return
    directory = os.path.dirname(os.path.abspath(target))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".gitp2p-", suffix=".tmp")
    except OSError as exc:
        raise UserError(f"{dest}: cannot write ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        os.unlink(tmp)
        raise UserError(f"{dest}: cannot write ({exc.strerror})") from None


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().rstrip("ib")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 256M)") from None


def cache_option() -> argparse.ArgumentParser:
    """The --cache-bytes option every command that builds packs takes."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--cache-bytes",
        type=_size,
        default=DEFAULT_CACHE_BYTES,
        metavar="SIZE",
        help="keep at most SIZE bytes of built packs in REPO's git dir (gitp2p/cache.sqlite3); "
        "sizes are always kept (default: 256M)",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gitp2p", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"gitp2p {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    cache_opt = cache_option()

    p = sub.add_parser(
        "packs",
        parents=[cache_opt],
        help="list commits and the sizes of their packs, oldest first",
        description="Print `COMMIT-ID SIZE` for every commit reachable from REVs (default: all\n"
        "refs), parents before children. Sizes come from the persistent cache in REPO's\n"
        "git dir; missing ones are built once (with progress on stderr).",
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

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands():
    """Each command module registers its own subcommands (imports stay light)."""
    from . import mount, torrent, watch

    return (mount.register, watch.register, torrent.register)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["tracker"]:
        # The tracker has its own parser (torrentcore); hand it every argument.
        from torrentcore.tracker.server import main as tracker_main

        return tracker_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
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
    except UserError as exc:
        print(f"gitp2p: error: {exc}", file=sys.stderr)
        return 1
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
