"""Verifying a ref signature as git verifies commits (SSH or OpenPGP), and refusing replays.

SSH: receivers set `gitp2p.allowedSignersFile` (an absolute path, `~/` allowed) to a
file in git's allowed-signers format (ssh-keygen(1), ALLOWED SIGNERS), as
`gpg.ssh.allowedSignersFile` is set for commits.  A signature is good when
`ssh-keygen -Y find-principals` names a principal for its key and
`ssh-keygen -Y verify -I PRINCIPAL -n gitp2p-refs@gitp2p` accepts it over the
payload.  Without the setting, `ssh-keygen -Y check-novalidate` only says which key
signed (nothing is refused, see docs/trust.md).

OpenPGP: receivers set `gitp2p.verifyOpenPGP = true`; the allowed keys are those of
the user's gpg keyring (GNUPGHOME) with enough validity, git's own model.  As git
runs it: `gpg --keyid-format=long --status-fd=1 --verify SIG -` (gpg.openpgp.program
or gpg.program), and the signature is good when the status holds exactly one
signature, a GOODSIG, and a TRUST_ level at least gpg.minTrustLevel (unset: marginal,
as `git merge --verify-signatures` requires).  The key recorded for replays is the
primary key's fingerprint from VALIDSIG (what gpg verified, not what the packet says).

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
from dataclasses import dataclass, replace

from ..durable import write_durably
from ..errors import GitfsError
from ..git.runner import run_git
from .sigfile import NAMESPACE, RefSignature

__all__ = [
    "SignatureRefused",
    "Checked",
    "Policy",
    "allowed_signers_file",
    "signature_policy",
    "check_signature",
    "not_required",
    "AcceptedLog",
    "load_accepted",
]

log = logging.getLogger(__name__)

VERIFY_TIMEOUT = 30.0
#: gpg.minTrustLevel's values, lowest first (git's enum signature_trust_level).
TRUST_LEVELS = ("undefined", "never", "marginal", "fully", "ultimate")
#: Without gpg.minTrustLevel: what `git merge --verify-signatures` requires (commit.c, verify_merge_signature).
DEFAULT_MIN_TRUST = "marginal"


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


@dataclass(frozen=True)
class Policy:
    """What the receiving repository requires of a manifest's signature (module docstring)."""

    allowed: str | None  # gitp2p.allowedSignersFile: its SSH keys are allowed
    openpgp: bool = False  # gitp2p.verifyOpenPGP: the OpenPGP keys of the user's keyring are allowed
    gpg_program: str = "gpg"  # gpg.openpgp.program, gpg.program
    min_trust: str = DEFAULT_MIN_TRUST  # gpg.minTrustLevel

    @property
    def required(self) -> bool:
        """A manifest's refs move only on a good signature by an allowed key."""
        return self.allowed is not None or self.openpgp

    def settings(self) -> str:
        """The settings that require signatures, for messages."""
        return " and ".join(n for n, on in (("gitp2p.allowedSignersFile", self.allowed is not None),
                                              ("gitp2p.verifyOpenPGP", self.openpgp)) if on) or "nothing"

    def state(self) -> tuple:
        """Changes when what is allowed may have changed (a watcher checks again then)."""
        paths = [self.allowed] if self.allowed else []
        if self.openpgp:
            home = os.environ.get("GNUPGHOME") or os.path.expanduser("~/.gnupg")
            paths += [os.path.join(home, n) for n in ("pubring.kbx", "pubring.gpg", "trustdb.gpg")]
        out = []
        for path in paths:
            try:
                st = os.stat(path)
                out.append((path, st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                out.append((path,))
        return tuple(out)


def _config(git_dir: str, key: str, kind: str | None = None) -> str | None:
    args = ["config"] + ([f"--type={kind}"] if kind else []) + ["--get", key]
    return run_git(*args, git_dir=git_dir, check=False).strip() or None


def signature_policy(git_dir: str) -> Policy:
    """The receiving repository's Policy, from its git config (`git -c` too); GitfsError (one line)
    for a setting that is wrong."""
    openpgp = _config(git_dir, "gitp2p.verifyOpenPGP", "bool") == "true"
    level = (_config(git_dir, "gpg.minTrustLevel") or DEFAULT_MIN_TRUST).lower()
    if level not in TRUST_LEVELS:
        raise GitfsError(f"gpg.minTrustLevel {level!r}: one of {', '.join(TRUST_LEVELS)}")
    program = _config(git_dir, "gpg.openpgp.program") or _config(git_dir, "gpg.program") or "gpg"
    return Policy(allowed_signers_file(git_dir), openpgp, program, level)


def _keygen(args: list[str], data: bytes | None, program: str = "ssh-keygen") -> subprocess.CompletedProcess:
    try:
        return subprocess.run([program, *args], input=data if data is not None else b"", capture_output=True,
                              timeout=VERIFY_TIMEOUT)
    except FileNotFoundError:
        raise GitfsError(f"{program}: not found (apt-get install openssh-client)") from None
    except subprocess.TimeoutExpired:
        raise GitfsError(f"{program} {args[0]} {args[1]} did not finish within {VERIFY_TIMEOUT:g}s") from None


def check_signature(sig: RefSignature, policy: Policy | str | None) -> Checked:
    """That sig is a good signature of its payload by a key the policy allows (see the module
    docstring; with no requirement, by the key it names); SignatureRefused (one line) otherwise.
    policy: a Policy, or (SSH only) the allowed-signers file or None."""
    if not isinstance(policy, Policy):
        policy = Policy(policy)
    if sig.openpgp:
        return _check_openpgp(sig, policy)
    if policy.required and policy.allowed is None:
        raise SignatureRefused(f"signed by {sig.key_type} key {sig.fingerprint}, an SSH key, but only OpenPGP keys "
                               "are allowed here (gitp2p.verifyOpenPGP; gitp2p.allowedSignersFile is not set)")
    allowed = policy.allowed
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


def not_required(sig: RefSignature) -> str:
    """The setting that would make signatures like sig required (for "not verified" notes)."""
    return "gitp2p.verifyOpenPGP" if sig.openpgp else "gitp2p.allowedSignersFile"


def _gpg_status(stdout: bytes) -> dict:
    """git's reading of gpg's --status-fd lines (gpg-interface.c, parse_gpg_output): result G (good),
    B (bad), E (error, e.g. no public key), X/Y/R (expired signature, expired or revoked key),
    or None; more than one signature is an error.  Also the key id, user id, fingerprints, trust."""
    out: dict = {"result": None, "exclusive": 0, "key": None, "uid": None, "fpr": None, "primary": None,
                 "trust": None, "no_pubkey": False}
    results = {"GOODSIG": "G", "BADSIG": "B", "ERRSIG": "E", "EXPSIG": "X", "EXPKEYSIG": "Y", "REVKEYSIG": "R"}
    for raw in stdout.decode("utf-8", "replace").splitlines():
        if not raw.startswith("[GNUPG:] "):
            continue
        word, _, rest = raw[len("[GNUPG:] "):].partition(" ")
        if word in results:
            out["exclusive"] += 1
            out["result"] = results[word]
            key, _, uid = rest.partition(" ")
            out["key"] = key or None
            if word != "ERRSIG":
                out["uid"] = uid or None
        elif word == "VALIDSIG":
            fields = rest.split(" ")
            out["fpr"] = fields[0]
            out["primary"] = fields[9] if len(fields) >= 10 else fields[0]
        elif word.startswith("TRUST_"):
            out["trust"] = word[len("TRUST_"):].lower()
        elif word == "NO_PUBKEY":
            out["no_pubkey"] = True
    if out["exclusive"] > 1:
        out["result"] = "E"
    return out


def _check_openpgp(sig: RefSignature, policy: Policy) -> Checked:
    who = f"OpenPGP key {sig.fingerprint}"
    if policy.required and not policy.openpgp:
        raise SignatureRefused(f"signed by {who}, an OpenPGP key, but only SSH keys of gitp2p.allowedSignersFile "
                               "are allowed here (gitp2p.verifyOpenPGP is not set)")
    with tempfile.TemporaryDirectory(prefix="gitp2p-verify-") as tmp:
        sig_path = os.path.join(tmp, "sig.asc")
        with open(sig_path, "wb") as fh:
            fh.write(sig.armored)
        cmd = [policy.gpg_program, "--keyid-format=long", "--status-fd=1", "--verify", sig_path, "-"]
        try:
            proc = subprocess.run(cmd, input=sig.payload, capture_output=True, timeout=VERIFY_TIMEOUT)
        except FileNotFoundError:
            raise GitfsError(f"{policy.gpg_program}: not found (gpg.openpgp.program or gpg.program; "
                             "apt-get install gnupg)") from None
        except subprocess.TimeoutExpired:
            raise GitfsError(f"{policy.gpg_program} --verify did not finish within {VERIFY_TIMEOUT:g}s") from None
    status = _gpg_status(proc.stdout)
    result, uid = status["result"], status["uid"]
    if uid:
        who = f"{who} ({uid})"
    if status["exclusive"] > 1:
        raise SignatureRefused(f"the signature by {who} holds more than one signature")
    if result == "E" or result is None:
        if status["no_pubkey"]:
            raise SignatureRefused(f"signed by {who}, which is not in your gpg keyring "
                                   f"({policy.gpg_program} --import; GNUPGHOME)")
        raise SignatureRefused(f"the signature by {who} could not be checked by {policy.gpg_program}")
    if result == "B":
        raise SignatureRefused(f"the signature by {who} does not verify (forged or damaged)")
    if result in ("X", "Y", "R"):
        why = {"X": "the signature has expired", "Y": "the key has expired", "R": "the key is revoked"}[result]
        raise SignatureRefused(f"the signature by {who} is not good: {why}")
    try:
        primary = bytes.fromhex(status["primary"] or "")
    except ValueError:
        primary = b""
    if proc.returncode != 0 or len(primary) < 20:
        raise SignatureRefused(f"the signature by {who} could not be checked by {policy.gpg_program}")
    verified = replace(sig, key_blob=primary)  # the key gpg verified with, not the one the packet names
    if not policy.required:
        return Checked(verified, None)
    trust = status["trust"] or "undefined"
    if trust not in TRUST_LEVELS or TRUST_LEVELS.index(trust) < TRUST_LEVELS.index(policy.min_trust):
        raise SignatureRefused(f"signed by OpenPGP key {verified.fingerprint} ({uid}), whose validity in your "
                               f"keyring is {trust}, below gpg.minTrustLevel {policy.min_trust} "
                               "(gpg --lsign-key FINGERPRINT, or set gpg.minTrustLevel)")
    return Checked(verified, uid or verified.fingerprint)


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
