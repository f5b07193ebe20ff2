#!/usr/bin/env python3
"""How long a name takes to follow its publisher, right after someone cloned it.

    scripts/bench_names.py [--rounds 3]

On 127.0.0.1: a room's DHT of four nodes (gitfs_p2p/testing/dhtroom.py), `gitp2p publish`
of a small generated repository (a real FUSE mount, its seed a full DHT node), then ROUNDS
times: `git clone gitp2p://KEY/NAME` (the remote helper: a DHT lookup, then the torrent's
peers from the DHT), a commit in the publisher, the seed's next put (from the commit to its
"published" line), and `git fetch` in the clone.  Wall times of each step, per round.

Before bcfc43c the clone's helper announced itself in the DHT and every node kept it in its
routing table: once it had exited, each put and lookup waited 15 s for it (docs/names.md).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gitfs_p2p.testing.dhtroom import DhtRoom  # noqa: E402
from gitfs_p2p.testing.procs import LOOPBACK, free_port, kill_group, wait_until  # noqa: E402
from gitfs_p2p.testing.swarm import GITP2P  # noqa: E402

PUBLISHED = re.compile(r"^published (gitp2p://[0-9a-f]{64}/\S+): torrent ([0-9a-f]{40})", re.M)
ENV = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
       "GIT_TERMINAL_PROMPT": "0", "GIT_AUTHOR_NAME": "B", "GIT_AUTHOR_EMAIL": "b@example.invalid",
       "GIT_COMMITTER_NAME": "B", "GIT_COMMITTER_EMAIL": "b@example.invalid"}


def git(*args: str, cwd=None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True, text=True,
                          timeout=180).stdout


def commit(repo: Path, text: str) -> None:
    (repo / "file.txt").write_text(text + "\n")
    git("add", "file.txt", cwd=repo)
    git("commit", "-q", "-m", text, cwd=repo)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="gitp2p-bench-names-"))
    pub = base / "pub"
    git("init", "-q", "-b", "main", str(pub))
    for i in range(5):
        commit(pub, f"commit {i}")
    with DhtRoom(base / "room", 4) as room:
        out = base / "publish.out"
        cmd = [*GITP2P, "-v", "publish", str(pub), "project", "--listen", LOOPBACK, "--port", str(free_port()),
               "--no-utp", "--poll", "0.5", "--wait", "120"]
        cmd += [a for node in room.nodes for a in ("--dht-node", node)]
        with open(out, "wb") as fh, open(base / "publish.err", "wb") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=err, env=ENV,
                                    start_new_session=True)
        try:
            def published(not_hash=None):
                found = PUBLISHED.findall(out.read_text(errors="replace"))
                return found[-1] if found and found[-1][1] != not_hash else None

            address, ih = wait_until(published, 180, "the name to be published")
            engine = ["-c", f"gitp2p.listen={LOOPBACK}:0", "-c", "gitp2p.utp=false", "-c", "gitp2p.timeout=60"]
            engine += [a for node in room.nodes for a in ("-c", f"gitp2p.dhtNode={node}")]
            print("round  clone-s  put-s  fetch-s   (put: from the commit to the seed's 'published')")
            for n in range(args.rounds):
                t0 = time.monotonic()
                git("clone", "-q", *engine, address, str(base / f"clone{n}"))
                t1 = time.monotonic()
                commit(pub, f"round {n}")
                t2 = time.monotonic()
                _, ih = wait_until(lambda: published(ih), 180, "the seed's next put", step=0.05)
                t3 = time.monotonic()
                git("fetch", "-q", "origin", cwd=base / f"clone{n}")
                t4 = time.monotonic()
                print(f"{n:5d}  {t1 - t0:7.2f}  {t3 - t2:5.2f}  {t4 - t3:7.2f}", flush=True)
        finally:
            os.kill(proc.pid, signal.SIGINT)  # as Ctrl-C: the seed unmounts its mount
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            kill_group(proc)
    mountpoint = pub / ".git" / "gitp2p" / "seed-mount"
    if not os.path.ismount(mountpoint):
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"{mountpoint} is still mounted: unmount it (fusermount3 -u), then remove {base}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
