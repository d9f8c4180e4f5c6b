"""Cutting one classic pcap file into byte ranges that start on record boundaries, for `--jobs N` on one file.

A record header does not say that it is one, so a cut is not found by looking for something that resembles a header
near a byte offset (payload bytes can resemble one perfectly): the walk hops from the first record through every
record header (one unpack per record, the packet bytes are not looked at). That is exact, it gives the frame
number at each cut (frame numbers appear in the output), and it stops where the file is damaged, so that every cut
lies before the damage and the reader of the last range reports it as a single process would.
"""
from __future__ import annotations

import mmap
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from struct import Struct
from typing import Self

from . import pcap

HOP_WINDOW = 1 << 26  # bytes of the file mapped at a time by the hop (more than the largest record)


@dataclass(frozen=True, slots=True)
class Cut:
    """A range starts at the record at byte `offset`, whose frame number is `frames_before + 1`."""

    offset: int
    frames_before: int


def find_cuts(path: str, targets: list[int]) -> Iterator[Cut]:
    """For each byte offset of `targets` (increasing), the first record that starts at or after it, as soon as it
    is found (a caller can start a range's worker while the hop goes on to the next cut). Stops early, yielding
    fewer cuts, at the end of the file or at a damaged record (an impossible length, a record cut short): a cut is
    never at or after damage, nor at the end of the file."""
    with RecordHop(path) as hop:
        for target in targets:
            cut = hop.to(target)
            if cut is None:
                return
            yield cut


class RecordHop:
    """`find_cuts` one target at a time: `to(offset)` hops on from where the last call stopped."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        try:
            header = pcap.parse_header(self._file.read(pcap.HEADER_SIZE))
            self._hop = _Hop(self._file.fileno(), os.fstat(self._file.fileno()).st_size, header)
        except BaseException:
            self._file.close()
            raise

    def to(self, target: int) -> Cut | None:
        """The first record at or after byte `target` (not before the last one found), or None when the end of
        the file or damage comes first (and for every later target)."""
        hop = self._hop
        while hop.pos < target:
            if not hop.window(target):
                return None
        return Cut(hop.pos, hop.frames) if hop.sound_record() else None

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Hop:
    """The walk over record headers, through a mapped window of the file at a time: no copy of the bytes (reading
    them costs more than the hop itself), and the pages are let go with the window."""

    def __init__(self, fileno: int, size: int, header: pcap.PcapHeader) -> None:
        self.fileno = fileno
        self.size = size
        self.record_size = header.record_header_size
        self.max_caplen = min(max(header.snaplen, pcap.STANDARD_MAX_CAPLEN), pcap.ABSOLUTE_MAX_CAPLEN)
        self.caplen_at = Struct(header.byte_order + "I").unpack_from
        self.native = header.byte_order == ("<" if sys.byteorder == "little" else ">")
        self.pos = pcap.HEADER_SIZE  # file offset of the next record
        self.frames = 0  # records before it

    def window(self, target: int) -> bool:
        """Hop towards `target` through one window; False when no record can be passed (end of file, damage)."""
        start = self.pos - self.pos % mmap.ALLOCATIONGRANULARITY
        length = min(self.size - start, HOP_WINDOW)
        if length <= self.pos - start:
            return False
        record_size, max_caplen = self.record_size, self.max_caplen
        mapped = mmap.mmap(self.fileno, length, offset=start, access=mmap.ACCESS_READ)
        whole = memoryview(mapped)
        views: list[memoryview] = []
        try:
            pos = self.pos - start
            frames = self.frames
            goal = target - start
            # While a record of the largest possible size fits in the window, no bounds check is needed.
            limit = min(length - record_size - max_caplen, goal)
            if self.native and pos < limit:
                # The length field read through 32-bit views, one per alignment: a third faster than struct.
                # p is the offset of the current record's length field.
                views = [whole[i:i + (length - i) // 4 * 4].cast("I") for i in range(4)]
                p, stop = pos + 8, limit + 8
                while p < stop:
                    caplen = views[p & 3][p >> 2]
                    if caplen > max_caplen:
                        return False
                    p += record_size + caplen
                    frames += 1
                pos = p - 8
            caplen_at = self.caplen_at
            while pos < goal and pos + record_size <= length:
                caplen = caplen_at(mapped, pos + 8)[0]
                if caplen > max_caplen or pos + record_size + caplen > length:
                    break
                pos += record_size + caplen
                frames += 1
            moved = pos + start != self.pos
            self.pos, self.frames = pos + start, frames
            return moved or pos >= goal
        finally:
            for view in views:
                view.release()
            whole.release()
            mapped.close()

    def sound_record(self) -> bool:
        """A whole record with a possible length starts at `pos`."""
        if self.pos + self.record_size > self.size:
            return False
        head = os.pread(self.fileno, self.record_size, self.pos)
        caplen = self.caplen_at(head, 8)[0]
        return caplen <= self.max_caplen and self.pos + self.record_size + caplen <= self.size


def offset_after(path: str, offset: int, frames_before: int, frame: int) -> int:
    """The byte offset of the record after frame `frame`, hopping from the record at `offset` (frame
    `frames_before + 1`, not after `frame`). The records on the way must be sound: they were read already."""
    with open(path, "rb") as f:
        header = pcap.parse_header(f.read(pcap.HEADER_SIZE))
        caplen_at = Struct(header.byte_order + "I").unpack_from
        size = header.record_header_size
        fileno = f.fileno()
        for _ in range(frame - frames_before):
            offset += size + caplen_at(os.pread(fileno, size, offset), 8)[0]
    return offset
