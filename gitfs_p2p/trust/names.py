"""Names that follow the publisher: `gitp2p://<ed25519 public key>/<name>` (BEP 46 over BEP 44).

The publisher's key: a 32-byte ed25519 seed in GIT_DIR/gitp2p/dht-key (hex, mode 0600,
made on first publish), or the file `gitp2p.dhtKey` names.  Its public half, in hex, is the
address's KEY; the name is the DHT item's salt.  The item's value names the publisher's
newest torrent by info-hash (torrentcore/mutable.py).

A receiver takes an item only when (checked in this order): the lookup returned it under
this key and name, its signature is the key's (libtorrent checked it; we check again, with
the item's bytes), its value names an info-hash, and its sequence number is not older than
the last one this repository accepted for the name (equal: only for the same info-hash).
What was accepted is kept in GIT_DIR/gitp2p/trust/names (JSON, written durably).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

from torrentcore.mutable import ItemError, MutableItem, SigningKey, info_hash_of, parse_public_key, verify

from ..durable import write_durably
from ..errors import FetchError, PublishError
from ..git.runner import run_git
from .verify import load_accepted

__all__ = [
    "SCHEME", "Name", "NameRefused", "parse_name", "publisher_key", "key_path", "AcceptedNames", "check_item",
    "PUBLISH_REFS", "ALL_LABEL", "published_choice", "set_published_choice", "published_label",
]

SCHEME = "gitp2p://"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class NameRefused(FetchError):
    """A DHT item for a name that must not be believed (bad signature, older, another value)."""


@dataclass(frozen=True)
class Name:
    public_key: bytes
    name: str

    @property
    def salt(self) -> bytes:
        return self.name.encode()

    @property
    def address(self) -> str:
        return f"{SCHEME}{self.public_key.hex()}/{self.name}"

    @property
    def key_hex(self) -> str:
        return self.public_key.hex()


#: git config: the refs a repository publishes under its name (full ref names separated by
#: spaces, one value: written at once; `gitp2p publish REPO REF...` sets it).  Unset: every
#: branch and tag.
PUBLISH_REFS = "gitp2p.publishRefs"
#: The label of the mount's torrent of every branch and tag (mount/layout.py).
ALL_LABEL = "all"


def published_choice(git_dir: str) -> tuple[str, ...]:
    """gitp2p.publishRefs: the chosen refs, sorted (empty: every branch and tag)."""
    out = run_git("config", "--get-all", PUBLISH_REFS, git_dir=git_dir, check=False)
    return tuple(sorted(set(out.split())))


def set_published_choice(git_dir: str, choice) -> None:
    """Set gitp2p.publishRefs to these full ref names (none: unset it, publish everything)."""
    if choice:
        run_git("config", "--replace-all", PUBLISH_REFS, " ".join(sorted(set(choice))), git_dir=git_dir)
    else:
        run_git("config", "--unset-all", PUBLISH_REFS, git_dir=git_dir, check=False)


def published_label(choice: tuple[str, ...]) -> str:
    """The label of the torrent a name publishes: `all`, or the one `gitp2p torrent REPO
    REF...` gives the chosen refs (their short names joined by `+`), so the mount's torrent
    of the choice has the same info-hash as that command's."""
    from ..store.torrents import label_for

    return label_for(sorted(choice)) if choice else ALL_LABEL


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"name {name[:80]!r}: 1 to 64 of A-Z a-z 0-9 . _ - (not starting with . _ -)")
    return name


def parse_name(text: str) -> Name:
    """`gitp2p://KEY/NAME` (KEY: 64 hex digits); FetchError if it is not one."""
    if not text.startswith(SCHEME):
        raise FetchError(f"{text[:80]!r} is not a gitp2p://KEY/NAME address")
    key, sep, name = text[len(SCHEME):].partition("/")
    name = name.rstrip("/")
    try:
        if not sep:
            raise ValueError("give gitp2p://KEY/NAME (a name after the key)")
        return Name(parse_public_key(key), check_name(name))
    except (ItemError, ValueError) as exc:
        raise FetchError(f"bad gitp2p:// address {text[:120]!r}: {exc}") from None


def key_path(git_dir: str) -> str:
    """Where the publisher's key is: gitp2p.dhtKey, or GIT_DIR/gitp2p/dht-key."""
    out = run_git("config", "--type=path", "--get", "gitp2p.dhtKey", git_dir=git_dir, check=False).strip()
    if out:
        return os.path.abspath(os.path.expanduser(out))
    return os.path.join(git_dir, "gitp2p", "dht-key")


def publisher_key(git_dir: str, *, create: bool = False) -> SigningKey:
    """The repository's publishing key; made (0600, durably) when absent and `create`."""
    path = key_path(git_dir)
    try:
        with open(path, "rb") as fh:
            text = fh.read(4096).split(b"#", 1)[0].strip()
    except FileNotFoundError:
        if not create:
            raise PublishError(f"no publishing key at {path} (`gitp2p publish` makes one)") from None
        return _create_key(path)
    except OSError as exc:
        raise PublishError(f"cannot read the publishing key {path}: {exc.strerror}") from None
    try:
        seed = bytes.fromhex(text.decode("ascii"))
        return SigningKey(seed)
    except (ValueError, ItemError):
        raise PublishError(f"{path}: not a gitp2p publishing key (64 hex digits, an ed25519 seed)") from None


def _create_key(path: str) -> SigningKey:
    key = SigningKey(os.urandom(32))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(f"{key.seed.hex()}\n# gitp2p ed25519 publishing key (secret); public {key.public.hex()}\n"
                     .encode())
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # never replaces a key made meanwhile
        except FileExistsError:
            return _read_existing(path)
    finally:
        os.unlink(tmp)
    dir_fd = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return key


def _read_existing(path: str) -> SigningKey:
    with open(path, "rb") as fh:
        return SigningKey(bytes.fromhex(fh.read(4096).split(b"#", 1)[0].strip().decode("ascii")))


class AcceptedNames:
    """The highest sequence number accepted per name, and the info-hash it named."""

    def __init__(self, git_dir: str):
        self.path = os.path.join(git_dir, "gitp2p", "trust", "names")
        self.entries = load_accepted(self.path)

    def last(self, name: Name) -> dict | None:
        return self.entries.get(name.address)

    def record(self, name: Name, seq: int, info_hash: str) -> None:
        last = self.entries.get(name.address)
        if last is not None and (last["seq"], last.get("ih")) == (seq, info_hash):
            return
        self.entries[name.address] = {"seq": seq, "ih": info_hash}
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        write_durably(self.path, json.dumps(self.entries, indent=1, sort_keys=True).encode() + b"\n")


def check_item(name: Name, item: MutableItem | None, accepted: AcceptedNames) -> tuple[int, str]:
    """(sequence number, info-hash hex) the item names, if it may be believed; NameRefused if not."""
    where = name.address
    if item is None:
        raise NameRefused(f"{where}: the DHT holds no item for this name (nothing published, or it expired: "
                          "the publisher's `gitp2p seed` puts it again)")
    if item.public_key != name.public_key or item.salt != name.salt:
        raise NameRefused(f"{where}: the lookup answered for another key or name")
    try:
        verify(item)
        ih = info_hash_of(item.value).hex()
    except ItemError as exc:
        raise NameRefused(f"{where}: {exc}") from None
    last = accepted.last(name)
    if last is not None:
        if item.seq < last["seq"]:
            raise NameRefused(f"{where}: replay: the DHT's item has sequence number {item.seq}, older than "
                              f"{last['seq']} accepted before (torrent {last.get('ih')})")
        if item.seq == last["seq"] and ih != last.get("ih"):
            raise NameRefused(f"{where}: sequence number {item.seq} was accepted before for torrent "
                              f"{last.get('ih')}, now it names {ih}")
    return item.seq, ih
