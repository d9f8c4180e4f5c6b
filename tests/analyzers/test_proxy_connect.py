"""A client behind an HTTP proxy: its leg to the proxy carries a CONNECT exchange in plain text, then TLS. When the
proxy opens the tunnel, the handshake after the prelude is judged as any other; when it refuses (407: credentials
wanted, 403: policy, 502: cannot reach the server), no TLS began and the verdict says what the proxy said. Before,
a refusal read as "a plain-text service on a TLS port". Real captures of the corpus: curl --proxy through a Python
CONNECT proxy to openssl s_server, and to a proxy that answers 407."""
from __future__ import annotations

import dataclasses

import pytest

from analyzers.summary import new_summary
from analyzers.verdict import _PROXY_HINTS, decide
from tests.conftest import CORPUS, analysed_first_flow
from tlsparse import NotTlsSeen, Sender


def test_a_tunnel_the_proxy_opened_is_followed_to_its_handshake() -> None:
    record, _ = analysed_first_flow(CORPUS / "net_proxy_connect.pcap")
    assert (record["outcome"], record["version"], record["sni"]) == ("established", "TLS 1.3", "server.tlsflow.test")


def test_a_refused_connect_says_what_the_proxy_wants() -> None:
    record, _ = analysed_first_flow(CORPUS / "net_proxy_connect_refused.pcap")
    assert record["outcome"] == "not_tls"
    assert record["evidence"][0].endswith(": the HTTP proxy refused the tunnel the client asked for (CONNECT) with "
                                          "status 407: no TLS began")
    assert record["hint"] == _PROXY_HINTS[407]


@pytest.mark.parametrize(("status", "hint_key"), [(403, 403), (502, 502), (503, 500), (418, 400)])
def test_other_statuses(status: int, hint_key: int) -> None:
    """The same capture with the proxy's status line changed."""
    _, analyzer = analysed_first_flow(CORPUS / "net_proxy_connect_refused.pcap")
    events = [dataclasses.replace(e, preview=b"HTTP/1.1 %d Xxxx" % status)
              if isinstance(e, NotTlsSeen) and e.sender is Sender.SERVER else e for e in analyzer.kept_events]
    summary = new_summary()
    summary.add_all(events)
    verdict = decide(summary, analyzer.kept_tcp)
    assert f"with status {status}: no TLS began" in verdict.evidence[0]
    assert verdict.hint == _PROXY_HINTS[hint_key]


def test_plain_text_that_is_no_proxy_keeps_its_hint() -> None:
    record, _ = analysed_first_flow(CORPUS / "net_http_client_to_tls_server.pcap")
    assert record["hint"] not in _PROXY_HINTS.values()
    assert not any("proxy" in fact for fact in record["evidence"])
