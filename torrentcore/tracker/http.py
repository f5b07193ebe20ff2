"""The tracker's HTTP wire form: h11 request framing (sans-IO), query strings, bencoded answers."""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

import h11

from .. import bencode
from .swarms import (
    AnnounceRequest,
    AnnounceResult,
    BadRequest,
    Event,
    PeerInfo,
    ScrapeStats,
)

__all__ = [
    "MAX_HEAD_BYTES",
    "MAX_QUERY_PAIRS",
    "NEED_DATA",
    "ClientClosed",
    "HTTPExchange",
    "Rejected",
    "TrackerRequest",
    "compact_peer",
    "encode_announce",
    "encode_failure",
    "encode_scrape",
    "normalise_ip",
    "parse_announce_query",
    "parse_query",
    "parse_scrape_query",
]

#: Longest request head (request line plus headers) read before answering 431.
MAX_HEAD_BYTES = 8192
#: Most key=value pairs we look at in one query string.
MAX_QUERY_PAIRS = 256

_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
            413: b"Content Too Large", 431: b"Request Header Fields Too Large",
            500: b"Internal Server Error"}

# --------------------------------------------------------------------- request framing


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


#: ``HTTPExchange.next_event`` answers this when it needs more bytes.
NEED_DATA = _NeedData()


@dataclass(frozen=True)
class TrackerRequest:
    """A complete GET request; *target* is the raw path and query."""

    target: bytes


@dataclass(frozen=True)
class Rejected:
    """A request that cannot be served: answer *status* with *reason*, then close."""

    status: int
    reason: str


@dataclass(frozen=True)
class ClientClosed:
    """The client closed the connection before sending anything."""


class HTTPExchange:
    """One request and its answer on one connection, framed by h11; no socket here.

    Feed bytes with ``receive_data`` (``b""`` at end of stream) and call ``next_event``
    until it returns something other than ``NEED_DATA``: a ``TrackerRequest``, a
    ``Rejected`` or ``ClientClosed``. That event is the exchange's only one; answer it
    with ``respond``, whose bytes end with the connection (``Connection: close``).
    Line endings may be bare LF. A head over *max_head_bytes* is rejected with 431, a
    method other than GET with 405, a target that is not a path or a GET with a body
    with 400.
    """

    def __init__(self, *, max_head_bytes: int = MAX_HEAD_BYTES) -> None:
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head_bytes)
        self._request: h11.Request | None = None
        self._done = False

    def receive_data(self, data: bytes) -> None:
        self._conn.receive_data(data)

    def next_event(self) -> TrackerRequest | Rejected | ClientClosed | _NeedData:
        if self._done:
            raise RuntimeError("this exchange already produced its request")
        event = self._next()
        if event is not NEED_DATA:
            self._done = True
        return event

    def _next(self) -> TrackerRequest | Rejected | ClientClosed | _NeedData:
        # Bounded: each h11 event consumes input, and a GET's events are Request, then
        # EndOfMessage (a Data event means a body, which ends the exchange at once).
        for _ in range(4):
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                return Rejected(exc.error_status_hint, _framing_reason(exc))
            if event is h11.NEED_DATA:
                return NEED_DATA
            if isinstance(event, h11.ConnectionClosed):
                return ClientClosed()
            if isinstance(event, h11.Request):
                if event.method != b"GET":
                    return Rejected(405, "only GET is supported")
                if not event.target.startswith(b"/"):
                    return Rejected(400, "request target must be a path")
                self._request = event
            elif isinstance(event, h11.Data):
                return Rejected(400, "a GET request has no body")
            elif isinstance(event, h11.EndOfMessage):
                assert self._request is not None
                return TrackerRequest(bytes(self._request.target))
        raise AssertionError("h11 gave more events than one GET has")  # pragma: no cover

    def respond(self, status: int, body: bytes) -> bytes:
        """The whole answer: status line, headers, *body*; the connection closes after."""
        headers = [(b"Content-Type", b"text/plain"),
                   (b"Content-Length", str(len(body)).encode("ascii")),
                   (b"Connection", b"close")]
        reason = _REASONS.get(status, b"Error")
        return b"".join([
            self._conn.send(h11.Response(status_code=status, headers=headers, reason=reason)),
            self._conn.send(h11.Data(data=body)) if body else b"",
            self._conn.send(h11.EndOfMessage()),
        ])

    @property
    def unread_data(self) -> bool:
        """True if bytes beyond the request were received (pipelining, a body, or the
        rest of an oversized head). Closing with unread data resets the connection, so
        the server always closes with a lingering read."""
        return bool(self._conn.trailing_data[0]) or self._conn.their_state is h11.ERROR


def _framing_reason(exc: h11.RemoteProtocolError) -> str:
    if exc.error_status_hint == 431:
        return "request head too large"
    text = str(exc)
    return text if len(text) <= 120 else text[:117] + "..."


# --------------------------------------------------------------------- query strings

_INT = re.compile(rb"-?[0-9]{1,20}")


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
            raise BadRequest("too many query parameters")
        key, _, value = part.partition(b"=")
        key_s = unquote_to_bytes(key.replace(b"+", b" ")).decode("latin-1")
        pairs.append((key_s, unquote_to_bytes(value.replace(b"+", b" "))))
    return pairs


def _int_param(params: dict[str, bytes], name: str, *, default: int | None = None,
               lo: int = 0, hi: int = 2**63 - 1) -> int:
    raw = params.get(name)
    if raw is None:
        if default is None:
            raise BadRequest(f"missing {name}")
        return default
    if _INT.fullmatch(raw) is None:
        raise BadRequest(f"invalid {name}")
    value = int(raw)
    if not lo <= value <= hi:
        raise BadRequest(f"invalid {name}")
    return value


def normalise_ip(ip: str) -> str:
    """Canonical text form; IPv4-mapped IPv6 addresses become plain IPv4."""
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr)


def parse_announce_query(query: bytes, remote_ip: str, *,
                         trust_ip_param: bool = False) -> AnnounceRequest:
    """Turn a raw ``/announce`` query string into an ``AnnounceRequest``; raises
    ``BadRequest`` naming the first field that is missing or malformed."""
    params: dict[str, bytes] = {}
    for key, value in parse_query(query):
        params[key] = value  # the last occurrence wins
    info_hash = params.get("info_hash")
    if info_hash is None or len(info_hash) != 20:
        raise BadRequest("invalid info_hash")
    peer_id = params.get("peer_id")
    if peer_id is None or len(peer_id) != 20:
        raise BadRequest("invalid peer_id")
    port = _int_param(params, "port", lo=1, hi=65535)
    try:
        event = Event(params.get("event", b"").decode("latin-1").replace("empty", ""))
    except ValueError:
        raise BadRequest("invalid event") from None
    ip = remote_ip
    if trust_ip_param and "ip" in params:
        ip = params["ip"].decode("latin-1")
    try:
        ip = normalise_ip(ip)
    except ValueError:
        raise BadRequest("invalid ip") from None
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
    """The distinct info-hashes named by a raw ``/scrape`` query, in order (may be none)."""
    hashes = [value for key, value in parse_query(query) if key == "info_hash"]
    for ih in hashes:
        if len(ih) != 20:
            raise BadRequest("invalid info_hash")
    return list(dict.fromkeys(hashes))


# --------------------------------------------------------------------- bencoded answers


def compact_peer(peer: PeerInfo) -> bytes:
    """BEP 23 / BEP 7 compact form: 4 or 16 address bytes, then the port."""
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
        body[b"peers"] = b"".join(compact_peer(p) for p in result.peers if ":" not in p.ip)
        v6 = b"".join(compact_peer(p) for p in result.peers if ":" in p.ip)
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

