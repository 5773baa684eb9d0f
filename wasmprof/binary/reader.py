"""Bounds-checked little-endian byte reader: the bottom layer of every binary reader.

Contract: every read either returns a value or raises :class:`BinaryFormatError` naming
the source, the *file* offset (``base`` + position) and what was expected. Nothing here
allocates more than the bytes actually present, so a lying count or size cannot blow up
memory: callers check counts with :meth:`ByteReader.check_count` before building lists.
"""

from __future__ import annotations

import struct

from wasmprof.errors import BinaryFormatError

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class ByteReader:
    """Reads ``data[pos:end]``; offsets in errors are ``base + pos`` (file offsets)."""

    __slots__ = ("data", "pos", "end", "base", "source")

    def __init__(self, data: bytes | memoryview, source: str, *, base: int = 0,
                 start: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = start
        self.end = len(data) if end is None else end
        self.base = base
        self.source = source

    # -- errors -------------------------------------------------------------------
    def error(self, message: str, *, at: int | None = None, expected: str | None = None,
              found: str | None = None) -> BinaryFormatError:
        pos = self.pos if at is None else at
        return BinaryFormatError(message, source=self.source, offset=self.base + pos,
                                 expected=expected, found=found)

    @property
    def offset(self) -> int:
        """File offset of the next byte."""
        return self.base + self.pos

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def at_end(self) -> bool:
        return self.pos >= self.end

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.end:
            raise self.error(f"truncated {what}", expected=f"{n} bytes",
                             found=f"{max(self.end - self.pos, 0)} bytes before the end")

    def check_count(self, count: int, min_entry_size: int, what: str) -> int:
        """Reject a count that cannot fit in the bytes left (each entry >= min_entry_size)."""
        if count * min_entry_size > self.remaining:
            raise self.error(f"{what} count {count} cannot fit",
                             expected=f"at most {self.remaining // max(min_entry_size, 1)} entries in "
                                      f"{self.remaining} remaining bytes")
        return count

    # -- fixed-size -----------------------------------------------------------------
    def u8(self, what: str = "byte") -> int:
        self.need(1, what)
        v = self.data[self.pos]
        self.pos += 1
        return v

    def u16(self, what: str = "u16") -> int:
        self.need(2, what)
        v = _U16.unpack_from(self.data, self.pos)[0]
        self.pos += 2
        return v

    def u32(self, what: str = "u32") -> int:
        self.need(4, what)
        v = _U32.unpack_from(self.data, self.pos)[0]
        self.pos += 4
        return v

    def u64(self, what: str = "u64") -> int:
        self.need(8, what)
        v = _U64.unpack_from(self.data, self.pos)[0]
        self.pos += 8
        return v

    def bytes(self, n: int, what: str = "bytes") -> bytes:
        self.need(n, what)
        v = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return v

    def view(self, n: int, what: str = "bytes") -> memoryview:
        """A zero-copy view of the next ``n`` bytes."""
        self.need(n, what)
        v = memoryview(self.data)[self.pos:self.pos + n]
        self.pos += n
        return v

    def skip(self, n: int, what: str = "bytes") -> None:
        self.need(n, what)
        self.pos += n

    def align(self, n: int, *, relative_to: int = 0) -> None:
        """Skip padding so that ``pos - relative_to`` is a multiple of ``n``."""
        pad = (-(self.pos - relative_to)) % n
        if pad:
            self.need(pad, f"padding to {n}-byte alignment")
            self.pos += pad

    # -- LEB128 ---------------------------------------------------------------------
    def uleb(self, what: str = "LEB128", bits: int = 32) -> int:
        start = self.pos
        result = 0
        shift = 0
        max_bytes = (bits + 6) // 7
        data, end = self.data, self.end
        for i in range(max_bytes):
            if self.pos >= end:
                raise self.error(f"truncated {what}", at=start, expected="LEB128 continuation byte")
            b = data[self.pos]
            self.pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                if i == max_bytes - 1 and (b & 0x7F) >> (bits - 7 * i):
                    raise self.error(f"{what} overflows u{bits}", at=start,
                                     expected=f"a value below 2^{bits}")
                return result
            shift += 7
        raise self.error(f"{what} overflows u{bits}", at=start,
                         expected=f"at most {max_bytes} LEB128 bytes")

    def sleb(self, what: str = "signed LEB128", bits: int = 64) -> int:
        start = self.pos
        result = 0
        shift = 0
        max_bytes = (bits + 6) // 7
        for _ in range(max_bytes):
            if self.pos >= self.end:
                raise self.error(f"truncated {what}", at=start, expected="LEB128 continuation byte")
            b = self.data[self.pos]
            self.pos += 1
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if b & 0x40:
                    result -= 1 << shift
                return result
        raise self.error(f"{what} overflows s{bits}", at=start,
                         expected=f"at most {max_bytes} LEB128 bytes")

    def name(self, what: str = "name") -> str:
        """A Wasm ``name``: LEB length + UTF-8 bytes (invalid UTF-8 is replaced, not fatal)."""
        n = self.uleb(f"{what} length")
        raw = self.bytes(n, what)
        return raw.decode("utf-8", errors="replace")

    def sub(self, n: int, what: str) -> "ByteReader":
        """A reader over the next ``n`` bytes; this reader moves past them."""
        self.need(n, what)
        r = ByteReader(self.data, self.source, base=self.base, start=self.pos, end=self.pos + n)
        self.pos += n
        return r

    def header(self, magic: bytes, kind: str, magic_name: str) -> int:
        """Check an 8-byte ``magic`` + u32 version header at the start; return the version.

        ``kind`` names the format in errors ("Wasm", "AOT"), ``magic_name`` the magic as
        users know it ("\\0asm")."""
        n = self.end - self.pos
        if n == 0:
            raise self.error("empty file", expected=f"the {kind} magic {magic_name}")
        if n < 8:
            raise self.error(f"file too short for a {kind} header", expected="8 header bytes",
                             found=f"{n} bytes")
        start = self.pos
        found = self.bytes(4, "magic")
        if found != magic:
            raise self.error(f"not a {kind} file", at=start,
                             expected=f"magic {magic.hex(' ')}", found=found.hex(" "))
        return self.u32(f"{kind} version")
