"""`--jobs` byte ranges of a capture that is long in capture time (a slow link): a worker that is not the last one
stops reading once the connections of its own range have ended (lingered after their close), long before the end of
the file. The flows it leaves open then are phantoms: the rest of connections of an earlier range that it kept
cheap (`parallel_ranges.in_flight_at`), such as a connection's last ACK alone past the cut, which stays open until
the idle timeout. Such a flow gives no record; the parent used to take that for a record that would never come and
analysed the whole file again in one process (three or more jobs on the 1 GB bench capture: 17 s, where one process
takes 11). The worker now says which flows it left open and their last frames, and the parent drops those that are
phantoms of connections it has, as it drops their records."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from bench import gen_capture
from tests.tlsflow import pcap_edit
from tlsflow import parallel_ranges
from tlsflow.parallel import analyze_file_parallel
from tlsflow.parallel_ranges import ranges_in_one_process
from tlsflow.pipeline import iter_flow_records

SEED = 7


@pytest.fixture(scope="module")
def slow_link(tmp_path_factory) -> Path:
    """Real TLS sessions (bench/real_streams.json), 48 connections at once, each packet 4 ms after the one before
    (the bench capture's 40 µs, a hundred times slower): ~55 s of capture time in 12 MB, where a connection closes
    and lingers within a few MB."""
    tmp = tmp_path_factory.mktemp("slow")
    out = io.BytesIO()
    gen_capture.generate(out, 12_000_000, SEED)
    (tmp / "bench.pcap").write_bytes(out.getvalue())
    return pcap_edit.slowed(tmp / "bench.pcap", tmp / "slow.pcap", 100)


@pytest.fixture
def left_open(monkeypatch) -> list[list]:
    """The flows each worker left open, as the parent learns them."""
    seen: list[list] = []
    original = parallel_ranges._Placer.finish

    def noting(self, out):
        seen.append(list(self.left_open))
        return original(self, out)

    monkeypatch.setattr(parallel_ranges._Placer, "finish", noting)
    return seen


def _single(path: Path) -> list[dict]:
    return sorted(iter_flow_records(str(path)), key=lambda r: r["flow_id"])


def _in_ranges(path: Path, targets: list[int]) -> list[dict]:
    out = list(ranges_in_one_process(str(path), targets))
    assert all(isinstance(r, dict) for r in out), [r for r in out if not isinstance(r, dict)]
    return sorted(out, key=lambda r: r["flow_id"])


def test_a_worker_that_stops_past_its_range_leaves_only_phantoms_open(slow_link, fallbacks, left_open):
    single = _single(slow_link)
    size = slow_link.stat().st_size
    for targets in ([size // 3, size * 2 // 3], [size // 4, size // 2, size * 3 // 4]):
        assert _in_ranges(slow_link, targets) == single, targets
    assert not fallbacks
    # A worker that is not the last stopped with flows open (the last one reads to the end of the file, where every
    # flow closes and gives its record): the case this is about did happen.
    assert any(left_open), left_open


def test_worker_processes_give_one_process_rows_without_falling_back(slow_link, fallbacks):
    single = _single(slow_link)
    for jobs in (3, 4):
        rows = [r for r in analyze_file_parallel(str(slow_link), jobs) if isinstance(r, dict)]
        assert sorted(rows, key=lambda r: r["flow_id"]) == single, jobs
    assert not fallbacks


def test_a_flow_left_open_that_is_no_phantom_falls_back_to_one_process(slow_link, fallbacks, monkeypatch):
    # Were the flows a worker leaves open not phantoms (here: the parent is made to find none), each would be a
    # connection whose record never comes: the parent cannot place the records, and analyses the file in one
    # process instead (every row still there, once).
    monkeypatch.setattr(parallel_ranges._Placer, "_classify", lambda self, opened: None)
    size = slow_link.stat().st_size
    assert _in_ranges(slow_link, [size // 4, size // 2, size * 3 // 4]) == _single(slow_link)
    assert fallbacks


@pytest.fixture(scope="module")
def slow_series(slow_link, tmp_path_factory) -> list[str]:
    """The slow link's capture rotated into twelve files, as a sensor writes them."""
    from tests.conftest import pcap_frames
    from tests.tlsflow.test_series import split

    frames = len(pcap_frames(slow_link))
    cuts = [frames * i // 12 for i in range(1, 12)]
    names = [f"slow{n:02d}.pcap" for n in range(12)]
    return [str(p) for p in split(slow_link, cuts, tmp_path_factory.mktemp("slow_series"), names)]


@pytest.mark.parametrize("jobs", [3, 4])
def test_a_series_run_leaves_the_rest_of_earlier_runs_connections_to_them(slow_series, jobs, monkeypatch):
    # `--series`: a run's worker goes on into the later files for the connections it has open when its run ends,
    # but no longer for those it joined mid-stream, the rest of earlier runs' connections (it followed a
    # connection's last ACK alone past the run's start, open until the idle timeout, into every later file of the
    # series). It gives them as flows left open, and the parent drops them as phantoms: the rows of one process.
    import tlsflow.parallel_series as ps
    from tests.tlsflow.test_parallel_series import by_place, no_fallback
    from tlsflow.series import iter_series

    whole = by_place(iter_series(slow_series))
    no_fallback(monkeypatch)
    ends: list[tuple] = []
    original = ps.Placement.phantoms

    def noting(self, run, group, previous_end):
        ends.append(group.end)
        return original(self, run, group, previous_end)

    monkeypatch.setattr(ps.Placement, "phantoms", noting)
    assert by_place(ps.groups_in_one_process(slow_series, jobs)) == whole
    assert any(end[6] for end in ends), ends  # (the case this is about did happen)


def test_public_captures_in_three_and_five_ranges_rarely_fall_back(fallbacks):
    # Real captures from other projects, cut as the command line cuts them for 3 and 5 workers (the cuts the hop
    # ahead finds): the rows of one process, and (nearly) always without reading the file again. Before the flows
    # left open were settled, 99 of these 148 runs fell back; 5 more did until the window before a cut stopped
    # counting the packet at the cut in flight (test_parallel_busy). One may still fall back where a flow that the
    # later worker takes for the rest of an earlier connection (its 4-tuple in flight before the cut) is, in one
    # process, a connection of its own.
    from tests.tlsflow.test_parallel import _public_pcaps
    from tlsflow.hop_ahead import equal_cut_targets
    from tlsflow.parallel_ranges import splittable

    captures = [p for p in _public_pcaps() if splittable(str(p))]
    if not captures:
        pytest.skip("no public captures (../shared/captures/public)")
    runs = 0
    for path in captures:
        single = sorted((r for r in iter_flow_records(str(path))), key=lambda r: r["flow_id"])
        for jobs in (3, 5):
            ranges = ranges_in_one_process(str(path), equal_cut_targets(path.stat().st_size, jobs))
            assert sorted((r for r in ranges if isinstance(r, dict)), key=lambda r: r["flow_id"]) == single, path
            runs += 1
    assert runs > 100
    assert len(fallbacks) <= runs // 20, (len(fallbacks), runs)
