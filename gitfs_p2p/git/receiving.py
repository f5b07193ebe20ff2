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

import logging
import os
import shutil
import struct
import subprocess
import threading
import zlib
import hashlib
from dataclasses import dataclass

from ..errors import UserError
from ..pack.fsck import FsckPolicy
from ..pack.packfile import OBJ_BLOB, OBJ_COMMIT, OBJ_TAG, OBJ_TREE, entry_header
from ..pack.verify import VerifiedPack

__all__ = ["ReceivingRepo", "build_pack", "crash_point"]

log = logging.getLogger(__name__)

ZERO_ID = "0" * 40
_TYPES = {b"commit": OBJ_COMMIT, b"tree": OBJ_TREE, b"blob": OBJ_BLOB, b"tag": OBJ_TAG}
_TMP_PREFIX = "tmp_gitp2p_"
_ASK_CHUNK = 1000  # ids per write to git cat-file: 41 KB, under a pipe's 64 KiB
PACK_REFS_AT = 100  # after setting more refs than this at once, pack them
_CRASH_COUNTS: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Testing hook: GITP2P_WATCH_CRASH=NAME[:N] kills this process (SIGKILL) at the N-th pass here."""
    spec = os.environ.get("GITP2P_WATCH_CRASH")
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    _CRASH_COUNTS[name] = _CRASH_COUNTS.get(name, 0) + 1
    if _CRASH_COUNTS[name] >= int(nth or 1):
        os.kill(os.getpid(), 9)


def _git(*args: str, git_dir: str | None = None, input: bytes | None = None, check: bool = True) -> str:
    cmd = ["git"] + ([f"--git-dir={git_dir}"] if git_dir else []) + list(args)
    try:
        proc = subprocess.run(cmd, input=input, capture_output=True, check=False)
    except FileNotFoundError:
        raise UserError("git is not installed (the watcher needs it)") from None
    if check and proc.returncode != 0:
        raise UserError(f"git {' '.join(args)} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode()


def build_pack(packs: list[VerifiedPack]) -> tuple[bytes, bytes, str]:
    """One self-contained pack (and its .idx v2) holding the objects of verified packs.

    Delta bases a pack took from outside itself (the repository, or another
    pack of the batch) go first, whole, as `git index-pack --fix-thin` does.
    Then the received entries, copied verbatim; an object already written is
    left out (only from packs without OFS deltas, whose entries may depend on
    their neighbours' offsets).  Bases first is what keeps the pack readable:
    two packs may each hold a delta against an object the other holds as a
    delta (A against B in one, B against A in the other), and keeping both
    deltas would make a cycle that git cannot resolve.  A kept entry's base is
    then always a whole object, an entry of its own pack, or the kept copy of
    an entry from an earlier pack, so chains only ever lead back to whole
    objects.  Returns (pack, idx, pack name hex).
    """
    parts: list[bytes] = [b""]
    rows: list[tuple[bytes, int, int]] = []  # id, offset, crc32
    have: set[bytes] = set()
    pos = 12

    def add(oid: bytes, raw) -> None:
        nonlocal pos
        parts.append(raw)
        rows.append((oid, pos, zlib.crc32(raw)))
        have.add(oid)
        pos += len(raw)

    for vp in packs:
        for oid, (type_num, content) in vp.external.items():
            if oid not in have:
                add(oid, entry_header(type_num, len(content)) + zlib.compress(content, 1))
    for vp in packs:
        dedupe = not vp.has_ofs_delta
        view = memoryview(vp.data)
        for e in vp.entries:
            if dedupe and e.id in have:
                continue
            add(e.id, view[e.start : e.end])
    parts[0] = struct.pack(">4sLL", b"PACK", 2, len(rows))
    sha = hashlib.sha1()
    for p in parts:
        sha.update(p)
    trailer = sha.digest()
    pack = b"".join(parts) + trailer
    return pack, _build_idx(rows, trailer), trailer.hex()


def _build_idx(rows: list[tuple[bytes, int, int]], pack_sha: bytes) -> bytes:
    rows = sorted(rows)
    fanout = [0] * 256
    for oid, _, _ in rows:
        fanout[oid[0]] += 1
    total = 0
    for i in range(256):
        total += fanout[i]
        fanout[i] = total
    small = []
    large = []
    for _, offset, _ in rows:
        if offset < 0x80000000:
            small.append(offset)
        else:
            small.append(0x80000000 | len(large))
            large.append(offset)
    n = len(rows)
    body = b"".join(
        [
            b"\377tOc",
            struct.pack(">L", 2),
            struct.pack(">256L", *fanout),
            b"".join(oid for oid, _, _ in rows),
            struct.pack(f">{n}L", *(crc for _, _, crc in rows)),
            struct.pack(f">{n}L", *small),
            struct.pack(f">{len(large)}Q", *large),
            pack_sha,
        ]
    )
    return body + hashlib.sha1(body).digest()


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


class ReceivingRepo:
    """The repository packs are imported into (created if absent)."""

    def __init__(self, path: str, *, bare: bool = False, create: bool = True):
        self.path = os.path.abspath(path)
        self.git_dir = self._open_or_create(bare, create)
        fmt = _git("rev-parse", "--show-object-format", git_dir=self.git_dir, check=False).strip()
        if fmt and fmt != "sha1":
            raise UserError(f"{self.path}: only SHA-1 repositories are supported")
        self.pack_dir = os.path.join(self.git_dir, "objects", "pack")
        os.makedirs(self.pack_dir, exist_ok=True)
        self.state_dir = os.path.join(self.git_dir, "gitp2p", "watch")
        os.makedirs(self.state_dir, exist_ok=True)
        self._lock = threading.Lock()
        self._trusted: set[str] = set()  # commits and tags found reachable from refs
        self._bare: bool | None = None
        self._batch: subprocess.Popen | None = None
        self._check: subprocess.Popen | None = None

    def _open_or_create(self, bare: bool, create: bool) -> str:
        p = self.path
        if os.path.exists(os.path.join(p, ".git")):  # a directory, or a file (a linked worktree)
            common = _git("-C", p, "rev-parse", "--git-common-dir").strip()
            return os.path.realpath(os.path.join(p, common))  # objects and refs live there
        if all(os.path.exists(os.path.join(p, n)) for n in ("HEAD", "objects", "refs")):
            return os.path.realpath(p)
        if os.path.exists(p) and (not os.path.isdir(p) or os.listdir(p)):
            raise UserError(f"{p}: exists and is not a git repository")
        if not create:
            raise UserError(f"{p}: not a git repository")
        # Created beside and renamed into place, so a kill -9 never leaves half a repository.
        parent, name = os.path.split(p)
        try:
            os.makedirs(parent, exist_ok=True)
            prefix = f".{name}.gitp2p-init-"
            for old in os.listdir(parent):
                if old.startswith(prefix):
                    shutil.rmtree(os.path.join(parent, old), ignore_errors=True)
            tmp = os.path.join(parent, f"{prefix}{os.getpid()}")
            _git("init", "-q", *(["--bare"] if bare else []), tmp)
            os.rename(tmp, p)
        except OSError as exc:
            raise UserError(f"{p}: cannot create the repository ({exc.strerror})") from None
        log.info("created %s repository %s", "bare" if bare else "a", p)
        return os.path.realpath(p if bare else os.path.join(p, ".git"))

    def close(self) -> None:
        with self._lock:
            self._stop_readers()

    def _stop_readers(self) -> None:
        for proc in (self._batch, self._check):
            if proc is not None:
                try:
                    proc.stdin.close()
                except OSError:  # it died; its pipe is broken
                    pass
                proc.wait()
        self._batch = self._check = None

    # -- objects ------------------------------------------------------------------
    def _proc(self, mode: str) -> subprocess.Popen:
        return subprocess.Popen(
            ["git", f"--git-dir={self.git_dir}", "cat-file", mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def _ask(self, mode: str, hex_id: str) -> tuple[subprocess.Popen, list[bytes]]:
        """Send one id to the cat-file process of *mode*; the process and its answer line."""
        p, answers = self._ask_many(mode, [hex_id])
        return p, answers[0]

    def _ask_many(self, mode: str, hex_ids: list[str]) -> tuple[subprocess.Popen, list[list[bytes]]]:
        """Send ids to the cat-file process of *mode* (started on demand); its answer lines.

        Only `--batch-check` may be given more than one id (`--batch` follows each answer
        with content that the caller reads). At most _ASK_CHUNK ids go out at once, so what
        is written always fits the pipe and git never waits on us while we wait on it.
        A process that died (its pipe broke, or it answered nothing) is replaced once;
        a second death is an error, never an object reported missing."""
        attr = "_batch" if mode == "--batch" else "_check"
        for attempt in (1, 2):
            p = getattr(self, attr)
            if p is None:
                p = self._proc(mode)
                setattr(self, attr, p)
            answers: list[list[bytes]] = []
            try:
                for start in range(0, len(hex_ids), _ASK_CHUNK):
                    chunk = hex_ids[start : start + _ASK_CHUNK]
                    p.stdin.write("".join(h + "\n" for h in chunk).encode())
                    p.stdin.flush()
                    for _ in chunk:
                        line = p.stdout.readline()
                        if not line:
                            raise BrokenPipeError
                        answers.append(line.split())
                return p, answers
            except OSError:
                pass
            setattr(self, attr, None)
            try:
                p.stdin.close()
            except OSError:
                pass
            code = p.wait()
            log.warning("git cat-file %s exited (code %s); %s", mode, code,
                        "restarting it" if attempt == 1 else "giving up")
        raise UserError(f"git cat-file {mode} in {self.git_dir} keeps exiting (code {code})")

    def read(self, oid: bytes) -> tuple[int, bytes] | None:
        """(type, content) of the object with binary id oid, or None."""
        with self._lock:
            p, fields = self._ask("--batch", oid.hex())
            if len(fields) != 3:
                return None
            size = int(fields[2])
            content = p.stdout.read(size)
            if len(content) != size or p.stdout.read(1) != b"\n":
                self._stop_readers()  # it died mid-answer: the next question starts a new one
                raise UserError(f"git cat-file --batch in {self.git_dir} stopped in the middle of {oid.hex()}")
            return _TYPES[fields[1]], content

    def type_of(self, hex_id: str) -> int | None:
        with self._lock:
            _, fields = self._ask("--batch-check", hex_id)
            return _TYPES.get(fields[1]) if len(fields) == 3 else None

    def types(self, hex_ids: list[str]) -> dict[str, int | None]:
        """The type of each object (None: absent), one round trip per _ASK_CHUNK ids."""
        if not hex_ids:
            return {}
        with self._lock:
            _, answers = self._ask_many("--batch-check", hex_ids)
        return {h: (_TYPES.get(f[1]) if len(f) == 3 else None) for h, f in zip(hex_ids, answers)}

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
            out = _git("config", "--type=bool", "--get", key, git_dir=self.git_dir, check=False).strip()
            return {"true": True, "false": False}.get(out)

        fetch, transfer = flag("fetch.fsckObjects"), flag("transfer.fsckObjects")
        strict = fetch if fetch is not None else bool(transfer)
        listed = _git("config", "--null", "--get-regexp", r"^(fsck|fetch\.fsck)\.", git_dir=self.git_dir, check=False)
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
                raise UserError(f"fetch.fsck.skipList: cannot read {path} ({exc.strerror})") from None
        try:
            return FsckPolicy.from_config(strict, general + fetch_only, skiplist)
        except ValueError as exc:
            raise UserError(f"{self.path}: {exc}") from None

    def write_objects(self, packs: list[VerifiedPack]) -> str:
        """Store the packs' objects durably as one pack; returns its name."""
        pack, idx, name = build_pack(packs)
        final = os.path.join(self.pack_dir, f"pack-{name}")
        if os.path.exists(final + ".idx"):
            return name
        intent = os.path.join(self.state_dir, "writing")
        # Temporary names must not end in .idx: git takes any *.idx in objects/pack for a
        # pack index, and could read one half-written.
        tmp = os.path.join(self.pack_dir, f"{_TMP_PREFIX}{name}")
        for suffix in ("-pack", "-idx"):
            if os.path.exists(tmp + suffix):
                os.unlink(tmp + suffix)
        _write_synced(tmp + "-pack", pack)
        _write_synced(tmp + "-idx", idx)
        with open(intent + ".tmp", "w") as fh:
            fh.write(name + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(intent + ".tmp", intent)
        crash_point("before-pack-rename")
        os.replace(tmp + "-pack", final + ".pack")
        crash_point("between-pack-and-idx")
        os.replace(tmp + "-idx", final + ".idx")
        _fsync_dir(self.pack_dir)
        os.unlink(intent)
        crash_point("after-objects")
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
        """Merge small packs geometrically (`git repack --geometric=2 -d`), safe under kill -9."""
        _git("repack", "-q", "-d", "--geometric=2", "--no-write-bitmap-index", git_dir=self.git_dir, check=False)
        self.close()  # the packs the readers had open may be gone

    # -- refs ---------------------------------------------------------------------
    def ref_state(self) -> RefState:
        out = _git("for-each-ref", "--format=%(objectname) %(refname)", git_dir=self.git_dir)
        refs = {}
        for line in out.splitlines():
            oid, _, name = line.partition(" ")
            refs[name] = oid
        target = _git("symbolic-ref", "-q", "HEAD", git_dir=self.git_dir, check=False).strip() or None
        born = bool(_git("rev-parse", "-q", "--verify", "HEAD", git_dir=self.git_dir, check=False).strip())
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
            _git("pack-refs", "--all", "--prune", git_dir=self.git_dir, check=False)
        return result

    def set_head(self, target: str) -> None:
        _git("symbolic-ref", "HEAD", target, git_dir=self.git_dir)

    def symbolic_target(self, name: str) -> str | None:
        return _git("symbolic-ref", "-q", name, git_dir=self.git_dir, check=False).strip() or None

    def set_symbolic_ref(self, name: str, target: str) -> None:
        _git("symbolic-ref", "-m", "gitp2p watch", name, target, git_dir=self.git_dir)

    @property
    def is_bare(self) -> bool:
        """core.bare as git records it (REPO given as `work/.git` is not bare: it has a work tree)."""
        if self._bare is None:
            out = _git("config", "--bool", "core.bare", git_dir=self.git_dir, check=False).strip()
            self._bare = out == "true" if out else self.work_tree is None
        return self._bare

    @property
    def work_tree(self) -> str | None:
        """The main work tree of a non-bare repository, if git can say where it is."""
        configured = _git("config", "--path", "core.worktree", git_dir=self.git_dir, check=False).strip()
        if configured:
            return os.path.realpath(os.path.join(self.git_dir, configured))
        if os.path.basename(self.git_dir) == ".git":
            return os.path.dirname(self.git_dir)
        return None

    def checked_out_branches(self) -> dict[str, str]:
        """Branch -> the work tree it is checked out in, in every work tree of the repository
        (a bare repository may have linked worktrees too); git fetch never moves those."""
        out = _git("worktree", "list", "--porcelain", git_dir=self.git_dir, check=False)
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
        out = _git("rev-parse", "-q", "--verify", f"{hex_id}^{{commit}}", git_dir=self.git_dir, check=False)
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
        _git("-C", self.work_tree, f"--git-dir={self.git_dir}", "read-tree", "--reset", "-u", commit)
