"""What a gitp2p:: address names, and the torrent behind it.

    gitp2p::magnet:?xt=urn:btih:<info-hash>&tr=<tracker>   metadata from peers (BEP 9)
    gitp2p::/path/to/all.torrent                           read now (a mount's torrent: the newest)
    gitp2p::https://host/all.torrent                       fetched now
    gitp2p://<public key>/<name>                           the publisher's newest torrent, found
                                                           through the DHT (BEP 46, trust/names.py)

A torrent is checked before anything is downloaded: a v1 torrent named `packs`
whose files are `<object-id>.pack` and one ref manifest, last, or followed only by
its signature `<label>.gitp2p-sig` (docs/torrents.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from torrentcore.magnet import MagnetError, parse_magnet
from torrentcore.metainfo import MetainfoError, Torrent, parse_torrent

from ..errors import FetchError
from ..pack.manifest import MANIFEST_SUFFIX
from ..pack.rollup import ROLLUP_DIR, rollup_from_name
from ..pack.verify import commit_from_name
from ..store.torrents import TORRENT_NAME
from ..trust.names import SCHEME, Name, parse_name
from ..trust.sigfile import SIGNATURE_SUFFIX

__all__ = ["Address", "Layout", "parse_address", "load_torrent", "check_layout", "MAX_TORRENT_BYTES"]

#: The largest .torrent read from a file or URL (a 100,000-commit history gives about 7 MB).
MAX_TORRENT_BYTES = 64 << 20
HTTP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Address:
    kind: str  # "magnet" | "file" | "url" | "name"
    text: str  # as given (the magnet link, the absolute path, the URL, gitp2p://KEY/NAME)
    info_hash: str | None = None  # known before any download: a magnet's
    name: Name | None = None  # a gitp2p://KEY/NAME address's key and name


@dataclass(frozen=True)
class Layout:
    """Where the packs and the manifest are in a gitp2p torrent."""

    packs: tuple[tuple[int, str, int], ...]  # (file index, object id, size), torrent order; a
    # roll-up's object id is its boundary commit's
    manifest: int  # file index of the ref manifest
    manifest_name: str
    torrent: Torrent  # the parsed torrent (trackers, web seeds, info-hash)
    signature: int | None = None  # file index of the manifest's signature (the last file), if signed

    @property
    def count(self) -> int:
        """How many files the torrent has."""
        return len(self.torrent.files)


def parse_address(text: str, cwd: str | None = None) -> Address:
    """The address after `gitp2p::`; FetchError if it is none of the three forms."""
    if not text:
        raise FetchError("empty gitp2p address: give a magnet link, a .torrent path or an http(s) URL")
    if text.startswith(SCHEME):
        return Address("name", text, name=parse_name(text))
    if text.lower().startswith("magnet:"):
        try:
            magnet = parse_magnet(text)
        except MagnetError as exc:
            raise FetchError(f"bad magnet link: {exc}") from None
        return Address("magnet", text, magnet.info_hash.hex())
    if text.startswith(("http://", "https://")):
        return Address("url", text)
    if text.startswith("file://"):
        text = text[len("file://"):]
    if "://" in text:
        raise FetchError(f"unsupported gitp2p address {text[:80]!r}: give a magnet link, a .torrent path or an http(s) URL")
    return Address("file", os.path.abspath(os.path.join(cwd or os.getcwd(), os.path.expanduser(text))))


def load_torrent(address: Address) -> tuple[bytes, Layout]:
    """The .torrent's bytes for a file or URL address, and its layout (check_layout)."""
    if address.kind == "file":
        try:
            with open(address.text, "rb") as fh:
                data = fh.read(MAX_TORRENT_BYTES + 1)
        except OSError as exc:
            raise FetchError(f"cannot read {address.text}: {exc.strerror}") from None
    elif address.kind == "url":
        import urllib.error  # here: 15-25 ms of start-up (http.client, email) only a URL needs
        import urllib.request

        try:
            with urllib.request.urlopen(address.text, timeout=HTTP_TIMEOUT) as resp:
                data = resp.read(MAX_TORRENT_BYTES + 1)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise FetchError(f"cannot fetch {address.text}: {getattr(exc, 'reason', exc)}") from None
    else:
        raise FetchError("a magnet link has no .torrent to read")
    if len(data) > MAX_TORRENT_BYTES:
        raise FetchError(f"{address.text}: more than {MAX_TORRENT_BYTES >> 20} MiB, not a gitp2p torrent")
    return data, check_layout(data, address.text)
    return data


def check_layout(torrent: bytes, where: str, *, info_only: bool = False) -> Layout:
    """Where the packs and manifest are; FetchError unless it is a gitp2p repository torrent.

    info_only: `torrent` is a bare info dictionary (metadata received from peers)."""
    try:
        if info_only:
            torrent = b"d4:info" + torrent + b"e"
        parsed = parse_torrent(torrent, max_size=MAX_TORRENT_BYTES)
    except MetainfoError as exc:
        raise FetchError(f"{where}: not a usable torrent: {exc}") from None
    if parsed.name != TORRENT_NAME or not parsed.multi_file:
        raise FetchError(f"{where}: not a gitp2p repository torrent (its name is {parsed.name!r}, not {TORRENT_NAME!r})")
    packs: list[tuple[int, str, int]] = []
    manifest = signature = None
    files = list(parsed.files)
    last = files[-1].path[-1] if files else ""
    if len(files) >= 2 and last.endswith(SIGNATURE_SUFFIX) and len(files[-1].path) == 1 \
            and files[-2].path[-1] == last[: -len(SIGNATURE_SUFFIX)] + MANIFEST_SUFFIX:
        signature = len(files) - 1
        files = files[:-1]
    for index, entry in enumerate(files):
        name = entry.path[-1]
        if len(entry.path) == 2 and entry.path[0] == ROLLUP_DIR:
            oid = rollup_from_name(name)
            if oid is None:
                raise FetchError(f"{where}: file {'/'.join(entry.path)[:80]!r} is not a roll-up; not a gitp2p torrent")
        elif len(entry.path) != 1:
            raise FetchError(f"{where}: file {'/'.join(entry.path)[:80]!r} is in a subdirectory; not a gitp2p torrent")
        else:
            oid = commit_from_name(name)
        if oid is not None:
            packs.append((index, oid, entry.length))
        elif name.endswith(MANIFEST_SUFFIX) and index == len(files) - 1:
            manifest = index
        else:
            raise FetchError(f"{where}: file {name[:80]!r} is neither a pack nor the ref manifest (last, or before "
                             f"its signature)")
    if manifest is None:
        raise FetchError(f"{where}: no ref manifest (`*{MANIFEST_SUFFIX}`, the last file); not a gitp2p torrent")
    return Layout(tuple(packs), manifest, parsed.files[manifest].path[-1], parsed, signature)
