"""qbittorrent-nox, driven over its Web API."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request

from ..procs import ClientError, LOOPBACK, free_port, start, torrent_info_hash, wait_until
from .base import Client


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
        self.proc = start(["qbittorrent-nox", f"--profile={self.config_dir}"], self.log_path,
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
