"""Shared fixtures: generated histories (see tests/testutil.py for helpers)."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings


# Hypothesis: in CI (CI=true) every run tries the same examples (derandomize, no example
# database), so a red CI is reproducible and never depends on the run; locally the default
# profile keeps exploring new examples. HYPOTHESIS_PROFILE=ci|default picks one explicitly.
settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                          print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE",
                                     "ci" if os.environ.get("CI") else "default"))

from testutil import generate, make_quirky_history


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


@pytest.fixture(scope="session")
def quirky(tmp_path_factory) -> tuple[str, dict[str, str]]:
    """A history of objects git fsck frowns on but git clone carries, and annotated tags.

    (path, {quirk name: object id}); see testutil.make_quirky_history.  Never modified.
    """
    path = str(tmp_path_factory.mktemp("quirky") / "repo")
    return path, make_quirky_history(path)
