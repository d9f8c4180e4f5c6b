"""Connection-level behaviour of TCP reassembly: roles, flow life (reuse, idle, linger, eviction), caps, facts,
and the fast path of connections that want no more data."""
from __future__ import annotations

from collections import Counter

from tests.tlsflow.test_tcp_reassembly import (
    CLIENT_ISN,
    HELLO,
    SERVER_ISN,
    C,
    S,
    chunks,
    handshake,
    only_conn,
    packets,
    run,
    seg,
)
from tlsflow.packet import ACK, FIN, PSH, RST, SYN, TcpPacket
from tlsflow.tcp import (
    Connection,
    ConnectionClosed,
    ConnectionOpened,
    DirectionFacts,
    StreamChunk,
    TcpReassembler,
)
from tlsparse.events import Sender

c1, s1 = CLIENT_ISN + 1, SERVER_ISN + 1


def closed(events: list) -> list[Connection]:
    return [e.conn for e in events if isinstance(e, ConnectionClosed)]


def opened(events: list) -> list[Connection]:
    return [e.conn for e in events if isinstance(e, ConnectionOpened)]


def pkt(frame: int, ts: float, src: str, sport: int, dst: str, dport: int, seq: int = 1, payload: bytes = b"",
        flags: int = ACK, ack: int = 1, ttl: int = 64, ip_id: int | None = 1, window: int = 1000) -> TcpPacket:
    return TcpPacket(frame=frame, ts=ts, ip_version=4, src=src, dst=dst, sport=sport, dport=dport, seq=seq, ack=ack,
                     flags=flags, window=window, payload=payload, ttl=ttl, ip_id=ip_id)


# --- roles ---------------------------------------------------------------------------------------------------

def test_roles_from_syn_ack_when_the_syn_was_not_captured() -> None:
    segs = handshake()[1:] + [seg(C, c1, b"data")]
    events = run(segs)
    conn = only_conn(events)
    assert conn.roles_from == "syn" and conn.client_port == 50000 and conn.server_port == 443
    assert conn.server.synack_frame == 1 and conn.client.syn_frame is None
    assert chunks(events, Sender.CLIENT) == [(0, b"data")]  # the SYN-ACK's ACK placed the client's offset 0


def test_mid_stream_roles_from_client_hello_on_the_second_side() -> None:
    """The capture starts mid-connection; the side the ports take for the client (the higher one) speaks first,
    not a ClientHello, then the other side sends one: it is the client after all, and the first side's bytes were
    held until then."""
    r = TcpReassembler()
    a = pkt(1, 1.0, "10.0.0.2", 50000, "10.0.0.1", 40000, seq=777, payload=b"\x17\x03\x03\x00\x01x")
    b = pkt(2, 1.1, "10.0.0.1", 40000, "10.0.0.2", 50000, seq=9000, payload=HELLO)
    assert r.add(a) == []
    events = r.add(b)
    assert isinstance(events[0], ConnectionOpened)
    conn = events[0].conn
    assert conn.roles_from == "client_hello"
    assert (conn.client_ip, conn.client_port) == ("10.0.0.1", 40000)
    assert [(e.sender, e.offset, e.data) for e in events[1:]] == [
        (Sender.SERVER, 0, b"\x17\x03\x03\x00\x01x"), (Sender.CLIENT, 0, HELLO)]
    assert conn.client.first_payload_frame == 2 and conn.server.first_payload_frame == 1


def test_mid_stream_roles_settled_once_the_guessed_server_has_spoken() -> None:
    """Joined in the middle of a download: the server-port side sends records, the client nothing for a while.
    Only the client's first bytes could still be a ClientHello, and that would give the same roles: they are
    settled at once (the server's bytes are not held), and stay when the client does send a ClientHello."""
    r = TcpReassembler()
    record = b"\x17\x03\x03\x00\x01x"
    events = r.add(pkt(1, 1.0, "10.0.0.1", 443, "10.0.0.2", 51000, seq=5, payload=record))
    conn = only_conn(events)
    assert conn.roles_from == "guess" and conn.server_port == 443 and conn.client_port == 51000
    assert chunks(events, Sender.SERVER) == [(0, record)]
    later = r.add(pkt(2, 1.1, "10.0.0.2", 51000, "10.0.0.1", 443, seq=70, payload=HELLO))
    assert chunks(later, Sender.CLIENT) == [(0, HELLO)] and not opened(later)
    assert (conn.client_ip, conn.client_port) == ("10.0.0.2", 51000)


def test_mid_stream_client_hello_split_over_segments() -> None:
    r = TcpReassembler()
    events = []
    for i, part in enumerate([HELLO[:2], HELLO[2:4], HELLO[4:]]):
        events += r.add(pkt(i + 1, 1.0 + i, "10.0.0.1", 443, "10.0.0.2", 60000, seq=100 + sum(
            len(p) for p in [HELLO[:2], HELLO[2:4], HELLO[4:]][:i]), payload=part))
    # Port 443 would say "server", the bytes say "client": the bytes win.
    conn = only_conn(events)
    assert conn.roles_from == "client_hello" and conn.client_port == 443
    assert b"".join(d for _, d in chunks(events, Sender.CLIENT)) == HELLO


def test_sslv2_client_hello() -> None:
    r = TcpReassembler()
    v2 = bytes([0x80, 0x2E, 0x01, 0x00, 0x02])
    events = r.add(pkt(1, 1.0, "10.0.0.9", 443, "10.0.0.8", 3000, seq=5, payload=v2))
    assert only_conn(events).roles_from == "client_hello" and only_conn(events).client_port == 443


def test_roles_guessed_from_ports() -> None:
    r = TcpReassembler()
    a = pkt(1, 1.0, "10.0.0.1", 443, "10.0.0.2", 51000, seq=1, payload=b"\x17\x03\x03\x00\x02ab")
    b = pkt(2, 1.1, "10.0.0.2", 51000, "10.0.0.1", 443, seq=1, payload=b"\x17\x03\x03\x00\x02cd")
    events = r.add(a) + r.add(b)
    conn = only_conn(events)
    assert conn.roles_from == "guess" and conn.server_port == 443 and conn.client_port == 51000
    assert [e.sender for e in events if isinstance(e, StreamChunk)] == [Sender.SERVER, Sender.CLIENT]


def test_roles_guessed_when_the_hold_buffer_fills() -> None:
    r = TcpReassembler(role_buffer_chunks=3)
    events = []
    for i in range(5):  # one side only, never a ClientHello: stop waiting for the other side after 3 chunks
        events += r.add(pkt(i + 1, 1.0, "10.0.0.2", 9000, "10.0.0.1", 60001, seq=10 + 4 * i, payload=b"abcd"))
    assert len(opened(events)) == 1 and opened(events)[0].roles_from == "guess"
    assert opened(events)[0].server_port == 9000
    assert len([e for e in events if isinstance(e, StreamChunk)]) == 5


def test_pure_acks_only_flow_is_opened_and_closed_at_finish() -> None:
    r = TcpReassembler()
    events = r.add(pkt(1, 1.0, "10.0.0.1", 50000, "10.0.0.2", 443)) + r.add(pkt(2, 1.1, "10.0.0.2", 443,
                                                                                "10.0.0.1", 50000))
    assert events == []
    events = r.finish()
    assert [type(e) for e in events] == [ConnectionOpened, ConnectionClosed]
    conn = events[0].conn
    assert conn.server_port == 443 and conn.first_frame == 1 and conn.close_reason == "end_of_capture"
    assert conn.server.packets == 1 and conn.client.packets == 1


# --- flow life -----------------------------------------------------------------------------------------------

def test_port_reuse_after_fin_starts_a_new_flow() -> None:
    first = handshake() + [seg(C, c1, b"one"), seg(C, c1 + 3, flags=FIN | ACK), seg(S, s1, flags=FIN | ACK)]
    second = [seg(C, 90000, flags=SYN), seg(S, 70000, flags=SYN | ACK, ack=90001), seg(C, 90001, b"two")]
    events = run(first + second)
    conns = closed(events)
    assert [c.flow_id for c in conns] == [1, 2]
    assert conns[0].close_reason == "port_reuse" and conns[0].anomalies == []
    assert conns[1].first_frame == len(first) + 1
    by_flow = {c.flow_id: [e.data for e in events if isinstance(e, StreamChunk) and e.conn is c] for c in conns}
    assert by_flow == {1: [b"one"], 2: [b"two"]}
    # flow 1 closed before flow 2 opened
    kinds = [(type(e).__name__, e.conn.flow_id) for e in events if not isinstance(e, StreamChunk)]
    assert kinds == [("ConnectionOpened", 1), ("ConnectionClosed", 1), ("ConnectionOpened", 2),
                     ("ConnectionClosed", 2)]


def test_syn_retransmission_is_the_same_flow() -> None:
    events = run([seg(C, CLIENT_ISN, flags=SYN), seg(C, CLIENT_ISN, flags=SYN)] + handshake()[1:])
    conn = only_conn(events)
    assert conn.client.retransmissions == 1 and conn.client.retransmitted_frames == [2]
    assert conn.client.syn_frame == 1


def test_new_syn_on_an_open_flow_is_a_new_flow_with_anomaly() -> None:
    events = run(handshake() + [seg(C, c1, b"one"), seg(C, 123456, flags=SYN)])
    conns = closed(events)
    assert len(conns) == 2 and conns[0].close_reason == "port_reuse"
    assert "syn_on_open_flow" in conns[0].anomalies


def test_idle_expiry_by_capture_time() -> None:
    r = TcpReassembler(idle_timeout=300.0)
    events = r.add(pkt(1, 1000.0, "10.0.0.1", 50000, "10.0.0.2", 443, payload=HELLO))
    assert closed(events) == []
    # Another flow 200 s later: nothing expires; 301 s after the first packet: the first flow closes, before
    # the new flow's events.
    events = r.add(pkt(2, 1200.0, "10.0.0.3", 50001, "10.0.0.2", 443, payload=HELLO))
    assert closed(events) == []
    events = r.add(pkt(3, 1301.0, "10.0.0.4", 50002, "10.0.0.2", 443, payload=HELLO))
    assert [c.flow_id for c in closed(events)] == [1]
    assert closed(events)[0].close_reason == "idle" and isinstance(events[0], ConnectionClosed)
    assert r.open_flows == 2


def test_idle_flow_packet_after_timeout_starts_a_new_flow() -> None:
    r = TcpReassembler(idle_timeout=10.0, expiry_interval=1e9)  # no sweep: the flow's own packet must tell
    r.add(pkt(1, 0.0, "10.0.0.1", 50000, "10.0.0.2", 443, seq=1, payload=HELLO))
    events = r.add(pkt(2, 11.0, "10.0.0.1", 50000, "10.0.0.2", 443, seq=11, payload=b"more"))
    assert [c.flow_id for c in closed(events)] == [1] and r.open_flows == 1
    events = r.finish()
    assert opened(events)[0].flow_id == 2 and opened(events)[0].first_frame == 2
    assert chunks(events, Sender.CLIENT) == [(0, b"more")]


def test_linger_after_fins_counts_trailing_acks_then_closes() -> None:
    segs = handshake() + [seg(C, c1, b"x", flags=FIN | ACK | PSH), seg(S, s1, flags=FIN | ACK, ack=c1 + 2),
                          seg(C, c1 + 2, flags=ACK, ack=s1 + 1, ts=1002.0)]
    r = TcpReassembler(linger_timeout=5.0)
    events = []
    for p in packets(segs):
        events += r.add(p)
    assert closed(events) == []  # the trailing ACK 2 s later still belongs to the connection
    conn = opened(events)[0]
    assert conn.client.packets == 4 and conn.server.acked_bytes == 1
    events = r.add(pkt(99, 1008.0, "10.9.9.9", 1, "10.9.9.8", 2))
    assert closed(events) == [conn] and conn.close_reason == "closed"


def test_rst_closes_after_linger() -> None:
    r = TcpReassembler(linger_timeout=5.0, idle_timeout=300.0)
    for p in packets(handshake() + [seg(S, s1, flags=RST | ACK, ack=c1)]):
        r.add(p)
    events = r.add(pkt(99, 1010.0, "10.9.9.9", 1, "10.9.9.8", 2))
    assert len(closed(events)) == 1 and closed(events)[0].close_reason == "closed"


def test_flow_table_full_evicts_least_recently_active() -> None:
    r = TcpReassembler(max_flows=2)
    events = []
    events += r.add(pkt(1, 1.0, "10.0.0.1", 1001, "10.0.0.2", 443, flags=SYN, seq=1))
    events += r.add(pkt(2, 2.0, "10.0.0.1", 1002, "10.0.0.2", 443, flags=SYN, seq=1))
    events += r.add(pkt(3, 3.0, "10.0.0.2", 443, "10.0.0.1", 1001, flags=SYN | ACK, seq=7, ack=2))  # flow 1 active
    events += r.add(pkt(4, 4.0, "10.0.0.1", 1003, "10.0.0.2", 443, flags=SYN, seq=1))
    victims = closed(events)
    assert [c.flow_id for c in victims] == [2]
    assert victims[0].close_reason == "evicted" and victims[0].anomalies == ["flow_evicted"]
    assert r.open_flows == 2 and r.flows_evicted == 1
    rest = closed(r.finish())
    assert [c.flow_id for c in rest] == [1, 3]


# --- caps ----------------------------------------------------------------------------------------------------

def test_out_of_order_byte_cap_declares_the_gap_and_goes_on() -> None:
    later = [seg(C, c1 + 10 + 100 * i, bytes([65 + i]) * 100) for i in range(5)]  # 10 bytes lost before them
    events = run(handshake() + later + [seg(C, c1 + 510, b"tail")], max_buffer_per_direction=250)
    conn = only_conn(events)
    assert "reassembly_buffer_bytes_exceeded" in conn.anomalies
    got = chunks(events, Sender.CLIENT)
    assert got[0] == (0, 10)
    assert b"".join(d for _, d in got[1:]) == b"".join(s["payload"] for s in later) + b"tail"
    # the gap was declared while the packets were still arriving, not at finish()
    first_gap = next(e for e in events if isinstance(e, StreamChunk) and e.gap)
    assert first_gap.frame == 6


def test_out_of_order_segment_cap() -> None:
    later = [seg(C, c1 + 1 + i, b"z") for i in range(10)]
    events = run(handshake() + later, max_segments_per_direction=4)
    conn = only_conn(events)
    assert "reassembly_buffer_segments_exceeded" in conn.anomalies
    assert chunks(events, Sender.CLIENT) == [(0, 1)] + [(1 + i, b"z") for i in range(10)]


# --- facts ---------------------------------------------------------------------------------------------------

def test_rst_and_fin_facts() -> None:
    segs = handshake() + [seg(C, c1, HELLO, ip_id=100), seg(S, s1, flags=ACK, ack=c1 + len(HELLO), ip_id=200),
                          seg(S, s1, flags=RST | ACK, ack=c1 + len(HELLO), ttl=33, ip_id=4242),
                          seg(C, c1 + len(HELLO), flags=FIN | ACK, ip_id=101)]
    conn = only_conn(run(segs))
    srv, cli = conn.server, conn.client
    assert (srv.rst_frame, srv.rst_ttl, srv.rst_ip_id, srv.rst_count) == (6, 33, 4242, 1)
    assert srv.rst_ts == 1000.05
    assert srv.ttls == Counter({60: 2})  # the RST's TTL is not among them
    assert (cli.fin_frame, cli.fin_ts) == (7, 1000.06)
    assert (cli.syn_frame, srv.synack_frame, cli.syn_ts, srv.synack_ts) == (1, 2, 1000.0, 1000.01)
    assert srv.acked_bytes == len(HELLO)  # acknowledged the client's data ...
    assert srv.payload_bytes == 0 and srv.first_payload_frame is None  # ... but sent nothing
    assert cli.ttls == Counter({64: 4})


def test_ttls_count_every_packet_outside_rsts() -> None:
    segs = handshake() + [seg(C, c1 + i, b"a", ip_id=1000 + i) for i in range(40)]
    conn = only_conn(run(segs))
    assert sum(conn.client.ttls.values()) == 42


def test_largest_segment_and_whether_it_was_acked() -> None:
    big = b"B" * 1400
    segs = handshake() + [seg(C, c1, b"small"), seg(C, c1 + 5, big), seg(S, s1, ack=c1 + 5),
                          seg(C, c1 + 5, big), seg(C, c1 + 5, big)]
    conn = only_conn(run(segs))
    cli = conn.client
    assert (cli.largest_segment, cli.largest_segment_frame, cli.largest_segment_acked) == (1400, 5, False)
    assert cli.retransmissions == 2 and cli.retransmitted_frames == [7, 8]
    conn = only_conn(run(segs + [seg(S, s1, ack=c1 + 1405)]))
    assert conn.client.largest_segment_acked and conn.server.acked_bytes == 1405


def test_zero_window_and_times() -> None:
    segs = handshake() + [seg(S, s1, window=0, ack=c1), seg(C, c1, b"x", ts=1005.0)]
    conn = only_conn(run(segs))
    assert conn.server.zero_window and not conn.client.zero_window
    assert conn.start == 1000.0 and conn.last_ts == 1005.0 and conn.first_frame == 1
    assert (conn.client.first_ts, conn.client.last_ts) == (1000.0, 1005.0)
    assert (conn.client.first_payload_ts, conn.client.last_payload_frame) == (1005.0, 5)


def test_direction_facts_are_slotted_and_mutable() -> None:
    facts = DirectionFacts()
    facts.packets += 1
    assert not hasattr(facts, "__dict__")
    assert isinstance(facts.ttls, Counter)


# --- wants_data = False --------------------------------------------------------------------------------------

def test_wants_data_false_stops_chunks_and_buffers_but_keeps_counting() -> None:
    r = TcpReassembler()
    events = []
    for p in packets(handshake() + [seg(C, c1, HELLO)]):
        events += r.add(p)
    conn = opened(events)[0]
    conn.wants_data = False
    later = [seg(C, c1 + 100, b"ahead" * 10), seg(C, c1 + len(HELLO), b"next"), seg(C, c1 + len(HELLO), b"next"),
             seg(S, s1, b"server data", ack=c1 + 5), seg(C, c1, b"x", flags=FIN | ACK)]
    events = []
    for p in packets(later, t0=1001.0):
        events += r.add(p)
    events += r.finish()
    assert not [e for e in events if isinstance(e, StreamChunk)]
    assert [type(e) for e in events] == [ConnectionClosed]
    assert conn.client.packets == 7 and conn.server.payload_bytes == 11
    assert conn.client.payload_bytes == len(HELLO) + 50 + 4 + 4 + 1
    # below the highest byte seen: both "next" (filling the hole, then repeating it) and the old "x"
    assert conn.client.retransmissions == 3
    assert conn.client.fin_frame is not None and conn.client.gaps == 0
    assert conn.server.acked_bytes == 5


def test_wants_data_false_holds_no_buffers() -> None:
    r = TcpReassembler()
    events = []
    for p in packets(handshake() + [seg(C, c1 + 10, b"waiting")]):
        events += r.add(p)
    flow, _ = r._flows[("10.0.0.1", 50000, "10.0.0.2", 443)]
    assert flow.sides[0].buffered_bytes == 7
    opened(events)[0].wants_data = False
    r.add(packets([seg(C, c1 + 17, b"more")], t0=1001.0)[0])
    assert flow.sides[0].segments == [] and flow.sides[0].buffered_bytes == 0 and not flow.sides[0].history


def test_events_order_per_connection() -> None:
    segs = handshake() + [seg(C, c1, HELLO), seg(S, s1, b"\x16\x03\x03\x00\x01\x02"), seg(C, c1 + 20, b"late")]
    events = run(segs)
    assert isinstance(events[0], ConnectionOpened) and isinstance(events[-1], ConnectionClosed)
    assert all(isinstance(e, StreamChunk) for e in events[1:-1])


def test_wants_data_false_flow_still_lingers_and_closes_after_the_last_ack() -> None:
    r = TcpReassembler(linger_timeout=5.0)
    events = []
    for p in packets(handshake()):
        events += r.add(p)
    conn = opened(events)[0]
    conn.wants_data = False
    close = [seg(C, c1, b"bye", flags=FIN | ACK | PSH, ack=s1), seg(S, s1, flags=FIN | ACK, ack=c1 + 4),
             seg(C, c1 + 4, flags=ACK, ack=s1 + 1)]
    for p in packets(close, t0=1001.0):
        assert r.add(p) == []
    assert conn.client.acked_bytes == 0 and conn.server.acked_bytes == 3
    events = r.add(pkt(50, 1007.0, "10.9.9.9", 1, "10.9.9.8", 2))  # another flow, 6 s later
    assert closed(events) == [conn] and conn.close_reason == "closed"


def test_ipv6_flow_has_hop_limits_for_ttls() -> None:
    r = TcpReassembler()
    a = TcpPacket(frame=1, ts=1.0, ip_version=6, src="2001:db8::1", dst="2001:db8::2", sport=50000, dport=443,
                  seq=10, ack=0, flags=SYN, window=1000, payload=b"", ttl=64, ip_id=None)
    b = TcpPacket(frame=2, ts=1.1, ip_version=6, src="2001:db8::2", dst="2001:db8::1", sport=443, dport=50000,
                  seq=99, ack=11, flags=SYN | ACK, window=1000, payload=b"", ttl=57, ip_id=None)
    events = r.add(a) + r.add(b) + r.finish()
    conn = only_conn(events)
    assert conn.ip_version == 6 and conn.client_ip == "2001:db8::1" and conn.server.ttls == Counter({57: 1})
    assert conn.client.ttls == Counter({64: 1})


def test_expire_by_an_outside_clock_for_live_mode() -> None:
    r = TcpReassembler(idle_timeout=300.0, linger_timeout=5.0)
    first = r.add(pkt(1, 1000.0, "10.0.0.1", 50000, "10.0.0.2", 443, payload=HELLO))
    assert [type(e) for e in first] == [ConnectionOpened, StreamChunk]
    assert r.expire(1200.0) == []
    events = r.expire(1301.0)
    assert [type(e) for e in events] == [ConnectionClosed]
    assert events[-1].conn.close_reason == "idle" and r.open_flows == 0
