"""The command line's early hop (tlsflow.hop_ahead): a child process finds the `--jobs` cuts of one file while the
analysis is being imported. Its cuts are those the parent's own hop finds (pcap and pcapng, damaged files too);
anything unusual (a child that fails, other targets) falls back to the parent's hop; no child outlives its use."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tlsflow import hop_ahead, parallel_ranges
from tlsflow.capture.split import open_hop
from tlsflow.cli import main
from tlsflow.hop_ahead import HopAhead, equal_cut_targets, hop_targets


@pytest.fixture(scope="module")
def as_pcapng(generated_capture, tmp_path_factory) -> Path:
    if shutil.which("editcap") is None:
        pytest.skip("editcap (Wireshark) is not installed")
    path = tmp_path_factory.mktemp("ahead") / "generated.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(generated_capture), str(path)], check=True, timeout=60)
    return path


@pytest.fixture
def single_threaded(monkeypatch):
    """`start` forks only when no other thread runs (one could hold a lock the child inherits): earlier tests of
    the suite may leave some behind (a queue's feeder thread), which the command line never has."""
    monkeypatch.setattr(threading, "active_count", lambda: 1)


@pytest.fixture
def hop_pids(monkeypatch, single_threaded) -> list[int]:
    """The child process of every HopAhead made, as it is made."""
    pids: list[int] = []
    original = HopAhead.__init__

    def recording(self, path, jobs):
        original(self, path, jobs)
        pids.append(self.pid)

    monkeypatch.setattr(HopAhead, "__init__", recording)
    return pids


def _own_cuts(path: Path, targets: list[int]) -> list:
    with open_hop(str(path)) as hop:
        return [hop.to(target) for target in targets]


def _reaped(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


@pytest.mark.parametrize("jobs", [2, 3, 5])
@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_cuts_found_ahead_are_the_hops_own(generated_capture, as_pcapng, kind, jobs):
    path = generated_capture if kind == "pcap" else as_pcapng
    cut_targets = equal_cut_targets(path.stat().st_size, jobs)
    assert len(cut_targets) == jobs - 1 and cut_targets == sorted(cut_targets)
    # Each cut comes after its range's two windows (the connections in flight there: parallel_ranges.in_flight_at)
    targets = hop_targets(path.stat().st_size, jobs)
    assert targets[2::3] == cut_targets
    assert all(far <= near <= cut for far, near, cut in zip(targets[::3], targets[1::3], cut_targets))
    with HopAhead(str(path), jobs) as hop:
        ahead = [hop.to(target) for target in targets]
        assert hop._fallback is None  # every cut came from the child
        pid = hop.pid
    own = _own_cuts(path, targets)
    assert ahead == own and None not in own
    if kind == "pcapng":
        # A reader starting there needs the section and interfaces (a window at the start of the file has them).
        assert all(cut.preamble or cut.frames_before == 0 for cut in ahead)
        assert all(cut.preamble for cut in ahead[2::3])
    assert _reaped(pid)


def test_a_damaged_file_ends_the_cuts_where_the_hop_does(generated_capture, tmp_path):
    data = generated_capture.read_bytes()
    cut_short = tmp_path / "cut.pcap"
    cut_short.write_bytes(data[:len(data) * 55 // 100 + 3])  # ends inside a record, between the 2nd and 3rd cut
    targets = equal_cut_targets(len(data), 4)  # the targets of the whole file: some past the end of this one
    with HopAhead(str(cut_short), 4) as hop:
        short_targets = hop_targets(cut_short.stat().st_size, 4)
        ahead = [hop.to(target) for target in short_targets]
        assert hop._fallback is None
    own = _own_cuts(cut_short, short_targets)
    assert ahead == own
    # With the whole file's targets the later ones lie past the damage: no cut, as the parent's hop says.
    with HopAhead(str(cut_short), 4) as hop:
        assert hop.to(short_targets[0]) == own[0]
    assert _own_cuts(cut_short, targets)[-1] is None


def test_a_child_that_fails_leaves_the_parent_to_hop(tmp_path):
    """Not a capture: the child's hop raises, the pipe ends early, and the parent's own hop reports the problem
    as it always did."""
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(os.urandom(1 << 16))
    with pytest.raises(Exception) as own:  # whatever the hop raises, the fallback raises the same
        _own_cuts(garbage, [1000])
    with HopAhead(str(garbage), 2) as hop:
        pid = hop.pid
        with pytest.raises(type(own.value)):
            hop.to(equal_cut_targets(garbage.stat().st_size, 2)[0])
    assert pid and _reaped(pid)


def test_other_targets_are_hopped_by_the_parent(generated_capture):
    size = generated_capture.stat().st_size
    targets = [size // 7, size // 3]  # not equal_cut_targets(size, 2)
    with HopAhead(str(generated_capture), 2) as hop:
        pid = hop.pid
        ahead = [hop.to(target) for target in targets]
        assert hop._fallback is not None
        assert _reaped(pid)  # the child was stopped as soon as its cuts were of no use
    assert ahead == _own_cuts(generated_capture, targets)


def test_a_hop_nobody_takes_is_stopped(generated_capture, hop_pids):
    pids = hop_pids
    hop_ahead.start(str(generated_capture), 3)
    hop_ahead.start(str(generated_capture), 1)  # one job: nothing to cut
    hop_ahead.start(str(generated_capture) + ".missing", 2)  # no such file: the usual error comes later
    assert len(pids) == 1
    hop_ahead.close_all()
    assert hop_ahead.take(str(generated_capture), 3) is None
    assert _reaped(pids[0])


def test_the_command_line_takes_its_hop_and_writes_the_same_rows(generated_capture, tmp_path, monkeypatch,
                                                                 single_threaded):
    taken = []
    original = parallel_ranges.hop_taken_ahead
    monkeypatch.setattr(parallel_ranges, "hop_taken_ahead", lambda path, jobs: taken.append(
        (jobs, hop := original(path, jobs))) or hop)
    rows = {}
    for jobs in (1, 2, 3):
        out = tmp_path / f"j{jobs}.jsonl"
        main(["analyze", str(generated_capture), "--format", "jsonl", "-o", str(out), "-q", "--jobs", str(jobs)])
        rows[jobs] = sorted((json.loads(line) for line in out.read_text().splitlines()), key=lambda r: r["flow_id"])
    assert rows[1] == rows[2] == rows[3] and len(rows[1]) > 50
    assert [jobs for jobs, _ in taken] == [2, 3]
    assert all(isinstance(hop, HopAhead) and hop._fallback is None and hop.pid == 0 for _, hop in taken)


def test_a_file_that_is_not_cut_stops_its_hop(generated_capture, tmp_path, hop_pids):
    """gzip is shared out by connection, not cut: the hop started for it is stopped when the command ends."""
    pids = hop_pids
    packed = tmp_path / "capture.pcap.gz"
    packed.write_bytes(gzip.compress(generated_capture.read_bytes(), compresslevel=1))
    out = tmp_path / "rows.jsonl"
    main(["analyze", str(packed), "--format", "jsonl", "-o", str(out), "-q", "--jobs", "2"])
    assert len(pids) == 1 and _reaped(pids[0])
    assert out.read_text().count("\n") > 50


def test_no_hop_ahead_while_another_thread_runs(generated_capture, tmp_path):
    """The parent then hops itself, as without a hop ahead: same rows."""
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        hop_ahead.start(str(generated_capture), 2)
        assert hop_ahead.take(str(generated_capture), 2) is None
        out = tmp_path / "j2.jsonl"
        main(["analyze", str(generated_capture), "--format", "jsonl", "-o", str(out), "-q", "--jobs", "2"])
    finally:
        stop.set()
        other.join()
    one = tmp_path / "j1.jsonl"
    main(["analyze", str(generated_capture), "--format", "jsonl", "-o", str(one), "-q"])
    key = lambda line: json.loads(line)["flow_id"]
    assert sorted(out.read_text().splitlines(), key=key) == sorted(one.read_text().splitlines(), key=key)


def test_the_command_line_module_imports_no_analysis():
    """What lets the hop start early: `tlsflow.cli` imports nothing heavy before it parses its arguments."""
    code = "import sys, tlsflow.cli; print(sorted(m for m in sys.modules if m.split('.')[0] in ('tlsparse', 'analyzers') or m in ('tlsflow.formats', 'tlsflow.api', 'tlsflow.pipeline')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("jobs", [2, 3, 4, 8, 24, 64])
def test_equal_cuts_make_the_last_range_longer_by_the_same_bytes_whatever_the_jobs(jobs):
    # Every worker but the last goes on past its cut while its connections close: the last range is longer by
    # twice the reserve, whatever the number of jobs. (It was longer by the reserve times the number of jobs: with
    # 24 jobs on 1 GB, 282 MB against 31 MB for each other range.)
    for size in (10 << 30, 1 << 30, 100 << 20, 1 << 20, 1000):
        cuts = equal_cut_targets(size, jobs)
        ranges = [b - a for a, b in zip([0, *cuts], [*cuts, size])]
        reserve = min(hop_ahead.RANGE_RESERVE_BYTES, size // (4 * jobs))
        assert len(ranges) == jobs and all(r > 0 for r in ranges) or size < 4 * jobs
        assert all(abs(r - (size - 2 * reserve) / jobs) <= 1 for r in ranges[:-1])
        assert abs(ranges[-1] - ranges[0] - 2 * reserve) <= 1
    # Two jobs: the first range an equal share less the reserve, as measured (RANGE_RESERVE_BYTES).
    if jobs == 2:
        assert equal_cut_targets(1 << 30, 2) == [(1 << 29) - hop_ahead.RANGE_RESERVE_BYTES]
