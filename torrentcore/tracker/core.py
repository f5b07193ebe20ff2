"""BitTorrent tracker as a pure state machine: policy and limits over the swarm table.

The pieces live in their own modules: ``swarms`` (the table and the request and
answer types), ``http`` (h11 framing, query strings, bencoded answers),
``udp`` (BEP 15 datagrams), ``limits`` (per-source budgets). This module
joins them into ``Tracker`` (with its HTTP and UDP entry points) and re-exports the
names callers use. Time comes only from the ``now`` arguments; nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import random
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from .http import (
    MAX_QUERY_PAIRS,
    encode_announce,
    encode_failure,
    encode_scrape,
    normalise_ip,
    parse_announce_query,
    parse_query,
    parse_scrape_query,
)
from .limits import RateLimitedLog, TokenBuckets, source_key
from .swarms import (
    EXPIRE_PER_REQUEST,
    AnnounceRequest,
    AnnounceResult,
    BadRequest,
    Event,
    PeerInfo,
    ScrapeStats,
    SwarmTable,
    TrackerError,
)
from .udp import (
    ACTION_ANNOUNCE,
    ACTION_CONNECT,
    ACTION_SCRAPE,
    UDP_PROTOCOL_ID,
    decode_header,
    encode_announce_reply,
    encode_connect_reply,
    encode_error,
    encode_scrape_reply,
    parse_announce,
    parse_scrape,
)

__all__ = [
    "DEFAULT_INTERVAL",
    "MAX_QUERY_PAIRS",
    "SLOWEST_CLIENT_INTERVAL",
    "UDP_PROTOCOL_ID",
    "AnnounceRequest",
    "AnnounceResult",
    "BadRequest",
    "Event",
    "PeerInfo",
    "ScrapeStats",
    "Tracker",
    "TrackerError",
    "TrackerLimits",
    "default_min_interval",
    "default_peer_ttl",
    "encode_announce",
    "encode_failure",
    "encode_scrape",
    "parse_announce_query",
    "parse_query",
    "parse_scrape_query",
]

log = logging.getLogger(__name__)

#: Announce interval sent to clients: 30 min, as opentracker's.
DEFAULT_INTERVAL = 1800
#: The longest gap between announces of a stock client that we know of, whatever
#: interval the tracker asks for: rtorrent announces every 600 s, libtorrent-based clients
#: (qBittorrent, Deluge) never more often than every 300 s.
SLOWEST_CLIENT_INTERVAL = 600
#: Peers are kept this many times the longer of the interval and SLOWEST_CLIENT_INTERVAL.
PEER_TTL_FACTOR = 1.5


def default_peer_ttl(interval: float) -> float:
    """Seconds a silent peer is kept: 1.5 x max(interval, 600). For the default interval
    that is 2700 s (45 min, as opentracker); for a short test interval it is still 900 s,
    longer than any stock client waits between announces."""
    return PEER_TTL_FACTOR * max(interval, SLOWEST_CLIENT_INTERVAL)


def default_min_interval(interval: int) -> int:
    """The ``min interval`` sent to clients: half the interval."""
    return max(1, interval // 2)


@dataclass(frozen=True)
class TrackerLimits:
    """Every bound the tracker enforces, with its default (docs/torrentcore.md explains
    each). A *source* is an IPv4 address or an IPv6 /64."""

    #: swarms (info-hashes) tracked at once
    max_swarms: int = 100_000
    #: peer entries overall: about 0.5 kB each, 0.85 kB with a swarm of its own (measured),
    #: so at most about 85 MB
    max_peers: int = 100_000
    #: peer entries in one swarm
    max_peers_per_swarm: int = 10_000
    #: peer entries one source may create across all swarms
    max_peers_per_source: int = 1_000
    #: peer entries one source may hold in one swarm (clients behind one NAT address)
    max_swarm_peers_per_source: int = 16
    #: requests (HTTP or UDP, connects included) a source may make per second, sustained
    source_rate: float = 50.0
    #: requests a source may make in a burst above that rate
    source_burst: int = 500
    #: sources whose request budgets are remembered (least recently seen forgotten first)
    max_sources: int = 65_536
    #: distinct info-hashes one scrape may name
    max_scrape_hashes: int = 74
    #: answer a scrape that names no info-hash with (a bounded list of) every swarm
    full_scrape: bool = False
    #: swarms in a full scrape answer, when enabled
    full_scrape_entries: int = 1000
    #: refusals logged per minute; the rest are counted in one summary line
    log_lines_per_minute: int = 20


_SLOW_DOWN = encode_failure("too many requests from your address; slow down")
_INTERNAL_ERROR = encode_failure("internal tracker error")
_NO_STATS = ScrapeStats(0, 0, 0)


class Tracker:
    """Swarm table keyed by info-hash, with the rules that make it safe to expose.

    Peers silent for *peer_ttl* seconds expire (default: ``default_peer_ttl(interval)``).
    *allow*, when given, is the set of info-hashes served; others are refused. *limits*
    bounds what any one source, and everyone together, can make the tracker hold or do.
    ``counters`` counts answers by kind (``announce``, ``scrape``, ``udp_connect``,
    ``rate_limited``, ``refused``, ``bad_request``, ``internal_error``).
    """

    def __init__(
        self,
        *,
        interval: int = DEFAULT_INTERVAL,
        min_interval: int | None = None,
        peer_ttl: float | None = None,
        allow: Collection[bytes] | None = None,
        default_numwant: int = 50,
        max_numwant: int = 200,
        limits: TrackerLimits | None = None,
        trust_ip_param: bool = False,
        secret: bytes | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        if peer_ttl is not None and peer_ttl <= 0:
            raise ValueError("peer_ttl must be positive")
        self.interval = int(interval)
        self.min_interval = int(min_interval if min_interval is not None
                                else default_min_interval(self.interval))
        self.peer_ttl = float(peer_ttl if peer_ttl is not None
                              else default_peer_ttl(self.interval))
        self.allow = frozenset(allow) if allow is not None else None
        self.default_numwant = default_numwant
        self.max_numwant = max_numwant
        self.limits = limits if limits is not None else TrackerLimits()
        self.trust_ip_param = trust_ip_param
        self._secret = secret if secret is not None else os.urandom(16)
        lim = self.limits
        self.swarms = SwarmTable(
            peer_ttl=self.peer_ttl, max_swarms=lim.max_swarms, max_peers=lim.max_peers,
            max_peers_per_swarm=lim.max_peers_per_swarm,
            max_peers_per_source=lim.max_peers_per_source,
            max_swarm_peers_per_source=lim.max_swarm_peers_per_source, rng=rng)
        self.buckets = TokenBuckets(lim.source_rate, lim.source_burst, lim.max_sources)
        self.log_limiter = RateLimitedLog(log, per_window=lim.log_lines_per_minute, window=60.0)
        self.counters: Counter[str] = Counter()

    # ----------------------------------------------------------------- state machine

    def announce(self, req: AnnounceRequest, now: float, *,
                 source: str | None = None) -> AnnounceResult:
        """Record *req* and pick peers for it; raise ``TrackerError`` to refuse.

        *source* is who asked (per-source caps count it); by default ``req.ip``'s."""
        if len(req.info_hash) != 20:
            raise BadRequest("invalid info_hash")
        if len(req.peer_id) != 20:
            raise BadRequest("invalid peer_id")
        if not 0 < req.port < 65536:
            raise BadRequest("invalid port")
        if req.left < 0:
            raise BadRequest("invalid left")
        if self.allow is not None and req.info_hash not in self.allow:
            raise TrackerError("info_hash not allowed on this tracker")
        numwant = self.default_numwant if req.numwant is None else req.numwant
        stats, peers = self.swarms.announce(
            req, source if source is not None else source_key(req.ip), now,
            min(numwant, self.max_numwant))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("announce %s from %s:%d event=%r left=%d -> %d peers",
                      req.info_hash.hex(), req.ip, req.port, req.event.value, req.left,
                      len(peers))
        return AnnounceResult(self.interval, self.min_interval, stats.complete,
                              stats.incomplete, peers)

    def scrape(self, info_hashes: Iterable[bytes], now: float) -> dict[bytes, ScrapeStats]:
        """Counts for each distinct known info-hash named; naming none asks for a full
        scrape, refused unless ``limits.full_scrape``. Raises ``TrackerError``."""
        wanted: dict[bytes, None] = {}
        for ih in info_hashes:
            wanted[ih] = None
            if len(wanted) > self.limits.max_scrape_hashes:
                raise TrackerError(f"a scrape may name at most "
                                   f"{self.limits.max_scrape_hashes} info-hashes")
        if not wanted:
            if not self.limits.full_scrape:
                raise TrackerError("full scrape is disabled on this tracker")
            wanted = dict.fromkeys(self.swarms.some_info_hashes(self.limits.full_scrape_entries))
        self.swarms.expire(now, limit=EXPIRE_PER_REQUEST)
        out = {}
        for ih in wanted:
            stats = self.swarms.stats(ih)
            if stats is not None:
                out[ih] = stats
        return out

    def expire(self, now: float, *, limit: int | None = None) -> int:
        """Drop (up to *limit*) expired peers and empty swarms; return how many peers went."""
        return self.swarms.expire(now, limit=limit)

    def housekeeping(self, now: float, *, limit: int = 10_000) -> int:
        """What the server runs now and then: expire up to *limit* peers, and report the
        log lines held back in a window that has ended. Returns how many peers went."""
        self.log_limiter.flush(now)
        return self.expire(now, limit=limit)

    def peers(self, info_hash: bytes) -> tuple[PeerInfo, ...]:
        """Every peer currently recorded for *info_hash* (for tests and status)."""
        return self.swarms.peers(info_hash)

    @property
    def info_hashes(self) -> tuple[bytes, ...]:
        return self.swarms.info_hashes

    def _refused(self, kind: str, now: float, what: str, remote: str, reason: object) -> None:
        self.counters[kind] += 1
        self.log_limiter.log(logging.INFO, now, "refused %s from %s: %s", what, remote, reason)

    # ----------------------------------------------------------------- HTTP wire form

    def handle_http(self, target: bytes, remote_ip: str, now: float) -> tuple[int, bytes]:
        """Answer an HTTP GET *target* (path and query, raw) from *remote_ip*; returns
        (status, body).

        Malformed announces and scrapes get 400, refusals by policy (allow-list, full
        tables, a source over its request budget) 200; both carry a bencoded ``failure
        reason``, which is what clients show to users. Unknown paths get 404.
        """
        try:
            return self._handle_http(target, remote_ip, now)
        except Exception:  # a bug: log it (rate-limited), but one request must not stop the server
            self.counters["internal_error"] += 1
            self.log_limiter.log(logging.ERROR, now, "internal error answering %r",
                                 target[:200], exc_info=True)
            return 500, _INTERNAL_ERROR

    def _handle_http(self, target: bytes, remote_ip: str, now: float) -> tuple[int, bytes]:
        path, _, query = target.partition(b"?")
        source = source_key(remote_ip)
        if not self.buckets.allow(source, now):
            self._refused("rate_limited", now, "HTTP request", remote_ip,
                          "over its request budget")
            return 200, _SLOW_DOWN
        if path not in (b"/announce", b"/scrape"):
            return 404, b"not found\n"
        what = path.decode("ascii")
        try:
            if path == b"/announce":
                req = parse_announce_query(query, remote_ip, trust_ip_param=self.trust_ip_param)
                result = self.announce(req, now, source=source)
                self.counters["announce"] += 1
                return 200, encode_announce(result, compact=req.compact,
                                            no_peer_id=req.no_peer_id)
            stats = self.scrape(parse_scrape_query(query), now)
            self.counters["scrape"] += 1
            return 200, encode_scrape(stats)
        except BadRequest as exc:
            self._refused("bad_request", now, what, remote_ip, exc)
            return 400, encode_failure(str(exc))
        except TrackerError as exc:
            self._refused("refused", now, what, remote_ip, exc)
            return 200, encode_failure(str(exc))

    # ----------------------------------------------------------------- UDP wire form (BEP 15)

    def connection_id(self, addr: tuple[str, int], now: float, *, age: int = 0) -> int:
        """The connection id for *addr*: an HMAC of the address and the current minute."""
        bucket = int(now // 60) - age
        mac = hmac.new(self._secret, f"{addr[0]}|{addr[1]}|{bucket}".encode(), hashlib.sha256)
        return int.from_bytes(mac.digest()[:8], "big")

    def _connection_ok(self, conn_id: int, addr: tuple[str, int], now: float) -> bool:
        # Valid for the current and the previous minute: 60 to 120 s (BEP 15 asks >= 60 s).
        return any(hmac.compare_digest(conn_id.to_bytes(8, "big"),
                                       self.connection_id(addr, now, age=a).to_bytes(8, "big"))
                   for a in (0, 1))

    def handle_udp(self, data: bytes, addr: tuple[str, int], now: float) -> bytes | None:
        """Answer one BEP 15 datagram from *addr*; None means send nothing (runts,
        connects without the magic, and any datagram from a source over its budget)."""
        try:
            return self._handle_udp(data, addr, now)
        except Exception:  # a bug: log it (rate-limited), but keep serving
            self.counters["internal_error"] += 1
            self.log_limiter.log(logging.ERROR, now, "internal error answering a UDP "
                                 "datagram from %s", addr[0], exc_info=True)
            return None

    def _handle_udp(self, data: bytes, addr: tuple[str, int], now: float) -> bytes | None:
        header = decode_header(data)
        if header is None:
            return None
        conn_id, action, txid = header
        source = source_key(addr[0])
        if not self.buckets.allow(source, now):
            self._refused("rate_limited", now, "UDP request", addr[0], "over its request budget")
            return None
        if action == ACTION_CONNECT:
            if conn_id != UDP_PROTOCOL_ID:
                return None
            self.counters["udp_connect"] += 1
            return encode_connect_reply(txid, self.connection_id(addr, now))
        if action not in (ACTION_ANNOUNCE, ACTION_SCRAPE):
            return encode_error(txid, "unknown action")
        if not self._connection_ok(conn_id, addr, now):
            return encode_error(txid, "connection id expired or invalid")
        what = "UDP announce" if action == ACTION_ANNOUNCE else "UDP scrape"
        try:
            if action == ACTION_ANNOUNCE:
                req = parse_announce(data, addr[0], trust_ip_param=self.trust_ip_param)
                result = self.announce(req, now, source=source)
                self.counters["announce"] += 1
                return encode_announce_reply(txid, result, ipv6=":" in normalise_ip(addr[0]))
            hashes = parse_scrape(data)
            stats = self.scrape(hashes, now)  # distinct hashes, each looked up once
            self.counters["scrape"] += 1
            # UDP answers by position, so repeats repeat and unknown torrents count as zeros
            return encode_scrape_reply(txid, [stats.get(ih, _NO_STATS) for ih in hashes])
        except BadRequest as exc:
            self._refused("bad_request", now, what, addr[0], exc)
            return encode_error(txid, str(exc))
        except TrackerError as exc:
            self._refused("refused", now, what, addr[0], exc)
            return encode_error(txid, str(exc))
