"""A ClientHello too long for one packet (post-quantum key shares make them ~1.8 kB) and a server or middlebox that
reads it from the first packet only (https://tldr.fail): the server resets before the rest is even sent, or waits
without answering. Real captures of the corpus (Python ssl writing its ClientHello in two parts to a server that
reads once), the parser's end-of-stream report, and the hint and evidence that say what happened."""
from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import pytest

from analyzers.summary import new_summary
from analyzers.verdict import SPLIT_HELLO_HINT, decide
from tests.conftest import CORPUS, analysed_first_flow
from tests.tlsflow.pcap_edit import records
from tlsflow.explain import render_ladder
from tlsparse import ClientHello, HandshakeSeen, KeyShareEntry, Sender, TlsConnection, TruncatedRecordSeen
from tlsparse.handshake import client_hello_prefix
from tlsparse.messages import EXT_KEY_SHARE

RESET = CORPUS / "net_split_client_hello_reset.pcap"
SILENT = CORPUS / "net_split_client_hello_silent.pcap"
X25519MLKEM768 = 0x11EC


def test_reset_before_the_rest_of_the_client_hello() -> None:
    """Before: "incomplete, no TLS bytes on this connection". The ClientHello's first segment is the only TLS the
    capture holds, and it is what the server reset."""
    record, analyzer = analysed_first_flow(RESET)
    assert (record["outcome"], record["failed_step"], record["cause"]) == (
        "failed", "client_hello", "reset_after_client_hello")
    assert record["evidence"][0] == "frame 4: the first 1,448 of the 1,853 bytes of a ClientHello record; " \
                                    "the rest never came"
    assert record["evidence"][1].startswith("frame 6: server RST ")
    assert record["hint"].endswith(SPLIT_HELLO_HINT)
    # What came whole of the ClientHello: the server name (its ALPN list, 1.4 kB, and supported_versions after it
    # did not all come: not reported).
    assert (record["sni"], record["alpn_offered"], record["version_offered"]) == ("server.tlsflow.test", None, None)
    assert record["ja3"] is None and record["ja4"] is None  # (no fingerprint of a hello not all seen)
    cut = [e for e in analyzer.kept_events if isinstance(e, TruncatedRecordSeen)]
    assert [(e.sender, e.content_type, e.received, e.length, e.handshake_type) for e in cut] == [
        (Sender.CLIENT, 22, 1443, 1848, 1)]
    assert cut[0].hello.sni == "server.tlsflow.test" and len(cut[0].hello.cipher_suites) > 10
    ladder = "\n".join(render_ladder(analyzer.kept_events, analyzer.kept_tcp, record))
    assert "ClientHello cut at 1,448/1,853 B" in ladder


def test_server_silent_after_a_client_hello_in_two_segments() -> None:
    record, _ = analysed_first_flow(SILENT)
    assert (record["outcome"], record["failed_step"], record["cause"]) == ("failed", "server_hello", "server_silent")
    assert "frames 4-6: the ClientHello (1,853 bytes) came in more than one TCP segment" in record["evidence"]
    assert record["hint"].endswith(SPLIT_HELLO_HINT)


@pytest.mark.parametrize("name", ["net_reset_after_client_hello", "net_server_silent", "net_closed_without_alert"])
def test_a_client_hello_in_one_segment_gets_no_such_hint(name: str) -> None:
    record, _ = analysed_first_flow(CORPUS / f"{name}.pcap")
    assert record["outcome"] == "failed"
    assert SPLIT_HELLO_HINT not in record["hint"]
    assert not any("more than one TCP segment" in fact for fact in record["evidence"])


def test_a_post_quantum_key_share_is_named() -> None:
    """The same capture with the ClientHello's key share made an X25519MLKEM768 one (as Chrome and OpenSSL 3.5
    send): the evidence names it, since it is what made the hello that long."""
    _, analyzer = analysed_first_flow(SILENT)

    def with_pq_share(event: object) -> object:
        if isinstance(event, HandshakeSeen) and isinstance(event.message, ClientHello):
            ch = event.message
            shares = (KeyShareEntry(group=X25519MLKEM768, key_exchange_length=1216),
                      KeyShareEntry(group=0x001D, key_exchange_length=32))
            extensions = tuple(dataclasses.replace(e, parsed=shares) if e.type == EXT_KEY_SHARE else e
                               for e in ch.extensions)
            return dataclasses.replace(event, message=dataclasses.replace(ch, extensions=extensions))
        return event

    summary = new_summary()
    summary.add_all([with_pq_share(e) for e in analyzer.kept_events])
    verdict = decide(summary, analyzer.kept_tcp)
    assert verdict.cause == "server_silent"
    assert ("frames 4-6: the ClientHello (1,853 bytes, with key share X25519MLKEM768 (1,216 bytes)) came in more "
            "than one TCP segment") in verdict.evidence


# -- the parser's end of stream (hand-built bytes: edge cases) ---------------------------------------------------------
def _hello_record(body_length: int) -> bytes:
    return bytes([22, 3, 1]) + body_length.to_bytes(2, "big") + bytes([1]) + (body_length - 4).to_bytes(3, "big")


def test_end_of_stream_after_whole_records_says_nothing() -> None:
    tls = TlsConnection()
    tls.receive(Sender.SERVER, bytes([21, 3, 3, 0, 2, 2, 40]), 3, 1.0)  # a whole alert record
    assert tls.end_of_stream(Sender.SERVER, 3, 1.0) == []
    assert tls.end_of_stream(Sender.CLIENT, 3, 1.0) == []  # nothing received at all


def test_end_of_stream_inside_a_record() -> None:
    tls = TlsConnection()
    tls.receive(Sender.CLIENT, _hello_record(600)[:9] + bytes(300), 4, 1.0)
    [cut] = tls.end_of_stream(Sender.CLIENT, 4, 1.0)
    assert (cut.frame, cut.offset, cut.content_type, cut.length, cut.received, cut.handshake_type) == (
        4, 0, 22, 600, 304, 1)
    assert tls.end_of_stream(Sender.CLIENT, 4, 1.0) == [cut]  # a question: nothing changes


def test_end_of_stream_inside_a_header_or_an_unreadable_record() -> None:
    tls = TlsConnection()
    tls.receive(Sender.CLIENT, _hello_record(600)[:3], 4, 1.0)  # not even a whole header
    assert tls.end_of_stream(Sender.CLIENT, 4, 1.0) == []
    other = TlsConnection()
    other.receive(Sender.SERVER, bytes([23, 3, 3, 0x40, 0]) + bytes(100), 9, 2.0)  # application data, skipped
    [cut] = other.end_of_stream(Sender.SERVER, 9, 2.0)
    assert (cut.content_type, cut.length, cut.received, cut.handshake_type) == (23, 0x4000, 100, None)


def test_the_prefix_of_a_client_hello() -> None:
    """A whole ClientHello of the corpus cut at every length: the prefix decodes what came whole, never more,
    and never fails on what is missing."""
    record, analyzer = analysed_first_flow(SILENT)
    [hello] = [e for e in analyzer.kept_events if isinstance(e, HandshakeSeen)]
    body = hello.raw[4:]
    suites_at = 35 + body[34]
    compression_at = suites_at + 2 + int.from_bytes(body[suites_at:suites_at + 2], "big")
    extensions_at = compression_at + 1 + body[compression_at] + 2
    names = []
    for length in range(len(body) + 1):
        prefix = client_hello_prefix(body[:length])
        if length < extensions_at:  # the fixed fields not all there
            assert prefix is None
            continue
        assert prefix is not None
        assert prefix.random == hello.message.random
        assert prefix.extensions == hello.message.extensions[:len(prefix.extensions)]
        names.append(prefix.sni)
    assert names[-1] == record["sni"] == "server.tlsflow.test"
    assert names[0] is None  # (the server_name extension had not come yet)
    assert client_hello_prefix(body) == hello.message


def test_a_server_fin_after_an_immediate_half_close_is_the_server_closing(tmp_path: Path) -> None:
    """The silent capture with the client's FIN (and what follows it) moved to 1 ms after the ClientHello: a
    client that half-closed at once waited for nothing, so the server's FIN after it is the server closing
    without a TLS answer, not an answer to a client that gave up."""
    header, recs = records(SILENT)
    _, analyzer = analysed_first_flow(SILENT)
    fin = analyzer.kept_tcp.client.fin_frame
    seconds, micros = struct.unpack_from("<II", recs[fin - 2])  # the frame before the FIN: the ClientHello's ACK
    moved = []
    for k, record in enumerate(recs[fin - 1:], 1):
        later = micros + 1000 * k
        moved.append(struct.pack("<II", seconds + later // 1_000_000, later % 1_000_000) + record[8:])
    edited = tmp_path / "half_closed.pcap"
    edited.write_bytes(header + b"".join(recs[:fin - 1] + moved))
    record, _ = analysed_first_flow(edited)
    assert (record["failed_step"], record["cause"]) == ("server_hello", "closed_without_alert")
    original, _ = analysed_first_flow(SILENT)
    assert original["cause"] == "server_silent"


def test_a_capture_that_ends_inside_the_client_hello(tmp_path: Path) -> None:
    """The silent capture cut after the ClientHello's first segment (and the server's ACK of it): incomplete, and
    the evidence says what came of the ClientHello, not that there were no TLS bytes."""
    header, recs = records(SILENT)
    cut = tmp_path / "ends_mid_hello.pcap"
    cut.write_bytes(header + b"".join(recs[:5]))
    record, _ = analysed_first_flow(cut)
    assert (record["outcome"], record["cause"], record["sni"]) == ("incomplete", None, "server.tlsflow.test")
    assert record["evidence"] == [
        "frame 4: the first 1,448 of the 1,853 bytes of a ClientHello record; the rest is not in the capture"]
