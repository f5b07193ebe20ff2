"""Git's binary delta format: a deterministic encoder and a bounded decoder.

The encoder is part of the commit-pack format (docs/pack-format.md): every
choice is pinned, so the same (base, target) pair gives the same delta bytes on
every machine.  `create_delta_py` is the reference, in pure Python;
`create_delta` is its compiled twin (_speedups.c, built by setup) when that is
built, the reference otherwise: the tests prove both give the same bytes.  The
decoder is what the watcher uses to check received packs; it refuses deltas that
do not fit the base or that would inflate past a given bound.
"""

from __future__ import annotations

__all__ = [
    "BLOCK",
    "MAX_COPY",
    "MAX_INSERT",
    "CANDIDATES",
    "DeltaError",
    "create_delta",
    "create_delta_py",
    "COMPILED",
    "apply_delta",
    "apply_delta_py",
    "delta_sizes",
]

#: Source bytes are indexed in aligned blocks of this many bytes; a match
#: must start with one whole indexed block, so the shortest copy is BLOCK.
BLOCK = 16
#: Longest single copy instruction (longer matches are split).
MAX_COPY = 0x10000
#: Longest single insert instruction (the format's limit).
MAX_INSERT = 0x7F
#: Offsets remembered for one indexed block.
CANDIDATES = 4


class DeltaError(ValueError):
    """A delta that does not decode, or does not fit its base."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _emit_insert(out: bytearray, data: bytes | memoryview) -> None:
    for i in range(0, len(data), MAX_INSERT):
        chunk = data[i : i + MAX_INSERT]
        out.append(len(chunk))
        out += chunk


def _emit_copy(out: bytearray, offset: int, length: int) -> None:
    while length:
        size = min(length, MAX_COPY)
        op = 0x80
        args = bytearray()
        for i in range(4):
            byte = (offset >> (8 * i)) & 0xFF
            if byte:
                op |= 1 << i
                args.append(byte)
        for i in range(3):
            byte = (size >> (8 * i)) & 0xFF
            if byte:
                op |= 0x10 << i
                args.append(byte)
        out.append(op)
        out += args
        offset += size
        length -= size


def _run_length(same, limit: int) -> int:
    """Largest n <= limit with same(0, n) true, given same(i, k) compares k more bytes after i.

    Grows the compared chunk while it matches, then halves down to the byte.
    """
    n = 0
    step = 64
    while n < limit:
        step = min(step, limit - n)
        if same(n, step):
            n += step
            step *= 2
        elif step == 1:
            break
        else:
            step //= 2
    return n


def _match_forward(src: bytes, s: int, trg: bytes, t: int, t_end: int) -> int:
    """Length of the common run of src[s:] and trg[t:t_end]."""
    return _run_length(
        lambda n, k: src[s + n : s + n + k] == trg[t + n : t + n + k], min(len(src) - s, t_end - t)
    )


def _match_backward(src: bytes, trg: bytes, limit: int) -> int:
    """Length of the common suffix of src and trg, at most limit."""
    ls, lt = len(src), len(trg)
    return _run_length(lambda n, k: src[ls - n - k : ls - n] == trg[lt - n - k : lt - n], limit)


def create_delta_py(base: bytes, target: bytes) -> bytes:
    """Encode target as a git delta against base (the reference encoder).

    Pinned algorithm (format version 1):
    1. P = common prefix of base and target, then S = common suffix of
       what is left (P + S never exceeds either length); the prefix is
       one copy from offset 0, the suffix one copy at the end;
    2. the middle of base, base[P:len(base)-S], is indexed in BLOCK-byte
       blocks at offsets P, P+16, P+32, ...; each block keeps the first
       CANDIDATES offsets it occurs at, in ascending order;
    3. the middle of target is scanned left to right; where the next
       BLOCK bytes are indexed, the candidate with the longest forward
       match (within the target's middle) wins, the earliest on ties; the
       match is extended backward into pending literal bytes and emitted
       as copies of at most MAX_COPY bytes; elsewhere the byte joins the
       pending literal, emitted in inserts of at most MAX_INSERT bytes.
    """
    out = bytearray(_varint(len(base)) + _varint(len(target)))
    shortest = min(len(base), len(target))
    prefix = _match_forward(base, 0, target, 0, shortest)
    suffix = _match_backward(base, target, shortest - prefix)
    t_end = len(target) - suffix
    if prefix:
        _emit_copy(out, 0, prefix)

    b_end = len(base) - suffix
    offs = range(prefix, b_end - BLOCK + 1, BLOCK)
    # Fast path: when no block repeats, each has exactly one offset.
    index: dict[bytes, list[int]] = {base[off : off + BLOCK]: [off] for off in offs}
    if len(index) != len(offs):
        index = {}
        for off in offs:
            offsets = index.setdefault(base[off : off + BLOCK], [])
            if len(offsets) < CANDIDATES:
                offsets.append(off)

    lit_start = prefix  # start of the pending literal run in target
    t = prefix
    last = t_end - BLOCK
    get = index.get
    while t <= last:
        offsets = get(target[t : t + BLOCK])
        if offsets is None:
            t += 1
            continue
        s = offsets[0]
        length = _match_forward(base, s, target, t, t_end)
        for cand in offsets[1:]:
            n = _match_forward(base, cand, target, t, t_end)
            if n > length:
                s, length = cand, n
        # Extend backwards into the pending literal.
        while t > lit_start and s > 0 and base[s - 1] == target[t - 1]:
            s -= 1
            t -= 1
            length += 1
        if t > lit_start:
            _emit_insert(out, target[lit_start:t])
        _emit_copy(out, s, length)
        t += length
        lit_start = t
    if lit_start < t_end:
        _emit_insert(out, target[lit_start:t_end])
    if suffix:
        _emit_copy(out, len(base) - suffix, suffix)
    return bytes(out)


try:
    from ._speedups import apply_delta as _compiled_apply
    from ._speedups import create_delta as _compiled
except ImportError:  # not built (a source tree without `pip install`): the references, slower
    _compiled = _compiled_apply = None
#: True when create_delta uses the compiled encoder.
COMPILED = _compiled is not None
#: Bases this long or longer are encoded by the reference (the compiled one keeps 32-bit offsets).
_COMPILED_MAX_BASE = (1 << 32) - 1 - BLOCK


def create_delta(base: bytes, target: bytes) -> bytes:
    """Encode target as a git delta against base: create_delta_py's bytes, compiled when built."""
    if _compiled is not None and len(base) < _COMPILED_MAX_BASE:
        return _compiled(base, target)
    return create_delta_py(base, target)


def _read_varint(delta: bytes, pos: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        if pos >= len(delta):
            raise DeltaError("delta header is truncated")
        byte = delta[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
        if shift > 63:
            raise DeltaError("delta header size is too large")


def delta_sizes(delta: bytes) -> tuple[int, int, int]:
    """Return (base size, result size, offset of the first instruction)."""
    base_size, pos = _read_varint(delta, 0)
    result_size, pos = _read_varint(delta, pos)
    return base_size, result_size, pos


def apply_delta(base: bytes, delta: bytes, *, max_size: int | None = None) -> bytes:
    """Apply a git delta to base; DeltaError on anything malformed.

    max_size bounds the declared result size before any byte is produced,
    so a hostile delta cannot make us allocate more than that.  Compiled when
    built; a delta the compiled decoder refuses goes through the reference,
    which says why.
    """
    if _compiled_apply is not None:
        out = _compiled_apply(base, delta, -1 if max_size is None else max_size)
        if out is not None:
            return out
    return apply_delta_py(base, delta, max_size=max_size)


def apply_delta_py(base: bytes, delta: bytes, *, max_size: int | None = None) -> bytes:
    """The reference of apply_delta."""
    base_size, result_size, pos = delta_sizes(delta)
    if base_size != len(base):
        raise DeltaError(f"delta expects a base of {base_size} bytes, base has {len(base)}")
    if max_size is not None and result_size > max_size:
        raise DeltaError(f"delta result of {result_size} bytes exceeds the bound of {max_size}")
    out = bytearray()
    n = len(delta)
    while pos < n:
        op = delta[pos]
        pos += 1
        if op & 0x80:
            offset = size = 0
            for i in range(4):
                if op & (1 << i):
                    if pos >= n:
                        raise DeltaError("copy instruction is truncated")
                    offset |= delta[pos] << (8 * i)
                    pos += 1
            for i in range(3):
                if op & (0x10 << i):
                    if pos >= n:
                        raise DeltaError("copy instruction is truncated")
                    size |= delta[pos] << (8 * i)
                    pos += 1
            if size == 0:
                size = 0x10000
            if offset + size > len(base):
                raise DeltaError("copy instruction reaches past the end of the base")
            out += base[offset : offset + size]
        elif op:
            if pos + op > n:
                raise DeltaError("insert instruction is truncated")
            out += delta[pos : pos + op]
            pos += op
        else:
            raise DeltaError("delta has a reserved zero instruction")
        if len(out) > result_size:
            raise DeltaError("delta produces more bytes than it declares")
    if len(out) != result_size:
        raise DeltaError(f"delta produced {len(out)} bytes, declared {result_size}")
    return bytes(out)
