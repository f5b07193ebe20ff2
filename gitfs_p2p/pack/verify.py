"""Checking a received pack (a commit's or a tag's): bytes in, verified objects or a reason out.

Pure and synchronous: no file system, no repository.  What the receiving
repository already holds is asked through a `RepoView` (a few callables), so
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
within bounds, every id computed, the named commit (or tag) inside and
readable by git, every object checked by git fsck's rules under an
`FsckPolicy` (fsck.py), and the whole history below it proven complete: each
object a tree of the pack names is in the pack or in a tree of a parent
commit that is itself complete (an object merely present in the repository
proves nothing).  The rules are tabled in docs/watcher.md.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import NamedTuple

from .checker import Checker, PackRejected, RepoView, TreeCache, parse_named
from .delta import DeltaError, apply_delta
from .fsck import FsckPolicy
from .objects import CommitHeader, TagHeader
from .packfile import (
    OBJ_COMMIT,
    OBJ_OFS_DELTA,
    OBJ_REF_DELTA,
    OBJ_TAG,
    TYPE_NAMES,
    Limits,
    PackError,
    object_id,
    read_pack,
    read_pack_all,
)

__all__ = [
    "PACK_NAME",
    "pack_name",
    "WATCH_LIMITS",
    "PackIncomplete",
    "PackRejected",
    "Waiting",
    "RepoView",
    "TreeCache",
    "VerifiedPack",
    "StoredEntry",
    "commit_from_name",
    "looks_partial",
    "check_complete",
    "peek",
    "verify_pack",
]

#: A pack's file name: the id of its commit (or tag) in lower-case hex, then `.pack`.
PACK_NAME = re.compile(r"([0-9a-f]{40})\.pack\Z")


def pack_name(object_id: bytes) -> str:
    """The file name of the pack of a commit (or tag) id in hex: what PACK_NAME matches."""
    return object_id.decode("ascii") + ".pack"

#: Bounds for received packs (tighter than the reader's defaults).
WATCH_LIMITS = Limits(max_objects=1_000_000, max_object_size=512 << 20, max_total_inflated=2 << 30)

#: A run of this many zero bytes marks a region a client has not written yet.
_ZERO_RUN = b"\0" * 64


class PackIncomplete(ValueError):
    """The file does not check out yet (it may still be being written)."""

    def __init__(self, reason: str, partial: bool):
        super().__init__(reason)
        self.partial = partial


@dataclass(frozen=True)
class Waiting:
    """A valid pack that needs these commits (or tags, or delta bases) first; hex ids."""

    object_id: str
    needs: frozenset[str]
    unresolved: bool = False  # the named object itself lies in deltas whose bases are absent


class StoredEntry(NamedTuple):
    """One entry of the received pack: its id and where its bytes lie (a tuple: a pack
    has one per object, and a frozen dataclass costs several times as much to make)."""

    id: bytes  # binary
    start: int
    end: int
    type_num: int  # as stored (OFS_DELTA/REF_DELTA for deltas)
    base_id: bytes | None  # REF_DELTA base


@dataclass
class VerifiedPack:
    object_id: str  # hex: the commit or tag the file is named for
    header: CommitHeader | TagHeader
    data: bytes  # the received bytes, verbatim
    entries: list[StoredEntry]
    objects: dict[bytes, tuple[int, bytes]]  # binary id -> (type, content), pack objects
    external: dict[bytes, tuple[int, bytes]] = field(default_factory=dict)  # bases read from the repo

    @property
    def is_tag(self) -> bool:
        return isinstance(self.header, TagHeader)

    @property
    def has_ofs_delta(self) -> bool:
        return any(e.type_num == OBJ_OFS_DELTA for e in self.entries)

    @property
    def inflated_size(self) -> int:
        return sum(len(c) for _, c in self.objects.values()) + sum(len(c) for _, c in self.external.values())


def commit_from_name(name: str) -> str | None:
    """The object id (a commit's or a tag's) a file name announces, or None if it is not a pack's name."""
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



# -- reading the pack ---------------------------------------------------------------------


def _read_entries(data: bytes, limits: Limits):
    try:
        yield from read_pack(data, limits)
    except PackError as exc:
        raise PackRejected(str(exc)) from None


def _needs(header: CommitHeader | TagHeader) -> frozenset[str]:
    """What must be complete in the repository before this pack can be: parents, or a tag's target."""
    if isinstance(header, CommitHeader):
        return frozenset(header.parents)
    if header.type in ("commit", "tag"):
        return frozenset([header.object])
    return frozenset()


def peek(data: bytes, named: str, limits: Limits = WATCH_LIMITS) -> frozenset[str] | None:
    """What the pack named for `named` needs first (parents, a tag's target), reading no
    further than needed.

    None if the pack holds deltas that might produce the object (then only
    `verify_pack` can tell); PackRejected if the pack cannot hold it.
    """
    want = bytes.fromhex(named)
    saw_delta = False
    others = []
    for e in _read_entries(data, limits):
        if e.type_num in (OBJ_COMMIT, OBJ_TAG) and object_id(e.type_num, e.data) == want:
            return _needs(parse_named(e.type_num, e.data, named))
        if e.type_num in (OBJ_OFS_DELTA, OBJ_REF_DELTA):
            saw_delta = True
        else:
            others.append(e)
    if saw_delta:
        return None
    for e in others:
        if object_id(e.type_num, e.data) == want:
            raise PackRejected(f"the file is named for {named}, which is a {TYPE_NAMES[e.type_num].decode()}, not a commit or tag")
    raise PackRejected(f"the file is named for {named}, which the pack does not hold")


#: The header git hashes before an object's content, by type ("blob %d\0" % size).
_ID_HEADER = {t: name + b" %d\0" for t, name in TYPE_NAMES.items()}


def _resolve(data: bytes, repo: RepoView, limits: Limits):
    """Every object of the pack, deltas applied (bases from the pack, then the repository).

    Returns (raw entries, their ids (None where unresolved), objects by id, external
    bases read from the repository, the REF_DELTA bases still missing, whether OFS
    deltas are left unresolved).
    """
    try:
        raw = read_pack_all(data, limits)
    except PackError as exc:
        raise PackRejected(str(exc)) from None
    resolved: list[tuple[int, bytes] | None] = [None] * len(raw)
    ids: list[bytes | None] = [None] * len(raw)
    objects: dict[bytes, tuple[int, bytes]] = {}
    external: dict[bytes, tuple[int, bytes]] = {}
    wait_ref: dict[bytes, list[int]] = {}
    wait_ofs: dict[int, list[int]] = {}
    total = 0
    max_total = limits.max_total_inflated
    max_size = limits.max_object_size
    settled: list[int] = []  # settled, their dependents not looked at yet
    id_header = _ID_HEADER
    sha1 = hashlib.sha1

    def settle(i: int, type_num: int, content: bytes) -> None:
        nonlocal total
        total += len(content)
        if total > max_total:
            raise PackRejected(f"objects inflate past the bound of {max_total} bytes")
        h = sha1(id_header[type_num] % len(content))  # object_id(type_num, content)
        h.update(content)
        oid = h.digest()
        if oid in objects:
            raise PackRejected(f"object {oid.hex()} appears twice in the pack")
        resolved[i] = objects[oid] = (type_num, content)
        ids[i] = oid
        settled.append(i)

    def apply_all(waiting: list[int], base: tuple[int, bytes]) -> None:
        for i in waiting:
            try:
                content = apply_delta(base[1], raw[i].data, max_size=max_size)
            except DeltaError as exc:
                raise PackRejected(f"object {i} at offset {raw[i].offset}: {exc}") from None
            settle(i, base[0], content)

    offsets = None  # the entries' offsets, once an OFS delta needs them
    for i, e in enumerate(raw):
        if e.type_num == OBJ_REF_DELTA:
            wait_ref.setdefault(e.base_id, []).append(i)
        elif e.type_num == OBJ_OFS_DELTA:
            if offsets is None:
                offsets = {e.offset for e in raw}
            if e.base_offset not in offsets:
                raise PackRejected(f"object {i} at offset {e.offset}: delta base offset does not start an object")
            wait_ofs.setdefault(e.base_offset, []).append(i)
        else:
            settle(i, e.type_num, e.data)

    def propagate() -> None:
        while settled:
            i = settled.pop()
            if wait_ofs:
                waiting = wait_ofs.pop(raw[i].offset, None)
                if waiting:
                    apply_all(waiting, resolved[i])
            if wait_ref:
                waiting = wait_ref.pop(ids[i], None)
                if waiting:
                    apply_all(waiting, resolved[i])

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
            apply_all(wait_ref.pop(base_id), found)
            propagate()
            progress = True
        if not progress:
            break
    return raw, ids, objects, external, frozenset(b.hex() for b in wait_ref), bool(wait_ofs)


def verify_pack(
    data: bytes,
    named: str,
    repo: RepoView,
    limits: Limits = WATCH_LIMITS,
    policy: FsckPolicy = FsckPolicy(),
) -> VerifiedPack | Waiting:
    """Check every object of a complete pack named for the commit or tag `named`.

    The trailer must already match (`check_complete`).  The pack waits while what it
    needs (a commit's parents, a tag's target) is not complete in the repository, and
    is rejected when deltas still do not resolve although it is.
    """
    raw, ids, objects, external, missing_bases, ofs_left = _resolve(data, repo, limits)
    want = bytes.fromhex(named)
    if want not in objects:
        if missing_bases or ofs_left:
            return Waiting(named, missing_bases, unresolved=True)
        raise PackRejected(f"the file is named for {named}, which the pack does not hold")
    type_num, content = objects[want]
    header = parse_named(type_num, content, named)
    needs = frozenset(n for n in _needs(header) if not repo.complete(n))
    for n in needs:  # what is present must at least be of the right type
        found = objects.get(bytes.fromhex(n)) or repo.read(bytes.fromhex(n))
        expected = OBJ_TAG if isinstance(header, TagHeader) and header.type == "tag" else OBJ_COMMIT
        if found is not None and found[0] != expected:
            what = "parent" if isinstance(header, CommitHeader) else "target"
            raise PackRejected(
                f"{named}'s {what} {n} is a {TYPE_NAMES.get(found[0], b'?').decode()}, "
                f"not a {TYPE_NAMES[expected].decode()}"
            )
    if needs:
        return Waiting(named, needs | missing_bases)
    if missing_bases or ofs_left:
        unresolved = sum(1 for i in ids if i is None)
        raise PackRejected(
            f"{unresolved} deltas never resolve although everything the pack needs is present "
            f"(missing base or delta cycle: {', '.join(sorted(missing_bases)[:3])})"
        )
    check = Checker(named, objects, external, repo, policy)
    if isinstance(header, CommitHeader):
        check.commit_pack(header)
    else:
        check.tag_pack(header)
    end = len(data) - 20
    entries = [
        StoredEntry(ids[i], e.offset, raw[i + 1].offset if i + 1 < len(raw) else end, e.type_num, e.base_id)
        for i, e in enumerate(raw)
    ]
    return VerifiedPack(named, header, data, entries, objects, external)
