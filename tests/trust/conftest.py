"""Fixtures shared by the signed-manifest tests: two fresh keys, and an allowed-signers file
that allows alice's alone."""

from __future__ import annotations

import pytest

from tsupport import allowed_signers, make_key


@pytest.fixture
def keys(tmp_path):
    d = tmp_path / "keys"
    d.mkdir()
    return {name: make_key(d, name) for name in ("alice", "mallory")}


@pytest.fixture
def allowed(tmp_path, keys):
    return allowed_signers(tmp_path / "allowed_signers", ("alice@example.org", keys["alice"]))
