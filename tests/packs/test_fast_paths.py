"""The receiver's checks made cheaper: each fast path against the plain reading it replaced."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitfs_p2p.pack import checker, fsck, objects
from gitfs_p2p.pack.checker import PackRejected, parse_named
from gitfs_p2p.pack.objects import CommitHeader, TagHeader
from gitfs_p2p.pack.packfile import OBJ_BLOB, OBJ_COMMIT, OBJ_TAG

_UINTMAX = (1 << 64) - 1


def _strtoumax_end_loop(data: bytes, pos: int) -> tuple[int, int]:
    """C's strtoumax(data + pos, &end, 10), byte by byte (the reading strtoumax_end replaced)."""
    n = len(data)
    i = pos
    while i < n and data[i] in b" \t\n\v\f\r":
        i += 1
    negative = False
    if i < n and data[i] in b"+-":
        negative = data[i] == 0x2D
        i += 1
    start = i
    while i < n and 0x30 <= data[i] <= 0x39:
        i += 1
    if i == start:
        return 0, pos
    value = 0
    for c in data[start:i]:  # no int(): it refuses more than 4300 digits
        value = min(value * 10 + c - 0x30, _UINTMAX + 1)
    if value > _UINTMAX:
        return _UINTMAX, i
    return ((-value) & _UINTMAX if negative else value), i


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=30) | st.text(" \t\n\v\f\r+-0123456789x>", max_size=30).map(str.encode), st.integers(0, 31))
def test_strtoumax_end_reads_as_c_does(data, pos):
    assert objects.strtoumax_end(data, min(pos, len(data))) == _strtoumax_end_loop(data, min(pos, len(data)))


@pytest.mark.parametrize(
    "data",
    [b"18446744073709551615", b"18446744073709551616", b"99999999999999999999", b"100000000000000000000",
     b"-1", b"+5", b"-", b"  \t-0", b"0" * 5000 + b"7 ", b"9" * 5000 + b" +0000", b"-" + b"9" * 5000],
)
def test_strtoumax_end_on_edges(data):
    assert objects.strtoumax_end(data, 0) == _strtoumax_end_loop(data, 0)


def _commit(date: bytes) -> bytes:
    return b"tree " + b"ab" * 20 + b"\nauthor A <a@b> 1 +0000\ncommitter C <c@d> " + date + b" +0000\n\nm\n"


def test_a_date_of_thousands_of_digits_is_git_s_overflow_not_a_crash():
    """int() refuses more than 4300 digits; git's strtoumax says ERANGE, fsck badDateOverflow."""
    raw = _commit(b"9" * 5000)
    assert objects.parse_commit(raw).date == _UINTMAX
    assert [f.msg_id for f in fsck.fsck_commit("cd" * 20, raw)] == ["badDateOverflow"]
    assert fsck.FsckPolicy(strict=True).first_refusal(fsck.fsck_commit("cd" * 20, raw)) is not None


def _span_not_loop(data: bytes, pos: int) -> int:
    while pos < len(data) and data[pos] not in b"<>\n":
        pos += 1
    return pos


@settings(max_examples=1000, deadline=None)
@given(st.text("ab <>\n\0", max_size=20).map(str.encode), st.integers(0, 21))
def test_identity_scan_stops_where_the_loop_stops(data, pos):
    pos = min(pos, len(data))
    assert fsck._span_not(data, pos) == _span_not_loop(data, pos)


def test_parse_named_remembers_headers_by_content_only():
    raw = _commit(b"1234567890")
    first = parse_named(OBJ_COMMIT, raw, "cd" * 20)
    assert first == CommitHeader("ab" * 20, (), 1234567890)
    assert parse_named(OBJ_COMMIT, bytes(raw), "ef" * 20) is first  # another object with these bytes: the same header
    with pytest.raises(PackRejected, match="tag .* cannot be read by git"):
        parse_named(OBJ_TAG, raw, "cd" * 20)  # the same bytes as a tag: read as a tag
    with pytest.raises(PackRejected, match="which is a blob"):
        parse_named(OBJ_BLOB, raw, "cd" * 20)
    tag = b"object " + b"ab" * 20 + b"\ntype commit\ntag v1\ntagger T <t> 5 +0000\n\nm\n"
    assert parse_named(OBJ_TAG, tag, "12" * 20) == TagHeader("ab" * 20, "commit", b"v1", 5)


def test_parse_named_refuses_every_time():
    bad = b"tree " + b"zz" * 20 + b"\n\n"
    for _ in range(2):  # a refusal is never remembered as a header
        with pytest.raises(PackRejected, match="cannot be read by git"):
            parse_named(OBJ_COMMIT, bad, "cd" * 20)
    assert bad not in checker._HEADERS


def test_parse_named_stays_bounded(monkeypatch):
    monkeypatch.setattr(checker, "_HEADERS", {})
    monkeypatch.setattr(checker, "_headers_bytes", 0)
    monkeypatch.setattr(checker, "_HEADERS_MAX", 8)
    for date in range(20):
        assert parse_named(OBJ_COMMIT, _commit(b"%d" % date), "cd" * 20).date == date
        assert len(checker._HEADERS) <= 8
    monkeypatch.setattr(checker, "_HEADERS_MAX", 10_000)
    monkeypatch.setattr(checker, "_HEADERS_BYTES", 10_000)
    sizes = set()
    for date in range(300):  # about 190 bytes each: the bound in bytes empties it
        parse_named(OBJ_COMMIT, _commit(b"%d" % date + b" " * 100), "cd" * 20)
        assert sum(map(len, checker._HEADERS)) == checker._headers_bytes <= 10_000
        sizes.add(len(checker._HEADERS))
    assert max(sizes) > 40 and 1 in sizes
    long = _commit(b"1") + b"x" * checker._HEADER_LARGEST
    assert parse_named(OBJ_COMMIT, long, "cd" * 20).date == 1 and long not in checker._HEADERS


_TOKENS = [b"tree ", b"parent ", b"author ", b"committer ", b"ab" * 20, b"AB" * 20, b"zz" * 20, b"\n", b"\n\n", b" ",
           b"A U Thor", b"", b"<", b">", b"a@b", b"<a@b>", b"0", b"00", b"1234567890", b"9" * 18, b"9" * 19,
           b"+0000", b"-0130", b"+051800", b"0000", b"\0", b"x", b"-", b"+"]


@st.composite
def commit_heads(draw):
    """Commits near the plain shape: well-formed ones with a token or two changed, and token soup."""
    ident = [b"A U Thor", b" ", b"<a@b>", b" ", b"1234567890", b" ", b"+0000", b"\n"]
    parts = [b"tree ", b"ab" * 20, b"\n"] + [b"parent ", b"cd" * 20, b"\n"] * draw(st.integers(0, 2))
    parts += [b"author "] + ident + [b"committer "] + ident
    parts += draw(st.sampled_from([[b"\n", b"msg\n"], [b"\n"], [b"gpgsig x\n", b"\n", b"m"], [], [b"\n", b"m\0"]]))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))):
        at = draw(st.integers(0, len(parts) - 1))
        parts[at] = draw(st.sampled_from(_TOKENS))
    if draw(st.integers(0, 7)) == 0:
        parts = draw(st.lists(st.sampled_from(_TOKENS), max_size=30))
    return b"".join(parts)


@settings(max_examples=3000, deadline=None)
@given(commit_heads())
def test_fsck_commit_in_one_match_finds_what_the_checks_find(raw):
    assert fsck.fsck_commit("cd" * 20, raw) == fsck._fsck_commit("cd" * 20, raw)


@pytest.mark.parametrize("date", [b"0", b"999999999999999999", b"9223372036854775807", b"9223372036854775808", b"01"])
def test_fsck_commit_dates_near_the_bounds(date):
    raw = _commit(date)
    assert fsck.fsck_commit("cd" * 20, raw) == fsck._fsck_commit("cd" * 20, raw)


@settings(max_examples=500, deadline=None)
@given(st.integers(1, 40), st.lists(st.lists(st.tuples(st.integers(0, 12), st.integers(0, 15)), max_size=8), max_size=8))
def test_lru_put_many_is_put_after_put(budget, batches):
    """Presence keeps a pack's objects with one put_many: the same contents, order and weight."""
    from gitfs_p2p.pack.lru import LRU

    one, many = LRU(budget), LRU(budget)
    for batch in batches:
        for key, weight in batch:
            one.put(key, ("v", key), weight)
        many.put_many((key, ("v", key), weight) for key, weight in batch)
        assert list(one.items()) == list(many.items()) and one.weight == many.weight


def _tree(*entries: tuple[bytes, bytes, bytes]) -> bytes:
    return b"".join(mode + b" " + name + b"\0" + oid for mode, name, oid in entries)


def _check_child(parent_entries, sub_parent, child_sub, repo_trees=()):
    """Checker.connected for a child whose tree `d` (in the pack) replaces the parent's; the
    parent's root holds parent_entries and `d` = sub_parent; repo_trees are in the repository
    too.  Returns None or the refusal."""
    from gitfs_p2p.pack.checker import Checker, RepoView, TreeCache
    from gitfs_p2p.pack.fsck import FsckPolicy
    from gitfs_p2p.pack.packfile import OBJ_TREE, object_id

    repo: dict[bytes, tuple[int, bytes]] = {}

    def put(store, type_num, raw):
        oid = object_id(type_num, raw)
        store[oid] = (type_num, raw)
        return oid

    for raw in (b"", *repo_trees):  # b"": EMPTY_TREE
        put(repo, OBJ_TREE, raw)

    d_parent = put(repo, OBJ_TREE, sub_parent)
    p_root = put(repo, OBJ_TREE, _tree(*parent_entries, (b"40000", b"d", d_parent)))
    pack: dict[bytes, tuple[int, bytes]] = {}
    d_child = put(pack, OBJ_TREE, child_sub)
    c_root = put(pack, OBJ_TREE, _tree(*parent_entries, (b"40000", b"d", d_child)))
    check = Checker("ee" * 20, pack, {}, RepoView(repo.get, lambda c: True, trees=TreeCache()), FsckPolicy())
    try:
        check.connected(c_root, [p_root], "commit " + "ee" * 20)
    except PackRejected as exc:
        return str(exc)
    return None


BLOB_Y = b"\x07" * 20
NAME_HOLDS_Z = b"\x01" * 20  # a name whose bytes are an id: the bytes are in the tree, the id is not


def test_an_object_moved_within_a_parent_tree_read_is_proven():
    assert _check_child([], _tree((b"100644", b"b", BLOB_Y)), _tree((b"100644", b"c", BLOB_Y))) is None


def test_an_id_that_is_only_a_name_s_bytes_proves_nothing():
    refusal = _check_child([], _tree((b"100644", NAME_HOLDS_Z, BLOB_Y)), _tree((b"100644", b"c", NAME_HOLDS_Z)))
    assert refusal is not None and "neither in the pack nor in a parent's tree" in refusal


EMPTY_TREE = bytes.fromhex("4b825dc642cb6eb9a060e54bf8d69288fbee4904")


def test_an_id_read_as_a_tree_is_not_proven_as_a_blob():
    sub = _tree((b"40000", b"t", EMPTY_TREE))
    refusal = _check_child([], sub, _tree((b"100644", b"c", EMPTY_TREE)))
    assert refusal is not None and f"names {EMPTY_TREE.hex()} as a blob, it is a tree" in refusal


def test_an_object_copied_from_elsewhere_in_a_parent_is_proven():
    """Not in the trees read beside the pack's: found by the walk below the parents' roots."""
    from gitfs_p2p.pack.packfile import OBJ_TREE, object_id

    elsewhere = _tree((b"100644", b"y", BLOB_Y))
    e = (b"40000", b"e", object_id(OBJ_TREE, elsewhere))
    assert _check_child([e], b"", _tree((b"100644", b"c", BLOB_Y)), [elsewhere]) is None
    assert "neither in the pack nor" in _check_child([e], b"", _tree((b"100644", b"c", b"\x08" * 20)), [elsewhere])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.builds(bytes.__add__, st.sampled_from([b"\x00", b"\x01", b"\x7f", b"\xff"]),
                                    st.binary(min_size=19, max_size=19)) | st.binary(min_size=20, max_size=20),
                          st.integers(0, (1 << 31) - 1) | st.integers(1 << 31, 1 << 40),
                          st.integers(0, (1 << 32) - 1)), max_size=40, unique_by=lambda r: r[0]),
       st.binary(min_size=20, max_size=20))
def test_pack_index_is_the_one_dulwich_writes(rows, checksum):
    """The .idx the importer writes (git/receiving.py) against dulwich's write_pack_index_v2."""
    import io

    from dulwich.pack import write_pack_index_v2

    from gitfs_p2p.git.receiving import pack_index_v2

    rows = sorted(rows)
    theirs = io.BytesIO()
    write_pack_index_v2(theirs, rows, checksum)
    assert pack_index_v2(rows, checksum) == theirs.getvalue()


_DOTTED = [b".git", b".GIT", b".git.", b"git~1", b".gitmodules", b".GITMODULES", b"gitmod~1", b"gi7eba~9",
           b".gitignore", b".gitattributes", b".mailmap", b"mailma~1", b"a\\gitmod~1", b"a\\.gitmodules .",
           b".github", b".coveragerc", b".", b"..", b"a/b", ".g\u200cit".encode(), b"x~y", "é".encode()]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_DOTTED), st.sampled_from([b"100644", b"120000", b"40000", b"160000"]),
                          st.sampled_from([b"\x01" * 20, b"\x02" * 20])), max_size=6),
       st.booleans())
def test_remembered_name_verdicts_report_what_the_rules_report(entries, strict):
    """fsck_tree with _special_name's verdicts remembered (warm, as the second tree of a history
    with the same names sees them) against the rules run on every name (cold)."""
    raw = b"".join(mode + b" " + name + b"\0" + oid for name, mode, oid in entries)
    remembered = fsck._special_name_again
    fsck._special_name_again = fsck._special_name
    try:
        cold = fsck.fsck_tree("ab" * 20, raw, strict=strict)
    finally:
        fsck._special_name_again = remembered
    fsck._NAME_VERDICTS.clear()
    fsck.fsck_tree("ef" * 20, raw, strict=strict)
    warm = fsck.fsck_tree("cd" * 20, raw, strict=strict)
    assert [(f.msg_id, f.message, f.object_type) for f in warm.findings] == \
           [(f.msg_id, f.message, f.object_type) for f in cold.findings]
    assert all(f.object_id == "cd" * 20 for f in warm.findings)
    assert (warm.gitmodules, warm.gitattributes) == (cold.gitmodules, cold.gitattributes)
