"""Importing roll-ups (pack/rollup.py): every member checked as a commit pack; a lying or
broken roll-up is refused whole and moves no ref; one still being written waits."""

from __future__ import annotations

import hashlib
import os

import pytest

from testutil import gitp2p
from wsupport import check_invariant, deliver, fsck_clean, git, refs_of, write_manifest

from gitfs_p2p.git.repo import GitRepo
from gitfs_p2p.pack.rollup import parse_rollup, plan_history, rollup_header
from gitfs_p2p.receive.importer import Importer
from gitfs_p2p.store.source import PackSource
from gitfs_p2p.store.torrents import rollup_chunks

SPAN = 8  # a short span so the 60-commit sender has several roll-ups


@pytest.fixture(scope="module")
def plan(sender):
    repo = GitRepo(sender.path)
    try:
        commits = PackSource(repo).commits()
        p = plan_history(commits, [sender.refs["refs/heads/main"].encode()], SPAN)
    finally:
        repo.close()
    assert len(p.rollups) >= 3
    return p


def rollup_bytes(sender, rollup) -> bytes:
    packs = [sender.packs[c.decode()] for c in rollup.members]
    return rollup_header([(c, len(p)) for c, p in zip(rollup.members, packs)]) + b"".join(packs)


def put_rollup(directory, name: str, data: bytes) -> str:
    path = os.path.join(directory, "packs", "rollups", name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "wb") as fh:
        fh.write(data)
    os.replace(path + ".tmp", path)
    return path


def deliver_all(d, sender, plan, *, skip=()):
    for r in plan.rollups:
        if r.boundary not in skip:
            put_rollup(d, f"{r.boundary.decode()}.rollup", rollup_bytes(sender, r))
    deliver(str(d), sender, [c.decode() for c in plan.tail])
    write_manifest(str(d), sender.manifest())


def _importer(d, repo):
    return Importer(str(d), str(repo), settle=0.0, bare=True)


def test_rollups_and_tail_import_as_the_sender_has_them(tmp_path, sender, plan):
    d, repo = tmp_path / "dir", tmp_path / "repo"
    deliver_all(d, sender, plan)
    with _importer(d, repo) as imp:
        result = imp.run_pass(final=True)
        assert result.finished and not result.quarantined
        assert result.imported == result.total == len(sender.commits)  # counted by commit
    assert refs_of(str(repo)) == sender.refs
    ok, text = fsck_clean(str(repo))
    assert ok, text
    # Every member's received bytes are kept: the receiver rebuilds each roll-up exactly.
    source = PackSource(GitRepo(str(repo)))
    try:
        for r in plan.rollups:
            assert b"".join(rollup_chunks(source, r)) == rollup_bytes(sender, r)
    finally:
        source.close()
    with _importer(d, repo) as imp:  # idempotent: nothing read again
        again = imp.run_pass(final=True)
        assert again.new == 0 and again.finished


def test_rollups_arriving_newest_first_wait_for_their_history(tmp_path, sender, plan):
    d, repo = tmp_path / "dir", tmp_path / "repo"
    write_manifest(str(d), sender.manifest())
    with _importer(d, repo) as imp:
        for r in reversed(plan.rollups):
            put_rollup(d, f"{r.boundary.decode()}.rollup", rollup_bytes(sender, r))
            result = imp.run_pass(final=True)
            check_invariant(str(repo))
            if r is not plan.rollups[0]:
                assert result.waiting and not result.quarantined
        deliver(str(d), sender, [c.decode() for c in plan.tail])
        result = imp.run_pass(final=True)
        assert result.finished, result.progress_line()
    assert refs_of(str(repo)) == sender.refs


def test_a_rollup_still_being_written_waits_then_imports(tmp_path, sender, plan):
    d, repo = tmp_path / "dir", tmp_path / "repo"
    first = plan.rollups[0]
    data = rollup_bytes(sender, first)
    members = parse_rollup(data)
    _, start, end = members[len(members) // 2]
    holey = data[:start] + b"\0" * (end - start) + data[end:]  # a client's file, one piece short
    path = put_rollup(d, f"{first.boundary.decode()}.rollup", holey)
    with _importer(d, repo) as imp:
        result = imp.run_pass(final=True)
        assert result.incomplete and not result.quarantined and result.new == 0
        put_rollup(d, os.path.basename(path), data)
        result = imp.run_pass(final=True)
        assert result.new == len(first.members) and not result.incomplete
    check_invariant(str(repo))


def _refused(tmp_path, sender, plan, data: bytes, name: str | None = None) -> tuple[str, list]:
    d, repo = tmp_path / "dir", tmp_path / "repo"
    first = plan.rollups[0]
    put_rollup(d, name or f"{first.boundary.decode()}.rollup", data)
    write_manifest(str(d), sender.manifest(refs={"refs/heads/main": first.boundary.decode()}))
    with _importer(d, repo) as imp:
        result = imp.run_pass(final=True)
    assert refs_of(str(repo)) == {}
    return result.quarantined[0][1] if result.quarantined else "", result.quarantined


def _with_member(data: bytes, index: int, new_member: bytes) -> bytes:
    """The roll-up with member `index` replaced (header sizes made to fit)."""
    members = parse_rollup(data)
    packs = [data[s:e] for _, s, e in members]
    packs[index] = new_member
    return rollup_header([(oid.encode(), len(p)) for (oid, _, _), p in zip(members, packs)]) + b"".join(packs)


def test_a_member_that_is_not_its_commit_refuses_the_rollup(tmp_path, sender, plan):
    data = rollup_bytes(sender, plan.rollups[0])
    members = parse_rollup(data)
    other = data[members[0][1] : members[0][2]]  # a valid pack of another commit (the root: no deltas)
    why, refused = _refused(tmp_path, sender, plan, _with_member(data, len(members) - 1, other))
    assert len(refused) == 1 and refused[0][0].endswith(".rollup")
    assert f"member {members[-1][0]}" in why and "named for" in why


def test_a_member_with_a_bad_object_refuses_the_rollup(tmp_path, sender, plan):
    data = rollup_bytes(sender, plan.rollups[0])
    members = parse_rollup(data)
    oid, start, end = members[1]
    body = bytearray(data[start : end - 20])
    body[-5] ^= 0xFF  # inside the last object's zlib stream; the trailer made to match
    forged = bytes(body) + hashlib.sha1(bytes(body)).digest()
    why, refused = _refused(tmp_path, sender, plan, _with_member(data, 1, forged))
    assert len(refused) == 1 and f"member {oid}" in why


@pytest.mark.parametrize(
    "mangle, says",
    [
        (lambda data: data + b"x", "fill"),
        (lambda data: data[:-1], "fill"),
        (lambda data: b"PACK" + data[4:], "bad magic"),
    ],
)
def test_a_rollup_whose_header_lies_is_refused(tmp_path, sender, plan, mangle, says):
    why, refused = _refused(tmp_path, sender, plan, mangle(rollup_bytes(sender, plan.rollups[0])))
    assert len(refused) == 1 and "bad roll-up" in why and says in why


def test_a_rollup_named_for_a_commit_it_does_not_hold_is_refused(tmp_path, sender, plan):
    data = rollup_bytes(sender, plan.rollups[0])
    wrong = plan.rollups[1].boundary.decode()
    why, refused = _refused(tmp_path, sender, plan, data, name=f"{wrong}.rollup")
    assert len(refused) == 1 and f"named for {wrong}" in why


def test_the_cli_imports_rollups(tmp_path, sender, plan):
    d, repo = tmp_path / "dir", tmp_path / "repo"
    deliver_all(d, sender, plan)
    proc = gitp2p("watch", "--once", "--bare", "--into", str(repo), str(d))
    assert proc.returncode == 0, proc.stderr
    assert refs_of(str(repo)) == sender.refs
    assert git("rev-list", "--all", cwd=repo).split() == git("rev-list", "--all", cwd=sender.path).split()
