"""The `packet_loss` warning is the contract's: handshake segments retransmitted. An established connection that
lost segments of its data after the handshake (a download on a lossy path) does not get it; one whose handshake
lost segments does. Real captures of the corpus, and real captures with one segment resent later."""
from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import pytest

from analyzers.summary import new_summary
from analyzers.verdict import decide
from tests.conftest import CORPUS, analysed_first_flow
from tests.tlsflow.pcap_edit import records

DATA_LOSS = CORPUS / "net_packet_loss_after_handshake.pcap"
HANDSHAKE_LOSS = CORPUS / "net_packet_loss_recovered.pcap"
ESTABLISHED = CORPUS / "tls12_established_alpn_h2.pcap"


def _payload_length(record: bytes) -> int:
    ip = record[16 + 14:]
    ihl = (ip[0] & 0x0F) * 4
    return struct.unpack("!H", ip[2:4])[0] - ihl - (ip[ihl + 12] >> 4) * 4


def _resent(path: Path, out: Path, pick: int, later_us: int = 200_000) -> Path:
    """The capture with its data segment number `pick` (0-based, among those with a payload) sent again
    `later_us` microseconds after the original, right after it in the file (as a retransmission timeout would)."""
    header, recs = records(path)
    data = [i for i, r in enumerate(recs) if _payload_length(r) > 0]
    i = data[pick]
    seconds, micros, caplen, original = struct.unpack_from("<IIII", recs[i])
    micros += later_us
    copy = struct.pack("<IIII", seconds + micros // 1_000_000, micros % 1_000_000, caplen, original) + recs[i][16:]
    later = [r for r in recs[i + 1:] if struct.unpack_from("<II", r) > struct.unpack_from("<II", copy)]
    before = recs[i + 1:len(recs) - len(later)]
    out.write_bytes(header + b"".join(recs[:i + 1] + before + [copy] + later))
    return out


def test_segments_lost_after_the_handshake_give_no_warning() -> None:
    record, analyzer = analysed_first_flow(DATA_LOSS)
    assert record["outcome"] == "established" and record["version"] == "TLS 1.3"
    server = analyzer.kept_tcp.server
    assert server.retransmissions >= 1  # the capture does hold the loss
    assert server.lowest_retransmitted_offset >= 2453  # past the server's flight (frame 6: 2,453 bytes)
    assert "packet_loss" not in (record["warnings"] or [])


def test_segments_lost_in_the_handshake_still_warn() -> None:
    record, analyzer = analysed_first_flow(HANDSHAKE_LOSS)
    assert record["outcome"] == "established"
    assert analyzer.kept_tcp.client.retransmissions and analyzer.kept_tcp.server.retransmissions
    assert "packet_loss" in record["warnings"]


def test_facts_without_offsets_count_every_retransmission() -> None:
    """Facts from elsewhere (no offset known): every retransmission is taken as the handshake's, as before."""
    _, analyzer = analysed_first_flow(DATA_LOSS)
    summary = new_summary()
    summary.add_all(analyzer.kept_events)
    tcp = analyzer.kept_tcp
    assert "packet_loss" not in decide(summary, tcp).warnings
    unknown = dataclasses.replace(tcp, server=dataclasses.replace(tcp.server, lowest_retransmitted_offset=None))
    assert "packet_loss" in decide(summary, unknown).warnings


@pytest.mark.parametrize(("pick", "warned"), [(-1, False), (0, True)], ids=["last data segment", "client hello"])
def test_a_segment_resent_later(tmp_path: Path, pick: int, warned: bool) -> None:
    """An established TLS 1.2 capture with one data segment sent again 200 ms later: its last one (application
    data, after the handshake) gives no warning, its ClientHello does."""
    before, _ = analysed_first_flow(ESTABLISHED)
    assert "packet_loss" not in (before["warnings"] or [])
    record, analyzer = analysed_first_flow(_resent(ESTABLISHED, tmp_path / "resent.pcap", pick))
    assert record["outcome"] == "established"
    assert analyzer.kept_tcp.client.retransmissions + analyzer.kept_tcp.server.retransmissions == 1
    assert ("packet_loss" in (record["warnings"] or [])) == warned


def test_an_unanswered_syn_is_no_warning_besides_its_cause() -> None:
    """The client's SYN sent again and again is the tcp_no_answer failure itself, not packet loss besides it."""
    record, analyzer = analysed_first_flow(CORPUS / "net_syn_unanswered.pcap")
    assert record["cause"] == "tcp_no_answer"
    assert analyzer.kept_tcp.client.retransmissions >= 1
    assert "packet_loss" not in (record["warnings"] or [])
