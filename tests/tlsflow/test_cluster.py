"""Scale-out on Dask: a real two-process LocalCluster on loopback analyses the shipped corpus; the Parquet
it writes must hold exactly the rows of a single-process run. Also: per-file errors, the CLI's --scheduler
and exit codes, and that plain `tlsflow analyze` never needs Dask."""
from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CORPUS, REPO
from tlsflow.api import iter_flows
from tlsflow.cli import EXIT_FAILURES, EXIT_OK, EXIT_UNREADABLE, EXIT_USAGE, main
from tlsflow.cluster import MANIFEST_NAME, output_name
from tlsflow.formats import parquet_schema
from tlsflow.record import FIELDS

CA = CORPUS / "ca.pem"
PATTERN = "captures/corpus/*.pcap"  # relative on purpose: the `capture` field keeps what the user typed


def _ca() -> str | None:
    return str(CA) if CA.exists() else None


def _local_cluster(n_workers: int):
    from distributed import LocalCluster

    # Worker processes, as on real machines; loopback only; any free port (8787 may be taken).
    return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                        dashboard_address="127.0.0.1:0", worker_dashboard_address="127.0.0.1:0",
                        silence_logs=40, death_timeout=60)


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("distributed", reason="dask[distributed] is not installed (the 'cluster' extra)")
    cluster = _local_cluster(2)
    try:
        yield cluster
    finally:
        cluster.close(timeout=30)


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


def _normal(value):
    """A value as pandas reads it back from Parquet → as the pipeline produced it."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "tolist"):  # numpy arrays (list columns) and numpy scalars
        return value.tolist()
    return value


def _rows_from_parquet(folder: Path) -> list[dict]:
    import pandas as pd

    frame = pd.read_parquet(folder)
    assert list(frame.columns) == list(FIELDS)
    rows = [{k: _normal(v) for k, v in row.items()} for row in frame.to_dict("records")]
    return sorted(rows, key=lambda r: (r["capture"], r["flow_id"]))


def _rows_single_process(paths, **kwargs) -> list[dict]:
    rows = [{k: r.get(k) for k in FIELDS} for r in iter_flows(paths, **kwargs)]
    return sorted(rows, key=lambda r: (r["capture"], r["flow_id"]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_corpus_on_two_workers_equals_single_process(cluster, in_repo, tmp_path):
    from tlsflow.cluster import analyze_cluster

    out = tmp_path / "results"
    run = analyze_cluster(PATTERN, cluster.scheduler_address, out, ca_bundle=_ca(), timeout=240)
    expected = _rows_single_process(PATTERN, ca_bundle=_ca())

    assert run.errors == []
    captures = sorted(str(p.relative_to(REPO)) for p in CORPUS.glob("*.pcap"))
    assert [r.capture for r in run.results] == captures
    assert len(run.files) == len(captures) == len(list(out.glob("*.parquet")))
    got = _rows_from_parquet(out)
    assert len(got) == len(expected) == run.rows > 0
    for g, e in zip(got, expected, strict=True):
        assert g == e, g["capture"]
    assert run.failed == sum(r["outcome"] == "failed" for r in expected)
    # both worker processes took part: the scheduler spread the files
    assert {r.worker for r in run.results} == set(cluster.scheduler_info["workers"])
    # every file carries the contract's schema, even a capture whose connections would all be filtered out
    import pyarrow.parquet as pq

    for path in out.glob("*.parquet"):
        assert pq.read_schema(path).equals(parquet_schema())
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert {c["capture"] for c in manifest["captures"]} == set(captures)
    assert sum(c["rows"] for c in manifest["captures"]) == len(expected)


def test_keylog_path_reaches_the_workers(cluster, in_repo, tmp_path):
    from tlsflow.cluster import analyze_cluster

    capture, keylog = "captures/corpus/tls13_cert_expired.pcap", "captures/corpus/tls13_cert_expired.keylog"
    if not Path(keylog).exists():
        pytest.skip("corpus key log missing")
    run = analyze_cluster([capture], cluster, tmp_path, ca_bundle=_ca(), keylog=keylog, timeout=120)
    got = _rows_from_parquet(tmp_path)
    assert run.errors == [] and got == _rows_single_process(capture, ca_bundle=_ca(), keylog=keylog)
    # the TLS 1.3 certificate is only readable with the key log: the workers loaded it from its path
    assert any(r["cert_subject"] for r in got)


def test_unreadable_captures_are_reported_per_file(cluster, in_repo, tmp_path):
    from tlsflow.cluster import analyze_cluster

    good = sorted(CORPUS.glob("*.pcap"))[:3]
    inputs = tmp_path / "in"
    inputs.mkdir()
    for p in good:
        shutil.copy(p, inputs / p.name)
    (inputs / "garbage.pcap").write_bytes(b"this is not a capture file at all" * 10)
    whole = good[0].read_bytes()
    (inputs / "truncated.pcap").write_bytes(whole[: len(whole) * 2 // 3])
    out = tmp_path / "out"

    run = analyze_cluster(str(inputs), cluster, out, ca_bundle=_ca(), timeout=120)
    by_name = {Path(r.capture).name: r for r in run.results}
    assert by_name["garbage.pcap"].errors and by_name["garbage.pcap"].rows == 0
    assert by_name["truncated.pcap"].errors
    assert by_name["truncated.pcap"].rows > 0  # what came before the damage is kept
    for p in good:
        assert by_name[p.name].errors == () and by_name[p.name].rows > 0
    # the readable files' rows are all there, and the same as a local run reports
    expected = _rows_single_process([str(inputs / p.name) for p in good] + [str(inputs / "truncated.pcap")],
                                    ca_bundle=_ca(), errors=[])
    assert _rows_from_parquet(out) == expected
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_missing_capture_on_workers_names_shared_storage(tmp_path):
    from tlsflow.cluster import CaptureTask, analyze_capture

    # What a worker without shared storage meets: a path the client saw but it does not.
    task = CaptureTask(name="sensor1/a.pcap", path=str(tmp_path / "nowhere.pcap"),
                       output=str(tmp_path / "out" / "a.parquet"))
    result = analyze_capture(task)
    assert result.rows == 0 and "shared storage" in result.errors[0]


def test_cli_scheduler_writes_parquet_with_exit_codes(cluster, in_repo, tmp_path, capsys):
    args = ["analyze", "--scheduler", cluster.scheduler_address, PATTERN, "-q"]
    if _ca():
        args += ["--ca-bundle", _ca()]
    expected = _rows_single_process(PATTERN, ca_bundle=_ca())
    failed = [r for r in expected if r["outcome"] == "failed"]
    assert main([*args, "-o", str(tmp_path / "all")]) == (EXIT_FAILURES if failed else EXIT_OK)
    assert _rows_from_parquet(tmp_path / "all") == expected

    # the filters run on the workers, as they do locally
    assert main([*args, "-o", str(tmp_path / "failed"), "--failed", "-f", "parquet"]) == (
        EXIT_FAILURES if failed else EXIT_OK)
    assert _rows_from_parquet(tmp_path / "failed") == failed


def test_cli_scheduler_exit_zero_and_three(cluster, tmp_path, capsys):
    established = sorted(CORPUS.glob("*established*.pcap"))
    clean = [str(p) for p in established
             if all(r["outcome"] == "established" for r in iter_flows(p, ca_bundle=_ca()))]
    if not clean:
        pytest.skip("no corpus capture with only established connections")
    ca = ["--ca-bundle", _ca()] if _ca() else []
    assert main(["analyze", "--scheduler", cluster.scheduler_address, clean[0], "-o", str(tmp_path / "a"),
                 *ca]) == EXIT_OK
    assert "connection(s)" in capsys.readouterr().err

    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"\x00" * 64)
    assert main(["analyze", "--scheduler", cluster.scheduler_address, clean[0], str(bad), "-o",
                 str(tmp_path / "b"), *ca]) == EXIT_UNREADABLE
    err = capsys.readouterr().err
    assert str(bad) in err
    assert len(_rows_from_parquet(tmp_path / "b")) == len(list(iter_flows(clean[0], ca_bundle=_ca())))


def test_cli_scheduler_usage_errors(cluster, tmp_path, capsys):
    capture = str(min(CORPUS.glob("*.pcap")))
    address = cluster.scheduler_address
    assert main(["analyze", "--scheduler", address, capture]) == EXIT_USAGE  # no -o folder
    assert "-o DIR" in capsys.readouterr().err
    assert main(["analyze", "--scheduler", address, capture, "-o", str(tmp_path), "-f", "csv"]) == EXIT_USAGE
    assert main(["analyze", "--scheduler", address, "-", "-o", str(tmp_path)]) == EXIT_USAGE
    assert "standard input" in capsys.readouterr().err
    not_a_dir = tmp_path / "file.parquet"
    not_a_dir.write_bytes(b"")
    assert main(["analyze", "--scheduler", address, capture, "-o", str(not_a_dir)]) == EXIT_USAGE


def test_unreachable_scheduler_is_a_clear_error(tmp_path):
    pytest.importorskip("distributed")
    from tlsflow.cluster import ClusterError, analyze_cluster

    capture = str(min(CORPUS.glob("*.pcap")))
    with pytest.raises(ClusterError, match="cannot connect"):
        analyze_cluster(capture, f"tcp://127.0.0.1:{_free_port()}", tmp_path, connect_timeout=2)


def test_output_names_unique_per_path_and_stable():
    a, b = output_name("/data/sensor1/cap-0001.pcap"), output_name("/data/sensor2/cap-0001.pcap")
    assert a != b and a.startswith("cap-0001.pcap-") and a.endswith(".parquet")
    assert output_name("/data/sensor1/cap-0001.pcap") == a
    weird = output_name("/x/.. odd\nname$.pcap")
    assert "/" not in weird and "\n" not in weird and not weird.startswith(".")


# Python refuses to import a module whose sys.modules entry is None: a machine without Dask.
_BLOCK_DASK = "import sys; sys.modules['dask'] = None; sys.modules['distributed'] = None; "


def _python_without_dask(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", _BLOCK_DASK + code], check=False, cwd=REPO,
                          capture_output=True, text=True, timeout=120, env=env)


def test_plain_analyze_does_not_need_dask(tmp_path):
    capture, out = str(min(CORPUS.glob("*.pcap"))), str(tmp_path / "o.jsonl")
    proc = _python_without_dask("from tlsflow.cli import main; sys.exit(main(['analyze', "
                                f"{capture!r}, '-f', 'jsonl', '-o', {out!r}, '-q']))")
    assert proc.returncode in (EXIT_OK, EXIT_FAILURES), proc.stderr
    assert (tmp_path / "o.jsonl").read_text().strip()


def test_scheduler_without_dask_says_what_to_install(tmp_path):
    capture = str(min(CORPUS.glob("*.pcap")))
    proc = _python_without_dask(f"from tlsflow.cli import main; sys.exit(main(['analyze', '--scheduler', "
                                f"'tcp://127.0.0.1:1', {capture!r}, '-o', {str(tmp_path)!r}]))")
    assert proc.returncode == EXIT_USAGE
    assert "tlsflow[cluster]" in proc.stderr


def test_timeout_reports_unfinished_captures_and_returns(tmp_path):
    pytest.importorskip("distributed")
    import time

    from tlsflow.cluster import analyze_cluster

    capture = str(min(CORPUS.glob("*.pcap")))
    # A filter that holds the only worker far longer than the run may last: the watchdog must cancel the task
    # and report that capture, instead of waiting for it.
    with _local_cluster(1) as cluster:
        run = analyze_cluster(capture, cluster, tmp_path, keep=lambda _: time.sleep(60) or True, timeout=1)
    assert len(run.results) == 1 and run.results[0].output is None
    assert run.errors == [f"{capture}: not analysed within 1 s"]
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())["captures"][0]["errors"] == run.errors


def test_a_worker_checks_the_chains_of_rotating_files_once(generated_capture, tmp_path, monkeypatch):
    """A worker thread keeps what the analysis remembers from one task to the next (pipeline.RunCaches): the
    bench generator's real handshakes cut into four rotated files give the rows of analysing each alone, with the
    chains checked in the first file that shows them."""
    from tests.conftest import capture_file_bytes, pcap_frames
    from tlsflow import pipeline
    from tlsflow.cluster import CaptureTask, analyze_capture

    frames = pcap_frames(generated_capture)
    step = len(frames) // 4 + 1
    paths = []
    for i in range(0, len(frames), step):
        path = tmp_path / f"sensor-{i // step}.pcap"
        path.write_bytes(capture_file_bytes(1, [(t, f, len(f)) for t, f in frames[i:i + step]], pcapng=False))
        paths.append(path)
    calls = []
    real = pipeline.assess_certificates
    monkeypatch.setattr(pipeline, "assess_certificates", lambda *a, **k: calls.append(1) or real(*a, **k))
    for path in paths:  # each file alone, with caches of its own: the checks the worker would repeat
        list(pipeline.iter_flow_records(path, capture_name=str(path)))
    checks_alone = len(calls)
    expected = _rows_single_process([str(p) for p in paths])
    calls.clear()
    out = tmp_path / "out"
    for path in paths:
        result = analyze_capture(CaptureTask(name=str(path), path=str(path), output=str(out / f"{path.stem}.parquet")))
        assert not result.errors
    assert _rows_from_parquet(out) == expected
    assert 0 < len(calls) < checks_alone


def test_series_on_the_cluster_equals_series_in_one_process(cluster, generated_capture, tmp_path):
    """--series on Dask: a task per folder reads its rotated files as one capture, and each file still gets its
    Parquet file, with the rows of a local --series run (one record per connection, under the file it began in)."""
    from tests.conftest import capture_file_bytes, pcap_frames
    from tlsflow.cluster import analyze_cluster

    frames = pcap_frames(generated_capture)
    files = []
    for folder, cuts in (("s1", [len(frames) // 3, len(frames) * 2 // 3]), ("s2", [len(frames) // 2])):
        (tmp_path / folder).mkdir()
        bounds = [0, *cuts, len(frames)]
        for i in range(len(bounds) - 1):
            path = tmp_path / folder / f"rot{i}.pcap"
            path.write_bytes(capture_file_bytes(1, [(t, d, len(d)) for t, d in frames[bounds[i]:bounds[i + 1]]],
                                                pcapng=False))
            files.append(str(path))
    out = tmp_path / "results"
    run = analyze_cluster(files, cluster.scheduler_address, out, series=True, timeout=240)
    assert run.errors == []
    assert [r.capture for r in run.results] == files
    assert len(run.files) == len(files) == len(list(out.glob("*.parquet")))
    expected = _rows_single_process(files, series=True)
    got = _rows_from_parquet(out)
    assert len(got) == len(expected) == run.rows == 2 * len(_rows_single_process(str(generated_capture)))
    for g, e in zip(got, expected, strict=True):
        assert g == e, (g["capture"], g["flow_id"])


def test_one_series_is_cut_into_runs_of_files_on_the_cluster(cluster, generated_capture, tmp_path):
    """One sensor's folder on a two-worker cluster: a task per run of its files, then one per run placing them
    (tlsflow.cluster_series); the Parquet rows, results and damage lines of a local --series run."""
    from distributed import Client

    from tests.conftest import capture_file_bytes, pcap_frames
    from tlsflow.api import analyze_files
    from tlsflow.cluster import CaptureTask, _series_in_runs, analyze_cluster

    frames = pcap_frames(generated_capture)
    bounds = [len(frames) * i // 6 for i in range(7)]
    for variant in ("whole", "damaged"):
        folder = tmp_path / variant / "sensor"
        folder.mkdir(parents=True)
        files = []
        for i in range(6):
            path = folder / f"rot{i}.pcap"
            data = capture_file_bytes(1, [(t, d, len(d)) for t, d in frames[bounds[i]:bounds[i + 1]]], pcapng=False)
            path.write_bytes(data[:len(data) // 2] if variant == "damaged" and i == 4 else data)
            files.append(str(path))
        with Client(cluster) as client:
            pieces = tuple((f, f, f + ".parquet") for f in files)
            plans = _series_in_runs([CaptureTask(files[0], files[0], files[0] + ".parquet", pieces=pieces)], client)
            assert [len(rt.files) for rt in plans[files[0]].run_tasks] == [3, 3]
        if variant == "whole":
            # The runs place exactly (no fallback to one task) and the second one saw phantoms.
            from tlsflow.cluster_series import analyze_series_run, place_series_run

            plan = plans[files[0]]
            for rt in plan.run_tasks:
                reported, after = plan.took(analyze_series_run(rt))
            assert reported == () and [step[0] for step in after] == [place_series_run] * 2
            assert after[0][3] == {} and sum(len(ids) for ids in after[1][3].values()) > 0
            plan._remove_run_outputs()
        out = tmp_path / variant / "results"
        run = analyze_cluster(files, cluster.scheduler_address, out, series=True, timeout=240)
        local = list(analyze_files(files, series=True))
        assert run.errors == [r for _c, r in local if isinstance(r, str)]
        assert [r.capture for r in run.results] == files
        assert len(run.files) == len(files) == len(list(out.glob("*.parquet")))
        assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no run's file left behind
        expected = _rows_single_process(files, series=True, errors=[])
        got = _rows_from_parquet(out)
        assert len(got) == len(expected) == run.rows > 100
        for g, e in zip(got, expected, strict=True):
            assert g == e, (g["capture"], g["flow_id"])
    assert any("file ends inside a packet record" in e for e in run.errors)
