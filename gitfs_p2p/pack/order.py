"""The order of a repository torrent's packs (format 2, docs/torrents.md): pure.

The info-hash depends on it, so everyone who publishes the same refs must list the same
ids in the same order: commits as git/walk.py orders them, each followed by its tags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .objects import RefTarget
from .rollup import TAG_GROUP_MIN, HistoryPlan, Rollup, tag_group

__all__ = ["TagInfo", "published_tags", "pack_order", "torrent_order"]


@dataclass(frozen=True)
class TagInfo:
    """An annotated tag reachable from published refs, as the torrent order needs it."""

    commit: bytes | None  # hex id of the commit it peels to (None: a tag of a tree or blob)
    depth: int  # how many tags lie between it and what it finally names (0: names it directly)


def published_tags(targets: Iterable[RefTarget]) -> dict[bytes, TagInfo]:
    """Every tag object on the way from these refs to what they name."""
    out: dict[bytes, TagInfo] = {}
    for t in targets:
        for i, tag in enumerate(t.tags):
            out[tag] = TagInfo(t.commit, len(t.tags) - 1 - i)
    return out


def pack_order(commits: list[bytes], tags: dict[bytes, TagInfo]) -> list[bytes]:
    """The ids of a torrent's packs, in file order (format 2, docs/torrents.md).

    Tags of trees and blobs first; then each commit (parents first), each followed by
    the tags that peel to it, inner tags before the tags of tags, ties by id.  A
    release tag on the newest commit so lands at the end, where it shifts nothing.
    """
    return torrent_order(HistoryPlan((), tuple(commits)), tags, group_tags=False)  # type: ignore[return-value]


def torrent_order(plan: HistoryPlan, tags: dict[bytes, TagInfo], *, group_tags: bool = True) -> list[bytes | Rollup]:
    """The files of a torrent, in order: pack ids (commits and tags), roll-ups and tag groups.

    Tags of trees and blobs first; then each roll-up followed by the tags that peel to
    its members (member order; a commit in two roll-ups has its tags after the first);
    then each tail commit followed by its tags.  Inner tags come before the tags of
    tags, ties by id.  The tags of trees and blobs, and those after one roll-up, are one
    tag group (pack/rollup.py) when there are at least TAG_GROUP_MIN of them: sealed
    with their roll-up, they stay one file; the tail's tags stay one pack each.
    group_tags=False: every tag one pack (the order of `gitp2p packs`).
    """
    by_commit: dict[bytes, list[tuple[int, bytes]]] = {}
    loose: list[tuple[int, bytes]] = []
    for tag, info in tags.items():
        (loose if info.commit is None else by_commit.setdefault(info.commit, [])).append((info.depth, tag))
    out: list[bytes | Rollup] = []

    def sealed(ids: list[bytes]) -> None:
        if group_tags and len(ids) >= TAG_GROUP_MIN:
            out.append(tag_group(ids))
        else:
            out.extend(ids)

    sealed([tag for _, tag in sorted(loose)])
    for r in plan.rollups:
        out.append(r)
        group: list[bytes] = []
        for c in r.members:
            group.extend(tag for _, tag in sorted(by_commit.pop(c, ())))
        sealed(group)
    for c in plan.tail:
        out.append(c)
        out.extend(tag for _, tag in sorted(by_commit.pop(c, ())))
    return out
