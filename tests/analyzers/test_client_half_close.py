"""A client that shuts down its sending side (FIN) right after its ClientHello, as a script piping a canned hello
into nc does: the server answers with its whole flight, then finds the stream ended where the client's next flight
should be. Before, that read as the server closing in the middle of the handshake (`server_certificate`); the
failure is the client's. Real captures of the corpus (Python ssl writing its ClientHello then shutdown(SHUT_WR), to
openssl s_server in TLS 1.3 and 1.2)."""
from __future__ import annotations

import dataclasses

import pytest

from analyzers.summary import new_summary
from analyzers.verdict import CLIENT_HALF_CLOSE_HINT, HANG_UP_SECONDS, decide
from tests.conftest import CORPUS, analysed_first_flow
from tlsparse import Sender

TLS13 = CORPUS / "net_client_half_close_after_hello.pcap"
TLS12 = CORPUS / "net_client_half_close_after_hello_tls12.pcap"


def test_tls13_the_client_could_not_send_its_finished() -> None:
    record, _ = analysed_first_flow(TLS13)
    assert (record["outcome"], record["failed_step"], record["cause"], record["confidence"]) == (
        "failed", "finished", "closed_without_alert", "certain")
    assert (record["alert"], record["alert_sender"]) == ("encrypted", "server")
    evidence = record["evidence"]
    assert evidence[0] == "frame 4: ClientHello"
    assert evidence[1].startswith("frame 6: client shut down its sending side (FIN) ")
    assert evidence[1].endswith("after its ClientHello, before any answer: it could send nothing more")
    assert evidence[2].startswith("frame 7: ServerHello TLS 1.3")
    assert evidence[3] == ("frame 9: server answered the end of the stream with one encrypted record of 19 bytes "
                           "(alert-sized)")
    assert evidence[4] == "frame 11: server closed (FIN)"
    assert record["hint"] == CLIENT_HALF_CLOSE_HINT
    assert record["version"] == "TLS 1.3" and record["sni"] == "server.tlsflow.test"


def test_tls12_the_client_could_not_send_its_key_exchange() -> None:
    record, _ = analysed_first_flow(TLS12)
    assert (record["outcome"], record["failed_step"], record["cause"]) == (
        "failed", "client_key_exchange", "closed_without_alert")
    assert (record["alert"], record["alert_sender"]) == ("decode_error", "server")
    assert "frame 9: server alert decode_error in reaction" in record["evidence"]
    assert record["hint"] == CLIENT_HALF_CLOSE_HINT


def _with_client_fin_at(path, delay: float, server_later: float = 0.0):
    """The capture's verdict with the client's FIN moved to `delay` seconds after its ClientHello, and the server's
    TLS records `server_later` seconds later than they came."""
    _, analyzer = analysed_first_flow(path)
    events = [dataclasses.replace(e, ts=e.ts + server_later) if e.sender is Sender.SERVER else e
              for e in analyzer.kept_events]
    summary = new_summary()
    summary.add_all(events)
    tcp = analyzer.kept_tcp
    fin_ts = summary.client_hellos[0].ts + delay
    return decide(summary, dataclasses.replace(tcp, client=dataclasses.replace(tcp.client, fin_ts=fin_ts)))


def test_a_client_fin_after_the_server_answered_is_not_a_half_close() -> None:
    """The server's answer came first (the FIN a second after the ServerHello): whatever happened is not this."""
    verdict = _with_client_fin_at(TLS13, 1.0)
    assert verdict.hint != CLIENT_HALF_CLOSE_HINT
    assert not any("shut down its sending side" in fact for fact in verdict.evidence)


def test_a_client_that_waited_before_closing_did_not_half_close() -> None:
    """The client closed HANG_UP_SECONDS or more after its hello and the server answered later still: a client
    that gave up on a slow server, not one that never meant to go on."""
    verdict = _with_client_fin_at(TLS13, HANG_UP_SECONDS + 0.1, server_later=HANG_UP_SECONDS + 0.5)
    assert verdict.hint != CLIENT_HALF_CLOSE_HINT
    moved_in = _with_client_fin_at(TLS13, HANG_UP_SECONDS - 0.1, server_later=HANG_UP_SECONDS + 0.5)
    assert moved_in.hint == CLIENT_HALF_CLOSE_HINT and moved_in.failed_step == "finished"


@pytest.mark.parametrize("name", ["tls13_established_plain", "tls12_established_plain", "net_closed_without_alert",
                                  "net_server_silent", "net_reset_after_client_hello"])
def test_other_captures_are_not_half_closes(name: str) -> None:
    record, _ = analysed_first_flow(CORPUS / f"{name}.pcap")
    assert record["hint"] != CLIENT_HALF_CLOSE_HINT
