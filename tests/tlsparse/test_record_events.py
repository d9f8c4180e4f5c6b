"""`TlsConnection(every_record=False)`: the events are those of the default parser without the RecordSeen of any
record but each direction's first, on real handshakes fed whole, byte by byte and with gaps, and on arbitrary
bytes."""
from __future__ import annotations

import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsparse import RecordSeen, Sender, TlsConnection

CLIENT, SERVER = Sender.CLIENT, Sender.SERVER


def _first_records_only(events: list) -> list:
    """What every_record=False should give: the events, without RecordSeen after each side's first."""
    seen: set[Sender] = set()
    out = []
    for e in events:
        if type(e) is RecordSeen:
            if e.sender in seen:
                continue
            seen.add(e.sender)
        out.append(e)
    return out


def _feed(steps, every_record: bool, split: int | None = None) -> list:
    """steps: (sender, bytes) fed with receive, or (sender, int) fed as a gap of that many bytes."""
    conn = TlsConnection(every_record=every_record)
    events: list = []
    frame = 0
    for sender, data in steps:
        if isinstance(data, int):
            frame += 1
            events += conn.receive_gap(sender, data, frame, float(frame))
            continue
        step = split or len(data) or 1
        for i in range(0, len(data), step):
            frame += 1
            events += conn.receive(sender, data[i:i + step], frame, float(frame))
    return events


def _check(steps, split: int | None = None) -> list:
    full = _feed(steps, True, split)
    lean = _feed(steps, False, split)
    assert lean == _first_records_only(full)
    return full


@pytest.fixture(scope="module")
def transcripts(pki) -> list:
    import conftest

    out = []
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        for app_data in (b"ping", b"x" * 3000):
            client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            client.load_verify_locations(pki.ca_cert)
            server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server.load_cert_chain(pki.server_chain, pki.server_key)
            client.maximum_version = server.maximum_version = version
            out.append(conftest.run_tls(client, server, app_data=app_data).chunks)
    return out


def test_real_handshakes_whole_and_byte_by_byte(transcripts) -> None:
    for chunks in transcripts:
        full = _check(chunks)
        assert sum(type(e) is RecordSeen for e in full) > 2  # there were later records to leave out
        _check(chunks, split=1)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_real_handshakes_with_gaps_and_junk(transcripts, data) -> None:
    """Gaps and garbage spliced in at random places: resynchronisation, skipped bodies and anomalies included."""
    chunks = list(data.draw(st.sampled_from(transcripts)))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(chunks)))
        sender = data.draw(st.sampled_from([CLIENT, SERVER]))
        junk = data.draw(st.one_of(st.integers(1, 400), st.binary(min_size=1, max_size=30)))
        chunks.insert(i, (sender, junk))
    _check(chunks, split=data.draw(st.sampled_from([None, 7, 100])))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([CLIENT, SERVER]),
                          st.one_of(st.binary(max_size=60), st.integers(1, 50),
                                    st.builds(lambda ct, body: bytes([ct, 3, 3]) + len(body).to_bytes(2, "big")
                                              + body, st.integers(19, 25), st.binary(max_size=20)))),
                max_size=12))
def test_arbitrary_streams(steps) -> None:
    _check(steps)


def test_sslv2_hello_is_a_first_record() -> None:
    """The SSLv2 CLIENT-HELLO's RecordSeen (the direction's first record) stays."""
    hello = bytes([0x01, 0x00, 0x02, 0x00, 0x03, 0x00, 0x00, 0x00, 0x10, 0x01, 0x00, 0x80]) + bytes(range(16))
    record = bytes([0x80 | (len(hello) >> 8), len(hello) & 0xFF]) + hello
    tls = bytes([22, 3, 1, 0, 4, 1, 0, 0, 0])
    full = _check([(CLIENT, record), (CLIENT, tls)])
    assert [e.version for e in _first_records_only(full) if type(e) is RecordSeen] == [0x0002]


def _given_up_matches_parsing(steps) -> None:
    conn = TlsConnection()
    for frame, (sender, data) in enumerate(steps, 1):
        if isinstance(data, int):
            conn.receive_gap(sender, data, frame, float(frame))
        else:
            conn.receive(sender, data, frame, float(frame))
        assert conn.given_up == (not conn.parsing(CLIENT) and not conn.parsing(SERVER))


def test_given_up_once_both_directions_are_not_tls() -> None:
    """`given_up` (read by the pipeline after every chunk) says what `parsing` says of both directions."""
    talk = b"EHLO mail.example.org\r\n" * 4000  # plain text past the STARTTLS prelude cap
    steps = [(CLIENT, talk[:50_000]), (SERVER, talk[:10]), (CLIENT, talk[50_000:]), (SERVER, talk), (CLIENT, b"x")]
    _given_up_matches_parsing(steps)
    conn = TlsConnection()
    for sender, data in steps:
        conn.receive(sender, data, 1, 1.0)
    assert conn.given_up


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([CLIENT, SERVER]),
                          st.one_of(st.binary(max_size=60), st.integers(1, 50),
                                    st.just(b"GET / HTTP/1.1\r\n" * 3000))), max_size=8))
def test_given_up_agrees_with_parsing(steps) -> None:
    _given_up_matches_parsing(steps)
