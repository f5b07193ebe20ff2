"""`gitp2p mount` and `gitp2p umount`: options, checks, running in the background, clear errors.

pyfuse3 and trio are imported only when these commands run, so the other
commands start as fast as before.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import shutil
import subprocess
import sys
import time

from ..errors import UserError

__all__ = ["register", "cmd_mount", "cmd_umount", "find_mount"]

log = logging.getLogger("gitp2p")

MOUNT_DESCRIPTION = """\
Mount REPO's commit packs read-only at MOUNTPOINT (an empty directory):

  MOUNTPOINT/packs/<commit-id>.pack   one pack per commit reachable from any ref
  MOUNTPOINT/refs/heads/..., refs/tags/..., HEAD
                                      symbolic links to the pack of their commit
  MOUNTPOINT/torrents/                room for .torrent files
  MOUNTPOINT/README                   this layout

By default the mount runs in the background and the command returns once it
is ready; --foreground stays attached and logs. Refs that move show up
within a few seconds. Unmount with `gitp2p umount MOUNTPOINT` (or Ctrl-C /
SIGTERM to a foreground mount)."""


def register(subparsers) -> None:
    from ..store.cache import DEFAULT_CACHE_BYTES
    from ..cli import _size

    p = subparsers.add_parser(
        "mount",
        help="mount a repository's commit packs read-only (FUSE)",
        description=MOUNT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("repo", metavar="REPO", help="path to a git repository (work tree or bare)")
    p.add_argument("mountpoint", metavar="MOUNTPOINT", help="an empty directory")
    p.add_argument("-f", "--foreground", action="store_true", help="stay attached, log to stderr, Ctrl-C unmounts")
    p.add_argument(
        "--cache-bytes",
        type=_size,
        default=DEFAULT_CACHE_BYTES,
        metavar="SIZE",
        help="keep at most SIZE bytes of built packs in REPO's git dir (default: 256M)",
    )
    p.add_argument(
        "--read-cache",
        type=_size,
        default=64 << 20,
        metavar="SIZE",
        help="bytes of recently read packs the mount keeps in memory (default: 64M)",
    )
    p.add_argument(
        "--allow-other",
        action="store_true",
        help="let other users (e.g. a BitTorrent daemon's user) read the mount; "
        "needs root or user_allow_other in /etc/fuse.conf",
    )
    p.add_argument(
        "--log",
        metavar="FILE",
        help="where a background mount logs (default: REPO's git dir, gitp2p/mount.log)",
    )
    p.add_argument("--pid-file", metavar="FILE", help="write the serving process's id here while mounted")
    p.add_argument(
        "--poll", type=float, default=2.0, metavar="SECONDS", help="how often to look for moved refs (default: 2)"
    )
    p.add_argument(
        "--tracker",
        metavar="URL",
        action="append",
        default=[],
        help="announce URL written into the torrents in torrents/ (repeatable)",
    )
    p.add_argument("--web-seed", metavar="URL", action="append", default=[], help="BEP 19 web seed URL (repeatable)")
    p.set_defaults(func=cmd_mount)

    p = subparsers.add_parser(
        "umount",
        help="unmount a gitp2p mount",
        description="Unmount MOUNTPOINT (with fusermount3 -u); the serving process then exits.",
    )
    p.add_argument("mountpoint", metavar="MOUNTPOINT")
    p.add_argument(
        "-z", "--lazy", action="store_true", help="detach now even if files are open (they keep working until closed)"
    )
    p.set_defaults(func=cmd_umount)


# -- checks ------------------------------------------------------------------------------------
def find_mount(path: str) -> str | None:
    """The filesystem type mounted exactly at path (e.g. fuse.gitp2p), or None."""
    target = os.path.abspath(path)
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
        point = _unescape_mountinfo(fields[4])
        if point == target:
            found = right.split()[0] if right.split() else "?"  # the last mount there wins
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


def _check_fuse() -> None:
    if not os.path.exists("/dev/fuse"):
        raise UserError(
            "no /dev/fuse: FUSE is not available here "
            "(load the fuse module, or run the container with --device /dev/fuse --cap-add SYS_ADMIN)"
        )
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        if os.geteuid() == 0 or shutil.which("fusermount3") is None:
            raise UserError("cannot open /dev/fuse (permission denied)")
    if os.geteuid() != 0 and shutil.which("fusermount3") is None:
        raise UserError("fusermount3 not found; install the fuse3 package")
    try:
        import pyfuse3  # noqa: F401
    except ImportError as exc:
        raise UserError(f"pyfuse3 is not usable ({exc}); reinstall gitfs-p2p with its dependencies") from None


def _dead_mount(mountpoint: str) -> UserError:
    return UserError(
        f"{mountpoint}: a dead mount is still there (its process exited); run `gitp2p umount {mountpoint}` first"
    )


def _check_mountpoint(mountpoint: str) -> None:
    try:
        st = os.stat(mountpoint)
    except FileNotFoundError:
        raise UserError(f"{mountpoint}: no such directory") from None
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise _dead_mount(mountpoint) from None
        raise UserError(f"{mountpoint}: {exc.strerror}") from None
    import stat

    if not stat.S_ISDIR(st.st_mode):
        raise UserError(f"{mountpoint}: not a directory")
    kind = find_mount(mountpoint)
    if kind is not None and kind.startswith("fuse"):
        try:
            os.listdir(mountpoint)
        except OSError as exc:
            if exc.errno == errno.ENOTCONN:
                raise _dead_mount(mountpoint) from None
    if kind is not None:
        what = "a gitp2p mount" if kind == "fuse.gitp2p" else f"a {kind} file system"
        raise UserError(f"{mountpoint}: already mounted ({what} is there)")
    try:
        if os.listdir(mountpoint):
            raise UserError(f"{mountpoint}: not empty (mount on an empty directory)")
    except OSError as exc:
        raise UserError(f"{mountpoint}: {exc.strerror}") from None


# -- mount -----------------------------------------------------------------------------------------
def _progress_printer(what: str):
    """progress(done, total) for size fills: quiet for short ones, then a line now and then."""
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


def _open_checked(args) -> tuple[str, str, str]:
    """(repo path, mountpoint, git dir) after every check that can fail before mounting."""
    from ..store.cache import PackCache
    from ..git.repo import GitRepo
    from ..git.vectors import selfcheck

    repo_path = os.path.abspath(args.repo)
    mountpoint = os.path.abspath(args.mountpoint)
    _check_fuse()
    with GitRepo(repo_path) as repo:
        repo.check_not_shallow()
        git_dir = os.path.abspath(repo.git_dir)
    _check_mountpoint(mountpoint)
    selfcheck()
    PackCache(git_dir, max_bytes=args.cache_bytes).close()  # unreadable or unwritable: say so now
    return repo_path, mountpoint, git_dir


def _service(args, repo_path: str, mountpoint: str, git_dir: str, log_path: str | None = None):
    """The mount service; every pack, snapshot and torrent is built by worker processes
    (store/builders.py), so the serving process never holds the repository's state."""
    from ..mount.service import MountService
    from ..mount.torrents import TorrentContributor
    from ..store.builders import Workers
    from ..store.source import PackSource

    source = PackSource(git_dir=git_dir, cache_bytes=args.cache_bytes,
                        workers=Workers(repo_path, cache_bytes=args.cache_bytes, log_path=log_path))
    torrents = TorrentContributor(source, trackers=args.tracker, web_seeds=args.web_seed)
    return MountService(
        source,
        mountpoint,
        contributors=[torrents],
        poll_interval=max(0.1, args.poll),
        read_cache_bytes=args.read_cache,
        allow_other=args.allow_other,
        progress=_progress_printer("packs sized"),
    )


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


def cmd_mount(args) -> int:
    repo_path, mountpoint, git_dir = _open_checked(args)
    if args.pid_file:
        args.pid_file = os.path.abspath(args.pid_file)
    if args.foreground:
        return _mount_foreground(args, repo_path, mountpoint, git_dir)
    log_path = os.path.abspath(args.log) if args.log else os.path.join(git_dir, "gitp2p", "mount.log")
    try:
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as exc:
        raise UserError(f"{log_path}: cannot write the log ({exc.strerror})") from None
    return _mount_background(args, repo_path, mountpoint, git_dir, log_fd, log_path)


def _mount_foreground(args, repo_path: str, mountpoint: str, git_dir: str) -> int:
    import trio

    from ..mount.service import serve_until_signal

    logging.getLogger("gitfs_p2p").setLevel(logging.INFO)
    log.setLevel(logging.INFO)
    service = _service(args, repo_path, mountpoint, git_dir)

    def on_ready() -> None:
        _write_pid_file(args.pid_file)
        log.info("mounted %s at %s (Ctrl-C unmounts)", repo_path, mountpoint)

    try:
        trio.run(serve_until_signal, service, on_ready)
    finally:
        _remove_pid_file(args.pid_file)
        service.close()
    return 0


def _mount_background(args, repo_path: str, mountpoint: str, git_dir: str, log_fd: int, log_path: str) -> int:
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the serving process
        os.close(read_end)
        code = 1
        try:
            code = _serve_in_background(args, repo_path, mountpoint, git_dir, log_fd, log_path, write_end)
        except BaseException as exc:  # noqa: BLE001 - the process ends here either way
            _send(write_end, f"error internal error: {exc!r}")
            logging.getLogger("gitp2p").exception("mount process failed")
        finally:
            logging.shutdown()
            os._exit(code)
    os.close(write_end)
    os.close(log_fd)
    try:
        answer = _read_answer(read_end)
    except KeyboardInterrupt:
        os.kill(pid, 15)  # the mount we started and no longer wait for
        raise
    if answer.startswith("ok "):
        print(f"gitp2p: mounted {repo_path} at {mountpoint} (pid {answer[3:].strip()}); "
              f"`gitp2p umount {mountpoint}` unmounts")
        return 0
    if answer.startswith("error "):
        raise UserError(answer[6:].strip())
    _, status = os.waitpid(pid, 0)
    how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"status {os.waitstatus_to_exitcode(status)}"
    raise UserError(f"the mount process ended before the mount was ready ({how})")


def _read_answer(fd: int) -> str:
    chunks = []
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode("utf-8", errors="replace")


def _send(fd: int, text: str) -> None:
    try:
        os.write(fd, text.encode("utf-8", errors="replace") + b"\n")
        os.close(fd)
    except OSError:
        pass


def _serve_in_background(args, repo_path: str, mountpoint: str, git_dir: str, log_fd: int, log_path: str,
                         ready_fd: int) -> int:
    import trio

    from ..mount.service import serve_until_signal

    os.setsid()  # no terminal: Ctrl-C in the shell that started us does not reach us
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    # stderr stays the caller's until the mount is ready, so libfuse's own
    # complaints reach the user; then it becomes the log.
    root = logging.getLogger()
    for handler in root.handlers:
        handler.setFormatter(logging.Formatter(f"%(asctime)s gitp2p[{os.getpid()}]: %(message)s"))
    ready = False

    def on_ready() -> None:
        nonlocal ready
        os.dup2(log_fd, 2)
        os.close(log_fd)
        logging.getLogger("gitfs_p2p").setLevel(logging.INFO)  # the log file gets the details
        log.setLevel(logging.INFO)
        _write_pid_file(args.pid_file)
        log.info("mounted %s at %s", repo_path, mountpoint)
        ready = True
        _send(ready_fd, f"ok {os.getpid()}")

    # The worker processes start now, with the log as their stderr: they (and
    # multiprocessing's resource tracker, started when the pool is made) must not keep
    # the caller's stderr open, or the caller would wait for its end as long as we run.
    caller_stderr = os.dup(2)
    os.dup2(log_fd, 2)
    try:
        service = _service(args, repo_path, mountpoint, git_dir, log_path)
        service.source.workers.start()
    finally:
        os.dup2(caller_stderr, 2)
        os.close(caller_stderr)
    try:
        trio.run(serve_until_signal, service, on_ready)
    except UserError as exc:
        if not ready:
            _send(ready_fd, f"error {exc}")
        else:
            log.error("error: %s", exc)
        return 1
    finally:
        _remove_pid_file(args.pid_file)
        service.close()
    log.info("unmounted %s", mountpoint)
    return 0


# -- umount ----------------------------------------------------------------------------------------
def cmd_umount(args) -> int:
    mountpoint = os.path.abspath(args.mountpoint)
    kind = find_mount(mountpoint)
    if kind is None:
        if not os.path.exists(mountpoint):
            raise UserError(f"{mountpoint}: no such directory")
        raise UserError(f"{mountpoint}: not mounted")
    if not kind.startswith("fuse"):
        raise UserError(f"{mountpoint}: not a gitp2p mount (a {kind} file system is mounted there)")
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    if tool is not None:
        cmd = [tool, "-u", *(["-z"] if args.lazy else []), mountpoint]
    elif os.geteuid() == 0 and shutil.which("umount"):
        cmd = ["umount", *(["-l"] if args.lazy else []), mountpoint]
    else:
        raise UserError("fusermount3 not found; install the fuse3 package")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        why = lines[-1] if lines else f"{os.path.basename(cmd[0])} failed"
        hint = "; files are open there: close them or use --lazy" if "busy" in why.lower() else ""
        raise UserError(f"{mountpoint}: cannot unmount ({why}){hint}")
    return 0
