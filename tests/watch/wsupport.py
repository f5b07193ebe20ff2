"""Helpers for the watcher's tests: a sender's packs, delivery, invariants, hostile files.

Imported as ``wsupport`` (a unique name beside the other test folders' helpers)."""

from __future__ import annotations

import hashlib
import os
import random
import struct
import subprocess
import zlib
from dataclasses import dataclass

from gitfs_p2p.pack.packfile import entry_header

HERE = os.path.dirname(os.path.abspath(__file__))

from testutil import generate, git

from gitfs_p2p.git.repo import GitRepo
from gitfs_p2p.pack.manifest import RefManifest
from gitfs_p2p.pack.packfile import OBJ_BLOB, OBJ_COMMIT, OBJ_REF_DELTA, OBJ_TREE, object_id
from gitfs_p2p.store.source import PackSource

__all__ = ["Sender", "make_sender", "deliver", "refs_of", "fsck_clean", "check_invariant", "git", "raw_pack"]


@dataclass
class Sender:
    path: str
    commits: list[str]  # hex, parents before children
    parents: dict[str, tuple[str, ...]]
    packs: dict[str, bytes]
    refs: dict[str, str]
    head: str | None

    def manifest(self, refs: dict[str, str] | None = None) -> bytes:
        return RefManifest(dict(self.refs if refs is None else refs), self.head).to_bytes()


def make_sender(path: str, commits: int, seed: int) -> Sender:
    generate(path, commits, seed=seed)
    repo = GitRepo(path)
    source = PackSource(repo)
    try:
        infos = source.commits()
        packs = {c.id.decode(): source.pack(c.id) for c in infos}
        refs = {name: oid.decode() for name, oid in repo.refs().items() if name != "HEAD"}
        return Sender(
            path,
            [c.id.decode() for c in infos],
            {c.id.decode(): tuple(p.decode() for p in c.parents) for c in infos},
            packs,
            refs,
            repo.head_target(),
        )
    finally:
        source.close()
        repo.close()


def deliver(directory: str, sender: Sender, commits, *, sub: str = "packs") -> None:
    """Write the packs of commits into DIR/sub the way a finished download leaves them."""
    os.makedirs(os.path.join(directory, sub), exist_ok=True)
    for c in commits:
        path = os.path.join(directory, sub, f"{c}.pack")
        with open(path + ".tmp", "wb") as fh:
            fh.write(sender.packs[c])
        os.replace(path + ".tmp", path)


def write_manifest(directory: str, data: bytes, *, sub: str = "packs", label: str = "demo") -> str:
    os.makedirs(os.path.join(directory, sub), exist_ok=True)
    path = os.path.join(directory, sub, f"{label}.gitp2p-refs")
    with open(path + ".tmp", "wb") as fh:
        fh.write(data)
    os.replace(path + ".tmp", path)
    return path


def refs_of(repo: str) -> dict[str, str]:
    if not os.path.exists(repo):
        return {}
    out = git("for-each-ref", "--format=%(objectname) %(refname)", cwd=repo)  # the watcher creates REPO atomically
    return {name: oid for oid, name in (line.split(" ", 1) for line in out.splitlines())}


def fsck_clean(repo: str) -> tuple[bool, str]:
    proc = subprocess.run(
        ["git", "fsck", "--full", "--no-dangling", "--no-progress"], cwd=repo, capture_output=True
    )
    text = (proc.stdout + proc.stderr).decode(errors="replace")
    # A notice, not a fault: some refs exist while HEAD's own branch has not arrived yet
    # (as after `git init` + `git fetch` of another branch).
    lines = [l for l in text.splitlines() if l.strip() and not l.startswith("notice: HEAD points to an unborn branch")]
    return proc.returncode == 0 and not lines, text


def check_invariant(repo: str) -> None:
    """If any ref is visible, fsck is clean and every ref's whole history is readable."""
    refs = refs_of(repo)
    if not refs:
        return
    ok, text = fsck_clean(repo)
    assert ok, f"fsck not clean while refs are visible: {text}"
    for name in refs:
        git("rev-list", "--objects", name, cwd=repo)


def object_files(repo: str) -> list[str]:
    out = []
    for root, _, files in os.walk(os.path.join(repo, ".git", "objects") if os.path.isdir(os.path.join(repo, ".git")) else os.path.join(repo, "objects")):
        out.extend(os.path.join(root, f) for f in files)
    return sorted(out)


# -- hostile files ------------------------------------------------------------------


def raw_entry(type_num: int, data: bytes, *, declared: int | None = None, base: bytes | None = None) -> bytes:
    size = len(data) if declared is None else declared
    return entry_header(type_num, size) + (base or b"") + zlib.compress(data)


def raw_pack(entries: list[bytes], *, count: int | None = None, version: int = 2, magic: bytes = b"PACK") -> bytes:
    body = struct.pack(">4sLL", magic, version, len(entries) if count is None else count) + b"".join(entries)
    return body + hashlib.sha1(body).digest()


def commit_raw(tree_hex: str, parents=(), msg: bytes = b"hostile\n") -> bytes:
    lines = [b"tree " + tree_hex.encode()]
    lines += [b"parent " + p.encode() for p in parents]
    lines += [b"author A <a@example.invalid> 1600000000 +0000", b"committer A <a@example.invalid> 1600000000 +0000"]
    return b"\n".join(lines) + b"\n\n" + msg


def tree_raw(entries: list[tuple[bytes, bytes, bytes]]) -> bytes:
    """entries: (mode, name, binary id), already in git order."""
    return b"".join(mode + b" " + name + b"\0" + oid for mode, name, oid in entries)


def oid_hex(type_num: int, data: bytes) -> str:
    return object_id(type_num, data).hex()


def delta(base: bytes, target: bytes) -> bytes:
    from gitfs_p2p.pack.delta import create_delta

    return create_delta(base, target)


def random_bytes(n: int, seed: int) -> bytes:
    """Random bytes that look nothing like a client's pre-allocated file (no zero ends)."""
    data = bytearray(random.Random(seed).randbytes(n))
    data[0] = data[-1] = 0x5A
    return bytes(data)


__all__ += [
    "write_manifest",
    "object_files",
    "raw_entry",
    "commit_raw",
    "tree_raw",
    "oid_hex",
    "delta",
    "random_bytes",
    "OBJ_BLOB",
    "OBJ_COMMIT",
    "OBJ_REF_DELTA",
    "OBJ_TREE",
]
