"""Names a checkout must never write: `.git` (and `.gitmodules`, ...) as NTFS and HFS+ spell them.

git 2.39's path.c (is_ntfs_dot*) and utf8.c (is_hfs_dot*), read as git reads them.
"""

from __future__ import annotations

__all__ = ["is_hfs_dotgit", "is_ntfs_dotgit", "is_ntfs_dot", "is_dotgitmodules", "is_dotgitattributes",
           "is_dotgitignore", "is_dotmailmap", "maybe_special", "SPECIAL_FIRST"]


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
    if name.isascii():  # every byte a code point of its own, none of them ignored
        return list(name)
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


def is_ntfs_dot(name: bytes, needle: bytes, short_prefix: bytes) -> bool:
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
    return _is_hfs_dot(name, b"gitmodules") or is_ntfs_dot(name, b"gitmodules", b"gi7eba")


def is_dotgitattributes(name: bytes) -> bool:
    return _is_hfs_dot(name, b"gitattributes") or is_ntfs_dot(name, b"gitattributes", b"gi7d29")


def is_dotgitignore(name: bytes) -> bool:
    return _is_hfs_dot(name, b"gitignore") or is_ntfs_dot(name, b"gitignore", b"gi250a")


def is_dotmailmap(name: bytes) -> bool:
    return _is_hfs_dot(name, b"mailmap") or is_ntfs_dot(name, b"mailmap", b"maba30")


def maybe_special(name: bytes) -> bool:
    """Cheap filter: only such names can be a spelling of .git, .gitmodules, ... .

    Every rule above needs one of: a first code point `.` once HFS+ has dropped what it
    ignores (so a first byte `.` or a non-ASCII one), a `~` (`git~1` and the other 8.3
    short names, plain or hashed, have it within their first 7 bytes) or a `\\` (the
    parts checked after one).  A name with none of these is judged by no rule, so it is
    not looked at; tests/packs/test_fsck.py checks this against the rules themselves.
    """
    return name[:1] in SPECIAL_FIRST or b"~" in name or b"\\" in name or not name.isascii()


#: First bytes of names worth a closer look (besides any holding `~`, `\\` or a non-ASCII byte).
SPECIAL_FIRST = frozenset([b"."])
