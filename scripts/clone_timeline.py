#!/usr/bin/env python3
"""Where the time of `git clone gitp2p::MAGNET` goes: a timeline per phase (issue 14).

    scripts/clone_timeline.py REPO [--runs 3] [--workdir DIR]

Seeds a mirror of REPO like scripts/bench_clone.py (`gitp2p seed`, an embedded tracker,
warm), then clones it `runs` times with git's GIT_TRACE2_EVENT (its child processes, the
checkout) and the helper's GITP2P_DEBUG lines (each stamped with its UTC time of day),
and prints the milliseconds of each phase, per run and the median:

  start-up      git's start to the helper's modules imported (python, imports)
  to list       git's capabilities and options, the helper's settings
  engine        the libtorrent session listening
  metadata      magnet link added, its metadata from the seed (BEP 9)
  manifest      the ref manifest downloaded, read and checked
  git list>fetch  git between our refs and its `fetch` batch
  to import     fetch's start to the first import pass
  import        the import passes (first start to last end)
  answer        after the last pass until git has our answer (the tips pack)
  connectivity  git's `rev-list --objects` walk
  exit          the helper's clean-up and exit, as git waits for it
  checkout      git's checkout and exit

Loopback only.  Run it from the tree to measure (PYTHONPATH=TREE).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_clone import HELPER, _env  # noqa: E402
from gitfs_p2p.testing.seeding import Seed  # noqa: E402
from gitfs_p2p.testing.trackers import EmbeddedTracker  # noqa: E402

LINE = re.compile(r"^gitp2p: (\d\d:\d\d:\d\d\.\d{3}) (.*)$")
#: (phase, the mark it starts at, the mark it ends at): marks are the helper's debug lines
#: (by their start) or trace2's ("git:" ones, see _marks)
PHASES = [
    ("start-up", "git: start", "started"),
    ("to list", "started", "git: list"),
    ("engine", "git: list", "engine listening"),
    ("metadata", "engine listening", "metadata received"),
    ("manifest", "metadata received", "manifest checked"),
    ("git list>fetch", "manifest checked", "git: fetch"),
    ("to import", "git: fetch", "import pass starts"),
    ("import", "import pass starts", "last import pass done"),
    ("answer", "last import pass done", "fetch answered"),
    ("connectivity", "git: rev-list start", "git: rev-list end"),
    ("exit", "git: rev-list end", "git: helper exit"),
    ("checkout", "git: helper exit", "git: exit"),
]


def _marks(stderr: str, trace: Path, t0: float) -> dict[str, float]:
    """Seconds from t0 of each mark (the first of its kind; the last import pass's end)."""
    day = datetime.datetime.fromtimestamp(t0, datetime.timezone.utc).date()
    marks: dict[str, float] = {}
    for line in stderr.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        when = datetime.datetime.combine(day, datetime.time.fromisoformat(m.group(1)), datetime.timezone.utc)
        what = m.group(2)
        for name in {p[1] for p in PHASES} | {p[2] for p in PHASES}:
            if what.startswith(name) and (name not in marks or name.startswith("last ")):
                marks[name] = when.timestamp() - t0
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    main_sid = events[0]["sid"]

    def at(e) -> float:
        return datetime.datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp() - t0

    marks["git: start"] = at(events[0])
    children = {}  # child_id -> what it runs
    for e in events:
        if e["sid"] != main_sid:
            continue
        if e["event"] == "child_start":
            argv = " ".join(e.get("argv", []))
            children[e["child_id"]] = "rev-list" if "rev-list" in argv else "helper" if "remote-" in argv else argv
            if children[e["child_id"]] == "rev-list":
                marks.setdefault("git: rev-list start", at(e))
        elif e["event"] == "child_exit":
            kind = children.get(e["child_id"])
            if kind == "rev-list":
                marks.setdefault("git: rev-list end", at(e))
            elif kind == "helper":
                marks.setdefault("git: helper exit", at(e))
        elif e["event"] == "exit":
            marks["git: exit"] = at(e)
    return marks


def clone_once(magnet: str, dest: Path) -> tuple[float, dict[str, float]]:
    shutil.rmtree(dest, ignore_errors=True)
    trace = dest.with_suffix(".trace2")
    trace.unlink(missing_ok=True)
    env = {**_env(), "GITP2P_DEBUG": "1", "GIT_TRACE2_EVENT": str(trace)}
    t0 = time.time()
    proc = subprocess.run(["git", *HELPER, "clone", "-q", f"gitp2p::{magnet}", str(dest)], env=env,
                          capture_output=True, text=True, timeout=600)
    total = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"the clone failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return total, _marks(proc.stderr, trace, t0)


def phases(marks: dict[str, float]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, start, end in PHASES:
        out[name] = marks[end] - marks[start] if start in marks and end in marks else None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("repo")
    ap.add_argument("--workdir", default=str(HERE.parent / "bench-out" / "clone-timeline"))
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    work = Path(args.workdir).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    repo = work / "sender.git"
    subprocess.run(["git", "clone", "--mirror", "-q", str(Path(args.repo).resolve()), str(repo)], check=True)
    tracker = EmbeddedTracker(work / "tracker").start()
    seed = Seed(repo, work / "seed", tracker=tracker.announce_url, poll=1.0)
    rows = []
    try:
        seed.start()
        ih = next(ih for label, _, ih in seed.seeded() if label == "all")
        tracker.wait_peers(ih, seeders=1, timeout=120)
        for i in range(args.runs):
            total, marks = clone_once(seed.magnet(ih), work / f"clone-{i}")
            rows.append((total, phases(marks)))
            shutil.rmtree(work / f"clone-{i}", ignore_errors=True)
    finally:
        seed.stop()
        tracker.stop()
    names = [p[0] for p in PHASES]
    print(f"load {os.getloadavg()[0]:.1f}; milliseconds; {args.runs} clones of {args.repo}")
    print(" | ".join(["run", "total", *names]))
    for i, (total, ph) in enumerate(rows):
        print(" | ".join([str(i), f"{total * 1000:.0f}", *("-" if ph[n] is None else f"{ph[n] * 1000:.0f}" for n in names)]))
    medians = []
    for n in names:
        values = [ph[n] for _, ph in rows if ph[n] is not None]
        medians.append(f"{statistics.median(values) * 1000:.0f}" if values else "-")
    print(" | ".join(["median", f"{statistics.median(t for t, _ in rows) * 1000:.0f}", *medians]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
