"""TCP reassembly, gopacket style: tables of segments in, chunks out (per direction, in stream order)."""
from __future__ import annotations

import pytest

from tlsflow.packet import ACK, FIN, PSH, SYN, TcpPacket
from tlsflow.tcp import ConnectionClosed, ConnectionOpened, StreamChunk, TcpReassembler
from tlsparse.events import Sender

C, S = "c", "s"  # who sends a segment: the client (10.0.0.1:50000) or the server (10.0.0.2:443)
CLIENT_ISN, SERVER_ISN = 1000, 5000
HELLO = bytes([0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0, 0, 1, 0])  # starts like a ClientHello


def seg(who: str, seq: int, payload: bytes = b"", flags: int = ACK | PSH, ack: int = 0, **kw) -> dict:
    return dict(who=who, seq=seq, payload=payload, flags=flags, ack=ack, **kw)


def packets(segments: list[dict], *, t0: float = 1000.0, step: float = 0.01) -> list[TcpPacket]:
    out = []
    for i, s in enumerate(segments):
        client = s["who"] == C
        out.append(TcpPacket(
            frame=s.get("frame", i + 1), ts=s.get("ts", t0 + i * step), ip_version=4,
            src="10.0.0.1" if client else "10.0.0.2", dst="10.0.0.2" if client else "10.0.0.1",
            sport=s.get("sport", 50000) if client else 443, dport=443 if client else s.get("sport", 50000),
            seq=s["seq"] & 0xFFFFFFFF, ack=s["ack"] & 0xFFFFFFFF, flags=s["flags"], window=s.get("window", 65535),
            payload=s["payload"], ttl=s.get("ttl", 64 if client else 60), ip_id=s.get("ip_id", i)))
    return out


def run(segments: list[dict], finish: bool = True, **kw) -> list:
    r = TcpReassembler(**kw)
    events = []
    for p in packets(segments):
        events += r.add(p)
    if finish:
        events += r.finish()
    return events


def handshake(client_isn: int = CLIENT_ISN, server_isn: int = SERVER_ISN) -> list[dict]:
    return [seg(C, client_isn, flags=SYN), seg(S, server_isn, flags=SYN | ACK, ack=client_isn + 1),
            seg(C, client_isn + 1, ack=server_isn + 1, flags=ACK)]


def chunks(events: list, sender: Sender) -> list[tuple[int, bytes | int]]:
    """(offset, data) for data, (offset, gap length) for gaps, checking that offsets are contiguous."""
    got = [(e.offset, e.data if not e.gap else e.gap) for e in events
           if isinstance(e, StreamChunk) and e.sender is sender]
    pos = got[0][0] if got else 0
    for offset, item in got:
        assert offset == pos, f"chunk at {offset}, expected {pos}: {got}"
        pos += item if isinstance(item, int) else len(item)
    return got


def only_conn(events: list):
    conns = {id(e.conn): e.conn for e in events}
    assert len(conns) == 1
    return next(iter(conns.values()))


c1 = CLIENT_ISN + 1  # client's stream offset 0

# name, segments after the handshake, expected client chunks (offset, bytes | gap length)
TABLE = [
    ("in order",
     [seg(C, c1, b"hello"), seg(C, c1 + 5, b"world")],
     [(0, b"hello"), (5, b"world")]),
    ("reordered",
     [seg(C, c1 + 5, b"world"), seg(C, c1, b"hello")],
     [(0, b"hello"), (5, b"world")]),
    ("three reversed",
     [seg(C, c1 + 6, b"ghi"), seg(C, c1 + 3, b"def"), seg(C, c1, b"abc")],
     [(0, b"abc"), (3, b"def"), (6, b"ghi")]),
    ("retransmission not duplicated",
     [seg(C, c1, b"hello"), seg(C, c1, b"hello"), seg(C, c1 + 5, b"world")],
     [(0, b"hello"), (5, b"world")]),
    ("partial overlap with delivered data: only the new tail",
     [seg(C, c1, b"hello"), seg(C, c1 + 3, b"loWOR")],
     [(0, b"hello"), (5, b"WOR")]),
    ("partial overlap with buffered data: first data wins",
     [seg(C, c1 + 5, b"world"), seg(C, c1 + 3, b"XXYYY"), seg(C, c1, b"hel")],
     [(0, b"hel"), (3, b"XX"), (5, b"world")]),
    ("full overlap in buffer: first data wins",
     [seg(C, c1 + 5, b"world"), seg(C, c1 + 5, b"WORLD"), seg(C, c1, b"hello")],
     [(0, b"hello"), (5, b"world")]),
    ("segment spanning a buffered one keeps the buffered bytes",
     [seg(C, c1 + 4, b"MID"), seg(C, c1, b"abcdefghij")],
     [(0, b"abcd"), (4, b"MID"), (7, b"hij")]),
    ("in-order segment overlapping a buffered one",
     [seg(C, c1 + 3, b"DEF"), seg(C, c1, b"abcde")],
     [(0, b"abc"), (3, b"DEF")]),
    ("lost segment, peer ACKs beyond the hole: gap then data",
     [seg(C, c1, b"hello"), seg(C, c1 + 10, b"after"), seg(S, SERVER_ISN + 1, ack=c1 + 15, flags=ACK)],
     [(0, b"hello"), (5, 5), (10, b"after")]),
    ("lost segment, connection ends: gap then data",
     [seg(C, c1, b"hello"), seg(C, c1 + 10, b"after")],
     [(0, b"hello"), (5, 5), (10, b"after")]),
    ("last segment lost before the FIN: gap up to the FIN",
     [seg(C, c1, b"hello"), seg(C, c1 + 12, flags=FIN | ACK)],
     [(0, b"hello"), (5, 7)]),
    ("ACK of the FIN is not a lost byte",
     [seg(C, c1, b"hello", flags=FIN | ACK | PSH), seg(S, SERVER_ISN + 1, ack=c1 + 6, flags=ACK)],
     [(0, b"hello")]),
    ("capture shows a segment's ACK before the segment: not a loss",
     [seg(C, c1, b"hello"), seg(S, SERVER_ISN + 1, ack=c1 + 10, flags=ACK), seg(C, c1 + 5, b"world")],
     [(0, b"hello"), (5, b"world")]),
    ("ACK ahead of everything seen, the segment never comes: gap at the end",
     [seg(C, c1, b"hello"), seg(S, SERVER_ISN + 1, ack=c1 + 10, flags=ACK)],
     [(0, b"hello"), (5, 5)]),
    ("ACK ahead, then a later segment: the acknowledged hole is a gap at once",
     [seg(C, c1, b"hello"), seg(S, SERVER_ISN + 1, ack=c1 + 10, flags=ACK), seg(C, c1 + 10, b"later")],
     [(0, b"hello"), (5, 5), (10, b"later")]),
    ("peer ACK beyond two holes",
     [seg(C, c1 + 2, b"cc"), seg(C, c1 + 6, b"gg"), seg(S, SERVER_ISN + 1, ack=c1 + 10, flags=ACK)],
     [(0, 2), (2, b"cc"), (4, 2), (6, b"gg"), (8, 2)]),
]


@pytest.mark.parametrize("name,segments,expected", TABLE, ids=[t[0] for t in TABLE])
def test_table(name: str, segments: list[dict], expected: list) -> None:
    events = run(handshake() + segments)
    assert chunks(events, Sender.CLIENT) == expected
    assert isinstance(events[0], ConnectionOpened) and isinstance(events[-1], ConnectionClosed)
    conn = only_conn(events)
    assert conn.roles_from == "syn"
    assert (conn.client_ip, conn.client_port, conn.server_ip, conn.server_port) == ("10.0.0.1", 50000,
                                                                                    "10.0.0.2", 443)


def test_wrap_at_2_32() -> None:
    isn = (1 << 32) - 4  # offset 0 at 2^32 - 3: the stream crosses zero after three bytes
    segs = handshake(client_isn=isn) + [seg(C, isn + 1 + 6, b"GHIJ"), seg(C, isn + 1, b"ABCDEF"),
                                        seg(C, isn + 1 + 3, b"DEF"), seg(C, isn + 1 + 10, b"KL")]
    events = run(segs)
    assert chunks(events, Sender.CLIENT) == [(0, b"ABCDEF"), (6, b"GHIJ"), (10, b"KL")]
    conn = only_conn(events)
    assert conn.client.retransmissions == 1 and conn.client.retransmitted_bytes == 3
    assert conn.client.stream_bytes == 12


def test_wrap_server_ack_and_gap() -> None:
    """The server's ACK crosses 2^32 too, and declares the lost bytes a gap."""
    isn = (1 << 32) - 2
    segs = handshake(client_isn=isn) + [seg(C, isn + 1, b"ab"), seg(S, SERVER_ISN + 1, ack=isn + 1 + 6)]
    events = run(segs)
    assert chunks(events, Sender.CLIENT) == [(0, b"ab"), (2, 4)]
    assert only_conn(events).server.acked_bytes == 6


def test_retransmission_counted() -> None:
    segs = handshake() + [seg(C, c1, b"hello"), seg(C, c1, b"hello"), seg(C, c1, b"hello"), seg(C, c1 + 3, b"loXY")]
    events = run(segs)
    conn = only_conn(events)
    assert conn.client.retransmissions == 3
    assert conn.client.retransmitted_frames == [5, 6, 7]
    assert conn.client.retransmitted_bytes == 5 + 5 + 2
    assert conn.client.payload_bytes == 19 and conn.client.stream_bytes == 7
    assert conn.anomalies == []


def test_overlap_with_different_bytes_is_an_anomaly() -> None:
    for later in ([seg(C, c1, b"hello"), seg(C, c1, b"HELLO")],  # against delivered data
                  [seg(C, c1 + 5, b"world"), seg(C, c1 + 5, b"WORLD"), seg(C, c1, b"hello")]):  # buffered
        events = run(handshake() + later)
        conn = only_conn(events)
        assert "overlap_data_mismatch" in conn.anomalies
        assert conn.client.overlap_mismatches == 1
        assert b"".join(d for _, d in chunks(events, Sender.CLIENT)) in (b"hello", b"helloworld")


def test_gap_chunk_frame_and_facts() -> None:
    segs = handshake() + [seg(C, c1, b"hello"), seg(C, c1 + 10, b"after"), seg(S, SERVER_ISN + 1, ack=c1 + 15)]
    events = run(segs, finish=False)
    gap = [e for e in events if isinstance(e, StreamChunk) and e.gap]
    assert len(gap) == 1 and gap[0].data == b"" and gap[0].gap == 5 and gap[0].offset == 5
    assert gap[0].frame == 6  # the server's ACK declared it
    after = [e for e in events if isinstance(e, StreamChunk) and e.data == b"after"]
    assert after[0].frame == 6
    conn = only_conn(events)
    assert (conn.client.gaps, conn.client.gap_bytes) == (1, 5)
    assert conn.client.out_of_order_segments == 1


def test_chunks_of_a_reordered_segment_carry_the_filling_frame() -> None:
    segs = handshake() + [seg(C, c1 + 5, b"world"), seg(C, c1, b"hello")]
    events = run(segs)
    got = [(e.data, e.frame) for e in events if isinstance(e, StreamChunk)]
    assert got == [(b"hello", 5), (b"world", 5)]


def test_server_stream_and_both_directions() -> None:
    s1 = SERVER_ISN + 1
    segs = handshake() + [seg(C, c1, HELLO, ack=s1), seg(S, s1, b"\x16\x03\x03SH", ack=c1 + len(HELLO)),
                          seg(S, s1 + 5, b"cert", ack=c1 + len(HELLO)), seg(C, c1 + len(HELLO), b"fin", ack=s1 + 9)]
    events = run(segs)
    assert chunks(events, Sender.CLIENT) == [(0, HELLO), (len(HELLO), b"fin")]
    assert chunks(events, Sender.SERVER) == [(0, b"\x16\x03\x03SH"), (5, b"cert")]
    conn = only_conn(events)
    assert conn.server.acked_bytes == len(HELLO) and conn.client.acked_bytes == 9


def test_stream_chunk_is_frozen_and_compares_by_value() -> None:
    a = StreamChunk(None, Sender.CLIENT, 0, b"x", 0, 1, 1.0)  # type: ignore[arg-type]
    b = StreamChunk(conn=None, sender=Sender.CLIENT, offset=0, data=b"x", gap=0, frame=1, ts=1.0)  # type: ignore[arg-type]
    assert a == b and a.data == b"x" and a.frame == 1
    with pytest.raises(AttributeError):  # FrozenInstanceError is an AttributeError
        a.gap = 3  # type: ignore[misc]
    assert not hasattr(a, "__dict__")
