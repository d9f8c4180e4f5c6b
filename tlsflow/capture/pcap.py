"""Classic libpcap files: both byte orders, microsecond and nanosecond timestamps.

The file is walked in large chunks; records are decoded in place in the chunk buffer and a record that straddles
two chunks is carried over, so memory is one chunk plus one record whatever the file's size.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from struct import Struct
from typing import TypeVar

from .errors import CaptureError, CorruptCaptureError, NotACaptureError, TruncatedCaptureError
from .source import SourceReadError
from .stats import CaptureStats

T = TypeVar("T")

MAGICS = {
    # magic as read little-endian -> (byte order of the file, timestamp fraction units per second, record header)
    0xA1B2C3D4: ("<", 1_000_000, 16),
    0xA1B23C4D: ("<", 1_000_000_000, 16),
    0xD4C3B2A1: (">", 1_000_000, 16),
    0x4D3CB2A1: (">", 1_000_000_000, 16),
    # Alexey Kuznetsov's patched libpcap (old Red Hat/SuSE tcpdump): 8 more bytes per record (ifindex, protocol,
    # packet type), which are of no use to us but must be skipped.
    0xA1B2CD34: ("<", 1_000_000, 24),
    0x34CDB2A1: (">", 1_000_000, 24),
}
HEADER_SIZE = 24
STANDARD_MAX_CAPLEN = 262144  # Wireshark's limit for ordinary link types
ABSOLUTE_MAX_CAPLEN = 16 << 20  # whatever the header's snap length says: a bigger record is a corrupt length
CHUNK_SIZE = 1 << 20
_MAGIC = Struct("<I")


@dataclass(frozen=True, slots=True)
class PcapHeader:
    byte_order: str  # "<" or ">"
    ts_units: int  # fraction units per second: 10**6 or 10**9
    record_header_size: int  # 16, or 24 in the patched (Kuznetsov) format
    version: tuple[int, int]
    snaplen: int
    link_type: int
    fcs_bytes: int  # frames end with this many FCS bytes when the file says so (IP lengths make us skip them)


def is_pcap_magic(head: bytes) -> bool:
    return len(head) >= 4 and _MAGIC.unpack_from(head)[0] in MAGICS


def parse_header(data: bytes) -> PcapHeader:
    if len(data) < HEADER_SIZE:
        raise TruncatedCaptureError(f"pcap file header is {HEADER_SIZE} bytes, file has {len(data)}", 0, 1)
    byte_order, units, record_size = MAGICS[_MAGIC.unpack_from(data)[0]]
    major, minor, _zone, _sigfigs, snaplen, network = Struct(byte_order + "HHiIII").unpack_from(data, 4)
    if major != 2:
        raise NotACaptureError(f"unsupported pcap version {major}.{minor}", 4)
    # The link-type field's upper bits carry the FCS length (pcap spec, "LinkType and additional information").
    fcs = (network >> 28) * 2 if network & 0x04000000 else 0
    return PcapHeader(byte_order, units, record_size, (major, minor), snaplen, network & 0xFFFF, fcs)


def walk_records(read_chunk: Callable[[int], bytes], buf: bytes, base: int, header: PcapHeader,
                 handle: Callable[[bytes, int, int, int, float], T | None], stats: CaptureStats,
                 source_name: str | None = None, compressed: bool = False, *,
                 first_frame: int = 0) -> Iterator[T]:
    """Calls `handle(buf, start, end, frame, ts)` for every record and yields its non-None results.

    `buf` holds bytes already read, starting at stream offset `base` (the first record). `stats.frames` and
    `stats.skipped` are brought up to date at every chunk and at the end (not per frame: that costs time).
    `first_frame`: frames before `buf` (reading started at a record inside the file: `--jobs` byte ranges), so
    that frame numbers are those of the whole file.
    """
    record = Struct(header.byte_order + "IIII").unpack_from
    record_header_size = header.record_header_size
    units = float(header.ts_units)
    max_caplen = min(max(header.snaplen, STANDARD_MAX_CAPLEN), ABSOLUTE_MAX_CAPLEN)
    link_type = header.link_type
    frame = first_frame
    skipped = 0
    pos = 0
    try:
        while True:
            end = len(buf)
            while end - pos >= record_header_size:
                seconds, fraction, caplen, _origlen = record(buf, pos)
                start = pos + record_header_size
                stop = start + caplen
                if stop > end or caplen > max_caplen:
                    if caplen > max_caplen:
                        raise CorruptCaptureError(
                            f"packet record claims {caplen} captured bytes, more than the maximum {max_caplen}",
                            base + pos, frame + 1)
                    break  # record continues in the next chunk
                frame += 1
                pos = stop
                out = handle(buf, start, stop, frame, seconds + fraction / units)
                if out is None:
                    skipped += 1
                else:
                    yield out
            stats.frames = frame
            stats.skipped = skipped
            stats.link_types[link_type] = frame
            try:
                chunk = read_chunk(CHUNK_SIZE)
            except SourceReadError as exc:
                cls = TruncatedCaptureError if exc.truncated else CorruptCaptureError
                raise cls(str(exc), base + pos, frame + 1) from exc
            if not chunk:
                if pos == end:
                    return
                if end - pos < record_header_size:
                    raise TruncatedCaptureError(
                        f"file ends inside a packet record header ({end - pos} of {record_header_size} bytes)",
                        base + pos, frame + 1)
                caplen = record(buf, pos)[2]
                raise TruncatedCaptureError(
                    f"file ends inside a packet record: {caplen} bytes announced, "
                    f"{end - pos - record_header_size} present", base + pos, frame + 1)
            buf = buf[pos:] + chunk
            base += pos
            pos = 0
    except CaptureError as exc:
        exc.source = exc.source or source_name
        exc.compressed = compressed
        raise
    finally:
        stats.frames = frame
        stats.skipped = skipped
        if frame:
            stats.link_types[link_type] = frame
