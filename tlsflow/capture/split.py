"""Cutting one pcap or pcapng file into byte ranges that start on record (block) boundaries, for `--jobs N` on one
file.

A record header does not say that it is one, so a cut is not found by looking for something that resembles a header
near a byte offset (payload bytes can resemble one perfectly): the walk hops from the first record through every
record header (one unpack per record, the packet bytes are not looked at). That is exact, it gives the frame
number at each cut (frame numbers appear in the output), and it stops where the file is damaged, so that every cut
lies before the damage and the reader of the last range reports it as a single process would.

pcapng (`BlockHop`): the same over block headers, keeping what a reader that starts at a cut must read first
(`Cut.preamble`: the section header, its interface descriptions and decryption secrets). Lengths are all it checks:
damage inside a block before a cut is found by that range's reader, and then no later range counts.
"""
from __future__ import annotations

import mmap
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from struct import Struct
from typing import BinaryIO, Self

from . import pcap, pcapng
from .source import map_window

# Bytes of the file mapped at a time by the hop, unless a record or block needs more (then as much as it needs).
# Its pages count in the parent's resident memory while it is mapped: 64 MiB windows gave a peak of 79 MB for the
# hop to the middle of a 1 GB file, 4 MiB windows 19 MB, in the same CPU time (0.14-0.17 s, pcap and pcapng).
HOP_WINDOW = 1 << 22


@dataclass(frozen=True, slots=True)
class Cut:
    """A range starts at the record (pcap) or block (pcapng) at byte `offset`; its next frame is number
    `frames_before + 1`. `preamble` (pcapng): the blocks a reader starting there must read first, as they were
    before it in the file: the section header and the section's interface descriptions and decryption secrets."""

    offset: int
    frames_before: int
    preamble: bytes = b""


def open_hop(path: str, start: Cut | None = None) -> RecordHop | BlockHop:
    """The hop for the file's format (pcap records or pcapng blocks); `start`: from a cut found before instead of
    from the start of the file."""
    with open(path, "rb") as f:
        magic = f.read(4)
    return BlockHop(path, start) if pcapng.is_pcapng_magic(magic) else RecordHop(path, start)


def find_cuts(path: str, targets: list[int]) -> Iterator[Cut]:
    """For each byte offset of `targets` (increasing), the first record that starts at or after it, as soon as it
    is found (a caller can start a range's worker while the hop goes on to the next cut). Stops early, yielding
    fewer cuts, at the end of the file or at a damaged record (an impossible length, a record cut short): a cut is
    never at or after damage, nor at the end of the file. (pcapng: damage that only the reader sees, inside a
    block whose length is sound, can come before a cut: the reader of that range reports it.)"""
    with open_hop(path) as hop:
        for target in targets:
            cut = hop.to(target)
            if cut is None:
                return
            yield cut


class _FileHop:
    """A hop owns its open file: a context manager that closes it."""

    _file: BinaryIO

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RecordHop(_FileHop):
    """`find_cuts` one target at a time: `to(offset)` hops on from where the last call stopped. `start`: go on
    from a cut found before (its offset and frames) instead of from the start of the file."""

    def __init__(self, path: str, start: Cut | None = None) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        try:
            header = pcap.parse_header(self._file.read(pcap.HEADER_SIZE))
            self._hop = _Hop(self._file.fileno(), os.fstat(self._file.fileno()).st_size, header)
            if start is not None:
                self._hop.pos, self._hop.frames = start.offset, start.frames_before
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
        record_size, max_caplen = self.record_size, self.max_caplen
        # (room for the largest record from anywhere in the first page: a window always passes one)
        length = min(self.size - start, max(HOP_WINDOW, mmap.ALLOCATIONGRANULARITY + record_size + max_caplen))
        if length <= self.pos - start:
            return False
        mapped = map_window(self.fileno, length, start)
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


class BlockHop(_FileHop):
    """RecordHop for pcapng files: a walk over the block headers (type and length), which keeps what a reader
    starting at a cut needs to read first (`Cut.preamble`). `start`: go on from a cut found before (its offset,
    frames and preamble) instead of from the start of the file."""

    def __init__(self, path: str, start: Cut | None = None) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._fileno = self._file.fileno()
        self._size = os.fstat(self._fileno).st_size
        self.pos = 0
        self.frames = 0
        self._order = "<"
        self._kept: list[bytes] = []  # the current section's header, interface and secrets blocks so far
        self._need = 0  # bytes a window must map from its start to hold the block that stopped the last one
        if start is not None:
            self.pos, self.frames = start.offset, start.frames_before
            self._keep_preamble(start.preamble)

    @property
    def preamble_blocks(self) -> int:
        """The blocks a reader starting where the hop is reads first (`Cut.preamble`)."""
        return len(self._kept)

    def opening(self) -> Cut | None:
        """From the start of the file, past the section header, interface description and decryption secrets blocks
        that open it, up to its first other block: the cut there (None if the file opens otherwise)."""
        pos, kept = 0, []
        while pos + 12 <= self._size:
            head = os.pread(self._fileno, 12, pos)
            length = self._length(head, 0)
            if length is None or pos + length > self._size:
                return None
            if _BLOCK_HEADER[self._order](head, 0)[0] not in _PREAMBLE_BLOCKS:
                break
            kept.append(os.pread(self._fileno, length, pos))
            pos += length
        return Cut(pos, 0, b"".join(kept)) if kept else None

    def to(self, target: int) -> Cut | None:
        """The first block at or after byte `target` (not before the last one found), or None when the end of the
        file or a block of impossible length comes first (and for every later target)."""
        while self.pos < target:
            if not self._window(target, None):
                return None
        return self._cut()

    def after_frame(self, frame: int) -> Cut | None:
        """The block after frame number `frame` (not before the last one found): where a reader that has taken
        that frame goes on."""
        while self.frames < frame:
            if not self._window(None, frame):
                return None
        return Cut(self.pos, self.frames, b"".join(self._kept))

    def _cut(self) -> Cut | None:
        if self.pos + 12 > self._size:
            return None
        head = os.pread(self._fileno, 12, self.pos)
        length = self._length(head, 0)
        if length is None or self.pos + length > self._size:
            return None
        return Cut(self.pos, self.frames, b"".join(self._kept))

    def _length(self, buf: bytes | mmap.mmap, at: int) -> int | None:
        """The length of the block at `at` (a section header's sets the byte order), None if impossible."""
        block_type, length = _BLOCK_HEADER[self._order](buf, at)
        if block_type == pcapng.SECTION_HEADER:
            magic = buf[at + 8:at + 12]
            if magic == pcapng.BYTE_ORDER_LITTLE:
                self._order = "<"
            elif magic == pcapng.BYTE_ORDER_BIG:
                self._order = ">"
            else:
                return None
            length = _BLOCK_HEADER[self._order](buf, at)[1]
        if length < 12 or length & 3 or length > pcapng.MAX_BLOCK_SIZE:
            return None
        return length

    def _keep_preamble(self, preamble: bytes) -> None:
        at = 0
        while at + 12 <= len(preamble):
            length = self._length(preamble, at)
            if length is None:
                raise ValueError("not a pcapng preamble")
            self._kept.append(preamble[at:at + length])
            at += length

    def _window(self, target: int | None, frame: int | None) -> bool:
        """Hop through one mapped window towards byte `target` or past frame `frame`; False when no block can be
        passed (end of file, impossible length)."""
        start = self.pos - self.pos % mmap.ALLOCATIONGRANULARITY
        # (two pages at least: the block at self.pos, in the first page, has its header in the window)
        length = min(self._size - start, max(HOP_WINDOW, 2 * mmap.ALLOCATIONGRANULARITY, self._need))
        if length <= self.pos - start:
            return False
        mapped = map_window(self._fileno, length, start)
        size = 0
        try:
            pos = self.pos - start
            frames = self.frames
            goal = target - start if target is not None else length
            last = frame if frame is not None else -1
            section, interface, secrets = pcapng.SECTION_HEADER, pcapng.INTERFACE_DESCRIPTION, pcapng.DECRYPTION_SECRETS
            framed = _FRAMED
            moved = False
            if frame is None and self._order == _NATIVE and not pos & 3:
                # Enhanced packet blocks of a plausible length (most of a file) through a 32-bit view, as blocks are
                # 4-byte aligned: three times faster. The mask refuses lengths not a multiple of 4 and from 32 MiB
                # (MAX_BLOCK_SIZE) up; anything else is left to the general loop below.
                words = memoryview(mapped)[:length & ~3].cast("I")
                try:
                    i = begin = pos >> 2
                    stop = min((goal + 3) >> 2, len(words) - 1)
                    while i < stop:
                        size = words[i + 1]
                        if words[i] != 6 or size & 0xFE000003 or size < 32:
                            break
                        i += size >> 2
                        frames += 1
                finally:
                    words.release()
                if i != begin:
                    moved = True
                    pos = i << 2
            while pos < goal and frames != last and pos + 12 <= length:
                block_type, size = _BLOCK_HEADER[self._order](mapped, pos)
                if block_type in framed:
                    if size < 12 or size & 3 or pos + size > length:
                        break
                    frames += 1
                else:
                    size = self._length(mapped, pos)
                    if size is None or pos + size > length:
                        break
                    if block_type == section:
                        self._kept = [mapped[pos:pos + size]]
                    elif block_type == interface or block_type == secrets:
                        self._kept.append(mapped[pos:pos + size])
                pos += size
                moved = True
            self.pos, self.frames = pos + start, frames
            if (not moved and size is not None and 12 <= size <= pcapng.MAX_BLOCK_SIZE and not size & 3
                    and start + pos + size <= self._size):
                # A whole block that does not fit in this window (up to 32 MiB): the next window holds it.
                self._need = pos + size
                return True
            return moved
        finally:
            mapped.close()


# Blocks that take a frame number (pcapng.walk_blocks): packets, and what Wireshark frames without packet data.
_FRAMED = frozenset((pcapng.ENHANCED_PACKET, pcapng.SIMPLE_PACKET, pcapng.PACKET)) | pcapng.FRAME_WITHOUT_PACKET
_BLOCK_HEADER = {"<": Struct("<II").unpack_from, ">": Struct(">II").unpack_from}
# What a cut's preamble holds (BlockHop._window keeps them; the reader counts them: CaptureStats.resume_point).
_PREAMBLE_BLOCKS = frozenset((pcapng.SECTION_HEADER, pcapng.INTERFACE_DESCRIPTION, pcapng.DECRYPTION_SECRETS))
_NATIVE = "<" if sys.byteorder == "little" else ">"
