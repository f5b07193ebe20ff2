"""What `gitp2p seed` offers: the mount's torrents and the torrents this repository received.

Two sources, read from files (blocking: callers run `scan` in a worker thread):

- `MountTorrents`: every `MOUNT/torrents/<label>.torrent`.  A file is read again only
  when its inode, size or mtime changed (the mount gives a file new content a new inode),
  so a poll of an unchanged mount costs a `listdir` and a few `stat` calls.
- `ReceivedTorrents`: every `GIT_DIR/gitp2p/received/<info-hash>.torrent` with its
  `<info-hash>.gitp2p-refs` beside it (written by the remote helper for each torrent it
  fetched).  Such a torrent is seeded from the mount with its last file, the ref
  manifest, renamed to the stored manifest (and, in a signed torrent, its signature,
  after it, to the stored `<info-hash>.gitp2p-sig`), so the receiver seeds the very
  info-hash it received.  One whose packs are not all in the mount's `packs/` is left out, with a
  note, and looked at again when the first pack it lacked appears there (one `stat` a poll),
  when the mount's torrents change, or every RECHECK seconds.

`plan` (pure) turns what is seeded and what is offered into what to add and drop.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from torrentcore.magnet import magnet_link
from torrentcore.metainfo import MetainfoError, parse_torrent

from ..pack.manifest import MANIFEST_SUFFIX
from ..pack.rollup import ROLLUP_DIR, rollup_from_name
from ..trust.sigfile import SIGNATURE_SUFFIX

__all__ = [
    "Offer", "Plan", "plan", "MountTorrents", "ReceivedTorrents", "RECEIVED_DIR", "TORRENT_SUFFIX",
    "received_dir",
]

log = logging.getLogger(__name__)

#: Under GIT_DIR: the torrents a repository received (remote helper), with their manifests.
RECEIVED_DIR = os.path.join("gitp2p", "received")
TORRENT_SUFFIX = ".torrent"
#: Seconds between two looks at a received torrent whose packs were missing.
RECHECK = 30.0


def received_dir(git_dir: str) -> str:
    return os.path.join(git_dir, RECEIVED_DIR)


@dataclass(frozen=True)
class Offer:
    """One torrent to seed from the mount."""

    label: str  # the mount's label (HEAD, all) or the received torrent's
    origin: str  # "mount" or "received"
    info_hash: str  # v1, hex
    torrent: bytes = field(repr=False)
    torrent_path: str  # the .torrent file, for `git clone gitp2p::PATH`
    trackers: tuple[str, ...] = ()
    #: libtorrent renamed_files: file index -> absolute path (the stored manifest)
    renamed: tuple[tuple[int, str], ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        """What an update replaces: the mount's all.torrent by the next all.torrent."""
        return (self.origin, self.label)

    def magnet(self, extra_trackers: Iterable[str] = ()) -> str:
        trackers = list(dict.fromkeys([*self.trackers, *extra_trackers]))
        return magnet_link(self.info_hash, name="packs", trackers=trackers)


@dataclass(frozen=True)
class Plan:
    add: tuple[Offer, ...]
    drop: tuple[str, ...]  # info-hashes
    #: (old info-hash, new offer) among add/drop: the same source, new content (refs moved)
    moved: tuple[tuple[str, Offer], ...]


def plan(seeding: Mapping[str, Offer], offers: Iterable[Offer]) -> Plan:
    """What to add and drop so that exactly `offers` are seeded (the first offer of an
    info-hash wins: a received torrent the mount also publishes is seeded once)."""
    wanted: dict[str, Offer] = {}
    for offer in offers:
        wanted.setdefault(offer.info_hash, offer)
    add = tuple(o for ih, o in wanted.items() if ih not in seeding)
    drop = tuple(ih for ih in seeding if ih not in wanted)
    dropped_by_key = {seeding[ih].key: ih for ih in drop}
    moved = tuple((dropped_by_key[o.key], o) for o in add if o.key in dropped_by_key)
    return Plan(add, drop, moved)


def _signature(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class MountTorrents:
    """The torrents the mount publishes in MOUNT/torrents/."""

    def __init__(self, mountpoint: str):
        self.mountpoint = mountpoint
        self.directory = os.path.join(mountpoint, "torrents")
        self._seen: dict[str, tuple[tuple, Offer | None]] = {}

    def scan(self) -> list[Offer]:
        try:
            names = sorted(n for n in os.listdir(self.directory) if n.endswith(TORRENT_SUFFIX))
        except FileNotFoundError:
            names = []
        offers, seen = [], {}
        for name in names:
            path = os.path.join(self.directory, name)
            try:
                sig = _signature(os.stat(path))
                known = self._seen.get(name)
                if known is not None and known[0] == sig:
                    offer = known[1]
                else:
                    offer = self._read(path, name[: -len(TORRENT_SUFFIX)])
            except OSError as exc:  # replaced between listdir and stat (refs moved): next poll
                log.info("%s: %s", path, exc.strerror)
                continue
            seen[name] = (sig, offer)
            if offer is not None:
                offers.append(offer)
        self._seen = seen
        return offers

    def _read(self, path: str, label: str) -> Offer | None:
        with open(path, "rb") as fh:
            data = fh.read()
        try:
            t = parse_torrent(data)
        except MetainfoError as exc:  # the mount only publishes whole files; say so anyway
            log.warning("%s: not a torrent (%s)", path, exc)
            return None
        return Offer(label, "mount", t.info_hash.hex(), data, path, t.trackers)


class ReceivedTorrents:
    """The torrents under GIT_DIR/gitp2p/received/ whose packs the mount has."""

    def __init__(self, git_dir: str, mountpoint: str):
        self.directory = received_dir(git_dir)
        self.packs = os.path.join(mountpoint, "packs")
        #: name -> (signature of the .torrent and its manifest, offer or None, note, checked at,
        #: a pack it lacked in the mount, as a path there, or None)
        self._seen: dict[str, tuple[tuple, Offer | None, str, float, str | None]] = {}

    def scan(self, *, recheck: bool = False) -> tuple[list[Offer], list[str]]:
        """(offers, notes): a note says why a received torrent is not seeded, once per
        torrent and reason.  recheck: look again at ones left out (the refs moved)."""
        try:
            names = sorted(n for n in os.listdir(self.directory) if n.endswith(TORRENT_SUFFIX))
        except (FileNotFoundError, NotADirectoryError):
            names = []
        offers, notes, seen = [], [], {}
        now = time.monotonic()
        for name in names:
            path = os.path.join(self.directory, name)
            manifest = path[: -len(TORRENT_SUFFIX)] + MANIFEST_SUFFIX
            try:
                sig = (_signature(os.stat(path)), _signature(os.stat(manifest)))
            except FileNotFoundError:
                sig = None
            known = self._seen.get(name)
            # a torrent left out for a pack the mount lacked: looked at again once that pack is
            # there (a clone's seed that fetched: the mount lays the new packs out a poll or
            # two after the fetch; its own torrents, of its branches, need not change)
            if known is not None and known[0] == sig and (
                known[1] is not None or not (recheck or now - known[3] > RECHECK
                                             or (known[4] is not None and os.path.exists(known[4])))
            ):
                offer, note, checked, lacked = known[1], known[2], known[3], known[4]
            else:
                if sig:
                    offer, note, lacked = self._check(path, manifest)
                else:
                    offer, note, lacked = None, f"no {os.path.basename(manifest)} beside it", None
                checked = now
                if offer is None and (known is None or known[2] != note):
                    notes.append(f"not seeding received {name}: {note}")
            seen[name] = (sig, offer, note, checked, lacked)
            if offer is not None:
                offers.append(offer)
        self._seen = seen
        return offers, notes

    def _check(self, path: str, manifest: str) -> tuple[Offer | None, str, str | None]:
        """(offer, "", None), or (None, why not, the path in the mount of a pack it lacks or None)."""
        try:
            with open(path, "rb") as fh:
                data = fh.read()
            t = parse_torrent(data)
        except (OSError, MetainfoError) as exc:
            return None, f"unreadable ({exc})", None
        name = os.path.basename(path)[: -len(TORRENT_SUFFIX)]
        if t.info_hash.hex() != name.lower():
            return None, f"its info-hash is {t.info_hash.hex()}, not its name", None
        files = ["/".join(f.path) for f in t.files]
        stored = []  # (file index, the stored file seeded in its place)
        if len(files) >= 2 and files[-1].endswith(SIGNATURE_SUFFIX):
            files = files[:-1]
            stored.append((len(files), manifest[: -len(MANIFEST_SUFFIX)] + SIGNATURE_SUFFIX))
        stored.insert(0, (len(files) - 1, manifest))
        if t.name != "packs" or not t.multi_file or not files[-1].endswith(MANIFEST_SUFFIX) \
                or not all(_pack_or_rollup(f) for f in files[:-1]):
            return None, ("not a repository torrent (packs/rollups/*.rollup, packs/*.pack, then "
                          "packs/<label>.gitp2p-refs and, if signed, packs/<label>.gitp2p-sig)"), None
        for index, path_ in stored:
            try:
                size = os.path.getsize(path_)
            except OSError:
                return None, f"no {os.path.basename(path_)} beside it", None
            if size != t.files[index].length:
                return None, (f"its {os.path.basename(path_)} is {size} bytes, the torrent says "
                              f"{t.files[index].length}"), None
        missing = [f for f in files[:-1] if not os.path.exists(os.path.join(self.packs, f))]
        if missing:
            return None, (f"{len(missing)} of {len(files) - 1} packs are not in the mount "
                          f"(packs/{missing[0]}, ...)"), os.path.join(self.packs, missing[0])
        label = files[-1][: -len(MANIFEST_SUFFIX)]
        renamed = tuple((index, os.path.abspath(path_)) for index, path_ in stored)
        return Offer(label, "received", t.info_hash.hex(), data, os.path.abspath(path), t.trackers, renamed), "", None


def _pack_or_rollup(path: str) -> bool:
    """A repository torrent's file before its manifest: `<id>.pack` or `rollups/<id>.rollup`."""
    if "/" not in path:
        return path.endswith(".pack")
    top, _, name = path.partition("/")
    return top == ROLLUP_DIR and rollup_from_name(name) is not None
