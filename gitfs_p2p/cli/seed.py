"""`gitp2p seed`: mount a repository (or use its mount) and seed its torrents with our engine.

The command only checks options and the repository, then hands over to gitfs_p2p/seed/
(the mount child, the catalog of torrents, the engine service).  libtorrent, trio and
pyfuse3 are imported only when the command runs.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import socket
import sys

from ..errors import GitfsError, UsageError
from .common import at_least

__all__ = ["register", "cmd_seed", "cmd_publish"]

SEED_DESCRIPTION = """\
Seed REPO's torrents with gitp2p's own BitTorrent engine (libtorrent), so that
others can `git clone gitp2p::...` it or download it with any BitTorrent client.

REPO is mounted read-only (under its git dir, gitp2p/seed-mount, or at
--mountpoint; an existing gitp2p mount of REPO there is used and left mounted),
and every torrent of the mount's torrents/ (HEAD and all) is seeded from it.
When refs move, the new torrents are seeded and the old ones dropped.  Torrents
REPO received (`git clone gitp2p::...` keeps them under its git dir,
gitp2p/received/) are seeded too, with the same info-hashes.

For each torrent the command prints its magnet link and the `git clone` lines to
give others, then seeds until Ctrl-C (or SIGTERM), which stops the engine and
unmounts what it mounted.  --daemon runs it in the background."""


_SECONDS = at_least(float, 0.1, "a number of seconds")


def _port(text: str) -> int:
    value = at_least(int, 0, "a port number")(text)
    if value > 65535:
        raise argparse.ArgumentTypeError("a port is from 0 to 65535")
    return value


def _host_port(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"{text!r}: give HOST:PORT")
    _port(port)
    return text


PUBLISH_DESCRIPTION = """\
Publish REPO under a name that follows it: gitp2p://<public key>/NAME.  Others
clone it with `git clone gitp2p://KEY/NAME` and later `git fetch` gets whatever
REPO publishes then: the name is a BEP 46 item in the BitTorrent DHT, signed
with REPO's own ed25519 key (made on first publish in REPO's git dir,
gitp2p/dht-key, or the file gitp2p.dhtKey names; keep it secret), naming the
info-hash of REPO's newest torrent of every branch and tag (the mount's
all.torrent, signed too when gitp2p.signManifests is set), or, given REFs, of
those branches and tags only (`gitp2p publish REPO main v1.0`: the torrent
`gitp2p torrent REPO main v1.0` makes, which the mount then builds too).

The command sets gitp2p.publishName = NAME and gitp2p.publishRefs = the REFs'
full names (unset without REFs) in REPO, prints the address, and seeds REPO as
`gitp2p seed` does (same options; the DHT is on: --dht, or --dht-node for a
room's own DHT), putting the name again whenever the published refs move.
When a `gitp2p seed` of REPO already runs, it takes the name and the refs up by
itself (it reads both settings at every poll): the command then only waits
until the name is published.  NAME defaults to REPO's directory name.  (Before
REFs, `gitp2p publish REPO NAME` gave the name: one argument that is no branch
or tag of REPO is still taken as NAME; one that is both is refused as unclear.)
With --no-seed it only prints the address: `git push gitp2p://KEY/NAME BRANCH`
from REPO then starts a background seed, and publishes BRANCH: added to the
REFs when REPO publishes chosen refs (docs/names.md)."""


def _add_seed_options(p) -> None:
    p.add_argument("--tracker", metavar="URL", action="append", default=[],
                   help="tracker announce URL, written into the mount's torrents and the magnet links (repeatable)")
    p.add_argument("--lan", action="store_true", help="find peers on the local network (BEP 14 local service discovery)")
    p.add_argument("--dht", action="store_true", help="find peers through the DHT (BEP 5; bootstrapped from libtorrent's public routers)")
    p.add_argument("--dht-node", metavar="HOST:PORT", action="append", default=[], type=_host_port,
                   help="a DHT node to bootstrap from instead (repeatable; implies --dht); nodes all on "
                        "private addresses make a room's own DHT")
    p.add_argument("--port", type=_port, default=6881, metavar="N",
                   help="port to listen on for peers, TCP and uTP (default: 6881; 0: any free port)")
    p.add_argument("--listen", default="0.0.0.0", metavar="ADDR",
                   help="address to listen on (default: 0.0.0.0, every IPv4 and IPv6 address)")
    p.add_argument("--no-utp", action="store_true", help="TCP only (no uTP)")
    p.add_argument("--mountpoint", metavar="DIR",
                   help="mount here (an empty directory, or REPO's gitp2p mount, which is used and left "
                        "mounted); default: REPO's git dir, gitp2p/seed-mount")
    p.add_argument("--wait", type=_SECONDS, default=900.0, metavar="SECONDS",
                   help="how long to wait for the mount to build its torrents (default: 900)")
    p.add_argument("--poll", type=_SECONDS, default=2.0, metavar="SECONDS",
                   help="how often to look for moved refs and new torrents (default: 2)")
    p.add_argument("--follow", type=_SECONDS, metavar="SECONDS",
                   help="follow the names REPO was cloned from: every SECONDS, `git fetch` each remote "
                        "whose URL is a gitp2p://KEY/NAME and seed the publisher's newest torrent in place "
                        "of the one fetched before (docs/names.md)")
    p.add_argument("--daemon", action="store_true", help="seed in the background (stop it with kill PID)")
    p.add_argument("--pid-file", metavar="FILE", help="write the seeding process's id here while it seeds")
    p.add_argument("--log", metavar="FILE",
                   help="where --daemon logs (default: REPO's git dir, gitp2p/seed.log)")
    # Tests on loopback: transmission never dials 127.0.0.0/8, so the seed must announce
    # often to learn of leechers and dial them.  Not for the real network (trackers).
    p.add_argument("--announce-every", type=_SECONDS, metavar="SECONDS", help=argparse.SUPPRESS)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "seed",
        help="seed a repository's torrents with the built-in engine (mounts it)",
        description=SEED_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("repo", metavar="REPO", help="path to a git repository (work tree or bare)")
    _add_seed_options(p)
    p.set_defaults(func=cmd_seed)
    p = subparsers.add_parser(
        "publish",
        help="publish a repository as gitp2p://KEY/NAME (a DHT name that follows it) and seed it",
        description=PUBLISH_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("repo", metavar="REPO", help="path to a git repository (work tree or bare)")
    p.add_argument("refs", metavar="REF", nargs="*",
                   help="branches and tags to publish (default: every branch and tag)")
    p.add_argument("--name", metavar="NAME",
                   help="the name (1-64 of A-Z a-z 0-9 . _ -; default: REPO's directory name)")
    p.add_argument("--no-seed", action="store_true",
                   help="only make the key, set the name and print the address (`git push` to it then "
                        "starts the seed)")
    _add_seed_options(p)
    p.set_defaults(func=cmd_publish, intermixed="refs")


def _seed_running(git_dir: str) -> int | None:
    """The pid of a running `gitp2p seed`/`publish` of this repository that published before, or None."""
    from ..seed.service import read_published

    pid = read_published(git_dir).get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read().split(b"\0")
    except OSError:
        return None
    return pid if (b"seed" in cmdline or b"publish" in cmdline) else None


def cmd_publish(args) -> int:
    import shlex
    import time

    from ..git.runner import run_git
    from ..seed.service import read_published
    from ..trust.names import Name, check_name, key_path, published_label, publisher_key, set_published_choice

    repo_path = os.path.abspath(args.repo)
    git_dir = _git_dir(repo_path)
    name, choice = _name_and_refs(repo_path, args.name, args.refs)
    try:
        name = check_name(name or _clone_dir(repo_path))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    label = published_label(choice)
    made = not os.path.exists(key_path(git_dir))
    key = publisher_key(git_dir, create=True)
    address = Name(key.public, name).address
    set_published_choice(git_dir, choice)
    run_git("config", "gitp2p.publishName", name, git_dir=git_dir)
    if made:
        print(f"made the publishing key {key_path(git_dir)} (secret: keep it, and keep it private)")
    what = ", ".join(_short(r) for r in choice) if choice else "every branch and tag"
    print(f"publishing {repo_path} ({what}) as {address}")
    print(f"  git clone {shlex.quote(address)} {shlex.quote(_clone_dir(repo_path))}", flush=True)
    if args.no_seed:
        return 0
    pid = _seed_running(git_dir)
    if pid is not None:
        print(f"the running seed (pid {pid}) publishes it; waiting", flush=True)
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline:
            done = read_published(git_dir)
            if done.get("address") == address and done.get("label", "all") == label:
                print(f"published {address}: torrent {done.get('info_hash')}, sequence number {done.get('seq')}")
                return 0
            time.sleep(0.2)
        raise GitfsError(f"the running seed (pid {pid}) did not publish {address} within {args.wait:g}s; see its log")
    if not (args.dht or args.dht_node):
        args.dht = True  # a name lives in the DHT
    return cmd_seed(args)


def _short(ref: str) -> str:
    return ref.split("/", 2)[2] if ref.startswith(("refs/heads/", "refs/tags/")) else ref


def _name_and_refs(repo_path: str, name: str | None, args: list[str]) -> tuple[str | None, tuple[str, ...]]:
    """(NAME or None, the chosen refs' full names) from `publish`'s arguments: all REFs, but
    one argument without --name that is no branch or tag is the NAME of before REFs."""
    from ..git.repo import GitRepo
    from ..trust.names import ALL_LABEL, check_name, published_label

    with GitRepo(repo_path) as repo:
        refs = repo.published_refs()

    def full(arg: str) -> str | None:
        return next((c for c in (arg, f"refs/heads/{arg}", f"refs/tags/{arg}") if c in refs), None)

    if name is None and len(args) == 1:
        try:
            check_name(args[0])
            could_be_name = True
        except ValueError:
            could_be_name = False
        if full(args[0]) is None and could_be_name:
            return args[0], ()  # `gitp2p publish REPO NAME`
        if full(args[0]) is not None and could_be_name:
            raise UsageError(
                f"{args[0]!r} is a branch or tag of {repo_path}, and could be the name to publish under: "
                f"say `--name NAME {args[0]}` to publish only {args[0]}, or `--name {args[0]}` to publish "
                "every branch and tag under that name")
    choice = []
    for arg in args:
        ref = full(arg)
        if ref is None:
            raise UsageError(f"{arg}: not a branch or tag of {repo_path} (a name is given with --name NAME)")
        choice.append(ref)
    choice = tuple(sorted(set(choice)))
    if choice and published_label(choice) in ("HEAD", ALL_LABEL):
        raise UsageError(f"{' '.join(args)}: its torrent's label would be {published_label(choice)!r}, the "
                         "mount's own torrent of that name; publish it with others (or rename the ref)")
    return name, choice


def _listen_interfaces(addr: str, port: int) -> tuple[str, ...]:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        raise UsageError(f"--listen {addr}: not an IP address") from None
    if addr == "0.0.0.0":
        return (f"0.0.0.0:{port}", f"[::]:{port}")
    return (f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}",)


def _check_port(addr: str, port: int) -> None:
    """A port taken by another program is a usage error, said before anything is mounted."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as libtorrent binds
        try:
            sock.bind((addr, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(f"port {port} is in use on {addr} (choose another with --port, 0 for any)") from None
            raise UsageError(f"cannot listen on {addr}:{port}: {exc.strerror}") from None


def _git_dir(path: str) -> str:
    from ..git.repo import GitRepo

    with GitRepo(path) as repo:
        repo.check_not_shallow()
        return os.path.realpath(repo.git_dir)


def _clone_dir(repo_path: str) -> str:
    name = os.path.basename(os.path.normpath(repo_path))
    if name == ".git":
        name = os.path.basename(os.path.dirname(os.path.normpath(repo_path)))
    return name[:-4] if name.endswith(".git") and len(name) > 4 else (name or "DIR")


def cmd_seed(args) -> int:
    from torrentcore.session import EngineConfig

    from ..mount.daemon import check_fuse

    repo_path = os.path.abspath(args.repo)
    git_dir = _git_dir(repo_path)
    listen = _listen_interfaces(args.listen, args.port)
    check_fuse()
    _check_port(args.listen, args.port)
    if args.mountpoint:
        mountpoint = os.path.abspath(args.mountpoint)
    else:
        mountpoint = os.path.join(git_dir, "gitp2p", "seed-mount")
        os.makedirs(mountpoint, exist_ok=True)
    loopback = ipaddress.ip_address(args.listen).is_loopback
    config = EngineConfig(
        listen=listen, lsd=args.lan, dht=args.dht or bool(args.dht_node), dht_nodes=tuple(args.dht_node),
        utp=not args.no_utp, loopback=loopback,
        # a port given is that port or an error, never the next free one
        extra={"max_retry_port_bind": 0, "listen_system_port_fallback": False} if args.port else {},
    )
    pid_file = os.path.abspath(args.pid_file) if args.pid_file else None

    def work(say, ready) -> int:
        return _seed(args, repo_path, git_dir, mountpoint, config, say, ready)

    if not args.daemon:
        def say(line: str) -> None:
            print(line, flush=True)

        def ready() -> None:
            if pid_file:
                with open(pid_file, "w") as fh:
                    fh.write(f"{os.getpid()}\n")
            print("gitp2p: seeding; Ctrl-C stops", file=sys.stderr, flush=True)

        try:
            return work(say, ready)
        finally:
            if pid_file and os.path.exists(pid_file):
                os.unlink(pid_file)

    from ..seed.background import run_in_background

    log_path = os.path.abspath(args.log) if args.log else os.path.join(git_dir, "gitp2p", "seed.log")
    pid, said = run_in_background(work, log_path=log_path, pid_file=pid_file)
    for line in said:
        print(line)
    print(f"gitp2p: seeding in the background (pid {pid}, log {log_path}); `kill {pid}` stops it")
    return 0


def _seed(args, repo_path: str, git_dir: str, mountpoint: str, config, say, ready) -> int:
    from ..seed.mounting import SeedMount, wait_for_torrents
    from ..seed.service import SeedService, run_until_signal

    def same_repo(served: str) -> bool:
        try:
            return _git_dir(served) == git_dir
        except GitfsError:
            return False

    def progress(line: str) -> None:
        print(f"gitp2p: {line}", file=sys.stderr, flush=True)

    mount = SeedMount.adopt_or_start(
        repo_path, git_dir, mountpoint, trackers=args.tracker, poll=args.poll,
        log_path=os.path.join(git_dir, "gitp2p", "seed-mount.log"), same_repo=same_repo)
    try:
        if not mount.owned:
            say(f"seeding from the existing mount at {mountpoint} (left mounted)")
        wait_for_torrents(mountpoint, args.wait, progress, mount.alive)
        service = SeedService(
            mountpoint, git_dir, config, say=say, trackers=tuple(args.tracker), poll=args.poll,
            announce_every=args.announce_every, clone_dir=_clone_dir(repo_path), mount_alive=mount.alive,
            follow=args.follow)
        run_until_signal(service, ready)
    finally:
        mount.stop()
    return 0
