"""transmission-daemon, driven by transmission-remote."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

from torrentcore.metainfo import build_info, build_torrent

from ..procs import ClientError, LOOPBACK, free_port, post_json, start
from .base import Client


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
        self._pulse_id: int | None = None
        self._last_pulse = 0.0

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
        self.proc = start(["transmission-daemon", "--foreground", "--config-dir",
                            str(self.config_dir), "--log-info"], self.log_path, cwd=self.config_dir)
        self._wait_answering(lambda: self.rpc("session-get"), "transmission-daemon's RPC to answer")

    def rpc(self, method: str, **arguments) -> dict:
        for _ in range(3):
            try:
                reply = post_json(self.rpc_url, {"method": method, "arguments": arguments},
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

    #: seconds between two rechoke pulses forced by rechoke_now()
    PULSE_SPACING = 0.5

    def rechoke_now(self) -> None:
        """libtransmission 3.00 decides whom it unchokes (as a seed) and which peers it tells
        it is interested (as a downloader) only in its rechoke pulse, every 10 s
        (peer-mgr.c: RECHOKE_PERIOD_MSEC, rechokePulse), so a transfer with a peer that has
        just connected starts up to 10 s late, on each side where transmission is. Starting
        any torrent of the session runs that pulse at once for every torrent
        (tr_peerMgrStartTorrent -> rechokePulse): when a connected peer waits on one of those
        two decisions, start and stop an idle torrent of this daemon's own (one byte, no
        tracker, no peers; it never holds data), so the decision is taken now."""
        torrent_id, proc = self.torrent_id, self.proc  # (also called from a rechoking() thread)
        if torrent_id is None or proc is None or proc.poll() is not None:
            return
        if time.monotonic() - self._last_pulse < self.PULSE_SPACING:
            return
        try:
            t = self.rpc("torrent-get", ids=[torrent_id], fields=["percentDone", "peers"])["torrents"][0]
        except (OSError, urllib.error.URLError, ValueError, ClientError, IndexError):
            return
        complete = t["percentDone"] >= 1.0
        waiting = [p for p in t["peers"]
                   if (p["peerIsInterested"] and p["peerIsChoked"])
                   or (not complete and p["progress"] > 0 and not p["clientIsInterested"])]
        if not waiting:
            return
        if self._pulse_id is None:
            pulse_dir = self.config_dir / "rechoke-pulse"
            pulse_dir.mkdir(exist_ok=True)
            torrent = pulse_dir / "rechoke-pulse.torrent"
            torrent.write_bytes(build_torrent(build_info([(("rechoke-pulse",), 1)], [b"\0"], "rechoke-pulse")))
            added = self.rpc("torrent-add", filename=str(torrent), paused=True,
                             **{"download-dir": str(pulse_dir)})
            self._pulse_id = (added.get("torrent-added") or added.get("torrent-duplicate"))["id"]
        self.rpc("torrent-start-now", ids=[self._pulse_id])
        self.rpc("torrent-stop", ids=[self._pulse_id])
        self._last_pulse = time.monotonic()

    def stop(self) -> None:
        super().stop()
        self._pulse_id = None

    def last_announce(self) -> tuple[int, int] | None:
        if self.torrent_id is None:
            return None
        t = self.rpc("torrent-get", ids=[self.torrent_id], fields=["trackerStats"])["torrents"][0]
        done = [(s["lastAnnounceTime"], s["lastAnnouncePeerCount"]) for s in t["trackerStats"]
                if s["hasAnnounced"] and s["lastAnnounceSucceeded"]]
        return max(done) if done else None
