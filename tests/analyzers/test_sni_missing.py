"""A client that sends no server name (SNI), as clients do when given an address, to a server that refuses such a
ClientHello with a bare handshake_failure (CDNs and servers of several sites need the name to pick a certificate).
Before, a broad modern offer refused so read as "the server accepts only weak or unusual suites". Real capture of the
corpus: curl to https://127.0.0.1 and a Python ssl server whose sni_callback refuses a hello without a name."""
from __future__ import annotations

from analyzers.verdict import NO_SNI_HINT
from tests.conftest import CORPUS, analysed_first_flow


def test_a_hello_without_a_name_refused_with_handshake_failure() -> None:
    record, _ = analysed_first_flow(CORPUS / "tls13_sni_missing_refused.pcap")
    assert (record["outcome"], record["failed_step"], record["cause"], record["confidence"]) == (
        "failed", "server_hello", "sni_unrecognized", "likely")
    assert (record["alert"], record["alert_sender"], record["sni"]) == ("handshake_failure", "server", None)
    assert ("the client sent no server name (SNI), as clients do when given an address instead of a host name"
            in record["evidence"])
    assert record["hint"] == NO_SNI_HINT
    assert "sni_missing" in record["warnings"]


def test_refusals_of_hellos_with_a_name_are_unchanged() -> None:
    for name, cause in (("tls12_weak_cipher_only", "weak_cipher_only"), ("tls12_no_common_cipher", "no_common_cipher"),
                        ("tls13_sni_unrecognized_python", "sni_unrecognized")):
        record, _ = analysed_first_flow(CORPUS / f"{name}.pcap")
        assert record["cause"] == cause, name
        assert record["hint"] != NO_SNI_HINT, name
