"""Roll-ups (pack/rollup.py, docs/pack-format.md "Roll-ups"): the rule against git's own
rev-list, its stability as refs move and branches appear, the file's bytes, and headers
that lie."""

from __future__ import annotations

import hashlib

import pytest

from testutil import generate, git

from gitfs_p2p.git.repo import GitRepo
from gitfs_p2p.git.walk import order
from gitfs_p2p.pack.rollup import (
    ROLLUP_MAGIC,
    ROLLUP_SPAN,
    RollupError,
    chain_of,
    header_size,
    parse_rollup,
    plan_history,
    rollup_from_name,
    rollup_header,
)
from gitfs_p2p.store.source import PackSource
from gitfs_p2p.store.torrents import build_repo_torrent, rollup_chunks, select_refs

SPAN = 16  # the rule's span is a parameter; the product pins ROLLUP_SPAN


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """200 commits with side branches merged back (a first-parent chain shorter than that)."""
    path = str(tmp_path_factory.mktemp("rollup") / "repo")
    generate(path, 200, seed=23)
    # a branch published later, off old history: it must not move any roll-up
    side = git("commit-tree", "main~150^{tree}", "-p", "main~150", "-m", "late side branch", cwd=path).strip()
    git("update-ref", "refs/heads/late-side", side, cwd=path)
    repo = GitRepo(path)
    commits = PackSource(repo).commits()
    yield path, repo, commits
    repo.close()


def _revlist(path, *args) -> set[bytes]:
    return {line.encode() for line in git("rev-list", *args, cwd=path).split()}


def test_rollups_hold_what_each_boundary_adds_and_the_tail_the_rest(history):
    path, repo, commits = history
    tip = git("rev-parse", "main", cwd=path).strip().encode()
    plan = plan_history(commits, tip, SPAN)
    fp_count = int(git("rev-list", "--first-parent", "--count", "main", cwd=path))
    assert len(plan.rollups) == fp_count // SPAN >= 5
    assert len(commits) > fp_count  # merges: some roll-ups hold commits off the chain
    lower = None
    for k, r in enumerate(plan.rollups, 1):
        assert r.depth == k * SPAN
        assert int(git("rev-list", "--first-parent", "--count", r.boundary.decode(), cwd=path)) == r.depth
        oracle = _revlist(path, r.boundary.decode(), *([f"^{lower.decode()}"] if lower else []))
        assert set(r.members) == oracle
        assert len(r.members) == len(oracle)
        infos = {c.id: c for c in commits if c.id in oracle}
        assert list(r.members) == [c.id for c in order(infos)]  # parents first, then date, then id
        assert r.members[-1] == r.boundary
        lower = r.boundary
    assert set(plan.tail) == _revlist(path, "--all", f"^{lower.decode()}")
    assert sum(len(r.members) for r in plan.rollups) + len(plan.tail) == len(commits)
    assert sum(len(r.members) for r in plan.rollups) > SPAN * len(plan.rollups)  # merged commits too


def test_old_rollups_survive_a_moving_ref_and_new_branches(history):
    path, repo, commits = history
    infos = {c.id: c for c in commits}
    main = git("rev-parse", "main", cwd=path).strip().encode()
    full = plan_history(commits, main, SPAN)
    # the same ref earlier: an ancestor on its first-parent chain, with only its history
    chain = chain_of(infos, main)
    for back in (1, SPAN // 2, SPAN + 3):
        old_tip = chain[-1 - back]
        reach = _revlist(path, old_tip.decode())
        earlier = plan_history([c for c in commits if c.id in reach], old_tip, SPAN)
        assert earlier.rollups == full.rollups[: len(earlier.rollups)]
        assert len(earlier.rollups) >= len(full.rollups) - 1 - back // SPAN
    # main alone, against main with every side branch published: the same roll-ups
    only_main = plan_history([c for c in commits if c.id in _revlist(path, "main")], main, SPAN)
    assert only_main.rollups == full.rollups
    side = git("rev-parse", "late-side", cwd=path).strip().encode()
    assert side in full.tail and side not in only_main.tail


def test_a_short_history_has_no_rollups(history):
    path, repo, commits = history
    main = git("rev-parse", "main", cwd=path).strip().encode()
    plan = plan_history(commits, main)  # the product's span: more than 200 commits' chain
    assert plan.rollups == () and len(plan.tail) == len(commits)
    assert plan_history(commits, None, SPAN).rollups == ()


def test_header_round_trip_and_sizes():
    members = [(b"a" * 40, 100), (b"b" * 40, 7)]
    head = rollup_header(members)
    assert head.startswith(ROLLUP_MAGIC) and len(head) == header_size(2)
    data = head + b"P" * 107
    assert parse_rollup(data) == [("a" * 40, len(head), len(head) + 100), ("b" * 40, len(head) + 100, len(data))]
    assert parse_rollup(head, file_size=len(data)) == parse_rollup(data)
    assert rollup_from_name("a" * 40 + ".rollup") == "a" * 40
    assert rollup_from_name("A" * 40 + ".rollup") is None and rollup_from_name("a" * 40 + ".pack") is None


@pytest.mark.parametrize(
    "data, partial, says",
    [
        (b"", True, "bad magic"),
        (b"\0" * 200, True, "bad magic"),
        (b"PACK" + b"\0" * 60, False, "bad magic"),
        (ROLLUP_MAGIC + b"\0\0\0\0", True, "0 members"),
        (ROLLUP_MAGIC + b"\0\0\0\2" + b"x" * 10, False, "longer than the file"),
        (rollup_header([(b"a" * 40, 10)]) + b"x" * 9, False, "fill"),
        (rollup_header([(b"a" * 40, 10)]) + b"x" * 11, False, "fill"),
        (rollup_header([(b"a" * 40, 5), (b"a" * 40, 5)]) + b"x" * 10, False, "twice"),
        (rollup_header([(b"a" * 40, 0)]), True, "empty"),
        (rollup_header([(b"0" * 40, 4)]) + b"xxxx", True, "empty"),
        (rollup_header([(b"a" * 40, 2 << 30)]), False, "bound"),
    ],
)
def test_headers_that_lie_are_refused(data, partial, says):
    with pytest.raises(RollupError, match=says) as info:
        parse_rollup(data)
    assert info.value.partial == partial


@pytest.fixture(scope="module")
def long_history(tmp_path_factory):
    """Enough first-parent commits for the product's span to cut two roll-ups."""
    path = str(tmp_path_factory.mktemp("long") / "repo")
    generate(path, 2 * ROLLUP_SPAN + 120, seed=29)
    return path


def test_torrents_list_rollups_first_and_a_later_tip_keeps_them(long_history, tmp_path):
    path = long_history
    source = PackSource(GitRepo(path))
    try:
        manifest, label = select_refs(source, [], all_refs=True)
        t = build_repo_torrent(source, manifest, label)
        assert t.rollups is not None and len(t.rollups) == 2
        names = [name for name, _ in t.files]
        assert names[:2] == [r.path for r in t.rollups] == [f"rollups/{r.boundary.decode()}.rollup" for r in t.rollups]
        assert all(n.endswith(".pack") for n in names[2:-1]) and names[-1] == "all.gitp2p-refs"
        sealed = {c for r in t.rollups for c in r.members}
        assert not sealed & {n[:-5].encode() for n in names[2:-1]}
        # every file's bytes, in torrent order, are what the info dictionary hashes
        by_path = {r.path: r for r in t.rollups}
        blob = bytearray()
        for name, size in t.files:
            if name in by_path:
                data = b"".join(rollup_chunks(source, by_path[name]))
                members = parse_rollup(data)
                assert [m[0].encode() for m in members] == list(by_path[name].members)
                assert all(data[s:e] == source.pack(m.encode()) for m, s, e in members)
            elif name.endswith(".pack"):
                data = source.pack(name[:-5].encode())
            else:
                data = t.manifest_bytes
            assert len(data) == size
            blob += data
        plen = t.info[b"piece length"]
        pieces = t.info[b"pieces"]
        for i in range(0, len(blob), plen):
            assert hashlib.sha1(blob[i : i + plen]).digest() == pieces[i // plen * 20 : i // plen * 20 + 20]
    finally:
        source.close()
    # The same repository one span of first-parent commits earlier: its torrent's roll-up
    # is the first one here, byte for byte (same path, same size).
    early = str(tmp_path / "early")
    boundary2 = t.rollups[1].boundary.decode()
    git("clone", "-q", "--bare", "--single-branch", "--branch", "main", path, early)
    git("update-ref", "refs/heads/main", f"{boundary2}~1", cwd=early)
    for ref in git("for-each-ref", "--format=%(refname)", "refs/tags", cwd=early).split():
        git("update-ref", "-d", ref, cwd=early)
    source = PackSource(GitRepo(early))
    try:
        manifest, label = select_refs(source, [], all_refs=True)
        t_early = build_repo_torrent(source, manifest, label)
    finally:
        source.close()
    assert t_early.files[0] == t.files[0]
    assert t_early.rollups == t.rollups[:1]
