"""The tracker's UDP wire form (BEP 15): datagram parsing and answers, no state."""

from __future__ import annotations

import ipaddress
import struct

from .http import compact_peer, normalise_ip
from .swarms import (
    AnnounceRequest,
    AnnounceResult,
    BadRequest,
    Event,
    ScrapeStats,
)

__all__ = [
    "ACTION_ANNOUNCE",
    "ACTION_CONNECT",
    "ACTION_ERROR",
    "ACTION_SCRAPE",
    "MAX_UDP_SCRAPE",
    "UDP_PROTOCOL_ID",
    "decode_header",
    "encode_announce_reply",
    "encode_connect_reply",
    "encode_error",
    "encode_scrape_reply",
    "parse_announce",
    "parse_scrape",
]

#: Magic constant that opens every BEP 15 connect request.
UDP_PROTOCOL_ID = 0x41727101980
ACTION_CONNECT, ACTION_ANNOUNCE, ACTION_SCRAPE, ACTION_ERROR = 0, 1, 2, 3
#: Most info-hashes one UDP scrape may name (BEP 15: about 74 fit in a packet).
MAX_UDP_SCRAPE = 74
_EVENTS = {0: Event.NONE, 1: Event.COMPLETED, 2: Event.STARTED, 3: Event.STOPPED}
_ANNOUNCE = struct.Struct(">20s20sQQQIIIiH")  # after the 16-byte header


def decode_header(data: bytes) -> tuple[int, int, int] | None:
    """(connection id, action, transaction id), or None for a datagram under 16 bytes."""
    if len(data) < 16:
        return None
    return struct.unpack_from(">QII", data)


def parse_announce(data: bytes, remote_ip: str, *, trust_ip_param: bool = False) -> AnnounceRequest:
    """The announce in a whole datagram; raises ``BadRequest``."""
    if len(data) < 16 + _ANNOUNCE.size:
        raise BadRequest("announce packet too short")
    (info_hash, peer_id, downloaded, left, uploaded, event, ip_raw, _key, numwant,
     port) = _ANNOUNCE.unpack_from(data, 16)
    if event not in _EVENTS:
        raise BadRequest("invalid event")
    if port == 0:
        raise BadRequest("invalid port")
    ip = normalise_ip(remote_ip)
    if trust_ip_param and ip_raw:
        ip = str(ipaddress.IPv4Address(ip_raw))
    return AnnounceRequest(
        info_hash=info_hash, peer_id=peer_id, ip=ip, port=port, left=left,
        uploaded=uploaded, downloaded=downloaded, event=_EVENTS[event],
        numwant=None if numwant < 0 else numwant,
    )


def parse_scrape(data: bytes) -> list[bytes]:
    """The info-hashes a scrape datagram names, in order, repeats kept (the answer is
    positional); raises ``BadRequest``."""
    body = data[16:]
    if not body or len(body) % 20 or len(body) // 20 > MAX_UDP_SCRAPE:
        raise BadRequest(f"scrape packet must hold 1 to {MAX_UDP_SCRAPE} info-hashes")
    return [body[i:i + 20] for i in range(0, len(body), 20)]


def encode_connect_reply(txid: int, connection_id: int) -> bytes:
    return struct.pack(">IIQ", ACTION_CONNECT, txid, connection_id)


def encode_announce_reply(txid: int, result: AnnounceResult, *, ipv6: bool) -> bytes:
    """Peers of the requester's address family only (BEP 15 has one list)."""
    peers = b"".join(compact_peer(p) for p in result.peers if (":" in p.ip) == ipv6)
    return struct.pack(">IIIII", ACTION_ANNOUNCE, txid, result.interval, result.incomplete,
                       result.complete) + peers


def encode_scrape_reply(txid: int, stats: list[ScrapeStats]) -> bytes:
    return struct.pack(">II", ACTION_SCRAPE, txid) + b"".join(
        struct.pack(">III", s.complete, s.downloaded, s.incomplete) for s in stats)


def encode_error(txid: int, message: str) -> bytes:
    return struct.pack(">II", ACTION_ERROR, txid) + message.encode("utf-8")
