"""Every connection of the labelled corpus (real servers and clients, recorded on loopback) gets its labelled
outcome, failed step and cause, and the alert with its sender."""
from __future__ import annotations

import sys

import pytest

from tests.conftest import CORPUS, REPO, corpus_labels

sys.path.insert(0, str(REPO))
from tools.corpus_report import compare_corpus

LABELS = corpus_labels()


@pytest.fixture(scope="module")
def comparisons():
    return {(c.label["scenario"], c.label["flow"]): c for c in compare_corpus(CORPUS)}


def test_corpus_is_shipped():
    assert LABELS, "captures/corpus/labels.jsonl is missing or empty"
    for label in LABELS:
        assert (CORPUS / label["file"]).exists(), label["file"]


@pytest.mark.parametrize("label", LABELS, ids=[f"{lab['scenario']}#{lab['flow']}" for lab in LABELS])
def test_scenario_verdict(label, comparisons):
    comparison = comparisons[(label["scenario"], label["flow"])]
    assert comparison.record is not None, f"no connection {label['flow']} in {label['file']}"
    record = comparison.record
    # Compared: outcome, failed_step, cause, alert, alert_sender, version. With the scenario's key log an alert
    # labelled "encrypted" (what a keyless observer sees) is read as its name.
    assert not comparison.mismatches, f"(labelled, tlsflow said): {comparison.mismatches}; " \
                                      f"evidence {record.get('evidence')}"
    if comparison.decrypted and label.get("alert") == "encrypted":
        assert record["alert"] not in (None, "encrypted")
    if record["outcome"] == "failed":
        assert record["evidence"], "a failure must come with evidence"
        assert any("frame " in fact for fact in record["evidence"]), "evidence cites frames"
        assert record["hint"]


@pytest.fixture(scope="module")
def keyless():
    return {(c.label["scenario"], c.label["flow"]): c for c in compare_corpus(CORPUS, use_keylogs=False)}


# Without the key log a TLS 1.3 certificate is encrypted: the step and the alert are still right, and the cause is
# what the alert (or the record shape) says, not what only the certificate could say.
_TLS13_CERT_CAUSES = {"cert_rejected", "cert_expired", "cert_unknown_ca", "cert_revoked", "cert_not_yet_valid"}


@pytest.mark.parametrize("label", LABELS, ids=[f"{lab['scenario']}#{lab['flow']}" for lab in LABELS])
def test_scenario_verdict_without_key_log(label, keyless):
    record = keyless[(label["scenario"], label["flow"])].record
    assert record is not None
    if label["scenario"] == "tls13_cert_hostname_mismatch":
        # curl finishes the TLS 1.3 handshake and hangs up over the name: without keys the certificate is not
        # visible, and the handshake did complete.
        assert record["outcome"] == "established"
        return
    assert (record["outcome"], record["failed_step"], record["alert"], record["alert_sender"]) == (
        label["outcome"], label["failed_step"], label["alert"], label["alert_sender"])
    if record["cause"] != label["cause"]:
        assert label["version"] == "TLS 1.3" and label["cause"].startswith(("cert_", "client_clock")), label
        assert record["cause"] in _TLS13_CERT_CAUSES
        assert record["confidence"] in ("likely", "certain")
