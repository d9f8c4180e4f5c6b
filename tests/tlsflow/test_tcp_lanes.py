"""The fast lane (TcpReassembler.lanes / count_lane, taken by the pcap walker and the frame handlers) gives exactly
what `add`'s full code gives: the same events in the same order and the same facts for every connection, whatever
happens to a flow after it stops wanting data (retransmissions, holes, zero windows, ACKs beyond the window, FIN,
RST, idle expiry, port reuse, timestamps going backwards), in Ethernet, Linux cooked (v1, v2) and raw-IP captures, IPv4 and IPv6.
The reference also stops a flow's reassembly only at its next segment (no `_stopped_early`)."""
from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import capture_file_bytes, link_frame
from tlsflow.capture import CaptureError, open_capture
from tlsflow.capture import linktypes as lt
from tlsflow.packet import ACK, FIN, PSH, RST, SYN
from tlsflow.tcp import ConnectionClosed, ConnectionOpened, StreamChunk, TcpReassembler

CLIENTS = [("10.0.0.1", 40000), ("10.0.0.2", 40001), ("10.0.0.1", 40002), ("2001:db8::1", 40003)]
SERVER4, SERVER6, SERVER_PORT = "10.0.1.1", "2001:db8::443", 443
REASSEMBLER = {"idle_timeout": 10.0, "linger_timeout": 2.0}


class FullPath(TcpReassembler):
    """Every segment through `add`'s full code, and reassembly stopped only when a flow's next segment comes: the
    reference the fast lane (and stopping right after the consumer stopped wanting data) must equal."""

    def count_lane(self, *args: object) -> bool:
        return False

    def _stopped_early(self, flow: object) -> None:
        pass


def _ip(text: str) -> bytes:
    import socket

    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


def _frame(link_type: int, src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int,
           window: int, payload: bytes, ttl: int, ip_id: int, options: bool, vlan: bool) -> bytes:
    tcp_options = b"\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01" if options else b""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      (20 + len(tcp_options)) // 4 << 4, flags, window, 0, 0) + tcp_options + payload
    if ":" in src:
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, ttl, _ip(src), _ip(dst)) + tcp
    else:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), ip_id, 0x4000, ttl, 6, 0, _ip(src),
                         _ip(dst)) + tcp
    frame = link_frame(link_type, ip, vlan)
    return frame if link_type in (lt.RAW, lt.LINUX_SLL, lt.LINUX_SLL2) else frame + b"\x00" * 4  # Ethernet trailer


STEPS = (0.001, 0.01, 0.5, 1.5, 3.0, 12.0, -0.002)  # between segments, in capture seconds
# Times that go back and forth by up to the idle timeout and more, and land on it exactly (count_lane's bound on the
# next segment's time, _lane_time, must give the full test's answer).
STEPS_BACK_AND_FORTH = (0.001, 2.5, 4.0, 4.999, 5.0, 6.0, 9.9, 10.0, 10.5, -2.5, -4.0, -6.0, -11.0)


@st.composite
def scenarios(draw, steps=STEPS):  # type: ignore[no-untyped-def]
    """Segments of a few connections, as (ts, frame fields...), plus after how many chunks each flow stops
    wanting data."""
    n_flows = draw(st.integers(1, len(CLIENTS)))
    state = []
    # Sequence numbers anywhere, or close enough to 2^32 that the streams wrap (offsets computed in a shortcut
    # when no wrap is involved must agree with the general, wrap-safe computation).
    isns = st.one_of(st.integers(0, (1 << 32) - 1), st.integers((1 << 32) - 3000, (1 << 32) - 1))
    for i in range(n_flows):
        state.append({"cisn": draw(isns), "sisn": draw(isns),
                      "csent": 0, "ssent": 0, "ttl": draw(st.sampled_from([64, 57, 128])), "id": 100 * i})
    ts = 1000.0
    packets = []
    for _ in range(draw(st.integers(1, 60))):
        i = draw(st.integers(0, n_flows - 1))
        f = state[i]
        cip, cport = CLIENTS[i]
        sip = SERVER6 if ":" in cip else SERVER4
        ts += draw(st.sampled_from(steps))
        action = draw(st.sampled_from(["syn", "synack", "data", "data", "data", "ack", "ack", "fin", "rst",
                                       "newsyn"]))
        from_client = draw(st.booleans())
        if action in ("syn", "newsyn"):
            if action == "newsyn":
                f["cisn"] = draw(st.integers(0, (1 << 32) - 1))
                f["csent"] = f["ssent"] = 0
            fields = (cip, sip, cport, SERVER_PORT, f["cisn"], 0, SYN, 0)
        elif action == "synack":
            fields = (sip, cip, SERVER_PORT, cport, f["sisn"], f["cisn"] + 1, SYN | ACK, 0)
        else:
            isn, sent, peer_isn, peer_sent = ((f["cisn"], "csent", f["sisn"], f["ssent"]) if from_client else
                                              (f["sisn"], "ssent", f["cisn"], f["csent"]))
            size = draw(st.integers(1, 300)) if action == "data" else 0
            shift = draw(st.sampled_from([0, 0, 0, -40, -300, 25, 2000])) if action == "data" else 0
            seq = isn + 1 + f[sent] + shift
            if shift == 0:
                f[sent] += size
            ack_shift = draw(st.sampled_from([0, 0, 0, -10, 5, 1, 1 << 31]))
            ack = peer_isn + 1 + peer_sent + ack_shift
            flags = {"data": ACK | PSH, "ack": ACK, "fin": FIN | ACK, "rst": RST | ACK}[action]
            if action == "fin":
                f[sent] += 1
            fields = ((cip, sip, cport, SERVER_PORT) if from_client else (sip, cip, SERVER_PORT, cport)) + (
                seq, ack, flags, size)
        src, dst, sport, dport, seq, ack, flags, size = fields
        f["id"] += 1
        packets.append((ts, src, dst, sport, dport, seq, ack, flags, draw(st.sampled_from([0, 8192, 65535])),
                        bytes((j * 7 + size) % 256 for j in range(size)), f["ttl"], f["id"] & 0xFFFF,
                        draw(st.booleans()), draw(st.sampled_from([False, False, False, True]))))
    stop_after = draw(st.lists(st.integers(0, 3), min_size=len(CLIENTS) + 4, max_size=len(CLIENTS) + 4))
    return packets, stop_after


def _write(path: Path, link_type: int, packets: list, pcapng: bool = False) -> None:  # type: ignore[type-arg]
    frames = [(round(ts * 1e6), _frame(link_type, *fields)) for ts, *fields in packets]
    path.write_bytes(capture_file_bytes(link_type, [(micros, frame, len(frame)) for micros, frame in frames], pcapng))


def _run(path: Path, reassembler: TcpReassembler, stop_after: list[int], fast: bool,  # type: ignore[type-arg]
         skips: list[int] | None = None) -> tuple[list, list, object]:
    """Events as comparable tuples, the closed connections, and the capture's stats. `skips`: after each chunk of
    a flow that still wants data, the consumer says it only skips the next that many bytes of that direction
    (`skip_until`, as the pipeline does inside a long record body), by flow id (0: it reads them)."""
    events: list = []  # type: ignore[type-arg]
    closed = []
    chunks: dict[int, int] = {}
    last_ts = None

    def consume(event) -> None:  # type: ignore[no-untyped-def]
        conn = event.conn
        if isinstance(event, ConnectionOpened):
            chunks[conn.flow_id] = 0
            if stop_after[conn.flow_id % len(stop_after)] == 0:
                conn.wants_data = False
            events.append(("opened", conn.flow_id))
        elif isinstance(event, StreamChunk):
            if conn.wants_data:
                chunks[conn.flow_id] += 1
                if chunks[conn.flow_id] >= stop_after[conn.flow_id % len(stop_after)]:
                    conn.wants_data = False
                elif skips and skips[conn.flow_id % len(skips)] and not event.gap:
                    reassembler.skip_until(conn, event.sender,
                                           event.offset + len(event.data) + skips[conn.flow_id % len(skips)] - 1)
            events.append(("chunk", conn.flow_id, event.sender, event.offset, event.data, event.gap, event.frame,
                           event.ts))
        else:
            assert isinstance(event, ConnectionClosed)
            closed.append(conn)
            events.append(("closed", conn.flow_id, conn.close_reason))

    with open_capture(path) as cap:
        for pkt in cap.packets(counter=reassembler) if fast else cap.packets():
            if pkt.__class__ is float:
                last_ts = pkt
                continue
            last_ts = pkt.ts
            for event in reassembler.add(pkt):
                consume(event)
        for event in reassembler.finish():
            consume(event)
        stats = cap.stats
    events.append(("last_ts", last_ts))
    return events, closed, stats


def _facts(conn) -> dict:  # type: ignore[no-untyped-def,type-arg]
    return {f.name: (dataclasses.asdict(getattr(conn, f.name)) if f.name in ("client", "server")
                     else getattr(conn, f.name))
            for f in dataclasses.fields(conn) if f.name != "handshake"}


def _compare(tmp_path: Path, link_type: int, packets: list, stop_after: list[int],  # type: ignore[type-arg]
             pcapng: bool = False, skips: list[int] | None = None) -> None:
    path = tmp_path / f"lanes-{link_type}.pcap"
    _write(path, link_type, packets, pcapng)
    ref_events, ref_closed, ref_stats = _run(path, FullPath(**REASSEMBLER), stop_after, fast=False, skips=skips)
    events, closed, stats = _run(path, TcpReassembler(**REASSEMBLER), stop_after, fast=True, skips=skips)
    assert events == ref_events
    assert [_facts(c) for c in closed] == [_facts(c) for c in ref_closed]
    assert dataclasses.asdict(stats) == dataclasses.asdict(ref_stats)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=scenarios(), link_type=st.sampled_from([lt.ETHERNET, lt.RAW, lt.LINUX_SLL, lt.LINUX_SLL2]),
       pcapng=st.booleans())
def test_fast_lane_gives_the_full_paths_events_and_facts(tmp_path: Path, case, link_type: int,  # type: ignore[no-untyped-def]
                                                         pcapng: bool) -> None:
    packets, stop_after = case
    _compare(tmp_path, link_type, packets, stop_after, pcapng)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=scenarios(STEPS_BACK_AND_FORTH), pcapng=st.booleans())
def test_fast_lane_with_times_going_back_and_forth(tmp_path: Path, case, pcapng: bool) -> None:  # type: ignore[no-untyped-def]
    packets, stop_after = case
    _compare(tmp_path, lt.ETHERNET, packets, stop_after, pcapng)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=scenarios(), skips=st.lists(st.sampled_from([0, 1, 40, 300, 700, 5000]), min_size=len(CLIENTS) + 4,
                                        max_size=len(CLIENTS) + 4),
       link_type=st.sampled_from([lt.ETHERNET, lt.RAW, lt.LINUX_SLL2]), pcapng=st.booleans())
def test_segments_held_back_inside_a_skipped_body_take_the_fast_lane_with_the_same_result(  # type: ignore[no-untyped-def]
        tmp_path: Path, case, skips: list[int], link_type: int, pcapng: bool) -> None:
    """A flow that still wants data, whose consumer skips record bodies (`skip_until`): the segments held back
    and the bare ACKs come through count_lane (`_count_skipped`), with the events, facts (the retransmission
    history's comparisons included) and stats of add's full code, whatever else happens (segments out of order,
    retransmitted with other bytes, FIN, RST, times that run expiry)."""
    packets, stop_after = case
    _compare(tmp_path, link_type, packets, [n + 2 for n in stop_after], pcapng, skips)


def _handshake_then(later: list[tuple[float, str, int, int, int]]) -> list:  # type: ignore[type-arg]
    """One IPv4 connection: handshake and a little data both ways, then `later` segments given as
    (ts, who, seq offset, ack offset, flags) with 'c'/'s' for the sender."""
    cip, cport = CLIENTS[0]
    cisn, sisn = 0xFFFFFF00, 5000  # the client's sequence numbers wrap

    def seg(ts, who, off, ack_off, flags, size=0):  # type: ignore[no-untyped-def]
        if who == "c":
            return (ts, cip, SERVER4, cport, SERVER_PORT, cisn + 1 + off, sisn + 1 + ack_off, flags, 8192,
                    b"c" * size, 64, int(ts * 10) & 0xFFFF, False, False)
        return (ts, SERVER4, cip, SERVER_PORT, cport, sisn + 1 + off, cisn + 1 + ack_off, flags, 8192, b"s" * size,
                50, int(ts * 10) & 0xFFFF, False, False)

    packets = [
        (1.0, cip, SERVER4, cport, SERVER_PORT, cisn, 0, SYN, 8192, b"", 64, 1, False, False),
        (1.1, SERVER4, cip, SERVER_PORT, cport, sisn, cisn + 1, SYN | ACK, 8192, b"", 50, 1, False, False),
        seg(1.2, "c", 0, 0, ACK),
        seg(1.3, "c", 0, 0, ACK | PSH, 100),
        seg(1.4, "s", 0, 100, ACK | PSH, 1400),
        seg(1.5, "c", 100, 1400, ACK | PSH, 50),
        seg(1.6, "s", 1400, 150, ACK | PSH, 60),
    ]
    return packets + [seg(ts, who, off, ack_off, flags, size) for ts, who, off, ack_off, flags, size in later]


def test_after_the_handshake_retransmission_fin_and_linger(tmp_path: Path) -> None:
    later = [(2.0, "c", 150, 1460, ACK | PSH, 30), (2.1, "c", 150, 1460, ACK | PSH, 30),  # retransmission
             (2.2, "s", 1460, 180, ACK, 0), (2.3, "s", 1460, 180, ACK | FIN, 0), (2.4, "c", 180, 1461, ACK, 0),
             (2.5, "c", 180, 1461, ACK | FIN, 0), (2.6, "s", 1461, 181, ACK, 0), (3.0, "c", 181, 1461, ACK, 0),
             (9.0, "c", 181, 1461, ACK, 0)]
    for link_type in (lt.ETHERNET, lt.RAW, lt.LINUX_SLL, lt.LINUX_SLL2):
        for pcapng in (False, True):
            _compare(tmp_path, link_type, _handshake_then(later), [1], pcapng)


class CountingSkips(TcpReassembler):
    """The fast lane, counting the segments it took for flows that still want data."""

    skipped = 0

    def _count_skipped(self, *args: object) -> bool:
        taken = super()._count_skipped(*args)  # type: ignore[arg-type]
        self.skipped += taken
        return taken


def test_held_back_segments_count_as_retransmitted_without_their_bytes(tmp_path: Path) -> None:
    """Server segments held back inside a skipped body (the consumer wants data, `skip_until` 5,000 bytes ahead)
    and the client's bare ACKs come through the fast lane. Then retransmissions: of a segment the client
    acknowledged, of one with the same bytes, and of one with other bytes: all counted as retransmitted, none
    compared (bytes inside a skipped body are not kept: `TcpReassembler.skip_until`), as add's full code does."""
    later = [(2.0, "s", 1460, 150, ACK, 1000), (2.1, "s", 2460, 150, ACK, 1000), (2.2, "s", 3460, 150, ACK, 1000),
             (2.3, "c", 150, 2460, ACK, 0),  # acknowledges the first only
             (2.4, "s", 1460, 150, ACK, 1000), (2.5, "s", 2460, 150, ACK, 1000), (2.6, "s", 3460, 150, ACK, 1000),
             (2.7, "c", 150, 4460, ACK, 0), (2.8, "s", 4460, 150, ACK | PSH, 2000)]
    packets = _handshake_then(later)
    # Other bytes: the first retransmission (acknowledged before) and the last one (inside the skipped body).
    for i in (len(packets) - 5, len(packets) - 3):
        packets[i] = (*packets[i][:9], b"t" * 1000, *packets[i][10:])
    for link_type in (lt.ETHERNET, lt.LINUX_SLL2):
        for pcapng in (False, True):
            _compare(tmp_path, link_type, packets, [100], pcapng, skips=[5000])
            path = tmp_path / "held.pcap"
            _write(path, link_type, packets, pcapng)
            reassembler = CountingSkips(**REASSEMBLER)
            _events, closed, _stats = _run(path, reassembler, [100], fast=True, skips=[5000])
            # Held back: the last data before the later segments (either side: the consumer skips both), the
            # second and third new server segments (the first runs an expiry pass: add's), two bare ACKs.
            assert reassembler.skipped == 6
            assert closed[0].server.overlap_mismatches == 0
            assert closed[0].server.retransmitted_bytes == 3000


def test_after_the_handshake_rst_idle_expiry_and_port_reuse(tmp_path: Path) -> None:
    later = [(2.0, "s", 1460, 150, ACK | PSH, 1400), (2.1, "c", 150, 2860, ACK, 0), (2.2, "c", 150, 2860, ACK, 0),
             (2.3, "s", 1460, 150, ACK | PSH, 1400),  # the largest segment again, already acknowledged
             (2.4, "c", 150, 2860, ACK, 0), (2.5, "c", 150, 1 << 31, ACK, 0),  # an ACK beyond any window
             (30.0, "c", 150, 2860, ACK, 0),  # idle too long: a new flow
             (31.0, "s", 2860, 150, ACK | RST, 0), (31.5, "c", 150, 2860, ACK, 0)]
    packets = _handshake_then(later)
    cip, cport = CLIENTS[0]
    packets.append((40.0, cip, SERVER4, cport, SERVER_PORT, 77, 0, SYN, 8192, b"", 64, 9, False, False))
    for stop_after in ([1], [0], [3]):
        for link_type in (lt.ETHERNET, lt.RAW, lt.LINUX_SLL, lt.LINUX_SLL2):
            for pcapng in (False, True):
                _compare(tmp_path, link_type, packets, stop_after, pcapng)


def _read_wanting_the_first_chunk_only(cap, reassembler: TcpReassembler, out: list) -> None:
    """Every packet or counted time the reader gives, into `out`, the packets into the reassembler; a flow wants
    no more data from its first chunk on (so it goes to the fast lane at once)."""
    for pkt in cap.packets(counter=reassembler):
        out.append(pkt)
        if pkt.__class__ is not float:
            for event in reassembler.add(pkt):
                if isinstance(event, StreamChunk):
                    event.conn.wants_data = False


@pytest.mark.parametrize("pcapng", [False, True])
@pytest.mark.parametrize("link_type", [lt.ETHERNET, lt.LINUX_SLL, lt.LINUX_SLL2])
def test_counted_segments_are_not_yielded_but_their_time_and_number_are_known(tmp_path: Path, link_type: int,
                                                                             pcapng: bool) -> None:
    later = [(2.0 + k / 10, "cs"[k % 2], 150 if k % 2 == 0 else 1460, 1460 if k % 2 == 0 else 150, ACK, 0)
             for k in range(20)]
    path = tmp_path / "counted.pcap"
    _write(path, link_type, _handshake_then(later), pcapng)
    reassembler = TcpReassembler()
    yielded = []
    with open_capture(path) as cap:
        _read_wanting_the_first_chunk_only(cap, reassembler, yielded)
        assert cap.stats.tcp_packets == cap.stats.frames == 27
    packets = [p for p in yielded if p.__class__ is not float]
    assert len(packets) < 10  # the handshake, and the first segment after the flow stopped wanting data
    assert yielded[-1] == 3.9  # the last segment was counted: its time ends the chunk
    closed = reassembler.finish()[0].conn
    assert closed.client.packets + closed.server.packets == 27 and closed.last_ts == 3.9


@pytest.mark.parametrize("pcapng", [False, True])
def test_a_damaged_capture_gives_the_last_counted_time_before_the_error(tmp_path: Path, pcapng: bool) -> None:
    later = [(2.0 + k / 10, "c", 150, 1460, ACK, 0) for k in range(5)]
    path = tmp_path / "cut.pcap"
    _write(path, lt.ETHERNET, _handshake_then(later), pcapng)
    data = path.read_bytes()
    if pcapng:
        path.write_bytes(data + struct.pack("<II", 6, 13) + bytes(8))  # a block length no block can have
    else:
        path.write_bytes(data + struct.pack("<IIII", 3, 0, 1 << 30, 60))  # a record claiming 1 GiB
    reassembler = TcpReassembler()
    seen = []
    error = None
    with open_capture(path) as cap:
        try:
            _read_wanting_the_first_chunk_only(cap, reassembler, seen)
        except CaptureError as exc:
            error = exc
    assert error is not None and ("1073741824" in str(error) or "impossible length 13" in str(error))
    assert seen[-1] == 2.4


def test_lane_header_bytes_table_equals_the_data_offset_rule() -> None:
    """The walkers' table of IPv4 + TCP header bytes: the payload length `total - table[offset byte]` is the one
    decode computes for a valid data offset (5 words or more), and negative for any IP length when it is invalid."""
    from tlsflow.capture.pcap import LANE_HEADER_BYTES

    for byte in range(256):
        for total in (0, 20, 40, 60, 1500, 0xFFFF):
            if byte >= 0x50:
                assert total - LANE_HEADER_BYTES[byte] == total - 20 - ((byte >> 4) << 2)
            else:
                assert total - LANE_HEADER_BYTES[byte] < 0


@pytest.mark.parametrize("later", [
    # The server's next segment waits behind a hole when the client's chunk makes the consumer stop.
    [(2.0, "s", 1500, 150, ACK | PSH, 100), (2.1, "c", 150, 1460, ACK | PSH, 30)],
    # The client acknowledged server bytes the capture never saw (a hole to declare when the flow ends).
    [(2.0, "c", 150, 1500, ACK, 0), (2.1, "c", 150, 1500, ACK | PSH, 30)],
    # The server's FIN comes after a hole.
    [(2.0, "s", 1500, 150, ACK | FIN, 0), (2.1, "c", 150, 1460, ACK | PSH, 30)],
    # Nothing missing: the flow stops reassembling at the next packet of any flow.
    [(2.0, "s", 1460, 150, ACK, 0), (2.1, "c", 150, 1460, ACK | PSH, 30)],
])
def test_a_flow_that_stops_wanting_data_and_ends_before_its_next_segment(tmp_path: Path, later: list) -> None:  # type: ignore[type-arg]
    """The consumer stops at the flow's fifth chunk; another connection's SYN follows (the next `add`), then the
    capture ends (or the flow idles out): what waits in the flow's buffers or holes is delivered as the
    reference delivers it."""
    cip, cport = CLIENTS[1]
    other = (2.2, cip, SERVER4, cport, SERVER_PORT, 5, 0, SYN, 8192, b"", 64, 9, False, False)
    idle = (30.0, cip, SERVER4, cport, SERVER_PORT, 5, 0, SYN, 8192, b"", 64, 9, False, False)
    for tail in ([other], [other, idle]):
        for link_type in (lt.ETHERNET, lt.RAW):
            for pcapng in (False, True):
                _compare(tmp_path, link_type, _handshake_then(later) + tail, [5], pcapng)


def test_a_side_whose_first_payload_comes_in_the_fast_lane(tmp_path: Path) -> None:
    """The client sends no payload before the flow stops wanting data (at the server's first chunk), then a pure
    ACK and data in the fast lane: its first payload's frame and time are noted as the full path notes them."""
    cip, cport = CLIENTS[0]
    cisn, sisn = 1000, 5000

    def seg(ts, who, off, ack_off, flags, size=0):  # type: ignore[no-untyped-def]
        if who == "c":
            return (ts, cip, SERVER4, cport, SERVER_PORT, cisn + 1 + off, sisn + 1 + ack_off, flags, 8192,
                    b"c" * size, 64, 7, False, False)
        return (ts, SERVER4, cip, SERVER_PORT, cport, sisn + 1 + off, cisn + 1 + ack_off, flags, 8192, b"s" * size,
                50, 9, False, False)

    packets = [
        (1.0, cip, SERVER4, cport, SERVER_PORT, cisn, 0, SYN, 8192, b"", 64, 1, False, False),
        (1.1, SERVER4, cip, SERVER_PORT, cport, sisn, cisn + 1, SYN | ACK, 8192, b"", 50, 1, False, False),
        seg(1.2, "c", 0, 0, ACK),
        seg(1.3, "s", 0, 0, ACK | PSH, 100),  # the chunk after which the flow wants no more data
        seg(1.4, "s", 100, 0, ACK | PSH, 100),
        seg(1.5, "c", 0, 200, ACK),
        seg(1.6, "c", 0, 200, ACK | PSH, 40),
        seg(1.7, "c", 40, 200, ACK | PSH, 40),
    ]
    for link_type in (lt.ETHERNET, lt.LINUX_SLL):
        for pcapng in (False, True):
            _compare(tmp_path, link_type, packets, [1], pcapng)


def test_a_side_going_back_in_time_ends_the_peers_fast_time_test(tmp_path: Path) -> None:
    """The client's segment comes 10 s before the server's last one, and the server's next is then more than the
    idle timeout (10 s) after it: the flow idles out there, as on the full path, although the server's segment is
    within what its previous one allowed (less than half the idle timeout later, before the next expiry)."""
    later = [(8.0, "s", 1460, 150, ACK, 0), (15.0, "c", 150, 1460, ACK, 0), (20.5, "s", 1460, 150, ACK, 0),
             (10.5, "c", 150, 1460, ACK, 0), (20.6, "s", 1460, 150, ACK, 0), (20.7, "s", 1460, 150, ACK, 0)]
    for pcapng in (False, True):
        _compare(tmp_path, lt.ETHERNET, _handshake_then(later), [1], pcapng)
