"""The repository boundary: every read of a git repository goes through dulwich here."""

from __future__ import annotations

import logging
import mmap
import os
import re
import threading
import zlib
from typing import Iterable

from dulwich.errors import NotGitRepository, ObjectFormatException
from dulwich.repo import Repo

from ..errors import RepositoryError
from ..pack.objects import CommitInfo, RefTarget, TreeEntry
from .walk import read_history
from ..pack.objects import KIND_BLOB, KIND_GITLINK, KIND_TREE, ObjectParseError, parse_commit, parse_object, parse_tag
from ..pack.packfile import OBJ_BLOB, OBJ_COMMIT, OBJ_TAG, OBJ_TREE

__all__ = [
    "GitRepo",
    "CommitInfo",
    "TreeEntry",
    "RefTarget",
    "PUBLISHED_PREFIXES",
    "KIND_BLOB",
    "KIND_TREE",
    "KIND_GITLINK",
]

log = logging.getLogger(__name__)

DELTA_BASE_CACHE_BYTES = 16 << 20
#: The refs a repository publishes (and a receiver accepts): branches and tags.
PUBLISHED_PREFIXES = ("refs/heads/", "refs/tags/")


class GitRepo:
    """A read-only view of one repository, safe to share between threads."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        if not os.path.isdir(self.path):
            raise RepositoryError(f"{self.path}: not a directory")
        try:
            self._repo = Repo(self.path)
        except NotGitRepository:
            raise RepositoryError(f"{self.path}: not a git repository") from None
        self.git_dir = self._repo.controldir()
        # dulwich keeps up to 96 MiB of resolved delta bases by default; commit
        # packs are built oldest first, so a small cache finds its bases as well.
        if hasattr(self._repo.object_store, "delta_base_cache_limit"):
            self._repo.object_store.delta_base_cache_limit = DELTA_BASE_CACHE_BYTES
        # dulwich looks for objects/pack/multi-pack-index again at every object read while
        # there is none (a stat each: 7% of building a commit pack, profiled); a repository
        # that gets one later is opened again (workers reopen when objects/pack changes).
        pack_dir = getattr(self._repo.object_store, "pack_dir", None)
        if (hasattr(self._repo.object_store, "_use_midx") and pack_dir
                and not os.path.exists(os.path.join(pack_dir, "multi-pack-index"))):
            self._repo.object_store._use_midx = False
        fmt = getattr(self._repo, "object_format", None)
        if fmt is not None and getattr(fmt, "name", "sha1") != "sha1":
            self.close()
            raise RepositoryError(f"{self.path}: only SHA-1 repositories are supported")
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
            raise RepositoryError(
                f"{self.path}: shallow clone; commit packs need the whole history "
                "(run `git fetch --unshallow` first)"
            )

    # -- objects -----------------------------------------------------------
    def read_raw(self, oid: bytes) -> tuple[int, bytes]:
        """(type number, content) of the object with hex id oid; KeyError if absent.

        dulwich parses a loose object while reading it and refuses some that git
        reads (a committer line without a time zone, say); those are read here
        from the loose file itself, as git would.
        """
        with self._lock:
            try:
                return self._repo.object_store.get_raw(oid)
            except ObjectFormatException:
                pass
            for store in [self._repo.object_store, *getattr(self._repo.object_store, "alternates", ())]:
                raw = _read_loose(getattr(store, "path", None), oid)
                if raw is not None:
                    return raw
        raise KeyError(oid)

    def drop_mapped_pages(self) -> None:
        """Let go of the pages of the repository's pack files this process has touched.

        dulwich maps each pack file whole; a walk over a large history touches nearly
        every page of it, and they all count in this process's RSS (523 MB after reading
        the 200,000 commits of a 549 MB pack).  They are the file's own pages, so
        dropping them (MADV_DONTNEED) loses nothing: a later read faults them back in
        from the page cache."""
        with self._lock:
            for store in [self._repo.object_store, *getattr(self._repo.object_store, "alternates", ())]:
                for pack in list(getattr(store, "_pack_cache", {}).values()):
                    # the pack and its index, each loaded lazily (only packs read so far): a
                    # worker's lookups touch most of a 34 MB index over a few dozen builds
                    for part in (getattr(pack, "_data", None), getattr(pack, "_idx", None)):
                        contents = getattr(part, "_contents", None)
                        if isinstance(contents, mmap.mmap) and not contents.closed:
                            try:
                                contents.madvise(mmap.MADV_DONTNEED)
                            except (OSError, ValueError):  # best effort: pages are only memory
                                pass

    def has_object(self, oid: bytes) -> bool:
        with self._lock:
            return oid in self._repo.object_store

    def read_commit(self, oid: bytes) -> CommitInfo:
        """Tree, parents and date of a commit, read as git reads them (objects.parse_commit)."""
        header = parse_object(self.path, oid, self.read_raw(oid), (OBJ_COMMIT, "commit"), parse_commit)
        return CommitInfo(oid, header.tree.encode(), tuple(p.encode() for p in header.parents), header.date)

    def read_tag(self, oid: bytes):
        """objects.TagHeader of a tag object; KeyError if it is not one."""
        return parse_object(self.path, oid, self.read_raw(oid), (OBJ_TAG, "tag"), parse_tag)

    def object_type(self, oid: bytes) -> int:
        return self.read_raw(oid)[0]

    # -- refs and revisions -----------------------------------------------
    def peel(self, oid: bytes) -> bytes | None:
        """Follow annotated tags to a commit id; None if it is not a commit."""
        target = self.target(oid)
        return target.commit if target is not None else None

    def target(self, oid: bytes) -> RefTarget | None:
        """oid and where it leads through tags; None if an object on the way is missing or unreadable."""
        tags: list[bytes] = []
        first_type = None
        here = oid
        for _ in range(64):
            try:
                type_num, raw = self.read_raw(here)
            except KeyError:
                return None
            if first_type is None:
                first_type = type_num
            if type_num != OBJ_TAG:
                return RefTarget(oid, first_type, here if type_num == OBJ_COMMIT else None, tuple(tags))
            tags.append(here)
            try:
                here = parse_tag(raw).object.encode()
            except ObjectParseError:
                return None
        return None

    def published_refs(self) -> dict[str, RefTarget]:
        """Branches and tags (refs/heads/*, refs/tags/*) and what each names, unpeeled, by name."""
        with self._lock:
            raw = self._repo.refs.as_dict()
        out: dict[str, RefTarget] = {}
        for name, oid in sorted(raw.items()):
            text = name.decode("utf-8", errors="surrogateescape")
            if not text.startswith(PUBLISHED_PREFIXES):
                continue
            target = self.target(oid)
            if target is None:
                log.info("ref %s names a missing or unreadable object; skipped", text)
                continue
            if target.commit is None and not target.tags:
                # a bare tree or blob has no pack of its own (only a tag object can carry one)
                log.info("ref %s names a %s, not a commit or tag; not published", text, _type_name(target.type_num))
                continue
            out[text] = target
        return out

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
            raise RepositoryError(f"{rev}: unknown revision")
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
                        raise RepositoryError(f"{rev}: unknown revision (history is shorter)")
                    commit = parents[0]
            elif count:
                if count > len(parents):
                    raise RepositoryError(f"{rev}: unknown revision (no parent {count})")
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
                    raise RepositoryError(f"{rev}: ambiguous object id prefix")
            if candidates:
                oid = candidates[0]
                try:
                    type_num, _ = self.read_raw(oid)
                except KeyError:
                    raise RepositoryError(f"{rev}: unknown revision") from None
                commit = self.peel(oid)
                if commit is None:
                    raise RepositoryError(f"{rev}: names a {_type_name(type_num)}, not a commit")
                return commit
        raise RepositoryError(f"{rev}: unknown revision")

    def commits_oldest_first(self, tips: Iterable[bytes]) -> list[CommitInfo]:
        """Every commit reachable from tips, parents before children (git/walk.py's order)."""
        return read_history(self, tips)


_LOOSE_TYPES = {b"commit": OBJ_COMMIT, b"tree": OBJ_TREE, b"blob": OBJ_BLOB, b"tag": OBJ_TAG}


def _read_loose(objects_dir: str | None, oid: bytes) -> tuple[int, bytes] | None:
    """(type, content) of a loose object file, read without interpreting the content."""
    if not objects_dir:
        return None
    hexid = oid.decode()
    try:
        with open(os.path.join(objects_dir, hexid[:2], hexid[2:]), "rb") as fh:
            data = zlib.decompress(fh.read())
    except (OSError, zlib.error):
        return None
    head, sep, body = data.partition(b"\0")
    kind, _, size = head.partition(b" ")
    if not sep or kind not in _LOOSE_TYPES or not size.isdigit() or int(size) != len(body):
        return None
    return _LOOSE_TYPES[kind], body


_REV_SUFFIX = re.compile(r"(.*?)((?:~\d*|\^\d*|\^\{commit\})*)\Z")
_REV_STEP = re.compile(r"~\d*|\^\{commit\}|\^\d*")


def _type_name(type_num: int) -> str:
    return {OBJ_COMMIT: "commit", OBJ_TREE: "tree", OBJ_BLOB: "blob", OBJ_TAG: "tag"}.get(type_num, "object")
