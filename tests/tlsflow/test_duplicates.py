"""Captures that hold some packets twice (`tcpdump -i any` over a bridge and its ports, a SPAN session mirroring
both directions): a copy is not a retransmission, and must not turn a verdict into `packet_loss`.

Before: with every packet of the corpus doubled, 79 of 84 flows gained a `packet_loss` warning and five verdicts
changed (reset_after_client_hello, reset_during_handshake and server_silent became packet_loss, reset_injected
became mtu_blackhole, a capture ending mid-handshake became a failure).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tlsflow.capture import open_capture
from tlsflow.pipeline import iter_flow_records
from tlsflow.tcp import TcpReassembler

from .pcap_edit import doubled, link_type

VERDICT = ("outcome", "failed_step", "cause", "confidence", "alert", "alert_sender", "history", "warnings", "version",
           "cipher", "sni")


def _verdicts(path: Path, ca: Path) -> list[dict]:
    from analyzers.certchecks import TrustStore

    trust = TrustStore.default().with_pem_file(str(ca))
    return [{field: record[field] for field in VERDICT} for record in iter_flow_records(path, trust=trust)]


def _corpus_ethernet(corpus_dir: Path) -> list[Path]:
    return [p for p in sorted(corpus_dir.glob("*.pcap")) if link_type(p) == 1]


def test_every_corpus_capture_doubled_gives_the_same_verdicts(corpus_dir: Path, tmp_path: Path) -> None:
    """Real servers and clients on loopback (tcpdump): each capture with every packet recorded twice, 3 µs apart,
    is judged exactly as the capture itself, warnings included; the real losses of the corpus still show."""
    captures = _corpus_ethernet(corpus_dir)
    assert len(captures) >= 70
    losses = 0
    for capture in captures:
        original = _verdicts(capture, corpus_dir / "ca.pem")
        copy = _verdicts(doubled(capture, tmp_path / capture.name), corpus_dir / "ca.pem")
        assert copy == original, capture.name
        losses += any(r["cause"] == "packet_loss" or "packet_loss" in (r["warnings"] or []) for r in original)
    assert losses >= 2  # net_packet_loss_fatal and _recovered: loss is still told from copies


def test_copies_are_counted_apart_from_retransmissions(corpus_dir: Path, tmp_path: Path) -> None:
    """The reassembler's facts: the copies of the data segments, the SYN, the SYN-ACK and the FINs are duplicates;
    the original capture has none, and neither has a retransmission."""
    capture = doubled(corpus_dir / "tls12_established_curl_python.pcap", tmp_path / "doubled.pcap")
    reassembler = TcpReassembler()
    closed = []
    with open_capture(capture) as cap:
        for pkt in cap.packets():
            closed += [e.conn for e in reassembler.add(pkt) if hasattr(e, "conn") and e.conn.close_reason]
    closed += [e.conn for e in reassembler.finish() if hasattr(e, "conn") and e.conn.close_reason]
    conn = closed[0]
    for side in (conn.client, conn.server):
        assert side.retransmissions == 0
        assert side.duplicates >= 3  # SYN or SYN-ACK, data, FIN at least


def test_generated_capture_doubled_fast_lane_included(generated_capture: Path, tmp_path: Path) -> None:
    """A bench capture (real OpenSSL streams, 48 connections at a time): after the handshake its segments take
    the reassembler's fast lane (count_lane), whose copies must not count as retransmissions either."""
    def verdicts(path: Path) -> list[tuple]:
        return sorted((r["client"], r["start"], r["outcome"], r["cause"], r["history"], str(r["warnings"]))
                      for r in iter_flow_records(path))

    original = verdicts(generated_capture)
    assert verdicts(doubled(generated_capture, tmp_path / "doubled.pcap")) == original


def test_a_resend_after_the_window_is_a_retransmission(corpus_dir: Path, tmp_path: Path) -> None:
    """The same copies 5 ms after the originals are what a stack's resend looks like: counted as retransmissions
    (and warned about), as before."""
    capture = doubled(corpus_dir / "tls13_established_python.pcap", tmp_path / "late.pcap", after_us=5000)
    [record] = iter_flow_records(capture)
    assert record["outcome"] == "established"
    assert "packet_loss" in record["warnings"]


def test_public_capture_with_copied_fins(public_dir: Path) -> None:
    """Zeek's ssl-to-http-server trace holds two FINs twice (same IP ID, 0-1 µs apart): no loss in it."""
    [path] = list(public_dir.rglob("ssl-to-http-server.pcap")) or [None]
    if path is None:
        pytest.skip("ssl-to-http-server.pcap is not among the public captures")
    [record] = iter_flow_records(path)
    assert record["outcome"] == "not_tls" or record["cause"] == "not_tls"
    assert not record["warnings"] or "packet_loss" not in record["warnings"]
