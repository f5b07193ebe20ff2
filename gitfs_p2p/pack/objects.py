"""Git objects read the way C git reads them: commit and tag headers, tree entries, dates.

Pure functions of bytes, no I/O.  Both sides use them: the sender to walk a
history (so a commit git can read never stops a mount), the receiver to
parse what it checks.  Each rule follows git 2.39 (commit.c
`parse_commit_buffer` and `parse_commit_date`, tag.c `parse_tag_buffer`,
tree-walk.c `decode_tree_entry`, cache.h `canon_mode`), so that objects
fsck frowns on but git accepts (a `+051800` time zone, no e-mail, a
`040000` or `100664` mode, extra headers) parse exactly as git parses them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator, NamedTuple

from ..errors import RepositoryError

__all__ = [
    "ObjectParseError",
    "KIND_BLOB",
    "KIND_TREE",
    "KIND_GITLINK",
    "KIND_NAMES",
    "mode_kind",
    "RawTreeEntry",
    "iter_tree",
    "parse_tree",
    "parse_tree_py",
    "tree_entries",
    "parse_object",
    "tree_entries_py",
    "CommitHeader",
    "parse_commit",
    "TagHeader",
    "parse_tag",
    "strtoumax",
    "strtoumax_end",
    "MTIME_MAX",
    "clamp_time",
    "CommitInfo",
    "TreeEntry",
    "RefTarget",
]

#: What a tree entry's mode says the entry is (git's canon_mode).
KIND_BLOB, KIND_TREE, KIND_GITLINK = "blob", "tree", "commit"
KIND_NAMES = {KIND_BLOB: "blob", KIND_TREE: "tree", KIND_GITLINK: "submodule commit"}

_S_IFMT = 0o170000
_S_IFREG = 0o100000
_S_IFLNK = 0o120000
_S_IFDIR = 0o040000

_HEX40 = re.compile(rb"[0-9a-fA-F]{40}\Z")
#: Largest time we hand to the file system as an mtime (2242-03-16); larger dates are clamped.
MTIME_MAX = (1 << 33) - 1
_UINTMAX = (1 << 64) - 1


class ObjectParseError(ValueError):
    """Bytes that git itself cannot read as an object of that type."""


def mode_kind(mode: int) -> str:
    """KIND_BLOB, KIND_TREE or KIND_GITLINK, as git's canon_mode sees a raw mode.

    Regular files (any permission bits, so `100664` too) and symbolic links are
    blobs, directories trees; every other mode is read as a gitlink.
    """
    kind = mode & _S_IFMT
    if kind in (_S_IFREG, _S_IFLNK):
        return KIND_BLOB
    if kind == _S_IFDIR:
        return KIND_TREE
    return KIND_GITLINK


class RawTreeEntry(NamedTuple):
    mode_bytes: bytes  # as written, e.g. b"040000"
    mode: int  # parsed (octal, 32 bits, as git keeps it)
    name: bytes  # up to the NUL
    id: bytes  # binary, 20 bytes
    kind: str  # mode_kind(mode)


_MODES: dict[bytes, tuple[int, str]] = {}


def _mode(mode_bytes: bytes) -> tuple[int, str]:
    hit = _MODES.get(mode_bytes)
    if hit is None:
        mode = 0
        for c in mode_bytes:
            mode = ((mode << 3) + (c - 48)) & 0xFFFFFFFF
        hit = (mode, mode_kind(mode))
        if len(_MODES) < 4096:
            _MODES[mode_bytes] = hit
    return hit


_TREE_ENTRY = re.compile(rb"([0-7]+) ([^\0]+)\0(.{20})", re.DOTALL)
_WELL_FORMED_TREE = re.compile(rb"(?:[0-7]+ [^\0]+\0.{20})*", re.DOTALL)


def parse_tree(raw: bytes) -> list[RawTreeEntry]:
    """All entries of a tree (see iter_tree): compiled when built (_speedups.c)."""
    if _compiled_tree_entries is not None:
        out = _compiled_tree_entries(raw, RawTreeEntry, KIND_BLOB, KIND_TREE, KIND_GITLINK, True)
        return out if out is not None else list(iter_tree(raw))
    return parse_tree_py(raw)


def parse_tree_py(raw: bytes) -> list[RawTreeEntry]:
    """The reference of parse_tree; one regular-expression pass for a well-formed tree."""
    if _WELL_FORMED_TREE.fullmatch(raw) is None:
        return list(iter_tree(raw))
    modes = _MODES
    out = []
    append = out.append
    for mode_bytes, name, oid in _TREE_ENTRY.findall(raw):
        mode, kind = modes.get(mode_bytes) or _mode(mode_bytes)
        append(RawTreeEntry(mode_bytes, mode, name, oid, kind))
    return out


def parse_object(where: str, oid: bytes, found: tuple[int, bytes], want: tuple[int, str], parse):
    """parse(raw) of the object oid read as found (type number, raw), which must be of the
    type want (type number, name): KeyError if it is another type, RepositoryError naming
    where and the object when git could not read it either."""
    type_num, raw = found
    if type_num != want[0]:
        raise KeyError(oid)
    try:
        return parse(raw)
    except ObjectParseError as exc:
        raise RepositoryError(f"{where}: {want[1]} {oid.decode()} cannot be read ({exc})") from None


def tree_entries(raw: bytes) -> "list[TreeEntry]":
    """parse_tree's entries as TreeEntry (hex ids): compiled when built (_speedups.c)."""
    if _compiled_tree_entries is not None:
        out = _compiled_tree_entries(raw, TreeEntry, KIND_BLOB, KIND_TREE, KIND_GITLINK, False)
        if out is not None:
            return out
        return [TreeEntry(e.name, e.mode, e.id.hex().encode(), e.kind) for e in iter_tree(raw)]
    return tree_entries_py(raw)


def tree_entries_py(raw: bytes) -> "list[TreeEntry]":
    """The reference of tree_entries, in one regular-expression pass for a well-formed tree."""
    if _WELL_FORMED_TREE.fullmatch(raw) is None:
        return [TreeEntry(e.name, e.mode, e.id.hex().encode(), e.kind) for e in iter_tree(raw)]
    modes = _MODES
    out = []
    append = out.append
    for mode_bytes, name, oid in _TREE_ENTRY.findall(raw):
        mode, kind = modes.get(mode_bytes) or _mode(mode_bytes)
        append(TreeEntry(name, mode, oid.hex().encode(), kind))
    return out


def iter_tree(raw: bytes) -> Iterator[RawTreeEntry]:
    """The entries of a tree, in stored order; ObjectParseError where git's tree reader stops.

    git refuses a tree whose entry lacks its 20-byte id (`too-short tree object`),
    has a mode that is not octal digits or is empty before its space
    (`malformed mode in tree entry`) or has an empty name (`empty filename`).
    """
    pos = 0
    n = len(raw)
    # Fast path: one anchored regular expression match per well-formed entry (anchored: an
    # unanchored search over a malformed tree costs quadratic time); the first entry it
    # cannot match is handed to the careful reader below, which says why.
    match = _TREE_ENTRY.match
    while pos < n:
        m = match(raw, pos)
        if m is None:
            break
        mode_bytes, name, oid = m.groups()
        mode, kind = _mode(mode_bytes)
        yield RawTreeEntry(mode_bytes, mode, name, oid, kind)
        pos = m.end()
    if pos < n:
        yield from _iter_tree_slowly(raw, pos)


def _iter_tree_slowly(raw: bytes, pos: int) -> Iterator[RawTreeEntry]:
    n = len(raw)
    view = memoryview(raw)
    while pos < n:
        rest = n - pos
        # git: at least 23 bytes left, and a NUL exactly 21 bytes before the end of the
        # buffer; checking the entry's own NUL below is the per-entry form of the same rule.
        if rest < 23:
            raise ObjectParseError("too-short tree object")
        sp = raw.find(b" ", pos)
        if sp < 0 or sp == pos:
            raise ObjectParseError("malformed mode in tree entry")
        mode_bytes = raw[pos:sp]
        if mode_bytes.strip(b"01234567"):
            raise ObjectParseError("malformed mode in tree entry")
        nul = raw.find(b"\0", sp + 1)
        if nul < 0 or nul + 21 > n:
            raise ObjectParseError("too-short tree object")
        if nul == sp + 1:
            raise ObjectParseError("empty filename in tree entry")
        mode, kind = _mode(mode_bytes)
        yield RawTreeEntry(mode_bytes, mode, raw[sp + 1 : nul], bytes(view[nul + 1 : nul + 21]), kind)
        pos = nul + 21


#: What C's strtoumax reads: leading white space (isspace), a sign, decimal digits.
_STRTOUMAX = re.compile(rb"[ \t\n\v\f\r]*([+-]?)([0-9]*)")


def strtoumax_end(data: bytes, pos: int) -> tuple[int, int]:
    """C's strtoumax(data + pos, &end, 10): (value, end position); end == pos when no digits."""
    m = _STRTOUMAX.match(data, pos)
    digits = m.group(2)
    if not digits:
        return 0, pos
    significant = digits.lstrip(b"0")
    if len(significant) > 20:  # past 2**64 - 1 (and past what int() takes: a hostile date)
        return _UINTMAX, m.end()  # ERANGE
    value = int(significant or b"0")
    if value > _UINTMAX:
        return _UINTMAX, m.end()  # ERANGE
    return ((-value) & _UINTMAX if m.group(1) == b"-" else value), m.end()


def strtoumax(data: bytes, pos: int) -> int:
    """C's strtoumax(data + pos, NULL, 10): leading space, a sign, digits; 0 when none."""
    return strtoumax_end(data, pos)[0]


def clamp_time(t: int) -> int:
    """A git date as a file-system time: dates past MTIME_MAX (or wrapped negatives) are clamped."""
    return t if t <= MTIME_MAX else MTIME_MAX


@dataclass(frozen=True)
class CommitHeader:
    tree: str  # hex, lower case
    parents: tuple[str, ...]  # hex, lower case, as listed (a repeated parent stays repeated)
    date: int  # committer date as git computes it (0 when git finds none)


def parse_commit(raw: bytes) -> CommitHeader:
    """The tree, parents and date of a commit, read as git's parse_commit_buffer does.

    Needs `tree <40 hex>\\n` first and well-formed `parent` lines after it;
    anything after the parents (author, committer, extra headers, message) is
    never a reason to refuse.  The date is git's: the decimal number after the
    first `>` of the line after `author ...`, when that line is `committer ...`.
    """
    n = len(raw)
    if n <= 46 or raw[:5] != b"tree " or raw[45:46] != b"\n" or not _HEX40.match(raw[5:45]):
        raise ObjectParseError("commit does not start with a valid tree line")
    tree = raw[5:45].decode().lower()
    pos = 46
    parents = []
    while pos + 47 < n and raw[pos : pos + 7] == b"parent ":
        if n <= pos + 48 or not _HEX40.match(raw[pos + 7 : pos + 47]) or raw[pos + 47 : pos + 48] != b"\n":
            raise ObjectParseError("commit has a malformed parent line")
        parents.append(raw[pos + 7 : pos + 47].decode().lower())
        pos += 48
    return CommitHeader(tree, tuple(parents), _commit_date(raw, pos))


def _commit_date(raw: bytes, pos: int) -> int:
    n = len(raw)
    if pos + 6 >= n or raw[pos : pos + 6] != b"author":
        return 0
    nl = raw.find(b"\n", pos)
    if nl < 0:
        return 0
    pos = nl + 1
    if pos + 9 >= n or raw[pos : pos + 9] != b"committer":
        return 0
    gt = raw.find(b">", pos)
    if gt < 0 or gt + 1 >= n:
        return 0
    nl = raw.find(b"\n", gt + 1)
    if nl < 0 or nl + 1 >= n:
        return 0
    return strtoumax(raw, gt + 1)


@dataclass(frozen=True)
class TagHeader:
    object: str  # hex, lower case
    type: str  # "commit" | "tree" | "blob" | "tag"
    name: bytes  # the `tag` line (git cannot read a tag without one)
    date: int  # tagger date as git computes it (0 without a tagger line)


_TAG_TYPES = ("commit", "tree", "blob", "tag")


def parse_tag(raw: bytes) -> TagHeader:
    """The object and type a tag names, read as git's parse_tag_buffer does."""
    n = len(raw)
    if n < 64 or raw[:7] != b"object " or not _HEX40.match(raw[7:47]) or raw[47:48] != b"\n":
        raise ObjectParseError("tag does not start with a valid object line")
    obj = raw[7:47].decode().lower()
    pos = 48
    if raw[pos : pos + 5] != b"type ":
        raise ObjectParseError("tag has no type line")
    pos += 5
    nl = raw.find(b"\n", pos)
    if nl < 0 or nl - pos >= 20:
        raise ObjectParseError("tag has a malformed type line")
    kind = raw[pos:nl].split(b"\0")[0].decode("latin-1")  # C compares up to a NUL
    if kind not in _TAG_TYPES:
        raise ObjectParseError(f"tag names an unknown type {kind!r}")
    pos = nl + 1
    if not (pos + 4 < n and raw[pos : pos + 4] == b"tag "):
        raise ObjectParseError("tag has no tag line")
    nl = raw.find(b"\n", pos)
    if nl < 0:
        raise ObjectParseError("tag has a malformed tag line")
    name = raw[pos + 4 : nl]
    pos = nl + 1
    date = 0
    if pos + 7 < n and raw[pos : pos + 7] == b"tagger ":
        gt = raw.find(b">", pos)
        if gt >= 0 and gt + 1 < n:
            nl = raw.find(b"\n", gt + 1)
            if nl >= 0 and nl + 1 < n:
                date = strtoumax(raw, gt + 1)
    return TagHeader(obj, kind, name, date)


# -- records of what was read (the git layer fills them; pack rules consume them) ----------


@dataclass(frozen=True)
class CommitInfo:
    id: bytes  # hex
    tree: bytes  # hex
    parents: tuple[bytes, ...]
    commit_time: int


class TreeEntry(NamedTuple):
    """One entry of a tree: name, raw mode, hex id, and what git reads the mode as."""

    name: bytes
    mode: int
    id: bytes  # hex
    kind: str  # KIND_BLOB | KIND_TREE | KIND_GITLINK (git's canon_mode)


@dataclass(frozen=True)
class RefTarget:
    """What one ref names: the object itself and, through any tags, the commit it leads to."""

    object: bytes  # hex id the ref names
    type_num: int
    commit: bytes | None  # hex id of the commit it peels to; None for a tag of a tree or blob
    tags: tuple[bytes, ...]  # the tag objects on the way, outermost first


try:
    from ._speedups import tree_entries as _compiled_tree_entries
except ImportError:  # not built (a source tree without `pip install`): the reference
    _compiled_tree_entries = None
