"""The one ordered history walk: every commit reachable from tips, parents before children.

Ties are broken by the commit's date (git's rule, pack/objects.py), then id, so every
clone orders a history the same way; torrents list packs in this order, so their
info-hash depends on it.  `read_history` reads a whole history; `read_new` only what a
previous walk had not seen, ordered by the same rule after it.
"""

from __future__ import annotations

import heapq
from typing import Iterable, Protocol

from ..errors import RepositoryError
from ..pack.objects import CommitInfo

__all__ = ["CommitReader", "order", "read_history", "read_new"]


class CommitReader(Protocol):
    path: str

    def read_commit(self, oid: bytes) -> CommitInfo:
        """KeyError if absent."""


def _read(repo: CommitReader, oid: bytes) -> CommitInfo:
    try:
        return repo.read_commit(oid)
    except KeyError:
        raise RepositoryError(f"{repo.path}: commit {oid.decode()} is missing (incomplete repository?)") from None


def order(infos: dict[bytes, CommitInfo]) -> list[CommitInfo]:
    """Parents (among infos) before children; ties by date, then id."""
    waiting = {oid: sum(1 for p in set(info.parents) if p in infos) for oid, info in infos.items()}
    children: dict[bytes, list[bytes]] = {}
    for oid, info in infos.items():
        for p in set(info.parents):
            if p in infos:
                children.setdefault(p, []).append(oid)
    ready = [(infos[oid].commit_time, oid) for oid, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    out: list[CommitInfo] = []
    while ready:
        _, oid = heapq.heappop(ready)
        out.append(infos[oid])
        for child in children.get(oid, ()):
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (infos[child].commit_time, child))
    return out


#: Commits read between two drops of the pack pages a walk touched (GitRepo.drop_mapped_pages).
#: A walk of the 200,000-commit history peaks at 120-126 MB of them every 10,000 commits,
#: 49-53 MB every 1,000, for the same CPU (BENCHMARKS.md, "Peak memory").
DROP_PAGES_EVERY = 1_000


def read_history(repo: CommitReader, tips: Iterable[bytes]) -> list[CommitInfo]:
    """Every commit reachable from tips, in order.  Holds one small record per commit,
    and (with a repository that can) not the pages of the pack files it read them from."""
    drop = getattr(repo, "drop_mapped_pages", None)
    infos: dict[bytes, CommitInfo] = {}
    stack = list(tips)
    while stack:
        oid = stack.pop()
        if oid in infos:
            continue
        info = infos[oid] = _read(repo, oid)
        stack.extend(p for p in info.parents if p not in infos)
        if drop is not None and len(infos) % DROP_PAGES_EVERY == 0:
            drop()
    if drop is not None:
        drop()
    return order(infos)


def read_new(repo: CommitReader, known, old_tips: Iterable[bytes], tips: Iterable[bytes]) -> list[CommitInfo] | None:
    """The commits reachable from tips that `known` (a container of ids) lacks, in order, or
    None when some commit may have become unreachable (an old tip that is no longer a tip and
    not a parent of a new commit: a deleted branch, a reset, a force push)."""
    tips = list(tips)
    new: dict[bytes, CommitInfo] = {}
    reached_known: set[bytes] = set()
    stack = [t for t in tips if t not in known]
    while stack:
        oid = stack.pop()
        if oid in new:
            continue
        info = new[oid] = _read(repo, oid)
        for p in info.parents:
            if p in known:
                reached_known.add(p)
            elif p not in new:
                stack.append(p)
    if not set(old_tips) - set(tips) <= reached_known:
        return None
    return order(new)
