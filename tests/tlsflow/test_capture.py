"""Capture reader on synthetic captures: file formats, link layers, IP layers, damaged input.

Packets are built with scapy (which knows the header layouts independently of us); the pcap/pcapng containers are
written by hand where byte order, timestamp resolution and block types must be controlled exactly, and with
scapy's own writers where they suffice. Where tshark is installed, every synthetic file is also read by tshark and
the TCP frames must agree (frame number, ports, sequence number, payload length).
"""
from __future__ import annotations

import gzip
import io
import itertools
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.all import (
    ARP,
    IP,
    PPP,
    TCP,
    UDP,
    CookedLinux,
    CookedLinuxV2,
    Dot1AD,
    Dot1Q,
    Ether,
    IPOption_NOP,
    IPOption_RR,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    PPPoE,
    fragment,
    fragment6,
    raw,
)
from scapy.contrib.mpls import MPLS
from scapy.utils import PcapNgWriter, wrpcap

from tlsflow.capture import (
    CaptureError,
    CorruptCaptureError,
    NotACaptureError,
    TruncatedCaptureError,
    open_capture,
)
from tlsflow.capture.fragments import FragmentReassembler
from tlsflow.capture.stats import CaptureStats
from tlsflow.packet import ACK, PSH, SYN, TcpPacket

TSHARK = shutil.which("tshark")


def Eth(**fields: object) -> Ether:  # named like the scapy layer it builds
    """Ethernet with fixed addresses: scapy would otherwise look up routes and warn."""
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", **fields)
TLS_KEY_LOG = 0x544C534B

# ---------------------------------------------------------------------------------------------------------------
# Builders


def tcp_segment(n: int, payload: bytes | None = None) -> TCP:
    """The n-th test segment: distinct ports, sequence numbers and payload, so mix-ups show."""
    data = payload if payload is not None else f"segment {n} ".encode() * (n % 3 + 1)
    return TCP(sport=40000 + n, dport=443, seq=1000 * n + 7, ack=99 * n, flags="PA", window=1000 + n) / data


def ether_tcp(n: int, payload: bytes | None = None) -> bytes:
    return raw(Eth() / IP(src=f"192.0.2.{n}", dst="198.51.100.9", ttl=60 + n, id=n) / tcp_segment(n, payload))


def pcap_file(frames: list[tuple[int, int, bytes]], *, link_type: int = 1, order: str = "<", nano: bool = False,
              snaplen: int = 65535, orig_lens: dict[int, int] | None = None, patched: bool = False) -> bytes:
    """frames: (seconds, fraction, data); the fraction is in µs, or ns when `nano`.

    `patched`: Kuznetsov's modified format, whose records carry ifindex, protocol and packet type as well.
    """
    magic = 0xA1B2CD34 if patched else 0xA1B23C4D if nano else 0xA1B2C3D4
    out = bytearray(struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, link_type))
    for index, (seconds, fraction, data) in enumerate(frames):
        original = (orig_lens or {}).get(index, len(data))
        out += struct.pack(order + "IIII", seconds, fraction, len(data), original)
        if patched:
            out += struct.pack(order + "IHBx", 2, 0x0800, 0)
        out += data
    return bytes(out)


class Pcapng:
    """Hand-written pcapng, block by block, in the byte order of the current section."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.order = "<"

    def block(self, block_type: int, body: bytes) -> Pcapng:
        body = body + b"\0" * (-len(body) % 4)
        length = len(body) + 12
        self.data += struct.pack(self.order + "II", block_type, length) + body + struct.pack(self.order + "I", length)
        return self

    def section(self, order: str = "<") -> Pcapng:
        self.order = order
        return self.block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))

    def interface(self, link_type: int, *, tsresol: int | None = None, tsoffset: int | None = None,
                  snaplen: int = 0) -> Pcapng:
        options = b""
        if tsresol is not None:
            options += struct.pack(self.order + "HH", 9, 1) + bytes([tsresol]) + b"\0\0\0"
        if tsoffset is not None:
            options += struct.pack(self.order + "HHq", 14, 8, tsoffset)
        if options:
            options += struct.pack(self.order + "HH", 0, 0)
        return self.block(1, struct.pack(self.order + "HHI", link_type, 0, snaplen) + options)

    def enhanced(self, interface: int, ticks: int, data: bytes, original: int | None = None) -> Pcapng:
        return self.block(6, struct.pack(self.order + "IIIII", interface, ticks >> 32, ticks & 0xFFFFFFFF,
                                         len(data), original or len(data)) + data)

    def simple(self, data: bytes, original: int | None = None) -> Pcapng:
        return self.block(3, struct.pack(self.order + "I", original or len(data)) + data)

    def obsolete_packet(self, interface: int, ticks: int, data: bytes) -> Pcapng:
        return self.block(2, struct.pack(self.order + "HHIIII", interface, 0, ticks >> 32, ticks & 0xFFFFFFFF,
                                         len(data), len(data)) + data)

    def secrets(self, secrets_type: int, text: bytes) -> Pcapng:
        return self.block(0xA, struct.pack(self.order + "II", secrets_type, len(text)) + text)

    def bytes(self) -> bytes:
        return bytes(self.data)


def read_all(path: Path | str) -> tuple[list[TcpPacket], CaptureStats, list[bytes]]:
    with open_capture(path) as cap:
        packets = list(cap.packets())
        return packets, cap.stats, cap.secrets


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def tshark_tcp(path: Path) -> tuple[int, list[tuple[int, int, int, int]]]:
    """(frame count, [(frame, sport, seq, payload length)]) for frames tshark decodes as TCP."""
    out = subprocess.run([TSHARK, "-r", str(path), "-T", "fields", "-e", "frame.number", "-e", "tcp.srcport",
                          "-e", "tcp.seq_raw", "-e", "tcp.len"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    return len(rows), [(int(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows if r[1]]


def check_against_tshark(path: Path, packets: list[TcpPacket], stats: CaptureStats) -> None:
    if TSHARK is None:
        return
    frames, tcp = tshark_tcp(path)
    assert stats.frames == frames
    assert [(p.frame, p.sport, p.seq, len(p.payload)) for p in packets] == tcp


def assert_segment(packet: TcpPacket, n: int, *, frame: int, src: str | None = None, version: int = 4) -> None:
    segment = tcp_segment(n)
    assert packet.frame == frame
    assert packet.ip_version == version
    assert (packet.sport, packet.dport, packet.seq, packet.ack) == (40000 + n, 443, 1000 * n + 7, 99 * n)
    assert packet.flags == PSH | ACK
    assert packet.window == 1000 + n
    assert packet.payload == raw(segment.payload)
    if src is not None:
        assert packet.src == src


# ---------------------------------------------------------------------------------------------------------------
# pcap


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_byte_orders_and_timestamp_resolutions(tmp_path: Path, order: str, nano: bool) -> None:
    fraction = 123456789 if nano else 123456
    frames = [
        (1700000000, fraction, ether_tcp(1)),
        (1700000001, 0, raw(Eth() / ARP())),  # not IP: still frame 2
        (1700000002, 5, raw(Eth() / IP(src="192.0.2.3", dst="198.51.100.9") / UDP() / b"dns?")),
        (1700000003, 999, ether_tcp(4)),
    ]
    path = write(tmp_path, "t.pcap", pcap_file(frames, order=order, nano=nano))
    packets, stats, _ = read_all(path)
    assert len(packets) == 2
    assert_segment(packets[0], 1, frame=1, src="192.0.2.1")
    assert_segment(packets[1], 4, frame=4, src="192.0.2.4")
    units = 1e9 if nano else 1e6
    assert packets[0].ts == pytest.approx(1700000000 + fraction / units, abs=1e-9)
    assert packets[1].ts == pytest.approx(1700000003 + 999 / units, abs=1e-9)
    assert (packets[0].dst, packets[0].ttl, packets[0].ip_id) == ("198.51.100.9", 61, 1)
    assert (stats.format, stats.frames, stats.tcp_packets, stats.skipped) == ("pcap", 4, 2, 2)
    assert (stats.non_ip, stats.non_tcp) == (1, 1)
    assert stats.link_types == {1: 4}
    check_against_tshark(path, packets, stats)


@pytest.mark.parametrize("order", ["<", ">"])
def test_patched_pcap_records_are_longer(tmp_path: Path, order: str) -> None:
    frames = [(1, 500000, ether_tcp(1)), (2, 0, raw(Eth() / ARP())), (3, 0, ether_tcp(3))]
    path = write(tmp_path, "patched.pcap", pcap_file(frames, order=order, patched=True))
    packets, stats, _ = read_all(path)
    assert [(p.frame, p.ts) for p in packets] == [(1, 1.5), (3, 3.0)]
    assert_segment(packets[1], 3, frame=3)
    check_against_tshark(path, packets, stats)


@pytest.mark.parametrize("nano", [False, True])
def test_pcap_written_by_scapy(tmp_path: Path, nano: bool) -> None:
    scapy_packets = [Ether(ether_tcp(n)) for n in range(1, 6)]
    for n, packet in enumerate(scapy_packets, 1):
        packet.time = 1700000000 + n / 8  # exactly representable: the float must survive both resolutions
    path = tmp_path / "scapy.pcap"
    wrpcap(str(path), scapy_packets, nano=nano)
    packets, stats, _ = read_all(path)
    assert [p.frame for p in packets] == [1, 2, 3, 4, 5]
    for n, packet in enumerate(packets, 1):
        assert_segment(packet, n, frame=n)
        assert packet.ts == 1700000000 + n / 8
    check_against_tshark(path, packets, stats)


def test_frames_yields_every_frame_undecoded(tmp_path: Path) -> None:
    frames = [(1, 0, ether_tcp(1)), (2, 0, raw(Eth() / ARP())), (3, 0, ether_tcp(3))]
    path = write(tmp_path, "t.pcap", pcap_file(frames))
    with open_capture(path) as cap:
        raw_frames = list(cap.frames())
    assert [(f.frame, f.ts, f.link_type, f.data) for f in raw_frames] == [
        (1, 1.0, 1, frames[0][2]), (2, 2.0, 1, frames[1][2]), (3, 3.0, 1, frames[2][2])]


def test_a_capture_is_read_once(tmp_path: Path) -> None:
    path = write(tmp_path, "t.pcap", pcap_file([(1, 0, ether_tcp(1))]))
    with open_capture(path) as cap:
        assert len(list(cap.packets())) == 1
        with pytest.raises(RuntimeError):
            cap.packets()


def test_snap_length_cut_payload_is_kept_and_counted(tmp_path: Path) -> None:
    whole = ether_tcp(2, b"A" * 300)
    cut = whole[:54 + 100]
    path = write(tmp_path, "snap.pcap", pcap_file([(1, 0, cut)], snaplen=154, orig_lens={0: len(whole)}))
    packets, stats, _ = read_all(path)
    assert packets[0].payload == b"A" * 100
    assert stats.truncated_payloads == 1
    if TSHARK is not None:  # tshark's tcp.len is what the IP header announces, not what was captured
        assert tshark_tcp(path) == (1, [(1, 40002, 2007, 300)])


def test_ethernet_padding_and_trailer_are_not_payload(tmp_path: Path) -> None:
    frame = raw(Eth() / IP(src="192.0.2.1", dst="192.0.2.2") / TCP(flags="A")) + b"\0" * 6 + b"FCS!"
    path = write(tmp_path, "pad.pcap", pcap_file([(1, 0, frame)]))
    packets, stats, _ = read_all(path)
    assert packets[0].payload == b""
    check_against_tshark(path, packets, stats)


# ---------------------------------------------------------------------------------------------------------------
# pcapng


def test_pcapng_written_by_scapy(tmp_path: Path) -> None:
    path = tmp_path / "scapy.pcapng"
    with PcapNgWriter(str(path)) as writer:
        for n in range(1, 4):
            packet = Ether(ether_tcp(n))
            packet.time = 1700000000 + n / 4
            writer.write(packet)
    packets, stats, _ = read_all(path)
    assert stats.format == "pcapng"
    for n, packet in enumerate(packets, 1):
        assert_segment(packet, n, frame=n)
        assert packet.ts == 1700000000 + n / 4
    check_against_tshark(path, packets, stats)


def test_pcapng_interfaces_with_different_link_types_and_resolutions(tmp_path: Path) -> None:
    ipv4 = IP(src="192.0.2.7", dst="198.51.100.9", ttl=9, id=70)
    capture = (Pcapng().section()
               .interface(1)  # Ethernet, default microseconds
               .interface(101, tsresol=9)  # raw IP, nanoseconds
               .interface(113, tsresol=0x80 | 20, tsoffset=1000)  # SLL, 2^-20 s, plus 1000 s offset
               .interface(228, tsresol=3)  # IPv4, milliseconds
               .enhanced(0, 1_700_000_000_250_000, ether_tcp(1))
               .enhanced(1, 1_700_000_000_123_456_789, raw(ipv4 / tcp_segment(2)))
               .enhanced(2, 3 << 20, raw(CookedLinux(proto=0x0800) / ipv4 / tcp_segment(3)))
               .enhanced(3, 1_700_000_000_500, raw(ipv4 / tcp_segment(4)))
               .enhanced(1, 1_700_000_001_000_000_000, raw(IPv6() / UDP()))
               .bytes())
    path = write(tmp_path, "multi.pcapng", capture)
    packets, stats, _ = read_all(path)
    assert [p.frame for p in packets] == [1, 2, 3, 4]
    for n, packet in enumerate(packets, 1):
        assert_segment(packet, n, frame=n)
    assert packets[0].ts == pytest.approx(1_700_000_000.25)
    assert packets[1].ts == pytest.approx(1_700_000_000.123456789)
    assert packets[2].ts == 1003.0
    assert packets[3].ts == pytest.approx(1_700_000_000.5)
    assert stats.link_types == {1: 1, 101: 2, 113: 1, 228: 1}
    assert (stats.interfaces, stats.sections, stats.non_tcp) == (4, 1, 1)
    check_against_tshark(path, packets, stats)


def test_pcapng_simple_obsolete_unknown_and_custom_blocks(tmp_path: Path) -> None:
    capture = (Pcapng().section().interface(1, snaplen=0)
               .enhanced(0, 2_000_000, ether_tcp(1))
               .simple(ether_tcp(2))  # no timestamp of its own
               .block(0x00001234, b"unknown block type")  # skipped, not a frame
               .obsolete_packet(0, 3_000_000, ether_tcp(4))
               .block(0x00000BAD, struct.pack("<I", 32473) + b"custom")  # Wireshark numbers it as a frame
               .block(0x00000004, b"\0\0\0\0")  # name resolution: nothing for us
               .enhanced(0, 4_000_000, ether_tcp(6))
               .bytes())
    path = write(tmp_path, "blocks.pcapng", capture)
    packets, stats, _ = read_all(path)
    assert [p.frame for p in packets] == [1, 2, 3, 5]
    assert_segment(packets[1], 2, frame=2)
    assert packets[1].ts == 2.0  # the latest timestamp seen before the simple packet block
    assert_segment(packets[2], 4, frame=3)
    assert packets[2].ts == 3.0
    assert (stats.frames, stats.unknown_blocks, stats.ignored_blocks) == (5, 1, 2)
    check_against_tshark(path, packets, stats)


def test_pcapng_simple_packet_block_cut_to_snap_length(tmp_path: Path) -> None:
    whole = ether_tcp(3, b"B" * 200)
    capture = Pcapng().section().interface(1, snaplen=100).simple(whole[:100], original=len(whole)).bytes()
    packets, stats, _ = read_all(write(tmp_path, "spb.pcapng", capture))
    assert packets[0].payload == b"B" * (100 - 54)
    assert stats.truncated_payloads == 1


def test_pcapng_decryption_secrets_are_kept(tmp_path: Path) -> None:
    key_log = b"CLIENT_RANDOM " + b"ab" * 32 + b" " + b"cd" * 48 + b"\n"
    capture = (Pcapng().section().interface(1)
               .secrets(TLS_KEY_LOG, key_log)
               .enhanced(0, 1, ether_tcp(1))
               .secrets(0x57474B4C, b"wireguard keys are not TLS")
               .secrets(TLS_KEY_LOG, b"SERVER_HANDSHAKE_TRAFFIC_SECRET x y\n")
               .bytes())
    packets, stats, secrets = read_all(write(tmp_path, "dsb.pcapng", capture))
    assert secrets == [key_log, b"SERVER_HANDSHAKE_TRAFFIC_SECRET x y\n"]
    assert stats.secrets_blocks == 3
    assert len(packets) == 1


def test_pcapng_sections_in_both_byte_orders(tmp_path: Path) -> None:
    capture = Pcapng().section("<").interface(1).enhanced(0, 1_000_000, ether_tcp(1))
    capture.section(">").interface(101).interface(1, tsresol=9)  # interface numbers restart
    capture.enhanced(1, 2_000_000_000, ether_tcp(2)).enhanced(0, 3_000_000, raw(IP() / tcp_segment(3)))
    capture.section("<").interface(1).enhanced(0, 4_000_000, ether_tcp(4))
    path = write(tmp_path, "sections.pcapng", capture.bytes())
    packets, stats, _ = read_all(path)
    assert [(p.frame, p.ts) for p in packets] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)]
    for n, packet in enumerate(packets, 1):
        assert_segment(packet, n, frame=n)
    assert (stats.sections, stats.interfaces, stats.link_types) == (3, 4, {1: 3, 101: 1})
    check_against_tshark(path, packets, stats)


# ---------------------------------------------------------------------------------------------------------------
# Compressed input, standard input, streaming


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_gzip_is_detected_by_magic_not_name(tmp_path: Path, kind: str) -> None:
    frames = [(n, 0, ether_tcp(n)) for n in range(1, 4)]
    data = pcap_file(frames) if kind == "pcap" else (
        Pcapng().section().interface(1).enhanced(0, 1_000_000, ether_tcp(1)).enhanced(0, 2_000_000, ether_tcp(2))
        .enhanced(0, 3_000_000, ether_tcp(3)).bytes())
    path = write(tmp_path, f"no-gz-suffix.{kind}", gzip.compress(data))
    with open_capture(path) as cap:
        packets = list(cap.packets())
        assert cap.stats.compressed
        assert cap.bytes_read == cap.total_bytes == path.stat().st_size
    for n, packet in enumerate(packets, 1):
        assert_segment(packet, n, frame=n)


def test_stdin_through_a_pipe_plain_and_gzip(tmp_path: Path) -> None:
    data = pcap_file([(n, 0, ether_tcp(n)) for n in range(1, 4)])
    data_ng = Pcapng().section().interface(1)
    for n in range(1, 4):
        data_ng.enhanced(0, n, ether_tcp(n))
    program = ("from tlsflow.capture import open_capture\n"
               "with open_capture('-') as cap:\n"
               "    print([(p.frame, p.sport, len(p.payload)) for p in cap.packets()], cap.total_bytes)\n")
    expected = str([(n, 40000 + n, len(raw(tcp_segment(n).payload))) for n in range(1, 4)]) + " None"
    for payload in (data, gzip.compress(data), data_ng.bytes(), gzip.compress(data_ng.bytes())):
        result = subprocess.run([sys.executable, "-c", program], input=payload, capture_output=True,
                                timeout=60, check=False)
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout.decode().strip() == expected


def test_stdin_redirected_from_a_file_knows_its_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "t.pcap", pcap_file([(1, 0, ether_tcp(1))]))
    with path.open("rb") as stdin:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stdin))
        with open_capture("-") as cap:
            assert [p.sport for p in cap.packets()] == [40001]
            assert cap.total_bytes == path.stat().st_size


def test_large_file_is_read_as_a_stream(tmp_path: Path) -> None:
    """bytes_read stays far behind the file size while the first packets come out: no reading it whole."""
    frame = ether_tcp(5, b"C" * 1400)
    count = 6000  # ~8.6 MB
    path = tmp_path / "big.pcap"
    with path.open("wb") as out:
        out.write(pcap_file([]))
        record = struct.pack("<IIII", 1, 0, len(frame), len(frame)) + frame
        for _ in range(count):
            out.write(record)
    with open_capture(path) as cap:
        packets = cap.packets()
        next(packets)
        assert cap.bytes_read < cap.total_bytes / 4
        assert sum(1 for _ in packets) == count - 1
        assert cap.bytes_read == cap.total_bytes
        assert cap.stats.frames == count


# ---------------------------------------------------------------------------------------------------------------
# Link layers


def link_layer_cases() -> list[tuple[str, int, bytes, int]]:
    """(name, link type, frame, IP version of the TCP segment inside)."""
    ip = IP(src="192.0.2.1", dst="198.51.100.9")
    ip6 = IPv6(src="2001:db8::1", dst="2001:db8::2")
    segment = tcp_segment(1)
    return [
        ("vlan", 1, raw(Eth() / Dot1Q(vlan=7) / ip / segment), 4),
        ("qinq-88a8", 1, raw(Eth() / Dot1AD(vlan=5) / Dot1Q(vlan=7) / ip / segment), 4),
        ("qinq-9100", 1, raw(Eth(type=0x9100) / Dot1Q(vlan=5) / Dot1Q(vlan=7) / ip / segment), 4),
        ("vlan-ipv6", 1, raw(Eth() / Dot1Q(vlan=7) / ip6 / segment), 6),
        ("pppoe", 1, raw(Eth() / PPPoE(sessionid=1) / PPP(proto=0x0021) / ip / segment), 4),
        ("mpls", 1, raw(Eth(type=0x8847) / MPLS(label=16, s=0) / MPLS(label=17, s=1) / ip / segment), 4),
        ("sll", 113, raw(CookedLinux(proto=0x0800) / ip / segment), 4),
        ("sll-vlan", 113, raw(CookedLinux(proto=0x8100) / Dot1Q(vlan=3) / ip / segment), 4),
        ("sll2-ipv6", 276, raw(CookedLinuxV2(proto=0x86DD) / ip6 / segment), 6),
        ("null-little", 0, struct.pack("<I", 2) + raw(ip / segment), 4),
        ("null-big", 0, struct.pack(">I", 2) + raw(ip / segment), 4),
        ("null-ipv6-24", 0, struct.pack("<I", 24) + raw(ip6 / segment), 6),
        ("null-ipv6-28", 0, struct.pack("<I", 28) + raw(ip6 / segment), 6),
        ("null-ipv6-30", 0, struct.pack("<I", 30) + raw(ip6 / segment), 6),
        ("loop", 108, struct.pack(">I", 2) + raw(ip / segment), 4),
        ("loop-ipv6", 108, struct.pack(">I", 24) + raw(ip6 / segment), 6),
        ("raw-101-v4", 101, raw(ip / segment), 4),
        ("raw-101-v6", 101, raw(ip6 / segment), 6),
        ("raw-12", 12, raw(ip / segment), 4),
        ("raw-14", 14, raw(ip6 / segment), 6),
        ("ipv4-228", 228, raw(ip / segment), 4),
        ("ipv6-229", 229, raw(ip6 / segment), 6),
    ]


@pytest.mark.parametrize(("name", "link_type", "frame", "version"), link_layer_cases(),
                         ids=[case[0] for case in link_layer_cases()])
def test_link_layers(tmp_path: Path, name: str, link_type: int, frame: bytes, version: int) -> None:
    path = write(tmp_path, f"{name}.pcap", pcap_file([(1, 0, frame), (2, 0, frame[:3])], link_type=link_type))
    packets, stats, _ = read_all(path)
    assert len(packets) == 1
    assert_segment(packets[0], 1, frame=1, version=version)
    assert packets[0].src == ("2001:db8::1" if version == 6 else "192.0.2.1")
    if version == 6:
        assert packets[0].ip_id is None
    assert (stats.frames, stats.skipped, stats.link_types) == (2, 1, {link_type: 2})
    if link_type not in (12, 14):  # tshark reads 12 and 14 with their platform-specific (non-raw) meaning
        check_against_tshark(path, packets, stats)


def test_unsupported_link_type_and_unknown_address_family_are_counted(tmp_path: Path) -> None:
    segment = raw(IP() / tcp_segment(1))
    path = write(tmp_path, "radiotap.pcap", pcap_file([(1, 0, b"\0" * 60)], link_type=127))
    packets, stats, _ = read_all(path)
    assert (packets, stats.non_ip, stats.link_types) == ([], 1, {127: 1})
    path = write(tmp_path, "null-af.pcap", pcap_file([(1, 0, struct.pack("<I", 17) + segment)], link_type=0))
    packets, stats, _ = read_all(path)
    assert (packets, stats.non_ip) == ([], 1)


# ---------------------------------------------------------------------------------------------------------------
# IP layer


def test_ipv4_options_are_skipped(tmp_path: Path) -> None:
    frame = raw(Eth() / IP(src="192.0.2.1", dst="198.51.100.9", options=[IPOption_RR(), IPOption_NOP()])
                / tcp_segment(1))
    assert frame[14] & 0x0F > 5
    path = write(tmp_path, "options.pcap", pcap_file([(1, 0, frame)]))
    packets, stats, _ = read_all(path)
    assert_segment(packets[0], 1, frame=1, src="192.0.2.1")
    check_against_tshark(path, packets, stats)


def test_ipv6_extension_headers(tmp_path: Path) -> None:
    ip6 = IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=33)
    chains = [
        ip6 / IPv6ExtHdrHopByHop() / tcp_segment(1),
        ip6 / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting(addresses=["2001:db8::3"]) / IPv6ExtHdrDestOpt()
        / tcp_segment(2),
        ip6 / IPv6ExtHdrFragment(offset=0, m=0, id=5) / tcp_segment(3),  # atomic fragment: a whole packet
        ip6 / IPv6ExtHdrDestOpt() / UDP() / b"not tcp",
    ]
    path = write(tmp_path, "ext.pcap", pcap_file([(n, 0, raw(Eth() / c)) for n, c in enumerate(chains, 1)]))
    packets, stats, _ = read_all(path)
    for n, packet in enumerate(packets, 1):
        assert_segment(packet, n, frame=n, src="2001:db8::1", version=6)
        assert (packet.ttl, packet.ip_id) == (33, None)
    assert (len(packets), stats.non_tcp) == (3, 1)
    check_against_tshark(path, packets, stats)


def test_ipv4_fragments_are_reassembled_out_of_order(tmp_path: Path) -> None:
    whole = IP(src="192.0.2.1", dst="198.51.100.9", id=4242) / tcp_segment(1, b"F" * 3000)
    pieces = fragment(whole, fragsize=1000)
    assert len(pieces) == 4
    order = [pieces[2], pieces[0], pieces[3], pieces[0], pieces[1]]  # shuffled, with a duplicate
    frames = [(1, 0, ether_tcp(2))] + [(2, 0, raw(Eth() / p)) for p in order] + [(3, 0, ether_tcp(3))]
    path = write(tmp_path, "frag.pcap", pcap_file(frames))
    packets, stats, _ = read_all(path)
    assert [p.frame for p in packets] == [1, 6, 7]  # the datagram appears at the fragment that completes it
    assert packets[1].payload == b"F" * 3000
    assert (packets[1].sport, packets[1].seq, packets[1].ip_id) == (40001, 1007, 4242)
    assert (stats.fragments, stats.reassembled, stats.frames, stats.tcp_packets + stats.skipped) == (5, 1, 7, 7)
    check_against_tshark(path, packets, stats)


def test_ipv6_fragments_non_first_carry_no_tcp_and_are_reassembled(tmp_path: Path) -> None:
    whole = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=77) / tcp_segment(1, b"G" * 2500)
    pieces = fragment6(whole, 1000)
    assert len(pieces) == 3
    frames = [(n, 0, raw(Eth() / p)) for n, p in enumerate(pieces, 1)]
    path = write(tmp_path, "frag6.pcap", pcap_file(frames))
    packets, stats, _ = read_all(path)
    assert [p.frame for p in packets] == [3]
    assert packets[0].payload == b"G" * 2500
    assert (stats.fragments, stats.reassembled) == (3, 1)
    check_against_tshark(path, packets, stats)
    # Without the first fragment nothing can come out: non-first fragments carry no TCP header.
    path = write(tmp_path, "frag6-tail.pcap", pcap_file(frames[1:]))
    packets, stats, _ = read_all(path)
    assert (packets, stats.fragments, stats.skipped) == ([], 2, 2)


def test_fragments_of_non_tcp_datagrams_are_not_buffered(tmp_path: Path) -> None:
    pieces = fragment(IP(dst="192.0.2.9") / UDP() / (b"u" * 3000), fragsize=1000)
    path = write(tmp_path, "udp-frag.pcap", pcap_file([(1, 0, raw(Eth() / p)) for p in pieces]))
    with open_capture(path) as cap:
        assert list(cap.packets()) == []
        assert (cap.stats.fragments, cap.stats.non_tcp, cap.reassembler.pending_sets) == (len(pieces), len(pieces), 0)


def test_reassembler_is_bounded_by_capture_time_count_and_bytes() -> None:
    stats = CaptureStats()
    reassembler = FragmentReassembler(stats, max_sets=3, max_bytes=2500, timeout=30.0)
    for n in range(3):
        assert reassembler.add(("k", n), 0, True, b"x" * 800, ts=100.0 + n) is None
    assert reassembler.pending_sets == 3
    assert reassembler.add(("k", 3), 0, True, b"x" * 800, ts=104.0) is None  # over both caps: oldest go
    assert reassembler.pending_sets == 3 and reassembler.pending_bytes <= 2500
    assert reassembler.add(("k", 0), 800, False, b"y", ts=105.0) is None  # its first part was evicted
    assert reassembler.add(("late", 0), 0, True, b"z", ts=200.0) is None  # expires all older than 170 s
    assert reassembler.pending_sets == 1
    assert stats.fragments_dropped >= 4
    assert reassembler.add(("late", 0), 1, False, b"z", ts=201.0) == b"zz"
    assert (reassembler.pending_sets, reassembler.pending_bytes, stats.reassembled) == (0, 0, 1)


@settings(max_examples=200, deadline=None)
@given(size=st.integers(min_value=1, max_value=6000), cuts=st.lists(st.integers(min_value=1, max_value=749),
                                                                      max_size=12),
       order=st.randoms(use_true_random=False), duplicates=st.integers(min_value=0, max_value=3))
def test_reassembly_in_any_order_gives_the_datagram_once(size: int, cuts: list[int], order, duplicates: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    bounds = sorted({0, size, *(c * 8 for c in cuts if c * 8 < size)})  # fragment offsets are multiples of 8
    pieces = [(start, payload[start:end], end != size) for start, end in itertools.pairwise(bounds)]
    pieces += [order.choice(pieces) for _ in range(duplicates)]
    order.shuffle(pieces)
    stats = CaptureStats()
    reassembler = FragmentReassembler(stats)
    results = [reassembler.add(("key",), start, more, data, ts=1.0) for start, data, more in pieces]
    completed = [r for r in results if r is not None]
    assert completed[0] == payload
    assert results.index(completed[0]) == max(  # completes exactly when the last missing piece arrives
        min(i for i, p in enumerate(pieces) if p[0] == start) for start, _, _ in pieces)
    assert stats.reassembled == len(completed)


def test_reassembler_rejects_overlong_and_contradicting_fragments() -> None:
    stats = CaptureStats()
    reassembler = FragmentReassembler(stats)
    assert reassembler.add(("a",), 65000, False, b"x" * 1000, ts=1.0) is None  # beyond 65535
    assert reassembler.add(("b",), 0, False, b"x" * 10, ts=1.0) == b"x" * 10
    assert reassembler.add(("c",), 8, False, b"x" * 8, ts=1.0) is None  # last fragment says 16 bytes
    assert reassembler.add(("c",), 16, True, b"x" * 8, ts=1.0) is None  # data beyond the end: set dropped
    assert reassembler.pending_sets == 0
    assert stats.fragments_dropped == 2


def test_ip_in_ip_tunnels_and_malformed_headers(tmp_path: Path) -> None:
    inner = IP(src="192.0.2.1", dst="198.51.100.9") / tcp_segment(1)
    frames = [
        (1, 0, raw(Eth() / IP(proto=4) / inner)),
        (2, 0, raw(Eth() / IPv6() / IPv6(src="2001:db8::1") / tcp_segment(2))),
        (3, 0, raw(Eth() / IP(src="192.0.2.3", ihl=4) / tcp_segment(3))),  # IHL below 5
        (4, 0, raw(Eth() / IP(src="192.0.2.4") / TCP(dataofs=3))),  # TCP data offset below 5
        (5, 0, raw(Eth() / IP(src="192.0.2.5"))[:30]),  # IPv4 header cut
    ]
    path = write(tmp_path, "tunnel.pcap", pcap_file(frames))
    packets, stats, _ = read_all(path)
    assert [(p.frame, p.src) for p in packets] == [(1, "192.0.2.1"), (2, "2001:db8::1")]
    assert stats.malformed == 3


# ---------------------------------------------------------------------------------------------------------------
# Damaged input


def good_pcap() -> tuple[bytes, list[int]]:
    """A 5-frame pcap and the byte offset at which each record starts."""
    frames = [(n, 0, ether_tcp(n) if n != 3 else raw(Eth() / ARP())) for n in range(1, 6)]
    data = pcap_file(frames)
    offsets, offset = [], 24
    for _, _, frame in frames:
        offsets.append(offset)
        offset += 16 + len(frame)
    return data, offsets


def good_pcapng() -> tuple[bytes, list[int]]:
    capture = Pcapng().section().interface(1)
    offsets = []
    for n in range(1, 6):
        offsets.append(len(capture.data))
        capture.enhanced(0, n * 1_000_000, ether_tcp(n) if n != 3 else raw(Eth() / ARP()))
    return capture.bytes(), offsets


@pytest.mark.parametrize("make", [good_pcap, good_pcapng], ids=["pcap", "pcapng"])
def test_truncated_anywhere_yields_all_complete_frames_then_names_offset_and_frame(tmp_path: Path, make) -> None:
    data, offsets = make()
    header_end = offsets[0]
    ends = offsets + [len(data)]
    for cut in range(header_end + 1, len(data)):
        path = write(tmp_path, "cut.bin", data[:cut])
        complete = sum(1 for n in range(len(offsets)) if ends[n + 1] <= cut)
        expected = [n for n in range(1, complete + 1) if n != 3]  # frame 3 is ARP
        seen = []
        with open_capture(path) as cap:
            if cut in offsets:  # cut between two records: a clean, shorter capture
                seen = [packet.frame for packet in cap.packets()]
                assert seen == expected
                continue
            with pytest.raises(TruncatedCaptureError) as info:
                for packet in cap.packets():
                    seen.append(packet.frame)
        assert seen == expected
        assert info.value.offset == offsets[complete]
        assert info.value.frame == complete + 1
        assert cap.stats.frames == complete
        message = str(info.value)
        assert f"byte offset {offsets[complete]}" in message and f"frame {complete + 1}" in message
        assert str(path) in message and "\n" not in message


def test_truncated_gzip_yields_the_packets_before_the_damage(tmp_path: Path) -> None:
    frames = [(1, 0, ether_tcp(n, bytes(range(256)) * 40)) for n in range(1, 40)]
    compressed = gzip.compress(pcap_file(frames))
    path = write(tmp_path, "cut.pcap.gz", compressed[: len(compressed) * 2 // 3])
    seen = []
    with open_capture(path) as cap, pytest.raises(TruncatedCaptureError) as info:
        for packet in cap.packets():
            seen.append(packet.frame)
    assert 10 < len(seen) < 39 and seen == list(range(1, len(seen) + 1))
    assert info.value.frame == len(seen) + 1
    assert "decompressed" in str(info.value)


def test_pcapng_corrupt_block_lengths(tmp_path: Path) -> None:
    data, offsets = good_pcapng()
    # The trailing length of block 4 differs from its leading length.
    bad_trailer = bytearray(data)
    struct.pack_into("<I", bad_trailer, offsets[4] - 4, 999)
    # Block 4's length is not a multiple of 4.
    odd_length = bytearray(data)
    struct.pack_into("<I", odd_length, offsets[3] + 4, 33)
    # Block 4's length is absurd.
    huge_length = bytearray(data)
    struct.pack_into("<I", huge_length, offsets[3] + 4, 0x7FFFFFFC)
    # Block 4 says it holds more captured bytes than it has room for.
    caplen = bytearray(data)
    struct.pack_into("<I", caplen, offsets[3] + 20, 5000)
    # Block 4 refers to an interface the section never described.
    interface = bytearray(data)
    struct.pack_into("<I", interface, offsets[3] + 8, 3)
    for name, damaged in [("trailer", bad_trailer), ("odd", odd_length), ("huge", huge_length),
                          ("caplen", caplen), ("interface", interface)]:
        path = write(tmp_path, f"{name}.pcapng", bytes(damaged))
        seen = []
        with open_capture(path) as cap, pytest.raises(CorruptCaptureError) as info:
            for packet in cap.packets():
                seen.append(packet.frame)
        assert seen == [1, 2], name
        assert (info.value.offset, info.value.frame) == (offsets[3], 4), name


def test_pcap_corrupt_record_length(tmp_path: Path) -> None:
    data, offsets = good_pcap()
    damaged = bytearray(data)
    struct.pack_into("<I", damaged, offsets[2] + 8, 0x40000000)
    seen = []
    with open_capture(write(tmp_path, "bad.pcap", bytes(damaged))) as cap, \
            pytest.raises(CorruptCaptureError) as info:
        for packet in cap.packets():
            seen.append(packet.frame)
    assert seen == [1, 2]
    assert (info.value.offset, info.value.frame) == (offsets[2], 3)


@pytest.mark.parametrize(("content", "expected"), [
    (b"", "empty"),
    (b"<!DOCTYPE html><html>not a capture</html>", "not a pcap or pcapng capture (starts with 3c 21 44 4f)"),
    (gzip.compress(b"hello, world"), "gzip-compressed data that is not a pcap"),
    (b"\x28\xb5\x2f\xfd" + b"\0" * 40, "zstd-compressed input is not supported"),
    (b"\x1f\x8b\x08\x00garbage that is not deflate", "not a readable gzip file"),
])
def test_not_a_capture_is_one_clear_line(tmp_path: Path, content: bytes, expected: str) -> None:
    path = write(tmp_path, "input.bin", content)
    with pytest.raises(NotACaptureError) as info:
        open_capture(path)
    message = str(info.value)
    assert expected in message and str(path) in message and "\n" not in message


def test_missing_file_and_short_header(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="cannot open"):
        open_capture(tmp_path / "missing.pcap")
    with pytest.raises(CaptureError, match="cannot open"):
        open_capture(tmp_path)  # a directory
    with pytest.raises(TruncatedCaptureError, match="file header"):
        open_capture(write(tmp_path, "short.pcap", pcap_file([])[:10]))
    compressed = gzip.compress(pcap_file([(1, 0, ether_tcp(1))]))
    with pytest.raises(TruncatedCaptureError, match="file header"):
        open_capture(write(tmp_path, "short.pcap.gz", compressed[:20]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=400), link_type=st.sampled_from([0, 1, 12, 101, 108, 113, 228, 229, 276]))
def test_arbitrary_frames_never_crash_the_decoder(tmp_path: Path, body: bytes, link_type: int) -> None:
    prefix = raw(Eth() / IP() / TCP())[:20]
    path = write(tmp_path, "fuzz.pcap", pcap_file([(1, 0, body), (2, 0, prefix + body)], link_type=link_type))
    packets, stats, _ = read_all(path)
    assert stats.frames == 2 and stats.tcp_packets + stats.skipped == 2 and len(packets) == stats.tcp_packets


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(min_value=0), value=st.binary(min_size=1, max_size=4))
def test_corrupted_pcapng_raises_only_capture_errors(tmp_path: Path, position: int, value: bytes) -> None:
    data = bytearray(good_pcapng()[0])
    position %= len(data)
    data[position:position + len(value)] = value
    path = write(tmp_path, "fuzz.pcapng", bytes(data))
    try:
        with open_capture(path) as cap:
            for packet in cap.packets():
                assert isinstance(packet, TcpPacket)
    except CaptureError as exc:
        assert "\n" not in str(exc)


def test_syn_flag_and_packet_properties(tmp_path: Path) -> None:
    frame = raw(Eth() / IP() / TCP(flags="S", seq=5))
    packets, _, _ = read_all(write(tmp_path, "syn.pcap", pcap_file([(1, 0, frame)])))
    assert packets[0].flags == SYN and packets[0].syn and not packets[0].has_ack


def test_a_gzipped_file_is_decompressed_by_a_child_process(tmp_path: Path, generated_capture: Path) -> None:
    """A gzipped file on disk: the walker's reads come from a child process that decompresses it, with the packets,
    stats and progress (compressed bytes) of decompressing it here; the child is gone once the capture is closed."""
    from tlsflow.capture.source import _GunzipChild

    path = write(tmp_path, "gen.pcap.gz", gzip.compress(generated_capture.read_bytes(), compresslevel=1))

    def read(apart: bool) -> tuple[list, object, int, object]:
        with open_capture(path, decompress_apart=apart) as cap:
            packets = [(p.frame, p.ts, p.seq, p.payload) if p.__class__ is not float else p for p in cap.packets()]
            child = cap._source._child
            done = cap.bytes_read
        return packets, cap.stats, done, child

    packets, stats, done, child = read(True)
    here, here_stats, here_done, no_child = read(False)
    assert isinstance(child, _GunzipChild) and no_child is None
    assert child._proc.poll() is not None
    assert packets == here and stats == here_stats
    assert done == here_done == path.stat().st_size


@pytest.mark.parametrize("cut", [2 / 3, 0.98])
def test_a_damaged_gzip_file_reads_the_same_through_the_child(tmp_path: Path, cut: float) -> None:
    """Cut short or with bytes changed in its middle: the same packets before the damage and the same error as
    decompressing it here."""
    frames = [(1, 0, ether_tcp(n, bytes(range(256)) * 40)) for n in range(1, 40)]
    compressed = bytearray(gzip.compress(pcap_file(frames)))
    cut_short = write(tmp_path, "cut.pcap.gz", bytes(compressed[: int(len(compressed) * cut)]))
    compressed[len(compressed) // 2] ^= 0xFF
    changed = write(tmp_path, "changed.pcap.gz", bytes(compressed))
    for path in (cut_short, changed):
        outcomes = []
        for apart in (True, False):
            seen = []
            with open_capture(path, decompress_apart=apart) as cap:
                try:
                    for packet in cap.packets():
                        seen.append(packet.frame)
                except CaptureError as exc:
                    outcomes.append((seen, type(exc).__name__, str(exc)))
                else:
                    outcomes.append((seen, None, None))
        assert outcomes[0] == outcomes[1], path.name
        assert outcomes[0][1] is not None
