"""`gitp2p seed --daemon`: run the seed in a forked, detached process.

The child reports over a pipe: the lines it says before it is ready (the magnet links),
then that it is ready, or the one-line error that stopped it; the caller prints them and
exits only then, so `gitp2p seed --daemon` fails or succeeds like the foreground command.
The forking and the reporting are gitfs_p2p/detach.py's, shared with a background
`gitp2p mount`; what is the seed's own is here: its stderr is its log from the start
(the caller's stderr must not stay open, or a caller reading it would wait as long as the
seed runs), its errors on one line, and their wording.
"""

from __future__ import annotations

from ..detach import ChildEnded, ChildError, Work, run_detached

__all__ = ["run_in_background"]


def run_in_background(work: Work, *, log_path: str, pid_file: str | None = None) -> tuple[int, list[str]]:
    """Fork a process that runs work(say, ready); (its pid, the lines it said) once it is
    ready.  Its GitfsError comes back as one (same message, on one line, and exit status);
    any other end before ready as a RuntimeError naming the log."""
    try:
        return run_detached(work, log_path=log_path, pid_file=pid_file, name="seed", stderr_until_ready="log")
    except ChildError as exc:
        raise ChildError(str(exc).replace("\n", " "), exc.exit_status) from None
    except ChildEnded as exc:
        raise RuntimeError(f"the seed process ended before it was ready (status {exc.status}); see {log_path}") from None
