"""The watcher's gate for ref manifests: which manifests may move refs, by their signatures.

Each manifest `DIR/.../<label>.gitp2p-refs` may have its signature beside it,
`<label>.gitp2p-sig` (trust/sigfile.py).  With `gitp2p.allowedSignersFile` set in
REPO, a manifest's refs move only when its signature is well-formed, names this
label and this manifest's digest, verifies for a key of that file, and its sequence
number is not older than the last one accepted for that key and label
(trust/verify.py).  Otherwise every ref of the manifest is refused with one line
saying why (objects are imported all the same).  Without the setting, manifests are
taken as before, and a key is reported the first time it signs one.  A signature
file that is not one (malformed, too large, another namespace) is quarantined.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

from ..pack.manifest import MANIFEST_SUFFIX, RefManifest
from ..pack.verify import looks_partial
from ..trust.sigfile import MAX_SIGNATURE_FILE, SIGNATURE_SUFFIX, SignatureFormatError
from ..trust.sigfile import checksum_ok as signature_checksum_ok
from ..trust.sigfile import parse as parse_signature
from ..trust.verify import AcceptedLog, Checked, SignatureRefused, check_signature, not_required, signature_policy
from .result import PassResult
from .scan import file_key

__all__ = ["ManifestGate", "Found", "is_signature"]

@dataclass(frozen=True)
class Found:
    """A complete, well-formed manifest in DIR."""

    path: str
    manifest: RefManifest
    digest: str  # sha256 hex of its bytes

@dataclass(frozen=True)
class _Untrusted:
    """Why a signature file does not (yet) make its manifest's refs trusted."""

    kind: str  # "wait": not complete yet; "refused": well-formed, not good enough; "bad": not a signature file
    reason: str


class ManifestGate:
    def __init__(self, git_dir: str, *, read: Callable, rel: Callable[[str], str],
                 quarantine: Callable[[str, str, PassResult], None], refuse: Callable[[str, str, PassResult], None],
                 report: Callable[[str], None], settle: float):
        """read(path, st): a file's bytes or None (scan.DirScanner.read); quarantine(path, why, result);
        refuse(ref name, why, result): the ref is not moved, for this reason."""
        self.git_dir = git_dir
        self.policy = signature_policy(git_dir)
        self.accepted = AcceptedLog(git_dir)
        self._read, self._rel, self._quarantine, self._refuse = read, rel, quarantine, refuse
        self.report = report
        self.settle = settle
        # signature path -> (its file key, allowed file's state, outcome): one ssh-keygen run per change
        self._checked: dict[str, tuple[tuple, tuple | None, object]] = {}
        self._noted: set[tuple[str, str]] = set()
        self._gone: dict[str, str] = {}  # signature path -> why it was quarantined

    def _allowed_state(self) -> tuple | None:
        return self.policy.state() if self.policy.required else None

    def _note(self, path: str, text: str) -> None:
        if (path, text) not in self._noted:
            self._noted.add((path, text))
            self.report(text)

    def _outcome(self, path: str, st: os.stat_result, now: float, result: PassResult):
        """The signature file's Checked, or why not (a "bad" one is quarantined here)."""
        key = file_key(st)
        allowed_state = self._allowed_state()
        old = self._checked.get(path)
        if old is not None and old[0] == key and old[1] == allowed_state:
            return old[2]
        if st.st_size > MAX_SIGNATURE_FILE:
            outcome = _Untrusted("bad", f"{st.st_size} bytes, more than a signature file's bound of {MAX_SIGNATURE_FILE}")
        else:
            data = self._read(path, st)
            if data is None:
                return _Untrusted("wait", "its signature file is changing")
            outcome = self._check(data, now - st.st_mtime)
        if isinstance(outcome, _Untrusted) and outcome.kind == "bad":
            self._quarantine(path, f"bad ref signature: {outcome.reason}", result)
            self._gone[path] = outcome.reason
            self._checked.pop(path, None)
            return outcome
        if not (isinstance(outcome, _Untrusted) and outcome.kind == "wait"):
            self._checked[path] = (key, allowed_state, outcome)
        return outcome

    def _check(self, data: bytes, age: float) -> Checked | _Untrusted:
        try:
            sig = parse_signature(data)
        except SignatureFormatError as exc:
            if not signature_checksum_ok(data) and (looks_partial(data) or age < self.settle):
                return _Untrusted("wait", "its signature file is not complete yet")
            return _Untrusted("bad", str(exc))
        try:
            return check_signature(sig, self.policy)
        except SignatureRefused as exc:
            return _Untrusted("refused", str(exc))

    def admit(self, found: list[Found], signatures: list[tuple[str, os.stat_result]], result: PassResult,
              now: float | None = None) -> list[RefManifest]:
        """The manifests whose refs may move, in the order they should be applied (older first)."""
        now = time.time() if now is None else now
        sig_at = dict(signatures)
        take: list[tuple[int, RefManifest]] = []
        signed: list[tuple[Found, Checked]] = []
        for f in found:
            label = os.path.basename(f.path)[: -len(MANIFEST_SUFFIX)]
            sig_path = f.path[: -len(MANIFEST_SUFFIX)] + SIGNATURE_SUFFIX
            rel = self._rel(f.path)
            st = sig_at.get(sig_path)
            outcome = None if st is None else self._outcome(sig_path, st, now, result)
            if isinstance(outcome, Checked):
                sig = outcome.sig
                if sig.name != label:
                    outcome = _Untrusted("refused", f"its signature is for manifest {sig.name!r}, not {label!r}")
                elif sig.manifest_sha256 != f.digest:
                    outcome = _Untrusted("refused", "its signature is of another manifest (the digests differ)")
            if not self.policy.required:  # today's behaviour: nothing is refused for want of a signature
                if isinstance(outcome, Checked):
                    if not self.accepted.knows_key(outcome.sig.fingerprint):
                        self.report(f"{rel}: signed by {outcome.sig.key_type} key {outcome.sig.fingerprint} "
                                    f"(not verified: {not_required(outcome.sig)} is not set)")
                    self.accepted.record(outcome)
                elif outcome is not None and outcome.kind == "refused":
                    self._note(sig_path, f"{rel}: ignoring its signature: {outcome.reason}")
                take.append((0, f.manifest))
                continue
            if outcome is None:
                gone = self._gone.get(sig_path)
                self._refuse_all(f, f"{rel}: its signature file was quarantined: {gone}" if gone else
                                 f"{rel} is not signed ({self.policy.settings()} is set)", result)
            elif isinstance(outcome, Checked):
                signed.append((f, outcome))
            else:
                why = outcome.reason if outcome.kind != "bad" else f"its signature file was refused: {outcome.reason}"
                self._refuse_all(f, f"{rel}: {why}", result)
        # the newest signature of each (key, label) in DIR; older ones beside it are replays too
        newest: dict[tuple[str, str], int] = {}
        for f, c in signed:
            k = (c.sig.fingerprint, c.sig.name)
            newest[k] = max(newest.get(k, 0), c.sig.seq)
        for f, c in sorted(signed, key=lambda fc: fc[1].sig.seq):
            sig = c.sig
            rel = self._rel(f.path)
            why = self.accepted.replay(sig)
            if why is None and sig.seq < newest[(sig.fingerprint, sig.name)]:
                why = f"replay: sequence number {sig.seq} is older than {newest[(sig.fingerprint, sig.name)]} beside it in DIR"
            if why is not None:
                self._refuse_all(f, f"{rel}: {why}", result)
                continue
            new_key = not self.accepted.knows_key(sig.fingerprint)
            if self.accepted.record(c):
                self.report(f"{rel}: signed by {c.principal} ({sig.key_type} key {sig.fingerprint}), sequence number "
                            f"{sig.seq}: verified" + (" (a key new to this repository)" if new_key else ""))
            take.append((sig.seq, f.manifest))
        take.sort(key=lambda sm: sm[0])
        return [m for _, m in take]

    def _refuse_all(self, f: Found, why: str, result: PassResult) -> None:
        for name in f.manifest.refs:
            self._refuse(name, why, result)
        if not f.manifest.refs:
            self._note(f.path, why)


def is_signature(path: str) -> bool:
    return path.endswith(SIGNATURE_SUFFIX)
