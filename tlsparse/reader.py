"""A bounds-checked cursor over wire bytes: every read that would run past the end raises `TlsParseError`
(never IndexError or struct.error), with the absolute stream offset of the failing read."""
from __future__ import annotations

import struct

from tlsparse.errors import TlsParseError

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")


class Reader:
    """Reads big-endian integers and length-prefixed vectors from `data[start:end]`. `base` is the absolute
    stream offset of `data[0]`, used only to report where a malformed field sits."""

    __slots__ = ("base", "data", "end", "layer", "pos")

    def __init__(self, data: bytes, *, layer: str, base: int = 0, start: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = start
        self.end = len(data) if end is None else end
        self.base = base
        self.layer = layer

    def fail(self, reason: str) -> TlsParseError:
        return TlsParseError(self.layer, self.base + self.pos, reason)

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def done(self) -> bool:
        return self.pos >= self.end

    def _need(self, n: int, what: str) -> None:
        if self.pos + n > self.end:
            raise self.fail(f"truncated: {what} needs {n} bytes, {self.end - self.pos} left")

    def u8(self, what: str = "u8") -> int:
        self._need(1, what)
        value = self.data[self.pos]
        self.pos += 1
        return value

    def u16(self, what: str = "u16") -> int:
        self._need(2, what)
        value = _U16.unpack_from(self.data, self.pos)[0]
        self.pos += 2
        return value

    def u24(self, what: str = "u24") -> int:
        self._need(3, what)
        d, p = self.data, self.pos
        self.pos += 3
        return (d[p] << 16) | (d[p + 1] << 8) | d[p + 2]

    def u32(self, what: str = "u32") -> int:
        self._need(4, what)
        value = _U32.unpack_from(self.data, self.pos)[0]
        self.pos += 4
        return value

    def take(self, n: int, what: str = "bytes") -> bytes:
        self._need(n, what)
        p = self.pos
        self.pos += n
        return bytes(self.data[p:p + n])

    def vec8(self, what: str = "vector") -> bytes:
        return self.take(self.u8(what), what)

    def vec16(self, what: str = "vector") -> bytes:
        return self.take(self.u16(what), what)

    def vec24(self, what: str = "vector") -> bytes:
        return self.take(self.u24(what), what)

    def sub16(self, what: str = "list") -> Reader:
        """A reader over the next u16-length-prefixed block, advancing past it."""
        n = self.u16(what)
        self._need(n, what)
        sub = Reader(self.data, layer=self.layer, base=self.base, start=self.pos, end=self.pos + n)
        self.pos += n
        return sub

    def sub8(self, what: str = "list") -> Reader:
        n = self.u8(what)
        self._need(n, what)
        sub = Reader(self.data, layer=self.layer, base=self.base, start=self.pos, end=self.pos + n)
        self.pos += n
        return sub

    def sub24(self, what: str = "list") -> Reader:
        n = self.u24(what)
        self._need(n, what)
        sub = Reader(self.data, layer=self.layer, base=self.base, start=self.pos, end=self.pos + n)
        self.pos += n
        return sub

    def rest(self) -> bytes:
        p = self.pos
        self.pos = self.end
        return bytes(self.data[p:self.end])

    def u16_list(self, what: str, max_items: int) -> tuple[int, ...]:
        """All remaining bytes as big-endian u16 values (the reader must hold an even count)."""
        n = self.end - self.pos
        if n & 1:
            raise self.fail(f"odd_length: {what} has {n} bytes")
        if n // 2 > max_items:
            raise self.fail(f"too_many_items: {what} has {n // 2} > {max_items}")
        values = struct.unpack_from(f"!{n // 2}H", self.data, self.pos)
        self.pos = self.end
        return values

    def u8_list(self, what: str, max_items: int) -> tuple[int, ...]:
        n = self.end - self.pos
        if n > max_items:
            raise self.fail(f"too_many_items: {what} has {n} > {max_items}")
        values = tuple(self.data[self.pos:self.end])
        self.pos = self.end
        return values

    def expect_end(self, what: str) -> None:
        if self.pos != self.end:
            raise self.fail(f"trailing_bytes: {self.end - self.pos} after {what}")
