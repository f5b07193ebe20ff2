"""Helpers for tests: real git, the gitp2p CLI in a subprocess, generated histories."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from gitfs_p2p.testing.history import generate  # noqa: F401

# Tests must not depend on the user's git configuration.
os.environ.update(
    GIT_CONFIG_GLOBAL=os.devnull,
    GIT_CONFIG_NOSYSTEM="1",
    GIT_AUTHOR_NAME="Test",
    GIT_AUTHOR_EMAIL="test@example.invalid",
    GIT_COMMITTER_NAME="Test",
    GIT_COMMITTER_EMAIL="test@example.invalid",
)


def git(*args: str, cwd: str | os.PathLike | None = None, input: bytes | None = None, check: bool = True) -> str:
    """Run real git; return stdout as text."""
    proc = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode()


def gitp2p(*args: str, input: bytes | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess (bytes stdout/stderr)."""
    return subprocess.run(
        [sys.executable, "-m", "gitfs_p2p.cli", *args],
        input=input,
        capture_output=True,
        timeout=timeout,
    )




def client_download(repo: str, dest, refs=(), *, all_refs: bool = False, trackers=("http://127.0.0.1:1/announce",)):
    """Write what a client leaves after downloading REPO's torrent: DEST/packs/<file> for each
    file of the torrent (made as `gitp2p torrent REPO REFS` makes it).  Returns the RepoTorrent."""
    from pathlib import Path

    from gitfs_p2p.git.repo import GitRepo
    from gitfs_p2p.store.source import PackSource
    from gitfs_p2p.store.torrents import build_repo_torrent, select_refs

    source = PackSource(GitRepo(repo))
    try:
        manifest, label = select_refs(source, list(refs), all_refs=all_refs)
        sent = build_repo_torrent(source, manifest, label, trackers=list(trackers))
        packs = Path(dest) / "packs"
        packs.mkdir(parents=True, exist_ok=True)
        for name, _ in sent.files[:-1]:
            (packs / name).write_bytes(source.pack(name[: -len(".pack")].encode()))
        (packs / sent.manifest_name).write_bytes(sent.manifest_bytes)
        return sent
    finally:
        source.close()
        source.repo.close()


def _hash_object(repo: str, kind: str, data: bytes) -> str:
    """Write a raw object with `git hash-object --literally` (no checks) and return its id."""
    return git("-C", repo, "hash-object", "-w", "--literally", "-t", kind, "--stdin", input=data).strip()


def raw_tree(repo: str, entries: list[tuple[bytes, bytes, str]]) -> str:
    """A tree written byte for byte from (mode, name, hex id) entries, in the order given."""
    data = b"".join(mode + b" " + name + b"\0" + bytes.fromhex(oid) for mode, name, oid in entries)
    return _hash_object(repo, "tree", data)


def raw_commit(repo: str, tree: str, parents: list[str], headers: list[bytes], message: bytes = b"msg\n") -> str:
    """A commit written byte for byte: tree, parents, then the given header lines (author, ...)."""
    lines = [f"tree {tree}".encode()] + [f"parent {p}".encode() for p in parents] + headers
    return _hash_object(repo, "commit", b"\n".join(lines) + b"\n\n" + message)


def raw_blob(repo: str, data: bytes) -> str:
    return _hash_object(repo, "blob", data)


QUIRKS = (
    "badTimezone", "missingEmail", "missingSpaceBeforeDate", "badEmail", "zeroPaddedDate",
    "zeroPaddedFilemode", "badFilemode", "extraHeader", "nonUtf8", "multipleAuthors",
    "committerMissingEmail", "committerNoTimezone", "duplicateParent", "nulInCommitBody", "treeNotSorted",
)


def make_quirky_history(path: str) -> dict[str, str]:
    """A repository whose history holds objects `git fsck` frowns on and `git clone` carries.

    Written from raw objects, one quirk per commit on `main` (see QUIRKS), plus a side
    branch merged with a duplicate parent line, annotated tags (a tag of a tag, a tag of
    a tree, a tag of a blob, one without a tagger line) and a lightweight tag.
    Returns {quirk name: commit or object id}.
    """
    git("init", "-q", path)
    git("-C", path, "symbolic-ref", "HEAD", "refs/heads/main")
    ids: dict[str, str] = {}
    ok_ident = b"A U Thor <author@example.invalid> 1313584730 +0000"
    when = 1313584730

    def ident(role: bytes, text: bytes) -> bytes:
        return role + b" " + text

    blobs = [raw_blob(path, f"content {i}\n".encode() * (i + 1)) for i in range(20)]
    sub = raw_tree(path, [(b"100644", b"a.txt", blobs[0]), (b"100755", b"run.sh", blobs[1])])
    parent: list[str] = []
    n = 0

    def commit(quirk: str, tree_entries, headers=None, message=b"quirk\n", parents=None) -> str:
        nonlocal parent, n, when
        n += 1
        when += 60
        tree = raw_tree(path, tree_entries)
        stamp = f"{when} +0000".encode()
        good = [ident(b"author", b"A U Thor <author@example.invalid> " + stamp),
                ident(b"committer", b"C O Mitter <committer@example.invalid> " + stamp)]
        cid = raw_commit(path, tree, parent if parents is None else parents, headers or good, message)
        ids[quirk] = cid
        parent = [cid]
        return cid

    def files(i: int, *extra):
        return [(b"100644", b"file.txt", blobs[i + 2]), *extra, (b"40000", b"sub", sub)]

    commit("root", files(0))
    commit("badTimezone", files(1), [ident(b"author", b"A U Thor <a@example.invalid> 1313584730 +051800"),
                                     ident(b"committer", b"A U Thor <a@example.invalid> 1313584730 +051800")])
    commit("missingEmail", files(2), [ident(b"author", b"No Mail 1313584800 +0000"), ident(b"committer", ok_ident)])
    commit("missingSpaceBeforeDate", files(3), [ident(b"author", b"A <a@example.invalid>1313584800 +0000"),
                                                ident(b"committer", ok_ident)])
    commit("badEmail", files(4), [ident(b"author", b"A <a@b<c> 1313584800 +0000"), ident(b"committer", ok_ident)])
    commit("zeroPaddedDate", files(5), [ident(b"author", b"A <a@example.invalid> 0001313584800 +0000"),
                                        ident(b"committer", ok_ident)])
    commit("zeroPaddedFilemode", [(b"100644", b"file.txt", blobs[8]), (b"040000", b"sub", sub)])
    commit("badFilemode", [(b"100664", b"file.txt", blobs[9]), (b"40000", b"sub", sub)])
    commit("extraHeader", files(8), [ident(b"author", ok_ident), ident(b"committer", ok_ident),
                                     b"x-unknown-header some value", b"encoding ISO-8859-1"],
           message=b"caf\xe9 in Latin-1\n")
    commit("nonUtf8", files(9), [ident(b"author", b"Ren\xe9 <r@example.invalid> 1313584900 +0100"),
                                 ident(b"committer", ok_ident)])
    commit("multipleAuthors", files(10), [ident(b"author", ok_ident), ident(b"author", ok_ident),
                                          ident(b"committer", ok_ident)])
    # committer lines dulwich cannot read a time from; git's own date rule gives 0 or a number
    commit("committerMissingEmail", files(14), [ident(b"author", ok_ident), ident(b"committer", b"No Mail 1313585000 +0000")])
    commit("committerNoTimezone", files(15), [ident(b"author", ok_ident), ident(b"committer", b"C <c@x> 1313585100")])
    main_before_side = parent[0]
    commit("side", files(11, (b"100644", b"side.txt", blobs[19])), parents=[main_before_side])
    side = parent[0]
    commit("duplicateParent", files(12, (b"100644", b"side.txt", blobs[19])), parents=[main_before_side, side, side])
    commit("nulInCommitBody", files(13), message=b"body with a \0 NUL byte\n")
    # entries out of git's order ("sub" before "file.txt"): git reads it, fsck says treeNotSorted
    commit("treeNotSorted", [(b"40000", b"sub", sub), (b"100644", b"file.txt", blobs[16])])
    git("-C", path, "update-ref", "refs/heads/main", parent[0])
    git("-C", path, "update-ref", "refs/heads/side", side)

    def tag(name: str, target: str, kind: str, tagger: bool = True) -> str:
        lines = [f"object {target}", f"type {kind}", f"tag {name}"]
        if tagger:
            lines.append("tagger T Agger <tagger@example.invalid> 1313590000 +0200")
        tid = _hash_object(path, "tag", ("\n".join(lines) + f"\n\nrelease {name}\n").encode())
        git("-C", path, "update-ref", f"refs/tags/{name}", tid)
        ids[f"tag:{name}"] = tid
        return tid

    inner = tag("v1.0", ids["badTimezone"], "commit")
    tag("v1.0-outer", inner, "tag")
    tag("tree-tag", sub, "tree")
    tag("blob-tag", raw_blob(path, b"a blob only a tag names\n"), "blob")
    tag("old-style", ids["extraHeader"], "commit", tagger=False)
    git("-C", path, "update-ref", "refs/tags/light", ids["zeroPaddedFilemode"])
    return ids
