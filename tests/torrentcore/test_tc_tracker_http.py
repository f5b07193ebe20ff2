"""The tracker's HTTP framing (h11, sans-IO): every input whole, byte by byte, and with
trailing data, as h11's own tests do. No sockets."""

import pytest
from tc_support import announce_target

from torrentcore.tracker.http import (
    MAX_HEAD_BYTES,
    NEED_DATA,
    ClientClosed,
    HTTPExchange,
    Rejected,
    TrackerRequest,
)


def feed(chunks, *, eof=False):
    """Feed *chunks* one at a time; return the exchange's event (NEED_DATA if none)."""
    exchange = HTTPExchange()
    event = NEED_DATA
    for chunk in chunks:
        exchange.receive_data(chunk)
        event = exchange.next_event()
        if event is not NEED_DATA:
            return exchange, event
    if eof:
        exchange.receive_data(b"")
        event = exchange.next_event()
    return exchange, event


def whole(data, **kw):
    return feed([data] if data else [], **kw)  # b"" would mean end of stream


def byte_by_byte(data, **kw):
    return feed([data[i:i + 1] for i in range(len(data))], **kw)


SPLITS = [whole, byte_by_byte]
TARGET = announce_target(peer=1, port=7001)

REQUESTS = [
    (b"GET " + TARGET + b" HTTP/1.1\r\nHost: t\r\nUser-Agent: x\r\n\r\n", TARGET),
    (b"GET " + TARGET + b" HTTP/1.0\r\n\r\n", TARGET),                # 1.0 needs no Host
    (b"GET /scrape HTTP/1.1\nHost: t\n\n", b"/scrape"),               # bare LF (issue 11)
    (b"GET /scrape HTTP/1.0\n\n", b"/scrape"),
    (b"GET /a?b=%00 HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
     b"/a?b=%00"),
]


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("data,target", REQUESTS)
def test_requests(split, data, target):
    exchange, event = split(data)
    assert event == TrackerRequest(target)
    assert not exchange.unread_data


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("data,target", REQUESTS)
@pytest.mark.parametrize("tail", [b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n", b"junk", b"\r\n"])
def test_requests_with_trailing_data(split, data, target, tail):
    exchange, event = split(data + tail)
    assert event == TrackerRequest(target)
    # Whole: the tail came with the request and is seen. Byte by byte: the request is
    # complete before the tail arrives (the server answers then, and lingers on close).
    assert exchange.unread_data == (split is whole)


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("data", [data for data, _ in REQUESTS])
def test_every_proper_prefix_needs_more_data(split, data):
    for cut in range(1, len(data)):
        exchange, event = split(data[:cut])
        assert event is NEED_DATA, cut


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("data,status,reason", [
    (b"GET /a HTTP/1.1\r\n\r\n", 400, "Missing mandatory Host: header"),
    (b"POST /announce HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nab", 405,
     "only GET is supported"),
    (b"PUT /announce HTTP/1.1\r\nHost: t\r\n\r\n", 405, "only GET is supported"),
    (b"GET http://t/announce HTTP/1.1\r\nHost: t\r\n\r\n", 400, "request target must be a path"),
    (b"GET * HTTP/1.1\r\nHost: t\r\n\r\n", 400, "request target must be a path"),
    (b"GET /a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc", 400,
     "a GET request has no body"),
    (b"GET /a HTTP/2\r\nHost: t\r\n\r\n", 400, "illegal request line: bytearray(b'GET /a HTTP/2')"),
    (b"GET  /a HTTP/1.1\r\nHost: t\r\n\r\n", 400,
     "illegal request line: bytearray(b'GET  /a HTTP/1.1')"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, None),  # TLS hello
    (b"GET /a HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n", 400, None),
])
def test_rejected(split, data, status, reason):
    exchange, event = split(data)
    assert isinstance(event, Rejected) and event.status == status
    if reason is not None:
        assert event.reason == reason
    answer = exchange.respond(event.status, b"no\n")
    assert answer.startswith(b"HTTP/1.1 %d " % status)
    assert answer.endswith(b"\r\n\r\nno\n")


@pytest.mark.parametrize("split", SPLITS)
def test_oversized_head_is_431_without_buffering_more(split):
    data = b"GET /announce?" + b"a" * (MAX_HEAD_BYTES + 10) + b" HTTP/1.1\r\n"
    exchange, event = split(data)
    assert event == Rejected(431, "request head too large")
    assert exchange.unread_data
    big_headers = b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * (MAX_HEAD_BYTES // 8)
    assert split(big_headers)[1] == Rejected(431, "request head too large")


@pytest.mark.parametrize("split", SPLITS)
def test_end_of_stream(split):
    assert split(b"", eof=True)[1] == ClientClosed()
    exchange, event = split(b"GET /a HTT", eof=True)
    assert isinstance(event, Rejected) and event.status == 400


def test_respond_is_a_complete_closing_answer():
    exchange, event = whole(REQUESTS[0][0])
    assert exchange.respond(200, b"d8:intervali5ee") == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 15\r\n"
        b"Connection: close\r\n\r\nd8:intervali5ee")
    exchange, event = whole(REQUESTS[1][0])  # HTTP/1.0 client
    assert exchange.respond(404, b"").startswith(b"HTTP/1.1 404 Not Found\r\n")


def test_one_event_per_exchange():
    exchange, event = whole(REQUESTS[0][0])
    with pytest.raises(RuntimeError):
        exchange.next_event()
