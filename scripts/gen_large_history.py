#!/usr/bin/env python3
"""Generate a large, realistically shaped git history fast, through `git fast-import`.

    scripts/gen_large_history.py DEST [--commits 200000] [--files 2000] [--seed 1]

Shape (what `make bench-large` measures on; the same arguments always give the same
commit ids):

* a tree that starts with an initial import of about a tenth of FILES and grows to about
  FILES files, in nested directories (up to four levels) of at most 40 entries each;
* small edits: one to three files per commit (most of them from a slowly changing set
  of "hot" files, as real projects have), a few lines changed in each; now and then a
  file added, deleted, renamed or copied, and a few binary files;
* short side branches (2-12 commits) merged back into main with a merge commit, so
  that about a third of the commits are off main's first-parent chain;
* an annotated tag on main every 2,000 commits, a few unmerged topic branches left at
  the end, author time zones other than UTC.

scripts/gen_history.py (gitfs_p2p/testing/history.py) has a different purpose (every
kind of change, for the test suite); past 20,000 commits it keeps thousands of files in
eight flat directories and slows down, so it is not used here.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time

__all__ = ["generate_large"]

WORDS = (
    "self return import def class if else for while in not and or None True False yield "
    "async await with as try except finally raise lambda pass break continue global "
    "pack commit tree blob peer seed torrent piece tracker mount watcher ref head tag "
    "object delta base offset size length index path name value key data buffer error "
    "read write open close list dict map set get put add remove update count total"
).split()
DIR_WORDS = (
    "core net util io api cli ext lib test docs tools build config store cache proto "
    "codec server client auth model view http fs db log sync task queue event parse"
).split()
EXTS = (".c", ".h", ".py", ".txt", ".md", ".rs", ".go", ".sh")
EPOCH = 1_300_000_000
MAX_DIR_ENTRIES = 40
MAX_DEPTH = 4
HOT_FILES = 60
TAG_EVERY = 2000
TIMEZONES = ("+0000", "+0100", "+0200", "-0500", "-0700", "-0800", "+0530", "+0900", "+1000")
AUTHORS = tuple(f"Dev{i} Person{i} <dev{i}@example.invalid>" for i in range(40))


class _Tree:
    """The files of one line of history: path -> lines (or bytes for binaries)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.files: dict[str, list[str] | bytes] = {}
        self.paths: list[str] = []  # for O(1) random choice
        self.where: dict[str, int] = {}
        self.dirs: dict[str, int] = {}  # directory -> number of entries (files and subdirs)
        self.dir_list: list[str] = []  # the same directories, for random choice
        self.counter = 0

    def copy(self) -> "_Tree":
        t = _Tree.__new__(_Tree)
        t.rng = self.rng
        t.files = dict(self.files)  # values are never changed in place (see edited())
        t.paths, t.where, t.dirs, t.counter = list(self.paths), dict(self.where), dict(self.dirs), self.counter
        t.dir_list = list(self.dir_list)
        return t

    def put(self, path: str, data) -> None:
        if path not in self.files:
            self.where[path] = len(self.paths)
            self.paths.append(path)
            parent = path.rpartition("/")[0]
            self.dirs[parent] = self.dirs.get(parent, 0) + 1
        self.files[path] = data

    def remove(self, path: str) -> None:
        del self.files[path]
        i = self.where.pop(path)
        last = self.paths.pop()
        if last != path:
            self.paths[i] = last
            self.where[last] = i
        parent = path.rpartition("/")[0]
        self.dirs[parent] -= 1

    def random_path(self, avoid: set[str] = frozenset(), text_only: bool = False) -> str | None:
        for _ in range(20):
            p = self.paths[self.rng.randrange(len(self.paths))]
            if p not in avoid and not (text_only and isinstance(self.files[p], bytes)):
                return p
        return None

    def add_dir(self, path: str) -> None:
        if path not in self.dirs:
            self.dirs[path] = 0
            self.dir_list.append(path)
            parent = path.rpartition("/")[0]
            if parent:
                self.dirs[parent] += 1

    def new_dir(self) -> str:
        """A directory with room for one more entry (a new subdirectory when the chosen one is full)."""
        r = self.rng
        for _ in range(10):
            d = self.dir_list[r.randrange(len(self.dir_list))]
            if self.dirs[d] < MAX_DIR_ENTRIES:
                return d
            if d.count("/") + 1 < MAX_DEPTH:
                sub = f"{d}/{r.choice(DIR_WORDS)}{r.randrange(100)}"
                if sub not in self.dirs:
                    self.add_dir(sub)
                    return sub
        top = f"{r.choice(DIR_WORDS)}{r.randrange(1000)}"
        self.add_dir(top)
        return top

    def new_path(self, ext: str | None = None) -> str:
        self.counter += 1
        r = self.rng
        return f"{self.new_dir()}/{r.choice(WORDS)}_{self.counter}{ext or r.choice(EXTS)}"


class _Generator:
    def __init__(self, out, seed: int, target_files: int):
        self.out = out
        self.rng = random.Random(seed)
        self.target_files = target_files
        self.mark = 0
        self.time = EPOCH
        self.hot: list[str] = []

    # -- content -----------------------------------------------------------------------
    def line(self) -> str:
        r = self.rng
        return "    " * r.randrange(4) + " ".join(r.choices(WORDS, k=r.randrange(2, 12))) + "\n"

    def text(self) -> list[str]:
        return [self.line() for _ in range(int(self.rng.lognormvariate(3.8, 0.8)) + 3)]

    def edited(self, lines: list[str]) -> list[str]:
        """A few lines replaced, inserted or deleted, in a new list (trees share lists)."""
        r = self.rng
        lines = list(lines)
        for _ in range(r.randrange(1, 4)):
            at = r.randrange(len(lines) + 1)
            op = r.random()
            if op < 0.5 and at < len(lines):
                lines[at] = self.line()
            elif op < (0.8 if len(lines) < 150 else 0.62):  # sizes drift back below ~200 lines
                lines[at:at] = [self.line() for _ in range(r.randrange(1, 5))]
            elif len(lines) > 4:
                del lines[at : at + r.randrange(1, 4)]
        return lines

    # -- fast-import -------------------------------------------------------------------
    def data(self, payload: bytes) -> None:
        self.out.write(b"data %d\n" % len(payload))
        self.out.write(payload)
        self.out.write(b"\n")

    def modify(self, path: str, content) -> None:
        self.out.write(b"M 100644 inline %s\n" % path.encode())
        self.data(content if isinstance(content, bytes) else "".join(content).encode())

    def header(self, ref: str, message: str) -> int:
        r = self.rng
        self.mark += 1
        self.time += r.randrange(60, 7200)
        author = AUTHORS[r.randrange(len(AUTHORS))]
        tz = TIMEZONES[r.randrange(len(TIMEZONES))]
        w = self.out.write
        w(b"commit %s\nmark :%d\n" % (ref.encode(), self.mark))
        w(f"author {author} {self.time - r.randrange(0, 86400)} {tz}\n".encode())
        w(f"committer {AUTHORS[0]} {self.time} +0000\n".encode())
        self.data(message.encode())
        return self.mark

    # -- changes -----------------------------------------------------------------------
    def pick(self, tree: _Tree, avoid: set[str]) -> str | None:
        r = self.rng
        if self.hot and r.random() < 0.6:
            p = self.hot[r.randrange(len(self.hot))]
            if p in tree.files and p not in avoid and not isinstance(tree.files[p], bytes):
                return p
        return tree.random_path(avoid, text_only=True)

    def change(self, tree: _Tree, avoid: set[str], touched: set[str]) -> None:
        """One commit's changes to tree, written as M/D lines; touched collects the paths."""
        r = self.rng
        roll = r.random()
        grow = len(tree.files) < self.target_files
        if roll < 0.88:
            for _ in range(1 if r.random() < 0.55 else r.randrange(2, 4)):
                p = self.pick(tree, avoid)
                if p is not None:
                    tree.put(p, self.edited(tree.files[p]))
                    self.modify(p, tree.files[p])
                    touched.add(p)
            if grow and roll < 0.005:
                self._add(tree, touched)
        elif roll < 0.895:
            self._add(tree, touched)
        elif roll < (0.907 if grow else 0.925):
            p = tree.random_path(avoid)
            if p is not None and len(tree.files) > 50:
                tree.remove(p)
                self.out.write(b"D %s\n" % p.encode())
                touched.add(p)
        elif roll < 0.94:
            p = tree.random_path(avoid, text_only=True)
            if p is not None:
                new = tree.new_path(os.path.splitext(p)[1])
                content = tree.files[p]
                tree.remove(p)
                if r.random() < 0.5:
                    content = self.edited(content)
                tree.put(new, content)
                self.out.write(b"D %s\n" % p.encode())
                self.modify(new, content)
                touched.update((p, new))
                if p in self.hot:
                    self.hot[self.hot.index(p)] = new
        elif roll < 0.945:
            p = tree.random_path(avoid, text_only=True)
            if p is not None:
                new = tree.new_path(os.path.splitext(p)[1])
                tree.put(new, tree.files[p])
                self.modify(new, tree.files[new])
                touched.add(new)
        else:
            p = tree.random_path(avoid)
            if p is not None and isinstance(tree.files[p], bytes) and r.random() < 0.5:
                b = bytearray(tree.files[p])
                at = r.randrange(len(b))
                b[at : at + 256] = r.randbytes(256)
                tree.put(p, bytes(b))
                self.modify(p, tree.files[p])
                touched.add(p)
            elif r.random() < 0.01:
                new = tree.new_path(".png")
                tree.put(new, r.randbytes(r.randrange(1000, 40000)))
                self.modify(new, tree.files[new])
                touched.add(new)
            else:
                p = self.pick(tree, avoid)
                if p is not None:
                    tree.put(p, self.edited(tree.files[p]))
                    self.modify(p, tree.files[p])
                    touched.add(p)
        if r.random() < 0.002 or len(self.hot) < HOT_FILES:
            p = tree.random_path(text_only=True)
            if p is not None:
                if len(self.hot) < HOT_FILES:
                    self.hot.append(p)
                else:
                    self.hot[r.randrange(HOT_FILES)] = p

    def _add(self, tree: _Tree, touched: set[str]) -> None:
        p = tree.new_path()
        tree.put(p, self.text())
        self.modify(p, tree.files[p])
        touched.add(p)


def generate_large(dest: str, commits: int, *, target_files: int = 2000, seed: int = 1) -> dict:
    """Create a bare repository at dest holding `commits` commits; returns a few counts."""
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", dest], check=True)
    proc = subprocess.Popen(
        ["git", "fast-import", "--quiet", "--done", "--depth=50"], cwd=dest, stdin=subprocess.PIPE
    )
    out = proc.stdin
    g = _Generator(out, seed, target_files)
    r = g.rng
    main = _Tree(r)
    # The initial import.
    for top in DIR_WORDS[:8]:
        main.add_dir(top)
    g.header("refs/heads/main", "Initial import\n")
    for _ in range(max(10, target_files // 10)):
        p = main.new_path()
        main.put(p, g.text())
        g.modify(p, main.files[p])
    out.write(b"\n")
    made, main_tip, merges, tags = 1, g.mark, 0, 0
    next_tag = TAG_EVERY
    branch = None  # (name, tip mark, tree, commits left, touched paths)
    left_open = 0
    while made < commits:
        if branch is None and r.random() < 0.1 and commits - made > 30:
            name = f"refs/heads/topic-{g.mark + 1}"
            out.write(b"reset %s\nfrom :%d\n\n" % (name.encode(), main_tip))
            branch = (name, main_tip, main.copy(), r.randrange(2, 13), set())
        if branch is not None and r.random() < 0.5:
            name, tip, tree, left, touched = branch
            mark = g.header(name, f"topic work on {name[11:]}\n")
            out.write(b"from :%d\n" % tip)
            g.change(tree, set(), touched)
            out.write(b"\n")
            made += 1
            branch = (name, mark, tree, left - 1, touched)
            if left - 1 > 0 or made >= commits:
                continue
            if commits - made > 1000 and r.random() < 0.01 and left_open < 5:
                left_open += 1  # a topic that was never merged: its branch stays
            else:
                # Merge: main's tree, with the topic's version of every path the topic touched
                # (main left those paths alone meanwhile; see `avoid` below).
                g.header("refs/heads/main", f"Merge branch '{name[11:]}'\n")
                out.write(b"from :%d\nmerge :%d\n" % (main_tip, mark))
                for p in sorted(touched):
                    if p in tree.files:
                        if p not in main.files or main.files[p] != tree.files[p]:
                            main.put(p, tree.files[p])
                            g.modify(p, tree.files[p])
                    elif p in main.files:
                        main.remove(p)
                        out.write(b"D %s\n" % p.encode())
                out.write(b"\n")
                out.write(b"reset %s\n\n" % name.encode())  # no `from`: fast-import writes no ref for it
                main_tip = g.mark
                made += 1
                merges += 1
            branch = None
            continue
        # While a topic is open, main leaves the paths it touched alone, so the merge is
        # main's tree plus the topic's version of those paths.
        avoid = branch[4] if branch is not None else set()
        g.header("refs/heads/main", f"change {made}\n")
        out.write(b"from :%d\n" % main_tip)
        g.change(main, avoid, set())
        out.write(b"\n")
        main_tip = g.mark
        made += 1
        if made >= next_tag:
            next_tag += TAG_EVERY
            tags += 1
            version = f"{tags // 10}.{tags % 10}"
            out.write(b"tag v%s\nfrom :%d\n" % (version.encode(), main_tip))
            out.write(f"tagger {AUTHORS[0]} {g.time} +0000\n".encode())
            g.data(f"Release {version}\n".encode())
    out.write(b"done\n")
    out.close()
    if proc.wait() != 0:
        raise RuntimeError("git fast-import failed")
    return {"commits": made, "merges": merges, "tags": tags, "files": len(main.files), "dirs": len(main.dirs)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dest", help="bare repository to create (must not exist)")
    ap.add_argument("--commits", type=int, default=200_000)
    ap.add_argument("--files", type=int, default=2000, help="about how many files the last tree holds")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    if os.path.exists(args.dest):
        print(f"gen_large_history: {args.dest} already exists", file=sys.stderr)
        return 1
    t0 = time.monotonic()
    stats = generate_large(args.dest, args.commits, target_files=args.files, seed=args.seed)
    print(f"gen_large_history: {stats} in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
