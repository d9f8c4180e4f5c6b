"""`incomplete` connections say why. Those on which the client sent no byte: a TCP-only health check (connect,
close), and a client that waits for the server to speak first (an SMTP client on an implicit-TLS port) until the
server gives up; before, both had no word of why (the server's decode_error in reaction to the close even hid "no
TLS bytes"). Real captures of the corpus: a Python socket against openssl s_server, and against nginx with a 1 s
timeout. And handshakes the capture stops in the middle of: where their bytes stop (the corpus's capture that ends
after the ClientHello, and the public corpus's handshake-only captures)."""
from __future__ import annotations

import pytest

from analyzers.verdict import CLIENT_SENT_NOTHING_HINT, SERVER_WAITED_HINT
from tests.conftest import CORPUS, analysed_first_flow
from tlsflow.api import iter_flows


def test_a_tcp_only_health_check() -> None:
    record, _ = analysed_first_flow(CORPUS / "tcp_connect_only.pcap")
    assert (record["outcome"], record["failed_step"], record["cause"]) == ("incomplete", None, None)
    assert (record["alert"], record["alert_sender"]) == ("decode_error", "server")
    assert record["evidence"][0].startswith("frame 4: the client closed (FIN) ")
    assert record["evidence"][0].endswith(" ms after the connection opened, without sending a byte: no TLS "
                                          "handshake was tried")
    assert record["evidence"][1] == "frame 5: server alert decode_error in reaction"
    assert record["hint"] == CLIENT_SENT_NOTHING_HINT


def test_a_client_that_waits_for_the_server_to_speak() -> None:
    record, _ = analysed_first_flow(CORPUS / "tcp_client_waits_for_server.pcap")
    assert (record["outcome"], record["alert"]) == ("incomplete", None)
    assert record["evidence"] == [("frame 4: the server closed (FIN) 1.0 s after the connection opened, the client "
                                   "having sent nothing: it waited for a ClientHello that never came")]
    assert record["hint"] == SERVER_WAITED_HINT


@pytest.mark.parametrize("name", ["net_capture_ends_mid_handshake", "net_port_closed", "net_syn_unanswered",
                                  "net_split_client_hello_reset", "net_http_client_to_tls_server"])
def test_other_connections_keep_their_verdicts(name: str) -> None:
    record, _ = analysed_first_flow(CORPUS / f"{name}.pcap")
    assert record["hint"] not in (CLIENT_SENT_NOTHING_HINT, SERVER_WAITED_HINT)
    assert not any("without sending a byte" in fact or "never came" in fact and "ClientHello that" in fact
                   for fact in record["evidence"] or [])


def test_a_capture_that_ends_after_the_client_hello() -> None:
    record, _ = analysed_first_flow(CORPUS / "net_capture_ends_mid_handshake.pcap")
    assert record["outcome"] == "incomplete"
    assert record["evidence"] == ["frame 4: ClientHello", ("no TLS bytes of this connection in the capture after "
                                                           "the ClientHello: the server's answer is not in it")]


def test_captures_that_stop_inside_the_server_flight(public_dir) -> None:
    """JA4's test capture holds each handshake's first packets only: the server's flight is cut in a record."""
    records = [r for r in iter_flows(public_dir / "ja4/tls-handshake.pcapng", errors=[]) if r["outcome"] == "incomplete"]
    assert len(records) >= 20
    for record in records:
        assert record["evidence"][0].endswith(": ClientHello")
        assert "bytes stop inside a record" in record["evidence"][1] or "last bytes" in record["evidence"][1]
    assert records[1]["evidence"][1] == ("frame 9: the server's bytes stop inside a record (1,279 of its 4,317 bytes): "
                                         "the rest is not in the capture")
