"""Trio HTTP and UDP (BEP 15) front end for the tracker state machine.

The command line that runs it is gitfs_p2p/cli/tracker.py (`gitp2p tracker`).
"""

from __future__ import annotations

import errno
import itertools
import logging
import socket
from collections import Counter
from collections.abc import Callable, Collection

import trio

from .core import (
    DEFAULT_INTERVAL,
    Tracker,
    TrackerLimits,
)
from .http import MAX_HEAD_BYTES, NEED_DATA, ClientClosed, HTTPExchange, Rejected
from .limits import ConnectionSlots, source_key

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "MAX_CONNECTIONS",
    "MAX_CONNECTIONS_PER_SOURCE",
    "TrackerServer",
    "load_allow_list",
]

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6969
#: Largest UDP datagram we accept (a full 74-hash scrape is 1496 bytes).
MAX_DATAGRAM = 2048
#: Seconds a connection may take from accept to the end of its answer.
REQUEST_TIMEOUT = 10.0
#: Bound on the lingering close after an answer the client may not have finished sending.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024
#: TCP connections open at once (stays under the usual 1024 open-files limit).
MAX_CONNECTIONS = 512
#: TCP connections one source (IPv4 address, IPv6 /64) may hold open at once.
MAX_CONNECTIONS_PER_SOURCE = 64
#: Peers expired per batch by the sweep; the sweep yields to the event loop between batches.
_SWEEP_BATCH = 10_000
_RECEIVE_CHUNK = 4096


class TrackerServer:
    """Serve a ``Tracker`` over HTTP (/announce, /scrape) and UDP on one port number.

    With ``port=0`` an ephemeral port is chosen for TCP and the same number is bound for
    UDP (retrying if that UDP port is taken). ``run`` reports ``(http_port, udp_port)``.
    *clock* (default ``trio.current_time``) gives the ``now`` the tracker sees, so tests
    can move the tracker's time without waiting. Connections beyond *max_connections*,
    or *max_connections_per_source* from one source, push out the oldest idle ones
    (``ConnectionSlots``).
    """

    def __init__(
        self,
        tracker: Tracker | None = None,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        udp: bool = True,
        interval: int = DEFAULT_INTERVAL,
        allow: Collection[bytes] | None = None,
        limits: TrackerLimits | None = None,
        clock: Callable[[], float] | None = None,
        max_connections: int = MAX_CONNECTIONS,
        max_connections_per_source: int = MAX_CONNECTIONS_PER_SOURCE,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.tracker = tracker if tracker is not None else Tracker(
            interval=interval, allow=allow, limits=limits)
        self.host = host
        self.port = port
        self.udp = udp
        self.clock = clock if clock is not None else trio.current_time
        self.request_timeout = request_timeout
        self.slots = ConnectionSlots(max_connections, max_connections_per_source)
        #: connections accepted, evicted (closed to make room), refused (no room),
        #: rejected (malformed HTTP), answered
        self.counters: Counter[str] = Counter()
        self._scopes: dict[int, trio.CancelScope] = {}
        self._ids = itertools.count()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners, udp_sock = await self._bind()
        http_port = listeners[0].socket.getsockname()[1]
        udp_port = udp_sock.getsockname()[1] if udp_sock is not None else None
        log.debug("tracker listening on http://%s:%d/announce%s", self.host, http_port,
                  f" and udp://{self.host}:{udp_port}/announce" if udp_port else "")
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.serve_listeners, self._serve_http, listeners)
                if udp_sock is not None:
                    nursery.start_soon(self._serve_udp, udp_sock)
                nursery.start_soon(self._sweep_loop)
                task_status.started((http_port, udp_port))
        finally:
            if udp_sock is not None:
                udp_sock.close()

    async def _bind(self):
        attempts = 20 if self.port == 0 else 1
        for attempt in range(attempts):
            listeners = await trio.open_tcp_listeners(self.port, host=self.host)
            if not self.udp:
                return listeners, None
            port = listeners[0].socket.getsockname()[1]
            family = listeners[0].socket.family
            udp_sock = trio.socket.socket(family, socket.SOCK_DGRAM)
            try:
                await udp_sock.bind((self.host, port))
            except OSError as exc:
                udp_sock.close()
                for listener in listeners:
                    await listener.aclose()
                if exc.errno != errno.EADDRINUSE or attempt == attempts - 1:
                    raise
                log.debug("UDP port %d taken, choosing another port", port)
                continue
            return listeners, udp_sock
        raise AssertionError("unreachable")  # pragma: no cover

    async def _sweep_loop(self) -> None:
        """Expire peers and flush held-back log lines, a tenth of the peer TTL apart (at
        most a minute), in batches so a huge table never blocks the loop for long."""
        period = min(60.0, self.tracker.peer_ttl / 10)
        while True:
            await trio.sleep(period)
            now = self.clock()
            batches = self.tracker.swarms.peer_count // _SWEEP_BATCH + 1
            removed = 0
            for _ in range(batches):
                went = self.tracker.housekeeping(now, limit=_SWEEP_BATCH)
                removed += went
                if went < _SWEEP_BATCH:
                    break
                await trio.sleep(0)
            if removed:
                log.debug("expired %d peers", removed)

    # ----------------------------------------------------------------- HTTP

    async def _serve_http(self, stream: trio.SocketStream) -> None:
        conn = next(self._ids)
        try:
            remote_ip = stream.socket.getpeername()[0]
        except OSError:  # already gone
            await stream.aclose()
            return
        self.counters["accepted"] += 1
        evict = self.slots.admit(conn, source_key(remote_ip))
        if evict is None:
            self.counters["refused"] += 1
            await stream.aclose()
            return
        for victim in evict:
            self.counters["evicted"] += 1
            scope = self._scopes.pop(victim, None)
            if scope is not None:
                scope.cancel()
        try:
            with trio.CancelScope() as scope:
                self._scopes[conn] = scope
                with trio.move_on_after(self.request_timeout):
                    await self._exchange(stream, conn, remote_ip)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("HTTP connection from %s failed: %r", remote_ip, exc)
        finally:
            self._scopes.pop(conn, None)
            self.slots.release(conn)
            with trio.CancelScope(shield=True):
                await stream.aclose()

    @property
    def open_connections(self) -> int:
        return len(self.slots)

    async def _exchange(self, stream: trio.SocketStream, conn: int, remote_ip: str) -> None:
        exchange = HTTPExchange(max_head_bytes=MAX_HEAD_BYTES)
        # Bounded: every receive brings at least one byte (or ends the stream), and the
        # exchange rejects a head longer than MAX_HEAD_BYTES.
        for _ in range(MAX_HEAD_BYTES + 2):
            event = exchange.next_event()
            if event is not NEED_DATA:
                break
            exchange.receive_data(await stream.receive_some(_RECEIVE_CHUNK))
        else:  # pragma: no cover - h11 would have rejected the head by now
            return
        if isinstance(event, ClientClosed):
            return
        self.slots.set_busy(conn, True)
        now = self.clock()
        if isinstance(event, Rejected):
            self.counters["rejected"] += 1
            self.tracker.log_limiter.log(logging.INFO, now, "rejected HTTP request from %s: "
                                         "%d %s", remote_ip, event.status, event.reason)
            status, body = event.status, f"{event.reason}\n".encode()
        else:
            status, body = self.tracker.handle_http(event.target, remote_ip, now)
            self.counters["answered"] += 1
        await stream.send_all(exchange.respond(status, body))
        self.slots.set_busy(conn, False)
        await self._linger(stream)

    @staticmethod
    async def _linger(stream: trio.SocketStream) -> None:
        """Lingering close: end our side, then read (a bounded amount of) what the client
        may still be sending until it closes, so closing with unread data (a pipelined
        request, the rest of an oversized head) does not reset the connection before the
        client reads our answer. A client that reads the answer and closes ends this at
        once; one that does not is cut off after LINGER_SECONDS, and may be pushed out
        sooner by new connections."""
        await stream.send_eof()
        drained = 0
        with trio.move_on_after(LINGER_SECONDS):
            while drained < LINGER_BYTES:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                drained += len(chunk)

    # ----------------------------------------------------------------- UDP

    async def _serve_udp(self, sock) -> None:
        while True:
            try:
                data, addr = await sock.recvfrom(MAX_DATAGRAM)
            except OSError as exc:  # e.g. ICMP port unreachable reported on Linux
                log.debug("UDP receive failed: %r", exc)
                continue
            reply = self.tracker.handle_udp(data, addr[:2], self.clock())
            if reply is not None:
                try:
                    await sock.sendto(reply, addr)
                except OSError as exc:
                    log.debug("UDP send to %s failed: %r", addr, exc)


def load_allow_list(text: str) -> set[bytes]:
    """Parse an allow-list: one 40-hex-digit info-hash per line, '#' starts a comment."""
    hashes = set()
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if len(line) != 40:
            raise ValueError(f"line {number}: expected 40 hex digits, got {line[:60]!r}")
        try:
            hashes.add(bytes.fromhex(line))
        except ValueError:
            raise ValueError(f"line {number}: {line!r} is not hex") from None
    return hashes
