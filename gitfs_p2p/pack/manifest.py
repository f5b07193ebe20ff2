"""The ref manifest: which refs a torrent publishes, as a small self-verifying text file.

Version 2 (docs/pack-format.md, "Ref manifest")::

    # gitp2p ref manifest 2
    ref: refs/heads/main HEAD
    <40-hex object id> refs/heads/main
    <40-hex object id> refs/tags/v1.0
    # sha256 <64-hex digest of every byte above this line>

Lines end in LF; refs are sorted by name; `ref: TARGET HEAD` (optional)
says where HEAD points.  Each ref names the object it names in the
publishing repository: a commit, or an annotated tag (whose pack travels in
the same torrent).  Version 1 listed annotated tags peeled to their commit;
it is still read.  The last line makes a partly downloaded (zero-filled)
file detectably incomplete.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

__all__ = [
    "MANIFEST_SUFFIX",
    "PUBLISHED_PREFIXES",
    "ManifestError",
    "RefManifest",
    "check_ref_name",
    "check_published",
    "check_head",
    "checksum_ok",
]

MANIFEST_SUFFIX = ".gitp2p-refs"
_MAGIC = b"# gitp2p ref manifest 2\n"
_MAGIC_V1 = b"# gitp2p ref manifest 1\n"
_MAX_SIZE = 16 << 20
_HEX40 = re.compile(rb"[0-9a-f]{40}\Z")


class ManifestError(ValueError):
    """A manifest that is malformed, incomplete or names an unsafe ref."""


def check_ref_name(name: str) -> str:
    """Accept only names `git check-ref-format` accepts, under refs/ (or HEAD)."""
    if name == "HEAD":
        return name
    bad = (
        not name.startswith("refs/")
        or name.endswith("/")
        or name.endswith(".")
        or name.endswith(".lock")
        or "//" in name
        or ".." in name
        or "@{" in name
        or any(c in name for c in " ~^:?*[\\\x7f")
        or any(ord(c) < 0x20 for c in name)
        or any(part.startswith(".") or part.endswith(".lock") or not part for part in name.split("/"))
        or name.count("/") < 2
    )
    if bad:
        raise ManifestError(f"unsafe or invalid ref name {name!r}")
    return name


#: The only refs a manifest may set; HEAD may only point into the first.
PUBLISHED_PREFIXES = ("refs/heads/", "refs/tags/")


def check_published(name: str) -> str:
    """A ref a manifest may set: a valid name under refs/heads/ or refs/tags/."""
    check_ref_name(name)
    if not name.startswith(PUBLISHED_PREFIXES):
        raise ManifestError(f"{name!r}: a manifest may set only branches (refs/heads/*) and tags (refs/tags/*)")
    return name


def check_head(name: str) -> str:
    """Where a manifest's HEAD may point: a branch."""
    check_ref_name(name)
    if not name.startswith("refs/heads/"):
        raise ManifestError(f"ref: {name} HEAD: HEAD may only point at a branch (refs/heads/*)")
    return name


def _split_checksum(data: bytes) -> tuple[bytes, bytes] | None:
    """(body, checksum line) when the last line is a sha256 line, else None."""
    if not data.endswith(b"\n"):
        return None
    cut = data.rfind(b"# sha256 ", 0, len(data) - 1)
    if cut < 0:
        return None
    return data[:cut], data[cut:]


def checksum_ok(data: bytes) -> bool:
    """The manifest's own sha256 line matches, so its bytes are final."""
    parts = _split_checksum(data)
    return parts is not None and parts[1] == b"# sha256 " + hashlib.sha256(parts[0]).hexdigest().encode() + b"\n"


@dataclass(frozen=True)
class RefManifest:
    refs: dict[str, str] = field(default_factory=dict)  # ref name -> object hex (commit or tag)
    head: str | None = None  # ref name HEAD points at, if any
    version: int = 2  # 1: tags were listed peeled

    def to_bytes(self) -> bytes:
        lines = [_MAGIC if self.version == 2 else _MAGIC_V1]
        if self.head is not None:
            lines.append(f"ref: {check_head(self.head)} HEAD\n".encode())
        for name in sorted(self.refs):
            oid = self.refs[name]
            if not _HEX40.match(oid.encode()):
                raise ManifestError(f"bad object id {oid!r} for {name}")
            lines.append(f"{oid} {check_published(name)}\n".encode())
        body = b"".join(lines)
        return body + b"# sha256 " + hashlib.sha256(body).hexdigest().encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> "RefManifest":
        if len(data) > _MAX_SIZE:
            raise ManifestError(f"manifest of {len(data)} bytes is larger than {_MAX_SIZE}")
        if data.startswith(_MAGIC):
            magic, version = _MAGIC, 2
        elif data.startswith(_MAGIC_V1):
            magic, version = _MAGIC_V1, 1
        else:
            raise ManifestError("not a gitp2p ref manifest (or not fully downloaded)")
        parts = _split_checksum(data)
        if parts is None:
            raise ManifestError("manifest is incomplete (no final checksum line)")
        if not checksum_ok(data):
            raise ManifestError("manifest checksum does not match (incomplete or corrupt)")
        body = parts[0]
        refs: dict[str, str] = {}
        head = None
        for raw in body[len(magic) :].split(b"\n")[:-1]:
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ManifestError("manifest line is not UTF-8") from None
            if line.startswith("ref: ") and line.endswith(" HEAD"):
                if head is not None:
                    raise ManifestError("manifest says where HEAD points twice")
                head = check_head(line[5:-5])
                continue
            oid, sep, name = line.partition(" ")
            if not sep or not _HEX40.match(oid.encode()):
                raise ManifestError(f"bad manifest line {line[:80]!r}")
            if name in refs:
                raise ManifestError(f"ref {name} listed twice")
            refs[check_published(name)] = oid
        return cls(refs, head, version)
