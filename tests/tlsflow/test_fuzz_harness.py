"""`tools/fuzz.py certs` feeds a corpus TLS 1.2 handshake, its certificate chain replaced by the fuzzer's bytes, to
FlowAnalyzer; `tls13-keys` a corpus TLS 1.3 handshake whose server flight is the fuzzer's plaintext, encrypted with
the handshake's own keys (the key log given). What they find means something only if, given the capture's own chain
or flight, they give the verdict the capture itself gives: checked here for every template. Then a few hostile
chains and flights through the same paths."""
from __future__ import annotations

import re

import pytest

from analyzers.certchecks import TrustStore
from tlsflow.pipeline import FlowAnalyzer, iter_flow_records
from tlsflow.record import FIELDS
from tlsparse.keylog import KeyLog
from tools import fuzz

TEMPLATES = fuzz.cert_templates()
TLS13 = fuzz.tls13_templates()


def _trust(corpus_dir) -> TrustStore:
    return TrustStore.from_pem_file(corpus_dir / "ca.pem")


def _records(analyzer: FlowAnalyzer, packets: list) -> list[dict]:
    records = []
    for pkt in packets:
        records.extend(analyzer.feed(pkt))
    records.extend(analyzer.finish())
    return records


def _replayed(template: dict, ders: list[bytes], ocsp: bytes | None, trust: TrustStore) -> list[dict]:
    return _records(FlowAnalyzer("fuzz", trust=trust), fuzz.cert_packets(template, ders, ocsp))


@pytest.mark.parametrize(("templates", "some"), [
    (TEMPLATES, {"tls12_cert_expired.pcap", "tls12_cert_revoked_ocsp_gnutls.pcap", "tls12_mutual_tls.pcap"}),
    (TLS13, {"tls13_cert_expired.pcap", "tls13_mutual_tls.pcap", "tls13_established_plain.pcap"}),
], ids=["tls12-with-a-certificate-in-the-clear", "tls13-with-a-key-log-but-the-retry"])
def test_every_such_handshake_of_the_corpus_is_a_template(templates, some):
    names = {template["name"] for template in templates}
    assert len(names) >= 20
    assert some <= names


@pytest.mark.parametrize("template", TEMPLATES + TLS13, ids=[template["name"] for template in TEMPLATES + TLS13])
def test_a_template_replayed_with_its_own_chain_or_flight_gives_the_captures_verdict(template, corpus_dir):
    trust = _trust(corpus_dir)
    if "keylog" in template:
        keylog = KeyLog.from_file(template["keylog"])
        replayed = _replayed_tls13(template, template["plaintext"], trust)
    else:
        keylog = None
        replayed = _replayed(template, *fuzz.template_chain(template), trust)
    real = next(iter_flow_records(str(corpus_dir / template["name"]), trust=trust, keylog=keylog))
    assert len(replayed) == 1
    keys = ("outcome", "failed_step", "cause", "history", "version", "cipher", "cert_subject", "cert_issuer",
            "cert_chain_len", "cert_san", "sni")
    assert {key: replayed[0][key] for key in keys} == {key: real[key] for key in keys}
    # The evidence too, but for the frame numbers (the replay has a packet per segment and an ACK after each).
    assert _unnumbered(replayed[0]["evidence"]) == _unnumbered(real["evidence"])


def _template(name: str) -> dict:
    return next(template for template in TEMPLATES if template["name"] == name)


@pytest.mark.parametrize("chain", [
    [],  # an empty Certificate message from a server
    [b""],  # a certificate of no bytes
    [b"\x30\x82\xff\xff" + b"\x00" * 64],  # a DER header that claims more than there is
    [b"\x30\x03\x02\x01\x00"],  # a SEQUENCE that holds only an INTEGER
], ids=["empty", "zero-length", "overlong-header", "not-a-certificate"])
def test_hostile_chains_give_a_record_not_an_exception(chain, corpus_dir):
    template = _template("tls12_cert_expired.pcap")
    records = _replayed(template, chain, None, _trust(corpus_dir))
    assert len(records) == 1
    assert list(records[0])[:len(FIELDS)] == list(FIELDS)
    assert records[0]["outcome"] == "failed"


def test_a_leaf_cut_short_leaves_the_cause_to_the_alert_and_says_why(corpus_dir):
    template = _template("tls12_cert_expired.pcap")
    ders, _ = fuzz.template_chain(template)
    records = _replayed(template, [ders[0][:len(ders[0]) // 2], *ders[1:]], None, _trust(corpus_dir))
    assert len(records) == 1
    record = records[0]
    assert record["outcome"] == "failed" and record["cert_subject"] is None
    # The client's certificate_expired alert still names the cause, but the dates could not be read: not certain.
    assert record["cause"] == "cert_expired" and record["confidence"] != "certain"
    assert any("does not decode" in line for line in record["evidence"])


def _replayed_tls13(template: dict, plaintext: bytes, trust: TrustStore) -> list[dict]:
    flight = fuzz.tls13_flight(template, plaintext)
    return _records(FlowAnalyzer("fuzz", trust=trust, keylog=KeyLog.from_file(template["keylog"])),
                    fuzz.replayed_packets(template, template["start"], template["end"], flight))


def _unnumbered(evidence: list[str] | None) -> list[str]:
    return [re.sub(r"\bframe \d+", "frame N", line) for line in evidence or []]


@pytest.mark.parametrize("flight", [
    b"",  # nothing in the flight
    b"\x08\x00\x00\x02\x00\x00",  # EncryptedExtensions alone, no Finished
    b"\x0b\xff\xff\xff" + b"\x00" * 100,  # a Certificate that claims 16 MB
    b"\x08\x00\x00\x02\x00\x00\x0b\x00\x00\x04\x00\x00\x00\x00\x0f\x00\x00\x04\x08\x04\x00\x00"
    b"\x14\x00\x00\x20" + b"\x00" * 32,  # an empty chain, an empty RSA-PSS signature, a wrong Finished
], ids=["empty", "no-finished", "oversized-certificate", "empty-chain-and-signature"])
def test_hostile_tls13_flights_give_a_record_not_an_exception(flight, corpus_dir):
    template = next(t for t in TLS13 if t["name"] == "tls13_established_plain.pcap")
    records = _replayed_tls13(template, flight, _trust(corpus_dir))
    assert len(records) == 1
    assert list(records[0])[:len(FIELDS)] == list(FIELDS)
    assert records[0]["version"] == "TLS 1.3"
