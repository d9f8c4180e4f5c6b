"""Classic pcap files read in chunks of any size give the same frames, records, stats and errors: a record that
straddles two chunks (its header too) is walked from a buffer of its own and the walk goes on inside the next chunk
(pcap.walk_records), and the fast lane sees every segment whatever the chunking."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bench.gen_capture import generate
from tlsflow.capture import CaptureError, open_capture, pcap
from tlsflow.pipeline import iter_flow_records

CHUNKS = [1, 15, 16, 17, 61, 1514, 4096, 65536]


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("chunks") / "gen.pcap"
    with path.open("wb") as out:
        generate(out, 400_000, seed=11)
    return path


def _frames(path: Path) -> tuple[list, dict]:  # type: ignore[type-arg]
    with open_capture(path) as cap:
        frames = [(f.frame, f.ts, f.data) for f in cap.frames()]
        return frames, dataclasses.asdict(cap.stats)


def _error(path: Path) -> tuple[str, int | None, int | None, int]:
    with open_capture(path) as cap:
        n = 0
        try:
            for _ in cap.frames():
                n += 1
        except CaptureError as exc:
            return exc.message, exc.offset, exc.frame, n
    raise AssertionError("no error")


def test_any_chunk_size_gives_the_same_frames_and_records(generated: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    frames, stats = _frames(generated)
    records = list(iter_flow_records(str(generated)))
    assert len(frames) > 300 and len(records) > 10
    for size in CHUNKS:
        monkeypatch.setattr(pcap, "CHUNK_SIZE", size)
        assert _frames(generated) == (frames, stats), size
        assert list(iter_flow_records(str(generated))) == records, size


@pytest.mark.parametrize("cut", [24 + 3, 24 + 16 + 5, -1, -7, -200])
def test_a_file_cut_anywhere_fails_at_the_same_place_whatever_the_chunks(generated: Path, tmp_path: Path, cut: int,
                                                                         monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "cut.pcap"
    data = generated.read_bytes()
    path.write_bytes(data[:cut])
    expected = _error(path)
    for size in CHUNKS:
        monkeypatch.setattr(pcap, "CHUNK_SIZE", size)
        assert _error(path) == expected, size
