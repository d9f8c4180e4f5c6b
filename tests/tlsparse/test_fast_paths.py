"""The parser's fast paths against its reference paths: the indexing decoders of hellos and extensions must give
exactly what the Reader-based decoders give (or decline, leaving the reference to report the error), on real
hellos, mutated real hellos and bodies built to be almost well-formed."""
from __future__ import annotations

import ssl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsparse import ClientHello, HandshakeSeen, Sender, ServerHello
from tlsparse.errors import TlsParseError
from tlsparse.extensions import (
    _DECODERS,
    _FAST_DECODERS,
    HelloContext,
    _parse_extensions_checked,
    decode_extension,
    parse_extensions,
)
from tlsparse.handshake import (
    LAYER,
    decode_client_hello,
    decode_server_hello,
    fast_client_hello,
    fast_server_hello,
)
from tlsparse.reader import Reader

EXT_TYPES = sorted(_DECODERS) + [0x0A0A, 0x1234]


def _reference(decode, body: bytes):
    """(message, None) or (None, (offset, reason)) from a Reader-based decoder."""
    try:
        return decode(Reader(body, layer=LAYER)), None
    except TlsParseError as err:
        return None, (err.offset, err.reason)


@st.composite
def framed_body(draw) -> bytes:
    """Bodies shaped like extension payloads: an outer u8/u16 length (right or not) over items that carry their
    own u8/u16 length (right or not), sometimes with trailing bytes: most of them get past the first checks."""
    items = b""
    for _ in range(draw(st.integers(0, 4))):
        head = draw(st.sampled_from(["", "u8", "u16", "u8+u16", "u16+u16"]))
        payload = draw(st.binary(max_size=12))
        size = len(payload) if draw(st.booleans()) else draw(st.integers(0, 20))
        if head == "u8":
            items += bytes([size]) + payload
        elif head == "u16":
            items += size.to_bytes(2, "big") + payload
        elif head == "u8+u16":  # server_name entries: name_type, u16 name
            items += bytes([draw(st.integers(0, 1))]) + size.to_bytes(2, "big") + payload
        elif head == "u16+u16":  # key_share entries: group, u16 key
            items += draw(st.binary(min_size=2, max_size=2)) + size.to_bytes(2, "big") + payload
        else:
            items += payload
    outer = draw(st.sampled_from(["", "u8", "u16"]))
    size = len(items) if draw(st.booleans()) else draw(st.integers(0, 40))
    if outer == "u8":
        items = bytes([size & 0xFF]) + items
    elif outer == "u16":
        items = size.to_bytes(2, "big") + items
    return items + draw(st.sampled_from([b"", b"\x00", b"\x01\x02"]))


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from(EXT_TYPES), st.one_of(framed_body(), st.binary(max_size=40)), st.sampled_from(list(HelloContext)))
def test_fast_extension_decoders_agree_with_the_reference(ext_type: int, data: bytes, ctx: HelloContext) -> None:
    block = (4 + len(data)).to_bytes(2, "big") + ext_type.to_bytes(2, "big") + len(data).to_bytes(2, "big") + data
    fast = parse_extensions(Reader(block, layer=LAYER), ctx)
    assert fast == (decode_extension(ext_type, data, ctx),)


def test_every_fast_decoder_has_a_reference() -> None:
    assert set(_FAST_DECODERS) <= set(_DECODERS)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=60), st.sampled_from(list(HelloContext)))
def test_extension_blocks_agree_with_the_reference(block: bytes, ctx: HelloContext) -> None:
    """Whole blocks, broken framing included: the same extensions, or the same error at the same offset."""
    def run(parse):
        r = Reader(block, layer=LAYER, base=100)
        try:
            return parse(r, ctx), r.pos, None
        except TlsParseError as err:
            return None, None, (err.offset, err.reason)

    assert run(parse_extensions) == run(_parse_extensions_checked)


@pytest.fixture(scope="module")
def real_hellos(pki) -> list[tuple[int, bytes]]:
    """(msg_type, body) of the plaintext hellos of real TLS 1.2 and 1.3 handshakes, with and without ALPN."""
    import conftest

    out = []
    for run in conftest.version_and_alpn_handshakes(pki):
        _, events = conftest.parse_all(run.chunks)
        out += [(e.msg_type, e.raw[4:]) for e in events
                if isinstance(e, HandshakeSeen) and isinstance(e.message, ClientHello | ServerHello)]
    return out


def test_real_hellos_take_the_fast_path(real_hellos) -> None:
    for msg_type, body in real_hellos:
        fast = fast_client_hello(body) if msg_type == 1 else fast_server_hello(body)
        reference = decode_client_hello if msg_type == 1 else decode_server_hello
        assert fast is not None
        assert (fast, None) == _reference(reference, body)


@settings(max_examples=1500, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.large_base_example])
@given(st.data())
def test_mutated_hellos_agree_with_the_reference(real_hellos, data) -> None:
    """Flip, drop and insert bytes of real hellos: whatever the fast decoder returns is what the reference
    returns; when the reference fails, the fast decoder has declined."""
    import conftest

    msg_type, body = data.draw(st.sampled_from(real_hellos))
    body = conftest.mutate(data.draw, body, edits=(1, 4), drop=8, insert=6, truncate=True)
    fast = fast_client_hello(body) if msg_type == 1 else fast_server_hello(body)
    message, error = _reference(decode_client_hello if msg_type == 1 else decode_server_hello, body)
    if fast is not None:
        assert (fast, error) == (message, None)
    assert error is None or fast is None


def test_hello_split_at_every_byte_gives_the_same_events(real_hellos) -> None:
    """A ClientHello record cut at each byte boundary: the same events as the record in one piece."""
    import conftest

    body = next(body for msg_type, body in real_hellos if msg_type == 1)
    data = conftest.record(22, conftest.handshake_msg(1, body))
    _, whole = conftest.parse_all([(Sender.CLIENT, data)])

    def key(e):
        return type(e).__name__, e.offset, getattr(e, "message", None), getattr(e, "length", None)

    for cut in range(1, len(data)):
        _, split = conftest.parse_all([(Sender.CLIENT, data[:cut]), (Sender.CLIENT, data[cut:])])
        assert [key(e) for e in split] == [key(e) for e in whole], cut


def _reference_message(msg_type: int, body: bytes, ctx):
    """What the Reader path alone makes of a message: the message, or RawHandshake with the error."""
    from tlsparse.handshake import _decode_with_reader
    from tlsparse.messages import RawHandshake

    try:
        return _decode_with_reader(msg_type, body, ctx, 0)
    except TlsParseError as err:
        return RawHandshake(msg_type=msg_type, body=body, error=err.reason)


@pytest.fixture(scope="module")
def real_messages(pki) -> list[tuple[int, bytes]]:
    """(msg_type, body) of every plaintext handshake message of real TLS 1.2 handshakes (ECDHE and RSA key
    exchange, session tickets) and of a TLS 1.3 one."""
    import conftest

    out = []
    for version, ciphers in ((ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-GCM-SHA256"),
                             (ssl.TLSVersion.TLSv1_2, None), (ssl.TLSVersion.TLSv1_3, None)):
        _, events = conftest.parse_all(conftest.run_tls(*conftest.up_to(pki, version, client_ciphers=ciphers)).chunks)
        out += [(e.msg_type if e.msg_type != 6 else 2, e.raw[4:]) for e in events if isinstance(e, HandshakeSeen)]
    return out


@settings(max_examples=1500, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.large_base_example])
@given(st.data())
def test_every_message_agrees_with_the_reader_path(real_messages, data) -> None:
    """decode_handshake (fast paths first) against the Reader path alone, on real and mutated messages of every
    type, in each version context (known 1.2, known 1.3, unknown)."""
    import conftest

    from tlsparse.handshake import DecodeContext, decode_handshake

    msg_type, body = data.draw(st.sampled_from(real_messages))
    body = conftest.mutate(data.draw, body, edits=(0, 3), drop=8, insert=6)
    ctx = DecodeContext(version=data.draw(st.sampled_from([None, 0x0301, 0x0303, 0x0304])),
                        cipher_suite=data.draw(st.sampled_from([None, 0xC02B, 0xC02F, 0x009C, 0x1301])))
    decoded = decode_handshake(msg_type, body, ctx)
    assert decoded.message == _reference_message(msg_type, body, ctx)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_real_handshake_cut_at_every_byte_gives_the_same_events(pki, version) -> None:
    """Each direction's stream of a real handshake (with application data and close_notify) cut in two at every
    byte boundary: the same events as the stream in one piece. Covers the record loop's fast path for opaque
    records, the one-message-per-record path and the skipped-body path against the general ones."""
    import conftest

    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(pki.ca_cert)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(pki.server_chain, pki.server_key)
    client.maximum_version = server.maximum_version = version
    transcript = conftest.run_tls(client, server, app_data=b"x" * 3000)

    def key(e):
        return (type(e).__name__, e.sender, e.offset, getattr(e, "message", None), getattr(e, "length", None),
                getattr(e, "handshake_phase", None), getattr(e, "name", None))

    for sender in (Sender.CLIENT, Sender.SERVER):
        stream = transcript.stream(sender)
        other = [(who, data) for who, data in transcript.chunks if who is not sender]
        _, whole = conftest.parse_all([*other, (sender, stream)])
        assert any(isinstance(e, HandshakeSeen) for e in whole if e.sender is sender)
        for cut in range(1, len(stream)):
            _, split = conftest.parse_all([*other, (sender, stream[:cut]), (sender, stream[cut:])])
            assert [key(e) for e in split] == [key(e) for e in whole], cut


@pytest.mark.parametrize("count", [511, 512, 513, 600])
@pytest.mark.parametrize("padding", [0, 1, 3])
def test_blocks_near_the_extension_cap_agree_with_the_reference(count: int, padding: int) -> None:
    """Blocks of `count` extensions (empty ones, 4 bytes each, so 512 of them fill exactly the length under which
    the fast loop keeps no count; `padding` bytes more in the last one), in every context: the same extensions, or
    the same error."""
    body = b"".join((0x1000 + i).to_bytes(2, "big") + b"\x00\x00" for i in range(count - 1))
    last = (0x1000 + count).to_bytes(2, "big") + padding.to_bytes(2, "big") + b"\x00" * padding
    block = body + last

    def run(parse, ctx):
        r = Reader(len(block).to_bytes(2, "big") + block + b"\x01", layer=LAYER, base=7)
        try:
            return parse(r, ctx), r.pos, None
        except TlsParseError as err:
            return None, None, (err.offset, err.reason)

    for ctx in HelloContext:
        fast, reference = run(parse_extensions, ctx), run(_parse_extensions_checked, ctx)
        assert fast == reference
        assert (fast[2] is None) == (count <= 512)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=40), st.binary(max_size=3), st.sampled_from(list(HelloContext)))
def test_extension_blocks_cut_short_agree_with_the_reference(block: bytes, after: bytes, ctx: HelloContext) -> None:
    """A block whose last header is cut by its end, with or without bytes of the message after it (the fast loop
    reads a cut header's length from them)."""
    def run(parse):
        r = Reader(len(block).to_bytes(2, "big") + block + after, layer=LAYER, base=100)
        try:
            return parse(r, ctx), r.pos, None
        except TlsParseError as err:
            return None, None, (err.offset, err.reason)

    assert run(parse_extensions) == run(_parse_extensions_checked)
