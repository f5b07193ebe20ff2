"""Fetcher._lock_tips: what the helper tells git for `option check-connectivity` (a clone).

Only tips the importer imported (checked, with their history) are vouched for; one that
is merely present in the repository is not, and then git walks as it always does.
"""

from __future__ import annotations

import os
import subprocess

from gitfs_p2p.git.receiving import ReceivingRepo
from gitfs_p2p.remote.fetch import Fetcher
from gitfs_p2p.testing.history import generate


class _Importer:
    """What _lock_tips asks of the importer: is_imported, and its repository."""

    def __init__(self, repo: ReceivingRepo, imported: set[str]):
        self.repo = repo
        self.imported = imported

    def is_imported(self, oid: str) -> bool:
        return oid in self.imported


def _git(repo, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def _tips(repo) -> list[str]:
    return sorted(set(_git(repo, "for-each-ref", "--format=%(objectname)").split()))


def _packs(repo) -> set[str]:
    return set(os.listdir(os.path.join(repo, ".git", "objects", "pack")))


def test_imported_tips_get_a_kept_pack_of_their_own(tmp_path):
    source = str(tmp_path / "source")
    generate(source, 12, seed=3)
    _git(source, "tag", "-a", "v1", "-m", "one", "HEAD~2")
    tips = _tips(source)
    repo = ReceivingRepo(source)
    try:
        keep = Fetcher._lock_tips(_Importer(repo, set(tips)), tips)
    finally:
        repo.close()
    assert keep is not None and keep.endswith(".keep") and os.path.exists(keep)
    assert os.path.dirname(keep) == os.path.realpath(os.path.join(source, ".git", "objects", "pack"))
    with open(keep[: -len(".keep")] + ".idx", "rb") as idx:
        shown = subprocess.run(["git", "show-index"], stdin=idx, capture_output=True, text=True, check=True).stdout
    assert sorted(line.split()[1] for line in shown.splitlines()) == tips
    _git(source, "verify-pack", keep[: -len(".keep")] + ".idx")
    _git(source, "fsck", "--strict", "--no-dangling")


def test_a_tip_not_imported_is_not_vouched_for(tmp_path):
    source = str(tmp_path / "source")
    generate(source, 6, seed=4)
    tips = _tips(source)
    before = _packs(source)
    repo = ReceivingRepo(source)
    try:
        # present in the repository, but never checked by the importer
        assert Fetcher._lock_tips(_Importer(repo, set(tips[1:])), tips) is None
        assert Fetcher._lock_tips(_Importer(repo, set(tips)), []) is None
    finally:
        repo.close()
    assert _packs(source) == before
