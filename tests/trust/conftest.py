"""Fixtures shared by the signed-manifest tests: two fresh keys, and an allowed-signers file
that allows alice's alone; throw-away gpg keyrings for OpenPGP."""

from __future__ import annotations

import pytest

from gitfs_p2p.testing.gpghome import GpgHome
from tsupport import allowed_signers, make_key


@pytest.fixture
def keys(tmp_path):
    d = tmp_path / "keys"
    d.mkdir()
    return {name: make_key(d, name) for name in ("alice", "mallory")}


@pytest.fixture
def allowed(tmp_path, keys):
    return allowed_signers(tmp_path / "allowed_signers", ("alice@example.org", keys["alice"]))


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    """GNUPGHOMEs: "pub" holds alice, mallory and eve; "recv" (carol's) has imported alice's and
    mallory's public keys and certified alice's alone (gpg --lsign-key).  Fingerprints by name."""
    base = tmp_path_factory.mktemp("gpg")
    pub, recv = GpgHome(base / "pub"), GpgHome(base / "recv")
    try:
        fprs = {name: pub.make_key(f"{name.title()} <{name}@example.org>") for name in ("alice", "mallory", "eve")}
        recv.make_key("Carol <carol@example.org>")
        for name in ("alice", "mallory"):
            recv.gpg("--import", input=pub.export(fprs[name]))
        recv.gpg("--yes", "--quick-lsign-key", fprs["alice"])
        yield {"pub": pub, "recv": recv, **fprs}
    finally:
        pub.close()
        recv.close()
