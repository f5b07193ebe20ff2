"""scripts/bench_large.py's TreeSampler: a busy process tree is never called stalled."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Burns half a CPU second (CPU time, not wall time), then exits.
BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5:\n    pass\n"


@pytest.fixture(scope="module")
def bench_large():
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        spec = importlib.util.spec_from_file_location("bench_large", os.path.join(ROOT, "scripts", "bench_large.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(os.path.join(ROOT, "scripts"))


def test_progress_counts_what_each_process_gained(bench_large):
    progress = bench_large.CpuProgress()
    assert progress.add({1: 10, 2: 300, 3: 300}) == 610
    # The parent (1) read before it reaped its workers, the workers after: gone.
    assert progress.add({1: 12}) == 612
    # Next sample: the parent's cutime holds what the workers used.
    assert progress.add({1: 615}) == 1215
    assert progress.add({1: 615}) == 1215  # nothing ran: no progress
    # A new process (or a reused pid) counts from zero.
    assert progress.add({1: 615, 4: 7}) == 1222


def _wait_zombie(pid: int) -> None:
    for _ in range(600):  # bounded: 60 s at most
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
        if stat[stat.rindex(")") + 2] == "Z":
            return
        time.sleep(0.1)
    raise AssertionError(f"child {pid} did not exit")


def test_a_worker_reaped_between_two_reads_takes_no_cpu_away(bench_large, monkeypatch):
    """The race that made `make bench-large` kill a busy `gitp2p packs` at its pool's
    shutdown ("stalled"): the tree's parent read, then its worker reaped, then the
    worker's /proc read (gone).  The tree's CPU must not go down."""
    child = subprocess.Popen([sys.executable, "-c", BURN])
    try:
        _wait_zombie(child.pid)  # exited, not reaped: its ticks are still in its /proc
        sampler = bench_large.TreeSampler(os.getpid(), stall_s=3600)
        sampler.sample()
        assert child.pid in sampler.pids
        before = sampler.cpu_ticks
        real = bench_large._cpu_ticks

        def reaping_first(pid: int) -> int:
            if pid == child.pid:
                child.wait()  # this process (the tree's root) was read already
            return real(pid)

        monkeypatch.setattr(bench_large, "_cpu_ticks", reaping_first)
        sampler.sample()
        assert child.returncode == 0
        assert sampler.cpu_ticks >= before
    finally:
        if child.returncode is None:
            child.kill()
            child.wait()


def test_an_idle_tree_is_stalled_killed_and_described(bench_large):
    """A process that only sleeps uses no CPU: stalled after stall_s, killed, and its
    state recorded (what tells a real hang apart next time)."""
    r = bench_large.run_measured([sys.executable, "-c", "import time; time.sleep(60)"], stall_s=1.0)
    assert r["stalled"]
    assert r["code"] == -9
    assert len(r["stall_tree"]) == 1
    pid, state = r["stall_tree"][0].split()[:2]
    assert int(pid) > 0 and state == "S"
