"""BitTorrent tracker as a pure state machine: swarms, announce, scrape, HTTP and UDP wire forms."""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import logging
import os
import random
import struct
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from torrentcore import bencode

__all__ = [
    "AnnounceRequest",
    "AnnounceResult",
    "Event",
    "PeerInfo",
    "ScrapeStats",
    "Tracker",
    "TrackerError",
    "UDP_PROTOCOL_ID",
    "encode_announce",
    "encode_failure",
    "encode_scrape",
    "parse_announce_query",
    "parse_query",
    "parse_scrape_query",
]

log = logging.getLogger(__name__)

#: Magic constant that opens every BEP 15 connect request.
UDP_PROTOCOL_ID = 0x41727101980
_UDP_CONNECT, _UDP_ANNOUNCE, _UDP_SCRAPE, _UDP_ERROR = 0, 1, 2, 3
_UDP_EVENTS = {0: "", 1: "completed", 2: "started", 3: "stopped"}
#: Most info-hashes one UDP scrape may ask about (BEP 15: about 74 fit in a packet).
_UDP_MAX_SCRAPE = 74
#: Most entries a scrape answer holds (a full scrape of a big tracker is refused).
MAX_SCRAPE_ENTRIES = 1000
#: Most key=value pairs we look at in one query string.
MAX_QUERY_PAIRS = 256


class Event(str, enum.Enum):
    """The ``event`` of an announce; NONE is a regular re-announce."""

    NONE = ""
    STARTED = "started"
    STOPPED = "stopped"
    COMPLETED = "completed"


class TrackerError(ValueError):
    """A request the tracker refuses; the message becomes the ``failure reason``."""


@dataclass(frozen=True)
class PeerInfo:
    """A peer as the tracker hands it out."""

    peer_id: bytes
    ip: str
    port: int


@dataclass(frozen=True)
class AnnounceRequest:
    """One announce, whatever wire form it came in."""

    info_hash: bytes
    peer_id: bytes
    ip: str
    port: int
    left: int
    uploaded: int = 0
    downloaded: int = 0
    event: Event = Event.NONE
    numwant: int | None = None
    compact: bool = True
    no_peer_id: bool = False


@dataclass(frozen=True)
class AnnounceResult:
    """The tracker's answer to a successful announce."""

    interval: int
    min_interval: int
    complete: int
    incomplete: int
    peers: tuple[PeerInfo, ...]


@dataclass(frozen=True)
class ScrapeStats:
    """Per-torrent counts for a scrape (BEP 48 names)."""

    complete: int
    downloaded: int
    incomplete: int


@dataclass
class _PeerState:
    ip: str
    port: int
    left: int
    last_seen: float


@dataclass
class _Swarm:
    peers: dict[bytes, _PeerState] = field(default_factory=dict)
    downloaded: int = 0

    def counts(self) -> tuple[int, int]:
        complete = sum(1 for p in self.peers.values() if p.left == 0)
        return complete, len(self.peers) - complete


def _normalise_ip(ip: str) -> str:
    """Canonical text form; IPv4-mapped IPv6 addresses become plain IPv4."""
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr)


class Tracker:
    """Swarm table keyed by info-hash. Time comes only from the ``now`` arguments.

    Peers not heard from for *peer_ttl* seconds (default: twice *interval*, plus 10)
    expire. *allow*, when given, is the set of info-hashes served; others are refused.
    """

    def __init__(
        self,
        *,
        interval: int = 60,
        min_interval: int | None = None,
        peer_ttl: float | None = None,
        allow: Collection[bytes] | None = None,
        default_numwant: int = 50,
        max_numwant: int = 200,
        max_swarms: int = 100_000,
        max_peers_per_swarm: int = 10_000,
        trust_ip_param: bool = False,
        secret: bytes | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = int(interval)
        self.min_interval = int(min_interval if min_interval is not None else max(1, interval // 2))
        self.peer_ttl = float(peer_ttl if peer_ttl is not None else 2 * interval + 10)
        self.allow = frozenset(allow) if allow is not None else None
        self.default_numwant = default_numwant
        self.max_numwant = max_numwant
        self.max_swarms = max_swarms
        self.max_peers_per_swarm = max_peers_per_swarm
        self.trust_ip_param = trust_ip_param
        self._secret = secret if secret is not None else os.urandom(16)
        self._rng = rng if rng is not None else random.Random()
        self._swarms: dict[bytes, _Swarm] = {}

    # ----------------------------------------------------------------- state machine

    def announce(self, req: AnnounceRequest, now: float) -> AnnounceResult:
        """Record *req* and pick peers for it; raise ``TrackerError`` to refuse."""
        if len(req.info_hash) != 20:
            raise TrackerError("invalid info_hash")
        if len(req.peer_id) != 20:
            raise TrackerError("invalid peer_id")
        if not 0 < req.port < 65536:
            raise TrackerError("invalid port")
        if self.allow is not None and req.info_hash not in self.allow:
            raise TrackerError("info_hash not allowed on this tracker")
        swarm = self._swarms.get(req.info_hash)
        if swarm is None:
            if req.event is Event.STOPPED:
                return AnnounceResult(self.interval, self.min_interval, 0, 0, ())
            if len(self._swarms) >= self.max_swarms:
                raise TrackerError("tracker is full")
            swarm = self._swarms[req.info_hash] = _Swarm()
        self._expire_swarm(swarm, now)

        if req.event is Event.STOPPED:
            swarm.peers.pop(req.peer_id, None)
            peers: tuple[PeerInfo, ...] = ()
        else:
            state = swarm.peers.get(req.peer_id)
            if state is None:
                if len(swarm.peers) >= self.max_peers_per_swarm:
                    raise TrackerError("swarm is full")
                state = swarm.peers[req.peer_id] = _PeerState(req.ip, req.port, -1, now)
            # "completed" counts once per peer: only when it was known to be incomplete.
            if req.event is Event.COMPLETED and state.left != 0:
                swarm.downloaded += 1
            state.ip, state.port, state.left, state.last_seen = req.ip, req.port, req.left, now
            peers = self._pick_peers(swarm, req)
        complete, incomplete = swarm.counts()
        log.debug("announce %s from %s:%d event=%r left=%d -> %d peers",
                  req.info_hash.hex(), req.ip, req.port, req.event.value, req.left, len(peers))
        return AnnounceResult(self.interval, self.min_interval, complete, incomplete, peers)

    def _pick_peers(self, swarm: _Swarm, req: AnnounceRequest) -> tuple[PeerInfo, ...]:
        numwant = self.default_numwant if req.numwant is None or req.numwant < 0 else req.numwant
        numwant = min(numwant, self.max_numwant)
        candidates = [
            PeerInfo(pid, p.ip, p.port)
            for pid, p in swarm.peers.items()
            if pid != req.peer_id and (p.ip, p.port) != (req.ip, req.port)
        ]
        if len(candidates) > numwant:
            candidates = self._rng.sample(candidates, numwant)
        return tuple(candidates)

    def scrape(self, info_hashes: Iterable[bytes], now: float) -> dict[bytes, ScrapeStats]:
        """Counts for each known info-hash asked about (all swarms when none are named)."""
        wanted = list(info_hashes)
        if not wanted:
            wanted = list(self._swarms)[:MAX_SCRAPE_ENTRIES]
        out: dict[bytes, ScrapeStats] = {}
        for ih in wanted[:MAX_SCRAPE_ENTRIES]:
            swarm = self._swarms.get(ih)
            if swarm is None:
                continue
            self._expire_swarm(swarm, now)
            complete, incomplete = swarm.counts()
            out[ih] = ScrapeStats(complete, swarm.downloaded, incomplete)
        return out

    def expire(self, now: float) -> int:
        """Drop peers older than ``peer_ttl`` and empty swarms; return how many peers went."""
        removed = 0
        for ih in list(self._swarms):
            swarm = self._swarms[ih]
            removed += self._expire_swarm(swarm, now)
            if not swarm.peers:
                del self._swarms[ih]
        return removed

    def _expire_swarm(self, swarm: _Swarm, now: float) -> int:
        stale = [pid for pid, p in swarm.peers.items() if now - p.last_seen > self.peer_ttl]
        for pid in stale:
            del swarm.peers[pid]
        return len(stale)

    def peers(self, info_hash: bytes) -> tuple[PeerInfo, ...]:
        """Every peer currently recorded for *info_hash* (for tests and status)."""
        swarm = self._swarms.get(info_hash)
        if swarm is None:
            return ()
        return tuple(PeerInfo(pid, p.ip, p.port) for pid, p in swarm.peers.items())

    @property
    def info_hashes(self) -> tuple[bytes, ...]:
        return tuple(self._swarms)

    # ----------------------------------------------------------------- HTTP wire form

    def handle_http(self, target: bytes, remote_ip: str, now: float) -> tuple[int, bytes]:
        """Answer an HTTP GET *target* (path and query, raw); returns (status, body).

        Malformed announces and scrapes get status 200 with a bencoded ``failure reason``,
        which is what clients show to users; unknown paths get 404.
        """
        try:
            return self._handle_http(target, remote_ip, now)
        except Exception:  # a bug: log it loudly, but one request must not stop the server
            log.exception("internal error answering %r", target[:200])
            return 500, encode_failure("internal tracker error")

    def _handle_http(self, target: bytes, remote_ip: str, now: float) -> tuple[int, bytes]:
        path, _, query = target.partition(b"?")
        try:
            if path == b"/announce":
                req = parse_announce_query(query, remote_ip, trust_ip_param=self.trust_ip_param)
                result = self.announce(req, now)
                return 200, encode_announce(result, compact=req.compact,
                                            no_peer_id=req.no_peer_id)
            if path == b"/scrape":
                return 200, encode_scrape(self.scrape(parse_scrape_query(query), now))
        except TrackerError as exc:
            log.info("refused %s from %s: %s", path.decode("latin-1"), remote_ip, exc)
            return 200, encode_failure(str(exc))
        return 404, b"not found\n"

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
        """Answer one BEP 15 datagram from *addr*; None means send nothing."""
        try:
            return self._handle_udp(data, addr, now)
        except Exception:  # a bug: log it loudly, but keep serving
            log.exception("internal error answering a UDP datagram from %s", addr[0])
            return None

    def _handle_udp(self, data: bytes, addr: tuple[str, int], now: float) -> bytes | None:
        if len(data) < 16:
            return None
        conn_id, action, txid = struct.unpack_from(">QII", data)
        if action == _UDP_CONNECT:
            if conn_id != UDP_PROTOCOL_ID:
                return None
            return struct.pack(">IIQ", _UDP_CONNECT, txid, self.connection_id(addr, now))
        if action not in (_UDP_ANNOUNCE, _UDP_SCRAPE):
            return _udp_error(txid, "unknown action")
        if not self._connection_ok(conn_id, addr, now):
            return _udp_error(txid, "connection id expired or invalid")
        try:
            if action == _UDP_ANNOUNCE:
                return self._udp_announce(data, addr, txid, now)
            return self._udp_scrape(data, txid, now)
        except TrackerError as exc:
            log.info("refused UDP request from %s: %s", addr[0], exc)
            return _udp_error(txid, str(exc))

    def _udp_announce(self, data: bytes, addr: tuple[str, int], txid: int, now: float) -> bytes:
        if len(data) < 98:
            raise TrackerError("announce packet too short")
        (info_hash, peer_id, downloaded, left, uploaded, event, ip_raw, _key, numwant,
         port) = struct.unpack_from(">20s20sQQQIIIiH", data, 16)
        if event not in _UDP_EVENTS:
            raise TrackerError("invalid event")
        remote = _normalise_ip(addr[0])
        ip = remote
        if self.trust_ip_param and ip_raw:
            ip = str(ipaddress.IPv4Address(ip_raw))
        req = AnnounceRequest(
            info_hash=info_hash, peer_id=peer_id, ip=ip, port=port, left=left,
            uploaded=uploaded, downloaded=downloaded, event=Event(_UDP_EVENTS[event]),
            numwant=None if numwant < 0 else numwant,
        )
        result = self.announce(req, now)
        v6 = ":" in remote
        peers = b"".join(_compact_peer(p) for p in result.peers if (":" in p.ip) == v6)
        return struct.pack(">IIIII", _UDP_ANNOUNCE, txid, result.interval,
                           result.incomplete, result.complete) + peers

    def _udp_scrape(self, data: bytes, txid: int, now: float) -> bytes:
        body = data[16:]
        if not body or len(body) % 20 or len(body) // 20 > _UDP_MAX_SCRAPE:
            raise TrackerError("scrape packet must hold 1 to 74 info-hashes")
        hashes = [body[i:i + 20] for i in range(0, len(body), 20)]
        stats = self.scrape(hashes, now)
        out = [struct.pack(">II", _UDP_SCRAPE, txid)]
        for ih in hashes:  # UDP answers by position, so unknown torrents count as zeros
            s = stats.get(ih, ScrapeStats(0, 0, 0))
            out.append(struct.pack(">III", s.complete, s.downloaded, s.incomplete))
        return b"".join(out)


def _udp_error(txid: int, message: str) -> bytes:
    return struct.pack(">II", _UDP_ERROR, txid) + message.encode("utf-8")


# --------------------------------------------------------------------- query strings


def parse_query(query: bytes) -> list[tuple[str, bytes]]:
    """Split a raw query string into (key, raw value bytes); '+' means a space.

    Values stay bytes: info_hash and peer_id are arbitrary binary, percent-encoded.
    """
    if isinstance(query, str):
        query = query.encode("latin-1")
    pairs = []
    for part in query.split(b"&"):
        if not part:
            continue
        if len(pairs) >= MAX_QUERY_PAIRS:
            raise TrackerError("too many query parameters")
        key, _, value = part.partition(b"=")
        key_s = unquote_to_bytes(key.replace(b"+", b" ")).decode("latin-1")
        pairs.append((key_s, unquote_to_bytes(value.replace(b"+", b" "))))
    return pairs


def _int_param(params: dict[str, bytes], name: str, *, default: int | None = None,
               lo: int = 0, hi: int = 2**63 - 1) -> int:
    raw = params.get(name)
    if raw is None:
        if default is None:
            raise TrackerError(f"missing {name}")
        return default
    text = raw.decode("latin-1")
    if not text.isascii() or not text.lstrip("-").isdigit() or len(text) > 20:
        raise TrackerError(f"invalid {name}")
    value = int(text)
    if not lo <= value <= hi:
        raise TrackerError(f"invalid {name}")
    return value


def parse_announce_query(query: bytes, remote_ip: str, *,
                         trust_ip_param: bool = False) -> AnnounceRequest:
    """Turn a raw ``/announce`` query string into an ``AnnounceRequest``."""
    params: dict[str, bytes] = {}
    for key, value in parse_query(query):
        params[key] = value  # the last occurrence wins
    info_hash = params.get("info_hash")
    if info_hash is None or len(info_hash) != 20:
        raise TrackerError("invalid info_hash")
    peer_id = params.get("peer_id")
    if peer_id is None or len(peer_id) != 20:
        raise TrackerError("invalid peer_id")
    port = _int_param(params, "port", lo=1, hi=65535)
    try:
        event = Event(params.get("event", b"").decode("latin-1").replace("empty", ""))
    except ValueError:
        raise TrackerError("invalid event") from None
    ip = remote_ip
    if trust_ip_param and "ip" in params:
        ip = params["ip"].decode("latin-1")
    try:
        ip = _normalise_ip(ip)
    except ValueError:
        raise TrackerError("invalid ip") from None
    numwant = _int_param(params, "numwant", default=-1, lo=-1, hi=2**31)
    return AnnounceRequest(
        info_hash=info_hash,
        peer_id=peer_id,
        ip=ip,
        port=port,
        left=_int_param(params, "left"),
        uploaded=_int_param(params, "uploaded", default=0),
        downloaded=_int_param(params, "downloaded", default=0),
        event=event,
        numwant=None if numwant < 0 else numwant,
        compact=params.get("compact", b"1") != b"0",
        no_peer_id=params.get("no_peer_id", b"0") == b"1",
    )


def parse_scrape_query(query: bytes) -> list[bytes]:
    """The info-hashes named by a raw ``/scrape`` query string (may be empty)."""
    hashes = [value for key, value in parse_query(query) if key == "info_hash"]
    for ih in hashes:
        if len(ih) != 20:
            raise TrackerError("invalid info_hash")
    return hashes


# --------------------------------------------------------------------- bencoded answers


def _compact_peer(peer: PeerInfo) -> bytes:
    return ipaddress.ip_address(peer.ip).packed + struct.pack(">H", peer.port)


def encode_announce(result: AnnounceResult, *, compact: bool = True,
                    no_peer_id: bool = False) -> bytes:
    """Bencode an announce answer: compact peers (BEP 23, ``peers6`` per BEP 7) or dicts."""
    body: dict = {
        b"interval": result.interval,
        b"min interval": result.min_interval,
        b"complete": result.complete,
        b"incomplete": result.incomplete,
    }
    if compact:
        body[b"peers"] = b"".join(_compact_peer(p) for p in result.peers if ":" not in p.ip)
        v6 = b"".join(_compact_peer(p) for p in result.peers if ":" in p.ip)
        if v6:
            body[b"peers6"] = v6
    else:
        peers = []
        for p in result.peers:
            entry: dict = {b"ip": p.ip.encode("ascii"), b"port": p.port}
            if not no_peer_id:
                entry[b"peer id"] = p.peer_id
            peers.append(entry)
        body[b"peers"] = peers
    return bencode.encode(body)


def encode_scrape(stats: dict[bytes, ScrapeStats]) -> bytes:
    """Bencode a scrape answer (``files`` keyed by raw info-hash)."""
    files = {
        ih: {b"complete": s.complete, b"downloaded": s.downloaded, b"incomplete": s.incomplete}
        for ih, s in stats.items()
    }
    return bencode.encode({b"files": files})


def encode_failure(reason: str) -> bytes:
    """Bencode ``{"failure reason": reason}``."""
    return bencode.encode({b"failure reason": reason})
