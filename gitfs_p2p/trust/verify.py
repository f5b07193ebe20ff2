"""Verifying a ref signature against git's allowed-signers file, and refusing replays.

Receivers set `gitp2p.allowedSignersFile` (an absolute path, `~/` allowed) to a file
in git's allowed-signers format (ssh-keygen(1), ALLOWED SIGNERS), as
`gpg.ssh.allowedSignersFile` is set for commits.  A signature is good when
`ssh-keygen -Y find-principals` names a principal for its key and
`ssh-keygen -Y verify -I PRINCIPAL -n gitp2p-refs@gitp2p` accepts it over the
payload.  Without the setting, `ssh-keygen -Y check-novalidate` only says which key
signed (nothing is refused, see docs/trust.md).

What was accepted is remembered in GIT_DIR/gitp2p/trust/accepted (JSON, written
durably): for each (key, manifest label) the highest sequence number accepted and
the digest of its manifest.  An older sequence number is a replay; the same number
with another manifest is refused too.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass

from ..durable import write_durably
from ..errors import GitfsError
from ..git.runner import run_git
from .sigfile import NAMESPACE, RefSignature

__all__ = [
    "SignatureRefused",
    "Checked",
    "allowed_signers_file",
    "check_signature",
    "AcceptedLog",
    "load_accepted",
]

log = logging.getLogger(__name__)

VERIFY_TIMEOUT = 30.0


class SignatureRefused(Exception):
    """A well-formed signature that does not make its manifest's refs trusted (one line)."""


@dataclass(frozen=True)
class Checked:
    sig: RefSignature
    principal: str | None  # from the allowed-signers file; None when none was given


def allowed_signers_file(git_dir: str) -> str | None:
    """The receiving repository's gitp2p.allowedSignersFile (git config, `git -c` too), or None."""
    out = run_git("config", "--type=path", "--get", "gitp2p.allowedSignersFile", git_dir=git_dir, check=False).strip()
    if not out:
        return None
    if not os.path.isabs(out):
        raise GitfsError(f"gitp2p.allowedSignersFile {out!r}: give an absolute path (or ~/...)")
    if not os.path.isfile(out):
        raise GitfsError(f"gitp2p.allowedSignersFile {out}: no such file")
    return out


def _keygen(args: list[str], data: bytes | None, program: str = "ssh-keygen") -> subprocess.CompletedProcess:
    try:
        return subprocess.run([program, *args], input=data if data is not None else b"", capture_output=True,
                              timeout=VERIFY_TIMEOUT)
    except FileNotFoundError:
        raise GitfsError(f"{program}: not found (apt-get install openssh-client)") from None
    except subprocess.TimeoutExpired:
        raise GitfsError(f"{program} {args[0]} {args[1]} did not finish within {VERIFY_TIMEOUT:g}s") from None


def check_signature(sig: RefSignature, allowed: str | None) -> Checked:
    """That sig is a good signature of its payload by a key of the allowed-signers file (or, with
    allowed None, by the key inside it); SignatureRefused (one line) otherwise."""
    who = f"{sig.key_type} key {sig.fingerprint}"
    with tempfile.TemporaryDirectory(prefix="gitp2p-verify-") as tmp:
        sig_path = os.path.join(tmp, "sig")
        with open(sig_path, "wb") as fh:
            fh.write(sig.armored)
        if allowed is None:
            proc = _keygen(["-Y", "check-novalidate", "-n", NAMESPACE, "-s", sig_path], sig.payload)
            if proc.returncode != 0:
                raise SignatureRefused(f"the signature by {who} does not verify (forged or damaged)")
            return Checked(sig, None)
        proc = _keygen(["-Y", "find-principals", "-s", sig_path, "-f", allowed], None)
        principals = proc.stdout.decode("utf-8", "replace").split() if proc.returncode == 0 else []
        if not principals:
            raise SignatureRefused(f"signed by {who}, which is not in gitp2p.allowedSignersFile ({allowed})")
        not_permitted = False
        for principal in principals[:8]:
            proc = _keygen(["-Y", "verify", "-f", allowed, "-I", principal, "-n", NAMESPACE, "-s", sig_path],
                           sig.payload)
            if proc.returncode == 0:
                return Checked(sig, principal)
            not_permitted |= b"not permitted for use in signature namespace" in proc.stderr
        if not_permitted:  # ssh-keygen says so before it checks the signature itself
            raise SignatureRefused(f"signed by {who} ({principals[0]}), whose line in gitp2p.allowedSignersFile "
                                   f"({allowed}) does not allow namespace {NAMESPACE} (namespaces=...)")
        raise SignatureRefused(f"the signature by {who} ({principals[0]}) does not verify (forged or damaged)")


def load_accepted(path: str) -> dict[str, dict]:
    """A JSON record of what was accepted ({} if none): entries with an integer "seq"."""
    try:
        with open(path, "rb") as fh:
            raw = json.loads(fh.read(16 << 20))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        # refusing everything would lock the user out; accepting replays silently is worse: say it loudly
        raise GitfsError(f"{path}: unreadable ({exc}); move it away to start trusting afresh") from None
    if not isinstance(raw, dict):
        raise GitfsError(f"{path}: not a JSON object; move it away to start trusting afresh")
    return {k: v for k, v in raw.items() if isinstance(v, dict) and isinstance(v.get("seq"), int)}


class AcceptedLog:
    """The highest sequence number accepted per (key, label), durably (see the module docstring)."""

    def __init__(self, git_dir: str):
        self.dir = os.path.join(git_dir, "gitp2p", "trust")
        self.path = os.path.join(self.dir, "accepted")
        self.entries: dict[str, dict] = self._load()

    def _load(self) -> dict[str, dict]:
        return load_accepted(self.path)

    @staticmethod
    def _key(sig: RefSignature) -> str:
        return f"{sig.fingerprint} {sig.name}"

    def knows_key(self, fingerprint: str) -> bool:
        return any(k.split(" ", 1)[0] == fingerprint for k in self.entries)

    def replay(self, sig: RefSignature) -> str | None:
        """Why sig must be refused as a replay, or None."""
        last = self.entries.get(self._key(sig))
        if last is None:
            return None
        if sig.seq < last["seq"]:
            return (f"replay: sequence number {sig.seq} is older than {last['seq']}, accepted before from "
                    f"{sig.fingerprint} for {sig.name}")
        if sig.seq == last["seq"] and sig.manifest_sha256 != last.get("manifest"):
            return (f"replay: sequence number {sig.seq} was accepted before from {sig.fingerprint} for "
                    f"{sig.name} with another manifest")
        return None

    def record(self, checked: Checked) -> bool:
        """Remember an accepted signature (durably, before any ref moves); True if it is new."""
        sig = checked.sig
        key = self._key(sig)
        last = self.entries.get(key)
        if last is not None and last["seq"] >= sig.seq:
            return False
        os.makedirs(self.dir, exist_ok=True)
        # a watcher and a fetch may record into one repository at once: merge under a lock
        lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            self.entries = self._load()
            last = self.entries.get(key)
            if last is not None and last["seq"] >= sig.seq:
                return False
            self.entries[key] = {"seq": sig.seq, "manifest": sig.manifest_sha256, "principal": checked.principal,
                                 "key": sig.public_key}
            write_durably(self.path, (json.dumps(self.entries, indent=1, sort_keys=True) + "\n").encode())
        finally:
            os.close(lock_fd)
        return True
