"""cryptography (X.509, the trust store, record decryption) is loaded only when a capture needs it: a third of
tlsflow's start-up otherwise, for captures that never show a certificate in the clear."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import CORPUS

_PROBE = """
import json, sys
from tlsflow.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "loaded": sorted(m for m in ("cryptography", "analyzers.certchecks",
                  "tlsparse.decrypt", "tlsparse.certificate_decode") if m in sys.modules)}))
"""


def _analyze(*args: str) -> tuple[dict, list[dict]]:
    done = subprocess.run([sys.executable, "-c", _PROBE, "analyze", *args, "-q", "-f", "jsonl", "-o", "-"],
                          capture_output=True, text=True, timeout=120, check=False)
    *lines, probe = done.stdout.splitlines()
    return json.loads(probe), [json.loads(line) for line in lines]


@pytest.mark.parametrize("name", ["tls13_cert_expired", "net_reset_after_client_hello", "net_port_closed"])
def test_captures_without_a_certificate_in_the_clear_never_load_cryptography(name):
    probe, records = _analyze(str(CORPUS / f"{name}.pcap"))
    assert probe["loaded"] == []
    assert probe["code"] == 1 and records and all(r["outcome"] == "failed" for r in records)


def test_a_certificate_in_the_clear_loads_it_and_is_checked_against_the_default_roots():
    probe, records = _analyze(str(CORPUS / "tls12_cert_unknown_ca.pcap"))
    assert probe["loaded"] == ["analyzers.certchecks", "cryptography", "tlsparse.certificate_decode"]
    [record] = records
    # Judged against Mozilla's roots, loaded on the way: the corpus CA is not among them.
    assert record["cause"] == "cert_unknown_ca" and record["cert_subject"]


def test_a_key_log_loads_the_decryption():
    probe, records = _analyze(str(CORPUS / "tls13_cert_expired.pcap"), "--keylog",
                              str(CORPUS / "tls13_cert_expired.keylog"), "--ca-bundle", str(CORPUS / "ca.pem"))
    assert "tlsparse.decrypt" in probe["loaded"] and "cryptography" in probe["loaded"]
    [record] = records
    assert record["cause"] == "cert_expired" and record["cert_subject"]  # read from the decrypted flight


def test_the_default_trust_store_is_loaded_at_first_use_and_shared():
    from analyzers.certchecks import TrustStore
    from tlsflow.pipeline import FlowAnalyzer

    analyzer = FlowAnalyzer("x")
    assert analyzer._cert_cache._trust is None
    assert analyzer.trust is TrustStore.default() and analyzer._cert_cache._trust is analyzer.trust
    given = TrustStore.from_pem_file(CORPUS / "ca.pem")
    assert FlowAnalyzer("y", trust=given).trust is given


def test_records_are_the_same_with_the_default_store_given_or_loaded_on_the_way():
    """Every corpus capture analysed with the default store built up front (as before) and loaded on the way."""
    from analyzers.certchecks import TrustStore
    from tlsflow.pipeline import iter_flow_records

    for path in sorted(CORPUS.glob("*.pcap")):
        assert list(iter_flow_records(path)) == list(iter_flow_records(path, trust=TrustStore.default())), path
