"""options_from_config: the helper's settings, read from git config in two git processes."""

from __future__ import annotations

import subprocess

import pytest

from gitfs_p2p.errors import FetchError
from gitfs_p2p.remote.fetch import DEFAULT_TIMEOUT, Options, options_from_config


def _repo(tmp_path, *settings: tuple[str, str]) -> str:
    repo = str(tmp_path / "repo")
    subprocess.run(["git", "init", "-q", repo], check=True)
    for key, value in settings:
        subprocess.run(["git", "-C", repo, "config", "--add", key, value], check=True)
    return repo + "/.git"


def test_nothing_set_gives_the_defaults(tmp_path):
    assert options_from_config(_repo(tmp_path)) == Options()


def test_every_setting_as_git_reads_it(tmp_path, monkeypatch):
    git_dir = _repo(tmp_path, ("gitp2p.listen", "127.0.0.1:0"), ("gitp2p.listen", "[::1]:0"),
                    ("gitp2p.lan", "yes"), ("gitp2p.utp", "on"), ("gitp2p.utp", "off"),
                    ("gitp2p.dhtNode", "127.0.0.2:6881"), ("gitp2p.peer", "127.0.0.1:5"),
                    ("gitp2p.peer", "[::1]:6"), ("gitp2p.timeout", "5"), ("gitp2p.timeout", "2.5"))
    # and `git -c` (as `git clone -c` passes it to the helper): last of all
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'gitp2p.lan'='0'")
    opts = options_from_config(git_dir)
    assert opts.listen == ("127.0.0.1:0", "[::1]:0")
    assert (opts.lan, opts.utp, opts.dht) == (False, False, True)  # a DHT node turns the DHT on
    assert opts.dht_nodes == ("127.0.0.2:6881",)
    assert opts.peers == (("127.0.0.1", 5), ("::1", 6))
    assert opts.timeout == 2.5


def test_bad_values_are_refused_clearly(tmp_path):
    with pytest.raises(FetchError, match="gitp2p.peer 'nowhere' is not HOST:PORT"):
        options_from_config(_repo(tmp_path, ("gitp2p.peer", "nowhere")))
    with pytest.raises(FetchError, match="gitp2p.timeout 'soon' is not a number of seconds"):
        options_from_config(_repo(tmp_path / "b", ("gitp2p.timeout", "soon")))
    assert options_from_config(_repo(tmp_path / "c", ("gitp2p.timeout", "60"))).timeout == DEFAULT_TIMEOUT
