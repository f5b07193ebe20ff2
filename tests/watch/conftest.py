"""Fixtures for the watcher's tests: one generated sender history shared by the session."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from wsupport import make_sender  # noqa: E402


@pytest.fixture(scope="session")
def sender(tmp_path_factory):
    """60 commits with side branches merged back, and every commit's pack."""
    return make_sender(str(tmp_path_factory.mktemp("sender") / "repo"), 60, seed=11)
