"""One failure-analysis test per verdict path on real captures of the corpus: the cause, how sure, and the
evidence text that a user reads. Also what tlsflow can say of TLS 1.3 rejections WITHOUT the key log: the step
from record shapes, with `likely` confidence."""
from __future__ import annotations

import pytest

from tests.conftest import CORPUS, corpus_labels
from tlsflow.api import iter_flows

LABELS = {lab["scenario"]: lab for lab in corpus_labels()}
CA = CORPUS / "ca.pem"


def _record(scenario: str, *, keylog: bool = False, flow: int = 1) -> dict:
    if scenario not in LABELS:
        pytest.skip(f"{scenario} is not in the corpus")
    label = LABELS[scenario]
    key = CORPUS / (scenario + ".keylog")
    records = {r["flow_id"]: r for r in iter_flows(CORPUS / label["file"], ca_bundle=CA if CA.exists() else None,
                                                   keylog=key if keylog and key.exists() else None)}
    return records[flow]


def _evidence(record: dict) -> str:
    return "\n".join(record["evidence"] or [])


# scenario → (cause, confidence, phrases the evidence must contain)
PATHS = {
    "net_port_closed": ("tcp_refused", "certain", ["client SYN", "server RST, no SYN-ACK"]),
    "net_syn_unanswered": ("tcp_no_answer", "likely", ["client SYN, sent", "no packet from the server"]),
    "net_reset_after_client_hello": ("reset_after_client_hello", "certain", ["ClientHello", "server RST"]),
    "net_reset_injected": ("reset_injected", "likely", ["RST with IP TTL 50", "server's own packets have TTL 64"]),
    "net_server_silent": ("server_silent", "likely", ["server acknowledged it", "client gave up"]),
    "net_closed_without_alert": ("closed_without_alert", "certain", ["closed (FIN) without any TLS answer",
                                                                     "in reaction"]),
    "net_tls_client_to_http_server": ("not_tls", "certain", ["non-TLS bytes", "HTTP/1.1"]),
    "net_packet_loss_fatal": ("packet_loss", "likely", ["server never acknowledged"]),
    "net_mtu_blackhole": ("mtu_blackhole", "likely", ["retransmitted and never acknowledged",
                                                      "smaller packets got through"]),
    "no_common_version_old_client": ("no_common_version", "certain", ["alert protocol_version", "client offered"]),
    "tls12_no_common_cipher": ("no_common_cipher", "likely", ["handshake_failure", "client offered"]),
    "tls12_weak_cipher_only": ("weak_cipher_only", "possible", ["widely supported suites"]),
    "tls13_no_common_group": ("no_common_group", "likely", ["only the group(s) x25519"]),
    "tls12_cert_expired": ("cert_expired", "certain", ["certificate_expired", "expired"]),
    "tls12_cert_self_signed": ("cert_self_signed", "certain", ["unknown_ca"]),
    "tls12_client_cert_missing": ("client_cert_missing", "certain", ["CertificateRequest", "empty Certificate"]),
    "tls12_cert_key_mismatch": ("cert_key_mismatch", "certain", ["does not verify with the certificate's public key"]),
    "tls12_client_clock_skew_attime": ("client_clock_skew", "likely", ["valid at the capture's time"]),
}


@pytest.mark.parametrize("scenario", sorted(PATHS))
def test_verdict_path(scenario):
    cause, confidence, phrases = PATHS[scenario]
    record = _record(scenario)
    assert record["outcome"] == "failed", record
    assert record["cause"] == cause, record["evidence"]
    assert record["confidence"] == confidence
    text = _evidence(record)
    for phrase in phrases:
        assert phrase in text, f"{phrase!r} not in evidence:\n{text}"
    assert record["hint"]


@pytest.mark.parametrize("scenario", ["tls13_cert_unknown_ca_gnutls", "tls13_cert_expired_gnutls",
                                      "tls13_cert_revoked_ocsp_gnutls"])
def test_tls13_encrypted_client_alert_without_keys(scenario):
    """gnutls-cli encrypts its alerts: without keys the client's alert-sized record and close name the step."""
    record = _record(scenario)
    assert (record["outcome"], record["failed_step"], record["alert"]) == ("failed", "server_certificate",
                                                                           "encrypted")
    assert record["cause"] == "cert_rejected" and record["confidence"] == "likely"
    assert "alert-sized" in _evidence(record)


@pytest.mark.parametrize("scenario,cause", [("tls13_client_cert_missing", "client_cert_missing"),
                                            ("tls13_client_cert_untrusted", "client_cert_rejected")])
def test_tls13_server_rejects_client_without_keys(scenario, cause):
    record = _record(scenario)
    assert (record["failed_step"], record["cause"], record["confidence"]) == ("client_certificate", cause, "likely")
    assert "alert-sized" in _evidence(record)


@pytest.mark.parametrize("scenario", ["tls13_client_cert_missing", "tls13_cert_unknown_ca_gnutls",
                                      "tls13_cert_hostname_mismatch"])
def test_tls13_with_key_log_names_the_real_reason(scenario):
    label = LABELS.get(scenario) or pytest.skip("not in corpus")
    record = _record(scenario, keylog=True)
    assert (record["failed_step"], record["cause"]) == (label["failed_step"], label["cause"])
    if label["alert"] == "encrypted":
        assert record["alert"] not in (None, "encrypted"), "the key log makes the alert readable"
