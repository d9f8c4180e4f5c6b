"""Outcomes and alerts on real public captures agree with what other tools expect (Zeek's baselines, tshark's
reading). Skipped when ../shared/captures/public is absent. Each known difference is listed with its reason."""
from __future__ import annotations

import json
import warnings

import pytest

from tlsflow.api import iter_flows

# (file, client) → why tlsflow and Zeek differ on purpose.
KNOWN_DIFFERENCES = {
    ("zeek/tls/ssl-to-http-server.pcap", "192.168.1.108:62561"):
        "Zeek logs no established flag; the client sent a ClientHello and the server answered in HTTP: for tlsflow "
        "that is a failed handshake (server_hello, not_tls)",
    ("zeek/globus-url-copy.pcap", "192.168.57.103:60108"):
        "GridFTP carries TLS base64-encoded inside ADAT commands, not as TLS records: tlsflow sees a plain-text "
        "control connection (not_tls)",
}
# Traffic tlsflow does not analyse: DTLS and QUIC run over UDP.
OUT_OF_SCOPE_PREFIXES = ("zeek/quic/", "zeek/tls/dtls")
# STARTTLS-style protocols, where TLS starts after a plaintext exchange: tlsflow finds the hello after it.
STARTTLS = {"zeek/tls/smtp-starttls.pcap", "zeek/tls/xmpp-starttls.pcap", "zeek/mysql/tls-13-amazon-rds.pcap"}


@pytest.fixture(scope="module")
def public(public_dir):
    expected = [json.loads(line) for line in (public_dir / "expected.jsonl").read_text().splitlines() if line]
    records = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in sorted({e["file"] for e in expected}):
            if name.startswith(OUT_OF_SCOPE_PREFIXES):
                continue
            for record in iter_flows(public_dir / name, errors=[]):
                records[(name, record["client"], record["server"])] = record
    return expected, records


def test_established_and_last_alert_agree_with_zeek(public):
    expected, records = public
    compared, disagreements = 0, []
    for e in expected:
        if e["source"] != "zeek-baseline" or e["file"].startswith(OUT_OF_SCOPE_PREFIXES):
            continue
        if (e["file"], e["client"]) in KNOWN_DIFFERENCES:
            continue
        record = records.get((e["file"], e["client"], e["server"]))
        assert record is not None, f"no connection {e['client']} → {e['server']} in {e['file']}"
        compared += 1
        ok = (record["outcome"] == "established") == bool(e.get("established"))
        if e.get("last_alert") is not None:
            ok = ok and record["alert"] == e["last_alert"]
        if not ok:
            disagreements.append((e["file"], e.get("established"), e.get("last_alert"), record["outcome"],
                                  record["alert"]))
    assert compared >= 30
    assert not disagreements, disagreements


def test_starttls_handshakes_are_found_after_the_plaintext_prelude(public):
    _expected, records = public
    for name in STARTTLS:
        found = [r for (f, _c, _s), r in records.items() if f == name and r["outcome"] == "established"]
        assert found, name
        assert found[0]["history"].startswith("Cs")


def test_fatal_alerts_agree_with_tshark(public):
    expected, records = public
    compared = 0
    for e in expected:
        if e["source"] != "tshark" or e.get("transport") != "tcp":
            continue
        fatal = [a.split(":") for a in e.get("alerts", []) if a.split(":")[1] == "fatal"]
        if not fatal:
            continue
        record = records.get((e["file"], e["client"], e["server"]))
        assert record is not None, e["file"]
        sender, _, description = fatal[0]
        assert record["alert"] == description, (e["file"], record["alert"], description)
        assert record["alert_sender"] == {"c": "client", "s": "server"}[sender]
        assert record["outcome"] == "failed"
        compared += 1
    assert compared >= 5
