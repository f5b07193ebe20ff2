"""EngineConfig: the libtorrent settings our choices turn into.  These are the settings a real
libtorrent session is started with (the session itself runs in tests/remote and tests/seed);
a session is started here too, to show libtorrent takes every one of them."""

from __future__ import annotations

import libtorrent as lt

from torrentcore.session import PRIVATE_DHT_ANNOUNCE, EngineConfig


def test_dht_without_nodes_keeps_libtorrents_public_routers():
    s = EngineConfig(dht=True).settings()
    assert "dht_bootstrap_nodes" not in s
    assert "dht_restrict_routing_ips" not in s
    assert not EngineConfig(dht=True).private_dht


def test_dht_nodes_on_private_addresses_make_a_room_dht():
    config = EngineConfig(dht=True, dht_nodes=("10.77.0.1:6881", "192.168.1.20:6881", "[fd00::1]:6881"))
    assert config.private_dht
    s = config.settings()
    # the nodes are the room's peers, pinged when the engine starts; libtorrent never keeps a
    # router in its routing table, and the public routers are not asked
    assert s["dht_bootstrap_nodes"] == ""
    assert s["dht_restrict_routing_ips"] is False and s["dht_restrict_search_ips"] is False
    assert s["dht_announce_interval"] == PRIVATE_DHT_ANNOUNCE


def test_a_public_or_named_node_keeps_the_internet_rules():
    # (settings only: no session is started with these, nothing is sent)
    for nodes in (("10.77.0.1:6881", "93.184.216.34:6881"), ("router.example.org:6881",)):
        config = EngineConfig(dht=True, dht_nodes=nodes)
        assert not config.private_dht, nodes
        s = config.settings()
        assert s["dht_bootstrap_nodes"] == ",".join(nodes)
        assert "dht_restrict_routing_ips" not in s and "dht_announce_interval" not in s


def test_connections_go_out_from_the_listen_address_when_one_is_given():
    assert EngineConfig(listen=("10.77.0.2:6881",)).settings()["outgoing_interfaces"] == "10.77.0.2"
    assert EngineConfig(listen=("[fd00::2]:0",)).settings()["outgoing_interfaces"] == "fd00::2"
    assert "outgoing_interfaces" not in EngineConfig().settings()  # 0.0.0.0 and [::]
    assert "outgoing_interfaces" not in EngineConfig(listen=("0.0.0.0:0", "10.0.0.1:0")).settings()


def test_lsd_or_dht_redial_sooner():
    assert EngineConfig(lsd=True).settings()["min_reconnect_time"] == 2
    assert EngineConfig(dht=True).settings()["min_reconnect_time"] == 2
    assert "min_reconnect_time" not in EngineConfig().settings()


def test_libtorrent_takes_the_room_settings():
    # loopback only: the DHT listens on 127.0.0.1 and knows one node, 127.0.0.2
    config = EngineConfig(listen=("127.0.0.1:0",), dht=True, dht_nodes=("127.0.0.2:6881",), utp=False)
    session = lt.session(config.settings())
    applied = session.get_settings()
    assert applied["outgoing_interfaces"] == "127.0.0.1"
    assert applied["dht_restrict_routing_ips"] is False
    assert applied["dht_announce_interval"] == PRIVATE_DHT_ANNOUNCE
    assert applied["min_reconnect_time"] == 2
    session.pause()
    del session
