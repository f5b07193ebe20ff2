"""A throw-away GNUPGHOME for tests and benchmarks, whose gpg-agent is a child of this process.

gpg starts its agent as a daemon that outlives whoever asked (and `gpgconf --kill` leaves it
a zombie of init in a container); here the agent is `gpg-agent --supervised` on a socket
bound by us (systemd's socket passing: the socket as fd 3, LISTEN_PID this pid), ended by
close(), and gpg.conf says no-autostart, so a missing agent is an error, never a daemon.
Keys are made without passphrase."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

__all__ = ["GpgHome"]

_SUPERVISED = """import os, sys
os.dup2(int(sys.argv[1]), 3)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1", LISTEN_FDNAMES="std")
os.execvp("gpg-agent", ["gpg-agent", "--homedir", sys.argv[2], "--supervised"])
"""


class GpgHome:
    """`home = GpgHome(path)` ... `home.close()`; give gpg `GNUPGHOME=home.path`."""

    def __init__(self, path: Path):
        path = Path(path)
        path.mkdir(mode=0o700)
        self.path = path
        (path / "gpg.conf").write_text("no-autostart\n")
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.bind(str(path / "S.gpg-agent"))
            sock.listen(16)
            with open(path / "agent.log", "wb") as log:
                self.agent = subprocess.Popen([sys.executable, "-c", _SUPERVISED, str(sock.fileno()), str(path)],
                                              pass_fds=(sock.fileno(),), stdin=subprocess.DEVNULL,
                                              stdout=subprocess.DEVNULL, stderr=log)
        finally:
            sock.close()

    def gpg(self, *args: str, input: bytes | None = None) -> bytes:
        proc = subprocess.run(["gpg", "--homedir", str(self.path), "--batch", *args], input=input,
                              capture_output=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"gpg {' '.join(args)}: {proc.stderr.decode(errors='replace').strip()}")
        return proc.stdout

    def make_key(self, uid: str) -> str:
        """A new ed25519 signing key; its fingerprint."""
        self.gpg("--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
        return self.fingerprint(uid)

    def fingerprint(self, uid: str) -> str:
        lines = self.gpg("--with-colons", "--list-keys", uid).decode().splitlines()
        return next(line.split(":")[9] for line in lines if line.startswith("fpr:"))

    def export(self, uid: str) -> bytes:
        return self.gpg("--export", uid)

    def close(self) -> None:
        self.agent.terminate()
        try:
            self.agent.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.agent.kill()
            self.agent.wait(timeout=20)

    def __enter__(self) -> "GpgHome":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
