"""Property tests: arbitrary bytes, arbitrary splits, arbitrary gaps and mutated real handshakes never make the
connection raise or report an internal error, and the buffers it holds stay within its caps after every call."""
from __future__ import annotations

import ssl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsparse import Event, ParseAnomaly, RawHandshake, Sender, TlsConnection
from tlsparse.extensions import HelloContext, decode_extension

C, S = Sender.CLIENT, Sender.SERVER
CAPS = {"max_record": 4096, "max_handshake": 8192, "max_buffer": 4096 + 5}

# One operation: (direction, bytes) or (direction, gap length).
operation = st.tuples(st.sampled_from([C, S]), st.one_of(st.binary(max_size=600), st.integers(1, 5000)))


def apply(conn: TlsConnection, ops) -> list[Event]:
    events: list[Event] = []
    for frame, (sender, item) in enumerate(ops, 1):
        if isinstance(item, int):
            out = conn.receive_gap(sender, item, frame, float(frame))
        else:
            out = conn.receive(sender, item, frame, float(frame))
        events += out
        for side in (C, S):
            record_buf, hs_buf = conn.buffer_sizes(side)
            assert record_buf <= conn.max_buffer
            assert hs_buf <= conn.max_handshake + 4
        assert not [e for e in out if isinstance(e, ParseAnomaly) and e.name == "internal_error"], out
    return events


@settings(max_examples=300, deadline=None)
@given(st.lists(operation, max_size=30))
def test_arbitrary_bytes_and_gaps_never_raise(ops) -> None:
    apply(TlsConnection(**CAPS), ops)


@st.composite
def record_soup(draw) -> bytes:
    """Byte strings made of plausible-looking records with random bodies: gets deep into the decoders."""
    out = b""
    for _ in range(draw(st.integers(1, 6))):
        ct = draw(st.sampled_from([20, 21, 22, 23, 24, 25]))
        if ct == 22:
            body = b""
            for _ in range(draw(st.integers(1, 3))):
                msg_type = draw(st.sampled_from([0, 1, 2, 4, 5, 8, 11, 12, 13, 14, 15, 16, 20, 22, 24, 99]))
                payload = draw(st.binary(max_size=200))
                length = draw(st.one_of(st.just(len(payload)), st.integers(0, 2**24 - 1)))
                body += bytes([msg_type]) + length.to_bytes(3, "big") + payload
        else:
            body = draw(st.binary(max_size=40))
        version = draw(st.sampled_from([0x0300, 0x0301, 0x0303, 0x0304]))
        out += bytes([ct]) + version.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body
    return out


@settings(max_examples=400, deadline=None)
@given(record_soup(), st.lists(st.integers(1, 50), max_size=20))
def test_plausible_records_with_random_bodies(data: bytes, cuts: list[int]) -> None:
    ops, pos = [], 0
    for cut in cuts:
        ops.append((S, data[pos:pos + cut]))
        pos += cut
    ops.append((S, data[pos:]))
    apply(TlsConnection(**CAPS), ops)


@pytest.fixture(scope="module")
def real_handshakes(pki) -> list[list[tuple[Sender, bytes]]]:
    import conftest

    out = []
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.load_verify_locations(pki.ca_cert)
        client.set_alpn_protocols(["h2", "http/1.1"])
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(pki.server_chain, pki.server_key)
        client.maximum_version = server.maximum_version = version
        out.append(conftest.run_tls(client, server).chunks)
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.large_base_example])
@given(st.data())
def test_mutated_real_handshakes(real_handshakes, data) -> None:
    """Flip, drop and insert bytes in real TLS 1.2/1.3 transcripts, cut them anywhere, lose pieces."""
    import conftest

    chunks = data.draw(st.sampled_from(real_handshakes))
    ops = []
    for sender, payload in chunks:
        payload = conftest.mutate(data.draw, payload, edits=(0, 4), drop=20, insert=10)
        cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(payload))), max_size=8))))
        lost = data.draw(st.sets(st.integers(0, len(cuts)), max_size=2))
        for i, (start, end) in enumerate(zip([0, *cuts], [*cuts, len(payload)])):
            if end > start:
                ops.append((sender, end - start) if i in lost else (sender, bytes(payload[start:end])))
    apply(TlsConnection(**CAPS), ops)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.large_base_example])
@given(st.data())
def test_any_split_of_a_real_handshake_gives_the_same_events(real_handshakes, data) -> None:
    chunks = data.draw(st.sampled_from(real_handshakes))
    whole = apply(TlsConnection(), chunks)
    ops = []
    for sender, payload in chunks:
        cuts = sorted(set(data.draw(st.lists(st.integers(1, len(payload)), max_size=10))))
        ops += [(sender, payload[a:b]) for a, b in zip([0, *cuts], [*cuts, len(payload)]) if b > a]
    split = apply(TlsConnection(), ops)

    def key(e):
        return (type(e).__name__, e.sender, e.offset, getattr(e, "message", None), getattr(e, "length", None))

    assert [key(e) for e in whole] == [key(e) for e in split]


def test_huge_declared_lengths_are_capped() -> None:
    """A handshake message claiming 16 MB and a record claiming 64 KB: anomalies, no unbounded buffering."""
    conn = TlsConnection(**CAPS)
    msg = bytes([11]) + (2**24 - 1).to_bytes(3, "big") + b"\x00" * 1000
    events = conn.receive(S, bytes.fromhex("16030303ec") + msg, 1, 1.0)
    assert [e.name for e in events if isinstance(e, ParseAnomaly)] == ["handshake_too_long"]
    for i in range(50):  # keep sending the rest of that message: it is skipped, not held
        record = bytes.fromhex("1603030fa0") + b"\x00" * 0xFA0
        events = conn.receive(S, record, 2 + i, 2.0 + i)
        assert conn.buffer_sizes(S) == (0, 0)
    events = conn.receive(S, bytes.fromhex("16030cffff") + b"\x00" * 100, 99, 99.0)
    assert [e.name for e in events if isinstance(e, ParseAnomaly)] == ["record_too_long"]
    assert conn.buffer_sizes(S)[0] <= 4


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([0, 1, 2, 4, 5, 8, 11, 12, 13, 14, 15, 16, 20, 22, 24, 254, 77]), st.binary(max_size=300),
       st.sampled_from([None, 0x0300, 0x0301, 0x0303, 0x0304, 0x7F12]),
       st.sampled_from([None, 0x0033, 0xC02F, 0x1301, 0x00AE]))
def test_decoders_raise_nothing(msg_type: int, body: bytes, version: int | None, suite: int | None) -> None:
    """Each handshake decoder, in each version context, on arbitrary bodies: a message or RawHandshake(error)."""
    from tlsparse.handshake import DecodeContext, decode_handshake

    decoded = decode_handshake(msg_type, body, DecodeContext(version=version, cipher_suite=suite))
    if isinstance(decoded.message, RawHandshake) and decoded.message.error:
        assert decoded.anomalies and decoded.anomalies[0][0] == "bad_handshake"


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([0, 1, 5, 10, 11, 13, 15, 16, 18, 21, 22, 23, 27, 28, 35, 41, 42, 43, 44, 45, 49, 50, 51,
                        0x4469, 0x44CD, 0xFE0D, 0xFF01]),
       st.binary(max_size=80), st.sampled_from(list(HelloContext)))
def test_extension_decoders_raise_nothing(ext_type: int, data: bytes, ctx: HelloContext) -> None:
    ext = decode_extension(ext_type, data, ctx)
    assert ext.data == data and (ext.parsed is None) >= (ext.error is not None)
