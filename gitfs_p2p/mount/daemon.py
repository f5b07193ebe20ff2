"""Running a mount as a program: checks before mounting, the foreground and background
(forked, daemonised) ways to serve, pid files, and unmounting.

The command line (cli/mount.py) only turns options into a MountService factory and
calls these.  Problems the user can fix raise MountError; a bug in the background
process is reported to the caller as a RuntimeError that names the log.  The forking and
the child's report to its caller are gitfs_p2p/detach.py's, shared with `gitp2p seed
--daemon`, so that the two cannot drift; what is the mount's own stays here: its stderr
is the caller's until the mount is ready (libfuse prints there), it leaves the caller's
directory, and its errors' wording.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import logging
import os
import shutil
import stat
import subprocess
from functools import partial
from typing import TYPE_CHECKING, Callable, Iterator

from ..detach import ChildEnded, ChildError, run_detached
from ..errors import MountError

if TYPE_CHECKING:
    from .service import MountService

__all__ = [
    "find_mount",
    "check_fuse",
    "check_mountpoint",
    "serve_foreground",
    "serve_background",
    "unmount",
]

log = logging.getLogger("gitp2p")

#: make_service(log_path or None) -> MountService
ServiceFactory = Callable[[str | None], "MountService"]


# -- checks ------------------------------------------------------------------------------------
def find_mount(path: str) -> str | None:
    """The filesystem type mounted exactly at path (e.g. fuse.gitp2p), or None."""
    entry = mount_entry(path)
    return entry[1] if entry is not None else None


def kernel_path(path: str) -> str:
    """The path the kernel's mount table names for path: its directory with symlinks
    resolved (a mountpoint under a symlinked directory is listed under the real one).  The
    last component is left alone, so a hung FUSE mount there is never stat'ed."""
    target = os.path.abspath(path)
    parent, name = os.path.split(target)
    return os.path.join(os.path.realpath(parent), name) if name else target


def mount_entry(path: str) -> tuple[str, str] | None:
    """(the kernel's mount id, filesystem type) of the mount exactly at path, or None."""
    target = kernel_path(path)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    found = None
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5:
            continue
        if _unescape_mountinfo(fields[4]) == target:
            found = (fields[0], right.split()[0] if right.split() else "?")  # the last mount there wins
    return found


def _unescape_mountinfo(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 3 < len(text) and text[i + 1 : i + 4].isdigit():
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def check_fuse() -> None:
    """FUSE can be used here: /dev/fuse, fusermount3 (unless root), pyfuse3."""
    if not os.path.exists("/dev/fuse"):
        raise MountError(
            "no /dev/fuse: FUSE is not available here "
            "(load the fuse module, or run the container with --device /dev/fuse --cap-add SYS_ADMIN)"
        )
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        if os.geteuid() == 0 or shutil.which("fusermount3") is None:
            raise MountError("cannot open /dev/fuse (permission denied)")
    if os.geteuid() != 0 and shutil.which("fusermount3") is None:
        raise MountError("fusermount3 not found; install the fuse3 package")
    try:
        importlib.import_module("pyfuse3")
    except ImportError as exc:
        raise MountError(f"pyfuse3 is not usable ({exc}); reinstall gitfs-p2p with its dependencies") from None


def _dead_mount(mountpoint: str) -> MountError:
    return MountError(
        f"{mountpoint}: a dead mount is still there (its process exited); run `gitp2p umount {mountpoint}` first"
    )


def check_mountpoint(mountpoint: str) -> None:
    """mountpoint is an empty directory with nothing mounted on it."""
    try:
        st = os.stat(mountpoint)
    except FileNotFoundError:
        raise MountError(f"{mountpoint}: no such directory") from None
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise _dead_mount(mountpoint) from None
        raise MountError(f"{mountpoint}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise MountError(f"{mountpoint}: not a directory")
    kind = find_mount(mountpoint)
    if kind is not None and kind.startswith("fuse"):
        try:
            os.listdir(mountpoint)
        except OSError as exc:
            if exc.errno == errno.ENOTCONN:
                raise _dead_mount(mountpoint) from None
    if kind is not None:
        what = "a gitp2p mount" if kind == "fuse.gitp2p" else f"a {kind} file system"
        raise MountError(f"{mountpoint}: already mounted ({what} is there)")
    try:
        if os.listdir(mountpoint):
            raise MountError(f"{mountpoint}: not empty (mount on an empty directory)")
    except OSError as exc:
        raise MountError(f"{mountpoint}: {exc.strerror}") from None


# -- pid files ---------------------------------------------------------------------------------
def _write_pid_file(path: str | None) -> None:
    if path:
        with open(path, "w") as fh:
            fh.write(f"{os.getpid()}\n")


def _remove_pid_file(path: str | None) -> None:
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


# -- serving -----------------------------------------------------------------------------------
def serve_foreground(make_service: ServiceFactory, *, pid_file: str | None = None) -> None:
    """Mount and serve in this process until Ctrl-C, SIGTERM, SIGHUP or an outside unmount."""
    import trio

    from ..serving import serve_until_signal

    logging.getLogger("gitfs_p2p").setLevel(logging.INFO)
    log.setLevel(logging.INFO)
    service = make_service(None)

    def on_ready() -> None:
        _write_pid_file(pid_file)
        log.info("mounted %s at %s (Ctrl-C unmounts)", service.repo_path, service.mountpoint)

    try:
        service.start_workers()  # all of them now: the others get ready while one reads the snapshot
        trio.run(partial(serve_until_signal, stopping="unmounting"), service, on_ready)
    finally:
        _remove_pid_file(pid_file)
        service.close()


def serve_background(make_service: ServiceFactory, *, log_path: str, pid_file: str | None = None) -> int:
    """Fork a serving process and return its pid once the mount is ready.

    Until then the process's stderr is the caller's (libfuse's own complaints reach the
    user); after, it is the log at log_path.  A problem the user can fix comes back as
    a MountError with the child's message; a bug as a RuntimeError naming the log.
    Ctrl-C while waiting stops the serving process.  The forking and the reporting are
    gitfs_p2p/detach.py's (shared with `gitp2p seed --daemon`); the mount's own part is
    _serve_in_child, the work it runs there.
    """

    def work(say, ready) -> int:
        return _serve_in_child(make_service, log_path, ready)

    try:
        pid, _ = run_detached(work, log_path=log_path, pid_file=pid_file, name="mount", stderr_until_ready="caller")
    except ChildError as exc:
        raise MountError(str(exc).strip()) from None
    except ChildEnded as exc:
        if exc.bug:
            raise RuntimeError(f"the mount process failed; its traceback is in {log_path}") from None
        raise MountError(f"the mount process ended before the mount was ready ({exc.how}); see {log_path}") from None
    return pid


def _serve_in_child(make_service: ServiceFactory, log_path: str, ready: Callable[..., None]) -> int:
    """In the detached process (stderr still the caller's): start the workers, mount, call
    ready once mounted, serve until a signal or an outside unmount.  0 once unmounted; a
    GitfsError goes up to detach.py, which reports or logs it."""
    import trio

    from ..serving import serve_until_signal

    os.chdir("/")  # hold no directory of the caller's busy
    # The worker processes start now, with the log as their stderr: they (and
    # multiprocessing's resource tracker, started with the pool) must not keep the
    # caller's stderr open, or the caller would wait for its end as long as we run.
    with _stderr_to(log_path):
        service = make_service(log_path)
        service.start_workers()

    def on_ready() -> None:
        ready(f"mounted {service.repo_path} at {service.mountpoint}")

    try:
        trio.run(partial(serve_until_signal, stopping="unmounting"), service, on_ready)
    finally:
        service.close()
    log.info("unmounted %s", service.mountpoint)
    return 0


@contextlib.contextmanager
def _stderr_to(path: str) -> Iterator[None]:
    """stderr (fd 2) is the file at path (appended to) inside the block."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = os.dup(2)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# -- unmounting --------------------------------------------------------------------------------
def unmount(mountpoint: str, *, lazy: bool = False) -> None:
    """Unmount a FUSE mount at mountpoint (fusermount3 -u; umount as root without it)."""
    mountpoint = os.path.abspath(mountpoint)
    kind = find_mount(mountpoint)
    if kind is None:
        if not os.path.exists(mountpoint):
            raise MountError(f"{mountpoint}: no such directory")
        raise MountError(f"{mountpoint}: not mounted")
    if not kind.startswith("fuse"):
        raise MountError(f"{mountpoint}: not a gitp2p mount (a {kind} file system is mounted there)")
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    if tool is not None:
        cmd = [tool, "-u", *(["-z"] if lazy else []), mountpoint]
    elif os.geteuid() == 0 and shutil.which("umount"):
        cmd = ["umount", *(["-l"] if lazy else []), mountpoint]
    else:
        raise MountError("fusermount3 not found; install the fuse3 package")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        why = lines[-1] if lines else f"{os.path.basename(cmd[0])} failed"
        hint = "; files are open there: close them or use --lazy" if "busy" in why.lower() else ""
        raise MountError(f"{mountpoint}: cannot unmount ({why}){hint}")
