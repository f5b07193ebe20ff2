"""`gitp2p watch`: import commit packs a BitTorrent client downloads into a repository."""

from __future__ import annotations

import argparse
import sys

from ..errors import ReceiveError
from .common import at_least, parse_size

__all__ = ["register", "cmd_watch", "NOT_FINISHED"]

#: `watch --once` exit status when it ran but something in DIR could not be imported or a
#: manifest ref could not be set (1 is an error that stopped it, 2 a usage error).
NOT_FINISHED = 3

DESCRIPTION = """\
Watch DIR (recursively, with inotify) and import every completed pack
(<commit-id>.pack, <tag-id>.pack) and roll-up (<commit-id>.rollup, each of its
packs checked on its own) into REPO; set the refs listed in the
torrent's ref manifest (*.gitp2p-refs) once the whole history of their target
is present. A bare REPO mirrors the sender's branches and tags; in a REPO with
a work tree, branches arrive under refs/remotes/gitp2p/ (never moving a branch
you work on), and a new REPO nobody has checked out gets HEAD's branch checked
out, as git clone does.

Every object is checked as git fetch checks it, and more: what git fetch
accepts by default is accepted; names unsafe to check out, dangerous
.gitmodules, duplicate tree entries and incomplete histories are always
refused; transfer.fsckObjects / fetch.fsckObjects in REPO turn on git's strict
checks (fsck.<msg-id>, fetch.fsck.<msg-id>, fetch.fsck.skipList honoured).

A file counts only when its SHA-1 trailer checks out; a client's partial and
sidecar files (.part, .!qB, .aria2, .parts, resume data) are ignored. Packs may
arrive in any order: one whose parents are missing waits. Every pack is fully
checked before it touches REPO; a bad one is moved to REPO's git dir under
gitp2p/quarantine/ (or, on another file system, left where it is) with its
reason in gitp2p/quarantine/log. Branches only move forward and tags never
change unless --force. Received bytes are kept in REPO's pack cache, so REPO
seeds exactly what it received. Safe to kill at any moment: run it again.

Signed manifests: with `git -C REPO config gitp2p.allowedSignersFile FILE`
(git's allowed-signers format, as gpg.ssh.allowedSignersFile) or
`gitp2p.verifyOpenPGP true` (OpenPGP keys of your gpg keyring, valid at least
at gpg.minTrustLevel, default marginal), a manifest's refs move only when its
signature (<label>.gitp2p-sig beside it) verifies for an allowed key and is
not older than the last one accepted from that key (a replay is refused even
with --force); each refused ref is named with the
reason, and the packs are imported all the same. See docs/trust.md.

With --once, the exit status says whether everything arrived: 0 when every pack
in DIR is imported and every manifest ref set, 3 when something could not be
(the last lines name what and why), 1 on an error. See docs/watcher.md.
"""

_SECONDS = at_least(float, 0, "a number of seconds")


def register(subparsers) -> None:

    p = subparsers.add_parser(
        "watch",
        help="import the commit packs a BitTorrent client downloads into DIR",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", metavar="DIR", help="the client's download directory (watched recursively)")
    p.add_argument("--into", required=True, metavar="REPO", help="repository to import into (created if absent)")
    p.add_argument("--bare", action="store_true",
                   help="create REPO as a bare repository: a mirror whose branches are the sender's "
                   "(a non-bare REPO receives branches under refs/remotes/REMOTE/, as git fetch does)")
    p.add_argument("--remote", default=None, metavar="NAME",
                   help="in a non-bare REPO, receive branches into refs/remotes/NAME/ (default: gitp2p)")
    p.add_argument("--once", action="store_true", help="import what is complete now, report what waits, and exit")
    p.add_argument("--force", action="store_true", help="also move refs backwards or sideways (like `git fetch +ref`); never takes a replayed signed manifest")
    p.add_argument(
        "--settle",
        type=_SECONDS,
        default=None,
        metavar="SECONDS",
        help="give up on (quarantine) a pack whose trailer does not match once it has not changed for "
        "SECONDS and does not look like a client's pre-allocated file (default: 10)",
    )
    p.add_argument(
        "--poll", type=_SECONDS, default=1.0, metavar="SECONDS", help="rescan interval without inotify (default: 1)"
    )
    p.add_argument(
        "--max-pack-size",
        type=parse_size,
        default=None,
        metavar="SIZE",
        help="reject pack files larger than SIZE (default: 1G)",
    )
    p.set_defaults(func=cmd_watch)


def _printer():
    last = [None]

    def show(result) -> None:
        line = result.progress_line()
        details = result.detail_lines()
        key = (line, tuple(details))
        if key == last[0]:
            return
        last[0] = key
        print(f"gitp2p: {line}", file=sys.stderr)
        for d in details:
            print(f"gitp2p:   {d}", file=sys.stderr)
        sys.stderr.flush()

    return show


def _report(line: str) -> None:
    print(f"gitp2p: {line}", file=sys.stderr, flush=True)


def cmd_watch(args) -> int:
    from ..receive.importer import DEFAULT_MAX_PACK_BYTES, DEFAULT_REMOTE, DEFAULT_SETTLE, Importer
    from ..receive.collector import settle_gc

    settle = DEFAULT_SETTLE if args.settle is None else args.settle
    importer = Importer(
        args.dir,
        args.into,
        bare=args.bare,
        force=args.force,
        remote=args.remote or DEFAULT_REMOTE,
        settle=settle,
        max_pack_bytes=args.max_pack_size or DEFAULT_MAX_PACK_BYTES,
        report=_report,
    )
    show = _printer()
    try:
        if args.once:
            settle_gc()
            result = importer.run_pass(final=True)
            show(result)
            if result.finished:
                return 0
            print("gitp2p: not finished: the packs and refs above could not be imported or set", file=sys.stderr)
            return NOT_FINISHED
        import trio  # not for --once: trio and the watch loop take a tenth of a second to import

        from ..receive.watcher import Watcher

        watcher = Watcher(importer, poll=args.poll, on_pass=show)
        settle_gc()
        trio.run(watcher.run)
        return 0
    except OSError as exc:
        raise ReceiveError(f"{exc.filename or args.dir}: {exc.strerror}") from None
    finally:
        importer.close()
