"""fsck and completeness for one pack whose objects are resolved: what verify_pack asks last.

`RepoView` is what the checks may ask of the receiving repository; `TreeCache`
keeps parsed trees between packs.  See docs/watcher.md, "Completeness".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .fsck import ALWAYS_REFUSED, WHY_ALWAYS, Finding, FsckPolicy, fsck_commit, fsck_gitattributes, fsck_gitmodules, fsck_tag, fsck_tree
from .lru import LRU
from .objects import KIND_BLOB, KIND_GITLINK, KIND_TREE, CommitHeader, ObjectParseError, TagHeader, parse_commit, parse_tag, parse_tree
from .packfile import OBJ_BLOB, OBJ_COMMIT, OBJ_TAG, OBJ_TREE, TYPE_NAMES

__all__ = ["RepoView", "TreeCache", "TREE_CACHE_BYTES", "Checker", "PackRejected", "MAX_PARENT_WALK", "parse_named"]

#: Most trees read from parents to prove a pack's outside objects (a copy from far away).
MAX_PARENT_WALK = 200_000


class PackRejected(ValueError):
    """The file is complete and wrong: it must never touch the repository."""


#: Headers parse_named read lately, by content: a pack's commit is read again as its child's
#: parent a moment later (and peek reads it before verify_pack does).  Emptied when full:
#: past _HEADERS_MAX entries or _HEADERS_BYTES bytes of content (a commit's message may be
#: long: one larger than _HEADER_LARGEST is parsed every time).
_HEADERS: dict[bytes, tuple[int, CommitHeader | TagHeader]] = {}
_HEADERS_MAX = 4096
_HEADERS_BYTES = 2 << 20
_HEADER_LARGEST = 16 << 10
_headers_bytes = 0


def parse_named(type_num: int, raw: bytes, oid: str) -> CommitHeader | TagHeader:
    """The header of the commit or tag oid (raw: its content); PackRejected if git cannot read
    it or it is neither.  A pure function of (type_num, raw): remembered by content."""
    hit = _HEADERS.get(raw) if type(raw) is bytes else None
    if hit is not None and hit[0] == type_num:
        return hit[1]
    try:
        if type_num == OBJ_COMMIT:
            header = parse_commit(raw)
        elif type_num == OBJ_TAG:
            header = parse_tag(raw)
        else:
            raise PackRejected(f"the file is named for {oid}, which is a {TYPE_NAMES[type_num].decode()}, not a commit or tag")
    except ObjectParseError as exc:
        raise PackRejected(f"{TYPE_NAMES[type_num].decode()} {oid} cannot be read by git: {exc}") from None
    if type(raw) is bytes and len(raw) <= _HEADER_LARGEST:
        global _headers_bytes
        if len(_HEADERS) >= _HEADERS_MAX or _headers_bytes + len(raw) > _HEADERS_BYTES:
            _HEADERS.clear()
            _headers_bytes = 0
        _HEADERS[raw] = (type_num, header)
        _headers_bytes += len(raw)
    return header


#: The types of object a commit pack may hold.
_COMMIT_PACK_TYPES = frozenset((OBJ_COMMIT, OBJ_TREE, OBJ_BLOB))

#: Bytes of trees TreeCache keeps (estimated: TreeCache.weight).
TREE_CACHE_BYTES = 16 << 20
#: What one kept tree costs besides its content: its id, the LRU's links and weight.
_TREE_OVERHEAD = 200


class TreeCache:
    """Trees' contents (raw bytes) by binary id, least recently used dropped.

    Content-addressed, so always right; shared across packs because a commit's parent
    trees are the trees its parent's pack brought, checked a moment before.  Bounded by
    the bytes held (max_bytes, estimated by weight()).
    """

    def __init__(self, max_bytes: int = TREE_CACHE_BYTES):
        self._trees = LRU(max_bytes)

    def get(self, tree_id: bytes) -> bytes | None:
        return self._trees.get_hit(tree_id)

    def put(self, tree_id: bytes, raw: bytes) -> None:
        self._trees.put(tree_id, raw, self.weight(raw))

    def put_many(self, trees: list[tuple[bytes, bytes]]) -> None:
        """put(tree_id, raw) of each, in order."""
        self._trees.put_many([(tree_id, raw, _TREE_OVERHEAD + len(raw)) for tree_id, raw in trees])

    @staticmethod
    def weight(raw: bytes) -> int:
        return _TREE_OVERHEAD + len(raw)

    @property
    def bytes(self) -> int:
        return self._trees.weight


@dataclass(frozen=True)
class RepoView:
    """What the checker may ask about the receiving repository.

    read(binary id) -> (type number, content) or None: any object present;
    has_commit(hex id) -> bool: the commit is present *with its whole history*
    (imported and checked by us, or reachable from the repository's refs);
    has_tag(hex id) -> bool: likewise for an annotated tag and what it names.
    """

    read: Callable[[bytes], tuple[int, bytes] | None]
    has_commit: Callable[[str], bool]
    has_tag: Callable[[str], bool] = lambda tag: False
    trees: TreeCache | None = None  # parsed trees kept between packs

    def complete(self, hex_id: str) -> bool:
        return self.has_commit(hex_id) or self.has_tag(hex_id)



class Checker:
    """fsck and connectivity for one pack whose objects are all resolved."""

    def __init__(
        self,
        named: str,
        objects: dict[bytes, tuple[int, bytes]],
        external: dict[bytes, tuple[int, bytes]],
        repo: RepoView,
        policy: FsckPolicy,
    ):
        self.named = named
        self.objects = objects
        self.external = external  # delta bases already read: often the parents' trees
        self.repo = repo
        self.policy = policy
        self.reached: set[bytes] = {bytes.fromhex(named)}
        self.gitmodules: set[bytes] = set()
        self.gitattributes: set[bytes] = set()
        self._parent_raws: dict[bytes, bytes] = {}  # tree id -> content of the parents' trees read
        self._parent_trees: dict[bytes, dict[bytes, tuple[str, bytes]]] = {}  # the same parsed, where needed
        self._ids: tuple[bytes, bytes] | None = None  # the pack's ids, sorted and joined; their types

    # -- fsck ---------------------------------------------------------------------------
    def _refuse(self, findings: list[Finding]) -> None:
        bad = self.policy.first_refusal(findings)
        if bad is not None:
            if bad.msg_id in ALWAYS_REFUSED:
                raise PackRejected(f"{bad} ({WHY_ALWAYS[bad.msg_id]}; always refused)")
            raise PackRejected(f"{bad} (refused because the repository sets fetch/transfer.fsckObjects)")

    def fsck_objects(self) -> None:
        """Every object of the pack, by git fsck's rules, under the policy."""
        strict = self.policy.strict
        checked: list[tuple[bytes, bytes]] = []  # the pack's trees, kept for the packs to come
        for oid, (type_num, content) in self.objects.items():
            if type_num == OBJ_TREE:
                report = fsck_tree(oid.hex(), content, strict=strict, keep_entries=False)
                if report.findings:
                    self._refuse(report.findings)
                checked.append((oid, content))
                if report.gitmodules:
                    self.gitmodules.update(report.gitmodules)
                if report.gitattributes:
                    self.gitattributes.update(report.gitattributes)
            elif type_num == OBJ_COMMIT:
                self._refuse(fsck_commit(oid.hex(), content))
            elif type_num == OBJ_TAG:
                self._refuse(fsck_tag(oid.hex(), content))
        if self.repo.trees is not None and checked:
            self.repo.trees.put_many(checked)
        for oid in sorted(self.gitmodules):
            blob = self._object(oid)
            if blob is None:
                continue  # connectivity names it
            if blob[0] != OBJ_BLOB:
                self._refuse([_fsck_finding(oid, blob[0], "gitmodulesBlob", "non-blob found at .gitmodules")])
            else:
                self._refuse(fsck_gitmodules(oid.hex(), blob[1]))
        if self.policy.strict:
            for oid in sorted(self.gitattributes):
                blob = self._object(oid)
                if blob is not None and blob[0] == OBJ_BLOB:
                    self._refuse(fsck_gitattributes(oid.hex(), blob[1]))

    def _object(self, oid: bytes) -> tuple[int, bytes] | None:
        """An object of the pack, or one read from the repository."""
        hit = self.objects.get(oid) or self.external.get(oid)
        return hit if hit is not None else self.repo.read(oid)

    # -- the two kinds of pack --------------------------------------------------------------
    def commit_pack(self, header: CommitHeader) -> None:
        types = [t for t, _ in self.objects.values()]
        if types.count(OBJ_COMMIT) != 1:
            raise PackRejected(f"a commit pack holds one commit, this one holds {types.count(OBJ_COMMIT)}")
        if not _COMMIT_PACK_TYPES.issuperset(types):
            raise PackRejected("a commit pack holds only a commit, trees and blobs")
        self.fsck_objects()
        parent_roots = []
        for p in header.parents:
            found = self.repo.read(bytes.fromhex(p))
            if found is None or found[0] != OBJ_COMMIT:
                raise PackRejected(f"parent {p} is not a commit")
            parent_roots.append(bytes.fromhex(parse_named(OBJ_COMMIT, found[1], p).tree))
        self.connected(bytes.fromhex(header.tree), parent_roots, f"commit {self.named}")
        self.no_extras()

    def tag_pack(self, header: TagHeader) -> None:
        if any(t == OBJ_COMMIT for t, _ in self.objects.values()):
            raise PackRejected("a tag pack holds no commit")
        tags = [oid for oid, (t, _) in self.objects.items() if t == OBJ_TAG]
        if len(tags) != 1:
            raise PackRejected(f"a tag pack holds one tag, this one holds {len(tags)}")
        self.fsck_objects()
        target = bytes.fromhex(header.object)
        if header.type in ("commit", "tag"):
            found = self.repo.read(target)
            want = OBJ_COMMIT if header.type == "commit" else OBJ_TAG
            if found is None or found[0] != want:
                raise PackRejected(f"tag {self.named} says {header.object} is a {header.type}, and it is not")
        elif header.type == "blob":
            found = self.objects.get(target)
            if found is None or found[0] != OBJ_BLOB:
                raise PackRejected(f"tag {self.named} names blob {header.object}, which the pack does not hold as a blob")
            self.reached.add(target)
        else:
            found = self.objects.get(target)
            if found is None or found[0] != OBJ_TREE:
                raise PackRejected(f"tag {self.named} names tree {header.object}, which the pack does not hold as a tree")
            self.connected(target, [], f"tag {self.named}")
        self.no_extras()

    def no_extras(self) -> None:
        extra = set(self.objects) - self.reached
        if extra:
            raise PackRejected(
                f"the pack holds {len(extra)} objects its {self.named} does not reach (e.g. {min(extra).hex()})"
            )

    # -- connectivity -----------------------------------------------------------------------
    def _parent_raw(self, tree_id: bytes) -> bytes:
        """The content of a tree of a complete parent (read from the repository)."""
        raw = self._parent_raws.get(tree_id)
        if raw is None and self.repo.trees is not None:
            raw = self.repo.trees.get(tree_id)
        if raw is None:
            found = self.external.get(tree_id) or self.repo.read(tree_id)
            if found is None or found[0] != OBJ_TREE:
                raise PackRejected(f"a parent's tree {tree_id.hex()} cannot be read from the repository")
            raw = found[1]
            if self.repo.trees is not None:
                self.repo.trees.put(tree_id, raw)
        self._parent_raws[tree_id] = raw
        return raw

    def _parent_tree(self, tree_id: bytes | None) -> dict[bytes, tuple[str, bytes]] | None:
        """name -> (kind, binary id) of a tree of a complete parent (read from the repository)."""
        if tree_id is None:
            return None
        if tree_id not in self._parent_trees:
            raw = self._parent_raw(tree_id)
            try:
                self._parent_trees[tree_id] = _tree_map(parse_tree(raw))
            except ObjectParseError:
                raise PackRejected(f"a parent's tree {tree_id.hex()} cannot be read") from None
        return self._parent_trees[tree_id]

    def _look_at(self, tree_id: bytes, parent_dirs: list[bytes], queue: list, outside: list) -> None:
        """connected's look at one tree of the pack beside the parents' trees at its path."""
        bad = None
        if _connect_raw is not None:
            if self._ids is None:
                ids = sorted(self.objects)
                self._ids = (b"".join(ids), bytes(self.objects[i][0] for i in ids))
            parent_raws = [self._parent_raw(d) for d in parent_dirs]
            bad = _connect_raw(self.objects[tree_id][1], parent_raws, *self._ids, self.reached, queue, outside,
                               tree_id, KIND_BLOB, KIND_TREE, KIND_GITLINK, OBJ_BLOB, OBJ_TREE)
        if bad is None:  # not built, or a parent tree that is not simple (a name twice): by the maps
            parent_maps = [m for m in (self._parent_tree(d) for d in parent_dirs) if m is not None]
            bad = _connect_tree(parse_tree(self.objects[tree_id][1]), self.objects, parent_maps, self.reached, queue,
                                outside, tree_id, KIND_BLOB, KIND_TREE, KIND_GITLINK, OBJ_BLOB, OBJ_TREE)
        if bad >= 0:
            _, _, name, oid, kind = parse_tree(self.objects[tree_id][1])[bad]
            raise PackRejected(
                f"tree {tree_id.hex()} names {oid.hex()} as a {kind} ({name.decode(errors='replace')!r}),"
                f" it is a {TYPE_NAMES[self.objects[oid][0]].decode()}"
            )

    def connected(self, root: bytes, parent_roots: list[bytes], what: str) -> None:
        """Everything below root is in the pack or in a parent's tree, with the right type.

        Walks the pack's trees from root beside the parents' trees at the same path: an
        object outside the pack counts only if a parent has it (same id, same kind),
        first at the same path (what a thin commit pack leaves out), then anywhere in
        the parent trees read so far (a rename), then anywhere below the parents' roots
        (a copy from elsewhere).
        """
        outside: list[tuple[bytes, bytes, str]] = []  # (naming tree, id, kind)
        if root in self.objects:
            if self.objects[root][0] != OBJ_TREE:
                raise PackRejected(f"{what}: its tree {root.hex()} is a {TYPE_NAMES[self.objects[root][0]].decode()}")
            self.reached.add(root)
            queue = [(root, list(parent_roots))]
        else:
            outside.append((bytes.fromhex(self.named), root, KIND_TREE))
            queue = []
        walked: set[bytes] = set()
        while queue:
            tree_id, parent_dirs = queue.pop()
            if tree_id in walked:
                continue
            walked.add(tree_id)
            self._look_at(tree_id, parent_dirs, queue, outside)
        if not outside:
            return
        roots = {(KIND_TREE, r) for r in parent_roots}
        left = [o for o in outside if (o[2], o[1]) not in roots and not self._in_trees_read(o[1], o[2])]
        if left:
            known = self._closure(parent_roots)
            left = [o for o in left if (o[2], o[1]) not in known]
        if left:
            tree_id, oid, kind = left[0]
            other = next((k for k, i in known if i == oid and k != kind), None)
            if other is not None:
                raise PackRejected(f"{what}: {tree_id.hex()} names {oid.hex()} as a {kind}, it is a {other}")
            present = self.repo.read(oid)
            where = "in a parent's tree" if parent_roots else "in a parent's tree (it has no parent)"
            note = "" if present is None else " (an object with that id lies in the repository, but no complete history holds it)"
            raise PackRejected(f"{what}: {tree_id.hex()} names {kind} {oid.hex()}, which is neither in the pack nor {where}{note}")

    def _in_trees_read(self, oid: bytes, kind: str) -> bool:
        """(kind, oid) is an entry of a parent's tree read so far.  Only a tree whose bytes
        hold the id can name it: the others are not parsed (every tree read so far parses:
        connect_raw read it whole, or _parent_tree did)."""
        want = (kind, oid)
        for tree_id, raw in list(self._parent_raws.items()):
            if oid in raw and want in self._parent_tree(tree_id).values():
                return True
        return False

    def _closure(self, roots: list[bytes]) -> set[tuple[str, bytes]]:
        """(kind, id) of everything below the parents' roots (bounded: MAX_PARENT_WALK trees)."""
        out: set[tuple[str, bytes]] = set()
        stack = list(roots)
        seen: set[bytes] = set()
        while stack:
            tree_id = stack.pop()
            if tree_id in seen:
                continue
            seen.add(tree_id)
            if len(seen) > MAX_PARENT_WALK:
                raise PackRejected(f"proving the pack's outside objects would read more than {MAX_PARENT_WALK} trees")
            below = self._parent_tree(tree_id).values()
            out.update(below)
            stack.extend([oid for kind, oid in below if kind == KIND_TREE])
        return out


def _connect_tree_py(entries: list, objects: dict, parent_maps: list[dict], reached: set[bytes], queue: list,
                     outside: list, tree_id: bytes, kind_blob: str, kind_tree: str, kind_gitlink: str,
                     type_blob: int, type_tree: int) -> int:
    """Checker.connected's look at one tree of the pack (compiled twin: _speedups.connect_tree).

    entries: the tree's RawTreeEntry tuples; objects: the pack's, binary id -> (type,
    content); parent_maps: the parents' trees at the same path, name -> (kind, id).  An
    entry in the pack goes into `reached` and, a tree, onto `queue` as (id, [the parents'
    subtrees of that name]); one neither in the pack nor in a parent map under its name
    with the same (kind, id) onto `outside` as (tree_id, id, kind).  Returns -1, or the
    index of the first entry whose object in the pack is not of the type its kind says.
    """
    types = {kind_blob: type_blob, kind_tree: type_tree}
    for i, (_, _, name, oid, kind) in enumerate(entries):
        if kind == kind_gitlink:
            continue  # a commit of another repository
        found = objects.get(oid)
        if found is not None:
            if found[0] != types.get(kind):
                return i
            reached.add(oid)
            if kind == kind_tree:
                below = [m.get(name) for m in parent_maps]
                queue.append((oid, [b[1] for b in below if b is not None and b[0] == kind_tree]))
            continue
        want = (kind, oid)
        for m in parent_maps:
            if m.get(name) == want:
                break
        else:
            outside.append((tree_id, oid, kind))
    return -1


def _tree_map_py(entries: list) -> dict[bytes, tuple[str, bytes]]:
    """name -> (kind, binary id) of a tree's RawTreeEntry tuples (compiled twin: _speedups.tree_map)."""
    return {e.name: (e.kind, e.id) for e in entries}


try:
    from ._speedups import connect_raw as _connect_raw
    from ._speedups import connect_tree as _connect_tree
    from ._speedups import tree_map as _tree_map
except ImportError:  # not built (a source tree without `pip install`): the references
    _connect_raw = None
    _connect_tree = _connect_tree_py
    _tree_map = _tree_map_py


def _fsck_finding(oid: bytes, type_num: int, msg_id: str, message: str) -> Finding:
    return Finding(msg_id, message, oid.hex(), TYPE_NAMES.get(type_num, b"object").decode())
