"""The hop that finds `--jobs` cuts maps a few MiB of the file at a time (`split.HOP_WINDOW`), and more when a record
or block does not fit. With windows of one page, on real traffic, every cut must still be the reader's own record or
block boundary with the reader's frame count, also past blocks many windows long."""
from __future__ import annotations

import mmap
import struct
from pathlib import Path

import pytest

from tests.conftest import assert_cuts_start_at_frames, pcap_frames, pcapng_block_offsets
from tlsflow.capture import linktypes as lt
from tlsflow.capture import split
from tlsflow.parallel_ranges import ranges_in_one_process
from tlsflow.pipeline import iter_flow_records

from .test_capture import Pcapng

CUSTOM_FRAMED = 0x40000BAD  # a custom block that Wireshark shows as a frame
NAME_RESOLUTION = 4  # not framed


def _count_before(path: Path, offset: int) -> int:
    """Frames before byte `offset` of a little-endian pcapng file, as the reader numbers them."""
    data = path.read_bytes()
    count = 0
    for start in pcapng_block_offsets(data):
        if start >= offset:
            break
        count += struct.unpack_from("<I", data, start)[0] in (2, 3, 6, CUSTOM_FRAMED)
    return count


@pytest.fixture
def small_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(split, "HOP_WINDOW", mmap.ALLOCATIONGRANULARITY)


def test_pcap_cuts_with_one_page_windows(generated_capture: Path, small_windows: None) -> None:
    size = generated_capture.stat().st_size
    targets = [size // 5, size // 3, size // 2, size * 4 // 5]
    cuts = list(split.find_cuts(str(generated_capture), targets))
    assert len(cuts) == len(targets)
    assert all(cut.offset >= target for target, cut in zip(targets, cuts))
    assert_cuts_start_at_frames(generated_capture, cuts)


def test_pcapng_cuts_past_blocks_longer_than_a_window(generated_capture: Path, small_windows: None,
                                                       tmp_path: Path) -> None:
    frames = pcap_frames(generated_capture)
    third = len(frames) // 3
    out = Pcapng().section().interface(lt.ETHERNET)
    for micros, frame in frames[:third]:
        out.enhanced(0, micros, frame)
    # Blocks of several windows: one framed (custom), one not (name resolution), then the rest of the packets.
    out.block(CUSTOM_FRAMED, struct.pack("<I", 32473) + b"c" * (5 * mmap.ALLOCATIONGRANULARITY + 12))
    out.block(NAME_RESOLUTION, b"\x00" * (3 * mmap.ALLOCATIONGRANULARITY + 8))
    for micros, frame in frames[third:]:
        out.enhanced(0, micros, frame)
    path = tmp_path / "big-blocks.pcapng"
    data = out.bytes()
    path.write_bytes(data)

    offsets = pcapng_block_offsets(data)
    big = [o for o in offsets if struct.unpack_from("<I", data, o)[0] in (CUSTOM_FRAMED, NAME_RESOLUTION)]
    # Targets inside each big block, right after them, and spread over the file.
    targets = sorted({big[0] + 100, big[1] + 100, big[1] + 1, len(data) // 2, len(data) * 5 // 6})
    cuts = list(split.find_cuts(str(path), targets))
    assert len(cuts) == len(targets)
    for target, cut in zip(targets, cuts):
        assert cut.offset == min(o for o in offsets if o >= target)
        assert cut.frames_before == _count_before(path, cut.offset)

    # Cut there, the ranges give one process's records.
    single = sorted(iter_flow_records(str(path)), key=lambda r: r["flow_id"])
    ranges = [r for r in ranges_in_one_process(str(path), [big[1] + 1, len(data) * 5 // 6]) if isinstance(r, dict)]
    assert sorted(ranges, key=lambda r: r["flow_id"]) == single
