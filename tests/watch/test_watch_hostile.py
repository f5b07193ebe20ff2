"""A corpus of hostile files, built here: each is rejected with its reason and REPO does not change."""

from __future__ import annotations

import os
import time
import zlib

import pytest

from wsupport import (
    OBJ_BLOB,
    OBJ_COMMIT,
    OBJ_REF_DELTA,
    OBJ_TREE,
    commit_raw,
    deliver,
    delta,
    fsck_clean,
    object_files,
    oid_hex,
    random_bytes,
    raw_entry,
    raw_pack,
    refs_of,
    tree_raw,
    write_manifest,
)

from gitfs_p2p.receive.importer import Importer
from gitfs_p2p.pack.fsck import FsckPolicy, fsck_tree
from gitfs_p2p.pack.objects import ObjectParseError, parse_commit
from gitfs_p2p.pack.verify import PackIncomplete, check_complete, looks_partial

BASE = 10  # commits already imported before each hostile file arrives


def _blob_tree_commit(blobs: dict[bytes, bytes], parents=()):
    """Entries of a small root commit: blobs by name, one tree, one commit."""
    tree = tree_raw([(b"100644", name, bytes.fromhex(oid_hex(OBJ_BLOB, data))) for name, data in sorted(blobs.items())])
    tree_id = oid_hex(OBJ_TREE, tree)
    commit = commit_raw(tree_id, parents)
    return tree, commit, oid_hex(OBJ_COMMIT, commit)


def case_truncated(s):
    c = s.commits[BASE]
    data = s.packs[c]
    cut = len(data) * 2 // 3
    while data[cut - 1] == 0:
        cut -= 1
    return f"{c}.pack", data[:cut], "trailing SHA-1 does not match"


def case_bad_trailer(s):
    c = s.commits[BASE]
    data = bytearray(s.packs[c])
    data[-1] = 0x5A if data[-1] != 0x5A else 0x5B
    return f"{c}.pack", bytes(data), "trailing SHA-1 does not match"


def case_wrong_name(s):
    return f"{s.commits[BASE + 1]}.pack", s.packs[s.commits[BASE]], "which the pack does not hold"


def case_missing_base(s):
    blob = b"hello\n" * 40
    tree, commit, cid = _blob_tree_commit({b"a.txt": blob})
    fake_base = b"\x42" * 20
    entries = [raw_entry(OBJ_COMMIT, commit), raw_entry(OBJ_TREE, tree), raw_entry(OBJ_REF_DELTA, delta(b"x" * 300, blob), base=fake_base)]
    return f"{cid}.pack", raw_pack(entries), "never resolve"


def case_missing_base_with_present_parent(s):
    parent = s.commits[BASE - 1]  # already in REPO
    blob = b"new content\n" * 30
    tree, commit, cid = _blob_tree_commit({b"b.txt": blob}, parents=(parent,))
    entries = [raw_entry(OBJ_COMMIT, commit), raw_entry(OBJ_TREE, tree), raw_entry(OBJ_REF_DELTA, delta(b"y" * 200, blob), base=b"\x07" * 20)]
    return f"{cid}.pack", raw_pack(entries), "never resolve"


def case_delta_cycle(s):
    x = b"first blob, long enough to delta well\n" * 20
    y = b"second blob, long enough to delta well\n" * 20
    tree, commit, cid = _blob_tree_commit({b"x": x, b"y": y})
    x_id, y_id = bytes.fromhex(oid_hex(OBJ_BLOB, x)), bytes.fromhex(oid_hex(OBJ_BLOB, y))
    entries = [
        raw_entry(OBJ_COMMIT, commit),
        raw_entry(OBJ_TREE, tree),
        raw_entry(OBJ_REF_DELTA, delta(y, x), base=y_id),  # x needs y
        raw_entry(OBJ_REF_DELTA, delta(x, y), base=x_id),  # y needs x
    ]
    return f"{cid}.pack", raw_pack(entries), "delta cycle"


def case_huge_declared_size(s):
    tree, commit, cid = _blob_tree_commit({b"big": b"tiny"})
    entries = [raw_entry(OBJ_COMMIT, commit), raw_entry(OBJ_TREE, tree), raw_entry(OBJ_BLOB, b"tiny", declared=1 << 40)]
    return f"{cid}.pack", raw_pack(entries), "more than the bound"


def case_zip_bomb(s):
    """A blob that declares 4 bytes and inflates to 256 MiB of zeros: stopped after 5."""
    bomb = zlib.compressobj(9)
    compressed = b"".join(bomb.compress(bytes(1 << 20)) for _ in range(256)) + bomb.flush()
    tree, commit, cid = _blob_tree_commit({b"bomb": b"zero"})
    entries = [raw_entry(OBJ_COMMIT, commit), raw_entry(OBJ_TREE, tree), bytes([OBJ_BLOB << 4 | 4]) + compressed]
    return f"{cid}.pack", raw_pack(entries), "inflates past its declared size"


def case_many_huge_objects(s):
    """Objects each declaring 500 MiB (under the per-object bound) that hold one byte: nothing big is allocated."""
    tree, commit, cid = _blob_tree_commit({b"a": b"a"})
    entries = [raw_entry(OBJ_COMMIT, commit), raw_entry(OBJ_TREE, tree)]
    entries += [raw_entry(OBJ_BLOB, b"a", declared=500 << 20) for _ in range(8)]
    return f"{cid}.pack", raw_pack(entries), "inflates to 1 bytes, declared 524288000"


def case_delta_bomb(s):
    base = b"base blob\n" * 10
    tree, commit, cid = _blob_tree_commit({b"base": base})
    bomb = bytes([len(base)]) + b"\x80\x80\x80\x80\x10" + b"\x90\x00" * 4  # result size 2^39
    entries = [raw_entry(OBJ_COMMIT, commit), raw_entry(OBJ_TREE, tree), raw_entry(OBJ_BLOB, base),
               raw_entry(OBJ_REF_DELTA, bomb, base=bytes.fromhex(oid_hex(OBJ_BLOB, base)))]
    return f"{cid}.pack", raw_pack(entries), "exceeds the bound"


def case_huge_object_count(s):
    c = s.commits[BASE]
    return f"{c}.pack", raw_pack([raw_entry(OBJ_BLOB, b"x")], count=1 << 31), "more than the bound"


def case_bad_signature(s):
    return f"{s.commits[BASE]}.pack", raw_pack([raw_entry(OBJ_BLOB, b"x")], magic=b"KCAP"), "missing PACK signature"


def case_bad_version(s):
    return f"{s.commits[BASE]}.pack", raw_pack([raw_entry(OBJ_BLOB, b"x")], version=99), "unsupported pack version"


def case_random_bytes(s):
    return f"{s.commits[BASE]}.pack", random_bytes(5000, 1), "trailing SHA-1 does not match"


def case_random_bytes_with_trailer(s):
    import hashlib

    body = random_bytes(5000, 2)
    return f"{s.commits[BASE]}.pack", body + hashlib.sha1(body).digest(), "missing PACK signature"


def case_unsafe_tree_name(s):
    blob = b"[core]\n\tfsmonitor = evil\n"
    tree = tree_raw([(b"100644", b".git", bytes.fromhex(oid_hex(OBJ_BLOB, blob)))])
    commit = commit_raw(oid_hex(OBJ_TREE, tree))
    cid = oid_hex(OBJ_COMMIT, commit)
    entries = [raw_entry(OBJ_COMMIT, commit), raw_entry(OBJ_TREE, tree), raw_entry(OBJ_BLOB, blob)]
    return f"{cid}.pack", raw_pack(entries), "unsafe name"


def case_tree_names_missing_object(s):
    tree = tree_raw([(b"100644", b"gone", b"\x13" * 20)])
    commit = commit_raw(oid_hex(OBJ_TREE, tree))
    cid = oid_hex(OBJ_COMMIT, commit)
    return f"{cid}.pack", raw_pack([raw_entry(OBJ_COMMIT, commit), raw_entry(OBJ_TREE, tree)]), "neither in the pack nor"


def case_not_a_commit(s):
    blob = b"just a blob\n"
    return f"{oid_hex(OBJ_BLOB, blob)}.pack", raw_pack([raw_entry(OBJ_BLOB, blob)]), "not a commit"


def case_bad_manifest(s):
    import hashlib

    body = b"# gitp2p ref manifest 1\n" + s.commits[0].encode() + b" refs/heads/../../escape\n"
    return "evil.gitp2p-refs", body + b"# sha256 " + hashlib.sha256(body).hexdigest().encode() + b"\n", "unsafe or invalid ref name"


CASES = {name[5:]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}


@pytest.fixture
def base_repo(tmp_path, sender):
    """DIR with the first BASE commits already imported into REPO; returns (dir, repo)."""
    d, repo = tmp_path / "dl", tmp_path / "repo"
    deliver(str(d), sender, sender.commits[:BASE])
    write_manifest(str(d), sender.manifest({"refs/heads/main": sender.commits[BASE - 1]}))
    with Importer(str(d), str(repo), bare=True) as imp:
        imp.run_pass(final=True)
    assert refs_of(str(repo)) == {"refs/heads/main": sender.commits[BASE - 1]}
    return d, repo


def _snapshot(repo):
    return refs_of(str(repo)), object_files(str(repo))


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_file_is_quarantined(base_repo, sender, case):
    d, repo = base_repo
    name, data, reason = CASES[case](sender)
    before = _snapshot(repo)
    path = d / "packs" / name
    path.write_bytes(data)
    with Importer(str(d), str(repo), bare=True, settle=0.0) as imp:
        result = imp.run_pass(final=True)
        assert [r for _, r in result.quarantined if reason in r], (result.quarantined, reason)
        assert not path.exists()
        qdir = os.path.join(imp.quarantine_dir)
    assert _snapshot(repo) == before
    ok, text = fsck_clean(str(repo))
    assert ok, text
    log_lines = open(os.path.join(qdir, "log")).read().splitlines()
    assert len(log_lines) == 1 and name in log_lines[0] and reason in log_lines[0]
    moved = [f for f in os.listdir(qdir) if f.endswith(name)]
    assert len(moved) == 1 and open(os.path.join(qdir, moved[0]), "rb").read() == data


def test_empty_and_zero_filled_files_wait_and_are_never_imported(base_repo, sender):
    """They are what a client's missing pieces look like: reported incomplete, never quarantined."""
    d, repo = base_repo
    before = _snapshot(repo)
    c = sender.commits[BASE]
    (d / "packs" / f"{c}.pack").write_bytes(b"")
    zero = d / "packs" / f"{sender.commits[BASE + 1]}.pack"
    zero.write_bytes(bytes(len(sender.packs[sender.commits[BASE + 1]])))
    with Importer(str(d), str(repo), bare=True, settle=0.0) as imp:
        result = imp.run_pass(final=True)
    assert not result.quarantined
    assert len(result.incomplete) == 2
    assert (d / "packs" / f"{c}.pack").exists() and zero.exists()
    assert _snapshot(repo) == before


def test_directory_named_like_a_pack_is_ignored(base_repo, sender):
    d, repo = base_repo
    before = _snapshot(repo)
    weird = d / "packs" / f"{sender.commits[BASE]}.pack"
    weird.mkdir()
    reports = []
    with Importer(str(d), str(repo), bare=True, settle=0.0, report=reports.append) as imp:
        result = imp.run_pass(final=True)
    assert weird.is_dir() and not result.quarantined
    assert any("a directory, not a file" in r for r in reports)
    assert _snapshot(repo) == before


def test_symlink_out_of_dir_is_never_followed(base_repo, sender, tmp_path):
    """Even a valid pack is not imported through a link; the link goes to quarantine, its target stays."""
    d, repo = base_repo
    before = _snapshot(repo)
    c = sender.commits[BASE]
    outside = tmp_path / "outside.pack"
    outside.write_bytes(sender.packs[c])
    link = d / "packs" / f"{c}.pack"
    link.symlink_to(outside)
    dirlink = d / "packs" / "elsewhere"
    (tmp_path / "elsewhere").mkdir()
    deliver(str(tmp_path), sender, [sender.commits[BASE + 1]], sub="elsewhere")
    dirlink.symlink_to(tmp_path / "elsewhere")
    with Importer(str(d), str(repo), bare=True, settle=0.0) as imp:
        result = imp.run_pass(final=True)
        assert [r for _, r in result.quarantined if "symbolic link" in r]
        assert not os.path.lexists(link)
        moved = [f for f in os.listdir(imp.quarantine_dir) if f.endswith(".pack")]
        assert len(moved) == 1 and os.path.islink(os.path.join(imp.quarantine_dir, moved[0]))
    assert outside.read_bytes() == sender.packs[c]
    assert (tmp_path / "elsewhere" / f"{sender.commits[BASE + 1]}.pack").exists()
    assert _snapshot(repo) == before


def test_incomplete_file_is_quarantined_only_after_settling(base_repo, sender):
    """Trailer mismatch, not zero-filled: left alone while recent, quarantined once unchanged for --settle."""
    d, repo = base_repo
    name, data, _ = case_truncated(sender)
    path = d / "packs" / name
    path.write_bytes(data)
    with Importer(str(d), str(repo), bare=True, settle=60.0) as imp:
        result = imp.run_pass(final=True)
        assert not result.quarantined and result.incomplete == [f"packs/{name}"]
        old = time.time() - 120
        os.utime(path, (old, old))
        # a client's control file says the download is still running: still left alone
        aria2 = d / "packs.aria2"
        aria2.write_bytes(b"control")
        result = imp.run_pass(final=True)
        assert not result.quarantined
        aria2.unlink()
        result = imp.run_pass(final=True)
        assert result.quarantined and "unchanged for 60s" in result.quarantined[0][1]


def test_a_waiting_pack_is_not_quarantined(base_repo, sender):
    """Valid but its parent is missing: it waits in place and goes in when the parent arrives."""
    d, repo = base_repo
    child = sender.commits[BASE + 1]
    deliver(str(d), sender, [child])
    with Importer(str(d), str(repo), bare=True, settle=0.0) as imp:
        result = imp.run_pass(final=True)
        assert not result.quarantined and child in result.waiting
        assert (d / "packs" / f"{child}.pack").exists()


# -- the pure checks, fed bytes ------------------------------------------------------


def test_looks_partial():
    assert looks_partial(b"")
    assert looks_partial(bytes(100))
    assert looks_partial(b"PACK" + bytes(100) + b"x")
    assert looks_partial(b"PACKabc\0")
    assert not looks_partial(random_bytes(1000, 3))


def test_check_complete_classifies():
    with pytest.raises(PackIncomplete) as e:
        check_complete(bytes(64))
    assert e.value.partial
    with pytest.raises(PackIncomplete) as e:
        check_complete(random_bytes(64, 4))
    assert not e.value.partial


def test_tree_and_commit_checks_by_default():
    """What git fetch accepts passes (fsck errors it does not check by default); names a
    checkout could turn against the user never do (see docs/watcher.md)."""
    oid = b"\x01" * 20
    policy = FsckPolicy()

    def refused(raw: bytes) -> bool:
        return policy.first_refusal(fsck_tree("ab" * 20, raw).findings) is not None

    assert not refused(tree_raw([(b"100644", b"a", oid), (b"40000", b"b", oid)]))
    assert not refused(tree_raw([(b"100644", b"b", oid), (b"100644", b"a", oid)]))  # unsorted: fetch takes it
    assert not refused(tree_raw([(b"0100644", b"a", oid)]))  # zero-padded mode
    assert not refused(tree_raw([(b"100664", b"a", oid)]))  # old group-writable mode
    for bad in (
        tree_raw([(b"100644", b"a", oid), (b"40000", b"a", oid)]),  # a name twice
        tree_raw([(b"100644", b"..", oid)]),
        tree_raw([(b"100644", b"a/b", oid)]),
        tree_raw([(b"40000", b".GIT", oid)]),
        b"100644 a\0short",  # git cannot read it
    ):
        assert refused(bad), bad
    good = commit_raw("ab" * 20, ["cd" * 20])
    assert parse_commit(good).parents == ("cd" * 20,)
    # no e-mail: git fsck says missingEmail, git fetch takes it, so do we
    assert parse_commit(good.replace(b"<a@example.invalid>", b"a@example.invalid")).tree == "ab" * 20
    with pytest.raises(ObjectParseError):
        parse_commit(b"tree " + b"zz" * 20 + b"\n\n")
