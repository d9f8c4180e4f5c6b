"""The fast ways through a capture give the single slow process's rows: `--jobs N` on one file (tlsflow.parallel:
byte ranges of a pcap file, connection shards of anything else), order aside, and segments counted from their
header fields (TcpReassembler.count_only) instead of TcpPackets."""
from __future__ import annotations

import gzip
import itertools
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CORPUS, assert_cuts_start_at_frames, pcapng_block_offsets
from tlsflow import parallel_ranges
from tlsflow import waiting as waiting_records
from tlsflow.api import analyze_files
from tlsflow.capture import open_capture
from tlsflow.capture.decode import shard_of
from tlsflow.capture.split import find_cuts
from tlsflow.cli import main
from tlsflow.parallel import analyze_file_parallel
from tlsflow.parallel_ranges import ranges_in_one_process, splittable
from tlsflow.pipeline import FlowAnalyzer, iter_flow_records
from tlsflow.shipping import unpack_all


def _records(path: Path, jobs: int) -> list[dict]:
    out = [result for _capture, result in analyze_files([str(path)], jobs=jobs)]
    assert all(isinstance(r, dict) for r in out), [r for r in out if not isinstance(r, dict)]
    return sorted(out, key=lambda r: r["flow_id"])


@pytest.fixture(scope="module")
def generated(generated_capture) -> Path:
    return generated_capture


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


@pytest.mark.parametrize("waiting", [waiting_records.WAITING_IN_MEMORY, 3])
def test_generated_capture_two_and_three_jobs_equal_one(generated, monkeypatch, waiting):
    """Also when the later workers' records wait in the parent's temporary file (`waiting`: records kept in
    memory first)."""
    monkeypatch.setattr(waiting_records, "WAITING_IN_MEMORY", waiting)
    single = _records(generated, 1)
    assert len(single) > 50
    assert {r["outcome"] for r in single} >= {"established", "failed"}
    assert _records(generated, 2) == single
    assert _records(generated, 3) == single


def test_corpus_in_one_file_two_jobs_equal_one(corpus_concatenated):
    single = _records(corpus_concatenated, 1)
    assert len(single) > 40
    assert _records(corpus_concatenated, 2) == single


def test_cli_jobs_on_one_file_writes_the_same_rows(generated, tmp_path, monkeypatch):
    """--jobs 0 is one process per core the process may use (here: two)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    used = []
    original = parallel_ranges.analyze_ranges
    monkeypatch.setattr(parallel_ranges, "analyze_ranges",
                        lambda path, jobs, **kw: used.append(jobs) or original(path, jobs, **kw))
    outputs = []
    for jobs in (1, 2, 0):
        out = tmp_path / f"j{jobs}.jsonl"
        main(["analyze", str(generated), "--format", "jsonl", "-o", str(out), "-q", "--jobs", str(jobs)])
        outputs.append(sorted((json.loads(line) for line in out.read_text().splitlines()), key=lambda r: r["flow_id"]))
    assert outputs[0] == outputs[1] == outputs[2]
    assert [r["flow_id"] for r in outputs[0]] == list(range(1, len(outputs[0]) + 1))
    assert used == [2, 2]


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


# --- byte ranges (tlsflow.parallel_ranges) ---------------------------------------------------------------------

def _pcap_records(path: Path) -> tuple[bytes, list[tuple[float, bytes, int]]]:
    """A little-endian microsecond pcap file as its header and (time, frame bytes, original length) per record."""
    data = path.read_bytes()
    assert data[:4] == b"\xd4\xc3\xb2\xa1"
    out, pos = [], 24
    while pos + 16 <= len(data):
        sec, usec, caplen, origlen = struct.unpack_from("<IIII", data, pos)
        out.append((sec + usec / 1e6, data[pos + 16:pos + 16 + caplen], origlen))
        pos += 16 + caplen
    return data[:24], out


def _write_pcap(path: Path, header: bytes, records: list[tuple[float, bytes, int]]) -> list[int]:
    """Writes the records; returns the byte offset of each."""
    offsets = []
    with path.open("wb") as out:
        out.write(header)
        pos = len(header)
        for ts, frame, origlen in records:
            micros = round(ts * 1e6)
            offsets.append(pos)
            out.write(struct.pack("<IIII", micros // 1_000_000, micros % 1_000_000, len(frame), origlen) + frame)
            pos += 16 + len(frame)
    return offsets


def _shift_client_sequence(frame: bytes, client_port: int, delta: int) -> bytes:
    """An Ethernet/IPv4/TCP frame with the client's sequence numbers moved by `delta` (a new connection on the same
    4-tuple: another initial sequence number)."""
    ihl = (frame[14] & 15) * 4
    tcp = 14 + ihl
    sport, _dport, seq, ack = struct.unpack_from("!HHII", frame, tcp)
    flags = frame[tcp + 13]
    if sport == client_port:
        seq = (seq + delta) & 0xFFFFFFFF
    elif flags & 0x10:
        ack = (ack + delta) & 0xFFFFFFFF
    return frame[:tcp + 4] + struct.pack("!II", seq, ack) + frame[tcp + 12:]


def _in_ranges(path: Path, targets: list[int]) -> list[dict]:
    out = list(ranges_in_one_process(str(path), targets, batch_packets=7))
    assert all(isinstance(r, dict) for r in out), [r for r in out if not isinstance(r, dict)]
    return sorted(out, key=lambda r: r["flow_id"])


def _single(path: Path) -> list[dict]:
    return sorted(iter_flow_records(str(path)), key=lambda r: r["flow_id"])


@pytest.fixture(scope="module")
def port_reuse(tmp_path_factory) -> tuple[Path, list[int]]:
    """One real TLS connection (ends FIN, FIN, ACK), then a second one on the same 4-tuple a second later (another
    initial sequence number): a single process closes the first (both FINs acknowledged, then its SYN) and opens
    the second."""
    header, records = _pcap_records(CORPUS / "tls12_alpn_mismatch_ignored_python.pcap")
    first = records[0][0]
    client_port = struct.unpack_from("!H", records[0][1], 14 + 20)[0]
    again = [(ts - first + 1.0, _shift_client_sequence(frame, client_port, 1_000_000), n) for ts, frame, n in records]
    path = tmp_path_factory.mktemp("ranges") / "reuse.pcap"
    offsets = _write_pcap(path, header, [(ts - first, frame, n) for ts, frame, n in records] + again)
    return path, offsets


def test_port_reuse_every_cut_gives_one_process_rows(port_reuse, fallbacks):
    path, offsets = port_reuse
    single = _single(path)
    assert len(single) == 2
    for offset in offsets[1:]:
        assert _in_ranges(path, [offset]) == single, offset
    for a, b in [(offsets[3], offsets[17]), (offsets[17], offsets[18]), (offsets[5], offsets[30])]:
        assert _in_ranges(path, [a, b]) == single, (a, b)
    # The cut before the first connection's last ACK leaves the second range a flow made of that ACK, which then
    # takes the second connection's SYN: that cannot be settled from the records, so one process does it again.
    assert fallbacks


def test_connections_across_cuts_in_generated_capture(generated, fallbacks):
    """Cuts in the middle of handshakes and transfers of many interleaved connections."""
    single = _single(generated)
    size = generated.stat().st_size
    cut_frames = []
    for share in (0.13, 0.5, 0.77):
        cut = next(find_cuts(str(generated), [int(size * share)]))
        cut_frames.append(cut.frames_before + 1)
        assert _in_ranges(generated, [int(size * share)]) == single
    assert _in_ranges(generated, [size // 4, size // 2, size * 3 // 4]) == single
    # Connections did straddle the cuts: first frame before a cut, a packet at or after it.
    with open_capture(generated) as cap:
        times = {f.frame: f.ts for f in cap.frames()}
    assert all(any(r["first_frame"] < f and r["end"] >= times[f] for r in single) for f in cut_frames)
    assert not fallbacks


def test_corpus_in_one_file_any_cut(corpus_concatenated, fallbacks):
    single = _single(corpus_concatenated)
    size = corpus_concatenated.stat().st_size
    for k in range(1, 8):
        assert _in_ranges(corpus_concatenated, [size * k // 8]) == single, k
    assert _in_ranges(corpus_concatenated, [size // 5, size * 2 // 5, size * 3 // 5, size * 4 // 5]) == single


@pytest.fixture(scope="module")
def long_lived(generated, tmp_path_factory) -> Path:
    """The generated capture with one more TLS connection whose packets are spread from its first record to its
    last: open across every cut."""
    header, records = _pcap_records(generated)
    _h, conn = _pcap_records(CORPUS / "tls12_alpn_mismatch_ignored_python.pcap")
    start, stop = records[0][0], records[-1][0]
    step = (stop - start) / (len(conn) + 1)
    spread = [(start + step * (i + 0.5), frame, n) for i, (_ts, frame, n) in enumerate(conn)]
    merged = sorted(records + spread, key=lambda r: r[0])
    path = tmp_path_factory.mktemp("ranges") / "long.pcap"
    _write_pcap(path, header, merged)
    return path


def test_long_lived_connection_across_every_cut(long_lived, fallbacks):
    single = _single(long_lived)
    longest = max(single, key=lambda r: r["end"] - r["start"])
    assert longest["server"].endswith(":24430") and longest["outcome"] == "established"
    size = long_lived.stat().st_size
    assert _in_ranges(long_lived, [size // 2]) == single
    assert _in_ranges(long_lived, [size // 4, size // 2, size * 3 // 4]) == single
    assert sorted(_records(long_lived, 2), key=lambda r: r["flow_id"]) == single
    assert not fallbacks


@pytest.fixture(scope="module")
def open_to_the_end(generated, tmp_path_factory) -> tuple[Path, float]:
    """The generated capture with two more real connections that begin in the first range and are still open when
    the file ends: one whose server never answered the ClientHello (net_server_silent without the client's FIN: its
    verdict measures the wait up to the end of the capture), and one past its handshake whose last four segments
    (two ACKs, two alerts, its FINs left out) come after everything else, the last three within one second: the
    first worker, following it past its range, counts those in the reassembler's fast lane, and the time of the last
    one is the end of the capture. Returns the file and that time."""
    header, records = _pcap_records(generated)
    _h, silent = _pcap_records(CORPUS / "net_server_silent.pcap")
    _h, long = _pcap_records(CORPUS / "tls12_alpn_mismatch_ignored_python.pcap")
    start, stop = records[0][0], records[-1][0]
    early = [(start + 0.001 * i, frame, n) for i, (_ts, frame, n) in enumerate(silent[:5] + long[:11])]
    after = float(int(stop) + 5)
    late = [(after + 0.1 * i, frame, n) for i, (_ts, frame, n) in enumerate(long[11:15])]
    path = tmp_path_factory.mktemp("ranges") / "open-to-the-end.pcap"
    _write_pcap(path, header, sorted(records + early, key=lambda r: r[0]) + late)
    return path, late[-1][0]


@pytest.mark.parametrize("variant", ["pcap", "ipv6", "vlan"])
def test_the_capture_ends_with_segments_counted_past_the_range(open_to_the_end, fallbacks, monkeypatch, tmp_path,
                                                              variant):
    """Worker 0 follows both past its range to the end of the file; the segments it counts there without a
    TcpPacket (untagged IPv4 in `_follow_ethernet` itself, the other layouts in the frame handlers) keep their time
    as the capture's end, as in one process."""
    from tests.tlsflow.pcap_edit import as_ipv6, tagged

    path, end = open_to_the_end
    if variant == "ipv6":
        path = as_ipv6(path, tmp_path / "v6.pcap")
    elif variant == "vlan":
        path = tagged(path, tmp_path / "t.pcap", pcapng=False)
    single = _single(path)
    silent = [r for r in single if r["cause"] == "server_silent"]
    assert len(silent) == 1 and silent[0]["end"] == pytest.approx(end)
    counted = []
    original = parallel_ranges._follow_ethernet

    def following(*args, **kwargs):  # type: ignore[no-untyped-def]
        reassembler = args[4]
        before = reassembler.count_lane

        def count_lane(*fields):  # type: ignore[no-untyped-def]
            taken = before(*fields)
            counted.append(taken)
            return taken

        reassembler.count_lane = count_lane
        yield from original(*args, **kwargs)

    monkeypatch.setattr(parallel_ranges, "_follow_ethernet", following)
    size = path.stat().st_size
    for targets in ([size // 2], [size // 3, size * 2 // 3]):
        assert _in_ranges(path, targets) == single
    assert counted.count(True) >= 6  # three segments after the last second began, each run
    assert not fallbacks


def test_cuts_are_record_boundaries_with_frame_numbers(generated):
    size = generated.stat().st_size
    targets = [size // 3, size // 3 + 1, size * 2 // 3]
    cuts = list(find_cuts(str(generated), targets))
    assert len(cuts) == 3
    assert all(cut.offset >= target for target, cut in zip(targets, cuts))
    assert_cuts_start_at_frames(generated, cuts)
    # A cut is never at the end of the file.
    assert list(find_cuts(str(generated), [size - 1])) == []


def test_damage_stops_the_cuts(generated, tmp_path):
    data = generated.read_bytes()
    cut = next(find_cuts(str(generated), [len(data) // 2]))
    corrupt = tmp_path / "corrupt.pcap"
    # A record claiming 1 GB: the hop and the reader stop there.
    corrupt.write_bytes(data[:cut.offset + 8] + struct.pack("<I", 1 << 30) + data[cut.offset + 12:])
    assert list(find_cuts(str(corrupt), [len(data) // 4, len(data) // 2, len(data) * 3 // 4])) == \
        list(find_cuts(str(generated), [len(data) // 4]))


@pytest.mark.parametrize("where", [0.3, 0.6, 0.9])
def test_damaged_capture_in_ranges(generated, tmp_path, where):
    data = generated.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:int(len(data) * where)])  # ends inside a record, before or after the cut
    single = [r for _c, r in analyze_files([str(cut)], jobs=1)]
    errors = [r for r in single if isinstance(r, str)]
    assert len(errors) == 1
    for targets in ([len(data) // 2], [len(data) // 4, len(data) // 2, len(data) * 3 // 4]):
        ranges = list(ranges_in_one_process(str(cut), targets))
        assert [r for r in ranges if isinstance(r, str)] == errors
        key = lambda r: r["flow_id"]
        assert sorted((r for r in ranges if isinstance(r, dict)), key=key) == \
            sorted((r for r in single if isinstance(r, dict)), key=key)


@pytest.fixture
def shared(monkeypatch) -> list[int]:
    """The jobs of each run that `parallel.analyze_file_sharded` made (shared out by connection)."""
    from tlsflow import parallel

    runs: list[int] = []
    original = parallel.analyze_file_sharded

    def sharing(path, jobs, **kwargs):  # type: ignore[no-untyped-def]
        runs.append(jobs)
        return original(path, jobs, **kwargs)

    monkeypatch.setattr(parallel, "analyze_file_sharded", sharing)
    return runs


def test_compressed_capture_is_shared_by_connection(generated, tmp_path, shared):
    """From GZIP_SHARED_FROM jobs on; with fewer, one process reads it (a child decompressing for it)."""
    from tlsflow import parallel

    packed = tmp_path / "gen.pcap.gz"
    packed.write_bytes(gzip.compress(generated.read_bytes(), compresslevel=1))
    assert not splittable(str(packed)) and splittable(str(generated))
    single = _records(packed, 1)
    assert _records(packed, parallel.GZIP_SHARED_FROM) == single
    assert _records(packed, 2) == single
    assert shared == [parallel.GZIP_SHARED_FROM]


@pytest.mark.parametrize("busy", [True, False])
def test_a_busy_link_is_shared_out_by_connection(generated, monkeypatch, shared, busy):
    """`--jobs` on one file looks at the connections in flight at its first cut: from SHARDS_FROM_IN_FLIGHT 4-tuples
    on (a link with thousands of long connections at once, where worker 0 would follow most of the file), worker 0
    is stopped before any record is given and the file is shared out by connection; below, the ranges go on, and
    worker 1 takes the 4-tuples the parent found instead of looking for them again. The same rows either way."""
    found: list[int] = []
    original_parts = parallel_ranges.in_flight_parts
    parent = os.getpid()

    def in_flight_parts(path, windows, cut_frame):  # type: ignore[no-untyped-def]
        # (in a forked worker this fails the run: its crash is raised in the parent)
        assert os.getpid() == parent, "worker 1 looked for the connections in flight at its cut again"
        exchanging, other = original_parts(path, windows, cut_frame)
        found.append(len(exchanging))
        return exchanging, other

    monkeypatch.setattr(parallel_ranges, "in_flight_parts", in_flight_parts)
    single = _records(generated, 1)
    with open_capture(generated) as cap:
        segments = sum(1 for _ in cap.packets())
    assert segments > 1000
    # (the generated capture keeps a few dozen connections at once: the threshold is brought down to them)
    monkeypatch.setattr(parallel_ranges, "SHARDS_FROM_IN_FLIGHT", 10 if busy else 1 << 30)
    assert _records(generated, 2) == single
    assert len(found) == 1 and found[0] >= 10  # the parent looked once, at the first cut
    assert shared == ([2] if busy else [])


def test_a_syn_flood_keeps_the_byte_ranges(tmp_path, monkeypatch, shared):
    """SYNs alone do not make a busy link: a flood's 4-tuples are not counted towards SHARDS_FROM_IN_FLIGHT (its
    flow table overflows, which the byte ranges see as one process does, and shards would not)."""
    from bench.gen_flood import write_flood

    path = tmp_path / "flood.pcap"
    write_flood(str(path), 20_000, 20.0, False)
    parts: list[tuple[int, int]] = []
    original_parts = parallel_ranges.in_flight_parts

    def in_flight_parts(*args):  # type: ignore[no-untyped-def]
        exchanging, other = original_parts(*args)
        parts.append((len(exchanging), len(other)))
        return exchanging, other

    monkeypatch.setattr(parallel_ranges, "in_flight_parts", in_flight_parts)
    monkeypatch.setattr(parallel_ranges, "SHARDS_FROM_IN_FLIGHT", 10)
    assert _records(path, 2) == _records(path, 1)
    assert len(parts) == 1 and parts[0][0] < 10 <= parts[0][1]  # (SYNs alone in the window before the cut)
    assert shared == []


def test_progress_reaches_the_file_size(generated):
    seen: list[tuple[int, int | None]] = []
    list(analyze_file_parallel(str(generated), 2, progress=lambda done, total: seen.append((done, total))))
    size = generated.stat().st_size
    assert seen and all(total == size for _d, total in seen)
    assert seen[-1][0] >= size * 0.99 and all(a[0] <= b[0] for a, b in itertools.pairwise(seen))


def _public_pcaps() -> list[Path]:
    shared = Path(os.environ.get("TLSFLOW_SHARED", Path(__file__).resolve().parents[2] / "../shared"))
    folder = shared / "captures" / "public"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.read_bytes()[:4] in PCAP_MAGICS)


PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",
               b"\x0a\x0d\x0d\x0a"}  # and pcapng


def test_public_captures_cut_in_two_and_three():
    captures = _public_pcaps()
    if not captures:
        pytest.skip("no public captures (../shared/captures/public)")
    compared = 0
    for path in captures:
        if not splittable(str(path)):
            continue
        single = [r for _c, r in analyze_files([str(path)], jobs=1)]
        size = path.stat().st_size
        key = lambda r: r["flow_id"]
        for targets in ([size // 2], [size // 3, size * 2 // 3]):
            ranges = list(ranges_in_one_process(str(path), targets))
            assert [r for r in ranges if isinstance(r, str)] == [r for r in single if isinstance(r, str)], path
            assert sorted((r for r in ranges if isinstance(r, dict)), key=key) == \
                sorted((r for r in single if isinstance(r, dict)), key=key), (path, targets)
        compared += 1
    assert compared > 10


def test_public_pcapng_captures_cut_at_every_block():
    """Real pcapng files from other tools (Wireshark's, Zeek's, Suricata's test captures): a cut at each block in
    turn, so that every kind of block they hold starts a range's preamble or comes right after one."""
    captures = [p for p in _public_pcaps() if p.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a" and p.stat().st_size < 300_000]
    if not captures:
        pytest.skip("no public captures (../shared/captures/public)")
    key = lambda r: r["flow_id"]
    blocks = 0
    for path in captures:
        single = [r for _c, r in analyze_files([str(path)], jobs=1)]
        for offset in pcapng_block_offsets(path.read_bytes())[1:]:
            ranges = list(ranges_in_one_process(str(path), [offset]))
            assert [r for r in ranges if isinstance(r, str)] == [r for r in single if isinstance(r, str)], path
            assert sorted((r for r in ranges if isinstance(r, dict)), key=key) == \
                sorted((r for r in single if isinstance(r, dict)), key=key), (path, offset)
            blocks += 1
    assert blocks > 100


def test_cuts_in_a_big_endian_file(generated, tmp_path):
    """The hop reads record lengths in the file's byte order (views of native order, struct otherwise)."""
    header, records = _pcap_records(generated)
    swapped = tmp_path / "big.pcap"
    with swapped.open("wb") as out:
        out.write(struct.pack(">IHHiIII", *struct.unpack("<IHHiIII", header)))
        for ts, frame, origlen in records:
            micros = round(ts * 1e6)
            out.write(struct.pack(">IIII", micros // 1_000_000, micros % 1_000_000, len(frame), origlen) + frame)
    size = generated.stat().st_size
    targets = [size // 4, size // 2, size * 3 // 4]
    assert list(find_cuts(str(swapped), targets)) == list(find_cuts(str(generated), targets))
    assert _in_ranges(swapped, targets) == _single(swapped)


def _with_client_port(frame: bytes, old: int, new: int) -> bytes:
    """An Ethernet/IPv4/TCP frame of a connection whose client port was `old`, moved to `new`."""
    tcp = 14 + (frame[14] & 15) * 4
    sport, dport = struct.unpack_from("!HH", frame, tcp)
    ports = (new if sport == old else sport, new if dport == old else dport)
    return frame[:tcp] + struct.pack("!HH", *ports) + frame[tcp + 4:]


@pytest.fixture(scope="module")
def idle_closures(tmp_path_factory) -> Path:
    """Eleven minutes of back-to-back connections, a packet every 0.3 s (never a second without one), and two
    connections whose server never answers the ClientHello, one early and one after the middle: each is closed
    by an expiry pass after 300 s idle, and its record says how long it waited ("no answer for ... s"), read from
    the capture time of the packet at which that pass ran."""
    header, busy = _pcap_records(CORPUS / "tls12_alpn_mismatch_ignored_python.pcap")
    _h, silent = _pcap_records(CORPUS / "net_capture_ends_mid_handshake.pcap")
    busy_port = struct.unpack_from("!H", busy[0][1], 34)[0]
    silent_port = struct.unpack_from("!H", silent[0][1], 34)[0]
    records, clock = [], 0.0
    for i in range(122):
        for _ts, frame, n in busy:
            records.append((clock, _with_client_port(frame, busy_port, 40000 + i), n))
            clock += 0.3
    for port, at in ((50001, 10.05), (50002, 345.05)):
        records += [(at + j * 0.001, _with_client_port(frame, silent_port, port), n)
                    for j, (_ts, frame, n) in enumerate(silent)]
    records.sort(key=lambda r: r[0])
    path = tmp_path_factory.mktemp("ranges") / "idle.pcap"
    _write_pcap(path, header, [(1_700_000_000.123 + ts, frame, n) for ts, frame, n in records])
    return path


def test_idle_closures_after_a_cut(idle_closures, fallbacks):
    single = _single(idle_closures)
    silent = [r for r in single if r["cause"] == "server_silent"]
    assert len(silent) == 2 and all(any("no answer for 30" in e for e in r["evidence"]) for r in silent)
    size = idle_closures.stat().st_size
    assert _in_ranges(idle_closures, [size // 2]) == single
    assert _in_ranges(idle_closures, [size // 3, size * 2 // 3]) == single
    assert _records(idle_closures, 2) == single
    assert not fallbacks  # the expiry passes of a worker that starts at a cut run at a single process's packets


@pytest.mark.parametrize("jobs", [2, 3, 5])
def test_cut_shares_balance_the_workers(jobs):
    assert parallel_ranges.cut_shares(jobs, 0.0) == pytest.approx([k / jobs for k in range(1, jobs)])
    for ratio in (0.01, 0.1, 0.3):
        shares = parallel_ranges.cut_shares(jobs, ratio)
        bounds = [0.0, *shares, 1.0]
        # Worker k starts when the hop reaches its cut (ratio x the analysis time of the bytes before it) and
        # analyses its range: all finish together, each range shorter than the one before.
        finish = [ratio * bounds[k] + bounds[k + 1] - bounds[k] for k in range(jobs)]
        assert finish == pytest.approx([finish[0]] * jobs)
        assert all(k / jobs <= share for k, share in enumerate(shares, 1))


def test_damage_reached_while_following(long_lived, tmp_path):
    """Worker 0 follows the long connection past its range into the damage: it ends its flows there, as one
    process does, and the error is reported once."""
    data = long_lived.read_bytes()
    cut = tmp_path / "long-cut.pcap"
    cut.write_bytes(data[:int(len(data) * 0.7)])
    single = [r for _c, r in analyze_files([str(cut)], jobs=1)]
    errors = [r for r in single if isinstance(r, str)]
    assert len(errors) == 1
    key = lambda r: r["flow_id"]
    for ranges in (list(ranges_in_one_process(str(cut), [len(data) // 2])),
                   [r for _c, r in analyze_files([str(cut)], jobs=2)]):
        assert [r for r in ranges if isinstance(r, str)] == errors
        assert sorted((r for r in ranges if isinstance(r, dict)), key=key) == \
            sorted((r for r in single if isinstance(r, dict)), key=key)


# Orders in which the parent may get the workers' messages (each worker's messages are an iterator that runs the
# worker as far as it is pulled, so that it sees what the parent told it meanwhile).

def _later_workers_first(workers: list) -> Iterator[tuple[int, tuple]]:
    """The last worker's messages, then the one before it, ...: every later worker is far ahead."""
    for index in reversed(range(len(workers))):
        for message in workers[index]:
            yield index, message


def _round_robin(workers: list) -> Iterator[tuple[int, tuple]]:
    """One message of each worker in turn: the workers go at the same pace."""
    rows = [zip(itertools.repeat(index), worker) for index, worker in enumerate(workers)]
    for turn in itertools.zip_longest(*rows):
        yield from (pair for pair in turn if pair is not None)


def _late_end_of_worker_0(workers: list) -> Iterator[tuple[int, tuple]]:
    """Worker 0's batches, every other worker's messages, then worker 0's end: its following goes on longest."""
    first, *others = workers
    first = list(first)
    yield from ((0, m) for m in first[:-1])
    for k, worker in enumerate(others, 1):
        yield from ((k, m) for m in worker)
    yield 0, first[-1]


@pytest.mark.parametrize("waiting", [waiting_records.WAITING_IN_MEMORY, 1, 7])
@pytest.mark.parametrize("interleave", [_later_workers_first, _round_robin, _late_end_of_worker_0])
def test_records_given_as_they_come_in_any_order(generated, long_lived, corpus_concatenated, fallbacks,
                                                 interleave, waiting, monkeypatch):
    """The parent numbers and gives a worker's records as they come once the earlier workers have ended (`_Placer`):
    whatever the order in which the workers' messages reach it, the rows are a single process's, each once; also
    when the records that wait go to the parent's temporary file after `waiting` in memory."""
    monkeypatch.setattr(waiting_records, "WAITING_IN_MEMORY", waiting)
    for path in (generated, long_lived, corpus_concatenated):
        single = _single(path)
        size = path.stat().st_size
        for targets in ([size // 2], [size // 5, size // 2, size * 4 // 5]):
            given = list(ranges_in_one_process(str(path), targets, batch_packets=5, interleave=interleave))
            assert all(isinstance(r, dict) for r in given)
            assert len({r["first_frame"] for r in given}) == len(given)
            assert sorted(given, key=lambda r: r["flow_id"]) == single, (path.name, targets)
    assert not fallbacks


@pytest.mark.parametrize("reported", [0, parallel_ranges.SUSPECTS_REPORTED])
def test_records_after_an_open_phantom_wait_for_it(trailing_ack, monkeypatch, fallbacks, reported):
    """Worker 1 has ended before worker 0 (so it was never asked to watch its phantom, which closes only at the end
    of the file). Without its reports of the flows it opened without a SYN (`reported` = 0), the records of
    connections opened after the earlier connection's last frame wait for the phantom's record; with them, each
    message's report (the phantom has nothing after that frame, at the message's frame) lets them out at once.
    Either way, none is given past what is certain."""
    monkeypatch.setattr(parallel_ranges, "SUSPECTS_REPORTED", reported)
    path, cut = trailing_ack
    held = []
    original = parallel_ranges._Placer._place

    def watching(self, records, out):
        before = len(out)
        original(self, records, out)
        limit = self._limit()
        assert all(r["first_frame"] <= limit for r in out[before:])
        held.append(len(self._held))

    monkeypatch.setattr(parallel_ranges._Placer, "_place", watching)
    given = list(ranges_in_one_process(str(path), [cut], batch_packets=3, interleave=_later_workers_first))
    assert sorted(given, key=lambda r: r["flow_id"]) == _single(path)
    if reported:
        assert max(held) == 0  # each message's report let its records out
    else:
        assert max(held) >= 1  # records closed before the end of the file did wait
    assert not fallbacks


def test_port_reuse_in_any_order_falls_back_without_giving_a_wrong_row(port_reuse, fallbacks):
    path, offsets = port_reuse
    single = _single(path)
    for offset in offsets[1:]:
        for interleave in (_later_workers_first, _round_robin):
            given = list(ranges_in_one_process(str(path), [offset], batch_packets=1, interleave=interleave))
            assert sorted(given, key=lambda r: r["flow_id"]) == single, offset
    assert fallbacks


@pytest.fixture(scope="module")
def trailing_ack(tmp_path_factory) -> tuple[Path, int]:
    """A real TLS connection, then nine more on other client ports, one a second: cut just before the first one's
    last packet (the final ACK of its close), worker 1 has a flow of that ACK alone, a phantom that nothing
    closes before the end of the file."""
    header, conn = _pcap_records(CORPUS / "tls12_alpn_mismatch_ignored_python.pcap")
    port = struct.unpack_from("!H", conn[0][1], 34)[0]
    first = conn[0][0]
    records = []
    for i in range(10):
        records += [(1_700_000_000 + i + ts - first, _with_client_port(frame, port, 41000 + i), n)
                    for ts, frame, n in conn]
    path = tmp_path_factory.mktemp("ranges") / "trailing-ack.pcap"
    offsets = _write_pcap(path, header, records)
    return path, offsets[len(conn) - 1]


def test_a_phantom_open_to_the_end_holds_nothing_back(trailing_ack, monkeypatch, fallbacks):
    """The parent asks worker 1 to watch its phantom; the worker's answers (still open, nothing after the earlier
    connection's last frame, at frame P) let the records of connections opened after it out before the end."""
    path, cut = trailing_ack
    single = _single(path)
    assert len(single) == 10
    given_while_open = []
    original = parallel_ranges._Placer.take

    def watching(self, records, opened, position, phantoms, out):
        before = len(out)
        original(self, records, opened, position, phantoms, out)
        if self._open_phantoms:
            given_while_open.extend(out[before:])

    monkeypatch.setattr(parallel_ranges._Placer, "take", watching)
    given = list(ranges_in_one_process(str(path), [cut], batch_packets=3, interleave=_round_robin))
    assert sorted(given, key=lambda r: r["flow_id"]) == single
    assert not fallbacks
    # Every record that comes before the end of the file (connections whose close and 5 s linger end before it),
    # all opened after the phantom's earlier connection ended: given while the phantom was open.
    assert len(given_while_open) >= 3


# --- pcapng files: byte ranges too (split.BlockHop; a range's reader first reads its section's header, interface
# descriptions and decryption secrets: split.Cut.preamble).

KEYLOG_PCAPNG = Path(__file__).resolve().parents[1] / "data" / "capture" / "loopback-tls-keylog.pcapng"


@pytest.fixture(scope="module")
def generated_pcapng(generated, tmp_path_factory) -> Path:
    """The generated capture's packets as a pcapng file with what a reader starting in the middle must know from
    before: a first section (little-endian, nanosecond interface after an unused one), a decryption secrets block,
    custom and name resolution blocks, then from 60 % a second section, big-endian, microsecond timestamps."""
    from tests.tlsflow.test_capture import Pcapng

    _header, records = _pcap_records(generated)
    capture = Pcapng().section("<").interface(147).interface(1, tsresol=9)
    second = len(records) * 6 // 10
    for n, (ts, frame, _origlen) in enumerate(records):
        if n == len(records) // 4:
            capture.secrets(0x544C534B, b"CLIENT_RANDOM " + b"ab" * 32 + b" " + b"cd" * 48 + b"\n")
            capture.block(0x40000BAD, struct.pack("<I", 32473) + b"custom")  # framed by Wireshark, no packet
            capture.block(4, b"\0\0\0\0")  # name resolution: ignored
        if n == second:
            capture.section(">").interface(1)
        if n < second:
            capture.enhanced(1, round(ts * 1e9), frame)
        else:
            capture.enhanced(0, round(ts * 1e6), frame)
    path = tmp_path_factory.mktemp("ranges") / "gen.pcapng"
    path.write_bytes(capture.bytes())
    return path


def test_pcapng_cuts_anywhere_give_one_process_rows(generated_pcapng, fallbacks):
    single = _single(generated_pcapng)
    size = generated_pcapng.stat().st_size
    for shares in ([0.1], [0.25], [0.26], [0.5], [0.6], [0.61], [0.9], [0.2, 0.55, 0.62, 0.8]):
        assert _in_ranges(generated_pcapng, [int(size * s) for s in shares]) == single, shares
    assert _records(generated_pcapng, 2) == single
    assert _records(generated_pcapng, 3) == single
    assert not fallbacks


def test_pcapng_cuts_carry_the_section_interfaces_and_secrets(generated_pcapng):
    data = generated_pcapng.read_bytes()
    cut = next(find_cuts(str(generated_pcapng), [len(data) // 2]))
    blocks = pcapng_block_offsets(cut.preamble)
    # section header, both interfaces, the secrets block; not the custom or name resolution blocks.
    assert [struct.unpack_from("<I", cut.preamble, b)[0] for b in blocks] == [0x0A0D0D0A, 1, 1, 0x0000000A]
    with open_capture(generated_pcapng) as cap:
        frames = {f.frame: f for f in cap.frames()}
    with open_capture(generated_pcapng) as cap:
        cap.start_at(cut.offset, cut.frames_before, cut.preamble)
        first = next(iter(cap.frames()))
        assert cap.secrets  # read from the preamble
    assert first == frames[cut.frames_before + 1]
    late = next(find_cuts(str(generated_pcapng), [len(data) * 7 // 10]))
    assert late.preamble[8:12] == b"\x1a\x2b\x3c\x4d" and len(pcapng_block_offsets(late.preamble)) == 2  # big-endian


def test_pcapng_secrets_before_the_cut_decrypt_after_it(fallbacks):
    """The key log capture: its decryption secrets block comes before both TLS 1.3 connections; a worker that
    starts at the second connection reads it from its preamble, and decrypts the certificate as one process does."""
    single = _single(KEYLOG_PCAPNG)
    assert [r["cert_subject"] for r in single] == ["CN=localhost", "CN=localhost"]  # encrypted in TLS 1.3
    data = KEYLOG_PCAPNG.read_bytes()
    for offset in pcapng_block_offsets(data)[1:]:
        assert _in_ranges(KEYLOG_PCAPNG, [offset]) == single, offset
    assert not fallbacks


def _damaged_pcapng(generated_pcapng: Path, tmp_path: Path, part: int) -> tuple[Path, list, list[str]]:
    """The pcapng capture with the enhanced packet block at 1/`part` of its blocks moved to an interface
    the section does not have (7): its length is sound, its content is not. Returns the file, a single process's
    rows and its one error."""
    data = bytearray(generated_pcapng.read_bytes())
    offsets = pcapng_block_offsets(bytes(data))
    bad = offsets[len(offsets) // part]
    assert struct.unpack_from("<I", data, bad)[0] == 6
    struct.pack_into("<I", data, bad + 8, 7)  # interface 7
    damaged = tmp_path / "damaged.pcapng"
    damaged.write_bytes(bytes(data))
    single = [r for _c, r in analyze_files([str(damaged)], jobs=1)]
    errors = [r for r in single if isinstance(r, str)]
    assert len(errors) == 1 and "interface 7" in errors[0]
    return damaged, single, errors


def test_pcapng_damage_before_a_cut_stops_there(generated_pcapng, tmp_path):
    """A block whose length is sound but whose content is not (an enhanced packet block on an interface the section
    does not have): the hop passes it, the reader stops there. Later ranges, read from past the damage, do not
    count: the rows and the one error are those of a single process."""
    damaged, single, errors = _damaged_pcapng(generated_pcapng, tmp_path, 3)
    data = damaged.read_bytes()
    key = lambda r: r["flow_id"]
    for ranges in (list(ranges_in_one_process(str(damaged), [len(data) // 2])),
                   list(ranges_in_one_process(str(damaged), [len(data) // 5, len(data) // 2, len(data) * 3 // 4])),
                   [r for _c, r in analyze_files([str(damaged)], jobs=2)]):
        assert [r for r in ranges if isinstance(r, str)] == errors
        assert sorted((r for r in ranges if isinstance(r, dict)), key=key) == \
            sorted((r for r in single if isinstance(r, dict)), key=key)


@pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap (Wireshark) is not installed")
def test_pcapng_written_by_editcap(generated, tmp_path):
    """The same capture as Wireshark's tools write pcapng: byte ranges with two and three workers."""
    path = tmp_path / "gen.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(generated), str(path)], check=True, timeout=120)
    assert splittable(str(path))
    single = _single(path)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "capture"} for r in rows]
    assert strip(single) == strip(_single(generated))
    assert _records(path, 2) == single
    assert _records(path, 3) == single


def test_pcapng_hop_counts_frames_as_the_reader(generated_pcapng):
    """A cut at every 7th block: the hop's frame count before it is the reader's (packet blocks and the custom block
    Wireshark frames), whichever way it got there (the 32-bit fast path or the general loop, either byte order)."""
    data = generated_pcapng.read_bytes()
    offsets = pcapng_block_offsets(data)
    framed = {2, 3, 6, 0x40000BAD}
    frames_before, count, order = {}, 0, "<"
    for offset in offsets:
        frames_before[offset] = count
        if data[offset:offset + 4] == b"\x0a\x0d\x0d\x0a":
            order = "<" if data[offset + 8:offset + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        count += struct.unpack_from(order + "I", data, offset)[0] in framed
    targets = offsets[1::7]
    cuts = list(find_cuts(str(generated_pcapng), targets))
    assert [(c.offset, c.frames_before) for c in cuts] == [(t, frames_before[t]) for t in targets]
    # One byte past a block start: the next block.
    nexts = dict(itertools.pairwise(offsets))
    cuts = list(find_cuts(str(generated_pcapng), [t + 1 for t in targets[:-1]]))
    assert [c.offset for c in cuts] == [nexts[t] for t in targets[:-1]]


def test_dataframe_api_with_jobs(generated):
    """tlsflow.analyze(path, jobs=2) (Jupyter): the same DataFrame as one process."""
    import tlsflow

    one = tlsflow.analyze(str(generated))
    two = tlsflow.analyze(str(generated), jobs=2)
    assert len(one) > 100
    assert one.equals(two)


def test_pcapng_cut_at_a_section_header(generated_pcapng, fallbacks):
    """A cut right at the second section's header, and one block after it: the range starts with the new section
    (its own byte order and interfaces), or with it as its preamble."""
    data = generated_pcapng.read_bytes()
    sections = [b for b in pcapng_block_offsets(data) if data[b:b + 4] == b"\x0a\x0d\x0d\x0a"]
    assert len(sections) == 2
    after = next(b for b in pcapng_block_offsets(data) if b > sections[1])
    single = _single(generated_pcapng)
    for offset in (sections[1], after, sections[1] + 1):
        cut = next(find_cuts(str(generated_pcapng), [offset]))
        assert cut.preamble[:4] == b"\x0a\x0d\x0d\x0a"
        assert _in_ranges(generated_pcapng, [offset]) == single, offset
    assert not fallbacks


def test_waiting_records_go_to_a_temporary_file_and_memory_stays_bounded(generated, monkeypatch, fallbacks):
    """While worker 0 runs, worker 1's records cannot be numbered: past WAITING_IN_MEMORY they wait on disk, so the
    parent holds a bounded number whatever the file's size; once worker 0 has ended they come back in order, and
    the temporary folder is gone."""
    monkeypatch.setattr(waiting_records, "WAITING_IN_MEMORY", 4)
    most, written, used = [0], [], []
    original_add, original_write_out = waiting_records.Waiting.add, waiting_records.Waiting._write_out

    def add(self, key, batch):
        original_add(self, key, batch)
        most[0] = max(most[0], self._records_in_memory)
        if self not in used:
            used.append(self)

    monkeypatch.setattr(waiting_records.Waiting, "add", add)
    monkeypatch.setattr(waiting_records.Waiting, "_write_out", lambda self: written.append(
        self._records_in_memory) or original_write_out(self))
    size = generated.stat().st_size
    given = list(ranges_in_one_process(str(generated), [size // 3], batch_packets=5, interleave=_later_workers_first))
    assert written and all(count > 4 for count in written)  # each time past the bound
    assert most[0] <= 4  # (written out as soon as one message takes it past)
    assert [w._spill._folder for w in used] == [None]  # one store for the parent, its folder deleted
    assert sorted(given, key=lambda r: r["flow_id"]) == _single(generated)
    assert not fallbacks


def test_waiting_records_stay_in_memory_when_the_temporary_folder_cannot_be_made(generated, monkeypatch, tmp_path,
                                                                                 fallbacks):
    """A TMPDIR that does not exist (or a full disk): a warning, and the rows of one process all the same."""
    monkeypatch.setattr(waiting_records, "WAITING_IN_MEMORY", 4)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "gone"))
    size = generated.stat().st_size
    with pytest.warns(RuntimeWarning, match="cannot keep waiting records on disk"):
        given = list(ranges_in_one_process(str(generated), [size // 3], batch_packets=5,
                                           interleave=_later_workers_first))
    assert sorted(given, key=lambda r: r["flow_id"]) == _single(generated)
    assert not fallbacks


def test_reader_stopping_early_leaves_no_temporary_folder(generated, monkeypatch, tmp_path):
    """Worker 1's records wait on disk while worker 0's are given; a reader that stops there (the generator
    closed) leaves nothing behind."""
    monkeypatch.setattr(waiting_records, "WAITING_IN_MEMORY", 4)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    size = generated.stat().st_size
    given = ranges_in_one_process(str(generated), [size // 3], batch_packets=5, interleave=_later_workers_first)
    first = next(given)
    assert isinstance(first, dict)
    assert [p.name[:15] for p in tmp_path.iterdir()] == ["tlsflow-ranges-"]  # worker 1's records wait there
    given.close()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("variant", ["ipv6", "vlan", "vlan_pcapng"])
def test_cuts_in_ipv6_and_tagged_captures(generated, tmp_path, monkeypatch, fallbacks, variant):
    """The bench capture over IPv6, or with every frame 802.1Q-tagged: any cut gives one process's rows, and past
    its range worker 0 skips the other workers' segments instead of decoding them (before: every IPv6 or tagged
    frame past the range was decoded: --jobs 2 on a 200 MB IPv6 capture took 1.20 s against 1.22 s alone; now
    0.86 s)."""
    from tests.tlsflow.pcap_edit import as_ipv6, tagged

    if variant == "ipv6":
        path = as_ipv6(generated, tmp_path / "v6.pcap")
    else:
        path = tagged(generated, tmp_path / ("t.pcapng" if variant == "vlan_pcapng" else "t.pcap"),
                      pcapng=variant == "vlan_pcapng")
    single = _single(path)
    followed: list[int] = []
    original = parallel_ranges._follow_ethernet

    def counting(*args, **kwargs):
        for item in original(*args, **kwargs):
            followed.append(0 if item.__class__ is float else 1)
            yield item

    monkeypatch.setattr(parallel_ranges, "_follow_ethernet", counting)
    size = path.stat().st_size
    for share in (0.25, 0.5):
        assert _in_ranges(path, [int(size * share)]) == single
    assert _in_ranges(path, [size // 4, size * 3 // 4]) == single
    assert not fallbacks
    if variant != "vlan_pcapng":  # (pcapng follows through the reader's own lane: _follow_packets)
        with open_capture(path) as cap:
            frames = sum(1 for _ in cap.frames())
        assert followed and sum(followed) * 10 < frames  # packets decoded past the ranges: few


@pytest.mark.parametrize("variant", ["pcap", "ipv6", "vlan", "vlan_pcapng", "gzip"])
def test_shards_give_one_process_rows_and_pass_other_shards_segments(generated, tmp_path, monkeypatch, variant):
    """Shared out by connection (gzip, busy links), in two and three shards: one process's rows. A worker's frame
    handler decodes a segment of another shard once per connection and enters its 4-tuple in the lanes; the
    reader's fast lane takes that connection's next segments as their time only (before: the handler decoded every
    one of them, most of the file)."""
    from tests.tlsflow.pcap_edit import as_ipv6, tagged
    from tlsflow import parallel
    from tlsflow.parallel import shard_messages

    if variant == "ipv6":
        path = as_ipv6(generated, tmp_path / "v6.pcap")
    elif variant.startswith("vlan"):
        path = tagged(generated, tmp_path / ("t.pcapng" if variant == "vlan_pcapng" else "t.pcap"),
                      pcapng=variant == "vlan_pcapng")
    elif variant == "gzip":
        path = tmp_path / "gen.pcap.gz"
        path.write_bytes(gzip.compress(generated.read_bytes(), compresslevel=1))
    else:
        path = generated
    single = _single(path)
    marked: list[bytes] = []
    original = parallel._ShardCounter.mark_other_shard

    def marking(self, key):  # type: ignore[no-untyped-def]
        marked.append(key)
        original(self, key)

    monkeypatch.setattr(parallel._ShardCounter, "mark_other_shard", marking)
    for count in (2, 3):
        out = [record for index in range(count)
               for message in shard_messages(str(path), index, count, trust=None, batch_packets=7)
               if message[0] == "batch" for record in unpack_all(message[3])]
        # (flow ids are each worker's own: the parent renumbers them; here the rows are matched by first frame)
        key = lambda r: r["first_frame"]
        assert [{**r, "flow_id": 0} for r in sorted(out, key=key)] == \
            [{**r, "flow_id": 0} for r in sorted(single, key=key)]
    with open_capture(path) as cap:
        segments = sum(1 for _ in cap.packets())
    # Each worker reads every segment, (count - 1) / count of them another shard's: over the two runs, three times
    # the capture's segments (2 x 1/2 + 3 x 2/3). The handler met fewer than one in ten (the first of each
    # connection, and those with SYN or RST, which no lane takes).
    assert marked and len(marked) * 10 < 3 * segments


# --- dynamic ranges: the last range split while it runs (`parallel_ranges._Splitter`) ------------------------------


class _Channel:
    """What the parent tells a worker, in this process."""

    def __init__(self, *messages) -> None:
        self.waiting = list(messages)

    def poll(self) -> bool:
        return bool(self.waiting)

    def recv(self):
        return self.waiting.pop(0)

    def send(self, message) -> None:
        self.waiting.append(message)


def _split_in_one_process(path: Path, first_target: int, split_target: int, read_first: int = 0,
                          errors_too: bool = False, split_first: bool = False) -> tuple[list, bool | None]:
    """Two ranges cut at `first_target`; the last one is offered a split at `split_target` once it has read
    `read_first` bytes of its range (0: before it starts), and a third worker takes the rest if it accepts
    (`split_first`: the first range is offered the cut before it starts, and the third worker reads from there to
    the first range's end). The workers' messages go through the parent's merge, as `analyze_ranges` gives them.
    Returns the rows (by flow id; with `errors_too`, as given, error texts included) and the answer of the worker
    offered the cut (None: it ended without answering)."""
    from tlsflow.api import _trust_store
    from tlsflow.capture.split import open_hop

    trust = _trust_store(None)
    first = next(find_cuts(str(path), [first_target]))
    with open_hop(str(path), None if split_first else first) as hop:
        second = hop.to(split_target)
    assert second is not None
    first_end = (first.frames_before + 1, first.offset, first.preamble)
    channels = [_Channel(("end", first_end)), _Channel()]
    worker0 = parallel_ranges.range_messages(str(path), None, first_target, channels[0], trust=trust,
                                             batch_packets=5, splittable=True)
    worker1 = parallel_ranges.range_messages(str(path), (first.offset, first.frames_before, first.preamble), None,
                                             channels[1], trust=trust, batch_packets=5, splittable=True)
    answer: list[bool] = []

    def third(end):
        return parallel_ranges.range_messages(str(path), (second.offset, second.frames_before, second.preamble),
                                              None if end is None else end[1], channels[2], trust=trust,
                                              batch_packets=5, splittable=True)

    def messages():
        if split_first:
            channels[0].send(("split", (second.frames_before + 1, second.offset, second.preamble)))
        for message in worker0:
            if message[0] == "split":
                answer.append(message[1])
                if message[1]:
                    channels.append(_Channel(("end", first_end)))
                    yield 2, ("range", second.frames_before + 1, 0)
                continue
            yield 0, message
        if split_first:
            if answer and answer[0]:
                for message in third(first_end):
                    yield 2, message
            for message in worker1:
                yield 1, message
            return
        offered = False
        for message in worker1:
            if message[0] == "split":
                answer.append(message[1])
                if message[1]:
                    channels.append(_Channel())
                    yield 2, ("range", second.frames_before + 1, 1)
                continue
            yield 1, message
            if not offered and (message[0] != "batch" or message[2] >= read_first):
                channels[1].send(("split", (second.frames_before + 1, second.offset, second.preamble)))
                offered = True
        if answer and answer[0]:
            for message in third(None):
                yield 2, message

    out = list(parallel_ranges._merge_ranges(messages(), 2, [1, first.frames_before + 1], str(path),
                                             path.stat().st_size, None, lambda: None, None, None, trust=trust,
                                             tell=lambda index, message: channels[index].send(message)))
    if not errors_too:
        assert all(isinstance(r, dict) for r in out), [r for r in out if not isinstance(r, dict)]
        out.sort(key=lambda r: r["flow_id"])
    return out, (answer[0] if answer else None)


@pytest.fixture
def small_windows(monkeypatch):
    """Readers map 64 KiB at a time (not 4 MiB, more than a test capture): what a worker has read grows as it
    goes, as it does in a large file, so that a cut ahead of it can be taken."""
    from tlsflow.capture import source

    monkeypatch.setattr(source, "MAP_WINDOW", 64 << 10)


# Which range is split, and (first cut, split cut) as shares of the file: the last range, offered a cut ahead of
# what it has read; or the first one, whose end is known (the new worker reads from the cut to that end, and the
# range after it waits for both).
_SPLITS = {"last": ((0.1, 0.5), (0.3, 0.6), (0.5, 0.9)), "first": ((0.5, 0.2), (0.8, 0.5), (0.3, 0.25))}


@pytest.mark.parametrize("split", ["last", "first"])
@pytest.mark.parametrize("variant", ["pcap", "vlan_pcapng"])
def test_split_range_gives_one_process_rows(generated, tmp_path, small_windows, fallbacks, variant, split):
    """A range split while it runs takes the cut, a new worker reads from there: the rows are one process's, for
    cuts anywhere (pcapng: the new range starts with the blocks a reader needs first)."""
    from tests.tlsflow.pcap_edit import tagged

    path = generated if variant == "pcap" else tagged(generated, tmp_path / "t.pcapng", pcapng=True)
    single = _single(path)
    size = path.stat().st_size
    for first, second in _SPLITS[split]:
        rows, taken = _split_in_one_process(path, int(size * first), int(size * second), split_first=split == "first")
        assert taken is True
        assert rows == single
    assert not fallbacks


def test_split_of_every_kind_of_connection(corpus_concatenated, small_windows, fallbacks):
    """The corpus one capture after another (every kind of failure, 4-tuples coming back): split anywhere, the
    same rows."""
    single = _single(corpus_concatenated)
    size = corpus_concatenated.stat().st_size
    for first, second in ((0.2, 0.4), (0.4, 0.8), (0.05, 0.95)):
        rows, taken = _split_in_one_process(corpus_concatenated, int(size * first), int(size * second))
        assert taken is True
        assert rows == single
        rows, taken = _split_in_one_process(corpus_concatenated, int(size * second), int(size * first),
                                            split_first=True)
        assert taken is True
        assert rows == single
    assert not fallbacks


def test_split_behind_the_reader_is_refused(generated, small_windows, fallbacks):
    """A cut at or before what the last worker has read already is refused: it reads on to the end of the file,
    and no worker is added."""
    single = _single(generated)
    size = generated.stat().st_size
    first = int(size * 0.2)
    rows, taken = _split_in_one_process(generated, first, int(size * 0.5),
                                        read_first=int(size * 0.5) - first + (128 << 10))
    assert taken is False
    assert rows == single
    assert not fallbacks


def _gap_capture(generated: Path, out: Path, copies: int = 8, few_last: bool = False) -> Path:
    """A few hundred packets of the bench capture, then a quarter of an hour of silence, then the whole bench
    capture `copies` times, a quarter of an hour apart: the first range's worker (those few hundred packets) has
    nothing left to follow past its cut (its connections expire at the first packet after the gap) and ends at
    once, while the last one has the rest (~25 MB: long enough for the parent to see its pace and offer a cut).
    `few_last`: the other way round, the copies first and the few hundred packets last."""
    from tests.tlsflow.pcap_edit import records

    header, recs = records(generated)
    parts = [] if few_last else [b"".join(recs[:300])]
    for copy in range(1, copies + 1):
        for record in recs:
            seconds, micros, caplen, original = struct.unpack_from("<IIII", record)
            parts.append(struct.pack("<IIII", seconds + 900 * copy, micros, caplen, original) + record[16:])
    if few_last:
        for record in recs[:300]:
            seconds, micros, caplen, original = struct.unpack_from("<IIII", record)
            parts.append(struct.pack("<IIII", seconds + 900 * (copies + 1), micros, caplen, original) + record[16:])
    out.write_bytes(header + b"".join(parts))
    return out


@pytest.mark.parametrize("few_last", [False, True])
@pytest.mark.parametrize("pcapng", [False, True])
def test_jobs_split_a_range_when_a_worker_ends_early(generated, tmp_path, monkeypatch, small_windows, fallbacks,
                                                     few_last, pcapng):
    """Worker processes (`analyze_ranges`): one worker ends long before the other (the first, or the last), whose
    rest is then cut in two for a new worker; the rows are one process's. (The thresholds are lowered to a test
    capture's size.)"""
    from tests.conftest import capture_file_bytes
    from tests.tlsflow.pcap_edit import records

    path = _gap_capture(generated, tmp_path / "gap.pcap", few_last=few_last)
    recs = records(path)[1]
    # the cut: the first record after the gap (few_last: the first of the last few hundred)
    head = 24 + sum(len(record) for record in (recs[:-300] if few_last else recs[:300]))
    if pcapng:  # the same packets in enhanced packet blocks, after a section header and an interface block
        link_type = struct.unpack_from("<I", path.read_bytes(), 20)[0]
        packets = []
        for record in recs:
            seconds, micros, _caplen, original = struct.unpack_from("<IIII", record)
            packets.append((seconds * 1_000_000 + micros, record[16:], original))
        data = capture_file_bytes(link_type, packets, pcapng=True)
        path = tmp_path / "gap.pcapng"
        path.write_bytes(data)
        head = pcapng_block_offsets(data)[2 + (len(recs) - 300 if few_last else 300)]
    monkeypatch.setattr(parallel_ranges, "MIN_SPLIT_SECONDS", 0.0)
    monkeypatch.setattr(parallel_ranges, "SPLIT_PACE_BYTES", 64 << 10)
    monkeypatch.setattr(parallel_ranges, "SPLIT_MARGIN_BYTES", 256 << 10)
    taken: list[bool] = []
    original = parallel_ranges._Splitter.answered

    def answered(self, index, answer):
        taken.append(answer)
        return original(self, index, answer)

    monkeypatch.setattr(parallel_ranges._Splitter, "answered", answered)
    # The long range's worker looks for the parent's messages every 256 packets: each look takes 20 ms here, so
    # that it is still far from its end when the parent, its pace known, offers the cut (unslowed, it read the
    # ~25 MB in a few tenths of a second and, on a fast run, was past any cut before the offer: no split).
    polled = parallel_ranges._Inbox.poll

    def slow_poll(self):
        time.sleep(0.02)
        return polled(self)

    monkeypatch.setattr(parallel_ranges._Inbox, "poll", slow_poll)
    # Where the parent hops from to the split's cut: the last record boundary the split worker published.
    from tlsflow.capture import split

    hops_from: list = []
    open_hop = split.open_hop

    def recording_open_hop(hop_path, start=None):
        hops_from.append(start)
        return open_hop(hop_path, start)

    monkeypatch.setattr(split, "open_hop", recording_open_hop)
    range_starts: list = []  # (offset, frames before) where each worker's range starts (None: the file's start)
    started = parallel_ranges._Splitter.started

    def recording_started(self, start, meter):
        range_starts.append(start[:2] if start is not None else None)
        return started(self, start, meter)

    monkeypatch.setattr(parallel_ranges._Splitter, "started", recording_started)
    rows = list(parallel_ranges.analyze_ranges(str(path), 2, cut_targets=[head]))
    assert all(isinstance(r, dict) for r in rows)
    assert sorted(rows, key=lambda r: r["flow_id"]) == _single(path)
    assert True in taken
    assert not fallbacks
    # Each split's hop started at a record boundary its worker had passed, with the frames before it, not at the
    # start of a range (the rows above show that the cut was right; here, that it was not hopped to from there).
    splits_from = hops_from[1:]  # (the first: analyze_ranges' own hop to the first cut)
    assert splits_from and None not in splits_from
    assert not {(start.offset, start.frames_before) for start in splits_from} & set(range_starts)
    for start in splits_from:
        cut = next(find_cuts(str(path), [start.offset]))
        assert (cut.offset, cut.frames_before, cut.preamble) == (start.offset, start.frames_before, start.preamble)


def test_split_hops_from_a_resume_point_only_with_its_preamble(generated, generated_pcapng, small_windows):
    """A pcapng cut carries the section header, interface and secrets blocks before it: the parent hops from a
    point a worker passed with its range's preamble (the blocks that open the file, for the first range) only when
    the worker has walked no such block since, and that preamble is then the one a hop from the start of the file
    finds there. pcap needs none."""
    from tlsflow.capture.split import Cut

    splitter = parallel_ranges._Splitter(str(generated_pcapng), generated_pcapng.stat().st_size, 2, [], None)
    size = generated_pcapng.stat().st_size
    accepted = refused = 0
    for start in (None, *find_cuts(str(generated_pcapng), [size * 3 // 10, size * 7 // 10])):
        with open_capture(generated_pcapng) as cap:
            if start is not None:
                cap.start_at(start.offset, start.frames_before, start.preamble)
            points = set()
            for _ in cap.packets():
                points.add(cap.stats.resume_point)
        for offset, frames, blocks in sorted(point for point in points if point is not None and point[0] < size):
            if offset <= (start.offset if start is not None else 0):
                continue
            preamble = splitter._preamble(start, blocks)
            if preamble is None:
                refused += 1
                continue
            accepted += 1
            assert next(find_cuts(str(generated_pcapng), [offset])) == Cut(offset, frames, preamble)
    # (from the start: until the secrets block at a quarter; from 30 %: until the second section at 60 %)
    assert accepted > 10 and refused > 10
    pcap_splitter = parallel_ranges._Splitter(str(generated), generated.stat().st_size, 2, [], None)
    assert pcap_splitter._preamble(None, 0) == b""


def test_meter_resume_point_is_never_half_written():
    """The parent reads a worker's last record boundary from shared memory the worker may be writing: a point
    being written (odd sequence number) or none yet reads as None, a whole one as it was written."""
    from types import SimpleNamespace

    meter = [0.0] * parallel_ranges.METER_SLOTS
    assert parallel_ranges.resume_point(meter) is None
    cap = SimpleNamespace(bytes_read=5000, stats=SimpleNamespace(resume_point=(4096, 37, 0)))
    parallel_ranges._measure(meter, cap, 1000)
    assert meter[parallel_ranges._DONE] == 4000
    assert parallel_ranges.resume_point(meter) == (4096, 37, 0)
    cap.stats.resume_point = (9000, 80, 2)
    parallel_ranges._measure(meter, cap, 1000)
    assert parallel_ranges.resume_point(meter) == (9000, 80, 2)
    meter[parallel_ranges._RESUME_SEQ] += 1  # a writer between its two steps
    assert parallel_ranges.resume_point(meter) is None


def test_damage_before_a_split_stops_there(generated_pcapng, tmp_path, small_windows):
    """The last range takes a cut past damage that only its reader sees (pcapng: a sound block on an interface the
    section does not have): it stops at the damage, as one process does, and the range after the cut does not
    count. (Also: a cut found from the last range's start in a file of two sections.)"""
    damaged, single, errors = _damaged_pcapng(generated_pcapng, tmp_path, 2)
    data = damaged.read_bytes()
    out, taken = _split_in_one_process(damaged, len(data) // 5, len(data) * 4 // 5, errors_too=True)
    assert taken is True
    assert [r for r in out if isinstance(r, str)] == errors
    key = lambda r: r["flow_id"]
    assert sorted((r for r in out if isinstance(r, dict)), key=key) == \
        sorted((r for r in single if isinstance(r, dict)), key=key)


def test_later_range_workers_start_with_the_certificate_checks_loaded(generated, tmp_path):
    """While the workers after the first wait for the hop to their cut, the parent loads what checks certificate
    chains (cryptography's X.509 code, the default trust store: `warm_certificate_checks`), so that they start
    with it rather than each loading it at its first chain. In a fresh interpreter, where nothing has loaded it
    before worker 0 starts; the rows stay those of one process."""
    script = f"""
import json, sys
from tlsflow import parallel_ranges
from tlsflow.api import analyze_files

original = parallel_ranges._range_main

def spy(path, index, *args, **kwargs):
    module = sys.modules.get("analyzers.certchecks")
    loaded = module is not None and module._default_store.cache_info().currsize == 1
    with open({str(tmp_path)!r} + f"/worker{{index}}", "w") as out:
        json.dump(loaded, out)
    return original(path, index, *args, **kwargs)

parallel_ranges._range_main = spy
rows = [r for _c, r in analyze_files([{str(generated)!r}], jobs=2)]
print(json.dumps(sorted(rows, key=lambda r: r["flow_id"]), default=str))
"""
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    started = {p.name: json.loads(p.read_text()) for p in tmp_path.glob("worker*")}
    assert started == {"worker0": False, "worker1": True}
    single = json.loads(json.dumps(_records(generated, 1), default=str))
    assert json.loads(done.stdout) == single
    assert any(r["cert_subject"] for r in single)  # (chains were checked)


def test_the_merge_keeps_only_the_connections_that_can_cross_a_later_cut(corpus_concatenated, monkeypatch,
                                                                          small_windows, fallbacks):
    """The parent remembers, of each range's connections, only those that may be open across a later range's first
    frame (their last frame at or after the next range's start when placed), not every one: its memory no longer
    grows with the file. Several cuts, and splits of the first and of the last range: the same rows."""
    finished: list[tuple[int, list, float]] = []
    original = parallel_ranges._Placer.finish

    def finish(self, out):  # type: ignore[no-untyped-def]
        finished.append((self.flows, list(self.kept), self.next_start))
        return original(self, out)

    monkeypatch.setattr(parallel_ranges._Placer, "finish", finish)
    path = corpus_concatenated
    single = _single(path)
    size = path.stat().st_size
    assert _in_ranges(path, [size * k // 5 for k in range(1, 5)]) == single
    for first, second in ((0.2, 0.4), (0.4, 0.8), (0.8, 0.4)):
        rows, taken = _split_in_one_process(path, int(size * first), int(size * second),
                                            split_first=second < first)
        assert taken is True and rows == single
    assert not fallbacks
    flows = sum(n for n, _kept, _next in finished)
    kept = [entry for _n, entries, _next in finished for entry in entries]
    assert flows >= len(single) > 50
    assert all(last >= next_start for _n, entries, next_start in finished for _key, _first, last in entries)
    assert len(kept) < flows // 10  # (every one was kept before)


def test_frame_set_is_a_set_of_frame_numbers():
    """`FrameSet` (the first frames the merge has given, each once) answers as a set of ints would, whatever the
    order the frames come in, and also once more come after a lookup."""
    import random

    rng = random.Random(7)
    frames = rng.sample(range(1, 5_000_000), 20_000) + [5_000_001, 1 << 40]
    bits, plain = parallel_ranges.FrameSet(), set()
    for frame in frames[:15_000]:
        bits.add(frame)
        plain.add(frame)
    probes = frames + [rng.randrange(0, 6_000_000) for _ in range(20_000)] + [0, 1 << 50]
    assert [f in bits for f in probes] == [f in plain for f in probes] and len(bits) == len(plain)
    for frame in frames[15_000:]:
        bits.add(frame)
        plain.add(frame)
    assert [f in bits for f in probes] == [f in plain for f in probes] and len(bits) == len(plain)
