"""Whole connections made live with Python's ssl (real OpenSSL bytes, memory BIOs, no network): the event
sequence, the encryption state, and the same result whole, byte by byte and in odd splits."""
from __future__ import annotations

import ssl

import pytest
from conftest import feed, parse_all, run_tls

from tlsparse import (
    AlertSeen,
    Certificate,
    ChangeCipherSpecSeen,
    ClientHello,
    EncryptedRecordSeen,
    GapSeen,
    HandshakeSeen,
    NotTlsSeen,
    ParseAnomaly,
    RecordSeen,
    ResyncSeen,
    Sender,
    ServerHello,
    ServerKeyExchange,
    TlsConnection,
)
from tlsparse import messages as m

C, S = Sender.CLIENT, Sender.SERVER


def handshake_types(events, sender=None) -> list[int]:
    return [e.msg_type for e in events if isinstance(e, HandshakeSeen) and (sender is None or e.sender is sender)]


def no_anomalies(events) -> bool:
    return not [e for e in events if isinstance(e, ParseAnomaly)]


def test_tls12_full_handshake(tls_contexts) -> None:
    client, server = tls_contexts(version=ssl.TLSVersion.TLSv1_2, alpn=["h2", "http/1.1"], server_alpn=["h2"])
    t = run_tls(client, server)
    assert t.client_error is None and t.server_error is None
    conn, events = parse_all(t.chunks)
    assert no_anomalies(events)
    assert conn.version == 0x0303
    assert handshake_types(events, C) == [m.CLIENT_HELLO, m.CLIENT_KEY_EXCHANGE]
    assert handshake_types(events, S) == [m.SERVER_HELLO, m.CERTIFICATE, m.SERVER_KEY_EXCHANGE,
                                          m.SERVER_HELLO_DONE, m.NEW_SESSION_TICKET]
    ch = conn.client_hello
    assert ch.sni == "localhost" and ch.alpn == ("h2", "http/1.1")
    assert conn.server_hello.alpn == ("h2",)
    ske = next(e.message for e in events if isinstance(e, HandshakeSeen) and e.msg_type == m.SERVER_KEY_EXCHANGE)
    assert isinstance(ske, ServerKeyExchange) and ske.kind == "ecdhe" and ske.curve is not None
    assert ske.signature_scheme is not None and ske.signature
    cert = next(e.message for e in events if isinstance(e, HandshakeSeen) and e.msg_type == m.CERTIFICATE)
    assert isinstance(cert, Certificate) and len(cert.certificates) == 2 and cert.request_context is None
    # Both sides sent CCS, then an encrypted Finished (handshake phase), then encrypted application data.
    for side in (C, S):
        assert conn.encrypted(side)
        ccs = [e for e in events if isinstance(e, ChangeCipherSpecSeen) and e.sender is side]
        assert len(ccs) == 1
        enc = [e for e in events if isinstance(e, EncryptedRecordSeen) and e.sender is side]
        assert [(e.content_type, e.handshake_phase) for e in enc][:2] == [(22, True), (23, False)]


def test_tls13_handshake_encryption_rules(tls_contexts) -> None:
    client, server = tls_contexts(version=ssl.TLSVersion.TLSv1_3, alpn=["h2"], server_alpn=["h2"])
    t = run_tls(client, server)
    assert t.client_error is None and t.server_error is None
    conn, events = parse_all(t.chunks)
    assert no_anomalies(events)
    assert conn.version == 0x0304 and conn.encrypted(S) and conn.encrypted(C)
    # Only the hellos are readable; everything else is outer type 23.
    assert handshake_types(events) == [m.CLIENT_HELLO, m.SERVER_HELLO]
    server_enc = [e for e in events if isinstance(e, EncryptedRecordSeen) and e.sender is S]
    client_enc = [e for e in events if isinstance(e, EncryptedRecordSeen) and e.sender is C]
    assert all(e.content_type == 23 for e in server_enc + client_enc)
    assert client_enc[0].handshake_phase and not any(e.handshake_phase for e in client_enc[1:])
    # The server's first flight precedes the client's Finished; its tickets and data come after it.
    first_client_enc = events.index(client_enc[0])
    assert all(e.handshake_phase for e in server_enc if events.index(e) < first_client_enc)
    assert not any(e.handshake_phase for e in server_enc if events.index(e) > first_client_enc)
    # Python's client sends the middlebox-compatibility CCS in plaintext; it must not change anything.
    assert any(isinstance(e, ChangeCipherSpecSeen) and e.sender is C for e in events)


def test_tls13_hello_retry_request(tls_contexts) -> None:
    # The server only accepts secp384r1, the client's first key share is x25519: the server asks again.
    client, server = tls_contexts(version=ssl.TLSVersion.TLSv1_3, server_curve="secp384r1")
    t = run_tls(client, server)
    assert t.client_error is None and t.server_error is None
    conn, events = parse_all(t.chunks)
    assert no_anomalies(events)
    types = handshake_types(events)
    assert types == [m.CLIENT_HELLO, m.HELLO_RETRY_REQUEST, m.CLIENT_HELLO, m.SERVER_HELLO]
    assert conn.hello_retry_request is not None and conn.hello_retry_request.key_share_group == 24
    assert conn.server_hello.key_share_group == 24 and conn.version == 0x0304
    assert conn.client_hello.key_share_groups == (24,)


def test_tls12_client_certificate(tls_contexts) -> None:
    client, server = tls_contexts(version=ssl.TLSVersion.TLSv1_2, client_cert=True, require_client_cert=True)
    t = run_tls(client, server)
    assert t.client_error is None and t.server_error is None
    _conn, events = parse_all(t.chunks)
    assert no_anomalies(events)
    assert handshake_types(events, C) == [m.CLIENT_HELLO, m.CERTIFICATE, m.CLIENT_KEY_EXCHANGE,
                                          m.CERTIFICATE_VERIFY]
    assert m.CERTIFICATE_REQUEST in handshake_types(events, S)
    cr = next(e.message for e in events if isinstance(e, HandshakeSeen) and e.msg_type == m.CERTIFICATE_REQUEST)
    # Python cannot set OpenSSL's client CA list, so the authorities list is empty on the wire.
    assert cr.signature_algorithms and cr.certificate_types == (1, 2, 64) and cr.certificate_authorities == ()
    cv = next(e.message for e in events if isinstance(e, HandshakeSeen) and e.msg_type == m.CERTIFICATE_VERIFY)
    assert cv.signature_scheme == 0x0403 and cv.signature  # ecdsa_secp256r1_sha256 with the test client key


def test_tls12_client_rejects_certificate_plaintext_alert(tls_contexts) -> None:
    client, server = tls_contexts(version=ssl.TLSVersion.TLSv1_2, trust_other_ca=True)
    t = run_tls(client, server)
    assert t.client_error is not None
    _conn, events = parse_all(t.chunks)
    alerts = [e for e in events if isinstance(e, AlertSeen)]
    assert [(a.sender, a.level, a.description, a.encrypted) for a in alerts] == [(C, 2, 48, False)]  # unknown_ca


def test_tls13_client_rejects_certificate_alert(tls_contexts) -> None:
    client, server = tls_contexts(version=ssl.TLSVersion.TLSv1_3, trust_other_ca=True)
    t = run_tls(client, server)
    assert t.client_error is not None
    _conn, events = parse_all(t.chunks)
    assert no_anomalies(events)
    last = [e for e in events if e.sender is C][-1]
    # OpenSSL clients reject the certificate before switching to their handshake keys: the alert goes out in
    # plaintext (outer type 21, length 2) after a TLS 1.3 ServerHello and must be read, not taken as encrypted.
    assert isinstance(last, AlertSeen) and (last.level, last.description, last.encrypted) == (2, 48, False)
    server_enc = [e for e in events if isinstance(e, EncryptedRecordSeen) and e.sender is S]
    assert server_enc and all(e.handshake_phase for e in server_enc)


def test_tls13_plaintext_client_alert_after_server_hello(tls_contexts) -> None:
    """A client that rejects the certificate with a plaintext alert (outer type 21, length 2) after a TLS 1.3
    ServerHello: readable, not taken for an encrypted record."""
    client, server = tls_contexts(version=ssl.TLSVersion.TLSv1_3)
    t = run_tls(client, server)
    client_hello = t.chunks[0]
    server_flight = next(c for c in t.chunks if c[0] is S)
    _conn, events = parse_all([client_hello, server_flight, (C, bytes.fromhex("1503030002022a"))])
    alert = events[-1]
    assert isinstance(alert, AlertSeen) and (alert.level, alert.description, alert.encrypted) == (2, 42, False)


def test_no_shared_cipher_server_alert(tls_contexts) -> None:
    client, server = tls_contexts(version=ssl.TLSVersion.TLSv1_2)
    client.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    server.set_ciphers("ECDHE-ECDSA-CHACHA20-POLY1305")
    t = run_tls(client, server)
    assert t.server_error is not None
    conn, events = parse_all(t.chunks)
    assert [(e.sender, e.level, e.description) for e in events if isinstance(e, AlertSeen)] == [(S, 2, 40)]
    assert conn.version is None and conn.server_hello is None


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_same_events_whole_bytewise_and_coalesced(tls_contexts, version) -> None:
    client, server = tls_contexts(version=version)
    t = run_tls(client, server)
    _, whole = parse_all(t.chunks)
    _, bytewise = parse_all(t.chunks, split=1)
    _, sevens = parse_all(t.chunks, split=7)

    def strip(events):  # frame/ts depend on how the bytes were cut; everything else must not
        return [(type(e).__name__, e.sender, e.offset, getattr(e, "message", None), getattr(e, "length", None))
                for e in events]

    assert strip(whole) == strip(bytewise) == strip(sevens)
    # Frames: the event belongs to the piece that completed the record (the last byte of it, byte by byte).
    records = [e for e in bytewise if isinstance(e, RecordSeen)]
    # Offsets are per direction (the two directions interleave), so order is checked per direction.
    for side in (C, S):
        offs = [e.offset for e in records if e.sender is side]
        assert offs == sorted(offs) and offs[0] == 0


def test_trailing_garbage_after_records_resyncs(tls_contexts) -> None:
    client, server = tls_contexts(version=ssl.TLSVersion.TLSv1_2)
    t = run_tls(client, server)
    hello = t.stream(C)[: 5 + int.from_bytes(t.stream(C)[3:5], "big")]
    _conn, events = parse_all([(C, hello + b"\x00garbage!" + hello)])
    kinds = [type(e).__name__ for e in events]
    assert kinds.count("HandshakeSeen") == 2
    assert any(isinstance(e, ParseAnomaly) and e.name == "bad_record_header" for e in events)
    resync = next(e for e in events if isinstance(e, ResyncSeen))
    assert resync.skipped == len(b"\x00garbage!") and resync.offset == len(hello) + resync.skipped


def test_gap_inside_application_data_needs_no_resync(tls_contexts) -> None:
    client, server = tls_contexts(version=ssl.TLSVersion.TLSv1_2)
    t = run_tls(client, server, app_data=b"x" * 3000)
    conn = TlsConnection()
    events = feed(conn, t.chunks[:-1])
    # A big application data record from the server, with its middle lost.
    record = bytes.fromhex("1703030400") + b"\xaa" * 0x400
    events += conn.receive(S, record[:100], 100, 100.0)
    events += conn.receive_gap(S, 500, 101, 101.0)
    events += conn.receive(S, record[600:] + record, 102, 102.0)
    tail = events[-5:]
    assert isinstance(tail[0], GapSeen) and tail[0].offset == conn.stream_offset(S) - 2 * len(record) + 100
    assert [type(e).__name__ for e in tail[1:]] == ["RecordSeen", "EncryptedRecordSeen"] * 2
    assert not any(isinstance(e, ResyncSeen) for e in tail)


def test_gap_then_resync_on_next_header(tls_contexts) -> None:
    client, server = tls_contexts(version=ssl.TLSVersion.TLSv1_2)
    t = run_tls(client, server)
    server_stream = t.stream(S)
    conn = TlsConnection()
    conn.receive(C, t.stream(C)[:10], 1, 1.0)
    events = conn.receive(S, server_stream[:20], 2, 2.0)  # part of the ServerHello record
    events += conn.receive_gap(S, 30, 3, 3.0)
    events += conn.receive(S, server_stream[50:], 4, 4.0)
    gap = next(e for e in events if isinstance(e, GapSeen))
    resync = next(e for e in events if isinstance(e, ResyncSeen))
    assert gap.offset == 20 and gap.length == 30
    # The next record (the Certificate) starts right after the ServerHello record.
    sh_len = 5 + int.from_bytes(server_stream[3:5], "big")
    assert resync.offset == sh_len and resync.skipped == sh_len - 50
    assert m.CERTIFICATE in handshake_types(events, S)


@pytest.mark.parametrize("banner", [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"SSH-2.0-OpenSSH_9.6\r\n",
                                    b"220 mail.example.com ESMTP\r\n", b"\x16\x05\x01", b"\x00\x01\x02\x03\x04\x05"])
def test_not_tls_once_then_silent(banner: bytes) -> None:
    conn = TlsConnection()
    events = conn.receive(C, banner, 1, 1.0)
    assert [type(e) for e in events] == [NotTlsSeen] and events[0].preview == banner[:16]
    # Records that are not a ClientHello do not end the plaintext prelude (STARTTLS waits for a hello); at most
    # a possible header's first bytes are kept between calls.
    assert conn.receive(C, b"\x16\x03\x01\x00\x05hello" * 10, 2, 2.0) == []
    assert conn.buffer_sizes(C)[0] <= 6 and conn.buffer_sizes(C)[1] == 0
    assert conn.stream_offset(C) == len(banner) + 100
    # The other direction is independent.
    assert conn.receive(S, bytes.fromhex("15030300020228"), 3, 3.0)[-1].description == 40


def test_not_tls_decided_on_first_byte_even_in_tiny_pieces() -> None:
    conn = TlsConnection()
    assert isinstance(conn.receive(C, b"G", 1, 1.0)[0], NotTlsSeen)
    conn = TlsConnection()
    assert conn.receive(C, b"\x16", 1, 1.0) == []  # could still be TLS
    assert conn.receive(C, b"\x03", 2, 2.0) == []
    assert isinstance(conn.receive(C, b"\x09", 3, 3.0)[0], NotTlsSeen)


def test_client_hello_and_server_hello_properties(tls_contexts) -> None:
    client, server = tls_contexts()
    t = run_tls(client, server)
    conn, _events = parse_all(t.chunks)
    assert isinstance(conn.client_hello, ClientHello) and isinstance(conn.server_hello, ServerHello)
    assert conn.client_hello.highest_version == 0x0304 and conn.server_hello.selected_version == 0x0304
    assert conn.server_hello.cipher_suite in conn.client_hello.cipher_suites


def test_starttls_prelude_then_tls(tls12_exchange=None) -> None:
    """SMTP STARTTLS: plaintext commands first, then a ClientHello on the same connection; a plain-text stream
    that never starts TLS is given up after MAX_PRELUDE bytes."""
    from tlsparse.connection import MAX_PRELUDE
    from tlsparse.events import TlsStartSeen, UpgradeAskedSeen

    hello = bytes.fromhex("16030100") + bytes([45]) + bytes.fromhex("01000029" "0303") + bytes(32) + bytes.fromhex(
        "00" "0002c02f" "0100")
    conn = TlsConnection()
    prelude = b"EHLO client.example\r\nSTARTTLS\r\n"
    events = conn.receive(C, prelude, 1, 1.0)
    assert [type(e) for e in events] == [NotTlsSeen, UpgradeAskedSeen]  # (what the client asked is said)
    assert events[1].command == b"STARTTLS" and events[1].offset == len(b"EHLO client.example\r\n")
    events = conn.receive(C, hello[:3], 2, 2.0) + conn.receive(C, hello[3:], 3, 3.0)
    start = [e for e in events if isinstance(e, TlsStartSeen)]
    assert start and start[0].skipped == len(prelude) and start[0].offset == len(prelude)
    assert any(getattr(e, "msg_type", None) == m.CLIENT_HELLO for e in events)
    plain = TlsConnection()
    plain.receive(C, b"GET / HTTP/1.1\r\n", 1, 1.0)
    plain.receive(C, b"x" * (MAX_PRELUDE + 10), 2, 2.0)
    assert not plain.parsing(C) and plain.buffer_sizes(C) == (0, 0)


def test_alert_record_not_two_bytes_is_encrypted_even_without_ccs() -> None:
    """A capture that starts mid-connection (ndpi/tls_alert.pcap): a 26-byte alert record is one protected alert,
    not thirteen plaintext ones with impossible levels."""
    conn = TlsConnection()
    events = conn.receive(S, bytes.fromhex("1503030016") + bytes(range(0x16)), 1, 1.0)
    alerts = [e for e in events if isinstance(e, AlertSeen)]
    assert len(alerts) == 1 and alerts[0].encrypted and alerts[0].length == 0x16
    assert alerts[0].level is None and alerts[0].description is None
