"""What the mount shows comes from: the refs and every commit they reach (a `RepoSnapshot`).

`read_snapshot` reads them with dulwich; the mount asks a worker process to run it
(store/builders.py), so the pages of the repository's pack files it touches never count
against the long-lived server.  `refs_signature` tells, from file metadata alone, whether
a ref may have moved at all, so a quiet repository costs a few stat calls per poll.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..git.walk import read_history, read_new
from ..pack.objects import clamp_time
from .layout import CommitList, RepoSnapshot

if TYPE_CHECKING:
    from ..git.repo import GitRepo

__all__ = ["refs_signature", "read_snapshot"]


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


def read_snapshot(repo: "GitRepo", previous: RepoSnapshot | None) -> RepoSnapshot:
    """The refs and every commit they reach; `previous` itself if nothing moved.

    When every ref that moved moved forward, only the new commits are read (git/walk.py's
    read_new, ordered after the known ones by the same rule); otherwise all of them.
    """
    refs = repo.refs()
    head = repo.head_target()
    published = repo.published_refs()
    if previous is not None and refs == previous.refs and head == previous.head and published == previous.published:
        return previous
    tips = sorted(set(refs.values()))
    new = read_new(repo, previous.commits, previous.refs.values(), tips) if previous is not None else None
    if new is not None:
        commits = previous.commits.extended([c.id for c in new], [c.commit_time for c in new]) if new else previous.commits
    else:
        repo.check_not_shallow()
        infos = read_history(repo, tips)
        commits = CommitList([c.id for c in infos], [c.commit_time for c in infos])
    return RepoSnapshot(refs, head, commits, published, _tag_times(repo, published, commits))


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
