"""The importer: one synchronous, idempotent pass over DIR into a repository.

A pass: scan DIR (scan.py), classify each new or changed file, verify and write every
pack whose needs are complete in REPO, parents first (pack/verify.py, git/receiving.py),
record the received bytes in the pack cache, then move the manifests' refs (refs.py).
All state that matters lives in REPO (objects, refs, the pack cache), so a pass after a
kill -9 finishes whatever the killed one started.  docs/watcher.md gives the rules;
watcher.py runs passes when DIR changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from .. import faults
from ..errors import ReceiveError
from ..git.receiving import ReceivingRepo
from ..pack.bundle import WholeCompressor, pack_plan, read_planned
from ..pack.commitpack import FORMAT_VERSION
from ..pack.manifest import ManifestError, RefManifest
from ..pack.manifest import checksum_ok as manifest_checksum_ok
from ..pack.rollup import TAGS_MAGIC, RollupError, header_size, is_tag_group_name, parse_rollup, rollup_from_name, tag_group_id
from ..pack.verify import (
    WATCH_LIMITS,
    PackIncomplete,
    PackRejected,
    VerifiedPack,
    Waiting,
    check_complete,
    commit_from_name,
    looks_partial,
    peek,
    verify_pack,
)
from ..store.cache import PackCache
from .presence import Presence
from .quarantine import Quarantine
from .refs import DEFAULT_REMOTE, RefMover
from .result import PassResult, causes
from .scan import DirScanner, file_key
from .signed import Found, ManifestGate, is_signature

__all__ = ["Importer", "DEFAULT_SETTLE", "DEFAULT_MAX_PACK_BYTES", "DEFAULT_REMOTE"]

log = logging.getLogger(__name__)

#: An incomplete file unchanged this long (and not looking pre-allocated) is given up on.
DEFAULT_SETTLE = 10.0
#: A file modified more recently than this is left for the next pass (watch mode only).
#: Short: the last files of a download wait this long after the last piece, and a file
#: read too early costs only a read (its trailer does not match yet: looked at again).
QUIET = 0.1
#: Bounds of one written pack (a batch of commit packs): packs, received bytes, and the
#: inflated bytes of the objects it must write whole (a delta whose base lies outside it,
#: held compressed once compressed).  Large, because every delta whose base went
#: out in an earlier batch is written whole (docs/watcher.md).
BATCH_PACKS = 5000
BATCH_BYTES = 32 << 20
BATCH_INFLATED = 32 << 20
#: Merge the repository's packs when there are more than this many.
CONSOLIDATE_AT = 64
DEFAULT_MAX_PACK_BYTES = 1 << 30
#: A roll-up's member is known by this path: `<roll-up's path>#<member commit>`.
MEMBER_MARK = "#"


@dataclass(slots=True)
class _Verdict:
    key: tuple
    kind: str  # "done" | "waiting" | "incomplete" | "ready" | "changing" | "rejected" | "expanded"
    commit: str | None = None
    needs: frozenset[str] = frozenset()
    reason: str = ""
    partial: bool = True
    mtime: float = 0.0
    manifest: RefManifest | None = None
    header: bytes = b""  # a roll-up's header (its members' ids and sizes), read again when it opens
    digest: str = ""  # a manifest's sha256 (hex), for its signature


class _Batch:
    """Verified packs not yet written: their received bytes and the plan of the pack that
    will hold them (bundle.pack_plan), which keeps only the objects to be written whole.
    Their other objects are not kept inflated here: Presence keeps them a while for
    reading, and reads one it no longer keeps from the plan (bundle.read_planned)."""

    def __init__(self) -> None:
        self.packs: list[tuple[str, bytes]] = []  # (the commit or tag a pack is named for, its bytes)
        self.commits: set[str] = set()  # the commits and tags the batch's packs are named for
        self.ids: dict[bytes, int] = {}  # every object the written pack will hold -> its delta depth
        self.plan: dict[bytes, memoryview | tuple] = {}  # bundle's plan (ids are unique), by id
        self.wholes = WholeCompressor()  # compresses the objects written whole meanwhile
        self.bytes = 0
        self.inflated = 0

    def add(self, vp: VerifiedPack) -> None:
        plan = pack_plan(vp, self.ids)
        before = len(self.plan)
        self.plan.update(plan)
        if len(self.plan) != before + len(plan):  # the order of the wholes would be off
            raise AssertionError(f"pack {vp.object_id}: the plan of a batch names an object twice")
        self.wholes.add(plan)
        self.wholes.settle(self.plan)  # those compressed meanwhile are held compressed
        self.packs.append((vp.object_id, vp.data))
        self.commits.add(vp.object_id)
        self.bytes += len(vp.data)
        self.inflated += sum(len(what[1]) for _, what in plan if isinstance(what, tuple))

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
        on_written: Callable[[list[str]], None] | None = None,
    ):
        """on_written(ids): the packs named for these commits or tags are imported (written
        durably), for progress; a roll-up's members come one by one."""
        if not os.path.isdir(directory):
            raise ReceiveError(f"{directory}: not a directory")
        self.dir = os.path.realpath(directory)
        self.repo = ReceivingRepo(repo_path, bare=bare)
        self.git_dir = os.path.realpath(self.repo.git_dir)
        self.quarantine_dir = os.path.join(self.git_dir, "gitp2p", "quarantine")
        self.quarantined = Quarantine(self.quarantine_dir)
        self._lock_fd = self._take_lock()
        self.repo.recover()
        self.cache = PackCache(self.git_dir)
        self.policy = self.repo.fsck_policy()
        self.report = report or (lambda line: log.info("%s", line))
        self._batch = _Batch()
        self.presence = Presence(self.repo, self.cache, lambda: self._batch.commits, lambda oid: oid in self._batch.ids,
                                 lambda oid, known: read_planned(self._batch.plan, oid, known))
        self.refs = RefMover(self.repo, self.presence, force=force, remote=remote, report=self.report)
        self.scanner = DirScanner(self.dir, {self.git_dir, os.path.realpath(self.repo.path)}, self.report)
        self.settle = settle
        self.gate = ManifestGate(self.git_dir, read=self.scanner.read, rel=self.scanner.rel, quarantine=self.quarantine,
                                 refuse=self.refs.refuse, report=self.report, settle=settle)
        self.quiet = quiet
        self.max_pack_bytes = max_pack_bytes
        self.limits = limits
        self._verdicts: dict[str, _Verdict] = {}
        self._members: dict[str, tuple[str, int, int]] = {}  # member path -> (roll-up path, start, end)
        self._groups: dict[str, tuple[str, ...]] = {}  # a tag group's id -> its tags, once read
        self.on_written = on_written

    @property
    def dirs(self) -> list[str]:
        """Directories seen by the last scan (the watcher watches them)."""
        return self.scanner.dirs

    @property
    def imported(self) -> set[str]:
        return self.presence.imported

    def is_imported(self, oid: str) -> bool:
        """True for an imported pack's commit or tag, and for a tag group read in this
        importer's life whose tags all are."""
        if self.presence.is_imported(oid):
            return True
        group = self._groups.get(oid)
        return group is not None and all(self.presence.is_imported(m) for m in group)

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
            raise ReceiveError(f"{self.repo.path}: another `gitp2p watch` is importing into this repository") from None
        return fd

    # -- quarantine -----------------------------------------------------------------
    def quarantine(self, path: str, reason: str, result: PassResult) -> None:
        """Refuse the file for good (watch_quarantine: moved, or left in place, never copied).

        A roll-up's member is refused with its whole roll-up."""
        if path in self._members:
            member = path
            path = self._members[member][0]
            reason = f"member {_named(member)}: {reason}"
            self._verdicts.pop(member, None)
        rel = self.scanner.rel(path)
        try:
            key = file_key(os.lstat(path))
        except OSError:
            return  # it went away meanwhile
        name = os.path.basename(path)
        record = self.quarantined.put(path, rel, _named(name), reason, key)
        where = "" if record.key is None else " (left where it is: DIR is on another file system)"
        self.report(f"quarantined {rel}: {reason}{where}")
        result.quarantined.append((rel, reason))
        self._verdicts.pop(path, None)

    def _read(self, path: str, st: os.stat_result) -> bytes | None:
        """A pack file's bytes, or a roll-up member's (its range of the roll-up)."""
        where = self._members.get(path)
        if where is None:
            return self.scanner.read(path, st)
        return self.scanner.read(where[0], st, where[1], where[2])

    # -- one pass -------------------------------------------------------------------
    def run_pass(self, *, final: bool = False) -> PassResult:
        """Scan, check, import and move refs once.  final: no quiet period (for --once)."""
        result = PassResult()
        now = time.time()
        packs, manifests, links = self.scanner.scan()
        for path, reason in links:
            self.quarantine(path, reason, result)
        refused_here = {path for path, st in packs + manifests if self.quarantined.known(file_key(st))}
        rollups = [(p, st) for p, st in packs if rollup_from_name(os.path.basename(p)) is not None]
        packs = [(p, st) for p, st in packs if commit_from_name(os.path.basename(p)) is not None]
        boundaries = sorted({rollup_from_name(os.path.basename(p)) for p, _ in rollups})
        self.presence.ask_first(boundaries)
        # A roll-up's members are taken one roll-up at a time, once what they need from
        # outside it is in (for a chain: the roll-up below), so what the importer holds
        # per member is one roll-up's, not a whole history's.
        shut: list[tuple[str, os.stat_result, _Verdict]] = []  # complete roll-ups not opened yet
        for path, st in rollups:
            if path not in refused_here:
                verdict = self._expand(path, st, now, final, result)
                if verdict is not None:
                    shut.append((path, st, verdict))
        seen = {path for path, _ in packs + manifests + rollups}
        self._members = {m: w for m, w in self._members.items() if w[0] in seen}
        for path in list(self._verdicts):
            if path not in seen and path not in self._members:
                del self._verdicts[path]
        del seen

        # One batched question to REPO for every pack named in DIR (a roll-up's members: when it opens).
        self.presence.ask_first(sorted({_named(p) for p, _ in packs}.union(boundaries, *(v.needs for _, _, v in shut))))
        ready: dict[str, tuple[str, os.stat_result]] = {}
        waiting: dict[str, tuple[str, os.stat_result, frozenset[str]]] = {}
        self._live: dict[str, int] = {}  # commit -> its files not rejected
        manifests = [(path, st) for path, st in manifests if path not in refused_here]
        signatures = [(path, st) for path, st in manifests if is_signature(path)]
        manifests = [(path, st) for path, st in manifests if not is_signature(path)]
        met = {id(r) for r in shut if all(self.presence.satisfied(n) for n in r[2].needs)}

        def open_more() -> list[str]:
            """The members of the roll-ups whose needs are met (in REPO, or since by what this
            pass verified: REPO answered for the rest above), made ready in their order,
            parents first; verify_pack checks each (and says if one has to wait after all)."""
            nonlocal shut
            arrived = self._batch.commits
            opening = [r for r in shut if id(r) in met or all(n in arrived or n in self.imported for n in r[2].needs)]
            met.clear()
            opened = {id(r) for r in opening}
            shut = [r for r in shut if id(r) not in opened]
            fresh = []
            for path, st, verdict in opening:
                for member, commit in self._open(path, st, verdict):
                    result.files_present.add(commit)
                    self._live[commit] = self._live.get(commit, 0) + 1
                    if self.is_imported(commit):
                        self._members.pop(member, None)
                    elif commit not in ready and commit not in waiting:
                        ready[commit] = (member, st)
                        fresh.append(commit)
            return fresh

        self._classify_all(packs, refused_here, ready, waiting, now, final, result)
        del packs
        self._import(ready, waiting, result, open_more)
        self._shut(shut, waiting, result)
        live = [c for c, n in self._live.items() if n > 0]
        result.total += len(live)
        result.imported += sum(1 for c in live if c in self.imported)
        for commit, (_, _, needs) in waiting.items():
            result.waiting[commit] = needs
        self.presence.forget()  # objects were written: the answers are stale
        wanted: dict[str, str] = {}
        head = None
        found = []
        for path, st in manifests:
            manifest = self._read_manifest(path, st, now, final, result)
            if manifest is not None:
                found.append(Found(path, manifest, self._verdicts[path].digest))
        for manifest in self.gate.admit(found, signatures, result, now):  # signed.py: which may move refs
            wanted.update(manifest.refs)
            head = manifest.head or head
        self.refs.update(wanted, head, result)
        result.causes = causes(result, self.quarantined.by_object, self.quarantine_dir)
        return result

    def _classify_all(self, packs, refused_here, ready, waiting, now, final, result: PassResult) -> None:
        """Classify pack files into ready and waiting."""
        for path, st in packs:
            commit = _named(path)
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
                result.incomplete.append(self.scanner.rel(path))

    def _shut(self, shut, waiting, result: PassResult) -> None:
        """Count the roll-ups left closed (what they need never came) in the pass's result:
        each waits, as its boundary, for what its members need from outside it; so does
        any member that a pack waits for."""
        asked = {n for _, _, needs in waiting.values() for n in needs}
        for path, st, verdict in shut:
            needs = frozenset(n for n in verdict.needs if n not in self.imported)
            result.files_present.add(verdict.commit)
            result.waiting[verdict.commit] = needs
            for oid, _, _ in self._parse_header(path, st, verdict):
                if oid not in self._live:
                    result.total += 1
                    result.imported += oid in self.imported
                if oid in asked and oid != verdict.commit:
                    result.files_present.add(oid)
                    result.waiting[oid] = needs

    def _classify(self, path, st, commit, now, final, result) -> _Verdict | None:
        key = file_key(st)
        old = self._verdicts.get(path)
        if self.is_imported(commit):  # nothing to remember: is_imported answers every time
            self._verdicts.pop(path, None)
            self._members.pop(path, None)
            return _Verdict(key, "done", commit)
        if old is not None and old.key == key:
            if old.kind == "rejected":
                return None
            if old.kind == "waiting" and not all(self.presence.satisfied(n) for n in old.needs):
                return old
            if old.kind == "incomplete":
                return self._maybe_give_up(path, old, now, result)
        if not final and now - st.st_mtime < self.quiet:
            result.quiet_until = max(result.quiet_until, st.st_mtime + self.quiet)
            return _Verdict(key, "changing", commit)
        size = st.st_size if path not in self._members else self._members[path][2] - self._members[path][1]
        if size > self.max_pack_bytes:
            self._reject(path, key, f"{size} bytes, more than the bound of {self.max_pack_bytes}", result)
            return None
        if old is not None and old.key == key and old.kind == "waiting":
            # Read and peeked in this very state by an earlier pass: what it needs is known,
            # and verify_pack reads it again anyway and decides.
            needs = old.needs
        else:
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
            del data
        if needs is not None:
            missing = frozenset(n for n in needs if not self.presence.satisfied(n))
            if missing:
                verdict = _Verdict(key, "waiting", commit, needs=missing)
                self._verdicts[path] = verdict
                return verdict
        verdict = _Verdict(key, "ready", commit)
        self._verdicts[path] = verdict
        return verdict

    def _expand(self, path, st, now, final, result: PassResult) -> _Verdict | None:
        """The "expanded" verdict of a complete roll-up (its members then checked as commit
        packs when it opens: `needs`, its first member's, are met) or tag group (each a tag
        pack; opens at once); None while it is incomplete, refused, or imported already
        (its boundary commit is; a tag group's tags are)."""
        key = file_key(st)
        boundary = rollup_from_name(os.path.basename(path))
        tags = is_tag_group_name(os.path.basename(path))  # a tag group (named for its tags)
        old = self._verdicts.get(path)
        if old is not None and old.key == key:
            if old.kind == "expanded" and not self.is_imported(boundary):
                return old
            if old.kind == "expanded":
                self._verdicts[path] = _Verdict(key, "done", boundary)  # its header is not needed any more
                return None
            if old.kind in ("rejected", "done"):
                return None
            if old.kind == "incomplete":
                if self._maybe_give_up(path, old, now, result) is not None:
                    result.incomplete.append(self.scanner.rel(path))
                return None
        if self.is_imported(boundary):
            self._verdicts[path] = _Verdict(key, "done", boundary)
            return None
        if not final and now - st.st_mtime < self.quiet:
            result.changing += 1
            result.quiet_until = max(result.quiet_until, st.st_mtime + self.quiet)
            return None
        needs: set[str] = set()  # what its members need from outside it
        try:
            head = self.scanner.read(path, st, 0, header_size(0))
            if head is None:
                result.changing += 1
                return None
            count = int.from_bytes(head[-4:], "big") if len(head) == header_size(0) else 0
            head = self.scanner.read(path, st, 0, header_size(count)) if count else head
            if head is None:
                result.changing += 1
                return None
            members = parse_rollup(head, self.max_pack_bytes, file_size=st.st_size, magic=TAGS_MAGIC if tags else None)
            if tags and tag_group_id([m[0] for m in members]) != boundary:
                raise RollupError(f"the file is named {boundary}, not the id of the tags it holds")
            if not tags and boundary not in {m[0] for m in members}:
                raise RollupError(f"the file is named for {boundary}, which it does not hold")
            for oid, start, end in members:
                data = self.scanner.read(path, st, start, end)
                if data is None:
                    result.changing += 1
                    return None
                check_complete(data)
                if not tags:
                    try:
                        needs.update(peek(data, oid, self.limits) or ())  # None: verify_pack tells
                    except PackRejected:
                        pass  # verify_pack refuses it, with its roll-up, once it opens
        except (RollupError, PackIncomplete) as exc:
            if isinstance(exc, RollupError) and not exc.partial:
                self._reject(path, key, f"bad {'tag group' if tags else 'roll-up'}: {exc}", result)
                return None
            verdict = _Verdict(key, "incomplete", boundary, reason=str(exc), partial=exc.partial, mtime=st.st_mtime)
            self._verdicts[path] = verdict
            if self._maybe_give_up(path, verdict, now, result) is not None:
                result.incomplete.append(self.scanner.rel(path))
            return None
        needs.difference_update(oid for oid, _, _ in members)
        if tags:
            self._groups[boundary] = tuple(oid for oid, _, _ in members)
        verdict = self._verdicts[path] = _Verdict(key, "expanded", boundary, needs=frozenset(needs), header=bytes(head))
        return verdict

    def _parse_header(self, path, st, verdict: _Verdict) -> list[tuple[str, int, int]]:
        magic = TAGS_MAGIC if is_tag_group_name(os.path.basename(path)) else None
        return parse_rollup(verdict.header, self.max_pack_bytes, file_size=st.st_size, magic=magic)

    def _open(self, path, st, verdict: _Verdict) -> list[tuple[str, str]]:
        """A roll-up's members (path, commit), each known by its path (MEMBER_MARK) until
        imported; REPO asked about them in one batch."""
        members = self._parse_header(path, st, verdict)
        self.presence.ask_more([oid for oid, _, _ in members])
        out = []
        for oid, start, end in members:
            member = f"{path}{MEMBER_MARK}{oid}"
            self._members[member] = (path, start, end)
            out.append((member, oid))
        return out

    def _maybe_give_up(self, path, verdict: _Verdict, now: float, result: PassResult) -> _Verdict | None:
        """Quarantine an incomplete file only if it cannot be a download in progress."""
        if verdict.partial or now - verdict.mtime < self.settle or self.scanner.in_progress(path):
            return verdict
        self._reject(path, verdict.key, f"{verdict.reason}, unchanged for {self.settle:g}s", result)
        return None

    def _reject(self, path: str, key: tuple, reason: str, result: PassResult) -> None:
        self._verdicts[path] = _Verdict(key, "rejected", reason=reason)
        self.quarantine(path, reason, result)

    def _import(self, ready, waiting, result: PassResult, open_more=list) -> None:
        """Verify and write ready packs, parents first; packs they unblock follow in the same
        pass.  open_more(): when nothing else is left to do, more packs put in ready (roll-ups'
        members), in the order to verify them; none: the pass is over."""
        by_need: dict[str, list[str]] = {}
        for commit, (_, _, needs) in waiting.items():
            for n in needs:
                by_need.setdefault(n, []).append(commit)
        queue = deque(sorted(ready))  # 85,000 roll-up members on git.git: pop(0) of a list is O(n)
        retry: list[str] = []  # packs whose named object sits in deltas with absent bases
        requeued: set[str] = set()
        added = 0  # packs verified since `retry` was last tried
        while True:
            if not queue and not (retry and added):
                queue.extend(open_more())
                if not queue:
                    break
                continue
            if not queue:  # something arrived meanwhile: the missing bases may be here now
                queue, retry, added = deque(retry), [], 0
            commit = queue.popleft()
            if commit in self._batch.commits or self.is_imported(commit):
                continue
            path, st = ready[commit]
            data = self._read(path, st)
            if data is None:
                result.changing += 1
                continue
            try:
                view = self.presence.view(lambda: self._flush(result))
                outcome = verify_pack(data, commit, view, self.limits, self.policy)
            except PackRejected as exc:
                self._reject(path, file_key(st), str(exc), result)
                self._live[commit] -= 1
                waiting.pop(commit, None)
                continue
            if isinstance(outcome, Waiting):
                needs = frozenset(n for n in outcome.needs if not self.presence.satisfied(n))
                if not needs and commit not in requeued:  # it arrived while this pack was read
                    requeued.add(commit)
                    queue.append(commit)
                    continue
                if outcome.unresolved:
                    retry.append(commit)
                waiting[commit] = (path, st, needs)
                self._verdicts[path] = _Verdict(file_key(st), "waiting", commit, needs=needs)
                for n in needs:
                    by_need.setdefault(n, []).append(commit)
                continue
            del data
            # Written even when its objects seem present already (a killed pass, or objects
            # that were lying in REPO): only what we write ourselves is known to be whole.
            ofs = outcome.has_ofs_delta
            if ofs and self._batch.packs:
                self._flush(result)
            self._batch.add(outcome)
            self.presence.remember(outcome.objects, outcome.external)
            del outcome
            # Imported once the batch is written (before the next pass): nothing about the
            # file is needed any more, and a large history has one per roll-up member.
            self._verdicts.pop(path, None)
            self._members.pop(path, None)
            del ready[commit]
            added += 1
            waiting.pop(commit, None)
            if self._batch.full or ofs:
                self._flush(result)
            for child in by_need.pop(commit, ()):
                if child in waiting:
                    cpath, cst, cneeds = waiting[child]
                    if all(self.presence.satisfied(n) for n in cneeds):
                        del waiting[child]
                        ready[child] = (cpath, cst)
                        queue.append(child)
        self._flush(result)

    def _flush(self, result: PassResult) -> None:
        batch = self._batch
        if batch.packs:
            batch.wholes.settle(batch.plan, wait=True)
            name = self.repo.write_objects(batch.plan.items())
            log.info("wrote pack-%s with %d received packs", name, len(batch.packs))
        self.cache.put_received(FORMAT_VERSION, batch.packs)  # one transaction for the batch
        for object_id, _ in batch.packs:
            faults.reached("after-cache")
            self.presence.imported.add(object_id)
            result.new += 1
        if batch.packs and self.on_written is not None:
            self.on_written([object_id for object_id, _ in batch.packs])
        self._batch = _Batch()
        if batch.packs and self.repo.pack_count() > CONSOLIDATE_AT:
            self.presence.let_go()
            self.repo.consolidate()

    # -- manifests ------------------------------------------------------------------
    def _read_manifest(self, path, st, now, final, result: PassResult) -> RefManifest | None:
        key = file_key(st)
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
            result.quiet_until = max(result.quiet_until, st.st_mtime + self.quiet)
            return None
        data = self.scanner.read(path, st)
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
                result.incomplete.append(self.scanner.rel(path))
                self._maybe_give_up(path, verdict, now, result)
            return None
        self._verdicts[path] = _Verdict(key, "done", manifest=manifest, digest=hashlib.sha256(data).hexdigest())
        return manifest


def _named(path: str) -> str | None:
    """The commit (or tag) a pack file or roll-up member is named for; a roll-up's boundary."""
    name = os.path.basename(path)
    if MEMBER_MARK in name:
        return name.rsplit(MEMBER_MARK, 1)[1]
    return commit_from_name(name) or rollup_from_name(name)

