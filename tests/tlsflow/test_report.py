"""The text report (`tlsflow analyze` to a terminal or a file, its default output) taken a record at a time
(terminal.Report): the same text whether its rows wait in memory or in sorted runs on disk, whatever order the
records come in, and nothing left behind in the temporary folder."""
from __future__ import annotations

import io
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CORPUS, trust_and_keylog_for
from tlsflow.pipeline import iter_flow_records
from tlsflow.terminal import Report, write_report


@pytest.fixture(scope="module")
def corpus_records(corpus_dir: Path) -> list[dict]:
    """Every record of the shipped corpus (real captures of real clients and servers), capture by capture."""
    records = []
    for path in sorted(p for p in corpus_dir.iterdir() if p.suffix in (".pcap", ".pcapng")):
        trust, keylog = trust_and_keylog_for(path)
        records.extend(iter_flow_records(str(path), capture_name=path.name, trust=trust, keylog=keylog))
    return records


def _report(records: list[dict], *, colour: bool = False, show_capture: bool = True) -> str:
    out = io.StringIO()
    write_report(records, out, colour=colour, show_capture=show_capture)
    return out.getvalue()


def _in_runs(monkeypatch: pytest.MonkeyPatch, blocks: int = 7, per_pickle: int = 3) -> None:
    monkeypatch.setattr(Report, "BLOCKS_IN_MEMORY", blocks)
    monkeypatch.setattr(Report, "_RUN_PICKLE", per_pickle)


@pytest.mark.parametrize("colour", [False, True])
def test_rows_on_disk_give_the_same_report(corpus_records, monkeypatch, tmp_path, colour):
    in_memory = _report(corpus_records, colour=colour)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    _in_runs(monkeypatch)
    spilled = _report(corpus_records, colour=colour)
    assert spilled == in_memory
    assert len(corpus_records) > 3 * Report.BLOCKS_IN_MEMORY  # several runs were merged
    assert list(tmp_path.iterdir()) == []  # the runs are gone


def test_report_order_does_not_depend_on_the_order_records_come_in(corpus_records, monkeypatch):
    """Records come as connections end; the report sorts them (failures first, then by capture and flow id)."""
    _in_runs(monkeypatch)
    shuffled = list(corpus_records)
    random.Random(4).shuffle(shuffled)
    text = _report(shuffled)
    assert text == _report(corpus_records)
    rows = [line for line in text.splitlines()[1:] if line and not line.startswith((" ", "\x1b"))]
    rows = rows[:len(corpus_records)]
    failed = sum(1 for r in corpus_records if r["outcome"] == "failed")
    assert 0 < failed < len(rows)
    assert all(" failed " in row for row in rows[:failed])
    assert not any(" failed " in row for row in rows[failed:])
    # The summary counts every record, and names each failure cause with its count.
    assert f"{len(corpus_records)} connection(s): {failed} failed" in text
    causes = {(r["failed_step"], r["cause"]) for r in corpus_records if r["outcome"] == "failed"}
    for step, cause in causes:
        n = sum(1 for r in corpus_records if (r["failed_step"], r["cause"]) == (step, cause))
        assert f"{n:5d}  failed at {step}: {cause}\n" in text


def test_a_disk_that_refuses_keeps_the_rows_in_memory(corpus_records, monkeypatch, tmp_path):
    expected = _report(corpus_records)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "missing"))
    _in_runs(monkeypatch)
    with pytest.warns(RuntimeWarning, match="cannot keep the report's rows on disk"):
        assert _report(corpus_records) == expected


def test_the_command_lines_text_report_with_rows_on_disk(corpus_dir, tmp_path):
    """`tlsflow analyze` writing its text report through runs on disk (a small in-memory limit) gives the text it
    gives in memory, and leaves no run behind."""
    captures = sorted(str(p) for p in CORPUS.iterdir() if p.suffix in (".pcap", ".pcapng"))
    script = ("import sys\nfrom tlsflow.terminal import Report\nReport.BLOCKS_IN_MEMORY = int(sys.argv[1])\n"
              "from tlsflow.cli import main\nsys.exit(main(sys.argv[2:]))")
    command = [sys.executable, "-c", script]
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    args = ["analyze", "--ca-bundle", str(CORPUS / "ca.pem"), "--no-color", *captures]
    runs = [subprocess.run([*command, str(limit), *args], capture_output=True, text=True, env=env, check=False,
                           cwd=Path(__file__).resolve().parents[2]) for limit in (1_000_000, 5)]
    assert runs[0].returncode == runs[1].returncode == 1  # failed handshakes found
    assert runs[0].stdout == runs[1].stdout
    assert runs[0].stdout.count("\n") > 60
    assert list(tmp_path.iterdir()) == []
