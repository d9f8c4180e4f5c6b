"""`tlsflow analyze` without --jobs: every core for input that pays for them, one process otherwise
(`tlsflow.inputs.auto_jobs`), with the same records either way."""
from __future__ import annotations

import json
import os

import pytest

from tests.conftest import CORPUS
from tlsflow import cli, inputs
from tlsflow.inputs import AUTO_BYTES_PER_JOB, AUTO_PARALLEL_FROM, auto_jobs


def _sized(path, size: int) -> str:
    with open(path, "wb") as f:  # sparse: no disk written
        f.truncate(size)
    return str(path)


def test_small_input_keeps_one_process(tmp_path):
    small = _sized(tmp_path / "a.pcap", AUTO_PARALLEL_FROM - 1)
    assert auto_jobs([small], cores=8) == 1
    # several small files adding up to less than the threshold, too
    files = [_sized(tmp_path / f"{i}.pcap", AUTO_PARALLEL_FROM // 4) for i in range(3)]
    assert auto_jobs(files, cores=8) == 1


def test_one_big_file_takes_every_core_but_not_more_than_its_size_pays_for(tmp_path):
    big = _sized(tmp_path / "big.pcap", AUTO_PARALLEL_FROM)
    assert auto_jobs([big], cores=2) == 2
    assert auto_jobs([big], cores=64) == AUTO_PARALLEL_FROM // AUTO_BYTES_PER_JOB
    huge = _sized(tmp_path / "huge.pcap", 64 * AUTO_BYTES_PER_JOB)
    assert auto_jobs([huge], cores=16) == 16
    assert auto_jobs([huge], cores=1) == 1


def test_several_files_take_at_most_one_process_each(tmp_path):
    files = [_sized(tmp_path / f"{i}.pcap", AUTO_PARALLEL_FROM) for i in range(3)]
    assert auto_jobs(files, cores=8) == 3
    assert auto_jobs(files, cores=2) == 2


def test_standard_input_and_vanished_files_keep_one_process(tmp_path):
    big = _sized(tmp_path / "big.pcap", 4 * AUTO_PARALLEL_FROM)
    assert auto_jobs(["-"], cores=8) == 1
    assert auto_jobs([big, "-"], cores=8) == 1
    assert auto_jobs([big, str(tmp_path / "gone.pcap")], cores=8) == 1


def test_one_gzipped_file_keeps_one_process(tmp_path):
    """(with its decompressing child): shared out by connection, every worker would decompress all of it."""
    big = tmp_path / "big.pcap.gz"
    with open(big, "wb") as f:
        f.write(b"\x1f\x8b\x08\x00")
        f.truncate(4 * AUTO_PARALLEL_FROM)
    assert auto_jobs([str(big)], cores=8) == 1
    plain = _sized(tmp_path / "big.pcap", 4 * AUTO_PARALLEL_FROM)
    assert auto_jobs([str(big), plain], cores=8) == 2  # several files: one per process, gzipped or not


def test_where_workers_cannot_start_the_default_keeps_one_process(tmp_path, monkeypatch):
    """No POSIX semaphores (a sandbox without /dev/shm): multiprocessing's locks raise, and --jobs would fail."""
    import multiprocessing.context

    big = _sized(tmp_path / "big.pcap", 4 * AUTO_PARALLEL_FROM)
    assert inputs.workers_available() and auto_jobs([big], cores=4) == 4

    def no_semaphores(self, *args, **kwargs):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(multiprocessing.context.BaseContext, "Lock", no_semaphores)
    assert not inputs.workers_available()
    assert auto_jobs([big], cores=4) == 1


def test_the_default_counts_the_cores_this_process_may_use(tmp_path, monkeypatch):
    big = _sized(tmp_path / "big.pcap", 4 * AUTO_PARALLEL_FROM)
    monkeypatch.setattr(inputs, "cpu_cores", lambda: 3)
    assert auto_jobs([big]) == 3


@pytest.mark.parametrize("fmt", ["jsonl", "text"])
def test_analyze_without_jobs_uses_the_cores_and_gives_the_one_process_output(
        tmp_path, capsys, monkeypatch, generated_capture, fmt):
    """A real capture (the bench generator's) above the threshold (made small here) is analysed by two processes
    when --jobs is not given, with the output of --jobs 1 (the same lines; the report byte for byte); below it, by
    one."""
    seen: list[int] = []
    real_analyze = cli._analyze

    def spying(args, paths, jobs):
        seen.append(jobs)
        return real_analyze(args, paths, jobs)

    monkeypatch.setattr(cli, "_analyze", spying)
    monkeypatch.setattr(inputs, "cpu_cores", lambda: 2)

    def run(*extra: str) -> tuple[int, str]:
        out = tmp_path / f"out-{len(seen)}"
        args = ["analyze", str(generated_capture), "-q", *extra]
        args += ["--format", "jsonl", "-o", str(out)] if fmt == "jsonl" else ["--no-color"]
        code = cli.main(args)
        return code, out.read_text() if fmt == "jsonl" else capsys.readouterr().out

    one = run("--jobs", "1")
    assert seen == [1]
    size = os.path.getsize(generated_capture)
    assert size < AUTO_PARALLEL_FROM  # the generated capture is small: one process by default
    assert run() == one
    assert seen == [1, 1]
    monkeypatch.setattr(inputs, "AUTO_PARALLEL_FROM", size)
    monkeypatch.setattr(inputs, "AUTO_BYTES_PER_JOB", size // 4)
    if fmt == "jsonl":
        # The same lines; the order of a few may differ: a worker that ends while its last connections linger after
        # their close gives their records once every later worker's have come (`parallel_ranges._Placer.unsure`).
        code, text = run()
        assert (code, sorted(text.splitlines())) == (one[0], sorted(one[1].splitlines()))
    else:
        assert run() == one  # (the report is sorted)
    assert seen == [1, 1, 2]
    if fmt == "jsonl":
        records = [json.loads(line) for line in one[1].splitlines()]
        assert len(records) > 50 and {r["outcome"] for r in records} >= {"established", "failed"}


def test_a_directory_of_captures_without_jobs_keeps_one_process(monkeypatch):
    """The shipped corpus (kilobytes): no worker is started for it."""
    seen: list[int] = []
    monkeypatch.setattr(cli, "_analyze", lambda args, paths, jobs: seen.append(jobs) or 0)
    monkeypatch.setattr(inputs, "cpu_cores", lambda: 8)
    assert cli.main(["analyze", str(CORPUS), "-q", "--format", "jsonl", "-o", os.devnull]) == 0
    assert seen == [1]
