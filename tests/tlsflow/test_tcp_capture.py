"""Reassembly of a real loopback TLS capture, compared byte for byte with tshark's `follow,tcp,raw`; and the same
capture rewritten with scapy into the hard cases (reordered, retransmitted, re-segmented, lost segments).

tests/data/tcp/loopback_tls.pcap was recorded by tests/data/tcp/record_loopback.py (Python ssl over 127.0.0.1).
The capture is read with scapy here only because the test must not depend on the capture reader under test
elsewhere; tlsflow itself never reads captures with scapy.
"""
from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from tlsflow.packet import TcpPacket
from tlsflow.tcp import ConnectionClosed, StreamChunk, TcpReassembler
from tlsparse.events import Sender

scapy_all = pytest.importorskip("scapy.all")
IP, TCP = scapy_all.IP, scapy_all.TCP

CAPTURE = Path(__file__).resolve().parents[1] / "data" / "tcp" / "loopback_tls.pcap"
TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")


def scapy_packets(path: Path) -> list:
    return list(scapy_all.rdpcap(str(path)))


def to_tcp_packets(pkts: list) -> list[TcpPacket]:
    out = []
    for frame, p in enumerate(pkts, start=1):
        if IP not in p or TCP not in p:
            continue
        ip, tcp = p[IP], p[TCP]
        start = ip.ihl * 4 + tcp.dataofs * 4
        payload = bytes(ip)[start:ip.len]
        out.append(TcpPacket(frame=frame, ts=float(p.time), ip_version=4, src=ip.src, dst=ip.dst, sport=tcp.sport,
                             dport=tcp.dport, seq=tcp.seq, ack=tcp.ack, flags=int(tcp.flags), window=tcp.window,
                             payload=payload, ttl=ip.ttl, ip_id=ip.id))
    return out


def reassemble(packets: list[TcpPacket]) -> dict[tuple[str, int], dict]:
    """Per connection (keyed by the client endpoint): the streams, gaps as None placeholders, and the conn."""
    r = TcpReassembler()
    events = [e for p in packets for e in r.add(p)] + r.finish()
    flows: dict[tuple[str, int], dict] = {}
    for e in events:
        key = (e.conn.client_ip, e.conn.client_port)
        flow = flows.setdefault(key, {Sender.CLIENT: [], Sender.SERVER: [], "conn": e.conn, "closed": 0})
        if isinstance(e, StreamChunk):
            flow[e.sender].append(e)
        elif isinstance(e, ConnectionClosed):
            flow["closed"] += 1
    return flows


def joined(chunks: list[StreamChunk]) -> bytes:
    assert all(not c.gap for c in chunks)
    return b"".join(c.data for c in chunks)


def tshark_streams(path: Path) -> dict[tuple[str, int], dict[Sender, bytes]]:
    """tshark's view: for each TCP stream, the bytes sent by node 0 (the first sender) and by node 1."""
    assert TSHARK is not None
    listing = subprocess.run([TSHARK, "-r", str(path), "-T", "fields", "-e", "tcp.stream"], capture_output=True,
                             text=True, timeout=60, check=True).stdout.split()
    streams = {}
    for index in sorted({int(s) for s in listing if s}):
        text = subprocess.run([TSHARK, "-r", str(path), "-q", "-z", f"follow,tcp,raw,{index}"], capture_output=True,
                              text=True, timeout=60, check=True).stdout
        nodes, data = {}, {0: bytearray(), 1: bytearray()}
        for line in text.splitlines():
            if line.startswith("Node "):
                n, endpoint = line[5], line.split(": ", 1)[1]
                host, port = endpoint.rsplit(":", 1)
                nodes[int(n)] = (host, int(port))
            elif line and not line.startswith(("=", "Follow", "Filter")):
                node = 1 if line.startswith("\t") else 0
                data[node] += bytes.fromhex(line.strip())
        # Node 0 sent the stream's first packet: the client of these captures (they all start with a SYN).
        streams[nodes[0]] = {Sender.CLIENT: bytes(data[0]), Sender.SERVER: bytes(data[1])}
    return streams


@pytest.fixture(scope="module")
def original() -> list:
    if not CAPTURE.exists():
        pytest.skip("tests/data/tcp/loopback_tls.pcap is missing")
    return scapy_packets(CAPTURE)


@needs_tshark
def test_real_capture_matches_tshark(original: list) -> None:
    expected = tshark_streams(CAPTURE)
    flows = reassemble(to_tcp_packets(original))
    assert set(flows) == set(expected) and len(flows) == 2
    for key, flow in flows.items():
        conn = flow["conn"]
        assert conn.roles_from == "syn" and flow["closed"] == 1
        for sender in (Sender.CLIENT, Sender.SERVER):
            assert joined(flow[sender]) == expected[key][sender]
            assert expected[key][sender]  # both directions carried data
        assert conn.client.gaps == conn.server.gaps == 0
        assert conn.client.syn_frame is not None and conn.server.synack_frame is not None
        assert conn.client.fin_frame is not None and conn.server.fin_frame is not None
        # Everything each side sent was acknowledged by the other (clean loopback connections).
        assert conn.server.acked_bytes == len(expected[key][Sender.CLIENT])
        assert conn.client.acked_bytes == len(expected[key][Sender.SERVER])
        assert conn.client.largest_segment_acked and conn.server.largest_segment_acked
        assert conn.client.retransmissions == conn.server.retransmissions == 0
        assert conn.client.ttls == {64: conn.client.packets}
    bulk = max(flows.values(), key=lambda f: len(joined(f[Sender.SERVER])))
    assert len(bulk[Sender.SERVER]) > 3  # the streams really span several segments


def data_packet_indices(pkts: list) -> list[int]:
    return [i for i, p in enumerate(pkts) if TCP in p and len(bytes(p[IP])) > p[IP].ihl * 4 + p[TCP].dataofs * 4]


def rewrite(pkts: list, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.pcap"
    scapy_all.wrpcap(str(path), pkts)
    return path


def reordered_and_duplicated(pkts: list, seed: int) -> list:
    """Swap neighbouring data packets and repeat some (identical retransmissions), keeping timestamps rising."""
    rng = random.Random(seed)
    out = [p.copy() for p in pkts]
    data = data_packet_indices(out)
    for i in data[::3]:
        if i + 1 < len(out):
            out[i], out[i + 1] = out[i + 1], out[i]
    data = data_packet_indices(out)
    for i in sorted(rng.sample(data, k=min(5, len(data))), reverse=True):
        out.insert(min(i + 2, len(out)), out[i].copy())
    for n, p in enumerate(out):
        p.time = 1_700_000_000 + n * 0.001
    return out


def split_overlapping(pkts: list) -> list:
    """Re-segment every large data packet into two overlapping halves, sent second half first."""
    out = []
    for p in (p.copy() for p in pkts):
        ip, tcp = p[IP], p[TCP]
        start = ip.ihl * 4 + tcp.dataofs * 4
        payload = bytes(ip)[start:ip.len]
        if len(payload) < 200:
            out.append(p)
            continue
        half = len(payload) // 2
        ether = scapy_all.Ether(src=p.src, dst=p.dst)
        first = ether / IP(src=ip.src, dst=ip.dst, ttl=ip.ttl, id=ip.id) / TCP(
            sport=tcp.sport, dport=tcp.dport, seq=tcp.seq, ack=tcp.ack, flags=tcp.flags, window=tcp.window) / payload[:half + 50]
        second = ether / IP(src=ip.src, dst=ip.dst, ttl=ip.ttl, id=ip.id) / TCP(
            sport=tcp.sport, dport=tcp.dport, seq=(tcp.seq + half - 30) & 0xFFFFFFFF, ack=tcp.ack, flags=tcp.flags,
            window=tcp.window) / payload[half - 30:]
        out += [second, first]
    for n, p in enumerate(out):
        p.time = 1_700_000_000 + n * 0.001
    return out


@needs_tshark
@pytest.mark.parametrize("variant", ["reordered_and_duplicated", "split_overlapping"])
def test_hard_cases_written_with_scapy_match_tshark(original: list, tmp_path: Path, variant: str) -> None:
    pkts = reordered_and_duplicated(original, seed=7) if variant == "reordered_and_duplicated" else (
        split_overlapping(original))
    path = rewrite(pkts, tmp_path, variant)
    truth = tshark_streams(CAPTURE)
    assert tshark_streams(path) == truth  # tshark reassembles the rewritten capture to the same streams
    flows = reassemble(to_tcp_packets(scapy_packets(path)))
    assert set(flows) == set(truth)
    for key, flow in flows.items():
        for sender in (Sender.CLIENT, Sender.SERVER):
            assert joined(flow[sender]) == truth[key][sender]
        assert flow["conn"].anomalies == []
    if variant == "reordered_and_duplicated":
        assert sum(f["conn"].client.retransmissions + f["conn"].server.retransmissions for f in flows.values()) == 5


def test_lost_segment_in_real_capture_is_a_gap_at_the_right_offset(original: list) -> None:
    """Drop one server data packet from the middle of the bulk stream: the reassembled stream has a gap of exactly
    that packet's length at its offset, and every other byte where the original stream has it."""
    packets = to_tcp_packets(original)
    flows = reassemble(packets)
    truth = {key: {s: joined(f[s]) for s in (Sender.CLIENT, Sender.SERVER)} for key, f in flows.items()}
    key = max(truth, key=lambda k: len(truth[k][Sender.SERVER]))
    conn = flows[key]["conn"]
    server_data = [p for p in packets if p.payload and (p.src, p.sport, p.dst, p.dport) == (
        conn.server_ip, conn.server_port, conn.client_ip, conn.client_port)]
    victim = server_data[len(server_data) // 2]
    flow = reassemble([p for p in packets if p is not victim])[key]
    gaps = [c for c in flow[Sender.SERVER] if c.gap]
    assert len(gaps) == 1 and gaps[0].gap == len(victim.payload)
    stream = truth[key][Sender.SERVER]
    assert stream[gaps[0].offset:gaps[0].offset + gaps[0].gap] == victim.payload
    for c in flow[Sender.SERVER]:
        if not c.gap:
            assert c.data == stream[c.offset:c.offset + len(c.data)]
    assert sum(len(c.data) + c.gap for c in flow[Sender.SERVER]) == len(stream)
    # The client's ACK covering the hole declared it, not the end of the capture.
    assert gaps[0].frame < max(p.frame for p in packets)
    assert flow["conn"].server.gaps == 1 and flow["conn"].server.gap_bytes == len(victim.payload)


def synthetic_wrap_capture() -> list:
    """A connection whose both sequence spaces cross 2^32, with reordering, overlaps and retransmissions."""
    ether = scapy_all.Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    c_isn, s_isn = (1 << 32) - 700, (1 << 32) - 1500
    client_data = bytes((i * 13 + 1) % 256 for i in range(3000))
    server_data = bytes((i * 29 + 7) % 256 for i in range(5000))

    def c(seq_off: int, data: bytes = b"", flags: str = "PA", ack_off: int = 0):  # type: ignore[no-untyped-def]
        return ether / IP(src="127.0.0.1", dst="127.0.0.2", ttl=64) / TCP(
            sport=51000, dport=8443, flags=flags, seq=(c_isn + 1 + seq_off) & 0xFFFFFFFF,
            ack=(s_isn + 1 + ack_off) & 0xFFFFFFFF) / data

    def s(seq_off: int, data: bytes = b"", flags: str = "PA", ack_off: int = 0):  # type: ignore[no-untyped-def]
        return ether / IP(src="127.0.0.2", dst="127.0.0.1", ttl=60) / TCP(
            sport=8443, dport=51000, flags=flags, seq=(s_isn + 1 + seq_off) & 0xFFFFFFFF,
            ack=(c_isn + 1 + ack_off) & 0xFFFFFFFF) / data

    syn = ether / IP(src="127.0.0.1", dst="127.0.0.2") / TCP(sport=51000, dport=8443, flags="S", seq=c_isn)
    synack = ether / IP(src="127.0.0.2", dst="127.0.0.1") / TCP(sport=8443, dport=51000, flags="SA", seq=s_isn,
                                                                  ack=(c_isn + 1) & 0xFFFFFFFF)
    pkts = [syn, synack, c(0, flags="A"),
            c(1000, client_data[1000:2000]), c(0, client_data[:1000]),          # reordered across the wrap
            c(500, client_data[500:1500]),                                       # overlap, same bytes
            c(2000, client_data[2000:3000]),
            s(0, server_data[:1400], ack_off=3000), s(2800, server_data[2800:4200], ack_off=3000),
            s(1400, server_data[1400:2800], ack_off=3000), s(1400, server_data[1400:2800], ack_off=3000),
            s(4200, server_data[4200:], ack_off=3000),
            c(3000, flags="FA", ack_off=5000), s(5000, flags="FA", ack_off=3001), c(3001, flags="A", ack_off=5001)]
    for n, p in enumerate(pkts):
        p.time = 1_700_000_000 + n * 0.01
    return pkts, client_data, server_data


@needs_tshark
def test_synthetic_wrap_capture_matches_tshark(tmp_path: Path) -> None:
    pkts, client_data, server_data = synthetic_wrap_capture()
    path = rewrite(pkts, tmp_path, "wrap")
    truth = tshark_streams(path)
    assert truth == {("127.0.0.1", 51000): {Sender.CLIENT: client_data, Sender.SERVER: server_data}}
    flows = reassemble(to_tcp_packets(scapy_packets(path)))
    flow = flows[("127.0.0.1", 51000)]
    assert joined(flow[Sender.CLIENT]) == client_data and joined(flow[Sender.SERVER]) == server_data
    conn = flow["conn"]
    assert conn.client.retransmissions == 1 and conn.client.retransmitted_bytes == 1000
    assert conn.server.retransmissions == 1 and conn.server.retransmitted_bytes == 1400
    assert conn.server.acked_bytes == 3000 and conn.client.acked_bytes == 5000
    assert conn.close_reason == "closed" and conn.anomalies == []
