"""Trio HTTP and UDP (BEP 15) front end for the tracker state machine, and its CLI."""

from __future__ import annotations

import argparse
import errno
import logging
import socket
import sys
from collections.abc import Collection, Sequence

import trio

from torrentcore.tracker import Tracker

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "RequestError",
    "TrackerServer",
    "build_http_response",
    "load_allow_list",
    "main",
    "parse_request_head",
]

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 6969
#: Longest request head (request line plus headers) we read.
MAX_HEAD_BYTES = 8192
#: Longest request line (method, target, version).
MAX_REQUEST_LINE = 4096
#: Largest UDP datagram we accept (a full 74-hash scrape is 1496 bytes).
MAX_DATAGRAM = 2048
#: Seconds a client has to send its request head.
REQUEST_TIMEOUT = 10.0
#: Bound on the lingering close after refusing an oversized request.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024
#: Connections served at once; further ones are closed at once.
MAX_CONNECTIONS = 512

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}


class RequestError(ValueError):
    """An HTTP request head we cannot serve; ``status`` is the answer's status code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_request_head(head: bytes) -> bytes:
    """Return the raw target of a ``GET`` request head (bytes up to the blank line)."""
    line, _, _ = head.partition(b"\r\n")
    if len(line) > MAX_REQUEST_LINE:
        raise RequestError(431, "request line too long")
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        raise RequestError(400, "malformed request line")
    method, target, _ = parts
    if method != b"GET":
        raise RequestError(405, "only GET is supported")
    if not target.startswith(b"/"):
        raise RequestError(400, "request target must be a path")
    return target


def build_http_response(status: int, body: bytes) -> bytes:
    """A complete HTTP/1.0 answer; the connection closes after it."""
    head = (
        f"HTTP/1.0 {status} {_REASONS.get(status, 'Error')}\r\n"
        "Content-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


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


class TrackerServer:
    """Serve a ``Tracker`` over HTTP (/announce, /scrape) and UDP on one port number.

    With ``port=0`` an ephemeral port is chosen for TCP and the same number is bound for
    UDP (retrying if that UDP port is taken). ``run`` reports ``(http_port, udp_port)``.
    """

    def __init__(
        self,
        tracker: Tracker | None = None,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        udp: bool = True,
        interval: int = 60,
        allow: Collection[bytes] | None = None,
    ) -> None:
        self.tracker = tracker if tracker is not None else Tracker(interval=interval, allow=allow)
        self.host = host
        self.port = port
        self.udp = udp
        self._connections = 0

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
                nursery.start_soon(self._expire_loop)
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

    async def _expire_loop(self) -> None:
        while True:
            await trio.sleep(self.tracker.interval)
            removed = self.tracker.expire(trio.current_time())
            if removed:
                log.debug("expired %d peers", removed)

    async def _serve_http(self, stream: trio.SocketStream) -> None:
        if self._connections >= MAX_CONNECTIONS:
            await stream.aclose()
            return
        self._connections += 1
        try:
            with trio.move_on_after(REQUEST_TIMEOUT):
                await self._answer_http(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("HTTP connection failed: %r", exc)
        finally:
            self._connections -= 1
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _answer_http(self, stream: trio.SocketStream) -> None:
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            if len(buf) > MAX_HEAD_BYTES:
                await stream.send_all(build_http_response(431, b"request too large\n"))
                await self._drain(stream)
                return
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            buf += chunk
        head = bytes(buf[:buf.index(b"\r\n\r\n")])
        remote_ip = stream.socket.getpeername()[0]
        try:
            target = parse_request_head(head)
        except RequestError as exc:
            await stream.send_all(build_http_response(exc.status, f"{exc}\n".encode()))
            return
        status, body = self.tracker.handle_http(target, remote_ip, trio.current_time())
        await stream.send_all(build_http_response(status, body))

    @staticmethod
    async def _drain(stream: trio.SocketStream) -> None:
        """Lingering close: read (a bounded amount of) what the client is still sending,
        so closing with unread data does not reset the connection before it reads our
        answer."""
        await stream.send_eof()
        drained = 0
        with trio.move_on_after(LINGER_SECONDS):
            while drained < LINGER_BYTES:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                drained += len(chunk)

    async def _serve_udp(self, sock) -> None:
        while True:
            try:
                data, addr = await sock.recvfrom(MAX_DATAGRAM)
            except OSError as exc:  # e.g. ICMP port unreachable reported on Linux
                log.debug("UDP receive failed: %r", exc)
                continue
            reply = self.tracker.handle_udp(data, addr[:2], trio.current_time())
            if reply is not None:
                try:
                    await sock.sendto(reply, addr)
                except OSError as exc:
                    log.debug("UDP send to %s failed: %r", addr, exc)


# --------------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gitp2p tracker",
        description=(
            "Run a small BitTorrent tracker: HTTP /announce and /scrape plus UDP (BEP 15) "
            "on the same port number. Peers are kept in memory only."
        ),
        epilog="Clients announce to http://HOST:PORT/announce or udp://HOST:PORT/announce.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="TCP and UDP port; 0 picks a free one (default: %(default)s)")
    parser.add_argument("--allow", metavar="FILE",
                        help="serve only the info-hashes listed in FILE, one 40-hex-digit "
                             "hash per line ('#' comments allowed)")
    parser.add_argument("--interval", type=int, default=60, metavar="S",
                        help="announce interval in seconds; peers silent for 2*S+10 s "
                             "expire (default: %(default)s)")
    parser.add_argument("--no-udp", action="store_true", help="serve HTTP only")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return parser


def _find(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """*exc* itself or the first exception of type *kind* inside exception groups."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find(inner, kind)
            if found is not None:
                return found
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """``gitp2p tracker``: run until interrupted; return the exit code."""
    args = _parser().parse_args(argv)
    prog = "gitp2p tracker"
    if args.interval <= 0:
        print(f"{prog}: --interval must be positive", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print(f"{prog}: --port must be from 0 to 65535", file=sys.stderr)
        return 2
    allow = None
    if args.allow is not None:
        try:
            with open(args.allow, encoding="utf-8") as f:
                allow = load_allow_list(f.read())
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{prog}: cannot read allow-list {args.allow}: {exc}", file=sys.stderr)
            return 2
        except ValueError as exc:
            print(f"{prog}: bad allow-list {args.allow}: {exc}", file=sys.stderr)
            return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s")
    server = TrackerServer(host=args.host, port=args.port, udp=not args.no_udp,
                           interval=args.interval, allow=allow)

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            http_port, udp_port = await nursery.start(server.run)
            where = f"http://{args.host}:{http_port}/announce"
            if udp_port:
                where += f" and udp://{args.host}:{udp_port}/announce"
            print(f"{prog}: listening on {where}", file=sys.stderr, flush=True)

    try:
        trio.run(serve)
    except BaseException as exc:  # only Ctrl-C and OSErrors are expected; others re-raise
        if _find(exc, KeyboardInterrupt) is not None:
            return 0
        oserror = _find(exc, OSError)
        if oserror is None:
            raise
        print(f"{prog}: cannot listen on {args.host}:{args.port}: "
              f"{oserror.strerror or oserror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
