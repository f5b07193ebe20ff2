"""git's config file syntax (config.c), as git parses a `.gitmodules` blob: entries in order, then the error."""

from __future__ import annotations

__all__ = ["ConfigError", "parse_git_config"]



class ConfigError(ValueError):
    """Bytes git's config parser stops on; entries before the error were already given."""


_SPACE = b" \t\n\r"  # git's own isspace()


def _iskeychar(c: int) -> bool:
    return 0x30 <= c <= 0x39 or 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A or c == 0x2D


def _isalpha(c: int) -> bool:
    return 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A


def parse_git_config(data: bytes):
    """Yield (name, value or None) as git's config parser (config.c) gives them to a callback.

    name is `section.key` or `section.subsection.key` (section and key lower case);
    raises ConfigError where git's parser stops.
    """
    p = _ConfigReader(data)
    if data.startswith(b"\xef\xbb\xbf"):
        p.pos = 3
    var = b""
    comment = False
    while True:
        c = p.next()
        if c == 0x0A:
            if p.eof:
                return
            comment = False
            continue
        if comment:
            continue
        if c in _SPACE:
            continue
        if c in (0x23, 0x3B):  # '#', ';'
            comment = True
            continue
        if c == 0x5B:  # '['
            var = p.base_var()
            if not var:
                raise ConfigError("bad section header")
            var += b"."
            continue
        if not _isalpha(c):
            raise ConfigError(f"bad config line {p.line}")
        name, value = p.value(var + bytes([c]).lower())
        yield name, value


class _ConfigReader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0
        self.eof = False
        self.line = 1

    def next(self) -> int:
        if self.pos >= len(self.data):
            self.eof = True
            return 0x0A
        c = self.data[self.pos]
        self.pos += 1
        if c == 0x0D:
            if self.pos < len(self.data) and self.data[self.pos] == 0x0A:
                self.pos += 1
                c = 0x0A
        if c == 0x0A:
            self.line += 1
        return c

    def base_var(self) -> bytes:
        name = bytearray()
        while True:
            c = self.next()
            if self.eof:
                raise ConfigError("unterminated section header")
            if c == 0x5D:  # ']'
                return bytes(name)
            if c in _SPACE:
                return self.extended_base_var(name, c)
            if not _iskeychar(c) and c != 0x2E:
                raise ConfigError("bad section name")
            name.append(c | 0x20 if 0x41 <= c <= 0x5A else c)

    def extended_base_var(self, name: bytearray, c: int) -> bytes:
        while True:
            if c == 0x0A:
                raise ConfigError("bad subsection header")
            c = self.next()
            if c not in _SPACE:
                break
        if c != 0x22:  # '"'
            raise ConfigError("subsection must be quoted")
        name.append(0x2E)
        while True:
            c = self.next()
            if c == 0x0A:
                raise ConfigError("unterminated subsection")
            if c == 0x22:
                break
            if c == 0x5C:  # backslash: the next character as itself
                c = self.next()
                if c == 0x0A:
                    raise ConfigError("unterminated subsection")
            name.append(c)
        if self.next() != 0x5D:
            raise ConfigError("subsection header does not end in ]")
        return bytes(name)

    def value(self, name: bytes) -> tuple[bytes, bytes | None]:
        key = bytearray(name)
        while True:
            c = self.next()
            if self.eof or not _iskeychar(c):
                break
            key.append(c | 0x20 if 0x41 <= c <= 0x5A else c)
        while c in (0x20, 0x09):
            c = self.next()
        if c == 0x0A:
            return bytes(key), None
        if c != 0x3D:  # '='
            raise ConfigError(f"bad config line {self.line}")
        return bytes(key), self.parse_value()

    def parse_value(self) -> bytes:
        out = bytearray()
        quote = comment = False
        space = 0
        while True:
            c = self.next()
            if c == 0x0A:
                if quote:
                    raise ConfigError("unterminated quote")
                return bytes(out)
            if comment:
                continue
            if c in _SPACE and not quote:
                if out:
                    space += 1
                continue
            if not quote and c in (0x3B, 0x23):
                comment = True
                continue
            out += b" " * space
            space = 0
            if c == 0x5C:
                c = self.next()
                if c == 0x0A:
                    continue
                esc = {0x74: 0x09, 0x62: 0x08, 0x6E: 0x0A, 0x5C: 0x5C, 0x22: 0x22}.get(c)
                if esc is None:
                    raise ConfigError("unknown escape sequence")
                out.append(esc)
                continue
            if c == 0x22:
                quote = not quote
                continue
            out.append(c)
