"""Captures made with a small snap length (`tcpdump -s 96`, a habit from header-only captures): the TLS messages are
cut off, and the records must say so, with the fix, instead of a bare `incomplete` ("no TLS bytes").

Before: every corpus capture cut to 96 bytes gave `incomplete` with at most "no TLS bytes on this connection"
(false: they were there, cut short) and a resync warning; nothing named the snap length.
"""
from __future__ import annotations

from pathlib import Path

from tests.conftest import loopback_captures
from tlsflow.capture import open_capture
from tlsflow.pipeline import iter_flow_records
from tlsflow.tcp import TcpReassembler

from .pcap_edit import snapped

SNAP = "the capture's snap length cut"


def _corpus(corpus_dir: Path) -> list[Path]:
    return loopback_captures(corpus_dir)


def _client_sent_nothing(record: dict) -> bool:
    """A connection whose client sent no byte (a TCP-only check): its short packets lose nothing to the snap length."""
    return any("without sending a byte" in line or "the client having sent nothing" in line
               for line in record["evidence"] or [])


def test_records_name_the_snap_length(corpus_dir: Path, tmp_path: Path) -> None:
    """Real servers and clients (tcpdump on loopback), each capture cut to 96 bytes a packet: every connection
    that carried bytes and has no verdict says the snap length cut them, never "no TLS bytes"; those whose
    verdict needs no payload (port closed, SYN unanswered) keep it."""
    told = 0
    for capture in _corpus(corpus_dir):
        whole = list(iter_flow_records(capture))
        cut = list(iter_flow_records(snapped(capture, tmp_path / capture.name, 96)))
        assert len(cut) == len(whole), capture.name
        for before, after in zip(whole, cut):
            evidence = after["evidence"] or []
            if before["cause"] in ("tcp_refused", "tcp_no_answer"):
                assert {**after, "capture": before["capture"]} == before, capture.name
                continue
            if after["outcome"] == "established" or _client_sent_nothing(before):
                continue
            assert any(line.startswith("frame ") and SNAP in line for line in evidence), (capture.name, after)
            assert "no TLS bytes on this connection" not in evidence
            told += 1
    assert told >= 70


def test_a_snap_length_that_cuts_nothing_changes_nothing(corpus_dir: Path, tmp_path: Path) -> None:
    for name in ("tls12_cert_expired.pcap", "tls13_established_python.pcap", "net_reset_after_client_hello.pcap"):
        capture = corpus_dir / name
        assert list(iter_flow_records(snapped(capture, tmp_path / name, 65535))) == [
            {**r, "capture": str(tmp_path / name)} for r in iter_flow_records(capture)]


def test_cut_segments_are_counted_per_side(corpus_dir: Path, tmp_path: Path) -> None:
    """The reader tells the reassembler how much of each segment is missing; the facts count the segments and
    keep the first one's frame. The capture's own statistics count them too."""
    capture = snapped(corpus_dir / "tls12_established_curl_python.pcap", tmp_path / "s.pcap", 96)
    reassembler = TcpReassembler()
    conns = []
    with open_capture(capture) as cap:
        cut = []
        for pkt in cap.packets():
            cut.append(pkt.cut)
            conns += [e.conn for e in reassembler.add(pkt) if getattr(e, "conn", None) is not None]
        conns += [e.conn for e in reassembler.finish() if getattr(e, "conn", None) is not None]
        assert cap.stats.truncated_payloads == sum(1 for n in cut if n) > 0
    conn = conns[0]
    assert conn.client.cut_segments + conn.server.cut_segments == sum(1 for n in cut if n)
    assert conn.client.cut_frame is not None and conn.server.cut_frame is not None


def test_the_text_report_says_why_under_a_row_without_verdict(corpus_dir: Path, tmp_path: Path) -> None:
    """An incomplete row in the terminal report carries its first fact (why there is no verdict); a failed row
    its whole evidence, as before; an established row nothing."""
    import io

    from tlsflow.terminal import write_report

    rows = [*iter_flow_records(snapped(corpus_dir / "tls12_cert_expired.pcap", tmp_path / "s.pcap", 96)),
            *iter_flow_records(corpus_dir / "tls12_cert_expired.pcap"),
            *iter_flow_records(corpus_dir / "tls13_established_python.pcap")]
    out = io.StringIO()
    write_report(rows, out, colour=False, show_capture=True)
    lines = out.getvalue().splitlines()
    incomplete = next(i for i, line in enumerate(lines) if " incomplete " in line)
    assert SNAP in lines[incomplete + 1] and lines[incomplete + 1].startswith("      - frame ")
    assert not lines[incomplete + 2].startswith("      ")
    established = next(i for i, line in enumerate(lines) if " established " in line)
    assert established + 1 == len(lines) or not lines[established + 1].startswith("      ")
    failed = next(i for i, line in enumerate(lines) if " failed " in line)
    assert lines[failed + 1].startswith("      alert: certificate_expired")
