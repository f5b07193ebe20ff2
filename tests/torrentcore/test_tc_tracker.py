"""Tests of the tracker state machine, fed plain requests (no sockets)."""

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tc_support import IH, IH2, announce_target, pid, query

from torrentcore import bencode
from torrentcore.tracker import (
    UDP_PROTOCOL_ID,
    AnnounceRequest,
    Event,
    PeerInfo,
    ScrapeStats,
    Tracker,
    TrackerError,
    parse_announce_query,
    parse_query,
)

def http(tracker, target, ip="127.0.0.1", now=0.0):
    status, body = tracker.handle_http(target, ip, now)
    return status, bencode.decode(body) if status != 404 else body


def test_first_announce_gets_no_peers_then_others_see_it():
    t = Tracker(interval=60, rng=random.Random(0))
    status, body = http(t, announce_target(peer=1, port=7001, event="started"))
    assert status == 200
    assert body == {b"interval": 60, b"min interval": 30, b"complete": 0,
                    b"incomplete": 1, b"peers": b""}
    status, body = http(t, announce_target(peer=2, port=7002, left=0, event="started"))
    assert body[b"peers"] == bytes([127, 0, 0, 1]) + struct.pack(">H", 7001)
    assert (body[b"complete"], body[b"incomplete"]) == (1, 1)
    assert set(t.peers(IH)) == {PeerInfo(pid(1), "127.0.0.1", 7001),
                                PeerInfo(pid(2), "127.0.0.1", 7002)}


def test_non_compact_with_and_without_peer_id():
    t = Tracker()
    http(t, announce_target(peer=1, port=7001))
    _, body = http(t, announce_target(peer=2, port=7002, compact=0))
    assert body[b"peers"] == [{b"ip": b"127.0.0.1", b"peer id": pid(1), b"port": 7001}]
    _, body = http(t, announce_target(peer=2, port=7002, compact=0, no_peer_id=1))
    assert body[b"peers"] == [{b"ip": b"127.0.0.1", b"port": 7001}]


def test_ipv6_peers_go_to_peers6():
    t = Tracker()
    http(t, announce_target(peer=1, port=7001), ip="::1")
    http(t, announce_target(peer=2, port=7002), ip="::ffff:10.0.0.2")  # mapped -> IPv4
    _, body = http(t, announce_target(peer=3, port=7003))
    assert body[b"peers"] == bytes([10, 0, 0, 2]) + struct.pack(">H", 7002)
    assert body[b"peers6"] == b"\x00" * 15 + b"\x01" + struct.pack(">H", 7001)


def test_numwant_caps_and_default():
    t = Tracker(default_numwant=3, max_numwant=5, rng=random.Random(1))
    for n in range(10):
        http(t, announce_target(peer=n, port=7000 + n))
    assert len(http(t, announce_target(peer=99, port=7999))[1][b"peers"]) == 3 * 6
    assert len(http(t, announce_target(peer=99, port=7999, numwant=2))[1][b"peers"]) == 2 * 6
    assert len(http(t, announce_target(peer=99, port=7999, numwant=50))[1][b"peers"]) == 5 * 6
    assert http(t, announce_target(peer=99, port=7999, numwant=0))[1][b"peers"] == b""


def test_stopped_removes_peer_and_completed_counts_once():
    t = Tracker()
    http(t, announce_target(peer=1, port=7001, event="started"))
    http(t, announce_target(peer=1, port=7001, left=0, event="completed"))
    http(t, announce_target(peer=1, port=7001, left=0, event="completed"))
    assert t.scrape([IH], 0) == {IH: ScrapeStats(complete=1, downloaded=1, incomplete=0)}
    _, body = http(t, announce_target(peer=1, port=7001, left=0, event="stopped"))
    assert body[b"peers"] == b""
    assert t.peers(IH) == ()
    # A stop for an unknown torrent is answered and creates nothing.
    http(t, announce_target(ih=IH2, peer=1, event="stopped"))
    assert IH2 not in t.info_hashes


def test_peers_expire_by_now():
    t = Tracker(interval=60)  # ttl = 130 s
    http(t, announce_target(peer=1, port=7001), now=0)
    http(t, announce_target(peer=2, port=7002), now=100)
    _, body = http(t, announce_target(peer=3, port=7003), now=131)
    assert body[b"peers"] == bytes([127, 0, 0, 1]) + struct.pack(">H", 7002)
    assert t.expire(now=1000) == 2
    assert t.info_hashes == ()


def test_allow_list():
    t = Tracker(allow={IH})
    assert http(t, announce_target(ih=IH))[1][b"incomplete"] == 1
    assert http(t, announce_target(ih=IH2)) == (
        200, {b"failure reason": b"info_hash not allowed on this tracker"})


def test_limits():
    t = Tracker(max_swarms=1, max_peers_per_swarm=1)
    http(t, announce_target(ih=IH, peer=1))
    assert http(t, announce_target(ih=IH2))[1] == {b"failure reason": b"tracker is full"}
    assert http(t, announce_target(ih=IH, peer=2))[1] == {b"failure reason": b"swarm is full"}


def test_scrape():
    t = Tracker()
    http(t, announce_target(ih=IH, peer=1, left=0))
    http(t, announce_target(ih=IH, peer=2, left=5))
    http(t, announce_target(ih=IH2, peer=1, left=5))
    status, body = http(t, b"/scrape?" + query(info_hash=IH) + b"&" + query(info_hash=b"\x09" * 20))
    assert body == {b"files": {IH: {b"complete": 1, b"downloaded": 0, b"incomplete": 1}}}
    _, body = http(t, b"/scrape")
    assert set(body[b"files"]) == {IH, IH2}
    assert http(t, b"/scrape?info_hash=short")[1] == {b"failure reason": b"invalid info_hash"}


@pytest.mark.parametrize("target,reason", [
    (b"/announce", b"invalid info_hash"),
    (b"/announce?info_hash=abc", b"invalid info_hash"),
    (announce_target().replace(b"peer_id=", b"peer_id=x"), b"invalid peer_id"),
    (b"/announce?" + query(info_hash=IH, peer_id=pid(1), left=1), b"missing port"),
    (b"/announce?" + query(info_hash=IH, peer_id=pid(1), port=1), b"missing left"),
    (announce_target(port=0), b"invalid port"),
    (announce_target(port=70000), b"invalid port"),
    (announce_target(left=-1), b"invalid left"),
    (announce_target(left="1e3"), b"invalid left"),
    (announce_target(left="9" * 30), b"invalid left"),
    (announce_target(event="paused"), b"invalid event"),
    (announce_target(numwant="x"), b"invalid numwant"),
    (b"/announce?" + b"&".join([b"a=b"] * 300), b"too many query parameters"),
])
def test_malformed_announces_get_failure_reason(target, reason):
    status, body = http(Tracker(), target)
    assert (status, body) == (200, {b"failure reason": reason})


def test_unknown_path_is_404():
    assert Tracker().handle_http(b"/nope", "127.0.0.1", 0) == (404, b"not found\n")


def test_parse_query_keeps_raw_bytes():
    assert parse_query(b"info_hash=%00%FF%20a+b&x&=v") == [
        ("info_hash", b"\x00\xff a b"), ("x", b""), ("", b"v")]
    req = parse_announce_query(announce_target(event="empty").partition(b"?")[2], "::1")
    assert req == AnnounceRequest(info_hash=IH, peer_id=pid(1), ip="::1", port=6881, left=100,
                                  event=Event.NONE)


def test_ip_param_only_when_trusted():
    target = announce_target(ip="10.1.2.3")
    http(t := Tracker(), target)
    assert t.peers(IH)[0].ip == "127.0.0.1"
    http(t := Tracker(trust_ip_param=True), target)
    assert t.peers(IH)[0].ip == "10.1.2.3"


def test_direct_announce_validation():
    t = Tracker()
    with pytest.raises(TrackerError, match="invalid info_hash"):
        t.announce(AnnounceRequest(b"x", pid(1), "127.0.0.1", 1, 0), 0)


# ------------------------------------------------------------------ UDP (BEP 15)

ADDR = ("127.0.0.1", 40000)


def udp_connect(t, now=0.0, addr=ADDR):
    reply = t.handle_udp(struct.pack(">QII", UDP_PROTOCOL_ID, 0, 77), addr, now)
    action, txid, conn = struct.unpack(">IIQ", reply)
    assert (action, txid) == (0, 77)
    return conn


def udp_announce_packet(conn, ih=IH, peer=1, port=7001, left=100, event=2, numwant=-1):
    return struct.pack(">QII20s20sQQQIIIiH", conn, 1, 5, ih, pid(peer), 0, left, 0, event,
                       0, 0, numwant, port)


def test_udp_connect_announce_scrape():
    t = Tracker(interval=60, secret=b"k")
    conn = udp_connect(t)
    reply = t.handle_udp(udp_announce_packet(conn, peer=1, port=7001), ADDR, 1.0)
    assert struct.unpack(">IIIII", reply) == (1, 5, 60, 1, 0)
    conn2 = udp_connect(t, addr=("127.0.0.1", 40001))
    reply = t.handle_udp(udp_announce_packet(conn2, peer=2, port=7002, left=0),
                         ("127.0.0.1", 40001), 2.0)
    assert reply[:20] == struct.pack(">IIIII", 1, 5, 60, 1, 1)
    assert reply[20:] == bytes([127, 0, 0, 1]) + struct.pack(">H", 7001)
    reply = t.handle_udp(struct.pack(">QII", conn, 2, 9) + IH + IH2, ADDR, 3.0)
    assert struct.unpack(">II6I", reply) == (2, 9, 1, 0, 1, 0, 0, 0)
    # stopped
    t.handle_udp(udp_announce_packet(conn, peer=1, event=3), ADDR, 4.0)
    assert [p.peer_id for p in t.peers(IH)] == [pid(2)]


def test_udp_connection_id_expires_and_is_per_address():
    t = Tracker(secret=b"k")
    conn = udp_connect(t, now=10.0)
    assert t.handle_udp(udp_announce_packet(conn), ADDR, 100.0)[:4] == b"\x00\x00\x00\x01"
    expired = t.handle_udp(udp_announce_packet(conn), ADDR, 130.0)
    assert expired == struct.pack(">II", 3, 5) + b"connection id expired or invalid"
    other = t.handle_udp(udp_announce_packet(conn), ("127.0.0.1", 1), 11.0)
    assert other[:4] == b"\x00\x00\x00\x03"


@pytest.mark.parametrize("packet", [
    b"",
    b"\x00" * 15,
    struct.pack(">QII", 1234, 0, 1),  # connect without the magic: ignored
])
def test_udp_silently_dropped(packet):
    assert Tracker().handle_udp(packet, ADDR, 0) is None


def test_udp_errors():
    t = Tracker(secret=b"k", allow={IH2})
    conn = udp_connect(t)
    short = t.handle_udp(udp_announce_packet(conn)[:60], ADDR, 0)
    assert short == struct.pack(">II", 3, 5) + b"announce packet too short"
    refused = t.handle_udp(udp_announce_packet(conn), ADDR, 0)
    assert refused.endswith(b"not allowed on this tracker")
    bad_event = t.handle_udp(udp_announce_packet(conn, ih=IH2, event=9), ADDR, 0)
    assert bad_event.endswith(b"invalid event")
    assert t.handle_udp(struct.pack(">QII", conn, 7, 1), ADDR, 0).endswith(b"unknown action")
    assert t.handle_udp(struct.pack(">QII", conn, 2, 1) + b"x" * 21, ADDR, 0).endswith(
        b"74 info-hashes")


# ------------------------------------------------------------------ fuzz: never an exception

@given(st.binary(max_size=300))
@settings(max_examples=500)
def test_fuzz_http_never_raises(junk):
    t = Tracker()
    for target in (b"/announce?" + junk, b"/scrape?" + junk, junk):
        status, body = t.handle_http(target, "127.0.0.1", 0)
        assert status in (200, 404)
        if status == 200:
            bencode.decode(body)


@given(st.binary(min_size=16, max_size=200), st.sampled_from([0, 1, 2, 3, 99]))
@settings(max_examples=500)
def test_fuzz_udp_never_raises(junk, action):
    t = Tracker(secret=b"k")
    conn = t.connection_id(ADDR, 0)
    packet = struct.pack(">QI", conn, action) + junk[12:]
    reply = t.handle_udp(packet, ADDR, 0)
    assert reply is None or len(reply) >= 8
