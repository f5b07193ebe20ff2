#!/usr/bin/env python3
"""Benchmark the watcher: import a whole history's commit packs vs `git index-pack --fix-thin`.

`run(repo_path, workdir, out)` writes every commit pack of REPO into
WORKDIR/dl/packs (with a ref manifest), then, in the same run:
  * reference: `git index-pack --stdin --fix-thin` of each pack, parents
    first, into a fresh bare repository (one process per pack);
  * ours: `gitp2p watch DL --into NEW --once` in a subprocess;
and fills `out` with wall times, their ratio and both peak RSS values.

    scripts/bench_watch.py [REPO] [--commits 1000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

__all__ = ["run"]


def _hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _timed(cmd, *, sample: bool = False, **kw) -> tuple[float, int, int, float]:
    """(seconds, exit status, peak RSS in KiB, CPU seconds) of one process.

    The peak is the process's own VmHWM, sampled while it runs (ru_maxrss would
    report this benchmark's own size, inherited through fork and exec).
    """
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, **kw)
    peak = 0
    if sample:
        while proc.poll() is None:
            peak = max(peak, _hwm_kib(proc.pid))
            time.sleep(0.01)
        seconds = time.perf_counter() - start
        return seconds, proc.returncode, peak, 0.0
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start, proc.returncode, peak, usage.ru_utime + usage.ru_stime


def run(repo_path: str, workdir: str, out: dict) -> None:
    from gitfs_p2p.git.repo import GitRepo
    from gitfs_p2p.pack.manifest import RefManifest
    from gitfs_p2p.store.source import PackSource

    # Start empty: a received.git left by an earlier run would make the import a no-op.
    for name in ("dl", "reference.git", "received.git"):
        shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
    dl = os.path.join(workdir, "dl", "packs")
    os.makedirs(dl, exist_ok=True)
    repo = GitRepo(repo_path)
    source = PackSource(repo)
    order: list[str] = []
    total_bytes = 0
    try:
        for commit in source.commits():
            data = source.pack(commit.id)
            hex_id = commit.id.decode()
            with open(os.path.join(dl, f"{hex_id}.pack"), "wb") as fh:
                fh.write(data)
            order.append(hex_id)
            total_bytes += len(data)
        refs = {n: o.decode() for n, o in repo.refs().items() if n != "HEAD"}
        with open(os.path.join(dl, "bench.gitp2p-refs"), "wb") as fh:
            fh.write(RefManifest(refs, repo.head_target()).to_bytes())
    finally:
        source.close()
        repo.close()

    env = dict(os.environ, GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    # reference: C git, one index-pack per pack, parents first
    ref_repo = os.path.join(workdir, "reference.git")
    subprocess.run(["git", "init", "-q", "--bare", ref_repo], check=True, env=env)
    ref_seconds = ref_cpu = 0.0
    ref_peak = 0
    for i, hex_id in enumerate(order):
        with open(os.path.join(dl, f"{hex_id}.pack"), "rb") as fh:
            seconds, status, peak, cpu = _timed(
                ["git", f"--git-dir={ref_repo}", "index-pack", "--stdin", "--fix-thin"],
                sample=i % 50 == 0,  # sample the peak of some runs; the others give CPU time
                stdin=fh,
                stdout=subprocess.DEVNULL,
                env=env,
            )
        if status != 0:
            raise RuntimeError(f"git index-pack failed on {hex_id}")
        ref_seconds += seconds
        ref_cpu += cpu
        ref_peak = max(ref_peak, peak)

    # ours: the watcher's one-shot pass, in its own process
    new_repo = os.path.join(workdir, "received.git")
    cmd = [sys.executable, "-m", "gitfs_p2p.cli", "watch", os.path.dirname(dl), "--into", new_repo, "--bare", "--once"]
    ours_seconds, status, ours_peak, _ = _timed(
        cmd, sample=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    if status != 0:
        raise RuntimeError("gitp2p watch --once failed")
    got = subprocess.run(["git", f"--git-dir={new_repo}", "for-each-ref", "--format=%(objectname) %(refname)"],
                         capture_output=True, text=True, env=env).stdout.split("\n")
    got_refs = {line.split(" ")[1]: line.split(" ")[0] for line in got if line}
    if got_refs != refs:
        raise RuntimeError("the watcher did not set the same refs")

    out.update(
        watch_packs=len(order),
        watch_pack_mib=round(total_bytes / (1 << 20), 2),
        watch_import_seconds=round(ours_seconds, 3),
        watch_index_pack_seconds=round(ref_seconds, 3),
        watch_vs_index_pack_ratio=round(ours_seconds / ref_seconds, 3) if ref_seconds else None,
        watch_index_pack_cpu_seconds=round(ref_cpu, 3),  # of the runs not sampled for memory
        watch_packs_per_second=round(len(order) / ours_seconds, 1),
        watch_mib_per_second=round(total_bytes / (1 << 20) / ours_seconds, 2),
        watch_peak_rss_mib=round(ours_peak / 1024, 1),
        watch_index_pack_peak_rss_mib=round(ref_peak / 1024, 1),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("repo", nargs="?", help="history to use (default: a generated one)")
    parser.add_argument("--commits", type=int, default=1000, help="size of the generated history")
    parser.add_argument("--workdir", help="keep the files here (default: a temporary directory)")
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="bench-watch-")
    try:
        repo = args.repo
        if repo is None:
            from gitfs_p2p.testing.history import generate

            repo = os.path.join(workdir, "history")
            generate(repo, args.commits, seed=1)
        out: dict = {}
        run(repo, workdir, out)
        print(json.dumps(out, indent=2))
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
