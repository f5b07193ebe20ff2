"""Shared fixtures: generated histories (see tests/testutil.py for helpers)."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from testutil import generate  # noqa: E402


@pytest.fixture(scope="session")
def history(tmp_path_factory) -> str:
    """A generated history of 120 commits with side branches merged back, renames and binaries."""
    path = str(tmp_path_factory.mktemp("history") / "repo")
    generate(path, 120, seed=7)
    return path


@pytest.fixture
def fresh_history(tmp_path) -> str:
    """A small private history a test may modify."""
    path = str(tmp_path / "repo")
    generate(path, 30, seed=3)
    return path
