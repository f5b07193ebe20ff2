"""Interop: stock BitTorrent clients swap a torrent we built through our tracker on 127.0.0.1.

Each case starts our TrackerServer (trio, port 0), writes a torrent with torrentcore,
starts one stock client seeding it, waits until the tracker has seen the seeder, then
starts another stock client downloading it, and checks the downloaded bytes and that the
tracker saw both peers. TCP only; DHT, LSD, PEX, uTP and port mapping are off where the
client allows it. Every wait is bounded; every process is started in its own session and
its whole process group is killed at the end.
"""

import json
import os
import subprocess

import pytest
import trio
from tc_support import (
    kill_group,
    random_bytes,
    require_binary,
    require_libtorrent,
)

from torrentcore.metainfo import build_info, build_torrent, info_hash
from torrentcore.tracker import Event, Tracker
from torrentcore.tracker.server import TrackerServer

from gitfs_p2p.testing.lt import lt_script
from gitfs_p2p.testing.procs import SYSTEM_PYTHON, free_port

CASE_TIMEOUT = 180  # seconds; a stuck swarm fails the test instead of hanging it


class RecordingTracker(Tracker):
    """A Tracker that remembers every announce it accepted (stopped peers included), and
    what it answered when."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.announces = []
        self.answers = []  # (request, result, now)

    def announce(self, req, now, **kwargs):
        result = super().announce(req, now, **kwargs)
        self.announces.append(req)
        self.answers.append((req, result, now))
        return result


class TrackerClock:
    """The tracker's clock in a test: it stands still until the test moves it."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


# ------------------------------------------------------------------ clients



def _libtorrent(mode, torrent, data_dir, port, workdir, *, own_pace=False):
    require_libtorrent()
    return [SYSTEM_PYTHON, lt_script("session"), mode, str(torrent), str(data_dir), str(port)] + \
        (["own-pace"] if own_pace else [])


def _aria2(mode, torrent, data_dir, port, workdir, *, own_pace=True):
    require_binary("aria2c")
    args = [
        "aria2c", f"--dir={data_dir}", f"--listen-port={port}",
        "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
        "--enable-peer-exchange=false", "--disable-ipv6=true", "--file-allocation=none",
        "--summary-interval=0", "--console-log-level=notice", "--check-certificate=false",
        "--bt-tracker-connect-timeout=10", "--bt-tracker-timeout=10",
    ]
    if mode == "seed":
        # aria2 only seeds existing files without a control file when told not to verify
        # (or with -V, which re-hashes first); seed-ratio 0.0 means seed forever.
        args += ["--bt-seed-unverified=true", "--seed-ratio=0.0"]
    else:
        args += ["--seed-time=0"]  # exit once the download is complete
    return args + [str(torrent)]


def _transmission(mode, torrent, data_dir, port, workdir, *, own_pace=True):
    require_binary("transmission-cli")
    config = workdir / "transmission-config"
    config.mkdir(exist_ok=True)
    # transmission-cli reads settings.json from its config dir (-g); DHT, LSD, PEX and
    # uTP have no command-line switches there.
    (config / "settings.json").write_text(json.dumps({
        "dht-enabled": False, "lpd-enabled": False, "pex-enabled": False,
        "utp-enabled": False, "port-forwarding-enabled": False,
        "peer-port": port, "peer-port-random-on-start": False,
        "bind-address-ipv4": "127.0.0.1", "incomplete-dir-enabled": False,
        "message-level": 2, "encryption": 1,
    }))
    args = ["transmission-cli", "-g", str(config), "-w", str(data_dir), "-p", str(port), "-M",
            "-D", "-U", "-ep"]
    if mode == "seed":
        args.append("-v")  # verify the existing data first, then seed it
    return args + [str(torrent)]


# Each builder takes own_pace: only the libtorrent seed script otherwise re-announces
# every 3 s; aria2 (without --bt-tracker-interval) and transmission always keep their own.
CLIENTS = {"libtorrent": _libtorrent, "aria2": _aria2, "transmission": _transmission}


# ------------------------------------------------------------------ test scenario

def _write_content(root, name, layout, seed):
    """Write the files of *layout* under *root*; return their contents in order."""
    contents = [random_bytes(size, seed + i) for i, (_, size) in enumerate(layout)]
    for (path, _), data in zip(layout, contents):
        target = root / name / "/".join(path) if len(layout) > 1 else root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return contents


def _matches(root, name, layout, contents, *, empty_files_optional=False):
    for (path, _), data in zip(layout, contents):
        target = root / name / "/".join(path) if len(layout) > 1 else root / name
        if not data and empty_files_optional and not target.exists():
            continue
        try:
            if target.stat().st_size != len(data) or target.read_bytes() != data:
                return False
        except FileNotFoundError:
            return False
    return True


def _tail(path, lines=25):
    try:
        text = path.read_text(errors="replace").replace("\r", "\n")
    except FileNotFoundError:
        return "(no output)"
    return "\n".join(text.splitlines()[-lines:])


MULTI = [(["a.txt"], 70_001), (["empty"], 0), (["sub", "b.bin"], 900_000),
         (["sub", "c.bin"], 16_384)]
CASES = [
    # (seeder, downloader, layout, tracker URL scheme): every client seeds and downloads.
    ("libtorrent", "aria2", [(["payload.bin"], 1_500_000 + 123)], "http"),
    ("aria2", "transmission", MULTI, "http"),
    ("transmission", "libtorrent", [(["payload.bin"], 1_200_000 + 7)], "http"),
    ("libtorrent", "transmission", MULTI, "udp"),  # aria2: UDP trackers need its DHT
]


class Swap:
    """One stock client seeding a fresh torrent and another downloading it, through our
    TrackerServer on 127.0.0.1. ``run`` returns the info-hash once the download matches;
    every wait is bounded, every process group is killed at the end."""

    def __init__(self, tmp_path, seeder, downloader, layout, *, tracker, scheme="http",
                 clock=None, own_pace=False):
        self.seeder, self.downloader, self.layout = seeder, downloader, layout
        self.tracker, self.scheme, self.clock = tracker, scheme, clock
        self.name = "payload.bin" if len(layout) == 1 else "payload"
        self.seed_dir, self.dest_dir = tmp_path / "seed", tmp_path / "dest"
        self.seed_work, self.dest_work = tmp_path / "seeder-work", tmp_path / "downloader-work"
        for path in (self.seed_dir, self.dest_dir, self.seed_work, self.dest_work):
            path.mkdir()
        self.contents = _write_content(self.seed_dir, self.name, layout, seed=11)
        self.seed_port, self.dest_port = free_port(), free_port()
        # Resolve both command lines first: a missing client skips before anything starts.
        self.torrent = tmp_path / f"{self.name}.torrent"
        self.seed_cmd = CLIENTS[seeder]("seed", self.torrent, self.seed_dir, self.seed_port,
                                        self.seed_work, own_pace=own_pace)
        self.dest_cmd = CLIENTS[downloader]("download", self.torrent, self.dest_dir,
                                            self.dest_port, self.dest_work)
        self.logs = {seeder + " (seeder)": self.seed_work / "output.log",
                     downloader + " (downloader)": self.dest_work / "output.log"}
        self.procs = []

    def report(self, message):
        details = "\n".join(f"--- {who} ---\n{_tail(path)}" for who, path in self.logs.items())
        seen = "\n".join(f"  now={now} port={r.port} left={r.left} event={r.event.value!r} "
                         f"numwant={r.numwant} peer_id={r.peer_id!r} -> "
                         f"{[p.port for p in result.peers]}"
                         for r, result, now in self.tracker.answers)
        return f"{message}\n--- tracker announces ---\n{seen}\n{details}"

    async def _start(self, cmd, workdir):
        log_file = open(workdir / "output.log", "wb")
        try:
            proc = await trio.lowlevel.open_process(
                cmd, cwd=str(workdir), stdin=subprocess.DEVNULL, stdout=log_file,
                stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "HOME": str(workdir)})
        finally:
            log_file.close()
        self.procs.append(proc)
        return proc

    async def _wait_for(self, predicate, what, limit_s):
        polls = int(limit_s / 0.25)
        for _ in range(polls):
            if predicate():
                return
            await trio.sleep(0.25)
        raise AssertionError(self.report(f"gave up after {polls} polls waiting for {what}"))

    def run(self, *, before_download=lambda: None):
        """Seed, wait for the seed's announce, call *before_download*, download."""
        return trio.run(self._scenario, before_download)

    async def _scenario(self, before_download):
        server = TrackerServer(self.tracker, host="127.0.0.1", port=0, clock=self.clock)
        async with trio.open_nursery() as nursery:
            http_port, udp_port = await nursery.start(server.run)
            port = http_port if self.scheme == "http" else udp_port
            info = build_info(self.layout, [b"".join(self.contents)], self.name)
            self.torrent.write_bytes(build_torrent(
                info, [f"{self.scheme}://127.0.0.1:{port}/announce"]))
            try:
                with trio.fail_after(CASE_TIMEOUT):
                    await self._start(self.seed_cmd, self.seed_work)
                    # Wait for the announce of a ready seed: transmission first sends a
                    # "stopped" while it pauses to verify, then "started" with left=0.
                    await self._wait_for(lambda: any(
                        r.port == self.seed_port and r.left == 0 and r.event is not Event.STOPPED
                        for r in self.tracker.announces),
                        f"{self.seeder} to announce as a seed", CASE_TIMEOUT / 3)
                    before_download()
                    await self._start(self.dest_cmd, self.dest_work)
                    # transmission 3.00 never creates zero-length files of a torrent.
                    optional = self.downloader == "transmission"
                    await self._wait_for(lambda: _matches(
                        self.dest_dir, self.name, self.layout, self.contents,
                        empty_files_optional=optional),
                        f"{self.downloader} to finish downloading", CASE_TIMEOUT / 2)
            finally:
                with trio.CancelScope(shield=True):
                    for proc in self.procs:
                        kill_group(proc.pid)
                    with trio.move_on_after(10):
                        for proc in self.procs:
                            await proc.wait()
            nursery.cancel_scope.cancel()
        return info_hash(info)


@pytest.mark.parametrize("seeder,downloader,layout,scheme", CASES,
                         ids=[f"{s}-to-{d}-{u}" for s, d, _, u in CASES])
def test_stock_clients_swap_through_our_tracker(tmp_path, seeder, downloader, layout, scheme):
    tracker = RecordingTracker(interval=5)
    swap = Swap(tmp_path, seeder, downloader, layout, tracker=tracker, scheme=scheme)
    ih = swap.run()

    ports = {r.port for r in tracker.announces if r.info_hash == ih}
    assert {swap.seed_port, swap.dest_port} <= ports, swap.report(f"tracker saw ports {ports}")
    peer_ids = {r.peer_id for r in tracker.announces if r.info_hash == ih}
    assert len(peer_ids) >= 2, swap.report(f"tracker saw peer ids {peer_ids}")
    # The downloader first announced as a leecher (left > 0).
    first = next(r for r in tracker.announces if r.port == swap.dest_port)
    assert first.left > 0
    assert all(r.ip == "127.0.0.1" for r in tracker.announces)


OWN_PACE = [("libtorrent", "aria2"), ("aria2", "libtorrent")]


@pytest.mark.parametrize("seeder,downloader", OWN_PACE, ids=[f"{s}-to-{d}" for s, d in OWN_PACE])
def test_seed_at_its_own_pace_outlives_the_old_ttl(tmp_path, seeder, downloader):
    """Issue 10 with stock clients: a seed announces once at its own pace (libtorrent
    waits at least 300 s before the next, aria2 the tracker's interval), the tracker's
    clock then moves a minute past the default 30-min interval (far past the old
    2 x 60 + 10 s TTL), and a downloader arriving then still gets the seed from the
    tracker and downloads from it. Nobody waits: only the tracker's clock moves."""
    clock = TrackerClock()
    tracker = RecordingTracker()  # the defaults under test
    assert (tracker.interval, tracker.peer_ttl) == (1800, 2700)
    late = tracker.interval + 60
    swap = Swap(tmp_path, seeder, downloader, [(["payload.bin"], 600_000 + 11)],
                tracker=tracker, clock=clock, own_pace=True)

    def a_minute_late():
        clock.now = late

    swap.run(before_download=a_minute_late)

    first = next((i for i, (r, _, _) in enumerate(tracker.answers) if r.port == swap.dest_port))
    request, result, now = tracker.answers[first]
    assert now == late
    seed_times = {t for r, _, t in tracker.answers[:first] if r.port == swap.seed_port}
    assert seed_times == {0.0}, swap.report("the seed announced again; nothing was tested")
    assert swap.seed_port in {p.port for p in result.peers}, swap.report("no seed handed out")
