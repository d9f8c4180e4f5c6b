"""The TTLs a direction keeps (DirectionFacts.ttls), which the reassembler counts in runs while the connection is
open: once it is closed they equal counting every packet one by one (the Counter's keys in order of first
appearance), whichever path the packets took (full code, or the lane of a connection that wants no more data) and
whatever the RSTs among them."""
from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from tlsflow.packet import ACK, PSH, RST, SYN, TcpPacket
from tlsflow.tcp import ConnectionClosed, ConnectionOpened, StreamChunk, TcpReassembler

CLIENT, SERVER = ("10.0.0.1", 40000), ("10.0.1.1", 443)
CISN, SISN = 1000, 9000


@st.composite
def segments(draw):  # type: ignore[no-untyped-def]
    """(from_client, flags, payload length, ttl, ip_id) after a SYN / SYN-ACK, and after how many chunks the
    consumer stops wanting data."""
    ttls = draw(st.lists(st.sampled_from([64, 63, 128, 57, 0, 255]), min_size=1, max_size=3, unique=True))
    later = draw(st.lists(st.tuples(st.booleans(), st.sampled_from([ACK, ACK | PSH, ACK | PSH, RST | ACK]),
                                    st.integers(0, 40), st.sampled_from(ttls), st.integers(0, 0xFFFF)),
                          max_size=60))
    return later, draw(st.integers(0, 4))


def _run(later: list, stop_after: int) -> tuple[object, list]:  # type: ignore[type-arg]
    sent = {True: 0, False: 0}
    pkts = [TcpPacket(1, 1.0, 4, CLIENT[0], SERVER[0], CLIENT[1], SERVER[1], CISN, 0, SYN, 1000, b"", 64, 7),
            TcpPacket(2, 1.001, 4, SERVER[0], CLIENT[0], SERVER[1], CLIENT[1], SISN, CISN + 1, SYN | ACK, 1000,
                      b"", 60, 8)]
    for frame, (from_client, flags, size, ttl, ip_id) in enumerate(later, start=3):
        src, dst = (CLIENT, SERVER) if from_client else (SERVER, CLIENT)
        seq = (CISN if from_client else SISN) + 1 + sent[from_client]
        ack = (SISN if from_client else CISN) + 1 + sent[not from_client]
        payload = bytes(size) if not flags & RST else b""
        sent[from_client] += len(payload)
        pkts.append(TcpPacket(frame, 1.0 + frame / 1000, 4, src[0], dst[0], src[1], dst[1], seq, ack, flags, 1000,
                              payload, ttl, ip_id))
    reassembler = TcpReassembler()
    chunks = 0
    closed = []
    for pkt in pkts:
        for event in reassembler.add(pkt):
            if isinstance(event, ConnectionOpened) and stop_after == 0:
                event.conn.wants_data = False
            elif isinstance(event, StreamChunk):
                chunks += 1
                if chunks >= stop_after:
                    event.conn.wants_data = False
            elif isinstance(event, ConnectionClosed):
                closed.append(event.conn)
    closed += [e.conn for e in reassembler.finish() if isinstance(e, ConnectionClosed)]
    return closed, pkts


@settings(max_examples=200, deadline=None)
@given(case=segments())
def test_ttls_equal_counting_every_packet(case) -> None:  # type: ignore[no-untyped-def]
    later, stop_after = case
    closed, pkts = _run(later, stop_after)
    assert len(closed) == 1
    conn = closed[0]
    for facts, address in ((conn.client, CLIENT[0]), (conn.server, SERVER[0])):
        ttls: Counter[int] = Counter()
        for pkt in pkts:
            if pkt.src == address and not pkt.flags & RST:
                ttls[pkt.ttl] += 1
        assert facts.ttls == ttls and list(facts.ttls) == list(ttls)  # same counts, keys in the same order
