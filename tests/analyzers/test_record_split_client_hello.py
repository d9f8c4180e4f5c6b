"""A ClientHello split over two TLS records (RFC 8446 section 5.1 allows it; tools that get past SNI filters send
it so) and a server or middlebox that reads the ClientHello from its first record only: it resets. Real captures of
the corpus (Python ssl, its ClientHello record re-framed as two, to a socket server that reads one record and to
`openssl s_server`, which reassembles it)."""
from __future__ import annotations

import dataclasses

import pytest

from analyzers.summary import new_summary
from analyzers.verdict import RECORD_SPLIT_HINT, SPLIT_HELLO_HINT, decide
from tests.conftest import CORPUS, analysed_first_flow
from tlsflow.explain import render_ladder
from tlsparse import AlertSeen, ClientHello, HandshakeSeen, RecordSeen, Sender

RESET = CORPUS / "net_record_split_client_hello_reset.pcap"
ACCEPTED = CORPUS / "net_record_split_client_hello_accepted.pcap"


def _client_hello(events: list) -> HandshakeSeen:
    return next(e for e in events if isinstance(e, HandshakeSeen) and isinstance(e.message, ClientHello))


def test_a_reset_after_a_client_hello_in_two_records() -> None:
    record, analyzer = analysed_first_flow(RESET)
    assert (record["outcome"], record["failed_step"], record["cause"]) == (
        "failed", "server_hello", "reset_after_client_hello")
    hello = _client_hello(analyzer.kept_events)
    first = next(e for e in analyzer.kept_events if isinstance(e, RecordSeen) and e.sender is Sender.CLIENT)
    assert first.length == 50 and hello.length + 4 > 50  # what the capture holds: the first record cuts the message
    assert (f"frame 4: the ClientHello ({hello.length + 4:,}-byte message) came in more than one TLS record, the "
            "first one carrying 50 bytes of it") in record["evidence"]
    assert record["hint"].endswith(RECORD_SPLIT_HINT)
    assert SPLIT_HELLO_HINT not in record["hint"]  # one TCP segment carried both records
    assert not any("TCP segment" in fact for fact in record["evidence"])
    # The hello read whole from its two records: the server name, and fingerprints of all of it.
    assert record["sni"] == "server.tlsflow.test" and record["ja3"] and record["ja4"]


def test_the_same_client_hello_accepted_by_openssl() -> None:
    """The control: a split ClientHello is no failure in itself, and its record is that of any hello."""
    record, analyzer = analysed_first_flow(ACCEPTED)
    assert (record["outcome"], record["version"], record["sni"]) == ("established", "TLS 1.3", "server.tlsflow.test")
    assert not record["evidence"] and record["hint"] is None
    assert _client_hello(analyzer.kept_events).message.sni == "server.tlsflow.test"


def test_a_server_alert_after_a_split_hello_gets_the_evidence_too() -> None:
    """A server that cannot read a hello split into records may answer with an alert (decode_error, or
    handshake_failure) rather than a reset: the capture's server RST replaced by a plaintext decode_error alert."""
    _, analyzer = analysed_first_flow(RESET)
    tcp = dataclasses.replace(analyzer.kept_tcp, server=dataclasses.replace(
        analyzer.kept_tcp.server, rst_frame=None, rst_ts=None, rst_count=0, rst_ttl=None, rst_ip_id=None))
    hello = _client_hello(analyzer.kept_events)
    alert = AlertSeen(sender=Sender.SERVER, frame=6, ts=hello.ts + 0.001, offset=0, level=2, description=50,
                      encrypted=False, length=2)
    summary = new_summary()
    summary.add_all([*analyzer.kept_events, alert])
    verdict = decide(summary, tcp)
    assert (verdict.failed_step, verdict.cause, verdict.alert) == ("server_hello", "alert_other", "decode_error")
    assert any("more than one TLS record" in fact for fact in verdict.evidence)
    assert verdict.hint.endswith(RECORD_SPLIT_HINT)


@pytest.mark.parametrize("name", ["net_reset_after_client_hello", "net_closed_without_alert",
                                  "net_split_client_hello_silent", "tls12_no_common_cipher"])
def test_a_client_hello_in_one_record_gets_no_such_evidence(name: str) -> None:
    record, _ = analysed_first_flow(CORPUS / f"{name}.pcap")
    assert record["outcome"] == "failed"
    assert RECORD_SPLIT_HINT not in (record["hint"] or "")
    assert not any("TLS record" in fact for fact in record["evidence"])


def test_message_length_is_the_wire_length() -> None:
    """ClientHello.message_length, from the decoded fields, against the parser's own count, on every ClientHello of
    the failed captures above and of the two record-split ones."""
    for name in ("net_record_split_client_hello_reset", "net_record_split_client_hello_accepted",
                 "net_split_client_hello_silent", "net_reset_after_client_hello"):
        _, analyzer = analysed_first_flow(CORPUS / f"{name}.pcap")
        hello = _client_hello(analyzer.kept_events)
        assert hello.message.message_length == hello.length + 4


def test_the_ladder_says_how_many_records() -> None:
    for path in (RESET, ACCEPTED):
        record, analyzer = analysed_first_flow(path)
        ladder = "\n".join(render_ladder(analyzer.kept_events, analyzer.kept_tcp, record))
        assert "ClientHello in 2 records (TLS 1.3" in ladder
    record, analyzer = analysed_first_flow(CORPUS / "tls13_established_plain.pcap")
    ladder = "\n".join(render_ladder(analyzer.kept_events, analyzer.kept_tcp, record))
    assert "ClientHello (TLS 1.3" in ladder and "records (" not in ladder
