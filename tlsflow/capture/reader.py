"""`open_capture()`: the one entry point the pipeline uses to read a pcap or pcapng file (or stdin) as TcpPackets."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import NamedTuple, Self, TypeVar

from ..packet import TcpPacket
from . import pcap, pcapng
from .decode import make_handlers
from .errors import CaptureError, NotACaptureError, TruncatedCaptureError
from .fragments import FragmentReassembler
from .pcap import SegmentCounter
from .source import CaptureSource, SourceReadError
from .stats import CaptureStats

T = TypeVar("T")


class RawFrame(NamedTuple):
    frame: int  # 1-based, every frame counted
    ts: float  # epoch seconds
    link_type: int
    data: bytes  # the captured bytes, link-layer header included


class Capture:
    """An open capture. Read it once, with `packets()` or `frames()`; use as a context manager to close it."""

    def __init__(self, source: CaptureSource) -> None:
        self._source = source
        self.stats = CaptureStats(compressed=source.compressed)
        self.secrets: list[bytes] = []  # TLS key log text from pcapng decryption secrets blocks, in file order
        self.reassembler = FragmentReassembler(self.stats)
        self._started = False
        self._first_frame = 0  # frames skipped by start_at
        head = source.head
        if pcap.is_pcap_magic(head):
            self.stats.format = "pcap"
            try:
                data = head + source.read_exactly(pcap.HEADER_SIZE - len(head))
            except SourceReadError as exc:
                raise TruncatedCaptureError(f"cannot read the pcap file header: {exc}", 0, 1) from exc
            self._pcap_header: pcap.PcapHeader | None = pcap.parse_header(data)
            self._buf = b""
            self._base = pcap.HEADER_SIZE
            self.stats.sections = self.stats.interfaces = 1
        elif pcapng.is_pcapng_magic(head):
            self.stats.format = "pcapng"
            self._pcap_header = None
            self._buf = head
            self._base = 0
        else:
            raise NotACaptureError(_not_a_capture_message(head, source.compressed), 0)

    @property
    def name(self) -> str:
        return self._source.name

    @property
    def bytes_read(self) -> int:
        """Bytes taken from the file so far (compressed bytes for gzip input), for a progress bar."""
        return self._source.bytes_read

    @property
    def total_bytes(self) -> int | None:
        """Size of the file when known (a regular file, or stdin redirected from one), else None."""
        return self._source.total_bytes

    @property
    def link_type(self) -> int | None:
        """The link type of a pcap file (pcapng files have one per interface: see stats.link_types)."""
        return self._pcap_header.link_type if self._pcap_header else None

    def packets(self, shard: tuple[int, int] | None = None,
                count_only: Callable[..., bool] | None = None,
                counter: SegmentCounter | None = None) -> Iterator[TcpPacket]:
        """Every TCP segment, in file order. Raises CaptureError after the last good packet if the file is damaged.

        `shard=(index, count)`: only the connections of that shard come out as TcpPackets; every other TCP segment
        comes out as its timestamp, a float (see `decode.make_handlers`), for `--jobs` on one file.
        `count_only` (TcpReassembler.count_only): segments it takes come out as their timestamp too.
        `counter` (the TcpReassembler the packets go to, or what stands for it): segments of flows that want no more
        data go straight to `counter.count_lane`. In Ethernet or Linux cooked captures (pcap, and pcapng enhanced packet blocks) they do
        not come out at all, except that a chunk of the file whose last segment went there ends with that segment's
        timestamp (see pcap.walk_records); elsewhere each comes out as its timestamp."""
        header = self._pcap_header
        # The pcap walker offers such segments to the lanes itself: its handler need not look again.
        walker_counts = header is not None and header.link_type in pcap.LANE_FRAMES
        # (A counter with `mark_other_shard` enters the connections of other shards in its lanes: parallel.py.)
        mark = getattr(counter, "mark_other_shard", None) if shard is not None else None
        return self._walk(make_handlers(self.stats, self.reassembler, shard, count_only,
                                        None if walker_counts else counter, mark), counter)

    def start_at(self, offset: int, frames_before: int, preamble: bytes = b"") -> None:
        """Read from the record (pcap) or block (pcapng) at byte `offset`, before which the file has
        `frames_before` frames (found by tlsflow.capture.split): `--jobs` byte ranges. Frame numbers and error
        offsets stay those of the file. pcapng: `preamble` is read first (the section header, interface
        descriptions and decryption secrets before the offset: split.Cut.preamble)."""
        if not self._source.seekable or self._started or (self._pcap_header is None) != bool(preamble):
            raise ValueError(f"{self.name}: start_at needs an unread, uncompressed file, and a preamble for pcapng "
                             "(only)")
        self._source.seek(offset)
        self._buf = preamble
        self._base = offset - len(preamble)
        self._first_frame = frames_before

    def number_from(self, frames_before: int) -> None:
        """Number this file's frames after `frames_before` others: the next piece of a capture split in files
        (tlsflow.series), whose frames count on from those of the pieces before it."""
        if self._started:
            raise ValueError(f"{self.name}: number_from needs an unread capture")
        self._first_frame = frames_before

    def frames(self) -> Iterator[RawFrame]:
        """Every packet frame undecoded, as (frame, ts, link_type, data); blocks framed by Wireshark that hold no
        packet (custom, journal, sysdig blocks) are counted in numbering but not yielded."""

        def handler_for(link_type: int) -> Callable[[bytes, int, int, int, float], RawFrame]:
            def raw_frame(buf: bytes, start: int, end: int, frame: int, ts: float) -> RawFrame:
                return RawFrame(frame, ts, link_type, buf[start:end])
            return raw_frame

        return self._walk(handler_for)

    def _walk(self, handler_for: Callable[[int], Callable[[bytes, int, int, int, float], T | None]],
              counter: SegmentCounter | None = None) -> Iterator[T]:
        # Returns the walker generator itself: a wrapping generator would cost a frame switch per packet.
        if self._started:
            raise RuntimeError("a capture can be read only once; open it again")
        self._started = True
        source = self._source
        if self._pcap_header is not None:
            header = self._pcap_header
            return pcap.walk_records(source.read_chunk, self._buf, self._base, header,
                                     handler_for(header.link_type), self.stats, source.name, source.compressed,
                                     counter, first_frame=self._first_frame)  # type: ignore[return-value]
        return pcapng.walk_blocks(source.read_chunk, self._buf, self._base, handler_for, self.stats,
                                  self.secrets, source.name, source.compressed, counter,
                                  first_frame=self._first_frame)  # type: ignore[return-value]

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def open_capture(path: str | os.PathLike[str], *, decompress_apart: bool = True) -> Capture:
    """Open a pcap/pcapng file, optionally gzip-compressed; "-" reads standard input. A gzipped file is
    decompressed by a child process while this one reads it, unless `decompress_apart` is False.

    Raises NotACaptureError (a CaptureError) at once when the input cannot be opened or is not a capture.
    """
    source = CaptureSource(path, decompress_apart=decompress_apart)
    try:
        return Capture(source)
    except CaptureError as exc:
        source.close()
        exc.source = exc.source or source.name
        exc.compressed = source.compressed
        raise


def _not_a_capture_message(head: bytes, compressed: bool) -> str:
    inner = "gzip-compressed data that is " if compressed else ""
    if not head:
        return f"{inner}empty: not a pcap or pcapng capture"
    return f"{inner}not a pcap or pcapng capture (starts with {head[:4].hex(' ')})"
