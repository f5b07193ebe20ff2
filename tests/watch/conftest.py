"""Fixtures for the watcher's tests: one generated sender history shared by the session."""

from __future__ import annotations


import pytest


from wsupport import make_sender


@pytest.fixture(scope="session")
def sender(tmp_path_factory):
    """60 commits with side branches merged back, and every commit's pack."""
    return make_sender(str(tmp_path_factory.mktemp("sender") / "repo"), 60, seed=11)
