"""Moving refs as git fetch would: where they land, when they may move, one transaction.

See docs/watcher.md, "Where refs land": a bare REPO mirrors branches and tags; one with
a work tree receives branches under refs/remotes/<remote>/ and, never checked out yet,
gets HEAD's branch checked out once (resumably).
"""

from __future__ import annotations

from typing import Callable

from .. import faults
from ..errors import ReceiveError
from ..git.receiving import ReceivingRepo
from ..pack.packfile import OBJ_COMMIT
from .presence import Presence
from .result import PassResult

__all__ = ["RefMover", "DEFAULT_REMOTE", "REPORT_REFS", "check_remote_name"]

#: Ref changes reported one by one in a pass; the rest are counted.
REPORT_REFS = 20
#: The name under refs/remotes/ that a non-bare repository receives branches into.
DEFAULT_REMOTE = "gitp2p"


class RefMover:
    def __init__(self, repo: ReceivingRepo, presence: Presence, *, force: bool, remote: str,
                 report: Callable[[str], None]):
        self.repo = repo
        self.presence = presence
        self.force = force
        self.remote = check_remote_name(remote)
        self.report = report

    def _destination(self, name: str) -> str:
        """Where a published ref lands: itself in a bare repository; in a repository someone
        works in, branches go under refs/remotes/<remote>/ (as `git fetch` puts them)."""
        if self.repo.is_bare or name.startswith("refs/tags/"):
            return name
        return f"refs/remotes/{self.remote}/{name[len('refs/heads/'):]}"

    def refuse(self, name: str, why: str, result: PassResult) -> None:
        """A published ref that must not move (its manifest's signature failed, signed.py)."""
        result.refs_refused[self._destination(name)] = why

    def update(self, wanted: dict[str, str], head: str | None, result: PassResult) -> None:
        """Move the refs of the manifests (wanted: name -> object, head: where HEAD points)."""
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
            if not self.presence.has_commit(target) and not self.presence.has_tag(target):
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
        if dest.startswith("refs/heads/") and self.presence.type_of(target) != OBJ_COMMIT:
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
        if target is None or not self.presence.has_commit(target) or not self.repo.never_checked_out():
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


def check_remote_name(name: str) -> str:
    from ..pack.manifest import ManifestError, check_ref_name

    try:
        check_ref_name(f"refs/remotes/{name}/x")
    except ManifestError:
        raise ReceiveError(f"{name!r}: not a usable remote name") from None
    if "/" in name:
        raise ReceiveError(f"{name!r}: a remote name has no '/'")
    return name
