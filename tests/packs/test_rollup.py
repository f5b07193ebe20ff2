"""Roll-ups (pack/rollup.py, docs/pack-format.md "Roll-ups"): the rule against git's own
rev-list, its stability as refs move and branches appear, the file's bytes, and headers
that lie."""

from __future__ import annotations

import hashlib

import pytest

from testutil import generate, git, gitp2p

from gitfs_p2p.git.repo import GitRepo
from gitfs_p2p.git.walk import order
from gitfs_p2p.pack.order import TagInfo, published_tags, torrent_order
from gitfs_p2p.pack.rollup import (
    ROLLUP_MAGIC,
    ROLLUP_SPAN,
    TAGS_MAGIC,
    HistoryPlan,
    Rollup,
    RollupError,
    chain_of,
    header_size,
    is_tag_group_name,
    parse_rollup,
    plan_history,
    rollup_from_name,
    rollup_header,
    tag_group,
)
from gitfs_p2p.store.source import PackSource
from gitfs_p2p.store.torrents import build_repo_torrent, rollup_chunks, select_refs

SPAN = 16  # the rule's span is a parameter; the product pins ROLLUP_SPAN


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """200 commits with side branches merged back (a first-parent chain shorter than that)."""
    path = str(tmp_path_factory.mktemp("rollup") / "repo")
    generate(path, 200, seed=23)
    # a branch published later, off old history: it must not move any roll-up of main's
    side = git("rev-parse", "main~150", cwd=path).strip()
    for i in range(2 * SPAN + 3):  # long enough to cross boundaries of its own
        side = git("commit-tree", "main~150^{tree}", "-p", side, "-m", f"late side branch {i}", cwd=path).strip()
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
    plan = plan_history(commits, [tip], SPAN)
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
    side = git("rev-parse", "late-side", cwd=path).strip().encode()
    reach_main = _revlist(path, "main")
    assert side not in reach_main
    only_main = plan_history([c for c in commits if c.id in reach_main], [main], SPAN)
    # the same ref earlier: an ancestor on its first-parent chain, with only its history
    chain = chain_of(infos, main)
    for back in (1, SPAN // 2, SPAN + 3):
        old_tip = chain[-1 - back]
        reach = _revlist(path, old_tip.decode())
        earlier = plan_history([c for c in commits if c.id in reach], [old_tip], SPAN)
        assert earlier.rollups == only_main.rollups[: len(earlier.rollups)]
        assert len(earlier.rollups) >= len(only_main.rollups) - 1 - back // SPAN
    # main with the late branch published too: it shares main's history, so it adds no
    # chain and changes nothing; published alone, it cuts its own chain, which shares
    # main's boundaries below the fork
    both = plan_history(commits, [main, side], SPAN)
    assert both == only_main_all(commits, main) and side in both.tail
    merged = [p for c in commits if c.id in reach_main for p in c.parents[1:]]
    assert merged and plan_history(commits, [main, *merged, side, chain[-SPAN - 2]], SPAN) == both
    alone = plan_history(commits, [side, main], SPAN)
    side_chain = chain_of(infos, side)
    assert [r.boundary for r in alone.rollups] == side_chain[SPAN - 1 :: SPAN]
    fork = len(set(side_chain) & set(chain))
    assert alone.rollups[: fork // SPAN] == only_main.rollups[: fork // SPAN]
    for r in alone.rollups[fork // SPAN :]:
        oracle = _revlist(path, r.boundary.decode(), f"^{side_chain[r.depth - 1 - SPAN].decode()}")
        assert set(r.members) == oracle and len(r.members) == len(oracle)


def only_main_all(commits, main):
    """main's roll-ups with every commit of the repository (the others in the tail)."""
    return plan_history(commits, [main], SPAN)


def test_a_separate_history_has_a_chain_of_its_own(history, tmp_path):
    """A branch with a history of its own (like git.git's `todo`) is cut too, and no two
    chains share a commit, whatever the order of the candidates after HEAD's."""
    path, repo, commits = history
    main = git("rev-parse", "main", cwd=path).strip().encode()
    other = str(tmp_path / "other")
    generate(other, 3 * SPAN + 5, seed=31)
    git("fetch", "-q", other, "main:refs/heads/todo", cwd=path)
    try:
        todo = git("rev-parse", "todo", cwd=path).strip().encode()
        late = git("rev-parse", "late-side", cwd=path).strip().encode()
        with_todo = PackSource(GitRepo(path)).commits()
        plan = plan_history(with_todo, [main, late, todo], SPAN)
        infos = {c.id: c for c in with_todo}
        todo_chain = chain_of(infos, todo)
        assert {r.boundary for r in plan.rollups} == set(chain_of(infos, main)[SPAN - 1 :: SPAN]) | set(todo_chain[SPAN - 1 :: SPAN])
        members = [c for r in plan.rollups for c in r.members]
        assert len(members) == len(set(members))
        assert set(plan.tail) == set(infos) - set(members)
        assert plan_history(with_todo, [main, todo, late, todo], SPAN) == plan
        assert [(r.depth, r.boundary) for r in plan.rollups] == sorted((r.depth, r.boundary) for r in plan.rollups)
    finally:
        git("update-ref", "-d", "refs/heads/todo", cwd=path)


def test_branches_that_share_a_chain_share_its_rollups(history):
    """Many branches at commits of main's history, after main: the same roll-ups as main
    alone (they add no chain), and each commit is walked at most twice."""
    path, repo, commits = history
    infos = {c.id: c for c in commits}
    main = git("rev-parse", "main", cwd=path).strip().encode()
    chain = chain_of(infos, main)
    reach = _revlist(path, "main")
    only_main = plan_history([c for c in commits if c.id in reach], [main], SPAN)
    many = plan_history([c for c in commits if c.id in reach], [main, *reversed(chain), *sorted(reach)], SPAN)
    assert many.rollups == only_main.rollups and many.tail == only_main.tail


def test_a_maintenance_branch_adds_no_chain_and_tags_follow_their_rollup(tmp_path):
    """A maintenance branch merged into main now and then: only main's chain is cut (the
    branches share history), so no commit is in two roll-ups; a tag comes right after the
    roll-up holding its commit, once."""
    path = str(tmp_path / "repo")
    git("init", "-q", "-b", "main", path)
    env_commit = lambda *args: git("commit-tree", "4b825dc642cb6eb9a060e54bf8d69288fbee4904", *args, cwd=path).strip()  # noqa: E731
    git("hash-object", "-w", "-t", "tree", "/dev/null", cwd=path)
    base = env_commit("-m", "root")
    main = maint = base
    for i in range(3 * SPAN):
        maint = env_commit("-p", maint, "-m", f"fix {i}")
        main = env_commit("-p", main, "-m", f"feature {i}")
        if i % 5 == 4:
            main = env_commit("-p", main, "-p", maint, "-m", f"merge maint {i}")
    git("update-ref", "refs/heads/main", main, cwd=path)
    git("update-ref", "refs/heads/maint", maint, cwd=path)
    fix = git("rev-parse", "maint~20", cwd=path).strip()  # merged into main, below both tips' last boundary
    git("tag", "-a", "-m", "a fix release", "v1", fix, cwd=path)
    repo = GitRepo(path)
    try:
        source = PackSource(repo)
        commits = source.commits()
        plan = plan_history(commits, [main.encode(), maint.encode()], SPAN)
        targets = repo.published_refs().values()
    finally:
        repo.close()
    members = [c for r in plan.rollups for c in r.members]
    assert len(members) == len(set(members)) and fix.encode() in members
    assert [r.boundary for r in plan.rollups] == chain_of({c.id: c for c in commits}, main.encode())[SPAN - 1 :: SPAN]
    tag = git("rev-parse", "v1", cwd=path).strip().encode()
    entries = torrent_order(plan, published_tags(targets))
    assert entries.count(tag) == 1
    first = next(i for i, e in enumerate(entries) if isinstance(e, Rollup) and fix.encode() in e.members)
    assert entries[first + 1] == tag  # after the first roll-up that holds its commit


def test_a_short_history_has_no_rollups(history):
    path, repo, commits = history
    main = git("rev-parse", "main", cwd=path).strip().encode()
    plan = plan_history(commits, [main])  # the product's span: more than 200 commits' chain
    assert plan.rollups == () and len(plan.tail) == len(commits)
    assert plan_history(commits, [], SPAN).rollups == ()
    assert plan_history(commits, [b"0" * 40], SPAN).rollups == ()  # a tip outside the commits


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
        # the members are recorded for whoever serves the torrent later (a mount finding
        # it cached), so nobody walks the history again
        assert source.cache.rollups(ROLLUP_SPAN, [r.boundary for r in t.rollups]) == {r.boundary: r for r in t.rollups}
        # the command's summary counts roll-ups apart from commit packs
        tags = len(t.tag_ids)
        proc = gitp2p("torrent", path, "--all")
        assert proc.returncode == 0, proc.stderr
        summary = proc.stdout.decode().splitlines()[2]
        assert summary.startswith(f"2 roll-ups, {len(t.files) - 3 - tags:,} commit packs, {tags:,} tag packs and all.gitp2p-refs")
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


# -- tag groups ---------------------------------------------------------------------------
def _ids(*names: str) -> dict[str, bytes]:
    return {n: hashlib.sha1(n.encode()).hexdigest().encode() for n in names}


def test_tags_sealed_with_a_rollup_are_one_group_and_recent_tags_stay_single():
    """The rule (docs/pack-format.md, "Tag groups"), pure: the tags after each roll-up are
    one group named for their ids, as are the tags of trees and blobs; a lone tag and the
    tail's tags stay one pack each; a newer torrent that seals the tail keeps every old
    file and appends."""
    c = _ids("a", "b", "c", "d", "e", "f", "g")
    t = _ids("t-a", "t-c", "t-c-outer", "t-d", "t-f", "t-tree", "t-blob")
    r1 = Rollup(c["c"], 3, (c["a"], c["b"], c["c"]))
    r2 = Rollup(c["e"], 6, (c["d"], c["e"]))
    tags = {
        t["t-a"]: TagInfo(c["a"], 0), t["t-c"]: TagInfo(c["c"], 0), t["t-c-outer"]: TagInfo(c["c"], 1),
        t["t-d"]: TagInfo(c["d"], 0), t["t-f"]: TagInfo(c["f"], 0),
        t["t-tree"]: TagInfo(None, 0), t["t-blob"]: TagInfo(None, 0),
    }
    entries = torrent_order(HistoryPlan((r1, r2), (c["f"], c["g"])), tags)
    loose = tag_group(sorted([t["t-tree"], t["t-blob"]]))
    sealed = tag_group([t["t-a"], t["t-c"], t["t-c-outer"]])  # member order, inner tags first
    assert entries == [loose, r1, sealed, r2, t["t-d"], c["f"], t["t-f"], c["g"]]
    assert sealed.tags and sealed.depth == 0 and sealed.members == (t["t-a"], t["t-c"], t["t-c-outer"])
    assert sealed.boundary.decode() == hashlib.sha1(b"".join(bytes.fromhex(m.decode()) for m in sealed.members)).hexdigest()
    assert sealed.path == f"rollups/{sealed.boundary.decode()}.tags" and sealed.magic == TAGS_MAGIC
    assert rollup_from_name(sealed.path.split("/")[1]) == sealed.boundary.decode()
    assert is_tag_group_name(sealed.path.split("/")[1]) and not is_tag_group_name(r1.path.split("/")[1])
    # `gitp2p packs` order: every tag its own pack
    flat = torrent_order(HistoryPlan((r1, r2), (c["f"], c["g"])), tags, group_tags=False)
    assert not any(isinstance(e, Rollup) and e.tags for e in flat) and t["t-blob"] in flat
    # the refs moved on: f and a new commit h sealed into a third roll-up; old files unchanged
    h = _ids("h")["h"]
    r3 = Rollup(h, 9, (c["f"], c["g"], h))
    later = torrent_order(HistoryPlan((r1, r2, r3), ()), tags)
    assert later[:5] == entries[:5] and later[5:] == [r3, t["t-f"]]  # a lone sealed tag stays single
    # a torrent of fewer tags (a label's) has other groups, never one of the same name
    fewer = torrent_order(HistoryPlan((r1, r2), (c["f"], c["g"])), {k: v for k, v in tags.items() if k != t["t-a"]})
    other = next(e for e in fewer if isinstance(e, Rollup) and e.tags and e.members[0] == t["t-c"])
    assert other.boundary != sealed.boundary and loose in fewer


def test_a_tag_group_header_is_not_a_rollup_header():
    members = [(b"a" * 40, 3), (b"b" * 40, 2)]
    data = rollup_header(members, TAGS_MAGIC) + b"xxxyy"
    assert parse_rollup(data, magic=TAGS_MAGIC) == [("a" * 40, header_size(2), header_size(2) + 3),
                                                      ("b" * 40, header_size(2) + 3, len(data))]
    with pytest.raises(RollupError, match="not a gitp2p roll-up"):
        parse_rollup(data)
    with pytest.raises(RollupError, match="not a gitp2p tag group"):
        parse_rollup(rollup_header(members) + b"xxxyy", magic=TAGS_MAGIC)
