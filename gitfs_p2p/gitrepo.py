"""The repository boundary: every read of a git repository goes through dulwich here."""

from __future__ import annotations

import heapq
import logging
import os
import re
import threading
from dataclasses import dataclass
from typing import Iterable, NamedTuple

from dulwich.errors import NotGitRepository
from dulwich.objects import Commit, Tag, parse_tree
from dulwich.repo import Repo

from .errors import UserError
from .packfile import OBJ_BLOB, OBJ_COMMIT, OBJ_TAG, OBJ_TREE

__all__ = ["GitRepo", "CommitInfo", "TreeEntry", "S_IFGITLINK", "S_IFDIR", "is_tree", "is_gitlink"]

log = logging.getLogger(__name__)

S_IFDIR = 0o040000
DELTA_BASE_CACHE_BYTES = 16 << 20
S_IFGITLINK = 0o160000


@dataclass(frozen=True)
class CommitInfo:
    id: bytes  # hex
    tree: bytes  # hex
    parents: tuple[bytes, ...]
    commit_time: int


class TreeEntry(NamedTuple):
    """One entry of a tree, exactly as dulwich's parse_tree gives it."""

    name: bytes
    mode: int
    id: bytes  # hex


def is_tree(mode: int) -> bool:
    return mode & 0o170000 == S_IFDIR


def is_gitlink(mode: int) -> bool:
    return mode & 0o170000 == S_IFGITLINK


class GitRepo:
    """A read-only view of one repository, safe to share between threads."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        if not os.path.isdir(self.path):
            raise UserError(f"{self.path}: not a directory")
        try:
            self._repo = Repo(self.path)
        except NotGitRepository:
            raise UserError(f"{self.path}: not a git repository") from None
        self.git_dir = self._repo.controldir()
        # dulwich keeps up to 96 MiB of resolved delta bases by default; commit
        # packs are built oldest first, so a small cache finds its bases as well.
        if hasattr(self._repo.object_store, "delta_base_cache_limit"):
            self._repo.object_store.delta_base_cache_limit = DELTA_BASE_CACHE_BYTES
        fmt = getattr(self._repo, "object_format", None)
        if fmt is not None and getattr(fmt, "name", "sha1") != "sha1":
            self.close()
            raise UserError(f"{self.path}: only SHA-1 repositories are supported")
        self._lock = threading.Lock()

    @classmethod
    def wrap(cls, repo, name: str = "<memory>") -> "GitRepo":
        """Wrap an already open dulwich repository (e.g. a MemoryRepo)."""
        self = cls.__new__(cls)
        self.path = name
        self._repo = repo
        self.git_dir = None
        self._lock = threading.Lock()
        return self

    def close(self) -> None:
        self._repo.close()

    def __enter__(self) -> "GitRepo":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def is_shallow(self) -> bool:
        return bool(self._repo.get_shallow())

    def check_not_shallow(self) -> None:
        if self.is_shallow:
            raise UserError(
                f"{self.path}: shallow clone; commit packs need the whole history "
                "(run `git fetch --unshallow` first)"
            )

    # -- objects -----------------------------------------------------------
    def read_raw(self, oid: bytes) -> tuple[int, bytes]:
        """(type number, content) of the object with hex id oid; KeyError if absent."""
        with self._lock:
            return self._repo.object_store.get_raw(oid)

    def has_object(self, oid: bytes) -> bool:
        with self._lock:
            return oid in self._repo.object_store

    def read_commit(self, oid: bytes) -> CommitInfo:
        type_num, raw = self.read_raw(oid)
        if type_num != OBJ_COMMIT:
            raise KeyError(oid)
        commit = Commit.from_raw_string(OBJ_COMMIT, raw, sha=oid)
        return CommitInfo(oid, commit.tree, tuple(commit.parents), commit.commit_time)

    def read_tree(self, oid: bytes) -> list[TreeEntry]:
        type_num, raw = self.read_raw(oid)
        if type_num != OBJ_TREE:
            raise KeyError(oid)
        return parse_tree(raw, 20)  # [(name, mode, hex id)], the fields of TreeEntry

    def object_type(self, oid: bytes) -> int:
        return self.read_raw(oid)[0]

    # -- refs and revisions -----------------------------------------------
    def peel(self, oid: bytes) -> bytes | None:
        """Follow annotated tags to a commit id; None if it is not a commit."""
        for _ in range(64):
            try:
                type_num, raw = self.read_raw(oid)
            except KeyError:
                return None
            if type_num == OBJ_COMMIT:
                return oid
            if type_num != OBJ_TAG:
                return None
            oid = Tag.from_raw_string(OBJ_TAG, raw, sha=oid).object[1]
        return None

    def refs(self) -> dict[str, bytes]:
        """Every ref (and HEAD) that leads to a commit, peeled, by name."""
        out: dict[str, bytes] = {}
        with self._lock:
            raw = self._repo.refs.as_dict()
        for name, oid in sorted(raw.items()):
            if name != b"HEAD" and not name.startswith(b"refs/"):
                continue
            commit = self.peel(oid)
            if commit is None:
                log.info("ref %s does not lead to a commit; skipped", name.decode(errors="replace"))
                continue
            out[name.decode("utf-8", errors="surrogateescape")] = commit
        return out

    def head_target(self) -> str | None:
        """The ref HEAD points at symbolically (e.g. refs/heads/main), if any."""
        with self._lock:
            try:
                chain, _ = self._repo.refs.follow(b"HEAD")
            except (KeyError, OSError):
                return None
        if len(chain) > 1:
            return chain[-1].decode("utf-8", errors="surrogateescape")
        return None

    def resolve(self, rev: str) -> bytes:
        """A revision as a commit id: id, abbreviated id, ref, tag, then ~N, ^N, ^{commit}."""
        m = _REV_SUFFIX.match(rev)
        if m is None or not m.group(1):
            raise UserError(f"{rev}: unknown revision")
        commit = self._resolve_name(m.group(1))
        for step in _REV_STEP.findall(m.group(2)):
            if step == "^{commit}":
                continue
            kind, count = step[0], int(step[1:] or 1)
            parents = self.read_commit(commit).parents
            if kind == "~":
                for _ in range(count):
                    parents = self.read_commit(commit).parents
                    if not parents:
                        raise UserError(f"{rev}: unknown revision (history is shorter)")
                    commit = parents[0]
            elif count:
                if count > len(parents):
                    raise UserError(f"{rev}: unknown revision (no parent {count})")
                commit = parents[count - 1]
        return commit

    def _resolve_name(self, rev: str) -> bytes:
        candidates: list[bytes] = []
        refs = self.refs()
        for name in (rev, f"refs/{rev}", f"refs/tags/{rev}", f"refs/heads/{rev}", f"refs/remotes/{rev}"):
            if name in refs:
                return refs[name]
        hexchars = set("0123456789abcdef")
        low = rev.lower()
        if 4 <= len(low) <= 40 and set(low) <= hexchars:
            if len(low) == 40:
                candidates = [low.encode()]
            else:
                with self._lock:
                    candidates = list(self._repo.object_store.iter_prefix(low.encode()))
                if len(candidates) > 1:
                    raise UserError(f"{rev}: ambiguous object id prefix")
            if candidates:
                oid = candidates[0]
                try:
                    type_num, _ = self.read_raw(oid)
                except KeyError:
                    raise UserError(f"{rev}: unknown revision") from None
                commit = self.peel(oid)
                if commit is None:
                    raise UserError(f"{rev}: names a {_type_name(type_num)}, not a commit")
                return commit
        raise UserError(f"{rev}: unknown revision")

    def commits_oldest_first(self, tips: Iterable[bytes]) -> list[CommitInfo]:
        """Every commit reachable from tips, parents before children.

        Ties are broken by committer time, then id, so the order is the same
        in every clone.  Holds one small record per commit, no content.
        """
        infos: dict[bytes, CommitInfo] = {}
        stack = list(tips)
        while stack:
            oid = stack.pop()
            if oid in infos:
                continue
            try:
                info = self.read_commit(oid)
            except KeyError:
                raise UserError(
                    f"{self.path}: commit {oid.decode()} is missing (incomplete repository?)"
                ) from None
            infos[oid] = info
            stack.extend(p for p in info.parents if p not in infos)
        waiting = {oid: len(set(info.parents)) for oid, info in infos.items()}
        children: dict[bytes, list[bytes]] = {}
        for oid, info in infos.items():
            for p in set(info.parents):
                children.setdefault(p, []).append(oid)
        ready = [(info.commit_time, oid) for oid, n in waiting.items() if n == 0 for info in [infos[oid]]]
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


_REV_SUFFIX = re.compile(r"(.*?)((?:~\d*|\^\d*|\^\{commit\})*)\Z")
_REV_STEP = re.compile(r"~\d*|\^\{commit\}|\^\d*")


def _type_name(type_num: int) -> str:
    return {OBJ_COMMIT: "commit", OBJ_TREE: "tree", OBJ_BLOB: "blob", OBJ_TAG: "tag"}.get(type_num, "object")
