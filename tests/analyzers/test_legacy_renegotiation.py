"""A server without secure renegotiation (RFC 5746: no renegotiation_info in its ServerHello), which OpenSSL 3
clients refuse by default with a bare handshake_failure right after the ServerHello ("unsafe legacy renegotiation
disabled"). Before, that read as a certificate problem or a plain handshake_failure at `server_certificate`. Real
capture of the corpus: curl against gnutls-serv with %DISABLE_SAFE_RENEGOTIATION."""
from __future__ import annotations

import dataclasses

from analyzers.summary import new_summary
from analyzers.verdict import LEGACY_RENEGOTIATION_HINT, decide
from tests.conftest import CORPUS, analysed_first_flow
from tlsparse import HandshakeSeen, ServerHello
from tlsparse.messages import EXT_RENEGOTIATION_INFO, Extension

LEGACY = CORPUS / "tls12_unsafe_legacy_renegotiation.pcap"


def test_openssl_refuses_a_server_without_secure_renegotiation() -> None:
    record, analyzer = analysed_first_flow(LEGACY)
    assert (record["outcome"], record["failed_step"], record["cause"], record["confidence"]) == (
        "failed", "server_hello", "handshake_failure", "likely")
    assert (record["alert"], record["alert_sender"], record["version"]) == ("handshake_failure", "client", "TLS 1.2")
    assert any(fact.endswith("the ServerHello has no renegotiation_info: the server does not do secure "
                             "renegotiation (RFC 5746), which the client asked for; OpenSSL 3 clients refuse such "
                             "servers ('unsafe legacy renegotiation disabled')") for fact in record["evidence"])
    assert record["hint"] == LEGACY_RENEGOTIATION_HINT
    sh = next(e.message for e in analyzer.kept_events
              if isinstance(e, HandshakeSeen) and isinstance(e.message, ServerHello))
    assert EXT_RENEGOTIATION_INFO not in [e.type for e in sh.extensions]


def test_a_server_hello_with_renegotiation_info_is_not_this() -> None:
    """The same capture with renegotiation_info put back in the ServerHello: the refusal is then unexplained."""
    _, analyzer = analysed_first_flow(LEGACY)

    def with_reneg(event: object) -> object:
        if isinstance(event, HandshakeSeen) and isinstance(event.message, ServerHello):
            info = Extension(type=EXT_RENEGOTIATION_INFO, data=b"\x00", parsed=b"")
            return dataclasses.replace(event, message=dataclasses.replace(
                event.message, extensions=(*event.message.extensions, info)))
        return event

    summary = new_summary()
    summary.add_all([with_reneg(e) for e in analyzer.kept_events])
    verdict = decide(summary, analyzer.kept_tcp)
    assert verdict.hint != LEGACY_RENEGOTIATION_HINT
    assert not any("renegotiation_info" in fact for fact in verdict.evidence)


def test_other_refusals_are_not_this() -> None:
    for name in ("tls12_no_common_cipher", "tls12_cert_expired", "tls12_dh_key_too_small", "tls12_established_plain"):
        record, _ = analysed_first_flow(CORPUS / f"{name}.pcap")
        assert record["hint"] != LEGACY_RENEGOTIATION_HINT, name
