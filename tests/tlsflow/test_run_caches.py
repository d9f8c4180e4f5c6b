"""One run's captures share what the analysis remembers (pipeline.RunCaches): rotating capture files show the same
servers file after file, and their chains are checked once, with the records of a fresh start for every file."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import capture_file_bytes, pcap_frames
from tlsflow import pipeline
from tlsflow.api import analyze_files
from tlsflow.parallel_files import analyze_files_parallel, files_in_one_process
from tlsflow.pipeline import iter_flow_records

ETHERNET = 1


@pytest.fixture(scope="module")
def rotated(generated_capture: Path, tmp_path_factory) -> list[str]:
    """The bench generator's real handshakes cut into six files at packet boundaries, as `tcpdump -C` rotates."""
    frames = pcap_frames(generated_capture)
    folder = tmp_path_factory.mktemp("rotated")
    step = len(frames) // 6 + 1
    paths = []
    for i in range(0, len(frames), step):
        path = folder / f"rot-{i // step}.pcap"
        path.write_bytes(capture_file_bytes(ETHERNET, [(t, f, len(f)) for t, f in frames[i:i + step]], pcapng=False))
        paths.append(str(path))
    return paths


def _counting_checks(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = pipeline.assess_certificates

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "assess_certificates", counting)
    return calls


def _each_alone(rotated: list[str], calls: list[int]) -> tuple[list[dict], int]:
    """Every file analysed alone (caches of its own), and the chain checks that took; `calls` is emptied after."""
    alone = [record for path in rotated for record in iter_flow_records(path, capture_name=path)]
    checks = len(calls)
    calls.clear()
    return alone, checks


def test_rotated_files_give_each_file_s_own_records_and_check_each_chain_once(rotated, monkeypatch):
    calls = _counting_checks(monkeypatch)
    alone, checks_alone = _each_alone(rotated, calls)
    shared = [record for _path, record in analyze_files(rotated)]
    assert shared == alone
    assert {r["capture"] for r in shared} == set(rotated) and len(shared) > 100
    assert sum(1 for r in shared if r["cert_subject"]) > 20  # chains shown in most files
    # A chain (with its server name, and what the capture time makes of it) is checked in the first file that
    # shows it, not again in every file.
    assert checks_alone >= len(rotated) > len(calls) > 0


def test_the_workers_of_several_files_share_them_too(rotated, monkeypatch):
    calls = _counting_checks(monkeypatch)
    alone, checks_alone = _each_alone(rotated, calls)
    in_one = [record for _path, record in files_in_one_process(rotated)]
    assert in_one == alone
    assert 0 < len(calls) < checks_alone
    assert [record for _path, record in analyze_files_parallel(rotated, 2)] == alone  # (forked workers)
