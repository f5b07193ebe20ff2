"""The mount's tree as plain data: which paths exist, what each one is, and stable inode numbers.

No I/O and no pyfuse3 here: a `RepoSnapshot` (refs and the commits they
reach) becomes a `Layout` (directories of `File`, `Link` and `Dir`
entries); `Inodes` hands out inode numbers that never change for the life
of the mount.  The filesystem in mount.py serves whatever the current
layout says, and swaps in a new one when the refs move.

Layout (docs/mount.md)::

    README                     what this is (static text)
    HEAD                       symlink -> packs/<commit>.pack
    packs/<commit>.pack        one per commit reachable from any ref
    packs/<tag>.pack           one per annotated tag a branch or tag names
    packs/rollups/<boundary>.rollup
                               the roll-ups the torrents list (torrents.py)
    packs/rollups/<id>.tags    and their tag groups
    refs/heads/<name>          symlink -> ../../packs/<commit>.pack
    refs/tags/<name>           (annotated tags peeled to their commit)
    packs/<label>.gitp2p-refs  ref manifests: HEAD and all listed, any other label on lookup
    torrents/<label>.torrent   HEAD and all, once built (mount_torrents.py)

Extension point: a *contributor* is a callable that gets each new snapshot
(in a worker thread, so it may block) and returns `(path, File | Link)`
pairs to add, e.g. ``("packs/main.gitp2p-refs", File(StaticContent(...), t))``
or ``("torrents/main.torrent", ...)``.  Contributed entries never replace
one the layout already has (a pack, a ref); such a conflict is logged.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field
from typing import Callable, Hashable, Iterable, Protocol, Sequence

from ..errors import PublishError
from ..pack.manifest import MANIFEST_SUFFIX, RefManifest
from ..git.snapshot import CommitList, RepoSnapshot
from ..pack.verify import PACK_NAME, pack_name
from ..store.torrents import label_for, manifest_for

__all__ = [
    "Content",
    "StaticContent",
    "Dir",
    "File",
    "Link",
    "Entry",
    "CommitList",
    "RepoSnapshot",
    "Directory",
    "StaticDir",
    "PackDir",
    "Layout",
    "Contributor",
    "build_layout",
    "Inodes",
    "PACKS_DIR",
    "TORRENTS_DIR",
    "pack_name",
    "readme_text",
    "PUBLISHED_LABELS",
    "manifest_for_snapshot",
    "manifest_file",
]

log = logging.getLogger(__name__)

PACKS_DIR = "packs"
TORRENTS_DIR = "torrents"


class Content(Protocol):
    """The bytes of a file.  Same `key`, same bytes, forever."""

    key: Hashable

    def size_nowait(self) -> int | None:
        """The size if known without blocking, else None."""

    def data_nowait(self) -> bytes | None:
        """The bytes if at hand without blocking (static content), else None."""


@dataclass(frozen=True, slots=True)
class StaticContent:
    """Bytes known up front: README, ref manifests, .torrent files."""

    data: bytes
    key: Hashable = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.key is None:
            import hashlib

            object.__setattr__(self, "key", ("static", hashlib.sha256(self.data).digest()))

    def size_nowait(self) -> int:
        return len(self.data)

    def data_nowait(self) -> bytes:
        return self.data


@dataclass(frozen=True, slots=True)
class Dir:
    path: str  # "" is the root


@dataclass(frozen=True, slots=True)
class File:
    content: Content
    mtime: int  # seconds since the epoch


@dataclass(frozen=True, slots=True)
class Link:
    target: str
    mtime: int


Entry = Dir | File | Link


# -- directories ---------------------------------------------------------------------
class Directory(Protocol):
    def __len__(self) -> int: ...

    def name_at(self, i: int) -> str: ...

    def get(self, name: str) -> Entry:
        """The entry called name; KeyError if there is none."""

    def subdir_count(self) -> int: ...


class StaticDir:
    """A directory whose entries are all listed up front."""

    __slots__ = ("entries", "names")

    def __init__(self, entries: dict[str, Entry] | None = None):
        self.entries: dict[str, Entry] = entries or {}
        self.names: list[str] = []

    def seal(self) -> None:
        self.names = sorted(self.entries)

    def __len__(self) -> int:
        return len(self.names)

    def name_at(self, i: int) -> str:
        return self.names[i]

    def get(self, name: str) -> Entry:
        return self.entries[name]

    def subdir_count(self) -> int:
        return sum(1 for e in self.entries.values() if isinstance(e, Dir))


class PackDir:
    """packs/: one `<commit>.pack` per commit, oldest first, then one `<tag>.pack` per
    annotated tag, then contributed files.

    Entries are made on demand, so 100,000 commits cost a list of ids, not
    100,000 objects.
    """

    __slots__ = ("commits", "tags", "_tag_ids", "pack_content", "extra", "_extra_names", "manifest_for_label", "_manifests")

    def __init__(
        self,
        commits: CommitList,
        pack_content: Callable[[bytes], Content],
        tags: dict[bytes, int] | None = None,
        manifest_for_label: Callable[[str], "File | None"] | None = None,
    ):
        self.commits = commits
        self.tags = tags or {}
        self._tag_ids = sorted(self.tags)
        self.pack_content = pack_content
        self.extra: dict[str, Entry] = {}
        self._extra_names: list[str] = []
        # Manifests of any other label `gitp2p torrent REPO REF...` can make, found on lookup.
        self.manifest_for_label = manifest_for_label
        self._manifests: dict[str, File | None] = {}

    def seal(self) -> None:
        self._extra_names = sorted(self.extra)

    def __len__(self) -> int:
        return len(self.commits) + len(self._tag_ids) + len(self._extra_names)

    def name_at(self, i: int) -> str:
        n = len(self.commits)
        if i < n:
            return pack_name(self.commits.ids[i])
        i -= n
        if i < len(self._tag_ids):
            return pack_name(self._tag_ids[i])
        return self._extra_names[i - len(self._tag_ids)]

    def commit_at(self, i: int) -> bytes | None:
        return self.commits.ids[i] if i < len(self.commits) else None

    def commits_after(self, oid: bytes, count: int) -> list[bytes]:
        """The (at most count) commits listed right after oid's pack; [] for a tag or unknown id."""
        i = self.commits.index.get(oid)
        return [] if i is None else self.commits.ids[i + 1 : i + 1 + count]

    def tags_after(self, oid: bytes, count: int) -> list[bytes]:
        """The (at most count) tags listed right after tag oid's pack; [] for an unknown id."""
        i = bisect.bisect_right(self._tag_ids, oid)
        return self._tag_ids[i : i + count] if i and self._tag_ids[i - 1] == oid else []

    def get(self, name: str) -> Entry:
        m = PACK_NAME.match(name)
        if m is not None:
            oid = m.group(1).encode("ascii")
            i = self.commits.index.get(oid)
            if i is not None:
                return File(self.pack_content(oid), self.commits.times[i])
            return File(self.pack_content(oid), self.tags[oid])  # KeyError: no such commit or tag
        entry = self.extra.get(name)
        if entry is None and self.manifest_for_label is not None and name.endswith(MANIFEST_SUFFIX):
            label = name[: -len(MANIFEST_SUFFIX)]
            entry = self._manifests.get(label)
            if entry is None:
                entry = self.manifest_for_label(label)
                if entry is not None and len(self._manifests) < 1024:
                    self._manifests[label] = entry  # the same bytes (and so inode) on every lookup
        if entry is None:
            raise KeyError(name)
        return entry

    def subdir_count(self) -> int:
        return sum(1 for e in self.extra.values() if isinstance(e, Dir))


# -- the layout ------------------------------------------------------------------------
#: Gets each new snapshot (in a worker thread) and returns (path, File | Link) pairs to add.
Contributor = Callable[[RepoSnapshot], Iterable[tuple[str, "File | Link"]]]


@dataclass
class Layout:
    dirs: dict[str, Directory]  # path ("" for the root) -> directory
    snapshot: RepoSnapshot

    def directory(self, path: str) -> Directory:
        return self.dirs[path]  # KeyError: no such directory (any more)


def readme_text(repo_name: str) -> bytes:
    return f"""\
gitp2p mount of {repo_name}  (read-only)

Every file here is immutable: a commit's pack is a pure function of the commit.

  packs/<commit-id>.pack   the deterministic thin pack of one commit: the commit
                           plus every tree and blob its parents do not have.
                           One for every commit reachable from any ref, and
                           one for every annotated tag (the tag object itself).
  packs/rollups/<commit-id>.rollup
                           a roll-up: the packs of a run of old history in one
                           file (a header, then the packs), named for its newest
                           first-parent commit; one for each the torrents list.
  packs/rollups/<id>.tags  a tag group: the tag packs of the tags on one
                           roll-up's commits in one file, the same way.
  refs/heads/<branch>      symbolic links to the pack of the commit each ref
  refs/tags/<tag>          points at (annotated tags peeled), so
  HEAD                     `cp MOUNT/refs/heads/main .` copies that pack.
  torrents/HEAD.torrent    the torrent of HEAD's branch, and of every ref (all);
  torrents/all.torrent     built in the background, they appear once ready.
                           Seed one by giving a BitTorrent client the .torrent
                           and this directory as its download directory: the
                           files it names are packs/*.pack, packs/rollups/
                           and packs/<label>.gitp2p-refs (the ref manifest).

Import a pack into a repository that has the commit's parents with
    git index-pack --fix-thin --stdin < PACK
Refs that move show up within a few seconds.  Unmount with `gitp2p umount MOUNT`.
Format: docs/pack-format.md; this layout: docs/mount.md.
""".encode()


#: The labels whose manifests (and torrents) every mount lists: HEAD's branch, and every ref.
PUBLISHED_LABELS = ("HEAD", "all")


def manifest_for_snapshot(snapshot: RepoSnapshot, label: str) -> RefManifest | None:
    """The manifest `gitp2p torrent` writes for this label on these refs, or None.

    HEAD and all as for `gitp2p torrent REPO` and `--all`; any other label is read as
    refs' short names joined by `+`, in any order (`main`, `v1.0+main`): the label only
    names the file, the manifest's bytes depend on the refs alone.
    """
    try:
        if label in PUBLISHED_LABELS:
            manifest, _ = manifest_for(snapshot.published, snapshot.head, all_refs=(label == "all"))
            return manifest
        names = []
        for part in label.split("+"):
            exact = [f"refs/heads/{part}", f"refs/tags/{part}"]
            full = next((n for n in exact if n in snapshot.published), None)
            if full is None:
                matches = [n for n in snapshot.published if label_for([n]) == part]
                if len(matches) != 1:
                    return None
                full = matches[0]
            names.append(full)
        manifest, _ = manifest_for(snapshot.published, snapshot.head, names)
    except PublishError:
        return None
    return manifest


def manifest_file(snapshot: RepoSnapshot, label: str, manifest: RefManifest | None = None) -> File | None:
    """packs/<label>.gitp2p-refs for this snapshot (or `manifest`, of its refs); mtime: the
    newest commit or tag it names."""
    if manifest is None:
        manifest = manifest_for_snapshot(snapshot, label)
    if manifest is None:
        return None
    times = [0]
    for name in manifest.refs:
        target = snapshot.published[name]
        if target.tags:
            times.append(snapshot.tags.get(target.tags[0], 0))
        elif target.commit is not None and target.commit in snapshot.commits:
            times.append(snapshot.commits.time_of(target.commit))
    return File(StaticContent(manifest.to_bytes()), max(times))


def _link_target(from_dir: str, to_path: str) -> str:
    depth = from_dir.count("/") + 1 if from_dir else 0
    return "../" * depth + to_path


def build_layout(
    snapshot: RepoSnapshot,
    *,
    pack_content: Callable[[bytes], Content],
    readme: bytes,
    started: int,
    contributors: Sequence[Contributor] = (),
) -> Layout:
    """The tree for one snapshot.  `started` (the mount time) is the mtime of static things."""
    root = StaticDir()
    dirs: dict[str, Directory] = {"": root}
    packs = PackDir(snapshot.commits, pack_content, snapshot.tags, lambda label: manifest_file(snapshot, label))
    dirs[PACKS_DIR] = packs
    root.entries["README"] = File(StaticContent(readme), started)
    root.entries[PACKS_DIR] = Dir(PACKS_DIR)
    root.entries[TORRENTS_DIR] = Dir(TORRENTS_DIR)
    dirs[TORRENTS_DIR] = StaticDir()
    root.entries["refs"] = Dir("refs")
    dirs["refs"] = StaticDir()

    def add(path: str, entry: File | Link, *, who: str) -> None:
        parts = path.split("/")
        if not path or any(p in ("", ".", "..") for p in parts):
            log.warning("%s: ignoring bad path %r", who, path)
            return
        parent = ""
        for part in parts[:-1]:
            here = f"{parent}/{part}" if parent else part
            d = dirs.get(parent)
            if here not in dirs:
                # packs/ takes subdirectories (packs/rollups/) among its contributed entries.
                entries = d.entries if isinstance(d, StaticDir) else d.extra if isinstance(d, PackDir) else None
                if entries is None or part in entries or PACK_NAME.match(part):
                    log.warning("%s: %s conflicts with an existing entry; skipped", who, path)
                    return
                entries[part] = Dir(here)
                dirs[here] = StaticDir()
            parent = here
        d = dirs[parent]
        name = parts[-1]
        if isinstance(d, PackDir):
            if PACK_NAME.match(name) or name in d.extra:
                log.warning("%s: %s conflicts with an existing entry; skipped", who, path)
                return
            d.extra[name] = entry
            return
        if name in d.entries:
            log.warning("%s: %s conflicts with an existing entry; skipped", who, path)
            return
        d.entries[name] = entry

    for ref, cid in sorted(snapshot.refs.items()):
        if ref != "HEAD" and not ref.startswith("refs/"):
            continue
        if cid not in snapshot.commits:
            log.warning("%s: commit %s is not in the commit list; skipped", ref, cid.decode())
            continue
        parent = ref.rpartition("/")[0]
        target = _link_target(parent, f"{PACKS_DIR}/{pack_name(cid)}")
        add(ref, Link(target, snapshot.commits.time_of(cid)), who="refs")

    for label in PUBLISHED_LABELS:
        manifest = manifest_file(snapshot, label)
        if manifest is not None:
            add(f"{PACKS_DIR}/{label}{MANIFEST_SUFFIX}", manifest, who="manifests")

    for contribute in contributors:
        who = getattr(contribute, "__qualname__", repr(contribute))
        try:
            extra = list(contribute(snapshot))
        except Exception:
            log.exception("layout contributor %s failed; its files are left out", who)
            continue
        for path, entry in extra:
            if not isinstance(entry, (File, Link)):
                log.warning("%s: %s is neither a File nor a Link; skipped", who, path)
                continue
            add(path, entry, who=who)

    for d in dirs.values():
        d.seal()  # type: ignore[attr-defined]
    return Layout(dirs, snapshot)


# -- inode numbers -----------------------------------------------------------------------
class Inodes:
    """Inode numbers that never change or get reused while the mount lives.

    A number names one path *and* one immutable thing at it: a directory, a
    file's content key, or a link's target.  When a ref moves, its link gets
    a new number (the old one keeps answering with the old target), so
    nothing the kernel has cached is ever wrong, only older.
    """

    ROOT = 1

    def __init__(self) -> None:
        self._by_key: dict[tuple, int] = {("d", ""): self.ROOT}
        self._nodes: dict[int, tuple[int, str, Entry]] = {self.ROOT: (self.ROOT, "", Dir(""))}
        self._next = self.ROOT + 1

    @staticmethod
    def _key(parent: int, name: str, entry: Entry) -> tuple:
        if isinstance(entry, Dir):
            return ("d", entry.path)
        if isinstance(entry, Link):
            return ("l", parent, name, entry.target)
        return ("f", parent, name, entry.content.key)

    def ino_for(self, parent: int, name: str, entry: Entry) -> int:
        key = self._key(parent, name, entry)
        ino = self._by_key.get(key)
        if ino is None:
            ino = self._next
            self._next += 1
            self._by_key[key] = ino
            self._nodes[ino] = (parent, name, entry)
        return ino

    def node(self, ino: int) -> tuple[int, str, Entry]:
        """(parent inode, name, entry); KeyError for a number never handed out."""
        return self._nodes[ino]

    def __len__(self) -> int:
        return len(self._nodes)
