"""A server whose DHE group is smaller than current clients accept ("dh key too small", the error OpenSSL-based
clients print for the 1024-bit groups of old servers): the client refuses the ServerKeyExchange with a bare
handshake_failure. Before, that read as a certificate problem (`server_certificate`, the certificate's own findings
or handshake_failure). Real capture of the corpus: curl against openssl s_server offering only DHE with RFC 2409's
1024-bit group."""
from __future__ import annotations

import dataclasses

from analyzers.summary import new_summary
from analyzers.verdict import MIN_DH_PRIME_BITS, WEAK_DH_HINT, decide
from tests.conftest import CORPUS, analysed_first_flow
from tlsparse import HandshakeSeen, ServerKeyExchange

DH1024 = CORPUS / "tls12_dh_key_too_small.pcap"


def test_a_client_refuses_a_1024_bit_dh_group() -> None:
    record, analyzer = analysed_first_flow(DH1024)
    assert (record["outcome"], record["failed_step"], record["cause"], record["confidence"]) == (
        "failed", "server_key_exchange", "no_common_group", "likely")
    assert (record["alert"], record["alert_sender"]) == ("handshake_failure", "client")
    assert record["cipher"] == "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"
    assert ("frame 6: ServerKeyExchange: DHE with a 1024-bit group; current clients want 2048 bits or more "
            "(OpenSSL: 'dh key too small')") in record["evidence"]
    assert record["hint"] == WEAK_DH_HINT.format(bits=1024)
    ske = next(e.message for e in analyzer.kept_events
               if isinstance(e, HandshakeSeen) and isinstance(e.message, ServerKeyExchange))
    assert (ske.kind, ske.dh_prime_bits) == ("dhe", 1024)


def _with_prime_bits(bits: int):
    _, analyzer = analysed_first_flow(DH1024)

    def edit(event: object) -> object:
        if isinstance(event, HandshakeSeen) and isinstance(event.message, ServerKeyExchange):
            return dataclasses.replace(event, message=dataclasses.replace(event.message, dh_prime_bits=bits))
        return event

    summary = new_summary()
    summary.add_all([edit(e) for e in analyzer.kept_events])
    return decide(summary, analyzer.kept_tcp)


def test_a_large_enough_group_is_not_the_reason() -> None:
    """The same refusal after a 2048-bit group: something else (the verdict says no more than the alert)."""
    verdict = _with_prime_bits(MIN_DH_PRIME_BITS)
    assert verdict.cause == "handshake_failure" and verdict.failed_step == "server_certificate"
    assert not any("DHE with a" in fact for fact in verdict.evidence)
    assert _with_prime_bits(MIN_DH_PRIME_BITS - 1).cause == "no_common_group"


def test_ecdhe_handshakes_are_not_touched() -> None:
    for name in ("tls12_established_plain", "tls12_no_common_cipher", "tls12_cert_expired"):
        record, _ = analysed_first_flow(CORPUS / f"{name}.pcap")
        assert not any("DHE with a" in fact for fact in record["evidence"] or [])
