"""The ServerKeyExchange signature check on real TLS 1.2 handshakes: it verifies for a normal server and fails
for the server whose key does not match its certificate."""
from __future__ import annotations

import pytest

from analyzers.signatures import verify_server_key_exchange
from tests.conftest import CORPUS, corpus_labels
from tlsflow.capture import open_capture
from tlsflow.pipeline import FlowAnalyzer


def _summaries(path, keylog=None):
    analyzer = FlowAnalyzer(str(path), keylog=keylog)
    kept = {}
    original = analyzer._record

    def record(conn):
        if conn.handshake is not None:  # (a connection refused at the SYN carries no byte: no summary)
            kept[conn.flow_id] = conn.handshake.summary
        return original(conn)

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


def _tls13_with_keys():
    """(summary, scenario) for established TLS 1.3 corpus flows whose key log makes the CertificateVerify readable."""
    from tlsparse.keylog import KeyLog

    for label in corpus_labels():
        keylog = CORPUS / (label["scenario"] + ".keylog")
        if label["outcome"] != "established" or label.get("version") != "TLS 1.3" or not keylog.exists():
            continue
        summary = _summaries(CORPUS / label["file"], KeyLog.from_file(keylog)).get(label["flow"])
        if summary is not None and summary.server_certificate_verify is not None:
            yield summary, label["scenario"]


def _check13(summary, cert_der=None):
    from analyzers.signatures import verify_tls13_certificate_verify
    from tlsparse import registry

    cv = summary.server_certificate_verify.message
    return verify_tls13_certificate_verify(cert_der or summary.server_certificate.message.certificates[0],
                                           summary.transcript, registry.cipher_suite_info(
                                               summary.server_hello_msg.cipher_suite).hash,
                                           cv.signature_scheme, cv.signature)


def test_tls13_certificate_verify_checks_with_the_key_log():
    """With the key log the server's CertificateVerify verifies over the transcript (HelloRetryRequest included);
    with another certificate's key in its place it does not: what cert_key_mismatch reports in TLS 1.3."""
    flows = list(_tls13_with_keys())
    if not flows:
        pytest.skip("no TLS 1.3 corpus flow with a key log")
    other = _summaries(CORPUS / "tls12_cert_key_mismatch.pcap")[1].server_certificate.message.certificates[0] \
        if (CORPUS / "tls12_cert_key_mismatch.pcap").exists() else None
    for summary, scenario in flows:
        assert summary.transcript_complete, scenario
        assert _check13(summary) is True, scenario
        if other is not None:
            assert _check13(summary, other) is False, scenario
    # The HelloRetryRequest transcript (first ClientHello replaced by its message_hash) is exercised too.
    assert any(s.hello_retry is not None for s, _ in flows), [name for _, name in flows]
