"""Seeding a mount with our engine: `SeedService.run` starts the libtorrent session, seeds
every torrent the catalog offers, and follows the mount as refs move.

Every `poll` seconds the mount's torrents/ and the received torrents are read again
(catalog.py, in a worker thread: the mount is another process's FUSE file system); a
torrent whose info-hash changed is added before the old one is dropped.  Torrents are
added in libtorrent's seed mode: no check up front (the mount serves the exact bytes),
each piece is still verified the first time a peer asks for it.

Publishing (`gitp2p publish`, or `gitp2p.publishName` set in the repository): the mount's
torrent of every branch and tag (`all`), or of the refs chosen by gitp2p.publishRefs (the
mount builds it too: mount/torrents.py), is named in the DHT under the repository's key
(trust/names.py): a BEP 46 item is put whenever its info-hash changes (refs moved) and
again every REPUBLISH seconds (items are dropped by DHT nodes that do not hear of them
for a while).  The setting is read again at every poll, so a running seed takes up a name
set later.  What was put last is written to GIT_DIR/gitp2p/published (JSON) for
`gitp2p publish` and `git push` to wait on.

Following (`gitp2p seed --follow SECONDS`): every so often the seed runs `git fetch` of each
remote of the repository whose URL is a name (`gitp2p://KEY/NAME`); the remote helper
resolves the name, fetches the publisher's newest torrent and keeps it under
gitp2p/received/, where the next poll finds it: a seed of a clone switches to the
publisher's new torrent by itself, with the same info-hash.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from typing import Callable

import trio

from torrentcore.mutable import value_for
from torrentcore.session import Engine, EngineConfig, EngineError, Torrent

from ..durable import write_durably
from ..git.runner import run_git
from ..pack.manifest import MANIFEST_SUFFIX, ManifestError, RefManifest
from ..trust.names import ALL_LABEL, Name, check_name, published_choice, published_label, publisher_key

from ..errors import GitfsError, MountError, UsageError, find_in_group
from ..serving import serve_until_signal
from .catalog import MountTorrents, Offer, ReceivedTorrents, plan

__all__ = ["SeedService", "SeedError", "run_until_signal"]

log = logging.getLogger(__name__)

#: Seconds between two looks at the mount's torrents.
POLL_INTERVAL = 2.0
#: Seconds between two status lines per torrent (logged: `gitp2p -v seed`).
STATUS_INTERVAL = 60.0
#: Seconds between two puts of an unchanged name (BEP 44: nodes may forget an item after 2 hours).
REPUBLISH = 30 * 60.0
#: Seconds before a failed put is tried again.
PUT_RETRY = 10.0
#: The longest a following `git fetch` may take.
FOLLOW_TIMEOUT = 600.0


def published_path(git_dir: str) -> str:
    return os.path.join(git_dir, "gitp2p", "published")


def read_published(git_dir: str) -> dict:
    """What the repository's seed put last ({} if nothing): address, info_hash, seq, pid."""
    try:
        with open(published_path(git_dir), "rb") as fh:
            data = json.loads(fh.read(1 << 20))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def publish_name(git_dir: str) -> str | None:
    """gitp2p.publishName of the repository (None: not publishing)."""
    out = run_git("config", "--get", "gitp2p.publishName", git_dir=git_dir, check=False).strip()
    return out or None


def helper_env() -> dict[str, str]:
    """The environment for a `git fetch` by this installation: git finds git-remote-gitp2p on
    PATH, so the directory of this Python's scripts (a virtualenv's bin/) goes first when the
    helper is there (a seed started by its full path, the venv not activated)."""
    env = dict(os.environ)
    scripts = os.path.dirname(sys.executable)
    if os.access(os.path.join(scripts, "git-remote-gitp2p"), os.X_OK):
        env["PATH"] = scripts + os.pathsep + env.get("PATH", os.defpath)
    return env


class SeedError(GitfsError):
    """The engine cannot start or cannot seed (not a usage problem: see UsageError)."""


def engine_error(exc: EngineError) -> GitfsError:
    text = str(exc)
    if "already in use" in text.lower():
        return UsageError(f"{text} (another program has that port: choose one with --port, 0 for any)")
    return SeedError(text)


class SeedService:
    """Seeds the torrents of the mount at `mountpoint` (and those git_dir received)."""

    def __init__(self, mountpoint: str, git_dir: str, config: EngineConfig, *,
                 say: Callable[[str], None], trackers: tuple[str, ...] = (), poll: float = POLL_INTERVAL,
                 announce_every: float | None = None, clone_dir: str = "DIR",
                 mount_alive: Callable[[], bool] = lambda: True, follow: float | None = None):
        self.mountpoint = mountpoint
        self.config = config
        self.say = say
        self.trackers = tuple(trackers)
        self.poll = poll
        self.announce_every = announce_every
        self.clone_dir = clone_dir
        self.mount_alive = mount_alive
        self.git_dir = git_dir
        self.follow = follow
        self.mount_torrents = MountTorrents(mountpoint)
        self.received = ReceivedTorrents(git_dir, mountpoint)
        self.engine: Engine | None = None
        self.seeding: dict[str, tuple[Offer, Torrent]] = {}
        self.refused: set[str] = set()  # info-hashes the engine would not take
        self._mount_hashes: list[str] = []
        self._replaced: dict[tuple[str, str], str] = {}  # key -> info-hash dropped, no successor yet

    # -- the service --------------------------------------------------------------------
    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            try:
                self.engine = await nursery.start(Engine(self.config).run)
            except EngineError as exc:
                raise engine_error(exc) from None
            log.info("the engine listens on port %d", self.engine.listen_port)
            events = self.engine.listen()
            nursery.start_soon(self._log_events, events)
            try:
                await self.sync()
                if not self.seeding:
                    raise SeedError("nothing to seed: the mount has no torrent (no branch or tag) "
                                    "and no received torrent can be seeded")
                task_status.started(self)
                if self.announce_every:
                    nursery.start_soon(self._announce, self.announce_every)
                nursery.start_soon(self._status, STATUS_INTERVAL)
                if self.config.dht:
                    nursery.start_soon(self._publishing)
                if self.follow:
                    nursery.start_soon(self._following, self.follow)
                while True:
                    await trio.sleep(self.poll)
                    await self.sync()
            finally:
                self._remove_all()
                events.close()
                nursery.cancel_scope.cancel()  # the engine closes its session

    def _remove_all(self) -> None:
        if self.engine is not None and self.engine.session is not None:
            for _, torrent in self.seeding.values():
                self.engine.remove(torrent)
        self.seeding.clear()

    async def sync(self) -> None:
        """Seed what the mount and the received directory offer now; drop what they no longer do."""
        if not await trio.to_thread.run_sync(self.mount_alive):
            raise MountError(f"{self.mountpoint}: the mount went away; stopping")
        try:
            mount_offers = await trio.to_thread.run_sync(self.mount_torrents.scan)
            moved = [o.info_hash for o in mount_offers] != self._mount_hashes
            self._mount_hashes = [o.info_hash for o in mount_offers]
            received, notes = await trio.to_thread.run_sync(lambda: self.received.scan(recheck=moved))
        except OSError as exc:
            log.warning("%s: torrents not read (%s)", self.mountpoint, exc)
            return
        for note in notes:
            self.say(note)
        offers = [o for o in (*mount_offers, *received) if o.info_hash not in self.refused]
        current = {ih: offer for ih, (offer, _) in self.seeding.items()}
        p = plan(current, offers)
        # A moved ref: the mount drops its old torrent at once and publishes the new one
        # when built, a poll or more later; the old one is remembered to say what replaced it.
        replaces = {offer.info_hash: old for old, offer in p.moved}
        replaces.update({o.info_hash: self._replaced.pop(o.key) for o in p.add if o.key in self._replaced})
        assert self.engine is not None
        for offer in p.add:  # the new torrent first, then the old one goes
            try:
                torrent = await self.engine.add_torrent(
                    offer.torrent, self.mountpoint, trackers=self.trackers, seed_mode=True,
                    renamed=dict(offer.renamed) or None, verified=offer.origin == "mount")
            except EngineError as exc:
                self.refused.add(offer.info_hash)
                self.say(f"not seeding {offer.label} {offer.info_hash}: {exc}")
                continue
            self.seeding[offer.info_hash] = (offer, torrent)
            old = replaces.get(offer.info_hash)
            if old is not None:
                self.say(f"{offer.label}: refs moved, seeding {offer.info_hash} instead of {old}")
            self.say(self.describe(offer))
        renewed = set(replaces.values())
        for ih in p.drop:
            offer, torrent = self.seeding.pop(ih)
            self.engine.remove(torrent)
            if ih in renewed:
                continue
            if offer.origin == "mount":
                self._replaced[offer.key] = ih
                self.say(f"{offer.label}: refs moved, stopped seeding {ih}; the mount builds the new torrent")
            else:
                self.say(f"stopped seeding {offer.label} {ih} (no longer offered)")

    def describe(self, offer: Offer) -> str:
        """What to hand to others: the magnet link and the clone commands."""
        magnet = offer.magnet(self.trackers)
        where = "from the mount" if offer.origin == "mount" else "received"
        return "\n".join([
            f"seeding {offer.label} ({where}): info-hash {offer.info_hash}",
            f"  {magnet}",
            f"  git clone {shlex.quote('gitp2p::' + magnet)} {shlex.quote(self.clone_dir)}",
            f"  git clone {shlex.quote('gitp2p::' + offer.torrent_path)} {shlex.quote(self.clone_dir)}",
        ])

    # -- publishing a name ------------------------------------------------------------------
    async def _publishing(self) -> None:
        """Put the name's item when the published torrent changed or is due again (module docstring)."""
        published: tuple[str, str] | None = None  # (address, info-hash) put last
        due = 0.0
        while True:
            label = ALL_LABEL
            try:
                wanted = await trio.to_thread.run_sync(publish_name, self.git_dir)
                if wanted is not None:
                    check_name(wanted)
                    key = await trio.to_thread.run_sync(lambda: publisher_key(self.git_dir, create=True))
                label = published_label(await trio.to_thread.run_sync(published_choice, self.git_dir))
            except (ValueError, GitfsError) as exc:
                self.say(f"not publishing: gitp2p.publishName: {exc}")
                wanted = None
            offer = next((o for o, _ in self.seeding.values() if o.origin == "mount" and o.label == label), None)
            if wanted is not None and offer is not None:
                name = Name(key.public, wanted)
                now = trio.current_time()
                if published != (name.address, offer.info_hash) or now >= due:
                    try:
                        seq, stored = await self.engine.put_mutable(key, name.salt,
                                                                    value_for(bytes.fromhex(offer.info_hash)))
                    except EngineError as exc:
                        self.say(f"{name.address}: not published ({exc}); trying again in {PUT_RETRY:g}s")
                        due = now + PUT_RETRY
                        published = None
                    else:
                        published, due = (name.address, offer.info_hash), now + REPUBLISH
                        refs = await trio.to_thread.run_sync(self._published_refs, label)
                        record = {"address": name.address, "info_hash": offer.info_hash, "seq": seq,
                                  "pid": os.getpid(), "label": label, "refs": refs}
                        await trio.to_thread.run_sync(
                            write_durably, published_path(self.git_dir), json.dumps(record).encode() + b"\n")
                        self.say(f"published {name.address}: torrent {offer.info_hash}, sequence number {seq} "
                                 f"({stored} DHT nodes stored it)")
            await trio.sleep(self.poll)

    # -- following names ------------------------------------------------------------------
    def _named_remotes(self) -> list[str]:
        out = run_git("config", "--get-regexp", r"^remote\..*\.url$", git_dir=self.git_dir, check=False)
        remotes = []
        for line in out.splitlines():
            key, _, url = line.partition(" ")
            if url.startswith("gitp2p://"):
                remotes.append(key[len("remote."):-len(".url")])
        return remotes

    async def _fetch(self, remote: str) -> str | None:
        """`git fetch REMOTE` (its helper resolves the name); why it failed, or None.  A child
        process, so that stopping the seed stops it too."""
        cmd = ["git", f"--git-dir={self.git_dir}", "fetch", "--quiet", remote]
        with trio.move_on_after(FOLLOW_TIMEOUT):
            proc = await trio.run_process(cmd, stdin=b"", capture_stdout=True, capture_stderr=True, check=False,
                                          env=helper_env())
            if proc.returncode != 0:
                lines = proc.stderr.decode(errors="replace").strip().splitlines()
                return lines[-1] if lines else f"exit status {proc.returncode}"
            return None
        return f"no answer within {FOLLOW_TIMEOUT:g}s"

    async def _following(self, every: float) -> None:
        """Fetch the remotes that are names every `every` seconds (module docstring)."""
        said: dict[str, str] = {}  # remote -> what was said last (a line only when it changes)
        while True:
            remotes = await trio.to_thread.run_sync(self._named_remotes)
            if not remotes and said.get("") is None:
                said[""] = "none"
                self.say("following: no remote of this repository is a gitp2p://KEY/NAME "
                         "(looked for again every %gs)" % every)
            elif remotes:
                said.pop("", None)
            for remote in remotes:
                why = await self._fetch(remote)
                line = f"following {remote}: " + (why or "up to date with its name")
                if said.get(remote) != line:
                    self.say(line)
                    said[remote] = line
            # a torrent received by the fetch is seeded at the next poll (sync)
            await trio.sleep(every)

    def _published_refs(self, label: str) -> dict[str, str]:
        """The refs of the mount's published manifest (read when the name is put: a `git push`
        waits for its refs there; the mount writes a torrent and its manifest together)."""
        path = os.path.join(self.mountpoint, "packs", label + MANIFEST_SUFFIX)
        try:
            with open(path, "rb") as fh:
                return dict(RefManifest.from_bytes(fh.read()).refs)
        except (OSError, ManifestError) as exc:
            log.info("%s: not read (%s)", path, exc)
            return {}

    # -- background tasks -----------------------------------------------------------------
    async def _announce(self, every: float) -> None:
        """Announce every `every` seconds: on loopback a peer that never dials 127.0.0.0/8
        (transmission) is only reached when the seed learns its address and dials it."""
        while True:
            await trio.sleep(every)
            for _, torrent in list(self.seeding.values()):
                torrent.reannounce()

    async def _status(self, every: float) -> None:
        while True:
            await trio.sleep(every)
            for offer, torrent in list(self.seeding.values()):
                st = torrent.status()
                log.info("%s %s: %s, %d peers, %d bytes uploaded%s", offer.label, offer.info_hash[:12],
                         st.state, st.peers, st.uploaded, f", error: {st.error}" if st.error else "")

    async def _log_events(self, events: trio.MemoryReceiveChannel) -> None:
        async with events:
            async for event in events:
                if event.kind in ("file_error", "torrent_error", "metadata_failed"):
                    log.warning("%s: %s", event.kind.replace("_", " "), event.message)
                elif event.kind in ("tracker_error", "hash_failed", "listen_failed"):
                    log.info("%s", event.message)


def run_until_signal(service: SeedService, on_ready: Callable[[], None]) -> None:
    """trio.run(serve_until_signal): a GitfsError inside comes out as itself (not in an
    exception group), for the command line's one error boundary."""
    try:
        trio.run(serve_until_signal, service, on_ready)  # "SIGTERM: stopping"
    except BaseExceptionGroup as group:
        if group.split(GitfsError)[1] is None:  # nothing but our own errors: say the first
            raise find_in_group(group, GitfsError) from None
        raise
