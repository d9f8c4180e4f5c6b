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


# The encapsulations `tunnelled` makes: how mirrored or overlay traffic reaches a capturing host.
TUNNELS = ("vxlan", "vxlan-ipv6", "vxlan-linux-port", "vxlan-gpe", "geneve", "gretap", "gre-ip", "erspan1", "erspan2",
           "erspan3", "vxlan-in-gre", "gtpu", "gtpu-extension", "gretap-ipv6", "mpls-in-gre")


def _ipv4_header(protocol: int, payload_length: int, ident: int) -> bytes:
    header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_length, ident & 0xFFFF, 0x4000, 64,
                                   protocol, 0, bytes((192, 0, 2, 1)), bytes((192, 0, 2, 2))))
    return _with_checksum(header)


def _with_checksum(header: bytearray) -> bytes:
    """An IPv4 header (its checksum field zero) with its checksum filled in."""
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    header[10:12] = struct.pack("!H", ~total & 0xFFFF)
    return bytes(header)


def _ipv6_header(next_header: int, payload_length: int) -> bytes:
    return struct.pack("!IHBB", 6 << 28, payload_length, next_header, 64) + bytes.fromhex(
        "20010db8" + "00" * 11 + "01" + "20010db8" + "00" * 11 + "02")


def encapsulated(kind: str, frame: bytes, index: int) -> bytes:
    """`frame` (Ethernet) as one packet of tunnel `kind`, in an outer Ethernet frame between two other hosts."""
    outer_mac = bytes.fromhex("02000000000a02000000000b")
    if kind == "gre-ip":
        inner, protocol, gre_flags, extra = frame[14:], 0x0800, 0, b""  # the IP packet alone
    elif kind == "vxlan-in-gre":
        inner, protocol, gre_flags, extra = (outer_mac + b"\x08\x00" + encapsulated("vxlan", frame, index)[14:],
                                             0x6558, 0, b"")
    elif kind == "erspan1":
        inner, protocol, gre_flags, extra = frame, 0x88BE, 0, b""
    elif kind == "erspan2":
        # GRE sequence number; ERSPAN II header: version 1, VLAN 0, session 7, index 0.
        inner, protocol, gre_flags = frame, 0x88BE, 0x1000
        extra = struct.pack("!I", index) + struct.pack("!HHI", 0x1000, 7, 0)
    elif kind == "erspan3":
        # ERSPAN III header (version 2, session 7, a timestamp, frame type 0, O flag) and its 8-byte subheader.
        inner, protocol, gre_flags = frame, 0x22EB, 0x1000
        extra = struct.pack("!I", index) + struct.pack("!HHIHH", 0x2000, 7, index * 1000, 0, 0x0001) + bytes(8)
    elif kind in ("gretap", "gretap-ipv6"):
        inner, protocol, gre_flags, extra = frame, 0x6558, 0x2000, struct.pack("!I", 42)  # with a key
    elif kind == "mpls-in-gre":
        # One MPLS label (16, bottom of stack, TTL 64), then the IP packet.
        inner, protocol, gre_flags, extra = struct.pack("!I", (16 << 12) | 0x100 | 64) + frame[14:], 0x8847, 0, b""
    else:
        inner = protocol = gre_flags = extra = None  # type: ignore[assignment]
    if inner is not None:
        gre = struct.pack("!HH", gre_flags, protocol) + extra + inner
        if kind == "gretap-ipv6":
            return outer_mac + b"\x86\xdd" + _ipv6_header(47, len(gre)) + gre
        return outer_mac + b"\x08\x00" + _ipv4_header(47, len(gre), index) + gre
    if kind in ("vxlan", "vxlan-ipv6", "vxlan-linux-port"):
        port, shim = (8472 if kind == "vxlan-linux-port" else 4789), struct.pack("!II", 0x08000000, 4242 << 8)
    elif kind == "vxlan-gpe":
        port, shim = 4790, struct.pack("!II", 0x0C000003, 4242 << 8)  # P flag, next protocol Ethernet
    elif kind in ("gtpu", "gtpu-extension"):
        # GTP-U G-PDU: the IP packet alone (no Ethernet), TEID 0x1234; with a PDU session container extension
        # header (as 5G's N3 interface sends) and a sequence number in the second kind.
        packet = frame[14:]
        if kind == "gtpu":
            shim = struct.pack("!BBHI", 0x30, 0xFF, len(packet), 0x1234)
        else:
            extension = struct.pack("!BBBB", 1, 0x10, 0x01, 0)  # length 1 (4 bytes), QFI 1, no next extension
            shim = (struct.pack("!BBHI", 0x36, 0xFF, 4 + len(extension) + len(packet), 0x1234)
                    + struct.pack("!HBB", index & 0xFFFF, 0, 0x85) + extension)
        datagram = struct.pack("!HHHH", 2152, 2152, 8 + len(shim) + len(packet), 0) + shim + packet
        return outer_mac + b"\x08\x00" + _ipv4_header(17, len(datagram), index) + datagram
    elif kind == "geneve":
        # Version 0, one 8-byte option (class 0x0103, type 0x80, a 4-byte body), protocol Ethernet, VNI 4242.
        port, shim = 6081, struct.pack("!BBHI", 2, 0, 0x6558, 4242 << 8) + struct.pack("!HBBI", 0x0103, 0x80, 1, 0)
    else:
        raise ValueError(f"unknown tunnel {kind!r}")
    datagram = struct.pack("!HHHH", 49152 + index % 16000, port, 8 + len(shim) + len(frame), 0) + shim + frame
    if kind == "vxlan-ipv6":
        return outer_mac + b"\x86\xdd" + _ipv6_header(17, len(datagram)) + datagram
    return outer_mac + b"\x08\x00" + _ipv4_header(17, len(datagram), index) + datagram


def ipv4_fragments(frame: bytes, mtu: int) -> list[bytes]:
    """An Ethernet/IPv4 frame whose IP packet is longer than `mtu`, as the IP fragments a sender makes of it (in
    order, the DF flag cleared); any other frame as it is."""
    if frame[12:14] != b"\x08\x00" or len(frame) - 14 <= mtu:
        return [frame]
    ip = frame[14:]
    ihl = (ip[0] & 15) * 4
    total = struct.unpack_from("!H", ip, 2)[0]
    payload = ip[ihl:total]
    step = (mtu - ihl) // 8 * 8
    pieces = []
    for offset in range(0, len(payload), step):
        chunk = payload[offset:offset + step]
        more = offset + step < len(payload)
        header = bytearray(ip[:ihl])
        header[2:4] = struct.pack("!H", ihl + len(chunk))
        header[6:8] = struct.pack("!H", (0x2000 if more else 0) | offset // 8)
        header[10:12] = b"\x00\x00"
        pieces.append(frame[:14] + _with_checksum(header) + chunk)
    return pieces


def ipv6_fragments(frame: bytes, mtu: int) -> list[bytes]:
    """An Ethernet/IPv6 frame (no extension headers) whose packet is longer than `mtu`, as the fragments its
    sender makes of it (a fragment header each, identification 0x4242); any other frame as it is."""
    if frame[12:14] != b"\x86\xdd" or len(frame) - 14 <= mtu:
        return [frame]
    header, payload = frame[14:54], frame[54:]
    next_header = header[6]
    step = (mtu - 48) // 8 * 8
    pieces = []
    for offset in range(0, len(payload), step):
        chunk = payload[offset:offset + step]
        more = offset + step < len(payload)
        fixed = bytearray(header)
        fixed[4:6] = struct.pack("!H", 8 + len(chunk))
        fixed[6] = 44  # a fragment header follows
        fragment = struct.pack("!BBHI", next_header, 0, offset | more, 0x4242)
        pieces.append(frame[:14] + bytes(fixed) + fragment + chunk)
    return pieces


def tunnelled(path: Path, out: Path, kind: str, mtu: int | None = None) -> Path:
    """Every frame of an Ethernet capture inside tunnel `kind` (TUNNELS), as a mirror or an overlay delivers it to
    the host that captures: the same packets, frame for frame, with their tunnel's headers around them. `mtu`: the
    underlay's: the longer packets go as IP fragments, one frame each (then frame numbers move)."""
    header, recs = records(path)
    assert link_type(path) == 1, f"{path}: not an Ethernet capture"
    parts = [header[:16] + struct.pack("<I", 262144) + header[20:]]
    for index, record in enumerate(recs):
        seconds, micros, _, _ = struct.unpack_from("<IIII", record)
        frame = encapsulated(kind, record[16:], index)
        if not mtu:
            pieces = [frame]
        else:
            pieces = ipv6_fragments(frame, mtu) if kind == "vxlan-ipv6" else ipv4_fragments(frame, mtu)
        for piece in pieces:
            parts.append(struct.pack("<IIII", seconds, micros, len(piece), len(piece)) + piece)
    out.write_bytes(b"".join(parts))
    return out


def pktapped(path: Path, out: Path) -> Path:
    """Every Ethernet frame behind an Apple PKTAP header (link type 258, as macOS `tcpdump -i pktap` writes: the
    interface, the process's id and name, then the frame), the header laid out as xnu's bsd/net/pktap.h."""
    header, recs = records(path)
    assert link_type(path) == 1, f"{path}: not an Ethernet capture"
    parts = [header[:20] + struct.pack("<I", 258)]
    for index, record in enumerate(recs):
        seconds, micros, _, _ = struct.unpack_from("<IIII", record)
        outgoing = index % 2 == 0
        pktap = bytearray(156)
        struct.pack_into("<III24sIIIIi", pktap, 0, len(pktap), 1, 1, b"en0", 0x2 if outgoing else 0x1, 2, 14, 0,
                         4242)
        struct.pack_into("<17s", pktap, 56, b"curl")
        frame = bytes(pktap) + record[16:]
        parts.append(struct.pack("<IIII", seconds, micros, len(frame), len(frame)) + frame)
    out.write_bytes(b"".join(parts))
    return out
