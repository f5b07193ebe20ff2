"""The format's test vectors and the start-up check that uses them."""

from __future__ import annotations

import json

import pytest

from gitfs_p2p import commitpack, packfile, vectors
from gitfs_p2p.errors import UserError


def test_this_machine_reproduces_the_shipped_vectors():
    with open(vectors.VECTORS_PATH) as fh:
        shipped = json.load(fh)
    assert shipped["format"] == commitpack.FORMAT_VERSION
    assert [(v["commit"], v["sha256"]) for v in shipped["packs"]] == vectors.compute_vectors()
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


def test_a_machine_with_different_zlib_output_is_refused(monkeypatch):
    # Stand-in for a zlib that deflates differently: same data, another level.
    import zlib

    monkeypatch.setattr(packfile, "_ZLIB_ARGS", (1, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY))
    with pytest.raises(UserError, match="does not reproduce pack format 1"):
        vectors.selfcheck.__wrapped__()
