"""aria2c, driven over its JSON-RPC interface."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from torrentcore.metainfo import parse_torrent

from ..procs import ClientError, LOOPBACK, free_port, post_json, start, tail, wait_until
from .base import Client


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
        self.proc = start([
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
            reply = post_json(self.rpc_url, {"jsonrpc": "2.0", "id": "gitp2p", "method": method,
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
