"""Attacks on the receiver, built here as a peer would build them: valid packs and manifests.

Each hostile commit sits on top of a history already imported, in a pack with a valid
trailer, named for its commit, with a manifest (valid checksum) moving main onto it.
Real git judges the outcome: the pack is quarantined with its reason, main does not
move, and `git fsck --full` stays clean.  Then: strict mode (transfer.fsckObjects) as
git applies it, manifests that reach outside refs/heads and refs/tags, a bad manifest
beside good files, a non-bare repository someone works in, and a huge manifest.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from wsupport import (
    OBJ_BLOB,
    OBJ_COMMIT,
    OBJ_TREE,
    deliver,
    fsck_clean,
    oid_hex,
    raw_entry,
    raw_pack,
    refs_of,
    write_manifest,
)

from gitfs_p2p.pack.manifest import RefManifest
from gitfs_p2p.receive.importer import Importer
from testutil import git

BASE = 10
IDENT = b"A U Thor <a@example.invalid> 1600000000 +0000"


def _tree_entries(repo: str, tree: str) -> list[tuple[bytes, bytes, bytes]]:
    """(mode, name, binary id) of a tree, read with git."""
    raw = subprocess.run(["git", "-C", repo, "cat-file", "tree", tree], capture_output=True, check=True).stdout
    out, pos = [], 0
    while pos < len(raw):
        sp = raw.index(b" ", pos)
        nul = raw.index(b"\0", sp)
        out.append((raw[pos:sp], raw[sp + 1 : nul], raw[nul + 1 : nul + 21]))
        pos = nul + 21
    return out


def _git_order(entries):
    return sorted(entries, key=lambda e: e[1] + (b"/" if e[0] in (b"40000", b"040000") else b""))


def _tree_bytes(entries) -> bytes:
    return b"".join(mode + b" " + name + b"\0" + oid for mode, name, oid in entries)


def _commit(tree: str, parent: str, author: bytes = IDENT, msg: bytes = b"hostile\n") -> bytes:
    return b"tree %s\nparent %s\nauthor %s\ncommitter %s\n\n%s" % (tree.encode(), parent.encode(), author, IDENT, msg)


def _child(sender, added, *, sort: bool = True, author: bytes = IDENT):
    """A commit on the base tip whose root tree is the tip's plus `added` (mode, name, type, bytes)."""
    tip = sender.commits[BASE - 1]
    root = git("rev-parse", f"{tip}^{{tree}}", cwd=sender.path).strip()
    entries = _tree_entries(sender.path, root)
    objects = []
    for mode, name, type_num, data in added:
        entries.append((mode, name, bytes.fromhex(oid_hex(type_num, data))))
        objects.append(raw_entry(type_num, data))
    if sort:
        entries = _git_order(entries)
    tree = _tree_bytes(entries)
    commit = _commit(oid_hex(OBJ_TREE, tree), tip, author)
    cid = oid_hex(OBJ_COMMIT, commit)
    return cid, raw_pack([raw_entry(OBJ_COMMIT, commit), raw_entry(OBJ_TREE, tree), *objects])


def _blob(name: bytes, text: bytes, mode: bytes = b"100644"):
    return (mode, name, OBJ_BLOB, text)


def case_gitmodules_url_runs_a_command(s):
    return _child(s, [_blob(b".gitmodules", b'[submodule "x"]\n\tpath = x\n\turl = --upload-pack=touch${IFS}pwned\n')]), "gitmodulesUrl"


def case_gitmodules_name_climbs_into_hooks(s):
    return _child(s, [_blob(b".gitmodules", b'[submodule "../../../../hooks"]\n\tpath = a\n\turl = ./a\n')]), "gitmodulesName"


def case_gitmodules_is_a_symlink(s):
    return _child(s, [_blob(b".gitmodules", b"../../../etc/passwd", b"120000")]), "gitmodulesSymlink"


def case_commit_tree_is_a_blob(s):
    blob = b"not a tree\n"
    commit = _commit(oid_hex(OBJ_BLOB, blob), s.commits[BASE - 1])
    cid = oid_hex(OBJ_COMMIT, commit)
    return (cid, raw_pack([raw_entry(OBJ_COMMIT, commit), raw_entry(OBJ_BLOB, blob)])), "is a blob"


def case_entry_names_a_blob_of_the_repository_as_a_tree(s):
    tip = s.commits[BASE - 1]
    root = git("rev-parse", f"{tip}^{{tree}}", cwd=s.path).strip()
    listing = git("ls-tree", "-r", tip, cwd=s.path).splitlines()
    some_blob = bytes.fromhex(next(line.split()[2] for line in listing if line.split()[1] == "blob"))
    entries = _git_order(_tree_entries(s.path, root) + [(b"40000", b"zzz-dir", some_blob)])
    tree = _tree_bytes(entries)
    commit = _commit(oid_hex(OBJ_TREE, tree), tip)
    pack = raw_pack([raw_entry(OBJ_COMMIT, commit), raw_entry(OBJ_TREE, tree)])
    return (oid_hex(OBJ_COMMIT, commit), pack), "as a tree, it is a blob"


def case_duplicate_entries_not_adjacent(s):
    sub = b"100644 f\0" + bytes.fromhex(oid_hex(OBJ_BLOB, b"x\n"))
    added = [_blob(b"a", b"file a\n"), _blob(b"a-b", b"file a-b\n"), (b"40000", b"a", OBJ_TREE, sub)]
    cid, pack = _child(s, added)
    return (cid, pack), "duplicateEntries"


def case_parent_names_a_tree(s):
    """A commit whose parent line names a tree of the repository: refused, not left waiting."""
    tip = s.commits[BASE - 1]
    root = git("rev-parse", f"{tip}^{{tree}}", cwd=s.path).strip()
    commit = _commit(root, root)
    return (oid_hex(OBJ_COMMIT, commit), raw_pack([raw_entry(OBJ_COMMIT, commit)])), "is a tree, not a commit"


def case_huge_malformed_tree(s):
    """1 MB of a tree that git cannot read: refused at once (an unanchored parse took hours)."""
    tree = b"0 " * 500_000
    commit = _commit(oid_hex(OBJ_TREE, tree), s.commits[BASE - 1])
    pack = raw_pack([raw_entry(OBJ_COMMIT, commit), raw_entry(OBJ_TREE, tree)])
    return (oid_hex(OBJ_COMMIT, commit), pack), "badTree"


def case_nul_in_author_line(s):
    return _child(s, [_blob(b"new.txt", b"new\n")], author=b"A U\0Thor <a@example.invalid> 1600000000 +0000"), "nulInHeader"


@pytest.mark.parametrize("name", [b".git.", b"git~1", ".g\u200cit".encode(), b".GIT", b"a\\.git"])
def test_every_dotgit_spelling_is_refused(importer, sender, name):
    imp, d, repo = importer
    (cid, pack) = _child(sender, [(b"40000", name, OBJ_TREE, b"100644 config\0" + bytes.fromhex(
        oid_hex(OBJ_BLOB, b"[core]\n\tfsmonitor = evil\n"))), _blob(b"payload", b"[core]\n\tfsmonitor = evil\n")])
    _refused(imp, d, repo, sender, cid, pack, "hasDotgit")


CASES = {n[5:]: f for n, f in sorted(globals().items()) if n.startswith("case_")}


@pytest.fixture
def importer(tmp_path, sender):
    d, repo = tmp_path / "dl", tmp_path / "repo"
    deliver(str(d), sender, sender.commits[:BASE])
    write_manifest(str(d), sender.manifest({"refs/heads/main": sender.commits[BASE - 1]}))
    with Importer(str(d), str(repo), bare=True, settle=0.0) as imp:
        imp.run_pass(final=True)
        assert refs_of(str(repo)) == {"refs/heads/main": sender.commits[BASE - 1]}
        yield imp, d, repo


def _refused(imp, d, repo, sender, cid, pack, reason):
    (d / "packs" / f"{cid}.pack").write_bytes(pack)
    write_manifest(str(d), sender.manifest({"refs/heads/main": cid}))  # replaces the base manifest
    result = imp.run_pass(final=True)
    assert [r for _, r in result.quarantined if reason in r], (result.quarantined, reason)
    assert refs_of(str(repo)) == {"refs/heads/main": sender.commits[BASE - 1]}
    assert result.refs_waiting == {"refs/heads/main": cid}
    ok, text = fsck_clean(str(repo))
    assert ok, text
    assert subprocess.run(["git", "-C", str(repo), "cat-file", "-e", cid]).returncode != 0


@pytest.mark.parametrize("case", sorted(CASES))
def test_harmful_objects_are_refused(importer, sender, case):
    imp, d, repo = importer
    (cid, pack), reason = CASES[case](sender)
    _refused(imp, d, repo, sender, cid, pack, reason)


def test_hfs_dotgit_ending_in_a_noncharacter_is_refused(importer, sender):
    """git reads U+FFFE/U+FFFF as the end of a name when it compares it with .git (HFS+)."""
    imp, d, repo = importer
    sub = b"100644 config\0" + bytes.fromhex(oid_hex(OBJ_BLOB, b"x\n"))
    cid, pack = _child(sender, [(b"40000", b".git\xef\xbf\xbe", OBJ_TREE, sub), _blob(b"xx", b"x\n")])
    _refused(imp, d, repo, sender, cid, pack, "hasDotgit")


def test_a_dangling_tree_in_the_repository_proves_nothing(importer, sender):
    """A tree lying in REPO (not reachable from any ref or import) with a missing blob: a commit
    naming it must not be taken as complete because the tree object is present."""
    imp, d, repo = importer
    planted = git("hash-object", "-w", "--literally", "-t", "tree", "--stdin", cwd=repo,
                  input=b"100644 gone\0" + b"\x42" * 20).strip()
    commit = _commit(planted, sender.commits[BASE - 1])
    cid = oid_hex(OBJ_COMMIT, commit)
    (d / "packs" / f"{cid}.pack").write_bytes(raw_pack([raw_entry(OBJ_COMMIT, commit)]))
    write_manifest(str(d), sender.manifest({"refs/heads/main": cid}))  # replaces the base manifest
    result = imp.run_pass(final=True)
    assert [r for _, r in result.quarantined if "no complete history holds it" in r], result.quarantined
    assert refs_of(str(repo)) == {"refs/heads/main": sender.commits[BASE - 1]}


def _strict_case(sender):
    return _child(sender, [_blob(b"tz.txt", b"a commit from 2011\n")],
                  author=b"A U Thor <a@example.invalid> 1313584730 +051800")


@pytest.mark.parametrize(
    "config, accepted",
    [
        ([], True),  # git fetch's default: badTimezone is not checked
        ([("transfer.fsckObjects", "true")], False),
        ([("fetch.fsckObjects", "true")], False),
        ([("transfer.fsckObjects", "true"), ("fetch.fsckObjects", "false")], True),
        ([("transfer.fsckObjects", "true"), ("fetch.fsck.badTimezone", "ignore")], True),
        ([("transfer.fsckObjects", "true"), ("fsck.badTimezone", "warn")], True),  # configured: stays a warning
        ([("transfer.fsckObjects", "true"), ("fetch.fsck.badTimezone", "error")], False),
        ([("transfer.fsckObjects", "true"), ("fetch.fsck.skipList", "SKIPLIST")], True),
    ],
)
def test_strict_mode_is_gits(tmp_path, sender, config, accepted):
    d, repo = tmp_path / "dl", tmp_path / "repo"
    deliver(str(d), sender, sender.commits[:BASE])
    git("init", "-q", "--bare", str(repo))
    cid, pack = _strict_case(sender)
    (tmp_path / "skip").write_text(f"# objects let through\n{cid}\n")
    for key, value in config:
        git("config", key, str(tmp_path / "skip") if value == "SKIPLIST" else value, cwd=repo)
    (d / "packs" / f"{cid}.pack").write_bytes(pack)
    write_manifest(str(d), sender.manifest({"refs/heads/main": cid}))
    with Importer(str(d), str(repo), bare=True, settle=0.0) as imp:
        result = imp.run_pass(final=True)
    if accepted:
        assert refs_of(str(repo)) == {"refs/heads/main": cid}, result.quarantined
    else:
        assert [r for _, r in result.quarantined if "badTimezone" in r], result.quarantined
        assert refs_of(str(repo)) == {}
        # git itself, strictly, refuses the same pack (in a scratch copy of the history below it)
        scratch = tmp_path / "scratch"
        git("clone", "-q", "--mirror", str(repo), str(scratch))
        proc = subprocess.run(["git", "-C", str(scratch), "index-pack", "--strict", "--stdin", "--fix-thin"],
                              input=pack, capture_output=True)
        assert proc.returncode != 0 and b"badTimezone" in proc.stderr


def _manifest_file(d, name: str, lines: list[bytes]) -> None:
    import hashlib

    body = b"# gitp2p ref manifest 2\n" + b"".join(line + b"\n" for line in lines)
    (d / "packs" / name).write_bytes(body + b"# sha256 " + hashlib.sha256(body).hexdigest().encode() + b"\n")


def test_bad_manifests_are_quarantined_and_the_rest_proceeds(tmp_path, sender):
    d, repo = tmp_path / "dl", tmp_path / "repo"
    deliver(str(d), sender, sender.commits)
    other = sender.commits[5]
    _manifest_file(d, "replace.gitp2p-refs", [f"{other} refs/replace/{sender.refs['refs/heads/main']}".encode()])
    _manifest_file(d, "selfhead.gitp2p-refs", [b"ref: HEAD HEAD"])
    write_manifest(str(d), sender.manifest())
    proc = subprocess.run([sys.executable, "-m", "gitfs_p2p.cli", "watch", str(d), "--into", str(repo), "--bare",
                           "--once"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr  # two files were refused
    assert "quarantined packs/replace.gitp2p-refs" in proc.stderr and "only branches" in proc.stderr
    assert "quarantined packs/selfhead.gitp2p-refs" in proc.stderr and "HEAD may only point at a branch" in proc.stderr
    assert refs_of(str(repo)) == sender.refs
    assert not git("for-each-ref", "refs/replace", cwd=repo).strip()
    assert git("log", "-1", "--format=%H", "main", cwd=repo).strip() == sender.refs["refs/heads/main"]
    again = subprocess.run([sys.executable, "-m", "gitfs_p2p.cli", "watch", str(d), "--into", str(repo), "--bare",
                            "--once"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr  # the bad files are gone; everything is in


def test_a_branch_someone_works_on_never_moves(tmp_path, sender):
    """`--into` a non-bare repository with work in progress: branches arrive under
    refs/remotes/gitp2p/, the checked-out branch and the work tree stay as they were."""
    work = tmp_path / "work"
    git("clone", "-q", "--no-local", sender.path, str(work))
    git("reset", "-q", "--hard", sender.commits[BASE - 1], cwd=work)
    (work / "mine.txt").write_text("uncommitted work\n")
    git("add", "mine.txt", cwd=work)
    status_before = git("status", "--porcelain", cwd=work)
    local_main = git("rev-parse", "main", cwd=work).strip()
    d = tmp_path / "dl"
    deliver(str(d), sender, sender.commits)
    write_manifest(str(d), sender.manifest())
    proc = subprocess.run([sys.executable, "-m", "gitfs_p2p.cli", "watch", str(d), "--into", str(work), "--once"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert git("rev-parse", "main", cwd=work).strip() == local_main
    assert git("status", "--porcelain", cwd=work) == status_before
    assert git("rev-parse", "refs/remotes/gitp2p/main", cwd=work).strip() == sender.refs["refs/heads/main"]
    assert "git merge gitp2p/main" in proc.stderr
    git("merge", "-q", "--ff-only", "gitp2p/main", cwd=work)  # what the message says works
    assert git("rev-parse", "main", cwd=work).strip() == sender.refs["refs/heads/main"]


@pytest.mark.parametrize("how", ["REPO/.git", "linked worktree"])
def test_checked_out_branches_never_move_however_repo_is_named(tmp_path, sender, how):
    d = tmp_path / "dl"
    deliver(str(d), sender, sender.commits)
    write_manifest(str(d), sender.manifest())
    old = sender.commits[BASE - 1]
    if how == "REPO/.git":
        work = tmp_path / "work"
        git("clone", "-q", "--no-local", sender.path, str(work))
        git("reset", "-q", "--hard", old, cwd=work)
        into, checkout = work / ".git", work
    else:  # a bare mirror with a linked worktree on main: git fetch would refuse to move main
        into = tmp_path / "mirror.git"
        git("clone", "-q", "--bare", "--no-local", sender.path, str(into))
        git("update-ref", "refs/heads/main", old, cwd=into)
        checkout = tmp_path / "wt"
        git("worktree", "add", "-q", str(checkout), "main", cwd=into)
    status = git("status", "--porcelain", cwd=checkout)
    proc = subprocess.run([sys.executable, "-m", "gitfs_p2p.cli", "watch", str(d), "--into", str(into), "--once"],
                          capture_output=True, text=True, timeout=300)
    assert git("rev-parse", "main", cwd=checkout).strip() == old, proc.stderr
    assert git("status", "--porcelain", cwd=checkout) == status
    if how == "linked worktree":
        assert proc.returncode == 3 and "checked out in" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        assert git("rev-parse", "refs/remotes/gitp2p/main", cwd=checkout).strip() == sender.refs["refs/heads/main"]


def test_a_first_checkout_killed_midway_is_finished_by_the_next_run(tmp_path, sender):
    d, work = tmp_path / "dl", tmp_path / "new"
    deliver(str(d), sender, sender.commits)
    write_manifest(str(d), sender.manifest())
    killed = subprocess.run([sys.executable, "-m", "gitfs_p2p.testing.crashing", "during-checkout", "watch", str(d),
                             "--into", str(work), "--once"], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    again = subprocess.run([sys.executable, "-m", "gitfs_p2p.cli", "watch", str(d), "--into", str(work), "--once"],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert git("status", "--porcelain", cwd=work) == ""
    assert git("rev-parse", "HEAD", cwd=work).strip() == sender.refs["refs/heads/main"]


def test_a_branch_naming_a_tag_is_refused_with_a_reason(tmp_path, sender):
    d, repo = tmp_path / "dl", tmp_path / "repo"
    deliver(str(d), sender, sender.commits)
    tag = ("object %s\ntype commit\ntag t\ntagger T <t@x> 1600000000 +0000\n\nt\n" % sender.commits[-1]).encode()
    tid = oid_hex(4, tag)
    (d / "packs" / f"{tid}.pack").write_bytes(raw_pack([raw_entry(4, tag)]))
    write_manifest(str(d), RefManifest({"refs/heads/odd": tid, "refs/tags/t": tid}, None).to_bytes())
    proc = subprocess.run([sys.executable, "-m", "gitfs_p2p.cli", "watch", str(d), "--into", str(repo), "--bare",
                           "--once"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3 and "refs/heads/odd not updated" in proc.stderr and "not a commit" in proc.stderr
    assert refs_of(str(repo)) == {"refs/tags/t": tid}


def test_a_new_non_bare_repository_is_a_clone(tmp_path, sender):
    d, work = tmp_path / "dl", tmp_path / "new"
    deliver(str(d), sender, sender.commits)
    write_manifest(str(d), sender.manifest())
    proc = subprocess.run([sys.executable, "-m", "gitfs_p2p.cli", "watch", str(d), "--into", str(work), "--once"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert git("status", "--porcelain", cwd=work) == ""
    assert git("rev-parse", "HEAD", cwd=work).strip() == sender.refs["refs/heads/main"]
    assert git("symbolic-ref", "refs/remotes/gitp2p/HEAD", cwd=work).strip() == "refs/remotes/gitp2p/main"
    assert set(git("for-each-ref", "--format=%(refname)", "refs/remotes/gitp2p", cwd=work).split()) == {
        "refs/remotes/gitp2p/HEAD", "refs/remotes/gitp2p/main", "refs/remotes/gitp2p/feature-34"}


def test_a_huge_manifest_is_one_transaction_with_bounded_output(tmp_path, sender):
    n = 30_000
    d, repo = tmp_path / "dl", tmp_path / "repo"
    deliver(str(d), sender, sender.commits)
    refs = {f"refs/tags/t{i:05d}": sender.commits[i % len(sender.commits)] for i in range(n)}
    write_manifest(str(d), RefManifest({**sender.refs, **refs}, sender.head).to_bytes())
    proc = subprocess.run([sys.executable, "-m", "gitfs_p2p.cli", "watch", str(d), "--into", str(repo), "--bare",
                           "--once"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(proc.stderr.splitlines()) < 60 and "more refs set" in proc.stderr
    assert len(refs_of(str(repo))) == n + len(sender.refs)
    loose = subprocess.run(["find", str(repo / "refs"), "-type", "f"], capture_output=True, text=True).stdout
    assert len(loose.splitlines()) < 100, "refs were left loose"
    again = subprocess.run([sys.executable, "-m", "gitfs_p2p.cli", "watch", str(d), "--into", str(repo), "--bare",
                            "--once"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "refs set" not in again.stderr and "created" not in again.stderr
