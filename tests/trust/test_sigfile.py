"""The ref signature file's format (trust/sigfile.py) and the publisher's sequence numbers, without git."""

from __future__ import annotations

import subprocess

import pytest

from gitfs_p2p.trust import sigfile
from gitfs_p2p.trust.signing import next_seq
from tsupport import make_key

DIGEST = "ab" * 32


@pytest.fixture(scope="module")
def signed(tmp_path_factory) -> bytes:
    key = make_key(tmp_path_factory.mktemp("keys"), "k")
    payload = sigfile.payload("all", 1700000000, DIGEST)
    armored = subprocess.run(["ssh-keygen", "-Y", "sign", "-n", sigfile.NAMESPACE, "-f", str(key)], input=payload,
                             capture_output=True, check=True).stdout
    return sigfile.build("all", 1700000000, DIGEST, armored)


def test_round_trip_and_pinned_layout(signed):
    sig = sigfile.parse(signed)
    assert (sig.name, sig.seq, sig.manifest_sha256, sig.namespace, sig.key_type) == (
        "all", 1700000000, DIGEST, sigfile.NAMESPACE, "ssh-ed25519")
    lines = signed.split(b"\n")
    assert lines[:4] == [b"# gitp2p ref signature 1", b"name all", b"seq 1700000000", b"manifest " + DIGEST.encode()]
    assert lines[4] == b"-----BEGIN SSH SIGNATURE-----" and lines[-3] == b"-----END SSH SIGNATURE-----"
    assert lines[-2].startswith(b"# sha256 ") and lines[-1] == b""
    assert sig.payload == b"\n".join(lines[:4]) + b"\n"
    assert sigfile.build(sig.name, sig.seq, sig.manifest_sha256, sig.armored) == signed


def test_every_prefix_and_every_flipped_byte_is_refused_or_detected(signed):
    for cut in range(len(signed)):
        with pytest.raises(sigfile.SignatureFormatError):
            sigfile.parse(signed[:cut])
    for pos in range(0, len(signed), 7):
        damaged = bytearray(signed)
        damaged[pos] ^= 0x01
        with pytest.raises(sigfile.SignatureFormatError):
            sigfile.parse(bytes(damaged))  # the checksum line catches it, or the parse does
    with pytest.raises(sigfile.SignatureFormatError):
        sigfile.parse(signed + b"x")


@pytest.mark.parametrize("name,seq,digest", [("", 1, DIGEST), (".x", 1, DIGEST), ("a b", 1, DIGEST),
                                             ("all", 0, DIGEST), ("all", 1 << 63, DIGEST), ("all", 1, "AB" * 32)])
def test_payload_fields_are_checked(name, seq, digest):
    with pytest.raises(sigfile.SignatureFormatError):
        sigfile.payload(name, seq, digest)


def test_sequence_numbers_only_grow(tmp_path):
    first = next_seq(str(tmp_path), now=1000)
    assert first == 1000
    assert next_seq(str(tmp_path), now=999) == 1001  # a clock set back never repeats a number
    assert next_seq(str(tmp_path), now=5000) == 5000
    assert (tmp_path / "gitp2p" / "sign-seq").read_text() == "5000\n"
