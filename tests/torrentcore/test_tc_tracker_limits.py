"""The tracker's budgets on their own: per-source token buckets, connection slots and the
rate-limited log, driven by a ``now`` number (no clock, no sockets)."""

import logging

import pytest

from torrentcore.tracker.limits import ConnectionSlots, RateLimitedLog, TokenBuckets, source_key


@pytest.mark.parametrize("ip,key", [
    ("127.0.0.1", "127.0.0.1"),
    ("10.1.2.3", "10.1.2.3"),
    ("::ffff:10.1.2.3", "10.1.2.3"),
    ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
    ("::1", "::/64"),
    ("not an address", "not an address"),
])
def test_source_key(ip, key):
    assert source_key(ip) == key


def test_token_bucket_allows_burst_then_rate():
    b = TokenBuckets(rate=2, burst=5, max_sources=10)
    assert [b.allow("a", 0) for _ in range(6)] == [True] * 5 + [False]
    assert b.allow("b", 0)  # another source has its own budget
    assert not b.allow("a", 0.4)  # 0.8 tokens
    assert b.allow("a", 0.5)
    assert not b.allow("a", 0.5)
    # Saved-up time never exceeds the burst.
    assert [b.allow("a", 1000) for _ in range(6)] == [True] * 5 + [False]


def test_token_bucket_sustained_rate_is_exact():
    b = TokenBuckets(rate=10, burst=10, max_sources=10)
    allowed = sum(b.allow("a", n / 100) for n in range(10_000))  # 100 s at 100/s
    assert abs(allowed - (10 + 999)) <= 1  # the burst, then 10/s for 99.99 s


def test_token_buckets_keep_at_most_max_sources():
    b = TokenBuckets(rate=1, burst=1, max_sources=3)
    for source in "abcde":
        assert b.allow(source, 0)
    assert len(b) == 3
    assert not b.allow("e", 0)  # still remembered: empty
    assert b.allow("a", 0)  # forgotten: a fresh bucket


def test_token_buckets_reject_bad_settings():
    with pytest.raises(ValueError):
        TokenBuckets(rate=0, burst=1, max_sources=1)


def test_rate_limited_log(caplog):
    logger = logging.getLogger("test.ratelimited")
    limited = RateLimitedLog(logger, per_window=3, window=60)
    with caplog.at_level(logging.INFO, logger="test.ratelimited"):
        for n in range(1000):
            limited.log(logging.INFO, n * 0.01, "refused %d", n)
        assert [r.getMessage() for r in caplog.records] == ["refused 0", "refused 1",
                                                            "refused 2"]
        assert limited.suppressed == 997
        limited.flush(30)  # the window is not over
        assert len(caplog.records) == 3
        limited.flush(60)
        assert caplog.records[-1].levelname == "WARNING"
        assert caplog.records[-1].getMessage().startswith("997 more tracker messages")
        limited.log(logging.INFO, 61, "refused again")
        assert caplog.records[-1].getMessage() == "refused again"
        assert limited.suppressed_total == 997


def test_rate_limited_log_counts_nothing_when_the_level_is_off(caplog):
    limited = RateLimitedLog(logging.getLogger("test.off"), per_window=1)
    with caplog.at_level(logging.WARNING, logger="test.off"):
        for n in range(10):
            limited.log(logging.DEBUG, n, "quiet")
    assert limited.suppressed_total == 0 and caplog.records == []


def test_connection_slots_per_source_pushes_out_its_oldest_idle():
    slots = ConnectionSlots(total=10, per_source=3)
    assert [slots.admit(n, "a") for n in range(3)] == [[], [], []]
    assert slots.admit(3, "a") == [0]
    assert slots.count("a") == 3 and len(slots) == 3
    slots.set_busy(1, True)  # being answered: never pushed out
    assert slots.admit(4, "a") == [2]
    assert slots.admit(5, "b") == []
    assert slots.evicted == 2


def test_connection_slots_total_pushes_out_the_oldest_idle_of_all():
    slots = ConnectionSlots(total=4, per_source=3)
    for n, source in enumerate("aabb"):
        assert slots.admit(n, source) == []
    assert slots.admit(4, "c") == [0]
    slots.set_busy(1, True)
    assert slots.admit(5, "c") == [2]
    assert slots.admit(6, "c") == [3]
    # Own source at its cap and the table full: its own oldest idle one makes the room.
    assert slots.count("c") == 3
    assert slots.admit(7, "c") == [4]
    assert len(slots) == 4


def test_connection_slots_refuse_only_when_all_are_busy():
    slots = ConnectionSlots(total=2, per_source=2)
    for n in range(2):
        slots.admit(n, "a")
        slots.set_busy(n, True)
    assert slots.admit(2, "b") is None
    assert slots.admit(3, "a") is None
    assert len(slots) == 2
    slots.release(0)
    slots.release(0)  # twice is harmless
    assert slots.admit(4, "b") == []


def test_connection_slots_slowloris_never_reaches_a_prompt_client():
    """Thousands of idle connections from many sources, one prompt client among them:
    it is pushed out only if `total` newer idle connections arrive before its request
    does, and the table never grows past its bounds."""
    slots = ConnectionSlots(total=64, per_source=8)
    prompt_served = 0
    for n in range(10_000):
        source = f"10.0.{n % 50}.1"
        slots.admit(("idle", n), source)
        if n % 100 == 0:
            slots.admit(("prompt", n), "127.0.0.1")
            for m in range(10):  # ten more idle connections arrive meanwhile
                slots.admit(("idle", n, m), source)
            assert ("prompt", n) in slots._conns  # its request arrives: still there
            slots.set_busy(("prompt", n), True)
            slots.release(("prompt", n))
            prompt_served += 1
        assert len(slots) <= 64 and slots.count(source) <= 8
    assert prompt_served == 100
