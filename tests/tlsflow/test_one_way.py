"""Captures that hold one direction of each connection only: a SPAN port that copies one way, one side of an
asymmetric route, a capture filter on one direction. Each corpus capture (real clients and servers on loopback)
is cut to the server's packets alone and to the client's alone, and judged against what really happened.

Before: seen from either side alone, 13 and 15 of the corpus's established TLS 1.2 connections were reported
`failed` (`alert_other`: the side's own encrypted close_notify taken for a refusal; the client's encrypted
Finished, whose ServerHello the capture lacked, read as a malformed plaintext message), and nothing said that half
of each connection was missing. On a busy link's capture seen one way (5,000 connections at once), 4,254
established connections were reported failed.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tlsflow.pipeline import iter_flow_records
from tlsparse import TlsConnection
from tlsparse.events import EncryptedRecordSeen, ParseAnomaly, Sender

from .pcap_edit import link_type, one_way, records


def _labels(corpus_dir: Path) -> dict[str, list[dict]]:
    by_file: dict[str, list[dict]] = {}
    for line in (corpus_dir / "labels.jsonl").read_text().splitlines():
        label = json.loads(line)
        if label["file"].endswith(".pcap") and link_type(corpus_dir / label["file"]) == 1:
            by_file.setdefault(label["file"], []).append(label)
    return by_file


@pytest.fixture(scope="module")
def one_way_rows(corpus_dir: Path, tmp_path_factory) -> list[tuple[str, dict, dict]]:
    """(the side whose packets were kept, the label, the record) for every labelled connection of the corpus."""
    from analyzers.certchecks import TrustStore

    trust = TrustStore.default().with_pem_file(str(corpus_dir / "ca.pem"))
    folder = tmp_path_factory.mktemp("one_way")
    rows = []
    for file, labels in _labels(corpus_dir).items():
        port = int(labels[0]["server"].rsplit(":", 1)[1])
        for kept, sent in (("server", True), ("client", False)):
            path = one_way(corpus_dir / file, folder / f"{kept}-{file}", port, sent=sent)
            by_client = {r["client"]: r for r in iter_flow_records(path, trust=trust)}
            rows += [(kept, label, by_client[label["client"]]) for label in labels if label["client"] in by_client]
    return rows


def _note(missing: str) -> str:
    return f"no packet from the {missing} in the capture"


def test_no_established_connection_fails_when_one_direction_is_missing(one_way_rows) -> None:
    established = [(kept, label, row) for kept, label, row in one_way_rows if label["outcome"] == "established"]
    assert len(established) >= 50  # both directions of ~27 connections
    for kept, label, row in established:
        assert row["outcome"] != "failed", (kept, label["scenario"], row["cause"], row["evidence"])
        missing = "client" if kept == "server" else "server"
        assert any(e.startswith(_note(missing)) for e in row["evidence"]), (kept, label["scenario"], row["evidence"])
        if row["outcome"] == "incomplete":
            assert "one direction" in row["hint"]


def test_the_missing_direction_is_no_gap_and_accepts_nothing(one_way_rows) -> None:
    """The bytes of the missing direction are not a gap in its stream (the server acknowledged a ClientHello the
    capture lacks: before, 81 rows warned `resync_after_gap`), and a client whose direction is missing accepted
    no certificate unless the server's side shows the handshake done."""
    for kept, label, row in one_way_rows:
        warnings = row["warnings"] or []
        assert "resync_after_gap" not in warnings, (kept, label["scenario"])
        if kept == "server" and row["outcome"] != "established":
            assert not [w for w in warnings if w.endswith("_accepted")], (label["scenario"], warnings)


def test_tls12_handshakes_are_established_from_the_server_direction_alone(one_way_rows) -> None:
    """The server's Finished follows the client's in a full handshake; in an abbreviated one, the server's
    application data waits for it: every established TLS 1.2 connection of the corpus, resumed ones included."""
    tls12 = [(label, row) for kept, label, row in one_way_rows
             if kept == "server" and label["outcome"] == "established" and label["version"] == "TLS 1.2"]
    assert len(tls12) >= 15
    assert any(label["resumed"] for label, _ in tls12)
    for label, row in tls12:
        assert (row["outcome"], row["confidence"]) == ("established", "likely"), (label["scenario"], row["evidence"])
        assert any("server Finished" in e or "server application data" in e for e in row["evidence"])



def test_handshakes_are_established_from_the_client_direction_when_a_response_came(one_way_rows) -> None:
    """The client's direction alone (no ServerHello): after its Finished the client acknowledged more of the
    server's bytes than tickets, a Finished and an alert (a response, which follows the server's acceptance of the
    client's Finished). Smaller responses stay incomplete; a refused client never gets that far. (TLS 1.2 only so
    far: without the ServerHello a TLS 1.3 client's Finished is not told from its data.)"""
    client_side = [(label, row) for kept, label, row in one_way_rows if kept == "client"]
    established = [(label, row) for label, row in client_side if row["outcome"] == "established"]
    assert len(established) >= 5
    for label, row in established:
        assert label["outcome"] == "established", label["scenario"]
        assert row["confidence"] == "likely"
        assert any("bytes of the server's: a response" in e for e in row["evidence"])


def test_tls13_handshakes_are_established_from_the_server_direction_when_the_client_sent_data(one_way_rows) -> None:
    """TLS 1.3 without keys, the server's direction alone: its acknowledgements show the client's second flight,
    then data from the client, answered by a record larger than an alert. A session ticket alone is not enough:
    curl finishes the handshake, then refuses the certificate's host name and closes (the full capture's
    verdict is that failure), which from the server's side looks like a finished handshake and no request."""
    rows = {(kept, label["scenario"]): (label, row) for kept, label, row in one_way_rows}
    tls13 = [(label, row) for (kept, _), (label, row) in rows.items()
             if kept == "server" and label["outcome"] == "established" and label["version"] == "TLS 1.3"]
    established = [row for _, row in tls13 if row["outcome"] == "established"]
    assert len(established) >= 4
    for row in established:
        assert row["confidence"] == "likely"
        assert any("acknowledged the client's second flight" in e for e in row["evidence"])
    assert all(row["outcome"] == "incomplete" for _, row in tls13 if row["outcome"] != "established")
    _, hung_up = rows[("server", "tls13_cert_hostname_mismatch")]
    assert hung_up["outcome"] == "incomplete"


def test_a_refusal_the_captured_side_sent_is_still_a_failure(one_way_rows) -> None:
    """What the captured side said is still judged: the server's handshake_failure to a ClientHello the capture
    lacks, the client's unknown_ca alert to a certificate it lacks (at the certificate step)."""
    rows = {(kept, label["scenario"]): row for kept, label, row in one_way_rows}
    refused = rows[("server", "tls12_no_common_cipher")]
    assert (refused["outcome"], refused["failed_step"], refused["alert"], refused["alert_sender"]) == \
        ("failed", "server_hello", "handshake_failure", "server")
    for scenario in ("tls12_cert_unknown_ca", "tls13_cert_unknown_ca"):
        row = rows[("client", scenario)]
        assert (row["outcome"], row["failed_step"], row["cause"], row["alert_sender"]) == \
            ("failed", "server_certificate", "cert_unknown_ca", "client"), scenario


def test_failures_seen_one_way_name_no_cause_the_full_capture_contradicts(one_way_rows) -> None:
    """One way, a failed connection may lose its detail (incomplete, or a vaguer cause), never turn into a success,
    and a failure found one way happened."""
    for kept, label, row in one_way_rows:
        if label["outcome"] == "failed":
            assert row["outcome"] != "established", (kept, label["scenario"])
        if row["outcome"] == "failed":
            assert label["outcome"] == "failed", (kept, label["scenario"], row["cause"])


def test_client_finished_of_an_abbreviated_handshake_without_its_server_hello(corpus_dir: Path,
                                                                              tmp_path: Path) -> None:
    """A resumed TLS 1.2 session seen from the client's direction: ClientHello (offering TLS 1.3 too),
    ChangeCipherSpec, then its encrypted Finished. Without the ServerHello the parser took that CCS for TLS 1.3's
    compatibility one and the Finished for a malformed plaintext message."""
    port = int(_labels(corpus_dir)["tls12_resumed_ticket.pcap"][0]["server"].rsplit(":", 1)[1])
    path = one_way(corpus_dir / "tls12_resumed_ticket.pcap", tmp_path / "client.pcap", port, sent=False)
    _header, frames = records(path)
    streams: dict[bytes, bytearray] = {}
    for record in frames:  # (loopback, nothing lost or reordered: the payloads in order are each stream)
        frame = record[16:]
        ihl = (frame[14] & 15) * 4
        data = frame[14 + ihl + (frame[14 + ihl + 12] >> 4) * 4:14 + int.from_bytes(frame[16:18], "big")]
        streams.setdefault(frame[14 + ihl:14 + ihl + 2], bytearray()).extend(data)
    resumed = [bytes(s) for s in streams.values() if s[:1] == b"\x16"][-1]  # the second connection resumes
    events = TlsConnection().receive(Sender.CLIENT, resumed, 1, 0.0)
    assert not [e for e in events if isinstance(e, ParseAnomaly)]
    finished = [e for e in events if isinstance(e, EncryptedRecordSeen) and e.content_type == 22]
    assert len(finished) == 1 and finished[0].handshake_phase


def test_explain_shows_the_missing_direction_as_not_captured(corpus_dir: Path, tmp_path: Path) -> None:
    """`tlsflow explain` on the server's direction alone: the client's bytes the server acknowledged are not drawn
    as a loss, and the verdict's evidence names the missing direction."""
    import io

    from tlsflow.explain import explain_flow

    port = int(_labels(corpus_dir)["tls13_established_plain.pcap"][0]["server"].rsplit(":", 1)[1])
    path = one_way(corpus_dir / "tls13_established_plain.pcap", tmp_path / "server.pcap", port, sent=True)
    out = io.StringIO()
    explain_flow(str(path), 1, out)
    text = out.getvalue()
    assert "469 bytes, not captured]" in text
    assert "missing from the capture" not in text
    assert "only the server's direction was captured" in text
    assert "outcome: established" in text


def test_a_connection_seen_one_way_closes_once_the_captured_side_has_sent_its_fin(corpus_dir: Path,
                                                                                  tmp_path: Path) -> None:
    """The acknowledgement of a FIN comes from the missing direction, so a connection seen one way never saw both
    FINs acknowledged: it stayed open for the idle timeout (five minutes of capture time), and a busy link seen
    one way held every connection of those five minutes (5,000 at once: 17,710 open 25 s in, 388 MiB). Now it
    lingers, as a connection does after the last ACK of its close, once the captured side has sent its FIN and
    acknowledged what can be the peer's close (a few bytes more than its acknowledgement before): every such
    corpus connection cut one way is closed ("closed", not "idle") once the linger has passed since its last
    packet. One whose captured side acknowledged no such thing (the peer may still be sending) stays open."""
    from tlsflow.capture import open_capture
    from tlsflow.tcp import ConnectionClosed, TcpReassembler

    closing = staying = 0
    for file, labels in _labels(corpus_dir).items():
        port = int(labels[0]["server"].rsplit(":", 1)[1])
        for sent in (True, False):
            path = one_way(corpus_dir / file, tmp_path / f"{sent}-{file}", port, sent=sent)
            reassembler = TcpReassembler()
            fin_seen: dict[int, object] = {}
            last_ts = 0.0
            with open_capture(path) as cap:
                for pkt in cap.packets():
                    for event in reassembler.add(pkt):
                        if isinstance(event, ConnectionClosed):
                            fin_seen.pop(event.conn.flow_id, None)
                    if pkt.flags & 0x01:
                        conn = reassembler.connection(pkt.src, pkt.sport, pkt.dst, pkt.dport)
                        if conn is not None:
                            fin_seen[conn.flow_id] = conn
                    last_ts = pkt.ts
            # (The corpus's connections last seconds: each is past its linger once its capture's is.)
            closed = {e.conn.flow_id: e.conn.close_reason
                      for e in reassembler.expire(last_ts + reassembler.linger_timeout + 1)
                      if isinstance(e, ConnectionClosed)}
            for flow_id, conn in fin_seen.items():
                sides = (conn.client, conn.server)
                if any(side.packets == 0 for side in sides):  # one direction: the other side's packets missing
                    captured = next(side for side in sides if side.packets)
                    if captured.rst_frame is not None:
                        continue  # (a RST closes it anyway)
                    expected = "closed" if captured.unseen_peer_close else None
                    assert closed.get(flow_id) == expected, (file, sent, flow_id)
                    closing += expected is not None
                    staying += expected is None
    assert closing >= 120 and staying >= 5
