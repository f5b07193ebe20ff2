#!/usr/bin/env python3
"""What a signed manifest costs: signing, and verifying with and without allowed signers.

    scripts/bench_trust.py [--runs 9]

Fresh ed25519 keys in a temporary directory, an SSH one and an OpenPGP one (a throw-away
GNUPGHOME, its gpg-agent a child of this script); each step is ssh-keygen or gpg run as
gitp2p runs it (trust/signing.py, trust/verify.py), reported as the median of RUNS, next
to a bare fork+exec of `true` measured in the same runs (the floor any subprocess pays).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gitfs_p2p.testing.gpghome import GpgHome  # noqa: E402
from gitfs_p2p.trust import sigfile  # noqa: E402
from gitfs_p2p.trust.signing import OpenPGPSigner, SshSigner  # noqa: E402
from gitfs_p2p.trust.verify import Policy, check_signature  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gitp2p-bench-trust-") as tmp, GpgHome(os.path.join(tmp, "gnupg")) as home:
        os.environ["GNUPGHOME"] = str(home.path)
        pgp = OpenPGPSigner(tmp, home.make_key("Bench <bench@example.org>"))
        keyring = Policy(None, openpgp=True)
        key = os.path.join(tmp, "k")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", key], check=True)
        with open(key + ".pub") as fh:
            kind, blob = fh.read().split()[:2]
        allowed = os.path.join(tmp, "allowed")
        with open(allowed, "w") as fh:
            fh.write(f"bench {kind} {blob}\n")
        signer = SshSigner(tmp, key, False)
        digest = "ab" * 32
        times: dict[str, list[float]] = {}

        def timed(name: str, step):
            began = time.perf_counter()
            out = step()
            times.setdefault(name, []).append(time.perf_counter() - began)
            return out

        def signature(armored: bytes) -> sigfile.RefSignature:
            return sigfile.parse(sigfile.build("all", 5, digest, armored))

        payload = sigfile.payload("all", 5, digest)
        for _ in range(args.runs):  # interleaved, so load changes hit every step alike
            sig = signature(timed("sign", lambda: signer.sign(payload)))
            timed("verify", lambda: check_signature(sig, allowed))
            timed("check-novalidate", lambda: check_signature(sig, None))
            sig = signature(timed("openpgp sign", lambda: pgp.sign(payload)))
            timed("openpgp verify", lambda: check_signature(sig, keyring))
            timed("true", lambda: subprocess.run(["true"], check=True))
    floor = statistics.median(times["true"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:18s} {median * 1000:7.1f} ms  ({median / floor:5.1f}x a fork+exec of true)")
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
