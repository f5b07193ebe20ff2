"""`gitp2p mount` and `gitp2p umount`: options, checks, running in the background, clear errors.

pyfuse3 and trio are imported only when these commands run, so the other
commands start as fast as before.
"""

from __future__ import annotations

import argparse
import os

from .common import cache_option, jobs_option, parse_size, progress_printer

__all__ = ["register", "cmd_mount", "cmd_umount"]

MOUNT_DESCRIPTION = """\
Mount REPO's commit packs read-only at MOUNTPOINT (an empty directory):

  MOUNTPOINT/packs/<commit-id>.pack   one pack per commit reachable from any ref
  MOUNTPOINT/packs/rollups/           roll-ups the torrents list: the packs of old
                                      history back to back, and tag groups, the tag
                                      packs on a roll-up's commits (docs/pack-format.md)
  MOUNTPOINT/refs/heads/..., refs/tags/..., HEAD
                                      symbolic links to the pack of their commit
  MOUNTPOINT/torrents/                HEAD.torrent and all.torrent (docs/torrents.md)
  MOUNTPOINT/README                   this layout

By default the mount runs in the background and the command returns once it
is ready; --foreground stays attached and logs. Refs that move show up
within a few seconds. Unmount with `gitp2p umount MOUNTPOINT` (or Ctrl-C /
SIGTERM to a foreground mount).

With `git config gitp2p.signManifests true` in REPO (and git's signing set-up:
gpg.format ssh or openpgp, user.signingkey), each torrent's manifest is signed,
and packs/<label>.gitp2p-sig serves the signature (docs/trust.md)."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "mount",
        parents=[cache_option(), jobs_option()],
        help="mount a repository's commit packs read-only (FUSE)",
        description=MOUNT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("repo", metavar="REPO", help="path to a git repository (work tree or bare)")
    p.add_argument("mountpoint", metavar="MOUNTPOINT", help="an empty directory")
    p.add_argument("-f", "--foreground", action="store_true", help="stay attached, log to stderr, Ctrl-C unmounts")
    p.add_argument(
        "--read-cache",
        type=parse_size,
        default=64 << 20,
        metavar="SIZE",
        help="bytes of recently read packs and roll-up chunks the mount keeps in memory (default: 64M; a quarter for the chunks)",
    )
    p.add_argument(
        "--allow-other",
        action="store_true",
        help="let other users (e.g. a BitTorrent daemon's user) read the mount; "
        "needs root or user_allow_other in /etc/fuse.conf",
    )
    p.add_argument(
        "--log",
        metavar="FILE",
        help="where a background mount logs (default: REPO's git dir, gitp2p/mount.log)",
    )
    p.add_argument("--pid-file", metavar="FILE", help="write the serving process's id here while mounted")
    p.add_argument(
        "--poll", type=float, default=2.0, metavar="SECONDS", help="how often to look for moved refs (default: 2)"
    )
    p.add_argument(
        "--tracker",
        metavar="URL",
        action="append",
        default=[],
        help="announce URL written into the torrents in torrents/ (repeatable)",
    )
    p.add_argument("--web-seed", metavar="URL", action="append", default=[], help="BEP 19 web seed URL (repeatable)")
    p.set_defaults(func=cmd_mount)

    p = subparsers.add_parser(
        "umount",
        help="unmount a gitp2p mount",
        description="Unmount MOUNTPOINT (with fusermount3 -u); the serving process then exits.",
    )
    p.add_argument("mountpoint", metavar="MOUNTPOINT")
    p.add_argument(
        "-z", "--lazy", action="store_true", help="detach now even if files are open (they keep working until closed)"
    )
    p.set_defaults(func=cmd_umount)


def _open_checked(args) -> tuple[str, str, str]:
    """(repo path, mountpoint, git dir) after every check that can fail before mounting."""
    from ..git.repo import GitRepo
    from ..git.vectors import selfcheck
    from ..mount.daemon import check_fuse, check_mountpoint
    from ..store.cache import PackCache

    repo_path = os.path.abspath(args.repo)
    mountpoint = os.path.abspath(args.mountpoint)
    check_fuse()
    with GitRepo(repo_path) as repo:
        repo.check_not_shallow()
        git_dir = os.path.abspath(repo.git_dir)
    check_mountpoint(mountpoint)
    selfcheck()
    PackCache(git_dir, max_bytes=args.cache_bytes).close()  # unreadable or unwritable: say so now
    from ..trust.signing import signer_for

    signer_for(git_dir)  # gitp2p.signManifests set but git's signing set-up unusable: say so now
    return repo_path, mountpoint, git_dir


def _service(args, repo_path: str, mountpoint: str, git_dir: str, log_path: str | None = None):
    """The mount service; every pack, snapshot and torrent is built by worker processes
    (store/builders.py), so the serving process never holds the repository's state."""
    from ..mount.service import MountService
    from ..mount.torrents import TorrentContributor
    from ..store.builders import Workers
    from ..store.source import PackSource
    from ..trust.signing import signer_for

    source = PackSource(git_dir=git_dir, cache_bytes=args.cache_bytes,
                        workers=Workers(repo_path, cache_bytes=args.cache_bytes, workers=args.jobs,
                                        log_path=log_path))
    torrents = TorrentContributor(source, trackers=args.tracker, web_seeds=args.web_seed, signer=signer_for(git_dir),
                                  git_dir=git_dir)
    return MountService(
        source,
        mountpoint,
        contributors=[torrents],
        poll_interval=max(0.1, args.poll),
        read_cache_bytes=args.read_cache,
        allow_other=args.allow_other,
        progress=progress_printer("packs sized"),
    )


def cmd_mount(args) -> int:
    from ..mount import daemon

    repo_path, mountpoint, git_dir = _open_checked(args)
    pid_file = os.path.abspath(args.pid_file) if args.pid_file else None

    def make_service(log_path: str | None):
        return _service(args, repo_path, mountpoint, git_dir, log_path)

    if args.foreground:
        daemon.serve_foreground(make_service, pid_file=pid_file)
        return 0
    log_path = os.path.abspath(args.log) if args.log else os.path.join(git_dir, "gitp2p", "mount.log")
    pid = daemon.serve_background(make_service, log_path=log_path, pid_file=pid_file)
    print(f"gitp2p: mounted {repo_path} at {mountpoint} (pid {pid}); `gitp2p umount {mountpoint}` unmounts")
    return 0


def cmd_umount(args) -> int:
    from ..mount.daemon import unmount

    unmount(args.mountpoint, lazy=args.lazy)
    return 0
