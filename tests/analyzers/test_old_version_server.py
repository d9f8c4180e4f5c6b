"""A server that speaks only TLS 1.0: OpenSSL 3 clients still offer nothing below TLS 1.2 at their defaults, or, as
Debian's curl does here, accept the version and then refuse the MD5/SHA-1 signature of its key exchange with an
internal_error ('legacy sigalg disallowed or unsupported'). Before, that read as `alert_other` at
`server_certificate`. Real capture of the corpus: curl against openssl s_server -tls1 at SECLEVEL 0."""
from __future__ import annotations

import dataclasses

from analyzers.summary import new_summary
from analyzers.verdict import OLD_VERSION_HINT, decide
from tests.conftest import CORPUS, analysed_first_flow
from tlsparse import HandshakeSeen, ServerHello

CAPTURE = CORPUS / "tls10_server_refused.pcap"


def test_a_tls10_server_refused_by_an_openssl3_client() -> None:
    record, _ = analysed_first_flow(CAPTURE)
    assert (record["outcome"], record["failed_step"], record["cause"], record["confidence"]) == (
        "failed", "server_hello", "no_common_version", "likely")
    assert (record["alert"], record["alert_sender"], record["version"]) == ("internal_error", "client", "TLS 1.0")
    assert any("the server chose TLS 1.0, deprecated (RFC 8996)" in fact for fact in record["evidence"])
    assert record["hint"] == OLD_VERSION_HINT
    assert "old_version" in record["warnings"]


def test_the_same_refusal_after_a_tls12_server_hello_is_not_this() -> None:
    _, analyzer = analysed_first_flow(CAPTURE)

    def as_tls12(event: object) -> object:
        if isinstance(event, HandshakeSeen) and isinstance(event.message, ServerHello):
            return dataclasses.replace(event, message=dataclasses.replace(event.message, legacy_version=0x0303))
        return event

    summary = new_summary()
    summary.add_all([as_tls12(e) for e in analyzer.kept_events])
    verdict = decide(summary, analyzer.kept_tcp)
    assert verdict.cause != "no_common_version" and verdict.hint != OLD_VERSION_HINT
