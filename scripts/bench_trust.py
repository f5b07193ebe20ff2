#!/usr/bin/env python3
"""What a signed manifest costs: signing, and verifying with and without allowed signers.

    scripts/bench_trust.py [--runs 9]

A fresh ed25519 key in a temporary directory; each step is ssh-keygen run as gitp2p runs
it (trust/signing.py, trust/verify.py), reported as the median of RUNS, next to a bare
fork+exec of `true` measured in the same runs (the floor any subprocess pays).
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

from gitfs_p2p.trust import sigfile  # noqa: E402
from gitfs_p2p.trust.signing import SshSigner  # noqa: E402
from gitfs_p2p.trust.verify import check_signature  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gitp2p-bench-trust-") as tmp:
        key = os.path.join(tmp, "k")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", key], check=True)
        with open(key + ".pub") as fh:
            kind, blob = fh.read().split()[:2]
        allowed = os.path.join(tmp, "allowed")
        with open(allowed, "w") as fh:
            fh.write(f"bench {kind} {blob}\n")
        signer = SshSigner(tmp, key, False)
        digest = "ab" * 32
        times: dict[str, list[float]] = {"sign": [], "verify": [], "check-novalidate": [], "true": []}
        for _ in range(args.runs):  # interleaved, so load changes hit every step alike
            start = time.perf_counter()
            armored = signer.sign(sigfile.payload("all", 5, digest))
            times["sign"].append(time.perf_counter() - start)
            sig = sigfile.parse(sigfile.build("all", 5, digest, armored))
            start = time.perf_counter()
            check_signature(sig, allowed)
            times["verify"].append(time.perf_counter() - start)
            start = time.perf_counter()
            check_signature(sig, None)
            times["check-novalidate"].append(time.perf_counter() - start)
            start = time.perf_counter()
            subprocess.run(["true"], check=True)
            times["true"].append(time.perf_counter() - start)
    floor = statistics.median(times["true"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:18s} {median * 1000:7.1f} ms  ({median / floor:5.1f}x a fork+exec of true)")
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
