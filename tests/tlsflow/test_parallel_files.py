"""`--jobs N` over several files (tlsflow.parallel_files): the rows, order and error texts of one process, with the
records of later files waiting in memory or in the temporary file, and no worker left when the reader stops."""
from __future__ import annotations

import gzip
import multiprocessing
import os
import random
import struct
import tempfile
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import CORPUS
from tlsflow import parallel_files
from tlsflow import waiting as waiting_records
from tlsflow.api import analyze_files
from tlsflow.cli import main
from tlsflow.parallel_files import files_in_one_process


@pytest.fixture(scope="module")
def captures(generated_capture, tmp_path_factory) -> list[str]:
    """Real traffic of every kind a run meets: the generated capture (~200 connections, several batches each when
    batches are small), a gzip copy, a copy in which the records of the first connections come later than in
    the original (the same capture with its first half of packets dropped), a capture without any connection,
    and corpus captures (failures of every step, a pcap with few rows)."""
    folder = tmp_path_factory.mktemp("files")
    data = generated_capture.read_bytes()
    packed = folder / "gen.pcap.gz"
    packed.write_bytes(gzip.compress(data, compresslevel=1))
    later = folder / "later.pcap"
    later.write_bytes(data[:24] + _records_from(data, len(data) // 2))
    empty = folder / "empty.pcap"
    empty.write_bytes(data[:24])  # the header alone: no records at all
    corpus = [str(p) for p in sorted(CORPUS.glob("*.pcap"))[:6]]
    return [str(generated_capture), *corpus[:3], str(packed), str(empty), str(later), *corpus[3:]]


def _records_from(data: bytes, offset: int) -> bytes:
    """The pcap records of `data` (little-endian classic pcap) from the first one at or after `offset`."""
    pos = 24
    while pos < offset:
        caplen = struct.unpack_from("<I", data, pos + 8)[0]
        pos += 16 + caplen
    return data[pos:]


@pytest.fixture(scope="module")
def damaged(generated_capture, tmp_path_factory) -> list[str]:
    """Captures among which one breaks part-way, one is not a capture, one is empty (zero bytes) and one does
    not exist."""
    folder = tmp_path_factory.mktemp("damaged")
    cut = folder / "cut.pcap"
    cut.write_bytes(generated_capture.read_bytes()[:1_000_003])  # ends inside a record
    text = folder / "notes.pcap"
    text.write_text("not a capture\n")
    nothing = folder / "nothing.pcap"
    nothing.write_bytes(b"")
    corpus = sorted(CORPUS.glob("*.pcap"))
    return [str(corpus[0]), str(cut), str(corpus[1]), str(text), str(folder / "missing.pcap"), str(nothing),
            str(generated_capture)]


def _results(inputs: list[str], jobs: int, **options: Any) -> list[tuple[str, Any]]:
    return list(analyze_files(inputs, jobs=jobs, **options))


@pytest.fixture
def forked(monkeypatch):
    """Workers forked even when another thread runs (an earlier test's), so that they see what a test patched."""
    monkeypatch.setattr(parallel_files, "start_method", lambda: multiprocessing.get_context("fork"))


@pytest.fixture
def small_batches(monkeypatch, forked):
    """Workers send a few records per message, so files interleave."""
    monkeypatch.setattr(parallel_files, "BATCH_RECORDS", 7)


@pytest.mark.parametrize("waiting", [waiting_records.WAITING_IN_MEMORY, 5])
def test_two_and_three_jobs_give_one_process_results_in_order(captures, small_batches, monkeypatch, waiting):
    """Same (capture, record) pairs in the same order, also when the records of later files wait in the
    temporary file (`waiting`: records kept in memory first)."""
    monkeypatch.setattr(waiting_records, "WAITING_IN_MEMORY", waiting)
    single = _results(captures, 1)
    assert len(single) > 250
    assert {record["outcome"] for _capture, record in single} >= {"established", "failed"}
    assert _results(captures, 2) == single
    assert _results(captures, 3) == single
    assert _results(captures, 20) == single  # more workers than files: one per file


@pytest.mark.parametrize("jobs", [2, 3])
def test_cli_writes_one_process_lines_byte_for_byte(captures, tmp_path, small_batches, monkeypatch, jobs):
    """`tlsflow analyze --jobs N -f jsonl` over several files: the lines of one process in its order (workers
    encode them), with the records of later files through the temporary file."""
    monkeypatch.setattr(waiting_records, "WAITING_IN_MEMORY", 5)
    lines = []
    for n in (1, jobs):
        out = tmp_path / f"j{n}.jsonl"
        main(["analyze", *captures, "--ca-bundle", str(CORPUS / "ca.pem"), "--format", "jsonl", "-o", str(out),
              "-q", "--jobs", str(n)])
        lines.append(out.read_bytes())
    assert lines[0].count(b"\n") > 250
    assert lines[1] == lines[0]


def test_cli_says_on_one_line_when_waiting_records_cannot_go_to_disk(captures, tmp_path, small_batches, monkeypatch):
    """A temporary folder that cannot be made (here TMPDIR is a file; a full disk does the same): the records
    that wait stay in memory, the lines are one process's, and the command line says so once, on a line of its
    own (tlsflow's warnings without Python's file name and source line)."""
    monkeypatch.setattr(waiting_records, "WAITING_IN_MEMORY", 5)
    single = tmp_path / "j1.jsonl"
    main(["analyze", *captures, "--ca-bundle", str(CORPUS / "ca.pem"), "--format", "jsonl", "-o", str(single), "-q"])
    # The first file ends late (its worker pauses before saying so), so that the other worker's records must wait
    # whatever the two workers' speeds: without it, a run where the files happened to end one after another had
    # nothing to keep, and said nothing.
    original = parallel_files.file_messages

    def first_ends_late(path, **options):
        for message in original(path, **options):
            if message[0] == "done" and path == captures[0]:
                time.sleep(0.5)
            yield message

    monkeypatch.setattr(parallel_files, "file_messages", first_ends_late)
    not_a_folder = tmp_path / "tmp"
    not_a_folder.write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(not_a_folder))
    out = tmp_path / "j2.jsonl"
    with pytest.warns(RuntimeWarning) as caught:
        main(["analyze", *captures, "--ca-bundle", str(CORPUS / "ca.pem"), "--format", "jsonl", "-o", str(out),
              "-q", "--jobs", "2"])
    assert single.read_bytes().count(b"\n") > 250
    assert out.read_bytes() == single.read_bytes()
    said = [w for w in caught if "waiting records" in str(w.message)]
    assert len(said) == 1
    text = warnings.formatwarning(said[0].message, said[0].category, said[0].filename, said[0].lineno)
    assert text == f"tlsflow: cannot keep waiting records on disk ({not_a_folder}: Not a directory); they stay in memory\n"
    other = warnings.formatwarning(UserWarning("not ours"), UserWarning, "x.py", 7)
    assert "x.py:7: UserWarning: not ours" in other


def test_csv_output_is_one_process_output(captures, tmp_path, small_batches):
    """Another writer (records unpacked as dicts, no JSON text from the workers): the same file too."""
    outputs = []
    for jobs in (1, 2):
        out = tmp_path / f"j{jobs}.csv"
        main(["analyze", *captures, "--format", "csv", "-o", str(out), "-q", "--jobs", str(jobs)])
        outputs.append(out.read_bytes())
    assert outputs[1] == outputs[0]


def test_damaged_unreadable_and_empty_files_among_others(damaged, small_batches):
    single = _results(damaged, 1)
    errors = [(capture, text) for capture, text in single if isinstance(text, str)]
    assert [capture for capture, _text in errors] == damaged[1:2] + damaged[3:6]
    assert "connection(s) before the damage were reported" in errors[0][1]
    assert sum(isinstance(record, dict) for capture, record in single if capture == damaged[1]) > 10
    assert _results(damaged, 2) == single
    assert _results(damaged, 3) == single


def test_cli_reports_the_same_errors_and_rows(damaged, tmp_path, capsys):
    present = [path for path in damaged if os.path.exists(path)]  # the command line refuses a missing file
    outputs = []
    for jobs in (1, 2):
        out = tmp_path / f"j{jobs}.jsonl"
        code = main(["analyze", *present, "--format", "jsonl", "-o", str(out), "-q", "--jobs", str(jobs)])
        outputs.append((code, out.read_bytes(), capsys.readouterr().err))
    assert outputs[0][0] == 3  # some capture could not be read
    assert outputs[0][2].count("tlsflow: ") == 3
    assert outputs[1] == outputs[0]


def test_key_log_path_is_used_by_the_workers(tmp_path):
    """A key log given as a path: each worker loads it (TLS 1.3 certificates become readable)."""
    keylog = CORPUS / "tls13_established_plain.keylog"
    inputs = [str(CORPUS / "tls13_established_plain.pcap"), str(CORPUS / "tls13_cert_expired.pcap"),
              str(CORPUS / "tls13_established_plain.pcap")]
    without = _results(inputs, 1)
    single = _results(inputs, 1, keylog=str(keylog))
    assert single != without
    assert _results(inputs, 2, keylog=str(keylog)) == single


def test_objects_keep_one_process(captures, monkeypatch):
    """A trust store or a KeyLog object does not go to workers (they build theirs from paths): one process."""
    from analyzers.certchecks import TrustStore
    from tlsparse.keylog import KeyLog

    def refuse(*args: Any, **kwargs: Any) -> Iterator[Any]:
        raise AssertionError("workers started")

    single = _results(captures[:4], 1)
    monkeypatch.setattr(parallel_files, "analyze_files_parallel", refuse)
    assert _results(captures[:4], 2, trust=TrustStore.default()) == single
    keylog = KeyLog.from_file(str(CORPUS / "tls13_established_plain.keylog"))
    assert _results(captures[:4], 2, keylog=keylog) == _results(captures[:4], 1, keylog=keylog)


@pytest.fixture(scope="module")
def everything(captures, damaged) -> tuple[list[str], list[tuple[str, Any]]]:
    """Every test capture, and what one process gives for them."""
    inputs = captures + damaged
    return inputs, _results(inputs, 1)


def _random_interleave(seed: int):
    """An order in which the parent gets the files' messages: any, each file's in its own order."""
    def interleave(every: list[Iterator[tuple[Any, ...]]]) -> Iterator[tuple[int, tuple[Any, ...]]]:
        chooser = random.Random(seed)
        left = list(range(len(every)))
        while left:
            file = chooser.choice(left)
            message = next(every[file], None)
            if message is None:
                left.remove(file)
            else:
                yield file, message
    return interleave


def _last_first(every: list[Iterator[tuple[Any, ...]]]) -> Iterator[tuple[int, tuple[Any, ...]]]:
    """The last file's messages first, the first file's last: every record but the first file's waits."""
    for file in reversed(range(len(every))):
        for message in every[file]:
            yield file, message


@pytest.mark.parametrize("waiting", [1, 4, 1000, 100_000])
@pytest.mark.parametrize("order", ["last first", *range(4)])
def test_records_come_out_in_input_order_whatever_order_they_arrive(everything, monkeypatch, waiting, order):
    """The merge on its own (in this process), with each file's messages arriving in any interleaving, the
    records waiting in memory only, on disk only, or both: the results of one process, in its order."""
    monkeypatch.setattr(waiting_records, "WAITING_IN_MEMORY", waiting)
    written = []
    original = waiting_records.Waiting._write_out
    monkeypatch.setattr(waiting_records.Waiting, "_write_out", lambda self: written.append(1) or original(self))
    inputs, single = everything
    interleave = _last_first if order == "last first" else _random_interleave(order)
    assert list(files_in_one_process(inputs, batch_records=5, interleave=interleave)) == single
    if waiting < 1000:
        assert written  # the temporary file was used
    elif waiting > len(single):
        assert not written


def test_reader_stopping_early_stops_the_workers(captures, small_batches):
    results = analyze_files(captures * 3, jobs=2)
    first = next(results)
    assert first[0] == captures[0]
    # Both still run: their messages (a few records each) fill the bounded queue long before the files end.
    assert len(multiprocessing.active_children()) == 2
    results.close()
    assert multiprocessing.active_children() == []


def test_worker_failure_is_raised(captures, monkeypatch, forked):
    """A worker's exception is raised in the parent with the worker's traceback and the file it was on."""
    original = parallel_files.file_messages

    def failing(path: str, **kwargs: Any) -> Iterator[tuple[Any, ...]]:
        if path == captures[2]:
            raise ValueError("broken on purpose")
        yield from original(path, **kwargs)

    monkeypatch.setattr(parallel_files, "file_messages", failing)
    with pytest.raises(RuntimeError, match="broken on purpose") as raised:
        _results(captures, 2)
    assert f"failed on {captures[2]}" in str(raised.value)
    assert multiprocessing.active_children() == []


def test_worker_that_dies_is_raised(captures, monkeypatch, forked):
    original = parallel_files.file_messages

    def dying(path: str, **kwargs: Any) -> Iterator[tuple[Any, ...]]:
        if path == captures[1]:
            os._exit(7)
        yield from original(path, **kwargs)

    monkeypatch.setattr(parallel_files, "file_messages", dying)
    with pytest.raises(RuntimeError, match=r"died \(exit code 7\)"):
        _results(captures, 2)
    assert multiprocessing.active_children() == []


def test_spawned_workers_give_the_same_results(captures, monkeypatch):
    """Where fork is not safe (another thread runs) the workers are spawned: fresh interpreters, the shared file
    counter and the arguments passed to them."""
    monkeypatch.setattr(parallel_files, "start_method", lambda: multiprocessing.get_context("spawn"))
    assert _results(captures[:5], 2) == _results(captures[:5], 1)


def test_reader_stopping_early_leaves_no_temporary_file(everything, monkeypatch, tmp_path):
    monkeypatch.setattr(waiting_records, "WAITING_IN_MEMORY", 4)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    inputs, single = everything
    results = files_in_one_process(inputs, batch_records=5, interleave=_last_first)
    assert [next(results) for _ in range(3)] == single[:3]
    assert [p.name[:14] for p in tmp_path.iterdir()] == ["tlsflow-files-"]  # every later file waits there
    results.close()
    assert list(tmp_path.iterdir()) == []


class _Bars:
    """A progress_factory that notes what each bar is told: ("new", capture), ("at", capture, done, total),
    ("clear", capture)."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def __call__(self, capture: str) -> Any:
        events = self.events
        events.append(("new", capture))

        class Bar:
            def __call__(self, done: int, total: int | None) -> None:
                events.append(("at", capture, done, total))

            def clear(self) -> None:
                events.append(("clear", capture))

        return Bar()

    def check(self, inputs: list[str]) -> None:
        """One bar after another, in input order, each told a growing count up to where one process's bar ends,
        then cleared; none for a file that did not open (one process's bar for it is told nothing)."""
        one = _Bars()
        for capture, _result in analyze_files(inputs, jobs=1, progress_factory=one):
            pass
        last = {event[1]: event[2:] for event in one.events if event[0] == "at"}
        assert [event[1] for event in self.events if event[0] == "new"] == [path for path in inputs if path in last]
        at = 0
        while at < len(self.events):
            assert self.events[at][0] == "new"
            capture = self.events[at][1]
            end = self.events.index(("clear", capture), at)
            told = self.events[at + 1:end]
            assert told and all(event[:2] == ("at", capture) for event in told)
            assert [event[2] for event in told] == sorted(event[2] for event in told)
            assert told[-1][2:] == last[capture]
            at = end + 1


def test_progress_bars_one_file_after_another(captures, damaged, small_batches):
    """`progress_factory` (the command line's bar): as in one process, a bar per file in input order while
    its records are given, where its worker has read to."""
    inputs = captures + damaged
    bars = _Bars()
    assert _results(inputs, 2, progress_factory=bars) == _results(inputs, 1)
    bars.check(inputs)


@pytest.mark.parametrize("order", ["last first", 0, 1])
def test_progress_bars_whatever_order_the_messages_arrive(everything, order):
    inputs, single = everything
    bars = _Bars()
    interleave = _last_first if order == "last first" else _random_interleave(order)
    assert list(files_in_one_process(inputs, batch_records=5, interleave=interleave, progress_factory=bars)) == single
    bars.check(inputs)
