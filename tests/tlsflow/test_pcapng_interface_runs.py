"""pcapng enhanced packet blocks take a fast test while they stay on one interface (`pcapng.walk_blocks` keeps the
current interface in locals). These tests spread real captures over interfaces and sections, in runs and
alternating, and check that every packet, every record and the per-link-type frame counts are those of the same
frames in classic pcap, with chunks small enough that blocks straddle them and counts are folded mid-run."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from tests.conftest import CORPUS
from tlsflow.capture import linktypes as lt
from tlsflow.capture import open_capture, pcapng
from tlsflow.pipeline import iter_flow_records

from .test_capture import TSHARK, Pcapng, check_against_tshark


def _pcap_frames(path: Path) -> list[tuple[int, bytes]]:
    """(time in microseconds, frame bytes) of a little-endian, microsecond, Ethernet classic pcap file."""
    data = path.read_bytes()
    magic, *_rest, link_type = struct.unpack_from("<IHHiIII", data)
    assert magic == 0xA1B2C3D4 and link_type == lt.ETHERNET, path
    frames, pos = [], 24
    while pos < len(data):
        seconds, micros, caplen, _original = struct.unpack_from("<IIII", data, pos)
        frames.append((seconds * 1_000_000 + micros, data[pos + 16:pos + 16 + caplen]))
        pos += 16 + caplen
    return frames


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
        frames = _pcap_frames(source)
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
    frames = _pcap_frames(CORPUS / "tls13_established_python.pcap")
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
