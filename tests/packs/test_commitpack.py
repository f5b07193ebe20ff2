"""Commit packs against real git: object sets, thinness, import, determinism across clones."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest
from dulwich import porcelain

from gitfs_p2p.pack.delta import apply_delta
from gitfs_p2p.git.repo import GitRepo
from gitfs_p2p.pack.packfile import OBJ_REF_DELTA, object_id, read_pack
from gitfs_p2p.store.source import PackSource
from testutil import git


def _parents(repo: str, commit: str) -> list[str]:
    return git("rev-parse", f"{commit}^@", cwd=repo).split()


def _oracle(repo: str, commit: str) -> set[str]:
    """What git says commit C's pack must hold: rev-list --objects C --not parents."""
    out = git("rev-list", "--objects", commit, "--not", *_parents(repo, commit), cwd=repo)
    return {line.split()[0] for line in out.splitlines()}


def _pack_objects(repo: GitRepo, data: bytes) -> tuple[list[str], list[str]]:
    """(ids of every object in the pack, ids of the REF_DELTA bases it names)."""
    ids, bases = [], []
    for entry in read_pack(data):
        if entry.type_num == OBJ_REF_DELTA:
            base_type, base = repo.read_raw(entry.base_id.hex().encode())
            content, type_num = apply_delta(base, entry.data), base_type
            bases.append(entry.base_id.hex())
        else:
            content, type_num = entry.data, entry.type_num
        ids.append(object_id(type_num, content).hex())
    return ids, bases


@pytest.fixture(scope="module")
def built(history):
    """All commit packs of the history, oldest first: [(commit hex, pack bytes)]."""
    repo = GitRepo(history)
    source = PackSource(repo)
    packs = [(c.id.decode(), source.pack(c.id)) for c in source.commits()]
    yield repo, packs
    source.close()
    repo.close()


def test_history_has_what_the_tests_need(history):
    assert int(git("rev-list", "--all", "--count", cwd=history)) >= 120
    assert git("rev-list", "--all", "--merges", cwd=history).split(), "no merge commits in the test history"
    renames = git("log", "--all", "-M", "--diff-filter=R", "--format=%H", cwd=history).split()
    assert renames, "no renames in the test history"


def test_object_set_matches_git_rev_list_for_every_commit(history, built):
    repo, packs = built
    assert len(packs) == int(git("rev-list", "--all", "--count", cwd=history))
    for commit, data in packs:
        ids, _ = _pack_objects(repo, data)
        assert len(ids) == len(set(ids)), f"{commit}: an object is stored twice"
        assert ids[0] == commit, "the commit comes first"
        assert set(ids) == _oracle(history, commit), f"{commit}: object set differs from git rev-list"


def test_packs_are_thin_against_parent_objects_only(history, built):
    repo, packs = built
    n_deltas = 0
    for commit, data in packs:
        _, bases = _pack_objects(repo, data)
        n_deltas += len(bases)
        if bases:
            parents = _parents(history, commit)
            # Bases must be objects the receiver already has: in a parent's tree.
            parent_objects = set()
            for p in parents:
                out = git("ls-tree", "-r", "-t", p, cwd=history)
                parent_objects |= {line.split()[2] for line in out.splitlines()}
                parent_objects.add(git("rev-parse", f"{p}^{{tree}}", cwd=history).strip())
            assert set(bases) <= parent_objects, f"{commit}: delta base outside its parents"
    assert n_deltas > len(packs) // 2, "packs should be thin: most commits change a file that deltas"


def test_every_pack_imports_with_git_index_pack_and_fsck_is_clean(history, built, tmp_path):
    _, packs = built
    dest = tmp_path / "dest.git"
    git("init", "-q", "--bare", str(dest))
    for commit, data in packs:  # oldest first: parents are always present
        out = git("index-pack", "--stdin", "--fix-thin", cwd=dest, input=data)
        assert out.strip(), "index-pack prints the pack name"
        assert git("cat-file", "-t", commit, cwd=dest).strip() == "commit"
    refs = git("for-each-ref", "--format=%(objectname) %(refname)", cwd=history)
    for line in refs.splitlines():
        oid, name = line.split()
        target = git("rev-parse", f"{oid}^{{commit}}", cwd=history).strip()
        git("update-ref", name, target, cwd=dest)
    fsck = subprocess.run(["git", "fsck", "--full", "--strict"], cwd=dest, capture_output=True)
    assert fsck.returncode == 0, fsck.stderr.decode()
    assert set(git("rev-list", "--all", cwd=dest).split()) == {c for c, _ in packs}


def _all_pack_digests(path: str) -> dict[str, str]:
    repo = GitRepo(path)
    source = PackSource(repo)
    try:
        # Bypass the cache: these must be freshly built bytes.
        return {c.id.decode(): hashlib.sha256(source._build(c.id)).hexdigest() for c in source.commits()}
    finally:
        source.close()
        repo.close()


def test_same_bytes_across_clones_whose_own_packing_differs(history, built, tmp_path):
    _, packs = built
    want = {c: hashlib.sha256(d).hexdigest() for c, d in packs}

    repacked = str(tmp_path / "repacked")
    git("clone", "-q", "--mirror", "--no-local", history, repacked)
    git("repack", "-adf", "-q", "--window=250", "--depth=50", cwd=repacked)
    assert _all_pack_digests(repacked) == want

    loose = str(tmp_path / "loose")
    shutil.copytree(history, loose)
    for pack in (os.path.join(loose, ".git/objects/pack", p) for p in os.listdir(os.path.join(loose, ".git/objects/pack"))):
        if pack.endswith(".pack"):
            data = open(pack, "rb").read()
            for suffix in (".pack", ".idx", ".rev"):
                if os.path.exists(pack[:-5] + suffix):
                    os.unlink(pack[:-5] + suffix)
            git("unpack-objects", "-q", cwd=loose, input=data)
    assert _all_pack_digests(loose) == want

    dulwich_copy = str(tmp_path / "dulwich-copy")
    with open(os.devnull, "wb") as devnull:
        porcelain.clone(history, dulwich_copy, bare=True, errstream=devnull)
    # dulwich's clone creates only the remote-tracking and default refs; walk the same tips.
    for line in git("for-each-ref", "--format=%(objectname) %(refname)", cwd=history).splitlines():
        oid, name = line.split()
        git("update-ref", name, oid, cwd=dulwich_copy)
    assert _all_pack_digests(dulwich_copy) == want


def test_cached_bytes_equal_rebuilt_bytes_and_runs_agree(history, built):
    repo, packs = built
    source = PackSource(repo)
    try:
        for commit, data in packs[:: max(1, len(packs) // 15)]:
            assert source._build(commit.encode()) == data
            assert source.pack(commit.encode()) == data
            assert source.size(commit.encode()) == len(data)
    finally:
        source.close()


def test_second_listing_regenerates_nothing(fresh_history):
    repo = GitRepo(fresh_history)
    source = PackSource(repo)
    built_ids = []
    real_build = source._build

    def counting_build(commit_id):
        built_ids.append(commit_id)
        return real_build(commit_id)

    source._build = counting_build
    try:
        commits = source.commits()
        first = list(source.sizes(commits))
        assert len(built_ids) == len(commits)
        built_ids.clear()
        second = list(source.sizes(commits))
        assert built_ids == [] and first == second
    finally:
        source.close()
        repo.close()
    # A new process, reading the persistent cache, builds nothing either.
    repo = GitRepo(fresh_history)
    source = PackSource(repo)
    source._build = counting_build
    try:
        assert [s for _, s in source.sizes(source.commits())] == [s for _, s in first]
        assert built_ids == []
    finally:
        source.close()
        repo.close()


def test_small_cache_bound_keeps_sizes_but_evicts_bytes(fresh_history):
    repo = GitRepo(fresh_history)
    source = PackSource(repo, cache_bytes=4096)
    try:
        commits = source.commits()
        sizes = dict((c.id, s) for c, s in source.sizes(commits))
        cache = source.cache
        kept = sum(1 for c in commits if (cache.get(source.format, c.id.decode()).data is not None))
        assert kept < len(commits)
        total_kept = sum(len(cache.get(source.format, c.id.decode()).data or b"") for c in commits)
        assert total_kept <= 4096
        for c in commits:
            assert source.size(c.id) == sizes[c.id]
            assert len(source.pack(c.id)) == sizes[c.id]
    finally:
        source.close()
        repo.close()


def test_packs_are_the_same_whether_the_repository_has_a_multi_pack_index(fresh_history, tmp_path):
    """A repository without objects/pack/multi-pack-index is read without looking for one at
    every object (GitRepo); one with it, written by git over several packs, or one that gets
    it after it was opened, gives the same packs."""
    from gitfs_p2p.pack.commitpack import CommitPacker

    def packs(path, before=None):
        repo = GitRepo(path)
        try:
            if before is not None:
                before()
            ids = [c.id for c in repo.commits_oldest_first(sorted(set(repo.refs().values())))]
            packer = CommitPacker(repo)
            return [packer.build_object(oid) for oid in ids]
        finally:
            repo.close()

    expected = packs(fresh_history)
    split = str(tmp_path / "split.git")
    git("clone", "-q", "--mirror", "--no-local", fresh_history, split)
    head = git("rev-parse", "HEAD~10", cwd=split).strip()
    subprocess.run(["git", "pack-objects", "-q", "--revs", os.path.join(split, "objects", "pack", "pack")],
                   input=head + "\n", text=True, check=True, cwd=split, capture_output=True)
    assert len([n for n in os.listdir(os.path.join(split, "objects", "pack")) if n.endswith(".pack")]) == 2
    assert packs(split, before=lambda: git("multi-pack-index", "write", cwd=split)) == expected
    assert os.path.exists(os.path.join(split, "objects", "pack", "multi-pack-index"))
    assert packs(split) == expected
