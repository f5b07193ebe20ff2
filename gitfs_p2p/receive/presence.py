"""What counts as complete in the receiving repository (docs/watcher.md, "Completeness").

A commit or tag is complete when the watcher imported it after checking everything
below it (its cache row says received = 2), or when one of REPO's refs reaches it; a
pack waiting for a delta base is satisfied by any tree or blob present.  REPO is asked
in batches where it can be (one question per pass for every pack named in DIR).
"""

from __future__ import annotations

import ctypes
from typing import Callable

from ..git.receiving import ReceivingRepo
from ..pack.commitpack import FORMAT_VERSION
from ..pack.lru import LRU
from ..pack.packfile import OBJ_COMMIT, OBJ_TAG
from ..pack.verify import RepoView, TreeCache
from ..store.cache import PackCache

__all__ = ["Presence", "RECENT_BYTES"]

#: Objects of the packs verified last kept for reading (a child's delta bases and parent
#: trees are mostly its parent's objects, verified a moment before): REPO is asked only
#: past this many bytes.  Each object is weighed as its content plus OBJECT_OVERHEAD.
RECENT_BYTES = 32 << 20
#: What one kept object costs besides its content (its id, the tuple, the LRU's links).
OBJECT_OVERHEAD = 256


class Presence:
    """Answers about REPO for one importer.  batch_ids(): the commits and tags verified,
    not yet written; unwritten(binary id): the object is in that batch; read_unwritten(binary
    id, known): the batch's object read from its plan (known: the objects at hand), or None."""

    def __init__(self, repo: ReceivingRepo, cache: PackCache, batch_ids: Callable[[], set[str]],
                 unwritten: Callable[[bytes], bool], read_unwritten: Callable[..., tuple[int, bytes] | None]):
        self.repo = repo
        self.cache = cache
        self.batch_ids = batch_ids
        self.unwritten = unwritten
        self.read_unwritten = read_unwritten
        self.imported: set[str] = set()
        self.trees = TreeCache()
        self._received: set[str] | None = None  # ids of received packs in the cache (loaded once)
        self._types: dict[str, int | None] = {}  # REPO's answers, valid for one pass
        self._more: dict[str, int | None] = {}  # and those of the last ask_more (a roll-up's members)
        self._recent = LRU(RECENT_BYTES)  # binary id -> (type, content) of objects verified lately

    def remember(self, *objects: dict) -> None:
        """Objects of a verified pack (binary id -> (type, content)): kept a while for reading."""
        largest = RECENT_BYTES // 8
        for found in objects:
            self._recent.put_many((oid, value, OBJECT_OVERHEAD + len(value[1]))
                                  for oid, value in found.items() if len(value[1]) <= largest)

    def ask_first(self, hex_ids: list[str]) -> None:
        """Ask REPO the types of these objects in one batch (answers kept until forget())."""
        self._types = self.repo.types(hex_ids)

    def ask_more(self, hex_ids: list[str]) -> None:
        """Ask REPO about those of these the pack cache has received packs for (is_imported
        answers for the others without REPO; a roll-up opened in the middle of a pass), in
        one batch; they replace the answers of the last ask_more (imported meanwhile)."""
        if self._received is None:
            self._received = self.cache.received_ids(FORMAT_VERSION)
        self._more = self.repo.types([h for h in hex_ids if h in self._received])

    def forget(self) -> None:
        """Objects were written: the batched answers are stale."""
        self._types = {}
        self._more = {}

    def let_go(self) -> None:
        """Drop the objects and trees kept for reading (while git repacks beside us,
        whose memory adds to ours); they fill again from the next packs."""
        self._recent = LRU(RECENT_BYTES)
        if self.trees is not None:
            self.trees = TreeCache()
        _trim_heap()

    def is_imported(self, oid: str) -> bool:
        """The commit (or tag) is in REPO and its received pack is in the cache: we checked it,
        and the whole history below it, when it arrived."""
        if oid in self.imported:
            return True
        if self._received is None:
            self._received = self.cache.received_ids(FORMAT_VERSION)
        if oid in self._received and self.type_of(oid) is not None:
            self.imported.add(oid)
            return True
        return False

    def type_of(self, oid: str) -> int | None:
        """REPO's type for oid; answers of the pass's batched question first (see run_pass)."""
        if oid in self._types:
            return self._types[oid]
        if oid in self._more:
            return self._more[oid]
        return self.repo.type_of(oid)

    def has_commit(self, commit: str) -> bool:
        """The commit is in REPO with its whole history: checked by us, or reachable from a ref."""
        return (
            commit in self.batch_ids()
            or self.is_imported(commit)
            or self.repo.trusted_commit(commit)
        )

    def has_tag(self, tag: str) -> bool:
        return tag in self.batch_ids() or self.is_imported(tag) or self.repo.trusted_tag(tag)

    def satisfied(self, need: str) -> bool:
        """A waiting pack's need is met: a commit or tag complete in REPO, or (a delta base) any
        tree or blob present."""
        if need in self.batch_ids() or need in self.imported:
            return True
        type_num = self.type_of(need)
        if type_num is None:
            return False
        if type_num == OBJ_COMMIT:
            return self.is_imported(need) or self.repo.trusted_commit(need, type_num)
        if type_num == OBJ_TAG:
            return self.is_imported(need) or self.repo.trusted_tag(need, type_num)
        return True

    def view(self, write_batch: Callable[[], None]) -> RepoView:
        """What a pack's check may ask; write_batch() writes the unwritten batch (then REPO
        answers for its objects)."""
        recent = self._recent
        unwritten = self.unwritten
        read_unwritten = self.read_unwritten

        def read(oid: bytes):
            hit = recent.get_hit(oid)
            if hit is not None:
                return hit
            if unwritten(oid):  # verified, no longer kept, not written yet: from the batch's plan
                found = read_unwritten(oid, recent.get_hit)
                if found is not None:
                    return found
                write_batch()  # one it cannot read there: written first, then REPO answers
            return self.repo.read(oid)

        return RepoView(read, self.has_commit, self.has_tag, self.trees)


def _trim_heap() -> None:
    """Give freed memory back to the system (glibc's malloc_trim); nothing elsewhere."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL("libc.so.6")
            _libc.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _libc = False
    if _libc:
        _libc.malloc_trim(0)


_libc = None
