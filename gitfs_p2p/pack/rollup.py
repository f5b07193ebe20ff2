"""Roll-ups: one file for a sealed run of old history (docs/pack-format.md, "Roll-ups").  Pure.

The rule, which every peer applies the same way:

* A commit's first-parent depth is the length of its own first-parent chain (a root has
  depth 1): a pure function of the commit.
* The *chains*: the published refs are taken in order (the manifest's HEAD branch,
  the other branches by name, then the tags by name), and a ref's commit starts a chain
  unless its history shares a commit with that of a chain taken before.  So each
  separate history (a project's branches, an unrelated `todo` or `gh-pages` branch) has
  one chain, and no two chains ever cut the same commits.
* The boundaries are the chain commits at depths SPAN, 2*SPAN, ...  As a ref moves
  forward along its first parents, old boundaries stay the same commits; a new branch
  or tag that shares history with HEAD's branch changes nothing.
* Roll-up k holds the commit packs of the commits boundary k reaches and boundary k-1
  does not (`git rev-list B_k --not B_k-1`), ordered as `gitp2p packs` orders any
  commits (parents first, then date, then id).  So it is a pure function of B_k.
* The file: a header naming every member and its size, then the members' commit packs
  (format 2, unchanged) back to back.  A receiver splits it and checks every member
  exactly as a commit pack; anyone holding the commit packs rebuilds the same bytes.

Commits no roll-up holds form the *tail*, published one pack per commit as before; a
new commit appends to it.

Tag groups (`<id>.tags`, the same file layout with its own magic): the packs of the
annotated tags that peel to one roll-up's members, in torrent order, as one file, when
there are at least TAG_GROUP_MIN of them (tags of trees and blobs likewise, as one group).
A group is named for the SHA-1 of its members' binary ids, so a name means the same
members, hence the same bytes, in every torrent (a torrent of fewer tags has other groups,
with other names).
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..git.walk import order
from .objects import CommitInfo, RefTarget

__all__ = [
    "ROLLUP_SPAN",
    "ROLLUP_DIR",
    "ROLLUP_SUFFIX",
    "ROLLUP_NAME",
    "ROLLUP_MAGIC",
    "TAGS_MAGIC",
    "TAGS_SUFFIX",
    "TAG_GROUP_MIN",
    "TAG_GROUP_SPAN",
    "Rollup",
    "HistoryPlan",
    "RollupError",
    "chain_candidates",
    "chain_of",
    "plan_history",
    "rollup_name",
    "rollup_from_name",
    "is_tag_group_name",
    "tag_group",
    "tag_group_id",
    "rollup_header",
    "header_size",
    "parse_rollup",
]

#: First-parent depths between boundaries (pinned: changing it changes every torrent).
ROLLUP_SPAN = 256
#: Roll-ups lie in this subdirectory of a torrent's `packs/`.
ROLLUP_DIR = "rollups"
ROLLUP_SUFFIX = ".rollup"
TAGS_SUFFIX = ".tags"
#: A roll-up's file name: its upper boundary's id in lower-case hex, then `.rollup`; a tag
#: group's: its id (tag_group_id), then `.tags`.
ROLLUP_NAME = re.compile(r"([0-9a-f]{40})\.(?:rollup|tags)\Z")
ROLLUP_MAGIC = b"gitp2p rollup 1\n"
TAGS_MAGIC = b"gitp2p tagset 1\n"
#: Tags are grouped when at least this many would be (a lone tag stays `<tag>.pack`).
TAG_GROUP_MIN = 2
#: The "span" under which the pack cache records tag groups' members (roll-ups: their span).
TAG_GROUP_SPAN = 0
_COUNT = struct.Struct(">I")
_MEMBER = struct.Struct(">20sQ")
#: At most this many members (far above any SPAN's worth of merged history we have seen).
MAX_MEMBERS = 1_000_000


class RollupError(ValueError):
    """The bytes are not (or not yet) a well-formed roll-up."""

    def __init__(self, reason: str, partial: bool = False):
        super().__init__(reason)
        self.partial = partial


@dataclass(frozen=True)
class Rollup:
    """A roll-up, or (tags=True) a tag group: then boundary is the group's id, depth 0,
    and the members are tag ids."""

    boundary: bytes  # hex id of the upper boundary commit (the file is named for it)
    depth: int  # its first-parent depth (a multiple of the span)
    members: tuple[bytes, ...]  # hex commit ids, in file order
    tags: bool = False  # a tag group (pack/rollup.py's docstring)

    @property
    def path(self) -> str:
        """The file's path inside the torrent's `packs/`."""
        suffix = TAGS_SUFFIX if self.tags else ROLLUP_SUFFIX
        return f"{ROLLUP_DIR}/{self.boundary.decode('ascii')}{suffix}"

    @property
    def magic(self) -> bytes:
        return TAGS_MAGIC if self.tags else ROLLUP_MAGIC


@dataclass(frozen=True)
class HistoryPlan:
    rollups: tuple[Rollup, ...]
    tail: tuple[bytes, ...]  # hex ids of the commits no roll-up holds, in order


def rollup_name(boundary: bytes) -> str:
    return boundary.decode("ascii") + ROLLUP_SUFFIX


def rollup_from_name(name: str) -> str | None:
    """The boundary commit a roll-up's file name announces (a tag group's: its id), or None."""
    m = ROLLUP_NAME.match(name)
    return m.group(1) if m else None


def is_tag_group_name(name: str) -> bool:
    return name.endswith(TAGS_SUFFIX) and ROLLUP_NAME.match(name) is not None


def tag_group_id(members: Sequence[bytes] | Sequence[str]) -> str:
    """A tag group's id: the SHA-1 of its members' binary ids, in file order (hex)."""
    h = hashlib.sha1()
    for m in members:
        h.update(bytes.fromhex(m.decode("ascii") if isinstance(m, bytes) else m))
    return h.hexdigest()


def tag_group(members: Sequence[bytes]) -> Rollup:
    """The tag group of these tags (hex ids), in this order."""
    return Rollup(tag_group_id(members).encode("ascii"), 0, tuple(members), tags=True)


def chain_of(infos: dict[bytes, CommitInfo], tip: bytes) -> list[bytes]:
    """The first-parent chain of tip, root first (index i holds depth i + 1)."""
    chain = []
    c: bytes | None = tip
    while c is not None and len(chain) <= len(infos):
        chain.append(c)
        parents = infos[c].parents
        c = parents[0] if parents else None
    chain.reverse()
    return chain


def chain_candidates(targets: dict[str, RefTarget], head: str | None) -> list[bytes]:
    """The published refs' commits in the rule's order: HEAD's branch (head: the ref name
    HEAD points at), the other branches by name, then the tags by name."""
    names = sorted(targets, key=lambda n: (n != head, not n.startswith("refs/heads/"), n))
    return [c for c in (targets[n].commit for n in names) if c is not None]


def _chain_tips(infos: dict[bytes, CommitInfo], candidates: Iterable[bytes]) -> list[bytes]:
    """The candidates, in order, whose history shares no commit with the history of one
    taken before: one chain for each separate history, never two cutting the same
    commits.  Every commit is visited at most twice."""
    taken: set[bytes] = set()  # the histories of the chains taken
    joined: set[bytes] = set()  # commits seen to lead into them
    out = []
    for tip in candidates:
        if tip not in infos or tip in taken or tip in joined:
            continue
        seen: set[bytes] = set()
        stack = [tip]
        meets = False
        while stack:
            c = stack.pop()
            if c in taken or c in joined:
                meets = True
                continue
            if c not in seen:
                seen.add(c)
                stack.extend(infos[c].parents)
        (joined if meets else taken).update(seen)
        if not meets:
            out.append(tip)
    return out


def plan_history(commits: Iterable[CommitInfo], candidates: Sequence[bytes], span: int = ROLLUP_SPAN) -> HistoryPlan:
    """Cut the commits (closed under parents) into roll-ups and a tail.

    candidates: the published refs' commits in the rule's order (HEAD's branch, the other
    branches by name, then the tags by name); the chains are those of _chain_tips.
    Roll-ups come ordered by (depth, boundary id)."""
    infos = {c.id: c for c in commits}
    sealed: set[bytes] = set()
    rollups = []
    for tip in _chain_tips(infos, candidates):
        chain = chain_of(infos, tip)
        for depth in range(span, len(chain) + 1, span):
            boundary = chain[depth - 1]
            members: dict[bytes, CommitInfo] = {}
            stack = [boundary]
            while stack:
                c = stack.pop()
                if c in members or c in sealed:
                    continue
                members[c] = infos[c]
                stack.extend(p for p in infos[c].parents if p not in members and p not in sealed)
            rollups.append(Rollup(boundary, depth, tuple(c.id for c in order(members))))
            sealed.update(members)
    rollups.sort(key=lambda r: (r.depth, r.boundary))
    tail = order({oid: info for oid, info in infos.items() if oid not in sealed})
    return HistoryPlan(tuple(rollups), tuple(c.id for c in tail))


def header_size(count: int) -> int:
    return len(ROLLUP_MAGIC) + _COUNT.size + count * _MEMBER.size


def rollup_header(members: Sequence[tuple[bytes, int]], magic: bytes | None = None) -> bytes:
    """The header before the member packs: magic, count, then (binary id, size) of each.
    magic: a roll-up's (default) or a tag group's (TAGS_MAGIC)."""
    out = [ROLLUP_MAGIC if magic is None else magic, _COUNT.pack(len(members))]
    out.extend(_MEMBER.pack(bytes.fromhex(oid.decode("ascii")), size) for oid, size in members)
    return b"".join(out)


def parse_rollup(
    data: bytes | memoryview, max_member: int = 1 << 30, *, file_size: int | None = None, magic: bytes | None = None
) -> list[tuple[str, int, int]]:
    """[(hex commit id, start, end)] of each member pack; RollupError if the header is bad.

    data: the file, or at least its header (then file_size is the file's length).
    Checks only the header and that the members exactly fill the file; the members'
    own bytes are checked as commit packs.  partial=True where a client may still be
    writing the file (zeros where the header should be).  magic: TAGS_MAGIC for a tag group.
    """
    magic = ROLLUP_MAGIC if magic is None else magic
    data = memoryview(data)
    file_size = len(data) if file_size is None else file_size
    head = bytes(data[: len(magic)])
    if head != magic:
        what = "tag group" if magic == TAGS_MAGIC else "roll-up"
        raise RollupError(f"not a gitp2p {what} (bad magic)", partial=not head.strip(b"\0"))
    if len(data) < header_size(0):
        raise RollupError("too short to be a roll-up", partial=True)
    (count,) = _COUNT.unpack_from(data, len(ROLLUP_MAGIC))
    if count == 0 or count > MAX_MEMBERS:
        raise RollupError(f"a roll-up of {count} members", partial=count == 0)
    pos = header_size(count)
    if pos > len(data):
        raise RollupError(f"the header of {count} members is longer than the file")
    out = []
    seen = set()
    for i in range(count):
        raw, size = _MEMBER.unpack_from(data, len(ROLLUP_MAGIC) + _COUNT.size + i * _MEMBER.size)
        oid = raw.hex()
        if size == 0 or raw == bytes(20):
            raise RollupError(f"member {i} is empty", partial=True)
        if size > max_member:
            raise RollupError(f"member {oid} declares {size} bytes, more than the bound of {max_member}")
        if oid in seen:
            raise RollupError(f"member {oid} is listed twice")
        seen.add(oid)
        out.append((oid, pos, pos + size))
        pos += size
    if pos != file_size:
        raise RollupError(f"the members fill {pos} bytes, the file has {file_size}")
    return out
