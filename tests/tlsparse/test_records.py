"""The record layer: headers, every content type, several records per segment and records split across
segments, caps, resynchronisation, SSLv2 framing, the encryption switch. Annotated hand-built bytes (the record
layer has no content worth a real capture; whole connections are in test_connection.py)."""
from __future__ import annotations

import pytest
from conftest import feed, handshake_msg, record, three_ways

from tlsparse import (
    AlertSeen,
    ApplicationDataSeen,
    EncryptedRecordSeen,
    GapSeen,
    HandshakeSeen,
    HeartbeatSeen,
    ParseAnomaly,
    RecordSeen,
    ResyncSeen,
    Sender,
    Sslv2RecordSeen,
    TlsConnection,
    UnknownRecordSeen,
)

C, S = Sender.CLIENT, Sender.SERVER
DONE = record(22, handshake_msg(14, b""))  # a ServerHelloDone: the smallest valid handshake record


def kinds(events) -> list[str]:
    return [type(e).__name__ for e in events]


def names(events) -> list[str]:
    return [e.name for e in events if isinstance(e, ParseAnomaly)]


@pytest.mark.parametrize("version", [0x0300, 0x0301, 0x0302, 0x0303, 0x0304])
def test_record_versions_accepted(version: int) -> None:
    events = three_ways(record(22, handshake_msg(14, b""), version=version), S)
    assert isinstance(events[0], RecordSeen) and events[0].version == version and events[0].length == 4
    assert kinds(events) == ["RecordSeen", "HandshakeSeen"]


def test_every_content_type_in_plaintext() -> None:
    data = (record(20, b"\x01")  # change_cipher_spec
            + record(21, b"\x01\x00")  # alert: warning close_notify (before CCS took effect? no: after it)
            + record(24, b"\x01\x00\x10" + b"\x00" * 16)  # heartbeat request
            + record(25, b"??"))  # unassigned content type
    events = three_ways(DONE + record(23, b"early app data") + data, C)
    assert kinds(events) == ["RecordSeen", "HandshakeSeen", "RecordSeen", "ApplicationDataSeen",
                             "RecordSeen", "ChangeCipherSpecSeen",
                             "RecordSeen", "AlertSeen",  # after CCS: encrypted in TLS <= 1.2
                             "RecordSeen", "HeartbeatSeen", "RecordSeen", "UnknownRecordSeen"]
    alert = next(e for e in events if isinstance(e, AlertSeen))
    assert alert.encrypted and alert.length == 2 and alert.level is None
    assert next(e for e in events if isinstance(e, ApplicationDataSeen)).length == len(b"early app data")
    assert next(e for e in events if isinstance(e, HeartbeatSeen)).encrypted
    assert next(e for e in events if isinstance(e, UnknownRecordSeen)).content_type == 25


def test_plaintext_alerts() -> None:
    events = three_ways(record(21, b"\x02\x28") + record(21, b"\x01\x00\x02\x0a") + record(21, b"\x02"), S)
    alerts = [(e.level, e.description, e.encrypted) for e in events if isinstance(e, AlertSeen)]
    # fatal handshake_failure; two alerts in one record; an odd-length one cannot be read
    assert alerts == [(2, 40, False), (1, 0, False), (2, 10, False), (None, None, True)]
    assert names(events) == ["bad_alert"]


def test_bad_change_cipher_spec_body() -> None:
    events = three_ways(record(20, b"\x02"), C)
    assert kinds(events)[:2] == ["RecordSeen", "ChangeCipherSpecSeen"] and names(events) == ["bad_change_cipher_spec"]


def test_tls12_encryption_switch_and_handshake_phase() -> None:
    conn = TlsConnection()
    events = feed(conn, [(C, record(20, b"\x01") + record(22, b"\x00" * 40) + record(23, b"\x00" * 30)
                          + record(21, b"\x00" * 26))])
    assert conn.encrypted(C) and not conn.encrypted(S)
    enc = [(e.content_type, e.handshake_phase) for e in events if isinstance(e, EncryptedRecordSeen)]
    assert enc == [(22, True), (23, False)]
    alert = events[-1]
    assert isinstance(alert, AlertSeen) and alert.encrypted and alert.length == 26


def test_several_records_per_segment_and_split_records() -> None:
    data = DONE * 3
    conn = TlsConnection()
    events = conn.receive(S, data[:7], 1, 1.0)
    assert events == []
    events = conn.receive(S, data[7:20], 2, 2.0)
    assert [(type(e).__name__, e.frame, e.offset) for e in events] == [
        ("RecordSeen", 2, 0), ("HandshakeSeen", 2, 0), ("RecordSeen", 2, 9), ("HandshakeSeen", 2, 9)]
    events = conn.receive(S, data[20:], 3, 3.0)
    assert [(type(e).__name__, e.frame, e.offset) for e in events] == [("RecordSeen", 3, 18), ("HandshakeSeen", 3, 18)]


def test_long_records_are_skipped_without_buffering() -> None:
    conn = TlsConnection()
    feed(conn, [(C, record(20, b"\x01"))])
    big = record(23, b"\x00" * 16384)
    events = []
    for i in range(0, len(big), 100):
        events += conn.receive(C, big[i:i + 100], i, float(i))
        assert conn.buffer_sizes(C) == (0, 0)
    assert kinds(events) == ["RecordSeen", "EncryptedRecordSeen"] and events[0].frame == len(big) // 100 * 100


def test_record_too_long_reported_but_followed_within_hard_cap() -> None:
    body = b"\x00" * (2**14 + 300)  # over 2^14+256, under the 2^14+2048 hard cap
    events = three_ways(record(23, body) + DONE, S)
    assert kinds(events) == ["RecordSeen", "ParseAnomaly", "ApplicationDataSeen", "RecordSeen", "HandshakeSeen"]
    assert names(events) == ["record_too_long"]


def test_record_over_hard_cap_resyncs() -> None:
    events = three_ways(DONE + b"\x17\x03\x03\xff\xff" + b"\x00" * 50 + DONE, S)
    assert kinds(events) == ["RecordSeen", "HandshakeSeen", "ParseAnomaly", "ResyncSeen", "RecordSeen",
                             "HandshakeSeen"]
    assert names(events) == ["record_too_long"]
    resync = next(e for e in events if isinstance(e, ResyncSeen))
    assert resync.offset == 9 + 55 and resync.skipped == 55


@pytest.mark.parametrize("header", [b"\x16\x04\x03\x00\x04", b"\x16\x03\x05\x00\x04", b"\x16\x02\x00\x00\x04"])
def test_implausible_versions_are_bad_headers(header: bytes) -> None:
    events = three_ways(DONE + header + b"\x0e\x00\x00\x00" + DONE, S)
    assert names(events) == ["bad_record_header"]
    assert [e.offset for e in events if isinstance(e, HandshakeSeen)] == [0, 18]


def test_resync_rejects_a_candidate_whose_successor_is_implausible() -> None:
    # After a gap: "\x17\x03\x03\x00\x02" looks like a header, but 2 bytes on there is no second header;
    # the real record follows.
    conn = TlsConnection()
    conn.receive(S, DONE, 1, 1.0)
    events = conn.receive_gap(S, 100, 2, 2.0)
    events += conn.receive(S, b"xx\x17\x03\x03\x00\x02ab\xff\xff\xff\xff\xff" + DONE, 3, 3.0)
    assert kinds(events) == ["GapSeen", "ResyncSeen", "RecordSeen", "HandshakeSeen"]
    assert events[1].skipped == 14 and events[1].offset == 9 + 100 + 14


def test_gap_at_stream_start_resyncs_instead_of_not_tls() -> None:
    conn = TlsConnection()
    events = conn.receive_gap(C, 10, 1, 1.0) + conn.receive(C, b"junk" + DONE, 2, 2.0)
    assert kinds(events) == ["GapSeen", "ResyncSeen", "RecordSeen", "HandshakeSeen"]
    assert isinstance(events[0], GapSeen) and events[0].offset == 0 and events[1].skipped == 4


def test_gap_drops_a_partial_handshake_message() -> None:
    msg = handshake_msg(11, b"\x00" * 200)
    conn = TlsConnection()
    events = conn.receive(S, record(22, msg[:100]), 1, 1.0)
    events += conn.receive_gap(S, 105, 2, 2.0)  # the second record is lost
    events += conn.receive(S, DONE, 3, 3.0)
    assert [e.msg_type for e in events if isinstance(e, HandshakeSeen)] == [14]
    assert conn.buffer_sizes(S) == (0, 0)


def test_handshake_record_over_buffer_cap() -> None:
    events = three_ways(record(22, handshake_msg(11, b"\x00" * 300)) + DONE, S, max_buffer=100)
    assert names(events) == ["record_not_buffered"]
    assert [e.msg_type for e in events if isinstance(e, HandshakeSeen)] == [14]


def test_sslv2_exchange() -> None:
    hello = b"\x01\x00\x02\x00\x03\x00\x00\x00\x10" + b"\x01\x00\x80" + b"C" * 16  # CLIENT-HELLO, SSL 2.0
    server_hello = b"\x04\x00\x01\x00\x02" + b"\x00\x00\x00\x00\x00\x00" + b"\x00" * 4  # SERVER-HELLO
    master_key = b"\x02\x01\x00\x80" + b"\x00" * 10  # CLIENT-MASTER-KEY
    finished = b"\x5a" * 20  # encrypted CLIENT-FINISHED

    def v2(body: bytes) -> bytes:
        return bytes([0x80 | (len(body) >> 8), len(body) & 0xFF]) + body

    conn = TlsConnection()
    events = feed(conn, [(C, v2(hello)), (S, v2(server_hello)), (C, v2(master_key) + v2(finished))])
    assert kinds(events) == ["RecordSeen", "HandshakeSeen", "Sslv2RecordSeen", "Sslv2RecordSeen",
                             "Sslv2RecordSeen"]
    assert [e.msg_type for e in events if isinstance(e, Sslv2RecordSeen)] == [4, 2, None]
    assert conn.version == 0x0002 and conn.client_hello.sslv2 and conn.client_hello.cipher_suites == ()


def test_sslv2_hello_then_tls_records() -> None:
    """Old clients: an SSLv2-compatible ClientHello, then TLS records on the same stream."""
    hello = b"\x01\x03\x01\x00\x03\x00\x00\x00\x10" + b"\x00\x00\x2f" + b"C" * 16
    data = bytes([0x80, len(hello)]) + hello + record(22, handshake_msg(16, b"\x00\x02ab"), version=0x0301)
    events = three_ways(data, C)
    assert [e.msg_type for e in events if isinstance(e, HandshakeSeen)] == [1, 16]


def test_tls13_early_data_is_encrypted() -> None:
    ext = b"\x00\x2b\x00\x03\x02\x03\x04" + b"\x00\x2a\x00\x00"  # supported_versions [1.3], early_data
    body = b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + len(ext).to_bytes(2, "big") + ext
    conn = TlsConnection()
    events = feed(conn, [(C, record(22, handshake_msg(1, body)) + record(20, b"\x01") + record(23, b"\x00" * 50))])
    assert kinds(events)[-3:] == ["ChangeCipherSpecSeen", "RecordSeen", "EncryptedRecordSeen"]
    assert events[-1].handshake_phase and not conn.encrypted(C)  # 0-RTT does not mean the handshake is done
