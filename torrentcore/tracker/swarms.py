"""The tracker's swarm table: peers per info-hash, bounded, each operation O(1) in swarm size."""

from __future__ import annotations

import enum
import logging
import random
from collections import OrderedDict
from dataclasses import dataclass

__all__ = [
    "AnnounceRequest",
    "AnnounceResult",
    "BadRequest",
    "Event",
    "PeerInfo",
    "ScrapeStats",
    "SwarmTable",
    "TrackerError",
]

log = logging.getLogger(__name__)


class Event(str, enum.Enum):
    """The ``event`` of an announce; NONE is a regular re-announce."""

    NONE = ""
    STARTED = "started"
    STOPPED = "stopped"
    COMPLETED = "completed"


class TrackerError(ValueError):
    """A request the tracker refuses; the message becomes the ``failure reason``.

    Refusals by policy (a full table, an allow-list, a source over its budget) are
    answered over HTTP with status 200, which clients show to their users."""


class BadRequest(TrackerError):
    """A request no client could legitimately send (malformed fields); HTTP status 400."""


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


class _Peer:
    __slots__ = ("peer_id", "ip", "port", "left", "last_seen", "slot", "source")

    def __init__(self, peer_id: bytes, ip: str, port: int, source: str) -> None:
        self.peer_id = peer_id
        self.ip = ip
        self.port = port
        self.left = -1  # unknown until the first announce is applied
        self.last_seen = 0.0
        self.slot = -1  # index in its swarm's ``slots``
        self.source = source


class _Swarm:
    """One torrent's peers: ``slots`` is a dense list (O(1) random picks and removal by
    swapping with the last), counters are kept up to date instead of recounted."""

    __slots__ = ("slots", "seeders", "downloaded", "per_source")

    def __init__(self) -> None:
        self.slots: list[_Peer] = []
        self.seeders = 0
        self.downloaded = 0
        self.per_source: dict[str, int] = {}

    def stats(self) -> ScrapeStats:
        return ScrapeStats(self.seeders, self.downloaded, len(self.slots) - self.seeders)


#: Most expired peers one announce or scrape removes before it is answered; the server's
#: sweep removes the rest. Bounds the work of a request whatever the table holds.
EXPIRE_PER_REQUEST = 64

_Key = tuple[bytes, str, int]


class SwarmTable:
    """Every peer of every swarm, keyed by (info-hash, ip, port) as opentracker does: a
    client restarted on the same port replaces its entry, and one address cannot make
    more entries in a swarm than it has ports (and no more than the caps allow).

    One ordered dict holds all peers in the order they were last heard from, so expiry
    pops from its front and never scans. The clock never goes backwards here: a ``now``
    older than one seen before is taken as that one.

    Caps (each refusal raises ``TrackerError``; an existing entry is always updated):
    *max_swarms*, *max_peers* overall, *max_peers_per_swarm*, *max_peers_per_source*
    (entries created by one source address across all swarms) and
    *max_swarm_peers_per_source* (entries one source may hold in one swarm).
    """

    def __init__(
        self,
        *,
        peer_ttl: float,
        max_swarms: int,
        max_peers: int,
        max_peers_per_swarm: int,
        max_peers_per_source: int,
        max_swarm_peers_per_source: int,
        rng: random.Random | None = None,
    ) -> None:
        self.peer_ttl = float(peer_ttl)
        self.max_swarms = max_swarms
        self.max_peers = max_peers
        self.max_peers_per_swarm = max_peers_per_swarm
        self.max_peers_per_source = max_peers_per_source
        self.max_swarm_peers_per_source = max_swarm_peers_per_source
        self._rng = rng if rng is not None else random.Random()
        self._peers: OrderedDict[_Key, _Peer] = OrderedDict()
        self._swarms: dict[bytes, _Swarm] = {}
        self._per_source: dict[str, int] = {}
        self._now = float("-inf")

    # ----------------------------------------------------------------- queries

    @property
    def peer_count(self) -> int:
        return len(self._peers)

    @property
    def swarm_count(self) -> int:
        return len(self._swarms)

    @property
    def source_count(self) -> int:
        """Source addresses that hold at least one entry."""
        return len(self._per_source)

    def peers_of_source(self, source: str) -> int:
        return self._per_source.get(source, 0)

    @property
    def info_hashes(self) -> tuple[bytes, ...]:
        return tuple(self._swarms)

    def peers(self, info_hash: bytes) -> tuple[PeerInfo, ...]:
        """Every peer recorded for *info_hash* (for tests and status; O(swarm size))."""
        swarm = self._swarms.get(info_hash)
        if swarm is None:
            return ()
        return tuple(PeerInfo(p.peer_id, p.ip, p.port) for p in swarm.slots)

    def last_seen(self, info_hash: bytes, ip: str, port: int) -> float | None:
        peer = self._peers.get((info_hash, ip, port))
        return None if peer is None else peer.last_seen

    def stats(self, info_hash: bytes) -> ScrapeStats | None:
        """Counts for one swarm, None when unknown; O(1). Call ``expire`` first."""
        swarm = self._swarms.get(info_hash)
        return None if swarm is None else swarm.stats()

    def some_info_hashes(self, limit: int) -> list[bytes]:
        """Up to *limit* known info-hashes (a bounded full scrape)."""
        out = []
        for ih in self._swarms:
            if len(out) >= limit:
                break
            out.append(ih)
        return out

    # ----------------------------------------------------------------- announce

    def announce(self, req: AnnounceRequest, source: str, now: float,
                 numwant: int) -> tuple[ScrapeStats, tuple[PeerInfo, ...]]:
        """Apply *req* (fields already validated) from *source*; return the swarm's
        counts and up to *numwant* other live peers picked at random in O(numwant)."""
        now = self._advance(now)
        self.expire(now, limit=EXPIRE_PER_REQUEST)
        key = (req.info_hash, req.ip, req.port)
        peer = self._peers.get(key)
        swarm = self._swarms.get(req.info_hash)
        if req.event is Event.STOPPED:
            if peer is not None:
                self._remove(key, peer)
                swarm = self._swarms.get(req.info_hash)
            return (swarm.stats() if swarm is not None else ScrapeStats(0, 0, 0)), ()
        if peer is None:
            self._admit(swarm, source)
            if swarm is None:
                swarm = self._swarms[req.info_hash] = _Swarm()
            peer = _Peer(req.peer_id, req.ip, req.port, source)
            peer.slot = len(swarm.slots)
            swarm.slots.append(peer)
            swarm.per_source[source] = swarm.per_source.get(source, 0) + 1
            self._per_source[source] = self._per_source.get(source, 0) + 1
            self._peers[key] = peer
        else:
            self._peers.move_to_end(key)
            peer.peer_id = req.peer_id
        # "completed" counts once per peer: only when it was not already known complete.
        if req.event is Event.COMPLETED and peer.left != 0:
            swarm.downloaded += 1
        swarm.seeders += (req.left == 0) - (peer.left == 0)
        peer.left = req.left
        peer.last_seen = now
        return swarm.stats(), self._pick(swarm, peer, numwant, now)

    def _admit(self, swarm: _Swarm | None, source: str) -> None:
        """Raise ``TrackerError`` unless a new entry from *source* fits every cap."""
        if swarm is None and len(self._swarms) >= self.max_swarms:
            raise TrackerError("tracker is full")
        if len(self._peers) >= self.max_peers:
            raise TrackerError("tracker is full")
        if self._per_source.get(source, 0) >= self.max_peers_per_source:
            raise TrackerError("too many peers from your address")
        if swarm is not None:
            if len(swarm.slots) >= self.max_peers_per_swarm:
                raise TrackerError("swarm is full")
            if swarm.per_source.get(source, 0) >= self.max_swarm_peers_per_source:
                raise TrackerError("too many peers from your address in this swarm")

    def _pick(self, swarm: _Swarm, me: _Peer, numwant: int,
              now: float) -> tuple[PeerInfo, ...]:
        n = len(swarm.slots)
        if numwant <= 0 or n <= 1:
            return ()
        # One more than wanted, since the requester itself may be among them. sample()
        # of a range is O(k) for a large range and copies at most a few hundred indexes
        # for a small one, so this never depends on the swarm's size.
        picked = self._rng.sample(range(n), min(numwant + 1, n))
        out = []
        for index in picked:
            peer = swarm.slots[index]
            if peer is me or now - peer.last_seen > self.peer_ttl:
                continue  # itself, or expired and not yet swept
            out.append(PeerInfo(peer.peer_id, peer.ip, peer.port))
            if len(out) == numwant:
                break
        return tuple(out)

    # ----------------------------------------------------------------- expiry

    def expire(self, now: float, *, limit: int | None = None) -> int:
        """Drop up to *limit* (all when None) peers not heard from for ``peer_ttl``
        seconds, oldest first, and swarms left empty; return how many peers went."""
        now = self._advance(now)
        budget = len(self._peers) if limit is None else min(limit, len(self._peers))
        removed = 0
        for _ in range(budget):
            key, peer = next(iter(self._peers.items()))
            if now - peer.last_seen <= self.peer_ttl:
                break
            self._remove(key, peer)
            removed += 1
        return removed

    def _remove(self, key: _Key, peer: _Peer) -> None:
        del self._peers[key]
        swarm = self._swarms[key[0]]
        last = swarm.slots.pop()
        if last is not peer:
            swarm.slots[peer.slot] = last
            last.slot = peer.slot
        if peer.left == 0:
            swarm.seeders -= 1
        _decrement(swarm.per_source, peer.source)
        _decrement(self._per_source, peer.source)
        if not swarm.slots:
            del self._swarms[key[0]]

    def _advance(self, now: float) -> float:
        if now > self._now:
            self._now = now
        return self._now


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]
