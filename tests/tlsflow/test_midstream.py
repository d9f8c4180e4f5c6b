"""Captures that begin after some of their connections did (tcpdump started on a busy server), and connections the
flow table had to let go of: their bytes start inside a TLS record, which must not make them "not TLS".

Before, the first bytes of such a stream were judged as a stream's start: 34 of the 48 connections in progress
when a bench capture was cut were reported `not_tls`, confidence `certain`, with a hint to check the port.
"""
from __future__ import annotations

import functools
import struct
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tlsflow import pipeline
from tlsflow.pipeline import iter_flow_records
from tlsflow.tcp import TcpReassembler
from tlsparse import TlsConnection
from tlsparse.connection import MAX_PRELUDE
from tlsparse.events import MidstreamJoinSeen, NotTlsSeen, RecordSeen, Sender

from .pcap_edit import cut, records

CLIENT, SERVER = Sender.CLIENT, Sender.SERVER
SYN, ACK = 0x02, 0x10
MIDSTREAM = "no SYN: the connection began before the capture"


def _first_flags(path: Path) -> dict[frozenset[tuple[bytes, int]], int]:
    """Connection (Ethernet/IPv4/TCP, by its two ends) -> the TCP flags of its first packet in the file."""
    first: dict[frozenset[tuple[bytes, int]], int] = {}
    for record in records(path)[1]:
        frame = record[16:]
        ihl = (frame[14] & 15) * 4
        sport, dport = struct.unpack_from("!HH", frame, 14 + ihl)
        first.setdefault(frozenset({(frame[26:30], sport), (frame[30:34], dport)}), frame[14 + ihl + 13])
    return first


def _key(record: dict) -> frozenset[tuple[bytes, int]]:
    def side(text: str) -> tuple[bytes, int]:
        host, port = text.rsplit(":", 1)
        return bytes(int(part) for part in host.split(".")), int(port)

    return frozenset({side(record["client"]), side(record["server"])})


def test_capture_started_after_the_handshake_real_tcpdump(corpus_dir: Path, tmp_path: Path) -> None:
    """curl and Python's ssl server, recorded with tcpdump: the capture cut after the handshake holds only
    application data and the close, which is TLS, joined mid-stream (not `not_tls`)."""
    source = corpus_dir / "tls12_established_curl_python.pcap"
    [whole] = iter_flow_records(source)
    assert whole["outcome"] == "established"
    [joined] = iter_flow_records(cut(source, 11, tmp_path / "after_handshake.pcap"))
    assert joined["outcome"] == "incomplete"
    assert joined["cause"] is None and joined["hint"] is None
    assert joined["evidence"][0].startswith(MIDSTREAM)
    assert any("TLS records from here on" in line for line in joined["evidence"][1:])
    assert (joined["client"], joined["server"]) == (whole["client"], whole["server"])
    assert joined["warnings"] is None  # the bytes before the capture are not a gap on the wire


def test_capture_started_mid_connection_keeps_every_other_verdict(generated_capture: Path, tmp_path: Path) -> None:
    """A bench capture (real OpenSSL handshakes, 1460-byte segments, 48 connections at a time) cut a quarter of
    the way in: the connections in progress start inside records. None is `not_tls`; each that lost its SYN and
    its handshake says why it has no verdict; the connections that begin after the cut are judged as in the
    whole capture."""
    cut_path = cut(generated_capture, len(records(generated_capture)[1]) // 4, tmp_path / "cut.pcap")
    whole = {(_key(r), r["start"]): r for r in iter_flow_records(generated_capture)}
    first_flags = _first_flags(cut_path)
    assert sum(not flags & SYN for flags in first_flags.values()) >= 20
    joined_mid_record = 0
    for record in iter_flow_records(cut_path):
        assert record["outcome"] != "not_tls", record
        flags = first_flags[_key(record)]
        if not flags & SYN:
            # Joined after the ClientHello: what is left may still settle it (the server's flight and the
            # client's Finished: established); otherwise it says why there is no verdict.
            if record["outcome"] == "incomplete":
                assert record["evidence"][0].startswith(MIDSTREAM), record
                joined_mid_record += any("of a record under way" in line for line in record["evidence"])
            else:
                assert record["outcome"] == "established" and record["history"][0] != "C", record
            continue
        if flags & ACK:
            continue  # its SYN-ACK first: it began right before the cut, its ClientHello is in the capture
        same = whole[(_key(record), record["start"])]
        for field in ("outcome", "failed_step", "cause", "history", "version", "cipher", "sni", "warnings"):
            assert record[field] == same[field], (field, record, same)  # (evidence: its frame numbers moved)
        assert record["flow_id"] <= same["flow_id"]
    assert joined_mid_record >= 10


def test_evicted_connections_say_so(generated_capture: Path, monkeypatch) -> None:
    """A flow table of 8 for 48 connections at a time: the least recently active are let go (and say so), and
    their later packets make records joined mid-stream, never `not_tls`."""
    monkeypatch.setattr(pipeline, "TcpReassembler", functools.partial(TcpReassembler, max_flows=8))
    rows = list(iter_flow_records(generated_capture))
    evicted = [r for r in rows if r["evidence"] and any("flow table was full" in e for e in r["evidence"])]
    joined = [r for r in rows if r["evidence"] and any(e.startswith(MIDSTREAM) for e in r["evidence"])]
    assert len(evicted) >= 100 and len(joined) >= 100
    assert not [r for r in rows if r["outcome"] == "not_tls"]


# --- the parser on its own (hand-built bytes for the edges) ---------------------------------------------------

def _record(content_type: int, body: bytes) -> bytes:
    return struct.pack("!BHH", content_type, 0x0303, len(body)) + body


def test_join_inside_a_record_skips_to_the_next_header() -> None:
    tls = TlsConnection()
    tls.join_midstream(SERVER)
    tail = bytes(range(1, 200))  # the end of an encrypted record under way
    events = tls.receive(SERVER, tail + _record(23, b"\x99" * 40) + _record(23, b"\x98" * 30), 5, 1.0)
    joined = [e for e in events if isinstance(e, MidstreamJoinSeen)]
    assert [(e.offset, e.skipped, e.frame) for e in joined] == [(len(tail), len(tail), 5)]
    assert [e.offset for e in events if isinstance(e, RecordSeen)] == [len(tail), len(tail) + 45]
    assert not [e for e in events if isinstance(e, NotTlsSeen)]


def test_join_at_a_record_boundary_skips_nothing() -> None:
    tls = TlsConnection()
    tls.join_midstream(CLIENT)
    events = tls.receive(CLIENT, _record(23, b"\x01" * 64), 1, 1.0)
    assert [(e.skipped, e.offset) for e in events if isinstance(e, MidstreamJoinSeen)] == [(0, 0)]


def test_join_header_split_over_two_segments() -> None:
    tls = TlsConnection()
    tls.join_midstream(SERVER)
    data = b"\xaa" * 50 + _record(23, b"\x02" * 100)
    first = tls.receive(SERVER, data[:52], 1, 1.0)  # the header's first two bytes end this segment
    assert not [e for e in first if isinstance(e, (MidstreamJoinSeen, NotTlsSeen))]
    second = tls.receive(SERVER, data[52:], 2, 1.1)
    assert [(e.skipped, e.frame) for e in second if isinstance(e, MidstreamJoinSeen)] == [(50, 2)]


def test_no_header_within_the_bound_is_not_tls_once() -> None:
    """Binary bytes (not text: the text probe does not tell) without any record header for MAX_PRELUDE bytes."""
    tls = TlsConnection()
    tls.join_midstream(CLIENT)
    tls.join_midstream(SERVER)
    junk = bytes(range(0x80, 0x100)) * 8
    events = []
    for frame in range(1, MAX_PRELUDE // len(junk) + 3):
        events += tls.receive(CLIENT, junk, frame, float(frame))
        events += tls.receive(SERVER, junk, frame, float(frame))
    not_tls = [e for e in events if isinstance(e, NotTlsSeen)]
    assert sorted(e.sender.value for e in not_tls) == sorted([CLIENT.value, SERVER.value])
    assert all(e.offset > MAX_PRELUDE - 2 * len(junk) and e.preview in junk * 2 for e in not_tls)
    assert tls.given_up


def test_join_after_bytes_came_changes_nothing() -> None:
    tls = TlsConnection()
    assert tls.receive(CLIENT, b"SSH-2.0-OpenSSH_9.2\r\n", 1, 1.0)  # judged at its start: not TLS
    tls.join_midstream(CLIENT)
    assert not [e for e in tls.receive(CLIENT, _record(23, b"\x01" * 8), 2, 1.1)
                if isinstance(e, MidstreamJoinSeen)]


def test_explain_draws_where_the_records_were_picked_up(corpus_dir: Path, tmp_path: Path) -> None:
    import io

    from tlsflow.explain import explain_flow

    after = cut(corpus_dir / "tls12_established_curl_python.pcap", 11, tmp_path / "after_handshake.pcap")
    out = io.StringIO()
    explain_flow(str(after), 1, out)
    assert "[joined mid-stream: TLS records from here" in out.getvalue()
    assert "no SYN: the connection began before the capture" in out.getvalue()


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.tuples(st.booleans(), st.binary(max_size=300)), max_size=40),
       records=st.lists(st.tuples(st.sampled_from([20, 21, 22, 23, 24, 99]), st.binary(max_size=120)), max_size=6))
def test_joined_streams_never_raise_and_hold_little(chunks: list, records: list) -> None:
    """Hostile or random bytes after a mid-stream join, with real-looking records among them: the parser never
    raises, reports each direction as joined or not TLS at most once, and buffers no more than its bound."""
    tls = TlsConnection()
    tls.join_midstream(CLIENT)
    tls.join_midstream(SERVER)
    tail = b"".join(_record(ct, body) for ct, body in records)
    events = []
    for frame, (to_server, data) in enumerate([*chunks, (True, tail), (False, tail)], start=1):
        events += tls.receive(CLIENT if to_server else SERVER, data, frame, float(frame))
    for sender in (CLIENT, SERVER):
        mine = [e for e in events if e.sender is sender and isinstance(e, (MidstreamJoinSeen, NotTlsSeen))]
        assert len(mine) <= 1
    assert all(len(d.buf) <= tls.max_buffer for d in (tls._client, tls._server))


def test_plain_text_joined_mid_stream_is_still_not_tls(corpus_dir: Path, tmp_path: Path) -> None:
    """Real captures (curl to a TLS port, openssl s_client to an HTTP server and to an SSH banner) without their
    SYNs: plain text picked up mid-stream is not TLS, as the whole captures say, with the same cause."""
    for name in ("net_http_client_to_tls_server.pcap", "net_tls_client_to_http_server.pcap",
                 "net_tls_client_to_ssh_banner.pcap"):
        [whole] = iter_flow_records(corpus_dir / name)
        [joined] = iter_flow_records(cut(corpus_dir / name, 3, tmp_path / name))  # SYN, SYN-ACK, ACK gone
        assert (joined["outcome"], joined["cause"]) == (whole["outcome"], whole["cause"]), name
        assert "non-TLS bytes" in " ".join(joined["evidence"])


def test_text_probe_waits_for_enough_bytes_and_spares_binary() -> None:
    tls = TlsConnection()
    tls.join_midstream(CLIENT)
    tls.join_midstream(SERVER)
    assert tls.receive(CLIENT, b"EHLO mail.example\r\n", 1, 1.0) == []  # too short to tell yet
    events = tls.receive(CLIENT, b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n", 2, 1.1)
    [not_tls] = [e for e in events if isinstance(e, NotTlsSeen)]
    assert (not_tls.offset, not_tls.frame, not_tls.preview) == (0, 2, b"EHLO mail.exampl")
    binary = bytes(range(0x80, 0x80 + 100))  # no record header, not text: keeps looking (an encrypted record's end)
    assert not [e for e in tls.receive(SERVER, binary, 3, 1.2) if isinstance(e, NotTlsSeen)]
    events = tls.receive(SERVER, _record(23, b"\x01" * 30), 4, 1.3)
    assert [(e.skipped, e.frame) for e in events if isinstance(e, MidstreamJoinSeen)] == [(100, 4)]


def test_capture_started_during_transfers_takes_the_readers_fast_build(generated_capture: Path, tmp_path: Path
                                                                       ) -> None:
    """A capture cut a tenth of the way in, where no flow wants no more data for a while: once a connection joined
    in the middle carries data, the reader builds the packets of the commonest layout itself
    (`reassembler.MIDSTREAM_DATA`, an entry that keeps `lanes` from being empty), and the rows are those of every
    segment decoded and fed one by one."""
    from tests.tlsflow.test_parallel import _records_without_fast_path
    from tlsflow.capture import open_capture
    from tlsflow.tcp.reassembler import MIDSTREAM_DATA

    cut_path = cut(generated_capture, len(records(generated_capture)[1]) // 10, tmp_path / "cut.pcap")
    reassembler = TcpReassembler()
    with open_capture(cut_path) as cap:
        first = next(pkt for pkt in cap.packets() if pkt.payload and not pkt.flags & SYN)
    assert first.frame == 1
    reassembler.add(first)
    assert MIDSTREAM_DATA in reassembler.lanes
    fast = sorted(iter_flow_records(cut_path), key=lambda r: r["flow_id"])
    assert fast == _records_without_fast_path(cut_path)
