"""`.gitmodules` and `.gitattributes` as git fsck checks them (fsck.c fsck_blob, submodule-config.c)."""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from .findings import MAX_GITATTRIBUTES, MAX_GITATTRIBUTES_LINE, MAX_GITMODULES, Finding, finding
from .gitconfig import ConfigError, parse_git_config

__all__ = ["check_submodule_name", "check_submodule_url", "fsck_gitmodules", "fsck_gitattributes"]


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
        return [finding(oid, k, "gitmodulesLarge", ".gitmodules too large to parse")]
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
                out.append(finding(oid, k, "gitmodulesName", f"disallowed submodule name: {shown}"))
            if value is None:
                continue
            text = value.decode(errors="replace")
            if key == b"url" and not check_submodule_url(value):
                out.append(finding(oid, k, "gitmodulesUrl", f"disallowed submodule url: {text}"))
            if key == b"path" and _cstr(value).startswith(b"-"):
                out.append(finding(oid, k, "gitmodulesPath", f"disallowed submodule path: {text}"))
            if key == b"update" and _cstr(value).startswith(b"!"):
                out.append(finding(oid, k, "gitmodulesUpdate", f"disallowed submodule update setting: {text}"))
    except ConfigError:
        out.append(finding(oid, k, "gitmodulesParse", "could not parse gitmodules blob"))
    return out


def fsck_gitattributes(oid: str, raw: bytes) -> list[Finding]:
    """fsck.c fsck_blob for a blob some tree names `.gitattributes`."""
    k = "blob"
    if len(raw) > MAX_GITATTRIBUTES:
        return [finding(oid, k, "gitattributesLarge", ".gitattributes too large to parse")]
    text = _cstr(raw)
    if any(len(line) >= MAX_GITATTRIBUTES_LINE for line in text.split(b"\n")):
        return [finding(oid, k, "gitattributesLineLength", ".gitattributes has too long lines to parse")]
    return []
