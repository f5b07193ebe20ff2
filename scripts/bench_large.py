#!/usr/bin/env python3
"""`make bench-large`: what a 100,000+-commit history costs (issue 15), as ratios to git.

    scripts/bench_large.py [REPO] [--commits 200000] [--seed 1] [--out bench-out/large]
                           [--skip mount,checks,watch,cold-mount] [--json]
    scripts/bench_large.py --checks REPO DIR [--out WORK]    # the clients' checks alone

Without REPO it measures a generated history (scripts/gen_large_history.py, kept in
OUT between runs); with REPO, that repository (a copy you may write into: its pack
cache, REPO's git dir gitp2p/, is emptied and rebuilt).  Published refs are branches
and tags, as `gitp2p torrent --all` publishes them.  In order, every step measured in
the same run:

  1. git's reference: `git pack-objects --no-reuse-delta --threads=1 --revs` of every
     branch and tag (the packs' reference in `make bench`), then `git index-pack` of
     that pack into an empty repository (what a git clone's receiver does);
  2. `gitp2p packs REPO` with an empty pack cache (every commit pack built once);
  3. `gitp2p torrent REPO --all -o all.torrent` (packs cached, the torrent not yet):
     the .torrent's bytes, its files (roll-ups, commit and tag packs), their total
     length against git's pack; then the same command again (the torrent cached);
  4. the torrent's files written to OUT/files/packs/ from REPO (this script, with the
     library), then `gitp2p watch OUT/files --into EMPTY --bare --once`; the received
     repository must have every ref and commit of REPO;
  5. `gitp2p mount` with a warm cache: seconds to a readable torrents/all.torrent;
     then libtorrent's and transmission's full check of the mount against the same
     files on disk (OUT/files), when the mount serves roll-ups;
  6. `gitp2p mount` with an empty pack cache: seconds to all.torrent (every pack built).

Peak RSS: `ru_maxrss` of a command (the largest of it and the workers it reaped),
the mount server's VmHWM, and the peak of the sum over a process and all its
descendants (sampled every 0.2 s; the mount's and `packs`' worker processes count).
Results: stdout, OUT/results-large.md and OUT/results-large.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import bench_mount  # noqa: E402  (the mount helpers and the stock clients' checks)
from gen_large_history import generate_large  # noqa: E402

GITP2P = [sys.executable, "-m", "gitfs_p2p.cli"]
MB = 1 << 20
STEPS = ("watch", "mount", "checks", "cold-mount")
#: A command whose processes used no CPU for this long is stuck (see TreeSampler).
STALL_S = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- measuring processes -------------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def _status_kb(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if value.strip().endswith("kB"):
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def _cpu_ticks(pid: int) -> int:
    """utime + stime of pid and of the children it reaped, in clock ticks (0 if gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return 0
    fields = stat[stat.rindex(")") + 2 :].split()
    return sum(int(x) for x in fields[11:15])


class CpuProgress:
    """CPU time a process tree used, from samples of each process's ticks: never decreasing.

    The sum over a tree's processes is not monotonic: a parent's cutime grows only when it
    reaps a child, and a sample may read the parent just before it reaps a worker and the
    worker's /proc just after (gone, 0 ticks), so the sum drops by everything that worker
    ever used.  At the end of `gitp2p packs` with 2 workers that drop (minutes of CPU) once
    made a busy tree look idle for 60 s: "stalled" at the pool's shutdown.  Counted here:
    what each process gained since the last sample it was in; a process that vanished adds
    nothing, and a reap shows up as progress of the parent."""

    def __init__(self):
        self.ticks = 0
        self._last: dict[int, int] = {}

    def add(self, ticks_by_pid: dict[int, int]) -> int:
        """Take one sample (pid -> utime+stime+cutime+cstime); the ticks used so far."""
        for pid, ticks in ticks_by_pid.items():
            self.ticks += max(0, ticks - self._last.get(pid, 0))
        self._last = dict(ticks_by_pid)
        return self.ticks


class TreeSampler:
    """Peak of the summed RSS of a process and all its descendants, and each one's VmHWM.

    A tree whose CPU time (CpuProgress) has not moved for `stall_s` seconds is *stalled*
    (a worker pool that lost its workers waits forever: CPython gh-115634, below)."""

    def __init__(self, pid: int, interval: float = 0.2, stall_s: float | None = None):
        self.pid, self.interval, self.stall_s = pid, interval, stall_s
        self.peak_sum_kb = 0
        self.peak_anon_sum_kb = 0
        self.hwm_kb: dict[int, int] = {}
        self.anon_kb: dict[int, int] = {}  # each process's peak RssAnon (sampled)
        self.names: dict[int, str] = {}
        self.pids: set[int] = set()
        self.stalled = threading.Event()
        self._cpu: list[tuple[float, int]] = []  # (when, CPU ticks of the tree) over the last stall_s
        self._progress = CpuProgress()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "TreeSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        kids = _children_map()
        todo, total, anon, ticks_by_pid, seen = [self.pid], 0, 0, {}, set()
        while todo:
            pid = todo.pop()
            todo.extend(kids.get(pid, ()))
            seen.add(pid)
            ticks_by_pid[pid] = _cpu_ticks(pid)
            st = _status_kb(pid)
            total += st.get("VmRSS", 0)
            anon += st.get("RssAnon", 0)
            self.anon_kb[pid] = max(self.anon_kb.get(pid, 0), st.get("RssAnon", 0))
            if st.get("VmHWM", 0) > self.hwm_kb.get(pid, 0):
                self.hwm_kb[pid] = st["VmHWM"]
                if pid not in self.names:
                    try:
                        with open(f"/proc/{pid}/cmdline", "rb") as fh:
                            self.names[pid] = " ".join(a.decode(errors="replace") for a in fh.read().split(b"\0")[:4])
                    except OSError:
                        self.names[pid] = "?"
        self.peak_sum_kb = max(self.peak_sum_kb, total)
        self.peak_anon_sum_kb = max(self.peak_anon_sum_kb, anon)
        self.pids = seen
        ticks = self._progress.add(ticks_by_pid)
        if self.stall_s is not None:
            now = time.monotonic()
            self._cpu.append((now, ticks))
            while len(self._cpu) > 1 and now - self._cpu[1][0] >= self.stall_s:
                self._cpu.pop(0)
            # Less than one CPU second in stall_s: only a poll loop is left running.
            if now - self._cpu[0][0] >= self.stall_s and ticks - self._cpu[0][1] < CLOCK_TICKS:
                self.stalled.set()

    def describe(self) -> list[str]:
        """Each process of the tree as last sampled: pid, state, kernel wait channel, CPU
        ticks, command (recorded before a stalled tree is killed, to tell a hang apart)."""
        out = []
        for pid in sorted(self.pids):
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    state = fh.read().rsplit(")", 1)[1].split()[0]
                with open(f"/proc/{pid}/wchan") as fh:
                    wchan = fh.read() or "-"
            except OSError:
                state, wchan = "gone", "-"
            out.append(f"{pid} {state} {wchan} {_cpu_ticks(pid)} {self.names.get(pid, '?')}")
        return out

    def kill(self) -> None:
        """SIGKILL the whole tree (the processes this script started)."""
        for pid in sorted(self.pids, reverse=True):
            try:
                os.kill(pid, 9)
            except OSError:
                pass

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    @property
    def cpu_ticks(self) -> int:
        """CPU time the tree used up to the last sample (clock ticks; CpuProgress)."""
        return self._progress.ticks

    @property
    def peak_sum_mb(self) -> float:
        return round(self.peak_sum_kb / 1024, 1)

    @property
    def largest_mb(self) -> float:
        return round(max(self.hwm_kb.values(), default=0) / 1024, 1)

    @property
    def anon_largest_mb(self) -> float:
        """The largest peak of anonymous memory of one process (RSS without mapped files:
        VmHWM also counts the pages of the repository's pack that dulwich maps)."""
        return round(max(self.anon_kb.values(), default=0) / 1024, 1)

    @property
    def anon_peak_sum_mb(self) -> float:
        return round(self.peak_anon_sum_kb / 1024, 1)


def run_measured(cmd: list[str], *, cwd=None, stdin=None, stdout=subprocess.DEVNULL, check=True,
                 stall_s: float | None = None) -> dict:
    """Run cmd to its end: wall seconds, ru_maxrss, the sampled peak of its process tree.

    With stall_s, a tree that used no CPU for that long is killed and reported as
    "stalled" (then check does not raise)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)
    err = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
    reader.start()
    tree = None
    with TreeSampler(proc.pid, stall_s=stall_s) as sampler:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if sampler.stalled.wait(0.2):
                tree = sampler.describe()
                sampler.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                break
    seconds = time.monotonic() - t0
    reader.join()
    code = os.waitstatus_to_exitcode(status)
    extra = {"stall_tree": tree} if tree is not None else {}
    stderr = err[0].decode(errors="replace") if err else ""
    stalled = sampler.stalled.is_set()
    if check and code != 0 and not stalled:
        raise RuntimeError(f"{' '.join(cmd)} exited with {code}: {stderr.strip()[-2000:]}")
    return {
        "s": round(seconds, 2),
        "maxrss_mb": round(usage.ru_maxrss / 1024, 1),
        "tree_peak_mb": sampler.peak_sum_mb,
        "anon_mb": sampler.anon_largest_mb,
        "anon_tree_mb": sampler.anon_peak_sum_mb,
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "code": code,
        "stalled": stalled,
        "stderr": stderr,
        **extra,
    }


def git(repo: str, *args: str, **kw) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True, **kw).stdout


def git_dir(repo: str) -> str:
    return git(repo, "rev-parse", "--absolute-git-dir").strip()


# -- the steps -----------------------------------------------------------------------------


def published_tips(repo: str) -> dict[str, str]:
    """refs/heads/* and refs/tags/* -> object id (what `gitp2p torrent --all` publishes)."""
    lines = git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/", "refs/tags/").split("\n")
    return dict(line.split() for line in lines if line)


def describe_history(repo: str, tips: dict[str, str]) -> dict:
    ids = "\n".join(sorted(set(tips.values()))) + "\n"
    count = lambda *a: int(git(repo, "rev-list", "--count", *a, "--stdin", input=ids).strip())  # noqa: E731
    head = git(repo, "symbolic-ref", "-q", "HEAD").strip()
    tree = git(repo, "ls-tree", "-r", "-t", "--name-only", "HEAD").split("\n")
    entries: dict[str, int] = {}
    for path in filter(None, tree):
        parent = path.rpartition("/")[0]
        entries[parent] = entries.get(parent, 0) + 1
    kinds = git(repo, "for-each-ref", "--format=%(objecttype)", "refs/tags/").split()
    return {
        "commits": count(),
        "merges": count("--merges"),
        "head": head,
        "head_first_parent": int(git(repo, "rev-list", "--count", "--first-parent", "HEAD").strip()),
        "branches": sum(1 for r in tips if r.startswith("refs/heads/")),
        "tags": sum(1 for r in tips if r.startswith("refs/tags/")),
        "annotated_tags": sum(1 for k in kinds if k == "tag"),
        "head_files": sum(1 for p in tree if p) - (len(entries) - 1),
        "head_dirs": len(entries),
        "largest_dir_entries": max(entries.values(), default=0),
    }


def git_reference(repo: str, tips: dict[str, str], work: str) -> dict:
    """git pack-objects of the published refs (no delta reuse, one thread), then git
    index-pack of that pack into an empty repository."""
    pack = os.path.join(work, "git-reference.pack")
    stdin_path = os.path.join(work, "git-reference.tips")
    with open(stdin_path, "w") as fh:
        fh.write("".join(f"{oid}\n" for oid in sorted(set(tips.values()))))
    with open(stdin_path) as fin, open(pack, "wb") as fout:
        packed = run_measured(["git", "pack-objects", "--no-reuse-delta", "--threads=1", "--stdout", "--revs"],
                              cwd=repo, stdin=fin, stdout=fout)
    empty = os.path.join(work, "git-index-pack.git")
    shutil.rmtree(empty, ignore_errors=True)
    subprocess.run(["git", "init", "-q", "--bare", empty], check=True)
    with open(pack, "rb") as fin:
        indexed = run_measured(["git", "index-pack", "--stdin", "--fix-thin"], cwd=empty, stdin=fin)
    out = {"git_pack_bytes": os.path.getsize(pack), "git_pack": packed, "git_index_pack": indexed}
    os.unlink(pack)
    shutil.rmtree(empty, ignore_errors=True)
    return out


def parse_torrent_file(path: str) -> dict:
    from torrentcore.metainfo import parse_torrent

    with open(path, "rb") as fh:
        data = fh.read()
    t = parse_torrent(data)
    from torrentcore import bencode

    paths = ["/".join(f.path) for f in t.files]
    return {
        "torrent_bytes": len(data),
        "info_bytes": len(bencode.encode(t.info)),
        "info_hash": t.info_hash.hex(),
        "files": len(paths),
        "rollups": sum(1 for p in paths if p.startswith("rollups/") and p.endswith(".rollup")),
        "tag_groups": sum(1 for p in paths if p.startswith("rollups/") and p.endswith(".tags")),
        "packs": sum(1 for p in paths if p.endswith(".pack")),
        "total_bytes": sum(f.length for f in t.files),
        "piece_length": t.piece_length,
        "pieces": len(t.pieces),
        "largest_file_bytes": max(f.length for f in t.files),
    }


def write_torrent_files(repo: str, dest: str) -> None:
    """Write every file of REPO's all-refs torrent under dest/packs/ (run in a child)."""
    from gitfs_p2p.cli.common import open_source
    from gitfs_p2p.store.cache import DEFAULT_CACHE_BYTES
    from gitfs_p2p.store.rollups import with_rollups
    from gitfs_p2p.store.torrents import TORRENT_NAME, build_repo_torrent, rollup_chunks, select_refs

    source = open_source(repo, DEFAULT_CACHE_BYTES)
    manifest, label = select_refs(source, [], all_refs=True)
    t = with_rollups(source, build_repo_torrent(source, manifest, label, jobs=1))
    by_path = {r.path: r for r in t.rollups}
    root = os.path.join(dest, TORRENT_NAME)
    for path, size in t.files:
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as fh:
            if path in by_path:
                for chunk in rollup_chunks(source, by_path[path]):
                    fh.write(chunk)
            elif path.endswith(".pack"):
                fh.write(source.pack(path[: -len(".pack")].encode()))
            else:
                fh.write(t.manifest_bytes)
            if fh.tell() != size:
                raise RuntimeError(f"{path}: wrote {fh.tell()} bytes, the torrent lists {size}")
        os.utime(full, (0, 0))
    source.close()
    source.repo.close()


def mount_ready(repo: str, mnt: str) -> tuple[bench_mount._Mount, float]:
    """Start `gitp2p mount`; seconds from its start until torrents/all.torrent reads whole."""
    m = bench_mount._Mount(repo, mnt)
    t0 = time.perf_counter()
    m.__enter__()
    path = os.path.join(mnt, "torrents", "all.torrent")
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
            if data.startswith(b"d") and data.endswith(b"e"):
                return m, time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.05)
    m.__exit__(None, None, None)
    raise RuntimeError(f"{path} not readable within an hour")


def serves_rollups(mnt: str, files: dict[str, int]) -> str | None:
    """None when the mount lists every roll-up of the torrent with its size, else why not."""
    for path, size in files.items():
        if path.startswith("rollups/"):
            full = os.path.join(mnt, "packs", path)
            try:
                st = os.stat(full)
            except OSError as exc:
                return f"packs/{path}: {exc.strerror}"
            if st.st_size != size:
                return f"packs/{path}: {st.st_size} bytes, the torrent lists {size}"
    return None


def torrent_files(path: str) -> dict[str, int]:
    from torrentcore.metainfo import parse_torrent

    with open(path, "rb") as fh:
        t = parse_torrent(fh.read())
    return {"/".join(f.path): f.length for f in t.files}


def run(repo: str, work: str, out: dict, skip: frozenset[str] = frozenset(), log=print) -> None:
    repo = os.path.abspath(repo)
    os.makedirs(work, exist_ok=True)
    cache = os.path.join(git_dir(repo), "gitp2p")
    tips = published_tips(repo)
    log("history")
    out["history"] = describe_history(repo, tips)

    log("git pack-objects and git index-pack (the references)")
    out.update(git_reference(repo, tips, work))

    def gitp2p_step(key: str, args: list[str], *, empty_cache: bool = False, stdout_path: str | None = None) -> None:
        """out[key] = gitp2p ARGS measured (default jobs: one per core).  If its worker pool
        stalls (CPython gh-115634), that is recorded as out[key + "_stalled"] and the
        command runs again with -j 1 (in one process, no pool)."""
        for jobs in ([], ["-j", "1"]):
            if empty_cache:
                shutil.rmtree(cache, ignore_errors=True)
            with open(stdout_path or os.devnull, "w") as fh:
                r = run_measured([*GITP2P, *args, *jobs], stdout=fh, stall_s=STALL_S)
            if not r["stalled"]:
                r["jobs"] = 1 if jobs else os.cpu_count()
                out[key] = r
                return
            r["stderr_tail"] = r["stderr"].strip().splitlines()[-1:] or ""
            out[key + "_stalled"] = r
            log(f"  gitp2p {args[0]} stalled after {r['s']:.0f} s ({r['stderr_tail']}); again with -j 1")
            for line in r.get("stall_tree", ()):
                log(f"    {line}")
        raise RuntimeError(f"gitp2p {' '.join(args)} -j 1 stalled")

    log("gitp2p packs, empty cache")
    packs_txt = os.path.join(work, "packs.txt")
    gitp2p_step("packs_cold", ["packs", repo], empty_cache=True, stdout_path=packs_txt)
    with open(packs_txt) as fh:
        sizes = [int(line.split()[1]) for line in fh]
    out["commit_packs"] = len(sizes)
    out["commit_packs_bytes"] = sum(sizes)
    gitp2p_step("packs_warm", ["packs", repo])

    log("gitp2p torrent --all")
    torrent = os.path.join(work, "all.torrent")
    gitp2p_step("torrent_build", ["torrent", repo, "--all", "-o", torrent])
    out["torrent"] = parse_torrent_file(torrent)
    gitp2p_step("torrent_again", ["torrent", repo, "--all", "-o", torrent])
    files = torrent_files(torrent)

    disk = os.path.join(work, "files")
    if not skip >= {"watch", "checks"}:
        log("writing the torrent's files")
        shutil.rmtree(disk, ignore_errors=True)
        out["write_files"] = run_measured([sys.executable, os.path.abspath(__file__), "--write-files", repo, disk])

    if "watch" not in skip:
        log("gitp2p watch --once")
        into = os.path.join(work, "received.git")
        shutil.rmtree(into, ignore_errors=True)
        out["watch"] = run_measured([*GITP2P, "watch", disk, "--into", into, "--bare", "--once"], check=False)
        received = published_tips(into) if os.path.isdir(into) else {}
        out["watch_refs_match"] = received == tips
        out["watch_commits"] = (
            int(git(into, "rev-list", "--count", "--all").strip()) if received else 0
        )
        shutil.rmtree(into, ignore_errors=True)

    if "mount" not in skip:
        log("gitp2p mount, warm cache")
        m, seconds = mount_ready(repo, os.path.join(work, "mnt-warm"))
        try:
            out["mount_warm_s"] = round(seconds, 2)
            out["mount_warm_info_hash"] = parse_torrent_file(os.path.join(m.path, "torrents", "all.torrent"))["info_hash"]
            out["mount_rollups"] = serves_rollups(m.path, files) or "served"
            status = m.status()
            out["mount_warm_server_rss_mb"] = round(status.get("VmHWM", 0) / 1024, 1)
            out["mount_warm_server_anon_mb"] = round(status.get("RssAnon", 0) / 1024, 1)
        finally:
            m.__exit__(None, None, None)
        if "checks" not in skip and out["mount_rollups"] == "served":
            log("stock clients' checks: the mount against the same files on disk")
            checks: dict = {}
            _checks(repo, work, torrent, disk, checks)
            out["checks"] = checks
        elif "checks" not in skip:
            out["checks"] = f"not measured: the mount does not serve the torrent's roll-ups ({out['mount_rollups']})"

    if "cold-mount" not in skip:
        log("gitp2p mount, empty pack cache")
        shutil.rmtree(cache, ignore_errors=True)
        _mount_cold(repo, os.path.join(work, "mnt-cold"), out)


def _mount_cold(repo: str, mnt: str, out: dict) -> None:
    """Seconds from starting `gitp2p mount` (empty pack cache) until all.torrent reads whole,
    the server's VmHWM, and the peak of server plus workers; or how long until it stalled."""
    m = bench_mount._Mount(repo, mnt)
    t0 = time.perf_counter()
    m.__enter__()
    path = os.path.join(mnt, "torrents", "all.torrent")
    try:
        with TreeSampler(m.pid, stall_s=STALL_S) as sampler:
            while not sampler.stalled.is_set():
                try:
                    with open(path, "rb") as fh:
                        data = fh.read()
                    if data.startswith(b"d") and data.endswith(b"e"):
                        out["mount_cold_s"] = round(time.perf_counter() - t0, 2)
                        break
                except OSError:
                    pass
                if time.perf_counter() - t0 > 3600:
                    break
                time.sleep(0.05)
            sampler.sample()
        if "mount_cold_s" not in out:
            out["mount_cold_stalled_s"] = round(time.perf_counter() - t0, 1)
        out["mount_cold_server_rss_mb"] = round(sampler.hwm_kb.get(m.pid, 0) / 1024, 1)
        out["mount_cold_tree_peak_mb"] = sampler.peak_sum_mb
        out["mount_cold_largest_process_mb"] = sampler.largest_mb
        out["mount_cold_server_anon_mb"] = round(sampler.anon_kb.get(m.pid, 0) / 1024, 1)
        out["mount_cold_anon_tree_mb"] = sampler.anon_peak_sum_mb
        out["mount_cold_processes"] = len(sampler.hwm_kb)
    finally:
        m.__exit__(None, None, None)
        if "mount_cold_stalled_s" in out:  # a stalled pool keeps the server from exiting
            sampler.kill()


def _checks(repo: str, work: str, torrent: str, disk: str, out: dict) -> None:
    """libtorrent's and transmission's full check of all.torrent: a fresh mount (pack cache
    warm, kernel cache cold) against the same files in a regular directory (page cache
    dropped); then both again, warm.  Ratio = mount / disk."""
    from gitfs_p2p.testing.clients.transmission import Transmission

    copies = [os.path.join(root, f) for root, _, names in os.walk(disk) for f in names]

    def measure(name: str, check) -> None:
        m, _ = mount_ready(repo, os.path.join(work, f"mnt-check-{name}"))
        try:
            time.sleep(bench_mount.SETTLE_S)
            with TreeSampler(m.pid) as sampler:
                try:
                    mount_cold = check(m.path)
                    mount_warm = check(m.path)
                except Exception as exc:  # noqa: BLE001  (a failed check is a result too)
                    out[name] = f"check of the mount failed: {str(exc)[:300]}"
                    return
                finally:
                    sampler.sample()
        finally:
            m.__exit__(None, None, None)
        for path in copies:
            bench_mount._drop_cache(path)
        disk_cold = check(disk)
        disk_warm = check(disk)
        out[name] = {
            "mount_s": round(mount_cold, 2), "disk_s": round(disk_cold, 2),
            "ratio": round(mount_cold / disk_cold, 2),
            "warm_mount_s": round(mount_warm, 2), "warm_disk_s": round(disk_warm, 2),
            "warm_ratio": round(mount_warm / disk_warm, 2),
            "server_rss_mb": round(sampler.hwm_kb.get(m.pid, 0) / 1024, 1),
            "server_anon_mb": round(sampler.anon_kb.get(m.pid, 0) / 1024, 1),
            "tree_peak_mb": sampler.peak_sum_mb,
        }

    measure("libtorrent", lambda path: bench_mount._check_libtorrent(torrent, path))
    with Transmission(os.path.join(work, "transmission")) as client:
        bench_mount._check_transmission(client, torrent, disk)  # not counted: see bench_mount._run_checks
        measure("transmission", lambda path: bench_mount._check_transmission(client, torrent, path))


def checks_only(repo: str, disk: str, out_dir: str) -> dict:
    """`--checks REPO DIR`: step 5's checks alone, for comparing code on a repository whose
    pack cache is filled (copy bench-out/large's history first: a mount writes its cache)."""
    repo, disk = os.path.abspath(repo), os.path.abspath(disk)
    if not os.path.isdir(disk):
        subprocess.run([sys.executable, os.path.abspath(__file__), "--write-files", repo, disk], check=True)
    work = os.path.join(out_dir, "work-checks")
    os.makedirs(work, exist_ok=True)
    torrent = os.path.join(work, "all.torrent")
    m, _ = mount_ready(repo, os.path.join(work, "mnt-torrent"))
    try:
        shutil.copyfile(os.path.join(m.path, "torrents", "all.torrent"), torrent)
    finally:
        m.__exit__(None, None, None)
    out: dict = {"load_start": os.getloadavg()[0]}
    _checks(repo, work, torrent, disk, out)
    out["load_end"] = os.getloadavg()[0]
    return out


# -- the report ----------------------------------------------------------------------------


def _jobs(r: dict) -> str:
    return f" (-j {r['jobs']})" if r.get("jobs") == 1 else ""


def _mem(r: dict) -> str:
    """Peak RSS of the largest process (anonymous part), and of the whole tree when it differs."""
    text = f"**{r['maxrss_mb']:.0f} MB**" + (f" ({r['anon_mb']:.0f} anon)" if "anon_mb" in r else "")
    if r.get("anon_tree_mb", 0) > r.get("anon_mb", 0) * 1.2:
        text += f", all processes {r['tree_peak_mb']:.0f} MB ({r['anon_tree_mb']:.0f} anon)"
    return text


def report(out: dict) -> str:
    h, t = out["history"], out["torrent"]
    git_pack, packs, tb = out["git_pack"], out["packs_cold"], out["torrent_build"]
    lines = [
        f"History: {out['name']}: {h['commits']:,} commits ({h['merges']:,} merges), "
        f"{h['head_first_parent']:,} on HEAD's first-parent chain, {h['branches']} branches, "
        f"{h['tags']} tags ({h['annotated_tags']} annotated); HEAD's tree {h['head_files']:,} files "
        f"in {h['head_dirs']:,} directories (largest {h['largest_dir_entries']} entries).",
        "",
        "| measure | gitp2p | reference (same run) | ratio | target |",
        "|---|---|---|---|---|",
        f"| sum of the torrent's files | {t['total_bytes'] / MB:.1f} MiB | git pack-objects "
        f"{out['git_pack_bytes'] / MB:.1f} MiB | **{t['total_bytes'] / out['git_pack_bytes']:.3f}** | at most 1.05 |",
        f"| sum of the commit packs alone | {out['commit_packs_bytes'] / MB:.1f} MiB | same | "
        f"{out['commit_packs_bytes'] / out['git_pack_bytes']:.3f} | |",
        f"| .torrent | **{t['torrent_bytes']:,} B**, **{t['files']:,} files** ({t['rollups']} roll-ups, "
        f"{t.get('tag_groups', 0)} tag groups, {t['packs']:,} packs, 1 manifest), {t['pieces']:,} pieces of {t['piece_length'] // 1024} KiB | | "
        f"| at most 1 MB |",
        f"| `gitp2p packs`{_jobs(packs)}, empty cache | {packs['s']:.1f} s ({packs['cpu_s']:.0f} s CPU) "
        f"| git pack-objects {git_pack['s']:.1f} s ({git_pack['cpu_s']:.0f} s CPU) "
        f"| **{packs['s'] / git_pack['s']:.2f}x** | |",
        f"| peak RSS of `gitp2p packs`{_jobs(packs)} | {_mem(packs)} | git pack-objects "
        f"{git_pack['maxrss_mb']:.0f} MB ({git_pack.get('anon_mb', 0):.0f} anon) | | |",
        f"| `gitp2p torrent --all`{_jobs(tb)}, packs cached | {tb['s']:.1f} s, {_mem(tb)} "
        f"| git pack-objects {git_pack['s']:.1f} s | {tb['s'] / git_pack['s']:.2f}x | at most 300 MB |",
        f"| `gitp2p torrent --all` again (torrent cached) | {out['torrent_again']['s']:.2f} s | | | |",
    ]
    if "watch" in out:
        w, ip = out["watch"], out["git_index_pack"]
        ok = "every ref and commit" if out["watch_refs_match"] and out["watch_commits"] == h["commits"] else (
            f"NOT complete: exit {w['code']}, {out['watch_commits']:,} commits, refs match: {out['watch_refs_match']}")
        lines.append(
            f"| `gitp2p watch --once` of all the files into an empty repository ({ok}) | {w['s']:.1f} s, "
            f"{_mem(w)} | git index-pack --stdin of git's pack "
            f"{ip['s']:.1f} s, {ip['maxrss_mb']:.0f} MB | **{w['s'] / ip['s']:.2f}x** | at most 300 MB |"
        )
    if "mount_warm_s" in out:
        lines.append(
            f"| `gitp2p mount` to a readable all.torrent, warm cache | **{out['mount_warm_s']:.2f} s**, server "
            f"{out['mount_warm_server_rss_mb']:.0f} MB ({out.get('mount_warm_server_anon_mb', 0):.0f} anon) "
            f"| `gitp2p torrent --all` (cached) {out['torrent_again']['s']:.2f} s "
            f"| {out['mount_warm_s'] / out['torrent_again']['s']:.2f}x | |"
        )
    if "mount_cold_s" in out or "mount_cold_stalled_s" in out:
        when = (f"**{out['mount_cold_s']:.1f} s**" if "mount_cold_s" in out
                else f"**stalled** (under 1 s of CPU in {STALL_S:.0f} s; no torrent after {out['mount_cold_stalled_s']:.0f} s)")
        ratio = f"**{out['mount_cold_s'] / packs['s']:.2f}x**" if "mount_cold_s" in out else "-"
        lines.append(
            f"| same, empty pack cache | {when}; server **{out['mount_cold_server_rss_mb']:.0f} MB** "
            f"({out.get('mount_cold_server_anon_mb', 0):.0f} anon), largest process "
            f"{out['mount_cold_largest_process_mb']:.0f} MB, all processes {out['mount_cold_tree_peak_mb']:.0f} MB "
            f"({out.get('mount_cold_anon_tree_mb', 0):.0f} anon) | `gitp2p packs`{_jobs(packs)} {packs['s']:.1f} s "
            f"| {ratio} | at most 300 MB |"
        )
    checks = out.get("checks")
    if isinstance(checks, dict):
        for name, c in checks.items():
            if isinstance(c, str):
                lines.append(f"| {name}'s full check of the mount | {c} | | | at most 2x |")
                continue
            lines.append(
                f"| {name}'s full check of the mount (cold; warm) | {c['mount_s']:.1f} s; {c['warm_mount_s']:.1f} s "
                f"(server {c['server_rss_mb']:.0f} MB, {c.get('server_anon_mb', 0):.0f} anon) | same files on disk {c['disk_s']:.1f} s; {c['warm_disk_s']:.1f} s "
                f"| **{c['ratio']:.2f}x**; {c['warm_ratio']:.2f}x | at most 2x |"
            )
    notes = []
    if isinstance(checks, str):
        notes.append(f"Stock clients' checks: {checks}.")
    for key, what in (("packs_cold_stalled", "`gitp2p packs`"), ("torrent_build_stalled", "`gitp2p torrent --all`")):
        if key in out:
            r = out[key]
            notes.append(
                f"{what} with its default jobs (one worker process per core) stalled: less than 1 s of CPU in "
                f"{STALL_S:.0f} s, after {r['s']:.0f} s ({' '.join(r.get('stderr_tail') or [])}); killed, and measured "
                f"again with -j 1 (CPython gh-115634: a ProcessPoolExecutor with max_tasks_per_child stops "
                f"replacing workers)."
            )
    if "mount_cold_stalled_s" in out:
        notes.append("The empty-cache mount stalled the same way (its builders are the same worker pool).")
    if "generate_s" in out:
        notes.append(f"Generating the history took {out['generate_s']:.0f} s (kept for later runs).")
    return "\n".join(lines) + "\n" + ("\n" + "\n\n".join(notes) + "\n" if notes else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("repo", nargs="?", help="measure this repository (default: a generated history)")
    ap.add_argument("--commits", type=int, default=200_000, help="size of the generated history (default 200000)")
    ap.add_argument("--files", type=int, default=2000, help="files in the generated history's last tree (default 2000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-out", "large"), help="work directory")
    ap.add_argument("--skip", default="", help=f"comma-separated steps to leave out: {', '.join(STEPS)}")
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON too")
    ap.add_argument("--write-files", nargs=2, metavar=("REPO", "DEST"), help=argparse.SUPPRESS)
    ap.add_argument("--from-json", metavar="FILE", help="print the report of an earlier run's results-large.json")
    ap.add_argument("--checks", nargs=2, metavar=("REPO", "DIR"),
                    help="only the stock clients' checks of REPO's mount (its pack cache as it is) against "
                         "the torrent's files in DIR (written there first unless DIR exists); prints JSON")
    args = ap.parse_args(argv)
    if args.write_files:
        write_torrent_files(*args.write_files)
        return 0
    if args.checks:
        print(json.dumps(checks_only(*args.checks, args.out)))
        return 0
    if args.from_json:
        with open(args.from_json) as fh:
            print(report(json.load(fh)))
        return 0
    skip = frozenset(s for s in args.skip.split(",") if s)
    if skip - set(STEPS):
        ap.error(f"--skip: unknown steps {sorted(skip - set(STEPS))}")
    os.makedirs(args.out, exist_ok=True)
    t_start = time.monotonic()
    out: dict = {"started": time.strftime("%Y-%m-%d %H:%M"), "load_start": os.getloadavg()[0]}
    if args.repo:
        repo, name = os.path.abspath(args.repo), os.path.basename(os.path.abspath(args.repo))
        work = os.path.join(args.out, f"work-{name}")
    else:
        name = f"generated (gen_large_history --commits {args.commits} --files {args.files} --seed {args.seed})"
        repo = os.path.join(args.out, f"history-{args.commits}-f{args.files}-s{args.seed}")
        work = os.path.join(args.out, "work-generated")
        if not os.path.isdir(repo):
            print(f"bench-large: generating {repo}", file=sys.stderr)
            t0 = time.monotonic()
            generate_large(repo, args.commits, target_files=args.files, seed=args.seed)
            out["generate_s"] = round(time.monotonic() - t0, 1)
    out["name"] = name

    def log(step: str) -> None:
        print(f"bench-large: {time.monotonic() - t_start:7.1f} s  {step}", file=sys.stderr, flush=True)

    import gitfs_p2p

    out["code"] = os.path.dirname(os.path.dirname(os.path.abspath(gitfs_p2p.__file__)))
    try:
        run(repo, work, out, skip, log)
    finally:
        out["total_s"] = round(time.monotonic() - t_start, 1)
        out["load_end"] = os.getloadavg()[0]
        for v in out.values():
            if isinstance(v, dict):
                v.pop("stderr", None)
        with open(os.path.join(args.out, "results-large.json"), "w") as fh:
            json.dump(out, fh, indent=2)
    machine = (
        f"Run of {out['started']} ({out['total_s']:.0f} s in all; load {out['load_start']:.1f} at the start, "
        f"{out['load_end']:.1f} at the end): {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, zlib {zlib.ZLIB_RUNTIME_VERSION}, "
        f"{subprocess.check_output(['git', '--version'], text=True).strip()}, code in {out['code']}."
    )
    text = machine + "\n\n" + report(out)
    with open(os.path.join(args.out, "results-large.md"), "w") as fh:
        fh.write(text)
    print(text)
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
