"""git fsck's message ids and severities (git 2.39, fsck.h), and a finding: what one check found."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Severity", "DEFAULT_SEVERITY", "ALWAYS_REFUSED", "WHY_ALWAYS", "Finding", "finding",
           "MAX_GITMODULES", "MAX_GITATTRIBUTES", "MAX_GITATTRIBUTES_LINE"]


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


def finding(oid: str, kind: str, msg_id: str, message: str) -> Finding:
    return Finding(msg_id, message, oid, kind)
