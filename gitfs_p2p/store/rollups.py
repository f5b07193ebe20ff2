"""Which commits the roll-ups of a repository torrent hold: as built, recorded, or planned again.

A torrent read back from the pack cache (store/torrents.py) names its roll-ups
(`rollups/<boundary>.rollup`) but not their members, and whoever serves the files (the
mount) needs the members.  A roll-up's members are a pure function of the span and its
boundary commit (pack/rollup.py), so they are recorded in the pack cache once
(`PackCache.put_rollups`) and read back by boundary; only a torrent whose roll-ups were
never recorded here (made by `gitp2p torrent` before, say) has its history walked again.
Tag groups (`rollups/<id>.tags`) likewise: their members are a pure function of their id,
recorded under span TAG_GROUP_SPAN.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from ..errors import PublishError
from ..pack.order import published_tags, torrent_order
from ..pack.rollup import (
    ROLLUP_DIR,
    ROLLUP_SPAN,
    TAG_GROUP_SPAN,
    Rollup,
    chain_candidates,
    is_tag_group_name,
    plan_history,
    rollup_from_name,
)
from .torrents import RepoTorrent

if TYPE_CHECKING:
    from .source import PackSource

__all__ = ["recorded_rollups", "rollup_boundaries", "with_rollups"]

log = logging.getLogger(__name__)


def rollup_boundaries(t: RepoTorrent, *, tags: bool = False) -> list[bytes]:
    """The boundary commits (hex) of the roll-ups the torrent lists, in torrent order
    (tags=True: the ids of its tag groups)."""
    out = []
    for path, _ in t.files:
        folder, _, name = path.rpartition("/")
        boundary = rollup_from_name(name) if folder == ROLLUP_DIR and is_tag_group_name(name) == tags else None
        if boundary is not None:
            out.append(boundary.encode("ascii"))
    return out


def _grouped(t: RepoTorrent) -> list[bytes]:
    """The roll-ups' and tag groups' ids, in torrent order."""
    return rollup_boundaries(t) + rollup_boundaries(t, tags=True)


def _in_order(t: RepoTorrent, known: dict[bytes, Rollup]) -> tuple[Rollup, ...]:
    out = []
    for path, _ in t.files:
        folder, _, name = path.rpartition("/")
        oid = rollup_from_name(name) if folder == ROLLUP_DIR else None
        if oid is not None and oid.encode("ascii") in known:
            out.append(known[oid.encode("ascii")])
    return tuple(out)


def _recorded(source: PackSource, t: RepoTorrent) -> dict[bytes, Rollup]:
    """The roll-ups and tag groups of t that the pack cache records, by id."""
    out: dict[bytes, Rollup] = {}
    for span, tags in ((ROLLUP_SPAN, False), (TAG_GROUP_SPAN, True)):
        ids = rollup_boundaries(t, tags=tags)
        if ids:
            out.update(source.cache.rollups(span, ids))
    return out


def recorded_rollups(source: PackSource, t: RepoTorrent) -> RepoTorrent | None:
    """t with `rollups` (and tag groups) as the pack cache records them, or None if some
    are not."""
    known = _recorded(source, t)
    if len(known) < len(_grouped(t)):
        return None
    return dataclasses.replace(t, rollups=_in_order(t, known))


def with_rollups(source: PackSource, t: RepoTorrent) -> RepoTorrent:
    """t with `rollups` known (torrent order): recorded in the pack cache when just
    built, else read from it, else planned again from the history (needs source.repo)."""
    if t.rollups is not None:
        source.cache.put_rollups(ROLLUP_SPAN, [r for r in t.rollups if not r.tags])
        source.cache.put_rollups(TAG_GROUP_SPAN, [r for r in t.rollups if r.tags])
        return t
    boundaries = _grouped(t)
    known = _recorded(source, t)
    if len(known) < len(boundaries):
        log.info("%s torrent: the members of %d roll-ups are not recorded; walking the history",
                 t.label, len(boundaries) - len(known))
        targets = {}
        for name, oid in t.manifest.refs.items():
            target = source.repo.target(oid.encode())
            if target is None:
                raise PublishError(f"{source.repo.path}: {name} names {oid}, which is missing or unreadable")
            targets[name] = target
        commits = source.commits_from(sorted({x.commit for x in targets.values() if x.commit is not None}))
        plan = plan_history(commits, chain_candidates(targets, t.manifest.head))
        planned = {r.boundary: r for r in plan.rollups}
        groups = {e.boundary: e for e in torrent_order(plan, published_tags(targets.values()))
                  if isinstance(e, Rollup) and e.tags}
        source.cache.put_rollups(ROLLUP_SPAN, list(planned.values()))
        source.cache.put_rollups(TAG_GROUP_SPAN, list(groups.values()))
        known.update(planned)
        known.update(groups)
    missing = [b.decode() for b in boundaries if b not in known]
    if missing:  # not the rule this code knows: serve what it can, say what it cannot
        log.error("%s torrent: roll-ups %s are not the roll-ups of its refs", t.label, ", ".join(missing))
    return dataclasses.replace(t, rollups=_in_order(t, known))
