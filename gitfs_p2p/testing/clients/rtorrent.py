"""rtorrent, driven by XML-RPC over SCGI on a unix socket."""

from __future__ import annotations

import os
import socket
import xmlrpc.client

from ..procs import ClientError, start, tail, torrent_info_hash, wait_until
from .base import Client


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
        self.proc = start(["rtorrent", "-n", "-o", f"import={rc}"], self.log_path,
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
