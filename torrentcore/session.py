"""Our BitTorrent engine: libtorrent's session (the PyPI `libtorrent` 2.1 wheel), adapted to trio.

Why libtorrent and not a wire protocol of our own: it brings, tested by millions of
users, what a hand-written engine would take years to match (DHT, local service
discovery, uTP, peer exchange, encryption, web seeds, magnet metadata exchange,
rarest-first and deadline piece picking, fast resume).  This module is the only one
that imports `libtorrent`; the rest of the project sees `Engine` and `Torrent`.

The session runs its own network thread.  A pump thread of ours waits for alerts
(`wait_for_alert`) and hands each batch to the trio loop, where every alert is turned
into a plain `Event` at once (libtorrent frees an alert at the next `pop_alerts`) and
sent to the channels of whoever listens: the torrent it names, and the engine's own
listeners.  Every wait here takes a timeout.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable

import libtorrent as lt
import trio

from . import bencode
from .mutable import MutableItem, SigningKey

__all__ = ["EngineConfig", "Engine", "Event", "Torrent", "TorrentStatus", "EngineError", "LT_VERSION"]

log = logging.getLogger(__name__)

LT_VERSION = lt.__version__
#: A torrent's event channel holds this many events; more are dropped (status stays exact).
EVENT_BUFFER = 4096
#: How long the pump thread blocks in wait_for_alert (it also checks for shutdown then).
PUMP_WAIT_MS = 200
_UDP_SOCKETS = {getattr(lt.socket_type_t, name) for name in ("udp", "utp") if hasattr(lt.socket_type_t, name)}
#: Seconds between DHT announces in a room's private DHT (libtorrent's default: 15 minutes).
PRIVATE_DHT_ANNOUNCE = 5
#: A read-only engine looks its torrents' peers up in the DHT itself (it never announces): at
#: once, then after 1, 2, 4... seconds, at most this many apart (in a room PRIVATE_DHT_ANNOUNCE)
PEER_LOOKUP_MAX = 60


class EngineError(RuntimeError):
    """The engine could not do what it was asked (bad torrent, no listen port, a timeout)."""


@dataclass(frozen=True)
class EngineConfig:
    """What the session does on the network.

    listen: "host:port" entries (port 0: any free port).  lsd: BEP 14 local service
    discovery (peers on the same network find each other without a tracker).  dht:
    BEP 5, bootstrapping from dht_nodes ("host:port"; none: libtorrent's public
    routers); nodes all on private networks make a room's own DHT (private_dht).
    utp: also uTP (slow on loopback, so tests turn it off).  loopback: settings for
    peers sharing one address (tests).
    """

    listen: tuple[str, ...] = ("0.0.0.0:6881", "[::]:6881")
    lsd: bool = False
    dht: bool = False
    dht_nodes: tuple[str, ...] = ()
    utp: bool = True
    loopback: bool = False
    #: BEP 43: ask the DHT, but stay out of other nodes' routing tables (a short-lived engine,
    #: as `git fetch`'s: nodes that leave make everyone's lookups wait for their timeouts).
    #: Its torrents never announce themselves either (DHT announce_peer): libtorrent's nodes
    #: put every node whose announce they take into their routing table, read-only or not
    #: (kademlia/node.cpp, `node_seen` after the token check).  The engine looks their peers
    #: up instead (get_peers, PEER_LOOKUP_MAX) and dials them.
    dht_read_only: bool = False
    upload_slots: int = 8
    extra: dict = field(default_factory=dict)  # raw libtorrent settings, last word

    @property
    def private_dht(self) -> bool:
        """The DHT bootstraps only from nodes on private networks or loopback (a room)."""
        if not self.dht_nodes:
            return False
        for node in self.dht_nodes:
            try:
                ip = ipaddress.ip_address(node.rpartition(":")[0].strip("[]"))
            except ValueError:
                return False  # a host name: the internet's DHT, presumably
            if not (ip.is_private or ip.is_loopback or ip.is_link_local):
                return False
        return True

    def settings(self) -> dict:
        cat = lt.alert.category_t
        s = {
            "listen_interfaces": ",".join(self.listen),
            "enable_lsd": self.lsd,
            "enable_dht": self.dht,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_incoming_utp": self.utp,
            "enable_outgoing_utp": self.utp,
            "user_agent": "gitfs-p2p/0.1 libtorrent/" + lt.__version__,
            "peer_fingerprint": "-GP0100-",
            "unchoke_slots_limit": self.upload_slots,
            # alerts we act on: errors, status (metadata, finished, file completed), trackers, peers
            "alert_mask": cat.error_notification | cat.status_notification | cat.storage_notification
            | cat.tracker_notification | cat.file_progress_notification | cat.connect_notification
            | cat.dht_notification | cat.ip_block_notification,
            "alert_queue_size": 100_000,
            # a download is useful as soon as every piece of a file is in: no waiting for
            # a rarest-first end game of the whole torrent
            "close_file_interval": 0,
        }
        if self.dht and self.dht_read_only:
            s["dht_read_only"] = True
            # the answers to our own peer lookups (dht_get_peers_reply)
            s["alert_mask"] |= cat.dht_operation_notification
        if self.dht_nodes:
            # given nodes replace libtorrent's public bootstrap routers
            s["dht_bootstrap_nodes"] = ",".join(self.dht_nodes)
            if self.private_dht:
                # ...but in a room they are peers, not routers: libtorrent never puts a
                # router into its routing table, so a room whose every node names the others
                # as routers kept empty tables (every put and lookup found nobody, measured
                # with 3 and 4 nodes on loopback).  No routers then; run() pings the given
                # nodes as ordinary nodes (add_dht_node), which do enter the table.
                s["dht_bootstrap_nodes"] = ""
                # A room's own DHT (every node on a private network or loopback): its nodes
                # share a /24, which the internet rules (one node per /24 in a routing table,
                # node ids derived from public addresses) would cut down to one; a handful
                # of nodes can afford to announce often, so a peer that joins later is
                # found in seconds rather than at the next 15-minute announce.
                s.update({
                    "dht_restrict_routing_ips": False,
                    "dht_restrict_search_ips": False,
                    "dht_prefer_verified_node_ids": False,
                    "dht_ignore_dark_internet": False,
                    "dht_enforce_node_id": False,
                    "dht_announce_interval": PRIVATE_DHT_ANNOUNCE,
                })
        hosts = [entry.rpartition(":")[0].strip("[]") for entry in self.listen]
        if hosts and not any(h in ("", "0.0.0.0", "::") for h in hosts):
            # listening on given addresses: connect out from them too.  With several
            # addresses on one interface (a test's namespace, a multi-homed host) the
            # kernel would otherwise pick the subnet's first address for every connection,
            # and peers would see one address for all of us.
            s["outgoing_interfaces"] = ",".join(hosts)
        if self.lsd or self.dht:
            # LSD and the DHT make two peers dial each other at once; libtorrent's
            # duplicate-connection check may then close both, and its default 60 s wait
            # before redialling stalled a room-sized swarm about one run in ten
            # (docs/remote-helper.md)
            s["min_reconnect_time"] = 2
        if self.loopback:
            s.update({
                "allow_multiple_connections_per_ip": True,
                "dht_restrict_routing_ips": False,
                "dht_restrict_search_ips": False,
                "dht_prefer_verified_node_ids": False,
                "dht_ignore_dark_internet": False,
                # every DHT node here shares one address: libtorrent's per-address limit
                # (5 queries a second, then the address is ignored for 5 minutes) would
                # count a whole test room as one abusive node
                "dht_block_ratelimit": 100_000,
                "dht_block_timeout": 0,
                "local_service_announce_interval": 5,
                "min_announce_interval": 1,
                "tracker_backoff": 0,
            })
        s.update(self.extra)
        return s


@dataclass(frozen=True)
class Event:
    """One libtorrent alert, copied out: kind is the alert's type without `_alert`."""

    kind: str
    message: str
    info_hash: str | None = None  # v1 hex of the torrent the alert is about
    index: int | None = None  # file or piece index, where the alert has one
    error: str | None = None  # the error's message, for error alerts
    port: int | None = None  # listen_succeeded
    item: MutableItem | None = None  # dht_mutable_item (a lookup's answer), dht_put (value b"")
    successes: int | None = None  # dht_put: how many nodes stored the item
    nodes: int | None = None  # dht_stats: how many nodes the DHT's routing table holds


def _event(alert) -> Event:
    kind = type(alert).__name__
    if kind.endswith("_alert"):
        kind = kind[: -len("_alert")]
    info_hash = index = error = port = item = successes = nodes = None
    handle = getattr(alert, "handle", None)
    if handle is not None:
        try:
            if handle.is_valid():
                info_hash = str(handle.info_hashes().v1)
        except RuntimeError:
            pass
    if kind in ("file_completed", "file_error", "file_renamed", "file_rename_failed"):
        index = int(alert.index)
    elif kind in ("piece_finished", "hash_failed"):
        index = int(alert.piece_index)
    elif kind == "listen_succeeded":
        port = int(alert.port)
    elif kind == "dht_mutable_item":
        item = MutableItem(bytes(alert.key), bytes(alert.salt), int(alert.seq), bencode.encode(alert.item),
                           bytes(alert.signature), bool(alert.authoritative))
    elif kind == "dht_put":
        item = MutableItem(bytes(alert.public_key), bytes(alert.salt), int(alert.seq), b"", bytes(alert.signature))
        successes = int(alert.num_success)
    elif kind == "dht_stats":
        nodes = sum(int(bucket["num_nodes"]) for bucket in alert.routing_table)
    err = getattr(alert, "error", None)
    if err is not None and hasattr(err, "value") and err.value():
        error = err.message()
    return Event(kind, alert.message(), info_hash, index, error, port, item, successes, nodes)


@dataclass(frozen=True)
class TorrentStatus:
    """A snapshot of one torrent (bytes are of the wanted files only)."""

    state: str
    has_metadata: bool
    progress: float
    wanted: int
    wanted_done: int
    downloaded: int
    uploaded: int
    download_rate: int
    upload_rate: int
    peers: int
    seeds: int
    finished: bool
    seeding: bool
    paused: bool
    error: str
    checking: bool


_CHECKING = {"checking_files", "checking_resume_data", "allocating"}


def _status(st) -> TorrentStatus:
    state = str(st.state).rsplit(".", 1)[-1]
    return TorrentStatus(
        state=state, has_metadata=bool(st.has_metadata), progress=float(st.progress),
        wanted=int(st.total_wanted), wanted_done=int(st.total_wanted_done),
        downloaded=int(st.total_payload_download), uploaded=int(st.total_payload_upload),
        download_rate=int(st.download_payload_rate), upload_rate=int(st.upload_payload_rate),
        peers=int(st.num_peers), seeds=int(st.num_seeds), finished=bool(st.is_finished),
        seeding=bool(st.is_seeding), paused=bool(st.flags & lt.torrent_flags.paused),
        error=st.errc.message() if st.errc.value() else "", checking=state in _CHECKING,
    )


class Torrent:
    """One torrent in the engine: its handle, and the events about it."""

    def __init__(self, engine: "Engine", handle, info_hash: str):
        self.engine = engine
        self.handle = handle
        self.info_hash = info_hash
        self._send, self.events = trio.open_memory_channel[Event](EVENT_BUFFER)
        self.dropped = 0
        # a read-only engine's own DHT peer lookups (Engine._look_up_peers)
        self._next_lookup = float("-inf")
        self._lookup_gap = 0.0

    def _post(self, event: Event) -> None:
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.dropped += 1

    # -- state ------------------------------------------------------------------------
    def status(self) -> TorrentStatus:
        return _status(self.handle.status())

    @property
    def has_metadata(self) -> bool:
        return bool(self.handle.status().has_metadata)

    def info_section(self) -> bytes:
        """The bencoded info dictionary (the torrent's metadata)."""
        ti = self.handle.torrent_file()
        if ti is None:
            raise EngineError(f"{self.info_hash}: no metadata yet")
        return bytes(ti.info_section())

    def files(self) -> list[tuple[str, int]]:
        """(path relative to the save path, size) of every file, in torrent order."""
        ti = self.handle.torrent_file()
        if ti is None:
            raise EngineError(f"{self.info_hash}: no metadata yet")
        fs = ti.files()
        return [(fs.file_path(i), fs.file_size(i)) for i in range(fs.num_files())]

    def file_progress(self) -> list[int]:
        """Bytes of each file that are in verified pieces."""
        return list(self.handle.file_progress(lt.torrent_handle.piece_granularity))

    def trackers(self) -> list[str]:
        return [t["url"] for t in self.handle.trackers()]

    # -- control ----------------------------------------------------------------------
    def prioritize_files(self, priorities: Iterable[int]) -> None:
        self.handle.prioritize_files([int(p) for p in priorities])

    def file_priorities(self) -> list[int]:
        return [int(p) for p in self.handle.get_file_priorities()]

    async def set_file_priorities(self, priorities: Iterable[int], timeout: float = 30.0) -> None:
        """Set file priorities; when a file goes from priority 0 to another, wait until
        libtorrent applied them (its file_prio alert): only then are pieces of files that
        had priority 0 moved out of its part file.  No file leaving 0: no wait (libtorrent
        took 1-1.5 s to say so while a download was running, measured)."""
        new = [int(p) for p in priorities]
        old = self.file_priorities()
        if new == old:
            return
        raised = len(new) != len(old) or any(o == 0 and n != 0 for o, n in zip(old, new))
        if raised:
            # events are hints (state is read from libtorrent): drop what is queued, so
            # that an earlier call's file_prio cannot end this wait
            while True:
                try:
                    self.events.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
        self.handle.prioritize_files(new)
        if not raised:
            return
        with trio.move_on_after(timeout):
            while (await self.events.receive()).kind != "file_prio":
                pass
            return
        raise EngineError(f"{self.info_hash}: file priorities not applied after {timeout:g}s")

    async def flush(self, timeout: float = 30.0) -> None:
        """Wait until what libtorrent verified is written to the files: a piece counts as had
        as soon as its hash checks out, while its bytes may still be queued for writing."""
        self.handle.flush_cache()
        with trio.move_on_after(timeout):
            while (await self.events.receive()).kind != "cache_flushed":
                pass
            return
        raise EngineError(f"{self.info_hash}: its files were not written after {timeout:g}s")

    def set_sequential(self, on: bool = True) -> None:
        if on:
            self.handle.set_flags(lt.torrent_flags.sequential_download)
        else:
            self.handle.unset_flags(lt.torrent_flags.sequential_download)

    def connect_peer(self, host: str, port: int) -> None:
        self.handle.connect_peer((host, port))

    def reannounce(self) -> None:
        """Ask the trackers (and the DHT) for peers again, now."""
        self.handle.force_reannounce(0, -1, lt.reannounce_flags_t.ignore_min_interval)
        self._next_lookup, self._lookup_gap = float("-inf"), 0.0

    def resume(self) -> None:
        self.handle.resume()

    # -- waits --------------------------------------------------------------------------
    async def wait_for(self, done: Callable[[], bool], timeout: float, what: str, *, poll: float = 0.25) -> None:
        """Wait until done() holds, re-checked on every event about this torrent and every
        `poll` seconds; EngineError naming `what` after `timeout` seconds."""
        with trio.move_on_after(timeout) as scope:
            while not done():
                with trio.move_on_after(poll):
                    await self.events.receive()
        if scope.cancelled_caught and not done():
            raise EngineError(f"{self.info_hash}: {what}: nothing after {timeout:g}s")


class Engine:
    """The libtorrent session as a trio service: `engine = await nursery.start(Engine(cfg).run)`."""

    def __init__(self, config: EngineConfig | None = None):
        self.config = config or EngineConfig()
        self.session = None
        self.torrents: dict[str, Torrent] = {}
        self._listeners: list[trio.MemorySendChannel] = []
        self._stop = threading.Event()
        self.errors: list[Event] = []
        self._udp_listening = False  # a UDP socket is open (the DHT's)
        self._dht_ready = False  # the DHT's routing table had a node

    @property
    def listen_port(self) -> int:
        return int(self.session.listen_port())

    def _dispatch(self, alerts: list) -> None:
        for alert in alerts:
            if type(alert).__name__ == "dht_get_peers_reply_alert":
                self._dial_found(alert)
            try:
                event = _event(alert)
            except Exception:  # an alert type the bindings expose oddly: keep the message
                event = Event(type(alert).__name__, alert.message())
            if event.kind in ("listen_failed", "torrent_error", "file_error") or event.error:
                log.debug("libtorrent: %s", event.message)
            if event.kind == "listen_failed":
                self.errors.append(event)
            elif event.kind == "listen_succeeded" and getattr(alert, "socket_type", None) in _UDP_SOCKETS:
                self._udp_listening = True
            if event.info_hash is not None and event.info_hash in self.torrents:
                self.torrents[event.info_hash]._post(event)
            for send in list(self._listeners):
                try:
                    send.send_nowait(event)
                except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

    @property
    def _own_peer_lookups(self) -> bool:
        """The engine's torrents do not use the DHT themselves; the engine asks for their peers."""
        return self.config.dht and self.config.dht_read_only

    def _look_up_peers_now(self) -> None:
        """Start a DHT peer lookup (get_peers, no announce) for each torrent whose turn it is."""
        now = trio.current_time()
        most = PRIVATE_DHT_ANNOUNCE if self.config.private_dht else PEER_LOOKUP_MAX
        for t in list(self.torrents.values()):
            if now < t._next_lookup:
                continue
            self.session.dht_get_peers(lt.sha1_hash(bytes.fromhex(t.info_hash)))
            t._lookup_gap = min(max(2 * t._lookup_gap, 1.0), most)
            t._next_lookup = now + t._lookup_gap

    async def _look_up_peers(self) -> None:
        # a lookup before the routing table has a node finds nobody, and would use up the
        # quick retries while the DHT bootstraps (public routers: seconds)
        await self._need_dht(60.0)
        while True:
            self._look_up_peers_now()
            await trio.sleep(0.25)

    def _dial_found(self, alert) -> None:
        t = self.torrents.get(str(alert.info_hash))
        if t is None:
            return
        for peer in alert.peers():
            try:
                t.handle.connect_peer(peer)
            except (RuntimeError, TypeError, ValueError) as exc:  # an address libtorrent cannot dial
                log.debug("libtorrent: cannot dial %s found in the DHT: %s", peer, exc)

    def listen(self, buffer: int = EVENT_BUFFER) -> trio.MemoryReceiveChannel:
        """A channel of every event from now on (close it when done)."""
        send, recv = trio.open_memory_channel[Event](buffer)
        self._listeners.append(send)
        return recv

    def _pump(self, token) -> None:
        while not self._stop.is_set():
            if self.session.wait_for_alert(PUMP_WAIT_MS) is None:
                continue
            alerts = self.session.pop_alerts()
            if not alerts:
                continue
            try:
                # blocks until the trio side copied the alerts (they die at the next pop)
                trio.from_thread.run_sync(self._dispatch, alerts, trio_token=token)
            except trio.RunFinishedError:
                return

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            # flags: the default plugins (ut_metadata, ut_pex, smart_ban)
            self.session = lt.session(self.config.settings())
        except RuntimeError as exc:
            raise EngineError(f"cannot start the BitTorrent engine: {exc}") from None
        token = trio.lowlevel.current_trio_token()
        pump = threading.Thread(target=self._pump, args=(token,), name="libtorrent-alerts", daemon=True)
        pump.start()
        try:
            await self._wait_listening()
            log.debug("engine listening on port %d", self.listen_port)
            await self._bootstrap_dht()
            async with trio.open_nursery() as nursery:
                if self._own_peer_lookups:
                    nursery.start_soon(self._look_up_peers)
                task_status.started(self)
                await trio.sleep_forever()
        finally:
            self._stop.set()
            # wake the pump now: blocked in wait_for_alert with nothing to come, it would
            # see _stop only PUMP_WAIT_MS later (git waits for a helper's engine to close:
            # 200 ms at the end of two clones in three, measured)
            self.session.post_session_stats()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(pump.join, 2 * PUMP_WAIT_MS / 1000 + 5)
                for t in list(self.torrents.values()):
                    t._send.close()
                self.torrents.clear()
                session, self.session = self.session, None
                await trio.to_thread.run_sync(self._close_session, session)
                log.debug("engine closed")

    @staticmethod
    def _close_session(session) -> None:
        session.pause()
        del session  # the destructor stops the network thread (it waits for tracker stops, bounded by libtorrent)

    async def _wait_listening(self, timeout: float = 10.0) -> None:
        with trio.move_on_after(timeout):
            while not self.session.is_listening():
                if self.errors:
                    break
                await trio.sleep(0.02)
        if not self.session.is_listening():
            why = "; ".join(e.message for e in self.errors) or "no listen socket"
            raise EngineError(f"the BitTorrent engine cannot listen on {','.join(self.config.listen)}: {why}")

    async def _bootstrap_dht(self, timeout: float = 5.0) -> None:
        """Ping the given DHT nodes once our UDP socket is open.  The bootstrap libtorrent
        starts by itself may go out before it is, and is then lost until a retry minutes
        later: a room's DHT started that way stayed empty (measured, docs/remote-helper.md)."""
        if not (self.config.dht and self.config.dht_nodes):
            return
        with trio.move_on_after(timeout):
            while not self._udp_listening:
                await trio.sleep(0.02)
        for node in self.config.dht_nodes:
            host, _, port = node.rpartition(":")
            self.add_dht_node(host.strip("[]"), int(port))

    # -- torrents -----------------------------------------------------------------------
    def _params(self, save_path: str, *, paused: bool, seed_mode: bool, sequential: bool,
                file_priorities: list[int] | None, renamed: dict[int, str] | None):
        params = lt.add_torrent_params()
        params.save_path = save_path
        flags = lt.torrent_flags.default_flags & ~lt.torrent_flags.auto_managed & ~lt.torrent_flags.paused
        if paused:
            flags |= lt.torrent_flags.paused
        if seed_mode:
            flags |= lt.torrent_flags.seed_mode
        if sequential:
            flags |= lt.torrent_flags.sequential_download
        if self._own_peer_lookups:
            flags |= lt.torrent_flags.disable_dht  # no announce_peer: see EngineConfig.dht_read_only
        params.flags = flags
        if file_priorities is not None:
            params.file_priorities = [int(p) for p in file_priorities]
        if renamed:
            params.renamed_files = {int(k): v for k, v in renamed.items()}
        return params

    async def add_torrent(self, torrent_bytes: bytes, save_path: str, *, trackers: Iterable[str] = (),
                          paused: bool = False, seed_mode: bool = False, sequential: bool = False,
                          file_priorities: list[int] | None = None,
                          renamed: dict[int, str] | None = None, verified: bool = False) -> Torrent:
        """Add a .torrent (its bytes) downloading into / seeding from save_path.

        seed_mode: the files are taken as complete, and each piece is hashed the first time
        a peer asks for it (a piece that fails makes libtorrent check every file).  verified
        (with seed_mode): not even that, every piece counts as hashed already; only for files
        whose piece hashes were computed from these very bytes by whoever serves them (our
        mount's own torrents), where hashing again would only read everything twice."""
        try:
            ti = lt.torrent_info(lt.bdecode(torrent_bytes))
        except (RuntimeError, TypeError, ValueError) as exc:
            raise EngineError(f"libtorrent refuses the torrent: {exc}") from None
        params = self._params(save_path, paused=paused, seed_mode=seed_mode, sequential=sequential,
                              file_priorities=file_priorities, renamed=renamed)
        params.ti = ti
        if seed_mode and verified:
            params.verified_pieces = [True] * ti.num_pieces()
        for url in trackers:
            ti.add_tracker(url)
        return self._add(params)

    async def add_magnet(self, uri: str, save_path: str, *, paused: bool = False, sequential: bool = False,
                         dont_download: bool = False) -> Torrent:
        """Add a magnet link; its metadata comes from peers (BEP 9).  dont_download: every file
        starts at priority 0 when the metadata arrives (the caller picks files then)."""
        try:
            params = lt.parse_magnet_uri(uri)
        except RuntimeError as exc:
            raise EngineError(f"libtorrent refuses the magnet link: {exc}") from None
        base = self._params(save_path, paused=paused, seed_mode=False, sequential=sequential,
                            file_priorities=None, renamed=None)
        params.save_path, params.flags = base.save_path, base.flags
        if dont_download:
            params.flags |= lt.torrent_flags.default_dont_download
        return self._add(params)

    def _add(self, params) -> Torrent:
        try:
            handle = self.session.add_torrent(params)
        except RuntimeError as exc:
            raise EngineError(f"libtorrent cannot add the torrent: {exc}") from None
        info_hash = str(handle.info_hashes().v1)
        old = self.torrents.get(info_hash)
        if old is not None:
            return old
        t = Torrent(self, handle, info_hash)
        self.torrents[info_hash] = t
        if self._own_peer_lookups and self._dht_ready:
            self._look_up_peers_now()
        return t

    def remove(self, torrent: Torrent) -> None:
        """Stop the torrent; its files stay where they are."""
        if self.torrents.pop(torrent.info_hash, None) is not None:
            self.session.remove_torrent(torrent.handle)
            torrent._send.close()

    def add_dht_node(self, host: str, port: int) -> None:
        self.session.add_dht_node((host, port))

    def dht_table(self) -> list[tuple[str, int]]:
        """(address, port) of every node in the DHT's routing table: what libtorrent would save
        to start from next time (its session state; the bindings give no other list of it)."""
        params = self.session.session_state(lt.save_state_flags_t.save_dht_state)
        state = lt.write_session_params(params, lt.save_state_flags_t.save_dht_state).get(b"dht state", {})
        out = []
        for compact in [*state.get(b"nodes", []), *state.get(b"nodes6", [])]:
            host, port = compact[:-2], int.from_bytes(compact[-2:], "big")
            out.append((str(ipaddress.ip_address(host)), port))
        return out

    # -- BEP 44 mutable items (BEP 46 names) -------------------------------------------------
    async def _need_dht(self, timeout: float) -> None:
        """The DHT is on; wait (at most `timeout`) until its routing table has a node: a put or
        lookup started before would find nobody.  (libtorrent's bootstrap alert is no sign:
        it came at once in one run and after more than 15 s in another, measured.)"""
        if not self.config.dht:
            raise EngineError("the DHT is off in this engine (EngineConfig.dht)")
        if self._dht_ready:
            return
        events = self.listen()
        try:
            with trio.move_on_after(timeout):
                while True:
                    # ping the given nodes again: pings sent while the DHT was still starting
                    # are lost (the first engine started after a room's nodes sat with an
                    # empty table for more than 15 s, measured; a second one at once)
                    for node in self.config.dht_nodes:
                        host, _, port = node.rpartition(":")
                        self.add_dht_node(host.strip("[]"), int(port))
                    self.session.post_dht_stats()
                    nodes = None
                    with trio.move_on_after(1.0):
                        async for event in events:
                            if event.kind == "dht_stats":
                                nodes = event.nodes
                                break
                    if nodes:
                        self._dht_ready = True
                        return
                    await trio.sleep(0.25)
        finally:
            events.close()

    async def put_mutable(self, key: SigningKey, salt: bytes, data: bytes, timeout: float = 30.0) -> tuple[int, int]:
        """Store `data` (a byte string: all the Python bindings can put) under key and salt in
        the DHT; (its sequence number, how many nodes stored it).  libtorrent first looks the
        item up and takes one more than the highest sequence number it finds, so a new put
        always supersedes what the DHT holds; EngineError when no node stored it."""
        await self._need_dht(timeout / 2)
        public = key.public
        events = self.listen()
        try:
            self.session.dht_put_mutable_item(key.expanded, public, data, salt)
            with trio.move_on_after(timeout):
                async for event in events:
                    if event.kind == "dht_put" and event.item.public_key == public and event.item.salt == salt:
                        if not event.successes:
                            raise EngineError(f"no DHT node stored the item {public.hex()}/{salt.decode(errors='replace')} "
                                              f"(sequence number {event.item.seq}): no DHT nodes reached, "
                                              "or they refused it")
                        return event.item.seq, event.successes
        finally:
            events.close()
        raise EngineError(f"the DHT put of {public.hex()}/{salt.decode(errors='replace')} did not finish "
                          f"within {timeout:g}s")

    async def get_mutable(self, public_key: bytes, salt: bytes, timeout: float = 30.0) -> MutableItem | None:
        """Look up the item under public_key and salt: the one with the highest sequence number
        the lookup found (libtorrent checked its signature), or None when the DHT holds none.
        Waits for the lookup's end (its authoritative answer); at `timeout`, the best item
        seen so far, else EngineError."""
        await self._need_dht(timeout / 2)
        events = self.listen()
        best: MutableItem | None = None
        try:
            self.session.dht_get_mutable_item(public_key, salt)
            with trio.move_on_after(timeout):
                async for event in events:
                    if event.kind != "dht_mutable_item":
                        continue
                    item = event.item
                    if item.public_key != public_key or item.salt != salt:
                        continue
                    # "nothing found" is an authoritative answer with sequence number 0 and an
                    # empty value (its signature bytes are left over, not zero: seen on 2.1.1)
                    found = item.seq > 0 or item.value != b"0:"
                    if found and (best is None or item.seq >= best.seq):
                        best = item
                    if item.authoritative:
                        return best
        finally:
            events.close()
        if best is not None:
            return best
        raise EngineError(f"the DHT lookup of {public_key.hex()}/{salt.decode(errors='replace')} found nothing "
                          f"within {timeout:g}s")


def make_torrent_file(info_section: bytes, trackers: Iterable[str] = (), web_seeds: Iterable[str] = ()) -> bytes:
    """A .torrent around an info dictionary received as metadata (its bytes kept as they are)."""
    from . import bencode

    top = {}
    urls = [u for u in trackers]
    if urls:
        top[b"announce"] = urls[0].encode()
        top[b"announce-list"] = [[u.encode()] for u in urls]
    seeds = [u.encode() for u in web_seeds]
    if seeds:
        top[b"url-list"] = seeds
    # bencoded dicts sort their keys: "info" goes between "announce-list" and "url-list"
    before = b"".join(bencode.encode({k: v})[1:-1] for k, v in sorted(top.items()) if k < b"info")
    after = b"".join(bencode.encode({k: v})[1:-1] for k, v in sorted(top.items()) if k > b"info")
    return b"d" + before + b"4:info" + info_section + after + b"e"

