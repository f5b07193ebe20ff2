"""Fixtures for mount tests: generated repositories and real `gitp2p mount` processes."""

from __future__ import annotations

import pytest
from mounthelp import NO_FUSE, Mount
from testutil import generate, git


@pytest.fixture(scope="module")
def repo60(tmp_path_factory) -> str:
    """A generated history of 60 commits with a side branch and an annotated tag (read-only use)."""
    path = str(tmp_path_factory.mktemp("repo60") / "repo")
    generate(path, 60, seed=11)
    git("tag", "-a", "v0.1", "-m", "first release", "HEAD~5", cwd=path)
    git("tag", "light", "HEAD~10", cwd=path)
    return path


@pytest.fixture
def moving_repo(tmp_path) -> str:
    """A small private history whose refs a test may move."""
    path = str(tmp_path / "repo")
    generate(path, 40, seed=5)
    return path


@pytest.fixture(scope="module")
def mounted60(repo60, tmp_path_factory):
    """repo60 mounted for the whole module."""
    if NO_FUSE:
        pytest.skip("/dev/fuse is absent")
    m = Mount(repo60, str(tmp_path_factory.mktemp("mnt60") / "mnt"))
    try:
        yield m.start()
    finally:
        m.stop()


@pytest.fixture
def mount_of(tmp_path):
    """mount_of(repo, *options) -> Mount; unmounted when the test ends."""
    if NO_FUSE:
        pytest.skip("/dev/fuse is absent")
    mounts: list[Mount] = []

    def start(repo: str, *extra: str) -> Mount:
        m = Mount(repo, str(tmp_path / f"mnt{len(mounts)}"))
        mounts.append(m)
        return m.start(*extra)

    yield start
    errors = []
    for m in mounts:
        try:
            m.stop()
        except AssertionError as exc:
            errors.append(exc)
    assert not errors, errors
