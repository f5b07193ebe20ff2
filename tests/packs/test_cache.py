"""The pack cache: moving from format 1, and what counts as checked."""

from __future__ import annotations

import hashlib
import os
import sqlite3

from gitfs_p2p.store.cache import RECEIVED_CHECKED, PackCache


def test_format_1_rows_move_over_but_old_receipts_are_not_trusted(tmp_path):
    """Format 2 kept commit packs byte for byte, so format-1 rows are kept; but a format-1
    watcher checked less than today's, so what it received is served, not trusted."""
    git_dir = tmp_path / "repo.git"
    (git_dir / "gitp2p").mkdir(parents=True)
    PackCache(str(git_dir)).close()  # the schema
    db = sqlite3.connect(git_dir / "gitp2p" / "cache.sqlite3")
    for cid, received in (("a" * 40, 1), ("b" * 40, 0)):
        data = cid.encode()
        db.execute("INSERT INTO packs (format, commit_id, size, sha256, data, received, seq) VALUES (1, ?, ?, ?, ?, ?, 1)",
                   (cid, len(data), hashlib.sha256(data).digest(), data, received))
    db.commit()
    db.close()
    cache = PackCache(str(git_dir))
    try:
        assert cache.get(2, "a" * 40).data == b"a" * 40 and cache.get(2, "a" * 40).received
        assert cache.get(2, "b" * 40).data == b"b" * 40 and not cache.get(2, "b" * 40).received
        assert cache.received_ids(2) == set()
        cache.put(2, "c" * 40, b"checked today", received=True)
        assert cache.received_ids(2) == {"c" * 40}
        row = sqlite3.connect(git_dir / "gitp2p" / "cache.sqlite3").execute(
            "SELECT received FROM packs WHERE commit_id=?", ("c" * 40,)).fetchone()
        assert row == (RECEIVED_CHECKED,)
    finally:
        cache.close()


def test_datas_reads_the_bytes_of_many_packs_at_once_and_only_those_kept(tmp_path):
    git_dir = tmp_path / "repo.git"
    cache = PackCache(str(git_dir), max_bytes=20 * 1200)  # the oldest rows lose their bytes
    try:
        ids = [f"{i:040x}" for i in range(1200)]
        for cid in ids:
            cache.put(2, cid, cid.encode() * 1)
        cache.put_size(2, "f" * 40, 7, b"x" * 32)  # a size without bytes
        found = cache.datas(2, [*ids, "f" * 40, "e" * 40])  # more than one query's worth (500)
        kept = [cid for cid in ids if cache.get(2, cid).data is not None]
        assert 0 < len(kept) < len(ids)
        assert found == {cid: cid.encode() for cid in kept}
        assert cache.datas(1, ids) == {}
    finally:
        cache.close()


def test_received_packs_replace_built_ones_and_leave_the_eviction_budget(tmp_path):
    """Received bytes are never evicted, so built rows they replace stop counting against the
    bound: the built packs put after them keep their bytes up to the bound, not below it.
    More ids than one query's worth (500), some of them built here first."""
    git_dir = tmp_path / "repo.git"
    built = [f"{i:040x}" for i in range(700)]
    cache = PackCache(str(git_dir), max_bytes=700 * 40)
    try:
        for cid in built:
            cache.put(2, cid, cid.encode())  # 40 bytes each: the bound exactly
        received = [(cid, b"R" + cid.encode()) for cid in built[:600:2] + [f"{i:040x}" for i in range(900, 1200)]]
        cache.put_received(2, received)
        assert cache.received_ids(2) == {cid for cid, _ in received}
        assert all(cache.get(2, cid).data == data and cache.get(2, cid).received for cid, data in received)
        later = [f"{i:040x}" for i in range(2000, 2300)]  # fills the 300 packs' worth just freed
        for cid in later:
            cache.put(2, cid, cid.encode())
        assert all(cache.get(2, cid).data == cid.encode() for cid in built[1:600:2] + built[600:] + later)
        cache.put(2, "f" * 40, b"f" * 40)  # one past the bound: the oldest built row goes
        assert cache.get(2, built[1]).data is None and cache.get(2, built[3]).data is not None
    finally:
        cache.close()


def test_building_in_worker_processes_gives_the_same_packs(fresh_history, tmp_path, monkeypatch):
    """`gitp2p packs -j N`: packs built by a pool of worker processes (store/builders.Workers,
    real spawned interpreters) are the bytes one process builds, oldest first or not."""
    from gitfs_p2p.git.repo import GitRepo
    from gitfs_p2p.store import source as source_mod
    from gitfs_p2p.store import builders
    from gitfs_p2p.store.builders import Workers
    from gitfs_p2p.store.source import PackSource
    from testutil import git

    clone = str(tmp_path / "clone.git")
    git("clone", "-q", "--mirror", fresh_history, clone)
    monkeypatch.setattr(source_mod, "PARALLEL_MIN", 2)  # the history is small; the path is the same
    monkeypatch.setattr(builders, "BUILD_CHUNK", 4)  # so both workers get chunks
    chunks = []
    real_build_chunks = Workers.build_chunks

    def counting(self, ids):
        for chunk in real_build_chunks(self, ids):
            chunks.append(chunk)
            yield chunk

    monkeypatch.setattr(Workers, "build_chunks", counting)
    results = {}
    for path, jobs in ((fresh_history, 2), (clone, 1)):
        source = PackSource(GitRepo(path))
        commits = source.commits()
        sizes = [(c.id, size) for c, size in source.sizes(commits, jobs=jobs)]
        digests = [source.cache.get(source.format, c.id.decode(), with_data=False).sha256 for c in commits]
        results[jobs] = (sizes, digests)
        source.close()
        source.repo.close()
    assert len(chunks) == 8 and sum(len(c) for c in chunks) == len(results[1][0]) == 30, "all built by the workers"
    assert results[2] == results[1]


def test_workers_leave_when_the_process_owning_them_is_killed(fresh_history):
    """kill -9 of a mount server (or any owner of a Workers pool) leaves no worker behind:
    a worker never sees its queues close, so it watches its parent."""
    import signal
    import subprocess
    import sys

    from gitfs_p2p.testing.procs import wait_for
    from gitfs_p2p.testing.swarm import pid_alive

    script = (
        "import sys, time\n"
        "from gitfs_p2p.store.builders import Workers\n"
        "w = Workers(sys.argv[1], cache_bytes=1 << 20, workers=2)\n"
        "w.build([])\n"
        "w.start()\n"
        "w.snapshot(None)\n"  # a job, so a worker has really run
        "print(' '.join(str(p) for p in w.processes()), flush=True)\n"
        "time.sleep(120)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script, fresh_history], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(p) for p in owner.stdout.readline().split()]
        assert workers and all(pid_alive(p) for p in workers)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    assert wait_for(lambda: not any(pid_alive(p) for p in workers), timeout=15, step=0.2), "workers outlived their owner"


class _CountingPacker:
    """A packer that says which packs it built (bytes: a function of the id)."""

    def __init__(self):
        self.built: list[str] = []

    def build_object(self, oid: bytes) -> bytes:
        self.built.append(oid.decode())
        return b"pack of " + oid


def test_a_build_batch_stores_its_packs_together_and_waits_for_no_one_while_holding_any(tmp_path):
    """BuildBatch (a worker's build job) writes the cache once for its packs, as put() would
    one by one; a pack whose lock another holds (being built elsewhere) makes it store what
    it holds first, then wait, then take that pack from the cache instead of building it."""
    import threading

    from gitfs_p2p.store.cache import BuildBatch, _lock_pack, _open_pack_locks

    git_dir = str(tmp_path / "repo.git")
    cache = PackCache(git_dir)
    a, b, c = "a" * 40, "b" * 40, "c" * 40
    cache.put(2, c, b"cached before")
    packer = _CountingPacker()
    other = _open_pack_locks(git_dir)  # another builder, with b's lock
    assert _lock_pack(other, b, wait=False)
    got = {}
    try:
        with BuildBatch(git_dir, cache, packer) as batch:
            batch.look_up([a, b, c])
            got[c] = batch.pack(c, want_bytes=False)
            got[a] = batch.pack(a)
            assert cache.get(2, a) is None, "stored with the rest of the batch, not one by one"
            waiting = threading.Thread(target=lambda: got.__setitem__(b, batch.pack(b)))
            waiting.start()
            for _ in range(500):  # until the batch has stored a and waits for b (bounded)
                if cache.get(2, a) is not None:
                    break
                waiting.join(0.01)
            assert cache.get(2, a).data == b"pack of " + a.encode() and waiting.is_alive()
            cache.put(2, b, b"built elsewhere")
            os.close(other)  # the other builder is done: its lock goes
            other = None
            waiting.join(30)
            assert not waiting.is_alive()
        assert got == {c: (13, None), a: (8 + 40, b"pack of " + a.encode()), b: (15, b"built elsewhere")}
        assert packer.built == [a]
        assert cache.get(2, a).sha256 == hashlib.sha256(b"pack of " + a.encode()).digest()
    finally:
        if other is not None:
            os.close(other)
        cache.close()


def test_a_build_batch_and_build_locked_share_the_locks(tmp_path):
    """build_locked (one pack, in the process that wants it) waits for a batch that holds
    the pack's lock, and then finds the batch's bytes: one build of a pack at a time."""
    import threading

    from gitfs_p2p.store.cache import BuildBatch, build_locked

    git_dir = str(tmp_path / "repo.git")
    cache = PackCache(git_dir)
    oid = "d" * 40
    batch_packer, single_packer = _CountingPacker(), _CountingPacker()
    out = []
    try:
        batch = BuildBatch(git_dir, cache, batch_packer)
        assert batch.pack(oid)[1] == b"pack of " + oid.encode()  # built, lock held, not stored yet
        single = threading.Thread(target=lambda: out.append(build_locked(git_dir, cache, single_packer, oid)))
        single.start()
        single.join(0.3)
        assert single.is_alive(), "build_locked waits for the batch's lock"
        batch.flush()
        single.join(30)
        assert out == [b"pack of " + oid.encode()] and single_packer.built == []
    finally:
        cache.close()


def test_worker_pools_take_runs_of_consecutive_chunks(monkeypatch):
    """Workers deals a build's chunks out as one run of consecutive chunks per worker (its
    packer moves from a commit to the next), and a worker done with its run takes over
    the last chunk still queued for another."""
    import concurrent.futures
    import threading

    from gitfs_p2p.store import builders
    from gitfs_p2p.store.builders import Workers

    ran: list[tuple[str, list[str]]] = []
    taken_over = threading.Event()

    def job(repo_path, cache_bytes, ids, want_bytes):
        name = threading.current_thread().name.split("_")[0]
        if ids[0] == "00":
            taken_over.wait(30)  # A is slow on its first chunk, until B has taken one of A's
        elif name == "B" and ids[0] < "08":
            taken_over.set()
        ran.append((name, ids))
        return [(oid, 1, None) for oid in ids]

    monkeypatch.setattr(builders, "_job_build", job)
    monkeypatch.setattr(builders, "BUILD_CHUNK", 2)
    workers = Workers("/nonexistent", cache_bytes=0, workers=2)
    for pool in workers._pools:
        pool.shutdown()
    workers._pools = [concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name) for name in ("A", "B")]
    ids = [f"{i:02d}" for i in range(16)]  # 8 chunks: A's run 0-3, B's 4-7
    try:
        sizes = {}
        for chunk in workers.build_chunks(ids):
            sizes.update(chunk)
        assert sizes == {oid: 1 for oid in ids}
    finally:
        taken_over.set()
        workers.close()
    by_pool = {name: [ids[0] for n, ids in ran if n == name] for name in ("A", "B")}
    assert by_pool["B"][:5] == ["08", "10", "12", "14", "06"], by_pool  # then A's last, taken over
    assert by_pool["A"][0] == "00" and sorted(by_pool["A"] + by_pool["B"]) == ids[::2]
