"""git fsck's object checks, with git's message ids and severities, and the receiver's policy.

Pure: bytes in, `Finding`s out.  The checks follow git 2.39's fsck.c (and the
helpers it uses: `.git` spellings from path.c and utf8.c, submodule names and
URLs from submodule-config.c and fsck.c, `.gitmodules` read with config.c's
syntax), so that a finding here carries the message id git would print.

What a receiver does with a finding is `FsckPolicy`'s business:

* by default, like `git fetch` with `transfer.fsckObjects` off, a finding is
  accepted -- except those in `ALWAYS_REFUSED`, which protect the user and the
  repository whatever the configuration says (names a checkout would write
  into `.git` or outside the work tree, `.gitmodules` tricks, duplicate tree
  entries, NUL bytes in headers);
* in strict mode (the receiving repository sets `transfer.fsckObjects` or
  `fetch.fsckObjects`), git's severities apply as `git fetch` applies them:
  errors refuse, warnings become errors, infos and ignored ids do not;
  `fetch.fsck.<msg-id>` (or `fsck.<msg-id>`) changes a severity and
  `fetch.fsck.skipList` names objects to let through.

docs/watcher.md has the table.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Iterable
from urllib.parse import unquote_to_bytes

from .objects import ObjectParseError, parse_tree, strtoumax_end

__all__ = [
    "Severity",
    "DEFAULT_SEVERITY",
    "ALWAYS_REFUSED",
    "Finding",
    "FsckPolicy",
    "WHY_ALWAYS",
    "TreeReport",
    "fsck_commit",
    "fsck_tag",
    "fsck_tree",
    "fsck_gitmodules",
    "is_hfs_dotgit",
    "is_ntfs_dotgit",
    "is_dotgitmodules",
    "check_submodule_name",
    "check_submodule_url",
    "parse_git_config",
    "ConfigError",
]


class Severity(enum.IntEnum):
    FATAL = 0
    ERROR = 1
    WARN = 2
    INFO = 3
    IGNORE = 4


_F, _E, _W, _I, _X = Severity.FATAL, Severity.ERROR, Severity.WARN, Severity.INFO, Severity.IGNORE

#: git 2.39's message ids (camelCase, as git prints them) and their default severities (fsck.h).
DEFAULT_SEVERITY: dict[str, Severity] = {
    "nulInHeader": _F, "unterminatedHeader": _F,
    "badDate": _E, "badDateOverflow": _E, "badEmail": _E, "badName": _E, "badObjectSha1": _E,
    "badParentSha1": _E, "badTimezone": _E, "badTree": _E, "badTreeSha1": _E, "badType": _E,
    "duplicateEntries": _E, "missingAuthor": _E, "missingCommitter": _E, "missingEmail": _E,
    "missingNameBeforeEmail": _E, "missingObject": _E, "missingSpaceBeforeDate": _E,
    "missingSpaceBeforeEmail": _E, "missingTag": _E, "missingTagEntry": _E, "missingTree": _E,
    "missingType": _E, "missingTypeEntry": _E, "multipleAuthors": _E, "treeNotSorted": _E,
    "unknownType": _E, "zeroPaddedDate": _E, "gitmodulesMissing": _E, "gitmodulesBlob": _E,
    "gitmodulesLarge": _E, "gitmodulesName": _E, "gitmodulesSymlink": _E, "gitmodulesUrl": _E,
    "gitmodulesPath": _E, "gitmodulesUpdate": _E, "gitattributesMissing": _E,
    "gitattributesLarge": _E, "gitattributesLineLength": _E, "gitattributesBlob": _E,
    "emptyName": _W, "fullPathname": _W, "hasDot": _W, "hasDotdot": _W, "hasDotgit": _W,
    "nullSha1": _W, "zeroPaddedFilemode": _W, "nulInCommit": _W,
    "badFilemode": _I, "gitmodulesParse": _I, "gitignoreSymlink": _I, "gitattributesSymlink": _I,
    "mailmapSymlink": _I, "badTagName": _I, "missingTaggerEntry": _I,
    "extraHeaderEntry": _X,
}

#: Refused in every mode, whatever `fsck.*` says: each would let a peer harm the user or
#: break the repository.  The rest of git's ids only refuse in strict mode.
ALWAYS_REFUSED = frozenset({
    # a NUL byte where git reads header lines (a C reader stops there, a checker may not)
    "nulInHeader",
    # names a checkout would turn into a write outside the work tree or into .git
    # (an empty name never gets this far: git cannot read such a tree, see badTree)
    "hasDot", "hasDotdot", "hasDotgit", "fullPathname",
    # two entries for one path: which one a checkout writes depends on the tool
    "duplicateEntries",
    # .gitmodules that could run a command or reach outside the repository, or one too
    # large to check (git: past core.bigFileThreshold)
    "gitmodulesSymlink", "gitmodulesName", "gitmodulesUrl", "gitmodulesPath", "gitmodulesUpdate",
    "gitmodulesLarge",
    # git itself cannot read the object
    "badTree", "missingTree", "badTreeSha1", "badParentSha1",
    "missingObject", "badObjectSha1", "missingTypeEntry", "missingType", "badType",
    "missingTagEntry", "missingTag",
})

#: Why each id of ALWAYS_REFUSED is refused, in a few words (shown with the finding).
WHY_ALWAYS = {
    "nulInHeader": "a NUL byte in a header, which readers take apart differently",
    **dict.fromkeys(
        ["hasDot", "hasDotdot", "hasDotgit", "fullPathname"],
        "unsafe name: a checkout would write into .git or outside the work tree",
    ),
    "duplicateEntries": "two entries for one path: what a checkout writes depends on the tool",
    **dict.fromkeys(
        ["gitmodulesSymlink", "gitmodulesName", "gitmodulesUrl", "gitmodulesPath", "gitmodulesUpdate"],
        "a .gitmodules that could run a command or reach outside the repository",
    ),
    "gitmodulesLarge": "a .gitmodules too large to check",
    **dict.fromkeys(
        ["badTree", "missingTree", "badTreeSha1", "badParentSha1", "missingObject", "badObjectSha1",
         "missingTypeEntry", "missingType", "badType", "missingTagEntry", "missingTag"],
        "git itself cannot read it",
    ),
}

#: Largest .gitmodules we parse: git's core.bigFileThreshold default (512 MiB), which is
#: also the receiver's bound on any one object.
MAX_GITMODULES = 512 << 20
#: git's ATTR_MAX_FILE_SIZE and ATTR_MAX_LINE_LENGTH.
MAX_GITATTRIBUTES = 100 << 20
MAX_GITATTRIBUTES_LINE = 2048


@dataclass(frozen=True)
class Finding:
    msg_id: str  # git's camelCase message id
    message: str
    object_id: str  # hex
    object_type: str  # "commit" | "tree" | "blob" | "tag"

    def __str__(self) -> str:
        return f"{self.object_type} {self.object_id}: {self.msg_id}: {self.message}"


def _finding(oid: str, kind: str, msg_id: str, message: str) -> Finding:
    return Finding(msg_id, message, oid, kind)


# -- the policy --------------------------------------------------------------------------------


def _lower_ids() -> dict[str, str]:
    return {k.lower(): k for k in DEFAULT_SEVERITY}


_BY_LOWER = _lower_ids()


@dataclass
class FsckPolicy:
    """Which findings refuse an object (see the module docstring)."""

    strict: bool = False
    severities: dict[str, Severity] = field(default_factory=dict)  # msg id -> severity set by config
    skiplist: frozenset[str] = frozenset()  # hex ids

    @classmethod
    def from_config(cls, strict: bool, settings: Iterable[tuple[str, str]], skiplist: Iterable[str] = ()) -> "FsckPolicy":
        """settings: (msg-id in any case, "error" | "warn" | "ignore") pairs, later ones win."""
        severities: dict[str, Severity] = {}
        for raw_id, value in settings:
            msg_id = _BY_LOWER.get(raw_id.lower())
            if msg_id is None:
                continue  # git warns about unknown ids; they change nothing
            level = {"error": Severity.ERROR, "warn": Severity.WARN, "ignore": Severity.IGNORE}.get(value)
            if level is None:  # git stops the fetch on it (case counts: "Error" is not "error")
                raise ValueError(f"fsck.{raw_id}: unknown severity {value!r} (git takes error, warn or ignore)")
            if DEFAULT_SEVERITY[msg_id] == Severity.FATAL and level != Severity.ERROR:
                continue  # git refuses to demote a fatal id
            severities[msg_id] = level
        return cls(strict, severities, frozenset(s.lower() for s in skiplist))

    def severity(self, msg_id: str) -> Severity:
        """As git fetch sees it: strict mode makes a *default* warning an error; a severity
        set in the configuration is taken as it is."""
        if msg_id in self.severities:
            return self.severities[msg_id]
        level = DEFAULT_SEVERITY.get(msg_id, Severity.ERROR)
        if self.strict and level == Severity.WARN:
            level = Severity.ERROR
        return level

    def refuses(self, finding: Finding) -> bool:
        if finding.msg_id in ALWAYS_REFUSED:
            return True
        if not self.strict or finding.object_id in self.skiplist:
            return False
        return self.severity(finding.msg_id) <= Severity.ERROR

    def first_refusal(self, findings: Iterable[Finding]) -> Finding | None:
        for f in findings:
            if self.refuses(f):
                return f
        return None


# -- headers and identities ------------------------------------------------------------------


def _verify_headers(raw: bytes, oid: str, kind: str) -> Finding | None:
    end = raw.find(b"\n\n")
    head = raw if end < 0 else raw[:end]
    nul = head.find(b"\0")
    if nul >= 0:
        return _finding(oid, kind, "nulInHeader", f"unterminated header: NUL at offset {nul}")
    if end < 0 and not raw.endswith(b"\n"):
        return _finding(oid, kind, "unterminatedHeader", "unterminated header")
    return None


_HEX40 = re.compile(rb"[0-9a-fA-F]{40}")


def _fsck_ident(raw: bytes, pos: int, oid: str, kind: str) -> tuple[int, Finding | None]:
    """Check one identity from pos (after `author `); (position after its line, finding)."""
    nl = raw.find(b"\n", pos)
    nxt = len(raw) if nl < 0 else nl + 1
    line = raw[pos : nl if nl >= 0 else len(raw)] + b"\n"  # C sees the '\n' (or the buffer's end)

    def bad(msg_id: str, message: str) -> tuple[int, Finding]:
        return nxt, _finding(oid, kind, msg_id, f"invalid author/committer line - {message}")

    if line[:1] == b"<":
        return bad("missingNameBeforeEmail", "missing space before email")
    p = _span_not(line, 0, b"<>\n")
    if line[p : p + 1] == b">":
        return bad("badName", "bad name")
    if line[p : p + 1] != b"<":
        return bad("missingEmail", "missing email")
    if p == 0 or line[p - 1 : p] != b" ":
        return bad("missingSpaceBeforeEmail", "missing space before email")
    p = _span_not(line, p + 1, b"<>\n")
    if line[p : p + 1] != b">":
        return bad("badEmail", "bad email")
    p += 1
    if line[p : p + 1] != b" ":
        return bad("missingSpaceBeforeDate", "missing space before date")
    p += 1
    if line[p : p + 1] == b"0" and line[p + 1 : p + 2] != b" ":
        return bad("zeroPaddedDate", "zero-padded date")
    value, q = strtoumax_end(line, p)
    if value >= 1 << 63:  # date_overflows(): no longer fits a signed 64-bit time_t
        return bad("badDateOverflow", "date causes integer overflow")
    if q == p or line[q : q + 1] != b" ":
        return bad("badDate", "bad date")
    tz = line[q + 1 : q + 7]
    if len(tz) < 6 or tz[:1] not in (b"+", b"-") or not tz[1:5].isdigit() or tz[5:6] != b"\n":
        return bad("badTimezone", "bad time zone")
    return nxt, None


def _span_not(data: bytes, pos: int, stop: bytes) -> int:
    n = len(data)
    while pos < n and data[pos] not in stop:
        pos += 1
    return pos


def fsck_commit(oid: str, raw: bytes) -> list[Finding]:
    """git fsck's commit checks (fsck.c fsck_commit); stops where git stops."""
    k = "commit"
    bad = _verify_headers(raw, oid, k)
    if bad:
        return [bad]
    out: list[Finding] = []
    if not raw.startswith(b"tree "):
        return [_finding(oid, k, "missingTree", "invalid format - expected 'tree' line")]
    pos = 5
    if not _HEX40.match(raw, pos) or raw[pos + 40 : pos + 41] != b"\n":
        return [_finding(oid, k, "badTreeSha1", "invalid 'tree' line format - bad sha1")]
    pos += 41
    while raw.startswith(b"parent ", pos):
        pos += 7
        if not _HEX40.match(raw, pos) or raw[pos + 40 : pos + 41] != b"\n":
            return out + [_finding(oid, k, "badParentSha1", "invalid 'parent' line format - bad sha1")]
        pos += 41
    authors = 0
    while raw.startswith(b"author ", pos):
        authors += 1
        pos, bad = _fsck_ident(raw, pos + 7, oid, k)
        if bad:
            return out + [bad]
    if authors < 1:
        return out + [_finding(oid, k, "missingAuthor", "invalid format - expected 'author' line")]
    if authors > 1:
        return out + [_finding(oid, k, "multipleAuthors", "invalid format - multiple 'author' lines")]
    if not raw.startswith(b"committer ", pos):
        return out + [_finding(oid, k, "missingCommitter", "invalid format - expected 'committer' line")]
    pos, bad = _fsck_ident(raw, pos + 10, oid, k)
    if bad:
        return out + [bad]
    if b"\0" in raw:
        out.append(_finding(oid, k, "nulInCommit", "NUL byte in the commit object body"))
    return out


_REFNAME_BAD = re.compile(rb"(^|/)\.|\.\.|[\x00-\x20\x7f~^:?*\[\\]|@\{|\.lock(/|$)|//|/$|\.$|^@$")


def _bad_tag_name(name: bytes) -> bool:
    full = b"refs/tags/" + name
    return not name or bool(_REFNAME_BAD.search(full))


def fsck_tag(oid: str, raw: bytes) -> list[Finding]:
    """git fsck's tag checks (fsck.c fsck_tag_standalone)."""
    k = "tag"
    bad = _verify_headers(raw, oid, k)
    if bad:
        return [bad]
    if not raw.startswith(b"object "):
        return [_finding(oid, k, "missingObject", "invalid format - expected 'object' line")]
    pos = 7
    if not _HEX40.match(raw, pos) or raw[pos + 40 : pos + 41] != b"\n":
        return [_finding(oid, k, "badObjectSha1", "invalid 'object' line format - bad sha1")]
    pos += 41
    if not raw.startswith(b"type ", pos):
        return [_finding(oid, k, "missingTypeEntry", "invalid format - expected 'type' line")]
    pos += 5
    eol = raw.find(b"\n", pos)
    if eol < 0:
        return [_finding(oid, k, "missingType", "invalid format - unexpected end after 'type' line")]
    if raw[pos:eol].split(b"\0")[0] not in (b"commit", b"tree", b"blob", b"tag"):
        return [_finding(oid, k, "badType", "invalid 'type' value")]
    pos = eol + 1
    if not raw.startswith(b"tag ", pos):
        return [_finding(oid, k, "missingTagEntry", "invalid format - expected 'tag' line")]
    pos += 4
    eol = raw.find(b"\n", pos)
    if eol < 0:
        return [_finding(oid, k, "missingTag", "invalid format - unexpected end after 'type' line")]
    out: list[Finding] = []
    if _bad_tag_name(raw[pos:eol].split(b"\0")[0]):
        out.append(_finding(oid, k, "badTagName", f"invalid 'tag' name: {raw[pos:eol].decode(errors='replace')}"))
    pos = eol + 1
    if not raw.startswith(b"tagger ", pos):
        out.append(_finding(oid, k, "missingTaggerEntry", "invalid format - expected 'tagger' line"))
    else:
        pos, bad = _fsck_ident(raw, pos + 7, oid, k)
        if bad:
            return out + [bad]
    if pos < len(raw) and raw[pos : pos + 1] != b"\n":
        out.append(_finding(oid, k, "extraHeaderEntry", "invalid format - extra header(s) after 'tagger'"))
    return out


# -- names a checkout must never write ---------------------------------------------------------

#: Code points HFS+ ignores when it compares names (utf8.c next_hfs_char).
_HFS_IGNORED = frozenset(
    [0x200C, 0x200D, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E]
    + list(range(0x206A, 0x2070))
    + [0xFEFF]
)


def _hfs_chars(name: bytes) -> list[int]:
    """The code points of name without those HFS+ ignores, as git's next_hfs_char reads them.

    Where the bytes stop being valid UTF-8, git reads "end of name"; so do we.
    """
    out = []
    i, n = 0, len(name)
    while i < n:
        lead = name[i]
        size = 1 if lead < 0x80 else 2 if lead >> 5 == 0b110 else 3 if lead >> 4 == 0b1110 else 4 if lead >> 3 == 0b11110 else 0
        try:
            ch = name[i : i + size].decode("utf-8") if size else ""
        except UnicodeDecodeError:
            ch = ""
        if len(ch) != 1 or ord(ch) in (0xFFFE, 0xFFFF):  # git's pick_one_utf8_char refuses those too
            break
        i += size
        if ord(ch) not in _HFS_IGNORED:
            out.append(ord(ch))
    return out


def _is_hfs_dot(name: bytes, needle: bytes) -> bool:
    chars = _hfs_chars(name)
    if len(chars) < len(needle) + 1 or chars[0] != 0x2E:
        return False
    for c, want in zip(chars[1:], needle):
        if c > 127 or chr(c).lower() != chr(want):
            return False
    rest = chars[len(needle) + 1 :]
    return not rest or rest[0] == 0x2F


def is_hfs_dotgit(name: bytes) -> bool:
    """`.git` as HFS+ sees it: any case, with ignorable code points anywhere."""
    return _is_hfs_dot(name, b"git")


def is_ntfs_dotgit(name: bytes) -> bool:
    """`.git` as NTFS sees it: `.git` or `git~1`, any case, then only dots and spaces,
    up to the end, a directory separator or an alternate data stream (`:`)."""
    low = name.lower()
    if low.startswith(b".git"):
        rest = name[4:]
    elif low.startswith(b"git~1"):
        rest = name[5:]
    else:
        return False
    for c in rest:
        if c in b"/\\:":
            return True
        if c not in b". ":
            return False
    return True


def _is_ntfs_dot(name: bytes, needle: bytes, short_prefix: bytes) -> bool:
    """path.c is_ntfs_dot_generic: `.needle`, its 8.3 short name, or the hashed short name."""

    def only_spaces_and_periods(i: int) -> bool:
        for c in name[i:]:
            if c == 0x3A:  # ':'
                return True
            if c not in b" .":
                return False
        return True

    low = name.lower()
    if low[:1] == b"." and low[1 : 1 + len(needle)] == needle:
        return only_spaces_and_periods(len(needle) + 1)
    if low[:6] == needle[:6] and name[6:7] == b"~" and name[7:8] in (b"1", b"2", b"3", b"4"):
        return only_spaces_and_periods(8)
    i = 0
    saw_tilde = False
    while i < 8:
        if i >= len(name):
            return False
        c = name[i]
        if saw_tilde:
            if not 0x30 <= c <= 0x39:
                return False
        elif c == 0x7E:  # '~'
            i += 1
            if i >= len(name) or not 0x31 <= name[i] <= 0x39:
                return False
            saw_tilde = True
        elif i >= 6 or c & 0x80:
            return False
        elif chr(c).lower().encode() != short_prefix[i : i + 1]:
            return False
        i += 1
    return only_spaces_and_periods(8)


def is_dotgitmodules(name: bytes) -> bool:
    return _is_hfs_dot(name, b"gitmodules") or _is_ntfs_dot(name, b"gitmodules", b"gi7eba")


def _is_dotgitattributes(name: bytes) -> bool:
    return _is_hfs_dot(name, b"gitattributes") or _is_ntfs_dot(name, b"gitattributes", b"gi7d29")


def _is_dotgitignore(name: bytes) -> bool:
    return _is_hfs_dot(name, b"gitignore") or _is_ntfs_dot(name, b"gitignore", b"gi250a")


def _is_dotmailmap(name: bytes) -> bool:
    return _is_hfs_dot(name, b"mailmap") or _is_ntfs_dot(name, b"mailmap", b"maba30")


def _maybe_special(name: bytes) -> bool:
    """Cheap filter: only such names can be a spelling of .git, .gitmodules, ... ."""
    return name[:1] in _SPECIAL_FIRST or b"~" in name or b"\\" in name or not name.isascii()


_SPECIAL_FIRST = frozenset([b".", b"g", b"G", b"m", b"M"])


# -- trees ---------------------------------------------------------------------------------------

_S_IFMT = 0o170000
_S_IFLNK = 0o120000
_S_IFDIR = 0o040000
_STANDARD_MODES = {0o100755, 0o100644, 0o120000, 0o040000, 0o160000}


@dataclass
class TreeReport:
    findings: list[Finding]
    entries: list  # RawTreeEntry, in stored order ([] if the tree cannot be parsed)
    gitmodules: list[bytes]  # binary ids of blobs named like .gitmodules (not symlinks)
    gitattributes: list[bytes]


def _order_flags(entries, flags: dict) -> None:
    """fsck.c's pairwise walk for a tree that is not plainly in order."""
    candidates: list[bytes] = []
    prev = None
    seen: set[bytes] = set()
    for e in entries:
        mode16 = e.mode & 0xFFFF
        if e.name in seen:
            flags["duplicateEntries"] = True  # also when git's walk would miss it (unsorted)
        seen.add(e.name)
        if prev is not None:
            verdict = _verify_ordered(prev[0], prev[1], mode16, e.name, candidates)
            if verdict == "unordered":
                flags["treeNotSorted"] = True
            elif verdict == "dups":
                flags["duplicateEntries"] = True
        prev = (mode16, e.name)


def _special_name(oid: str, e, mode16: int, flags: dict, findings: list, report: "TreeReport") -> None:
    """The checks of one name that is not plain letters and digits."""
    k = "tree"
    name = e.name
    if b"/" in name:
        flags["fullPathname"] = True
    if name == b".":
        flags["hasDot"] = True
    if name == b"..":
        flags["hasDotdot"] = True
    if not _maybe_special(name):
        return
    is_link = mode16 & _S_IFMT == _S_IFLNK
    if is_hfs_dotgit(name) or is_ntfs_dotgit(name):
        flags["hasDotgit"] = True
    if is_dotgitmodules(name):
        if is_link:
            findings.append(_finding(oid, k, "gitmodulesSymlink", ".gitmodules is a symbolic link"))
        else:
            report.gitmodules.append(e.id)
    if _is_dotgitattributes(name):
        if is_link:
            findings.append(_finding(oid, k, "gitattributesSymlink", ".gitattributes is a symlink"))
        else:
            report.gitattributes.append(e.id)
    if is_link and _is_dotgitignore(name):
        findings.append(_finding(oid, k, "gitignoreSymlink", ".gitignore is a symlink"))
    if is_link and _is_dotmailmap(name):
        findings.append(_finding(oid, k, "mailmapSymlink", ".mailmap is a symlink"))
    for part in name.split(b"\\")[1:]:
        if is_ntfs_dotgit(part):
            flags["hasDotgit"] = True
        if _is_ntfs_dot(part, b"gitmodules", b"gi7eba"):
            if is_link:
                findings.append(_finding(oid, k, "gitmodulesSymlink", ".gitmodules is a symbolic link"))
            else:
                report.gitmodules.append(e.id)


def _is_less_than_slash(c: int) -> bool:
    return c != 0 and c < 0x2F


def fsck_tree(oid: str, raw: bytes, *, strict: bool = False) -> TreeReport:
    """git fsck's tree checks (fsck.c fsck_tree), plus duplicate names in any order.

    `strict` makes `100664` a bad file mode, as git's strict fsck (and a fetch with
    fsckObjects) does.
    """
    k = "tree"
    findings: list[Finding] = []
    report = TreeReport(findings, [], [], [])
    try:
        entries = parse_tree(raw)
    except ObjectParseError:
        findings.append(_finding(oid, k, "badTree", "cannot be parsed as a tree"))
        return report
    report.entries = entries
    flags: dict[str, bool] = {}
    names = [e.name for e in entries]
    modes = {e.mode_bytes: e.mode & 0xFFFF for e in entries}  # fsck keeps modes in an unsigned short
    if b"\0" * 20 in {e.id for e in entries}:
        flags["nullSha1"] = True
    for mode_bytes, mode16 in modes.items():
        if mode_bytes[:1] == b"0":
            flags["zeroPaddedFilemode"] = True
        if mode16 not in _STANDARD_MODES and not (mode16 == 0o100664 and not strict):
            flags["badFilemode"] = True
    first = _SPECIAL_FIRST
    for e in entries:  # the rare names worth a closer look
        name = e.name
        if name[:1] in first or b"/" in name or b"~" in name or b"\\" in name or not name.isascii():
            _special_name(oid, e, e.mode & 0xFFFF, flags, findings, report)
    # Order and duplicates: names unique and keys (a directory's name + "/") strictly
    # increasing is what git's verify_ordered accepts; anything else is judged entry by
    # entry exactly as git does (which of "not sorted" and "duplicate" it is).
    keys = [e.name + b"/" if e.mode & 0o170000 == _S_IFDIR else e.name for e in entries]
    if len(set(names)) != len(names) or keys != sorted(keys):
        _order_flags(entries, flags)
    for msg_id, message in (
        ("nullSha1", "contains entries pointing to null sha1"),
        ("fullPathname", "contains full pathnames"),
        ("hasDot", "contains '.'"),
        ("hasDotdot", "contains '..'"),
        ("hasDotgit", "contains '.git'"),
        ("zeroPaddedFilemode", "contains zero-padded file modes"),
        ("badFilemode", "contains bad file modes"),
        ("duplicateEntries", "contains duplicate file entries"),
        ("treeNotSorted", "not properly sorted"),
    ):
        if flags.get(msg_id):
            findings.append(_finding(oid, k, msg_id, message))
    return report


def _verify_ordered(mode1: int, name1: bytes, mode2: int, name2: bytes, candidates: list[bytes]) -> str | None:
    """fsck.c verify_ordered: "unordered", "dups" or None; keeps git's stack of file names."""
    if not name2.startswith(name1) and not name1.startswith(name2):
        # they differ within the shorter one: plain byte order decides, and no stack work
        return None if name1 < name2 else "unordered"
    n = min(len(name1), len(name2))
    if name1[:n] < name2[:n]:
        return None
    if name1[:n] > name2[:n]:
        return "unordered"
    c1 = name1[n] if n < len(name1) else 0
    c2 = name2[n] if n < len(name2) else 0
    if not c1 and not c2:
        return "dups"
    if not c1 and mode1 & _S_IFMT == _S_IFDIR:
        c1 = 0x2F
    if not c2 and mode2 & _S_IFMT == _S_IFDIR:
        c2 = 0x2F
    if not c1 and _is_less_than_slash(c2):
        candidates.append(name1)
    elif c2 == 0x2F and _is_less_than_slash(c1):
        while candidates:
            f_name = candidates.pop()
            if not name2.startswith(f_name):
                continue
            rest = name2[len(f_name) :]
            if not rest:
                return "dups"
            if _is_less_than_slash(rest[0]):
                candidates.append(f_name)
                break
    return None if c1 < c2 else "unordered"


# -- .gitmodules ---------------------------------------------------------------------------------


class ConfigError(ValueError):
    """Bytes git's config parser stops on; entries before the error were already given."""


_SPACE = b" \t\n\r"  # git's own isspace()


def _iskeychar(c: int) -> bool:
    return 0x30 <= c <= 0x39 or 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A or c == 0x2D


def _isalpha(c: int) -> bool:
    return 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A


def parse_git_config(data: bytes):
    """Yield (name, value or None) as git's config parser (config.c) gives them to a callback.

    name is `section.key` or `section.subsection.key` (section and key lower case);
    raises ConfigError where git's parser stops.
    """
    p = _ConfigReader(data)
    if data.startswith(b"\xef\xbb\xbf"):
        p.pos = 3
    var = b""
    comment = False
    while True:
        c = p.next()
        if c == 0x0A:
            if p.eof:
                return
            comment = False
            continue
        if comment:
            continue
        if c in _SPACE:
            continue
        if c in (0x23, 0x3B):  # '#', ';'
            comment = True
            continue
        if c == 0x5B:  # '['
            var = p.base_var()
            if not var:
                raise ConfigError("bad section header")
            var += b"."
            continue
        if not _isalpha(c):
            raise ConfigError(f"bad config line {p.line}")
        name, value = p.value(var + bytes([c]).lower())
        yield name, value


class _ConfigReader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0
        self.eof = False
        self.line = 1

    def next(self) -> int:
        if self.pos >= len(self.data):
            self.eof = True
            return 0x0A
        c = self.data[self.pos]
        self.pos += 1
        if c == 0x0D:
            if self.pos < len(self.data) and self.data[self.pos] == 0x0A:
                self.pos += 1
                c = 0x0A
        if c == 0x0A:
            self.line += 1
        return c

    def base_var(self) -> bytes:
        name = bytearray()
        while True:
            c = self.next()
            if self.eof:
                raise ConfigError("unterminated section header")
            if c == 0x5D:  # ']'
                return bytes(name)
            if c in _SPACE:
                return self.extended_base_var(name, c)
            if not _iskeychar(c) and c != 0x2E:
                raise ConfigError("bad section name")
            name.append(c | 0x20 if 0x41 <= c <= 0x5A else c)

    def extended_base_var(self, name: bytearray, c: int) -> bytes:
        while True:
            if c == 0x0A:
                raise ConfigError("bad subsection header")
            c = self.next()
            if c not in _SPACE:
                break
        if c != 0x22:  # '"'
            raise ConfigError("subsection must be quoted")
        name.append(0x2E)
        while True:
            c = self.next()
            if c == 0x0A:
                raise ConfigError("unterminated subsection")
            if c == 0x22:
                break
            if c == 0x5C:  # backslash: the next character as itself
                c = self.next()
                if c == 0x0A:
                    raise ConfigError("unterminated subsection")
            name.append(c)
        if self.next() != 0x5D:
            raise ConfigError("subsection header does not end in ]")
        return bytes(name)

    def value(self, name: bytes) -> tuple[bytes, bytes | None]:
        key = bytearray(name)
        while True:
            c = self.next()
            if self.eof or not _iskeychar(c):
                break
            key.append(c | 0x20 if 0x41 <= c <= 0x5A else c)
        while c in (0x20, 0x09):
            c = self.next()
        if c == 0x0A:
            return bytes(key), None
        if c != 0x3D:  # '='
            raise ConfigError(f"bad config line {self.line}")
        return bytes(key), self.parse_value()

    def parse_value(self) -> bytes:
        out = bytearray()
        quote = comment = False
        space = 0
        while True:
            c = self.next()
            if c == 0x0A:
                if quote:
                    raise ConfigError("unterminated quote")
                return bytes(out)
            if comment:
                continue
            if c in _SPACE and not quote:
                if out:
                    space += 1
                continue
            if not quote and c in (0x3B, 0x23):
                comment = True
                continue
            out += b" " * space
            space = 0
            if c == 0x5C:
                c = self.next()
                if c == 0x0A:
                    continue
                esc = {0x74: 0x09, 0x62: 0x08, 0x6E: 0x0A, 0x5C: 0x5C, 0x22: 0x22}.get(c)
                if esc is None:
                    raise ConfigError("unknown escape sequence")
                out.append(esc)
                continue
            if c == 0x22:
                quote = not quote
                continue
            out.append(c)


def _cstr(b: bytes) -> bytes:
    """What C code sees of a byte string: everything before the first NUL."""
    return b.split(b"\0", 1)[0]


def check_submodule_name(name: bytes) -> bool:
    """submodule-config.c: not empty, and no `..` path component (either slash)."""
    name = _cstr(name)
    if not name:
        return False
    for part in re.split(rb"[/\\]", name):
        if part == b"..":
            return False
    return True


def _starts_with_dot_slash(url: bytes) -> bool:
    return url[:1] == b"." and url[1:2] in (b"/", b"\\")


def _starts_with_dot_dot_slash(url: bytes) -> bool:
    return url[:2] == b".." and url[2:3] in (b"/", b"\\")


def check_submodule_url(url: bytes) -> bool:
    """fsck.c check_submodule_url: False for a URL git refuses in .gitmodules."""
    url = _cstr(url)
    if url.startswith(b"-"):
        return False  # looks like a command-line option
    if _starts_with_dot_slash(url) or _starts_with_dot_dot_slash(url) or url.startswith(b"git://"):
        if b"\n" in unquote_to_bytes(url):
            return False
        rest = url
        dotdots = 0
        while True:
            if _starts_with_dot_dot_slash(rest):
                dotdots += 1
                rest = rest[3:]
            elif _starts_with_dot_slash(rest):
                rest = rest[2:]
            else:
                break
        if dotdots > 0 and rest[:1] in (b":", b"/"):
            return False
        return True
    curl = None
    for prefix in (b"http::", b"https::", b"ftp::", b"ftps::"):
        if url.startswith(prefix):
            curl = url[len(prefix) :]
            break
    if curl is None and url.startswith((b"http://", b"https://", b"ftp://", b"ftps://")):
        curl = url
    if curl is None:
        return True
    return _credential_url_ok(curl)


def _credential_url_ok(url: bytes) -> bool:
    """credential.c credential_from_url_gently(quiet): a scheme, a host, no newline anywhere."""
    proto_end = url.find(b"://")
    if proto_end <= 0:  # no scheme, or an empty one (`http::://host`)
        return False
    cp = url[proto_end + 3 :]
    slash = len(cp)
    for ch in b"/?#":
        i = cp.find(bytes([ch]))
        if i >= 0:
            slash = min(slash, i)
    at = cp.find(b"@")
    colon = cp.find(b":")
    parts = []
    if at < 0 or slash <= at:
        host = cp[:slash]
    elif colon < 0 or at <= colon:
        parts.append(cp[:at])
        host = cp[at + 1 : slash]
    else:
        parts += [cp[:colon], cp[colon + 1 : at]]
        host = cp[at + 1 : slash]
    parts += [url[:proto_end], host, cp[slash:].lstrip(b"/")]
    if any(b"\n" in unquote_to_bytes(p) for p in parts):
        return False
    return bool(unquote_to_bytes(host))


def fsck_gitmodules(oid: str, raw: bytes) -> list[Finding]:
    """fsck.c fsck_blob for a blob some tree names `.gitmodules`."""
    k = "blob"
    if len(raw) > MAX_GITMODULES:
        return [_finding(oid, k, "gitmodulesLarge", ".gitmodules too large to parse")]
    out: list[Finding] = []
    try:
        for var, value in parse_git_config(raw):
            if not var.startswith(b"submodule."):
                continue
            rest = var[len(b"submodule.") :]
            dot = rest.rfind(b".")
            if dot < 0:
                continue  # no subsection
            name, key = rest[:dot], rest[dot + 1 :]
            shown = name.decode(errors="replace")
            if not check_submodule_name(name):
                out.append(_finding(oid, k, "gitmodulesName", f"disallowed submodule name: {shown}"))
            if value is None:
                continue
            text = value.decode(errors="replace")
            if key == b"url" and not check_submodule_url(value):
                out.append(_finding(oid, k, "gitmodulesUrl", f"disallowed submodule url: {text}"))
            if key == b"path" and _cstr(value).startswith(b"-"):
                out.append(_finding(oid, k, "gitmodulesPath", f"disallowed submodule path: {text}"))
            if key == b"update" and _cstr(value).startswith(b"!"):
                out.append(_finding(oid, k, "gitmodulesUpdate", f"disallowed submodule update setting: {text}"))
    except ConfigError:
        out.append(_finding(oid, k, "gitmodulesParse", "could not parse gitmodules blob"))
    return out


def fsck_gitattributes(oid: str, raw: bytes) -> list[Finding]:
    """fsck.c fsck_blob for a blob some tree names `.gitattributes`."""
    k = "blob"
    if len(raw) > MAX_GITATTRIBUTES:
        return [_finding(oid, k, "gitattributesLarge", ".gitattributes too large to parse")]
    text = _cstr(raw)
    if any(len(line) >= MAX_GITATTRIBUTES_LINE for line in text.split(b"\n")):
        return [_finding(oid, k, "gitattributesLineLength", ".gitattributes has too long lines to parse")]
    return []

