"""Shared test fixtures: where the shipped corpus and the shared public captures are."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "captures" / "corpus"
SHARED = Path(os.environ.get("TLSFLOW_SHARED", REPO.parent / "shared")).resolve()
PUBLIC = SHARED / "captures" / "public"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The Dask cluster tests run last: Dask leaves threads running for the rest of the process (its offload
    executor, its IO loop), and with another thread alive `--jobs` spawns its workers instead of forking them
    (`parallel.start_method`), so every `--jobs` test after them tested only the spawn path, never the fork that
    the command line uses."""
    items.sort(key=lambda item: getattr(getattr(item, "module", None), "__name__", "").endswith("test_cluster"))


def corpus_labels() -> list[dict]:
    path = CORPUS / "labels.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def loopback_captures(corpus: Path = CORPUS) -> list[Path]:
    """The corpus captures of TCP on loopback as tcpdump wrote them (Ethernet frames of IPv4 and TCP): inputs of
    the tests that rewrite a capture's IP or TCP headers or cut its frames. Not the tunnel_* ones: their TLS rides
    inside VXLAN (tests/tlsflow/test_tunnels.py)."""
    from tests.tlsflow.pcap_edit import link_type

    return [p for p in sorted(corpus.glob("*.pcap")) if link_type(p) == 1 and not p.name.startswith("tunnel_")]


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    if not (CORPUS / "labels.jsonl").exists():
        pytest.fail("captures/corpus/labels.jsonl is missing: the corpus ships with the repository")
    return CORPUS


@pytest.fixture(scope="session")
def public_dir() -> Path:
    if not (PUBLIC / "expected.jsonl").exists():
        pytest.skip("../shared/captures/public is not present (it is not part of a user's clone)")
    return PUBLIC


@pytest.fixture
def fallbacks(monkeypatch) -> list[str]:
    """Counts the times `--jobs` byte ranges were given up for one process (tlsflow.parallel_ranges)."""
    from tlsflow import parallel_ranges

    calls: list[str] = []
    original = parallel_ranges._single_process

    def counting(path, *args, **kwargs):
        calls.append(path)
        yield from original(path, *args, **kwargs)

    monkeypatch.setattr(parallel_ranges, "_single_process", counting)
    return calls


@pytest.fixture(scope="session")
def generated_capture(tmp_path_factory) -> Path:
    """A bench capture (bench.gen_capture, 3 MB, seed 3): real handshakes (TLS 1.2 and 1.3, failures, resets)
    interleaved over many connections, made once per test session."""
    from bench.gen_capture import generate

    path = tmp_path_factory.mktemp("generated") / "gen.pcap"
    with path.open("wb") as out:
        generate(out, 3_000_000, seed=3)
    return path


def capture_file_bytes(link_type: int, records: list[tuple[int, bytes, int]], pcapng: bool) -> bytes:
    """A little-endian capture file of `records` (time in microseconds, captured bytes, original length): classic
    pcap with microsecond times, or pcapng with one interface (microsecond times) and enhanced packet blocks."""
    import struct

    if pcapng:  # section header, one interface, enhanced packet blocks
        out = bytearray(struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28))
        out += struct.pack("<IIHHII", 1, 20, link_type, 0, 65535, 20)
    else:
        out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, link_type))
    for micros, kept, original in records:
        if pcapng:
            padded = kept + b"\x00" * (-len(kept) % 4)
            length = 32 + len(padded)
            out += struct.pack("<IIIIIII", 6, length, 0, micros >> 32, micros & 0xFFFFFFFF, len(kept),
                               original) + padded + struct.pack("<I", length)
        else:
            out += struct.pack("<IIII", micros // 1_000_000, micros % 1_000_000, len(kept), original) + kept
    return bytes(out)


def link_frame(link_type: int, ip: bytes, vlan: bool = False) -> bytes:
    """The IP packet `ip` in a frame of `link_type` (raw IP, Linux cooked v1 or v2, else Ethernet, with a VLAN tag
    when `vlan`)."""
    import struct

    from tlsflow.capture import linktypes as lt

    ethertype = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    if link_type == lt.RAW:
        return ip
    if link_type == lt.LINUX_SLL:
        return struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 6, ethertype) + ip
    if link_type == lt.LINUX_SLL2:
        return struct.pack("!HHIHBB8s", ethertype, 0, 1, 1, 0, 6, b"\x02" * 6) + ip
    tag = struct.pack("!HH", 0x8100, 7) if vlan else b""
    return b"\x02" * 6 + b"\x04" * 6 + tag + struct.pack("!H", ethertype) + ip


def corpus_and_public_captures() -> list[Path]:
    """Every shipped corpus capture, then every public one when ../shared is present."""
    found = sorted(p for p in CORPUS.iterdir() if p.suffix in (".pcap", ".pcapng"))
    if PUBLIC.is_dir():
        found += sorted(p for p in PUBLIC.rglob("*") if p.suffix in (".pcap", ".pcapng"))
    return found


def trust_and_keylog_for(path: Path) -> tuple[object, object]:
    """The trust store and key log that `tlsflow analyze` is given for a test capture: the corpus CA for corpus
    captures, and the capture's own .keylog file when there is one."""
    from analyzers.certchecks import TrustStore
    from tlsparse.keylog import KeyLog

    keylog_path = path.with_suffix(".keylog")
    keylog = KeyLog.from_file(keylog_path) if keylog_path.exists() else None
    trust = TrustStore.default()
    if path.parent == CORPUS:
        trust = trust.with_pem_file(str(CORPUS / "ca.pem"))
    return trust, keylog


def pcap_frames(path: Path) -> list[tuple[int, bytes]]:
    """(time in microseconds, frame bytes) of every record of a little-endian, microsecond classic pcap file (the
    corpus captures, the generated ones): to write the same frames in another layout."""
    import struct

    data = path.read_bytes()
    assert struct.unpack_from("<I", data)[0] == 0xA1B2C3D4, f"{path}: not a little-endian microsecond pcap"
    frames, pos = [], 24
    while pos < len(data):
        seconds, micros, caplen, _original = struct.unpack_from("<IIII", data, pos)
        frames.append((seconds * 1_000_000 + micros, data[pos + 16:pos + 16 + caplen]))
        pos += 16 + caplen
    return frames


def pcapng_block_offsets(data: bytes) -> list[int]:
    """The offset of every block of a pcapng file (each section's own byte order)."""
    import struct

    offsets, pos, order = [], 0, "<"
    while pos + 12 <= len(data):
        if data[pos:pos + 4] == b"\x0a\x0d\x0d\x0a":
            order = "<" if data[pos + 8:pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        offsets.append(pos)
        pos += struct.unpack_from(order + "I", data, pos + 4)[0]
    return offsets


def assert_cuts_start_at_frames(path: Path, cuts: list) -> None:
    """Each cut (split.Cut) is where a reader starting there reads the frame the whole file numbers next."""
    from tlsflow.capture import open_capture

    with open_capture(path) as cap:
        frames = {f.frame: f for f in cap.frames()}
    for cut in cuts:
        with open_capture(path) as cap:
            cap.start_at(cut.offset, cut.frames_before)
            assert next(iter(cap.frames())) == frames[cut.frames_before + 1]


def capture_error(path: Path, start: object = None) -> tuple[str, int | None, int | None, int]:
    """(message, byte offset, frame, frames read before it) of the CaptureError that reading `path` ends with
    (from `start`, a split.Cut, when given)."""
    from tlsflow.capture import CaptureError, open_capture

    with open_capture(path) as cap:
        if start is not None:
            cap.start_at(start.offset, start.frames_before, start.preamble)  # type: ignore[attr-defined]
        n = 0
        try:
            for _ in cap.frames():
                n += 1
        except CaptureError as exc:
            return exc.message, exc.offset, exc.frame, n
    raise AssertionError("no error")


def analysed_first_flow(path: Path) -> tuple[dict, object]:
    """The record of a capture's first connection, and the FlowAnalyzer that kept its parser events and TCP facts
    (`kept_events`, `kept_tcp`), fed as `tlsflow explain` feeds it."""
    from tlsflow.capture import open_capture
    from tlsflow.pipeline import FlowAnalyzer

    analyzer = FlowAnalyzer(str(path), keep_events_for=1)
    with open_capture(path) as cap:
        found = [r for pkt in cap.packets() for r in analyzer.feed(pkt)] + list(analyzer.finish())
    return next(r for r in found if r["flow_id"] == 1), analyzer
