"""The capture walkers count the TCP segments that their fast lane took or built (stats.tcp_packets) as the frames
walked less those handed to a handler or without a packet: with pcapng blocks of every kind that make a frame
(enhanced, simple and obsolete packet blocks, custom blocks) between a connection's segments, the stats, events and
facts equal those of reading every frame through the handlers."""
from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

from tests.conftest import capture_file_bytes
from tests.tlsflow.test_tcp_lanes import REASSEMBLER, FullPath, _facts, _frame, _handshake_then, _run
from tlsflow.capture import linktypes as lt
from tlsflow.packet import ACK, PSH
from tlsflow.tcp import TcpReassembler

ARP = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + bytes(28)


def _pad(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def _simple(frame: bytes) -> bytes:
    length = 16 + len(_pad(frame))
    return struct.pack("<III", 3, length, len(frame)) + _pad(frame) + struct.pack("<I", length)


def _obsolete(frame: bytes, micros: int) -> bytes:
    length = 32 + len(_pad(frame))
    return (struct.pack("<IIHHIIII", 2, length, 0, 0, micros >> 32, micros & 0xFFFFFFFF, len(frame), len(frame))
            + _pad(frame) + struct.pack("<I", length))


def _custom() -> bytes:
    return struct.pack("<IIII", 0x00000BAD, 16, 32473, 16)


def _pcapng_with_other_blocks(packets: list) -> bytes:  # type: ignore[type-arg]
    """The connection's segments in enhanced packet blocks; after every third, a custom block, an obsolete packet
    block with ARP, and the segment again in a simple packet block (a retransmission)."""
    frames = [(round(ts * 1e6), _frame(lt.ETHERNET, *fields)) for ts, *fields in packets]
    head = capture_file_bytes(lt.ETHERNET, [], True)
    out = bytearray(head)
    for k, (micros, frame) in enumerate(frames):
        out += capture_file_bytes(lt.ETHERNET, [(micros, frame, len(frame))], True)[len(head):]
        if k % 3 == 2:
            out += _custom() + _obsolete(ARP, micros) + _simple(frame)
    return bytes(out)


def test_walker_counts_equal_the_handlers_with_every_kind_of_frame(tmp_path: Path) -> None:
    later = [(2.0 + k / 100, "s" if k % 3 else "c", 1460 + 100 * (k // 3) if k % 3 else 150,
              150 if k % 3 else 1460 + 100 * (k // 3), ACK | PSH if k % 3 else ACK, 0) for k in range(30)]
    path = tmp_path / "mixed.pcapng"
    path.write_bytes(_pcapng_with_other_blocks(_handshake_then(later)))
    for stop_after in ([1], [0], [3]):
        ref_events, ref_closed, ref_stats = _run(path, FullPath(**REASSEMBLER), stop_after, fast=False)
        events, closed, stats = _run(path, TcpReassembler(**REASSEMBLER), stop_after, fast=True)
        assert events == ref_events
        assert [_facts(c) for c in closed] == [_facts(c) for c in ref_closed]
        assert dataclasses.asdict(stats) == dataclasses.asdict(ref_stats)
        # Every TCP segment counted once (enhanced and simple packet blocks), the custom block's frame and ARP not.
        segments = len(_handshake_then(later))
        assert stats.tcp_packets == segments + segments // 3
        assert stats.frames == segments + 3 * (segments // 3)


def test_pcap_walker_counts_equal_the_handlers_with_other_frames(tmp_path: Path) -> None:
    later = [(2.0 + k / 100, "cs"[k % 2], 150 if k % 2 == 0 else 1460, 1460 if k % 2 == 0 else 150, ACK, 0)
             for k in range(20)]
    packets = _handshake_then(later)
    records = []
    for ts, *fields in packets:
        frame = _frame(lt.ETHERNET, *fields)
        records.append((round(ts * 1e6), frame, len(frame)))
        records.append((round(ts * 1e6), ARP, len(ARP)))
    path = tmp_path / "mixed.pcap"
    path.write_bytes(capture_file_bytes(lt.ETHERNET, records, False))
    ref_events, _, ref_stats = _run(path, FullPath(**REASSEMBLER), [1], fast=False)
    events, _, stats = _run(path, TcpReassembler(**REASSEMBLER), [1], fast=True)
    assert events == ref_events
    assert dataclasses.asdict(stats) == dataclasses.asdict(ref_stats)
    assert (stats.tcp_packets, stats.frames) == (len(packets), 2 * len(packets))
