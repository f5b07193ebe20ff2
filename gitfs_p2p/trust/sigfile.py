"""The ref signature file (`<label>.gitp2p-sig`): its bytes, parsed and built; no I/O.

Version 1 (docs/pack-format.md, "Ref signature")::

    # gitp2p ref signature 1
    name <label>
    seq <decimal, 1 to 2**63-1>
    manifest <64-hex sha256 of the manifest file's bytes>
    -----BEGIN SSH SIGNATURE-----
    <base64, lines of at most 76 characters>
    -----END SSH SIGNATURE-----
    # sha256 <64-hex digest of every byte above this line>

The first four lines, exactly as they stand (LF endings), are the signed payload:
`ssh-keygen -Y sign -n gitp2p-refs@gitp2p` over them gives the armored block.  The
name binds the signature to one manifest label; the sequence number only grows at
the publisher, so a receiver can refuse an older one (replay); the digest binds it
to the manifest's exact bytes.  The same payload (key, name, seq, digest) is what a
BEP 46 item will carry later.  The last line, as in the manifest, makes a partly
downloaded (zero-filled) file detectably incomplete.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from dataclasses import dataclass

__all__ = [
    "SIGNATURE_SUFFIX",
    "NAMESPACE",
    "MAX_SIGNATURE_FILE",
    "SignatureFormatError",
    "RefSignature",
    "payload",
    "build",
    "parse",
    "checksum_ok",
    "ssh_key_fingerprint",
]

SIGNATURE_SUFFIX = ".gitp2p-sig"
#: The ssh-keygen -Y namespace of our signatures: never "git", so a commit signature is no ref signature.
NAMESPACE = "gitp2p-refs@gitp2p"
#: A signature file is a few hundred bytes; anything larger is refused unread.
MAX_SIGNATURE_FILE = 16 << 10
MAX_SEQ = (1 << 63) - 1
_MAGIC = b"# gitp2p ref signature 1\n"
_BEGIN = b"-----BEGIN SSH SIGNATURE-----\n"
_END = b"-----END SSH SIGNATURE-----\n"
_NAME = re.compile(rb"[A-Za-z0-9._+-]{1,100}\Z")
_HEX64 = re.compile(rb"[0-9a-f]{64}\Z")
_SEQ = re.compile(rb"[1-9][0-9]{0,18}\Z")
_B64LINE = re.compile(rb"[A-Za-z0-9+/=]{1,76}\Z")


class SignatureFormatError(ValueError):
    """Bytes that are not a well-formed ref signature file (or not fully downloaded)."""


@dataclass(frozen=True)
class RefSignature:
    name: str  # the manifest's label
    seq: int
    manifest_sha256: str  # hex
    armored: bytes  # the -----BEGIN SSH SIGNATURE----- block, as ssh-keygen wrote it
    key_type: str  # from inside the signature: e.g. ssh-ed25519
    key_blob: bytes  # the signer's public key (ssh wire format)
    namespace: str

    @property
    def payload(self) -> bytes:
        return payload(self.name, self.seq, self.manifest_sha256)

    @property
    def fingerprint(self) -> str:
        return ssh_key_fingerprint(self.key_blob)

    @property
    def public_key(self) -> str:
        """The signer's key as an allowed-signers / authorized_keys line would give it."""
        return f"{self.key_type} {base64.b64encode(self.key_blob).decode()}"


def payload(name: str, seq: int, manifest_sha256: str) -> bytes:
    """The signed bytes for a manifest of this label, sequence number and digest."""
    if not _NAME.match(name.encode()) or name.startswith("."):
        raise SignatureFormatError(f"{name[:100]!r} is not a manifest label")
    if not 0 < seq <= MAX_SEQ:
        raise SignatureFormatError(f"sequence number {seq} is out of range")
    if not _HEX64.match(manifest_sha256.encode()):
        raise SignatureFormatError("the manifest digest is not 64 hex digits")
    return _MAGIC + f"name {name}\nseq {seq}\nmanifest {manifest_sha256}\n".encode()


def build(name: str, seq: int, manifest_sha256: str, armored: bytes) -> bytes:
    """The file's bytes around an armored SSH signature of payload(name, seq, manifest_sha256)."""
    armored = armored.replace(b"\r\n", b"\n")
    if not armored.endswith(b"\n"):
        armored += b"\n"
    body = payload(name, seq, manifest_sha256) + armored
    data = body + b"# sha256 " + hashlib.sha256(body).hexdigest().encode() + b"\n"
    parse(data)  # never write what we would refuse to read
    return data


def checksum_ok(data: bytes) -> bool:
    """The file's own last line matches, so its bytes are final (whatever they say)."""
    if not data.endswith(b"\n"):
        return False
    cut = data.rfind(b"# sha256 ", 0, len(data) - 1)
    if cut < 0:
        return False
    return data[cut:] == b"# sha256 " + hashlib.sha256(data[:cut]).hexdigest().encode() + b"\n"


def parse(data: bytes) -> RefSignature:
    """The signature file's fields; SignatureFormatError (one line) for anything else."""
    if len(data) > MAX_SIGNATURE_FILE:
        raise SignatureFormatError(f"{len(data)} bytes, more than a signature file's bound of {MAX_SIGNATURE_FILE}")
    if not data.startswith(_MAGIC):
        raise SignatureFormatError("not a gitp2p ref signature (or not fully downloaded)")
    if not checksum_ok(data):
        raise SignatureFormatError("its checksum line does not match (truncated, incomplete or corrupt)")
    lines = data.split(b"\n")[:-1]  # every line ends in LF (the checksum line does)
    if len(lines) < 8:
        raise SignatureFormatError("too few lines for a ref signature")
    fields = {}
    for raw, key in zip(lines[1:4], (b"name", b"seq", b"manifest")):
        k, sep, value = raw.partition(b" ")
        if k != key or not sep:
            raise SignatureFormatError(f"line {key.decode()!r} expected, found {raw[:40]!r}")
        fields[key] = value
    if not _NAME.match(fields[b"name"]) or fields[b"name"].startswith(b"."):
        raise SignatureFormatError("bad name line")
    if not _SEQ.match(fields[b"seq"]) or int(fields[b"seq"]) > MAX_SEQ:
        raise SignatureFormatError("bad seq line")
    if not _HEX64.match(fields[b"manifest"]):
        raise SignatureFormatError("bad manifest line")
    block = lines[4:-1]
    if block[0] + b"\n" != _BEGIN or block[-1] + b"\n" != _END:
        if block[0].startswith(b"-----BEGIN PGP"):
            raise SignatureFormatError("an OpenPGP signature: only SSH signatures are read (gpg.format ssh)")
        raise SignatureFormatError("no SSH signature block (-----BEGIN SSH SIGNATURE-----)")
    b64 = block[1:-1]
    if not b64 or not all(_B64LINE.match(line) for line in b64):
        raise SignatureFormatError("the SSH signature block is not base64")
    try:
        blob = base64.b64decode(b"".join(b64), validate=True)
    except ValueError:
        raise SignatureFormatError("the SSH signature block is not base64") from None
    key_type, key_blob, namespace = _sshsig_fields(blob)
    if namespace != NAMESPACE:
        raise SignatureFormatError(f"a signature for namespace {namespace[:40]!r}, not {NAMESPACE!r} (not a ref signature)")
    armored = b"\n".join(block) + b"\n"
    return RefSignature(fields[b"name"].decode(), int(fields[b"seq"]), fields[b"manifest"].decode(), armored,
                        key_type, key_blob, namespace)


def _sshsig_fields(blob: bytes) -> tuple[str, bytes, str]:
    """(key type, public key blob, namespace) of an SSHSIG blob (OpenSSH PROTOCOL.sshsig)."""
    if not blob.startswith(b"SSHSIG") or len(blob) < 10:
        raise SignatureFormatError("the SSH signature block does not hold an SSHSIG signature")
    pos = 6
    (version,) = struct.unpack_from(">I", blob, pos)
    pos += 4
    if version != 1:
        raise SignatureFormatError(f"SSHSIG version {version}, not 1")
    strings = []
    for _ in range(5):  # publickey, namespace, reserved, hash_algorithm, signature
        if pos + 4 > len(blob):
            raise SignatureFormatError("the SSH signature is truncated")
        (n,) = struct.unpack_from(">I", blob, pos)
        pos += 4
        if pos + n > len(blob):
            raise SignatureFormatError("the SSH signature is truncated")
        strings.append(blob[pos:pos + n])
        pos += n
    if pos != len(blob):
        raise SignatureFormatError("the SSH signature has trailing bytes")
    key_blob = strings[0]
    if len(key_blob) < 4:
        raise SignatureFormatError("the SSH signature holds no public key")
    (n,) = struct.unpack_from(">I", key_blob, 0)
    key_type = key_blob[4:4 + n]
    try:
        return key_type.decode("ascii"), key_blob, strings[1].decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureFormatError("the SSH signature's key type or namespace is not text") from None


def ssh_key_fingerprint(key_blob: bytes) -> str:
    """`SHA256:...` as ssh-keygen prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key_blob).digest()).decode().rstrip("=")
