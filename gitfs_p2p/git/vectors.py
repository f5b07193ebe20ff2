"""Test vectors: a small fixed history whose commit and tag packs must hash to known values.

`selfcheck()` rebuilds the history in memory and compares the sha256 of every
pack (in torrent order: commits, each followed by its tags) with
testvectors.json (shipped with the package).  A machine
whose zlib or dulwich would produce different bytes fails loudly instead of
seeding data no one else can match.  `python -m gitfs_p2p.git.vectors --write`
regenerates the file (only when the format version changes on purpose).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import zlib
from functools import lru_cache

import dulwich
from dulwich.objects import Blob, Commit, Tag, Tree
from dulwich.repo import MemoryRepo

from ..pack.commitpack import FORMAT_VERSION, CommitPacker
from ..errors import FormatError
from .repo import GitRepo
from ..pack.order import pack_order, published_tags, torrent_order
from ..pack.rollup import Rollup, chain_candidates, plan_history, rollup_header

__all__ = ["build_vector_repo", "compute_vectors", "compute_rollup_vectors", "compute_tag_group_vectors", "selfcheck",
           "VECTORS_PATH"]

#: The span the roll-up vectors cut the small history with (the rule is the same at any span).
VECTOR_SPAN = 3

VECTORS_PATH = os.path.join(os.path.dirname(__file__), "testvectors.json")


def _text(seed: int, lines: int) -> bytes:
    """Deterministic source-like text (an LCG, no library RNG involved)."""
    words = [b"alpha", b"beta", b"gamma", b"delta", b"pack", b"commit", b"tree", b"blob", b"peer", b"seed"]
    x = seed
    out = []
    for i in range(lines):
        parts = []
        for _ in range(1 + i % 7):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
            parts.append(words[x % len(words)])
        out.append(b"    " * (i % 3) + b" ".join(parts) + b" %d\n" % i)
    return b"".join(out)


def _binary(seed: int, size: int) -> bytes:
    return b"".join(hashlib.sha256(b"%d:%d" % (seed, i)).digest() for i in range(size // 32 + 1))[:size]


def _edit(data: bytes, line: int, new: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    lines[line % len(lines)] = new
    return b"".join(lines)


def _store_tree(repo: MemoryRepo, files: dict[bytes, bytes]) -> bytes:
    store = repo.object_store
    dirs: dict[bytes, dict[bytes, tuple[int, bytes]]] = {b"": {}}
    for path, data in files.items():
        blob = Blob.from_string(data)
        store.add_object(blob)
        parts = path.split(b"/")
        for i in range(1, len(parts)):
            dirs.setdefault(b"/".join(parts[:i]), {})
        dirs[b"/".join(parts[:-1])][parts[-1]] = (0o100644, blob.id)
    # Build deepest directories first.
    for d in sorted((d for d in dirs if d), key=lambda p: (-p.count(b"/"), p)):
        tree = Tree()
        for name, (mode, oid) in dirs[d].items():
            tree.add(name, mode, oid)
        store.add_object(tree)
        parent, _, name = d.rpartition(b"/")
        dirs[parent][name] = (0o040000, tree.id)
    root = Tree()
    for name, (mode, oid) in dirs[b""].items():
        root.add(name, mode, oid)
    store.add_object(root)
    return root.id


def _commit(repo: MemoryRepo, files: dict[bytes, bytes], parents: list[bytes], n: int) -> bytes:
    c = Commit()
    c.tree = _store_tree(repo, files)
    c.parents = parents
    c.author = c.committer = b"Vector Author <vectors@gitfs-p2p.invalid>"
    c.author_time = c.commit_time = 1_700_000_000 + 3600 * n
    c.author_timezone = c.commit_timezone = 0
    c.message = b"vector commit %d\n" % n
    repo.object_store.add_object(c)
    return c.id


def build_vector_repo() -> tuple[MemoryRepo, bytes]:
    """The fixed history: edits, a rename with edit, copies, a binary, a merge, a 70 KB file."""
    repo = MemoryRepo()
    f: dict[bytes, bytes] = {
        b"README": _text(1, 60),
        b"src/a.py": _text(2, 120),
        b"src/b.py": _text(3, 80),
        b"src/__init__.py": b"",
        b"bin/data.bin": _binary(4, 3000),
    }
    c1 = _commit(repo, f, [], 1)
    f[b"src/a.py"] = _edit(f[b"src/a.py"], 50, b"changed line\n")
    c2 = _commit(repo, f, [c1], 2)
    f[b"docs/guide.txt"] = _text(5, 40)
    f[b"README"] = _edit(f[b"README"], 3, b"new title\n")
    c3 = _commit(repo, f, [c2], 3)
    f[b"lib/b.py"] = _edit(f.pop(b"src/b.py"), 10, b"moved and edited\n")
    c4 = _commit(repo, f, [c3], 4)
    side = dict(f)
    side[b"src/a.py"] = _edit(side[b"src/a.py"], 100, b"side branch edit\n")
    c5 = _commit(repo, side, [c4], 5)
    side[b"docs/README.copy"] = side[b"README"]
    c6 = _commit(repo, side, [c5], 6)
    data = bytearray(f[b"bin/data.bin"])
    data[1000:1010] = b"0123456789"
    f[b"bin/data.bin"] = bytes(data)
    f[b"tests/__init__.py"] = b""
    c7 = _commit(repo, f, [c4], 7)
    merged = dict(f)
    merged[b"src/a.py"] = side[b"src/a.py"]
    merged[b"docs/README.copy"] = side[b"docs/README.copy"]
    c8 = _commit(repo, merged, [c7, c6], 8)
    for path in [p for p in merged if p.startswith(b"docs/")]:
        del merged[path]
    c9 = _commit(repo, merged, [c8], 9)
    merged[b"big/large.txt"] = _text(6, 2500)
    c10 = _commit(repo, merged, [c9], 10)
    merged[b"big/large.txt"] = _edit(merged[b"big/large.txt"], 1200, b"one edit in a large file\n")
    c11 = _commit(repo, merged, [c10], 11)
    repo.refs[b"refs/heads/main"] = c11
    repo.refs[b"refs/heads/side"] = c6
    release = _tag(repo, b"v1.0", c8, Commit, signed=True)
    _tag(repo, b"v1.0-outer", release, Tag)
    _tag(repo, b"tree-tag", repo.object_store[c4].tree, Tree)
    blob = Blob.from_string(b"a blob only a tag names\n")
    repo.object_store.add_object(blob)
    _tag(repo, b"blob-tag", blob.id, Blob)
    return repo, c11


def _tag(repo: MemoryRepo, name: bytes, target: bytes, kind, *, signed: bool = False) -> bytes:
    t = Tag()
    t.name = name
    t.object = (kind, target)
    t.tagger = b"Vector Tagger <vectors@gitfs-p2p.invalid>"
    t.tag_time = 1_700_100_000
    t.tag_timezone = 0
    t.message = b"tag " + name + b"\n"
    if signed:  # a signature's bytes travel like any message text
        t.message += b"-----BEGIN PGP SIGNATURE-----\n\nnot a real signature\n-----END PGP SIGNATURE-----\n"
    repo.object_store.add_object(t)
    repo.refs[b"refs/tags/" + name] = t.id
    return t.id


def compute_vectors() -> list[tuple[str, str]]:
    """[(commit or tag id, sha256 of its pack)] in torrent order."""
    return _compute(VECTOR_SPAN)[0]


def compute_rollup_vectors(span: int = VECTOR_SPAN) -> list[dict]:
    """The roll-ups of the vector history (main is HEAD) at `span`: boundary, first-parent
    depth, member count and the sha256 of the file (pack/rollup.py)."""
    return _compute(span)[1]


def compute_tag_group_vectors(span: int = VECTOR_SPAN) -> list[dict]:
    """The tag groups of the vector history's torrent of every ref at `span`: id, member
    tags and the sha256 of the file (pack/rollup.py)."""
    return _compute(span)[2]


def _compute(span: int) -> tuple[list[tuple[str, str]], list[dict], list[dict]]:
    """Both kinds of vector from one build of the history's packs."""
    dulwich_repo, _ = build_vector_repo()
    repo = GitRepo.wrap(dulwich_repo)
    packer = CommitPacker(repo)
    targets = repo.published_refs().values()
    commits = repo.commits_oldest_first(sorted({t.commit for t in targets if t.commit}))
    ids = pack_order([c.id for c in commits], published_tags(targets))
    packs = {oid: packer.build_object(oid) for oid in ids}
    rollups = []
    plan = plan_history(commits, chain_candidates(repo.published_refs(), "refs/heads/main"), span)
    for r in plan.rollups:
        members = [packs[c] for c in r.members]
        data = rollup_header([(c, len(p)) for c, p in zip(r.members, members)]) + b"".join(members)
        rollups.append({"boundary": r.boundary.decode(), "depth": r.depth, "members": len(r.members),
                        "sha256": hashlib.sha256(data).hexdigest()})
    groups = []
    for g in torrent_order(plan, published_tags(targets)):
        if isinstance(g, Rollup) and g.tags:
            members = [packs[t] for t in g.members]
            data = rollup_header([(t, len(p)) for t, p in zip(g.members, members)], g.magic) + b"".join(members)
            groups.append({"id": g.boundary.decode(), "tags": [t.decode() for t in g.members],
                           "sha256": hashlib.sha256(data).hexdigest()})
    return [(oid.decode(), hashlib.sha256(packs[oid]).hexdigest()) for oid in ids], rollups, groups


def _describe_machine() -> str:
    return f"zlib {zlib.ZLIB_RUNTIME_VERSION}, dulwich {'.'.join(map(str, dulwich.__version__))}"


@lru_cache(maxsize=1)
def selfcheck() -> None:
    """Raise FormatError unless this machine reproduces the format's test vectors."""
    with open(VECTORS_PATH) as fh:
        expected = json.load(fh)
    if expected["format"] != FORMAT_VERSION:
        raise FormatError(
            f"test vectors are for pack format {expected['format']}, this build writes {FORMAT_VERSION}"
        )
    got, rollups, groups = _compute(expected["rollup_span"])
    want = [(v["object"], v["sha256"]) for v in expected["packs"]]
    if got == want and (rollups != expected["rollups"] or groups != expected["tag_groups"]):
        raise FormatError(
            f"this machine ({_describe_machine()}) reproduces the commit packs of format {FORMAT_VERSION} "
            "but not its roll-ups or tag groups (docs/pack-format.md); nothing is served"
        )
    if got != want:
        bad = next((g for g, w in zip(got, want) if g != w), got[len(want):][:1] or want[len(got):][:1])
        raise FormatError(
            f"this machine ({_describe_machine()}) does not reproduce pack format {FORMAT_VERSION} "
            f"(first mismatch: {bad}); its packs would not match anyone else's, so nothing is served"
        )


def _main(argv: list[str]) -> int:
    vectors = compute_vectors()
    doc = {
        "format": FORMAT_VERSION,
        "generated_with": _describe_machine(),
        "packs": [{"object": c, "sha256": h} for c, h in vectors],
        "rollup_span": VECTOR_SPAN,
        "rollups": compute_rollup_vectors(),
        "tag_groups": compute_tag_group_vectors(),
    }
    text = json.dumps(doc, indent=2) + "\n"
    if argv[:1] == ["--write"]:
        with open(VECTORS_PATH, "w") as fh:
            fh.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
