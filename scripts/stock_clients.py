"""Drivers for stock BitTorrent clients and trackers on 127.0.0.1 (interop tests, demo, bench).

One class per client, all with the same small interface:

    client = CLIENTS["aria2"](workdir)
    client.seed(torrent_file, save_path)        # hash-check what is there, then seed it
    client.download(torrent_file, dest_dir)     # fetch into a plain directory
    client.wait_checked(timeout); client.verified_fraction()
    client.wait_complete(timeout); client.downloaded_bytes(); client.uploaded_bytes()
    client.reannounce()                         # tell the tracker again (learn new peers)
    client.stop()                               # kill its process group, remove its config

A client holds one torrent at a time: calling ``seed``/``download`` again replaces the
torrent (the data stays), which is how an updated torrent is fetched into the same
directory. Every client runs in its own session (process group) with its own temporary
config dir and its own loopback ports; DHT, LSD, PEX, uTP and port mapping are off;
encryption is allowed, not required. Every wait is bounded in time and in count.

Trackers: ``EmbeddedTracker`` (``gitp2p tracker``) and ``OpenTracker`` (Debian's
opentracker, which serves only an allow-list of info-hashes: ``allow()`` rewrites the list
and reloads it with SIGHUP).

Findings about each client are in docs/clients.md.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import xmlrpc.client
from pathlib import Path

from torrentcore import bencode
from torrentcore.metainfo import parse_torrent

__all__ = [
    "CLIENTS", "TRACKERS", "Client", "Transmission", "Aria2", "Libtorrent", "Rtorrent", "QBittorrent",
    "EmbeddedTracker", "OpenTracker", "ClientError", "client_available", "tracker_available",
    "free_port", "kill_group", "wait_until", "torrent_info_hash", "LOOPBACK", "SYSTEM_PYTHON",
    "libtorrent_available",
]

log = logging.getLogger(__name__)

SYSTEM_PYTHON = "/usr/bin/python3"
LOOPBACK = "127.0.0.1"


class ClientError(RuntimeError):
    """A client or tracker failed, or a bounded wait ran out; the message carries its log."""


# ------------------------------------------------------------------ small helpers

def free_port() -> int:
    """A port free a moment ago for both TCP and UDP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as tcp:
            tcp.bind((LOOPBACK, 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((LOOPBACK, port))
                except OSError:
                    continue
            return port
    raise ClientError("no free loopback port found in 50 tries")


def kill_group(proc: subprocess.Popen | None, *, grace: float = 5.0) -> None:
    """SIGTERM the process group led by proc (started with start_new_session), then SIGKILL."""
    if proc is None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            # the leader is gone; make sure nothing it started lingers in its group
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break
        except subprocess.TimeoutExpired:
            continue


def wait_until(predicate, timeout: float, what: str, *, step: float = 0.25, details=None):
    """Poll predicate() at most timeout/step times; return its first truthy value.

    Raises ClientError naming *what* (plus details(), if given) when it never holds."""
    polls = max(1, int(timeout / step))
    for _ in range(polls):
        value = predicate()
        if value:
            return value
        time.sleep(step)
    value = predicate()
    if value:
        return value
    extra = f"\n{details()}" if details is not None else ""
    raise ClientError(f"gave up after {timeout:.0f} s ({polls} polls) waiting for {what}{extra}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = Path(path).read_text(errors="replace").replace("\r", "\n")
    except OSError:
        return "(no log)"
    return "\n".join(line for line in text.splitlines()[-lines:] if line.strip())


def torrent_info_hash(torrent_file) -> str:
    return parse_torrent(Path(torrent_file).read_bytes()).info_hash.hex()


def _start(cmd: list[str], log_path: Path, *, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            cmd, cwd=str(cwd), stdin=subprocess.DEVNULL, stdout=log_file,
            stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **(env or {})})


def _post_json(url: str, payload: dict, headers: dict | None = None, timeout: float = 10):
    req = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


@functools.cache
def libtorrent_available() -> bool:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return False
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import libtorrent"], capture_output=True,
                           timeout=60)
    return probe.returncode == 0


def client_available(name: str) -> str | None:
    """None if client *name* can run here, else the reason (with the package to install)."""
    if name == "libtorrent":
        return None if libtorrent_available() else \
            "python3-libtorrent is not importable by /usr/bin/python3 (apt-get install python3-libtorrent)"
    binary, package = {"transmission": ("transmission-daemon", "transmission-daemon"),
                       "aria2": ("aria2c", "aria2"), "rtorrent": ("rtorrent", "rtorrent"),
                       "qbittorrent": ("qbittorrent-nox", "qbittorrent-nox")}[name]
    if name == "transmission" and shutil.which("transmission-remote") is None:
        return "transmission-remote is not installed (apt-get install transmission-cli)"
    return None if shutil.which(binary) else f"{binary} is not installed (apt-get install {package})"


def tracker_available(name: str) -> str | None:
    if name == "opentracker" and shutil.which("opentracker") is None:
        return "opentracker is not installed (apt-get install opentracker)"
    return None


# ------------------------------------------------------------------ clients

class Client:
    """Common part: a process in its own session, a temp config dir, a log, a listen port."""

    name = "client"
    #: False when the client never connects *out* to a peer on 127.0.0.0/8 (then a peer of
    #: it must dial it, after learning its address from a later announce).
    dials_loopback = True

    def __init__(self, workdir, *, label: str | None = None, host: str = LOOPBACK):
        self.workdir = Path(workdir)
        #: the address peers reach it at (its RPC stays on 127.0.0.1)
        self.host = host
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.label = label or self.name
        self.config_dir = Path(tempfile.mkdtemp(prefix=f"{self.label}-config-", dir=self.workdir))
        self.log_path = self.workdir / f"{self.label}.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.torrent: Path | None = None
        self.save_path: Path | None = None
        self.mode: str | None = None

    # -- interface ---------------------------------------------------------------

    def seed(self, torrent_file, save_path) -> None:
        """Check the data at save_path against torrent_file and seed it (no copy)."""
        self._add(Path(torrent_file), Path(save_path), "seed")

    def download(self, torrent_file, dest_dir) -> None:
        """Fetch torrent_file into dest_dir (what is already there is checked and kept)."""
        Path(dest_dir).mkdir(parents=True, exist_ok=True)
        self._add(Path(torrent_file), Path(dest_dir), "download")

    def status(self) -> dict:
        """{'checked': bool, 'progress': 0..1, 'verified': bytes, 'total': bytes,
        'downloaded': bytes, 'uploaded': bytes, 'peers': n, 'error': str}"""
        raise NotImplementedError

    def wait_checked(self, timeout: float = 60) -> dict:
        return wait_until(lambda: self._alive_status(lambda s: s["checked"]), timeout,
                          f"{self.label} to finish checking {self.torrent}", details=self.details)

    def wait_complete(self, timeout: float = 120, *, on_progress=None, nudge=None) -> dict:
        """Wait until every byte is verified; on_progress(status) each poll; nudge() every ~3 s."""
        last_nudge = [time.monotonic()]

        def done():
            st = self._alive_status(lambda s: True)
            if on_progress is not None:
                on_progress(st)
            if nudge is not None and time.monotonic() - last_nudge[0] > 3:
                last_nudge[0] = time.monotonic()
                nudge()
            return st if st["checked"] and st["total"] and st["verified"] == st["total"] else None

        return wait_until(done, timeout, f"{self.label} to complete {self.torrent}",
                          details=self.details)

    def verified_fraction(self) -> float:
        st = self.status()
        return st["verified"] / st["total"] if st["total"] else 0.0

    def downloaded_bytes(self) -> int:
        """Payload bytes this client fetched from peers for its current torrent (its own count)."""
        return self.status()["downloaded"]

    def uploaded_bytes(self) -> int:
        return self.status()["uploaded"]

    def reannounce(self) -> None:
        """Announce again now, so the client learns of peers that arrived after it."""

    def last_announce(self) -> tuple[int, int] | None:
        """(time, peers the tracker returned) of the last successful announce of the current
        torrent; None before one, or when the client does not say."""
        return None

    def stop(self) -> None:
        kill_group(self.proc)
        self.proc = None
        shutil.rmtree(self.config_dir, ignore_errors=True)

    def details(self) -> str:
        try:
            st = json.dumps(self.status())
        except Exception as exc:  # the client may be dead; its log says why
            st = f"(no status: {exc})"
        return f"--- {self.label}: status {st}\n--- {self.label}: log {self.log_path}\n{tail(self.log_path)}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- helpers -----------------------------------------------------------------

    def _add(self, torrent: Path, save_path: Path, mode: str) -> None:
        raise NotImplementedError

    def _wait_answering(self, probe, what: str, timeout: float = 30) -> None:
        """Wait until probe() (a call to the control interface just started) returns without
        an error; ClientError at once if the process exits."""
        def answers():
            if self.proc.poll() is not None:
                raise ClientError(f"{self.label} exited with code {self.proc.returncode}\n"
                                  f"{tail(self.log_path)}")
            try:
                probe()
                return True
            except (OSError, urllib.error.URLError, ValueError):
                return False
        wait_until(answers, timeout, what, details=self.details)

    def _alive_status(self, accept):
        if self.proc is not None and self.proc.poll() is not None:
            raise ClientError(f"{self.label} exited with code {self.proc.returncode}\n{self.details()}")
        try:
            st = self.status()
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            return None
        return st if accept(st) else None


class Transmission(Client):
    """transmission-daemon 3.00 driven over its JSON RPC (what transmission-remote uses)."""

    name = "transmission"
    # transmission 3.00 treats 127.0.0.0/8 as a "martian" address and never dials it
    # (libtransmission/net.c, isMartianAddr); it only accepts incoming connections there.
    dials_loopback = False

    STATUS = {0: "stopped", 1: "check-wait", 2: "checking", 3: "download-wait",
              4: "downloading", 5: "seed-wait", 6: "seeding"}

    def __init__(self, workdir, **kw):
        super().__init__(workdir, **kw)
        self.rpc_port = free_port()
        self.rpc_url = f"http://{LOOPBACK}:{self.rpc_port}/transmission/rpc"
        self._session_id = ""
        self.torrent_id: int | None = None
        self._checked = False

    def settings(self) -> dict:
        return {
            "dht-enabled": False, "lpd-enabled": False, "pex-enabled": False,
            "utp-enabled": False, "port-forwarding-enabled": False,
            "peer-port": self.port, "peer-port-random-on-start": False,
            "bind-address-ipv4": self.host, "bind-address-ipv6": "::1",
            "encryption": 1,  # prefer encryption, accept plain peers
            "rpc-enabled": True, "rpc-bind-address": LOOPBACK, "rpc-port": self.rpc_port,
            "rpc-authentication-required": False, "rpc-whitelist-enabled": False,
            "rpc-host-whitelist-enabled": False,
            "download-dir": str(self.config_dir / "downloads"),
            "incomplete-dir-enabled": False, "rename-partial-files": True,
            "start-added-torrents": False, "trash-original-torrent-files": False,
            "ratio-limit-enabled": False, "idle-seeding-limit-enabled": False,
            "download-queue-enabled": False, "seed-queue-enabled": False,
            "queue-stalled-enabled": False, "speed-limit-down-enabled": False,
            "speed-limit-up-enabled": False, "alt-speed-enabled": False,
            "watch-dir-enabled": False, "message-level": 2,
        }

    def _ensure_running(self) -> None:
        if self.proc is not None:
            return
        (self.config_dir / "settings.json").write_text(json.dumps(self.settings(), indent=1))
        self.proc = _start(["transmission-daemon", "--foreground", "--config-dir",
                            str(self.config_dir), "--log-info"], self.log_path, cwd=self.config_dir)
        self._wait_answering(lambda: self.rpc("session-get"), "transmission-daemon's RPC to answer")

    def rpc(self, method: str, **arguments) -> dict:
        for _ in range(3):
            try:
                reply = _post_json(self.rpc_url, {"method": method, "arguments": arguments},
                                   {"X-Transmission-Session-Id": self._session_id})
            except urllib.error.HTTPError as exc:
                if exc.code == 409:  # CSRF handshake: retry with the id it hands out
                    self._session_id = exc.headers.get("X-Transmission-Session-Id", "")
                    continue
                raise
            if reply.get("result") != "success":
                raise ClientError(f"transmission RPC {method}: {reply.get('result')}")
            return reply.get("arguments", {})
        raise ClientError(f"transmission RPC {method}: no session id after 3 tries")

    def _add(self, torrent, save_path, mode):
        self._ensure_running()
        if self.torrent_id is not None:  # replace: forget the old torrent, keep its data
            self.rpc("torrent-remove", ids=[self.torrent_id], **{"delete-local-data": False})
            self.torrent_id = None
        added = self.rpc("torrent-add", filename=str(torrent), paused=True,
                         **{"download-dir": str(save_path)})
        entry = added.get("torrent-added") or added.get("torrent-duplicate")
        self.torrent_id = entry["id"]
        self.torrent, self.save_path, self.mode = torrent, save_path, mode
        # Hash-check what is on disk first (a new torrent over existing files is otherwise
        # trusted to be empty), then start; transmission starts it once the check is done.
        self.rpc("torrent-verify", ids=[self.torrent_id])
        self._checked = False
        self.rpc("torrent-start", ids=[self.torrent_id])

    def status(self) -> dict:
        if self.torrent_id is None:
            raise ClientError("transmission: no torrent")
        fields = ["status", "percentDone", "haveValid", "haveUnchecked", "totalSize",
                  "sizeWhenDone", "downloadedEver", "uploadedEver", "corruptEver",
                  "recheckProgress", "error", "errorString", "peersConnected", "hashString"]
        t = self.rpc("torrent-get", ids=[self.torrent_id], fields=fields)["torrents"][0]
        checking = t["status"] in (1, 2)
        if not checking and t["haveUnchecked"] == 0:
            self._checked = True
        return {
            "state": self.STATUS.get(t["status"], str(t["status"])),
            "checked": self._checked and not checking,
            "progress": t["percentDone"], "verified": t["haveValid"], "total": t["totalSize"],
            "downloaded": t["downloadedEver"], "uploaded": t["uploadedEver"],
            "corrupt": t["corruptEver"], "peers": t["peersConnected"],
            "error": t["errorString"] if t["error"] else "", "info_hash": t["hashString"],
        }

    def reannounce(self) -> None:
        if self.torrent_id is not None and self.proc is not None:
            try:
                self.rpc("torrent-reannounce", ids=[self.torrent_id])
            except (OSError, urllib.error.URLError, ClientError):
                pass

    def last_announce(self) -> tuple[int, int] | None:
        if self.torrent_id is None:
            return None
        t = self.rpc("torrent-get", ids=[self.torrent_id], fields=["trackerStats"])["torrents"][0]
        done = [(s["lastAnnounceTime"], s["lastAnnouncePeerCount"]) for s in t["trackerStats"]
                if s["hasAnnounced"] and s["lastAnnounceSucceeded"]]
        return max(done) if done else None


class Aria2(Client):
    """aria2c 1.36 with its JSON-RPC interface on a loopback port, one download at a time."""

    name = "aria2"

    def __init__(self, workdir, **kw):
        super().__init__(workdir, **kw)
        self.rpc_port = free_port()
        self.rpc_url = f"http://{LOOPBACK}:{self.rpc_port}/jsonrpc"
        self.gid: str | None = None
        self._log_offset = 0
        self._piece_length = 0
        self._pieces: list[int] = []

    def _ensure_running(self) -> None:
        if self.proc is not None:
            return
        self.aria2_log = self.workdir / f"{self.label}.aria2-log"
        self.proc = _start([
            "aria2c", "--enable-rpc=true", f"--rpc-listen-port={self.rpc_port}",
            "--rpc-listen-all=false", "--rpc-allow-origin-all=false",
            # else aria2 writes each added torrent as DIR/<info-hash>.torrent (into the mount!)
            "--rpc-save-upload-metadata=false",
            f"--listen-port={self.port}", "--dht-listen-port=" + str(free_port()),
            "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
            "--enable-peer-exchange=false", "--disable-ipv6=true", "--file-allocation=none",
            "--bt-require-crypto=false", "--bt-min-crypto-level=plain",
            "--auto-file-renaming=false", "--allow-overwrite=false",
            "--bt-tracker-connect-timeout=10", "--bt-tracker-timeout=10",
            # announce every 3 s whatever the tracker says, so a seed learns of leechers
            # (transmission ones wait to be dialled) within seconds
            "--bt-tracker-interval=3",
            "--summary-interval=0", "--console-log-level=notice",
            f"--log={self.aria2_log}", "--log-level=info",
            f"--dir={self.config_dir}",
        ], self.log_path, cwd=self.config_dir, env={"HOME": str(self.config_dir)})
        self._wait_answering(lambda: self.rpc("aria2.getVersion"), "aria2's RPC to answer")

    def rpc(self, method: str, *params):
        try:
            reply = _post_json(self.rpc_url, {"jsonrpc": "2.0", "id": "gitp2p", "method": method,
                                              "params": list(params)})
        except urllib.error.HTTPError as exc:  # aria2 answers errors with 400 + a JSON body
            try:
                reply = json.loads(exc.read())
            except ValueError:
                raise exc from None
        if "error" in reply:
            raise ClientError(f"aria2 RPC {method}: {reply['error']}")
        return reply["result"]

    def _add(self, torrent, save_path, mode):
        self._ensure_running()
        if self.gid is not None:  # replace: drop the old download, keep its files
            try:
                self.rpc("aria2.forceRemove", self.gid)
            except ClientError:
                pass
            wait_until(lambda: self._removed(), 20, "aria2 to drop the old download",
                       details=self.details)
            self.gid = None
        options = {"dir": str(save_path), "check-integrity": "true",
                   "bt-seed-unverified": "false"}
        if mode == "seed":
            options["seed-ratio"] = "0.0"  # 0.0: seed until stopped
        else:
            options["seed-time"] = "0"     # stop once complete (the process stays, for RPC)
        t = parse_torrent(torrent.read_bytes())
        self._piece_length = t.piece_length
        self._pieces = [min(t.piece_length, t.total_length - i * t.piece_length)
                        for i in range(len(t.pieces))]
        self._log_offset = self.aria2_log.stat().st_size if self.aria2_log.exists() else 0
        self.gid = self.rpc("aria2.addTorrent", base64.b64encode(torrent.read_bytes()).decode(),
                            [], options)
        self.torrent, self.save_path, self.mode = torrent, save_path, mode

    def _removed(self) -> bool:
        try:
            st = self.rpc("aria2.tellStatus", self.gid, ["status"])
        except ClientError:
            return True
        if st["status"] in ("removed", "complete", "error"):
            try:
                self.rpc("aria2.removeDownloadResult", self.gid)
            except ClientError:
                pass
            return True
        return False

    def _new_pieces(self) -> list[int]:
        """Indexes of the pieces aria2 says it fetched from peers for the current torrent.

        aria2 has no per-download "bytes downloaded" counter in its RPC (completedLength
        also counts what the hash check found); its info log has one line per piece it
        received and verified: "CUID#N - we got new piece. index=I"."""
        try:
            with open(self.aria2_log, "rb") as fh:
                fh.seek(self._log_offset)
                data = fh.read().decode(errors="replace")
        except OSError:
            return []
        found = []
        for line in data.splitlines():
            if "we got new piece. index=" in line:
                found.append(int(line.rsplit("index=", 1)[1].split()[0].rstrip(",.")))
        return found

    def status(self) -> dict:
        if self.gid is None:
            raise ClientError("aria2: no torrent")
        st = self.rpc("aria2.tellStatus", self.gid)
        checking = "verifiedLength" in st or st.get("verifyIntegrityPending") == "true"
        total, done = int(st["totalLength"]), int(st["completedLength"])
        fetched = sum(self._pieces[i] for i in set(self._new_pieces()) if i < len(self._pieces))
        return {
            "state": st["status"], "checked": not checking and st["status"] != "waiting",
            "progress": done / total if total else 0.0, "verified": done, "total": total,
            "downloaded": fetched, "uploaded": int(st.get("uploadLength", 0)),
            "peers": int(st.get("connections", 0)),
            "error": st.get("errorMessage", "") if st["status"] == "error" else "",
            "info_hash": st.get("infoHash", ""),
        }

    def reannounce(self) -> None:
        pass  # --bt-tracker-interval=3 already announces every 3 s

    def details(self) -> str:
        return super().details() + f"\n--- aria2 info log tail\n{tail(getattr(self, 'aria2_log', Path('/nonexistent')))}"


_LIBTORRENT_AGENT = r'''
"""A libtorrent session driven by JSON lines on stdin; status as JSON in a file."""
import json, os, sys, threading, time
import libtorrent as lt

host, port, status_file = sys.argv[1], sys.argv[2], sys.argv[3]
session = lt.session({
    "listen_interfaces": host + ":" + port,
    "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
    "enable_incoming_utp": False, "enable_outgoing_utp": False,
    "allow_multiple_connections_per_ip": True,
    "out_enc_policy": lt.enc_policy.enabled, "in_enc_policy": lt.enc_policy.enabled,
    "allowed_enc_level": lt.enc_level.both, "prefer_rc4": False,
    "alert_mask": lt.alert.category_t.error_notification | lt.alert.category_t.status_notification
                  | lt.alert.category_t.tracker_notification | lt.alert.category_t.storage_notification,
}, 0)  # flags 0: no default plugins, so no ut_pex
commands, lock = [], threading.Lock()

def read_commands():
    for line in sys.stdin:
        with lock:
            commands.append(json.loads(line))
    with lock:
        commands.append({"cmd": "quit"})

threading.Thread(target=read_commands, daemon=True).start()
handle, mode, errors, last_announce = None, None, [], 0.0
CHECKING = (lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data,
            lt.torrent_status.allocating)
while True:
    with lock:
        todo, commands[:] = commands[:], []
    for c in todo:
        if c["cmd"] == "quit":
            sys.exit(0)
        if c["cmd"] == "add":
            if handle is not None:
                session.remove_torrent(handle)
            params = lt.add_torrent_params()
            params.ti = lt.torrent_info(c["torrent"])
            params.save_path = c["save_path"]
            handle, mode, errors = session.add_torrent(params), c["mode"], []
        elif c["cmd"] == "reannounce" and handle is not None:
            handle.force_reannounce(0, -1, lt.reannounce_flags_t.ignore_min_interval)
    for alert in session.pop_alerts():
        print("alert:", alert.message(), flush=True)
        if alert.category() & lt.alert.category_t.error_notification:
            errors.append(alert.message())
    if handle is not None:
        # libtorrent re-announces only every few minutes whatever the tracker's interval;
        # a seed announces every 3 s so it learns of (and dials) leechers that cannot dial.
        if mode == "seed" and time.monotonic() - last_announce > 3:
            handle.force_reannounce(0, -1, lt.reannounce_flags_t.ignore_min_interval)
            last_announce = time.monotonic()
        st = handle.status()
        ti = handle.torrent_file()
        info = {"state": str(st.state), "checked": st.state not in CHECKING,
                "progress": st.progress, "verified": st.total_wanted_done,
                "total": st.total_wanted, "downloaded": st.total_payload_download,
                "uploaded": st.total_payload_upload, "peers": st.num_peers,
                "pieces": st.num_pieces, "num_pieces": ti.num_pieces() if ti else 0,
                "error": st.errc.message() if st.errc.value() else "",
                "errors": errors[-5:], "info_hash": str(st.info_hashes.v1)}
        with open(status_file + ".tmp", "w") as fh:
            json.dump(info, fh)
        os.replace(status_file + ".tmp", status_file)
    time.sleep(0.2)
'''


class Libtorrent(Client):
    """python3-libtorrent 2.0 in a /usr/bin/python3 subprocess (it is built for Debian's
    Python and boost, not the venv's), commanded by JSON lines on its stdin."""

    name = "libtorrent"

    def __init__(self, workdir, **kw):
        super().__init__(workdir, **kw)
        self.status_file = self.config_dir / "status.json"

    def _ensure_running(self) -> None:
        if self.proc is not None:
            return
        agent = self.config_dir / "agent.py"
        agent.write_text(_LIBTORRENT_AGENT)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                [SYSTEM_PYTHON, str(agent), self.host, str(self.port), str(self.status_file)],
                cwd=str(self.config_dir), stdin=subprocess.PIPE, stdout=log_file,
                stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "HOME": str(self.config_dir)})

    def _command(self, **cmd) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def _add(self, torrent, save_path, mode):
        self._ensure_running()
        try:
            self.status_file.unlink()
        except FileNotFoundError:
            pass
        self._command(cmd="add", torrent=str(torrent), save_path=str(save_path), mode=mode)
        self.torrent, self.save_path, self.mode = torrent, save_path, mode
        ih = torrent_info_hash(torrent)
        wait_until(lambda: self._alive_status(lambda s: s.get("info_hash") == ih), 30,
                   "libtorrent to load the torrent", details=self.details)

    def status(self) -> dict:
        return json.loads(self.status_file.read_text())

    def reannounce(self) -> None:
        self._command(cmd="reannounce")

    def stop(self) -> None:
        self._command(cmd="quit")
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            if self.proc.stdin:
                self.proc.stdin.close()
        super().stop()


class _SCGITransport(xmlrpc.client.Transport):
    """XML-RPC over SCGI (what rtorrent's network.scgi.open_local speaks) on a unix socket."""

    def __init__(self, socket_path: str, timeout: float = 10):
        super().__init__()
        self.socket_path, self.timeout = socket_path, timeout

    def request(self, host, handler, request_body, verbose=False):
        headers = b"".join(b"%s\0%s\0" % pair for pair in (
            (b"CONTENT_LENGTH", b"%d" % len(request_body)), (b"SCGI", b"1"),
            (b"REQUEST_METHOD", b"POST"), (b"REQUEST_URI", b"/RPC2")))
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
            sock.sendall(b"%d:%s," % (len(headers), headers) + request_body)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        head, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
        if not sep or not head.startswith((b"Status: 200", b"Content-Type")):
            raise xmlrpc.client.ProtocolError(self.socket_path, 500, head[:200].decode(errors="replace"), {})
        parser, unmarshaller = self.getparser()
        parser.feed(body)
        parser.close()
        return unmarshaller.close()


class Rtorrent(Client):
    """rtorrent 0.9.8 headless (``system.daemon.set = true``), driven over XML-RPC on an SCGI
    unix socket in its private config dir (``network.scgi.open_local``: a TCP SCGI port would
    let any local user run commands as rtorrent); config written to CONFIG/rtorrent.rc."""

    name = "rtorrent"

    #: d.* values one status() fetches, in one system.multicall
    FIELDS = ("d.hash", "d.hashing", "d.is_hash_checked", "d.completed_bytes", "d.size_bytes",
              "d.down.total", "d.up.total", "d.peers_connected", "d.message", "d.state", "d.complete")

    def __init__(self, workdir, **kw):
        super().__init__(workdir, **kw)
        self.info_hash: str | None = None
        self._config_fd: int | None = None
        self.rtorrent_log = self.workdir / f"{self.label}.rtorrent-log"

    def config(self) -> str:
        c = self.config_dir
        return "\n".join([
            "system.daemon.set = true",               # no curses UI; runs in the foreground
            f'session.path.set = "{c / "session"}"',
            f'directory.default.set = "{c / "downloads"}"',
            'network.scgi.open_local = "scgi.sock"',  # relative to its cwd, CONFIG
            "network.xmlrpc.size_limit.set = 16M",    # load.raw_* carries the whole .torrent
            f"network.bind_address.set = {self.host}",
            f"network.port_range.set = {self.port}-{self.port}",
            "network.port_random.set = no",
            "dht.mode.set = disable",
            "protocol.pex.set = no",
            "trackers.use_udp.set = no",
            "protocol.encryption.set = allow_incoming,try_outgoing,enable_retry",
            f'log.open_file = "main", "{self.rtorrent_log}"',
            'log.add_output = "info", "main"',
            ""])

    def _ensure_running(self) -> None:
        if self.proc is not None:
            return
        for sub in ("session", "downloads"):
            (self.config_dir / sub).mkdir(exist_ok=True)
        rc = self.config_dir / "rtorrent.rc"
        rc.write_text(self.config())
        # the socket's full path may pass the 108-byte limit of a unix socket address: reach
        # it through a descriptor of its directory
        self._config_fd = os.open(self.config_dir, os.O_RDONLY | os.O_DIRECTORY)
        # -n: no ~/.rtorrent.rc; the config is imported from the test's own file
        self.proc = _start(["rtorrent", "-n", "-o", f"import={rc}"], self.log_path,
                           cwd=self.config_dir, env={"HOME": str(self.config_dir)})
        self._wait_answering(lambda: self.rpc("system.client_version"), "rtorrent's XML-RPC to answer")

    def rpc(self, method: str, *params):
        proxy = xmlrpc.client.ServerProxy("http://rtorrent/RPC2", transport=_SCGITransport(
            f"/proc/self/fd/{self._config_fd}/scgi.sock"))
        try:
            return getattr(proxy, method)(*params)
        except (xmlrpc.client.Fault, xmlrpc.client.ProtocolError) as exc:
            raise ClientError(f"rtorrent {method}: {exc}") from None

    def _add(self, torrent, save_path, mode):
        self._ensure_running()
        if self.info_hash is not None:  # replace: d.erase forgets the torrent, keeps the data
            self.rpc("d.erase", self.info_hash)
            self.info_hash = None
        ih = torrent_info_hash(torrent).upper()
        # load.raw: the bytes, no tied .torrent file (d.erase would delete a tied file).
        # Multi-file torrents go to DIRECTORY/<name>: d.directory.set=MOUNT seeds MOUNT/packs.
        self.rpc("load.raw", "", xmlrpc.client.Binary(torrent.read_bytes()))
        wait_until(lambda: ih in self.rpc("download_list"), 30, "rtorrent to load the torrent",
                   details=self.details)
        self.rpc("d.directory.set", ih, str(save_path))
        self.rpc("d.start", ih)  # hash-checks what is there first, then seeds or downloads
        self.info_hash = ih
        self.torrent, self.save_path, self.mode = torrent, save_path, mode

    def status(self) -> dict:
        if self.info_hash is None:
            raise ClientError("rtorrent: no torrent")
        calls = [{"methodName": f, "params": [self.info_hash]} for f in self.FIELDS]
        values = {}
        for field, reply in zip(self.FIELDS, self.rpc("system.multicall", calls)):
            if isinstance(reply, dict):  # a fault for this call
                raise ClientError(f"rtorrent {field}: {reply.get('faultString')}")
            values[field] = reply[0]
        return {
            "state": "complete" if values["d.complete"] else ("started" if values["d.state"] else "stopped"),
            # d.hashing: 0 idle, 1 initial check, 2 after completion, 3 re-check
            "checked": values["d.hashing"] == 0 and bool(values["d.is_hash_checked"]),
            "progress": values["d.completed_bytes"] / (values["d.size_bytes"] or 1),
            "verified": values["d.completed_bytes"], "total": values["d.size_bytes"],
            "downloaded": values["d.down.total"], "uploaded": values["d.up.total"],
            "peers": values["d.peers_connected"], "error": values["d.message"],
            "info_hash": values["d.hash"].lower(),
        }

    def reannounce(self) -> None:
        if self.info_hash is not None and self.proc is not None:
            try:
                self.rpc("d.tracker_announce", self.info_hash)
            except (OSError, ClientError):
                pass

    def stop(self) -> None:
        super().stop()
        if self._config_fd is not None:
            os.close(self._config_fd)
            self._config_fd = None

    def details(self) -> str:
        return super().details() + f"\n--- rtorrent log tail\n{tail(self.rtorrent_log)}"


def _multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type (what qBittorrent's torrents/add takes)."""
    boundary = f"gitp2p-{os.urandom(12).hex()}"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    for key, (filename, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"; '
                     f'filename="{filename}"\r\nContent-Type: application/x-bittorrent\r\n\r\n'.encode()
                     + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class QBittorrent(Client):
    """qbittorrent-nox 4.5 (libtorrent 2.0) driven over its WebUI API (/api/v2) on 127.0.0.1.

    Its config, CONFIG/qBittorrent/config/qBittorrent.conf (``--profile=CONFIG``), is written
    before it starts: legal notice accepted (on a terminal it stops for a keypress), WebUI
    on a loopback port with the localhost login bypass, TCP only, no DHT/PEX/LSD/UPnP,
    queueing off."""

    name = "qbittorrent"

    CHECKING = ("checkingUP", "checkingDL", "checkingResumeData", "allocating", "metaDL", "moving")

    def __init__(self, workdir, **kw):
        super().__init__(workdir, **kw)
        self.webui_port = free_port()
        self.api = f"http://{LOOPBACK}:{self.webui_port}/api/v2/"
        self.info_hash: str | None = None

    def config(self) -> str:
        return "\n".join([
            "[LegalNotice]", "Accepted=true", "",
            "[BitTorrent]",
            "Session\\AddExtensionToIncompleteFiles=true",   # partial files end in .!qB
            "Session\\AnnounceToAllTrackers=true",
            "Session\\BTProtocol=TCP",                       # uTP is very slow on loopback
            "Session\\DHTEnabled=false", "Session\\LSDEnabled=false", "Session\\PeXEnabled=false",
            f"Session\\DefaultSavePath={self.config_dir / 'downloads'}",
            "Session\\Interface=lo", "Session\\InterfaceName=lo",
            f"Session\\InterfaceAddress={self.host}",
            f"Session\\Port={self.port}",
            "Session\\MultiConnectionsPerIp=true",
            "Session\\QueueingSystemEnabled=false",
            "", "[Network]", "PortForwardingEnabled=false", "",
            "[Preferences]",
            "Connection\\ResolvePeerCountries=false",          # else it fetches a GeoIP database
            f"WebUI\\Address={LOOPBACK}", f"WebUI\\Port={self.webui_port}",
            "WebUI\\LocalHostAuth=false",                      # no login from 127.0.0.1
            ""])

    def _ensure_running(self) -> None:
        if self.proc is not None:
            return
        conf = self.config_dir / "qBittorrent" / "config" / "qBittorrent.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(self.config())
        self.proc = _start(["qbittorrent-nox", f"--profile={self.config_dir}"], self.log_path,
                           cwd=self.config_dir, env={"HOME": str(self.config_dir)})
        self._wait_answering(lambda: self.call("app/version"), "qbittorrent-nox's WebUI to answer")

    def call(self, method: str, fields: dict | None = None, *, files=None, query=None) -> bytes:
        """GET api/v2/METHOD?query, or POST it with form fields (multipart when files)."""
        url = self.api + method + ("?" + urllib.parse.urlencode(query) if query else "")
        data, headers = None, {}
        if files:
            data, headers["Content-Type"] = _multipart(fields or {}, files)
        elif fields is not None:
            data = urllib.parse.urlencode(fields).encode()
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers),
                                    timeout=10) as resp:
            return resp.read()

    def _info(self) -> dict | None:
        found = json.loads(self.call("torrents/info", query={"hashes": self.info_hash}))
        return found[0] if found else None

    def _add(self, torrent, save_path, mode):
        self._ensure_running()
        if self.info_hash is not None:  # replace: forget the old torrent, keep its files
            self.call("torrents/delete", {"hashes": self.info_hash, "deleteFiles": "false"})
            wait_until(lambda: self._info() is None, 20, "qbittorrent to drop the old torrent",
                       details=self.details)
        self.info_hash = torrent_info_hash(torrent)
        # contentLayout Original: files go to SAVEPATH/<torrent name>/, so SAVEPATH=MOUNT
        reply = self.call("torrents/add", {
            "savepath": str(save_path), "autoTMM": "false", "paused": "false",
            "skip_checking": "false", "contentLayout": "Original"},
            files={"torrents": (torrent.name, torrent.read_bytes())})
        if reply.strip() != b"Ok.":
            raise ClientError(f"qbittorrent torrents/add answered {reply[:200]!r}")
        wait_until(lambda: self._info() is not None, 30, "qbittorrent to load the torrent",
                   details=self.details)
        self.torrent, self.save_path, self.mode = torrent, save_path, mode

    def status(self) -> dict:
        if self.info_hash is None:
            raise ClientError("qbittorrent: no torrent")
        t = self._info()
        if t is None:
            raise ClientError(f"qbittorrent does not list {self.info_hash}")
        return {
            "state": t["state"], "checked": t["state"] not in self.CHECKING,
            "progress": t["progress"], "verified": t["completed"], "total": t["size"],
            # the *_session counters (libtorrent's total_payload_*) come from the same status
            # snapshot as the progress; "downloaded" (all_time_download) lags by a second or so
            "downloaded": t["downloaded_session"], "uploaded": t["uploaded_session"],
            "peers": t["num_seeds"] + t["num_leechs"],
            "error": t["state"] if t["state"] in ("error", "missingFiles") else "",
            "info_hash": t["hash"],
        }

    def reannounce(self) -> None:
        if self.info_hash is not None and self.proc is not None:
            try:
                self.call("torrents/reannounce", {"hashes": self.info_hash})
            except (OSError, urllib.error.URLError):
                pass


CLIENTS = {"transmission": Transmission, "aria2": Aria2, "libtorrent": Libtorrent,
           "rtorrent": Rtorrent, "qbittorrent": QBittorrent}


# ------------------------------------------------------------------ trackers

class Tracker:
    """A tracker process on 127.0.0.1; announce URLs are HTTP (aria2 cannot use UDP
    trackers with its DHT off)."""

    name = "tracker"

    def __init__(self, workdir, *, host: str = LOOPBACK):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.log_path = self.workdir / f"{self.name}.log"
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def announce_url(self) -> str:
        return f"http://{self.host}:{self.port}/announce"

    def allow(self, info_hash_hex: str) -> None:
        """Serve this info-hash (only needed by trackers with an allow-list)."""

    def scrape(self, info_hash_hex: str) -> tuple[int, int]:
        """(seeders, leechers) the tracker knows for the info-hash; (0, 0) when unknown."""
        ih = bytes.fromhex(info_hash_hex)
        url = f"http://{self.host}:{self.port}/scrape?info_hash=" + urllib.parse.quote_from_bytes(ih)
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                data = bencode.decode(resp.read())
        except (OSError, urllib.error.URLError, ValueError):
            return 0, 0
        stats = data.get(b"files", {}).get(ih)
        if not stats:
            return 0, 0
        return stats.get(b"complete", 0), stats.get(b"incomplete", 0)

    def wait_peers(self, info_hash_hex: str, *, seeders: int = 0, leechers: int = 0,
                   timeout: float = 60) -> None:
        def enough():
            self._check_alive()
            s, l = self.scrape(info_hash_hex)
            return s >= seeders and l >= leechers
        wait_until(enough, timeout, f"the tracker to list {seeders} seeder(s) and {leechers} "
                   f"leecher(s) of {info_hash_hex}", details=lambda: tail(self.log_path))

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ClientError(f"{self.name} exited with code {self.proc.returncode}\n{tail(self.log_path)}")

    def stop(self) -> None:
        kill_group(self.proc)
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class EmbeddedTracker(Tracker):
    """`gitp2p tracker --host 127.0.0.1 --port 0 --interval 5` (this project's own)."""

    name = "gitp2p-tracker"

    def start(self) -> "EmbeddedTracker":
        self.proc = _start([sys.executable, "-m", "gitfs_p2p.cli", "tracker", "--host", self.host,
                            "--port", "0", "--interval", "5"], self.log_path, cwd=self.workdir)

        def listening():
            self._check_alive()
            for line in tail(self.log_path, 50).splitlines():
                if "listening on http://" in line:
                    return int(line.split("listening on http://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
            return None
        self.port = wait_until(listening, 30, "gitp2p tracker to listen",
                               details=lambda: tail(self.log_path))
        return self


class OpenTracker(Tracker):
    """Debian's opentracker: built with an allow-list (whitelist) of info-hashes.

    `opentracker -i 127.0.0.1 -p PORT -P PORT -d DIR -w whitelist.txt`: it chroots into DIR
    and drops to user nobody when started as root (so DIR and the list must be readable by
    nobody), reads the list relative to DIR, and reloads it on SIGHUP."""

    name = "opentracker"

    def __init__(self, workdir, **kw):
        super().__init__(workdir, **kw)
        self.root = Path(tempfile.mkdtemp(prefix="opentracker-", dir=self.workdir))
        os.chmod(self.root, 0o755)
        self.whitelist = self.root / "whitelist.txt"
        self.allowed: list[str] = []
        self._write_list()

    def _write_list(self) -> None:
        tmp = self.root / "whitelist.tmp"
        tmp.write_text("".join(f"{ih}\n" for ih in self.allowed))
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.whitelist)

    def start(self) -> "OpenTracker":
        self.port = free_port()
        self.proc = _start(["opentracker", "-i", self.host, "-p", str(self.port), "-P", str(self.port),
                            "-d", str(self.root), "-w", "whitelist.txt"], self.log_path, cwd=self.root)

        def answers():
            self._check_alive()
            try:
                with urllib.request.urlopen(f"http://{self.host}:{self.port}/scrape", timeout=2):
                    return True
            except urllib.error.HTTPError:
                return True
            except (OSError, urllib.error.URLError):
                return False
        wait_until(answers, 30, "opentracker to answer", details=lambda: tail(self.log_path))
        return self

    def allow(self, info_hash_hex: str) -> None:
        if info_hash_hex in self.allowed:
            return
        self.allowed.append(info_hash_hex)
        self._write_list()
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGHUP)

            # the list is reloaded by a worker thread: wait until an announce is accepted
            def accepted():
                self._check_alive()
                return self._announce_ok(info_hash_hex)
            wait_until(accepted, 20, f"opentracker to reload its allow-list with {info_hash_hex}",
                       details=lambda: tail(self.log_path))

    def _announce_ok(self, info_hash_hex: str) -> bool:
        # A scrape of an unknown hash says nothing; a "stopped" announce of a made-up peer
        # is refused only when the hash is not on the list, and leaves no peer behind.
        q = urllib.parse.urlencode({"peer_id": "-GP0001-allowlistchk", "port": 1, "uploaded": 0,
                                    "downloaded": 0, "left": 0, "event": "stopped", "compact": 1})
        url = (f"http://{self.host}:{self.port}/announce?info_hash="
               + urllib.parse.quote_from_bytes(bytes.fromhex(info_hash_hex)) + "&" + q)
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return b"failure reason" not in resp.read()
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.root, ignore_errors=True)


TRACKERS = {"embedded": EmbeddedTracker, "opentracker": OpenTracker}
