"""Expiry and eviction take flows least recently active first: the reassembler's queues (heaps fixed up when read)
give the same closes, in the same order, as looking for the flow whose last packet came first, whatever the
packets (timestamps that go back, port reuse, resets, FINs, a full flow table)."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tlsflow.packet import ACK, FIN, PSH, RST, SYN, TcpPacket
from tlsflow.tcp import ConnectionClosed, TcpReassembler

ENDPOINTS = [("10.0.0.1", 40000 + i, "10.0.0.9", 443) for i in range(6)]
FLAGS = [SYN, SYN | ACK, ACK, ACK | PSH, FIN | ACK, RST, RST | ACK]


class LeastRecentByScan(TcpReassembler):
    """The definition: the flow of the table whose last packet has the lowest frame number."""

    @staticmethod
    def _oldest(queue, table):  # type: ignore[no-untyped-def, override]
        return min(table.values(), key=lambda flow: flow.last_frame, default=None)


@st.composite
def packets(draw):  # type: ignore[no-untyped-def]
    out = []
    ts = 1_700_000_000.0
    seqs: dict[tuple, int] = {}
    for frame in range(1, draw(st.integers(1, 60)) + 1):
        a, sport, b, dport = draw(st.sampled_from(ENDPOINTS))
        forward = draw(st.booleans())
        src, sp, dst, dp = (a, sport, b, dport) if forward else (b, dport, a, sport)
        flags = draw(st.sampled_from(FLAGS))
        ts += draw(st.sampled_from([0.0, 0.001, 0.3, 0.9, 1.7, 4.0, -0.2, -1.5]))
        payload = b"x" * draw(st.sampled_from([0, 0, 10, 100])) if flags & ACK else b""
        seq = seqs.get((src, sp), draw(st.integers(0, 2**32 - 1)))
        seqs[(src, sp)] = (seq + len(payload) + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF
        ack = seqs.get((dst, dp), 0)
        out.append(TcpPacket(frame, ts, 4, src, dst, sp, dp, seq, ack, flags, 65535, payload, 64, frame & 0xFFFF))
    return out


def _closes(reassembler: TcpReassembler, pkts: list[TcpPacket]) -> list[tuple[int, str | None, int]]:
    closes = []
    for pkt in pkts:
        for event in reassembler.add(pkt):
            if isinstance(event, ConnectionClosed):
                closes.append((event.conn.flow_id, event.conn.close_reason, pkt.frame))
        # A queue holds twice the flows of its table at most, plus a few, counting those gone since its last push.
        assert len(reassembler._open_queue) <= 2 * reassembler.max_flows + 65
        assert len(reassembler._closing_queue) <= 2 * reassembler.max_flows + 65
    for event in reassembler.finish():
        if isinstance(event, ConnectionClosed):
            closes.append((event.conn.flow_id, event.conn.close_reason, -1))
    return closes


@settings(max_examples=200, deadline=None)
@given(packets(), st.integers(1, 4), st.sampled_from([0.5, 1.0, 3.0]), st.sampled_from([0.25, 1.0, 2.0]))
def test_closes_come_in_the_order_of_the_last_packets(pkts, max_flows, idle, linger):
    def make(cls):  # type: ignore[no-untyped-def]
        return cls(max_flows=max_flows, idle_timeout=idle, linger_timeout=linger, expiry_interval=0.5)

    assert _closes(make(TcpReassembler), pkts) == _closes(make(LeastRecentByScan), pkts)


def test_many_short_connections_keep_the_queues_small():
    """Connections that end one after another behind a long-lived idle one: the entries of the gone ones are not
    kept for as long as that one stays (the queue is made again from the table)."""
    reassembler = TcpReassembler(idle_timeout=10_000.0, linger_timeout=0.5, expiry_interval=0.5)
    frame = 0
    ts = 1_700_000_000.0

    def send(src_port: int, flags: int, seq: int = 0, ack: int = 0) -> None:
        nonlocal frame, ts
        frame += 1
        ts += 0.01
        reassembler.add(TcpPacket(frame, ts, 4, "10.0.0.1", "10.0.0.9", src_port, 443, seq, ack, flags, 65535, b"",
                                  64, frame & 0xFFFF))

    send(1000, SYN)  # stays open and idle for the whole test
    for port in range(2000, 4000):
        send(port, SYN)
        send(port, RST)
    assert len(reassembler._open_queue) <= 2 * len(reassembler._open) + 65
    assert len(reassembler._closing_queue) <= 2 * len(reassembler._closing) + 65
