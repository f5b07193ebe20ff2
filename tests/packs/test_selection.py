"""Which objects a commit pack holds and their delta base candidates, against a reference.

CommitPacker diffs each tree against its parents' trees at the same path and keeps what a
parent reaches as counts moved from root to root (commitpack.py).  The reference here is the
rule of docs/pack-format.md written the plain way (whole closure sets of the parents' trees,
whole name maps of every directory visited), as the packer did it before.  Every commit of
the generated history, of the quirky one and of a history of edge cases must be planned the
same, in any build order, with the compiled tree diff and with its Python twin.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitfs_p2p.git.repo import GitRepo
from gitfs_p2p.pack import commitpack
from gitfs_p2p.pack.commitpack import SAME_NAME_SCAN, CommitPacker, tree_changes_py
from gitfs_p2p.pack.objects import KIND_BLOB, KIND_GITLINK, KIND_TREE, ObjectParseError, TreeEntry, tree_entries_py
from testutil import git, raw_blob, raw_commit, raw_tree

# -- the reference ---------------------------------------------------------------------------


def _closure(tree, root: bytes) -> set[bytes]:
    out = {root}
    stack = [root]
    while stack:
        for e in tree(stack.pop()):
            if e.kind == KIND_BLOB:
                out.add(e.id)
            elif e.kind == KIND_TREE and e.id not in out:
                out.add(e.id)
                stack.append(e.id)
    return out


def reference_selection(tree, root: bytes, parent_roots: list[bytes]) -> list[tuple]:
    """[(id, type number, path, base candidates)] in pack order, as docs/pack-format.md says."""
    excluded: set[bytes] = set()
    for parent_root in parent_roots:
        excluded |= _closure(tree, parent_root)

    def names(tree_id):
        return {e.name: (e.kind, e.id) for e in tree(tree_id)}

    deleted: dict[bytes, bytes] = {}

    def collect(name, kind, oid):
        if kind == KIND_TREE:
            for e in tree(oid):
                if e.kind != KIND_GITLINK:
                    collect(e.name, e.kind, e.id)
        else:
            deleted.setdefault(name, oid)

    trees, blobs, orphans, seen = [], [], [], set()
    stack = [(root, b"", list(parent_roots))]
    while stack:
        tree_id, path, parent_dirs = stack.pop()
        if tree_id in excluded or tree_id in seen:
            continue
        seen.add(tree_id)
        trees.append([tree_id, 2, path, [p for p in parent_dirs if p is not None]])
        parent_maps = [names(p) if p is not None else {} for p in parent_dirs]
        if parent_maps and parent_maps[0]:
            here = names(tree_id)
            for name, (kind, oid) in parent_maps[0].items():
                if name not in here and kind != KIND_GITLINK:
                    collect(name, kind, oid)
        subdirs = []
        for e in tree(tree_id):
            if e.id in excluded or e.id in seen or e.kind == KIND_GITLINK:
                continue
            sub_path = path + b"/" + e.name if path else e.name
            same_path = [pm.get(e.name) for pm in parent_maps]
            if e.kind == KIND_TREE:
                subdirs.append((e.id, sub_path, [p[1] if p is not None and p[0] == KIND_TREE else None for p in same_path]))
            else:
                seen.add(e.id)
                obj = [e.id, 3, sub_path, [p[1] for p in same_path if p is not None and p[0] == KIND_BLOB]]
                blobs.append(obj)
                if not obj[3]:
                    orphans.append(obj)
        stack.extend(reversed(subdirs))
    for obj in orphans:
        base = deleted.get(obj[2].rsplit(b"/", 1)[-1])
        if base is not None:
            obj[3].append(base)
    return [tuple(o) for o in trees + blobs]


def _planned(packer: CommitPacker, commit_id: bytes) -> list[tuple]:
    return [(o.id, o.type_num, o.path, o.bases) for o in packer.plan(packer.commit(commit_id)).objects]


def _fresh_counts(packer: CommitPacker, root: bytes) -> Counter:
    counts: Counter = Counter([root])
    stack = [root]
    while stack:
        for e in packer.tree(stack.pop()):
            if e.kind == KIND_BLOB:
                counts[e.id] += 1
            elif e.kind == KIND_TREE:
                counts[e.id] += 1
                stack.append(e.id)
    return counts


@pytest.fixture(params=["compiled", "python"])
def tree_diff(request, monkeypatch):
    """Run with the compiled tree diff and with its Python twin."""
    if request.param == "python":
        monkeypatch.setattr(commitpack, "_compiled_tree_changes", None)
    else:
        assert commitpack._compiled_tree_changes is not None, "setup builds gitfs_p2p.pack._speedups"
    return request.param


def _check_every_commit(path: str, *, shuffle: bool) -> int:
    repo = GitRepo(path)
    try:
        commits = [c.id for c in repo.commits_oldest_first(set(repo.refs().values()))]
        if shuffle:
            random.Random(5).shuffle(commits)
        # small caches, so that trees are read again and counts move between far roots
        packer = CommitPacker(repo, tree_budget=64 << 10, raw_budget=64 << 10)
        for commit_id in commits:
            commit = packer.commit(commit_id)
            parent_roots = [packer.commit(p).tree for p in commit.parents]
            assert _planned(packer, commit_id) == reference_selection(packer.tree, commit.tree, parent_roots), commit_id
            if packer._counted_root is not None:
                assert dict(packer._counts) == dict(_fresh_counts(packer, packer._counted_root)), commit_id
        return len(commits)
    finally:
        repo.close()


# -- histories ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shuffle", [False, True], ids=["oldest-first", "shuffled"])
def test_generated_history_is_planned_as_the_reference_plans_it(history, tree_diff, shuffle, monkeypatch):
    if shuffle:  # and count afresh whenever a move is not small
        monkeypatch.setattr(commitpack, "MOVE_SLACK", 0)
    assert _check_every_commit(history, shuffle=shuffle) >= 120


@pytest.mark.parametrize("shuffle", [False, True], ids=["oldest-first", "shuffled"])
def test_quirky_history_is_planned_as_the_reference_plans_it(quirky, tree_diff, shuffle):
    path, _ = quirky
    assert _check_every_commit(path, shuffle=shuffle) >= 15


def _sort_key(entry):
    mode, name, _ = entry
    return name + b"/" if mode.lstrip(b"0") == b"40000" else name


def _edge_history(path: str) -> None:
    """Commits whose trees move, copy, revert, retype and repeat things, on two branches with
    an octopus merge; some trees unsorted or with a name both a file's and a directory's."""
    git("init", "-q", "--bare", path)
    blob = {name: raw_blob(path, (name * 40 + "\n").encode() * 30) for name in "abcdefghijk"}
    edited = {name: raw_blob(path, (name * 40 + "\n").encode() * 30 + b"edited\n") for name in "abcdefghijk"}
    empty = raw_tree(path, [])
    gitlink = "1234567812345678123456781234567812345678"
    when = [1_500_000_000]

    def tree(entries, *, keep_order=False):
        entries = [(m.encode() if isinstance(m, str) else m, n.encode() if isinstance(n, str) else n, i) for m, n, i in entries]
        return raw_tree(path, entries if keep_order else sorted(entries, key=_sort_key))

    def commit(root, *parents):
        when[0] += 60
        stamp = f"{when[0]} +0000".encode()
        return raw_commit(path, root, list(parents), [b"author A <a@x> " + stamp, b"committer C <c@x> " + stamp])

    z = tree([("100644", "deep.txt", blob["a"]), ("100644", "other.txt", blob["b"])])
    a = tree([("100644", "x.txt", blob["c"]), ("100644", "y.txt", blob["d"]), ("40000", "z", z)])
    c1 = commit(tree([("40000", "a", a), ("100644", "b.txt", blob["e"]), ("160000", "mod", gitlink),
                      ("120000", "link", blob["f"]), ("40000", "empty", empty)]))
    # the directory moves whole (same tree id at another path), and b.txt is edited
    c2 = commit(tree([("40000", "c", a), ("100644", "b.txt", edited["e"]), ("160000", "mod", gitlink),
                      ("120000", "link", blob["f"]), ("40000", "empty", empty)]), c1)
    # c/z goes, deep.txt comes back edited at the top (a rename out of a deleted directory);
    # a copy of y.txt (an old blob) and the gitlink's id reused as a file
    gitlink_blob = raw_blob(path, b"a blob whose id a gitlink names\n")
    a3 = tree([("100644", "x.txt", blob["c"]), ("100644", "y.txt", blob["d"]), ("100644", "y-copy.txt", blob["d"])])
    c3 = commit(tree([("40000", "c", a3), ("100644", "b.txt", edited["e"]), ("100644", "deep.txt", edited["a"]),
                      ("160000", "mod", gitlink_blob), ("120000", "link", blob["f"])]), c2)
    c4 = commit(tree([("40000", "c", a3), ("100644", "b.txt", edited["e"]), ("100644", "deep.txt", edited["a"]),
                      ("100644", "mod", gitlink_blob), ("120000", "link", blob["f"])]), c3)
    # b.txt becomes a directory, x.txt changes mode only, c's mode is written 040000
    a5 = tree([("100755", "x.txt", blob["c"]), ("100644", "y.txt", blob["d"]), ("100644", "y-copy.txt", blob["d"])])
    b5 = tree([("100644", "b.txt", blob["g"])])
    c5 = commit(tree([("040000", "c", a5), ("40000", "b.txt", b5), ("100644", "deep.txt", edited["a"])]), c4)
    # a name both a file's and a directory's, with names sorting between them; then edited;
    # b.txt a file again
    d6 = tree([("100644", "in.txt", blob["h"])])
    dup6 = tree([("100644", "d", blob["i"]), ("100644", "d!x", blob["j"]), ("100644", "d-y", blob["k"]),
                 ("40000", "d", d6)], keep_order=True)
    c6 = commit(tree([("40000", "c", a5), ("40000", "dup", dup6), ("100644", "deep.txt", edited["a"]),
                      ("100644", "b.txt", blob["g"])]), c5)
    d7 = tree([("100644", "in.txt", edited["h"])])
    dup7 = tree([("100644", "d", edited["i"]), ("100644", "d!x", blob["j"]), ("100644", "d-y", blob["k"]),
                 ("40000", "d", d7)], keep_order=True)
    c7 = commit(tree([("40000", "c", a5), ("40000", "dup", dup7), ("100644", "deep.txt", edited["a"])]), c6)
    # an unsorted tree, then sorted again with an edit
    c8 = commit(tree([("100644", "deep.txt", blob["a"]), ("40000", "c", a5), ("40000", "dup", dup7)], keep_order=True), c7)
    a9 = tree([("100755", "x.txt", edited["c"]), ("100644", "y.txt", blob["d"]), ("100644", "y-copy.txt", blob["d"])])
    c9 = commit(tree([("40000", "c", a9), ("40000", "dup", dup7), ("100644", "deep.txt", blob["a"])]), c8)
    # two branches from c9; an octopus merge with a repeated parent and one whose tree is c9's
    a10 = tree([("100755", "x.txt", edited["c"]), ("100644", "y.txt", edited["d"]), ("100644", "y-copy.txt", blob["d"])])
    left = commit(tree([("40000", "c", a10), ("40000", "dup", dup7), ("100644", "deep.txt", blob["a"])]), c9)
    right = commit(tree([("40000", "c", a9), ("40000", "dup", dup6), ("100644", "deep.txt", blob["a"]),
                         ("100644", "new.txt", edited["b"])]), c9)
    same = commit(tree([("40000", "c", a9), ("40000", "dup", dup7), ("100644", "deep.txt", blob["a"])]), c9)
    merged = commit(tree([("40000", "c", a10), ("40000", "dup", dup6), ("100644", "deep.txt", blob["a"]),
                          ("100644", "new.txt", edited["b"]), ("100644", "renamed-new.txt", edited["j"]),
                          ("100644", "copied-from-right.txt", edited["b"])]),
                    left, right, right, same)
    # the whole tree replaced by one holding only an old subtree, then the root of c1 again
    c11 = commit(tree([("40000", "only", z)]), merged)
    c12 = commit(tree([("40000", "a", a), ("100644", "b.txt", blob["e"]), ("160000", "mod", gitlink),
                          ("120000", "link", blob["f"]), ("40000", "empty", empty)]), c11)
    git("-C", path, "update-ref", "refs/heads/main", c12)
    git("-C", path, "update-ref", "refs/heads/left", left)


@pytest.fixture(scope="module")
def edge_history(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("edges") / "repo.git")
    _edge_history(path)
    return path


@pytest.mark.parametrize("shuffle", [False, True], ids=["oldest-first", "shuffled"])
def test_edge_cases_are_planned_as_the_reference_plans_them(edge_history, tree_diff, shuffle, monkeypatch):
    whole = []
    read_whole = CommitPacker._all_entries

    def spy(self, tree_id, parent_dirs, gone):
        whole.append(tree_id)
        return read_whole(self, tree_id, parent_dirs, gone)

    monkeypatch.setattr(CommitPacker, "_all_entries", spy)
    if shuffle:  # and count afresh whenever a move is not small
        monkeypatch.setattr(commitpack, "MOVE_SLACK", 0)
    assert _check_every_commit(edge_history, shuffle=shuffle) == 15
    assert whole, "no tree of the edge history was read whole (not simple)"


def test_edge_history_packs_hold_what_git_says(edge_history):
    repo = GitRepo(edge_history)
    try:
        packer = CommitPacker(repo)
        for c in repo.commits_oldest_first(set(repo.refs().values())):
            got = {c.id.decode()} | {o.id.decode() for o in packer.plan(c).objects}
            parents = [p.decode() for p in c.parents]
            out = git("rev-list", "--objects", c.id.decode(), "--not", *parents, cwd=edge_history)
            assert got == {line.split()[0] for line in out.splitlines()}, c.id
    finally:
        repo.close()


def test_counts_move_between_far_roots_and_back(history, monkeypatch):
    """Far moves count afresh; near ones move; a failed move leaves no half-moved counts."""
    monkeypatch.setattr(commitpack, "MOVE_SLACK", 16)  # the history is small: about 40 ids
    counted = []  # trees whose subtrees were counted whole: roots counted afresh, added subtrees
    count_subtrees = CommitPacker._count_subtrees

    def spy(self, tree_id, counts):
        counted.append(tree_id)
        return count_subtrees(self, tree_id, counts)

    monkeypatch.setattr(CommitPacker, "_count_subtrees", spy)
    repo = GitRepo(history)
    try:
        packer = CommitPacker(repo)
        commits = repo.commits_oldest_first(set(repo.refs().values()))
        last, first = commits[-1], commits[1]
        near_last, near_first = packer.commit(last.parents[0]).tree, packer.commit(first.parents[0]).tree
        roots = [last.tree, near_last, first.tree, near_first, last.tree]
        for root in roots:
            packer._count_root(root)
            assert dict(packer._counts) == dict(_fresh_counts(packer, root))
        # the first counts afresh, from the last commit to the first and back is too far,
        # from a commit to its parent is not
        assert [t for t in counted if t in roots] == [last.tree, first.tree, last.tree]
        with pytest.raises(KeyError):
            packer._count_root(b"0" * 40)
        assert packer._counted_root is None
        packer._count_root(near_first)
        assert dict(packer._counts) == dict(_fresh_counts(packer, near_first))
    finally:
        repo.close()


# -- the tree diff: compiled twin against the reference ---------------------------------------

_MODES = [b"100644", b"100755", b"120000", b"40000", b"040000", b"160000", b"100664"]
_NAMES = st.text("ab-!./~é", min_size=1, max_size=3).map(lambda t: t.encode())
_IDS = st.sampled_from([bytes(20), b"\x01" * 20, b"\xfe" * 20])


@st.composite
def tree_pairs(draw):
    """Two trees that share most entries: mostly in git's order, some not, some with a name
    both a file's and a directory's, some damaged."""
    def raw(entries):
        return b"".join(mode + b" " + name + b"\0" + oid for mode, name, oid in entries)

    entries = [(draw(st.sampled_from(_MODES)), draw(_NAMES), draw(_IDS)) for _ in range(draw(st.integers(0, 10)))]
    if draw(st.integers(0, 3)):
        entries = sorted({_sort_key(e): e for e in entries}.values(), key=_sort_key)
    other = list(entries)
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.integers(0, 2))
        if op == 0 and other:
            del other[draw(st.integers(0, len(other) - 1))]
        elif op == 1 and other:
            at = draw(st.integers(0, len(other) - 1))
            other[at] = (draw(st.sampled_from(_MODES)), other[at][1], draw(_IDS))
        else:
            other.append((draw(st.sampled_from(_MODES)), draw(_NAMES), draw(_IDS)))
            if draw(st.integers(0, 3)):
                other = sorted({_sort_key(e): e for e in other}.values(), key=_sort_key)
    a, b = raw(entries), raw(other)
    if draw(st.integers(0, 9)) == 0:
        at = draw(st.integers(0, len(a)))
        a = a[:at] + draw(st.binary(max_size=3)) + a[at + draw(st.integers(0, 2)):]
    return a, b


def _compiled(a: bytes, b: bytes):
    return commitpack._compiled_tree_changes(a, b, TreeEntry, KIND_BLOB, KIND_TREE, KIND_GITLINK)


def _reference(a: bytes, b: bytes):
    try:
        return tree_changes_py(tree_entries_py(a), tree_entries_py(b))
    except ObjectParseError:
        return "unreadable"


@settings(max_examples=2000, deadline=None)
@given(tree_pairs())
def test_compiled_tree_diff_gives_what_the_reference_gives(pair):
    a, b = pair
    want = _reference(a, b)
    got = _compiled(a, b)
    assert got == (None if want == "unreadable" else want)
    if got is not None:
        only_a, only_b = got
        assert all(type(e) is TreeEntry for e in only_a + only_b)
        # what is left out is the same in both trees, and names pair up
        shared = [e for e in tree_entries_py(a) if e not in only_a]
        assert shared == [e for e in tree_entries_py(b) if e not in only_b]


def _raw(*entries) -> bytes:
    return b"".join(mode + b" " + name + b"\0" + oid for mode, name, oid in entries)


@pytest.mark.parametrize("between", [0, 3, SAME_NAME_SCAN + 5])
def test_a_name_both_a_file_and_a_directory_is_not_simple(between):
    entries = [(b"100644", b"d", b"\x01" * 20)]
    entries += [(b"100644", b"d!%03d" % i, b"\x02" * 20) for i in range(between)]
    entries += [(b"40000", b"d", b"\x03" * 20)]
    raw = _raw(*entries)
    assert _compiled(raw, b"") is None and _reference(raw, b"") is None


def test_a_directory_past_many_names_that_extend_it_is_not_simple():
    """Past SAME_NAME_SCAN of them the look-back gives up: read whole, correct anyway."""
    near = [(b"100644", b"d!%03d" % i, b"\x02" * 20) for i in range(SAME_NAME_SCAN)]
    for extra, simple in ((0, True), (1, False)):
        more = [(b"100644", b"d!999", b"\x02" * 20)] * extra
        raw = _raw(*near, *more, (b"40000", b"d", b"\x03" * 20))
        want = None if not simple else ([], [])
        assert _compiled(raw, raw) == _reference(raw, raw) == want


def test_tree_diff_pairs_changed_entries_by_name():
    one, two = b"\x01" * 20, b"\x02" * 20
    a = _raw((b"100644", b"a", one), (b"100644", b"b", one), (b"40000", b"c", one), (b"100644", b"e", one))
    b = _raw((b"100755", b"a", one), (b"100644", b"b", one), (b"040000", b"c", one), (b"40000", b"e", two))
    only_a, only_b = _compiled(a, b)
    assert [(e.name, e.mode) for e in only_a] == [(b"a", 0o100644), (b"e", 0o100644)]
    assert [(e.name, e.mode, e.kind) for e in only_b] == [(b"a", 0o100755, KIND_BLOB), (b"e", 0o40000, KIND_TREE)]
    assert tree_changes_py(tree_entries_py(a), tree_entries_py(b)) == (only_a, only_b)
