"""BEP 44 mutable items carrying BEP 46 values: keys, the signed bytes, and their checks.

A mutable torrent (BEP 46) is a DHT item under an ed25519 public key and a salt (the
name), whose value names the publisher's newest torrent: `{"ih": <20-byte info-hash>}`,
signed with the key over `4:salt<salt>3:seqi<seq>e1:v<bencoded value>` (BEP 44).  The
DHT itself (lookups, storage, and the signature check of every item a node stores or a
lookup returns) is libtorrent's (session.py); this module holds what is ours and pure:

- `SigningKey`: an ed25519 key from its 32-byte seed, with the forms libtorrent wants
  (the 32-byte public key, and the 64-byte expanded secret key of its ed25519 code:
  SHA-512 of the seed, clamped, as `ed25519_create_keypair` makes it).  The ed25519
  arithmetic is PyCA `cryptography`'s (OpenSSL), the one library here that does it.
- `MutableItem` and `verify`: an item as a lookup returned it, checked again by us
  (key, salt, sequence number, value, signature) before anything trusts it.
- `value_for` / `info_hash_of`: the BEP 46 value.  libtorrent's Python bindings put a
  mutable item's value as a byte string only (bindings/python/src/session.cpp,
  `put_string`: `e = data`), so our items carry the BEP 46 dictionary bencoded inside
  that string; `info_hash_of` takes both that and a plain BEP 46 dictionary (from a
  publisher whose client can put one).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import bencode

__all__ = [
    "SigningKey", "MutableItem", "ItemError", "MAX_SALT", "MAX_VALUE", "signed_bytes", "target",
    "verify", "value_for", "info_hash_of", "parse_public_key",
]

#: BEP 44: a salt is at most 64 bytes, a value at most 1000 bytes bencoded.
MAX_SALT = 64
MAX_VALUE = 1000
_HEX64 = re.compile(r"[0-9a-f]{64}")


class ItemError(ValueError):
    """A mutable item that is not what it claims to be (bad signature, bad value, bad key)."""


def parse_public_key(text: str) -> bytes:
    """A public key written as 64 hex digits (the form in gitp2p://KEY/NAME)."""
    if not _HEX64.fullmatch(text.lower()):
        raise ItemError(f"{text[:80]!r} is not an ed25519 public key (64 hex digits)")
    key = bytes.fromhex(text)
    try:
        Ed25519PublicKey.from_public_bytes(key)
    except ValueError:
        raise ItemError(f"{text} is not an ed25519 public key") from None
    return key


@dataclass(frozen=True)
class SigningKey:
    """An ed25519 key (its 32-byte seed); never printed (repr shows the public half only)."""

    seed: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise ItemError("an ed25519 seed is 32 bytes")

    def __repr__(self) -> str:
        return f"SigningKey(public={self.public.hex()})"

    @property
    def public(self) -> bytes:
        key = Ed25519PrivateKey.from_private_bytes(self.seed).public_key()
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def expanded(self) -> bytes:
        """The 64-byte secret key libtorrent's ed25519 code signs with (clamped SHA-512 of the seed)."""
        h = bytearray(hashlib.sha512(self.seed).digest())
        h[0] &= 248
        h[31] &= 63
        h[31] |= 64
        return bytes(h)

    def sign(self, salt: bytes, seq: int, value: bytes) -> bytes:
        """The BEP 44 signature of a (bencoded) value under salt and seq."""
        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(signed_bytes(salt, seq, value))


def signed_bytes(salt: bytes, seq: int, value: bytes) -> bytes:
    """What a BEP 44 signature covers: `4:salt<len>:<salt>3:seqi<seq>e1:v<value>` (no salt part if empty)."""
    head = b"4:salt" + bencode.encode(salt) if salt else b""
    return head + b"3:seqi" + str(int(seq)).encode() + b"e1:v" + value


def target(public_key: bytes, salt: bytes) -> bytes:
    """Where the item lives in the DHT: SHA-1 of the key and the salt."""
    return hashlib.sha1(public_key + salt).digest()


@dataclass(frozen=True)
class MutableItem:
    """A mutable item as a DHT lookup returned it.  value: the bencoded value."""

    public_key: bytes
    salt: bytes
    seq: int
    value: bytes
    signature: bytes
    authoritative: bool = False


def verify(item: MutableItem) -> None:
    """ItemError unless the signature is the key's over (salt, seq, value) and the sizes are BEP 44's."""
    if len(item.salt) > MAX_SALT:
        raise ItemError(f"salt of {len(item.salt)} bytes (at most {MAX_SALT})")
    if len(item.value) > MAX_VALUE:
        raise ItemError(f"value of {len(item.value)} bytes (at most {MAX_VALUE})")
    if not 0 <= item.seq < 1 << 63:
        raise ItemError(f"sequence number {item.seq} out of range")
    if len(item.signature) != 64:
        raise ItemError("a signature is 64 bytes")
    try:
        key = Ed25519PublicKey.from_public_bytes(item.public_key)
        key.verify(item.signature, signed_bytes(item.salt, item.seq, item.value))
    except (InvalidSignature, ValueError):
        raise ItemError(f"bad signature on the item of key {item.public_key.hex()[:16]}..., "
                        f"sequence number {item.seq}") from None


def value_for(info_hash: bytes) -> bytes:
    """The bytes our items put (the string libtorrent stores as v): BEP 46's `{"ih": <info-hash>}`."""
    if len(info_hash) != 20:
        raise ItemError("a v1 info-hash is 20 bytes")
    return bencode.encode({b"ih": info_hash})


def info_hash_of(value: bytes) -> bytes:
    """The info-hash a (bencoded) item value names: a BEP 46 dict, or one bencoded inside a string."""
    try:
        obj = bencode.decode(value)
        if isinstance(obj, bytes):  # libtorrent's Python put: the dict travels inside a string
            obj = bencode.decode(obj)
    except bencode.DecodeError as exc:
        raise ItemError(f"the item's value is not bencoded ({exc})") from None
    ih = obj.get(b"ih") if isinstance(obj, dict) else None
    if not isinstance(ih, bytes) or len(ih) != 20:
        raise ItemError("the item's value names no v1 info-hash (BEP 46: {\"ih\": <20 bytes>})")
    return ih
