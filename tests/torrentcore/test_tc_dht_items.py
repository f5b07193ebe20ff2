"""BEP 44/46 items through real libtorrent sessions: a room's DHT on 127.0.0.1 (a process of
four nodes that stay, gitfs_p2p/testing/dhtroom.py), a publisher's engine and a reader's.

What libtorrent's nodes do is tested as they do it: a put signed with another key is stored
by no node (each checks the signature), a new put of a name gets a higher sequence number,
a name nobody put is an answer (not a timeout)."""

import os

import pytest
import trio

from gitfs_p2p.testing.dhtroom import DhtRoom
from torrentcore.metainfo import build_info, build_torrent
from torrentcore.mutable import SigningKey, info_hash_of, value_for, verify
from torrentcore.session import Engine, EngineConfig, EngineError


@pytest.fixture
def room(tmp_path):
    """A room per test: the publisher's engine is a full node, and one that left stays in
    the room's tables, where the next test's lookups would wait for it to time out."""
    with DhtRoom(tmp_path / "dhtroom", 4) as r:
        yield r


def _config(room, *, read_only: bool) -> EngineConfig:
    return EngineConfig(listen=("127.0.0.1:0",), dht=True, dht_nodes=tuple(room.nodes), utp=False, loopback=True,
                        dht_read_only=read_only)


def _run(room, body):
    async def main():
        async with trio.open_nursery() as nursery:
            # the publisher a full node (as `gitp2p seed`), the reader read-only (BEP 43, as
            # the remote helper's short-lived engine)
            publisher = await nursery.start(Engine(_config(room, read_only=False)).run)
            reader = await nursery.start(Engine(_config(room, read_only=True)).run)
            with trio.fail_after(60):
                await body(publisher, reader)
            nursery.cancel_scope.cancel()
    trio.run(main)


def test_a_name_resolves_to_the_newest_put(room):
    key = SigningKey(os.urandom(32))
    first, second = bytes(range(20)), bytes(range(1, 21))

    async def body(publisher, reader):
        seq1, stored = await publisher.put_mutable(key, b"repo", value_for(first))
        assert stored >= 1
        item = await reader.get_mutable(key.public, b"repo")
        assert item is not None and item.seq == seq1 and item.authoritative
        verify(item)  # our own check agrees with libtorrent's: the expanded key signs correctly
        assert info_hash_of(item.value) == first
        seq2, _ = await publisher.put_mutable(key, b"repo", value_for(second))
        assert seq2 > seq1
        item = await reader.get_mutable(key.public, b"repo")
        assert (item.seq, info_hash_of(item.value)) == (seq2, second)
        # another name of the same key is another item
        other = await reader.get_mutable(key.public, b"other")
        assert other is None, (other.salt, other.seq, other.value, other.signature.hex())

    _run(room, body)


def test_an_item_signed_by_another_key_is_stored_by_no_node(room):
    owner, forger = SigningKey(os.urandom(32)), SigningKey(os.urandom(32))

    class Forged(SigningKey):
        @property
        def public(self) -> bytes:  # claims the owner's key, signs with its own
            return owner.public

    async def body(publisher, reader):
        with pytest.raises(EngineError, match="no DHT node stored"):
            await publisher.put_mutable(Forged(forger.seed), b"repo", value_for(bytes(20)))
        assert await reader.get_mutable(owner.public, b"repo") is None

    _run(room, body)


def test_the_dht_must_be_on():
    async def main():
        async with trio.open_nursery() as nursery:
            engine = await nursery.start(Engine(EngineConfig(listen=("127.0.0.1:0",), utp=False)).run)
            with pytest.raises(EngineError, match="DHT is off"):
                await engine.get_mutable(bytes(32), b"x")
            nursery.cancel_scope.cancel()
    trio.run(main)


def test_a_read_only_engine_finds_peers_in_the_dht_and_stays_out_of_its_tables(room, tmp_path):
    """The remote helper's engine (read-only, short-lived) downloads a torrent whose only peer it
    found through the DHT, and the nodes it met do not keep it in their routing tables.  It must
    not announce itself: libtorrent's nodes put any node whose announce_peer they take into their
    tables, read-only or not, and once it had left, every put and lookup of the publisher waited
    for it (15-16 s each after a `git clone` by name, measured; docs/names.md)."""
    data = os.urandom(200_000)
    (tmp_path / "seed").mkdir()
    (tmp_path / "seed" / "blob").write_bytes(data)
    torrent = build_torrent(build_info([(("blob",), len(data))], [data], "blob"))

    async def body(publisher, reader):
        await publisher.add_torrent(torrent, str(tmp_path / "seed"), seed_mode=True)
        fetching = await reader.add_torrent(torrent, str(tmp_path / "fetch"))
        await fetching.wait_for(lambda: fetching.status().seeding, 50, "the download (peers from the DHT)")
        await fetching.flush()
        assert (tmp_path / "fetch" / "blob").read_bytes() == data
        table = publisher.dht_table()
        assert table, "the publisher's routing table holds the room's nodes"
        assert ("127.0.0.1", reader.listen_port) not in table, table

    _run(room, body)
