"""The fast ways through a capture give the single slow process's rows: `--jobs N` on one file (tlsflow.parallel),
order aside, and segments counted from their header fields (TcpReassembler.count_only) instead of TcpPackets."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from bench.gen_capture import generate
from tests.conftest import CORPUS
from tlsflow.api import analyze_files
from tlsflow.capture import open_capture
from tlsflow.capture.decode import shard_of
from tlsflow.cli import main
from tlsflow.pipeline import FlowAnalyzer, iter_flow_records


def _records(path: Path, jobs: int) -> list[dict]:
    out = [result for _capture, result in analyze_files([str(path)], jobs=jobs)]
    assert all(isinstance(r, dict) for r in out), [r for r in out if not isinstance(r, dict)]
    return sorted(out, key=lambda r: r["flow_id"])


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """A bench capture: real handshakes (TLS 1.2 and 1.3, failures, resets) interleaved over many connections."""
    path = tmp_path_factory.mktemp("parallel") / "gen.pcap"
    with path.open("wb") as out:
        generate(out, 3_000_000, seed=3)
    return path


@pytest.fixture(scope="module")
def corpus_concatenated(tmp_path_factory) -> Path:
    """Every classic-pcap corpus capture, one after the other in one file (timestamps shifted so that time runs
    on): every kind of failure the corpus has, and the same 4-tuples coming back (port reuse, lingering flows)."""
    files = sorted(CORPUS.glob("*.pcap"))
    if not files:
        pytest.skip("no corpus captures")
    path = tmp_path_factory.mktemp("parallel") / "corpus.pcap"
    header = None
    clock = 1_700_000_000.0
    with path.open("wb") as out:
        for file in files:
            data = file.read_bytes()
            if data[:4] != b"\xd4\xc3\xb2\xa1":
                continue
            if header is None:
                header = data[:24]
                out.write(header)
            elif data[20:24] != header[20:24]:
                continue
            pos, first, last = 24, None, clock
            while pos + 16 <= len(data):
                sec, usec, caplen, origlen = struct.unpack_from("<IIII", data, pos)
                ts = sec + usec / 1e6
                first = ts if first is None else first
                shifted = clock + (ts - first)
                last = max(last, shifted)
                out.write(struct.pack("<IIII", int(shifted), round((shifted % 1) * 1e6) % 1_000_000, caplen, origlen))
                out.write(data[pos + 16:pos + 16 + caplen])
                pos += 16 + caplen
            clock = last + 2.0
    return path


def test_generated_capture_two_and_three_jobs_equal_one(generated):
    single = _records(generated, 1)
    assert len(single) > 50
    assert {r["outcome"] for r in single} >= {"established", "failed"}
    assert _records(generated, 2) == single
    assert _records(generated, 3) == single


def test_corpus_in_one_file_two_jobs_equal_one(corpus_concatenated):
    single = _records(corpus_concatenated, 1)
    assert len(single) > 40
    assert _records(corpus_concatenated, 2) == single


def test_cli_jobs_on_one_file_writes_the_same_rows(generated, tmp_path):
    outputs = []
    for jobs in (1, 2):
        out = tmp_path / f"j{jobs}.jsonl"
        main(["analyze", str(generated), "--format", "jsonl", "-o", str(out), "-q", "--jobs", str(jobs)])
        outputs.append(sorted(json.loads(line)["flow_id"] for line in out.read_text().splitlines()))
    assert outputs[0] == outputs[1] == list(range(1, len(outputs[0]) + 1))


def test_damaged_capture_reports_once_with_every_job(generated, tmp_path):
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(generated.read_bytes()[:1_000_003])  # ends inside a record
    single = [r for _c, r in analyze_files([str(cut)], jobs=1)]
    double = [r for _c, r in analyze_files([str(cut)], jobs=2)]
    errors = [r for r in single if isinstance(r, str)]
    assert len(errors) == 1 and [r for r in double if isinstance(r, str)] == errors
    key = lambda r: r["flow_id"]
    assert sorted((r for r in double if isinstance(r, dict)), key=key) == \
        sorted((r for r in single if isinstance(r, dict)), key=key)


def test_shard_is_the_same_both_ways():
    a, b = bytes([127, 0, 0, 1]), bytes([127, 0, 10, 2])
    for count in (2, 3, 7):
        assert shard_of(a, b, 51000, 443, count) == shard_of(b, a, 443, 51000, count)
    assert len({shard_of(a, b, port, 443, 2) for port in range(50000, 50010)}) == 2


def _records_without_fast_path(path: Path) -> list[dict]:
    """Every segment as a TcpPacket through FlowAnalyzer.feed, as before count_only existed."""
    analyzer = FlowAnalyzer(str(path))
    out: list[dict] = []
    with open_capture(path) as cap:
        for pkt in cap.packets():
            out.extend(analyzer.feed(pkt))
    out.extend(analyzer.finish())
    return sorted(out, key=lambda r: r["flow_id"])


@pytest.mark.parametrize("capture", ["generated", "corpus_concatenated"])
def test_counted_segments_give_the_same_rows(capture, request):
    path = request.getfixturevalue(capture)
    fast = sorted(iter_flow_records(str(path)), key=lambda r: r["flow_id"])
    assert fast == _records_without_fast_path(path)
