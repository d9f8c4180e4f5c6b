"""A client that asks to start TLS in a plaintext protocol and a server that says no: before, "the bytes on this
connection are not TLS: a plain-text service on a TLS port", with nothing of what was asked and answered. Real
captures of the corpus: openssl s_client -starttls smtp against aiosmtpd, with TLS (the control) and without it
('454 TLS not available', after which s_client sends its ClientHello anyway)."""
from __future__ import annotations

from analyzers.summary import new_summary
from analyzers.verdict import POSTGRES_NO_SSL_HINT, UPGRADE_REFUSED_HINT, decide
from tests.conftest import CORPUS, analysed_first_flow
from tlsparse import NotTlsSeen, Sender, UpgradeAskedSeen, UpgradeReplySeen


def test_starttls_that_went_through() -> None:
    record, analyzer = analysed_first_flow(CORPUS / "smtp_starttls.pcap")
    assert (record["outcome"], record["version"], record["sni"]) == ("established", "TLS 1.3", "server.tlsflow.test")
    replies = [e.reply for e in analyzer.kept_events if isinstance(e, UpgradeReplySeen)]
    assert replies and replies[0].startswith(b"220 ")


def test_starttls_refused_with_454() -> None:
    record, _ = analysed_first_flow(CORPUS / "smtp_starttls_refused.pcap")
    assert (record["outcome"], record["failed_step"], record["cause"]) == ("failed", "server_hello", "not_tls")
    assert record["evidence"][0].startswith("frame 16: the server refused the client's request to start TLS "
                                            "('STARTTLS', frame 15): '454 ")
    assert record["hint"] == UPGRADE_REFUSED_HINT


def test_postgresql_refuses_ssl() -> None:
    """PostgreSQL's SSLRequest answered 'N' (ssl = off): the events as the parser gives them, on the TCP facts of
    a real capture."""
    _, analyzer = analysed_first_flow(CORPUS / "smtp_starttls_refused.pcap")
    request = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
    events = [NotTlsSeen(sender=Sender.CLIENT, frame=4, ts=1.0, offset=0, preview=request),
              UpgradeAskedSeen(sender=Sender.CLIENT, frame=4, ts=1.0, offset=0, command=request),
              NotTlsSeen(sender=Sender.SERVER, frame=6, ts=1.1, offset=0, preview=b"N"),
              UpgradeReplySeen(sender=Sender.SERVER, frame=6, ts=1.1, offset=0, reply=b"N")]
    summary = new_summary()
    summary.add_all(events)
    verdict = decide(summary, analyzer.kept_tcp)
    assert verdict.outcome == "not_tls"
    assert verdict.evidence[0] == ("frame 6: the server refused the client's request to start TLS ('SSLRequest', "
                                   "frame 4): 'N'; no TLS began")
    assert verdict.hint == POSTGRES_NO_SSL_HINT


def test_an_agreement_without_tls_after_it_is_no_refusal() -> None:
    _, analyzer = analysed_first_flow(CORPUS / "smtp_starttls_refused.pcap")
    events = [NotTlsSeen(sender=Sender.SERVER, frame=4, ts=1.0, offset=0, preview=b"220 mail.test ES"),
              NotTlsSeen(sender=Sender.CLIENT, frame=6, ts=1.1, offset=0, preview=b"EHLO me\r\n"),
              UpgradeAskedSeen(sender=Sender.CLIENT, frame=8, ts=1.2, offset=10, command=b"STARTTLS"),
              UpgradeReplySeen(sender=Sender.SERVER, frame=9, ts=1.3, offset=40, reply=b"220 2.0.0 Ready to start TLS")]
    summary = new_summary()
    summary.add_all(events)
    verdict = decide(summary, analyzer.kept_tcp)
    assert verdict.hint != UPGRADE_REFUSED_HINT
    assert not any("refused" in fact for fact in verdict.evidence)
