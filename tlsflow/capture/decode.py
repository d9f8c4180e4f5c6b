"""Frame bytes to `TcpPacket`: link layer, then IPv4/IPv6 (options, extension headers, fragments), then TCP.

Built for speed: one handler per link type, closures over precompiled `struct` unpackers and local caches, headers
decoded in place in the reader's chunk buffer (`buf[start:end]` is the frame) so that the only bytes copied per
packet are the TCP payload, and untagged Ethernet/IPv4/TCP (the common case) decoded with a single unpack.
A handler returns the TcpPacket, or None after counting in `stats` why the frame carried none.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from socket import AF_INET6, inet_ntoa, inet_ntop
from struct import Struct

from ..packet import TcpPacket
from . import linktypes as lt
from .fragments import FragmentReassembler
from .pcap import LANE_HEADER_BYTES, UDP_VXLAN_PORTS, SegmentCounter
from .stats import CaptureStats

# handler(buf, start, end, frame, ts): the frame is buf[start:end]
FrameHandler = Callable[[bytes, int, int, int, float], "TcpPacket | None"]

IPV4_HEADER = Struct("!BBHHHBBH4s4s")
IPV6_HEADER = Struct("!IHBB16s16s")
TCP_HEADER = Struct("!HHIIBBH")  # ports, seq, ack, data offset byte, flags byte, window
IPV6_FRAGMENT = Struct("!BxHI")
# Untagged Ethernet + IPv4 without options + the first 16 bytes of TCP, in one unpack (TOS and checksum skipped).
ETHERNET_IPV4_TCP = Struct("!12xHBxHHHBB2x4s4sHHIIBBH")
ETHERNET_IPV4_TCP_MIN = 14 + 20 + 20
U16 = Struct("!H").unpack_from

IP_PROTO_TCP = 6
IP_PROTO_IPIP = 4
IP_PROTO_UDP = 17
IP_PROTO_IPV6 = 41
IP_PROTO_GRE = 47
IPV6_FRAGMENT_HEADER = 44
IPV6_AUTH_HEADER = 51
# Extension headers sized in 8-octet units after the first 8: hop-by-hop, routing, destination options,
# mobility, HIP, shim6, experimental.
IPV6_EXTENSIONS = frozenset((0, 43, 60, 135, 139, 140, 253, 254))
IPV4_MF = 0x2000
IPV4_FRAGMENT_BITS = 0x3FFF  # MF flag and fragment offset: non-zero means this is a fragment
MAX_NESTING = 8  # VLAN tags, tunnels inside tunnels, extension headers: real traffic stays far below
# Tunnels that carry the traffic of another network, as a mirror delivers it to the host that captures: AWS VPC
# Traffic Mirroring and Azure's virtual network TAP send each mirrored frame in VXLAN, AWS Gateway Load Balancer in
# Geneve, a Cisco or Arista SPAN session to a remote collector in ERSPAN (GRE); overlays (Linux vxlan and gretap
# devices, Kubernetes networks) do the same between hosts, and a mobile core carries each subscriber's packets in
# GTP-U. The connection is the inner one: its addresses, ports and TTL; the outer headers only carry it. By UDP
# destination port (IANA; 8472 is the Linux kernel's default for VXLAN when none is given): what the first bytes
# after the UDP header are.
UDP_HEADER = Struct("!HHHH")
UDP_VXLAN_GPE_PORT = 4790
UDP_GENEVE_PORT = 6081
UDP_GTPU_PORT = 2152  # GTP-U: a mobile core's user plane (3GPP TS 29.281), each subscriber's IP packets
TUNNEL_UDP_PORTS = UDP_VXLAN_PORTS | {UDP_VXLAN_GPE_PORT, UDP_GENEVE_PORT, UDP_GTPU_PORT}
# A capture filter (BPF) that lets through TCP and every tunnel these decoders read TCP out of: `tlsflow live`'s
# default, so that a mirror's receiving interface or an overlay's underlay shows its connections as they are.
TCP_AND_TUNNELS_BPF = " or ".join(["tcp", f"ip proto {IP_PROTO_GRE}", f"ip6 proto {IP_PROTO_GRE}",
                                   *(f"udp dst port {port}" for port in sorted(TUNNEL_UDP_PORTS))])
GTPU_G_PDU = 0xFF  # the message type that carries a user's packet (the others are signalling: echo, errors)
VXLAN_I_FLAG = 0x08  # "a valid VNI": set by every sender (RFC 7348)
VXLAN_GPE_NEXT = {1: lt.ETHERTYPE_IPV4, 2: lt.ETHERTYPE_IPV6, 3: lt.ETHERTYPE_TEB}  # draft-ietf-nvo3-vxlan-gpe
GENEVE_HEADER = Struct("!BxH")  # version and options length (4-byte words), flags, protocol type (an EtherType)
PKTAP_HEADER = Struct("<III")  # header length, record type, link type of the frame (xnu's bsd/net/pktap.h)
PKTAP_PACKET = 1
GRE_HEADER = Struct("!HH")  # flags and version, protocol type (an EtherType)
GRE_CHECKSUM, GRE_ROUTING, GRE_KEY, GRE_SEQUENCE = 0x8000, 0x4000, 0x2000, 0x1000
ADDRESS_CACHE_SIZE = 1 << 16  # distinct addresses remembered as text before the cache is reset


def packet_builder() -> Callable[..., TcpPacket]:
    """A callable with TcpPacket's positional signature that builds an equal object about five times as fast.

    Why: a frozen dataclass's `__init__` sets each field through `object.__setattr__`, about half of the
    per-packet cost of reading a capture. The builder fills an instance of a plain class with the same slots
    (ordinary attribute stores) and then gives it TcpPacket as its class: CPython allows `__class__` assignment
    between classes of the same layout, and the result is a genuine, frozen TcpPacket (callgrind: ~11k -> ~2k
    instructions per packet). If that is refused, the slots are written through their descriptors (a method
    call each, ~11k); if TcpPacket ever gains something neither can reproduce (`__post_init__`, non-slot fields,
    default factories), or the result differs from the real constructor, the class itself is returned, so that
    extending packet.py never silently breaks the reader.
    """
    fields = dataclasses.fields(TcpPacket)
    if hasattr(TcpPacket, "__post_init__") or any(not f.init for f in fields):
        return TcpPacket
    namespace: dict[str, object] = {"_new": object.__new__, "_cls": TcpPacket}
    params: list[str] = []
    stores: list[str] = []
    descriptor_stores: list[str] = []
    for index, field in enumerate(fields):
        descriptor = TcpPacket.__dict__.get(field.name)
        if descriptor is None or not hasattr(descriptor, "__set__"):
            return TcpPacket
        if field.default_factory is not dataclasses.MISSING:
            return TcpPacket
        namespace[f"_set{index}"] = descriptor.__set__
        if field.default is not dataclasses.MISSING:
            namespace[f"_default{index}"] = field.default
            params.append(f"{field.name}=_default{index}")
        else:
            params.append(field.name)
        stores.append(f"    packet.{field.name} = {field.name}\n")
        descriptor_stores.append(f"    _set{index}(packet, {field.name})\n")
    namespace["_slots"] = type("_TcpPacketSlots", (), {"__slots__": TcpPacket.__slots__})
    head = f"def build_tcp_packet({', '.join(params)}):\n"
    sources = (  # the faster first
        f"{head}    packet = _slots()\n{''.join(stores)}    packet.__class__ = _cls\n    return packet\n",
        f"{head}    packet = _new(_cls)\n{''.join(descriptor_stores)}    return packet\n",
    )
    sample = (7, 1.25, 4, "192.0.2.1", "192.0.2.2", 443, 51000, 1, 2, 0x18, 512, b"x", 64, 9)
    for source in sources:
        exec(source, namespace)  # noqa: S102 - generated from the dataclass fields, as dataclasses itself does
        build = namespace["build_tcp_packet"]
        try:
            packet = build(*sample)  # type: ignore[operator]
        except (TypeError, AttributeError):
            continue
        if type(packet) is TcpPacket and packet == TcpPacket(*sample):
            return build  # type: ignore[return-value]
    return TcpPacket


def shard_of(src: bytes, dst: bytes, sport: int, dport: int, count: int) -> int:
    """Which of `count` shards a TCP segment belongs to: the same for both directions of a connection and in every
    process (Python's own hash() of bytes and str is salted per process). From the ports and the last byte of each
    packed address: ephemeral ports spread connections evenly, and it is the cheapest mix to compute for every
    packet (a full-address sum costs each worker about 7 % more on the other shards' packets)."""
    return (src[-1] + dst[-1] + sport + dport) % count


def make_handlers(stats: CaptureStats, reassembler: FragmentReassembler | None,
                  shard: tuple[int, int] | None = None,
                  count_only: Callable[..., bool] | None = None,
                  counter: SegmentCounter | None = None,
                  mark_other_shard: Callable[[bytes], None] | None = None) -> Callable[[int], FrameHandler]:
    """Returns `handler_for(link_type)`; all handlers share `stats`, the reassembler and the address caches.

    With `shard=(index, count)`, a TCP segment whose connection belongs to another shard (`shard_of`) is not
    built: the handler returns its timestamp (a float) instead, so that the consumer's clock still advances.

    `count_only(key, frame, ts, seq, ack, flags, window, ttl, payload_length)` (TcpReassembler.count_only)
    is offered every untagged Ethernet/IPv4 segment first; when it takes the segment, no TcpPacket is built and
    the handler returns the timestamp as well.

    `counter` (TcpReassembler): a segment without SYN or RST whose addresses and ports are in `counter.lanes`
    is offered to `counter.count_lane` before anything else is built; when it takes the segment, the handler
    returns the timestamp. (pcap.walk_records does the same for Ethernet captures without calling the handler.)

    `mark_other_shard(key)`: with `shard`, called with the 4-tuple (as the lanes key it) of each segment of another
    shard that comes here, so that the walker's fast lane can pass that connection's next segments (see
    `parallel.shard_messages`).
    """
    lanes = counter.lanes if counter is not None else None
    count_lane = counter.count_lane if counter is not None else None
    build = packet_builder()
    shard_index, shard_count = shard if shard is not None else (0, 0)
    ipv4_unpack = IPV4_HEADER.unpack_from
    ipv6_unpack = IPV6_HEADER.unpack_from
    tcp_unpack = TCP_HEADER.unpack_from
    frag6_unpack = IPV6_FRAGMENT.unpack_from
    fast_unpack = ETHERNET_IPV4_TCP.unpack_from
    header_bytes = LANE_HEADER_BYTES
    text4: dict[bytes, str] = {}
    text6: dict[bytes, str] = {}
    text4_get = text4.get
    text6_get = text6.get

    def new_text4(raw: bytes) -> str:
        if len(text4) >= ADDRESS_CACHE_SIZE:
            text4.clear()
        text = text4[raw] = inet_ntoa(raw)
        return text

    def new_text6(raw: bytes) -> str:
        if len(text6) >= ADDRESS_CACHE_SIZE:
            text6.clear()
        text = text6[raw] = inet_ntop(AF_INET6, raw)
        return text

    def malformed() -> None:
        stats.malformed += 1

    def tcp(buf: bytes, off: int, end: int, frame: int, ts: float, version: int, src: bytes, dst: bytes,
            ttl: int, ip_id: int | None, cut: int) -> TcpPacket | None:
        if end - off < 20:
            return malformed()
        sport, dport, seq, ack, offset_byte, flags, window = tcp_unpack(buf, off)
        data = off + ((offset_byte >> 4) << 2)
        if data < off + 20 or data > end:
            return malformed()
        if cut:
            stats.truncated_payloads += 1
        stats.tcp_packets += 1
        if shard_count and (src[-1] + dst[-1] + sport + dport) % shard_count != shard_index:
            if mark_other_shard is not None:
                mark_other_shard(src + dst + buf[off:off + 4])
            return ts  # type: ignore[return-value]  # another shard's connection: only its time matters here
        if lanes and not flags & 0x06 and not cut:  # (a cut segment takes add: its facts note the cut)
            lane = lanes.get(src + dst + buf[off:off + 4])
            if lane is not None and count_lane(lane, frame, ts, seq, ack, flags, window,  # type: ignore[misc]
                                               ttl, end - data):
                return ts  # type: ignore[return-value]
        if version == 4:
            src_text = text4_get(src) or new_text4(src)
            dst_text = text4_get(dst) or new_text4(dst)
        else:
            src_text = text6_get(src) or new_text6(src)
            dst_text = text6_get(dst) or new_text6(dst)
        return build(frame, ts, version, src_text, dst_text, sport, dport, seq, ack, flags, window,
                     buf[data:end], ttl, ip_id, cut)

    def ipv4(buf: bytes, off: int, end: int, frame: int, ts: float, depth: int = 0) -> TcpPacket | None:
        if end - off < 20:
            return malformed()
        version_ihl, _tos, total, ident, frag, ttl, proto, _csum, src, dst = ipv4_unpack(buf, off)
        ihl = (version_ihl & 15) << 2
        if version_ihl >> 4 != 4 or ihl < 20:
            return malformed()
        cut = 0  # bytes of the datagram the snap length left out
        if total:  # 0 happens with TCP segmentation offload on the capturing host: use what was captured
            if total < ihl:
                return malformed()
            ip_end = off + total
            if ip_end < end:
                end = ip_end  # drop Ethernet padding and trailers
            elif ip_end > end:
                cut = ip_end - end  # snap length
        l4 = off + ihl
        if l4 > end:
            return malformed()
        if frag & IPV4_FRAGMENT_BITS:
            stats.fragments += 1
            key = (4, src, dst, ident, proto)
            if proto != IP_PROTO_TCP and not (depth < MAX_NESTING
                                              and tunnel_fragment(proto, frag & 0x1FFF, buf, l4, end, key)):
                stats.non_tcp += 1
                return None
            if cut or reassembler is None:
                stats.fragments_dropped += 1
                return None
            whole = reassembler.add(key, (frag & 0x1FFF) << 3, bool(frag & IPV4_MF), buf[l4:end], ts)
            if whole is None:
                return None
            buf, l4, end = whole, 0, len(whole)
        if proto == IP_PROTO_TCP:
            return tcp(buf, l4, end, frame, ts, 4, src, dst, ttl, ident, cut)
        if depth < MAX_NESTING:
            # (A tunnel's packet cut by the snap length is read as far as it goes: the inner IP header's length
            # tells the inner decoder how much is missing.)
            if proto == IP_PROTO_UDP:
                return udp(buf, l4, end, frame, ts, depth + 1)
            if proto == IP_PROTO_GRE:
                return gre(buf, l4, end, frame, ts, depth + 1)
            if proto == IP_PROTO_IPIP and not cut:
                return ipv4(buf, l4, end, frame, ts, depth + 1)
            if proto == IP_PROTO_IPV6 and not cut:
                return ipv6(buf, l4, end, frame, ts, depth + 1)
        stats.non_tcp += 1
        return None

    def ipv6(buf: bytes, off: int, end: int, frame: int, ts: float, depth: int = 0) -> TcpPacket | None:
        if end - off < 40:
            return malformed()
        vtf, payload_len, nh, hop_limit, src, dst = ipv6_unpack(buf, off)
        if vtf >> 28 != 6:
            return malformed()
        p = off + 40
        cut = 0
        if payload_len:  # 0: jumbogram or TSO; use what was captured
            ip_end = p + payload_len
            if ip_end < end:
                end = ip_end
            elif ip_end > end:
                cut = ip_end - end
        reassembled = False
        for _ in range(MAX_NESTING * 2):
            if nh == IP_PROTO_TCP:
                return tcp(buf, p, end, frame, ts, 6, src, dst, hop_limit, None, cut)
            if nh in IPV6_EXTENSIONS:
                if p + 8 > end:
                    return malformed()
                nh = buf[p]
                p += (buf[p + 1] + 1) << 3
            elif nh == IPV6_AUTH_HEADER:
                if p + 8 > end:
                    return malformed()
                nh = buf[p]
                p += (buf[p + 1] + 2) << 2
            elif nh == IPV6_FRAGMENT_HEADER:
                if p + 8 > end or reassembled:
                    return malformed()
                nh, offset_flags, ident = frag6_unpack(buf, p)
                p += 8
                if not offset_flags & 0xFFF9:
                    continue  # atomic fragment (RFC 6946): offset 0 and no more fragments
                stats.fragments += 1
                key = (6, src, dst, ident)
                if nh != IP_PROTO_TCP and nh not in IPV6_EXTENSIONS and not (
                        depth < MAX_NESTING and tunnel_fragment(nh, offset_flags >> 3, buf, p, end, key)):
                    stats.non_tcp += 1
                    return None
                if cut or reassembler is None:
                    stats.fragments_dropped += 1
                    return None
                whole = reassembler.add(key, offset_flags & 0xFFF8, bool(offset_flags & 1), buf[p:end], ts)
                if whole is None:
                    return None
                buf, p, end = whole, 0, len(whole)
                reassembled = True
            elif nh == IP_PROTO_IPIP and depth < MAX_NESTING and not cut:
                return ipv4(buf, p, end, frame, ts, depth + 1)
            elif nh == IP_PROTO_IPV6 and depth < MAX_NESTING and not cut:
                return ipv6(buf, p, end, frame, ts, depth + 1)
            elif nh == IP_PROTO_UDP and depth < MAX_NESTING:
                return udp(buf, p, end, frame, ts, depth + 1)
            elif nh == IP_PROTO_GRE and depth < MAX_NESTING:
                return gre(buf, p, end, frame, ts, depth + 1)
            else:
                stats.non_tcp += 1  # ICMPv6, ESP, no next header, ...
                return None
        return malformed()

    def non_ip() -> None:
        stats.non_ip += 1

    def not_tcp() -> None:
        stats.non_tcp += 1

    def tunnel_fragment(protocol: int, offset: int, buf: bytes, p: int, end: int, key: tuple[object, ...]) -> bool:
        """A fragment of a tunnel's packet, worth reassembling: GRE, or UDP to a tunnel's port (its first fragment
        says which; a later one belongs to a set its first fragment started). A mirror or an overlay whose MTU
        leaves no room for the tunnel's headers sends the large packets of a handshake so. Other fragmented UDP
        (large DNS answers, ...) is not held."""
        if protocol == IP_PROTO_GRE:
            return True
        if protocol != IP_PROTO_UDP or reassembler is None:
            return False
        if offset:
            return reassembler.holds(key)
        return end - p >= 4 and U16(buf, p + 2)[0] in TUNNEL_UDP_PORTS

    def udp(buf: bytes, off: int, end: int, frame: int, ts: float, depth: int) -> TcpPacket | None:
        """A UDP datagram: the inner packet of a tunnel that carries frames or packets (see UDP_VXLAN_PORTS), or
        nothing (DNS, QUIC, ...). `depth`: tunnels around this one, plus one."""
        if end - off < 8:
            return malformed()
        _sport, dport, length, _checksum = UDP_HEADER.unpack_from(buf, off)
        if 8 <= length < end - off:
            end = off + length
        p = off + 8
        if dport in UDP_VXLAN_PORTS:
            if end - p < 8 or not buf[p] & VXLAN_I_FLAG:
                return not_tcp()
            return ethernet(buf, p + 8, end, frame, ts, depth)
        if dport == UDP_GENEVE_PORT:
            if end - p < 8:
                return malformed()
            version_options, protocol = GENEVE_HEADER.unpack_from(buf, p)
            if version_options >> 6:  # only version 0 exists
                return not_tcp()
            p += 8 + ((version_options & 0x3F) << 2)
            if protocol == lt.ETHERTYPE_TEB:
                return ethernet(buf, p, end, frame, ts, depth)
            return network(protocol, buf, p, end, frame, ts, depth)
        if dport == UDP_GTPU_PORT:
            if end - p < 8:
                return malformed()
            flags = buf[p]
            if flags >> 5 != 1 or not flags & 0x10 or buf[p + 1] != GTPU_G_PDU:
                return not_tcp()  # GTP' or GTPv2, or a signalling message
            p += 8
            if flags & 0x07:  # sequence number, N-PDU number, next extension header type: 4 bytes
                if end - p < 4:
                    return malformed()
                next_type = buf[p + 3]
                p += 4
                while next_type:  # extension headers: a length in 4-byte units, ..., the next one's type
                    if end - p < 4 or not buf[p]:
                        return malformed()
                    p += buf[p] << 2
                    if p > end:
                        return malformed()
                    next_type = buf[p - 1]
            if p >= end:
                return malformed()
            version = buf[p] >> 4  # no protocol field: the IP version nibble says it
            if version == 4:
                return ipv4(buf, p, end, frame, ts, depth)
            if version == 6:
                return ipv6(buf, p, end, frame, ts, depth)
            return not_tcp()
        if dport == UDP_VXLAN_GPE_PORT:
            if end - p < 8:
                return malformed()
            # Without the P flag the next protocol is not given: Ethernet, as in VXLAN.
            ethertype = VXLAN_GPE_NEXT.get(buf[p + 3]) if buf[p] & 0x04 else lt.ETHERTYPE_TEB
            if ethertype is None:
                return not_tcp()  # NSH, MPLS, ...
            if ethertype == lt.ETHERTYPE_TEB:
                return ethernet(buf, p + 8, end, frame, ts, depth)
            return network(ethertype, buf, p + 8, end, frame, ts, depth)
        return not_tcp()

    def gre(buf: bytes, off: int, end: int, frame: int, ts: float, depth: int) -> TcpPacket | None:
        """A GRE packet (RFC 2784/2890): IP or Ethernet inside, ERSPAN types I-III included."""
        if end - off < 4:
            return malformed()
        flags, protocol = GRE_HEADER.unpack_from(buf, off)
        if flags & 0x0007 or flags & GRE_ROUTING:
            return not_tcp()  # version 1 (PPTP: PPP inside), or RFC 1701 source routing (obsolete)
        p = off + 4
        if flags & GRE_CHECKSUM:
            p += 4
        if flags & GRE_KEY:
            p += 4
        if flags & GRE_SEQUENCE:
            p += 4
        if protocol == lt.ETHERTYPE_ERSPAN_II:
            # Type II has a header of its own (version 1) and a GRE sequence number; type I has neither.
            if flags & GRE_SEQUENCE:
                if end - p < 8 or buf[p] >> 4 != 1:
                    return malformed()
                p += 8
            protocol = lt.ETHERTYPE_TEB
        elif protocol == lt.ETHERTYPE_ERSPAN_III:
            if end - p < 12 or buf[p] >> 4 != 2:
                return malformed()
            last = U16(buf, p + 10)[0]  # ... frame type (5 bits), hardware id, direction, granularity, O flag
            if (last >> 10) & 0x1F:
                return not_tcp()  # a frame type other than Ethernet
            p += 20 if last & 1 else 12  # O: an 8-byte platform-specific subheader follows
            protocol = lt.ETHERTYPE_TEB
        if protocol == lt.ETHERTYPE_TEB:
            return ethernet(buf, p, end, frame, ts, depth)
        return network(protocol, buf, p, end, frame, ts, depth)

    def network(ethertype: int, buf: bytes, p: int, end: int, frame: int, ts: float,
                depth: int = 0) -> TcpPacket | None:
        """What follows a link header that names its payload by EtherType (Ethernet, SLL, SLL2, and inside a
        tunnel). `depth`: the tunnels around it."""
        for _ in range(MAX_NESTING):
            if ethertype == lt.ETHERTYPE_IPV4:
                return ipv4(buf, p, end, frame, ts, depth)
            if ethertype == lt.ETHERTYPE_IPV6:
                return ipv6(buf, p, end, frame, ts, depth)
            if ethertype == lt.ETHERTYPE_TEB:  # an Ethernet frame inside a tunnel
                if end - p < 14:
                    return malformed()
                ethertype = U16(buf, p + 12)[0]
                p += 14
            elif ethertype in lt.VLAN_TPIDS:  # 802.1Q / QinQ: 2-byte tag control, then the inner EtherType
                if p + 4 > end:
                    return malformed()
                ethertype = U16(buf, p + 2)[0]
                p += 4
            elif ethertype <= 1500:  # an 802.3 length: only LLC/SNAP carries an EtherType
                if end - p < 8 or buf[p:p + 3] != b"\xaa\xaa\x03":
                    return non_ip()
                ethertype = U16(buf, p + 6)[0]
                p += 8
            elif ethertype == lt.ETHERTYPE_PPPOE_SESSION:
                if p + 8 > end:
                    return malformed()
                ppp_protocol = U16(buf, p + 6)[0]
                p += 8
                if ppp_protocol == 0x0021:
                    ethertype = lt.ETHERTYPE_IPV4
                elif ppp_protocol == 0x0057:
                    ethertype = lt.ETHERTYPE_IPV6
                else:
                    return non_ip()
            elif ethertype == lt.ETHERTYPE_MPLS or ethertype == lt.ETHERTYPE_MPLS_MULTICAST:
                while True:  # label stack: 4 bytes each, bottom-of-stack bit ends it
                    if p + 4 > end:
                        return malformed()
                    bottom = buf[p + 2] & 1
                    p += 4
                    if bottom:
                        break
                if p >= end:
                    return malformed()
                version = buf[p] >> 4  # no protocol field after MPLS: the IP version nibble says it
                if version == 4:
                    ethertype = lt.ETHERTYPE_IPV4
                elif version == 6:
                    ethertype = lt.ETHERTYPE_IPV6
                else:
                    return non_ip()
            else:
                return non_ip()
        return malformed()

    def ethernet(buf: bytes, start: int, end: int, frame: int, ts: float, depth: int = 0) -> TcpPacket | None:
        if end - start >= ETHERNET_IPV4_TCP_MIN:
            (ethertype, version_ihl, total, ident, frag, ttl, proto, src, dst, sport, dport, seq, ack, offset_byte,
             flags, window) = fast_unpack(buf, start)
            if ((proto == IP_PROTO_GRE or (proto == IP_PROTO_UDP and dport in TUNNEL_UDP_PORTS)) and total >= 28
                    and ethertype == 0x0800 and version_ihl == 0x45 and not frag & IPV4_FRAGMENT_BITS and not depth):
                # A tunnel in IPv4 without options (VXLAN, GRE, ERSPAN, Geneve, GTP-U): straight to its decoder, as
                # `network` and `ipv4` would hand it over (the 50 MB bench capture in ERSPAN II: 4,595 -> 4,147 M
                # instructions, callgrind; the capture itself: 2,516 M). VXLAN's usual frames take the walkers'
                # lane before this (pcap.vxlan_lane); these are the others, and those of readers without lanes.
                inner_end = start + 14 + total
                if inner_end > end:  # noqa: PLR1730 (per packet: min() costs a call)
                    inner_end = end  # (cut by the snap length)
                return (gre if proto == IP_PROTO_GRE else udp)(buf, start + 34, inner_end, frame, ts, 1)
            if (ethertype == 0x0800 and version_ihl == 0x45 and proto == 6 and not frag & IPV4_FRAGMENT_BITS
                    and total >= 40):
                ip_start = start + 14
                ip_end = ip_start + total
                data = ip_start + header_bytes[offset_byte]  # (past ip_end when the data offset is invalid)
                if ip_end <= end and data <= ip_end:
                    stats.tcp_packets += 1
                    if shard_count and ((src[-1] + dst[-1] + sport + dport)
                                        % shard_count != shard_index):
                        if mark_other_shard is not None:
                            mark_other_shard(buf[start + 26:start + 38])
                        return ts  # type: ignore[return-value]
                    if lanes and not flags & 0x06:
                        lane = lanes.get(buf[start + 26:start + 38])
                        if lane is not None and count_lane(lane, frame, ts, seq, ack,  # type: ignore[misc]
                                                           flags, window, ttl, ip_end - data):
                            return ts  # type: ignore[return-value]
                    src_text = text4_get(src) or new_text4(src)
                    dst_text = text4_get(dst) or new_text4(dst)
                    if count_only is not None and count_only((src_text, sport, dst_text, dport), frame, ts, seq, ack,
                                                             flags, window, ttl, ip_end - data):
                        return ts  # type: ignore[return-value]
                    return build(frame, ts, 4, src_text, dst_text, sport, dport, seq, ack, flags, window,
                                 buf[data:ip_end], ttl, ident)
        if end - start < 14:
            return malformed()
        return network(U16(buf, start + 12)[0], buf, start + 14, end, frame, ts, depth)

    def linux_sll(buf: bytes, start: int, end: int, frame: int, ts: float) -> TcpPacket | None:
        if end - start < 16:
            return malformed()
        return network(U16(buf, start + 14)[0], buf, start + 16, end, frame, ts)

    def linux_sll2(buf: bytes, start: int, end: int, frame: int, ts: float) -> TcpPacket | None:
        if end - start < 20:
            return malformed()
        return network(U16(buf, start)[0], buf, start + 20, end, frame, ts)

    def bsd_loopback(buf: bytes, start: int, end: int, frame: int, ts: float) -> TcpPacket | None:
        if end - start < 4:
            return malformed()
        # The address family fits in one byte, so it is the first byte (little-endian writer) or the last.
        family = buf[start] or buf[start + 3]
        if family == lt.AF_INET:
            return ipv4(buf, start + 4, end, frame, ts)
        if family in lt.AF_INET6_BSD:
            return ipv6(buf, start + 4, end, frame, ts)
        return non_ip()

    def raw_ip(buf: bytes, start: int, end: int, frame: int, ts: float) -> TcpPacket | None:
        if start >= end:
            return malformed()
        version = buf[start] >> 4
        if version == 4:
            return ipv4(buf, start, end, frame, ts)
        if version == 6:
            return ipv6(buf, start, end, frame, ts)
        return non_ip()

    def unsupported(buf: bytes, start: int, end: int, frame: int, ts: float) -> None:
        stats.non_ip += 1

    def pktap(buf: bytes, start: int, end: int, frame: int, ts: float) -> TcpPacket | None:
        """Apple's PKTAP: a little-endian header (its length, the record type, the link type of the frame that
        follows it, then the interface and the process that sent or received the frame), then the frame."""
        if end - start < 12:
            return malformed()
        length, record_type, inner_link_type = PKTAP_HEADER.unpack_from(buf, start)
        if record_type != PKTAP_PACKET:
            return non_ip()
        if length < 12 or length > end - start:
            return malformed()
        inner = handlers.get(inner_link_type)
        if inner is None or inner is pktap:
            return non_ip()
        return inner(buf, start + length, end, frame, ts)

    if shard is None and count_only is None:
        # The walkers build the TcpPackets of plain IPv4/TCP frames of these link types themselves, from the fields
        # of their fast lane's unpack (see pcap.walk_records), with this builder: as these handlers would.
        for handler in (ethernet, linux_sll, linux_sll2):
            handler.tcp_packet_builder = build  # type: ignore[attr-defined]

    handlers: dict[int, FrameHandler] = {
        lt.ETHERNET: ethernet,
        lt.LINUX_SLL: linux_sll,
        lt.LINUX_SLL2: linux_sll2,
        lt.NULL: bsd_loopback,
        lt.LOOP: bsd_loopback,
        lt.RAW: raw_ip,
        lt.RAW_BSD: raw_ip,
        lt.RAW_OPENBSD: raw_ip,
        lt.IPV4: ipv4,
        lt.IPV6: ipv6,
        lt.PKTAP: pktap,
    }

    def handler_for(link_type: int) -> FrameHandler:
        return handlers.get(link_type, unsupported)

    return handler_for
