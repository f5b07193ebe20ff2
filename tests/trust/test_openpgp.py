"""OpenPGP-signed ref manifests (gpg.format openpgp), from `gitp2p torrent` to `gitp2p watch`
and the remote helper: real gpg with throw-away GNUPGHOMEs, real git.

The publisher's keyring holds alice, mallory and eve.  The receiver (carol) has her own key,
has imported alice's and mallory's public keys, and certified alice's alone (`gpg
--lsign-key`): in git's model (gpg.minTrustLevel, default marginal as for `git merge
--verify-signatures`) alice is allowed, mallory is known but not valid, eve is unknown."""

from __future__ import annotations

import shutil

import pytest

from gitfs_p2p.trust import sigfile
from gitfs_p2p.trust.verify import _gpg_status
from testutil import git, gitp2p
from tsupport import Publisher, download, receiver, refs_of, watch_once

pytestmark = pytest.mark.skipif(shutil.which("gpg") is None or shutil.which("gpg-agent") is None,
                                reason="gpg is not installed: scripts/setup.sh installs gnupg")


@pytest.fixture
def as_publisher(homes, monkeypatch):
    monkeypatch.setenv("GNUPGHOME", str(homes["pub"].path))


def _publish(pub: Publisher, tmp_path, name: str):
    torrent, text = pub.torrent(tmp_path / f"{name}.torrent")
    dl = tmp_path / f"dl-{name}"
    return dl, download(pub, torrent, dl), text


def _receive(monkeypatch, homes, dl, into, *extra: str) -> tuple[int, str]:
    monkeypatch.setenv("GNUPGHOME", str(homes["recv"].path))
    try:
        return watch_once(dl, into, *extra)
    finally:
        monkeypatch.setenv("GNUPGHOME", str(homes["pub"].path))


def _verifying(path) -> object:
    into = receiver(path, None)
    git("config", "gitp2p.verifyOpenPGP", "true", cwd=into)
    return into


def _refused(err: str, why: str) -> None:
    lines = [line for line in err.splitlines() if "not updated" in line]
    assert lines and all(why in line for line in lines), err


def test_signed_with_gpg_and_verified_against_the_keyring(tmp_path, homes, as_publisher, monkeypatch):
    pub = Publisher(tmp_path / "pub", homes["alice"])
    dl, files, text = _publish(pub, tmp_path, "one")
    assert f"signed all.gitp2p-refs with openpgp key {homes['alice']}" in text, text
    sig = sigfile.parse(files["all.gitp2p-sig"])
    assert sig.openpgp and sig.fingerprint == homes["alice"]
    assert sig.armored.startswith(b"-----BEGIN PGP SIGNATURE-----\n\n")  # the pinned armor
    # the same refs, signed again: the kept signature, so the same info-hash
    again, _ = pub.torrent(tmp_path / "again.torrent")
    assert again.read_bytes() == (tmp_path / "one.torrent").read_bytes()

    into = _verifying(tmp_path / "recv.git")
    rc, err = _receive(monkeypatch, homes, dl, into)
    assert rc == 0, err
    assert refs_of(into) == refs_of(pub.path)
    assert f"signed by Alice <alice@example.org> (openpgp key {homes['alice']}), sequence number" in err, err


def test_a_forged_signature_is_refused(tmp_path, homes, as_publisher, monkeypatch):
    pub = Publisher(tmp_path / "pub", homes["alice"])
    dl, files, _ = _publish(pub, tmp_path, "one")
    sig = sigfile.parse(files["all.gitp2p-sig"])
    packet = bytearray(sigfile.dearmor_openpgp(sig.armored))
    packet[-3] ^= 0x10  # inside the signature's last MPI
    forged = sigfile.build(sig.name, sig.seq, sig.manifest_sha256, sigfile.armor_openpgp(bytes(packet)))
    (dl / "packs" / "all.gitp2p-sig").write_bytes(forged)
    into = _verifying(tmp_path / "recv.git")
    rc, err = _receive(monkeypatch, homes, dl, into)
    assert rc == 3 and refs_of(into) == {}
    _refused(err, "does not verify (forged or damaged)")


@pytest.mark.parametrize("who, why", [
    ("eve", "which is not in your gpg keyring"),
    ("mallory", "whose validity in your keyring is undefined, below gpg.minTrustLevel marginal"),
])
def test_a_key_not_allowed_is_refused(tmp_path, homes, as_publisher, monkeypatch, who, why):
    pub = Publisher(tmp_path / "pub", homes[who])
    dl, _, _ = _publish(pub, tmp_path, "one")
    into = _verifying(tmp_path / "recv.git")
    rc, err = _receive(monkeypatch, homes, dl, into)
    assert rc == 3 and refs_of(into) == {}
    _refused(err, why)
    if who == "mallory":  # git's own knob: any key of the keyring, whatever its validity
        git("config", "gpg.minTrustLevel", "undefined", cwd=into)
        rc, err = _receive(monkeypatch, homes, dl, into)
        assert rc == 0 and refs_of(into) == refs_of(pub.path), err


def test_replay_of_an_older_manifest_is_refused(tmp_path, homes, as_publisher, monkeypatch):
    pub = Publisher(tmp_path / "pub", homes["alice"])
    old_dl, _, _ = _publish(pub, tmp_path, "old")
    pub.commit("newer")
    new_dl, _, _ = _publish(pub, tmp_path, "new")
    into = _verifying(tmp_path / "recv.git")
    assert _receive(monkeypatch, homes, new_dl, into)[0] == 0
    new_refs = refs_of(into)
    rc, err = _receive(monkeypatch, homes, old_dl, into, "--force")
    assert rc == 3 and refs_of(into) == new_refs
    _refused(err, "replay: sequence number")


def test_each_setting_allows_its_own_kind_of_key(tmp_path, homes, as_publisher, monkeypatch, keys, allowed):
    pgp_dl, _, _ = _publish(Publisher(tmp_path / "pgp", homes["alice"]), tmp_path, "pgp")
    ssh_dl, _, _ = _publish(Publisher(tmp_path / "ssh", keys["alice"]), tmp_path, "ssh")
    ssh_only = receiver(tmp_path / "ssh-only.git", allowed)
    rc, err = _receive(monkeypatch, homes, pgp_dl, ssh_only)
    assert rc == 3 and refs_of(ssh_only) == {}
    _refused(err, "an OpenPGP key, but only SSH keys of gitp2p.allowedSignersFile are allowed here")
    pgp_only = _verifying(tmp_path / "pgp-only.git")
    rc, err = _receive(monkeypatch, homes, ssh_dl, pgp_only)
    assert rc == 3 and refs_of(pgp_only) == {}
    _refused(err, "an SSH key, but only OpenPGP keys are allowed here")
    # both set: either kind, each verified its own way
    for kind, dl in (("ssh", ssh_dl), ("pgp", pgp_dl)):
        both = _verifying(tmp_path / f"both-{kind}.git")
        git("config", "gitp2p.allowedSignersFile", str(allowed), cwd=both)
        rc, err = _receive(monkeypatch, homes, dl, both)
        assert rc == 0 and refs_of(both) == refs_of(tmp_path / kind), err


def test_without_the_setting_refs_move_and_the_key_is_reported(tmp_path, homes, as_publisher, monkeypatch):
    pub = Publisher(tmp_path / "pub", homes["alice"])
    dl, _, _ = _publish(pub, tmp_path, "one")
    into = receiver(tmp_path / "recv.git", None)
    rc, err = _receive(monkeypatch, homes, dl, into)
    assert rc == 0 and refs_of(into) == refs_of(pub.path), err
    assert f"signed by openpgp key {homes['alice']} (not verified: gitp2p.verifyOpenPGP is not set)" in err


def test_git_s_signing_set_up_is_honoured(tmp_path, homes, as_publisher, monkeypatch):
    """user.signingkey unset: the committer's identity names the key, as for `git commit -S`;
    gpg.program replaces gpg; a key gpg does not have is one line before anything is signed."""
    pub = Publisher(tmp_path / "pub", homes["alice"])
    git("config", "--unset", "user.signingkey", cwd=pub.path)
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Mallory")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "mallory@example.org")
    wrapper = tmp_path / "my-gpg"
    log = tmp_path / "my-gpg.log"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec gpg "$@"\n')
    wrapper.chmod(0o755)
    git("config", "gpg.program", str(wrapper), cwd=pub.path)
    _, files, _ = _publish(pub, tmp_path, "one")
    assert sigfile.parse(files["all.gitp2p-sig"]).fingerprint == homes["mallory"]
    assert "-bsau Mallory <mallory@example.org>" in log.read_text()

    git("config", "user.signingkey", "nobody@example.org", cwd=pub.path)
    proc = gitp2p("torrent", str(pub.path), "--all", "-o", str(tmp_path / "no.torrent"))
    err = proc.stderr.decode()
    assert proc.returncode != 0 and len(err.strip().splitlines()) == 1, err
    assert "no secret key for 'nobody@example.org'" in err


def test_the_pinned_armor_and_packet_are_checked():
    good = sigfile.dearmor_openpgp(sigfile.armor_openpgp(b"\x88\x00"), pinned=True)
    assert good == b"\x88\x00"
    armored = sigfile.armor_openpgp(b"\x88\x00")
    with pytest.raises(sigfile.SignatureFormatError, match="armor headers"):
        sigfile.dearmor_openpgp(armored.replace(b"-----\n\n", b"-----\nComment: x\n\n", 1))
    lines = armored.split(b"\n")
    assert lines[-3].startswith(b"=")
    lines[-3] = b"=AAAA"
    with pytest.raises(sigfile.SignatureFormatError, match="CRC"):
        sigfile.dearmor_openpgp(b"\n".join(lines))
    for packet, why in ((b"\xc2\x01\x04", "truncated"), (b"\x99\x00\x00", "type 6"),
                        (b"\x88\x06\x04\x01\x16\x08\x00\x00", "binary document")):
        with pytest.raises(sigfile.SignatureFormatError, match=why):
            sigfile._openpgp_issuer(packet)


def test_two_signatures_are_an_error_as_for_git():
    status = (b"[GNUPG:] GOODSIG 97A2D1709A3E4A4E Alice <alice@example.org>\n"
              b"[GNUPG:] GOODSIG 0000000000000001 Mallory <mallory@example.org>\n")
    assert _gpg_status(status)["result"] == "E"
