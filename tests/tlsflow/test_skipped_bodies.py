"""Record bodies the parser only skips are not delivered by the reassembler (`TcpReassembler.skip_until`,
`TlsConnection.skip`): downloads joined in the middle (a capture started during them, a --jobs range starting in
one) no longer send every segment through a chunk and the parser. The rows are those of every byte fed, also with
segments copied, swapped or lost inside a skipped stretch."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from tlsflow import pipeline
from tlsflow.parallel_ranges import ranges_in_one_process
from tlsflow.pipeline import iter_flow_records
from tlsflow.tcp import TcpReassembler
from tlsparse import TlsConnection
from tlsparse.events import Sender

from .pcap_edit import cut, doubled, records


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    """The bench generator's traffic (real OpenSSL byte streams) whose first 48 completed sessions are downloads
    (`--bulk first`, made ~130 KB here), cut a tenth of the way in: those are joined in the middle of their
    response, the rest of the capture is the usual mix."""
    import bench.gen_capture as gen

    folder = tmp_path_factory.mktemp("skipped")
    whole = folder / "bulk.pcap"
    original = gen.BULK_RECORDS
    gen.BULK_RECORDS = 8
    try:
        with whole.open("wb") as out:
            gen.generate(out, 3_000_000, seed=5, bulk="first")
    finally:
        gen.BULK_RECORDS = original
    return cut(whole, len(records(whole)[1]) // 10, folder / "joined.pcap")


def _rows(path: Path, monkeypatch, skipping: bool, laned: list[bool] | None = None) -> tuple[list[dict], int]:
    """The rows (by flow id) and how many times bytes were skipped; `laned` gets whether the reassembler's fast
    lane took each segment it was offered for a flow that still wants data (`_count_skipped`)."""
    skipped = []
    original = TlsConnection.skip
    count_skipped = TcpReassembler._count_skipped

    def counting(self, sender, length):
        skipped.append(length)
        return original(self, sender, length)

    def lane(self, *fields):
        taken = count_skipped(self, *fields)
        if laned is not None:
            laned.append(taken)
        return taken

    monkeypatch.setattr(TlsConnection, "skip", counting)
    monkeypatch.setattr(TcpReassembler, "_count_skipped", lane)
    monkeypatch.setattr(pipeline, "SKIP_AT_LEAST", pipeline.SKIP_AT_LEAST if skipping else 1 << 62)
    rows = sorted(iter_flow_records(path), key=lambda r: r["flow_id"])
    monkeypatch.undo()
    return rows, len(skipped)


def _edited(path: Path, out: Path, edit) -> Path:
    header, recs = records(path)
    out.write_bytes(header + b"".join(edit(recs)))
    return out


def _data_records(recs: list[bytes]) -> list[int]:
    """Indexes of full-size TCP data segments (the downloads' bodies)."""
    return [i for i, r in enumerate(recs) if struct.unpack_from("<I", r, 8)[0] >= 1400]


def _swapped(recs: list[bytes]) -> list[bytes]:
    out = list(recs)
    for i in _data_records(recs)[5::40]:
        out[i], out[i + 1] = out[i + 1], out[i]  # a segment overtaken by the next packet
    return out


def _lost(recs: list[bytes]) -> list[bytes]:
    lost = set(_data_records(recs)[7::50])
    return [r for i, r in enumerate(recs) if i not in lost]


@pytest.mark.parametrize("variant", ["as captured", "every packet twice", "segments swapped", "segments lost"])
def test_rows_are_those_of_every_byte_fed(downloads, tmp_path, monkeypatch, variant):
    if variant == "as captured":
        path = downloads
    elif variant == "every packet twice":
        path = doubled(downloads, tmp_path / "twice.pcap")
    else:
        path = _edited(downloads, tmp_path / "edited.pcap", _swapped if variant == "segments swapped" else _lost)
    fed, none = _rows(path, monkeypatch, skipping=False)
    assert none == 0
    laned: list[bool] = []
    rows, skips = _rows(path, monkeypatch, skipping=True, laned=laned)
    assert skips > 100  # (each skip is a stretch of segments held back)
    # Most segments held back, and the ACKs that answer them, took the reader's fast lane instead of a TcpPacket.
    assert laned.count(True) > 2 * skips
    assert rows == fed
    assert sum(1 for r in rows if r["evidence"] and "no SYN" in r["evidence"][0]) >= 20
    # The same in byte ranges (--jobs on one file), whose later ranges start in the middle of downloads too.
    size = path.stat().st_size
    ranged = sorted(ranges_in_one_process(str(path), [size // 3, size * 2 // 3]), key=lambda r: r["flow_id"])
    assert ranged == fed


def test_corpus_rows_unchanged(monkeypatch):
    corpus = Path(__file__).resolve().parents[2] / "captures" / "corpus"
    for path in sorted(corpus.glob("*.pcap")):
        fed, _ = _rows(path, monkeypatch, skipping=False)
        rows, _ = _rows(path, monkeypatch, skipping=True)
        assert rows == fed, path.name


def _record(length: int) -> bytes:
    return bytes([23, 3, 3]) + length.to_bytes(2, "big") + bytes(range(256)) * (length // 256) + bytes(length % 256)


def test_skip_is_receiving_without_the_bytes():
    """`skip` moves the parser exactly as `receive` of those bytes would; past the body's last byte it refuses."""
    stream = _record(16_000) + _record(300)

    def run(skip_from: int | None) -> tuple[list, int]:
        tls = TlsConnection()
        events = []
        pos = 0
        for size in (1000, 1460, 1460, 1460, 1460, 1460, 8000, 1460):
            piece = stream[pos:pos + size]
            if skip_from is not None and pos >= skip_from and tls.opaque_left(Sender.SERVER) > len(piece):
                tls.skip(Sender.SERVER, len(piece))
            else:
                events += tls.receive(Sender.SERVER, piece, frame=pos, ts=0.0)
            pos += len(piece)
        return events, tls.position(Sender.SERVER)

    assert run(2000) == run(None)
    tls = TlsConnection()
    tls.receive(Sender.SERVER, stream[:1000], frame=1, ts=0.0)
    left = tls.opaque_left(Sender.SERVER)
    assert left == 16_005 - 1000
    with pytest.raises(ValueError):
        tls.skip(Sender.SERVER, left)
