"""Signed ref manifests through the remote helper: `git clone -c gitp2p.allowedSignersFile=...
gitp2p::/path/to/all.torrent` with real git, real ssh-keygen and a real web seed (busybox
httpd on 127.0.0.1, BEP 19) serving the torrent's files; no tracker, no peer.

The helper checks the signature before it answers `list`, so a refused torrent changes
nothing: the clone is not made, a fetch moves no ref.  Non-fast-forward updates are
git's decision (its refspec's `+`, `--force`), as for any remote.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import urllib.request

import pytest

from gitfs_p2p.seed.catalog import ReceivedTorrents
from gitfs_p2p.testing.procs import free_port, kill_group, wait_until
from gitfs_p2p.trust import sigfile
from torrentcore.metainfo import build_info, build_torrent, parse_torrent
from tsupport import Publisher, download, refs_of

ENV = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
       "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"}
LOOPBACK = ["-c", "gitp2p.listen=127.0.0.1:0", "-c", "gitp2p.utp=false", "-c", "gitp2p.timeout=30"]

pytestmark = pytest.mark.skipif(shutil.which("busybox") is None,
                                reason="busybox (its httpd is the web seed) is not installed: scripts/setup.sh installs it")


def git(*args: str, cwd=None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["git", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=180)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False


@pytest.fixture
def web(tmp_path):
    """A web server on 127.0.0.1 serving tmp_path/www; yields its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "ping").write_text("ok")
    port = free_port()
    httpd = subprocess.Popen(["busybox", "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", str(root)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        wait_until(lambda: _ok(f"http://127.0.0.1:{port}/ping"), 30, "busybox httpd to answer")
        yield root, f"http://127.0.0.1:{port}/"
    finally:
        kill_group(httpd)


def publish(pub: Publisher, tmp_path, web, name: str, tamper=None):
    """`gitp2p torrent --web-seed` of pub, its files served under the web seed's root/NAME/.
    tamper(files) may change the files; the torrent is then rebuilt around them (an attacker's)."""
    root, url = web
    torrent, _ = pub.torrent(tmp_path / f"{name}.torrent", "--web-seed", url + name + "/")
    files = download(pub, torrent, root / name)
    if tamper is not None:
        tamper(files)
        meta = parse_torrent(torrent.read_bytes())
        order = [f.path[-1] for f in meta.files]
        info = build_info([([n], len(files[n])) for n in order], (files[n] for n in order), "packs", multi_file=True)
        torrent.write_bytes(build_torrent(info, web_seeds=[url + name + "/"]))
        for n in order:
            (root / name / "packs" / n).write_bytes(files[n])
    return torrent


def clone(torrent, dest, allowed, *extra, check=True):
    # `git clone -c` writes the setting into the new repository before the helper runs
    keep = [] if allowed is None else ["-c", f"gitp2p.allowedSignersFile={allowed}"]
    return git(*LOOPBACK, *extra, "clone", *keep, f"gitp2p::{torrent}", str(dest), check=check)


def test_clone_of_a_signed_torrent_verifies(tmp_path, web, keys, allowed):
    pub = Publisher(tmp_path / "pub", keys["alice"])
    torrent = publish(pub, tmp_path, web, "one")
    dest = tmp_path / "clone"
    proc = clone(torrent, dest, allowed)
    assert "signed by alice@example.org (ssh-ed25519 key SHA256:" in proc.stderr and "verified" in proc.stderr
    assert refs_of(dest)["refs/remotes/origin/main"] == refs_of(pub.path)["refs/heads/main"]
    assert git("config", "gitp2p.allowedSignersFile", cwd=dest).stdout.strip() == str(allowed)
    # the signature is kept beside the received torrent, so `gitp2p seed` seeds the same info-hash
    received = dest / ".git" / "gitp2p" / "received"
    ih = parse_torrent(torrent.read_bytes()).info_hash.hex()
    assert (received / f"{ih}.gitp2p-sig").read_bytes() == (web[0] / "one" / "packs" / "all.gitp2p-sig").read_bytes()
    # (the web root holds packs/ as a mount of the clone would)
    offers, notes = ReceivedTorrents(str(dest / ".git"), str(web[0] / "one")).scan()
    assert notes == [] and [o.info_hash for o in offers] == [ih]
    count = len(parse_torrent(torrent.read_bytes()).files)
    assert offers[0].renamed == ((count - 2, str(received / f"{ih}.gitp2p-refs")),
                                 (count - 1, str(received / f"{ih}.gitp2p-sig")))


def test_without_allowed_signers_the_key_is_reported(tmp_path, web, keys):
    pub = Publisher(tmp_path / "pub", keys["alice"])
    torrent = publish(pub, tmp_path, web, "one")
    proc = clone(torrent, tmp_path / "clone", None)
    assert "signed by ssh-ed25519 key SHA256:" in proc.stderr and "not verified" in proc.stderr


def _refused(proc, why: str, dest) -> None:
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if "refs not updated" in line]
    assert len(lines) == 1 and why in lines[0], proc.stderr
    assert not dest.exists(), "a refused clone left a directory"


@pytest.mark.skipif(shutil.which("gpg-agent") is None, reason="gpg is not installed: scripts/setup.sh installs gnupg")
def test_an_openpgp_signed_torrent_through_git_clone(tmp_path, web, homes, monkeypatch):
    """gpg.format openpgp at the publisher; `git clone -c gitp2p.verifyOpenPGP=true` verifies
    against the receiver's keyring (tests/trust/conftest.py): alice's key is certified there,
    mallory's is only imported, so his torrent is refused before `list`."""
    monkeypatch.setenv("GNUPGHOME", str(homes["pub"].path))
    pub = Publisher(tmp_path / "pub", homes["alice"])
    good = publish(pub, tmp_path, web, "good")
    bad = publish(Publisher(tmp_path / "mallory", homes["mallory"]), tmp_path, web, "bad")
    monkeypatch.setitem(ENV, "GNUPGHOME", str(homes["recv"].path))
    dest = tmp_path / "clone"
    proc = git(*LOOPBACK, "clone", "-c", "gitp2p.verifyOpenPGP=true", f"gitp2p::{good}", str(dest))
    assert f"signed by Alice <alice@example.org> (openpgp key {homes['alice']})" in proc.stderr, proc.stderr
    assert refs_of(dest)["refs/remotes/origin/main"] == refs_of(pub.path)["refs/heads/main"]
    refused = tmp_path / "refused"
    proc = git(*LOOPBACK, "clone", "-c", "gitp2p.verifyOpenPGP=true", f"gitp2p::{bad}", str(refused), check=False)
    _refused(proc, "whose validity in your keyring is undefined, below gpg.minTrustLevel marginal", refused)


def test_a_key_not_allowed_is_refused(tmp_path, web, keys, allowed):
    pub = Publisher(tmp_path / "pub", keys["mallory"])
    torrent = publish(pub, tmp_path, web, "one")
    dest = tmp_path / "clone"
    _refused(clone(torrent, dest, allowed, check=False), "which is not in gitp2p.allowedSignersFile", dest)


def test_an_unsigned_torrent_is_refused(tmp_path, web, keys, allowed):
    pub = Publisher(tmp_path / "pub", None)
    torrent = publish(pub, tmp_path, web, "one")
    dest = tmp_path / "clone"
    _refused(clone(torrent, dest, allowed, check=False), "all.gitp2p-refs is not signed", dest)


def _forge(files):
    sig = sigfile.parse(files["all.gitp2p-sig"])
    blob = bytearray(base64.b64decode(b"".join(sig.armored.splitlines()[1:-1])))
    blob[-3] ^= 0x10
    b64 = base64.b64encode(bytes(blob))
    armored = b"-----BEGIN SSH SIGNATURE-----\n" + b"\n".join(b64[i:i + 70] for i in range(0, len(b64), 70)) + \
        b"\n-----END SSH SIGNATURE-----\n"
    files["all.gitp2p-sig"] = sigfile.build(sig.name, sig.seq, sig.manifest_sha256, armored)


def test_a_forged_signature_is_refused(tmp_path, web, keys, allowed):
    pub = Publisher(tmp_path / "pub", keys["alice"])
    torrent = publish(pub, tmp_path, web, "one", tamper=_forge)
    dest = tmp_path / "clone"
    _refused(clone(torrent, dest, allowed, check=False), "does not verify (forged or damaged", dest)


def test_the_signature_of_another_manifest_is_refused(tmp_path, web, keys, allowed):
    pub = Publisher(tmp_path / "pub", keys["alice"])
    old = publish(pub, tmp_path, web, "old")
    old_sig = (web[0] / "old" / "packs" / "all.gitp2p-sig").read_bytes()
    assert old.exists()
    pub.commit("newer")

    def swap(files):
        files["all.gitp2p-sig"] = old_sig

    torrent = publish(pub, tmp_path, web, "new", tamper=swap)
    dest = tmp_path / "clone"
    _refused(clone(torrent, dest, allowed, check=False), "its signature is of another manifest", dest)


def test_replay_and_backwards_moves_through_git_fetch(tmp_path, web, keys, allowed):
    pub = Publisher(tmp_path / "pub", keys["alice"])
    old = publish(pub, tmp_path, web, "old")
    pub.commit("newer")
    new = publish(pub, tmp_path, web, "new")
    dest = tmp_path / "clone"
    clone(new, dest, allowed)
    after_new = refs_of(dest)
    # replay: the older signed torrent, handed to git fetch later, moves nothing, even forced
    git("config", "remote.origin.url", f"gitp2p::{old}", cwd=dest)
    proc = git(*LOOPBACK, "fetch", "--force", "origin", cwd=dest, check=False)
    assert proc.returncode != 0 and refs_of(dest) == after_new
    lines = [line for line in proc.stderr.splitlines() if "refs not updated" in line]
    assert len(lines) == 1 and "replay: sequence number" in lines[0], proc.stderr
    # a branch moved backwards, freshly signed: git's refspec decides; without `+` it refuses
    subprocess.run(["git", "reset", "-q", "--hard", "HEAD~2"], cwd=pub.path, check=True)
    back = publish(pub, tmp_path, web, "back")
    git("config", "remote.origin.url", f"gitp2p::{back}", cwd=dest)
    git("config", "remote.origin.fetch", "refs/heads/*:refs/remotes/origin/*", cwd=dest)
    proc = git(*LOOPBACK, "fetch", "origin", cwd=dest, check=False)
    assert proc.returncode != 0 and "non-fast-forward" in proc.stderr, proc.stderr
    assert refs_of(dest) == after_new
    proc = git(*LOOPBACK, "fetch", "--force", "origin", cwd=dest)
    assert refs_of(dest)["refs/remotes/origin/main"] == refs_of(pub.path)["refs/heads/main"]
