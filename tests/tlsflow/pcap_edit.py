"""Edits of real captures for tests: a little-endian classic pcap read as its records, cut, or with its packets
doubled (the way `tcpdump -i any` or a SPAN session records some traffic twice)."""
from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path


def records(path: Path) -> tuple[bytes, list[bytes]]:
    """The file's header and its records (record header and frame bytes each)."""
    return records_of(path.read_bytes(), str(path))


def records_of(data: bytes, name: str = "capture") -> tuple[bytes, list[bytes]]:
    """`records` of a capture's bytes."""
    assert data[:4] == b"\xd4\xc3\xb2\xa1", f"{name}: not a little-endian microsecond pcap"
    out, pos = [], 24
    while pos < len(data):
        caplen = struct.unpack_from("<I", data, pos + 8)[0]
        out.append(data[pos:pos + 16 + caplen])
        pos += 16 + caplen
    return data[:24], out


def cut(path: Path, first_kept: int, out: Path) -> Path:
    """The capture from record `first_kept` (0-based) on, as if tcpdump had started there."""
    header, recs = records(path)
    out.write_bytes(header + b"".join(recs[first_kept:]))
    return out


def doubled(path: Path, out: Path, after_us: int = 3) -> Path:
    """Every packet twice: the copy `after_us` microseconds after the original, byte for byte the same."""
    header, recs = records(path)
    parts = []
    for record in recs:
        seconds, micros, caplen, original = struct.unpack_from("<IIII", record)
        micros += after_us
        parts += [record, struct.pack("<IIII", seconds + micros // 1_000_000, micros % 1_000_000, caplen, original)
                  + record[16:]]
    out.write_bytes(header + b"".join(parts))
    return out


def link_type(path: Path) -> int:
    return int(struct.unpack_from("<I", path.read_bytes(), 20)[0])


def snapped(path: Path, out: Path, snaplen: int) -> Path:
    """The capture as `tcpdump -s <snaplen>` would have written it: each packet's first `snaplen` bytes."""
    header, recs = records(path)
    parts = [header[:16] + struct.pack("<I", snaplen) + header[20:]]
    for record in recs:
        seconds, micros, caplen, original = struct.unpack_from("<IIII", record)
        kept = min(caplen, snaplen)
        parts.append(struct.pack("<IIII", seconds, micros, kept, original) + record[16:16 + kept])
    out.write_bytes(b"".join(parts))
    return out


def tagged(path: Path, out: Path, vlan: int = 100, tag: Callable[[int], bool] | None = None,
           pcapng: bool = False) -> Path:
    """Every Ethernet frame with an 802.1Q tag (VLAN `vlan`) after its MAC addresses, as a SPAN port on a trunk
    gives them; `tag(index)` says which frames get one (all by default). As classic pcap, or pcapng."""
    from tests.conftest import capture_file_bytes

    _, recs = records(path)
    out_records = []
    for index, record in enumerate(recs):
        seconds, micros, _, original = struct.unpack_from("<IIII", record)
        frame = record[16:]
        if tag is None or tag(index):
            frame = frame[:12] + struct.pack("!HH", 0x8100, vlan) + frame[12:]
            original += 4
        out_records.append((seconds * 1_000_000 + micros, frame, original))
    out.write_bytes(capture_file_bytes(1, out_records, pcapng))
    return out


def as_ipv6(path: Path, out: Path, pcapng: bool = False) -> Path:
    """Every Ethernet/IPv4 frame as the same TCP segment over IPv6 (2001:db8::<the IPv4 address>, hop limit = TTL,
    no extension headers); other frames as they are. As classic pcap, or pcapng."""
    from tests.conftest import capture_file_bytes

    prefix = bytes.fromhex("20010db8") + bytes(8)
    _, recs = records(path)
    out_records = []
    for record in recs:
        seconds, micros, _, _ = struct.unpack_from("<IIII", record)
        frame = record[16:]
        if frame[12:14] == b"\x08\x00" and frame[23] == 6:
            ihl = (frame[14] & 15) * 4
            total = struct.unpack_from("!H", frame, 16)[0]
            ip6 = (struct.pack("!IHBB", 6 << 28, total - ihl, 6, frame[22]) + prefix + frame[26:30] + prefix
                   + frame[30:34])
            frame = frame[:12] + b"\x86\xdd" + ip6 + frame[14 + ihl:14 + total]
        out_records.append((seconds * 1_000_000 + micros, frame, len(frame)))
    out.write_bytes(capture_file_bytes(1, out_records, pcapng))
    return out


def one_way(path: Path, out: Path, port: int, *, sent: bool) -> Path:
    """Only the packets sent from `port` (`sent`), or only those sent to it (Ethernet/IPv4/TCP): one direction of
    each connection, as a SPAN port that copies one way, or one side of an asymmetric route, records it."""
    header, recs = records(path)
    kept = []
    for record in recs:
        frame = record[16:]
        if frame[12:14] == b"\x08\x00" and frame[23] == 6:
            ihl = (frame[14] & 15) * 4
            if struct.unpack_from("!H", frame, 14 + ihl + (0 if sent else 2))[0] == port:
                kept.append(record)
    out.write_bytes(header + b"".join(kept))
    return out


def slowed(path: Path, out: Path, factor: int) -> Path:
    """The same packets `factor` times further apart in time (from the first one's time on): a slower link."""
    header, recs = records(path)
    parts = []
    first = None
    for record in recs:
        seconds, micros, caplen, original = struct.unpack_from("<IIII", record)
        at = seconds * 1_000_000 + micros
        first = at if first is None else first
        at = first + (at - first) * factor
        parts.append(struct.pack("<IIII", at // 1_000_000, at % 1_000_000, caplen, original) + record[16:])
    out.write_bytes(header + b"".join(parts))
    return out
