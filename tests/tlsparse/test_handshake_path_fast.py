"""The shortcuts on a connection's handshake path through `TlsConnection.receive` give what the general code gives:
bytes inside a record being skipped (a long encrypted record arriving piece by piece) only move the counters, and
a stream that starts with a whole plausible record header goes straight to record parsing. Real TLS 1.2 and 1.3
handshakes with application data, cut anywhere, against the same streams fed whole."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsparse import Sender, TlsConnection

FRAME, TS = 7, 1.5  # one frame for every piece: then the events do not depend on where the stream was cut


@pytest.fixture(scope="module")
def transcripts(pki) -> list:
    import conftest

    return [run.chunks for run in conftest.version_and_alpn_handshakes(pki)]


def _fed(chunks, cuts_of=None) -> tuple[list, list]:
    """(events, each direction's stream offset and buffers at the end) of the chunks fed in order, each cut
    where `cuts_of(chunk index, length)` says."""
    conn = TlsConnection()
    events = []
    for i, (sender, data) in enumerate(chunks):
        cuts = sorted(set(cuts_of(i, len(data)))) if cuts_of is not None else []
        start = 0
        for cut in [*cuts, len(data)]:
            events += conn.receive(sender, data[start:cut], FRAME, TS)
            start = cut
    ends = [(conn.stream_offset(s), conn.buffer_sizes(s), conn.parsing(s), conn.encrypted(s))
            for s in (Sender.CLIENT, Sender.SERVER)]
    return events, ends


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_streams_cut_anywhere_give_the_events_of_whole_streams(transcripts, data) -> None:
    chunks = data.draw(st.sampled_from(transcripts))

    def cuts_of(index: int, length: int) -> list[int]:
        return data.draw(st.lists(st.integers(0, length), max_size=12), label=f"cuts {index}")

    assert _fed(chunks, cuts_of) == _fed(chunks)


def test_streams_fed_byte_by_byte_give_the_events_of_whole_streams(transcripts) -> None:
    for chunks in transcripts:
        assert _fed(chunks, lambda _, length: range(1, length)) == _fed(chunks)


def _record(content_type: int, body: bytes) -> bytes:
    return bytes([content_type, 3, 3]) + len(body).to_bytes(2, "big") + body


@pytest.mark.parametrize("step", [1, 2, 5, 100, 999, 1000, 1001])
def test_a_long_opaque_record_fed_in_pieces_counts_like_the_whole_record(step: int) -> None:
    """An application-data record of 3000 bytes after a ChangeCipherSpec (so opaque), then another record: the
    same events and offsets whatever the piece size, a gap inside the long record included."""
    from tlsparse import ChangeCipherSpecSeen

    stream = _record(20, b"\x01") + _record(23, bytes(range(256)) * 11 + b"x" * 184) + _record(23, b"y" * 40)

    def run(pieces: list[bytes | int]) -> tuple[list, int]:
        conn = TlsConnection()
        events = []
        for piece in pieces:
            if isinstance(piece, int):
                events += conn.receive_gap(Sender.SERVER, piece, FRAME, TS)
            else:
                events += conn.receive(Sender.SERVER, piece, FRAME, TS)
        return events, conn.stream_offset(Sender.SERVER)

    whole = run([stream])
    assert any(isinstance(e, ChangeCipherSpecSeen) for e in whole[0])
    assert run([stream[i:i + step] for i in range(0, len(stream), step)]) == whole
    # 300 bytes lost inside the long record: counted, as for the record fed whole.
    lost = [stream[:1000], 300, stream[1300:2000], stream[2000:]]
    assert run(lost)[1] == whole[1]
    assert run(lost) == run([stream[:1000], 300, stream[1300:]])
