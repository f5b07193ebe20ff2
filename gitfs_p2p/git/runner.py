"""Running C git: one function for commands, one reader for objects (`git cat-file`).

Every subprocess of git the receiving side starts goes through here.  Objects are
read from long-lived `git cat-file --batch` / `--batch-check` processes (C git copes
with many packs, and finds new ones on a miss); a reader is restarted after packs
are written or merged, so no git process outlives the set of packs it started with,
and once if it dies (a second death is an error, never an object reported missing).
"""

from __future__ import annotations

import logging
import subprocess
import threading

from ..errors import GitCommandError
from ..pack.packfile import OBJ_BLOB, OBJ_COMMIT, OBJ_TAG, OBJ_TREE

__all__ = ["run_git", "ObjectReader", "TYPES", "READER_CONFIG"]

log = logging.getLogger(__name__)

#: git's type names as pack type numbers.
TYPES = {b"commit": OBJ_COMMIT, b"tree": OBJ_TREE, b"blob": OBJ_BLOB, b"tag": OBJ_TAG}
#: Ids per write to git cat-file: 41 KB, under a pipe's 64 KiB.
_ASK_CHUNK = 1000
#: Bounds on what a long-lived reader (or a repack) keeps: mapped pack windows (their pages
#: count in RSS) and cached delta bases.  git's defaults map up to 32 GiB in 1 GiB windows
#: and cache 96 MiB of bases, so on a large history the reader alone reached 171 MB.
READER_CONFIG = ("-c", "core.packedGitWindowSize=16m", "-c", "core.packedGitLimit=64m",
                 "-c", "core.deltaBaseCacheLimit=16m")


def run_git(*args: str, git_dir: str | None = None, input: bytes | None = None, check: bool = True) -> str:
    """`git [--git-dir=GIT_DIR] ARGS`; its stdout as text.  GitCommandError if it fails (with check)."""
    cmd = ["git"] + ([f"--git-dir={git_dir}"] if git_dir else []) + list(args)
    try:
        proc = subprocess.run(cmd, input=input, capture_output=True, check=False)
    except FileNotFoundError:
        raise GitCommandError("git is not installed (apt-get install git)") from None
    if check and proc.returncode != 0:
        raise GitCommandError(f"git {' '.join(args)} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode()


class ObjectReader:
    """Objects of one repository, read through `git cat-file`; thread-safe."""

    def __init__(self, git_dir: str):
        self.git_dir = git_dir
        self._lock = threading.Lock()
        self._batch: subprocess.Popen | None = None
        self._check: subprocess.Popen | None = None

    def close(self) -> None:
        """Stop the readers (the next question starts new ones, which see new packs)."""
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        for proc in (self._batch, self._check):
            if proc is not None:
                try:
                    proc.stdin.close()
                except OSError:  # it died; its pipe is broken
                    pass
                proc.wait()
        self._batch = self._check = None

    def _ask_many(self, mode: str, hex_ids: list[str]) -> tuple[subprocess.Popen, list[list[bytes]]]:
        """Send ids to the cat-file process of *mode* (started on demand); its answer lines.

        Only `--batch-check` may be given more than one id (`--batch` follows each answer
        with content that the caller reads).  At most _ASK_CHUNK ids go out at once, so what
        is written always fits the pipe and git never waits on us while we wait on it."""
        attr = "_batch" if mode == "--batch" else "_check"
        code = None
        for attempt in (1, 2):
            p = getattr(self, attr)
            if p is None:
                try:
                    p = subprocess.Popen(["git", f"--git-dir={self.git_dir}", *READER_CONFIG, "cat-file", mode],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                except FileNotFoundError:
                    raise GitCommandError("git is not installed (apt-get install git)") from None
                setattr(self, attr, p)
            answers: list[list[bytes]] = []
            try:
                for start in range(0, len(hex_ids), _ASK_CHUNK):
                    chunk = hex_ids[start : start + _ASK_CHUNK]
                    p.stdin.write("".join(h + "\n" for h in chunk).encode())
                    p.stdin.flush()
                    for _ in chunk:
                        line = p.stdout.readline()
                        if not line:
                            raise BrokenPipeError
                        answers.append(line.split())
                return p, answers
            except OSError:
                pass
            setattr(self, attr, None)
            try:
                p.stdin.close()
            except OSError:
                pass
            code = p.wait()
            log.warning("git cat-file %s exited (code %s); %s", mode, code,
                        "restarting it" if attempt == 1 else "giving up")
        raise GitCommandError(f"git cat-file {mode} in {self.git_dir} keeps exiting (code {code})")

    def read(self, oid: bytes) -> tuple[int, bytes] | None:
        """(type, content) of the object with binary id oid, or None."""
        with self._lock:
            p, answers = self._ask_many("--batch", [oid.hex()])
            fields = answers[0]
            if len(fields) != 3:
                return None
            size = int(fields[2])
            content = p.stdout.read(size)
            if len(content) != size or p.stdout.read(1) != b"\n":
                self._stop()  # it died mid-answer: the next question starts a new one
                raise GitCommandError(f"git cat-file --batch in {self.git_dir} stopped in the middle of {oid.hex()}")
            return TYPES[fields[1]], content

    def type_of(self, hex_id: str) -> int | None:
        return self.types([hex_id])[hex_id]

    def types(self, hex_ids: list[str]) -> dict[str, int | None]:
        """The type of each object (None: absent), one round trip per _ASK_CHUNK ids."""
        if not hex_ids:
            return {}
        with self._lock:
            _, answers = self._ask_many("--batch-check", hex_ids)
        return {h: (TYPES.get(f[1]) if len(f) == 3 else None) for h, f in zip(hex_ids, answers)}
