"""The ServerKeyExchange signature check on real TLS 1.2 handshakes: it verifies for a normal server and fails
for the server whose key does not match its certificate."""
from __future__ import annotations

import pytest

from analyzers.signatures import verify_server_key_exchange
from tests.conftest import CORPUS, corpus_labels
from tlsflow.capture import open_capture
from tlsflow.pipeline import FlowAnalyzer


def _summaries(path):
    analyzer = FlowAnalyzer(str(path))
    kept = {}
    original = analyzer._record

    def record(conn, capture_ended):
        kept[conn.flow_id] = conn.handshake.summary
        return original(conn, capture_ended)

    analyzer._record = record
    with open_capture(path) as cap:
        for pkt in cap.packets():
            list(analyzer.feed(pkt))
    list(analyzer.finish())
    return kept


def _check(summary):
    return verify_server_key_exchange(summary.server_certificate.message.certificates[0],
                                      summary.client_hello.random, summary.server_hello_msg.random,
                                      summary.server_key_exchange.message)


def test_signature_verifies_on_established_tls12_flows():
    checked = 0
    for label in corpus_labels():
        if label["outcome"] != "established" or label.get("version") != "TLS 1.2":
            continue
        for summary in _summaries(CORPUS / label["file"]).values():
            if summary.server_key_exchange is not None and summary.server_certificate is not None:
                assert _check(summary) is True, label["scenario"]
                checked += 1
    if not checked:
        pytest.skip("no TLS 1.2 ECDHE/DHE handshake in the corpus")


def test_signature_fails_for_mismatched_key():
    path = CORPUS / "tls12_cert_key_mismatch.pcap"
    if not path.exists():
        pytest.skip("scenario not recorded")
    summary = _summaries(path)[1]
    assert _check(summary) is False
