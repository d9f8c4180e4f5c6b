"""Capture reader on real captures: the public corpus and our own loopback recordings, checked against tshark.

tshark is the reference for frame numbering and for which frames carry TCP (`-e frame.number -e tcp.srcport
-e tcp.seq_raw -e tcp.len`); the public corpus' expected.jsonl, written by other tools, says which connections
must be there.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tlsflow.capture import open_capture
from tlsflow.packet import TcpPacket, endpoint_text

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("TLSFLOW_SHARED", REPO / ".." / "shared"))
PUBLIC = SHARED / "captures" / "public"
DATA = REPO / "tests" / "data" / "capture"
TSHARK = shutil.which("tshark")
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")


def public_captures() -> list[str]:
    if not PUBLIC.is_dir():
        return []
    return sorted(str(p.relative_to(PUBLIC)) for p in PUBLIC.rglob("*") if p.suffix in CAPTURE_SUFFIXES)


def read(path: Path) -> tuple[list[TcpPacket], object]:
    with open_capture(path) as cap:
        packets = list(cap.packets())
    return packets, cap.stats


def tshark_frames(path: Path) -> list[list[str]]:
    out = subprocess.run([TSHARK, "-r", str(path), "-T", "fields", "-e", "frame.number", "-e", "tcp.srcport",
                          "-e", "tcp.dstport", "-e", "tcp.seq_raw", "-e", "tcp.len", "-e", "frame.protocols",
                          "-e", "frame.time_epoch"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def assert_same_as_tshark(path: Path, packets: list[TcpPacket], frames: int) -> None:
    rows = tshark_frames(path)
    assert frames == len(rows)
    # TCP headers quoted inside ICMP errors are TCP to tshark, but they are not segments of a connection.
    expected = [(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows
                if r[1] and ":icmp" not in r[5]]
    assert [(p.frame, p.sport, p.dport, p.seq, len(p.payload)) for p in packets] == expected


@pytest.mark.skipif(not PUBLIC.is_dir(), reason="shared public captures not present")
@pytest.mark.parametrize("name", public_captures())
def test_public_capture_reads_cleanly(name: str) -> None:
    packets, stats = read(PUBLIC / name)
    assert stats.frames == stats.tcp_packets + stats.skipped == len(packets) + stats.skipped
    assert stats.frames == sum(stats.link_types.values())
    assert all(packet.frame <= stats.frames for packet in packets)
    assert [p.frame for p in packets] == sorted({p.frame for p in packets})


@pytest.mark.tools
@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
@pytest.mark.skipif(not PUBLIC.is_dir(), reason="shared public captures not present")
@pytest.mark.parametrize("name", public_captures())
def test_public_capture_matches_tshark(name: str) -> None:
    packets, stats = read(PUBLIC / name)
    assert_same_as_tshark(PUBLIC / name, packets, stats.frames)


@pytest.mark.skipif(not (PUBLIC / "expected.jsonl").is_file(), reason="shared public captures not present")
def test_public_connections_are_all_seen() -> None:
    """Every TCP connection the corpus lists (from tshark's TLS records there) shows up in our packets."""
    records = [json.loads(line) for line in (PUBLIC / "expected.jsonl").read_text().splitlines() if line.strip()]
    wanted: dict[str, set[tuple[str, str]]] = {}
    for record in records:
        if record.get("transport") == "tcp" and record.get("client") and record.get("server"):
            wanted.setdefault(record["file"], set()).add((record["client"], record["server"]))
    assert len(wanted) > 40
    for name, connections in wanted.items():
        packets, _ = read(PUBLIC / name)
        seen = {(endpoint_text(p.src, p.sport), endpoint_text(p.dst, p.dport)) for p in packets}
        for client, server in connections:
            assert (client, server) in seen or (server, client) in seen, (name, client, server)


# ---------------------------------------------------------------------------------------------------------------
# Our loopback recordings (see tests/data/capture/README.md)

RECORDINGS = ["loopback-tls-nanosecond.pcap", "loopback-tls-any-sll2.pcap", "loopback-tls-keylog.pcapng"]


@pytest.mark.parametrize("name", RECORDINGS)
def test_recording_has_both_tls_connections(name: str) -> None:
    packets, stats = read(DATA / name)
    assert stats.frames == stats.tcp_packets == len(packets) == 29  # the BPF filter kept only TCP
    assert {p.src for p in packets} == {"127.0.0.1"}
    connections = {frozenset((p.sport, p.dport)) for p in packets}
    assert len(connections) == 2
    client_hellos = [p for p in packets if p.payload[:1] == b"\x16" and p.payload[5:6] == b"\x01"]
    assert len(client_hellos) == 2
    assert sum(1 for p in packets if p.syn and not p.has_ack) == 2


@pytest.mark.tools
@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
@pytest.mark.parametrize("name", RECORDINGS)
def test_recording_matches_tshark(name: str) -> None:
    packets, stats = read(DATA / name)
    assert_same_as_tshark(DATA / name, packets, stats.frames)
    # Timestamps: tshark prints nanoseconds; a float of epoch seconds keeps them to about 0.2 µs.
    times = {int(r[0]): float(r[6]) for r in tshark_frames(DATA / name)}
    assert all(abs(p.ts - times[p.frame]) < 1e-6 for p in packets)


def test_recorded_link_types_and_resolution() -> None:
    for name, link_type in [("loopback-tls-nanosecond.pcap", 1), ("loopback-tls-any-sll2.pcap", 276),
                            ("loopback-tls-keylog.pcapng", 1)]:
        _, stats = read(DATA / name)
        assert stats.link_types == {link_type: 29}
    nano = (DATA / "loopback-tls-nanosecond.pcap").read_bytes()[:4]
    assert nano == bytes.fromhex("4d3cb2a1")  # tcpdump --nano wrote the nanosecond magic


def test_recorded_key_log_covers_the_captured_handshakes() -> None:
    """The DSB that editcap injected holds the client's key log; each ClientHello's random must be in it."""
    with open_capture(DATA / "loopback-tls-keylog.pcapng") as cap:
        packets = list(cap.packets())
        secrets = cap.secrets
    assert cap.stats.secrets_blocks == 1 and len(secrets) == 1
    lines = secrets[0].decode().splitlines()
    labels = {line.split()[0] for line in lines}
    assert {"CLIENT_RANDOM", "CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_TRAFFIC_SECRET_0"} <= labels
    randoms = {line.split()[1] for line in lines}
    client_hellos = [p for p in packets if p.payload[:1] == b"\x16" and p.payload[5:6] == b"\x01"]
    # record header (5) + handshake header (4) + legacy_version (2), then the 32-byte random
    assert {p.payload[11:43].hex() for p in client_hellos} <= randoms


def test_gzip_of_a_real_capture_reads_the_same(tmp_path: Path) -> None:
    plain, plain_stats = read(DATA / "loopback-tls-keylog.pcapng")
    compressed = tmp_path / "keylog.pcapng.gz"
    compressed.write_bytes(gzip.compress((DATA / "loopback-tls-keylog.pcapng").read_bytes()))
    packets, stats = read(compressed)
    assert packets == plain
    assert stats.compressed and not plain_stats.compressed
