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
`ssh-keygen -Y sign -n gitp2p-refs@gitp2p` over them gives the armored block.  With
`gpg.format openpgp` the block is an OpenPGP detached signature of the same payload
instead (`gpg --detach-sign`), armored in one pinned form: BEGIN line, one empty
line, base64 lines of at most 76 characters, the `=` CRC-24 line, END line, no
armor headers.  It holds one version 4 signature packet of type 0x00 (binary
document); its issuer (fingerprint, or key id) is read from it to name the key
before anything is verified.  OpenPGP has no namespace: our payload's first line
keeps the signature from being anything else's (a commit or tag never starts so).  The
name binds the signature to one manifest label; the sequence number only grows at
the publisher, so a receiver can refuse an older one (replay); the digest binds it
to the manifest's exact bytes.  The last line, as in the manifest, makes a partly
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
    "OPENPGP",
    "armor_openpgp",
    "dearmor_openpgp",
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
_BEGIN_PGP = b"-----BEGIN PGP SIGNATURE-----\n"
_END_PGP = b"-----END PGP SIGNATURE-----\n"
#: RefSignature.key_type of an OpenPGP signature (SSH ones carry the key's own type, e.g. ssh-ed25519).
OPENPGP = "openpgp"
_CRC_LINE = re.compile(rb"=[A-Za-z0-9+/]{4}\Z")
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
    armored: bytes  # the -----BEGIN SSH SIGNATURE----- block, as ssh-keygen wrote it (or the PGP one)
    key_type: str  # from inside the signature: e.g. ssh-ed25519; "openpgp" for an OpenPGP signature
    key_blob: bytes  # the signer's public key (ssh wire format); OpenPGP: the issuer's fingerprint (or key id)
    namespace: str  # "" for OpenPGP

    @property
    def openpgp(self) -> bool:
        return self.key_type == OPENPGP

    @property
    def payload(self) -> bytes:
        return payload(self.name, self.seq, self.manifest_sha256)

    @property
    def fingerprint(self) -> str:
        """`SHA256:...` as ssh-keygen prints it; an OpenPGP key's fingerprint (or key id) in hex."""
        return self.key_blob.hex().upper() if self.openpgp else ssh_key_fingerprint(self.key_blob)

    @property
    def public_key(self) -> str:
        """The signer's key as an allowed-signers / authorized_keys line would give it
        (OpenPGP: `openpgp FINGERPRINT`)."""
        if self.openpgp:
            return f"{OPENPGP} {self.fingerprint}"
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
    if block[0] + b"\n" == _BEGIN_PGP and block[-1] + b"\n" == _END_PGP:
        issuer = _openpgp_issuer(dearmor_openpgp(b"\n".join(block) + b"\n"))
        return RefSignature(fields[b"name"].decode(), int(fields[b"seq"]), fields[b"manifest"].decode(),
                            b"\n".join(block) + b"\n", OPENPGP, issuer, "")
    if block[0] + b"\n" != _BEGIN or block[-1] + b"\n" != _END:
        raise SignatureFormatError("no SSH or OpenPGP signature block (-----BEGIN SSH SIGNATURE-----)")
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


# -- OpenPGP (RFC 4880): the armor, pinned, and the one signature packet inside ----------------
def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def armor_openpgp(packet: bytes) -> bytes:
    """The pinned armor of a binary OpenPGP signature: no headers, 64-character lines, CRC-24."""
    b64 = base64.b64encode(packet)
    crc = base64.b64encode(_crc24(packet).to_bytes(3, "big"))
    return (_BEGIN_PGP + b"\n" + b"".join(b64[i:i + 64] + b"\n" for i in range(0, len(b64), 64))
            + b"=" + crc + b"\n" + _END_PGP)


def dearmor_openpgp(armored: bytes, *, pinned: bool = True) -> bytes:
    """The binary packet of an armored OpenPGP signature.  pinned: only the form armor_openpgp
    writes (no armor headers); else headers (gpg's own output may have them) are skipped."""
    lines = armored.replace(b"\r\n", b"\n").rstrip(b"\n").split(b"\n")
    if len(lines) < 4 or lines[0] + b"\n" != _BEGIN_PGP or lines[-1] + b"\n" != _END_PGP:
        raise SignatureFormatError("no OpenPGP signature block (-----BEGIN PGP SIGNATURE-----)")
    body = lines[1:-1]
    if pinned:
        if body[0] != b"":
            raise SignatureFormatError("the OpenPGP signature block has armor headers (none are allowed)")
        body = body[1:]
    else:
        while body and body[0] != b"":
            body = body[1:]
        body = body[1:]
    crc = None
    if body and _CRC_LINE.match(body[-1]):
        crc = base64.b64decode(body[-1][1:])
        body = body[:-1]
    if not body or not all(_B64LINE.match(line) for line in body) or (pinned and crc is None):
        raise SignatureFormatError("the OpenPGP signature block is not base64 with its CRC line")
    try:
        packet = base64.b64decode(b"".join(body), validate=True)
    except ValueError:
        raise SignatureFormatError("the OpenPGP signature block is not base64") from None
    if crc is not None and int.from_bytes(crc, "big") != _crc24(packet):
        raise SignatureFormatError("the OpenPGP signature block's CRC does not match")
    return packet


def _openpgp_issuer(packet: bytes) -> bytes:
    """The issuer of the single v4 binary-document signature packet that is `packet`: its
    fingerprint (subpacket 33), else its key id (16), from the hashed area first."""
    if not packet or not packet[0] & 0x80:
        raise SignatureFormatError("not an OpenPGP packet")
    first = packet[0]
    if first & 0x40:  # new format
        tag, pos = first & 0x3F, 1
        if pos >= len(packet):
            raise SignatureFormatError("the OpenPGP signature is truncated")
        o1 = packet[pos]
        if o1 < 192:
            length, pos = o1, pos + 1
        elif o1 < 224:
            if pos + 1 >= len(packet):
                raise SignatureFormatError("the OpenPGP signature is truncated")
            length, pos = ((o1 - 192) << 8) + packet[pos + 1] + 192, pos + 2
        elif o1 == 255:
            if pos + 5 > len(packet):
                raise SignatureFormatError("the OpenPGP signature is truncated")
            length, pos = int.from_bytes(packet[pos + 1:pos + 5], "big"), pos + 5
        else:
            raise SignatureFormatError("an OpenPGP packet of partial lengths is not a signature")
    else:
        tag, kind = (first >> 2) & 0x0F, first & 0x03
        if kind == 3:
            raise SignatureFormatError("an OpenPGP packet of indeterminate length is not a signature")
        n = 1 << kind
        if 1 + n > len(packet):
            raise SignatureFormatError("the OpenPGP signature is truncated")
        length, pos = int.from_bytes(packet[1:1 + n], "big"), 1 + n
    if tag != 2:
        raise SignatureFormatError(f"an OpenPGP packet of type {tag}, not a signature (2)")
    if pos + length != len(packet):
        raise SignatureFormatError("the OpenPGP signature is truncated or followed by more packets "
                                   "(one signature only)")
    body = packet[pos:]
    if len(body) < 6:
        raise SignatureFormatError("the OpenPGP signature is truncated")
    if body[0] != 4:
        raise SignatureFormatError(f"an OpenPGP signature of version {body[0]}, not 4")
    if body[1] != 0x00:
        raise SignatureFormatError(f"an OpenPGP signature of type 0x{body[1]:02x}, not a binary document (0x00)")
    found: dict[int, bytes] = {}
    at = 4
    for _area in range(2):  # hashed, then unhashed
        if at + 2 > len(body):
            raise SignatureFormatError("the OpenPGP signature is truncated")
        end = at + 2 + int.from_bytes(body[at:at + 2], "big")
        if end > len(body):
            raise SignatureFormatError("the OpenPGP signature is truncated")
        at += 2
        while at < end:
            o1 = body[at]
            if o1 < 192:
                n, at = o1, at + 1
            elif o1 < 255:
                if at + 1 >= end:
                    raise SignatureFormatError("a bad OpenPGP subpacket")
                n, at = ((o1 - 192) << 8) + body[at + 1] + 192, at + 2
            else:
                if at + 5 > end:
                    raise SignatureFormatError("a bad OpenPGP subpacket")
                n, at = int.from_bytes(body[at + 1:at + 5], "big"), at + 5
            if n < 1 or at + n > end:
                raise SignatureFormatError("a bad OpenPGP subpacket")
            kind = body[at] & 0x7F
            found.setdefault(kind, body[at + 1:at + n])
            at += n
    if 33 in found and len(found[33]) == 21 and found[33][0] == 4:
        return found[33][1:]
    if 16 in found and len(found[16]) == 8:
        return found[16]
    raise SignatureFormatError("the OpenPGP signature names no issuer")
