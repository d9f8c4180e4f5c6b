"""A server certificate with the right name and chain but an extended key usage of clientAuth only (a client
certificate put on a server): OpenSSL-based clients refuse it with unsupported_certificate ("unsuitable certificate
purpose"). Before, the record said `cert_rejected` with a hint to get a key log for the exact alert, which was
already readable. Real capture of the corpus: curl against openssl s_server with such a certificate."""
from __future__ import annotations

from analyzers.verdict import CERT_REJECTED_READABLE_HINT, CERT_REJECTED_UNSEEN_HINT, WRONG_PURPOSE_HINT
from tests.conftest import CORPUS
from tlsflow.api import iter_flows

CAPTURE = CORPUS / "tls12_cert_wrong_purpose.pcap"


def _record(**kwargs) -> dict:
    [record] = list(iter_flows(CAPTURE, errors=[], **kwargs))
    return record


def test_the_certificate_is_not_for_servers() -> None:
    record = _record(ca_bundle=CORPUS / "ca.pem")
    assert (record["failed_step"], record["cause"], record["confidence"]) == (
        "server_certificate", "cert_rejected", "certain")
    assert (record["alert"], record["alert_sender"]) == ("unsupported_certificate", "client")
    assert any(fact.endswith("is not for TLS servers: its extended key usage is clientAuth, without serverAuth")
               for fact in record["evidence"])
    assert not any("does not verify" in fact for fact in record["evidence"])  # (the corpus CA file's many roots)
    assert record["hint"] == WRONG_PURPOSE_HINT


def test_without_the_corpus_ca_the_purpose_is_still_named() -> None:
    record = _record()
    assert record["cause"] == "cert_rejected" and record["hint"] == WRONG_PURPOSE_HINT


def test_a_readable_refusal_of_an_unseen_certificate_asks_for_the_key_log() -> None:
    """TLS 1.3 without keys: the certificate is encrypted, the client's alert (OpenSSL sends it in plain text) is
    not; the hint asks for the key log to read the certificate, not the alert."""
    [record] = list(iter_flows(CORPUS / "tls13_cert_weak_rsa1024.pcap", errors=[]))
    assert (record["cause"], record["alert"]) == ("cert_rejected", "bad_certificate")
    assert record["hint"] == CERT_REJECTED_UNSEEN_HINT
    assert WRONG_PURPOSE_HINT != CERT_REJECTED_READABLE_HINT and "key log" not in CERT_REJECTED_READABLE_HINT
