"""Torrents in the mount: `torrents/<label>.torrent`, and the roll-ups they list.

A layout contributor (see layout.Contributor): for each new snapshot
of the refs it builds the `HEAD` and `all` repository torrents, so a stock
client given `torrents/HEAD.torrent` and the mount point as its save path
finds every file of the torrent in `packs/` and seeds without copying.
The manifests (`packs/<label>.gitp2p-refs`) depend on the refs alone and are
laid out by layout.py at once; a torrent appears when its build ends, together
with `packs/rollups/<boundary>.rollup` for each roll-up it lists and
`packs/rollups/<id>.tags` for each tag group (the union over the torrents: HEAD's and
all's usually share the roll-ups; tag groups are all's).  When the repository
signs its manifests (gitp2p.signManifests, trust/signing.py), each torrent ends in
the manifest's signature, laid out beside it as `packs/<label>.gitp2p-sig`.

When the repository publishes chosen refs under its name (gitp2p.publishRefs, set by
`gitp2p publish REPO REF...`; trust/names.py), the mount builds a third torrent, of those
refs, labelled as `gitp2p torrent REPO REF...` labels it (`main+v1.0`), with its manifest
laid out beside it.  The setting is read again when the repository's config file changes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from typing import Callable

import trio

from ..errors import GitfsError, PublishError
from ..git.snapshot import RepoSnapshot
from .layout import PACKS_DIR, PUBLISHED_LABELS, TORRENTS_DIR, File, StaticContent, manifest_file, manifest_for_snapshot
from .store import RollupContent
from ..store.rollups import recorded_rollups, with_rollups
from ..store.source import PackSource
from ..pack.manifest import MANIFEST_SUFFIX, RefManifest
from ..store.torrents import RepoTorrent, build_repo_torrent, cached_repo_torrent, manifest_for
from ..trust.names import published_choice, published_label
from ..trust.sigfile import SIGNATURE_SUFFIX
from ..trust.signing import Signer, sign_manifest

__all__ = ["TorrentContributor", "LABELS"]

log = logging.getLogger(__name__)

#: The torrents every mount publishes: HEAD's branch, and every ref.
LABELS = PUBLISHED_LABELS


class TorrentContributor:
    """Publishes the mount's torrents, building them in a task of the mount's nursery.

    Building a torrent hashes every pack, which on a cold cache means building every
    pack: far too long to hold up a mount or a ref refresh.  So laying out a snapshot
    (`__call__`, in a worker thread) adds the torrents already built for it and notes
    which are wanted; `run` (the nursery task) builds those, in a worker process when
    the source has workers, and `changed()` tells the mount to lay the tree out again.
    """

    def __init__(self, source: PackSource, *, trackers: list[str] = (), web_seeds: list[str] = (),
                 signer: Signer | None = None, git_dir: str | None = None):
        self.source = source
        self.git_dir = git_dir  # None: no torrent of chosen refs (gitp2p.publishRefs not read)
        self._config = _config_path(git_dir) if git_dir else None
        self._choice: tuple[str, ...] = ()
        self._choice_stamp: tuple | None = None  # the config file's when the choice was read
        self.trackers = list(trackers)
        self.web_seeds = list(web_seeds)
        self.signer = signer  # None: unsigned manifests
        self._lock = threading.Lock()  # __call__ runs in a worker thread, run() in trio
        self._built: dict[tuple[str, bytes], RepoTorrent] = {}
        self._wanted: list[tuple[str, bytes, RefManifest]] = []
        self._commit_ids: list[bytes] = []  # every commit of the snapshot wanted
        self._rollups: dict[bytes, RollupContent] = {}  # by boundary: the roll-ups published now
        self._changed = False
        self._wake: trio.Event | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._busy = False
        #: Called (in trio) when a torrent is ready, so the mount lays it out without
        #: waiting for its next poll (MountService sets it).
        self.on_changed: Callable[[], None] | None = None

    def changed(self) -> bool:
        """True once after a build finished, or when the repository's config changed (the
        chosen refs may have)."""
        with self._lock:
            changed, self._changed = self._changed, False
            if self._config is not None and _stamp(self._config) != self._choice_stamp:
                changed = True
            return changed

    def _chosen(self) -> tuple[str, ...]:
        """gitp2p.publishRefs, read again when the config file changed (a worker thread)."""
        if self.git_dir is None:
            return ()
        stamp = _stamp(self._config)
        if stamp != self._choice_stamp:
            self._choice = published_choice(self.git_dir)
            self._choice_stamp = stamp
        return self._choice

    def _manifests(self, snapshot: RepoSnapshot) -> list[tuple[str, RefManifest | None, bool]]:
        """(label, manifest or None, whether this contributor lays the manifest out) for each
        torrent the snapshot wants: HEAD, all, and the chosen refs' (module docstring)."""
        out = [(label, manifest_for_snapshot(snapshot, label), False) for label in LABELS]
        choice = self._chosen()
        if choice:
            label = published_label(choice)
            try:
                manifest, _ = manifest_for(snapshot.published, snapshot.head, list(choice))
            except PublishError as exc:
                log.warning("no torrent of gitp2p.publishRefs (%s): %s", " ".join(choice), exc)
            else:
                if label in LABELS:
                    log.warning("no torrent of gitp2p.publishRefs (%s): its label %s is the mount's own",
                                " ".join(choice), label)
                else:
                    out.append((label, manifest, True))
        return out

    def idle(self) -> bool:
        """Nothing wanted that is not built (tests, benchmarks)."""
        with self._lock:
            return not self._busy and all((label, key) in self._built for label, key, _ in self._wanted)

    def _build_packs(self, commit_ids: list[bytes]) -> None:
        """Build the packs the cache lacks on every worker: a torrent job hashes them in one
        process, and would otherwise build them there one after another."""
        if self.source.workers is None:
            return
        ids = [c.decode() for c in commit_ids]
        known = self.source.cache.sizes(self.source.format, ids)
        missing = [c for c in ids if c not in known]
        if missing:
            log.info("building %d packs for the torrents", len(missing))
            self.source.build_sizes(missing)

    def _signature(self, label: str, manifest: RefManifest) -> bytes | None:
        """The manifest's signature file, when the repository signs (the kept one while the
        manifest is unchanged, so the info-hash is too)."""
        return None if self.signer is None else sign_manifest(self.signer, label, manifest.to_bytes())

    def _build(self, label: str, manifest: RefManifest) -> RepoTorrent:
        """The torrent, with its roll-ups' members known (store/rollups.py)."""
        signature = self._signature(label, manifest)
        if self.source.workers is not None:
            return self.source.workers.torrent(manifest, label, trackers=self.trackers, web_seeds=self.web_seeds,
                                               signature=signature)
        t = build_repo_torrent(self.source, manifest, label, trackers=self.trackers, web_seeds=self.web_seeds,
                               signature=signature)
        return with_rollups(self.source, t)

    def _cached(self, label: str, manifest: RefManifest) -> RepoTorrent | None:
        """The torrent as the pack cache holds it, with its roll-ups' members, or None."""
        t = cached_repo_torrent(self.source, manifest, label, trackers=self.trackers, web_seeds=self.web_seeds,
                                signature=self._signature(label, manifest))
        return recorded_rollups(self.source, t) if t is not None else None

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Build what laying out a snapshot asked for, until cancelled: torrents the pack
        cache holds at once; then the missing packs on every worker, and the other
        torrents side by side (one worker each)."""
        self._token = trio.lowlevel.current_trio_token()
        self._wake = trio.Event()
        task_status.started()
        while True:
            with self._lock:
                todo = [w for w in self._wanted if (w[0], w[1]) not in self._built]
                self._busy = bool(todo)
                commit_ids = self._commit_ids
            if not todo:
                await self._wake.wait()
                self._wake = trio.Event()
                continue
            for label, key, manifest in list(todo):
                try:
                    t = await trio.to_thread.run_sync(self._cached, label, manifest)
                except GitfsError as exc:  # an unreadable cache: the build says it again
                    log.info("no cached %s torrent: %s", label, exc)
                    t = None
                if t is not None:
                    self._publish(label, key, t, " (kept in the pack cache)")
                    todo.remove((label, key, manifest))
            if not todo:
                continue
            try:
                await trio.to_thread.run_sync(self._build_packs, commit_ids)
            except (GitfsError, KeyError) as exc:  # said again, per torrent, by _build_one
                log.info("building packs for the torrents stopped: %s", exc)
            async with trio.open_nursery() as nursery:
                for label, key, manifest in todo:
                    nursery.start_soon(self._build_one, label, key, manifest)

    async def _build_one(self, label: str, key: bytes, manifest: RefManifest) -> None:
        try:
            t = await trio.to_thread.run_sync(self._build, label, manifest)
        except GitfsError as exc:
            log.warning("no %s torrent: %s", label, exc)
            self._drop(label, key)
            return
        except KeyError as exc:  # the repository moved on (gc pruned a commit) mid-build
            log.info("no %s torrent for these refs: object %s left the repository; "
                     "the next snapshot asks again", label, exc)
            self._drop(label, key)
            return
        self._publish(label, key, t)

    def _publish(self, label: str, key: bytes, t: RepoTorrent, how: str = "") -> None:
        log.info("%s torrent ready%s: info-hash %s", label, how, t.info_hash.hex())
        with self._lock:
            # One copy of a roll-up's members for all torrents listing it (a pure function of
            # its boundary): at 100,000 commits, each copy is some 8 MB of commit ids.
            held = {r.boundary: r for other in self._built.values() for r in other.rollups or ()}
            t = dataclasses.replace(t, rollups=tuple(held.get(r.boundary, r) for r in t.rollups or ()))
            self._built = {k: v for k, v in self._built.items() if k[0] != label}
            self._built[(label, key)] = t
            self._changed = True
        if self.on_changed is not None:
            self.on_changed()

    def _rollup_files(self, snapshot: RepoSnapshot, published: list[RepoTorrent]) -> list[tuple[str, File]]:
        """packs/rollups/<boundary>.rollup for each roll-up of the published torrents, once.

        Its size is the one the torrents list; its mtime, as a pack's, the date of its
        (boundary) commit.  A roll-up keeps its content object (and so the offsets of its
        members, learned on the first read) for as long as a published torrent lists it.
        """
        rollups: dict[bytes, RollupContent] = {}
        for t in published:
            sizes = dict(t.files)
            for r in t.rollups or ():
                if r.boundary not in rollups:
                    held = self._rollups.get(r.boundary)
                    rollups[r.boundary] = held if held is not None else RollupContent(r, sizes[r.path])
        self._rollups = rollups
        out = []
        for boundary, content in rollups.items():
            if content.rollup.tags:  # a tag group: as a tag pack, its newest tag's date
                if not all(m in snapshot.tags for m in content.rollup.members):  # cannot be, as below
                    log.warning("tag group %s: a tag is not among the refs' tags; left out", boundary.decode())
                    continue
                mtime = max(snapshot.tags[m] for m in content.rollup.members)
            elif boundary not in snapshot.commits:  # cannot be: a torrent lists only what its refs reach
                log.warning("roll-up %s: its commit is not among the refs' commits; left out", boundary.decode())
                continue
            else:
                mtime = snapshot.commits.time_of(boundary)
            out.append((f"{PACKS_DIR}/{content.rollup.path}", File(content, mtime)))
        return out

    def published_rollups(self) -> list[RollupContent]:
        """The roll-ups and tag groups the published torrents list, in their order."""
        with self._lock:
            return list(self._rollups.values())

    def _drop(self, label: str, key: bytes) -> None:
        """Stop wanting a torrent that cannot be built (a newer snapshot may want it again)."""
        with self._lock:
            self._wanted = [w for w in self._wanted if (w[0], w[1]) != (label, key)]

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def __call__(self, snapshot: RepoSnapshot):
        out = []
        wanted = []
        published = []
        manifests = self._manifests(snapshot)
        with self._lock:
            for label, manifest, lay_out in manifests:
                if manifest is None:  # no refs yet, HEAD unborn, ...
                    log.info("no %s torrent for these refs", label)
                    continue
                key = manifest.to_bytes()
                if lay_out:  # the exact manifest (the layout reads a label's refs by short name)
                    out.append((f"{PACKS_DIR}/{label}{MANIFEST_SUFFIX}", manifest_file(snapshot, label, manifest)))
                t = self._built.get((label, key))
                if t is None:
                    wanted.append((label, key, manifest))
                    continue
                # The same mtime as the manifest's (stable while the refs stand still).
                mtime = manifest_file(snapshot, label, manifest).mtime
                out.append((f"{TORRENTS_DIR}/{label}.torrent", File(StaticContent(t.torrent), mtime)))
                if t.signature is not None:
                    out.append((f"{PACKS_DIR}/{label}{SIGNATURE_SUFFIX}", File(StaticContent(t.signature), mtime)))
                published.append(t)
            self._wanted = wanted
            self._commit_ids = snapshot.commits.ids
            out.extend(self._rollup_files(snapshot, published))
        if wanted and self._token is not None:
            try:
                trio.from_thread.run_sync(self._poke, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        return out


def _config_path(git_dir: str) -> str:
    """The repository's config file (a linked worktree's is in the common dir)."""
    try:
        with open(os.path.join(git_dir, "commondir"), encoding="utf-8") as fh:
            return os.path.join(git_dir, fh.read().strip(), "config")
    except OSError:
        return os.path.join(git_dir, "config")


def _stamp(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)
