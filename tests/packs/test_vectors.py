"""The format's test vectors and the start-up check that uses them."""

from __future__ import annotations

import json

import pytest

from gitfs_p2p.git import vectors
from gitfs_p2p.pack import commitpack, packfile
from gitfs_p2p.errors import FormatError


def test_this_machine_reproduces_the_shipped_vectors():
    with open(vectors.VECTORS_PATH) as fh:
        shipped = json.load(fh)
    assert shipped["format"] == commitpack.FORMAT_VERSION
    assert [(v["object"], v["sha256"]) for v in shipped["packs"]] == vectors.compute_vectors()
    vectors.selfcheck.__wrapped__()


def test_vector_history_exercises_every_rule():
    repo, _ = vectors.build_vector_repo()
    gr = vectors.GitRepo.wrap(repo)
    packer = vectors.CommitPacker(gr)
    commits = gr.commits_oldest_first(sorted(set(gr.refs().values())))
    assert any(len(c.parents) > 1 for c in commits), "a merge"
    kinds = set()
    for c in commits:
        for e in packfile.read_pack(packer.build(c)):
            kinds.add(e.type_num)
    assert packfile.OBJ_REF_DELTA in kinds and packfile.OBJ_BLOB in kinds and packfile.OBJ_TREE in kinds
    # annotated tags: of a commit (signed), of a tag, of a tree, of a blob
    kinds_named = {t.type_num for t in gr.published_refs().values()}
    tags = {t.tags[0]: t for t in gr.published_refs().values() if t.tags}
    assert len(tags) == 4 and packfile.OBJ_TAG in kinds_named
    assert {gr.read_tag(tag).type for tag in tags} == {"commit", "tag", "tree", "blob"}


def test_format_2_kept_every_format_1_commit_pack():
    """Format 2 only added tag packs: the commit packs of the format-1 vectors are unchanged."""
    format_1 = {  # first and last commit of the vector history, from format 1's testvectors.json
        "a09faf7de1cdfcf599e0f4e0e5b34fcc5094e7aa": "b7f51e4700b27d41ae5b4bc5575e3278d2e7901a628b2f27fe476426e16a8623",
        "414e99c00ba44eb5ae5b49310cc9d33ad3ca7f0d": "458012719c12cb5da915b94a3af2371874814a2ceba56d6a7aeab71a170d4839",
    }
    got = dict(vectors.compute_vectors())
    for commit, digest in format_1.items():
        assert got[commit] == digest


def test_a_machine_with_different_zlib_output_is_refused(monkeypatch):
    # Stand-in for a zlib that deflates differently: same data, another level.
    import zlib

    monkeypatch.setattr(packfile, "_ZLIB_ARGS", (1, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY))
    with pytest.raises(FormatError, match="does not reproduce pack format 2"):
        vectors.selfcheck.__wrapped__()


def test_the_rollup_vectors_cover_a_merge_and_are_checked(monkeypatch):
    with open(vectors.VECTORS_PATH) as fh:
        shipped = json.load(fh)
    assert shipped["rollups"] == vectors.compute_rollup_vectors(shipped["rollup_span"])
    assert len(shipped["rollups"]) >= 2
    assert any(r["members"] > shipped["rollup_span"] for r in shipped["rollups"]), "a roll-up holding a merged branch"
    # A machine that builds the same commit packs but other roll-up bytes is refused too.
    from gitfs_p2p.pack import rollup

    monkeypatch.setattr(rollup, "ROLLUP_MAGIC", b"gitp2p rollup 9\n")
    with pytest.raises(FormatError, match="not its roll-ups"):
        vectors.selfcheck.__wrapped__()


def test_the_tag_group_vectors_hold_a_signed_tag_a_tag_of_it_and_tags_of_a_tree_and_a_blob(monkeypatch):
    with open(vectors.VECTORS_PATH) as fh:
        shipped = json.load(fh)
    assert shipped["tag_groups"] == vectors.compute_tag_group_vectors(shipped["rollup_span"])
    repo, _ = vectors.build_vector_repo()
    kinds = {}
    for name in (b"v1.0", b"v1.0-outer", b"tree-tag", b"blob-tag"):
        tag = repo.object_store[repo.refs[b"refs/tags/" + name]]
        kinds[tag.id.decode()] = (name, tag.object[0].type_name, b"-----BEGIN PGP SIGNATURE-----" in tag.as_raw_string())
    grouped = {t: kinds[t] for g in shipped["tag_groups"] for t in g["tags"]}
    assert sorted(n for n, _, _ in grouped.values()) == [b"blob-tag", b"tree-tag", b"v1.0", b"v1.0-outer"]
    assert {k for _, k, _ in grouped.values()} == {b"commit", b"tag", b"tree", b"blob"}
    assert any(signed for _, _, signed in grouped.values()), "a signed annotated tag in a group"
    # A machine that builds the same packs but other tag-group bytes is refused too.
    from gitfs_p2p.pack import rollup

    monkeypatch.setattr(rollup, "TAGS_MAGIC", b"gitp2p tagset 9\n")
    with pytest.raises(FormatError, match="not its roll-ups or tag groups"):
        vectors.selfcheck.__wrapped__()
