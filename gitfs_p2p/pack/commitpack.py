"""Object packs: the deterministic pack of one commit (thin) or of one annotated tag.

Format version 2 is specified in docs/pack-format.md; every rule that affects
bytes is in this module, delta.py and packfile.py, and nowhere else.  A
commit's pack is byte-identical to format 1; format 2 adds tag packs.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from typing import Callable, Protocol

from ..errors import RepositoryError
from .delta import create_delta
from .lru import LRU
from .objects import KIND_BLOB, KIND_GITLINK, KIND_TREE, CommitInfo, TagHeader, TreeEntry, parse_object, tree_entries
from .packfile import OBJ_BLOB, OBJ_COMMIT, OBJ_REF_DELTA, OBJ_TAG, OBJ_TREE, TYPE_NAMES, PackEntry, write_pack

__all__ = ["FORMAT_VERSION", "MAX_DELTA_SIZE", "CommitPacker", "PackPlan", "tree_changes_py"]

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


#: How far back tree_changes_py looks, from a directory, for a file of the same name.
SAME_NAME_SCAN = 64
#: Moving the counts to another root may touch a quarter of them plus this many entries;
#: past that, counting afresh is cheaper.
MOVE_SLACK = 64

_NOTHING: frozenset[bytes] = frozenset()


def tree_changes_py(a: list[TreeEntry], b: list[TreeEntry]) -> tuple[list[TreeEntry], list[TreeEntry]] | None:
    """(entries of a that b lacks, entries of b that a lacks), each in its tree's order, for
    two simple trees; None when either is not simple.  An entry is lacking unless the other
    tree has one of the same name, mode (as a number) and id.

    Simple: the keys (a directory's name + "/") strictly increase, as in git's order, and no
    name is both a file's and a directory's.  (A directory's entry looks back for such a
    file past at most SAME_NAME_SCAN names that extend its own with a byte below "/", the
    names that sort between the two; a tree needing more counts as not simple.)  So every
    name is unique, and what a name is in one tree pairs with what it is in the other among
    the entries returned.  The compiled twin (_speedups.tree_changes) reads raw trees.
    """
    keys_a, keys_b = _simple_keys(a), _simple_keys(b)
    if keys_a is None or keys_b is None:
        return None
    only_a: list[TreeEntry] = []
    only_b: list[TreeEntry] = []
    i = j = 0
    while i < len(a) or j < len(b):
        if i == len(a):
            c = 1
        elif j == len(b):
            c = -1
        else:
            c = (keys_a[i] > keys_b[j]) - (keys_a[i] < keys_b[j])
        if c == 0 and a[i].mode == b[j].mode and a[i].id == b[j].id:
            i += 1
            j += 1
            continue
        if c <= 0:
            only_a.append(a[i])
            i += 1
        if c >= 0:
            only_b.append(b[j])
            j += 1
    return only_a, only_b


def _simple_keys(entries: list[TreeEntry]) -> list[bytes] | None:
    keys: list[bytes] = []
    for e in entries:
        is_dir = e.kind == KIND_TREE
        key = e.name + b"/" if is_dir else e.name
        if keys and keys[-1] >= key:
            return None
        if is_dir:
            name, n = e.name, len(e.name)
            for steps in range(len(keys)):
                other = entries[len(keys) - 1 - steps].name
                if len(other) < n or other[:n] != name:
                    break
                if len(other) == n or steps == SAME_NAME_SCAN:
                    return None
                if other[n] >= 0x2F:
                    break
        keys.append(key)
    return keys


def _bump(counts: Counter[bytes], oid: bytes, by: int) -> None:
    """Add by to a count, dropping it at 0 (so that a count present is a count above 0)."""
    n = counts[oid] + by
    if n:
        counts[oid] = n
    else:
        del counts[oid]


class _TooFar(Exception):
    """Moving the counts would cost more than counting afresh."""


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

    Caches parsed trees and raw objects (bounded).  Which objects a parent's tree
    reaches is kept as counts over one root tree at a time, moved from root to
    root by diffing trees pairwise; so walking a history oldest-first costs what
    the commits change, not the size of their trees.
    """

    def __init__(self, repo: ObjectSource, *, tree_budget: int = 16 << 20, raw_budget: int = 32 << 20):
        self.repo = repo
        self._trees = LRU(tree_budget)
        # Objects read lately: a pack's new objects are the next commit's delta bases, its
        # new trees were just parsed to plan it, and a commit is read again as a parent.
        self._raws = LRU(raw_budget)
        self._raw_max = raw_budget // 8
        self._commits = LRU(4096)
        # Recent tree diffs, by (a, b): a commit's trees against its parent's are diffed to
        # plan it, and again (the other way round) to move the counts to it as a parent.
        self._diffs = LRU(1 << 16)
        # id -> how many times it occurs in the whole tree of _counted_root (trees and blobs,
        # the root included, not gitlinks); ids that do not occur are absent.
        self._counted_root: bytes | None = None
        self._counts: Counter[bytes] = Counter()

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

    def changes(self, a: bytes, b: bytes) -> tuple[list[TreeEntry], list[TreeEntry]] | None:
        """(entries of tree a that tree b lacks, entries of b that a lacks), each in its tree's
        order; an entry is lacking unless the other tree has one of the same name, mode and id.
        None when either tree is not simple (see tree_changes_py), to be read whole instead."""
        hit = self._diffs.get_hit((a, b))
        if hit is None:
            hit = self._diffs.get_hit((b, a))
            if hit is not None:
                return hit[::-1] if hit[0] is not None else None
        if hit is not None:
            return hit if hit[0] is not None else None
        if _compiled_tree_changes is None:
            changes = tree_changes_py(self.tree(a), self.tree(b))
        else:
            raw_a, raw_b = self.raw(a), self.raw(b)
            if raw_a[0] != OBJ_TREE or raw_b[0] != OBJ_TREE:
                self.tree(a), self.tree(b)  # raises, as for any object read as a tree that is not one
            changes = _compiled_tree_changes(raw_a[1], raw_b[1], TreeEntry, KIND_BLOB, KIND_TREE, KIND_GITLINK)
        if changes is None:
            self._diffs.put((a, b), (None, None), 1)
        else:
            self._diffs.put((a, b), changes, 1 + len(changes[0]) + len(changes[1]))
        return changes

    # -- what the parents reach ------------------------------------------------
    def _reachable(self, roots: list[bytes]) -> Callable[[bytes], bool]:
        """A test: is this id a tree or blob reachable from (or equal to) any of roots?"""
        if not roots:
            return _NOTHING.__contains__
        self._count_root(roots[0])
        counts = self._counts
        others = []
        for root in roots[1:]:
            change: Counter[bytes] = Counter()
            self._count_change(roots[0], root, change)
            if any(change.values()):
                others.append(change)
        if not others:
            return counts.__contains__

        def reachable(oid: bytes) -> bool:
            n = counts.get(oid, 0)
            return n > 0 or any(n + change.get(oid, 0) > 0 for change in others)

        return reachable

    def _count_root(self, root: bytes) -> None:
        """Make _counts count the whole tree of root: moved from the root it counts when
        that costs less than a quarter of counting afresh, else counted afresh."""
        if self._counted_root == root:
            return
        try:
            if self._counted_root is not None:
                try:
                    self._count_change(self._counted_root, root, self._counts, budget=len(self._counts) // 4 + MOVE_SLACK)
                    self._counted_root = root
                    return
                except _TooFar:
                    pass
            self._counted_root, self._counts = None, Counter([root])
            self._count_subtrees(root, self._counts)
            self._counted_root = root
        except BaseException:
            # half moved: count afresh next time
            self._counted_root, self._counts = None, Counter()
            raise

    def _count_subtrees(self, tree_id: bytes, counts: Counter[bytes]) -> int:
        """Count once more every tree and blob below tree_id (not tree_id itself); returns
        how many entries that was."""
        stack = [tree_id]
        work = 0
        while stack:
            entries = self.tree(stack.pop())
            work += len(entries)
            counts.update([e.id for e in entries if e.kind != KIND_GITLINK])
            stack.extend([e.id for e in entries if e.kind == KIND_TREE])
        return work

    def _uncount_subtrees(self, tree_id: bytes, counts: Counter[bytes]) -> int:
        """Count once less every tree and blob below tree_id (not tree_id itself)."""
        stack = [tree_id]
        work = 0
        while stack:
            entries = self.tree(stack.pop())
            work += len(entries)
            for e in entries:
                if e.kind != KIND_GITLINK:
                    _bump(counts, e.id, -1)
                    if e.kind == KIND_TREE:
                        stack.append(e.id)
        return work

    def _count_change(self, a: bytes, b: bytes, counts: Counter[bytes], budget: int | None = None) -> None:
        """Change counts by (the whole tree of b) - (the whole tree of a), descending only
        into what differs; _TooFar once that has touched more than budget entries."""
        stack = [(a, b)]
        work = 0
        while stack:
            a, b = stack.pop()
            if a == b:
                continue
            changes = self.changes(a, b)
            if budget is not None and changes is not None:
                work += len(changes[0]) + len(changes[1])
                if work > budget:
                    raise _TooFar  # before counting what it would cost
            _bump(counts, a, -1)
            counts[b] += 1
            if changes is None:
                work += self._uncount_subtrees(a, counts) + self._count_subtrees(b, counts)
            else:
                only_a, only_b = changes
                in_b = {e.name: e for e in only_b}
                for e in only_a:
                    f = in_b.pop(e.name, None)
                    if f is not None and e.kind == KIND_TREE and f.kind == KIND_TREE:
                        stack.append((e.id, f.id))
                        continue
                    if e.kind != KIND_GITLINK:
                        _bump(counts, e.id, -1)
                        if e.kind == KIND_TREE:
                            work += self._uncount_subtrees(e.id, counts)
                    if f is not None:
                        in_b[f.name] = f
                for f in in_b.values():
                    if f.kind != KIND_GITLINK:
                        counts[f.id] += 1
                        if f.kind == KIND_TREE:
                            work += self._count_subtrees(f.id, counts)
            if budget is not None and work > budget:
                raise _TooFar

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
        reachable = self._reachable(parent_roots)
        trees: list[PlannedObject] = []
        blobs: list[PlannedObject] = []
        seen: set[bytes] = set()
        # What the first parent has and the commit no longer has, at the directories visited,
        # in walk order: (name, kind, id); read for renames only when a blob needs one.
        gone: list[tuple[bytes, str, bytes]] = []
        orphans: list[PlannedObject] = []  # blobs with no same-path base

        # Explicit stack: (tree id, path, the parents' tree ids at that path)
        stack: list[tuple[bytes, bytes, list[bytes | None]]] = [(root, b"", list(parent_roots))]
        while stack:
            tree_id, path, parent_dirs = stack.pop()
            if tree_id in seen or reachable(tree_id):
                continue
            seen.add(tree_id)
            trees.append(PlannedObject(tree_id, OBJ_TREE, path, [p for p in parent_dirs if p is not None]))
            entries, parent_maps = self._new_entries(tree_id, parent_dirs, gone)
            subdirs = []
            for name, _, oid, kind in entries:
                if kind == KIND_GITLINK or oid in seen or reachable(oid):
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
        if orphans:
            renamed = self._first_blobs_named({o.path.rsplit(b"/", 1)[-1] for o in orphans}, gone)
            for obj in orphans:
                base = renamed.get(obj.path.rsplit(b"/", 1)[-1])
                if base is not None:
                    obj.bases.append(base)
        return trees + blobs

    def _new_entries(self, tree_id: bytes, parent_dirs: list[bytes | None], gone: list[tuple[bytes, str, bytes]]
                     ) -> tuple[list[TreeEntry], list[dict[bytes, tuple[str, bytes]]]]:
        """The entries of tree tree_id that may be new, in tree order, and for each parent
        name -> (kind, id) of its tree at this path ({} when it has none), good for the names
        of those entries.  An entry that a parent's tree at this path holds too (same name,
        mode and id) is reachable from that parent, so it is left out: only what changed is
        looked at.  Appends to gone what the first parent's tree at this path has under a
        name tree_id lacks (not gitlinks)."""
        changes = []
        for parent_dir in parent_dirs:
            change = self.changes(tree_id, parent_dir) if parent_dir is not None else None
            if change is None and parent_dir is not None:
                return self._all_entries(tree_id, parent_dirs, gone)
            changes.append(change)
        present = [c for c in changes if c is not None]
        if not present:
            entries = self.tree(tree_id)
        else:
            entries = present[0][0]
            for change in present[1:]:
                names = {e.name for e in change[0]}
                entries = [e for e in entries if e.name in names]
        parent_maps = [{e.name: (e.kind, e.id) for e in c[1]} if c is not None else {} for c in changes]
        first = changes[0] if changes else None
        if first is not None and first[1]:
            names = {e.name for e in first[0]}
            gone.extend((e.name, e.kind, e.id) for e in first[1] if e.name not in names and e.kind != KIND_GITLINK)
        return entries, parent_maps

    def _all_entries(self, tree_id: bytes, parent_dirs: list[bytes | None], gone: list[tuple[bytes, str, bytes]]
                     ) -> tuple[list[TreeEntry], list[dict[bytes, tuple[str, bytes]]]]:
        """_new_entries for trees that are not simple: every entry, and whole name maps (the
        last entry of a repeated name wins)."""
        entries = self.tree(tree_id)
        parent_maps = [{e.name: (e.kind, e.id) for e in self.tree(p)} if p is not None else {} for p in parent_dirs]
        if parent_maps and parent_maps[0]:
            names = {e.name for e in entries}
            gone.extend((name, kind, oid) for name, (kind, oid) in parent_maps[0].items()
                        if name not in names and kind != KIND_GITLINK)
        return entries, parent_maps

    def _first_blobs_named(self, wanted: set[bytes], gone: list[tuple[bytes, str, bytes]]) -> dict[bytes, bytes]:
        """file name -> the first blob of that name in gone, trees walked depth-first in tree
        order, for the names in wanted."""
        found: dict[bytes, bytes] = {}
        stack = gone[::-1]
        while stack and len(found) < len(wanted):
            name, kind, oid = stack.pop()
            if kind == KIND_TREE:
                stack.extend([(e.name, e.kind, e.id) for e in reversed(self.tree(oid)) if e.kind != KIND_GITLINK])
            elif name in wanted and name not in found:
                found[name] = oid
        return found

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


try:
    from ._speedups import tree_changes as _compiled_tree_changes
except ImportError:  # not built (a source tree without `pip install`, or built before it had one)
    _compiled_tree_changes = None
