"""Markers and a private network namespace for the interop tests.  The stock-client drivers
and the git side of a swarm are gitfs_p2p.testing, shared with `make demo` and `make bench`."""

import pytest

from gitfs_p2p.testing.netns import own_network_namespace, why_no_namespace


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: a longer interop scenario (the opentracker variants); deselect with -m 'not slow'")


# ------------------------------------------------------------------ a private network

#: one address per role (tracker, seeder, downloader, verifier): transmission keeps one
#: peer per IP address, so peers sharing an address hide each other from it
PRIVATE_ADDRESSES = ("10.77.0.1", "10.77.0.2", "10.77.0.3", "10.77.0.4")


@pytest.fixture
def private_network():
    """Non-loopback addresses (10.77.0.1-4) in a network namespace this test creates: for the
    clients that will not dial 127.0.0.0/8 (transmission). Needs root and iproute2's `ip`."""
    reason = why_no_namespace()
    if reason is not None:
        pytest.skip(reason)
    with own_network_namespace(PRIVATE_ADDRESSES) as addresses:
        yield addresses
