"""`LiveSession` without a socket: frames of real captures handed to it as a sniffer would hand them. It gives
the rows that reading the file gives, and takes most segments in the reassembler's fast lane, as the file reader
does (before, live mode built a TcpPacket for every segment)."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.conftest import CORPUS
from tlsflow.api import _trust_store
from tlsflow.capture import open_capture
from tlsflow.live import LiveSession
from tlsflow.pipeline import iter_flow_records


class _Frames:
    """What LiveSession reads of its sniffer."""

    def __init__(self, link_type: int) -> None:
        self.link_type = link_type


class _Collect:
    def __init__(self) -> None:
        self.records: list[dict] = []

    def write(self, record: dict) -> None:
        self.records.append(record)

    def close(self) -> None:
        pass


def _live_rows(path: Path) -> tuple[list[dict], int, int]:
    """Rows by flow id, frames given, and frames the fast lane counted (the handler gave their time only)."""
    with open_capture(path) as cap:
        frames = [(f.data, f.ts, f.link_type) for f in cap.frames()]
    writer = _Collect()
    session = LiveSession(_Frames(frames[0][2]), writer, io.StringIO(), None, capture_name=str(path),
                          trust=_trust_store(None), idle_timeout=300.0, count=0, keep=lambda r: True)
    counted = []
    decode = session.decode

    def counting(*args):  # type: ignore[no-untyped-def]
        out = decode(*args)
        counted.append(out.__class__ is float)
        return out

    session.decode = counting
    for i in range(0, len(frames), 256):  # (in the sniffer's batches)
        session.take([(data, ts) for data, ts, _ in frames[i:i + 256]])
    session.emit(session.analyzer.finish())
    return sorted(writer.records, key=lambda r: r["flow_id"]), len(frames), sum(counted)


@pytest.mark.parametrize("capture", ["generated", "tls12_established_plain.pcap", "net_packet_loss_recovered.pcap"])
def test_a_session_given_a_captures_frames_gives_its_rows(generated_capture, capture):
    path = generated_capture if capture == "generated" else CORPUS / capture
    rows, frames, counted = _live_rows(path)
    assert rows == sorted(iter_flow_records(path, trust=_trust_store(None)), key=lambda r: r["flow_id"])
    if capture == "generated":
        assert len(rows) > 50 and counted * 2 > frames  # most segments: connections past their handshake
