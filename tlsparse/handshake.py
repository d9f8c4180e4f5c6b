"""Handshake message bodies: from (msg_type, body bytes) to the typed messages of `tlsparse.messages`.

Decoders raise `TlsParseError` on malformed input; `decode_handshake` turns that into a `RawHandshake` with
`error` set plus an anomaly, so a broken message never stops the parse of the ones after it. Layouts that differ
between versions (Certificate, CertificateRequest, NewSessionTicket, ServerKeyExchange, CertificateVerify) follow
the negotiated version when known and the message's shape otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from tlsparse import messages as m
from tlsparse.errors import TlsParseError
from tlsparse.extensions import (
    MAX_LIST_ITEMS,
    HelloContext,
    extension_problems,
    parse_extensions,
    split_extensions,
    u16_values,
)
from tlsparse.fastinit import fast_frozen_init, positional_factory
from tlsparse.reader import Reader

if TYPE_CHECKING:
    from tlsparse.cache import ParseCache

LAYER = "handshake"
TLS12 = 0x0303
# Enum members and the HRR random as module constants: `HelloContext.SERVER_HELLO` is a metaclass lookup (several
# hundred instructions), and the hellos' fast decoders read them for every connection.
_CH_CONTEXT, _SH_CONTEXT, _HRR_CONTEXT = (
    HelloContext.CLIENT_HELLO, HelloContext.SERVER_HELLO, HelloContext.HELLO_RETRY_REQUEST)
_HRR_RANDOM = m.HRR_RANDOM


def is_tls13(version: int | None) -> bool:
    """TLS 1.3 and its drafts (0x7fXX) and Facebook's experimental 0xfb17/0xfb1a variants."""
    if version is None:
        return False
    return version == 0x0304 or (version >> 8) == 0x7F or version in (0xFB17, 0xFB1A)


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class DecodeContext:
    """What a decoder needs to know about the connection: the negotiated (or, before the ServerHello, the
    offered) version and the cipher suite, when seen."""

    version: int | None = None
    cipher_suite: int | None = None


class Decoded(NamedTuple):
    """What `decode_handshake` found (a named tuple: one is built per message, and a tuple is the cheapest)."""

    msg_type: int  # as reported: 6 for a ServerHello carrying the HRR random
    message: m.HandshakeBody
    anomalies: list[tuple[str, str, int]]  # (name, detail, absolute offset)


# --- hellos ---------------------------------------------------------------------------------------------------

def decode_client_hello(r: Reader, cache: ParseCache | None = None) -> m.ClientHello:
    legacy_version = r.u16("legacy_version")
    random = r.take(32, "random")
    session_id = r.vec8("session_id")
    suites = r.sub16("cipher_suites").u16_list("cipher_suites", MAX_LIST_ITEMS)
    compression = r.sub8("compression_methods").u8_list("compression_methods", 255)
    # SSL 3.0 / early TLS ClientHellos may end here: no extension block at all.
    extensions = parse_extensions(r, HelloContext.CLIENT_HELLO, cache) if not r.done() else ()
    r.expect_end("client_hello")
    return m.ClientHello(legacy_version=legacy_version, random=random, session_id=session_id,
                         cipher_suites=suites, compression_methods=compression, extensions=extensions)


# Positional constructors (fastinit.positional_factory), arguments in field order:
# legacy_version, random, session_id, cipher_suites, compression_methods, extensions, sslv2, sslv2_cipher_kinds
_new_client_hello = positional_factory(m.ClientHello)
# legacy_version, random, session_id, cipher_suite, compression_method, extensions
_new_server_hello = positional_factory(m.ServerHello)


def fast_client_hello(body: bytes, cache: ParseCache | None = None) -> m.ClientHello | None:
    """A well-formed ClientHello decoded by plain indexing (why: it is the largest message every connection
    has); None when any length does not add up, and `decode_client_hello` then reports what is wrong."""
    n = len(body)
    at = _client_hello_layout(body, n)
    if at is None:
        return None
    p, q, r = at
    suites_len = q - p - 2
    if r == n:  # SSL 3.0 / early TLS: no extension block at all
        extensions: tuple[m.Extension, ...] | None = ()
    elif r + 2 > n or r + 2 + ((body[r] << 8) | body[r + 1]) != n:
        return None
    else:
        extensions = split_extensions(body, r + 2, n, _CH_CONTEXT, 0, cache)
        if extensions is None:
            return None
    if cache is None or suites_len > cache.MAX_SUITE_LIST_BYTES:
        suites = u16_values(body, p + 2, suites_len >> 1)
    else:  # clients repeat their suite lists: decoded once, one tuple shared (the codes are big ints to build)
        key = body[p + 2:q]
        suites = cache.suite_lists.get(key)  # type: ignore[assignment]
        if suites is None:
            lists = cache.suite_lists
            if len(lists) >= cache.MAX_SUITE_LISTS:
                lists.clear()
            suites = lists[key] = u16_values(body, p + 2, suites_len >> 1)
    return _new_client_hello((body[0] << 8) | body[1], body[2:34], body[35:p], suites, tuple(body[q + 1:r]),
                             extensions, False, ())


def _client_hello_layout(body: bytes, n: int) -> tuple[int, int, int] | None:
    """Where a ClientHello body's cipher suites (their length), compression methods and extensions (their block's
    length) start, or None when what comes before its extensions does not add up within `n` bytes."""
    if n < 35:
        return None
    p = 35 + body[34]
    if p + 2 > n:
        return None
    suites_len = (body[p] << 8) | body[p + 1]
    q = p + 2 + suites_len
    if q + 1 > n or suites_len & 1 or suites_len > 2 * MAX_LIST_ITEMS:
        return None
    r = q + 1 + body[q]
    return (p, q, r) if r <= n else None


def client_hello_prefix(body: bytes) -> m.ClientHello | None:
    """What came whole of a ClientHello cut short (the stream ended before its end: `TlsConnection.end_of_stream`):
    the fixed fields and each extension that came entire, or None when the fixed fields did not all come. Its
    SNI, ALPN and supported versions are the client's own when those extensions came."""
    n = len(body)
    at = _client_hello_layout(body, n)
    if at is None or at[2] + 2 > n:
        return None
    r = at[2]
    end = r + 2
    while end + 4 <= n and end + 4 + ((body[end + 2] << 8) | body[end + 3]) <= n:
        end += 4 + ((body[end + 2] << 8) | body[end + 3])
    # The same body with its extension block's length made that of the extensions that came: a whole ClientHello.
    return fast_client_hello(body[:r] + (end - r - 2).to_bytes(2, "big") + body[r + 2:end])


def fast_server_hello(body: bytes, cache: ParseCache | None = None) -> m.ServerHello | None:
    """The ServerHello counterpart of `fast_client_hello` (TLS 1.3 drafts before -22 go the Reader way)."""
    n = len(body)
    if n < 38 or body[0] == 0x7F:
        return None
    p = 35 + body[34]
    if p + 3 > n:
        return None
    random = body[2:34]
    r = p + 3
    if r == n:
        extensions: tuple[m.Extension, ...] | None = ()
    elif r + 2 > n or r + 2 + ((body[r] << 8) | body[r + 1]) != n:
        return None
    else:
        ctx = _HRR_CONTEXT if random == _HRR_RANDOM else _SH_CONTEXT
        extensions = split_extensions(body, r + 2, n, ctx, 0, cache)
        if extensions is None:
            return None
    return _new_server_hello((body[0] << 8) | body[1], random, body[35:p], (body[p] << 8) | body[p + 1],
                             body[p + 2], extensions)


def decode_server_hello(r: Reader, cache: ParseCache | None = None) -> m.ServerHello:
    legacy_version = r.u16("legacy_version")
    random = r.take(32, "random")
    draft = (legacy_version >> 8) == 0x7F and (legacy_version & 0xFF) < 22
    # TLS 1.3 drafts before -22 dropped session_id and compression_method from the ServerHello.
    session_id = b"" if draft else r.vec8("session_id")
    cipher_suite = r.u16("cipher_suite")
    compression = 0 if draft else r.u8("compression_method")
    ctx = HelloContext.HELLO_RETRY_REQUEST if random == m.HRR_RANDOM else HelloContext.SERVER_HELLO
    extensions = parse_extensions(r, ctx, cache) if not r.done() else ()
    r.expect_end("server_hello")
    return m.ServerHello(legacy_version=legacy_version, random=random, session_id=session_id,
                         cipher_suite=cipher_suite, compression_method=compression, extensions=extensions)


def decode_encrypted_extensions(r: Reader) -> m.EncryptedExtensions:
    extensions = parse_extensions(r, HelloContext.ENCRYPTED_EXTENSIONS)
    r.expect_end("encrypted_extensions")
    return m.EncryptedExtensions(extensions=extensions)


# --- certificates ---------------------------------------------------------------------------------------------

def _looks_like_tls13_certificate(r: Reader) -> bool:
    """Shape test when the version is unknown: a 1.3 Certificate starts with a u8 context, then a u24 list that
    runs to the end; a 1.2 one starts with a u24 list that runs to the end."""
    d, p, n = r.data, r.pos, r.remaining
    if n >= 3 and ((d[p] << 16) | (d[p + 1] << 8) | d[p + 2]) == n - 3:
        return False
    if n >= 1 and n >= 1 + d[p] + 3:
        q = p + 1 + d[p]
        return ((d[q] << 16) | (d[q + 1] << 8) | d[q + 2]) == n - 1 - d[p] - 3
    return False


def decode_certificate(r: Reader, ctx: DecodeContext) -> m.Certificate:
    tls13 = is_tls13(ctx.version) if ctx.version is not None else _looks_like_tls13_certificate(r)
    request_context = r.vec8("certificate_request_context") if tls13 else None
    entries = r.sub24("certificate_list")
    r.expect_end("certificate")
    certs: list[bytes] = []
    ocsp: bytes | None = None
    while not entries.done():
        if len(certs) >= MAX_LIST_ITEMS:
            raise entries.fail("too_many_items: certificate_list")
        certs.append(entries.vec24("cert_data"))
        if tls13:  # per-entry extensions: the leaf's status_request carries the stapled OCSP response
            extensions = parse_extensions(entries, HelloContext.CERTIFICATE)
            if len(certs) == 1:
                ocsp = _stapled_ocsp(extensions)
    return m.Certificate(certificates=tuple(certs), request_context=request_context, ocsp_response=ocsp)


def fast_certificate(body: bytes, ctx: DecodeContext) -> m.Certificate | None:
    """A TLS <= 1.2 Certificate (a u24 list of u24 DER blobs) by indexing; None for TLS 1.3, an unknown version
    or anything malformed (then `decode_certificate` decides and reports)."""
    version = ctx.version
    n = len(body)
    if version is None or is_tls13(version) or n < 3 or ((body[0] << 16) | (body[1] << 8) | body[2]) != n - 3:
        return None
    certs: list[bytes] = []
    p = 3
    while p < n:
        if p + 3 > n or len(certs) >= MAX_LIST_ITEMS:
            return None
        q = p + 3 + ((body[p] << 16) | (body[p + 1] << 8) | body[p + 2])
        if q > n:
            return None
        certs.append(body[p + 3:q])
        p = q
    return m.Certificate(certificates=tuple(certs))


def _stapled_ocsp(extensions: object) -> bytes | None:
    """RFC 8446 4.4.2.1: a CertificateStatus (status_type 1 = ocsp, then a 24-bit length) in the leaf's entry."""
    for ext in extensions or ():  # type: ignore[attr-defined]
        if getattr(ext, "type", None) == m.EXT_STATUS_REQUEST:
            data = ext.data
            if len(data) >= 4 and data[0] == 1:
                length = int.from_bytes(data[1:4], "big")
                if length == len(data) - 4:
                    return bytes(data[4:])
    return None


def decode_certificate_request(r: Reader, ctx: DecodeContext) -> m.CertificateRequest:
    if is_tls13(ctx.version):
        request_context = r.vec8("certificate_request_context")
        extensions = parse_extensions(r, HelloContext.CERTIFICATE_REQUEST)
        r.expect_end("certificate_request")
        sigs = m._ext(extensions, m.EXT_SIGNATURE_ALGORITHMS)
        return m.CertificateRequest(
            request_context=request_context, extensions=extensions,
            signature_algorithms=tuple(sigs.parsed) if sigs is not None and sigs.parsed is not None else ())
    cert_types = r.sub8("certificate_types").u8_list("certificate_types", 255)
    # TLS 1.2 added supported_signature_algorithms; when the version is unknown, tell by shape: the two u16
    # vectors (algorithms, authorities) must then exactly fill the rest.
    with_sigs = ctx.version == TLS12 if ctx.version is not None else _two_vec16_fill(r)
    sigs_list: tuple[int, ...] = ()
    if with_sigs:
        sigs_list = r.sub16("supported_signature_algorithms").u16_list("signature_algorithms", MAX_LIST_ITEMS)
    names = r.sub16("certificate_authorities")
    r.expect_end("certificate_request")
    authorities: list[bytes] = []
    while not names.done():
        if len(authorities) >= MAX_LIST_ITEMS:
            raise names.fail("too_many_items: certificate_authorities")
        authorities.append(names.vec16("distinguished_name"))
    return m.CertificateRequest(certificate_types=cert_types, signature_algorithms=sigs_list,
                                certificate_authorities=tuple(authorities))


def _two_vec16_fill(r: Reader) -> bool:
    d, p, n = r.data, r.pos, r.remaining
    if n < 4:
        return False
    first = (d[p] << 8) | d[p + 1]
    if 2 + first + 2 > n:
        return False
    q = p + 2 + first
    return 2 + first + 2 + ((d[q] << 8) | d[q + 1]) == n


def decode_certificate_status(r: Reader) -> m.CertificateStatus:
    status_type = r.u8("status_type")
    response = r.vec24("ocsp_response") if status_type == 1 else r.rest()
    r.expect_end("certificate_status")
    return m.CertificateStatus(status_type=status_type, ocsp_response=response)


# --- key exchange ---------------------------------------------------------------------------------------------

def suite_kind(cipher_suite: int | None) -> str | None:
    """'ecdhe' / 'dhe' / 'other' from the suite's IANA name via tlsparse.registry when that module exists;
    None when it cannot tell (then the message's shape decides)."""
    if cipher_suite is None:
        return None
    try:
        from tlsparse import registry  # optional: owned by another module, may not exist yet
        info = registry.cipher_suite_info(cipher_suite)
    except Exception:  # noqa: BLE001 - a missing or broken registry must never break parsing
        return None
    name = info if isinstance(info, str) else getattr(info, "name", None)
    if name is None and isinstance(info, dict):
        name = info.get("name")
    if not isinstance(name, str) or name.startswith("unknown"):
        return None
    if "PSK" in name:
        return "other"  # (EC)DHE_PSK carry a PSK identity hint first: kept raw
    if "ECDHE" in name or "ECDH_anon" in name:
        return "ecdhe"
    if "DHE" in name or "DH_anon" in name:
        return "dhe"
    return "other"


def _suite_kind(cipher_suite: int | None, cache: ParseCache | None) -> str | None:
    """`suite_kind`, remembered in the cache when there is one (it is asked for every ServerKeyExchange)."""
    if cache is None:
        return suite_kind(cipher_suite)
    kinds = cache.suite_kinds
    if cipher_suite in kinds:
        return kinds[cipher_suite]
    if len(kinds) >= cache.MAX_SUITE_KINDS:
        kinds.clear()
    kind = kinds[cipher_suite] = suite_kind(cipher_suite)
    return kind


def _signature_tail(r: Reader, ctx: DecodeContext) -> tuple[int | None, bytes]:
    """The digitally-signed struct: TLS 1.2 puts a 2-byte SignatureAndHashAlgorithm before the u16 vector.
    Anonymous suites carry nothing."""
    if r.done():
        return None, b""
    with_scheme = ctx.version == TLS12 if ctx.version is not None else (
        r.remaining >= 4 and 4 + ((r.data[r.pos + 2] << 8) | r.data[r.pos + 3]) == r.remaining)
    scheme = r.u16("signature_algorithm") if with_scheme else None
    signature = r.vec16("signature")
    return scheme, signature


# raw, kind, curve, public_key_length, dh_prime_bits, signature_scheme, signature, signed_params
_new_server_key_exchange = positional_factory(m.ServerKeyExchange)


def fast_server_key_exchange(body: bytes, ctx: DecodeContext,
                             cache: ParseCache | None = None) -> m.ServerKeyExchange | None:
    """A TLS 1.2 ECDHE ServerKeyExchange on a named curve, signed (the usual one), by indexing; None for
    anything else, which `decode_server_key_exchange` then handles."""
    n = len(body)
    if ctx.version != TLS12 or n < 4 or body[0] != 3 or _suite_kind(ctx.cipher_suite, cache) != "ecdhe":
        return None
    q = 4 + body[3]  # curve_type, named_curve, u8 point: the signed params end here
    if q + 4 > n or q + 4 + ((body[q + 2] << 8) | body[q + 3]) != n:
        return None
    return _new_server_key_exchange(body, "ecdhe", (body[1] << 8) | body[2], body[3], None,
                                    (body[q] << 8) | body[q + 1], body[q + 4:], body[:q])


def decode_server_key_exchange(r: Reader, ctx: DecodeContext,
                               cache: ParseCache | None = None) -> m.ServerKeyExchange:
    raw = bytes(r.data[r.pos:r.end])
    kind = _suite_kind(ctx.cipher_suite, cache)
    if kind is None:  # by shape: ECParameters start with curve_type 3 (named_curve) and a u8 point length
        d, p, n = r.data, r.pos, r.remaining
        kind = "ecdhe" if n >= 4 and d[p] == 3 and 4 + d[p + 3] <= n else "dhe"
        if kind == "dhe":
            try:
                return _decode_dhe(Reader(r.data, layer=r.layer, base=r.base, start=r.pos, end=r.end), ctx, raw)
            except TlsParseError:
                return m.ServerKeyExchange(raw=raw, kind="unknown")
    if kind == "ecdhe":
        start = r.pos
        curve_type = r.u8("curve_type")
        if curve_type != 3:  # explicit curves (1, 2) are obsolete: keep raw
            return m.ServerKeyExchange(raw=raw, kind="ecdhe")
        curve = r.u16("named_curve")
        point = r.vec8("public")
        signed = bytes(r.data[start:r.pos])
        scheme, signature = _signature_tail(r, ctx)
        r.expect_end("server_key_exchange")
        return m.ServerKeyExchange(raw=raw, kind="ecdhe", curve=curve, public_key_length=len(point),
                                   signature_scheme=scheme, signature=signature, signed_params=signed)
    if kind == "dhe":
        return _decode_dhe(r, ctx, raw)
    return m.ServerKeyExchange(raw=raw, kind="unknown")


def _decode_dhe(r: Reader, ctx: DecodeContext, raw: bytes) -> m.ServerKeyExchange:
    start = r.pos
    p = r.vec16("dh_p")
    r.vec16("dh_g")
    ys = r.vec16("dh_Ys")
    signed = bytes(r.data[start:r.pos])
    scheme, signature = _signature_tail(r, ctx)
    r.expect_end("server_key_exchange")
    prime_bits = int.from_bytes(p, "big").bit_length()
    return m.ServerKeyExchange(raw=raw, kind="dhe", public_key_length=len(ys), dh_prime_bits=prime_bits,
                               signature_scheme=scheme, signature=signature, signed_params=signed)


def decode_certificate_verify(r: Reader, ctx: DecodeContext) -> m.CertificateVerify:
    if ctx.version is not None:
        with_scheme = ctx.version >= TLS12 or is_tls13(ctx.version)
    else:
        with_scheme = r.remaining >= 4 and 4 + ((r.data[r.pos + 2] << 8) | r.data[r.pos + 3]) == r.remaining
    scheme = r.u16("signature_algorithm") if with_scheme else None
    signature = r.vec16("signature")
    r.expect_end("certificate_verify")
    return m.CertificateVerify(signature_scheme=scheme, signature=signature)


# --- the rest ---------------------------------------------------------------------------------------------------

def decode_new_session_ticket(r: Reader, ctx: DecodeContext) -> m.NewSessionTicket:
    lifetime = r.u32("ticket_lifetime")
    tls13 = is_tls13(ctx.version) if ctx.version is not None else not (
        r.remaining >= 2 and 2 + ((r.data[r.pos] << 8) | r.data[r.pos + 1]) == r.remaining)
    if not tls13:
        ticket = r.vec16("ticket")
        r.expect_end("new_session_ticket")
        return m.NewSessionTicket(lifetime=lifetime, ticket=ticket)
    age_add = r.u32("ticket_age_add")
    nonce = r.vec8("ticket_nonce")
    ticket = r.vec16("ticket")
    extensions = parse_extensions(r, HelloContext.NEW_SESSION_TICKET)
    r.expect_end("new_session_ticket")
    return m.NewSessionTicket(lifetime=lifetime, ticket=ticket, age_add=age_add, nonce=nonce,
                              extensions=extensions)


def fast_new_session_ticket(body: bytes, ctx: DecodeContext) -> m.NewSessionTicket | None:
    """A TLS <= 1.2 NewSessionTicket (lifetime, u16 ticket) by indexing; None otherwise."""
    version = ctx.version
    n = len(body)
    if version is None or is_tls13(version) or n < 6 or 6 + ((body[4] << 8) | body[5]) != n:
        return None
    return m.NewSessionTicket(lifetime=int.from_bytes(body[:4], "big"), ticket=body[6:])


def _empty_body(r: Reader, what: str) -> None:
    r.expect_end(what)


def decode_handshake(msg_type: int, body: bytes, ctx: DecodeContext, *, base: int = 0,
                     cache: ParseCache | None = None) -> Decoded:
    """Decode one complete handshake message body. Never raises: a body that does not decode becomes
    `RawHandshake(error=...)` plus a `bad_handshake` anomaly. `base` is the body's absolute stream offset;
    `cache` (the caller's, see tlsparse.cache) remembers what recurs between connections."""
    reported, message, anomalies = decode_message(msg_type, body, ctx, base, cache)
    return Decoded(reported, message, list(anomalies))


_NO_ANOMALIES: tuple[()] = ()


def decode_message(msg_type: int, body: bytes, ctx: DecodeContext, base: int = 0,
                   cache: ParseCache | None = None) -> tuple[int, m.HandshakeBody, list[tuple[str, str, int]]]:
    """`decode_handshake` as a plain (msg_type, message, anomalies) tuple, for the parser's own use (it runs for
    every message). `anomalies` is empty and may be shared when there are none: read it, do not add to it."""
    body = bytes(body)  # no copy for bytes; the fast decoders slice it and their slices must be bytes too
    # The messages every connection has first, without a Reader: the hellos by indexing (None when malformed:
    # then the Reader path below reports what is wrong), Finished and ClientKeyExchange are their whole body.
    message: m.HandshakeBody | None = None
    if msg_type == m.CLIENT_HELLO:
        message = fast_client_hello(body, cache)
    elif msg_type == m.SERVER_HELLO:
        message = fast_server_hello(body, cache)
    elif msg_type == m.FINISHED:
        return msg_type, m.Finished(verify_data=body), _NO_ANOMALIES  # type: ignore[return-value]
    elif msg_type == m.CLIENT_KEY_EXCHANGE:
        return msg_type, m.ClientKeyExchange(raw=body), _NO_ANOMALIES  # type: ignore[return-value]
    elif msg_type == m.CERTIFICATE:
        if cache is not None:
            return _remembered_certificate(body, ctx, base, cache)
        message = fast_certificate(body, ctx)
    elif msg_type == m.SERVER_HELLO_DONE and not body:
        return msg_type, m.ServerHelloDone(), _NO_ANOMALIES  # type: ignore[return-value]
    elif msg_type == m.NEW_SESSION_TICKET:
        message = fast_new_session_ticket(body, ctx)
    elif msg_type == m.SERVER_KEY_EXCHANGE:
        message = fast_server_key_exchange(body, ctx, cache)
    if message is None:
        try:
            message = _decode_with_reader(msg_type, body, ctx, base, cache)
        except TlsParseError as err:
            return msg_type, m.RawHandshake(msg_type=msg_type, body=body, error=err.reason), [
                ("bad_handshake", f"msg_type {msg_type}: {err.reason}", err.offset)]
    reported = msg_type
    if msg_type == m.SERVER_HELLO and message.is_hello_retry_request:  # type: ignore[union-attr]
        reported = m.HELLO_RETRY_REQUEST
    extensions = getattr(message, "extensions", ())
    if not extensions or (cache is not None and extensions is cache.clean_extensions):
        return reported, message, _NO_ANOMALIES  # type: ignore[return-value]
    problems = extension_problems(extensions)
    if not problems:
        return reported, message, _NO_ANOMALIES  # type: ignore[return-value]
    return reported, message, [(name, f"msg_type {msg_type}: {detail}", base) for name, detail in problems]


def _remembered_certificate(body: bytes, ctx: DecodeContext, base: int, cache: ParseCache
                            ) -> tuple[int, m.HandshakeBody, list[tuple[str, str, int]]]:
    """`decode_message` for a Certificate, through the cache: a server sends the same chain on every connection,
    and the same body (read as the same version) decodes to the same immutable message, so each is decoded once and
    every connection that got it holds that one message, its DER blobs once in memory (a connection that stays open
    keeps its summary, and with it its chain: ~1-2 KB a certificate in real traffic). Bodies that do not decode
    are not remembered."""
    key = (ctx.version, body)
    known = cache.certificates.get(key)
    if known is not None:
        return m.CERTIFICATE, known, _NO_ANOMALIES  # type: ignore[return-value]
    message = fast_certificate(body, ctx)
    if message is None:
        try:
            message = decode_certificate(Reader(body, layer=LAYER, base=base), ctx)
        except TlsParseError as err:
            return m.CERTIFICATE, m.RawHandshake(msg_type=m.CERTIFICATE, body=body, error=err.reason), [
                ("bad_handshake", f"msg_type {m.CERTIFICATE}: {err.reason}", err.offset)]
    cache.remember_certificate(key, message)
    return m.CERTIFICATE, message, _NO_ANOMALIES  # type: ignore[return-value]


def _decode_with_reader(msg_type: int, body: bytes, ctx: DecodeContext, base: int,
                        cache: ParseCache | None = None) -> m.HandshakeBody:
    """The Reader-based decoders: every message type, malformed ones raising TlsParseError."""
    r = Reader(body, layer=LAYER, base=base)
    if msg_type == m.CLIENT_HELLO:
        return decode_client_hello(r, cache)
    if msg_type == m.SERVER_HELLO:
        return decode_server_hello(r, cache)
    if msg_type == m.CERTIFICATE:
        return decode_certificate(r, ctx)
    if msg_type == m.SERVER_KEY_EXCHANGE:
        return decode_server_key_exchange(r, ctx, cache)
    if msg_type == m.SERVER_HELLO_DONE:
        _empty_body(r, "server_hello_done")
        return m.ServerHelloDone()
    if msg_type == m.CLIENT_KEY_EXCHANGE:
        return m.ClientKeyExchange(raw=r.rest())
    if msg_type == m.FINISHED:
        return m.Finished(verify_data=r.rest())
    if msg_type == m.CERTIFICATE_REQUEST:
        return decode_certificate_request(r, ctx)
    if msg_type == m.CERTIFICATE_VERIFY:
        return decode_certificate_verify(r, ctx)
    if msg_type == m.NEW_SESSION_TICKET:
        return decode_new_session_ticket(r, ctx)
    if msg_type == m.ENCRYPTED_EXTENSIONS:
        return decode_encrypted_extensions(r)
    if msg_type == m.CERTIFICATE_STATUS:
        return decode_certificate_status(r)
    if msg_type == m.KEY_UPDATE:
        request = r.u8("request_update")
        r.expect_end("key_update")
        return m.KeyUpdate(request_update=request)
    if msg_type == m.HELLO_REQUEST:
        _empty_body(r, "hello_request")
        return m.HelloRequest()
    if msg_type == m.END_OF_EARLY_DATA:
        _empty_body(r, "end_of_early_data")
        return m.EndOfEarlyData()
    # hello_verify_request (DTLS), message_hash, compressed_certificate, drafts' HRR, unassigned
    return m.RawHandshake(msg_type=msg_type, body=body)
