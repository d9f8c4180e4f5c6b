"""pcapng enhanced packet blocks take a fast test while they stay on one interface (`pcapng.walk_blocks` keeps the
current interface in locals). These tests spread real captures over interfaces and sections, in runs and
alternating, and check that every packet, every record and the per-link-type frame counts are those of the same
frames in classic pcap, with chunks small enough that blocks straddle them and counts are folded mid-run."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import CORPUS, pcap_frames, pcapng_block_offsets
from tlsflow.capture import CaptureError, open_capture, pcapng
from tlsflow.capture import linktypes as lt
from tlsflow.pipeline import iter_flow_records

from .test_capture import TSHARK, Pcapng, check_against_tshark


def _spread(frames: list[tuple[int, bytes]], interface_of: list[int], new_section_at: int | None,
            nano: bool) -> tuple[bytes, list[float]]:
    """The frames as enhanced packet blocks on the interfaces `interface_of` gives (three Ethernet interfaces, the
    second with nanosecond times when `nano`), with a new section (same interfaces again) before frame
    `new_section_at`; and the time the reader must give each frame (the pcapng reader's own rounding)."""
    out = Pcapng()
    times = []

    def section() -> None:
        out.section().interface(lt.ETHERNET).interface(lt.ETHERNET, tsresol=9 if nano else 6).interface(lt.ETHERNET)

    section()
    for index, ((micros, frame), interface) in enumerate(zip(frames, interface_of)):
        if index == new_section_at:
            section()
        ticks, units = (micros * 1000, 1e9) if nano and interface == 1 else (micros, 1e6)
        out.enhanced(interface, ticks, frame)
        times.append(((ticks >> 32) * 4294967296.0 + (ticks & 0xFFFFFFFF)) / units)
    return out.bytes(), times


LAYOUTS = {
    "one interface": lambda n: [0] * n,
    "runs": lambda n: [(i // 5) % 3 for i in range(n)],
    "alternating": lambda n: [i % 2 for i in range(n)],
    "first then second": lambda n: [0 if i < n // 2 else 2 for i in range(n)],
}


def _records(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "capture"} for r in iter_flow_records(str(path))]


CAPTURES = ["tls13_established_python.pcap", "tls12_cert_expired.pcap", "net_packet_loss_recovered.pcap"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("chunk", [pcapng.CHUNK_SIZE, 700])
@pytest.mark.parametrize("nano", [False, True])
def test_interfaces_and_sections_give_the_pcap_frames_and_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               layout: str, chunk: int, nano: bool) -> None:
    monkeypatch.setattr(pcapng, "CHUNK_SIZE", chunk)
    for source in (CORPUS / name for name in CAPTURES):
        frames = pcap_frames(source)
        interface_of = LAYOUTS[layout](len(frames))
        path = tmp_path / f"{source.stem}.pcapng"
        data, times = _spread(frames, interface_of, len(frames) * 2 // 3, nano)
        path.write_bytes(data)

        with open_capture(source) as cap:
            expected = [(p.frame, p.src, p.sport, p.seq, p.payload) for p in cap.packets()]
        with open_capture(path) as cap:
            packets = list(cap.packets())
            stats = cap.stats
        assert [(p.frame, p.src, p.sport, p.seq, p.payload) for p in packets] == expected
        assert [p.ts for p in packets] == [times[p.frame - 1] for p in packets]
        assert stats.frames == len(frames)
        assert stats.link_types == {lt.ETHERNET: len(frames)}
        assert stats.sections == 2 and stats.interfaces == 6
        if TSHARK is not None:
            check_against_tshark(path, packets, stats)
        if not nano:  # (nanosecond times round apart from the pcap file's microseconds in the last bits)
            assert _records(path) == _records(source)


def test_link_types_counted_per_interface_across_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs on interfaces of different link types: each frame counts for its own interface's link type, also
    when a chunk ends in the middle of a run."""
    monkeypatch.setattr(pcapng, "CHUNK_SIZE", 300)
    frames = pcap_frames(CORPUS / "tls13_established_python.pcap")
    out = Pcapng().section().interface(lt.ETHERNET).interface(lt.RAW)
    link_of = []
    for index, (micros, frame) in enumerate(frames):
        interface = 0 if index < len(frames) // 2 else (index // 3) % 2  # a long run first, then short ones
        out.enhanced(interface, micros, frame if interface == 0 else frame[14:])  # raw IP: without Ethernet
        link_of.append(interface)
    path = tmp_path / "two-links.pcapng"
    path.write_bytes(out.bytes())
    with open_capture(path) as cap:
        packets, counted = [], []
        for packet in cap.packets():  # the counts are brought up to date at every chunk, not only at the end
            packets.append(packet)
            counted.append(sum(cap.stats.link_types.values()))
        stats = cap.stats
    assert counted == sorted(counted) and all(n < p.frame for n, p in zip(counted, packets))
    assert counted[len(frames) // 2 - 1] > 0  # within the first run
    assert stats.link_types == {lt.ETHERNET: link_of.count(0), lt.RAW: link_of.count(1)}
    with open_capture(CORPUS / "tls13_established_python.pcap") as cap:
        assert [(p.frame, p.seq, p.payload) for p in packets] == [(p.frame, p.seq, p.payload) for p in cap.packets()]
    # The records as JSON: the same connections, verdicts and evidence as the pcap file's.
    assert json.dumps(_records(path), sort_keys=True) == json.dumps(_records(CORPUS / "tls13_established_python.pcap"),
                                                                    sort_keys=True)


def _read(path: Path) -> tuple[list[tuple], tuple | None, tuple | None]:
    """Everything the reader gives for `path`: packets, counts, and the error (type, text, offset, frame)."""
    packets: list[tuple] = []
    error = counts = None
    try:
        with open_capture(path) as cap:
            try:
                for p in cap.packets():
                    packets.append((p.frame, p.ts, p.src, p.sport, p.dst, p.dport, p.seq, p.flags, p.payload))
            finally:
                stats = cap.stats
                counts = (stats.frames, stats.skipped, stats.tcp_packets, dict(stats.link_types), stats.sections,
                          stats.interfaces)
    except CaptureError as exc:
        error = (type(exc).__name__, str(exc), exc.offset, exc.frame)
    return packets, counts, error


def _two_interfaces_pcapng() -> bytes:
    frames = pcap_frames(CORPUS / "tls12_cert_expired.pcap")
    data, _times = _spread(frames, LAYOUTS["runs"](len(frames)), len(frames) // 2, nano=True)
    return data


_DAMAGE_FILE = _two_interfaces_pcapng()
# Where damage tells the fast test from the general checks: a block's type, length, interface and captured
# length, and its length at the end (the word before the next block).
_FIELDS_AT = sorted({start + field for start in pcapng_block_offsets(_DAMAGE_FILE) for field in (0, 4, 8, 20)}
                    | {end - 4 for end in [*pcapng_block_offsets(_DAMAGE_FILE)[1:], len(_DAMAGE_FILE)]})


def _damaged(position: int, damage: bytes | int, cut: int = 0) -> bytes:
    """_DAMAGE_FILE with `damage` at `position` (bytes written, or the 32-bit field there moved by that much),
    less its last `cut` bytes."""
    data = bytearray(_DAMAGE_FILE)
    if isinstance(damage, int):
        word = struct.unpack_from("<I", data, position)[0]
        struct.pack_into("<I", data, position, (word + damage) % (1 << 32))
    else:
        data[position:position + len(damage)] = damage
    return bytes(data[:len(data) - cut])


def _same_both_ways(path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(pcapng, "CHUNK_SIZE", chunk)
    monkeypatch.setattr(pcapng, "FAST_BLOCKS", True)  # (set every time: a hypothesis test shares the monkeypatch)
    fast = _read(path)
    monkeypatch.setattr(pcapng, "FAST_BLOCKS", False)
    assert _read(path) == fast, path.read_bytes()


@pytest.mark.parametrize("chunk", [pcapng.CHUNK_SIZE, 333])
def test_fast_blocks_read_damaged_headers_as_the_general_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               chunk: int) -> None:
    """A real capture in pcapng with each block's type, length, interface, captured length or trailing length
    moved by -8..8, or zeroed, or all ones: the fast test gives the same packets, counts and error (text, offset,
    frame) as every block going through the general checks."""
    path = tmp_path / "damaged.pcapng"
    for position in _FIELDS_AT:
        for damage in [*range(-8, 9), b"\0" * 4, b"\xff" * 4]:
            path.write_bytes(_damaged(position, damage))
            _same_both_ways(path, monkeypatch, chunk)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(min_value=0), damage=st.binary(min_size=1, max_size=4),
       cut=st.one_of(st.just(0), st.integers(0, 300)), chunk=st.sampled_from([pcapng.CHUNK_SIZE, 333]))
def test_fast_blocks_read_damaged_files_as_the_general_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             position: int, damage: bytes, cut: int,
                                                             chunk: int) -> None:
    """The same, with bytes written anywhere and the file cut short."""
    path = tmp_path / "damaged.pcapng"
    path.write_bytes(_damaged(position % len(_DAMAGE_FILE), damage, cut))
    _same_both_ways(path, monkeypatch, chunk)


def test_a_length_not_in_whole_words_is_refused_even_when_its_end_repeats_it(tmp_path: Path) -> None:
    """An enhanced packet block whose length is not a multiple of 4 but whose last word (there) repeats it: the
    general checks call the length impossible; the fast test must not take it either."""
    frames = pcap_frames(CORPUS / "tls12_cert_expired.pcap")
    good = Pcapng().section().interface(lt.ETHERNET)
    for micros, frame in frames[:3]:
        good.enhanced(0, micros, frame)
    data = bytearray(good.bytes())
    last = pcapng_block_offsets(bytes(data))[-1]
    length = struct.unpack_from("<I", data, last + 4)[0] - 2
    struct.pack_into("<I", data, last + 4, length)
    struct.pack_into("<I", data, last + length - 4, length)
    data += b"\0" * 8
    path = tmp_path / "odd.pcapng"
    path.write_bytes(bytes(data))
    packets, _counts, error = _read(path)
    assert len(packets) == 2 and error is not None and "impossible length" in error[1]
