"""The record layer: TLS record headers, the plausibility test used to detect and resynchronise on TLS, and the
SSLv2 record framing (only its CLIENT-HELLO is decoded, as old clients used it to start a TLS handshake)."""
from __future__ import annotations

import struct

from tlsparse import messages as m
from tlsparse.reader import Reader

LAYER = "record"

RECORD_HEADER = struct.Struct("!BHH")  # content_type, version, length
HEADER_LEN = 5
MAX_PLAINTEXT_PLUS = 2**14 + 256  # RFC 8446 5.2 / RFC 5246 6.2.3: beyond this a record is malformed
KNOWN_CONTENT_TYPES = frozenset((m.CHANGE_CIPHER_SPEC, m.ALERT, m.HANDSHAKE, m.APPLICATION_DATA, m.HEARTBEAT))

SSLV2_CLIENT_HELLO = 1
SSLV2_CLIENT_MASTER_KEY = 2
SSLV2_SERVER_HELLO = 4
SSLV2_VERSION = 0x0002


def plausible_header(buf: bytes | bytearray, pos: int, max_record: int) -> bool:
    """A record header a real peer would send: known content type, SSL 3.0..TLS 1.3 version, sane length.
    Needs 5 bytes at `pos`."""
    return (20 <= buf[pos] <= 24 and buf[pos + 1] == 3 and buf[pos + 2] <= 4
            and ((buf[pos + 3] << 8) | buf[pos + 4]) <= max_record)


def tls_prefix_possible(buf: bytes | bytearray, max_record: int) -> bool | None:
    """Could the first bytes of a stream start a TLS record? True/False, or None when more bytes are needed.
    Checks each byte as soon as it is there, so "GET /" or "SSH-" is refused after one byte."""
    n = len(buf)
    if n == 0:
        return None
    if not 20 <= buf[0] <= 24:
        return False
    if n < 2:
        return None
    if buf[1] != 3:
        return False
    if n < 3:
        return None
    if buf[2] > 4:
        return False
    if n < 5:
        return None
    return ((buf[3] << 8) | buf[4]) <= max_record


def sslv2_prefix_possible(buf: bytes | bytearray) -> bool | None:
    """Could the stream start with an SSLv2 CLIENT-HELLO (2-byte header, high bit set) or SERVER-HELLO?"""
    n = len(buf)
    if n == 0:
        return None
    if not buf[0] & 0x80:
        return False
    if n < 3:
        return None
    length = ((buf[0] & 0x7F) << 8) | buf[1]
    if buf[2] == SSLV2_CLIENT_HELLO:
        if length < 9:
            return False
        if n < 5:
            return None
        version = (buf[3] << 8) | buf[4]
        return version == SSLV2_VERSION or 0x0300 <= version <= 0x0304
    if buf[2] == SSLV2_SERVER_HELLO:
        if length < 11:
            return False
        if n < 7:
            return None
        return ((buf[5] << 8) | buf[6]) == SSLV2_VERSION
    return False


def sslv2_header(buf: bytes | bytearray, pos: int) -> int:
    """Length of the SSLv2 record with a 2-byte header at `pos` (high bit set)."""
    return ((buf[pos] & 0x7F) << 8) | buf[pos + 1]


def decode_sslv2_client_hello(body: bytes, *, base: int = 0) -> m.ClientHello:
    """An SSLv2 CLIENT-HELLO (RFC 6101 E.1, RFC 5246 E.2). The 3-byte cipher kinds are kept as sent; those with
    a zero first byte are TLS cipher suites. The challenge becomes the random, right-aligned and zero-padded
    to 32 bytes as the RFC prescribes."""
    r = Reader(body, layer=LAYER, base=base)
    msg_type = r.u8("msg_type")
    if msg_type != SSLV2_CLIENT_HELLO:
        raise r.fail(f"not_client_hello: sslv2 msg_type {msg_type}")
    version = r.u16("version")
    cipher_len = r.u16("cipher_spec_length")
    session_len = r.u16("session_id_length")
    challenge_len = r.u16("challenge_length")
    if cipher_len % 3:
        raise r.fail(f"bad_sslv2_cipher_spec_length: {cipher_len}")
    specs = r.take(cipher_len, "cipher_specs")
    session_id = r.take(session_len, "session_id")
    challenge = r.take(challenge_len, "challenge")
    r.expect_end("sslv2 client_hello")
    kinds = tuple(int.from_bytes(specs[i:i + 3], "big") for i in range(0, cipher_len, 3))
    suites = tuple(kind for kind in kinds if kind >> 16 == 0)
    random = challenge[-32:].rjust(32, b"\x00")
    return m.ClientHello(legacy_version=version, random=random, session_id=session_id, cipher_suites=suites,
                         compression_methods=(0,), sslv2=True, sslv2_cipher_kinds=kinds)
