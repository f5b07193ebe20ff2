"""What one pass of the importer saw and did, and how it is told: progress, root causes, details."""

from __future__ import annotations

from dataclasses import dataclass, field

import os

from ..pack.rollup import rollup_from_name
from ..pack.verify import commit_from_name

__all__ = ["PassResult", "root_causes", "causes"]


@dataclass
class PassResult:
    """What one pass saw and did."""

    total: int = 0  # pack files in DIR that may still be imported
    imported: int = 0  # of those, already in REPO
    new: int = 0  # imported by this pass
    waiting: dict[str, frozenset[str]] = field(default_factory=dict)  # commit -> needs
    incomplete: list[str] = field(default_factory=list)  # relative paths
    changing: int = 0
    quiet_until: float = 0.0  # time.time() at which the files left in their quiet period leave it
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


def root_causes(waiting: dict[str, frozenset[str]]) -> dict[str, set[str]]:
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


def causes(result: PassResult, quarantined: dict, quarantine_dir: str) -> list[tuple[str, str, int]]:
    """Each absent pack that packs or refs wait for, why it is absent, how many packs wait.

    quarantined: object id -> QuarantineRecord (receive/quarantine.py)."""
    roots = root_causes(result.waiting)
    for target in result.refs_waiting.values():
        if target not in result.waiting:
            roots.setdefault(target, set())
    out = []
    just_now = {commit_from_name(os.path.basename(rel)) or rollup_from_name(os.path.basename(rel)) for rel, _ in result.quarantined}
    for oid, waiters in roots.items():
        record = quarantined.get(oid)
        if oid in result.files_present and oid not in just_now:
            why = "is not complete yet (still downloading?)"
        elif record is not None:
            where = (f"moved to {quarantine_dir}/{record.where}" if record.key is None
                     else f"left at {record.path}")
            why = f"was quarantined: {record.reason} ({where})"
        else:
            why = "has no file in DIR yet"
        out.append((oid, why, len(waiters)))
    out.sort(key=lambda c: (-c[2], c[0]))
    return out
