"""The remote helper's check of a fetched manifest's signature, before git is told any ref.

With `gitp2p.allowedSignersFile` set in the repository (or given as `git clone -c`),
`list` answers only when the manifest's signature (`<label>.gitp2p-sig`, the
torrent's last file) is good: well-formed, for this label and these manifest bytes,
by a key of that file, with a sequence number not older than the last one accepted
for that key and label (GIT_DIR/gitp2p/trust/accepted).  Otherwise the helper stops
with one line and git changes nothing.  Which ref moves how is then git's business:
its refspecs (`+`) and `--force` decide about non-fast-forward updates, as for any
remote.  Without the setting nothing is refused; a key is reported the first time it
signs a manifest this repository fetches.
"""

from __future__ import annotations

import hashlib
from typing import Callable

from ..errors import FetchError
from ..pack.manifest import MANIFEST_SUFFIX
from ..trust.sigfile import SignatureFormatError
from ..trust.sigfile import parse as parse_signature
from ..trust.verify import (AcceptedLog, Checked, Policy, SignatureRefused, check_signature, not_required,
                            signature_policy)

__all__ = ["check_fetched"]


def check_fetched(git_dir: str, manifest_name: str, manifest_bytes: bytes, signature: bytes | None,
                  where: str, notice: Callable[[str], None], policy: Policy | None = None) -> Checked | None:
    """Whether git may be told the manifest's refs (see the module docstring): the checked
    signature, None for an unsigned manifest taken as before; FetchError (one line) if not.
    policy: the repository's signature_policy, if read already."""
    if policy is None:
        policy = signature_policy(git_dir)
    label = manifest_name[: -len(MANIFEST_SUFFIX)]
    refused = f"torrent {where}: refs not updated: "
    if signature is None:
        if policy.required:
            raise FetchError(refused + f"{manifest_name} is not signed ({policy.settings()} is set)")
        return None
    try:
        sig = parse_signature(signature)
        checked = check_signature(sig, policy)
        if sig.name != label:
            raise SignatureRefused(f"its signature is for manifest {sig.name!r}, not {label!r}")
        if sig.manifest_sha256 != hashlib.sha256(manifest_bytes).hexdigest():
            raise SignatureRefused("its signature is of another manifest (the digests differ)")
    except SignatureFormatError as exc:
        if not policy.required:
            notice(f"gitp2p: ignoring the manifest's signature: {exc}")
            return None
        raise FetchError(refused + f"bad ref signature: {exc}") from None
    except SignatureRefused as exc:
        if not policy.required:
            notice(f"gitp2p: ignoring the manifest's signature: {exc}")
            return None
        raise FetchError(refused + str(exc)) from None
    sig = checked.sig  # OpenPGP: named by the key gpg verified with
    log = AcceptedLog(git_dir)
    if not policy.required:
        if not log.knows_key(sig.fingerprint):
            notice(f"gitp2p: {manifest_name} signed by {sig.key_type} key {sig.fingerprint} "
                   f"(not verified: {not_required(sig)} is not set)")
        log.record(checked)
        return checked
    why = log.replay(sig)
    if why is not None:
        raise FetchError(refused + why)
    new_key = not log.knows_key(sig.fingerprint)
    if log.record(checked):
        notice(f"gitp2p: {manifest_name} signed by {checked.principal} ({sig.key_type} key {sig.fingerprint}), "
               f"sequence number {sig.seq}: verified" + (" (a key new to this repository)" if new_key else ""))
    return checked
