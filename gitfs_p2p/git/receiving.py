"""The watcher's repository boundary: objects in and refs moved, through C git and plain files.

Reads go through a `git cat-file --batch` process (C git copes with the many
packs an importer writes, and sees new ones on a miss); it is restarted after
every pack written here and every consolidation, so no git process outlives
the set of packs it started with, and restarted once if it dies.
Objects go in as a pack and its index written here and made visible the
way git does it: both files written and fsynced under temporary names,
then the pack renamed, then the index (the index makes it visible).  Refs
move with `git update-ref NEW OLD`, which is atomic and compare-and-swap.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import struct
import subprocess
from collections import Counter
from dataclasses import dataclass
from itertools import accumulate
from operator import itemgetter
from typing import Collection

from .. import faults
from ..errors import ReceiveError, RepositoryError
from ..pack.bundle import PlanEntry, write_plan_to
from ..pack.fsck import FsckPolicy
from ..pack.packfile import OBJ_COMMIT, OBJ_TAG
from .runner import READER_CONFIG, ObjectReader, run_git

__all__ = ["ReceivingRepo", "RefState", "pack_index_v2"]

log = logging.getLogger(__name__)

ZERO_ID = "0" * 40
_TMP_PREFIX = "tmp_gitp2p_"
PACK_REFS_AT = 100  # after setting more refs than this at once, pack them
#: git repack's bounds: one delta-search thread, its window and delta cache capped, pack
#: windows mapped as the readers map them (runner.READER_CONFIG).
REPACK_CONFIG = (*READER_CONFIG, "-c", "pack.threads=1", "-c", "pack.windowMemory=32m",
                 "-c", "pack.deltaCacheSize=16m")
def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class RefState:
    refs: dict[str, str]  # name -> hex id, as stored (not peeled)
    head_target: str | None  # what HEAD points at symbolically
    head_born: bool  # HEAD resolves to an object


_ID, _OFFSET, _CRC = (itemgetter(i) for i in range(3))


def pack_index_v2(rows: list[tuple[bytes, int, int]], pack_checksum: bytes) -> bytes:
    """The .idx (version 2) git reads beside a pack: rows (binary id, offset, crc32) sorted by
    id, as bundle.write_plan_to returns them; the bytes dulwich's write_pack_index_v2 writes
    (tests/packs/test_fast_paths.py), built a table at a time instead of a row at a time."""
    ids = b"".join(map(_ID, rows))
    if len(ids) != 20 * len(rows):
        raise ValueError("pack index rows must hold 20-byte ids")
    counts = Counter(ids[::20])  # rows by their id's first byte
    fan_out = struct.pack(">256L", *accumulate(counts.get(i, 0) for i in range(256)))
    crcs = struct.pack(f">{len(rows)}L", *map(_CRC, rows))
    offsets = list(map(_OFFSET, rows))
    large: list[int] = []
    if offsets and max(offsets) >= 1 << 31:  # past 2 GiB: an index into the table of 8-byte offsets
        for i, offset in enumerate(offsets):
            if offset >= 1 << 31:
                offsets[i] = (1 << 31) + len(large)
                large.append(offset)
    body = b"".join([b"\377tOc", struct.pack(">L", 2), fan_out, ids, crcs, struct.pack(f">{len(offsets)}L", *offsets),
                     struct.pack(f">{len(large)}Q", *large), pack_checksum])
    return body + hashlib.sha1(body).digest()


class ReceivingRepo:
    """The repository packs are imported into (created if absent)."""

    def __init__(self, path: str, *, bare: bool = False, create: bool = True):
        self.path = os.path.abspath(path)
        self.git_dir = self._open_or_create(bare, create)
        fmt = run_git("rev-parse", "--show-object-format", git_dir=self.git_dir, check=False).strip()
        if fmt and fmt != "sha1":
            raise RepositoryError(f"{self.path}: only SHA-1 repositories are supported")
        self.pack_dir = os.path.join(self.git_dir, "objects", "pack")
        os.makedirs(self.pack_dir, exist_ok=True)
        self.state_dir = os.path.join(self.git_dir, "gitp2p", "watch")
        os.makedirs(self.state_dir, exist_ok=True)
        self.objects = ObjectReader(self.git_dir)
        self._trusted: set[str] = set()  # commits and tags found reachable from refs
        self._bare: bool | None = None

    def _open_or_create(self, bare: bool, create: bool) -> str:
        p = self.path
        if os.path.exists(os.path.join(p, ".git")):  # a directory, or a file (a linked worktree)
            common = run_git("-C", p, "rev-parse", "--git-common-dir").strip()
            return os.path.realpath(os.path.join(p, common))  # objects and refs live there
        if all(os.path.exists(os.path.join(p, n)) for n in ("HEAD", "objects", "refs")):
            return os.path.realpath(p)
        if os.path.exists(p) and (not os.path.isdir(p) or os.listdir(p)):
            raise RepositoryError(f"{p}: exists and is not a git repository")
        if not create:
            raise RepositoryError(f"{p}: not a git repository")
        # Created beside and renamed into place, so a kill -9 never leaves half a repository.
        parent, name = os.path.split(p)
        try:
            os.makedirs(parent, exist_ok=True)
            prefix = f".{name}.gitp2p-init-"
            for old in os.listdir(parent):
                if old.startswith(prefix):
                    shutil.rmtree(os.path.join(parent, old), ignore_errors=True)
            tmp = os.path.join(parent, f"{prefix}{os.getpid()}")
            run_git("init", "-q", *(["--bare"] if bare else []), tmp)
            os.rename(tmp, p)
        except OSError as exc:
            raise ReceiveError(f"{p}: cannot create the repository ({exc.strerror})") from None
        log.info("created %s repository %s", "bare" if bare else "a", p)
        return os.path.realpath(p if bare else os.path.join(p, ".git"))

    def close(self) -> None:
        self.objects.close()

    # -- objects ------------------------------------------------------------------
    def read(self, oid: bytes) -> tuple[int, bytes] | None:
        """(type, content) of the object with binary id oid, or None (runner.ObjectReader)."""
        return self.objects.read(oid)

    def type_of(self, hex_id: str) -> int | None:
        return self.objects.type_of(hex_id)

    def types(self, hex_ids: list[str]) -> dict[str, int | None]:
        return self.objects.types(hex_ids)

    def has_commit_object(self, hex_id: str) -> bool:
        """The commit object is present (which says nothing about what lies below it)."""
        return self.type_of(hex_id) == OBJ_COMMIT

    def trusted_commit(self, hex_id: str, known_type: int | None = -1) -> bool:
        """The commit is reachable from one of REPO's refs, so complete, as git fetch trusts it.
        known_type: the object's type if the caller knows it (None: absent)."""
        return self._trusted_as(hex_id, OBJ_COMMIT, ["rev-list", "-n", "1", hex_id, "--not", "--all"], known_type)

    def trusted_tag(self, hex_id: str, known_type: int | None = -1) -> bool:
        """The tag object (and so what it names) is reachable from one of REPO's refs."""
        return self._trusted_as(
            hex_id, OBJ_TAG, ["rev-list", "--objects", "--no-object-names", hex_id, "--not", "--all"], known_type
        )

    def _trusted_as(self, hex_id: str, type_num: int, args: list[str], known_type: int | None = -1) -> bool:
        if hex_id in self._trusted:
            return True
        if (self.type_of(hex_id) if known_type == -1 else known_type) != type_num:
            return False
        return self._reachable(args, hex_id)

    def _reachable(self, args: list[str], hex_id: str) -> bool:
        """True if `git ARGS` prints nothing (only its first line is ever read)."""
        proc = subprocess.Popen(
            ["git", f"--git-dir={self.git_dir}", *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        try:
            first = proc.stdout.readline()
        finally:
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
            code = proc.wait()
        ok = not first and code == 0
        if ok:
            self._trusted.add(hex_id)
        return ok

    # -- configuration ------------------------------------------------------------
    def fsck_policy(self) -> FsckPolicy:
        """What `git fetch` into this repository would apply: transfer/fetch.fsckObjects,
        fsck.<msg-id> overridden by fetch.fsck.<msg-id>, and fetch.fsck.skipList."""
        def flag(key: str) -> bool | None:
            out = run_git("config", "--type=bool", "--get", key, git_dir=self.git_dir, check=False).strip()
            return {"true": True, "false": False}.get(out)

        fetch, transfer = flag("fetch.fsckObjects"), flag("transfer.fsckObjects")
        strict = fetch if fetch is not None else bool(transfer)
        listed = run_git("config", "--null", "--get-regexp", r"^(fsck|fetch\.fsck)\.", git_dir=self.git_dir, check=False)
        general: list[tuple[str, str]] = []
        fetch_only: list[tuple[str, str]] = []
        skip_path = None
        for item in listed.split("\0"):
            key, _, value = item.partition("\n")
            low = key.lower()
            if low == "fetch.fsck.skiplist":
                skip_path = value
            elif low.startswith("fetch.fsck."):
                fetch_only.append((key[len("fetch.fsck."):], value))
            elif low.startswith("fsck.") and low != "fsck.skiplist":
                general.append((key[len("fsck."):], value))
        skiplist: list[str] = []
        if skip_path:
            path = os.path.expanduser(skip_path)
            try:
                with open(path, "rb") as fh:
                    for line in fh.read(64 << 20).splitlines():
                        line = line.split(b"#", 1)[0].strip()
                        if line:
                            skiplist.append(line.decode("ascii", errors="replace"))
            except OSError as exc:
                raise RepositoryError(f"fetch.fsck.skipList: cannot read {path} ({exc.strerror})") from None
        try:
            return FsckPolicy.from_config(strict, general + fetch_only, skiplist)
        except ValueError as exc:
            raise RepositoryError(f"{self.path}: {exc}") from None

    def write_objects(self, plan: Collection[PlanEntry]) -> str:
        """Store verified packs' objects durably as one pack (bundle.pack_plan of each, in
        order); returns its name."""
        # Temporary names must not end in .idx: git takes any *.idx in objects/pack for a
        # pack index, and could read one half-written.  The pack is written as it is made
        # (its name, its checksum, is known at the end), never whole in memory.
        new_pack = os.path.join(self.pack_dir, f"{_TMP_PREFIX}new-pack")
        if os.path.exists(new_pack):
            os.unlink(new_pack)
        with open(new_pack, "xb") as fh:
            rows, checksum = write_plan_to(plan, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(new_pack, 0o444)
        name = checksum.hex()
        idx = pack_index_v2(rows, checksum)
        final = os.path.join(self.pack_dir, f"pack-{name}")
        if os.path.exists(final + ".idx"):
            os.unlink(new_pack)
            return name
        intent = os.path.join(self.state_dir, "writing")
        tmp = os.path.join(self.pack_dir, f"{_TMP_PREFIX}{name}")
        for suffix in ("-pack", "-idx"):
            if os.path.exists(tmp + suffix):
                os.unlink(tmp + suffix)
        os.replace(new_pack, tmp + "-pack")
        _write_synced(tmp + "-idx", idx)
        with open(intent + ".tmp", "w") as fh:
            fh.write(name + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(intent + ".tmp", intent)
        faults.reached("before-pack-rename")
        os.replace(tmp + "-pack", final + ".pack")
        faults.reached("between-pack-and-idx")
        os.replace(tmp + "-idx", final + ".idx")
        _fsync_dir(self.pack_dir)
        os.unlink(intent)
        faults.reached("after-objects")
        self.close()  # the next read starts a git that knows the new pack from the start
        return name

    def recover(self) -> None:
        """Undo what a killed writer left: temporary files, a pack whose index never landed."""
        intent = os.path.join(self.state_dir, "writing")
        try:
            with open(intent) as fh:
                name = fh.read().strip()
        except FileNotFoundError:
            name = None
        if name and all(c in "0123456789abcdef" for c in name) and len(name) == 40:
            final = os.path.join(self.pack_dir, f"pack-{name}")
            if os.path.exists(final + ".pack") and not os.path.exists(final + ".idx"):
                log.info("removing pack-%s.pack, left without its index by a killed import", name)
                os.unlink(final + ".pack")
        for fn in os.listdir(self.pack_dir):
            if fn.startswith(_TMP_PREFIX):
                os.unlink(os.path.join(self.pack_dir, fn))
        for fn in (intent, intent + ".tmp"):
            if os.path.exists(fn):
                os.unlink(fn)

    def pack_count(self) -> int:
        return sum(1 for fn in os.listdir(self.pack_dir) if fn.endswith(".idx"))

    def consolidate(self) -> None:
        """Merge small packs geometrically (`git repack --geometric=2 -d`), safe under kill -9.

        With its memory bounded (REPACK_CONFIG): git's defaults let pack-objects reach
        679 MB RSS merging git.git's history."""
        run_git(*REPACK_CONFIG, "repack", "-q", "-d", "--geometric=2", "--no-write-bitmap-index",
                git_dir=self.git_dir, check=False)
        self.close()  # the packs the readers had open may be gone

    # -- refs ---------------------------------------------------------------------
    def ref_state(self) -> RefState:
        out = run_git("for-each-ref", "--format=%(objectname) %(refname)", git_dir=self.git_dir)
        refs = {}
        for line in out.splitlines():
            oid, _, name = line.partition(" ")
            refs[name] = oid
        target = run_git("symbolic-ref", "-q", "HEAD", git_dir=self.git_dir, check=False).strip() or None
        born = bool(run_git("rev-parse", "-q", "--verify", "HEAD", git_dir=self.git_dir, check=False).strip())
        return RefState(refs, target, born)

    def is_ancestor(self, old: str, new: str) -> bool:
        proc = subprocess.run(
            ["git", f"--git-dir={self.git_dir}", "merge-base", "--is-ancestor", old, new], capture_output=True
        )
        return proc.returncode == 0

    def update_ref(self, name: str, new: str, old: str | None) -> str | None:
        """Move name from old (None: must not exist) to new atomically; None, or git's reason."""
        proc = subprocess.run(
            ["git", f"--git-dir={self.git_dir}", "update-ref", "-m", "gitp2p watch", name, new, old or ZERO_ID],
            capture_output=True,
        )
        if proc.returncode != 0:
            why = proc.stderr.decode(errors="replace").strip().removeprefix("fatal: ").splitlines()
            log.warning("could not update %s: %s", name, why)
            return why[-1] if why else f"git update-ref exited with {proc.returncode}"
        return None

    def update_refs(self, updates: list[tuple[str, str, str | None]]) -> dict[str, str | None]:
        """Move many refs (name, new, old or None for "must not exist") in one transaction.

        One `git update-ref --stdin`: all or nothing, each a compare-and-swap.  If the
        transaction fails (a ref moved meanwhile, or git refuses one of them), each ref is
        tried on its own.  Many new refs are then packed (`git pack-refs`), so a manifest of
        100,000 refs leaves one packed-refs file, not 100,000 files.  Returns each name with
        None when it was set, or git's reason when it was not.
        """
        if not updates:
            return {}
        script = "".join(f"update {name} {new} {old or ZERO_ID}\n" for name, new, old in updates)
        proc = subprocess.run(
            ["git", f"--git-dir={self.git_dir}", "update-ref", "-m", "gitp2p watch", "--stdin"],
            input=script.encode(), capture_output=True,
        )
        if proc.returncode == 0:
            result: dict[str, str | None] = {name: None for name, _, _ in updates}
        else:
            log.info("ref transaction failed (%s); setting refs one by one",
                     proc.stderr.decode(errors="replace").strip()[:200])
            result = {name: self.update_ref(name, new, old) for name, new, old in updates}
        if sum(1 for why in result.values() if why is None) > PACK_REFS_AT:
            run_git("pack-refs", "--all", "--prune", git_dir=self.git_dir, check=False)
        return result

    def set_head(self, target: str) -> None:
        run_git("symbolic-ref", "HEAD", target, git_dir=self.git_dir)

    def symbolic_target(self, name: str) -> str | None:
        return run_git("symbolic-ref", "-q", name, git_dir=self.git_dir, check=False).strip() or None

    def set_symbolic_ref(self, name: str, target: str) -> None:
        run_git("symbolic-ref", "-m", "gitp2p watch", name, target, git_dir=self.git_dir)

    @property
    def is_bare(self) -> bool:
        """core.bare as git records it (REPO given as `work/.git` is not bare: it has a work tree)."""
        if self._bare is None:
            out = run_git("config", "--bool", "core.bare", git_dir=self.git_dir, check=False).strip()
            self._bare = out == "true" if out else self.work_tree is None
        return self._bare

    @property
    def work_tree(self) -> str | None:
        """The main work tree of a non-bare repository, if git can say where it is."""
        configured = run_git("config", "--path", "core.worktree", git_dir=self.git_dir, check=False).strip()
        if configured:
            return os.path.realpath(os.path.join(self.git_dir, configured))
        if os.path.basename(self.git_dir) == ".git":
            return os.path.dirname(self.git_dir)
        return None

    def checked_out_branches(self) -> dict[str, str]:
        """Branch -> the work tree it is checked out in, in every work tree of the repository
        (a bare repository may have linked worktrees too); git fetch never moves those."""
        out = run_git("worktree", "list", "--porcelain", git_dir=self.git_dir, check=False)
        branches: dict[str, str] = {}
        where = ""
        for line in out.splitlines():
            if line.startswith("worktree "):
                where = line[len("worktree "):]
            elif line.startswith("branch "):
                branches[line[len("branch "):]] = where
        return branches

    def write_state(self, name: str, text: str | None) -> None:
        """Write (durably, atomically) or remove GIT_DIR/gitp2p/watch/NAME."""
        path = os.path.join(self.state_dir, name)
        if text is None:
            if os.path.exists(path):
                os.unlink(path)
            return
        with open(path + ".tmp", "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(path + ".tmp", path)

    def read_state(self, name: str) -> str | None:
        try:
            with open(os.path.join(self.state_dir, name)) as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    def peel(self, hex_id: str) -> str | None:
        """The commit an object leads to through tags, or None."""
        out = run_git("rev-parse", "-q", "--verify", f"{hex_id}^{{commit}}", git_dir=self.git_dir, check=False)
        return out.strip() or None

    def never_checked_out(self) -> bool:
        """A non-bare repository nobody works in yet: HEAD unborn, no index, an empty work tree
        (as `gitp2p watch` creates it).  Only then does the watcher check out, as git clone does."""
        tree = self.work_tree
        if tree is None or self.ref_state().head_born or os.path.exists(os.path.join(self.git_dir, "index")):
            return False
        return [n for n in os.listdir(tree) if n != ".git"] == []

    def check_out(self, commit: str) -> None:
        """Write a commit's tree into the work tree and index (a new clone's, so nothing is lost)."""
        run_git("-C", self.work_tree, f"--git-dir={self.git_dir}", "read-tree", "--reset", "-u", commit)
