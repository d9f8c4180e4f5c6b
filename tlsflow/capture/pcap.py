"""Classic libpcap files: both byte orders, microsecond and nanosecond timestamps.

The file is walked in large chunks; records are decoded in place in the chunk buffer and a record that straddles
two chunks is carried over, so memory is one chunk plus one record whatever the file's size.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from socket import AF_INET6, inet_ntoa, inet_ntop
from struct import Struct
from typing import Any, Protocol, TypeVar

from . import linktypes as lt
from .chunks import carry_over
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
# The most bytes asked of the source at a time: it gives what it reads best, up to that (source.READ_SIZE bytes
# copied, or a window of source.MAP_WINDOW bytes mapped from a regular file).
CHUNK_SIZE = 1 << 26
_MAGIC = Struct("<I")
# From the start of a frame: the link header's protocol (EtherType) and the IPv4 version/IHL byte, as two numbers
# (see below); IPv4 total length, identification, flags/fragment offset, TTL, protocol; then, when IHL is 5, the 12
# bytes of source address, destination address, source port and destination port (a segment's lane key as it sits
# on the wire); TCP sequence number, acknowledgement number, data offset byte, flags byte, window. Per link type
# whose header has a fixed length and an EtherType: (layout, link header length, the two first numbers of an IPv4
# packet without options). Where the EtherType ends right before the IP header, its high byte and the next two
# bytes (its low byte, version/IHL) are unpacked: 0x08 and 0x0045, small integers that Python does not allocate
# (0x0800 is allocated anew for every segment).
_LANE_IP_TCP = "xHHHBB2x12sIIBBH"
# The IPv4 and TCP header bytes of a segment without IP options, by the TCP header's data offset byte; an offset
# below 5 words (invalid) gives a length no IP packet reaches, so that its payload length comes out negative.
LANE_HEADER_BYTES = tuple(20 + ((byte >> 4) << 2) if byte >= 0x50 else 1 << 17 for byte in range(256))
_PORTS = Struct("!HH").unpack_from
# 4-tuples remembered with their addresses' text before that cache is reset. Only the packets of flows that still
# want data are built by the walker (~8 per connection, within a few milliseconds), so the cache need only hold the
# handshakes in progress: the reassembler lets a flow's entries go when its lanes open (`wire_tuples`). Before
# that, entries stayed until the reset, and at 65,536 entries (~350 bytes each with wire_keys) the cache added
# ~20 MB to the peak memory of a 1 GB capture (89 -> 106 MiB) for no more hits; but at 4,096 a busy link (5,000
# connections at once, thousands of handshakes in progress) reset it before its entries were used again: 7-8 % of
# a run went into making them again.
_TUPLES_KEPT = 1 << 15
LANE_FRAMES = {
    lt.ETHERNET: (Struct("!12xBH" + _LANE_IP_TCP), 14, 0x08, 0x0045),  # untagged
    lt.LINUX_SLL: (Struct("!14xBH" + _LANE_IP_TCP), 16, 0x08, 0x0045),  # tcpdump -i any
    lt.LINUX_SLL2: (Struct("!H18xB" + _LANE_IP_TCP), 20, 0x0800, 0x45),
}
# Ethernet frames with one 802.1Q tag (a SPAN port or TAP on a trunk: every frame tagged), checked by the tag's
# TPID and the three bytes of EtherType and version/IHL after it. A walker starts with LANE_FRAMES' layout and
# takes the other (`lane_layouts`) when a frame that fails its layout fits the other: the fast lane then
# follows a capture's tagging as it goes (before: a tagged capture took the handler for every packet, ~1.5x the
# time), and a capture that never changes pays nothing.
LANE_FRAMES_TAGGED = {
    lt.ETHERNET: (Struct("!12xH2x3s" + _LANE_IP_TCP), 18, 0x8100, b"\x08\x00\x45"),
}
# IPv6 segments without extension headers, per link type: (layout, link header length). The layout gives the
# EtherType (or protocol), version/traffic class/flow label, payload length, next header, hop limit, then the 36
# bytes of source, destination and ports (an IPv6 lane key as it sits on the wire), sequence and acknowledgement
# numbers, data offset byte, flags byte, window. Tried on the frames that fail the IPv4 layout (before: every IPv6
# segment took the handler, ~1.5x the time of the same capture over IPv4).
_LANE_IPV6_TCP = "IHBB36sIIBBH"
LANE_FRAMES_IPV6 = {  # (layout, link header length, where the EtherType or protocol is)
    lt.ETHERNET: (Struct("!12xH" + _LANE_IPV6_TCP), 14, 12),
    lt.LINUX_SLL: (Struct("!14xH" + _LANE_IPV6_TCP), 16, 14),
    lt.LINUX_SLL2: (Struct("!H18x" + _LANE_IPV6_TCP), 20, 0),
}
ETHERTYPE_IPV6 = lt.ETHERTYPE_IPV6  # (read by `ipv6_lane` at each call: tests turn the lane off through it)
# VXLAN's UDP ports (IANA's 4789; 8472, the Linux kernel's default when none is given): see tlsflow.capture.decode.
UDP_VXLAN_PORTS = frozenset((4789, 8472))
# Ethernet/IPv4 without options, UDP to VXLAN, and inside an Ethernet/IPv4/TCP frame without IP options: every frame
# of a VXLAN traffic mirror's or overlay's capture. What the outer headers must show and the inner segment's fields,
# in one unpack from the start of the frame: outer EtherType, version/IHL, total length, flags/fragment offset,
# protocol, UDP destination port and length, VXLAN flags; inner EtherType, version/IHL, total length,
# identification, flags/fragment offset, TTL, protocol, the 12 bytes of addresses and ports (a lane key),
# sequence and acknowledgement numbers, data offset byte, flags byte, window (`vxlan_lane`).
VXLAN_IPV4_TCP = Struct("!12xHBxH2xHxB12xHH2xB19xHBxHHHBB2x12sIIBBH")
VXLAN_INNER_IP_AT = 64  # where the inner IPv4 header starts
# Where a frame shows which Ethernet layout it may fit: the high byte of its first EtherType or TPID.
LAYOUT_SIGNATURE_AT = 12


def lane_layouts(link_type: int) -> tuple[tuple[Any, ...], tuple[Any, ...] | None]:
    """(the layout a walker starts with, the one it may switch to or None), each as (unpack, link header length,
    shortest frame, the first two numbers of a fitting frame, its byte at LAYOUT_SIGNATURE_AT)."""
    def spec(entry: tuple[Any, ...]) -> tuple[Any, ...]:
        layout, link_length, first, second = entry
        return layout.unpack_from, link_length, link_length + 20 + 20, first, second, first >> 8 or first

    start = spec(LANE_FRAMES.get(link_type, LANE_FRAMES[lt.ETHERNET]))
    other = LANE_FRAMES_TAGGED.get(link_type)
    return start, (spec(other) if other is not None else None)


def layout_fits(layout: tuple[Any, ...], buf: Any, start: int, caplen: int) -> bool:
    """The frame at buf[start:] (`caplen` bytes) has the layout (as `lane_layouts` gives it): a walker whose
    own layout failed on it switches to this one."""
    unpack, _, shortest, first, second = layout[:5]
    return caplen >= shortest and unpack(buf, start)[:2] == (first, second)


class SegmentCounter(Protocol):
    """What the walker's fast lane needs from the TCP reassembler (tlsflow.tcp.TcpReassembler has both)."""

    lanes: dict[bytes, Any]
    # Optional (TcpReassembler has it): the walkers note there the 4-tuples they build TcpPackets of, as text
    # (source, source port, destination, destination port) -> the 12 bytes of `lanes`' keys.
    # wire_keys: dict[tuple[str, int, str, int], bytes]
    # And the walkers' cache of those 4-tuples' text (`four_tuple_texts`), which it prunes:
    # wire_tuples: dict[bytes, tuple[str, str, int, int]]

    def count_lane(self, lane: Any, frame: int, ts: float, seq: int, ack: int, flags: int, window: int,
                   ttl: int, n: int) -> bool: ...


def four_tuple_texts(wire_keys: dict[tuple[str, int, str, int], bytes] | None = None,
                     tuples: dict[bytes, tuple[str, str, int, int]] | None = None
                     ) -> tuple[Callable[[bytes], tuple[str, str, int, int] | None],
                                Callable[[bytes], tuple[str, str, int, int]]]:
    """(get, new) of a cache: a 4-tuple as the walkers' fast lane unpacks it (source address, destination
    address, source port, destination port: 12 bytes for IPv4, 36 for IPv6) -> (source text, destination text,
    source port, destination port), the text as decode makes it. `get(key)` is None for a 4-tuple not seen yet:
    `new(key)` makes its entry and the other direction's, and their reverse ones in `wire_keys` ((source text,
    source port, destination text, destination port) -> key: the reassembler's SegmentCounter.wire_keys, for its
    lanes' keys). Bounded: both are reset once the cache holds _TUPLES_KEPT 4-tuples. `tuples`: the cache itself,
    when the reassembler keeps it (its SegmentCounter.wire_tuples: it drops the entries of flows whose lanes open).
    """
    if tuples is None:
        tuples = {}
    texts: dict[bytes, str] = {}  # one str per address, shared by its 4-tuples

    def new(key: bytes) -> tuple[str, str, int, int]:
        if len(tuples) >= _TUPLES_KEPT:
            tuples.clear()
            texts.clear()
            if wire_keys is not None:
                wire_keys.clear()
        if len(key) == 12:
            raw_src, raw_dst = key[:4], key[4:8]
            src = texts.get(raw_src) or texts.setdefault(raw_src, inet_ntoa(raw_src))
            dst = texts.get(raw_dst) or texts.setdefault(raw_dst, inet_ntoa(raw_dst))
            sport, dport = _PORTS(key, 8)
            reverse = raw_dst + raw_src + key[10:12] + key[8:10]
        else:  # IPv6 (36 bytes)
            raw_src, raw_dst = key[:16], key[16:32]
            src = texts.get(raw_src) or texts.setdefault(raw_src, inet_ntop(AF_INET6, raw_src))
            dst = texts.get(raw_dst) or texts.setdefault(raw_dst, inet_ntop(AF_INET6, raw_dst))
            sport, dport = _PORTS(key, 32)
            reverse = raw_dst + raw_src + key[34:36] + key[32:34]
        entry = tuples[key] = (src, dst, sport, dport)
        # The other direction's entry too: its first segment (a SYN-ACK, a RST to a scan) comes right after.
        tuples[reverse] = (dst, src, dport, sport)
        if wire_keys is not None:
            wire_keys[(src, sport, dst, dport)] = key
            wire_keys[(dst, dport, src, sport)] = reverse
        return entry

    return tuples.get, new


@dataclass(frozen=True, slots=True)
class PcapHeader:
    byte_order: str  # "<" or ">"
    ts_units: int  # fraction units per second: 10**6 or 10**9
    record_header_size: int  # 16, or 24 in the patched (Kuznetsov) format
    version: tuple[int, int]
    snaplen: int
    link_type: int
    fcs_bytes: int  # frames end with this many FCS bytes when the file says so (IP lengths make us skip them)


COUNTED = object()  # what `ipv6_lane` gives for a segment that count_lane took


def ipv6_lane(link_type: int, counter: SegmentCounter, build: Callable[..., Any] | None,
              tuples_get: Callable[[bytes], Any], new_tuple: Callable[[bytes], Any]
              ) -> tuple[int, int, Callable[[bytes, int, int, int, float], Any]]:
    """The walkers' fast lane for IPv6 segments without extension headers, not cut by the snap length: (shortest
    frame, where its EtherType or protocol is, `segment`). `segment(buf, start, caplen, frame, ts)` gives COUNTED
    when `counter.count_lane` took the segment, the TcpPacket `handle` would give when `build` is there, or None:
    then the frame is `handle`'s. Tried only on frames that fail the IPv4 layout, so a call per frame is no cost
    to IPv4 captures; for IPv6 ones it replaces the full decoder."""
    layout, link_length, type_at = LANE_FRAMES_IPV6.get(link_type, LANE_FRAMES_IPV6[lt.ETHERNET])
    unpack = layout.unpack_from
    lanes, count_lane = counter.lanes, counter.count_lane
    headers = link_length + 40

    def segment(buf: Any, start: int, caplen: int, frame: int, ts: float) -> Any:
        (ethertype, vtf, plen, next_header, hop_limit, key, seq, ack, offset_byte, flags,
         window) = unpack(buf, start)
        if not (ethertype == ETHERTYPE_IPV6 and next_header == 6 and vtf >> 28 == 6 and plen
                and offset_byte >= 0x50 and headers + plen <= caplen
                and (n := plen - ((offset_byte >> 4) << 2)) >= 0):
            return None
        lane = lanes.get(key)
        if lane is not None and not flags & 0x06 and count_lane(lane, frame, ts, seq, ack, flags, window,
                                                                hop_limit, n):
            return COUNTED
        if build is None:
            return None
        names = tuples_get(key) or new_tuple(key)
        ip_end = start + headers + plen
        return build(frame, ts, 6, names[0], names[1], names[2], names[3], seq, ack, flags, window,
                     buf[ip_end - n:ip_end], hop_limit, None)

    return headers + 20, type_at, segment


def vxlan_lane(counter: SegmentCounter, build: Callable[..., Any] | None,
               tuples_get: Callable[[bytes], Any], new_tuple: Callable[[bytes], Any]
               ) -> Callable[[bytes, int, int, int, float], Any]:
    """The walkers' fast lane for Ethernet frames that carry a segment in VXLAN (VXLAN_IPV4_TCP): `segment(buf,
    start, caplen, frame, ts)` gives COUNTED when `counter.count_lane` took the inner segment, the TcpPacket the
    Ethernet handler would give when `build` is there, or None: then the frame is the handler's (which reads any
    other tunnel, and this one in other shapes). Before, each such frame went through the handler's two Ethernet
    fast paths (the outer frame's, then the inner one's): two unpacks, two calls and the lane's key sliced out."""
    unpack = VXLAN_IPV4_TCP.unpack_from
    shortest = VXLAN_IPV4_TCP.size
    lanes, count_lane = counter.lanes, counter.count_lane
    header_bytes = LANE_HEADER_BYTES
    ports = UDP_VXLAN_PORTS

    def segment(buf: Any, start: int, caplen: int, frame: int, ts: float) -> Any:
        if caplen < shortest:
            return None
        (ethertype, version_ihl, total, frag, proto, dport, udp_length, vxlan_flags, inner_type, inner_version_ihl,
         inner_total, ident, inner_frag, ttl, inner_proto, key, seq, ack, offset_byte, flags,
         window) = unpack(buf, start)
        # The inner packet lies within the UDP datagram, the datagram within the outer packet, the packet within
        # the frame: then the handler's two fast paths would read what this reads.
        if not (ethertype == 0x0800 and version_ihl == 0x45 and proto == 17 and dport in ports and vxlan_flags & 0x08
                and not frag & 0x3FFF and inner_type == 0x0800 and inner_version_ihl == 0x45 and inner_proto == 6
                and not inner_frag & 0x3FFF
                and VXLAN_INNER_IP_AT + inner_total <= 34 + udp_length <= 14 + total <= caplen
                and (n := inner_total - header_bytes[offset_byte]) >= 0):
            return None
        # (What follows is `ipv6_lane`'s ending, IPv4's fields aside: repeated, not shared, as a call of its own for
        # every segment cost the 50 MB bench capture in VXLAN 1.8 % more instructions in all: 3,073 M against
        # 3,019 M, callgrind.)
        lane = lanes.get(key)
        if lane is not None and not flags & 0x06 and count_lane(lane, frame, ts, seq, ack, flags, window, ttl, n):
            return COUNTED
        if build is None:
            return None
        names = tuples_get(key) or new_tuple(key)
        ip_end = start + VXLAN_INNER_IP_AT + inner_total
        return build(frame, ts, 4, names[0], names[1], names[2], names[3], seq, ack, flags, window,
                     buf[ip_end - n:ip_end], ttl, ident)

    return segment


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
                 source_name: str | None = None, compressed: bool = False,
                 counter: SegmentCounter | None = None, *, first_frame: int = 0) -> Iterator[T | float]:
    """Calls `handle(buf, start, end, frame, ts)` for every record and yields its non-None results.

    `buf` holds bytes already read, starting at stream offset `base` (the first record). `stats.frames` and
    `stats.skipped` are brought up to date at every chunk and at the end (not per frame: that costs time).
    `first_frame`: frames before `buf` (reading started at a record inside the file: `--jobs` byte ranges), so
    that frame numbers are those of the whole file.

    `counter` (Ethernet and Linux cooked captures, see LANE_FRAMES): the fast lane. A TCP segment without SYN
    or RST of a direction in `counter.lanes` (a flow that wants no more data) is handed to `counter.count_lane`
    straight from the record, before `handle` (which gets it only if count_lane refuses it). Such segments are most
    of a capture: this saves them the handler, the TcpPacket and a trip through the consumer's loop. They are not
    yielded; instead, at the end of every chunk whose last segment was counted so, the walker yields that segment's
    timestamp (a float), so that the consumer knows the time of the last segment and can report progress.
    The other segments of that layout (IPv4 without options, not fragmented, not cut) are built into TcpPackets
    here, from the fields unpacked for the lane, when `handle` offers its builder (`handle.tcp_packet_builder`):
    the same packet `handle` would give, ~4.7k of its ~12k instructions saved. The 4-tuples built go into
    `counter.wire_keys` when the counter has it (see `four_tuple_texts`).
    """
    record = Struct(header.byte_order + "III4x").unpack_from  # seconds, fraction, captured length (not the original)
    record_header_size = header.record_header_size
    units = float(header.ts_units)
    max_caplen = min(max(header.snaplen, STANDARD_MAX_CAPLEN), ABSOLUTE_MAX_CAPLEN)
    link_type = header.link_type
    frame = first_frame
    skipped = 0
    pos = 0
    lanes = counter.lanes if counter is not None and link_type in LANE_FRAMES else None
    count_lane = counter.count_lane if lanes is not None else None  # type: ignore[union-attr]
    layout, other_layout = lane_layouts(link_type)
    # (lane_frame_min, the shortest frame: IPv4 and TCP without options)
    lane_frame, link_length, lane_frame_min, ipv4_first, ipv4_second, _ = layout
    other_signature = other_layout[5] if other_layout is not None else -1
    header_bytes = LANE_HEADER_BYTES
    # Segments that count_lane took or the walker built since stats.tcp_packets was last brought up to date: the
    # records walked since frame `counted_from` but the `handed` ones that went to `handle` (no count to increase
    # for most records).
    counted_from = frame
    handed = 0
    counted_ts = None  # the time of the last segment, when count_lane took it
    # The handler's own TcpPacket builder, when it offers it (no --jobs sharding or count_only): the walker then
    # builds the packets of the fast lane's layout itself. Raw 4-tuple (as a lane key) -> (source text,
    # destination text, source port, destination port), and raw address -> text, as decode makes them.
    build = getattr(handle, "tcp_packet_builder", None) if lanes is not None else None
    tuples_get, new_tuple = four_tuple_texts(getattr(counter, "wire_keys", None), getattr(counter, "wire_tuples", None))
    ipv6_min, ipv6_type_at, ipv6_segment = (ipv6_lane(link_type, counter, build, tuples_get, new_tuple)
                                            if lanes is not None else (1 << 62, 0, None))
    vxlan_segment = (vxlan_lane(counter, build, tuples_get, new_tuple)  # type: ignore[arg-type]
                     if lanes is not None and link_type == lt.ETHERNET else None)
    # A record that straddles two chunks is walked from a buffer of its own (chunks.carry_over).
    pending: bytes | None = None  # the next chunk, while the straddling record is walked
    pending_pos = pending_base = 0

    def record_length(head: bytes) -> int:
        return record_header_size + record(head, 0)[2]

    try:
        while True:
            end = len(buf)
            last_header = end - record_header_size  # (one comparison per record, no subtraction)
            while pos <= last_header:
                seconds, fraction, caplen = record(buf, pos)
                start = pos + record_header_size
                stop = start + caplen
                if stop > end or caplen > max_caplen:
                    if caplen > max_caplen:
                        if counted_ts is not None:  # the consumer learns the last good segment's time first
                            yield counted_ts
                            counted_ts = None
                        raise CorruptCaptureError(
                            f"packet record claims {caplen} captured bytes, more than the maximum {max_caplen}",
                            base + pos, frame + 1)
                    break  # record continues in the next chunk
                frame += 1
                pos = stop
                ts = seconds + fraction / units
                if lanes and caplen >= lane_frame_min:
                    # IPv4 without options or fragmentation, not cut by the snap length, a valid TCP data offset
                    # (as decode's untagged Ethernet/IPv4/TCP branch): the fast lane for a known lane without SYN
                    # or RST, else the TcpPacket built here from the fields unpacked already.
                    (ipv4_1, ipv4_2, total, ident, frag, ttl, proto, key, seq, ack, offset_byte, flags,
                     window) = lane_frame(buf, start)
                    lane = lanes.get(key)
                    if (ipv4_1 == ipv4_first and ipv4_2 == ipv4_second and proto == 6 and not frag & 0x3FFF
                            and caplen - total >= link_length and (n := total - header_bytes[offset_byte]) >= 0):
                        if (lane is not None and not flags & 0x06
                                and count_lane(lane, frame, ts, seq, ack, flags, window, ttl, n)):  # type: ignore[misc]
                            counted_ts = ts
                            continue
                        if build is not None:
                            ip_end = start + link_length + total
                            # What `handle` would give (its fast path for this very layout), without unpacking the
                            # headers again: the addresses' text and the ports come from the 4-tuple's entry.
                            names = tuples_get(key) or new_tuple(key)
                            counted_ts = None
                            yield build(frame, ts, 4, names[0], names[1], names[2], names[3], seq, ack, flags,
                                        window, buf[ip_end - n:ip_end], ttl, ident)
                            continue
                if caplen >= ipv6_min and lanes:
                    if buf[start + ipv6_type_at] == 0x86:  # (0x86DD: IPv6)
                        packet = ipv6_segment(buf, start, caplen, frame, ts)  # type: ignore[misc]
                    elif buf[start + 23] == 17 and vxlan_segment is not None:  # (IPv4/UDP: maybe VXLAN)
                        packet = vxlan_segment(buf, start, caplen, frame, ts)
                    else:
                        packet = None
                    if packet is not None:
                        if packet is COUNTED:
                            counted_ts = ts
                        else:
                            counted_ts = None
                            yield packet
                        continue
                handed += 1
                # A frame of the other layout (an 802.1Q tag where there was none, or none any more): the fast
                # lane takes that layout from the next frame on.
                if (caplen > LAYOUT_SIGNATURE_AT and buf[start + LAYOUT_SIGNATURE_AT] == other_signature and lanes
                        and layout_fits(other_layout, buf, start, caplen)):  # type: ignore[arg-type]
                    layout, other_layout = other_layout, layout
                    lane_frame, link_length, lane_frame_min, ipv4_first, ipv4_second, _ = layout
                    other_signature = other_layout[5]
                out = handle(buf, start, stop, frame, ts)
                if out is None:
                    skipped += 1
                elif out.__class__ is float and build is not None:
                    # The handler's count_lane took it (a layout the walker does not read itself: inside a tunnel,
                    # IP options): only its time is left to give, at the chunk's end, as for the fast lane's own.
                    counted_ts = out
                else:
                    counted_ts = None
                    yield out
            stats.frames = frame
            stats.skipped = skipped
            stats.link_types[link_type] = frame
            stats.resume_point = (base + pos, frame, 0)  # (the next record's: a straddling one starts there too)
            if frame - counted_from != handed:
                stats.tcp_packets += frame - counted_from - handed
            counted_from = frame
            handed = 0
            if counted_ts is not None:
                yield counted_ts
                counted_ts = None
            if pending is not None:
                buf, pos, base = pending, pending_pos, pending_base
                pending = None
                continue
            # The chunk walked is let go before the next is read, so that two are never held at once (a window
            # mapped from the file counts in the peak memory: source.MAP_WINDOW).
            leftover = buf[pos:end]
            buf = chunk = b""
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
                caplen = record(leftover, 0)[2]
                raise TruncatedCaptureError(
                    f"file ends inside a packet record: {caplen} bytes announced, "
                    f"{end - pos - record_header_size} present", base + pos, frame + 1)
            buf, pending, pending_pos = carry_over(leftover, chunk, record_header_size, record_length)
            pending_base = base + end
            base += pos
            pos = 0
    except CaptureError as exc:
        exc.source = exc.source or source_name
        exc.compressed = compressed
        raise
    finally:
        stats.frames = frame
        stats.skipped = skipped
        stats.tcp_packets += frame - counted_from - handed
        if frame:
            stats.link_types[link_type] = frame
