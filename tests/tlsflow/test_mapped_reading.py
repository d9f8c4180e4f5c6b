"""A regular uncompressed capture read through windows mapped from the file (source._MappedReader) gives what
read1 copies give: the same frames, stats, flow records, errors and progress, whatever the window size, from any
record offset (`--jobs` ranges), for a file still growing, and a window is let go as the walker moves on."""
from __future__ import annotations

import dataclasses
import gc
import mmap
import struct
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.conftest import capture_error, capture_file_bytes, corpus_and_public_captures
from tlsflow.capture import CaptureError, open_capture, pcap, pcapng, source
from tlsflow.capture.split import Cut, find_cuts
from tlsflow.pipeline import iter_flow_records

GRANULE = mmap.ALLOCATIONGRANULARITY
# Window sizes (0: read1, as for a pipe): one granule forces a boundary every few records, and records straddling
# windows; a size that is not a whole number of granules maps the granules it holds.
WINDOWS = [0, GRANULE, 3 * GRANULE + 100, source.MAP_WINDOW]


class Window(NamedTuple):
    offset: int
    length: int
    ref: weakref.ref  # type: ignore[type-arg]
    held: int  # windows still mapped when this one was


@pytest.fixture
def maps(monkeypatch) -> list[Window]:
    """Every window mapped, with a weak reference to it (so that the test can see that it was let go)."""
    made: list[Window] = []
    real = source.map_window

    def recording_map(fileno: int, length: int, offset: int) -> mmap.mmap:
        assert offset % GRANULE == 0 and length > 0
        held = sum(window.ref() is not None for window in made)
        window = real(fileno, length, offset)
        made.append(Window(offset, length, weakref.ref(window), held))
        return window

    monkeypatch.setattr(source, "map_window", recording_map)
    return made


def _reading(path: Path, window: int, monkeypatch) -> tuple[list, dict, list]:  # type: ignore[type-arg]
    monkeypatch.setattr(source, "MAP_WINDOW", window)
    with open_capture(path) as cap:
        frames = [(f.frame, f.ts, f.link_type, f.data) for f in cap.frames()]
        stats = dataclasses.asdict(cap.stats)
    records = list(iter_flow_records(str(path)))
    return frames, stats, records


def _error(path: Path, window: int, monkeypatch,  # type: ignore[no-untyped-def]
           start: Cut | None = None) -> tuple[str, int | None, int | None, int]:
    monkeypatch.setattr(source, "MAP_WINDOW", window)
    return capture_error(path, start)


def _records_of(pcap_bytes: bytes) -> Iterator[tuple[int, bytes, int]]:
    """(time in microseconds, captured bytes, original length) of each record of a little-endian microsecond pcap."""
    pos = pcap.HEADER_SIZE
    while pos + 16 <= len(pcap_bytes):
        seconds, micros, caplen, original = struct.unpack_from("<IIII", pcap_bytes, pos)
        yield seconds * 1_000_000 + micros, pcap_bytes[pos + 16:pos + 16 + caplen], original
        pos += 16 + caplen


@pytest.fixture(scope="module", params=["pcap", "pcapng"])
def generated(generated_capture: Path, tmp_path_factory, request) -> Path:
    """The 3 MB bench capture, as pcap and as pcapng (the same packets in enhanced packet blocks)."""
    if request.param == "pcap":
        return generated_capture
    path = tmp_path_factory.mktemp("mapped") / "gen.pcapng"
    data = generated_capture.read_bytes()
    link_type = struct.unpack_from("<I", data, 20)[0]
    path.write_bytes(capture_file_bytes(link_type, list(_records_of(data)), pcapng=True))
    return path


@pytest.mark.parametrize("path", corpus_and_public_captures(), ids=lambda p: p.name)
def test_real_captures_read_mapped_as_copied(path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    copied = _reading(path, 0, monkeypatch)
    assert copied[0], "a capture without frames proves nothing"
    assert _reading(path, GRANULE, monkeypatch) == copied
    assert _reading(path, source.MAP_WINDOW, monkeypatch) == copied


def test_generated_capture_reads_the_same_through_any_window(generated: Path, monkeypatch,
                                                             maps: list[Window]) -> None:  # type: ignore[no-untyped-def]
    copied = _reading(generated, 0, monkeypatch)
    assert len(copied[0]) > 1000 and len(copied[2]) > 50
    assert not maps
    for window in WINDOWS[1:]:
        assert _reading(generated, window, monkeypatch) == copied, window
    # The windows were mapped (whole granules at granule offsets: see the fixture), many of them, and each was
    # unmapped when let go.
    assert len(maps) > 2 * generated.stat().st_size // (3 * GRANULE)
    gc.collect()
    assert all(window.ref() is None for window in maps)


def test_packets_keep_bytes_not_windows(generated: Path, monkeypatch, maps: list[Window]) -> None:  # type: ignore[no-untyped-def]
    """Payloads and frames are bytes of their own, and one window at most is held at any time: the walker lets
    the last one go before it reads the next."""
    monkeypatch.setattr(source, "MAP_WINDOW", GRANULE)
    with open_capture(generated) as cap:
        n = 0
        for packet in cap.packets():
            if isinstance(packet, float):
                continue
            assert type(packet.payload) is bytes
            assert sum(window.ref() is not None for window in maps) <= 1
            n += 1
    assert n > 1000 and len(maps) > 100
    assert not any(window.held for window in maps)
    with open_capture(generated) as cap:
        assert all(type(f.data) is bytes for f in cap.frames())


def test_progress_counts_the_bytes_walked(generated: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for window in WINDOWS:
        monkeypatch.setattr(source, "MAP_WINDOW", window)
        with open_capture(generated) as cap:
            seen = [cap.bytes_read]
            for _ in cap.frames():
                seen.append(cap.bytes_read)
            assert seen == sorted(seen) and seen[-1] == cap.bytes_read == cap.total_bytes == generated.stat().st_size


def test_resume_points_are_record_boundaries(generated: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The record (pcap) or block (pcapng) boundary a reader publishes at each chunk (`CaptureStats.resume_point`,
    where a --jobs split hops from) is one, with the frames before it as a hop from the start counts them, and
    (pcapng) as many section header and interface blocks before it as a cut there carries: through any window,
    from the start of the file or from a cut, with packets or with frames."""
    from tlsflow.capture.split import open_hop

    size = generated.stat().st_size
    start = next(find_cuts(str(generated), [size // 3]))
    for window in WINDOWS:
        monkeypatch.setattr(source, "MAP_WINDOW", window)
        for cut in (None, start):
            with open_capture(generated) as cap:
                if cut is not None:
                    cap.start_at(cut.offset, cut.frames_before, cut.preamble)
                points = set()
                for _ in cap.packets() if window else cap.frames():
                    if cap.stats.resume_point is not None:
                        points.add(cap.stats.resume_point)
                points.add(cap.stats.resume_point)
            assert (size, cap.stats.frames) in {point[:2] for point in points}  # (after the last chunk)
            if window == GRANULE:
                assert len(points) > 10
            offsets = sorted(point for point in points if 0 < point[0] < size)
            found = list(find_cuts(str(generated), [offset for offset, _, _ in offsets]))
            assert [(c.offset, c.frames_before) for c in found] == [point[:2] for point in offsets], (window, cut)
            assert all(offset >= (cut.offset if cut else 24) for offset, _, _ in offsets)
            for found_cut, (_, _, blocks) in zip(found, offsets):
                with open_hop(str(generated), found_cut) as hop:
                    assert blocks == getattr(hop, "preamble_blocks", 0)
            if generated.suffix == ".pcapng":
                assert {blocks for _, _, blocks in offsets} == {2}  # (its section header and interface)


def test_reading_from_unaligned_record_offsets(generated: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`--jobs` byte ranges start at a record anywhere in the file: a plain read up to the next granule, then
    windows."""
    size = generated.stat().st_size
    targets = [1, GRANULE - 30, GRANULE, 5 * GRANULE + 1, size // 3, size // 2 + 7, size - 3000]
    cuts = list(find_cuts(str(generated), targets))
    assert len(cuts) == len(targets) and any(cut.offset % GRANULE for cut in cuts)
    monkeypatch.setattr(source, "MAP_WINDOW", 0)
    with open_capture(generated) as cap:
        whole = [(f.frame, f.ts, f.data) for f in cap.frames()]
    for cut in cuts:
        for window in WINDOWS:
            monkeypatch.setattr(source, "MAP_WINDOW", window)
            with open_capture(generated) as cap:
                cap.start_at(cut.offset, cut.frames_before, cut.preamble)
                assert cap.bytes_read == cut.offset
                tail = [(f.frame, f.ts, f.data) for f in cap.frames()]
                assert cap.bytes_read == size
            assert tail == whole[cut.frames_before:], (cut.offset, window)


def test_a_file_cut_inside_a_record_fails_as_when_copied(generated: Path, tmp_path: Path,
                                                         monkeypatch) -> None:  # type: ignore[no-untyped-def]
    data = generated.read_bytes()
    cut_file = tmp_path / ("cut" + generated.suffix)
    cuts = [30, GRANULE - 1, GRANULE + 1, 2 * GRANULE, 7 * GRANULE + 13, len(data) // 2, len(data) - 1]
    start = next(find_cuts(str(generated), [len(data) // 4]))
    for at in cuts:
        cut_file.write_bytes(data[:at])
        expected = _error(cut_file, 0, monkeypatch)
        if at > start.offset + 100:
            expected_from_start = _error(cut_file, 0, monkeypatch, start)
        for window in WINDOWS[1:]:
            assert _error(cut_file, window, monkeypatch) == expected, (at, window)
            if at > start.offset + 100:
                assert _error(cut_file, window, monkeypatch, start) == expected_from_start, (at, window)


def test_a_corrupt_record_fails_as_when_copied(generated: Path, tmp_path: Path,
                                               monkeypatch) -> None:  # type: ignore[no-untyped-def]
    data = bytearray(generated.read_bytes())
    start = next(find_cuts(str(generated), [3 * GRANULE + 200]))
    # The record's (pcap) or block's (pcapng) length becomes absurd.
    length_at = start.offset + (8 if generated.suffix == ".pcap" else 4)
    struct.pack_into("<I", data, length_at, 0x7FFFFFF0)
    broken = tmp_path / ("broken" + generated.suffix)
    broken.write_bytes(bytes(data))
    expected = _error(broken, 0, monkeypatch)
    assert expected[1] == start.offset
    for window in WINDOWS[1:]:
        assert _error(broken, window, monkeypatch) == expected, window


def test_a_growing_file_is_read_to_its_current_end(generated: Path, tmp_path: Path, monkeypatch,
                                                   maps: list[Window]) -> None:  # type: ignore[no-untyped-def]
    """A capture still being written: every window ends where the file ends at that moment, and the next read
    looks again, so what was appended meanwhile is read too (as read() would)."""
    data = generated.read_bytes()
    monkeypatch.setattr(source, "MAP_WINDOW", 0)
    with open_capture(generated) as cap:
        expected = [(f.frame, f.ts, f.data) for f in cap.frames()]
    monkeypatch.setattr(source, "MAP_WINDOW", 2 * GRANULE)
    growing = tmp_path / ("growing" + generated.suffix)
    written = 3 * GRANULE + 333  # ends inside a record
    growing.write_bytes(data[:written])
    with open_capture(growing) as cap, growing.open("ab") as out:
        read_chunk = cap._source.read_chunk

        def read_while_written(size: int) -> bytes:
            # The writer appends a piece (ending anywhere) before each read: less than a window, so that the reader
            # keeps reaching the end of what is written so far.
            nonlocal written
            if written < len(data):
                out.write(data[written:written + 5000])
                out.flush()
                written += 5000
            return read_chunk(size)

        cap._source.read_chunk = read_while_written
        got = [(f.frame, f.ts, f.data) for f in cap.frames()]
        assert cap.bytes_read == len(data)
    assert got == expected
    # Windows that ended where the file ended at that moment, shorter than asked, before its final end; and windows
    # of what was written after the file was opened (not only plain reads).
    assert any(w.length < 2 * GRANULE and w.offset + w.length < len(data) for w in maps)
    assert sum(w.length for w in maps if w.offset >= 3 * GRANULE + 333) > len(data) // 2


def test_the_walk_ends_where_the_file_ends_at_that_moment(generated: Path, tmp_path: Path,
                                                          monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Bytes appended after the walker found the end are not read (as with read1)."""
    data = generated.read_bytes()
    start = next(find_cuts(str(generated), [5 * GRANULE]))
    path = tmp_path / ("short" + generated.suffix)
    for window in WINDOWS:
        monkeypatch.setattr(source, "MAP_WINDOW", window)
        path.write_bytes(data[:start.offset])
        with open_capture(path) as cap:
            frames = list(cap.frames())
            with path.open("ab") as out:
                out.write(data[start.offset:])
            assert len(frames) == start.frames_before and cap.bytes_read == start.offset


@pytest.mark.parametrize("content", [
    b"",  # empty
    b"\xd4\xc3\xb2\xa1\x02\x00",  # a pcap magic and little else
    struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1),  # a pcap file header alone
    struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"\x01" * 10,  # and part of a record header
    struct.pack("<IHHiIIIIIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1, 1, 2, 60, 60) + b"\x00" * 59,  # a record cut short
    b"\x0a\x0d\x0d\x0a\x1c\x00",  # a pcapng section header cut short
], ids=["empty", "magic", "header", "record-header-cut", "record-cut", "pcapng-cut"])
def test_empty_and_short_files_read_as_when_copied(content: bytes, tmp_path: Path,
                                                   monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "short.pcap"
    path.write_bytes(content)

    def outcome(window: int) -> tuple:  # type: ignore[type-arg]
        monkeypatch.setattr(source, "MAP_WINDOW", window)
        try:
            with open_capture(path) as cap:
                frames = list(cap.frames())
                return "read", frames, cap.bytes_read
        except CaptureError as exc:
            return type(exc).__name__, exc.message, exc.offset, exc.frame

    copied = outcome(0)
    for window in WINDOWS[1:]:
        assert outcome(window) == copied, window


def test_a_file_that_cannot_be_mapped_is_read_plainly(generated: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    copied = _reading(generated, 0, monkeypatch)

    def refuse(fileno: int, length: int, offset: int) -> mmap.mmap:
        raise OSError(19, "No such device")  # ENODEV: a file system without mmap

    monkeypatch.setattr(source, "map_window", refuse)
    assert _reading(generated, source.MAP_WINDOW, monkeypatch) == copied


def test_gzip_input_is_not_mapped(generated: Path, tmp_path: Path, monkeypatch,
                                                maps: list[Window]) -> None:  # type: ignore[no-untyped-def]
    import gzip

    packed = tmp_path / ("gen" + generated.suffix + ".gz")
    packed.write_bytes(gzip.compress(generated.read_bytes(), compresslevel=1))
    with open_capture(packed) as cap:
        assert sum(1 for _ in cap.frames()) > 1000
    assert not maps
    assert pcapng.CHUNK_SIZE >= source.MAP_WINDOW and pcap.CHUNK_SIZE >= source.MAP_WINDOW
