"""A connection of which only a SYN has been seen is kept compact (`tlsflow.tcp.reassembler._LoneSyn`) until its
next packet or its end: the same facts, records and closes as a full flow made at the SYN, for every capture;
a flow table full of them (a SYN flood, a scan of a silent host) holds no streams.

Before: each such connection cost ~2.7 KB (its two sides' streams and facts); 200,000 unanswered SYNs with the
table full at 100,000 peaked at 363 MiB (now 171 MiB, bench/README)."""
from __future__ import annotations

import gc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.gen_flood import write_flood
from tlsflow.capture import open_capture
from tlsflow.parallel_ranges import ranges_in_one_process
from tlsflow.pipeline import FlowAnalyzer, iter_flow_records
from tlsflow.tcp import ConnectionClosed, ConnectionOpened, StreamChunk, TcpReassembler
from tlsflow.tcp import reassembler as reassembler_module
from tlsflow.tcp.stream import HalfStream

from .test_tcp_expiry_order import packets

ALWAYS = {"lone_syns_from": 0}
NEVER = {"lone_syns_from": 1 << 62}  # every SYN makes a full flow at once, as before


def _records(path: Path, ca: Path | None = None, **reassembler_options) -> list[dict]:  # type: ignore[no-untyped-def]
    """The records of a capture, through a reassembler made with `reassembler_options`."""
    from analyzers.certchecks import TrustStore

    trust = TrustStore.default().with_pem_file(str(ca)) if ca is not None else None
    analyzer = FlowAnalyzer(str(path), trust=trust)
    analyzer.reassembler = TcpReassembler(**reassembler_options)
    out = []
    with open_capture(path) as cap:
        for pkt in cap.packets(counter=analyzer.reassembler):
            if pkt.__class__ is float:
                analyzer.last_ts = pkt
                continue
            analyzer.last_ts = pkt.ts
            for event in analyzer.reassembler.add(pkt):
                record = analyzer._on_event(event)
                if record is not None:
                    out.append(record)
    out.extend(analyzer.finish())
    return out


def test_corpus_records_are_the_same(corpus_dir: Path) -> None:
    """Every corpus capture (real clients and servers: port closed, SYN unanswered, server silent, every TLS
    failure) gives the same records, with the default flow table and with one so small that SYN-only
    connections are evicted."""
    captures = sorted([*corpus_dir.glob("*.pcap"), *corpus_dir.glob("*.pcapng")])
    ca = corpus_dir / "ca.pem"
    compact = [(_records(p, ca, **ALWAYS), _records(p, ca, max_flows=1, **ALWAYS)) for p in captures]
    full = [(_records(p, ca, **NEVER), _records(p, ca, max_flows=1, **NEVER)) for p in captures]
    assert compact == full
    assert any(r["cause"] == "tcp_no_answer" for records, _ in compact for r in records)


def test_generated_capture_records_are_the_same(generated_capture: Path) -> None:
    """Many interleaved real handshakes: each starts with a lone SYN, hatched at its SYN-ACK."""
    tight = _records(generated_capture, max_flows=8, **ALWAYS)
    assert _records(generated_capture, **ALWAYS) == _records(generated_capture, **NEVER)
    assert tight == _records(generated_capture, max_flows=8, **NEVER)
    assert any("tlsflow stopped following" in line for r in tight for line in r["evidence"])


@pytest.mark.parametrize("rst", [False, True])
def test_flood_records_are_the_same(tmp_path: Path, rst: bool) -> None:
    """Unanswered SYNs (a flood, a silent host) and SYNs answered by RSTs (a closed port), with a flow table that
    fills (evictions) and an idle timeout that the SYNs outlive (expiry)."""
    path = tmp_path / "flood.pcap"
    write_flood(str(path), 3000, 30.0, rst)
    options = {"max_flows": 500, "idle_timeout": 5.0}
    compact = _records(path, **options, **ALWAYS)
    assert compact == _records(path, **options, **NEVER)
    assert compact == _records(path, **options)  # (the default: compact once 1,024 connections are open)
    assert len(compact) == 3000
    # (unanswered SYNs of the capture's last seconds: incomplete, the capture may have ended too soon)
    assert {r["cause"] for r in compact} == ({"tcp_refused"} if rst else {"tcp_no_answer", None})


def test_flood_table_holds_no_streams(tmp_path: Path) -> None:
    """While the table is full of unanswered SYNs, no connection has its streams made; the records are those of
    full flows (the test above) and come out as the table evicts and at the end."""
    path = tmp_path / "flood.pcap"
    write_flood(str(path), 2000, 10.0, False)
    reassembler = TcpReassembler(max_flows=1000, **ALWAYS)
    events = []
    with open_capture(path) as cap:
        for pkt in cap.packets(counter=reassembler):
            events += reassembler.add(pkt)
    assert reassembler.open_flows == 1000
    gc.collect()
    assert not [obj for obj in gc.get_objects() if isinstance(obj, HalfStream)]
    assert sum(isinstance(e, ConnectionClosed) for e in events) == 1000  # the first thousand, evicted
    closed = [e for e in reassembler.finish() if isinstance(e, ConnectionClosed)]
    assert [e.conn.flow_id for e in closed] == list(range(1001, 2001))
    assert all(e.conn.client.syn_frame == e.conn.flow_id and e.conn.server.packets == 0 for e in closed)


@pytest.mark.parametrize("lone_syns_from", [0, reassembler_module.LONE_SYNS_FROM])
def test_flood_in_ranges_gives_one_process_records(tmp_path: Path, monkeypatch, lone_syns_from: int) -> None:
    """`--jobs` byte ranges: a worker asks the reassembler for connections by their 4-tuple (a lone SYN is made a
    flow for it); the records are those of one process."""
    monkeypatch.setattr(reassembler_module, "LONE_SYNS_FROM", lone_syns_from)
    path = tmp_path / "flood.pcap"
    write_flood(str(path), 3000, 30.0, False)
    single = sorted(iter_flow_records(str(path)), key=lambda r: r["flow_id"])
    size = path.stat().st_size
    ranged = sorted(ranges_in_one_process(str(path), [size // 3, size * 2 // 3], batch_packets=7),
                    key=lambda r: r["flow_id"])
    assert ranged == single


def _trace(pkts, **options):  # type: ignore[no-untyped-def]
    """What a reassembler gives for the packets: each connection's close (facts included) and chunk, in order,
    and how many connections were opened."""
    reassembler = TcpReassembler(**options)
    trace, opened = [], set()
    for event in [e for pkt in pkts for e in reassembler.add(pkt)] + reassembler.finish():
        conn = event.conn
        if isinstance(event, ConnectionOpened):
            assert conn.flow_id not in opened
            opened.add(conn.flow_id)
            continue
        assert conn.flow_id in opened  # a connection's ConnectionOpened comes before its other events
        if isinstance(event, StreamChunk):
            trace.append(("chunk", conn.flow_id, event.sender, event.offset, event.data, event.gap))
        else:
            trace.append(("closed", conn.flow_id, conn.close_reason, conn.client_ip, conn.client_port,
                          conn.server_ip, conn.server_port, conn.first_frame, conn.start, conn.last_ts,
                          conn.last_frame, conn.client, conn.server, conn.roles_from, list(conn.anomalies)))
    return trace, len(opened)


@settings(max_examples=300, deadline=None)
@given(packets(), st.integers(1, 4), st.sampled_from([0.5, 1.0, 3.0]), st.sampled_from([0.25, 1.0, 2.0]),
       st.sampled_from([0, 1, 2]))
def test_any_packets_give_the_same_closes_chunks_and_facts(pkts, max_flows, idle, linger, lone_syns_from) -> None:  # type: ignore[no-untyped-def]
    """Whatever the packets (SYNs repeated or answered late, port reuse, resets, time going back, a full table
    of lone SYNs and full flows mixed), the connections, their chunks and facts are those of full flows made at
    the SYN."""
    options = {"max_flows": max_flows, "idle_timeout": idle, "linger_timeout": linger}
    assert _trace(pkts, **options, lone_syns_from=lone_syns_from) == _trace(pkts, **options, **NEVER)
