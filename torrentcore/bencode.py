"""Strict, bounded bencoding: the only module that touches the bencode.py library (to encode)."""

from __future__ import annotations

import bencodepy

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_ITEMS",
    "DEFAULT_MAX_SIZE",
    "MAX_INT_DIGITS",
    "DecodeError",
    "EncodeError",
    "decode",
    "encode",
    "validate",
]

#: Deepest nesting of lists and dicts that ``decode`` accepts (a torrent needs 4).
DEFAULT_MAX_DEPTH = 64
#: Largest input ``decode`` accepts, in bytes.
DEFAULT_MAX_SIZE = 16 * 1024 * 1024
#: Most values (ints, strings, lists, dicts) ``decode`` accepts in one input; this bounds
#: memory, since ``le`` costs two bytes of input but ~60 bytes as a Python list.
DEFAULT_MAX_ITEMS = 1_000_000

#: Most digits (sign excluded) of an integer that ``decode`` accepts and ``encode`` writes,
#: and of a string length: 2**64 needs 20 digits; 32 leaves room for any sane value and
#: keeps int() cheap. The one bound both directions use.
MAX_INT_DIGITS = 32
_INT_LIMIT = 10**MAX_INT_DIGITS  # the smallest magnitude with MAX_INT_DIGITS + 1 digits
_DIGITS = frozenset(b"0123456789")


class DecodeError(ValueError):
    """Input is not canonical bencoding within the configured bounds."""


class EncodeError(ValueError):
    """A value cannot be bencoded (wrong type, duplicate key or too deep)."""


def encode(obj: object, *, max_depth: int = DEFAULT_MAX_DEPTH) -> bytes:
    """Bencode *obj*: bytes/str (UTF-8), int (not bool), list/tuple, dict with bytes/str keys.

    Dict keys are sorted as raw bytes; a dict holding both ``"a"`` and ``b"a"`` is refused.
    """
    return bencodepy.encode(_normalise(obj, max_depth))


def _normalise(obj: object, max_depth: int, depth: int = 0) -> object:
    """Return *obj* with only exact bytes/int/list/dict types, checking keys and depth."""
    if isinstance(obj, bool):
        raise EncodeError("cannot bencode a bool; use 0 or 1")
    if isinstance(obj, int):
        if abs(obj) >= _INT_LIMIT:
            raise EncodeError(f"integer has more than {MAX_INT_DIGITS} digits")
        return int(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj)
    if isinstance(obj, str):
        return obj.encode("utf-8")
    if depth >= max_depth:
        raise EncodeError(f"value nested deeper than {max_depth} levels")
    if isinstance(obj, (list, tuple)):
        return [_normalise(item, max_depth, depth + 1) for item in obj]
    if isinstance(obj, dict):
        out: dict[bytes, object] = {}
        for key, value in obj.items():
            if isinstance(key, str):
                key = key.encode("utf-8")
            elif isinstance(key, (bytes, bytearray)):
                key = bytes(key)
            else:
                raise EncodeError(f"dict key must be bytes or str, not {type(key).__name__}")
            if key in out:
                raise EncodeError(f"duplicate dict key {key!r}")
            out[key] = _normalise(value, max_depth, depth + 1)
        return out
    raise EncodeError(f"cannot bencode a value of type {type(obj).__name__}")


def validate(
    data: bytes,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> None:
    """Raise ``DecodeError`` unless *data* is exactly one canonical bencoded value."""
    decode(data, max_size=max_size, max_depth=max_depth, max_items=max_items)


def decode(
    data: bytes,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> object:
    """Decode one canonical bencoded value; byte strings stay ``bytes``, dict keys too.

    One pass, iterative (no recursion), linear in ``len(data)``; it checks the canonical
    form (sorted unique keys, no leading zeros) and the bounds as it builds the value, so
    a hostile input costs at most its bounds.  Raises only ``DecodeError``.  (bencode.py,
    which encodes, neither checks canonical form nor bounds what it allocates.)
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"bencoded input must be bytes, not {type(data).__name__}")
    data = bytes(data)
    n = len(data)
    if n > max_size:
        raise DecodeError(f"input of {n} bytes exceeds the limit of {max_size} bytes")
    if n == 0:
        raise DecodeError("empty input")
    # Stack of open containers: [b"l", list] or [b"d", dict, previous key, key awaiting a value].
    stack: list[list] = []
    pos = 0
    items = 0
    value: object = None
    while True:
        if pos >= n:
            raise DecodeError(f"truncated input at byte {pos}")
        top = stack[-1] if stack else None
        c = data[pos]
        if c == 0x65 and top is not None:  # 'e' closes the innermost container
            if top[0] == b"d" and top[3] is not None:
                raise DecodeError(f"dict key without a value at byte {pos}")
            stack.pop()
            pos += 1
            value = top[1]
        else:
            if top is not None and top[0] == b"d" and top[3] is None:
                # A dict key: must be a byte string, strictly greater than the previous one.
                if c not in _DIGITS:
                    raise DecodeError(f"dict key at byte {pos} is not a byte string")
                start, pos = _scan_string(data, pos)
                key = data[start:pos]
                if top[2] is not None and key <= top[2]:
                    what = "duplicate" if key == top[2] else "unsorted"
                    raise DecodeError(f"{what} dict key {key[:40]!r} at byte {start}")
                top[2] = top[3] = key
                continue
            items += 1
            if items > max_items:
                raise DecodeError(f"more than {max_items} values in input")
            if c == 0x69:  # 'i'
                end = _scan_int(data, pos)
                value, pos = int(data[pos + 1 : end - 1]), end
            elif c in _DIGITS:
                start, pos = _scan_string(data, pos)
                value = data[start:pos]
            elif c == 0x6C or c == 0x64:  # 'l' or 'd'
                if len(stack) >= max_depth:
                    raise DecodeError(f"nesting deeper than {max_depth} levels at byte {pos}")
                stack.append([b"l", []] if c == 0x6C else [b"d", {}, None, None])
                pos += 1
                continue  # a new container is not yet a complete value
            else:
                raise DecodeError(f"unexpected byte {bytes([c])!r} at byte {pos}")
        # A value (or a container) just completed: it belongs to the container around it.
        if not stack:
            break
        parent = stack[-1]
        if parent[0] == b"l":
            parent[1].append(value)
        else:
            parent[1][parent[3]] = value
            parent[3] = None
    if pos != n:
        raise DecodeError(f"{n - pos} trailing bytes after the value, at byte {pos}")
    return value


def _scan_int(data: bytes, pos: int) -> int:
    """Check the canonical integer ``i<digits>e`` at *pos*; return the position after it."""
    start = pos
    pos += 1
    # The longest literal body is a sign and MAX_INT_DIGITS digits; look one byte further
    # for the "e", so a body one digit too long is told apart from an unterminated one.
    longest = MAX_INT_DIGITS + 1
    end = data.find(b"e", pos, pos + longest + 1)
    if end < 0:
        if len(data) - pos <= longest:
            raise DecodeError(f"truncated integer at byte {start}")
        raise DecodeError(f"integer at byte {start} is too long or unterminated")
    body = data[pos:end]
    digits = body[1:] if body[:1] == b"-" else body
    if not digits or not all(b in _DIGITS for b in digits):
        raise DecodeError(f"malformed integer {data[start:end + 1]!r} at byte {start}")
    if len(digits) > MAX_INT_DIGITS:
        raise DecodeError(f"integer at byte {start} is too long: more than "
                          f"{MAX_INT_DIGITS} digits")
    if digits[0] == 0x30 and (len(digits) > 1 or body[:1] == b"-"):
        raise DecodeError(f"non-canonical integer {data[start:end + 1]!r} at byte {start}")
    return end + 1


def _scan_string(data: bytes, pos: int) -> tuple[int, int]:
    """Check the byte string ``<len>:<bytes>`` at *pos*; return (payload start, end)."""
    start = pos
    colon = data.find(b":", pos, pos + MAX_INT_DIGITS + 1)
    if colon < 0:
        if len(data) - pos <= MAX_INT_DIGITS:
            raise DecodeError(f"truncated string length at byte {start}")
        raise DecodeError(f"string length at byte {start} is too long or has no colon")
    digits = data[pos:colon]
    if not digits or not all(b in _DIGITS for b in digits):
        raise DecodeError(f"malformed string length {digits[:40]!r} at byte {start}")
    if digits[0] == 0x30 and len(digits) > 1:
        raise DecodeError(f"string length with leading zero at byte {start}")
    length = int(digits)
    end = colon + 1 + length
    if end > len(data):
        raise DecodeError(
            f"string of {length} bytes at byte {start} runs past the end of the input"
        )
    return colon + 1, end
