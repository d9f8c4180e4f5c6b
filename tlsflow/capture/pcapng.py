"""pcapng files: several sections (each with its own byte order), several interfaces with their own link types
and timestamp resolutions, Enhanced/Simple/obsolete Packet Blocks, Decryption Secrets Blocks.

Walked in chunks like pcap.py. Blocks that Wireshark turns into frames without packet data (custom blocks,
systemd journal entries, sysdig events) still take a frame number, so that our numbers match Wireshark's.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from struct import Struct
from typing import TypeVar

from . import linktypes as lt
from .chunks import carry_over
from .errors import CaptureError, CorruptCaptureError, NotACaptureError, TruncatedCaptureError
from .pcap import (
    COUNTED,
    LANE_FRAMES,
    LANE_HEADER_BYTES,
    LAYOUT_SIGNATURE_AT,
    SegmentCounter,
    four_tuple_texts,
    ipv6_lane,
    lane_layouts,
    layout_fits,
    vxlan_lane,
)
from .source import SourceReadError
from .stats import CaptureStats

T = TypeVar("T")

SHB_MAGIC = b"\x0a\x0d\x0d\x0a"
SECTION_HEADER = 0x0A0D0D0A
INTERFACE_DESCRIPTION = 0x00000001
PACKET = 0x00000002  # obsolete Packet Block
SIMPLE_PACKET = 0x00000003
NAME_RESOLUTION = 0x00000004
INTERFACE_STATISTICS = 0x00000005
ENHANCED_PACKET = 0x00000006
DECRYPTION_SECRETS = 0x0000000A
CUSTOM_COPY = 0x00000BAD
CUSTOM_NO_COPY = 0x40000BAD
SYSTEMD_JOURNAL_EXPORT = 0x00000009
# Blocks without packet data that tshark 4.0 nevertheless shows as frames (checked with tshark 4.0.17).
FRAME_WITHOUT_PACKET = frozenset((CUSTOM_COPY, CUSTOM_NO_COPY, SYSTEMD_JOURNAL_EXPORT, 0x204, 0x216, 0x221))
IGNORED = frozenset((NAME_RESOLUTION, INTERFACE_STATISTICS, 0x7, 0x8))  # IRIG/ARINC: obsolete, never framed
TLS_KEY_LOG = 0x544C534B  # DSB secrets type "TLSK": NSS key log text

BYTE_ORDER_LITTLE = b"\x4d\x3c\x2b\x1a"
BYTE_ORDER_BIG = b"\x1a\x2b\x3c\x4d"
OPT_END = 0
IF_TSRESOL = 9
IF_TSOFFSET = 14
MAX_BLOCK_SIZE = 32 << 20  # larger is a corrupt length, not a packet (Wireshark's own limit is 16 MiB)
# The most bytes asked of the source at a time: it gives what it reads best, up to that (source.READ_SIZE bytes
# copied, or a window of source.MAP_WINDOW bytes mapped from a regular file).
CHUNK_SIZE = 1 << 26

(_IFACE_HANDLER, _IFACE_UNITS, _IFACE_OFFSET, _IFACE_LINK_TYPE, _IFACE_SNAPLEN, _IFACE_FRAMES, _IFACE_LANE,
 _IFACE_OTHER_LANE) = range(8)
# False: every block takes walk_blocks' general checks (tests compare the two ways).
FAST_BLOCKS = True


def is_pcapng_magic(head: bytes) -> bool:
    return head[:4] == SHB_MAGIC


class _Layout:
    """The structs of one byte order; a section picks one."""

    def __init__(self, order: str) -> None:
        self.block_header = Struct(order + "II").unpack_from
        self.u32 = Struct(order + "I").unpack_from
        # A block's type and length, and the first fields of an enhanced packet block as if it were one (interface,
        # ts high, ts low, caplen; not the original length): one unpack for most blocks of a file (the fields mean
        # nothing in a block of another type).
        self.head = Struct(order + "IIIIII").unpack_from
        # A block's length at its end, then the next block's head as `head` reads it: one unpack instead of two.
        self.tail_and_head = Struct(order + "IIIIIII").unpack_from
        self.obsolete = Struct(order + "HHIIII").unpack_from  # interface, drops, ts high, ts low, caplen, len
        self.interface = Struct(order + "HHI").unpack_from  # link type, reserved, snaplen
        self.version = Struct(order + "HH").unpack_from
        self.option = Struct(order + "HH").unpack_from
        self.secrets = Struct(order + "II").unpack_from
        self.i64 = Struct(order + "q").unpack_from


_LITTLE = _Layout("<")
_BIG = _Layout(">")


def _packet_block_problem(kind: str, length: int, caplen: int, interface: int, interfaces: int) -> str | None:
    """Why a (enhanced or obsolete) packet block of `length` bytes, whole and at least 32 long, cannot be read."""
    if caplen > length - 32:
        return f"{kind} block: {caplen} captured bytes do not fit in a block of {length}"
    if interface >= interfaces:
        return f"packet on interface {interface}, but the section describes {interfaces}"
    return None


def _interface_time(layout: _Layout, buf: bytes, p: int, end: int) -> tuple[float, float]:
    """(timestamp units per second, offset in seconds) from an IDB's options; defaults: microseconds, 0."""
    units = 1_000_000.0
    offset = 0.0
    while p + 4 <= end:
        code, length = layout.option(buf, p)
        if code == OPT_END or p + 4 + length > end:
            break
        if code == IF_TSRESOL and length >= 1:
            resolution = buf[p + 4]
            units = float(2 ** (resolution & 0x7F)) if resolution & 0x80 else float(10 ** resolution)
        elif code == IF_TSOFFSET and length >= 8:
            offset = float(layout.i64(buf, p + 4)[0])
        p += 4 + ((length + 3) & ~3)
    return units, offset


def walk_blocks(read_chunk: Callable[[int], bytes], buf: bytes, base: int,
                handler_for: Callable[[int], Callable[[bytes, int, int, int, float], T | None]],
                stats: CaptureStats, secrets: list[bytes], source_name: str | None = None,
                compressed: bool = False, counter: SegmentCounter | None = None, *,
                first_frame: int = 0) -> Iterator[T | float]:
    """Calls the interface's handler(buf, start, end, frame, ts) for every packet and yields non-None results.

    `buf` holds bytes already read, starting at stream offset `base`, which must be a section header block.
    `first_frame`: frames before the first packet block read (`--jobs` byte ranges start inside the file: `buf`
    then begins with their section's header and interface blocks, which take no frame number).
    `stats.frames`, `stats.skipped` and `stats.link_types` are brought up to date at every chunk and at the end.
    `counter`: the fast lane of pcap.walk_records, for enhanced packet blocks of interfaces with a link type in
    pcap.LANE_FRAMES (a chunk whose last segment went there ends with that segment's timestamp).
    """
    lanes = counter.lanes if counter is not None else None
    header_bytes = LANE_HEADER_BYTES
    count_lane = counter.count_lane if counter is not None else None
    # Segments that count_lane took or the walker built since stats.tcp_packets was last brought up to date: the
    # frames since `counted_from` but the `handed` ones (given to a handler, or without a packet), as in pcap.
    counted_from = first_frame
    handed = 0
    counted_ts = None  # the time of the last segment, when count_lane took it
    # For the TcpPackets built here (as in pcap.walk_records).
    tuples_get, new_tuple = four_tuple_texts(getattr(counter, "wire_keys", None), getattr(counter, "wire_tuples", None))
    # A block that straddles two chunks is walked from a buffer of its own (chunks.carry_over).
    pending: bytes | None = None
    pending_pos = pending_base = 0
    layout = _LITTLE
    block_header = layout.block_header

    def block_length(head: bytes) -> int:
        block_type, length = block_header(head, 0)  # in the byte order of the section being read
        # A section header's length is read in its own byte order, by the loop: not here.
        return length if block_type != SECTION_HEADER and length <= MAX_BLOCK_SIZE else -1

    head = layout.head
    u32 = layout.u32
    tail_and_head = layout.tail_and_head
    ahead: tuple[int, ...] = ()
    interface = caplen = -1  # (until a block's head is read: a short block read first leaves them so)
    interfaces: list[list] = []  # per interface: handler, units, offset, link type, snaplen, frames (see _IFACE_*)
    retired: list[list] = []  # interfaces of finished sections, until their frame counts are folded into stats
    frame = first_frame
    skipped = 0
    last_ts = 0.0  # Simple Packet Blocks carry no timestamp: they get the latest one seen
    pos = 0

    def fold_link_types(frame: int, skipped: int) -> None:
        for iface in retired + interfaces:
            if iface[_IFACE_FRAMES]:
                stats.link_types[iface[_IFACE_LINK_TYPE]] = (stats.link_types.get(iface[_IFACE_LINK_TYPE], 0)
                                                             + iface[_IFACE_FRAMES])
                iface[_IFACE_FRAMES] = 0
        retired.clear()
        stats.frames = frame
        stats.skipped = skipped

    def corrupt(message: str, at: int, frame: int) -> CaptureError:
        # (`frame` passed, not read from here: a variable that a nested function reads is slower in the loop)
        if base + at == 0:
            return NotACaptureError(message, 0)
        return CorruptCaptureError(message, base + at, frame + 1)

    # The interface of the last enhanced packet block, in locals: most files have one, and its blocks then take the
    # fast test below (its own index, a whole block, a possible captured length, the same length at both ends)
    # instead of the general checks and five list lookups. Its frames are counted in `cur_count` and folded into
    # its entry before the counts are read.
    cur_index = -1  # no interface yet (and after a section header: interface numbers restart)
    cur_iface: list | None = None
    cur_count = 0
    cur_handler = cur_lane = cur_build = None
    cur_units = 1.0
    cur_offset = 0.0
    cur_link_length = cur_lane_min = cur_ipv4_first = cur_ipv4_second = 0
    cur_other_signature = -1  # the signature byte of the interface's other layout (pcap.lane_layouts), -1: none
    # The interface's IPv6 lane (pcap.ipv6_lane): shortest frame, where the EtherType is, the segment's function;
    # and its VXLAN lane (pcap.vxlan_lane, Ethernet interfaces) or None.
    cur_ipv6_min, cur_ipv6_at, cur_ipv6_segment, cur_vxlan_segment = 1 << 62, 0, None, None
    last_high, high_part = 0, 0.0  # an EPB time's high word, and it times 2**32 as a float

    try:
        while True:
            end = len(buf)
            # (comparisons with these allocate no integer, unlike end - pos)
            last_header, last_head = end - 12, end - 24
            ahead_at = -1  # the block whose head came with the previous block's trailing length (in `ahead`)
            while pos <= last_header:
                if pos == ahead_at:
                    _, block_type, length, interface, ts_high, ts_low, caplen = ahead
                elif pos <= last_head:
                    block_type, length, interface, ts_high, ts_low, caplen = head(buf, pos)
                else:
                    block_type, length = block_header(buf, pos)  # (too short for an enhanced packet block)
                stop = pos + length
                # (caplen <= length - 32 implies length >= 32; the block is whole when its last word is in `buf`)
                if (interface == cur_index and block_type == ENHANCED_PACKET and caplen <= length - 32
                        and not length & 3):
                    if stop <= last_head:
                        ahead = tail_and_head(buf, stop - 4)
                        ahead_at = stop
                        fast = ahead[0] == length
                    else:
                        fast = stop <= end and u32(buf, stop - 4)[0] == length
                else:
                    fast = False
                if not fast:
                    if block_type == SECTION_HEADER:  # a palindrome: readable before the byte order is known
                        magic = buf[pos + 8:pos + 12]
                        if magic == BYTE_ORDER_LITTLE:
                            layout = _LITTLE
                        elif magic == BYTE_ORDER_BIG:
                            layout = _BIG
                        else:
                            raise corrupt(f"section header has an invalid byte-order magic {magic.hex()}", pos, frame)
                        block_header = layout.block_header
                        head = layout.head
                        u32 = layout.u32
                        tail_and_head = layout.tail_and_head
                        length = block_header(buf, pos)[1]
                        stop = pos + length
                    if length < 12 or length & 3:
                        raise corrupt(f"block of type 0x{block_type:08x} has an impossible length {length}", pos, frame)
                    if stop > end:
                        if length > MAX_BLOCK_SIZE:
                            raise corrupt(f"block of type 0x{block_type:08x} claims {length} bytes, more than the "
                                          f"maximum {MAX_BLOCK_SIZE}", pos, frame)
                        break  # block continues in the next chunk
                    if u32(buf, stop - 4)[0] != length:
                        raise corrupt(f"block of type 0x{block_type:08x}: length at its end "
                                      f"({u32(buf, stop - 4)[0]}) differs from its start ({length})", pos, frame)
                    if block_type != ENHANCED_PACKET:
                        if block_type == SIMPLE_PACKET:
                            if not interfaces:
                                raise corrupt("simple packet block before any interface description block", pos, frame)
                            if length < 16:
                                raise corrupt(f"simple packet block too short ({length} bytes)", pos, frame)
                            iface = interfaces[0]  # SPBs always belong to the section's first interface
                            caplen = min(layout.u32(buf, pos + 8)[0], length - 16)
                            if iface[_IFACE_SNAPLEN]:
                                caplen = min(caplen, iface[_IFACE_SNAPLEN])
                            start = pos + 12
                        elif block_type == PACKET:
                            if length < 32:
                                raise corrupt(f"packet block too short ({length} bytes)", pos, frame)
                            interface, _drops, ts_high, ts_low, caplen, _original = layout.obsolete(buf, pos + 8)
                            problem = _packet_block_problem("packet", length, caplen, interface, len(interfaces))
                            if problem:
                                raise corrupt(problem, pos, frame)
                            iface = interfaces[interface]
                            last_ts = ((ts_high << 32) | ts_low) / iface[_IFACE_UNITS] + iface[_IFACE_OFFSET]
                            start = pos + 28
                        else:
                            if block_type == SECTION_HEADER:
                                if length < 28:
                                    raise corrupt(f"section header block too short ({length} bytes)", pos, frame)
                                major, minor = layout.version(buf, pos + 12)
                                if major != 1:
                                    raise corrupt(f"unsupported pcapng version {major}.{minor}", pos, frame)
                                if cur_iface is not None:  # its frames are counted before it retires
                                    cur_iface[_IFACE_FRAMES] += cur_count
                                    cur_count = 0
                                retired.extend(interfaces)
                                interfaces = []  # interface numbers restart in every section
                                cur_index, cur_iface = -1, None
                                stats.sections += 1
                            elif block_type == INTERFACE_DESCRIPTION:
                                if length < 20:
                                    raise corrupt(f"interface description block too short ({length} bytes)", pos, frame)
                                link_type, _reserved, snaplen = layout.interface(buf, pos + 8)
                                units, offset = _interface_time(layout, buf, pos + 16, stop - 4)
                                handler = handler_for(link_type)
                                # (unpack, link header length, shortest frame, the first two numbers of a frame
                                # that fits, its signature byte (see pcap.lane_layouts), the handler's TcpPacket
                                # builder if it offers it), and the other layout the walker may switch to
                                lane_spec = other_spec = None
                                if lanes is not None and link_type in LANE_FRAMES:
                                    build = getattr(handler, "tcp_packet_builder", None)
                                    start_layout, other_layout = lane_layouts(link_type)
                                    ipv6_and_vxlan = (
                                        *ipv6_lane(link_type, counter, build,  # type: ignore[arg-type]
                                                   tuples_get, new_tuple),
                                        vxlan_lane(counter, build, tuples_get, new_tuple)  # type: ignore[arg-type]
                                        if link_type == lt.ETHERNET else None)
                                    lane_spec = (*start_layout, build, ipv6_and_vxlan)
                                    other_spec = ((*other_layout, build, ipv6_and_vxlan) if other_layout is not None
                                                  else None)
                                interfaces.append([handler, units, offset, link_type, snaplen, 0, lane_spec,
                                                   other_spec])
                                stats.interfaces += 1
                            elif block_type == DECRYPTION_SECRETS:
                                if length < 20:
                                    raise corrupt(f"decryption secrets block too short ({length} bytes)", pos, frame)
                                secrets_type, secrets_length = layout.secrets(buf, pos + 8)
                                if secrets_length > length - 20:
                                    raise corrupt(f"decryption secrets block: {secrets_length} bytes of secrets do "
                                                  f"not fit in a block of {length}", pos, frame)
                                stats.secrets_blocks += 1
                                if secrets_type == TLS_KEY_LOG:
                                    secrets.append(buf[pos + 16:pos + 16 + secrets_length])
                            elif block_type in FRAME_WITHOUT_PACKET:
                                frame += 1
                                handed += 1
                                stats.non_ip += 1
                                stats.ignored_blocks += 1
                                skipped += 1
                            elif block_type in IGNORED:
                                stats.ignored_blocks += 1
                            else:
                                stats.unknown_blocks += 1
                            pos = stop
                            continue
                        # Simple and obsolete packet blocks.
                        frame += 1
                        iface[_IFACE_FRAMES] += 1
                        pos = stop
                        handed += 1
                        out = iface[_IFACE_HANDLER](buf, start, start + caplen, frame, last_ts)
                        if out is None:
                            skipped += 1
                        else:
                            counted_ts = None
                            yield out
                        continue
                    # An enhanced packet block that the fast test did not take: checked here, and its interface
                    # becomes the current one.
                    if length < 32:
                        raise corrupt(f"enhanced packet block too short ({length} bytes)", pos, frame)
                    # (interface, ts_high, ts_low and caplen came with the block's header: it is whole, so 32
                    # bytes or more are left from pos)
                    problem = _packet_block_problem("enhanced packet", length, caplen, interface, len(interfaces))
                    if problem:
                        raise corrupt(problem, pos, frame)
                    if cur_iface is not None:
                        cur_iface[_IFACE_FRAMES] += cur_count
                        cur_count = 0
                    cur_index = interface if FAST_BLOCKS else -1
                    cur_iface = interfaces[interface]
                    cur_handler, cur_units, cur_offset = cur_iface[_IFACE_HANDLER], cur_iface[_IFACE_UNITS], \
                        cur_iface[_IFACE_OFFSET]
                    lane_spec = cur_iface[_IFACE_LANE]
                    if lane_spec is None:
                        cur_lane = cur_build = None
                        cur_other_signature = -1
                        cur_ipv6_min = 1 << 62  # (no IPv6 lane either)
                    else:
                        (cur_lane, cur_link_length, cur_lane_min, cur_ipv4_first, cur_ipv4_second, _,
                         cur_build, (cur_ipv6_min, cur_ipv6_at, cur_ipv6_segment, cur_vxlan_segment)) = lane_spec
                        other_spec = cur_iface[_IFACE_OTHER_LANE]
                        cur_other_signature = other_spec[5] if other_spec is not None else -1
                # An enhanced packet block of the current interface.
                start = pos + 28
                frame += 1
                cur_count += 1
                # The 64-bit count as a float, rounded once as int / float would round it (the high word times
                # 2**32 is exact), without the two large integers.
                if ts_high != last_high:  # (once every 71 minutes of microseconds: spares a mixed product)
                    last_high = ts_high
                    high_part = ts_high * 4294967296.0
                last_ts = (high_part + ts_low) / cur_units + cur_offset
                pos = stop
                if cur_lane is not None and caplen >= cur_lane_min and lanes:
                    # As in pcap.walk_records.
                    (ipv4_1, ipv4_2, total, ident, frag, ttl, proto, key, seq, ack, offset_byte, flags,
                     window) = cur_lane(buf, start)
                    lane = lanes.get(key)
                    if (ipv4_1 == cur_ipv4_first and ipv4_2 == cur_ipv4_second and proto == 6 and not frag & 0x3FFF
                            and caplen - total >= cur_link_length and (n := total - header_bytes[offset_byte]) >= 0):
                        if (lane is not None and not flags & 0x06
                                and count_lane(lane, frame, last_ts, seq, ack, flags, window,  # type: ignore[misc]
                                               ttl, n)):
                            counted_ts = last_ts
                            continue
                        if cur_build is not None:
                            ip_end = start + cur_link_length + total
                            names = tuples_get(key) or new_tuple(key)
                            counted_ts = None
                            yield cur_build(frame, last_ts, 4, names[0], names[1], names[2], names[3], seq, ack,
                                            flags, window, buf[ip_end - n:ip_end], ttl, ident)
                            continue
                if caplen >= cur_ipv6_min and lanes:
                    if buf[start + cur_ipv6_at] == 0x86:  # (0x86DD: IPv6)
                        packet = cur_ipv6_segment(buf, start, caplen, frame, last_ts)  # (pcap.ipv6_lane)
                    elif buf[start + 23] == 17 and cur_vxlan_segment is not None:  # (IPv4/UDP: maybe VXLAN)
                        packet = cur_vxlan_segment(buf, start, caplen, frame, last_ts)
                    else:
                        packet = None
                    if packet is not None:
                        if packet is COUNTED:
                            counted_ts = last_ts
                        else:
                            counted_ts = None
                            yield packet
                        continue
                handed += 1
                if (caplen > LAYOUT_SIGNATURE_AT and buf[start + LAYOUT_SIGNATURE_AT] == cur_other_signature
                        and lanes):
                    # As in pcap.walk_records: maybe a frame of the interface's other layout (802.1Q tagged or not).
                    other_spec = cur_iface[_IFACE_OTHER_LANE]  # type: ignore[index]
                    if layout_fits(other_spec, buf, start, caplen):
                        cur_iface[_IFACE_OTHER_LANE], cur_iface[_IFACE_LANE] = (  # type: ignore[index]
                            cur_iface[_IFACE_LANE], other_spec)  # type: ignore[index]
                        (cur_lane, cur_link_length, cur_lane_min, cur_ipv4_first, cur_ipv4_second, _,
                         cur_build, _) = other_spec
                        cur_other_signature = cur_iface[_IFACE_OTHER_LANE][5]  # type: ignore[index]
                out = cur_handler(buf, start, start + caplen, frame, last_ts)  # type: ignore[misc]
                if out is None:
                    skipped += 1
                elif out.__class__ is float and cur_build is not None:
                    counted_ts = out  # the handler's count_lane took it (as pcap.walk_records)
                else:
                    counted_ts = None
                    yield out
            if cur_iface is not None:
                cur_iface[_IFACE_FRAMES] += cur_count
                cur_count = 0
            fold_link_types(frame, skipped)
            stats.resume_point = (base + pos, frame, stats.sections + stats.interfaces + stats.secrets_blocks)
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
            # The chunk walked is let go before the next is read (as in pcap.walk_records).
            leftover = buf[pos:end]
            buf = chunk = b""
            try:
                chunk = read_chunk(CHUNK_SIZE)
            except SourceReadError as exc:
                cls = TruncatedCaptureError if exc.truncated else CorruptCaptureError
                raise cls(str(exc), base + end, frame + 1) from exc
            if not chunk:
                if pos == end:
                    return
                if end - pos < 12:
                    raise TruncatedCaptureError(f"file ends inside a block header ({end - pos} of 12 bytes)",
                                                base + pos, frame + 1)
                block_type, length = block_header(leftover, 0)
                raise TruncatedCaptureError(
                    f"file ends inside a block of type 0x{block_type:08x}: {length} bytes announced, "
                    f"{end - pos} present", base + pos, frame + 1)
            buf, pending, pending_pos = carry_over(leftover, chunk, 12, block_length)
            pending_base = base + end
            base += pos
            pos = 0
    except CaptureError as exc:
        exc.source = exc.source or source_name
        exc.compressed = compressed
        if counted_ts is not None:  # the consumer learns the last good segment's time before the error
            yield counted_ts
        raise
    finally:
        stats.tcp_packets += frame - counted_from - handed
        if cur_iface is not None:
            cur_iface[_IFACE_FRAMES] += cur_count
        fold_link_types(frame, skipped)
