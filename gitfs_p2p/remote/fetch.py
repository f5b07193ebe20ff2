"""Fetching a gitp2p torrent into a repository with our own engine (torrentcore.session).

`Fetcher.open()` gets the torrent (or its metadata, for a magnet link) and then only
the ref manifest, the last file, so git can be told the refs (`list`).  `fetch()` asks
for the packs of the objects the repository lacks (file priorities), in torrent
order, which is parents first (sequential download), and hands each pack to the
watcher's importer as soon as its last piece is verified: by hard-linking it into a
directory that holds only complete files, so the importer never sees a file being
written.  When the last piece lands, little is left to import.

Nothing here moves a ref: git does, after `fetch` returns, and only after checking
that the new tips are connected.  Objects are imported through every check of the
watcher (docs/watcher.md), and what was received stays in the pack cache, so the
repository can seed the same torrent at once (`gitp2p seed`).

Where things are, under GIT_DIR/gitp2p/:
  fetch/<info-hash>/packs/...   the engine's download (kept if interrupted: resumed)
  fetch/<info-hash>.ready/      complete packs, hard links, for the importer
  received/<info-hash>.torrent, .gitp2p-refs (and .gitp2p-sig, if signed): the torrent
                                fetched last per remote

A signed manifest (its signature is the torrent's last file) is checked before git
hears of any ref (remote/signed.py, docs/trust.md).  A `gitp2p://KEY/NAME` address is
first looked up in the DHT (trust/names.py): the item's info-hash is then fetched as a
magnet link, and its sequence number recorded once the manifest passed its checks.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Collection

import trio

from torrentcore.magnet import magnet_link, parse_magnet
from torrentcore.session import Engine, EngineConfig, EngineError, Torrent, make_torrent_file

from ..cli.common import human_size
from ..durable import write_durably
from ..errors import FetchError
from ..git.runner import run_git
from ..pack.manifest import ManifestError, RefManifest
from ..trust.names import AcceptedNames, check_item
from ..trust.sigfile import SIGNATURE_SUFFIX
from ..trust.verify import signature_policy
from .address import Address, Layout, check_layout, load_torrent
from .signed import check_fetched

if TYPE_CHECKING:
    from ..receive.importer import Importer

__all__ = ["Options", "options_from_config", "Progress", "Fetcher", "engine_config"]

log = logging.getLogger(__name__)

#: No new byte, no metadata and no manifest for this long: give up (gitp2p.timeout).
DEFAULT_TIMEOUT = 60.0
#: The largest metadata (info dictionary) accepted from peers for a magnet link.
MAX_METADATA = 64 << 20
TICK = 0.25


@dataclass
class Options:
    """How the helper reaches peers; read from git config (`gitp2p.*`), see docs/remote-helper.md."""

    listen: tuple[str, ...] = ("0.0.0.0:0", "[::]:0")
    lan: bool = False
    dht: bool = False
    dht_nodes: tuple[str, ...] = ()
    peers: tuple[tuple[str, int], ...] = ()
    utp: bool = True
    timeout: float = DEFAULT_TIMEOUT
    progress: bool = True
    verbosity: int = 1


def _host_port(text: str, what: str, *, any_port: bool = False) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not (0 if any_port else 1) <= int(port) < 65536:
        raise FetchError(f"{what} {text!r} is not HOST:PORT")
    return host, int(port)


def _config(git_dir: str, key: str, *, all_values: bool = False, kind: str | None = None) -> list[str]:
    args = ["config", "--get-all" if all_values else "--get"]
    if kind:
        args.insert(1, f"--type={kind}")
    out = run_git(*args, key, git_dir=git_dir, check=False)
    return [line for line in out.splitlines() if line]


def _config_matching(git_dir: str, pattern: str, *, kind: str | None = None) -> dict[str, list[str]]:
    """Every value of the keys matching pattern (git lowercases section and key names), in
    git's order (the last one wins): one git process for several keys."""
    args = ["config", "--null", "--get-regexp", pattern]
    if kind:
        args.insert(1, f"--type={kind}")
    found: dict[str, list[str]] = {}
    for item in run_git(*args, git_dir=git_dir, check=False).split("\0"):
        key, _, value = item.partition("\n")
        if value:  # (a key without a value: as `--get-all`'s empty line, nothing)
            found.setdefault(key, []).append(value)
    return found


def options_from_config(git_dir: str) -> Options:
    """Options from `git config` (repository, global, and `git -c`): gitp2p.listen, lan, dht,
    dhtNode, peer, utp, timeout.  Two git processes (one for the booleans, which git reads
    as git does), not one a key: they run before the engine starts."""
    opts = Options()
    values = _config_matching(git_dir, r"^gitp2p\.(listen|dhtnode|peer|timeout)$")
    flags = _config_matching(git_dir, r"^gitp2p\.(lan|dht|utp)$", kind="bool")
    listen = values.get("gitp2p.listen", [])
    if listen:
        for item in listen:
            _host_port(item, "gitp2p.listen", any_port=True)
        opts.listen = tuple(listen)
    for key, attr in (("gitp2p.lan", "lan"), ("gitp2p.dht", "dht"), ("gitp2p.utp", "utp")):
        value = flags.get(key)
        if value:
            setattr(opts, attr, value[-1] == "true")
    nodes = values.get("gitp2p.dhtnode", [])
    for node in nodes:
        _host_port(node, "gitp2p.dhtNode")
    if nodes:
        opts.dht = True
        opts.dht_nodes = tuple(nodes)
    opts.peers = tuple(_host_port(p, "gitp2p.peer") for p in values.get("gitp2p.peer", []))
    timeout = values.get("gitp2p.timeout")
    if timeout:
        try:
            opts.timeout = float(timeout[-1])
        except ValueError:
            raise FetchError(f"gitp2p.timeout {timeout[-1]!r} is not a number of seconds") from None
        if not opts.timeout > 0:
            raise FetchError("gitp2p.timeout must be more than 0 seconds")
    return opts


def engine_config(opts: Options) -> EngineConfig:
    hosts = [h.rpartition(":")[0].strip("[]") for h in opts.listen]
    loopback = all(h.startswith("127.") or h == "::1" for h in hosts)
    return EngineConfig(listen=opts.listen, lsd=opts.lan, dht=opts.dht, dht_nodes=opts.dht_nodes,
                        utp=opts.utp, loopback=loopback,
                        # a short-lived node: stay out of the DHT's routing tables (BEP 43), so
                        # that lookups of those who stay do not wait for us after we left
                        dht_read_only=True,
                        # the torrent is "finished" once the manifest is in (list), before fetch
                        # asks for packs: keep the seeds connected meanwhile
                        extra={"max_metadata_size": MAX_METADATA, "close_redundant_connections": False})


class Progress:
    """Progress lines on stderr the way git prints them (`Receiving objects:  45% (3/7), ...`)."""

    def __init__(self, enabled: bool, stream=None, *, every: float = 0.5):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.every = every
        self._last = 0.0
        self._open = False

    def line(self, text: str) -> None:
        """A line of its own (a phase, a note)."""
        if self.enabled:
            self._end()
            self.stream.write(text + "\n")
            self.stream.flush()

    def update(self, title: str, done: int, total: int, nbytes: int | None = None, rate: float | None = None,
               *, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not final and now - self._last < self.every:
            return
        self._last = now
        pct = 100 * done // total if total else 100
        text = f"{title}: {pct:3d}% ({done}/{total})"
        if nbytes is not None:
            text += f", {human_size(nbytes)}"
            if rate is not None:
                text += f" | {human_size(rate)}/s"
        if final:
            text += ", done."
        self.stream.write(text + ("\n" if final else "\r"))
        self.stream.flush()
        self._open = not final

    def _end(self) -> None:
        if self._open:
            self.stream.write("\n")
            self._open = False


def _no_peers(info_hash: str, what: str, timeout: float) -> FetchError:
    return FetchError(
        f"no peers sent {what} of {info_hash} within {timeout:g}s; try a tracker (tr= in the magnet "
        "link, or a .torrent that names one), `git config gitp2p.lan true` (peers on this network), "
        "a web seed (ws=), or `git config gitp2p.peer HOST:PORT`"
    )


@dataclass
class _Wanted:
    index: int
    oid: str
    size: int
    linked: bool = False


@dataclass
class FetchResult:
    packs: int = 0  # packs downloaded and imported
    skipped: int = 0  # packs of objects the repository had
    bytes: int = 0  # of the packs downloaded
    received: int = 0  # payload bytes received, from the manifest on (pieces span files)
    refused: list[tuple[str, str]] = field(default_factory=list)
    lock: str | None = None  # the .keep of the pack holding the tips vouched for (fetch(vouch=...))


def _in_thread(name: str, fn: Callable, *args) -> concurrent.futures.Future:
    """fn(*args) in a thread of its own, started now; its result, or its exception, in the Future."""
    future: concurrent.futures.Future = concurrent.futures.Future()

    def run() -> None:
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: B036 - handed to whoever waits for the Future
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


class Fetcher:
    """One gitp2p address, fetched into one repository (see the module docstring)."""

    def __init__(self, engine: Engine, git_dir: str, address: Address, opts: Options, progress: Progress,
                 *, remote: str | None = None, report: Callable[[str], None] | None = None):
        self.engine = engine
        self.git_dir = os.path.realpath(git_dir)
        self.address = address
        self.opts = opts
        self.progress = progress
        self.remote = remote
        self.report = report or (lambda text: None)
        self.torrent: Torrent | None = None
        self.torrent_bytes: bytes | None = None  # file or URL: as read; magnet: None
        self.layout: Layout | None = None
        self.manifest: RefManifest | None = None
        self.manifest_bytes = b""
        self.signature_bytes: bytes | None = None  # the manifest's signature file, if the torrent has one
        self.trackers: tuple[str, ...] = ()
        self.web_seeds: tuple[str, ...] = ()
        self._imported = 0  # packs the importer wrote in this fetch (progress)
        self._files: set[str] = set()  # the ids the wanted files are named for (a roll-up: its boundary)
        self._importer: concurrent.futures.Future | None = None  # _start_importer
        self.cloning = False  # the repository had no ref when the torrent was opened
        self.resolved: tuple[int, str] | None = None  # a name's item: (sequence number, info-hash)

    # -- paths ------------------------------------------------------------------------
    @property
    def base(self) -> str:
        return os.path.join(self.git_dir, "gitp2p", "fetch")

    def _save_path(self) -> str:
        return os.path.join(self.base, self.torrent.info_hash)

    def _ready_dir(self) -> str:
        return os.path.join(self.base, self.torrent.info_hash + ".ready")

    def _file_path(self, index: int) -> str:
        rel = self.torrent.files()[index][0]
        return os.path.join(self._save_path(), rel)

    # -- open: the torrent and its manifest -------------------------------------------
    async def open(self) -> RefManifest:
        """Load the torrent (metadata from peers for a magnet link), then download only the
        manifest; the refs it names."""
        os.makedirs(self.base, exist_ok=True)
        if self.address.kind == "name":
            await self._open_magnet(await self._resolve())
        elif self.address.kind == "magnet":
            await self._open_magnet(self.address.text)
        else:
            self.torrent_bytes, self.layout = await trio.to_thread.run_sync(load_torrent, self.address)
            parsed = self.layout.torrent
            self.trackers, self.web_seeds = parsed.trackers, parsed.web_seeds
            ih = parsed.info_hash.hex()
            priorities, prefetch = await self._first_priorities()
            self.torrent = await self.engine.add_torrent(
                self.torrent_bytes, os.path.join(self.base, ih), file_priorities=priorities, sequential=prefetch)
            log.debug("torrent added")
            self._dial()
        self.report(f"gitp2p: torrent {self.torrent.info_hash}: {len(self.layout.packs)} packs")
        await self._wait_manifest()
        return self.manifest

    async def _resolve(self) -> str:
        """The magnet link of the torrent a gitp2p://KEY/NAME names now (the DHT item with the
        highest sequence number, checked); FetchError (NameRefused) if it may not be believed."""
        name = self.address.name
        self.progress.line(f"gitp2p: looking up {name.address} in the DHT")
        try:
            item = await self.engine.get_mutable(name.public_key, name.salt, timeout=self.opts.timeout)
        except EngineError as exc:
            raise FetchError(f"{name.address}: {exc}") from None
        seq, ih = await trio.to_thread.run_sync(lambda: check_item(name, item, AcceptedNames(self.git_dir)))
        self.resolved = (seq, ih)
        self.report(f"gitp2p: {name.address} names torrent {ih} (sequence number {seq})")
        return magnet_link(ih, name="packs")

    async def _open_magnet(self, uri: str) -> None:
        magnet = parse_magnet(uri)
        self.trackers, self.web_seeds = magnet.trackers, magnet.web_seeds
        ih = magnet.info_hash.hex()
        self.torrent = await self.engine.add_magnet(uri, os.path.join(self.base, ih),
                                                    dont_download=True)
        log.debug("magnet link added")
        self._dial()
        self.progress.line(f"gitp2p: looking for peers of {ih}")
        try:
            await self.torrent.wait_for(lambda: self.torrent.has_metadata, self.opts.timeout, "metadata")
        except EngineError:
            raise _no_peers(ih, "the torrent's metadata", self.opts.timeout) from None
        log.debug("metadata received")
        self.layout = check_layout(self.torrent.info_section(), f"metadata of {ih}", info_only=True)
        priorities, prefetch = await self._first_priorities()
        self.torrent.prioritize_files(priorities)
        self.torrent.set_sequential(prefetch)

    async def _first_priorities(self) -> tuple[list[int], bool]:
        """The manifest first.  Into a repository with no ref yet (a clone), the packs too,
        at the lowest priority and parents first: fetch() takes every pack of the torrent
        the repository lacks, there nearly all (those a killed earlier fetch imported go
        back to priority 0 then), and the import can start with the packs that came
        during `list`.  Elsewhere only the manifest: fetch() asks for what is lacking."""
        refs = await trio.to_thread.run_sync(
            lambda: run_git("for-each-ref", "--count=1", "--format=%(refname)", git_dir=self.git_dir, check=False))
        prefetch = self.cloning = not refs.strip()
        priorities = [1 if prefetch else 0] * self.layout.count
        priorities[self.layout.manifest] = 7
        if self.layout.signature is not None:
            priorities[self.layout.signature] = 7
        return priorities, prefetch

    def _dial(self) -> None:
        for host, port in self.opts.peers:
            self.torrent.connect_peer(host, port)

    async def _wait_manifest(self) -> None:
        t = self.torrent
        self._start_importer()
        index, sig = self.layout.manifest, self.layout.signature
        files = t.files()
        # the repository's signature policy (five `git config`) is read while the manifest comes
        policy = _in_thread("gitp2p-policy", signature_policy, self.git_dir)
        await self._stalling(lambda: all(t.file_progress()[i] >= files[i][1] for i in (index, sig) if i is not None),
                             "the ref manifest")
        await self._flush()
        log.debug("manifest received")
        path = self._file_path(index)
        with open(path, "rb") as fh:
            self.manifest_bytes = fh.read()
        try:
            self.manifest = RefManifest.from_bytes(self.manifest_bytes)
        except ManifestError as exc:
            raise FetchError(f"torrent {t.info_hash}: bad ref manifest: {exc}") from None
        if sig is not None:
            with open(self._file_path(sig), "rb") as fh:
                self.signature_bytes = fh.read(files[sig][1])
        policy = await trio.to_thread.run_sync(policy.result, abandon_on_cancel=True)  # (or its GitfsError)
        try:
            await trio.to_thread.run_sync(
                check_fetched, self.git_dir, self.layout.manifest_name, self.manifest_bytes, self.signature_bytes,
                t.info_hash, self._notice, policy)
        except FetchError:
            self.clean()  # a refused torrent is not worth resuming
            raise
        log.debug("manifest checked: %d refs", len(self.manifest.refs))
        if self.resolved is not None:  # the name's item led to a manifest we take: remember it
            seq, ih = self.resolved
            await trio.to_thread.run_sync(lambda: AcceptedNames(self.git_dir).record(self.address.name, seq, ih))

    def _notice(self, text: str) -> None:
        """A line for people (a signing key seen, a signature verified), unless git was told -q."""
        if self.opts.verbosity > 0:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    async def _stalling(self, done: Callable[[], bool], what: str, on_tick=None) -> None:
        """Wait for done(), failing after opts.timeout seconds in which no byte arrived."""
        t = self.torrent
        last_bytes, last_change = -1, time.monotonic()
        while not done():
            st = t.status()
            if st.error:
                raise FetchError(f"torrent {t.info_hash}: {st.error}")
            got = st.wanted_done + st.downloaded
            if got != last_bytes or st.checking:
                last_bytes, last_change = got, time.monotonic()
            elif time.monotonic() - last_change > self.opts.timeout:
                raise _no_peers(t.info_hash, what if st.peers == 0 else f"{what} (peers connected, but no data)",
                                self.opts.timeout)
            if on_tick is not None:
                await on_tick()
            with trio.move_on_after(TICK):
                await t.events.receive()

    # -- fetch: the packs ---------------------------------------------------------------
    def _present(self, importer: Importer, ids: list[str]) -> set[str]:
        """Objects whose packs need not be downloaded: imported by gitp2p before (their history
        was checked), or reachable from a ref (complete, as git fetch trusts them)."""
        importer.presence.ask_first(ids)
        have = {oid for oid in ids if importer.is_imported(oid)}
        rest = [oid for oid in ids if oid not in have and importer.presence.type_of(oid) is not None]
        if rest:
            reachable = set(run_git("rev-list", "--all", git_dir=self.git_dir, check=False).split())
            reachable |= set(run_git("for-each-ref", "--format=%(objectname)", git_dir=self.git_dir,
                                     check=False).split())
            have |= {oid for oid in rest if oid in reachable}
        return have

    async def fetch(self, *, vouch: Collection[str] = ()) -> FetchResult:
        """Download the packs the repository lacks and import them as they complete.

        vouch: the tips git will set refs to, when git asked us to check the connectivity
        of a clone (`option check-connectivity`); see _lock_tips for when result.lock says
        they are connected."""
        t = self.torrent
        result = FetchResult()
        self._imported = 0
        self._files = files = set()
        self._start_importer()
        importer = await trio.to_thread.run_sync(self._importer.result, abandon_on_cancel=True)
        self._importer = None
        try:
            ids = [oid for _, oid, _ in self.layout.packs]
            have = await trio.to_thread.run_sync(self._present, importer, ids)
            wanted = [_Wanted(i, oid, size) for i, oid, size in self.layout.packs if oid not in have]
            files.update(w.oid for w in wanted)
            result.skipped = len(ids) - len(wanted)
            priorities = [0] * self.layout.count
            for w in wanted:
                priorities[w.index] = 4
            priorities[self.layout.manifest] = 4
            if self.layout.signature is not None:
                priorities[self.layout.signature] = 4
            await self._prioritize(priorities)
            t.set_sequential(True)
            if wanted:  # peers that left while only the manifest was wanted: find them again
                t.reannounce()
                self._dial()
            if wanted:
                await self._download(importer, wanted, result)
            result.packs = len(wanted)
            if vouch and self.cloning:
                result.lock = await trio.to_thread.run_sync(self._lock_tips, importer, sorted(vouch))
                log.debug("tips pack: %s", result.lock)
        finally:
            await trio.to_thread.run_sync(importer.close)
        return result

    def _start_importer(self) -> None:
        """Build fetch()'s importer in a thread of its own, from the time the torrent is
        known: importing its modules (dulwich, the checks, SQLite) and opening the
        repository (a git process, config) take 0.1-0.15 s, which then pass while the
        network brings the manifest rather than after git asks for the packs."""
        if self._importer is not None:
            return
        ready = self._ready_dir()
        os.makedirs(ready, exist_ok=True)

        def build() -> Importer:
            from ..receive.importer import Importer

            importer = Importer(ready, self.git_dir, report=lambda line: log.info("%s", line), on_written=self._written)
            log.debug("importer ready")
            return importer

        self._importer = _in_thread("gitp2p-importer", build)

    def _written(self, ids: list[str]) -> None:
        """The importer wrote these (in its thread); read by the progress line."""
        self._imported += sum(1 for oid in ids if oid in self._files)

    def _drop_importer(self) -> None:
        """Close an importer built for a fetch that did not come (it holds the repository's lock)."""
        future, self._importer = self._importer, None
        if future is not None and future.done() and future.exception() is None:
            future.result().close()

    @staticmethod
    def _lock_tips(importer: Importer, tips: list[str]) -> str | None:
        """Into a repository that had no ref (a clone), when every tip was imported by
        gitp2p: a pack holding the tip objects again, with a .keep; its path.  Else None.

        git checks a clone's connectivity by walking every object from the new refs
        (`rev-list --objects`, 0.1-0.25 s for the 5,000-commit bench history) unless the
        helper says `connectivity-ok` (the clone is self-contained and connected,
        gitremote-helpers(7)) and names with `lock` one pack that holds the tips: it skips
        the tips that pack holds.  Both hold here by the importer's checks, stronger than
        that walk: a commit or tag counts as imported only once its pack passed every
        check, which includes that each object it refers to is in the pack or in its
        parents' trees, and the parents imported before it (docs/watcher.md); into an
        empty repository nothing else came in.  The importer's packs are written per pass
        and a clone's tips land in several of them, so the tips are written once more, as
        whole objects, in a small pack of their own (duplicates are allowed in git, and
        `git gc` merges them).  git removes the .keep once the refs are set."""
        if not tips or not all(importer.is_imported(oid) for oid in tips):
            return None
        objects = []
        for oid in tips:
            found = importer.repo.read(bytes.fromhex(oid))
            if found is None:
                return None
            objects.append((bytes.fromhex(oid), found))
        name = importer.repo.write_objects(objects)
        keep = os.path.join(importer.repo.pack_dir, f"pack-{name}.keep")
        with open(keep, "w") as fh:
            fh.write(f"gitp2p clone {os.getpid()}\n")
        return keep

    async def _flush(self) -> None:
        try:
            await self.torrent.flush()
        except EngineError as exc:
            raise FetchError(str(exc)) from None

    async def _prioritize(self, priorities: list[int]) -> None:
        try:
            await self.torrent.set_file_priorities(priorities)
        except EngineError as exc:
            raise FetchError(str(exc)) from None

    async def _download(self, importer: Importer, wanted: list[_Wanted], result: FetchResult) -> None:
        t = self.torrent
        total = len(wanted)
        want_bytes = sum(w.size for w in wanted)
        state = {"dirty": False, "running": False, "linked": 0,
                 "done0": min(t.status().wanted_done, want_bytes)}  # came before (during list)
        # the importer's task sleeps until a pack is linked (wake), and says when it has
        # nothing left to do (idle): no poll between the last piece and the pass that takes it
        wake, idle = trio.Event(), trio.Event()
        ready = self._ready_dir()
        save = self._save_path()
        files = t.files()
        started = time.monotonic()

        def complete() -> list[_Wanted]:
            progress = t.file_progress()
            return [w for w in wanted if not w.linked and progress[w.index] >= w.size]

        def link(done: list[_Wanted]) -> None:
            for w in done:
                if not w.linked:
                    source = os.path.join(save, files[w.index][0])
                    target = os.path.join(ready, os.path.basename(files[w.index][0]))
                    try:
                        if os.stat(source).st_size != w.size:
                            continue  # its pieces are still being moved out of the part file
                        os.link(source, target)
                    except FileNotFoundError:
                        continue  # likewise: next tick
                    except FileExistsError:
                        pass
                    w.linked = True
                    state["linked"] += 1
                    if state["linked"] in (1, total):
                        log.debug("%s pack downloaded", "first" if state["linked"] == 1 else "last")
                    state["dirty"] = True
                    wake.set()

        def show(final: bool = False) -> None:
            st = t.status()
            done = min(st.wanted_done, want_bytes)
            elapsed = max(time.monotonic() - started, 1e-3)
            # libtorrent's rate is per second, and 0 until its first second is over
            rate = st.download_rate if st.download_rate and not final else (done - state["done0"]) / elapsed
            self.progress.update("Receiving packs", state["linked"], total, done, rate, final=final)

        async def importing(task_status=trio.TASK_STATUS_IGNORED) -> None:
            nonlocal wake, idle
            task_status.started()
            while True:
                await wake.wait()
                wake = trio.Event()
                state["dirty"], state["running"] = False, True
                log.debug("import pass starts (%d of %d packs downloaded)", state["linked"], total)
                res = await trio.to_thread.run_sync(lambda: importer.run_pass(final=True))
                log.debug("import pass done: %d packs imported", res.new)
                result.refused.extend(res.quarantined)
                state["running"] = False
                if res.quarantined:
                    idle.set()
                    return
                if not state["dirty"]:
                    idle.set()
                    idle = trio.Event()

        async def tick() -> None:
            done = complete()
            if done:
                await self._flush()  # their bytes are on disk before the importer reads them
                link(done)
            show()
            if result.refused:
                rel, why = result.refused[0]
                raise FetchError(f"refused {rel} from torrent {t.info_hash}: {why}")

        async with trio.open_nursery() as nursery:
            await nursery.start(importing)
            await self._stalling(lambda: state["linked"] == total, f"{total} packs", tick)
            show(final=True)
            # the last packs' pass: wait for it, then one more for whatever it unblocked
            while (state["dirty"] or state["running"]) and not result.refused:
                self.progress.update("Importing packs", min(self._imported, total), total)
                with trio.move_on_after(self.progress.every):
                    await idle.wait()
            nursery.cancel_scope.cancel()
        if result.refused:
            rel, why = result.refused[0]
            raise FetchError(f"refused {rel} from torrent {t.info_hash}: {why}")
        final = await trio.to_thread.run_sync(lambda: importer.run_pass(final=True))
        log.debug("last import pass done: %d packs imported", final.new)
        missing = [w.oid for w in wanted if not importer.is_imported(w.oid)]
        if final.quarantined or missing:
            reasons = [f"{rel}: {why}" for rel, why in final.quarantined]
            for oid, why, _n in final.causes[:3]:
                reasons.append(f"{oid}: {why}")
            raise FetchError(
                f"torrent {t.info_hash}: {len(missing)} of {total} packs could not be imported"
                + (f" ({'; '.join(reasons[:3])})" if reasons else ""))
        self.progress.update("Importing packs", total, total, final=True)
        result.bytes = want_bytes
        result.received = t.status().downloaded

    # -- after a successful fetch --------------------------------------------------------
    def keep_for_seeding(self) -> str:
        """Store the torrent and its manifest (gitp2p seed seeds them), drop the previous one of
        this remote and the download directories; the received bytes live in the pack cache."""
        ih = self.torrent.info_hash
        received = os.path.join(self.git_dir, "gitp2p", "received")
        os.makedirs(received, exist_ok=True)
        data = self.torrent_bytes
        if data is None:
            data = make_torrent_file(self.torrent.info_section(), self.trackers, self.web_seeds)
        write_durably(os.path.join(received, ih + ".gitp2p-refs"), self.manifest_bytes)
        if self.signature_bytes is not None:
            write_durably(os.path.join(received, ih + SIGNATURE_SUFFIX), self.signature_bytes)
        write_durably(os.path.join(received, ih + ".torrent"), data)
        if self.remote:
            key = f"remote.{self.remote}.gitp2pTorrent"
            old = (_config(self.git_dir, key) or [None])[-1]
            if self._remote_exists():
                run_git("config", key, ih, git_dir=self.git_dir)
            if old and old != ih and len(old) == 40 and all(c in "0123456789abcdef" for c in old):
                for suffix in (".torrent", ".gitp2p-refs", SIGNATURE_SUFFIX):
                    try:
                        os.unlink(os.path.join(received, old + suffix))
                    except FileNotFoundError:
                        pass
        return ih

    def _remote_exists(self) -> bool:
        return bool(_config(self.git_dir, f"remote.{self.remote}.url"))

    def clean_if_empty(self) -> None:
        """After a failure: remove the download directories unless they hold data worth resuming."""
        self._drop_importer()
        if self.torrent is not None and self.torrent.status().wanted_done == 0:
            self.clean()

    def clean(self) -> None:
        """Remove the download directories of this torrent (after its packs are imported)."""
        self._drop_importer()
        if self.torrent is None:
            return
        self.engine.remove(self.torrent)
        for path in (self._save_path(), self._ready_dir()):
            shutil.rmtree(path, ignore_errors=True)

