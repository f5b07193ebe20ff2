"""Whole repositories travel: mount -> torrent -> downloaded files -> watcher -> the same repository.

The history is written from raw objects that git fsck frowns on and git clone carries
(testutil.make_quirky_history), with annotated tags of commits, tags, trees and blobs.
The files a client would download are read from a real FUSE mount, in the order and with
the piece hashes of the mount's own torrent, then `gitp2p watch --once` imports them
into an empty repository: `git for-each-ref` and `git rev-list --objects --all` must
then equal the source's, line for line.  Signed tags verify with `git tag -v` after
the trip, and `git describe` answers the same.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest

from gitfs_p2p.pack.rollup import tag_group
from gitfs_p2p.testing.gpghome import GpgHome
from gitfs_p2p.testing.swarm import Mount
from testutil import client_download, git, gitp2p
from torrentcore.metainfo import parse_torrent

NO_FUSE = not os.path.exists("/dev/fuse")


def _for_each_ref(repo: str) -> list[str]:
    return git("for-each-ref", "--format=%(objectname) %(objecttype) %(refname)", cwd=repo).splitlines()


def _objects(repo: str) -> set[str]:
    return {line.split()[0] for line in git("rev-list", "--objects", "--all", cwd=repo).splitlines()}


def _download(meta, source_dir, dest_dir) -> None:
    """What a client does with a torrent: fetch each file, check every piece against the torrent."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    stream = b""
    for f in meta.files:
        data = source_dir.joinpath(*f.path).read_bytes()
        assert len(data) == f.length
        dest_dir.joinpath(*f.path).parent.mkdir(parents=True, exist_ok=True)
        dest_dir.joinpath(*f.path).write_bytes(data)
        stream += data
    pl = meta.piece_length
    assert [hashlib.sha1(stream[i : i + pl]).digest() for i in range(0, len(stream), pl)] == list(meta.pieces)


def _watch_once(directory, into) -> subprocess.CompletedProcess:
    return gitp2p("watch", str(directory), "--into", str(into), "--bare", "--once")


@pytest.mark.skipif(NO_FUSE, reason="/dev/fuse is absent: no FUSE mount can be made here")
def test_a_quirky_history_travels_whole(quirky, tmp_path):
    path, ids = quirky
    mount = Mount(path, tmp_path / "mnt").start()
    try:
        meta = parse_torrent(mount.torrent("all").read_bytes())
        names = ["/".join(f.path) for f in meta.files]
        # every annotated tag of a commit travels as its own pack (no roll-up seals these),
        # beside the commit packs; the tags of a tree and of a blob as one tag group
        for name in ("v1.0", "v1.0-outer", "old-style"):
            assert f"{ids['tag:' + name]}.pack" in names, name
        group = tag_group(sorted([ids["tag:tree-tag"].encode(), ids["tag:blob-tag"].encode()]))
        assert names[0] == group.path
        assert mount.path.joinpath("packs", group.path).stat().st_size == meta.files[0].length
        _download(meta, mount.path / "packs", tmp_path / "dl" / "packs")
    finally:
        mount.stop()
    received = tmp_path / "received"
    proc = _watch_once(tmp_path / "dl", received)
    assert proc.returncode == 0, proc.stderr.decode()
    assert _for_each_ref(str(received)) == _for_each_ref(path)
    assert _objects(str(received)) == _objects(path)
    assert git("symbolic-ref", "HEAD", cwd=received) == git("symbolic-ref", "HEAD", cwd=path)
    for tag in ("v1.0", "v1.0-outer", "tree-tag", "blob-tag", "old-style"):
        assert git("cat-file", "-p", tag, cwd=received) == git("cat-file", "-p", tag, cwd=path)


@pytest.fixture
def gpg_env(tmp_path):
    """A GnuPG home of this test's own with one signing key; its gpg-agent is the test's child
    (gitfs_p2p/testing/gpghome.py: gpg's own daemon would outlive the test), stopped after."""
    with GpgHome(tmp_path / "gnupg") as home:
        home.make_key("Release Signer <release@example.invalid>")
        yield dict(os.environ, GNUPGHOME=str(home.path))


@pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed (scripts/setup.sh installs gnupg)")
def test_signed_tags_verify_after_the_trip(history, tmp_path, gpg_env):
    env = gpg_env
    source = tmp_path / "source"
    git("clone", "-q", "--bare", history, str(source))
    key = "release@example.invalid"
    for name, rev in (("v9.0", "main~3"), ("v9.1", "main")):
        proc = subprocess.run(["git", "-C", str(source), "-c", f"user.signingkey={key}", "tag", "-s", "-m",
                               f"release {name}", name, rev], env=env, capture_output=True)
        assert proc.returncode == 0, proc.stderr.decode()
    client_download(str(source), tmp_path / "dl", all_refs=True)
    received = tmp_path / "received"
    proc = _watch_once(tmp_path / "dl", received)
    assert proc.returncode == 0, proc.stderr.decode()
    assert _for_each_ref(str(received)) == _for_each_ref(str(source))
    for name in ("v9.0", "v9.1"):
        proc = subprocess.run(["git", "-C", str(received), "tag", "-v", name], env=env, capture_output=True)
        assert proc.returncode == 0, proc.stderr.decode()
        assert b"Good signature" in proc.stderr
    for rev in ("main", "main~1", "main~4", "main~5"):
        assert git("describe", "--tags", "--always", rev, cwd=received) == git("describe", "--tags", "--always", rev, cwd=source)
