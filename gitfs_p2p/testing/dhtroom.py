"""A room's own DHT on 127.0.0.1 for tests: a process running a few engine sessions (DHT on,
no torrents) that bootstrap each other and stay, so that DHT items and announces of the
peers that come and go have nodes to live on (docs/remote-helper.md: a DHT room needs
three nodes that stay).

    python -m gitfs_p2p.testing.dhtroom PORT PORT PORT...   (prints "ready", runs until SIGTERM)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .procs import LOOPBACK, Background, ClientError, free_port, kill_group, tail, wait_until

__all__ = ["DhtRoom"]


class DhtRoom(Background):
    """`with DhtRoom(workdir, 4) as room:` then give peers `room.nodes` ("127.0.0.1:PORT")."""

    def __init__(self, workdir, count: int = 4):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ports = [free_port() for _ in range(count)]
        self.log = self.workdir / "dhtroom.log"
        self.proc: subprocess.Popen | None = None

    @property
    def nodes(self) -> list[str]:
        return [f"{LOOPBACK}:{port}" for port in self.ports]

    def start(self) -> "DhtRoom":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "gitfs_p2p.testing.dhtroom", *map(str, self.ports)],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        wait_until(self._ready, 60, "the DHT room's nodes to start", details=lambda: tail(self.log))
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise ClientError(f"the DHT room exited with code {self.proc.returncode}\n{tail(self.log)}")
        return "ready" in self.log.read_text(errors="replace").split()

    def stop(self) -> None:
        kill_group(self.proc)
        self.proc = None


def _main(ports: list[int]) -> None:
    import trio

    from torrentcore.session import Engine, EngineConfig

    async def room() -> None:
        async with trio.open_nursery() as nursery:
            for port in ports:
                others = tuple(f"{LOOPBACK}:{p}" for p in ports if p != port)
                config = EngineConfig(listen=(f"{LOOPBACK}:{port}",), dht=True, dht_nodes=others, utp=False,
                                      loopback=True, extra={"max_retry_port_bind": 0})
                await nursery.start(Engine(config).run)
            print("ready", flush=True)

    trio.run(room)


if __name__ == "__main__":  # pragma: no cover
    _main([int(p) for p in sys.argv[1:]])
