"""Tests of the tracker state machine, fed plain requests (no sockets); time is the ``now``
argument, so expiry is tested by moving a number, never by waiting."""

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tc_support import IH, IH2, announce_target, pid, query

from torrentcore import bencode
from torrentcore.tracker import (
    DEFAULT_INTERVAL,
    UDP_PROTOCOL_ID,
    AnnounceRequest,
    BadRequest,
    Event,
    PeerInfo,
    ScrapeStats,
    Tracker,
    TrackerError,
    TrackerLimits,
    default_peer_ttl,
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


# ------------------------------------------------------------------ expiry rules (issue 10)


def compact(*ports):
    return b"".join(bytes([127, 0, 0, 1]) + struct.pack(">H", p) for p in ports)


def test_default_interval_and_ttl_match_opentracker():
    t = Tracker()
    assert (t.interval, t.min_interval, t.peer_ttl) == (1800, 900, 2700)
    assert DEFAULT_INTERVAL == 1800
    _, body = http(t, announce_target(peer=1, port=7001))
    assert (body[b"interval"], body[b"min interval"]) == (1800, 900)


@pytest.mark.parametrize("interval,ttl", [(1, 900), (5, 900), (60, 900), (600, 900),
                                          (1800, 2700), (3600, 5400)])
def test_ttl_never_below_the_slowest_clients_pace(interval, ttl):
    """Whatever interval the tracker asks for, rtorrent announces every 600 s and
    libtorrent at most every 300 s: a peer is kept 1.5 x max(interval, 600)."""
    assert default_peer_ttl(interval) == ttl
    assert Tracker(interval=interval).peer_ttl == ttl


@pytest.mark.parametrize("interval", [5, 60, DEFAULT_INTERVAL])
def test_peer_is_kept_for_ttl_and_dropped_after(interval):
    t = Tracker(interval=interval)
    ttl = t.peer_ttl
    http(t, announce_target(peer=1, port=7001), now=0)
    http(t, announce_target(peer=2, port=7002), now=100)
    _, body = http(t, announce_target(peer=3, port=7003), now=ttl)  # exactly ttl: kept
    assert body[b"peers"] in (compact(7001, 7002), compact(7002, 7001))
    _, body = http(t, announce_target(peer=3, port=7003), now=ttl + 1)
    assert body[b"peers"] == compact(7002)
    assert t.expire(now=ttl + 100 + 1) == 1  # peer 2; peer 3 was heard at ttl + 1
    assert t.expire(now=2 * ttl + 2) == 1
    assert t.info_hashes == ()


def test_issue_10_seed_announcing_every_600_s_is_never_forgotten():
    """The reported failure: with the old 2 x 60 + 10 s TTL, a downloader arriving 132 s
    after rtorrent's announce got no peers. A seed announcing at rtorrent's pace (600 s)
    or libtorrent's (300 s) is found by a downloader at any moment in between."""
    t = Tracker(interval=60)  # the interval the issue's tracker used
    seeds = {7001: 600, 7002: 300}  # port -> announce period
    for now in range(0, 6001, 6):
        for port, period in seeds.items():
            if now % period == 0:
                http(t, announce_target(peer=port, port=port, left=0), now=now)
        # a downloader that asks for peers and leaves again
        _, body = http(t, announce_target(peer=1, port=9999), now=now)
        assert body[b"complete"] == 2, now
        assert len(body[b"peers"]) == 12, now
        http(t, announce_target(peer=1, port=9999, event="stopped"), now=now)


def test_peer_ttl_can_be_set():
    t = Tracker(interval=60, peer_ttl=30)
    http(t, announce_target(peer=1, port=7001), now=0)
    assert http(t, announce_target(peer=2, port=7002), now=30)[1][b"peers"] == compact(7001)
    assert http(t, announce_target(peer=2, port=7002), now=31)[1][b"peers"] == b""
    with pytest.raises(ValueError):
        Tracker(peer_ttl=0)


def test_clock_going_backwards_does_not_expire_or_resurrect():
    t = Tracker(interval=60)  # ttl 900
    http(t, announce_target(peer=1, port=7001), now=1000)
    http(t, announce_target(peer=2, port=7002), now=10)  # taken as 1000
    assert t.expire(now=1900) == 0
    assert t.expire(now=1901) == 2


def test_expire_is_bounded_per_call():
    t = Tracker(interval=60, limits=TrackerLimits(max_swarm_peers_per_source=1000,
                                                  max_peers_per_source=1000))
    for n in range(300):
        t.announce(AnnounceRequest(IH, pid(n), "127.0.0.1", 1000 + n, 5), now=n)
    assert t.expire(now=2000, limit=100) == 100
    assert t.swarms.peer_count == 200
    assert t.expire(now=2000) == 200
    assert t.info_hashes == ()


def test_announce_sweeps_a_few_expired_peers_first():
    t = Tracker(interval=60, limits=TrackerLimits(max_swarm_peers_per_source=1000,
                                                  max_peers_per_source=1000))
    for n in range(100):
        t.announce(AnnounceRequest(IH2, pid(n), "127.0.0.1", 1000 + n, 5), now=0)
    t.announce(AnnounceRequest(IH, pid(1), "127.0.0.1", 7001, 5), now=1000)
    assert t.swarms.peer_count == 1 + 100 - 64  # EXPIRE_PER_REQUEST went with it
    # Expired peers not yet swept are never handed out.
    t2 = Tracker(interval=60, rng=random.Random(3),
                 limits=TrackerLimits(max_swarm_peers_per_source=1000))
    for n in range(100):
        t2.announce(AnnounceRequest(IH, pid(n), "127.0.0.1", 1000 + n, 5), now=0)
    t2.announce(AnnounceRequest(IH, pid(500), "127.0.0.1", 1500, 5), now=900)
    fresh = t2.announce(AnnounceRequest(IH, pid(501), "127.0.0.1", 1501, 5), now=901)
    assert [p.port for p in fresh.peers] == [1500]


def test_allow_list():
    t = Tracker(allow={IH})
    assert http(t, announce_target(ih=IH))[1][b"incomplete"] == 1
    assert http(t, announce_target(ih=IH2)) == (
        200, {b"failure reason": b"info_hash not allowed on this tracker"})


def test_limits():
    t = Tracker(limits=TrackerLimits(max_swarms=1, max_peers_per_swarm=1))
    http(t, announce_target(ih=IH, peer=1, port=7001))
    assert http(t, announce_target(ih=IH2)) == (200, {b"failure reason": b"tracker is full"})
    assert http(t, announce_target(ih=IH, peer=2, port=7002)) == (
        200, {b"failure reason": b"swarm is full"})
    # A known peer is always updated, full or not.
    assert http(t, announce_target(ih=IH, peer=1, port=7001, left=0))[1][b"complete"] == 1
    assert t.counters["refused"] == 2


def test_peers_are_keyed_by_address_and_port():
    """As in opentracker: a client restarted on the same port (new peer id) replaces its
    entry instead of leaving a ghost; a different port is a different peer."""
    t = Tracker()
    http(t, announce_target(peer=1, port=7001))
    http(t, announce_target(peer=2, port=7001, left=0))
    assert t.peers(IH) == (PeerInfo(pid(2), "127.0.0.1", 7001),)
    assert http(t, announce_target(peer=3, port=7002))[1][b"complete"] == 1


def test_scrape():
    t = Tracker()
    http(t, announce_target(ih=IH, peer=1, port=7001, left=0))
    http(t, announce_target(ih=IH, peer=2, port=7002, left=5))
    http(t, announce_target(ih=IH2, peer=1, left=5))
    status, body = http(t, b"/scrape?" + query(info_hash=IH) + b"&" + query(info_hash=b"\x09" * 20))
    assert body == {b"files": {IH: {b"complete": 1, b"downloaded": 0, b"incomplete": 1}}}
    assert http(t, b"/scrape?info_hash=short") == (400, {b"failure reason": b"invalid info_hash"})


def test_full_scrape_is_off_unless_enabled_and_bounded():
    t = Tracker(limits=TrackerLimits(max_peers_per_source=10_000))
    for n in range(5):
        http(t, announce_target(ih=bytes([n]) * 20, peer=1))
    assert http(t, b"/scrape") == (
        200, {b"failure reason": b"full scrape is disabled on this tracker"})
    t2 = Tracker(limits=TrackerLimits(full_scrape=True, full_scrape_entries=3))
    for n in range(5):
        http(t2, announce_target(ih=bytes([n]) * 20, peer=1))
    assert len(http(t2, b"/scrape")[1][b"files"]) == 3


def test_scrape_dedupes_and_caps_info_hashes():
    t = Tracker()
    http(t, announce_target(ih=IH, peer=1))
    repeated = b"/scrape?" + b"&".join([query(info_hash=IH)] * 200)
    assert http(t, repeated)[1] == {b"files": {IH: {b"complete": 0, b"downloaded": 0,
                                                    b"incomplete": 1}}}
    many = b"/scrape?" + b"&".join(query(info_hash=n.to_bytes(20, "big")) for n in range(75))
    assert http(t, many) == (200, {b"failure reason": b"a scrape may name at most 74 info-hashes"})
    seventy_four = b"/scrape?" + b"&".join(query(info_hash=n.to_bytes(20, "big"))
                                           for n in range(74))
    assert http(t, seventy_four) == (200, {b"files": {}})


@pytest.mark.parametrize("target,reason", [
    (b"/announce", b"invalid info_hash"),
    (b"/announce?info_hash=abc", b"invalid info_hash"),
    (announce_target().replace(b"peer_id=", b"peer_id=x"), b"invalid peer_id"),
    (b"/announce?" + query(info_hash=IH, peer_id=pid(1), left=1), b"missing port"),
    (b"/announce?" + query(info_hash=IH, peer_id=pid(1), port=1), b"missing left"),
    (announce_target(port=0), b"invalid port"),
    (announce_target(port=70000), b"invalid port"),
    (announce_target(left=-1), b"invalid left"),
    (announce_target(left="--5"), b"invalid left"),
    (announce_target(left="-"), b"invalid left"),
    (announce_target(left=""), b"invalid left"),
    (announce_target(left="+5"), b"invalid left"),
    (announce_target(left=" 5"), b"invalid left"),
    (announce_target(left="5\n"), b"invalid left"),
    (announce_target(left="\xb2"), b"invalid left"),  # '²': str.isdigit() says yes
    (announce_target(left="\u0663".encode()), b"invalid left"),  # Arabic-Indic three
    (announce_target(left="1e3"), b"invalid left"),
    (announce_target(left="9" * 30), b"invalid left"),
    (announce_target(numwant=5).replace(b"uploaded=0", b"uploaded=--1"), b"invalid uploaded"),
    (announce_target(event="paused"), b"invalid event"),
    (announce_target(numwant="x"), b"invalid numwant"),
    (announce_target(numwant="--2"), b"invalid numwant"),
    (b"/announce?" + b"&".join([b"a=b"] * 300), b"too many query parameters"),
])
def test_malformed_announces_get_400_and_change_nothing(target, reason, caplog):
    t = Tracker()
    with caplog.at_level("DEBUG"):
        status, body = http(t, target)
    assert (status, body) == (400, {b"failure reason": reason})
    assert t.info_hashes == () and t.counters == {"bad_request": 1}
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL") or r.exc_info]


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
    with pytest.raises(BadRequest, match="invalid info_hash"):
        t.announce(AnnounceRequest(b"x", pid(1), "127.0.0.1", 1, 0), 0)
    with pytest.raises(BadRequest, match="invalid left"):
        t.announce(AnnounceRequest(IH, pid(1), "127.0.0.1", 1, -5), 0)
    assert issubclass(BadRequest, TrackerError)
    assert t.info_hashes == ()


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
    bad_port = t.handle_udp(udp_announce_packet(conn, ih=IH2, port=0), ADDR, 0)
    assert bad_port.endswith(b"invalid port")
    assert t.info_hashes == ()
    assert t.handle_udp(struct.pack(">QII", conn, 7, 1), ADDR, 0).endswith(b"unknown action")
    assert t.handle_udp(struct.pack(">QII", conn, 2, 1) + b"x" * 21, ADDR, 0).endswith(
        b"74 info-hashes")


# ------------------------------------------------------------------ fuzz: never an exception

FIELDS = ["info_hash", "peer_id", "port", "left", "uploaded", "downloaded", "event",
          "numwant", "compact", "no_peer_id", "ip"]


@given(st.binary(max_size=300))
@settings(max_examples=500)
def test_fuzz_http_never_raises(junk):
    t = Tracker()
    for target in (b"/announce?" + junk, b"/scrape?" + junk, junk):
        status, body = t.handle_http(target, "127.0.0.1", 0)
        assert status in (200, 400, 404)
        if status != 404:
            bencode.decode(body)
    assert t.counters["internal_error"] == 0


@given(st.sampled_from(FIELDS), st.binary(max_size=24))
@settings(max_examples=500)
def test_fuzz_one_field_is_a_clean_answer(field, value):
    """Any value of any one field of a valid announce is answered 200 or a clean 400,
    never 500; a 400 changes nothing."""
    t = Tracker()
    params = dict(info_hash=IH, peer_id=pid(1), port=6881, left=100, uploaded=0,
                  downloaded=0)
    params[field] = value
    status, body = t.handle_http(b"/announce?" + query(**params), "127.0.0.1", 0)
    assert status in (200, 400), body
    assert b"failure reason" in body or status == 200
    if status == 400:
        assert t.info_hashes == ()
    assert t.counters["internal_error"] == 0


@given(st.binary(min_size=16, max_size=200), st.sampled_from([0, 1, 2, 3, 99]))
@settings(max_examples=500)
def test_fuzz_udp_never_raises(junk, action):
    t = Tracker(secret=b"k")
    conn = t.connection_id(ADDR, 0)
    packet = struct.pack(">QI", conn, action) + junk[12:]
    reply = t.handle_udp(packet, ADDR, 0)
    assert reply is None or len(reply) >= 8
