"""Signing ref manifests with git's own signing set-up (user.signingkey, gpg.format).

`gitp2p.signManifests = true` in the publishing repository turns it on, as
`commit.gpgSign` does for commits.  The key is git's, read as `git commit -S` reads it:

- `gpg.format = ssh`: `user.signingkey` names a key file (private, or its .pub with
  the private half in ssh-agent) or gives the key itself (`key::ssh-ed25519 AAAA...`,
  signed through ssh-agent); `gpg.ssh.program` replaces ssh-keygen.
- `gpg.format = openpgp` (git's default): `gpg --status-fd=2 -bsau KEY`, KEY being
  `user.signingkey` or, unset, the committer's identity (`Name <email>`), with
  `gpg.openpgp.program` or `gpg.program` replacing gpg; the armor is re-written in the
  one pinned form (sigfile.py).

The sequence number lives in GIT_DIR/gitp2p/sign-seq: each signature takes
max(last + 1, unix time), written durably (fsync, rename, fsync of the directory)
before the signature is made, under a lock, so it only ever grows even across
crashes and concurrent publishers of one repository.  The last signature of each
label is kept in GIT_DIR/gitp2p/signed/<label>.gitp2p-sig and reused while the
manifest and key are unchanged: an unchanged repository keeps its info-hash.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import logging
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass

from ..durable import write_durably
from ..errors import PublishError
from ..git.runner import run_git
from .sigfile import (NAMESPACE, SIGNATURE_SUFFIX, RefSignature, SignatureFormatError, armor_openpgp, build,
                      dearmor_openpgp, parse, payload)

__all__ = ["Signer", "SshSigner", "OpenPGPSigner", "signer_for", "sign_manifest", "next_seq"]

log = logging.getLogger(__name__)

SIGN_TIMEOUT = 120.0  # a key with a passphrase asks on the terminal (or the agent confirms)


@dataclass(frozen=True)
class SshSigner:
    git_dir: str
    key: str  # a key file's path, or a public key given literally
    literal: bool  # key is `ssh-ed25519 AAAA...` (user.signingkey key::...): signed through ssh-agent
    program: str = "ssh-keygen"

    def public_key_blob(self) -> bytes | None:
        """The signing key's public half (ssh wire format), when it can be known without asking
        for a passphrase: the literal key, KEY.pub, or KEY itself when it is a public key."""
        text = None
        if self.literal:
            text = self.key
        else:
            for path in (self.key, self.key + ".pub"):
                try:
                    with open(path, "rb") as fh:
                        head = fh.read(16 << 10)
                except OSError:
                    continue
                if not head.startswith(b"-----BEGIN"):
                    text = head.decode("ascii", "replace")
                    break
        if not text:
            return None
        parts = text.split()
        try:
            return base64.b64decode(parts[1], validate=True) if len(parts) >= 2 else None
        except ValueError:
            return None

    def sign(self, data: bytes) -> bytes:
        """The armored SSH signature of data in our namespace (`ssh-keygen -Y sign`)."""
        with tempfile.TemporaryDirectory(prefix="gitp2p-sign-") as tmp:
            key_path, extra = self.key, []
            if self.literal:  # as git does: the public key in a file, -U: the private half is in the agent
                key_path = os.path.join(tmp, "key.pub")
                with open(key_path, "w") as fh:
                    fh.write(self.key.strip() + "\n")
                extra = ["-U"]
            msg = os.path.join(tmp, "payload")
            with open(msg, "wb") as fh:
                fh.write(data)
            cmd = [self.program, "-Y", "sign", "-n", NAMESPACE, "-f", key_path, *extra, msg]
            try:
                proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=SIGN_TIMEOUT)
            except FileNotFoundError:
                raise PublishError(f"{self.program}: not found (gpg.ssh.program; apt-get install openssh-client)") from None
            except subprocess.TimeoutExpired:
                raise PublishError(f"{self.program} -Y sign did not finish within {SIGN_TIMEOUT:g}s") from None
            if proc.returncode != 0:
                why = proc.stderr.decode(errors="replace").strip().splitlines()
                raise PublishError(f"signing the ref manifest with {self.describe()} failed: "
                                   f"{why[-1] if why else f'exit status {proc.returncode}'}")
            try:
                with open(msg + ".sig", "rb") as fh:
                    return fh.read()
            except OSError as exc:
                raise PublishError(f"{self.program} -Y sign wrote no signature ({exc.strerror})") from None

    def describe(self) -> str:
        return f"key::{self.key[:40]}..." if self.literal else self.key

    def owns(self, sig: RefSignature) -> bool:
        """sig was made by this signer's key (a kept signature may be used again)."""
        blob = self.public_key_blob()
        return blob is not None and not sig.openpgp and sig.key_blob == blob


@dataclass(frozen=True)
class OpenPGPSigner:
    git_dir: str
    key: str  # user.signingkey, or the committer's `Name <email>`, as git gives it to gpg -u
    program: str = "gpg"

    def _run(self, args: list[str], data: bytes | None = None) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([self.program, *args], input=data if data is not None else b"",
                                  capture_output=True, timeout=SIGN_TIMEOUT)
        except FileNotFoundError:
            raise PublishError(f"{self.program}: not found (gpg.openpgp.program or gpg.program; "
                               "apt-get install gnupg)") from None
        except subprocess.TimeoutExpired:
            raise PublishError(f"{self.program} {args[0]} did not finish within {SIGN_TIMEOUT:g}s") from None

    def fingerprints(self) -> set[bytes]:
        """The fingerprints of the secret keys (primary and subkeys) that KEY names in the keyring."""
        proc = self._run(["--batch", "--with-colons", "--list-secret-keys", "--", self.key])
        if proc.returncode != 0:
            return set()
        out = set()
        for line in proc.stdout.decode("utf-8", "replace").splitlines():
            fields = line.split(":")
            if fields[0] == "fpr" and len(fields) > 9 and fields[9]:
                try:
                    out.add(bytes.fromhex(fields[9]))
                except ValueError:
                    pass
        return out

    def sign(self, data: bytes) -> bytes:
        """The armored OpenPGP detached signature of data (as git signs: gpg --status-fd=2 -bsau KEY)."""
        proc = self._run(["--status-fd=2", "-bsau", self.key], data)
        if proc.returncode != 0 or b"\n[GNUPG:] SIG_CREATED " not in b"\n" + proc.stderr:
            why = [line for line in proc.stderr.decode(errors="replace").strip().splitlines()
                   if not line.startswith("[GNUPG:]")]
            raise PublishError(f"signing the ref manifest with OpenPGP key {self.key} failed: "
                               f"{why[-1] if why else f'exit status {proc.returncode}'}")
        try:
            return armor_openpgp(dearmor_openpgp(proc.stdout, pinned=False))
        except SignatureFormatError as exc:
            raise PublishError(f"{self.program} -bsau wrote something that is not an OpenPGP signature: {exc}") from None

    def describe(self) -> str:
        return f"OpenPGP key {self.key}"

    def owns(self, sig: RefSignature) -> bool:
        if not sig.openpgp:
            return False
        fprs = self.fingerprints()
        return sig.key_blob in fprs or any(f.endswith(sig.key_blob) for f in fprs)


#: A repository's signer, by gpg.format.
Signer = SshSigner | OpenPGPSigner


def _config(git_dir: str, key: str, kind: str | None = None) -> str | None:
    args = ["config"] + ([f"--type={kind}"] if kind else []) + ["--get", key]
    out = run_git(*args, git_dir=git_dir, check=False).strip()
    return out or None


def _committer(git_dir: str) -> str | None:
    """`Name <email>` of the committer, as git gives gpg when user.signingkey is unset."""
    out = run_git("var", "GIT_COMMITTER_IDENT", git_dir=git_dir, check=False).strip()
    cut = out.rfind(">")
    return out[:cut + 1] if cut > 0 else None


def _openpgp_signer(git_dir: str) -> OpenPGPSigner:
    program = _config(git_dir, "gpg.openpgp.program") or _config(git_dir, "gpg.program") or "gpg"
    key = _config(git_dir, "user.signingkey") or _committer(git_dir)
    if key is None:
        raise PublishError("gitp2p.signManifests is true but user.signingkey is not set and git knows no "
                           "committer identity (git config user.signingkey FINGERPRINT)")
    signer = OpenPGPSigner(git_dir, key, program)
    if not signer.fingerprints():
        raise PublishError(f"gitp2p.signManifests is true but {program} has no secret key for {key!r} "
                           f"(user.signingkey; {program} --list-secret-keys)")
    return signer


def signer_for(git_dir: str) -> Signer | None:
    """The repository's signer when gitp2p.signManifests is true, else None; PublishError when it is
    on but git's signing set-up cannot sign manifests (no key, another gpg.format)."""
    if _config(git_dir, "gitp2p.signManifests", "bool") != "true":
        return None
    fmt = _config(git_dir, "gpg.format") or "openpgp"
    if fmt == "openpgp":
        return _openpgp_signer(git_dir)
    if fmt != "ssh":
        raise PublishError(
            f"gitp2p.signManifests is true but gpg.format is {fmt!r}: gitp2p signs ref manifests with "
            "gpg.format ssh or openpgp")
    key = _config(git_dir, "user.signingkey")
    if key is None:
        raise PublishError("gitp2p.signManifests is true but user.signingkey is not set "
                           "(git config user.signingkey ~/.ssh/id_ed25519.pub)")
    program = _config(git_dir, "gpg.ssh.program") or "ssh-keygen"
    if key.startswith("key::"):
        return SshSigner(git_dir, key[len("key::"):].strip(), True, program)
    if key.startswith("ssh-"):  # git still accepts a bare literal key (deprecated form)
        return SshSigner(git_dir, key.strip(), True, program)
    path = os.path.expanduser(key)
    if not os.path.isabs(path):
        path = os.path.abspath(path)
    if not os.path.exists(path):
        raise PublishError(f"user.signingkey {key}: no such key file")
    return SshSigner(git_dir, path, False, program)


def _state_dir(git_dir: str) -> str:
    path = os.path.join(git_dir, "gitp2p")
    os.makedirs(path, exist_ok=True)
    return path


def next_seq(git_dir: str, now: float | None = None) -> int:
    """Take the next sequence number: max(last + 1, unix time), on disk before it is returned."""
    path = os.path.join(_state_dir(git_dir), "sign-seq")
    lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        try:
            with open(path, "rb") as fh:
                text = fh.read(64).strip()
        except FileNotFoundError:
            text = b"0"
        if not text.isdigit():
            raise PublishError(f"{path}: not a sequence number; remove it only if no manifest was ever signed "
                               "here, or write a number above every one published")
        seq = max(int(text) + 1, int(time.time() if now is None else now))
        write_durably(path, f"{seq}\n".encode())
        return seq
    finally:
        os.close(lock_fd)


def sign_manifest(signer: Signer, label: str, manifest_bytes: bytes) -> bytes:
    """The signature file (sigfile.py) for this manifest: the one kept from last time when the
    manifest and key are the same, else a new one with the next sequence number."""
    digest = hashlib.sha256(manifest_bytes).hexdigest()
    kept_dir = os.path.join(_state_dir(signer.git_dir), "signed")
    kept = os.path.join(kept_dir, label + SIGNATURE_SUFFIX)
    try:
        with open(kept, "rb") as fh:
            old = parse(fh.read(64 << 10))
        if old.manifest_sha256 == digest and old.name == label and signer.owns(old):
            return build(old.name, old.seq, old.manifest_sha256, old.armored)
    except (OSError, SignatureFormatError):
        pass
    payload(label, 1, digest)  # a bad label fails here, before a sequence number is spent
    seq = next_seq(signer.git_dir)
    armored = signer.sign(payload(label, seq, digest))
    try:
        data = build(label, seq, digest, armored)
    except SignatureFormatError as exc:
        raise PublishError(f"{signer.program} wrote something that is not a signature: {exc}") from None
    os.makedirs(kept_dir, exist_ok=True)
    write_durably(kept, data)
    log.info("signed %s with %s, sequence number %d", label, parse(data).fingerprint, seq)
    return data
