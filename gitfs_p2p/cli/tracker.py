"""`gitp2p tracker`: run torrentcore's tracker (HTTP and UDP on one port number).

torrentcore holds the tracker itself (sans-IO core, h11 framing, the trio server) and
knows nothing of a command line; this module turns options into its limits and reports
what the user can fix through the CLI's one error boundary (exit 2: a usage problem).
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import UsageError, find_in_group

__all__ = ["register", "cmd_tracker"]

_POSITIVE = ("interval", "peer_ttl", "max_swarms", "max_peers", "max_peers_per_source",
             "source_rate", "source_burst", "max_connections", "max_connections_per_source")


def _check(args: argparse.Namespace) -> None:
    for name in _POSITIVE:
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive")
    if not 0 <= args.port <= 65535:
        raise UsageError("--port must be from 0 to 65535")


def _allow_list(path: str | None) -> set[bytes] | None:
    from torrentcore.tracker.server import load_allow_list

    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return load_allow_list(f.read())
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read allow-list {path}: {exc}") from None
    except ValueError as exc:
        raise UsageError(f"bad allow-list {path}: {exc}") from None


def cmd_tracker(args) -> int:
    """Serve until Ctrl-C or SIGTERM; a port that cannot be bound is a usage error."""
    import trio

    from torrentcore.tracker import Tracker, TrackerLimits
    from torrentcore.tracker.server import TrackerServer

    _check(args)
    allow = _allow_list(args.allow)
    # A server's log: every request with -v, and a timestamp on each line.
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s", force=True)
    limits = TrackerLimits(
        max_swarms=args.max_swarms, max_peers=args.max_peers,
        max_peers_per_source=args.max_peers_per_source, source_rate=args.source_rate,
        source_burst=args.source_burst, full_scrape=args.full_scrape)
    tracker = Tracker(interval=args.interval, peer_ttl=args.peer_ttl, allow=allow, limits=limits)
    server = TrackerServer(tracker, host=args.host, port=args.port, udp=not args.no_udp,
                           max_connections=args.max_connections,
                           max_connections_per_source=args.max_connections_per_source)

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            http_port, udp_port = await nursery.start(server.run)
            where = f"http://{args.host}:{http_port}/announce"
            if udp_port:
                where += f" and udp://{args.host}:{udp_port}/announce"
            print(f"gitp2p tracker: listening on {where} (interval {tracker.interval} s, "
                  f"peers kept {tracker.peer_ttl:.0f} s)", file=sys.stderr, flush=True)

    try:
        trio.run(serve)
    except BaseException as exc:  # only Ctrl-C and OSErrors are expected; others re-raise
        if find_in_group(exc, KeyboardInterrupt) is not None:
            return 0  # the way a tracker is stopped
        oserror = find_in_group(exc, OSError)
        if oserror is None:
            raise
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {oserror.strerror or oserror}") from None
    return 0


def register(sub) -> None:
    from torrentcore.tracker import DEFAULT_INTERVAL, SLOWEST_CLIENT_INTERVAL, TrackerLimits, default_peer_ttl
    from torrentcore.tracker.server import (
        DEFAULT_HOST,
        DEFAULT_PORT,
        MAX_CONNECTIONS,
        MAX_CONNECTIONS_PER_SOURCE,
    )

    limits = TrackerLimits()
    p = sub.add_parser(
        "tracker",
        help="run a BitTorrent tracker (HTTP and UDP), open on loopback by default",
        description=(
            "Run a small BitTorrent tracker: HTTP /announce and /scrape plus UDP (BEP 15) "
            "on the same port number. Peers are kept in memory only. A source is an IPv4 "
            "address or an IPv6 /64; its limits keep one host from filling the tracker."
        ),
        epilog="Clients announce to http://HOST:PORT/announce or udp://HOST:PORT/announce.",
    )
    p.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help="TCP and UDP port; 0 picks a free one (default: %(default)s)")
    p.add_argument("--allow", metavar="FILE",
                   help="serve only the info-hashes listed in FILE, one 40-hex-digit "
                        "hash per line ('#' comments allowed)")
    p.add_argument("--interval", type=int, default=DEFAULT_INTERVAL, metavar="S",
                   help="announce interval sent to clients, in seconds (default: "
                        "%(default)s = 30 min); 'min interval' is half of it")
    p.add_argument("--peer-ttl", type=float, metavar="S",
                   help="seconds a peer that stops announcing is kept (default: 1.5 x "
                        f"max(interval, {SLOWEST_CLIENT_INTERVAL}), i.e. "
                        f"{default_peer_ttl(DEFAULT_INTERVAL):.0f} with the default "
                        "interval; rtorrent announces only every 600 s and "
                        "libtorrent-based clients at most every 300 s)")
    p.add_argument("--max-swarms", type=int, default=limits.max_swarms,
                   metavar="N", help="torrents tracked at once (default: %(default)s)")
    p.add_argument("--max-peers", type=int, default=limits.max_peers, metavar="N",
                   help="peers tracked at once, all torrents together (default: %(default)s)")
    p.add_argument("--max-peers-per-source", type=int, default=limits.max_peers_per_source, metavar="N",
                   help="peers one source may announce, all torrents together (default: %(default)s)")
    p.add_argument("--source-rate", type=float, default=limits.source_rate, metavar="R",
                   help="requests per second one source may make, sustained (default: %(default)s)")
    p.add_argument("--source-burst", type=int, default=limits.source_burst, metavar="N",
                   help="requests one source may make at once above that rate (default: %(default)s)")
    p.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS, metavar="N",
                   help="TCP connections open at once; beyond it the oldest idle one "
                        "is closed (default: %(default)s)")
    p.add_argument("--max-connections-per-source", type=int, default=MAX_CONNECTIONS_PER_SOURCE, metavar="N",
                   help="TCP connections one source may hold open (default: %(default)s)")
    p.add_argument("--full-scrape", action="store_true",
                   help=f"answer /scrape without info_hash with up to "
                        f"{limits.full_scrape_entries} torrents (default: off)")
    p.add_argument("--no-udp", action="store_true", help="serve HTTP only")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    p.set_defaults(func=cmd_tracker)
