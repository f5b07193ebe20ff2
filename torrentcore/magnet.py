"""Magnet links (BEP 9) for v1 info-hashes: build and parse."""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, unquote

__all__ = ["Magnet", "MagnetError", "magnet_link", "parse_magnet"]

log = logging.getLogger(__name__)

_MAX_URI_LENGTH = 64 * 1024


class MagnetError(ValueError):
    """A magnet link is malformed or does not name a v1 info-hash."""


@dataclass(frozen=True)
class Magnet:
    """The parts of a magnet link we use."""

    info_hash: bytes
    name: str | None = None
    trackers: tuple[str, ...] = ()
    web_seeds: tuple[str, ...] = ()


def _hash_bytes(info_hash: bytes | str) -> bytes:
    if isinstance(info_hash, str):
        try:
            info_hash = bytes.fromhex(info_hash)
        except ValueError:
            raise MagnetError(f"info-hash {info_hash!r} is not hex") from None
    if not isinstance(info_hash, (bytes, bytearray)) or len(info_hash) != 20:
        raise MagnetError("info-hash must be 20 bytes (or 40 hex digits)")
    return bytes(info_hash)


def magnet_link(
    info_hash: bytes | str,
    name: str | None = None,
    trackers: Iterable[str] = (),
    web_seeds: Iterable[str] = (),
) -> str:
    """Return ``magnet:?xt=urn:btih:<40 hex>`` with optional dn, tr and ws parameters."""
    parts = ["xt=urn:btih:" + _hash_bytes(info_hash).hex()]
    if name is not None:
        parts.append("dn=" + quote(name, safe=""))
    parts += ["tr=" + quote(url, safe="") for url in trackers]
    parts += ["ws=" + quote(url, safe="") for url in web_seeds]
    return "magnet:?" + "&".join(parts)


def parse_magnet(uri: str) -> Magnet:
    """Parse a magnet link naming exactly one v1 info-hash (hex or base32)."""
    if not isinstance(uri, str):
        raise MagnetError("a magnet link must be a string")
    if len(uri) > _MAX_URI_LENGTH:
        raise MagnetError(f"magnet link longer than {_MAX_URI_LENGTH} characters")
    if not uri.lower().startswith("magnet:?"):
        raise MagnetError("not a magnet link: it must start with 'magnet:?'")
    hashes: list[bytes] = []
    name = None
    trackers: list[str] = []
    web_seeds: list[str] = []
    for pair in uri[len("magnet:?"):].split("&"):
        if not pair:
            continue
        key, sep, raw = pair.partition("=")
        if not sep:
            raise MagnetError(f"magnet parameter {pair[:60]!r} has no '='")
        try:
            value = unquote(raw.replace("+", " "), errors="strict")
        except UnicodeDecodeError:
            raise MagnetError(f"magnet parameter {key!r} is not valid UTF-8") from None
        # Numbered forms (xt.1, tr.2) are allowed by the BEP 9 draft.
        base = key.split(".", 1)[0].lower()
        if base == "xt":
            if value.lower().startswith("urn:btih:"):
                hashes.append(_parse_btih(value[len("urn:btih:"):]))
            elif value.lower().startswith("urn:btmh:"):
                log.debug("ignoring v2 hash in magnet link: %s", value)
            else:
                raise MagnetError(f"unsupported exact topic {value[:80]!r}")
        elif base == "dn":
            name = value
        elif base == "tr":
            trackers.append(value)
        elif base == "ws":
            web_seeds.append(value)
    if not hashes:
        raise MagnetError("magnet link has no 'xt=urn:btih:' info-hash")
    if len(set(hashes)) > 1:
        raise MagnetError("magnet link names more than one info-hash")
    return Magnet(hashes[0], name, tuple(trackers), tuple(web_seeds))


def _parse_btih(text: str) -> bytes:
    if len(text) == 40:
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise MagnetError(f"btih {text!r} is not 40 hex digits") from None
    if len(text) == 32:
        try:
            return base64.b32decode(text.upper())
        except (binascii.Error, ValueError):
            raise MagnetError(f"btih {text!r} is not 32 base32 characters") from None
    raise MagnetError(f"btih {text[:80]!r} must be 40 hex or 32 base32 characters")
