"""Cutting one classic pcap file into byte ranges that start on record boundaries, for `--jobs N` on one file.

A record header does not say that it is one, so a cut is not found by looking for something that resembles a header
near a byte offset (payload bytes can resemble one perfectly): the walk hops from the first record through every
record header (one unpack per record, the packet bytes are not looked at). That is exact, it gives the frame
number at each cut (frame numbers appear in the output), and it stops where the file is damaged, so that every cut
lies before the damage and the reader of the last range reports it as a single process would.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from struct import Struct

from . import pcap

HOP_CHUNK = 1 << 22  # bytes read at a time by the hop


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
    with open(path, "rb", buffering=0) as f:
        header = pcap.parse_header(f.read(pcap.HEADER_SIZE))
        caplen_at = Struct(header.byte_order + "I").unpack_from
        record_size = header.record_header_size
        max_caplen = min(max(header.snaplen, pcap.STANDARD_MAX_CAPLEN), pcap.ABSOLUTE_MAX_CAPLEN)
        # Only records whose length is ordinary are hopped in the inner loop; the slow path below checks the rest.
        margin = record_size + max_caplen
        read_size = max(HOP_CHUNK, 2 * margin)
        buf = b""
        base = pcap.HEADER_SIZE  # file offset of buf[0]
        pos = 0
        frames = 0
        for target in targets:
            while base + pos < target:
                end = len(buf)
                # While a record of the largest possible size would fit in buf, no bounds check is needed.
                limit = min(end - margin, target - base)
                while pos < limit:
                    caplen = caplen_at(buf, pos + 8)[0]
                    if caplen > max_caplen:
                        return
                    pos += record_size + caplen
                    frames += 1
                while base + pos < target and end - pos >= record_size:
                    caplen = caplen_at(buf, pos + 8)[0]
                    if caplen > max_caplen:
                        return
                    if pos + record_size + caplen > end:
                        break
                    pos += record_size + caplen
                    frames += 1
                if base + pos < target:
                    chunk = f.read(read_size)
                    if not chunk:
                        return  # the end of the file, or a record cut short
                    buf = buf[pos:] + chunk
                    base += pos
                    pos = 0
            # A range starts on a whole, sound record, never on damage or at the end of the file.
            while True:
                end = len(buf)
                if end - pos >= record_size:
                    caplen = caplen_at(buf, pos + 8)[0]
                    if caplen > max_caplen:
                        return
                    if pos + record_size + caplen <= end:
                        break
                chunk = f.read(read_size)
                if not chunk:
                    return
                buf = buf[pos:] + chunk
                base += pos
                pos = 0
            yield Cut(base + pos, frames)
