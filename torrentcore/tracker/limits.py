"""Budgets that keep one source from taking the tracker: request rates, connection slots, log lines.

All pure and synchronous: time comes in as ``now`` arguments, nothing here sleeps or
touches a socket. The tracker and its trio server ask these objects before doing work.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import OrderedDict
from collections.abc import Hashable

__all__ = [
    "ConnectionSlots",
    "RateLimitedLog",
    "TokenBuckets",
    "source_key",
]


def source_key(ip: str) -> str:
    """The unit that per-source limits count: an IPv4 address, or the /64 network of an
    IPv6 address (one host usually holds a whole /64). IPv4-mapped IPv6 counts as IPv4."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


class TokenBuckets:
    """One token bucket per source: *rate* tokens a second, at most *burst* saved up.

    At most *max_sources* buckets are kept, least recently used first out: a source whose
    bucket is dropped starts again with a full one, which only matters to a flood spread
    over more addresses than that (then per-source budgets cannot hold it anyway, and the
    table caps do)."""

    def __init__(self, rate: float, burst: float, max_sources: int) -> None:
        if rate <= 0 or burst < 1 or max_sources < 1:
            raise ValueError("rate must be positive, burst and max_sources at least 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_sources = max_sources
        self._buckets: OrderedDict[Hashable, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, source: Hashable, now: float, cost: float = 1.0) -> bool:
        """Take *cost* tokens from *source*'s bucket; False (and nothing taken) if short."""
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self.max_sources:
                self._buckets.popitem(last=False)
            bucket = self._buckets[source] = [self.burst, now]
        else:
            self._buckets.move_to_end(source)
            elapsed = now - bucket[1]
            if elapsed > 0:
                bucket[0] = min(self.burst, bucket[0] + elapsed * self.rate)
                bucket[1] = now
        if bucket[0] < cost:
            return False
        bucket[0] -= cost
        return True


class RateLimitedLog:
    """At most *per_window* lines per *window* seconds through *logger*; what is held back
    is counted and reported in one line when a later window opens (``flush``)."""

    def __init__(self, logger: logging.Logger, *, per_window: int = 20,
                 window: float = 60.0) -> None:
        self.logger = logger
        self.per_window = per_window
        self.window = window
        self._window_start = float("-inf")
        self._emitted = 0
        #: lines held back in the current window (reported by the next ``flush``)
        self.suppressed = 0
        #: lines held back since this object was made
        self.suppressed_total = 0

    def log(self, level: int, now: float, msg: str, *args: object,
            exc_info: bool = False) -> None:
        if not self.logger.isEnabledFor(level):
            return
        self.flush(now)
        if self._emitted >= self.per_window:
            self.suppressed += 1
            self.suppressed_total += 1
            return
        self._emitted += 1
        self.logger.log(level, msg, *args, exc_info=exc_info)

    def flush(self, now: float) -> None:
        """Open a new window if the current one is over, reporting what it held back."""
        if now - self._window_start < self.window:
            return
        if self.suppressed:
            self.logger.warning("%d more tracker messages like the above were not logged "
                                "(at most %d per %.0f s)", self.suppressed, self.per_window,
                                self.window)
        self._window_start = now
        self._emitted = 0
        self.suppressed = 0


class ConnectionSlots:
    """Which TCP connections the HTTP server keeps when it has too many (slowloris).

    A connection is *waiting* (reading its request, or lingering after an answer) or
    *busy* (being answered, which takes no network round trip). When a new connection
    would exceed *per_source* connections from its source, that source's oldest waiting
    connection goes; when it would exceed *total*, the oldest waiting connection of all
    goes. A well-behaved client sends its request as soon as it connects, so it is never
    the oldest waiting one for long: idle connections cannot crowd it out, they only
    push each other out. ``admit`` returns the ids to close; it refuses (returns None)
    only when every connection in the way is busy.
    """

    def __init__(self, total: int, per_source: int) -> None:
        if total < 1 or per_source < 1:
            raise ValueError("connection limits must be at least 1")
        self.total = total
        self.per_source = per_source
        self._conns: OrderedDict[Hashable, list] = OrderedDict()  # id -> [source, busy]
        self._by_source: dict[Hashable, OrderedDict[Hashable, None]] = {}
        #: connections closed to make room, since this object was made
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._conns)

    def count(self, source: Hashable) -> int:
        return len(self._by_source.get(source, ()))

    def admit(self, conn: Hashable, source: Hashable) -> list[Hashable] | None:
        """Register *conn* from *source* as waiting; return the connections to close
        to make room for it, or None if there is no room (then it is not registered)."""
        close: list[Hashable] = []
        mine = self._by_source.get(source)
        if mine is not None and len(mine) >= self.per_source:
            victim = self._oldest_waiting(mine)
            if victim is None:
                return None
            close.append(victim)
        if len(self._conns) - len(close) >= self.total:
            victim = self._oldest_waiting(self._conns, skip=close)
            if victim is None:
                return None
            close.append(victim)
        for victim in close:
            self.release(victim)
        self.evicted += len(close)
        self._conns[conn] = [source, False]
        self._by_source.setdefault(source, OrderedDict())[conn] = None
        return close

    def set_busy(self, conn: Hashable, busy: bool) -> None:
        entry = self._conns.get(conn)
        if entry is not None:
            entry[1] = busy

    def release(self, conn: Hashable) -> None:
        entry = self._conns.pop(conn, None)
        if entry is None:
            return
        mine = self._by_source[entry[0]]
        del mine[conn]
        if not mine:
            del self._by_source[entry[0]]

    def _oldest_waiting(self, conns, skip=()) -> Hashable | None:
        # Bounded: at most `total` connections are registered.
        for conn in conns:
            if conn not in skip and not self._conns[conn][1]:
                return conn
        return None
