"""Encrypted Client Hello (ECH). A client whose ECH the server declines ends the handshake with an ech_required
alert (encrypted, TLS 1.3) and retries with the keys the server sent back: without a key log that reads exactly as
a client refusing the certificate. The verdict now says so when the ClientHello offers ECH, and names a decrypted
ech_required for what it is.

No ECH-capable client or server runs here (OpenSSL 3.0), so the rules are exercised on real corpus captures whose
ClientHello event is given an outer ECH extension, or whose decrypted alert is made ech_required; the real ECH
capture of the public corpus (Chrome to cloudflare-ech.com, from Zeek's tests) checks that an ECH handshake that
went through is reported as it was, without either note."""
from __future__ import annotations

import dataclasses

import pytest

from analyzers.summary import new_summary
from analyzers.verdict import ECH_DECLINED_HINT, ECH_OR_CERT_HINT, ECH_REQUIRED, decide
from tests.conftest import CORPUS, analysed_first_flow
from tlsflow.api import iter_flows
from tlsflow.capture import open_capture
from tlsflow.pipeline import FlowAnalyzer
from tlsparse import AlertSeen, ClientHello, HandshakeSeen
from tlsparse.keylog import KeyLog
from tlsparse.messages import EXT_ENCRYPTED_CLIENT_HELLO, Extension

REFUSED = CORPUS / "tls13_cert_unknown_ca_gnutls.pcap"  # gnutls-cli refuses the chain: an encrypted alert


def _with_outer_ech(event: object) -> object:
    if isinstance(event, HandshakeSeen) and isinstance(event.message, ClientHello):
        ech = Extension(type=EXT_ENCRYPTED_CLIENT_HELLO, data=bytes([0, 0, 1, 0, 1, 0x2A, 0, 0]), parsed=0)
        return dataclasses.replace(event, message=dataclasses.replace(
            event.message, extensions=(*event.message.extensions, ech)))
    return event


def _verdict(events: list, tcp: object):
    summary = new_summary()
    summary.add_all(events)
    return decide(summary, tcp)


def test_keyless_refusal_after_an_ech_offer_may_be_a_declined_ech() -> None:
    record, analyzer = analysed_first_flow(REFUSED)
    assert (record["failed_step"], record["cause"], record["confidence"]) == (
        "server_certificate", "cert_rejected", "likely")
    assert ECH_OR_CERT_HINT not in record["hint"]  # (no ECH offered: as before)
    verdict = _verdict([_with_outer_ech(e) for e in analyzer.kept_events], analyzer.kept_tcp)
    assert (verdict.failed_step, verdict.cause, verdict.confidence) == ("server_certificate", "cert_rejected",
                                                                         "possible")
    assert verdict.evidence[-1] == ("frame 4: the ClientHello offers Encrypted Client Hello (its sni is the outer "
                                    "name)")
    assert verdict.hint.endswith(ECH_OR_CERT_HINT)


def test_a_decrypted_ech_required_is_named() -> None:
    analyzer = FlowAnalyzer(str(REFUSED), keep_events_for=1,
                            keylog=KeyLog.from_file(str(REFUSED.with_suffix(".keylog"))))
    with open_capture(REFUSED) as cap:
        for pkt in cap.packets():
            list(analyzer.feed(pkt))
        list(analyzer.finish())
    alerts = [e for e in analyzer.kept_events if isinstance(e, AlertSeen)]
    assert alerts and alerts[0].decrypted  # the key log reads the client's alert
    events = [_with_outer_ech(dataclasses.replace(e, description=ECH_REQUIRED) if e is alerts[0] else e)
              for e in analyzer.kept_events]
    verdict = _verdict(events, analyzer.kept_tcp)
    assert (verdict.cause, verdict.confidence, verdict.alert, verdict.alert_sender) == (
        "alert_other", "certain", "ech_required", "client")
    assert "frame 4: the ClientHello offers Encrypted Client Hello (its sni is the outer name)" in verdict.evidence
    assert verdict.hint == ECH_DECLINED_HINT


def test_an_ech_handshake_that_went_through(public_dir) -> None:
    records = [r for r in iter_flows(public_dir / "zeek/tls/tls13-ech.pcap", errors=[])
               if r["outcome"] != "incomplete"]
    assert [(r["outcome"], r["version"], r["sni"]) for r in records] == [
        ("established", "TLS 1.3", "cloudflare-ech.com")] * 2
    assert all(r["hint"] is None for r in records)
    # What the rules look for is there: Chrome's outer ECH extension, decoded as such.
    analyzer = FlowAnalyzer("ech", keep_events_for=records[0]["flow_id"])
    with open_capture(public_dir / "zeek/tls/tls13-ech.pcap") as cap:
        for pkt in cap.packets():
            list(analyzer.feed(pkt))
        list(analyzer.finish())
    hello = next(e for e in analyzer.kept_events if isinstance(e, HandshakeSeen) and isinstance(e.message, ClientHello))
    assert [e.parsed for e in hello.message.extensions if e.type == EXT_ENCRYPTED_CLIENT_HELLO] == [0]


@pytest.mark.parametrize("parsed", [1, None])
def test_an_inner_or_unreadable_ech_extension_is_no_offer(parsed: int | None) -> None:
    """Type 1 is the inner ClientHello (never on the wire in clear); an undecodable one says nothing either."""
    _, analyzer = analysed_first_flow(REFUSED)

    def with_ech(event: object) -> object:
        if isinstance(event, HandshakeSeen) and isinstance(event.message, ClientHello):
            ech = Extension(type=EXT_ENCRYPTED_CLIENT_HELLO, data=b"\x01", parsed=parsed)
            return dataclasses.replace(event, message=dataclasses.replace(
                event.message, extensions=(*event.message.extensions, ech)))
        return event

    verdict = _verdict([with_ech(e) for e in analyzer.kept_events], analyzer.kept_tcp)
    assert verdict.confidence == "likely" and ECH_OR_CERT_HINT not in verdict.hint
