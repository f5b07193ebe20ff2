"""What the commands share: options, progress on stderr, output files, opening a repository."""

from __future__ import annotations

import argparse
import os
import stat
import sys
import tempfile
import time

from ..errors import GitfsError

__all__ = ["progress_printer", "open_source", "write_output", "parse_size", "cache_option"]


def progress_printer(what: str):
    """progress(done, total) on stderr: quiet for short jobs, then a line now and then
    (in place on a terminal, one line every 5 s in a log)."""
    tty = sys.stderr.isatty()
    state = {"start": time.monotonic(), "last": 0.0, "shown": False}

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done == 0:
            state.update(start=now, last=0.0, shown=False)
            return
        if not state["shown"] and now - state["start"] < 1.5:
            return
        if done < total and now - state["last"] < (0.2 if tty else 5.0):
            return
        state["shown"] = True
        state["last"] = now
        end = "\n" if (done >= total or not tty) else ""
        sys.stderr.write(f"\rgitp2p: {what}: {done}/{total}{end}")
        sys.stderr.flush()

    return progress


def open_source(path: str, cache_bytes: int):
    """A PackSource over the repository at path, after the format's self-check."""
    from ..git.repo import GitRepo
    from ..git.vectors import selfcheck
    from ..store.source import PackSource

    selfcheck()
    return PackSource(GitRepo(path), cache_bytes=cache_bytes)


def write_output(dest: str, data: bytes) -> None:
    """Write an output file the user named with -o.

    A regular file (or a new name) is replaced atomically: a temporary file beside it,
    then a rename, so a reader never sees half of it.  Anything else that is not a
    directory (a character device such as /dev/null, a FIFO, a socket) is written
    into, never replaced; a symbolic link is followed.
    """
    target = os.path.realpath(dest) if os.path.islink(dest) else dest
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise GitfsError(f"{dest}: cannot write ({exc.strerror})") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise GitfsError(f"{dest}: is a directory")
    if st is not None and not stat.S_ISREG(st.st_mode):
        try:
            with open(target, "wb") as fh:
                fh.write(data)
        except OSError as exc:
            raise GitfsError(f"{dest}: cannot write ({exc.strerror})") from None
        return
    directory = os.path.dirname(os.path.abspath(target))
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".gitp2p-", suffix=".tmp")
    except OSError as exc:
        raise GitfsError(f"{dest}: cannot write ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        os.unlink(tmp)
        raise GitfsError(f"{dest}: cannot write ({exc.strerror})") from None


def parse_size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().rstrip("ib")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 256M)") from None


def human_size(n: float) -> str:
    """A byte count for people: `512 bytes`, `10.8 MiB`."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def at_least(convert, minimum, noun: str):
    """An argparse type: convert(text), refused with a clear message below minimum."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: must be at least {minimum}")
        return value

    return parse


def jobs_option() -> argparse.ArgumentParser:
    """The --jobs option of the commands that build many packs."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "-j",
        "--jobs",
        type=at_least(int, 1, "a whole number"),
        default=os.cpu_count() or 1,
        metavar="N",
        help="build packs in N processes at once (default: one per core, here %(default)s); "
        "-j 1 builds in this process",
    )
    return parent


def cache_option() -> argparse.ArgumentParser:
    """The --cache-bytes option every command that builds packs takes."""
    from ..store.cache import DEFAULT_CACHE_BYTES  # (sqlite3, the pack modules): not for `gitp2p watch`

    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--cache-bytes",
        type=parse_size,
        default=DEFAULT_CACHE_BYTES,
        metavar="SIZE",
        help="keep at most SIZE bytes of built packs in REPO's git dir (gitp2p/cache.sqlite3); "
        "sizes are always kept (default: 256M)",
    )
    return parent
