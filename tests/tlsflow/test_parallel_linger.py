"""`--jobs` byte ranges: a worker past its range stops once every connection it still follows lingers after its
close, instead of reading on through their linger (`TcpReassembler.linger_timeout`, 5 s of capture: on the 1 GB
bench capture, 14 % of the file read for nothing by every worker but the last). The lingering connections are
ended there, as the end of their linger would end them. What a single process would still count in them, a packet
on their 4-tuple within the linger, lies in a later range: the parent sees the later worker's flow there and
analyses the file in one process, so the rows stay exact.

The captures: real TLS sessions (bench/real_streams.json) replayed by the bench generator, two runs of them one
after the other: the first run's connections have all closed, and linger, when the cut falls inside the second."""
from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

from bench import gen_capture
from tests.tlsflow import pcap_edit
from tlsflow.parallel_ranges import ranges_in_one_process
from tlsflow.pipeline import iter_flow_records
from tlsflow.tcp import TcpReassembler

LINGER = TcpReassembler().linger_timeout
GAP_US = 100_000  # between the two runs of connections


def _runs(seed_a: int, seed_b: int) -> tuple[bytes, list[bytes], int]:
    """(pcap header, records, the index of the second run's first record): a 2 MB run, then 100 ms later a 30 MB
    run (~1.4 s of capture)."""
    parts = []
    for seed, size in ((seed_a, 2_000_000), (seed_b, 30_000_000)):
        out = io.BytesIO()
        gen_capture.generate(out, size, seed)
        parts.append(out.getvalue())
    header, first = pcap_edit.records_of(parts[0])
    second = pcap_edit.records_of(parts[1])[1]
    shift = _ts(first[-1]) + GAP_US - _ts(second[0])
    return header, first + [_at(record, _ts(record) + shift) for record in second], len(first)


def _ts(record: bytes) -> int:
    seconds, micros = struct.unpack_from("<II", record)
    return seconds * 1_000_000 + micros


def _at(record: bytes, us: int) -> bytes:
    return struct.pack("<II", us // 1_000_000, us % 1_000_000) + record[8:]


def _tuple(record: bytes) -> tuple[bytes, bytes]:
    """The unordered 4-tuple of an Ethernet/IPv4/TCP record (addresses and ports as on the wire)."""
    one, other = record[16 + 26:16 + 30] + record[16 + 34:16 + 36], record[16 + 30:16 + 34] + record[16 + 36:16 + 38]
    return (one, other) if one <= other else (other, one)


@pytest.fixture(scope="module")
def two_runs() -> tuple[bytes, list[bytes], int]:
    header, records, second = _runs(21, 22)
    # (no 4-tuple of the first run comes again in the second: else a single process would reuse it within the
    # linger, and that is the other test's case)
    assert not {_tuple(r) for r in records[:second]} & {_tuple(r) for r in records[second:]}
    return header, records, second


def _write(path: Path, header: bytes, records: list[bytes]) -> Path:
    path.write_bytes(header + b"".join(records))
    return path


def _single(path: Path) -> list[dict]:
    return sorted(iter_flow_records(str(path)), key=lambda r: r["flow_id"])


def _cut_target(records: list[bytes], index: int) -> int:
    """The byte offset of record `index`."""
    return 24 + sum(len(r) for r in records[:index])


class _Stops:
    """Where worker 0 stopped reading past its range (the time of the last record it read, to its reader's
    chunk), and the flows it ended while they lingered (flow id -> time of their last packet)."""

    def __init__(self) -> None:
        self.read_to: float | None = None
        self.ended: dict[int, float] = {}


@pytest.fixture
def stops(monkeypatch) -> _Stops:
    from tlsflow import parallel_ranges

    seen = _Stops()
    follow, end_lingering = parallel_ranges._follow_packets, TcpReassembler.end_lingering

    def following(*args, **kwargs):
        cap, packets = follow(*args, **kwargs)

        def noting():
            for item in packets:
                seen.read_to = item if item.__class__ is float else item.ts
                yield item
        return cap, noting()

    def ending(self, keys):
        out, ended = end_lingering(self, keys)
        seen.ended.update((flow_id, last_ts) for flow_id, (last_ts, _sides) in ended.items())
        return out, ended

    def walking(*args, **kwargs):  # (what `--series` workers follow past their run with; it returns a value)
        walker = follow_ethernet(*args, **kwargs)
        while True:
            try:
                item = next(walker)
            except StopIteration as stop:
                return stop.value
            seen.read_to = item if item.__class__ is float else item.ts
            yield item

    follow_ethernet = parallel_ranges._follow_ethernet
    monkeypatch.setattr(parallel_ranges, "_follow_packets", following)
    monkeypatch.setattr(parallel_ranges, "_follow_ethernet", walking)
    monkeypatch.setattr(TcpReassembler, "end_lingering", ending)
    return seen


def _in_two_ranges(path: Path, target: int) -> list[dict]:
    rows = list(ranges_in_one_process(str(path), [target]))
    assert all(isinstance(r, dict) for r in rows), [r for r in rows if not isinstance(r, dict)]
    return sorted(rows, key=lambda r: r["flow_id"])


def test_a_worker_past_its_range_stops_when_its_connections_only_linger(two_runs, tmp_path, fallbacks, stops):
    header, records, second = two_runs
    path = _write(tmp_path / "two_runs.pcap", header, records)
    cut_index = second + (len(records) - second) * 2 // 3  # inside the second run, ~0.9 s into it
    assert _in_two_ranges(path, _cut_target(records, cut_index)) == _single(path)
    assert not fallbacks
    # Worker 0 followed the second run's connections open at the cut until they closed (~0.3 s of capture), then
    # ended every connection of its range that lingered, the first run's among them: it stopped reading within a
    # chunk of the last close, where it used to read on to the end of the file (the first run's connections
    # linger until 5 s after their close, past the file's end).
    end = _ts(records[-1]) / 1e6
    assert end < _ts(records[second - 1]) / 1e6 + LINGER
    assert min(stops.ended.values()) <= _ts(records[second - 1]) / 1e6  # (the first run's too)
    last_close = max(stops.ended.values())
    assert _ts(records[cut_index]) / 1e6 < last_close < stops.read_to < last_close + 0.1 < end - 0.05, (
        last_close, stops.read_to, end)


def _last_closed_of_first_run(records: list[bytes], second: int) -> bytes:
    """The last packet of the first run's connection that closed last (its last ACK)."""
    last: dict[tuple[bytes, bytes], int] = {}
    for index in range(second):
        last[_tuple(records[index])] = index
    return records[max(last.values())]


def _new_syn(record: bytes, us: int) -> bytes:
    """A SYN alone from the sender of `record`, on its 4-tuple, with a new initial sequence number, at `us`."""
    frame = bytearray(record[16:])
    frame[14 + 20 + 13] = 0x02  # SYN alone
    frame[14 + 20 + 8:14 + 20 + 12] = bytes(4)  # no acknowledgement number
    frame[14 + 20 + 4:14 + 20 + 8] = b"\x12\x34\x56\x78"
    return _at(record[:16] + bytes(frame), us)


def _inserted(records: list[bytes], record: bytes) -> list[bytes]:
    """`record` among `records` in time order (after those of the same time)."""
    at = next(i for i, r in enumerate(records) if _ts(r) > _ts(record))
    return [*records[:at], record, *records[at:]]


@pytest.mark.parametrize("kind", ["stray_ack", "old_syn_again", "port_reuse_syn"])
def test_a_packet_within_the_linger_of_a_connection_ended_early(two_runs, tmp_path, fallbacks, stops, kind):
    # After worker 0 has ended the first run's connections (within their linger of 5 s), past the cut, on the
    # 4-tuple of the last of them: a copy of its last ACK, or of its client's SYN (a single process counts either
    # in that connection), or a SYN with another sequence number (a single process closes the old connection,
    # which no row shows, and opens a new one). The later worker has a flow of its own there, outside the window it
    # scans for connections in flight at the cut: the parent cannot tell whether a single process counts its first
    # packet in the earlier connection but by its time, and for a SYN, by its sequence number. For the first two it
    # reads the file in one process; the new connection is the later worker's own. The rows are a single process's.
    header, records, second = two_runs
    last_ack = _last_closed_of_first_run(records, second)
    cut_index = second + (len(records) - second) * 2 // 3
    plain = _write(tmp_path / "plain.pcap", header, records)
    _in_two_ranges(plain, _cut_target(records, cut_index))
    when = int(stops.read_to * 1e6) + 50_000  # (after worker 0 stopped reading)
    assert when < _ts(records[-1])
    assert when - _ts(last_ack) < LINGER * 1e6
    if kind == "stray_ack":
        extra = _at(last_ack, when)
    elif kind == "old_syn_again":
        syn = next(r for r in records if _tuple(r) == _tuple(last_ack))
        assert syn[16 + 14 + 20 + 13] == 0x02  # (the connection's first packet: its client's SYN)
        extra = _at(syn, when)
    else:
        extra = _new_syn(last_ack, when)
    edited = _inserted(records, extra)
    path = _write(tmp_path / f"{kind}.pcap", header, edited)
    assert _ts(edited[cut_index]) < when < _ts(edited[-1])
    stops.read_to = None
    assert _in_two_ranges(path, _cut_target(edited, cut_index)) == _single(path)  # (the same cut, before it)
    assert stops.read_to < when / 1e6
    assert bool(fallbacks) == (kind != "port_reuse_syn")
    if kind != "port_reuse_syn":
        # (the packet is in the first run's connection: no row more than without it; the rows above could not have
        # been given from the ranges as they were cut)
        assert len(_single(path)) == len(_single(plain))
    else:
        assert len(_single(path)) == len(_single(plain)) + 1


def test_worker_processes_end_lingering_connections_with_one_process_rows(two_runs, tmp_path, fallbacks):
    # The same with worker processes (the command line's cuts): the rows of one process, without falling back; the
    # records of the connections a worker ended while they lingered come last.
    from tlsflow.parallel import analyze_file_parallel

    header, records, _ = two_runs
    path = _write(tmp_path / "two_runs.pcap", header, records)
    single = _single(path)
    for jobs in (2, 3):
        rows = [r for r in analyze_file_parallel(str(path), jobs) if isinstance(r, dict)]
        assert sorted(rows, key=lambda r: r["flow_id"]) == single, jobs
    assert not fallbacks


def _series(header: bytes, records: list[bytes], folder: Path, pieces: int) -> list[str]:
    """The capture rotated into `pieces` files of equal packet counts, as a sensor writes them."""
    from tests.tlsflow.test_series import split

    whole = _write(folder / "whole.pcap", header, records)
    cuts = [len(records) * i // pieces for i in range(1, pieces)]
    return [str(p) for p in split(whole, cuts, folder, [f"part{n:02d}.pcap" for n in range(pieces)])]


def test_a_series_run_ends_its_lingering_connections_past_the_run(two_runs, tmp_path, stops, monkeypatch):
    # `--series` runs of whole files: the worker of a run goes on into the next files for its connections still
    # open, and now ends them once they only linger: the rows of one process, without reading it again.
    import tlsflow.parallel_series as ps
    from tests.tlsflow.test_parallel_series import by_place, no_fallback
    from tlsflow.series import iter_series

    header, records, _ = two_runs
    files = _series(header, records, tmp_path, 6)
    whole = by_place(iter_series(files))
    no_fallback(monkeypatch)
    for jobs in (2, 3):
        stops.ended.clear()
        assert by_place(ps.groups_in_one_process(files, jobs)) == whole, jobs
        assert stops.ended  # (the case this is about did happen)


@pytest.mark.parametrize("kind", ["stray_ack", "port_reuse_syn"])
def test_a_packet_within_the_linger_of_a_series_runs_ended_connection(two_runs, tmp_path, stops, monkeypatch, kind):
    # As for byte ranges: a copy of the first connections' last ACK after the first run's worker ended them, within
    # their linger: the later run's flow on that 4-tuple begins then, and the series is read again in one process;
    # a SYN with a new sequence number there starts a connection of the later run's own. One process's rows.
    import tlsflow.parallel_series as ps
    import tlsflow.series
    from tests.tlsflow.test_parallel_series import by_place

    header, records, second = two_runs
    last_ack = _last_closed_of_first_run(records, second)
    (tmp_path / "plain").mkdir()
    by_place(ps.groups_in_one_process(_series(header, records, tmp_path / "plain", 6), 2))
    when = int(stops.read_to * 1e6) + 50_000  # (after the first run's worker stopped)
    assert when - _ts(last_ack) < LINGER * 1e6 and when < _ts(records[-1])
    if kind == "stray_ack":
        extra = _at(last_ack, when)
    else:
        extra = _new_syn(last_ack, when)
    edited = _inserted(records, extra)
    (tmp_path / "edited").mkdir()
    files = _series(header, edited, tmp_path / "edited", 6)
    whole = by_place(tlsflow.series.iter_series(files))
    again: list[int] = []
    real = tlsflow.series.iter_series
    monkeypatch.setattr(tlsflow.series, "iter_series", lambda *a, **k: again.append(1) or real(*a, **k))
    stops.read_to = None
    assert by_place(ps.groups_in_one_process(files, 2)) == whole
    assert bool(again) == (kind == "stray_ack")  # (read again in one process)
    assert stops.read_to < when / 1e6
