"""Generate a realistic, reproducible git history with `git fast-import`.

Edits, additions, deletions, renames (some with edits), copies, side
branches merged back, a few binary files, annotated tags every 500 commits.
The same (commits, seed) always gives the same commit ids.

    scripts/gen_history.py DEST --commits 5000 [--seed 1] [--bare]   (the command line)
    generate(dest, commits, seed=1, bare=False)                      (tests, benchmarks)
"""

from __future__ import annotations

import os
import random
import subprocess

__all__ = ["generate"]

WORDS = (
    "self return import def class if else for while in not and or None True False yield "
    "async await with as try except finally raise lambda pass break continue global "
    "pack commit tree blob peer seed torrent piece tracker mount watcher ref head tag "
    "object delta base offset size length index path name value key data buffer error"
).split()
EPOCH = 1_600_000_000


class _History:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.files: dict[str, bytes] = {}
        self.dirs = ["src", "src/core", "src/net", "lib", "docs", "tests", "tools", "src/core/impl"]
        self.counter = 0

    def line(self) -> str:
        r = self.rng
        indent = "    " * r.randrange(4)
        return indent + " ".join(r.choice(WORDS) for _ in range(r.randrange(2, 12))) + "\n"

    def text(self, lines: int) -> bytes:
        return "".join(self.line() for _ in range(lines)).encode()

    def binary(self, size: int) -> bytes:
        return self.rng.randbytes(size)

    def new_path(self, ext: str) -> str:
        self.counter += 1
        return f"{self.rng.choice(self.dirs)}/file{self.counter}{ext}"

    def edit_text(self, data: bytes) -> bytes:
        r = self.rng
        lines = data.decode().splitlines(keepends=True) or [self.line()]
        for _ in range(r.randrange(1, 6)):
            op = r.random()
            at = r.randrange(len(lines) + 1)
            if op < 0.45 and at < len(lines):
                lines[at] = self.line()
            elif op < 0.85:
                lines[at:at] = [self.line() for _ in range(r.randrange(1, 8))]
            elif len(lines) > 5:
                del lines[at : at + r.randrange(1, 4)]
        return "".join(lines).encode()

    def edit_binary(self, data: bytes) -> bytes:
        r = self.rng
        b = bytearray(data)
        at = r.randrange(len(b))
        b[at : at + 64] = r.randbytes(64)
        return bytes(b)


def _data(out, payload: bytes) -> None:
    out.write(b"data %d\n" % len(payload))
    out.write(payload)
    out.write(b"\n")


def _commit_header(out, ref: str, mark: int, when: int, message: str) -> None:
    out.write(f"commit {ref}\nmark :{mark}\n".encode())
    out.write(f"author Dev Eloper <dev@example.invalid> {when} +0000\n".encode())
    out.write(f"committer Dev Eloper <dev@example.invalid> {when} +0000\n".encode())
    _data(out, message.encode())


def _change(h: _History, files: dict[str, bytes], out, binaries: set[str]) -> None:
    """One commit's worth of changes, applied to files and written as M/D/R lines."""
    r = h.rng
    roll = r.random()
    if roll < 0.62 or len(files) < 10:
        for path in r.sample(sorted(files), min(len(files), r.randrange(1, 4))) if files else []:
            files[path] = h.edit_binary(files[path]) if path in binaries else h.edit_text(files[path])
            _modify(out, path, files[path])
        if len(files) < 10 or roll < 0.12:
            path = h.new_path(r.choice([".py", ".c", ".txt", ".md"]))
            files[path] = h.text(r.randrange(10, 250))
            _modify(out, path, files[path])
    elif roll < 0.72:
        old = r.choice(sorted(p for p in files if p not in binaries))
        new = h.new_path(os.path.splitext(old)[1])
        out.write(f"R {old} {new}\n".encode())
        files[new] = files.pop(old)
        if r.random() < 0.5:
            files[new] = h.edit_text(files[new])
            _modify(out, new, files[new])
    elif roll < 0.78:
        victim = r.choice(sorted(p for p in files if p not in binaries))
        out.write(f"D {victim}\n".encode())
        del files[victim]
    elif roll < 0.83:
        src = r.choice(sorted(p for p in files if p not in binaries))
        dst = h.new_path(os.path.splitext(src)[1])
        files[dst] = files[src]
        _modify(out, dst, files[dst])
    elif roll < 0.86:
        path = h.new_path(".bin")
        binaries.add(path)
        files[path] = h.binary(r.randrange(2000, 60000))
        _modify(out, path, files[path])
    else:
        for path in r.sample(sorted(files), min(len(files), r.randrange(3, 9))):
            files[path] = h.edit_binary(files[path]) if path in binaries else h.edit_text(files[path])
            _modify(out, path, files[path])


def _modify(out, path: str, data: bytes) -> None:
    out.write(f"M 100644 inline {path}\n".encode())
    _data(out, data)


def generate(dest: str, commits: int, *, seed: int = 1, bare: bool = False) -> None:
    """Create a repository at dest holding `commits` commits."""
    subprocess.run(["git", "init", "-q", *(["--bare"] if bare else []), "-b", "main", dest], check=True)
    h = _History(seed)
    proc = subprocess.Popen(
        ["git", "fast-import", "--quiet", "--done"],
        cwd=dest,
        stdin=subprocess.PIPE,
    )
    out = proc.stdin
    binaries: set[str] = set()
    mark = 0
    main_tip = 0
    branch: tuple[int, dict[str, bytes], int, str] | None = None  # tip mark, files, commits left, name
    made = 0
    while made < commits:
        mark += 1
        when = EPOCH + 600 * mark
        if branch is None and made > 20 and h.rng.random() < 0.04:
            name = f"refs/heads/feature-{mark}"
            out.write(f"reset {name}\nfrom :{main_tip}\n\n".encode())
            branch = (main_tip, dict(h.files), h.rng.randrange(2, 12), name)
        if branch is not None and h.rng.random() < 0.4:
            tip, files, left, name = branch
            _commit_header(out, name, mark, when, f"feature work {mark}\n")
            out.write(f"from :{tip}\n".encode())
            _change(h, files, out, binaries)
            out.write(b"\n")
            left -= 1
            branch = (mark, files, left, name)
            made += 1
            if left <= 0 and made < commits:
                # Merge: take the branch's version of every file it changed or added.
                mark += 1
                base = h.files
                _commit_header(out, "refs/heads/main", mark, when + 1, f"Merge {name}\n")
                out.write(f"from :{main_tip}\nmerge :{branch[0]}\n".encode())
                for path in sorted(files):
                    if base.get(path) != files[path]:
                        base[path] = files[path]
                        _modify(out, path, files[path])
                out.write(b"\n")
                main_tip = mark
                branch = None
                made += 1
            continue
        _commit_header(out, "refs/heads/main", mark, when, f"change {mark}\n")
        if main_tip:
            out.write(f"from :{main_tip}\n".encode())
        _change(h, h.files, out, binaries)
        out.write(b"\n")
        main_tip = mark
        made += 1
        if made % 500 == 0:
            out.write(f"tag v{made // 500}.0\nfrom :{main_tip}\n".encode())
            out.write(f"tagger Dev Eloper <dev@example.invalid> {when} +0000\n".encode())
            _data(out, f"release {made // 500}\n".encode())
    out.write(b"done\n")
    out.close()
    if proc.wait() != 0:
        raise RuntimeError("git fast-import failed")
    if not bare:
        subprocess.run(["git", "-C", dest, "checkout", "-q", "-f", "main"], check=True)
