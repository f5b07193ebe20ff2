"""Signed ref manifests from `gitp2p torrent` to `gitp2p watch`: real ssh-keygen, real git.

The publisher signs with git's set-up (gitp2p.signManifests, gpg.format ssh,
user.signingkey); the torrent's files are written where a client would leave them
(every piece checked against the torrent); the receiver sets
gitp2p.allowedSignersFile.  Each attack asserts that no ref moved and that the
watcher said why in one line.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import time

import pytest

from testutil import git, gitp2p
from tsupport import Publisher, download, receiver, refs_of, watch_once

from gitfs_p2p.trust import sigfile


def _publish(pub: Publisher, tmp_path, name: str):
    torrent, text = pub.torrent(tmp_path / f"{name}.torrent")
    dl = tmp_path / f"dl-{name}"
    files = download(pub, torrent, dl)
    return dl, files, text


def _rewrite(dl, name: str, data: bytes) -> None:
    (dl / "packs" / name).write_bytes(data)


def test_signed_torrent_verifies_end_to_end(tmp_path, keys, allowed):
    pub = Publisher(tmp_path / "pub", keys["alice"])
    dl, files, text = _publish(pub, tmp_path, "one")
    assert "signed all.gitp2p-refs with ssh-ed25519 key SHA256:" in text
    # the signature is the torrent's very last file, right after the manifest
    assert list(files)[-2:] == ["all.gitp2p-refs", "all.gitp2p-sig"]
    sig = sigfile.parse(files["all.gitp2p-sig"])
    assert sig.manifest_sha256 == hashlib.sha256(files["all.gitp2p-refs"]).hexdigest() and sig.name == "all"
    # the same refs, signed again: the same signature, so the same info-hash
    again, _ = pub.torrent(tmp_path / "again.torrent")
    assert again.read_bytes() == (tmp_path / "one.torrent").read_bytes()

    into = receiver(tmp_path / "recv.git", allowed)
    rc, err = watch_once(dl, into)
    assert rc == 0, err
    assert refs_of(into) == refs_of(pub.path)
    assert "signed by alice@example.org (ssh-ed25519 key SHA256:" in err and "verified" in err


def test_unsigned_torrent_is_todays_torrent(tmp_path, keys):
    """Signing off: not one byte differs from a torrent made without any signing set-up."""
    pub = Publisher(tmp_path / "pub", None)
    plain, _ = pub.torrent(tmp_path / "plain.torrent")
    pub.use_key(keys["alice"])
    pub.use_key(None)
    off, _ = pub.torrent(tmp_path / "off.torrent")
    assert off.read_bytes() == plain.read_bytes()
    pub.use_key(keys["alice"])
    signed, _ = pub.torrent(tmp_path / "signed.torrent")
    assert signed.read_bytes() != plain.read_bytes()


def test_without_allowed_signers_refs_move_and_the_key_is_reported_once(tmp_path, keys):
    pub = Publisher(tmp_path / "pub", keys["alice"])
    dl, _, _ = _publish(pub, tmp_path, "one")
    into = receiver(tmp_path / "recv.git", None)
    rc, err = watch_once(dl, into)
    assert rc == 0, err
    assert refs_of(into) == refs_of(pub.path)
    fp = sigfile.parse((dl / "packs" / "all.gitp2p-sig").read_bytes()).fingerprint
    lines = [line for line in err.splitlines() if fp in line]
    assert len(lines) == 1 and "not verified: gitp2p.allowedSignersFile is not set" in lines[0], err
    rc, err = watch_once(dl, into)
    assert rc == 0 and fp not in err, err


def _refused(err: str, why: str) -> None:
    lines = [line for line in err.splitlines() if "not updated" in line]
    assert lines and all(why in line for line in lines), err


def test_forged_signature_is_refused(tmp_path, keys, allowed):
    pub = Publisher(tmp_path / "pub", keys["alice"])
    dl, files, _ = _publish(pub, tmp_path, "one")
    sig = sigfile.parse(files["all.gitp2p-sig"])
    blob = bytearray(base64.b64decode(b"".join(sig.armored.splitlines()[1:-1])))
    blob[-5] ^= 0x40  # inside the ed25519 signature itself
    b64 = base64.b64encode(bytes(blob))
    armored = b"-----BEGIN SSH SIGNATURE-----\n" + b"\n".join(b64[i:i + 70] for i in range(0, len(b64), 70)) + \
        b"\n-----END SSH SIGNATURE-----\n"
    _rewrite(dl, "all.gitp2p-sig", sigfile.build(sig.name, sig.seq, sig.manifest_sha256, armored))
    into = receiver(tmp_path / "recv.git", allowed)
    rc, err = watch_once(dl, into)
    assert rc == 3
    assert refs_of(into) == {}
    _refused(err, "does not verify (forged or damaged")
    # objects are imported all the same: only the refs wait for a trusted manifest
    tip = refs_of(pub.path)["refs/heads/main"]
    git("cat-file", "-e", tip, cwd=into)


def test_a_key_not_in_the_allowed_file_is_refused(tmp_path, keys, allowed):
    pub = Publisher(tmp_path / "pub", keys["mallory"])
    dl, _, _ = _publish(pub, tmp_path, "one")
    into = receiver(tmp_path / "recv.git", allowed)
    rc, err = watch_once(dl, into)
    assert rc == 3 and refs_of(into) == {}
    _refused(err, "which is not in gitp2p.allowedSignersFile")


def test_an_unsigned_manifest_is_refused_when_signers_are_set(tmp_path, keys, allowed):
    pub = Publisher(tmp_path / "pub", None)
    dl, _, _ = _publish(pub, tmp_path, "one")
    into = receiver(tmp_path / "recv.git", allowed)
    rc, err = watch_once(dl, into)
    assert rc == 3 and refs_of(into) == {}
    _refused(err, "is not signed (gitp2p.allowedSignersFile is set)")


def test_replay_of_an_older_manifest_is_refused(tmp_path, keys, allowed):
    pub = Publisher(tmp_path / "pub", keys["alice"])
    old_dl, _, _ = _publish(pub, tmp_path, "old")
    old_refs = refs_of(pub.path)
    pub.commit("newer")
    new_dl, _, _ = _publish(pub, tmp_path, "new")
    into = receiver(tmp_path / "recv.git", allowed)
    rc, err = watch_once(new_dl, into)
    assert rc == 0, err
    new_refs = refs_of(into)
    assert new_refs == refs_of(pub.path) != old_refs
    rc, err = watch_once(old_dl, into, "--force")  # even --force never takes an older signed manifest
    assert rc == 3 and refs_of(into) == new_refs
    _refused(err, "replay: sequence number")
    assert "older than" in err


def test_a_branch_moved_backwards_needs_force(tmp_path, keys, allowed):
    pub = Publisher(tmp_path / "pub", keys["alice"])
    dl, _, _ = _publish(pub, tmp_path, "one")
    into = receiver(tmp_path / "recv.git", allowed)
    assert watch_once(dl, into)[0] == 0
    before = refs_of(into)
    git("reset", "-q", "--hard", "HEAD~2", cwd=pub.path)
    back, _, _ = _publish(pub, tmp_path, "back")  # signed anew, with a newer sequence number
    rc, err = watch_once(back, into)
    assert rc == 3 and refs_of(into) == before
    _refused(err, "is not a fast-forward (use --force to allow)")
    rc, err = watch_once(back, into, "--force")
    assert rc == 0, err
    assert refs_of(into) == refs_of(pub.path)


def test_the_signature_of_another_manifest_is_refused(tmp_path, keys, allowed):
    pub = Publisher(tmp_path / "pub", keys["alice"])
    _, old_files, _ = _publish(pub, tmp_path, "old")
    pub.commit("newer")
    dl, _, _ = _publish(pub, tmp_path, "new")
    _rewrite(dl, "all.gitp2p-sig", old_files["all.gitp2p-sig"])
    into = receiver(tmp_path / "recv.git", allowed)
    rc, err = watch_once(dl, into)
    assert rc == 3 and refs_of(into) == {}
    _refused(err, "its signature is of another manifest")


def _other_namespace(files, key) -> bytes:
    sig = sigfile.parse(files["all.gitp2p-sig"])
    proc = subprocess.run(["ssh-keygen", "-Y", "sign", "-n", "git", "-f", str(key)], input=sig.payload,
                          capture_output=True, check=True)
    return sigfile.payload(sig.name, sig.seq, sig.manifest_sha256) + proc.stdout


def _with_checksum(body: bytes) -> bytes:
    return body + b"# sha256 " + hashlib.sha256(body).hexdigest().encode() + b"\n"


@pytest.mark.parametrize("kind", ["garbage", "huge", "not-a-signature", "other-namespace", "truncated"])
def test_bad_signature_files_are_quarantined(tmp_path, keys, allowed, kind):
    pub = Publisher(tmp_path / "pub", keys["alice"])
    dl, files, _ = _publish(pub, tmp_path, "one")
    good = files["all.gitp2p-sig"]
    bad = {
        "garbage": _with_checksum(b"# gitp2p ref signature 1\nname all\nseq x\nmanifest 0\n-\n-\n-\n"),
        "huge": good[:-1] + b"\n" * (40 << 10),
        "not-a-signature": _with_checksum(good.split(b"-----BEGIN")[0] + b"-----BEGIN SSH SIGNATURE-----\n"
                                          + base64.b64encode(b"SSHSIG\0\0\0\1" + b"\0" * 40) + b"\n-----END SSH SIGNATURE-----\n"),
        "other-namespace": _with_checksum(_other_namespace(files, keys["alice"])),
        "truncated": good[: len(good) // 2],
    }[kind]
    _rewrite(dl, "all.gitp2p-sig", bad)
    into = receiver(tmp_path / "recv.git", allowed)
    rc, err = watch_once(dl, into, "--settle", "0")
    assert rc == 3 and refs_of(into) == {}
    lines = [line for line in err.splitlines() if "quarantined packs/all.gitp2p-sig: bad ref signature:" in line]
    assert lines, err
    why = {"garbage": "bad seq line", "huge": "more than a signature file's bound",
           "not-a-signature": "not hold an SSHSIG signature", "other-namespace": "namespace 'git'",
           "truncated": "checksum line does not match"}[kind]
    assert why in lines[0] or (kind == "not-a-signature" and "SSH signature" in lines[0]), err
    assert not (dl / "packs" / "all.gitp2p-sig").exists()
    _refused(err, "signature")
    shutil.rmtree(dl)


def test_a_literal_key_signs_through_ssh_agent(tmp_path, keys, allowed):
    """user.signingkey = key::ssh-ed25519 AAAA... (the private half only in ssh-agent), as git
    signs commits with it."""
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        for _ in range(200):  # bounded: the agent creates its socket at once
            if sock.exists():
                break
            time.sleep(0.05)
        subprocess.run(["ssh-add", "-q", str(keys["alice"])], env=env, check=True, capture_output=True)
        pub = Publisher(tmp_path / "pub", None)
        git("config", "gitp2p.signManifests", "true", cwd=pub.path)
        git("config", "gpg.format", "ssh", cwd=pub.path)
        literal = (keys["alice"].parent / "alice.pub").read_text().strip()
        git("config", "user.signingkey", f"key::{literal}", cwd=pub.path)
        proc = subprocess.run([sys.executable, "-m", "gitfs_p2p.cli", "torrent", str(pub.path), "--all",
                               "-o", str(tmp_path / "t.torrent")], env=env, capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()
    finally:
        agent.terminate()
        agent.wait(timeout=10)
    dl = tmp_path / "dl"
    download(pub, tmp_path / "t.torrent", dl)
    into = receiver(tmp_path / "recv.git", allowed)
    rc, err = watch_once(dl, into)
    assert rc == 0 and "signed by alice@example.org" in err, err
    assert refs_of(into) == refs_of(pub.path)


@pytest.mark.parametrize("setup,why", [
    ({"gpg.format": "openpgp", "user.signingkey": "ABCD"}, "gpg has no secret key for 'ABCD'"),
    ({"gpg.format": "x509"}, "gitp2p signs ref manifests with gpg.format ssh or openpgp"),
    ({"gpg.format": "ssh"}, "user.signingkey is not set"),
    ({"gpg.format": "ssh", "user.signingkey": "/nonexistent/key.pub"}, "no such key file"),
])
def test_an_unusable_signing_setup_is_one_line(tmp_path, setup, why, monkeypatch):
    home = tmp_path / "gnupg"  # an empty keyring, never the user's; no agent is started
    home.mkdir(mode=0o700)
    (home / "gpg.conf").write_text("no-autostart\n")
    monkeypatch.setenv("GNUPGHOME", str(home))
    pub = Publisher(tmp_path / "pub", None)
    git("config", "gitp2p.signManifests", "true", cwd=pub.path)
    for key, value in setup.items():
        git("config", key, value, cwd=pub.path)
    proc = gitp2p("torrent", str(pub.path), "--all", "-o", str(tmp_path / "t.torrent"))
    err = proc.stderr.decode().strip()
    assert proc.returncode == 1 and len(err.splitlines()) == 1 and why in err, err
    assert not (tmp_path / "t.torrent").exists()


def test_a_damaged_sequence_file_is_refused_not_reset(tmp_path, keys):
    pub = Publisher(tmp_path / "pub", keys["alice"])
    seq = pub.path / ".git" / "gitp2p" / "sign-seq"
    seq.parent.mkdir(parents=True, exist_ok=True)
    seq.write_text("garbage\n")
    proc = gitp2p("torrent", str(pub.path), "--all", "-o", str(tmp_path / "t.torrent"))
    assert proc.returncode == 1 and "not a sequence number" in proc.stderr.decode()
    assert seq.read_text() == "garbage\n"


def test_an_allowed_line_restricted_to_git_does_not_cover_ref_signatures(tmp_path, keys):
    kind, blob = (keys["alice"].parent / "alice.pub").read_text().split()[:2]
    allowed = tmp_path / "allowed_git_only"
    allowed.write_text(f'alice@example.org namespaces="git" {kind} {blob}\n')
    pub = Publisher(tmp_path / "pub", keys["alice"])
    dl, _, _ = _publish(pub, tmp_path, "one")
    into = receiver(tmp_path / "recv.git", allowed)
    rc, err = watch_once(dl, into)
    assert rc == 3 and refs_of(into) == {}
    _refused(err, "does not allow namespace gitp2p-refs@gitp2p")
    allowed.write_text(f'alice@example.org namespaces="git,gitp2p-refs@gitp2p" {kind} {blob}\n')
    rc, err = watch_once(dl, into)
    assert rc == 0, err
    assert refs_of(into) == refs_of(pub.path)
