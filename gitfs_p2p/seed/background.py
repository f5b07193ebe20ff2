"""`gitp2p seed --daemon`: run the seed in a forked, detached process.

The child reports over a pipe: the lines it says before it is ready (the magnet links),
then `ok PID`, or the one-line error that stopped it; the caller prints them and exits
only then, so `gitp2p seed --daemon` fails or succeeds like the foreground command.
After that the child's output goes to its log.  The same shape as mount/daemon.py's
serve_background, for a seed instead of a mount.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable

from ..errors import GitfsError, MountError

__all__ = ["run_in_background"]

log = logging.getLogger("gitp2p")

#: work(say, ready) -> exit status: say(line) reports, ready() says the seed is up.
Work = Callable[[Callable[[str], None], Callable[[], None]], int]


class _ChildError(GitfsError):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.exit_status = status


def run_in_background(work: Work, *, log_path: str, pid_file: str | None = None) -> tuple[int, list[str]]:
    """Fork a process that runs work; (its pid, the lines it said) once it is ready.
    Its GitfsError comes back as one (same message and exit status)."""
    try:
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as exc:
        raise MountError(f"{log_path}: cannot write the log ({exc.strerror})") from None
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the seeding process
        os.close(read_end)
        code = 1
        try:
            code = _child(work, log_fd, pid_file, write_end)
        except BaseException:  # noqa: BLE001 - the process ends here either way
            _send(write_end, "bug")
            log.exception("seed process failed")
        finally:
            logging.shutdown()
            os._exit(code)
    os.close(write_end)
    os.close(log_fd)
    with os.fdopen(read_end, "rb") as answers:
        lines = [line.decode("utf-8", errors="replace").rstrip("\n") for line in answers]
    said = [line[4:] for line in lines if line.startswith("say ")]
    for line in lines:
        if line.startswith("ok "):
            return int(line[3:]), said
        if line.startswith("error "):
            status, _, message = line[6:].partition(" ")
            os.waitpid(pid, 0)
            raise _ChildError(message, int(status))
    _, status = os.waitpid(pid, 0)
    raise RuntimeError(f"the seed process ended before it was ready (status {status}); see {log_path}")


def _send(fd: int, text: str) -> None:
    try:
        os.write(fd, text.replace("\n", " ").encode("utf-8", errors="replace") + b"\n")
    except OSError:
        pass


def _child(work: Work, log_fd: int, pid_file: str | None, pipe: int) -> int:
    os.setsid()  # no terminal: Ctrl-C in the caller's shell does not reach us
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    os.dup2(log_fd, 2)  # the caller's stderr must not stay open (it would wait for its end)
    os.close(log_fd)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter(f"%(asctime)s gitp2p[{os.getpid()}]: %(message)s"))
    logging.getLogger("gitfs_p2p").setLevel(logging.INFO)
    log.setLevel(logging.INFO)
    state = {"ready": False}

    def say(line: str) -> None:
        if state["ready"]:
            log.info("%s", line)
        else:
            for part in line.splitlines():
                _send(pipe, "say " + part)

    def ready() -> None:
        if pid_file:
            with open(pid_file, "w") as fh:
                fh.write(f"{os.getpid()}\n")
        _send(pipe, f"ok {os.getpid()}")
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, pipe)  # the caller sees the end of the pipe; later writes go nowhere
        os.close(quiet)
        state["ready"] = True

    try:
        return work(say, ready)
    except GitfsError as exc:
        if state["ready"]:
            log.error("error: %s", exc)
        else:
            _send(pipe, f"error {exc.exit_status} {exc}")
        return exc.exit_status
    finally:
        if pid_file and state["ready"]:
            try:
                os.unlink(pid_file)
            except OSError:
                pass
