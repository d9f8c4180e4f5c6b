"""Handshake messages, one by one: real OpenSSL bytes where a live handshake can show them in plaintext (hellos,
TLS 1.2 certificate, key exchange, certificate request/verify, tickets), annotated hand-built bytes for the ones
only ever seen encrypted (TLS 1.3 layouts, Finished, KeyUpdate) or rare (CertificateStatus, DHE). Each is fed
whole, byte by byte and with trailing data (`three_ways`)."""
from __future__ import annotations

import ssl

import pytest
from conftest import handshake_msg, parse_all, record, run_tls, three_ways

from tlsparse import (
    Certificate,
    CertificateRequest,
    CertificateStatus,
    CertificateVerify,
    ClientHello,
    ClientKeyExchange,
    EncryptedExtensions,
    EndOfEarlyData,
    Finished,
    HandshakeSeen,
    HelloRequest,
    KeyUpdate,
    NewSessionTicket,
    ParseAnomaly,
    RawHandshake,
    Sender,
    ServerHello,
    ServerHelloDone,
    ServerKeyExchange,
)
from tlsparse import messages as m

C, S = Sender.CLIENT, Sender.SERVER


def messages(events) -> list:
    return [e.message for e in events if isinstance(e, HandshakeSeen)]


def anomalies(events) -> list[str]:
    return [e.name for e in events if isinstance(e, ParseAnomaly)]


def server_hello_bytes(version: int = 0x0304, suite: int = 0x1301) -> bytes:
    """A minimal ServerHello record: legacy_version 1.2, random, empty session id, suite, null compression,
    and for TLS 1.3 a supported_versions extension (type 43, length 2)."""
    ext = (b"\x00\x2b\x00\x02" + version.to_bytes(2, "big")) if version == 0x0304 else b""
    legacy = min(version, 0x0303).to_bytes(2, "big")
    body = (legacy + bytes(range(32)) + b"\x00" + suite.to_bytes(2, "big") + b"\x00"
            + len(ext).to_bytes(2, "big") + ext)
    return record(22, handshake_msg(2, body))


TLS13 = [(S, server_hello_bytes(0x0304))]
TLS12 = [(S, server_hello_bytes(0x0303, 0x009E))]  # TLS_DHE_RSA_WITH_AES_128_GCM_SHA256
TLS10 = [(S, server_hello_bytes(0x0301, 0x0033))]  # TLS_DHE_RSA_WITH_AES_128_CBC_SHA


@pytest.fixture(scope="module")
def tls12(pki):
    import conftest

    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(pki.ca_cert)
    client.load_cert_chain(pki.client_cert, pki.client_key)
    client.set_alpn_protocols(["h2"])
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(pki.server_chain, pki.server_key)
    server.set_alpn_protocols(["h2"])
    server.load_verify_locations(pki.ca_cert)
    server.verify_mode = ssl.CERT_REQUIRED
    client.maximum_version = server.maximum_version = ssl.TLSVersion.TLSv1_2
    return conftest.run_tls(client, server)


def _first_flight(t, sender):
    return next(data for who, data in t.chunks if who is sender)


def test_real_client_hello(tls12) -> None:
    events = three_ways(_first_flight(tls12, C), C)
    (ch,) = messages(events)
    assert isinstance(ch, ClientHello) and not ch.sslv2
    assert ch.legacy_version == 0x0303 and len(ch.random) == 32 and ch.compression_methods == (0,)
    assert 0xC02B in ch.cipher_suites or 0xC02F in ch.cipher_suites
    assert ch.sni == "localhost" and ch.alpn == ("h2",)
    assert ch.has_extension(m.EXT_SUPPORTED_GROUPS) and 29 in ch.supported_groups  # x25519
    assert not anomalies(events)


def test_real_tls12_server_flight(tls12) -> None:
    """ServerHello, Certificate, ServerKeyExchange (ECDHE), CertificateRequest, ServerHelloDone in one go."""
    events = three_ways(_first_flight(tls12, S), S)
    sh, cert, ske, cr, done = messages(events)
    assert isinstance(sh, ServerHello) and sh.selected_version == 0x0303 and sh.alpn == ("h2",)
    assert isinstance(cert, Certificate) and len(cert.certificates) == 2
    assert all(der[0] == 0x30 for der in cert.certificates)  # DER SEQUENCE
    assert isinstance(ske, ServerKeyExchange) and ske.kind == "ecdhe" and ske.curve == 29
    assert ske.public_key_length == 32 and ske.signature_scheme == 0x0403
    assert ske.signed_params == bytes([3]) + (29).to_bytes(2, "big") + bytes([32]) + ske.raw[4:36]
    assert isinstance(cr, CertificateRequest) and cr.request_context is None and cr.signature_algorithms
    assert isinstance(done, ServerHelloDone)
    assert not anomalies(events)


def test_real_client_second_flight(tls12) -> None:
    """Certificate, ClientKeyExchange, CertificateVerify (then CCS and the encrypted Finished)."""
    _conn, events = parse_all(tls12.chunks)
    client_msgs = [e.message for e in events if isinstance(e, HandshakeSeen) and e.sender is C]
    _, cert, cke, cv = client_msgs
    assert isinstance(cert, Certificate) and len(cert.certificates) >= 1  # OpenSSL may add the CA
    assert isinstance(cke, ClientKeyExchange) and cke.raw[0] == 32 and len(cke.raw) == 33  # x25519 point
    assert isinstance(cv, CertificateVerify) and cv.signature_scheme == 0x0403
    tickets = [e.message for e in events if isinstance(e, HandshakeSeen) and e.msg_type == m.NEW_SESSION_TICKET]
    assert tickets and isinstance(tickets[0], NewSessionTicket) and tickets[0].age_add is None
    assert tickets[0].lifetime > 0 and tickets[0].ticket


def test_real_hello_retry_request(tls_contexts) -> None:
    client, server = tls_contexts(version=ssl.TLSVersion.TLSv1_3, server_curve="secp384r1")
    t = run_tls(client, server)
    hrr_flight = next(data for who, data in t.chunks if who is S)
    events = three_ways(hrr_flight, S)
    hrr = next(e for e in events if isinstance(e, HandshakeSeen))
    assert hrr.msg_type == m.HELLO_RETRY_REQUEST and hrr.message.is_hello_retry_request
    assert hrr.message.key_share_group == 24 and hrr.message.selected_version == 0x0304


def test_tls13_certificate_layout() -> None:
    # certificate_request_context "" ; certificate_list: one entry (cert_data 3 bytes "abc",
    # extensions: status_request (5) of 0 bytes)
    entry = b"\x00\x00\x03abc" + b"\x00\x04" + b"\x00\x05\x00\x00"
    body = b"\x00" + len(entry).to_bytes(3, "big") + entry
    events = three_ways(record(22, handshake_msg(11, body)), S, prime=TLS13)
    cert = messages(events)[-1]
    assert cert == Certificate(certificates=(b"abc",), request_context=b"")


def test_certificate_layout_by_shape_without_version() -> None:
    tls12 = b"\x00\x00\x06" + b"\x00\x00\x03abc"
    tls13 = b"\x00" + b"\x00\x00\x08" + b"\x00\x00\x03abc\x00\x00"
    assert messages(three_ways(record(22, handshake_msg(11, tls12)), S))[0].request_context is None
    assert messages(three_ways(record(22, handshake_msg(11, tls13)), S))[0].request_context == b""


def test_dhe_server_key_exchange_tls12_and_tls10() -> None:
    p = (1 << 1023 | 0x17).to_bytes(128, "big")  # a 1024-bit "prime" (only its size matters here)
    params = len(p).to_bytes(2, "big") + p + b"\x00\x01\x02" + b"\x00\x80" + b"\x05" * 128
    tls12 = params + b"\x04\x01" + b"\x00\x04sig!"  # rsa_pkcs1_sha256
    tls10 = params + b"\x00\x04sig!"  # no SignatureAndHashAlgorithm before TLS 1.2
    for prime, body, scheme in ((TLS12, tls12, 0x0401), (TLS10, tls10, None), ((), tls12, 0x0401), ((), tls10, None)):
        ske = messages(three_ways(record(22, handshake_msg(12, body)), S, prime=prime))[-1]
        assert isinstance(ske, ServerKeyExchange) and ske.kind == "dhe"
        assert ske.dh_prime_bits == 1024 and ske.public_key_length == 128
        assert ske.signature_scheme == scheme and ske.signature == b"sig!" and ske.signed_params == params


def test_tls13_certificate_request_and_new_session_ticket() -> None:
    # CertificateRequest: context "\x01", extensions: signature_algorithms [0x0804, 0x0403]
    cr_body = b"\x01\x01" + b"\x00\x0a" + b"\x00\x0d\x00\x06\x00\x04\x08\x04\x04\x03"
    # NewSessionTicket: lifetime 7200, age_add 0x01020304, nonce "\x00", ticket "TKT", extensions: early_data 16384
    nst_body = (b"\x00\x00\x1c\x20" + b"\x01\x02\x03\x04" + b"\x01\x00" + b"\x00\x03TKT"
                + b"\x00\x08" + b"\x00\x2a\x00\x04\x00\x00\x40\x00")
    data = record(22, handshake_msg(13, cr_body) + handshake_msg(4, nst_body))
    cr, nst = messages(three_ways(data, S, prime=TLS13))[-2:]
    assert cr.request_context == b"\x01" and cr.signature_algorithms == (0x0804, 0x0403)
    assert (nst.lifetime, nst.age_add, nst.nonce, nst.ticket) == (7200, 0x01020304, b"\x00", b"TKT")
    assert nst.extensions[0].parsed == 16384


def test_small_messages() -> None:
    data = record(22, b"".join([
        handshake_msg(0, b""),  # hello_request
        handshake_msg(5, b""),  # end_of_early_data
        handshake_msg(8, b"\x00\x04\x00\x00\x00\x00"),  # encrypted_extensions: server_name ack
        handshake_msg(20, b"\xaa" * 12),  # finished: 12 bytes verify_data
        handshake_msg(24, b"\x01"),  # key_update: update_requested
        handshake_msg(22, b"\x01\x00\x00\x03\x30\x01\x00"),  # certificate_status: ocsp, 3-byte DER
        handshake_msg(254, b"\x11" * 32),  # message_hash: kept raw
        handshake_msg(99, b"?"),  # unassigned: kept raw
    ]))
    events = three_ways(data, S)
    assert messages(events) == [
        HelloRequest(), EndOfEarlyData(),
        EncryptedExtensions(extensions=(m.Extension(type=0, data=b"", parsed=()),)),
        Finished(verify_data=b"\xaa" * 12), KeyUpdate(request_update=1),
        CertificateStatus(status_type=1, ocsp_response=b"\x30\x01\x00"),
        RawHandshake(msg_type=254, body=b"\x11" * 32), RawHandshake(msg_type=99, body=b"?"),
    ]
    assert not anomalies(events)


def test_message_split_across_records_reports_first_record_offset() -> None:
    msg = handshake_msg(20, b"\xbb" * 40)
    data = record(22, msg[:3]) + record(22, msg[3:20]) + record(22, msg[20:])
    events = three_ways(data, S)
    (seen,) = [e for e in events if isinstance(e, HandshakeSeen)]
    assert seen.message == Finished(verify_data=b"\xbb" * 40) and seen.offset == 0 and seen.length == 40


def test_malformed_message_becomes_raw_with_anomaly_and_parse_goes_on() -> None:
    bad = handshake_msg(2, b"\x03\x03" + b"\x00" * 10)  # a ServerHello cut inside its random
    data = record(22, bad + handshake_msg(14, b""))
    events = three_ways(data, S)
    raw, done = messages(events)
    assert isinstance(raw, RawHandshake) and raw.msg_type == 2 and raw.error.startswith("truncated")
    assert isinstance(done, ServerHelloDone)
    anomaly = next(e for e in events if isinstance(e, ParseAnomaly))
    assert anomaly.name == "bad_handshake" and anomaly.offset == 5 + 4 + 2  # where the random should be


def test_trailing_bytes_inside_a_message_are_an_error() -> None:
    data = record(22, handshake_msg(14, b"\x00"))  # ServerHelloDone has an empty body
    events = three_ways(data, S)
    assert messages(events)[0].error.startswith("trailing_bytes") and anomalies(events) == ["bad_handshake"]


def test_sslv2_client_hello() -> None:
    # 2-byte header (0x80 | length), msg_type 1, version 3.1, cipher_spec_length 9, session_id_length 0,
    # challenge_length 16; cipher kinds: SSL2_RC4_128_WITH_MD5 (0x010080), TLS 0x00002f, TLS 0x0000ff.
    body = (b"\x01\x03\x01\x00\x09\x00\x00\x00\x10" + b"\x01\x00\x80\x00\x00\x2f\x00\x00\xff" + b"C" * 16)
    data = bytes([0x80 | (len(body) >> 8), len(body) & 0xFF]) + body
    events = three_ways(data, C)
    (ch,) = messages(events)
    assert ch.sslv2 and ch.legacy_version == 0x0301
    assert ch.sslv2_cipher_kinds == (0x010080, 0x00002F, 0x0000FF) and ch.cipher_suites == (0x2F, 0xFF)
    assert ch.random == b"\x00" * 16 + b"C" * 16


# --- real messages from the public captures (skipped when ../shared is absent) ---------------------------------

def _public_flow(public_dir, name: str):
    from test_pyshark_crosscheck import tls_flows

    path = public_dir / name
    if not path.exists():
        pytest.skip(f"{name} not present")
    return next(iter(tls_flows(path).values()))


def test_public_ocsp_stapling_certificate_status(public_dir) -> None:
    flow = _public_flow(public_dir, "zeek/tls/ocsp-stapling-twimg.pcap")
    status = next(e.message for e in flow.events if isinstance(e, HandshakeSeen) and e.msg_type == 22)
    assert isinstance(status, CertificateStatus) and status.status_type == 1
    assert status.ocsp_response[0] == 0x30  # a DER OCSPResponse
    ch = flow.conn.client_hello
    assert ch.extension(5).parsed == 1  # the client asked for it: status_request(ocsp)


def test_public_dhe_server_key_exchange(public_dir) -> None:
    flow = _public_flow(public_dir, "zeek/tls/dhe.pcap")
    ske = next(e.message for e in flow.events if isinstance(e, HandshakeSeen) and e.msg_type == 12)
    assert ske.kind == "dhe" and ske.dh_prime_bits == 1024 and ske.signature_scheme == 0x0601  # rsa_pkcs1_sha512
    assert ske.signed_params + ske.signature_scheme.to_bytes(2, "big") + len(ske.signature).to_bytes(2, "big") \
        + ske.signature == ske.raw


def test_public_sslv2_connection(public_dir) -> None:
    from tlsparse import RecordSeen, Sslv2RecordSeen

    flow = _public_flow(public_dir, "zeek/tls/ssl-v2.pcap")
    ch = flow.conn.client_hello
    assert ch.sslv2 and ch.legacy_version == 0x0002 and ch.sslv2_cipher_kinds
    v2 = [e for e in flow.events if isinstance(e, (Sslv2RecordSeen, RecordSeen))]
    assert len(v2) == 10  # tshark counts 10 SSLv2 records too
    assert not anomalies(flow.events) and flow.conn.version == 0x0002


def test_public_heartbleed_heartbeat(public_dir) -> None:
    from tlsparse import HeartbeatSeen

    flow = _public_flow(public_dir, "zeek/tls/heartbleed.pcap")
    beats = [e for e in flow.events if isinstance(e, HeartbeatSeen)]
    assert beats and beats[0].sender is C and not beats[0].encrypted
