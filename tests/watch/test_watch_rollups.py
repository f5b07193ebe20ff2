"""Importing roll-ups (pack/rollup.py): every member checked as a commit pack; a lying or
broken roll-up is refused whole and moves no ref; one still being written waits."""

from __future__ import annotations

import hashlib
import os

import pytest

from testutil import gitp2p
from wsupport import check_invariant, deliver, fsck_clean, git, refs_of, write_manifest

from gitfs_p2p.git.repo import GitRepo
from gitfs_p2p.pack.order import published_tags, torrent_order
from gitfs_p2p.pack.rollup import ROLLUP_MAGIC, Rollup, parse_rollup, plan_history, rollup_header, tag_group
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


def test_members_are_held_one_rollup_at_a_time(tmp_path, sender, plan):
    """What the importer keeps per roll-up member (its path, its verdict) exists for the
    roll-ups being imported, not for the whole history at once (issue 15: 200,000 members
    took the watcher to 400 MB); a roll-up opens when the one below it is in."""
    d, repo = tmp_path / "dir", tmp_path / "repo"
    deliver_all(d, sender, plan)
    largest = max(len(r.members) for r in plan.rollups)
    assert largest < sum(len(r.members) for r in plan.rollups) // 2  # so the bound below says something
    held = []
    with _importer(d, repo) as imp:
        read = imp._read

        def counting(path, *args):
            held.append((len(imp._members), sum(1 for p in imp._verdicts if "#" in p)))
            return read(path, *args)

        imp._read = counting
        result = imp.run_pass(final=True)
        assert result.finished and result.imported == result.total == len(sender.commits)
        assert not imp._members and not [p for p in imp._verdicts if "#" in p]
    assert len(held) >= len(sender.commits) - len(plan.tail)  # every member was read to be checked
    assert max(m for m, _ in held) <= largest and max(v for _, v in held) <= largest
    assert refs_of(str(repo)) == sender.refs


def test_rollups_above_a_missing_one_are_not_read(tmp_path, sender, plan):
    """A roll-up whose history has not arrived waits as one pack, named for its boundary;
    the first missing roll-up is the cause, and none of its members is held."""
    d, repo = tmp_path / "dir", tmp_path / "repo"
    first = plan.rollups[0]
    deliver_all(d, sender, plan, skip={first.boundary})
    with _importer(d, repo) as imp:
        result = imp.run_pass(final=True)
        assert result.new == 0 and not imp._members and not result.quarantined
        assert {r.boundary.decode() for r in plan.rollups[1:]} <= set(result.waiting)
        assert result.total == len(sender.commits) - len(first.members)  # counted by commit
        cause, why, count = result.causes[0]
        assert cause == first.boundary.decode() and why == "has no file in DIR yet"
        assert count >= len(plan.rollups) - 1
        put_rollup(d, f"{first.boundary.decode()}.rollup", rollup_bytes(sender, first))
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


# -- tag groups ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tagged(sender, plan, tmp_path_factory):
    """A copy of the sender with annotated tags on its sealed history (a signed one, a tag
    of that tag, a plain one) and a tag of a tree and one of a blob: (path, refs, the
    torrent's entries in order, PackSource on the copy)."""
    path = str(tmp_path_factory.mktemp("tagged") / "repo")
    git("clone", "-q", "--bare", sender.path, path, cwd=os.path.dirname(path))

    def tag(name: str, target: str, kind: str, signed: bool = False) -> str:
        body = f"object {target}\ntype {kind}\ntag {name}\ntagger T <t@example.invalid> 1313590000 +0000\n\nrelease {name}\n"
        if signed:
            body += "-----BEGIN PGP SIGNATURE-----\n\niQEzBAABCAAdFiEE\n=abcd\n-----END PGP SIGNATURE-----\n"
        tid = git("hash-object", "-w", "-t", "tag", "--stdin", cwd=path, input=body.encode()).strip()
        git("update-ref", f"refs/tags/{name}", tid, cwd=path)
        return tid

    sealed = plan.rollups[1].members
    signed = tag("v1", sealed[0].decode(), "commit", signed=True)
    tag("v1-outer", signed, "tag")
    tag("v1.1", sealed[-1].decode(), "commit")
    tag("v0", plan.rollups[0].members[-1].decode(), "commit")  # alone on its roll-up: one pack
    tag("tree-tag", git("rev-parse", f"{sealed[0].decode()}^{{tree}}", cwd=path).strip(), "tree")
    blob = git("hash-object", "-w", "--stdin", cwd=path, input=b"a blob only a tag names\n").strip()
    tag("blob-tag", blob, "blob")
    repo = GitRepo(path)
    source = PackSource(repo)
    targets = repo.published_refs()
    entries = torrent_order(plan, published_tags(targets.values()))
    refs = {name: t.object.decode() for name, t in targets.items()}
    yield path, refs, entries, source
    source.close()
    repo.close()


def _deliver_tagged(d, sender, tagged) -> list[Rollup]:
    """Every file of the tagged copy's torrent into DIR, as a client leaves them; its groups."""
    path, refs, entries, source = tagged
    groups = []
    for e in entries:
        if isinstance(e, Rollup):
            put_rollup(d, e.path.split("/")[1], b"".join(rollup_chunks(source, e)))
            groups += [e] if e.tags else []
        else:
            os.makedirs(os.path.join(d, "packs"), exist_ok=True)
            with open(os.path.join(d, "packs", f"{e.decode()}.pack"), "wb") as fh:
                fh.write(source.pack(e))
    write_manifest(str(d), sender.manifest(refs))
    return groups


def test_tag_groups_import_and_the_receiver_rebuilds_them(tmp_path, sender, plan, tagged):
    path, refs, entries, source = tagged
    groups = [e for e in entries if isinstance(e, Rollup) and e.tags]
    # the tags of the tree and the blob; those on the second roll-up (v1, v1-outer, v1.1)
    assert [len(g.members) for g in groups] == [2, 3]
    assert refs["refs/tags/v0"].encode() in entries  # alone on its roll-up: a pack of its own
    d, repo = tmp_path / "dir", tmp_path / "repo"
    sent = _deliver_tagged(d, sender, tagged)
    with _importer(d, repo) as imp:
        result = imp.run_pass(final=True)
        assert result.finished and not result.quarantined, result.progress_line()
        assert all(imp.is_imported(g.boundary.decode()) for g in sent)
    assert refs_of(str(repo)) == refs
    ok, text = fsck_clean(str(repo))
    assert ok, text
    for name in ("v1", "v1-outer", "v1.1", "v0", "tree-tag", "blob-tag"):
        assert git("cat-file", "-p", name, cwd=repo) == git("cat-file", "-p", name, cwd=path)
    # the receiver holds every member's bytes, so it builds the same groups (and torrent)
    received = PackSource(GitRepo(str(repo)))
    try:
        for g in sent:
            assert b"".join(rollup_chunks(received, g)) == b"".join(rollup_chunks(source, g))
        targets = received.repo.published_refs()
        assert torrent_order(plan, published_tags(targets.values())) == entries
    finally:
        received.close()
        received.repo.close()
    with _importer(d, repo) as imp:  # idempotent
        again = imp.run_pass(final=True)
        assert again.new == 0 and again.finished


def test_a_tag_group_not_named_for_its_tags_is_refused(tmp_path, sender, plan, tagged):
    path, refs, entries, source = tagged
    group = next(e for e in entries if isinstance(e, Rollup) and e.tags and len(e.members) == 3)
    data = b"".join(rollup_chunks(source, group))
    wrong = tag_group(group.members[:2]).boundary.decode()
    why, refused = _refused(tmp_path, sender, plan, data, name=f"{wrong}.tags")
    assert len(refused) == 1 and "bad tag group" in why and "not the id" in why
    why, refused = _refused(tmp_path / "magic", sender, plan, ROLLUP_MAGIC + data[len(ROLLUP_MAGIC):],
                            name=group.path.split("/")[1])
    assert len(refused) == 1 and "bad tag group" in why and "bad magic" in why
