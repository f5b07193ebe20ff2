"""BitTorrent v1 metainfo: build info dicts and .torrent files, parse them strictly."""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from torrentcore import bencode

__all__ = [
    "MAX_PIECE_LENGTH",
    "MIN_PIECE_LENGTH",
    "FileEntry",
    "MetainfoError",
    "Torrent",
    "build_info",
    "build_torrent",
    "check_path_component",
    "info_hash",
    "parse_torrent",
    "piece_length_for",
]

log = logging.getLogger(__name__)

#: Bounds of ``piece_length_for``: 16 KiB (one BitTorrent block) to 16 MiB.
MIN_PIECE_LENGTH = 16 * 1024
MAX_PIECE_LENGTH = 16 * 1024 * 1024
#: ``piece_length_for`` picks the smallest power of two giving at most this many pieces.
TARGET_MAX_PIECES = 2000
#: ``parse_torrent`` accepts power-of-two piece lengths in this (wider) range.
PARSE_MIN_PIECE_LENGTH = 16 * 1024
PARSE_MAX_PIECE_LENGTH = 128 * 1024 * 1024
#: Files in one torrent ``parse_torrent`` accepts (bounds work on hostile input).
MAX_FILES = 1_000_000
_MAX_PATH_DEPTH = 64

_READ_BLOCK = 1024 * 1024
_TOP_LEVEL_KEYS = frozenset({b"info", b"announce", b"announce-list", b"url-list"})

# A chunk source: read(file_index, offset, length) -> bytes, or the concatenated contents.
ReadFn = Callable[[int, int, int], bytes]


class MetainfoError(ValueError):
    """A torrent or the input to build one is malformed or unsafe."""


@dataclass(frozen=True)
class FileEntry:
    """One file of a torrent: its safe relative path, length and offset in the byte stream."""

    path: tuple[str, ...]
    length: int
    offset: int


@dataclass(frozen=True)
class Torrent:
    """A parsed, validated v1 .torrent file."""

    info_hash: bytes
    name: str
    piece_length: int
    pieces: tuple[bytes, ...]
    files: tuple[FileEntry, ...]
    multi_file: bool
    private: bool
    announce_tiers: tuple[tuple[str, ...], ...]
    web_seeds: tuple[str, ...]
    info: dict = field(repr=False)
    extra: dict = field(repr=False)

    @property
    def total_length(self) -> int:
        return sum(f.length for f in self.files)

    @property
    def trackers(self) -> tuple[str, ...]:
        """Every tracker URL, tier by tier."""
        return tuple(url for tier in self.announce_tiers for url in tier)

    def piece_size(self, index: int) -> int:
        """Length of piece *index* (the last one may be short)."""
        if not 0 <= index < len(self.pieces):
            raise IndexError(index)
        return min(self.piece_length, self.total_length - index * self.piece_length)


def piece_length_for(total_size: int) -> int:
    """Piece length policy: the smallest power of two from 16 KiB to 16 MiB that gives at
    most 2000 pieces, so a torrent has 1000-2000 pieces unless it is below ~31 MiB
    (fewer, 16 KiB pieces) or above ~31 GiB (more, 16 MiB pieces)."""
    if total_size < 0:
        raise MetainfoError("total size cannot be negative")
    wanted = math.ceil(total_size / TARGET_MAX_PIECES)
    length = MIN_PIECE_LENGTH
    while length < wanted and length < MAX_PIECE_LENGTH:
        length *= 2
    return length


def check_path_component(part: object, what: str = "path component") -> str:
    """Return *part* if it is a safe file name (no separators, not '.'/'..', no NUL)."""
    if not isinstance(part, str):
        raise MetainfoError(f"{what} must be a string, not {type(part).__name__}")
    if part in ("", ".", ".."):
        raise MetainfoError(f"unsafe {what} {part!r}")
    if "/" in part or "\\" in part or "\x00" in part:
        raise MetainfoError(f"unsafe {what} {part!r}: contains a separator or NUL")
    return part


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


class _PieceHasher:
    """Accumulates the file stream and emits one SHA-1 per piece."""

    def __init__(self, piece_length: int) -> None:
        self.piece_length = piece_length
        self.digests: list[bytes] = []
        self._sha = hashlib.sha1()
        self._filled = 0

    def update(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            take = min(len(view), self.piece_length - self._filled)
            self._sha.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == self.piece_length:
                self.digests.append(self._sha.digest())
                self._sha = hashlib.sha1()
                self._filled = 0

    def finish(self) -> bytes:
        if self._filled:
            self.digests.append(self._sha.digest())
        return b"".join(self.digests)


def build_info(
    files: Sequence[tuple[Sequence[str], int]],
    read: ReadFn | Iterable[bytes],
    name: str,
    piece_length: int | None = None,
    *,
    multi_file: bool | None = None,
    private: bool = False,
) -> dict:
    """Build a v1 info dict (bytes keys, as ``bencode.decode`` returns them).

    *files* lists ``(path_components, size)`` in torrent order; *read* is either a
    callable ``read(file_index, offset, length) -> bytes`` or an iterable of chunks whose
    concatenation is every file's bytes back to back. The result is single-file when there
    is one file and *multi_file* is not true; its ``name`` is then *name* (the file's own
    path is ignored). No pad files, no v2 fields: see docs/torrentcore.md.
    """
    check_path_component(name, "torrent name")
    if not files:
        raise MetainfoError("a torrent needs at least one file")
    entries: list[tuple[tuple[str, ...], int]] = []
    for path, size in files:
        path = tuple(path)
        if not path:
            raise MetainfoError("a file path needs at least one component")
        for part in path:
            check_path_component(part)
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise MetainfoError(f"bad size {size!r} for {'/'.join(path)}")
        entries.append((path, size))
    _check_unique_paths([p for p, _ in entries])
    total = sum(size for _, size in entries)
    if total == 0:
        raise MetainfoError("a torrent needs at least one byte of data")
    if piece_length is None:
        piece_length = piece_length_for(total)
    if not _is_power_of_two(piece_length) or piece_length < MIN_PIECE_LENGTH:
        raise MetainfoError(f"piece length {piece_length} is not a power of two >= 16 KiB")
    if multi_file is None:
        multi_file = len(entries) > 1
    if not multi_file and len(entries) > 1:
        raise MetainfoError("a single-file torrent cannot hold several files")

    hasher = _PieceHasher(piece_length)
    if callable(read):
        for index, (path, size) in enumerate(entries):
            offset = 0
            while offset < size:
                want = min(_READ_BLOCK, size - offset)
                chunk = read(index, offset, want)
                if len(chunk) != want:
                    raise MetainfoError(
                        f"short read of {'/'.join(path)}: {len(chunk)} of {want} bytes "
                        f"at offset {offset}"
                    )
                hasher.update(chunk)
                offset += want
    else:
        seen = 0
        for chunk in read:
            seen += len(chunk)
            if seen > total:
                raise MetainfoError(f"data is longer than the {total} bytes the files declare")
            hasher.update(chunk)
        if seen != total:
            raise MetainfoError(f"data has {seen} bytes but the files declare {total}")

    info: dict = {b"name": name.encode("utf-8"), b"piece length": piece_length}
    if multi_file:
        info[b"files"] = [
            {b"length": size, b"path": [part.encode("utf-8") for part in path]}
            for path, size in entries
        ]
    else:
        info[b"length"] = total
    info[b"pieces"] = hasher.finish()
    if private:
        info[b"private"] = 1
    log.debug("built info %s: %d bytes, %d pieces of %d", name, total,
              len(info[b"pieces"]) // 20, piece_length)
    return info


def _check_unique_paths(paths: Iterable[tuple[str, ...]]) -> None:
    """Refuse duplicate paths and a file that is also another file's directory."""
    files = set()
    dirs = set()
    for path in paths:
        if path in files or path in dirs:
            raise MetainfoError(f"path {'/'.join(path)!r} appears twice or is a directory")
        files.add(path)
        for i in range(1, len(path)):
            dirs.add(path[:i])
    clash = files & dirs
    if clash:
        raise MetainfoError(f"path {'/'.join(sorted(clash)[0])!r} is both a file and a directory")


def info_hash(info: dict) -> bytes:
    """SHA-1 of the canonical bencoding of *info* (the v1 info-hash, 20 bytes)."""
    return hashlib.sha1(bencode.encode(info)).digest()


def build_torrent(
    info: dict,
    announce: Sequence[str | Sequence[str]] = (),
    web_seeds: Sequence[str] = (),
    extra: dict | None = None,
    *,
    creation_date: int | None = None,
    created_by: str | None = None,
    comment: str | None = None,
) -> bytes:
    """Bencode a .torrent around *info*.

    *announce* holds tracker URLs; a plain string is a tier of its own, a list of strings
    is one tier (BEP 12). ``announce`` is the first URL. *web_seeds* becomes ``url-list``
    (BEP 19). *extra* adds further top-level keys (a ref manifest, say). Nothing volatile
    is written unless passed, so the same arguments give the same bytes.
    """
    torrent: dict = {b"info": info}
    tiers: list[list[bytes]] = []
    for entry in announce:
        tier = [entry] if isinstance(entry, str) else list(entry)
        if not tier or not all(isinstance(url, str) and url for url in tier):
            raise MetainfoError(f"bad announce entry {entry!r}")
        tiers.append([url.encode("utf-8") for url in tier])
    if tiers:
        torrent[b"announce"] = tiers[0][0]
        torrent[b"announce-list"] = tiers
    if web_seeds:
        if not all(isinstance(url, str) and url for url in web_seeds):
            raise MetainfoError(f"bad web seeds {web_seeds!r}")
        torrent[b"url-list"] = [url.encode("utf-8") for url in web_seeds]
    if creation_date is not None:
        torrent[b"creation date"] = int(creation_date)
    if created_by is not None:
        torrent[b"created by"] = created_by.encode("utf-8")
    if comment is not None:
        torrent[b"comment"] = comment.encode("utf-8")
    for key, value in (extra or {}).items():
        bkey = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        if bkey in torrent or bkey in _TOP_LEVEL_KEYS:
            raise MetainfoError(f"extra key {bkey!r} clashes with a standard key")
        torrent[bkey] = value
    try:
        return bencode.encode(torrent)
    except bencode.EncodeError as exc:
        raise MetainfoError(f"cannot encode torrent: {exc}") from None


def _get(d: dict, key: bytes, kind: type, where: str, *, optional: bool = False):
    if key not in d:
        if optional:
            return None
        raise MetainfoError(f"{where} has no {key.decode()!r} key")
    value = d[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MetainfoError(f"{where} key {key.decode()!r} must be {kind.__name__}")
    return value


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MetainfoError(f"{what} is not valid UTF-8: {raw[:60]!r}") from None


def parse_torrent(data: bytes, *, max_size: int = bencode.DEFAULT_MAX_SIZE) -> Torrent:
    """Parse and validate a v1 .torrent; raise ``MetainfoError`` for anything unsafe."""
    try:
        top = bencode.decode(data, max_size=max_size)
    except bencode.DecodeError as exc:
        raise MetainfoError(f"not a torrent: {exc}") from None
    if not isinstance(top, dict):
        raise MetainfoError("not a torrent: top level is not a dict")
    info = _get(top, b"info", dict, "torrent")
    # decode() only accepts canonical input, so re-encoding gives the original bytes.
    ihash = info_hash(info)

    name = check_path_component(_text(_get(info, b"name", bytes, "info"), "name"), "name")
    piece_length = _get(info, b"piece length", int, "info")
    if not _is_power_of_two(piece_length) or not (
        PARSE_MIN_PIECE_LENGTH <= piece_length <= PARSE_MAX_PIECE_LENGTH
    ):
        raise MetainfoError(
            f"piece length {piece_length} is not a power of two from 16 KiB to 128 MiB"
        )
    pieces_raw = _get(info, b"pieces", bytes, "info")
    if len(pieces_raw) % 20:
        raise MetainfoError(f"pieces has {len(pieces_raw)} bytes, not a multiple of 20")
    if b"meta version" in info or b"file tree" in info:
        raise MetainfoError("v2 and hybrid torrents are not supported")
    private = _get(info, b"private", int, "info", optional=True)
    if private not in (None, 0, 1):
        raise MetainfoError(f"private must be 0 or 1, not {private}")

    has_length = b"length" in info
    has_files = b"files" in info
    if has_length == has_files:
        raise MetainfoError("info must have exactly one of 'length' and 'files'")
    files: list[FileEntry] = []
    if has_length:
        length = _get(info, b"length", int, "info")
        if length < 0:
            raise MetainfoError("negative length")
        files.append(FileEntry((name,), length, 0))
    else:
        raw_files = _get(info, b"files", list, "info")
        if not raw_files:
            raise MetainfoError("files list is empty")
        if len(raw_files) > MAX_FILES:
            raise MetainfoError(f"more than {MAX_FILES} files")
        offset = 0
        for i, entry in enumerate(raw_files):
            where = f"files[{i}]"
            if not isinstance(entry, dict):
                raise MetainfoError(f"{where} is not a dict")
            length = _get(entry, b"length", int, where)
            if length < 0:
                raise MetainfoError(f"{where} has a negative length")
            raw_path = _get(entry, b"path", list, where)
            if not raw_path or len(raw_path) > _MAX_PATH_DEPTH:
                raise MetainfoError(f"{where} path has {len(raw_path)} components")
            path = []
            for part in raw_path:
                if not isinstance(part, bytes):
                    raise MetainfoError(f"{where} path component is not a string")
                path.append(check_path_component(_text(part, f"{where} path")))
            if b"attr" in entry and isinstance(entry[b"attr"], bytes) and b"p" in entry[b"attr"]:
                raise MetainfoError(f"{where} is a BEP 47 pad file; pad files are not supported")
            files.append(FileEntry(tuple(path), length, offset))
            offset += length
        _check_unique_paths(f.path for f in files)
    total = sum(f.length for f in files)
    if total == 0:
        raise MetainfoError("torrent has no data")
    expected = -(-total // piece_length)
    if len(pieces_raw) // 20 != expected:
        raise MetainfoError(
            f"{len(pieces_raw) // 20} piece hashes for {total} bytes in pieces of "
            f"{piece_length} (expected {expected})"
        )
    pieces = tuple(pieces_raw[i:i + 20] for i in range(0, len(pieces_raw), 20))

    tiers = _parse_announce(top)
    web_seeds = _parse_url_list(top)
    extra = {k: v for k, v in top.items() if k not in _TOP_LEVEL_KEYS}
    return Torrent(
        info_hash=ihash,
        name=name,
        piece_length=piece_length,
        pieces=pieces,
        files=tuple(files),
        multi_file=has_files,
        private=private == 1,
        announce_tiers=tiers,
        web_seeds=web_seeds,
        info=info,
        extra=extra,
    )


def _parse_announce(top: dict) -> tuple[tuple[str, ...], ...]:
    tiers: list[tuple[str, ...]] = []
    if b"announce-list" in top:
        raw = _get(top, b"announce-list", list, "torrent")
        for tier in raw:
            if not isinstance(tier, list) or not all(isinstance(u, bytes) for u in tier):
                raise MetainfoError("announce-list must be a list of lists of strings")
            urls = tuple(_text(u, "tracker URL") for u in tier if u)
            if urls:
                tiers.append(urls)
    if not tiers and b"announce" in top:
        url = _text(_get(top, b"announce", bytes, "torrent"), "announce URL")
        if url:
            tiers.append((url,))
    return tuple(tiers)


def _parse_url_list(top: dict) -> tuple[str, ...]:
    if b"url-list" not in top:
        return ()
    raw = top[b"url-list"]
    if isinstance(raw, bytes):  # BEP 19 allows a single string
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(u, bytes) for u in raw):
        raise MetainfoError("url-list must be a string or a list of strings")
    return tuple(_text(u, "web seed URL") for u in raw if u)
