"""Captures read in chunks of any size give the same frames, records, stats and errors: a pcap record or a pcapng
block that straddles two chunks (its header too) is walked from a buffer of its own and the walk goes on inside the
next chunk (pcap.walk_records, pcapng.walk_blocks), and the fast lane sees every segment whatever the chunking."""
from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import pytest

from bench.gen_capture import generate
from tests.conftest import capture_error
from tlsflow.capture import open_capture, pcap, pcapng
from tlsflow.pipeline import iter_flow_records

CHUNKS = [1, 15, 16, 17, 61, 1514, 4096, 65536]


def _as_pcapng(data: bytes) -> bytes:
    """The same packets as a pcapng file: a section header, one Ethernet interface, enhanced packet blocks (and a
    name resolution block in the middle, skipped by the reader)."""
    out = bytearray(struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28))
    out += struct.pack("<IIHHII", 1, 20, 1, 0, 65535, 20)
    pos, n = 24, 0
    while pos + 16 <= len(data):
        sec, usec, caplen, origlen = struct.unpack_from("<IIII", data, pos)
        frame = data[pos + 16:pos + 16 + caplen] + b"\x00" * (-caplen % 4)
        micros = sec * 1_000_000 + usec
        out += struct.pack("<IIIIIII", 6, 32 + len(frame), 0, micros >> 32, micros & 0xFFFFFFFF, caplen,
                           origlen) + frame + struct.pack("<I", 32 + len(frame))
        pos += 16 + caplen
        n += 1
        if n == 100:
            out += struct.pack("<IIII", 4, 16, 0, 16)
    return bytes(out)


@pytest.fixture(scope="module", params=["pcap", "pcapng"])
def generated(tmp_path_factory, request) -> Path:
    path = tmp_path_factory.mktemp("chunks") / "gen.pcap"
    with path.open("wb") as out:
        generate(out, 400_000, seed=11)
    if request.param == "pcapng":
        path.write_bytes(_as_pcapng(path.read_bytes()))
    return path


def _frames(path: Path) -> tuple[list, dict]:  # type: ignore[type-arg]
    with open_capture(path) as cap:
        frames = [(f.frame, f.ts, f.data) for f in cap.frames()]
        return frames, dataclasses.asdict(cap.stats)


def _error(path: Path) -> tuple[str, int | None, int | None, int]:
    return capture_error(path)


def test_any_chunk_size_gives_the_same_frames_and_records(generated: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    frames, stats = _frames(generated)
    records = list(iter_flow_records(str(generated)))
    assert len(frames) > 300 and len(records) > 10
    for size in CHUNKS:
        monkeypatch.setattr(pcap, "CHUNK_SIZE", size)
        monkeypatch.setattr(pcapng, "CHUNK_SIZE", size)
        assert _frames(generated) == (frames, stats), size
        assert list(iter_flow_records(str(generated))) == records, size


@pytest.mark.parametrize("cut", [24 + 3, 24 + 16 + 5, 28 + 20 + 7, -1, -7, -200])
def test_a_file_cut_anywhere_fails_at_the_same_place_whatever_the_chunks(generated: Path, tmp_path: Path, cut: int,
                                                                         monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "cut.pcap"
    data = generated.read_bytes()
    path.write_bytes(data[:cut])
    expected = _error(path)
    for size in CHUNKS:
        monkeypatch.setattr(pcap, "CHUNK_SIZE", size)
        monkeypatch.setattr(pcapng, "CHUNK_SIZE", size)
        assert _error(path) == expected, size
