"""Torrents in the mount: `torrents/<label>.torrent`.

A layout contributor (see mount_layout.Contributor): for each new snapshot
of the refs it builds the `HEAD` and `all` repository torrents, so a stock
client given `torrents/HEAD.torrent` and the mount point as its save path
finds every file of the torrent in `packs/` and seeds without copying.
The manifests (`packs/<label>.gitp2p-refs`) depend on the refs alone and are
laid out by mount_layout at once; a torrent appears when its build ends.
"""

from __future__ import annotations

import logging
import threading

from .layout import PUBLISHED_LABELS, TORRENTS_DIR, File, RepoSnapshot, StaticContent, manifest_file, manifest_for_snapshot
from ..store.source import PackSource
from ..pack.manifest import RefManifest
from ..store.torrents import RepoTorrent, build_repo_torrent

RepoManifestKey = tuple[bytes, RefManifest]

__all__ = ["TorrentContributor", "LABELS"]

log = logging.getLogger(__name__)

#: The torrents every mount publishes: HEAD's branch, and every ref.
LABELS = PUBLISHED_LABELS


class TorrentContributor:
    """Publishes the mount's torrents, building them in the background.

    Building a torrent hashes every pack, which on a cold cache means
    building every pack: far too long to hold up a mount or a ref refresh.
    So a call returns the torrents already built for that snapshot (none at
    first), starts a background build for the rest, and `changed()` tells
    the mount when a build finished so it lays the tree out again.
    """

    def __init__(self, source: PackSource, *, trackers: list[str] = (), web_seeds: list[str] = ()):
        self.source = source
        self.trackers = list(trackers)
        self.web_seeds = list(web_seeds)
        self._lock = threading.Lock()
        self._built: dict[tuple[str, bytes], RepoTorrent] = {}
        self._wanted: list[tuple[str, RepoManifestKey]] = []
        self._worker: threading.Thread | None = None
        self._changed = False

    def changed(self) -> bool:
        """True once after a background build finished."""
        with self._lock:
            changed, self._changed = self._changed, False
            return changed

    def wait_idle(self, timeout: float) -> bool:
        """Wait for the background build (tests, benchmarks); True if idle."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
            return not worker.is_alive()
        return True

    def _build_loop(self) -> None:
        while True:
            with self._lock:
                todo = [w for w in self._wanted if (w[0], w[1][0]) not in self._built]
                if not todo:
                    self._worker = None
                    return
                label, (key, manifest) = todo[0]
            try:
                t = build_repo_torrent(
                    self.source, manifest, label, trackers=self.trackers, web_seeds=self.web_seeds
                )
            except Exception:
                log.exception("building the %s torrent failed", label)
                with self._lock:
                    self._wanted.remove((label, (key, manifest)))
                continue
            log.info("%s torrent ready: info-hash %s", label, t.info_hash.hex())
            with self._lock:
                self._built = {k: v for k, v in self._built.items() if k[0] != label}
                self._built[(label, key)] = t
                self._changed = True

    def __call__(self, snapshot: RepoSnapshot):
        out = []
        wanted = []
        with self._lock:
            for label in LABELS:
                manifest = manifest_for_snapshot(snapshot, label)
                if manifest is None:  # no refs yet, HEAD unborn, ...
                    log.info("no %s torrent for these refs", label)
                    continue
                key = manifest.to_bytes()
                t = self._built.get((label, key))
                if t is None:
                    wanted.append((label, (key, manifest)))
                    continue
                # The same mtime as the manifest's (stable while the refs stand still).
                mtime = manifest_file(snapshot, label).mtime
                out.append((f"{TORRENTS_DIR}/{label}.torrent", File(StaticContent(t.torrent), mtime)))
            self._wanted = wanted
            if wanted and self._worker is None:
                self._worker = threading.Thread(target=self._build_loop, name="torrent-builder", daemon=True)
                self._worker.start()
        return out
