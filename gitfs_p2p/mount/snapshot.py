"""The mount's reads of refs and history, in a short-lived child process.

Reading refs peels every one of them and a full walk reads every commit;
through dulwich's mmap that touches large parts of the repository's pack
files.  Doing it in a child keeps the long-lived server small: it sends the
previous `RepoSnapshot` (pickled) on stdin and gets the new one back, or
`same` when no ref moved.  `refs_signature` tells, from file metadata
alone, whether a ref may have moved at all, so a quiet repository costs
a few stat calls per poll.

    python -m gitfs_p2p.mount.snapshot REPO < PICKLED-PREVIOUS-OR-EMPTY
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

from ..errors import UserError
from .layout import RepoSnapshot

__all__ = ["refs_signature", "snapshot_in_child", "main"]

_SAME = b"same"


def refs_signature(git_dir: str) -> tuple:
    """Metadata of every file that holds refs; equal signatures mean no ref moved."""
    out = []
    for name in ("HEAD", "packed-refs"):
        try:
            st = os.stat(os.path.join(git_dir, name))
            out.append((name, st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((name, None))
    for top in ("refs", "reftable"):
        stack = [os.path.join(git_dir, top)]
        for _ in range(1_000_000):
            if not stack:
                break
            path = stack.pop()
            try:
                entries = list(os.scandir(path))
            except OSError:
                continue
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        st = entry.stat(follow_symlinks=False)
                        out.append((entry.path, st.st_ino, st.st_size, st.st_mtime_ns))
                except OSError:
                    out.append((entry.path, None))
    out.sort(key=repr)
    return tuple(out)


def snapshot_in_child(repo_path: str, previous: RepoSnapshot | None) -> RepoSnapshot:
    """read_snapshot(repo, previous), run by a child process."""
    proc = subprocess.run(
        [sys.executable, "-m", "gitfs_p2p.mount.snapshot", repo_path],
        input=pickle.dumps(previous, protocol=pickle.HIGHEST_PROTOCOL) if previous is not None else b"",
        capture_output=True,
    )
    if proc.returncode != 0:
        lines = proc.stderr.decode("utf-8", errors="replace").strip().splitlines()
        raise UserError(lines[-1] if lines else f"reading the refs failed (status {proc.returncode})")
    if proc.stdout == _SAME:
        assert previous is not None
        return previous
    return pickle.loads(proc.stdout)  # our own child's answer


def main(argv: list[str] | None = None) -> int:
    from ..git.repo import GitRepo
    from .fs import read_snapshot

    argv = sys.argv[1:] if argv is None else argv
    data = sys.stdin.buffer.read()
    previous = pickle.loads(data) if data else None
    try:
        with GitRepo(argv[0]) as repo:
            snapshot = read_snapshot(repo, previous)
    except UserError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    out = _SAME if snapshot is previous else pickle.dumps(snapshot, protocol=pickle.HIGHEST_PROTOCOL)
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
