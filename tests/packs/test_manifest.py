"""Ref manifests: round trip, incompleteness and hostile ref names."""

from __future__ import annotations

import subprocess

import pytest

from gitfs_p2p.pack.manifest import ManifestError, RefManifest, check_ref_name

A, B = "a" * 40, "b" * 40


def test_round_trip_is_canonical():
    m = RefManifest({"refs/tags/v1": B, "refs/heads/main": A}, head="refs/heads/main")
    data = m.to_bytes()
    assert data.startswith(b"# gitp2p ref manifest 2\nref: refs/heads/main HEAD\n" + A.encode() + b" refs/heads/main\n")
    assert RefManifest.from_bytes(data) == m
    assert RefManifest({"refs/heads/main": A, "refs/tags/v1": B}, "refs/heads/main").to_bytes() == data


def test_version_1_manifests_are_still_read():
    """Version 1 (tags peeled to their commit) came from earlier releases; receivers still take it."""
    import hashlib

    body = b"# gitp2p ref manifest 1\nref: refs/heads/main HEAD\n" + A.encode() + b" refs/heads/main\n"
    data = body + b"# sha256 " + hashlib.sha256(body).hexdigest().encode() + b"\n"
    m = RefManifest.from_bytes(data)
    assert (m.refs, m.head, m.version) == ({"refs/heads/main": A}, "refs/heads/main", 1)
    assert m.to_bytes() == data


@pytest.mark.parametrize("cut", [0, 1, 10, 30, -70, -1])
def test_truncated_or_zero_filled_files_are_incomplete(cut):
    data = RefManifest({"refs/heads/main": A}).to_bytes()
    with pytest.raises(ManifestError):
        RefManifest.from_bytes(data[:cut])
    with pytest.raises(ManifestError):
        RefManifest.from_bytes(data[:cut] + b"\0" * (len(data) - len(data[:cut])))


def test_any_flipped_byte_is_detected():
    data = RefManifest({"refs/heads/main": A, "refs/heads/dev": B}).to_bytes()
    for i in range(len(data)):
        bad = data[:i] + bytes([data[i] ^ 0x20]) + data[i + 1 :]
        with pytest.raises(ManifestError):
            RefManifest.from_bytes(bad)


@pytest.mark.parametrize(
    "name",
    ["refs/heads/../../etc", "refs/heads/a b", "/etc/passwd", "refs/heads/x.lock", "refs/heads/", "refs/main",
     "refs/heads/.hidden", "refs/heads/a\nb", "refs//heads/x", "refs/heads/a@{1}", "config", "refs/heads/a:b"],
)
def test_unsafe_ref_names_are_refused(name):
    with pytest.raises(ManifestError):
        check_ref_name(name)
    with pytest.raises(ManifestError):
        RefManifest({name: A}).to_bytes()


@pytest.mark.parametrize("name", ["refs/heads/main", "refs/tags/v1.0", "refs/heads/feature/x-1", "HEAD"])
def test_names_git_accepts_are_accepted(name):
    assert check_ref_name(name) == name
    if name != "HEAD":
        assert subprocess.run(["git", "check-ref-format", name]).returncode == 0


def _signed_body(body: bytes) -> bytes:
    import hashlib

    return body + b"# sha256 " + hashlib.sha256(body).hexdigest().encode() + b"\n"


@pytest.mark.parametrize(
    "line",
    [
        A.encode() + b" refs/replace/" + A.encode(),  # would rewrite what main's commit shows
        A.encode() + b" refs/remotes/origin/main",
        A.encode() + b" refs/notes/commits",
        A.encode() + b" HEAD",
        b"ref: HEAD HEAD",  # HEAD pointing at itself: every later pass failed on it
        b"ref: refs/tags/v1 HEAD",
    ],
)
def test_a_manifest_may_set_only_branches_and_tags(line):
    data = _signed_body(b"# gitp2p ref manifest 2\n" + line + b"\n")
    with pytest.raises(ManifestError, match="HEAD may only point at a branch|only branches"):
        RefManifest.from_bytes(data)
