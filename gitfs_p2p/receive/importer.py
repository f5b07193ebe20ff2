"""The watcher: import completed commit packs from a download directory into a repository.

`Importer.run_pass()` is one synchronous, idempotent pass: scan DIR, check
each new or changed file (watch_check), write every pack whose parents are
present into the repository in parent-first order (watch_repo), record the
received bytes in the pack cache, then move the manifest's refs whose
target is present.  `Watcher.run()` is the thin trio layer: it runs passes
in a worker thread whenever inotify (or, failing that, a poll) says DIR
changed.  docs/watcher.md gives the rules; all state that matters lives in
REPO (objects, refs, the pack cache), so a pass after a kill -9 finishes
whatever the killed one started.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
import time
from dataclasses import dataclass, field
from typing import Callable

import trio

from ..store.cache import PackCache
from ..pack.commitpack import FORMAT_VERSION
from ..errors import UserError
from ..pack.manifest import MANIFEST_SUFFIX, ManifestError, RefManifest
from ..pack.manifest import checksum_ok as manifest_checksum_ok
from ..pack.verify import (
    WATCH_LIMITS,
    PackIncomplete,
    PackRejected,
    RepoView,
    TreeCache,
    VerifiedPack,
    Waiting,
    check_complete,
    commit_from_name,
    looks_partial,
    peek,
    verify_pack,
)
from ..pack.packfile import OBJ_COMMIT, OBJ_TAG
from .quarantine import Quarantine
from .. import faults
from ..git.receiving import ReceivingRepo

__all__ = ["Importer", "PassResult", "Watcher", "SIDECAR_SUFFIXES", "DEFAULT_SETTLE"]

log = logging.getLogger(__name__)

#: Partial and sidecar files of common clients; never read.
SIDECAR_SUFFIXES = (".part", ".!qB", ".aria2", ".parts", ".fastresume", ".resume", ".torrent", ".!ut", ".tmp")
#: An incomplete file unchanged this long (and not looking pre-allocated) is given up on.
DEFAULT_SETTLE = 10.0
#: A file modified more recently than this is left for the next pass (watch mode only).
QUIET = 0.3
#: Bounds of one written pack (a batch of commit packs).
BATCH_PACKS = 500
BATCH_BYTES = 64 << 20
BATCH_INFLATED = 256 << 20
#: Ref changes reported one by one in a pass; the rest are counted.
REPORT_REFS = 20
#: The name under refs/remotes/ that a non-bare repository receives branches into.
DEFAULT_REMOTE = "gitp2p"
#: Merge the repository's packs when there are more than this many.
CONSOLIDATE_AT = 64
DEFAULT_MAX_PACK_BYTES = 1 << 30


@dataclass
class _Verdict:
    key: tuple
    kind: str  # "done" | "waiting" | "incomplete" | "ready" | "changing" | "rejected"
    commit: str | None = None
    needs: frozenset[str] = frozenset()
    reason: str = ""
    partial: bool = True
    mtime: float = 0.0
    manifest: RefManifest | None = None


@dataclass
class PassResult:
    """What one pass saw and did."""

    total: int = 0  # pack files in DIR that may still be imported
    imported: int = 0  # of those, already in REPO
    new: int = 0  # imported by this pass
    waiting: dict[str, frozenset[str]] = field(default_factory=dict)  # commit -> needs
    incomplete: list[str] = field(default_factory=list)  # relative paths
    changing: int = 0
    quarantined: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    refs_set: list[tuple[str, str]] = field(default_factory=list)
    refs_waiting: dict[str, str] = field(default_factory=dict)  # ref -> commit
    refs_refused: dict[str, str] = field(default_factory=dict)  # ref -> why
    files_present: set[str] = field(default_factory=set)  # commits with a pack file in DIR

    causes: list[tuple[str, str, int]] = field(default_factory=list)  # (object, why it is absent, packs waiting)

    @property
    def finished(self) -> bool:
        """Everything in DIR is imported and every manifest ref is set."""
        return not (
            self.waiting or self.incomplete or self.changing or self.quarantined
            or self.refs_waiting or self.refs_refused
        )

    def progress_line(self) -> str:
        line = f"imported {self.imported}/{self.total} packs"
        extra = []
        if self.waiting:
            extra.append(f"waiting for {len(self.waiting)}")
        if self.incomplete or self.changing:
            extra.append(f"{len(self.incomplete) + self.changing} incomplete")
        if self.refs_waiting:
            extra.append(f"{len(self.refs_waiting)} refs waiting")
        return ", ".join([line] + extra)

    def detail_lines(self, limit: int = 10) -> list[str]:
        """What is missing and why, root causes first: each absent pack that others wait for
        (quarantined, with its reason, or not downloaded yet), how many wait for it, then the
        refs that wait or were refused."""
        lines = []
        for oid, why, count in self.causes[:limit]:
            waits = f"; {count:,} pack{'s' if count != 1 else ''} wait for it" if count else ""
            lines.append(f"{oid}.pack {why}{waits}")
        if len(self.causes) > limit:
            lines.append(f"... and {len(self.causes) - limit} more absent packs")
        # packs blocked directly by a missing file first: they say what to fetch
        order = sorted(self.waiting.items(), key=lambda kv: (kv[1] <= self.files_present, kv[0]))
        for commit, needs in order[:limit]:
            shown = ", ".join(
                n if n in self.files_present else f"{n} (no file yet)" for n in sorted(needs)[:5]
            )
            more = f" and {len(needs) - 5} more" if len(needs) > 5 else ""
            lines.append(f"waiting for {commit} (needs {shown}{more})")
        if len(self.waiting) > limit:
            lines.append(f"... and {len(self.waiting) - limit} more packs waiting")
        for rel, why in self.quarantined[:limit]:
            lines.append(f"quarantined {rel}: {why}")
        if len(self.quarantined) > limit:
            lines.append(f"... and {len(self.quarantined) - limit} more files quarantined")
        if self.incomplete:
            lines.append(f"{len(self.incomplete)} files not complete yet: {', '.join(self.incomplete[:3])}"
                         + (" ..." if len(self.incomplete) > 3 else ""))
        for ref, commit in sorted(self.refs_waiting.items())[:limit]:
            lines.append(f"ref {ref} waits for {commit}")
        if len(self.refs_waiting) > limit:
            lines.append(f"... and {len(self.refs_waiting) - limit} more refs waiting")
        for ref, why in sorted(self.refs_refused.items())[:limit]:
            lines.append(f"ref {ref} not updated: {why}")
        if len(self.refs_refused) > limit:
            lines.append(f"... and {len(self.refs_refused) - limit} more refs not updated")
        return lines


def _root_causes(waiting: dict[str, frozenset[str]]) -> dict[str, set[str]]:
    """For each need that is not itself a waiting pack, the waiting packs that (through others)
    wait for it.  Iterative: a chain of 100,000 packs is no deeper than one."""
    roots: dict[str, set[str]] = {}
    memo: dict[str, frozenset[str]] = {}
    for start in waiting:
        if start in memo:
            continue
        stack = [start]
        on_stack = {start}
        while stack:
            node = stack[-1]
            pending = [n for n in waiting.get(node, ()) if n in waiting and n not in memo and n not in on_stack]
            if pending:
                stack.append(pending[0])
                on_stack.add(pending[0])
                continue
            stack.pop()
            on_stack.discard(node)
            found: set[str] = set()
            for n in waiting.get(node, ()):
                if n in waiting:
                    found |= memo.get(n, frozenset())
                else:
                    found.add(n)
            memo[node] = frozenset(found)
    for node, causes in memo.items():
        for cause in causes:
            roots.setdefault(cause, set()).add(node)
    return roots


class _Batch:
    """Verified packs not yet written; their objects answer lookups meanwhile."""

    def __init__(self) -> None:
        self.packs: list[VerifiedPack] = []
        self.commits: set[str] = set()  # the commits and tags the batch's packs are named for
        self.objects: dict[bytes, tuple[int, bytes]] = {}
        self.bytes = 0
        self.inflated = 0

    def add(self, vp: VerifiedPack) -> None:
        self.packs.append(vp)
        self.commits.add(vp.object_id)
        self.objects.update(vp.objects)
        self.objects.update(vp.external)
        self.bytes += len(vp.data)
        self.inflated += vp.inflated_size

    @property
    def full(self) -> bool:
        return len(self.packs) >= BATCH_PACKS or self.bytes >= BATCH_BYTES or self.inflated >= BATCH_INFLATED


class Importer:
    """Synchronous passes over DIR into one repository (see module docstring)."""

    def __init__(
        self,
        directory: str,
        repo_path: str,
        *,
        bare: bool = False,
        force: bool = False,
        remote: str = DEFAULT_REMOTE,
        settle: float = DEFAULT_SETTLE,
        quiet: float = QUIET,
        max_pack_bytes: int = DEFAULT_MAX_PACK_BYTES,
        limits=WATCH_LIMITS,
        report: Callable[[str], None] | None = None,
    ):
        if not os.path.isdir(directory):
            raise UserError(f"{directory}: not a directory")
        self.dir = os.path.realpath(directory)
        self.repo = ReceivingRepo(repo_path, bare=bare)
        self.git_dir = os.path.realpath(self.repo.git_dir)
        self.quarantine_dir = os.path.join(self.git_dir, "gitp2p", "quarantine")
        self.quarantined = Quarantine(self.quarantine_dir)
        self._lock_fd = self._take_lock()
        self.repo.recover()
        self.cache = PackCache(self.git_dir)
        self.policy = self.repo.fsck_policy()
        self.force = force
        self.remote = _check_remote_name(remote)
        self.settle = settle
        self.quiet = quiet
        self.max_pack_bytes = max_pack_bytes
        self.limits = limits
        self.report = report or (lambda line: log.info("%s", line))
        self.imported: set[str] = set()
        self._verdicts: dict[str, _Verdict] = {}
        self._noted: set[tuple[str, str]] = set()
        self._batch = _Batch()
        self._trees = TreeCache()
        self._received: set[str] | None = None  # ids of received packs in the cache (loaded once)
        self._types: dict[str, int | None] = {}  # REPO's answers, valid for one pass
        self.dirs: list[str] = []  # directories seen by the last scan (for inotify)

    def close(self) -> None:
        self.repo.close()
        self.cache.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "Importer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _take_lock(self) -> int:
        path = os.path.join(self.repo.state_dir, "lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"{self.repo.path}: another `gitp2p watch` is importing into this repository") from None
        return fd

    # -- scanning -----------------------------------------------------------------
    def _rel(self, path: str) -> str:
        return os.path.relpath(path, self.dir)

    def _note(self, path: str, what: str) -> None:
        if (path, what) not in self._noted:
            self._noted.add((path, what))
            self.report(f"ignoring {self._rel(path)}: {what}")

    def scan(self) -> tuple[list[tuple[str, os.stat_result]], list[tuple[str, os.stat_result]], list[tuple[str, str]]]:
        """(pack files, manifest files, symlinks named like ours) under DIR; never follows a link."""
        packs, manifests, links = [], [], []
        dirs = [self.dir]
        stack = [(self.dir, 0)]
        skip = {self.git_dir, os.path.realpath(self.repo.path)}
        while stack:
            top, depth = stack.pop()
            try:
                with os.scandir(top) as it:
                    entries = list(it)
            except OSError as exc:
                self._note(top, f"cannot list ({exc.strerror})")
                continue
            for entry in entries:
                name = entry.name
                ours = commit_from_name(name) is not None or name.endswith(MANIFEST_SUFFIX)
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if ours:
                        self._note(entry.path, "a directory, not a file")
                    if entry.path not in skip and depth < 32:
                        stack.append((entry.path, depth + 1))
                        dirs.append(entry.path)
                    continue
                if not ours or name.endswith(SIDECAR_SUFFIXES):
                    continue
                if stat.S_ISLNK(st.st_mode):
                    links.append((entry.path, "a symbolic link (never followed)"))
                elif not stat.S_ISREG(st.st_mode):
                    self._note(entry.path, "not a regular file")
                elif name.endswith(MANIFEST_SUFFIX):
                    manifests.append((entry.path, st))
                else:
                    packs.append((entry.path, st))
        self.dirs = dirs
        packs.sort()
        manifests.sort()
        return packs, manifests, links

    def _in_progress(self, path: str) -> bool:
        """A client's control file says it is still downloading this file (or its torrent)."""
        parent = os.path.dirname(path)
        return any(os.path.exists(p) for p in (path + ".aria2", parent + ".aria2", path + ".part", path + ".!qB"))

    def _read(self, path: str, st: os.stat_result) -> bytes | None:
        """The file's bytes, or None if it changed while read or vanished."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode) or _key(before) != _key(st):
                return None
            chunks = []
            left = before.st_size
            while left > 0:
                chunk = os.read(fd, min(left, 16 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            if _key(os.fstat(fd)) != _key(before):
                return None
            return b"".join(chunks)
        finally:
            os.close(fd)

    # -- quarantine -----------------------------------------------------------------
    def quarantine(self, path: str, reason: str, result: PassResult) -> None:
        """Refuse the file for good (watch_quarantine: moved, or left in place, never copied)."""
        rel = self._rel(path)
        try:
            key = _key(os.lstat(path))
        except OSError:
            return  # it went away meanwhile
        name = os.path.basename(path)
        record = self.quarantined.put(path, rel, commit_from_name(name), reason, key)
        where = "" if record.key is None else " (left where it is: DIR is on another file system)"
        self.report(f"quarantined {rel}: {reason}{where}")
        result.quarantined.append((rel, reason))
        self._verdicts.pop(path, None)

    # -- presence -------------------------------------------------------------------
    def is_imported(self, oid: str) -> bool:
        """The commit (or tag) is in REPO and its received pack is in the cache: we checked it,
        and the whole history below it, when it arrived."""
        if oid in self.imported:
            return True
        if self._received is None:
            self._received = self.cache.received_ids(FORMAT_VERSION)
        if oid in self._received and self._type(oid) is not None:
            self.imported.add(oid)
            return True
        return False

    def _type(self, oid: str) -> int | None:
        """REPO's type for oid; answers of the pass's batched question first (see run_pass)."""
        if oid in self._types:
            return self._types[oid]
        return self.repo.type_of(oid)

    def _has_commit(self, commit: str) -> bool:
        """The commit is in REPO with its whole history: checked by us, or reachable from a ref."""
        return (
            commit in self._batch.commits
            or self.is_imported(commit)
            or self.repo.trusted_commit(commit)
        )

    def _has_tag(self, tag: str) -> bool:
        return tag in self._batch.commits or self.is_imported(tag) or self.repo.trusted_tag(tag)

    def _satisfied(self, need: str) -> bool:
        """A waiting pack's need is met: a commit or tag complete in REPO, or (a delta base) any
        tree or blob present."""
        if need in self._batch.commits or need in self.imported:
            return True
        type_num = self._type(need)
        if type_num is None:
            return False
        if type_num == OBJ_COMMIT:
            return self.is_imported(need) or self.repo.trusted_commit(need, type_num)
        if type_num == OBJ_TAG:
            return self.is_imported(need) or self.repo.trusted_tag(need, type_num)
        return True

    def _view(self) -> RepoView:
        objects = self._batch.objects

        def read(oid: bytes):
            hit = objects.get(oid)
            return hit if hit is not None else self.repo.read(oid)

        return RepoView(read, self._has_commit, self._has_tag, self._trees)

    # -- one pass -------------------------------------------------------------------
    def run_pass(self, *, final: bool = False) -> PassResult:
        """Scan, check, import and move refs once.  final: no quiet period (for --once)."""
        result = PassResult()
        now = time.time()
        packs, manifests, links = self.scan()
        for path, reason in links:
            self.quarantine(path, reason, result)
        seen = {path for path, _ in packs + manifests}
        for path in list(self._verdicts):
            if path not in seen:
                del self._verdicts[path]

        # One batched question to REPO for every pack named in DIR, instead of one per pack.
        self._types = self.repo.types(sorted({commit_from_name(os.path.basename(p)) for p, _ in packs}))
        ready: dict[str, tuple[str, os.stat_result]] = {}
        waiting: dict[str, tuple[str, os.stat_result, frozenset[str]]] = {}
        self._live: dict[str, int] = {}  # commit -> its files not rejected
        refused_here = {path for path, st in packs + manifests if self.quarantined.known(_key(st))}
        manifests = [(path, st) for path, st in manifests if path not in refused_here]
        for path, st in packs:
            commit = commit_from_name(os.path.basename(path))
            if path in refused_here:
                continue  # refused earlier and left in place: not read again until it changes
            result.files_present.add(commit)
            verdict = self._classify(path, st, commit, now, final, result)
            if verdict is None:
                continue
            self._live[commit] = self._live.get(commit, 0) + 1
            if verdict.kind == "ready":
                ready.setdefault(commit, (path, st))
            elif verdict.kind == "waiting":
                waiting.setdefault(commit, (path, st, verdict.needs))
            elif verdict.kind == "changing":
                result.changing += 1
            elif verdict.kind == "incomplete":
                result.incomplete.append(self._rel(path))

        self._import(ready, waiting, result)
        live = [c for c, n in self._live.items() if n > 0]
        result.total = len(live)
        result.imported = sum(1 for c in live if c in self.imported)
        for commit, (_, _, needs) in waiting.items():
            result.waiting[commit] = needs
        self._types = {}  # objects were written: the answers are stale
        self._update_refs(manifests, now, final, result)
        result.causes = self._causes(result)
        return result

    def _causes(self, result: PassResult) -> list[tuple[str, str, int]]:
        """Each absent pack that packs or refs wait for, why it is absent, how many packs wait."""
        roots = _root_causes(result.waiting)
        for target in result.refs_waiting.values():
            if target not in result.waiting:
                roots.setdefault(target, set())
        out = []
        just_now = {commit_from_name(os.path.basename(rel)) for rel, _ in result.quarantined}
        for oid, waiters in roots.items():
            record = self.quarantined.by_object.get(oid)
            if oid in result.files_present and oid not in just_now:
                why = "is not complete yet (still downloading?)"
            elif record is not None:
                where = (f"moved to {self.quarantine_dir}/{record.where}" if record.key is None
                         else f"left at {record.path}")
                why = f"was quarantined: {record.reason} ({where})"
            else:
                why = "has no file in DIR yet"
            out.append((oid, why, len(waiters)))
        out.sort(key=lambda c: (-c[2], c[0]))
        return out

    def _classify(self, path, st, commit, now, final, result) -> _Verdict | None:
        key = _key(st)
        old = self._verdicts.get(path)
        if self.is_imported(commit):
            verdict = _Verdict(key, "done", commit)
            self._verdicts[path] = verdict
            return verdict
        if old is not None and old.key == key:
            if old.kind == "rejected":
                return None
            if old.kind == "waiting" and not all(self._satisfied(n) for n in old.needs):
                return old
            if old.kind == "incomplete":
                return self._maybe_give_up(path, old, now, result)
        if not final and now - st.st_mtime < self.quiet:
            return _Verdict(key, "changing", commit)
        if st.st_size > self.max_pack_bytes:
            self._reject(path, key, f"{st.st_size} bytes, more than the bound of {self.max_pack_bytes}", result)
            return None
        data = self._read(path, st)
        if data is None:
            return _Verdict(key, "changing", commit)
        try:
            check_complete(data)
            needs = peek(data, commit, self.limits)
        except PackIncomplete as exc:
            verdict = _Verdict(key, "incomplete", commit, reason=str(exc), partial=exc.partial, mtime=st.st_mtime)
            self._verdicts[path] = verdict
            return self._maybe_give_up(path, verdict, now, result)
        except PackRejected as exc:
            self._reject(path, key, str(exc), result)
            return None
        if needs is not None:
            missing = frozenset(n for n in needs if not self._satisfied(n))
            if missing:
                verdict = _Verdict(key, "waiting", commit, needs=missing)
                self._verdicts[path] = verdict
                return verdict
        verdict = _Verdict(key, "ready", commit)
        self._verdicts[path] = verdict
        return verdict

    def _maybe_give_up(self, path, verdict: _Verdict, now: float, result: PassResult) -> _Verdict | None:
        """Quarantine an incomplete file only if it cannot be a download in progress."""
        if verdict.partial or now - verdict.mtime < self.settle or self._in_progress(path):
            return verdict
        self._reject(path, verdict.key, f"{verdict.reason}, unchanged for {self.settle:g}s", result)
        return None

    def _reject(self, path: str, key: tuple, reason: str, result: PassResult) -> None:
        self._verdicts[path] = _Verdict(key, "rejected", reason=reason)
        self.quarantine(path, reason, result)

    def _import(self, ready, waiting, result: PassResult) -> None:
        """Verify and write ready packs, parents first; packs they unblock follow in the same pass."""
        by_need: dict[str, list[str]] = {}
        for commit, (_, _, needs) in waiting.items():
            for n in needs:
                by_need.setdefault(n, []).append(commit)
        queue = sorted(ready)
        retry: list[str] = []  # packs whose named object sits in deltas with absent bases
        requeued: set[str] = set()
        added = 0  # packs verified since `retry` was last tried
        while queue or (retry and added):
            if not queue:  # something arrived meanwhile: the missing bases may be here now
                queue, retry, added = retry, [], 0
            commit = queue.pop(0)
            if commit in self._batch.commits or self.is_imported(commit):
                continue
            path, st = ready[commit]
            data = self._read(path, st)
            if data is None:
                result.changing += 1
                continue
            try:
                outcome = verify_pack(data, commit, self._view(), self.limits, self.policy)
            except PackRejected as exc:
                self._reject(path, _key(st), str(exc), result)
                self._live[commit] -= 1
                waiting.pop(commit, None)
                continue
            if isinstance(outcome, Waiting):
                needs = frozenset(n for n in outcome.needs if not self._satisfied(n))
                if not needs and commit not in requeued:  # it arrived while this pack was read
                    requeued.add(commit)
                    queue.append(commit)
                    continue
                if outcome.unresolved:
                    retry.append(commit)
                waiting[commit] = (path, st, needs)
                self._verdicts[path] = _Verdict(_key(st), "waiting", commit, needs=needs)
                for n in needs:
                    by_need.setdefault(n, []).append(commit)
                continue
            del data
            # Written even when its objects seem present already (a killed pass, or objects
            # that were lying in REPO): only what we write ourselves is known to be whole.
            if outcome.has_ofs_delta and self._batch.packs:
                self._flush(result)
            self._batch.add(outcome)
            added += 1
            waiting.pop(commit, None)
            if self._batch.full or outcome.has_ofs_delta:
                self._flush(result)
            for child in by_need.pop(commit, ()):
                if child in waiting:
                    cpath, cst, cneeds = waiting[child]
                    if all(self._satisfied(n) for n in cneeds):
                        del waiting[child]
                        ready[child] = (cpath, cst)
                        queue.append(child)
        self._flush(result)

    def _flush(self, result: PassResult) -> None:
        batch = self._batch
        if batch.packs:
            name = self.repo.write_objects(batch.packs)
            log.info("wrote pack-%s with %d received packs", name, len(batch.packs))
        for vp in batch.packs:
            self.cache.put(FORMAT_VERSION, vp.object_id, vp.data, received=True)
            faults.reached("after-cache")
            self.imported.add(vp.object_id)
            result.new += 1
        self._batch = _Batch()
        if batch.packs and self.repo.pack_count() > CONSOLIDATE_AT:
            self.repo.consolidate()

    # -- refs -----------------------------------------------------------------------
    def _read_manifest(self, path, st, now, final, result: PassResult) -> RefManifest | None:
        key = _key(st)
        old = self._verdicts.get(path)
        if old is not None and old.key == key:
            if old.kind == "done":
                return old.manifest
            if old.kind == "rejected":
                return None
            if old.kind == "incomplete":
                self._maybe_give_up(path, old, now, result)
                return None
        if not final and now - st.st_mtime < self.quiet:
            return None
        data = self._read(path, st)
        if data is None:
            return None
        try:
            manifest = RefManifest.from_bytes(data)
        except ManifestError as exc:
            if manifest_checksum_ok(data):
                self._reject(path, key, f"bad ref manifest: {exc}", result)
            else:
                verdict = _Verdict(key, "incomplete", reason=str(exc), partial=looks_partial(data), mtime=st.st_mtime)
                self._verdicts[path] = verdict
                result.incomplete.append(self._rel(path))
                self._maybe_give_up(path, verdict, now, result)
            return None
        self._verdicts[path] = _Verdict(key, "done", manifest=manifest)
        return manifest

    def _destination(self, name: str) -> str:
        """Where a published ref lands: itself in a bare repository; in a repository someone
        works in, branches go under refs/remotes/<remote>/ (as `git fetch` puts them)."""
        if self.repo.is_bare or name.startswith("refs/tags/"):
            return name
        return f"refs/remotes/{self.remote}/{name[len('refs/heads/'):]}"

    def _update_refs(self, manifests, now, final, result: PassResult) -> None:
        wanted: dict[str, str] = {}
        head = None
        for path, st in manifests:
            manifest = self._read_manifest(path, st, now, final, result)
            if manifest is None:
                continue
            wanted.update(manifest.refs)
            head = manifest.head or head
        self._finish_checkout(result)
        if not wanted and head is None:
            return
        state = self.repo.ref_state()
        bare = self.repo.is_bare
        checked_out = self.repo.checked_out_branches()
        if bare and head is not None and not state.head_born and state.head_target != head:
            # like a clone: HEAD follows the manifest while it is unborn; set before any ref
            self.repo.set_head(head)
            self.report(f"HEAD -> {head}")
        updates: list[tuple[str, str, str | None]] = []
        # HEAD's branch first, so HEAD is born as soon as any ref is visible when it can be
        for name, target in sorted(wanted.items(), key=lambda kv: (kv[0] != head, kv[0])):
            if not self._has_commit(target) and not self._has_tag(target):
                result.refs_waiting[name] = target
                continue
            dest = self._destination(name)
            current = state.refs.get(dest)
            if current == target:
                continue
            why = self._refusal(dest, target, current, checked_out)
            if why:
                result.refs_refused[dest] = why
                continue
            updates.append((dest, target, current))
        faults.reached("before-ref")
        outcome = self.repo.update_refs(updates)
        if any(why is None for why in outcome.values()):
            faults.reached("after-refs")
        shown = 0
        for dest, target, current in updates:
            why = outcome[dest]
            if why is not None:
                result.refs_refused[dest] = f"git refused it: {why}"
                continue
            result.refs_set.append((dest, target))
            if shown < REPORT_REFS:
                self.report(f"{'updated' if current else 'created'} {dest} -> {target}")
                shown += 1
        if len(result.refs_set) > shown:
            self.report(f"... and {len(result.refs_set) - shown} more refs set")
        if not bare and head is not None:
            self._follow_head_in_work_tree(head, wanted.get(head), state, result)

    def _refusal(self, dest: str, target: str, current: str | None, checked_out: dict[str, str]) -> str | None:
        """Why dest must not move from current to target (None: it may), as git fetch decides."""
        if dest in checked_out:
            return f"checked out in {checked_out[dest]} (git fetch never moves such a branch)"
        if dest.startswith("refs/heads/") and self._type(target) != OBJ_COMMIT:
            return f"{target[:12]} is not a commit, and a branch names a commit"
        if current is None or self.force:
            return None
        if dest.startswith("refs/tags/"):
            peeled = self.repo.peel(target)
            if peeled is not None and peeled == current:
                return (f"the tag names commit {current[:12]}, received without its tag object by an "
                        f"older gitp2p; the manifest names the annotated tag {target[:12]} "
                        "(use --force to replace it)")
            return (f"the tag exists, naming {current[:12]}; the manifest says {target[:12]} "
                    "(a tag is never moved, as git fetch never clobbers one; use --force to replace it)")
        if not self.repo.is_ancestor(current, target):
            return f"{current[:12]} -> {target[:12]} is not a fast-forward (use --force to allow)"
        return None

    def _follow_head_in_work_tree(self, head: str, target: str | None, state, result: PassResult) -> None:
        """A non-bare REPO: point refs/remotes/<remote>/HEAD at the published HEAD's branch and,
        in a repository nobody has checked out yet, do what git clone does last: check out
        HEAD's branch.  A branch someone works on is never moved."""
        remote_head = f"refs/remotes/{self.remote}/HEAD"
        tracking = self._destination(head)
        if tracking in {d for d, _ in result.refs_set} | set(state.refs):
            if self.repo.symbolic_target(remote_head) != tracking:
                self.repo.set_symbolic_ref(remote_head, tracking)
        if target is None or not self._has_commit(target) or not self.repo.never_checked_out():
            if result.refs_set:
                short = head[len("refs/heads/"):]
                self.report(
                    f"received branches into refs/remotes/{self.remote}/ (your branches are not touched);"
                    f" merge with: git merge {self.remote}/{short}"
                )
            return
        # Recorded first: a kill anywhere below leaves the marker, and the next pass finishes.
        self.repo.write_state("checkout", f"{head} {target}\n")
        self._finish_checkout(result)

    def _finish_checkout(self, result: PassResult) -> None:
        """Complete a first checkout that was started (see _follow_head_in_work_tree)."""
        pending = self.repo.read_state("checkout")
        if not pending:
            return
        head, _, target = pending.strip().partition(" ")
        self.repo.set_head(head)
        faults.reached("during-checkout")
        self.repo.check_out(target)
        if self.repo.ref_state().refs.get(head) != target:
            why = self.repo.update_refs([(head, target, None)]).get(head)
            if why is not None:
                result.refs_refused[head] = f"git refused it: {why}"
                return
        self.repo.write_state("checkout", None)
        result.refs_set.append((head, target))
        self.report(f"checked out {head[len('refs/heads/'):]} (a new clone; later updates go to refs/remotes/{self.remote}/)")


def _check_remote_name(name: str) -> str:
    from ..pack.manifest import ManifestError, check_ref_name

    try:
        check_ref_name(f"refs/remotes/{name}/x")
    except ManifestError:
        raise UserError(f"{name!r}: not a usable remote name") from None
    if "/" in name:
        raise UserError(f"{name!r}: a remote name has no '/'")
    return name


def _key(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


# -- the trio layer -----------------------------------------------------------------


def _open_inotify():
    """An inotify_simple.INotify, or None where inotify is unavailable (then we poll)."""
    try:
        from inotify_simple import INotify
    except ImportError:
        log.info("inotify_simple is not installed; polling instead")
        return None
    try:
        return INotify(nonblocking=True)
    except OSError as exc:
        log.info("inotify is unavailable (%s); polling instead", exc)
        return None


_WATCH_MASK = (
    0x00000002  # IN_MODIFY
    | 0x00000004  # IN_ATTRIB
    | 0x00000008  # IN_CLOSE_WRITE
    | 0x00000040  # IN_MOVED_FROM
    | 0x00000080  # IN_MOVED_TO
    | 0x00000100  # IN_CREATE
    | 0x00000200  # IN_DELETE
    | 0x00000400  # IN_DELETE_SELF
    | 0x00004000  # IN_Q_OVERFLOW (always reported)
    | 0x01000000  # IN_DONT_FOLLOW
)


class Watcher:
    """Runs the importer's passes whenever DIR changes (inotify, recursively), or every `poll` seconds."""

    def __init__(self, importer: Importer, *, poll: float = 1.0, on_pass: Callable[[PassResult], None] | None = None):
        self.importer = importer
        self.poll = poll
        self.on_pass = on_pass or (lambda result: None)
        self._inotify = None
        self._watched: set[str] = set()

    def _watch_dirs(self) -> None:
        if self._inotify is None:
            return
        for d in self.importer.dirs:
            if d not in self._watched:
                try:
                    self._inotify.add_watch(d, _WATCH_MASK)
                    self._watched.add(d)
                except OSError as exc:
                    log.info("cannot watch %s (%s); it is polled", d, exc)

    async def _wait_for_change(self, timeout: float) -> None:
        if self._inotify is None:
            await trio.sleep(timeout)
            return
        with trio.move_on_after(timeout):
            await trio.lowlevel.wait_readable(self._inotify.fileno())
            await trio.sleep(0.1)  # let a burst of events coalesce
        events = list(self._inotify.read(timeout=0))
        if any(e.mask & 0x400 for e in events):  # a watched directory went away
            self._watched.clear()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self._inotify = _open_inotify()
        try:
            first = True
            while True:
                result = await trio.to_thread.run_sync(self.importer.run_pass)
                self._watch_dirs()
                self.on_pass(result)
                if first:
                    task_status.started()
                    first = False
                busy = result.changing or result.incomplete
                if self._inotify is None:
                    timeout = self.poll
                else:
                    # inotify wakes us on change; a short timeout still re-checks files in
                    # their quiet or settle period, a long one is a safety net.
                    timeout = max(self.poll, self.importer.quiet) if busy else 30.0
                await self._wait_for_change(timeout)
        finally:
            if self._inotify is not None:
                self._inotify.close()
