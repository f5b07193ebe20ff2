"""Checking a received commit pack: bytes in, verified objects or a reason out.

Pure and synchronous: no file system, no repository.  What the receiving
repository already holds is asked through a `RepoView` (three callables), so
tests feed bytes and dictionaries.  Three outcomes, kept apart on purpose:

* `PackIncomplete` -- the SHA-1 trailer does not match (yet): a client may
  still be writing the file.  `looks_partial` says whether the bytes look
  like a client's pre-allocated file with pieces missing.
* `PackRejected` -- the trailer matches, so the bytes are final, and they are
  wrong or hostile (bad structure, a bound passed, a bad object, wrong name,
  deltas that never resolve although every parent is present, ...).
* `Waiting` -- a valid pack whose parents (and so delta bases) are not in the
  repository yet.

A success is a `VerifiedPack`: every object inflated, every delta applied
within bounds, every id computed, the named commit inside and well formed,
and every tree's entries either in the pack or in the repository.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Callable

from .delta import DeltaError, apply_delta
from .packfile import (
    OBJ_BLOB,
    OBJ_COMMIT,
    OBJ_OFS_DELTA,
    OBJ_REF_DELTA,
    OBJ_TREE,
    TYPE_NAMES,
    Limits,
    PackError,
    object_id,
    read_pack,
)

__all__ = [
    "PACK_NAME",
    "WATCH_LIMITS",
    "PackIncomplete",
    "PackRejected",
    "Waiting",
    "RepoView",
    "VerifiedPack",
    "StoredEntry",
    "CommitHeader",
    "commit_from_name",
    "looks_partial",
    "check_complete",
    "peek_commit",
    "verify_pack",
    "parse_commit",
    "check_tree",
]

#: A commit pack's file name: the commit id in lower-case hex, then `.pack`.
PACK_NAME = re.compile(r"([0-9a-f]{40})\.pack\Z")

#: Bounds for received packs (tighter than the reader's defaults).
WATCH_LIMITS = Limits(max_objects=1_000_000, max_object_size=512 << 20, max_total_inflated=2 << 30)

#: A run of this many zero bytes marks a region a client has not written yet.
_ZERO_RUN = b"\0" * 64


class PackIncomplete(ValueError):
    """The file does not check out yet (it may still be being written)."""

    def __init__(self, reason: str, partial: bool):
        super().__init__(reason)
        self.partial = partial


class PackRejected(ValueError):
    """The file is complete and wrong: it must never touch the repository."""


@dataclass(frozen=True)
class Waiting:
    """A valid pack that needs these commits (or objects) first; hex ids."""

    commit: str
    needs: frozenset[str]


@dataclass(frozen=True)
class RepoView:
    """What the checker may ask about the receiving repository.

    read(binary id) -> (type number, content) or None;
    has(binary id) -> bool (any object);
    has_commit(hex id) -> bool: the commit is present with its whole history;
    missing(binary ids) -> the set of those that are absent (one round trip for many;
    optional, has() is asked one by one without it).
    """

    read: Callable[[bytes], tuple[int, bytes] | None]
    has: Callable[[bytes], bool]
    has_commit: Callable[[str], bool]
    missing: Callable[[list[bytes]], set[bytes]] | None = None

    def absent(self, ids: list[bytes]) -> set[bytes]:
        if self.missing is not None:
            return self.missing(ids)
        return {oid for oid in ids if not self.has(oid)}


@dataclass(frozen=True)
class CommitHeader:
    tree: str  # hex
    parents: tuple[str, ...]  # hex


@dataclass(frozen=True)
class StoredEntry:
    """One entry of the received pack: its id and where its bytes lie."""

    id: bytes  # binary
    start: int
    end: int
    type_num: int  # as stored (OFS_DELTA/REF_DELTA for deltas)
    base_id: bytes | None  # REF_DELTA base


@dataclass
class VerifiedPack:
    commit: str  # hex
    header: CommitHeader
    data: bytes  # the received bytes, verbatim
    entries: list[StoredEntry]
    objects: dict[bytes, tuple[int, bytes]]  # binary id -> (type, content), pack objects
    external: dict[bytes, tuple[int, bytes]] = field(default_factory=dict)  # bases read from the repo

    @property
    def has_ofs_delta(self) -> bool:
        return any(e.type_num == OBJ_OFS_DELTA for e in self.entries)

    @property
    def inflated_size(self) -> int:
        return sum(len(c) for _, c in self.objects.values()) + sum(len(c) for _, c in self.external.values())


def commit_from_name(name: str) -> str | None:
    """The commit id a file name announces, or None if it is not a pack's name."""
    m = PACK_NAME.match(name)
    return m.group(1) if m else None


def looks_partial(data: bytes) -> bool:
    """True if the bytes look like a client's file with pieces still missing.

    Clients pre-allocate files with zeros and write pieces in any order; a
    complete pack starts with `PACK`, ends in a SHA-1 and, being zlib data,
    never holds a long run of zeros.
    """
    return not data or data[:1] == b"\0" or data[-1:] == b"\0" or _ZERO_RUN in data


def check_complete(data: bytes) -> None:
    """PackIncomplete unless the SHA-1 trailer matches the contents."""
    if len(data) < 32:
        raise PackIncomplete(f"too short to be a pack ({len(data)} bytes)", looks_partial(data))
    if hashlib.sha1(memoryview(data)[:-20]).digest() != data[-20:]:
        raise PackIncomplete("trailing SHA-1 does not match the contents", looks_partial(data))


# -- objects -------------------------------------------------------------------------

_IDENT = re.compile(rb"[^<>\n]* <[^<>\n]*> (?:0|[1-9][0-9]{0,18}) [+-][0-9]{4}\Z")
_HEX40 = re.compile(rb"[0-9a-f]{40}\Z")


def parse_commit(raw: bytes) -> CommitHeader:
    """The tree and parents of a commit, checked as strictly as `git fsck` does."""
    head, sep, _ = raw.partition(b"\n\n")
    lines = head.split(b"\n")
    if not lines or not lines[0].startswith(b"tree ") or not _HEX40.match(lines[0][5:]):
        raise PackRejected("commit does not start with a valid tree line")
    tree = lines[0][5:].decode()
    parents = []
    i = 1
    while i < len(lines) and lines[i].startswith(b"parent "):
        p = lines[i][7:]
        if not _HEX40.match(p):
            raise PackRejected("commit has a malformed parent line")
        parents.append(p.decode())
        i += 1
    for key in (b"author ", b"committer "):
        if i >= len(lines) or not lines[i].startswith(key) or not _IDENT.match(lines[i][len(key) :]):
            raise PackRejected(f"commit has a missing or malformed {key.decode().strip()} line")
        i += 1
    if len(set(parents)) != len(parents):
        raise PackRejected("commit lists a parent twice")
    return CommitHeader(tree, tuple(parents))


_MODES = {b"100644": OBJ_BLOB, b"100755": OBJ_BLOB, b"120000": OBJ_BLOB, b"40000": OBJ_TREE, b"160000": None}
_BAD_NAMES = {b"", b".", b"..", b".git"}


def check_tree(raw: bytes) -> list[tuple[bytes, int | None]]:
    """(binary id, expected type or None for a gitlink) of each entry; PackRejected if malformed.

    Refuses what `git fsck` calls an error and names that are unsafe to
    check out (`.`, `..`, `.git`, a slash).
    """
    out = []
    pos = 0
    prev_key = None
    prev_name = None
    n = len(raw)
    while pos < n:
        sp = raw.find(b" ", pos, pos + 8)
        nul = raw.find(b"\0", sp + 1) if sp >= 0 else -1
        if sp < 0 or nul < 0 or nul + 21 > n:
            raise PackRejected("tree entry is malformed")
        mode = raw[pos:sp]
        name = raw[sp + 1 : nul]
        oid = raw[nul + 1 : nul + 21]
        pos = nul + 21
        if mode not in _MODES:
            raise PackRejected(f"tree entry has an unknown mode {mode.decode(errors='replace')!r}")
        if name.lower() in _BAD_NAMES or b"/" in name:
            raise PackRejected(f"tree entry has an unsafe name {name.decode(errors='replace')!r}")
        key = name + b"/" if mode == b"40000" else name
        if prev_key is not None and (key <= prev_key or name == prev_name):
            raise PackRejected("tree entries are not sorted or repeat a name")
        prev_key, prev_name = key, name
        out.append((oid, _MODES[mode]))
    return out


# -- the pack ------------------------------------------------------------------------


def _read_entries(data: bytes, limits: Limits):
    try:
        yield from read_pack(data, limits)
    except PackError as exc:
        raise PackRejected(str(exc)) from None


def peek_commit(data: bytes, commit: str, limits: Limits = WATCH_LIMITS) -> CommitHeader | None:
    """Find the named commit stored whole and parse it, reading no further than needed.

    None if the pack holds deltas that might produce it (then only
    `verify_pack` can tell); PackRejected if the pack cannot hold it.
    """
    want = bytes.fromhex(commit)
    saw_delta = False
    others = []
    for e in _read_entries(data, limits):
        if e.type_num == OBJ_COMMIT and object_id(OBJ_COMMIT, e.data) == want:
            return parse_commit(e.data)
        if e.type_num in (OBJ_OFS_DELTA, OBJ_REF_DELTA):
            saw_delta = True
        elif e.type_num != OBJ_COMMIT:
            others.append(e)
    if saw_delta:
        return None
    for e in others:
        if object_id(e.type_num, e.data) == want:
            raise PackRejected(f"the file is named for {commit}, which is a {TYPE_NAMES[e.type_num].decode()}, not a commit")
    raise PackRejected(f"the file is named for commit {commit}, which the pack does not hold")


def verify_pack(data: bytes, commit: str, repo: RepoView, limits: Limits = WATCH_LIMITS) -> VerifiedPack | Waiting:
    """Check every object of a complete pack named for `commit`.

    The trailer must already match (`check_complete`).  Delta bases are
    looked up in the pack, then in the repository; the pack waits when
    some parent of the commit is absent, and is rejected when deltas still
    do not resolve although every parent is present.
    """
    raw = list(_read_entries(data, limits))
    end = len(data) - 20
    bounds = [(e.offset, raw[i + 1].offset if i + 1 < len(raw) else end) for i, e in enumerate(raw)]
    by_offset = {e.offset: i for i, e in enumerate(raw)}
    resolved: list[tuple[int, bytes] | None] = [None] * len(raw)
    ids: list[bytes | None] = [None] * len(raw)
    objects: dict[bytes, tuple[int, bytes]] = {}
    external: dict[bytes, tuple[int, bytes]] = {}
    wait_ref: dict[bytes, list[int]] = {}
    wait_ofs: dict[int, list[int]] = {}
    total = 0
    stack: list[int] = []

    def settle(i: int, type_num: int, content: bytes) -> None:
        nonlocal total
        total += len(content)
        if total > limits.max_total_inflated:
            raise PackRejected(f"objects inflate past the bound of {limits.max_total_inflated} bytes")
        oid = object_id(type_num, content)
        if oid in objects:
            raise PackRejected(f"object {oid.hex()} appears twice in the pack")
        resolved[i] = (type_num, content)
        ids[i] = oid
        objects[oid] = (type_num, content)
        stack.append(i)

    def apply(i: int, base: tuple[int, bytes]) -> None:
        try:
            content = apply_delta(base[1], raw[i].data, max_size=limits.max_object_size)
        except DeltaError as exc:
            raise PackRejected(f"object {i} at offset {raw[i].offset}: {exc}") from None
        settle(i, base[0], content)

    for i, e in enumerate(raw):
        if e.type_num == OBJ_REF_DELTA:
            wait_ref.setdefault(e.base_id, []).append(i)
        elif e.type_num == OBJ_OFS_DELTA:
            if e.base_offset not in by_offset:
                raise PackRejected(f"object {i} at offset {e.offset}: delta base offset does not start an object")
            wait_ofs.setdefault(e.base_offset, []).append(i)
        else:
            settle(i, e.type_num, e.data)

    def propagate() -> None:
        while stack:
            i = stack.pop()
            base = resolved[i]
            for j in wait_ofs.pop(raw[i].offset, ()):
                apply(j, base)
            for j in wait_ref.pop(ids[i], ()):
                apply(j, base)

    propagate()
    tried: set[bytes] = set()
    while True:
        progress = False
        for base_id in [b for b in wait_ref if b not in tried]:
            tried.add(base_id)
            found = repo.read(base_id)
            if found is None:
                continue
            if found[0] not in TYPE_NAMES:
                raise PackRejected(f"delta base {base_id.hex()} is not an object")
            external[base_id] = found
            for j in wait_ref.pop(base_id):
                apply(j, found)
            propagate()
            progress = True
        if not progress:
            break

    missing_bases = frozenset(b.hex() for b in wait_ref)
    want = bytes.fromhex(commit)
    if want not in objects:
        if missing_bases or wait_ofs:
            return Waiting(commit, missing_bases)
        raise PackRejected(f"the file is named for commit {commit}, which the pack does not hold")
    type_num, content = objects[want]
    if type_num != OBJ_COMMIT:
        raise PackRejected(f"the file is named for {commit}, which is a {TYPE_NAMES[type_num].decode()}, not a commit")
    header = parse_commit(content)
    missing_parents = frozenset(p for p in header.parents if not repo.has_commit(p))
    if missing_parents:
        return Waiting(commit, missing_parents | missing_bases)
    if missing_bases or wait_ofs:
        raise PackRejected(
            f"{len(raw) - sum(r is not None for r in resolved)} deltas never resolve although every parent "
            f"is present (missing base or delta cycle: {', '.join(sorted(missing_bases)[:3])})"
        )
    commits = [oid for oid, (t, _) in objects.items() if t == OBJ_COMMIT]
    if len(commits) != 1:
        raise PackRejected(f"a commit pack holds one commit, this one holds {len(commits)}")
    if any(t not in (OBJ_COMMIT, OBJ_TREE, OBJ_BLOB) for t, _ in objects.values()):
        raise PackRejected("a commit pack holds only a commit, trees and blobs")
    _check_connected(header, objects, repo)
    entries = [
        StoredEntry(ids[i], start, stop, raw[i].type_num, raw[i].base_id) for i, (start, stop) in enumerate(bounds)
    ]
    return VerifiedPack(commit, header, data, entries, objects, external)


def _check_connected(header: CommitHeader, objects: dict[bytes, tuple[int, bytes]], repo: RepoView) -> None:
    """The root tree and every entry of every tree in the pack exist, with the right type.

    Objects already in the repository are trusted to be complete (they came
    with a commit whose history was complete, see docs/watcher.md).
    """
    root = bytes.fromhex(header.tree)
    if root in objects:
        if objects[root][0] != OBJ_TREE:
            raise PackRejected(f"commit's tree {header.tree} is not a tree")
    elif not repo.has(root):
        raise PackRejected(f"commit's tree {header.tree} is neither in the pack nor in the repository")
    outside: dict[bytes, bytes] = {}  # entry id -> a tree of the pack that names it
    for oid, (type_num, content) in objects.items():
        if type_num != OBJ_TREE:
            continue
        for entry_id, want in check_tree(content):
            if want is None:  # a gitlink names a commit of another repository
                continue
            if entry_id in objects:
                if objects[entry_id][0] != want:
                    raise PackRejected(f"tree {oid.hex()} names {entry_id.hex()} with the wrong type")
            else:
                outside.setdefault(entry_id, oid)
    # one question for all of them: asked one at a time, this dominated an import
    absent = repo.absent(list(outside))
    if absent:
        entry_id = min(absent)
        raise PackRejected(
            f"tree {outside[entry_id].hex()} names {entry_id.hex()}, which is neither in the pack nor in the repository"
        )

