"""Extensions: each known type decoded from annotated bytes, in the message it belongs to (some differ between
ClientHello, ServerHello and HelloRetryRequest); GREASE and unknown types kept raw; malformed bodies reported
without losing the message. Each ClientHello/ServerHello is fed whole, byte by byte and with trailing data."""
from __future__ import annotations

import ssl

import pytest
from conftest import handshake_msg, record, run_tls, three_ways

from tlsparse import HandshakeSeen, KeyShareEntry, ParseAnomaly, Sender
from tlsparse import messages as m
from tlsparse.extensions import HelloContext, decode_extension

C, S = Sender.CLIENT, Sender.SERVER


def ext(ext_type: int, body: bytes) -> bytes:
    return ext_type.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


def client_hello(*extensions: bytes) -> bytes:
    block = b"".join(extensions)
    body = (b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x04\x13\x01\x00\xff" + b"\x01\x00"
            + len(block).to_bytes(2, "big") + block)
    return record(22, handshake_msg(1, body), version=0x0301)


def server_hello(*extensions: bytes, random: bytes = b"\x22" * 32) -> bytes:
    block = b"".join(extensions)
    body = b"\x03\x03" + random + b"\x00" + b"\x13\x01" + b"\x00" + len(block).to_bytes(2, "big") + block
    return record(22, handshake_msg(2, body))


def parsed_ch(*extensions: bytes):
    events = three_ways(client_hello(*extensions), C)
    assert not [e for e in events if isinstance(e, ParseAnomaly)]
    return next(e.message for e in events if isinstance(e, HandshakeSeen))


CLIENT_CASES = [
    # (type, body, parsed) — body annotated field by field
    (0, b"\x00\x0e" + b"\x00" + b"\x00\x0b" + b"example.com", ("example.com",)),  # list len, host_name type, name
    (0, b"\x00\x07" + b"\x00\x00\x04h\xe9t\xe9", ("h\xe9t\xe9",)),  # non-ASCII bytes survive (latin-1)
    (16, b"\x00\x0c" + b"\x02h2" + b"\x08http/1.1", ("h2", "http/1.1")),  # ALPN: u16 list of u8 names
    (43, b"\x06" + b"\x0a\x0a\x03\x04\x03\x03", (0x0A0A, 0x0304, 0x0303)),  # supported_versions, GREASE kept
    (10, b"\x00\x06" + b"\x00\x1d\x00\x17\x11\xec", (29, 23, 0x11EC)),  # supported_groups
    (11, b"\x02" + b"\x00\x01", (0, 1)),  # ec_point_formats
    (13, b"\x00\x04" + b"\x04\x03\x08\x04", (0x0403, 0x0804)),  # signature_algorithms
    (50, b"\x00\x02" + b"\x04\x01", (0x0401,)),  # signature_algorithms_cert
    (51, b"\x00\x0a" + b"\x00\x1d\x00\x02ab" + b"\x00\x17\x00\x00",  # key_share: x25519 (2 bytes), P-256 (empty)
     (KeyShareEntry(group=29, key_exchange_length=2), KeyShareEntry(group=23, key_exchange_length=0))),
    (45, b"\x01\x01", (1,)),  # psk_key_exchange_modes: psk_dhe_ke
    (41, b"\x00\x0a" + b"\x00\x04TKT1" + b"\x00\x00\x00\x05" + b"\x00\x03" + b"\x02bb", 1),  # one identity
    (42, b"", True),  # early_data
    (5, b"\x01" + b"\x00\x00" + b"\x00\x00", 1),  # status_request: ocsp, no responders, no extensions
    (0xFF01, b"\x00", b""),  # renegotiation_info: empty renegotiated_connection
    (23, b"", True),  # extended_master_secret
    (35, b"", b""),  # session_ticket: none yet
    (35, b"TICKET", b"TICKET"),
    (22, b"", True),  # encrypt_then_mac
    (28, b"\x40\x01", 0x4001),  # record_size_limit
    (21, b"\x00" * 7, 7),  # padding: its length
    (27, b"\x04" + b"\x00\x02\x00\x01", (2, 1)),  # compress_certificate: brotli, zlib
    (49, b"", True),  # post_handshake_auth
    (44, b"\x00\x03abc", b"abc"),  # cookie
    (0xFE0D, b"\x00" + b"\x00\x01\x00\x01" + b"\x42" + b"\x00\x00" + b"\x00\x00", 0),  # ECH outer, raw payload
    (0x4469, b"\x00\x03" + b"\x02h2", ("h2",)),  # application_settings (old code point)
    (0x44CD, b"\x00\x03" + b"\x02h2", ("h2",)),  # application_settings (new code point)
    (1, b"\x02", 2),  # max_fragment_length 2^10
    (15, b"\x01", 1),  # heartbeat: peer_allowed_to_send
]


@pytest.mark.parametrize(("ext_type", "body", "expected"), CLIENT_CASES)
def test_client_hello_extension(ext_type: int, body: bytes, expected) -> None:
    ch = parsed_ch(ext(ext_type, body))
    (got,) = ch.extensions
    assert (got.type, got.data, got.parsed, got.error) == (ext_type, body, expected, None)


def test_grease_and_unknown_kept_raw_in_order() -> None:
    ch = parsed_ch(ext(0x1A1A, b""), ext(0x5A5A, b"\x00"), ext(0xABCD, b"xyz"), ext(43, b"\x02\x03\x04"))
    assert ch.extension_types == (0x1A1A, 0x5A5A, 0xABCD, 43)
    assert [(e.parsed, e.data) for e in ch.extensions[:3]] == [(None, b""), (None, b"\x00"), (None, b"xyz")]
    assert m.is_grease(0x1A1A) and ch.highest_version == 0x0304


def test_client_hello_convenience_views() -> None:
    ch = parsed_ch(ext(0, b"\x00\x04\x00\x00\x01a"), ext(16, b"\x00\x03\x02h2"), ext(43, b"\x04\x0a\x0a\x03\x04"),
                   ext(51, b"\x00\x06\x00\x1d\x00\x02ab"))
    assert (ch.sni, ch.alpn, ch.supported_versions, ch.key_share_groups) == ("a", ("h2",), (0x0A0A, 0x0304), (29,))


def test_server_hello_and_hrr_forms() -> None:
    events = three_ways(server_hello(ext(43, b"\x03\x04"), ext(51, b"\x00\x1d\x00\x03xyz"), ext(41, b"\x00\x00"),
                                     ext(16, b"\x00\x03\x02h2")), S)
    sh = next(e.message for e in events if isinstance(e, HandshakeSeen))
    assert sh.selected_version == 0x0304 and sh.key_share_group == 29 and sh.alpn == ("h2",)
    assert sh.extension(41).parsed == 0 and sh.extension(51).parsed == KeyShareEntry(group=29, key_exchange_length=3)
    events = three_ways(server_hello(ext(43, b"\x03\x04"), ext(51, b"\x00\x18"), ext(44, b"\x00\x02ck"),
                                     random=m.HRR_RANDOM), S)
    hrr = next(e for e in events if isinstance(e, HandshakeSeen))
    assert hrr.msg_type == m.HELLO_RETRY_REQUEST and hrr.message.key_share_group == 24
    assert hrr.message.extension(44).parsed == b"ck"


@pytest.mark.parametrize(("ext_type", "body"), [
    (0, b"\x00\x10\x00\x00\x03abc"),  # server_name list longer than the extension
    (16, b"\x00\x03\x05h2"),  # ALPN name longer than the list
    (43, b"\x03\x03\x04\x03"),  # odd versions list
    (51, b"\x00\x04\x00\x1d\x00\x09"),  # key_share entry overruns
    (23, b"\x00"),  # extended_master_secret must be empty
    (28, b"\x40"),  # record_size_limit truncated
    (10, b"\x00\x02\x00\x1d\x00"),  # trailing byte after the groups list
])
def test_malformed_extension_keeps_message(ext_type: int, body: bytes) -> None:
    events = three_ways(client_hello(ext(ext_type, body), ext(0xFF01, b"\x00")), C)
    ch = next(e.message for e in events if isinstance(e, HandshakeSeen))
    bad, good = ch.extensions
    assert bad.parsed is None and bad.error and bad.data == body
    assert good.parsed == b""
    assert [e.name for e in events if isinstance(e, ParseAnomaly)] == ["bad_extension"]


def test_duplicate_extension_reported() -> None:
    events = three_ways(client_hello(ext(23, b""), ext(23, b"")), C)
    assert [e.name for e in events if isinstance(e, ParseAnomaly)] == ["duplicate_extension"]


def test_extension_list_overrunning_message_is_a_bad_handshake() -> None:
    body = b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + b"\x00\x10" + b"\x00\x17\x00\x00"
    events = three_ways(record(22, handshake_msg(1, body)), C)
    assert [e.name for e in events if isinstance(e, ParseAnomaly)] == ["bad_handshake"]


def test_other_contexts() -> None:
    assert decode_extension(42, b"\x00\x00\x40\x00", HelloContext.NEW_SESSION_TICKET).parsed == 16384
    assert decode_extension(5, b"", HelloContext.SERVER_HELLO).parsed is True
    assert decode_extension(0xFE0D, b"\x01\x02", HelloContext.ENCRYPTED_EXTENSIONS).parsed is True
    assert decode_extension(0x44CD, b"\x01\x02", HelloContext.ENCRYPTED_EXTENSIONS).parsed == b"\x01\x02"


def test_real_openssl_client_hello_extensions(tls_contexts) -> None:
    client, server = tls_contexts(alpn=["h2", "http/1.1"])
    t = run_tls(client, server)
    ch = next(e.message for e in three_ways(t.chunks[0][1], C) if isinstance(e, HandshakeSeen))
    assert ch.sni == "localhost" and ch.alpn == ("h2", "http/1.1")
    assert 0x0304 in ch.supported_versions and ch.key_share_groups
    assert ch.signature_algorithms and ch.supported_groups and ch.extension(45).parsed == (1,)
    assert all(e.error is None for e in ch.extensions)


def test_real_tls13_server_hello_extensions(tls_contexts) -> None:
    client, server = tls_contexts(version=ssl.TLSVersion.TLSv1_3)
    t = run_tls(client, server)
    flight = next(data for who, data in t.chunks if who is S)
    sh = next(e.message for e in three_ways(flight, S) if isinstance(e, HandshakeSeen))
    assert sh.selected_version == 0x0304 and sh.key_share_group == 29  # OpenSSL's first share is x25519
    assert isinstance(sh.extension(51).parsed, KeyShareEntry) and sh.extension(51).parsed.key_exchange_length == 32


def test_public_ech_client_hello(public_dir) -> None:
    """A real Chrome ClientHello with ECH (outer), ALPS, compress_certificate and padding (zeek/tls/tls13-ech)."""
    from test_pyshark_crosscheck import tls_flows

    path = public_dir / "zeek/tls/tls13-ech.pcap"
    if not path.exists():
        pytest.skip("capture not present")
    ch = next(f.conn.client_hello for f in tls_flows(path).values() if f.conn.client_hello is not None)
    ech = ch.extension(0xFE0D)
    assert ech.parsed == 0 and len(ech.data) > 100  # outer ECH; the encrypted payload stays raw in `data`
    assert ch.extension(0x4469).parsed == ("h2",) and ch.extension(27).parsed == (2,)
    assert ch.sni == "cloudflare-ech.com" and all(e.error is None for e in ch.extensions)
