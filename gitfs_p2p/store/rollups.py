"""Which commits the roll-ups of a repository torrent hold: as built, recorded, or planned again.

A torrent read back from the pack cache (store/torrents.py) names its roll-ups
(`rollups/<boundary>.rollup`) but not their members, and whoever serves the files (the
mount) needs the members.  A roll-up's members are a pure function of the span and its
boundary commit (pack/rollup.py), so they are recorded in the pack cache once
(`PackCache.put_rollups`) and read back by boundary; only a torrent whose roll-ups were
never recorded here (made by `gitp2p torrent` before, say) has its history walked again.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from ..errors import PublishError
from ..pack.rollup import ROLLUP_DIR, ROLLUP_SPAN, Rollup, chain_candidates, plan_history, rollup_from_name
from .torrents import RepoTorrent

if TYPE_CHECKING:
    from .source import PackSource

__all__ = ["recorded_rollups", "rollup_boundaries", "with_rollups"]

log = logging.getLogger(__name__)


def rollup_boundaries(t: RepoTorrent) -> list[bytes]:
    """The boundary commits (hex) of the roll-ups the torrent lists, in torrent order."""
    out = []
    for path, _ in t.files:
        folder, _, name = path.rpartition("/")
        boundary = rollup_from_name(name) if folder == ROLLUP_DIR else None
        if boundary is not None:
            out.append(boundary.encode("ascii"))
    return out


def _recorded(source: PackSource, boundaries: list[bytes]) -> dict[bytes, Rollup]:
    """The roll-ups of these boundaries that the pack cache records, by boundary."""
    return source.cache.rollups(ROLLUP_SPAN, boundaries) if boundaries else {}


def recorded_rollups(source: PackSource, t: RepoTorrent) -> RepoTorrent | None:
    """t with `rollups` as the pack cache records them, or None if some are not."""
    boundaries = rollup_boundaries(t)
    known = _recorded(source, boundaries)
    if len(known) < len(boundaries):
        return None
    return dataclasses.replace(t, rollups=tuple(known[b] for b in boundaries))


def with_rollups(source: PackSource, t: RepoTorrent) -> RepoTorrent:
    """t with `rollups` known (torrent order): recorded in the pack cache when just
    built, else read from it, else planned again from the history (needs source.repo)."""
    if t.rollups is not None:
        source.cache.put_rollups(ROLLUP_SPAN, list(t.rollups))
        return t
    boundaries = rollup_boundaries(t)
    known = _recorded(source, boundaries)
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
        planned = {r.boundary: r for r in plan_history(commits, chain_candidates(targets, t.manifest.head)).rollups}
        source.cache.put_rollups(ROLLUP_SPAN, list(planned.values()))
        known.update(planned)
    missing = [b.decode() for b in boundaries if b not in known]
    if missing:  # not the rule this code knows: serve what it can, say what it cannot
        log.error("%s torrent: roll-ups %s are not the roll-ups of its refs", t.label, ", ".join(missing))
    rollups: tuple[Rollup, ...] = tuple(known[b] for b in boundaries if b in known)
    return dataclasses.replace(t, rollups=rollups)
