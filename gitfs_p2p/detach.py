"""Run work in a forked, detached process and hear whether it started: the one
implementation behind `gitp2p mount` (in the background) and `gitp2p seed --daemon`.

Why this shape: a command that puts a server in the background must still fail or
succeed like its foreground form, so the caller does not return when it forks but when
the child says how it went.  The child reports over a pipe, one line a message:

    say TEXT          a line for the caller to print (before ready; after, it goes to the log)
    ok PID            ready: the caller returns PID; the child closes the pipe
    error STATUS TEXT a GitfsError stopped it before ready (its message and exit status)
    bug               anything else stopped it; the traceback went to its stderr

TEXT has backslashes and newlines escaped, so a message arrives as it was said.  The
caller reads until the pipe's end (the child closes it once ready, or exits); no answer
means the child died (a signal, os._exit) before it was ready.  Both commands used to
carry their own copy of this, and the copies drifted; the differences that are the
commands' own (the wording of their errors, where stderr goes until ready, a mount's
chdir) are left to their callers: mount/daemon.py and seed/background.py.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Callable

from .errors import GitfsError, MountError

__all__ = ["run_detached", "ChildError", "ChildEnded", "Work"]

log = logging.getLogger("gitp2p")

#: work(say, ready) -> exit status.  say(line) reports a line; ready(note=None) says the
#: service is up (note, if given, is logged before the caller hears so).
Work = Callable[[Callable[[str], None], Callable[..., None]], int]


class ChildError(GitfsError):
    """The child's GitfsError before it was ready: its message and exit status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.exit_status = status


class ChildEnded(Exception):
    """The child ended before it was ready without a GitfsError: `bug` (an exception, its
    traceback on the child's stderr) or no answer at all; `status` is os.waitpid's."""

    def __init__(self, *, bug: bool, status: int):
        super().__init__(f"the child ended before it was ready (status {status})")
        self.bug = bug
        self.status = status

    @property
    def how(self) -> str:
        """'signal N' or 'status N', for a message."""
        if os.WIFSIGNALED(self.status):
            return f"signal {os.WTERMSIG(self.status)}"
        return f"status {os.waitstatus_to_exitcode(self.status)}"


def run_detached(work: Work, *, log_path: str, pid_file: str | None = None, name: str = "background",
                 stderr_until_ready: str = "log") -> tuple[int, list[str]]:
    """Fork a detached process that runs work; (its pid, the lines it said) once it is ready.

    The child has its own session (Ctrl-C in the caller's shell does not reach it),
    /dev/null as stdin and stdout, and log records that name its pid.  Its stderr is the
    log at log_path from the start (stderr_until_ready="log": the caller's stderr must
    not stay open, or whoever reads it would wait as long as the child runs), or the
    caller's until ready ("caller": what the child's libraries print while starting
    reaches the user); the gitfs_p2p and gitp2p loggers say INFO from when it is the log.
    pid_file, if given, is written on ready and removed when work ends.

    A GitfsError before ready comes back as ChildError; any other end before ready as
    ChildEnded (the child reaped in both cases).  Ctrl-C while waiting stops the child
    (SIGTERM) and goes on as KeyboardInterrupt.  An unwritable log is a MountError.
    """
    if stderr_until_ready not in ("log", "caller"):
        raise ValueError(f"stderr_until_ready: 'log' or 'caller', not {stderr_until_ready!r}")
    try:
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as exc:
        raise MountError(f"{log_path}: cannot write the log ({exc.strerror})") from None
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the detached process
        os.close(read_end)
        pipe = _Pipe(write_end)
        code = 1
        try:
            code = _child(work, log_fd, stderr_until_ready == "caller", pid_file, pipe)
        except BaseException:  # noqa: BLE001 - the process ends here either way
            pipe.send("bug")
            log.exception("%s process failed", name)
        finally:
            logging.shutdown()
            os._exit(code)
    os.close(write_end)
    os.close(log_fd)
    try:
        with os.fdopen(read_end, "rb") as answers:
            lines = [line.decode("utf-8", errors="replace").rstrip("\n") for line in answers]
        said = [_unescape(line[4:]) for line in lines if line.startswith("say ")]
        for line in lines:
            if line.startswith("ok "):
                return int(line[3:]), said
            if line.startswith("error "):
                status, _, message = line[6:].partition(" ")
                os.waitpid(pid, 0)
                raise ChildError(_unescape(message), int(status))
        _, status = os.waitpid(pid, 0)
    except KeyboardInterrupt:
        os.kill(pid, signal.SIGTERM)  # the process we started and no longer wait for
        raise
    raise ChildEnded(bug="bug" in lines, status=status)


class _Pipe:
    """The child's end of the report pipe; closed once ready, after which sends are dropped
    (its descriptor number may belong to another file by then)."""

    def __init__(self, fd: int):
        self.fd: int | None = fd

    def send(self, *words: str) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, " ".join(words).encode("utf-8", errors="replace") + b"\n")
        except OSError:
            pass

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # the caller sees the pipe's end
            self.fd = None


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append("\n" if text[i + 1] == "n" else text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _child(work: Work, log_fd: int, keep_stderr: bool, pid_file: str | None, pipe: _Pipe) -> int:
    os.setsid()  # no terminal: Ctrl-C in the caller's shell does not reach us
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter(f"%(asctime)s gitp2p[{os.getpid()}]: %(message)s"))
    state = {"ready": False, "log_fd": log_fd}

    def stderr_to_log() -> None:
        if state["log_fd"] is not None:
            os.dup2(state["log_fd"], 2)
            os.close(state["log_fd"])
            state["log_fd"] = None
            logging.getLogger("gitfs_p2p").setLevel(logging.INFO)  # the log gets the details
            log.setLevel(logging.INFO)

    if not keep_stderr:
        stderr_to_log()

    def say(line: str) -> None:
        if state["ready"]:
            log.info("%s", line)
        else:
            for part in line.splitlines():
                pipe.send("say", _escape(part))

    def ready(note: str | None = None) -> None:
        stderr_to_log()
        if pid_file:
            with open(pid_file, "w") as fh:
                fh.write(f"{os.getpid()}\n")
        state["ready"] = True
        if note is not None:
            log.info("%s", note)
        pipe.send("ok", str(os.getpid()))
        pipe.close()

    try:
        return work(say, ready)
    except GitfsError as exc:
        if state["ready"]:
            log.error("error: %s", exc)
        else:
            pipe.send("error", str(exc.exit_status), _escape(str(exc)))
        return exc.exit_status
    finally:
        if pid_file and state["ready"]:
            try:
                os.unlink(pid_file)
            except OSError:
                pass
