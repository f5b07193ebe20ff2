"""The tree reader: the compiled one (_speedups.c) against the Python reference."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitfs_p2p.pack import objects
from gitfs_p2p.pack.objects import ObjectParseError, parse_tree, parse_tree_py, tree_entries, tree_entries_py

MODES = [b"100644", b"100755", b"120000", b"40000", b"040000", b"160000", b"100664", b"0", b"777777777777", b"10"]


@st.composite
def trees(draw):
    out = b""
    for _ in range(draw(st.integers(0, 8))):
        mode = draw(st.sampled_from(MODES) | st.binary(min_size=1, max_size=12).filter(lambda b: b" " not in b))
        name = draw(st.binary(min_size=1, max_size=12).filter(lambda b: b"\0" not in b))
        out += mode + b" " + name + b"\0" + draw(st.binary(min_size=20, max_size=20))
    if draw(st.booleans()):  # damage it: cut, or splice bytes in
        at = draw(st.integers(0, len(out)))
        out = out[:at] + draw(st.binary(max_size=4)) + out[at + draw(st.integers(0, 3)) :]
    return out


def _read(reader, raw):
    try:
        return reader(raw)
    except ObjectParseError as exc:
        return ("refused", str(exc))


def test_the_compiled_reader_is_built():
    """setup builds it; without it the reference reads every tree (same entries, slower)."""
    assert objects._compiled_tree_entries is not None


@settings(max_examples=1000, deadline=None)
@given(trees())
def test_compiled_reader_reads_what_the_reference_reads(raw):
    assert _read(tree_entries, raw) == _read(tree_entries_py, raw)
    assert _read(parse_tree, raw) == _read(parse_tree_py, raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"100644 a\0" + b"\x01" * 20,
        b"100644 a\0" + b"\x01" * 19,  # too short
        b" a\0" + b"\x01" * 20,  # empty mode
        b"100644 \0" + b"\x01" * 20,  # empty name
        b"10064x a\0" + b"\x01" * 20,  # not octal
        b"100644a\0" + b"\x01" * 20,  # no space
        b"44444444444444 big\0" + b"\xff" * 20,  # mode past 32 bits wraps as git's does
        b"100644 a b\0" + b"\x00" * 20 + b"40000 d\0" + b"\xab" * 20,
    ],
)
def test_compiled_reader_on_edges(raw):
    assert _read(tree_entries, raw) == _read(tree_entries_py, raw)
    assert _read(parse_tree, raw) == _read(parse_tree_py, raw)


def test_entries_are_tree_entries():
    (entry,) = tree_entries(b"40000 dir\0" + bytes(range(20)))
    assert type(entry) is objects.TreeEntry
    assert entry == (b"dir", 0o40000, bytes(range(20)).hex().encode(), objects.KIND_TREE)
    assert entry.name == b"dir" and entry.kind == objects.KIND_TREE
    (raw_entry,) = parse_tree(b"040000 dir\0" + bytes(range(20)))
    assert type(raw_entry) is objects.RawTreeEntry
    assert raw_entry == (b"040000", 0o40000, b"dir", bytes(range(20)), objects.KIND_TREE)


@st.composite
def nearly_sorted_trees(draw):
    """Names from a small alphabet, sorted as git sorts them, with duplicates and dirs mixed in."""
    names = draw(st.lists(st.text("ab-./~\\.gmé", min_size=1, max_size=4).map(lambda t: t.encode()), max_size=8))
    entries = sorted((name, draw(st.sampled_from([b"100644", b"40000", b"040000", b"160000"]))) for name in names)
    if draw(st.booleans()):
        entries = sorted(entries, key=lambda e: e[0] + b"/" if e[1].lstrip(b"0") == b"40000" else e[0])
    ids = [draw(st.sampled_from([bytes(20), b"\x01" * 20])) for _ in entries]
    return b"".join(mode + b" " + name + b"\0" + oid for (name, mode), oid in zip(entries, ids))


@settings(max_examples=1000, deadline=None)
@given(trees() | nearly_sorted_trees())
def test_compiled_fsck_scan_agrees_with_the_reference(raw):
    """fsck_tree's per-entry scan (null ids, modes, names worth a look, order and duplicates)."""
    from gitfs_p2p.pack import fsck

    try:
        entries = parse_tree(raw)
    except ObjectParseError:
        return
    assert fsck._compiled_scan(raw, fsck._SPECIAL_FIRST_BYTES) == fsck._tree_scan_py(entries)


def _dir_and_file(between: int) -> bytes:
    """A file `a`, `between` names that sort between it and a directory `a` (`a-0`, `a-1`, ...), then the directory."""
    out = b"100644 a\0" + b"\x01" * 20
    out += b"".join(b"100644 a-%03d\0" % i + b"\x02" * 20 for i in range(between))
    return out + b"40000 a\0" + b"\x03" * 20


@pytest.mark.parametrize(
    "raw",
    [
        _dir_and_file(0),  # the same name as a file's and a directory's, side by side
        _dir_and_file(5),  # ... with names between them (git's sort puts them there)
        _dir_and_file(63),
        _dir_and_file(64),  # the compiled scan's look back ends (SAME_NAME_SCAN): it sorts
        _dir_and_file(200),
        b"40000 a\0" + b"\x01" * 20 + b"100644 a/\0" + b"\x02" * 20,  # a directory's key twice, names unique
        b"100644 a/\0" + b"\x02" * 20 + b"40000 a\0" + b"\x01" * 20,
        b"100644 a\0" + b"\x01" * 20 + b"100644 a\0" + b"\x01" * 20,  # a file twice
        b"".join(b"%s x%d\0" % (m, i) + b"\x01" * 20 for i, m in
                 enumerate([b"100644", b"100755", b"120000", b"40000", b"160000", b"100664", b"40000", b"0100644",
                            b"10", b"100644", b"100600", b"1"])),  # more modes than the scan remembers
    ],
)
def test_compiled_fsck_scan_on_edges(raw):
    from gitfs_p2p.pack import fsck

    assert fsck._compiled_scan(raw, fsck._SPECIAL_FIRST_BYTES) == fsck._tree_scan_py(parse_tree(raw))


@settings(max_examples=1000, deadline=None)
@given(trees() | nearly_sorted_trees() | st.sampled_from([_dir_and_file(n) for n in (0, 3, 64, 70)]),
       st.booleans())
def test_fsck_tree_without_entries_finds_what_it_finds_with_them(raw, strict):
    """The receiver's fsck_tree (keep_entries=False: a plain tree returns early) against the full one."""
    from gitfs_p2p.pack import fsck

    lean = fsck.fsck_tree("ab" * 20, raw, strict=strict, keep_entries=False)
    full = fsck.fsck_tree("ab" * 20, raw, strict=strict)
    assert (lean.findings, lean.gitmodules, lean.gitattributes) == (full.findings, full.gitmodules, full.gitattributes)


@st.composite
def connect_cases(draw):
    """A tree's entries, the pack's objects and parent maps drawn from a few names and ids,
    so that entries are in the pack, in a parent under their name, of the wrong type, or nowhere."""
    ids = [bytes([i]) * 20 for i in range(1, 6)]
    names = [b"a", b"b", b"c.txt", b"d"]
    modes = [(b"100644", 0o100644), (b"40000", 0o40000), (b"160000", 0o160000), (b"120000", 0o120000)]
    entries = []
    for _ in range(draw(st.integers(0, 6))):
        mode_bytes, mode = draw(st.sampled_from(modes))
        entries.append(objects.RawTreeEntry(mode_bytes, mode, draw(st.sampled_from(names)), draw(st.sampled_from(ids)),
                                            objects.mode_kind(mode)))
    types = st.sampled_from([1, 2, 3, 4])
    pack = {oid: (draw(types), b"") for oid in draw(st.lists(st.sampled_from(ids), max_size=5))}
    kinds = st.sampled_from([objects.KIND_BLOB, objects.KIND_TREE, objects.KIND_GITLINK])
    parent_maps = [{name: (draw(kinds), draw(st.sampled_from(ids))) for name in draw(st.lists(st.sampled_from(names)))}
                   for _ in range(draw(st.integers(0, 3)))]
    return entries, pack, parent_maps


@settings(max_examples=1000, deadline=None)
@given(connect_cases())
def test_compiled_connectivity_agrees_with_the_reference(case):
    """Checker.connected's look at one tree, and the parsed-tree map, compiled and in Python."""
    from gitfs_p2p.pack import checker
    from gitfs_p2p.pack.packfile import OBJ_BLOB, OBJ_TREE

    assert checker._connect_tree is not checker._connect_tree_py, "setup builds the compiled twin"
    entries, pack, parent_maps = case
    got = []
    for connect in (checker._connect_tree, checker._connect_tree_py):
        reached, queue, outside = {b"\xff" * 20}, [], []
        bad = connect(entries, pack, parent_maps, reached, queue, outside, b"\xee" * 20,
                      objects.KIND_BLOB, objects.KIND_TREE, objects.KIND_GITLINK, OBJ_BLOB, OBJ_TREE)
        got.append((bad, reached, queue, outside))
    assert got[0] == got[1]
    assert checker._tree_map(entries) == checker._tree_map_py(entries)


@st.composite
def raw_connect_cases(draw):
    """A pack's tree and its parents' trees as raw bytes (sorted as git sorts them, or not, names
    twice or not), and the pack's objects, from a few names and ids."""
    ids = [bytes([i]) * 20 for i in range(1, 6)]
    names = [b"a", b"a-b", b"a.c", b"b", b"d"]
    modes = [b"100644", b"40000", b"040000", b"160000", b"120000", b"100755"]

    def tree():
        entries = [(draw(st.sampled_from(names)), draw(st.sampled_from(modes)), draw(st.sampled_from(ids)))
                   for _ in range(draw(st.integers(0, 6)))]
        if draw(st.booleans()):
            entries = sorted({e[0] + (b"/" if e[1].lstrip(b"0") == b"40000" else b""): e for e in entries}.values(),
                             key=lambda e: e[0] + (b"/" if e[1].lstrip(b"0") == b"40000" else b""))
        return b"".join(mode + b" " + name + b"\0" + oid for name, mode, oid in entries)

    raw = tree()
    parents = [tree() for _ in range(draw(st.integers(0, 3)))]
    pack = {oid: (draw(st.sampled_from([1, 2, 3, 4])), b"") for oid in draw(st.lists(st.sampled_from(ids), max_size=5))}
    return raw, parents, pack


@settings(max_examples=2000, deadline=None)
@given(raw_connect_cases())
def test_compiled_connectivity_on_raw_trees_agrees_with_the_reference(case):
    """connect_raw (raw trees, the pack's ids sorted) against the reference on parsed trees and
    name maps; None (nothing touched) only where a parent's tree holds a name twice or out of order."""
    from gitfs_p2p.pack import checker
    from gitfs_p2p.pack.packfile import OBJ_BLOB, OBJ_TREE

    assert checker._connect_raw is not None, "setup builds the compiled twin"
    raw, parents, pack = case
    kinds = (objects.KIND_BLOB, objects.KIND_TREE, objects.KIND_GITLINK, OBJ_BLOB, OBJ_TREE)
    ids = sorted(pack)
    reached, queue, outside = set(), [], []
    bad = checker._connect_raw(raw, parents, b"".join(ids), bytes(pack[i][0] for i in ids), reached, queue, outside,
                               b"\xee" * 20, *kinds)
    want = ([], [], set())
    ref = checker._connect_tree_py(parse_tree(raw), pack, [checker._tree_map_py(parse_tree(p)) for p in parents],
                                   want[2], want[0], want[1], b"\xee" * 20, *kinds)
    if bad is None:
        assert (reached, queue, outside) == (set(), [], [])
        names = [[e.name for e in parse_tree(p)] for p in parents]
        keys = [[e.name + (b"/" if e.kind == objects.KIND_TREE else b"") for e in parse_tree(p)] for p in parents]
        assert any(len(set(n)) < len(n) or k != sorted(k) for n, k in zip(names, keys))
        return
    assert (bad, queue, outside, reached) == (ref, want[0], want[1], want[2])
