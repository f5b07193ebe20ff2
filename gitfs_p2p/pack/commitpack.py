"""Object packs: the deterministic pack of one commit (thin) or of one annotated tag.

Format version 2 is specified in docs/pack-format.md; every rule that affects
bytes is in this module, delta.py and packfile.py, and nowhere else.  A
commit's pack is byte-identical to format 1; format 2 adds tag packs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from typing import Protocol

from ..errors import RepositoryError
from .delta import create_delta
from .lru import LRU
from .objects import KIND_BLOB, KIND_GITLINK, KIND_TREE, CommitInfo, TagHeader, TreeEntry, parse_object, tree_entries
from .packfile import OBJ_BLOB, OBJ_COMMIT, OBJ_REF_DELTA, OBJ_TAG, OBJ_TREE, TYPE_NAMES, PackEntry, write_pack

__all__ = ["FORMAT_VERSION", "MAX_DELTA_SIZE", "CommitPacker", "PackPlan"]

log = logging.getLogger(__name__)

#: Bumped whenever any rule that affects a pack's bytes (or which packs exist) changes.
#: 2: annotated tags travel as tag packs; commit packs are byte-identical to format 1.
FORMAT_VERSION = 2
#: Objects (or bases) larger than this are stored whole, never as deltas.
MAX_DELTA_SIZE = 16 << 20


class ObjectSource(Protocol):
    """What building packs reads from a repository (git/repo.py's GitRepo is one)."""

    path: str

    def read_raw(self, oid: bytes) -> tuple[int, bytes]: ...

    def read_commit(self, oid: bytes) -> CommitInfo: ...

    def read_tag(self, oid: bytes) -> TagHeader: ...


@dataclass
class PlannedObject:
    id: bytes  # hex
    type_num: int
    path: bytes
    bases: list[bytes]  # hex ids of delta base candidates, best first


@dataclass
class PackPlan:
    """What goes into one commit's pack, in pack order."""

    commit: CommitInfo
    objects: list[PlannedObject]

    def object_ids(self) -> list[bytes]:
        return [self.commit.id] + [o.id for o in self.objects]


class CommitPacker:
    """Builds commit packs from one repository.

    Caches parsed trees and the object closures of recent trees (bounded), so
    walking a history oldest-first touches each tree about once.
    """

    def __init__(self, repo: ObjectSource, *, closure_budget: int = 300_000, tree_budget: int = 16 << 20,
                 raw_budget: int = 32 << 20):
        self.repo = repo
        self._closures = LRU(closure_budget)
        self._trees = LRU(tree_budget)
        self._maps = LRU(tree_budget // 2)
        # Objects read lately: a pack's new objects are the next commit's delta bases, its
        # new trees were just parsed to plan it, and a commit is read again as a parent.
        self._raws = LRU(raw_budget)
        self._raw_max = raw_budget // 8
        self._commits = LRU(4096)

    # -- reading -------------------------------------------------------------
    def raw(self, oid: bytes) -> tuple[int, bytes]:
        """(type number, content) of an object, through a bounded cache."""
        hit = self._raws.get_hit(oid)
        if hit is None:
            hit = self.repo.read_raw(oid)
            if len(hit[1]) <= self._raw_max:
                self._raws.put(oid, hit, 64 + len(hit[1]))
        return hit

    def commit(self, oid: bytes) -> CommitInfo:
        hit = self._commits.get_hit(oid)
        if hit is None:
            hit = self.repo.read_commit(oid)
            self._commits.put(oid, hit, 1)
        return hit

    # -- trees ---------------------------------------------------------------
    def tree(self, oid: bytes) -> list[TreeEntry]:
        hit = self._trees.get_hit(oid)
        if hit is None:
            hit = parse_object(self.repo.path, oid, self.raw(oid), (OBJ_TREE, "tree"), tree_entries)
            # about 200 bytes an entry: tuple, name, 40-byte hex id
            self._trees.put(oid, hit, 64 + 200 * len(hit))
        return hit

    def names(self, tree_id: bytes) -> dict[bytes, tuple[str, bytes]]:
        """name -> (kind, id) of one tree (cached: a commit's map is its child's parent map)."""
        hit = self._maps.get_hit(tree_id)
        if hit is None:
            hit = {e.name: (e.kind, e.id) for e in self.tree(tree_id)}
            self._maps.put(tree_id, hit, 64 + 200 * len(hit))
        return hit

    def closure(self, tree_id: bytes) -> frozenset[bytes]:
        """Every tree and blob id reachable from tree_id, itself included."""
        hit = self._closures.get_hit(tree_id)
        if hit is not None:
            return hit
        entries = self.tree(tree_id)
        # Blobs (files and symlinks); not gitlinks, which name commits of another repository.
        ids = {e.id for e in entries if e.kind == KIND_BLOB}
        ids.add(tree_id)
        for e in entries:
            if e.kind == KIND_TREE:
                ids |= self.closure(e.id)
        result = frozenset(ids)
        self._closures.put(tree_id, result, len(result))
        return result

    # -- selection -------------------------------------------------------------
    def plan(self, commit: CommitInfo) -> PackPlan:
        """Select the objects of commit's pack and their delta base candidates.

        Object set: commit, plus every tree and blob reachable from its root
        tree and not reachable from the root tree of any parent.  Order: trees
        in depth-first pre-order of the commit's tree (entries in tree order),
        then blobs in the order that walk meets them (a directory's new blobs
        when the directory is visited); an id met twice is listed once.  Base candidates: the object of the
        same kind at the same path in each parent, in parent order; failing
        that, a blob with the same file name that the first parent has at a
        path the commit no longer has (a rename), first in walk order.
        """
        parent_roots = [self.commit(p).tree for p in commit.parents]
        return PackPlan(commit, self._plan_tree(commit.tree, parent_roots))

    def _plan_tree(self, root: bytes, parent_roots: list[bytes]) -> list["PlannedObject"]:
        """Trees, then blobs, reachable from root and not from any of parent_roots (see plan())."""
        if not parent_roots:
            excluded: frozenset[bytes] | set[bytes] = frozenset()
        elif len(parent_roots) == 1:
            excluded = self.closure(parent_roots[0])
        else:
            excluded = set()
            for parent_root in parent_roots:
                excluded |= self.closure(parent_root)

        trees: list[PlannedObject] = []
        blobs: list[PlannedObject] = []
        seen: set[bytes] = set()
        deleted: dict[bytes, bytes] = {}  # file name -> first deleted blob in first parent
        orphans: list[PlannedObject] = []  # blobs with no same-path base

        # Explicit stack: (tree id, path, the parents' tree ids at that path)
        stack: list[tuple[bytes, bytes, list[bytes | None]]] = [(root, b"", list(parent_roots))]
        while stack:
            tree_id, path, parent_dirs = stack.pop()
            if tree_id in excluded or tree_id in seen:
                continue
            seen.add(tree_id)
            trees.append(PlannedObject(tree_id, OBJ_TREE, path, [p for p in parent_dirs if p is not None]))
            entries = self.tree(tree_id)
            # name -> (kind, id) of each parent's tree at this path
            parent_maps = [self.names(p) if p is not None else {} for p in parent_dirs]
            if parent_maps and parent_maps[0]:
                names = self.names(tree_id)
                for name, (kind, oid) in parent_maps[0].items():
                    if name not in names and kind != KIND_GITLINK:
                        self._collect_deleted(name, kind, oid, deleted)
            subdirs = []
            for name, _, oid, kind in entries:
                if oid in excluded or oid in seen or kind == KIND_GITLINK:
                    continue
                sub_path = path + b"/" + name if path else name
                same_path = [pm.get(name) for pm in parent_maps]
                if kind == KIND_TREE:
                    subdirs.append((oid, sub_path, [p[1] if p is not None and p[0] == KIND_TREE else None for p in same_path]))
                else:
                    seen.add(oid)
                    bases = [p[1] for p in same_path if p is not None and p[0] == KIND_BLOB]
                    obj = PlannedObject(oid, OBJ_BLOB, sub_path, bases)
                    blobs.append(obj)
                    if not bases:
                        orphans.append(obj)
            stack.extend(reversed(subdirs))
        for obj in orphans:
            base = deleted.get(obj.path.rsplit(b"/", 1)[-1])
            if base is not None:
                obj.bases.append(base)
        return trees + blobs

    def _collect_deleted(self, name: bytes, kind: str, oid: bytes, deleted: dict[bytes, bytes]) -> None:
        if kind == KIND_TREE:
            for e in self.tree(oid):
                if e.kind != KIND_GITLINK:
                    self._collect_deleted(e.name, e.kind, e.id, deleted)
        else:
            deleted.setdefault(name, oid)

    # -- bytes -------------------------------------------------------------------
    def entry_for(self, obj: PlannedObject) -> PackEntry:
        """Whole object, or a REF_DELTA against its first base when that is smaller.

        Rule: only the first base candidate is tried; the delta is used iff
        it is shorter than half the object (uncompressed sizes), so only
        the chosen form is ever compressed.
        """
        type_num, data = self.raw(obj.id)
        if obj.bases and len(data) <= MAX_DELTA_SIZE:
            base_type, base = self.raw(obj.bases[0])
            if base_type == type_num and len(base) <= MAX_DELTA_SIZE:
                delta = create_delta(base, data)
                if len(delta) < len(data) // 2:
                    return PackEntry(OBJ_REF_DELTA, delta, bytes.fromhex(obj.bases[0].decode()))
        return PackEntry(type_num, data)

    def build(self, commit: CommitInfo) -> bytes:
        plan = self.plan(commit)
        _, raw_commit = self.raw(commit.id)
        entries = [PackEntry(OBJ_COMMIT, raw_commit)]
        entries.extend(self.entry_for(o) for o in plan.objects)
        return write_pack(entries)

    def build_id(self, commit_id: bytes) -> bytes:
        return self.build(self.commit(commit_id))

    def build_tag(self, tag_id: bytes) -> bytes:
        """The pack of an annotated tag: the tag object, whole; for a tag of a tree, then
        that tree's every tree and blob (the walk of plan(), no parents, no deltas); for a
        tag of a blob, then the blob.  A tag of a commit or a tag holds only itself: what it
        names travels in its own pack."""
        type_num, raw_tag = self.raw(tag_id)
        if type_num != OBJ_TAG:
            raise KeyError(tag_id)
        header = self.repo.read_tag(tag_id)
        entries = [PackEntry(OBJ_TAG, raw_tag)]
        target = header.object.encode()
        want = {"tree": OBJ_TREE, "blob": OBJ_BLOB}.get(header.type)
        if want is not None:
            try:
                got, data = self.raw(target)
            except KeyError:
                raise RepositoryError(f"{self.repo.path}: tag {tag_id.decode()} names {header.object}, which is missing") from None
            if got != want:
                raise RepositoryError(
                    f"{self.repo.path}: tag {tag_id.decode()} says {header.object} is a {header.type}, "
                    f"it is a {TYPE_NAMES.get(got, b'?').decode()}"
                )
            if want == OBJ_BLOB:
                entries.append(PackEntry(OBJ_BLOB, data))
            else:
                entries.extend(PackEntry(o.type_num, self.raw(o.id)[1]) for o in self._plan_tree(target, []))
        return write_pack(entries)

    def build_object(self, object_id: bytes) -> bytes:
        """The pack named for object_id: a commit's or a tag's; KeyError for any other object."""
        type_num, _ = self.raw(object_id)
        if type_num == OBJ_COMMIT:
            return self.build_id(object_id)
        if type_num == OBJ_TAG:
            return self.build_tag(object_id)
        raise KeyError(object_id)
