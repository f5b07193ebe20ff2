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

import re
from dataclasses import dataclass, field
from typing import Iterable

from .findings import ALWAYS_REFUSED, DEFAULT_SEVERITY, WHY_ALWAYS, Finding, Severity, finding
from .gitnames import (
    SPECIAL_FIRST,
    is_dotgitattributes,
    is_dotgitignore,
    is_dotgitmodules,
    is_dotmailmap,
    is_hfs_dotgit,
    is_ntfs_dot,
    is_ntfs_dotgit,
    maybe_special,
)
from .objects import ObjectParseError, parse_tree, strtoumax_end
from .submodules import fsck_gitattributes, fsck_gitmodules

__all__ = [
    # the vocabulary (findings.py), re-exported: what a receiver needs from one place
    "Severity",
    "DEFAULT_SEVERITY",
    "ALWAYS_REFUSED",
    "WHY_ALWAYS",
    "Finding",
    "FsckPolicy",
    "TreeReport",
    "fsck_commit",
    "fsck_tag",
    "fsck_tree",
    "fsck_gitmodules",
    "fsck_gitattributes",
]


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
        return finding(oid, kind, "nulInHeader", f"unterminated header: NUL at offset {nul}")
    if end < 0 and not raw.endswith(b"\n"):
        return finding(oid, kind, "unterminatedHeader", "unterminated header")
    return None


_HEX40 = re.compile(rb"[0-9a-fA-F]{40}")


def _fsck_ident(raw: bytes, pos: int, oid: str, kind: str) -> tuple[int, Finding | None]:
    """Check one identity from pos (after `author `); (position after its line, finding).

    Read in raw itself, as C reads the object's buffer (NUL-terminated: past the end nothing
    matches): the name and e-mail stop at a newline, but strtoumax skips white space, a
    newline too, so a date on the next line is read from there (and that line is then taken
    for the next header, as git takes it)."""
    nl = raw.find(b"\n", pos)
    nxt = len(raw) if nl < 0 else nl + 1

    def bad(msg_id: str, message: str) -> tuple[int, Finding]:
        return nxt, finding(oid, kind, msg_id, f"invalid author/committer line - {message}")

    if raw[pos : pos + 1] == b"<":
        return bad("missingNameBeforeEmail", "missing space before email")
    p = _span_not(raw, pos)
    if raw[p : p + 1] == b">":
        return bad("badName", "bad name")
    if raw[p : p + 1] != b"<":
        return bad("missingEmail", "missing email")
    if raw[p - 1 : p] != b" ":
        return bad("missingSpaceBeforeEmail", "missing space before email")
    p = _span_not(raw, p + 1)
    if raw[p : p + 1] != b">":
        return bad("badEmail", "bad email")
    p += 1
    if raw[p : p + 1] != b" ":
        return bad("missingSpaceBeforeDate", "missing space before date")
    p += 1
    if raw[p : p + 1] == b"0" and raw[p + 1 : p + 2] != b" ":
        return bad("zeroPaddedDate", "zero-padded date")
    value, q = strtoumax_end(raw, p)
    if value >= 1 << 63:  # date_overflows(): no longer fits a signed 64-bit time_t
        return bad("badDateOverflow", "date causes integer overflow")
    if q == p or raw[q : q + 1] != b" ":
        return bad("badDate", "bad date")
    tz = raw[q + 1 : q + 7]
    if len(tz) < 6 or tz[:1] not in (b"+", b"-") or not tz[1:5].isdigit() or tz[5:6] != b"\n":
        return bad("badTimezone", "bad time zone")
    return nxt, None


_IDENT_STOP = re.compile(rb"[<>\n]")


def _span_not(data: bytes, pos: int) -> int:
    """The first position from pos of `<`, `>` or a newline (C's strcspn(p, "<>\\n")), or len(data)."""
    m = _IDENT_STOP.search(data, pos)
    return len(data) if m is None else m.start()


def _sha1_line(raw: bytes, pos: int) -> bool:
    """40 hex digits at pos, then the end of the line (git's parse_oid_hex + '\\n')."""
    return bool(_HEX40.match(raw, pos)) and raw[pos + 40 : pos + 41] == b"\n"


#: An identity no check below frowns on: a name, " <", an e-mail, "> ", a date without
#: padding that cannot overflow (18 digits at most), a time zone, the end of the line.
_PLAIN_IDENT = rb"[^<>\n]* <[^<>\n]*> (?:0|[1-9][0-9]{0,17}) [+-][0-9]{4}\n"
#: The head of a commit fsck_commit finds nothing in (given no NUL and a terminated header).
_PLAIN_COMMIT = re.compile(
    rb"tree [0-9a-fA-F]{40}\n(?:parent [0-9a-fA-F]{40}\n)*author " + _PLAIN_IDENT + rb"committer " + _PLAIN_IDENT
)


def fsck_commit(oid: str, raw: bytes) -> list[Finding]:
    """git fsck's commit checks (fsck.c fsck_commit); stops where git stops."""
    if _PLAIN_COMMIT.match(raw) and b"\0" not in raw and (raw.endswith(b"\n") or b"\n\n" in raw):
        return []  # the common commit, in one match: what the checks below find nothing in
    return _fsck_commit(oid, raw)


def _fsck_commit(oid: str, raw: bytes) -> list[Finding]:
    """fsck_commit, check by check (the reference its one-match path is tested against)."""
    k = "commit"
    bad = _verify_headers(raw, oid, k)
    if bad:
        return [bad]
    out: list[Finding] = []
    if not raw.startswith(b"tree "):
        return [finding(oid, k, "missingTree", "invalid format - expected 'tree' line")]
    pos = 5
    if not _sha1_line(raw, pos):
        return [finding(oid, k, "badTreeSha1", "invalid 'tree' line format - bad sha1")]
    pos += 41
    while raw.startswith(b"parent ", pos):
        pos += 7
        if not _sha1_line(raw, pos):
            return out + [finding(oid, k, "badParentSha1", "invalid 'parent' line format - bad sha1")]
        pos += 41
    authors = 0
    while raw.startswith(b"author ", pos):
        authors += 1
        pos, bad = _fsck_ident(raw, pos + 7, oid, k)
        if bad:
            return out + [bad]
    if authors < 1:
        return out + [finding(oid, k, "missingAuthor", "invalid format - expected 'author' line")]
    if authors > 1:
        return out + [finding(oid, k, "multipleAuthors", "invalid format - multiple 'author' lines")]
    if not raw.startswith(b"committer ", pos):
        return out + [finding(oid, k, "missingCommitter", "invalid format - expected 'committer' line")]
    pos, bad = _fsck_ident(raw, pos + 10, oid, k)
    if bad:
        return out + [bad]
    if b"\0" in raw:
        out.append(finding(oid, k, "nulInCommit", "NUL byte in the commit object body"))
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
        return [finding(oid, k, "missingObject", "invalid format - expected 'object' line")]
    pos = 7
    if not _sha1_line(raw, pos):
        return [finding(oid, k, "badObjectSha1", "invalid 'object' line format - bad sha1")]
    pos += 41
    if not raw.startswith(b"type ", pos):
        return [finding(oid, k, "missingTypeEntry", "invalid format - expected 'type' line")]
    pos += 5
    eol = raw.find(b"\n", pos)
    if eol < 0:
        return [finding(oid, k, "missingType", "invalid format - unexpected end after 'type' line")]
    if raw[pos:eol].split(b"\0")[0] not in (b"commit", b"tree", b"blob", b"tag"):
        return [finding(oid, k, "badType", "invalid 'type' value")]
    pos = eol + 1
    if not raw.startswith(b"tag ", pos):
        return [finding(oid, k, "missingTagEntry", "invalid format - expected 'tag' line")]
    pos += 4
    eol = raw.find(b"\n", pos)
    if eol < 0:
        return [finding(oid, k, "missingTag", "invalid format - unexpected end after 'type' line")]
    out: list[Finding] = []
    if _bad_tag_name(raw[pos:eol].split(b"\0")[0]):
        out.append(finding(oid, k, "badTagName", f"invalid 'tag' name: {raw[pos:eol].decode(errors='replace')}"))
    pos = eol + 1
    if not raw.startswith(b"tagger ", pos):
        out.append(finding(oid, k, "missingTaggerEntry", "invalid format - expected 'tagger' line"))
    else:
        pos, bad = _fsck_ident(raw, pos + 7, oid, k)
        if bad:
            return out + [bad]
    if pos < len(raw) and raw[pos : pos + 1] != b"\n":
        out.append(finding(oid, k, "extraHeaderEntry", "invalid format - extra header(s) after 'tagger'"))
    return out


# -- trees ---------------------------------------------------------------------------------------

_S_IFMT = 0o170000
_S_IFLNK = 0o120000
_S_IFDIR = 0o040000
_STANDARD_MODES = {0o100755, 0o100644, 0o120000, 0o040000, 0o160000}
#: Modes as written that raise no finding (git writes these): a tree with only these skips
#: the per-mode checks; 100664 raises one only in strict mode.
_PLAIN_MODES = frozenset({b"100644", b"100755", b"120000", b"40000", b"160000"})
_PLAIN_MODES_LAX = _PLAIN_MODES | {b"100664"}


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
    if not maybe_special(name):
        return
    is_link = mode16 & _S_IFMT == _S_IFLNK
    if is_hfs_dotgit(name) or is_ntfs_dotgit(name):
        flags["hasDotgit"] = True
    if is_dotgitmodules(name):
        if is_link:
            findings.append(finding(oid, k, "gitmodulesSymlink", ".gitmodules is a symbolic link"))
        else:
            report.gitmodules.append(e.id)
    if is_dotgitattributes(name):
        if is_link:
            findings.append(finding(oid, k, "gitattributesSymlink", ".gitattributes is a symlink"))
        else:
            report.gitattributes.append(e.id)
    if is_link and is_dotgitignore(name):
        findings.append(finding(oid, k, "gitignoreSymlink", ".gitignore is a symlink"))
    if is_link and is_dotmailmap(name):
        findings.append(finding(oid, k, "mailmapSymlink", ".mailmap is a symlink"))
    for part in name.split(b"\\")[1:]:
        if is_ntfs_dotgit(part):
            flags["hasDotgit"] = True
        if is_ntfs_dot(part, b"gitmodules", b"gi7eba"):
            if is_link:
                findings.append(finding(oid, k, "gitmodulesSymlink", ".gitmodules is a symbolic link"))
            else:
                report.gitmodules.append(e.id)


#: _special_name's verdicts by (name, symbolic link or not): a history's trees hold the same
#: dotted names again and again (`.gitignore`, `.github`, ...).  Emptied when full.
_NAME_VERDICTS: dict[tuple[bytes, bool], tuple] = {}
_NAME_VERDICTS_MAX = 4096
#: Longer names are checked every time (the table stays small).
_NAME_VERDICT_LONGEST = 255


def _special_name_again(oid: str, e, mode16: int, flags: dict, findings: list, report: "TreeReport") -> None:
    """_special_name, its verdict on a name remembered: it depends on the name and on
    whether the entry is a symbolic link, nothing else (the finding names the tree, the
    report the entry's id: both filled in here)."""
    key = (e.name, mode16 & _S_IFMT == _S_IFLNK)
    verdict = _NAME_VERDICTS.get(key)
    if verdict is None:
        seen: dict[str, bool] = {}
        found: list[Finding] = []
        marks = TreeReport(found, [], [], [])
        _special_name(oid, e, mode16, seen, found, marks)
        verdict = (tuple(seen), tuple((f.msg_id, f.message) for f in found), len(marks.gitmodules),
                   len(marks.gitattributes))
        if len(e.name) <= _NAME_VERDICT_LONGEST:
            if len(_NAME_VERDICTS) >= _NAME_VERDICTS_MAX:
                _NAME_VERDICTS.clear()
            _NAME_VERDICTS[key] = verdict
    set_flags, found_ids, modules, attributes = verdict
    for flag in set_flags:
        flags[flag] = True
    for msg_id, message in found_ids:
        findings.append(finding(oid, "tree", msg_id, message))
    report.gitmodules.extend([e.id] * modules)
    report.gitattributes.extend([e.id] * attributes)


def _is_less_than_slash(c: int) -> bool:
    return c != 0 and c < 0x2F


_SPECIAL_FIRST_BYTES = b"".join(sorted(SPECIAL_FIRST))


def _tree_scan_py(entries: list) -> tuple[bool, dict[bytes, int], list[int], bool]:
    """The per-entry part of fsck_tree (compiled twin: _speedups.tree_scan): whether an id is
    all zeros; {mode bytes: mode as fsck's unsigned short}; the indices of names worth a
    closer look; whether names are unique and keys (a directory's name + "/") never decrease."""
    null_sha1 = b"\0" * 20 in {e.id for e in entries}
    modes = {e.mode_bytes: e.mode & 0xFFFF for e in entries}  # fsck keeps modes in an unsigned short
    first = SPECIAL_FIRST
    special = [
        i for i, e in enumerate(entries)
        if e.name[:1] in first or b"/" in e.name or b"~" in e.name or b"\\" in e.name or not e.name.isascii()
    ]
    names = [e.name for e in entries]
    keys = [e.name + b"/" if e.mode & 0o170000 == _S_IFDIR else e.name for e in entries]
    return null_sha1, modes, special, len(set(names)) == len(names) and keys == sorted(keys)


def fsck_tree(oid: str, raw: bytes, *, strict: bool = False, keep_entries: bool = True) -> TreeReport:
    """git fsck's tree checks (fsck.c fsck_tree), plus duplicate names in any order.

    `strict` makes `100664` a bad file mode, as git's strict fsck (and a fetch with
    fsckObjects) does.  Without keep_entries the report's entries may be left empty
    (the compiled scan then reads most trees without making an object an entry).
    """
    k = "tree"
    findings: list[Finding] = []
    report = TreeReport(findings, [], [], [])
    # A tree the compiled scan reads is well formed (the grammar parse_tree's compiled
    # reader takes): parsing it cannot fail, and is needed only for an odd name or order.
    scan = _compiled_scan(raw, _SPECIAL_FIRST_BYTES) if _compiled_scan is not None else None
    if scan is not None and not keep_entries and not scan[2] and scan[3]:
        if not scan[0] and (_PLAIN_MODES if strict else _PLAIN_MODES_LAX).issuperset(scan[1]):
            return report  # the common tree: no id all zeros, no name worth a look, in order, plain modes
        entries: list = []
    else:
        try:
            entries = parse_tree(raw)
        except ObjectParseError:
            findings.append(finding(oid, k, "badTree", "cannot be parsed as a tree"))
            return report
    report.entries = entries
    flags: dict[str, bool] = {}
    null_sha1, modes, special, orderly = scan if scan is not None else _tree_scan_py(entries)
    if null_sha1:
        flags["nullSha1"] = True
    for mode_bytes, mode16 in modes.items():
        if mode_bytes[:1] == b"0":
            flags["zeroPaddedFilemode"] = True
        if mode16 not in _STANDARD_MODES and not (mode16 == 0o100664 and not strict):
            flags["badFilemode"] = True
    for i in special:  # the rare names worth a closer look
        e = entries[i]
        _special_name_again(oid, e, e.mode & 0xFFFF, flags, findings, report)
    # Order and duplicates: names unique and keys (a directory's name + "/") never
    # decreasing is what git's verify_ordered accepts; anything else is judged entry by
    # entry exactly as git does (which of "not sorted" and "duplicate" it is).
    if not orderly:
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
            findings.append(finding(oid, k, msg_id, message))
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


try:
    from ._speedups import tree_scan as _compiled_scan
except ImportError:  # not built (a source tree without `pip install`): the reference
    _compiled_scan = None
