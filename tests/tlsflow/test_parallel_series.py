"""`--jobs N --series` on one folder: the series cut into runs of files, one process each, gives the records of one
process reading the series (tlsflow.parallel_series)."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

import tlsflow.parallel_series as ps
import tlsflow.series
from tests.conftest import CORPUS, capture_file_bytes, pcap_frames, trust_and_keylog_for
from tests.tlsflow.test_series import LABELLED, split
from tlsflow import cli
from tlsflow.api import analyze, analyze_files
from tlsflow.series import iter_series


def by_place(results) -> dict:
    """(capture, flow_id) -> record, and each message under its text; no place given twice."""
    out = {}
    for capture, result in results:
        key = result if isinstance(result, str) else (capture, result["flow_id"])
        assert key not in out, key
        out[key] = result
    return out


def no_fallback(monkeypatch):
    """The runs' records must place exactly: reading the series again in one process fails the test."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("the runs could not be placed: fell back to one process")

    monkeypatch.setattr(tlsflow.series, "iter_series", refuse)


@pytest.fixture(scope="module")
def pieces(generated_capture, tmp_path_factory):
    """The 3 MB bench capture rotated into six files (one of them pcapng), named so that a sort by name is wrong."""
    frames = len(pcap_frames(generated_capture))
    cuts = [frames * i // 6 for i in range(1, 6)]
    names = [f"cap{n}.pcap" for n in (8, 9, 10, 11, 12, 13)]
    return [str(p) for p in split(generated_capture, cuts, tmp_path_factory.mktemp("series"), names,
                                  pcapng_pieces=(3,))]


def test_group_starts_cuts_runs_of_about_equal_bytes():
    assert ps.group_starts([10] * 10, 2) == [0, 5]
    assert ps.group_starts([10] * 10, 3) == [0, 3, 7]
    assert ps.group_starts([100, 1, 1, 1], 2) == [0, 1]
    assert ps.group_starts([1, 1, 1, 100], 2) == [0, 3]
    assert ps.group_starts([5, 5], 4) == [0, 1]  # no more runs than files
    assert ps.group_starts([7], 2) == [0]


@pytest.mark.parametrize("jobs", [2, 3, 6])
def test_runs_give_the_records_of_one_process(pieces, jobs, monkeypatch):
    whole = by_place(iter_series(pieces))
    timed, _sizes, starts = ps.plan_runs(pieces, jobs)
    assert len(starts) == jobs
    # Connections cross the cuts between runs: the later runs see their packets as flows of their own
    # (phantoms), which the merge drops.
    sent = sum(len(m[1]) for k, start in enumerate(starts)
               for m in ps.group_messages(timed, start, starts[k + 1] if k + 1 < jobs else len(timed), trust=None)
               if m[0] == "records")
    assert sent > len(whole) > 100
    no_fallback(monkeypatch)
    assert by_place(ps.groups_in_one_process(pieces, jobs)) == whole

    def later_runs_first(every):
        for run in reversed(range(len(every))):
            for message in every[run]:
                yield run, message

    assert by_place(ps.groups_in_one_process(pieces, jobs, interleave=later_runs_first,
                                             batch_records=7)) == whole


@pytest.mark.parametrize("name", LABELLED)
def test_a_cut_at_any_frame_between_two_runs_changes_no_record(name, tmp_path, monkeypatch):
    """Real failures from the corpus, cut in two at every frame, each half read by a run of its own: the records
    of one process reading the series, every time, without falling back to one process."""
    path = CORPUS / name
    trust, keylog = trust_and_keylog_for(path)
    no_fallback(monkeypatch)
    for cut in range(1, len(pcap_frames(path))):
        files = [str(p) for p in split(path, [cut], tmp_path, [f"{cut}-a.pcap", f"{cut}-b.pcap"])]
        whole = by_place(iter_series(files, trust=trust, keylog=keylog))  # (the real one: imported before)
        assert by_place(ps.groups_in_one_process(files, 2, trust=trust, keylog=keylog)) == whole, cut


def test_damage_in_a_later_run_is_reported_as_one_process_reports_it(pieces, tmp_path, monkeypatch):
    files = []
    for i, piece in enumerate(pieces):
        copy = tmp_path / Path(piece).name
        data = Path(piece).read_bytes()
        copy.write_bytes(data[:len(data) * 2 // 3] if i == 4 else data)  # the sensor's file cut short
        files.append(str(copy))
    whole = by_place(iter_series(files))
    messages = [k for k in whole if isinstance(k, str)]
    assert len(messages) == 1 and "file ends inside a packet record" in messages[0]
    no_fallback(monkeypatch)
    assert by_place(ps.groups_in_one_process(files, 2)) == whole


def test_runs_that_cannot_be_placed_fall_back_to_one_process_and_give_nothing_twice(pieces, monkeypatch):
    whole = by_place(iter_series(pieces))
    real = ps.group_messages

    def overflowing(timed, first, end, **kwargs):
        for message in real(timed, first, end, **kwargs):
            if message[0] == "end" and first > 0:
                message = (*message[:3], 1, *message[4:])  # this run's flow table overflowed
            yield message

    monkeypatch.setattr(ps, "group_messages", overflowing)
    results = list(ps.groups_in_one_process(pieces, 3))
    assert by_place(results) == whole  # (by_place fails on a record given twice)


def test_worker_processes_command_line_and_dataframe(pieces, tmp_path):
    out1, out2 = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    assert cli.main(["analyze", "--series", "-q", "--jobs", "1", "-o", str(out1), *pieces]) == 1
    assert cli.main(["analyze", "--series", "-q", "--jobs", "2", "-o", str(out2), *pieces]) == 1
    one, two = out1.read_text().splitlines(), out2.read_text().splitlines()
    assert sorted(one) == sorted(two) and len(one) > 100
    assert len({json.loads(line)["capture"] for line in two}) >= 5
    # The Python API: records (not JSON lines) from the workers, and the DataFrame.
    assert by_place(analyze_files(pieces, series=True, jobs=3)) == by_place(analyze_files(pieces, series=True))
    frame = analyze(pieces, series=True, jobs=2)
    assert frame.equals(analyze(pieces, series=True))


def test_files_that_overlap_across_two_runs_get_the_warning_of_one_process(generated_capture, pieces, tmp_path):
    frames = pcap_frames(generated_capture)
    t0 = frames[0][0]

    def sensor(name: str, shift_us: int) -> str:  # (as in test_series: two sensors of one link, 5 s apart)
        path = tmp_path / name
        path.write_bytes(capture_file_bytes(1, [(t0 + (t - t0) * 100 + shift_us, d, len(d)) for t, d in frames],
                                            pcapng=False))
        return str(path)

    a, b = sensor("sensor-a.pcap", 0), sensor("sensor-b.pcap", 5_000_000)
    with pytest.warns(UserWarning, match=r"sensor-b\.pcap begins \d+\.\d s before .*sensor-a\.pcap ends"):
        list(ps.groups_in_one_process([b, a], 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # consecutive pieces: no warning
        list(ps.groups_in_one_process(pieces, 6))


def test_fewer_folders_than_processes_each_series_in_runs_one_after_another(pieces, tmp_path):
    sensor2 = tmp_path / "sensor2"
    sensor2.mkdir()
    alone = sensor2 / "only.pcap"
    alone.write_bytes((CORPUS / "tls12_cert_expired.pcap").read_bytes())
    inputs = [*pieces, str(alone)]
    one = list(analyze_files(inputs, series=True))
    three = list(analyze_files(inputs, series=True, jobs=3))
    assert by_place(three) == by_place(one)
    assert [capture for capture, _r in three][-1] == str(alone)  # series after series, as in one process


def test_4_tuples_whose_hashes_collide_fall_back_instead_of_dropping_a_connection(pieces, monkeypatch):
    """The parent keeps a waiting run's 4-tuples as hashes: every 4-tuple hashing alike, connections that are no
    phantoms look like some; they are caught where the records are placed, and one process reads the series."""
    whole = by_place(iter_series(pieces))
    monkeypatch.setattr(ps, "hash", lambda _key: 0, raising=False)
    read_again = []

    def one_process(*args, **kwargs):
        read_again.append(True)
        return iter_series(*args, **kwargs)

    monkeypatch.setattr(tlsflow.series, "iter_series", one_process)
    assert by_place(ps.groups_in_one_process(pieces, 3)) == whole
    assert read_again


def test_what_was_given_is_one_bit_per_flow_id():
    given = ps._Given()
    given.add("a.pcap", {"flow_id": 1})
    given.add("a.pcap", {"flow_id": 17})
    given.add("b.pcap", "b.pcap: damaged")
    assert ("a.pcap", {"flow_id": 1}) in given and ("a.pcap", {"flow_id": 17}) in given
    assert ("a.pcap", {"flow_id": 2}) not in given and ("a.pcap", {"flow_id": 900}) not in given
    assert ("b.pcap", {"flow_id": 1}) not in given
    assert ("b.pcap", "b.pcap: damaged") in given and ("b.pcap", "other") not in given
