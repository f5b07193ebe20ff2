"""What the mount shows comes from: the refs and every commit they reach (a `RepoSnapshot`).

`read_snapshot` reads them with dulwich; the mount asks a worker process to run it
(store/builders.py), so the pages of the repository's pack files it touches never count
against the long-lived server, and mount/layout.py lays the snapshot out as files.  `refs_signature` tells, from file metadata alone, whether
a ref may have moved at all, so a quiet repository costs a few stat calls per poll.
"""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Sequence

from ..pack.objects import clamp_time
from .walk import read_history, read_new

if TYPE_CHECKING:
    from .repo import GitRepo

__all__ = ["CommitList", "HistoryStore", "RepoSnapshot", "refs_signature", "read_snapshot"]


class CommitList:
    """Every commit reachable from the refs, parents before children: ids and commit times."""

    __slots__ = ("ids", "times", "index")

    def __init__(self, ids: list[bytes], times: Sequence[int]):
        self.ids = ids  # hex ids, oldest first
        self.times = array("q", (clamp_time(t) for t in times))
        self.index = {cid: i for i, cid in enumerate(ids)}

    def __getstate__(self):
        return (self.ids, self.times)

    def __setstate__(self, state) -> None:
        self.ids, self.times = state
        self.index = {cid: i for i, cid in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CommitList) and self.ids == other.ids and self.times == other.times

    __hash__ = None  # mutable contents: equal lists, not keys

    def __contains__(self, cid: bytes) -> bool:
        return cid in self.index

    def time_of(self, cid: bytes) -> int:
        return self.times[self.index[cid]]

    def extended(self, ids: list[bytes], times: Sequence[int]) -> "CommitList":
        """A new list with these (newer) commits appended."""
        new = CommitList.__new__(CommitList)
        new.ids = self.ids + ids
        new.times = array("q", self.times)
        new.times.extend(clamp_time(t) for t in times)
        new.index = dict(self.index)
        base = len(self.ids)
        for i, cid in enumerate(ids):
            new.index[cid] = base + i
        return new


@dataclass(frozen=True)
class RepoSnapshot:
    refs: dict[str, bytes]  # ref name (and HEAD) -> peeled commit id (hex)
    head: str | None  # the ref HEAD points at symbolically, if any
    commits: CommitList
    published: dict = field(default_factory=dict)  # refs/heads/*, refs/tags/* -> gitrepo.RefTarget
    tags: dict[bytes, int] = field(default_factory=dict)  # tag objects they reach (hex) -> mtime


def refs_signature(git_dir: str) -> tuple:
    """Metadata of every file that holds refs; equal signatures mean no ref moved."""
    out = []
    for name in ("HEAD", "packed-refs"):
        try:
            st = os.stat(os.path.join(git_dir, name))
            out.append((name, st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((name, None))
    for top in ("refs", "reftable"):
        stack = [os.path.join(git_dir, top)]
        for _ in range(1_000_000):
            if not stack:
                break
            path = stack.pop()
            try:
                entries = list(os.scandir(path))
            except OSError:
                continue
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        st = entry.stat(follow_symlinks=False)
                        out.append((entry.path, st.st_ino, st.st_size, st.st_mtime_ns))
                except OSError:
                    out.append((entry.path, None))
    out.sort(key=repr)
    return tuple(out)


class HistoryStore(Protocol):
    """Where the last snapshot's commits are kept between mounts (store/cache.py's PackCache);
    one that also has `put_graph(infos, index)` is given every history walked whole."""

    def get_history(self) -> tuple[list[bytes], list[bytes], Sequence[int]] | None: ...

    def put_history(self, tips: list[bytes], ids: list[bytes], times: Sequence[int]) -> None: ...


def read_snapshot(repo: "GitRepo", previous: RepoSnapshot | None, history: HistoryStore | None = None) -> RepoSnapshot:
    """The refs and every commit they reach; `previous` itself if nothing moved.

    When every ref that moved moved forward, only the new commits are read (git/walk.py's
    read_new, ordered after the known ones by the same rule); otherwise all of them.
    Without a previous snapshot, the commits `history` kept from the last one stand in
    for it (a history is a pure function of its tips), and the new ones are kept there.
    """
    refs = repo.refs()
    head = repo.head_target()
    published = repo.published_refs()
    if previous is not None and refs == previous.refs and head == previous.head and published == previous.published:
        return previous
    tips = sorted(set(refs.values()))
    if previous is not None:
        known: CommitList | None = previous.commits
        old_tips: list[bytes] = list(previous.refs.values())
    else:
        repo.check_not_shallow()
        known, old_tips = _stored(history)
    new = read_new(repo, known, old_tips, tips) if known is not None else None
    if new is not None:
        commits = known.extended([c.id for c in new], [c.commit_time for c in new]) if new else known
    else:
        infos = read_history(repo, tips)
        commits = CommitList([c.id for c in infos], [c.commit_time for c in infos])
        keep_graph = getattr(history, "put_graph", None)
        if keep_graph is not None:  # the torrents built next read it instead of walking again
            keep_graph(infos, commits.index)
        del infos
    if history is not None and (new != [] or previous is None and old_tips != tips):
        history.put_history(tips, commits.ids, commits.times)
    return RepoSnapshot(refs, head, commits, published, _tag_times(repo, published, commits))


def _stored(history: HistoryStore | None) -> tuple[CommitList | None, list[bytes]]:
    """The commits and tips `history` holds, or (None, [])."""
    got = history.get_history() if history is not None else None
    if got is None:
        return None, []
    tips, ids, times = got
    return CommitList(ids, times), tips


def _tag_times(repo: "GitRepo", published: dict, commits: CommitList) -> dict[bytes, int]:
    """Each annotated tag the published refs reach -> its mtime: the tagger's date, or
    (for a tag without a tagger line) the date of the commit it peels to."""
    out: dict[bytes, int] = {}
    for target in published.values():
        for tag in target.tags:
            if tag not in out:
                date = repo.read_tag(tag).date
                if not date and target.commit is not None and target.commit in commits:
                    date = commits.time_of(target.commit)
                out[tag] = clamp_time(date)
    return out
