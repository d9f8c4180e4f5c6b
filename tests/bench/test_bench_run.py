"""bench.run's memory columns: a process tree whose children share the parent's pages (as forked `--jobs` workers
do) sums them once per process in RSS, once in all in PSS."""
from __future__ import annotations

import os
import sys

import pytest

from bench import run

# A parent that fills 64 MiB, then forks two children that keep those pages (written before the fork, read after)
# and each write 8 MiB of their own; all three stay alive for a while. The buffers are filled in place, a MiB at a
# time: made from a 64 MiB bytes object, the parent held both for a moment, and a sample taken then read 134 MiB
# of PSS (the test failed once in a clean-clone CI run).
SHARING = """
import os, time
def filled(mib):
    buf = bytearray(mib << 20)
    for at in range(0, mib << 20, 1 << 20):
        buf[at:at + (1 << 20)] = os.urandom(1 << 20)
    return buf
pages = filled(64)
children = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        own = filled(8)
        assert sum(pages[::4096]) >= 0
        time.sleep(1.5)
        os._exit(0)
    children.append(pid)
time.sleep(1.5)
for pid in children:
    os.waitpid(pid, 0)
"""


@pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/smaps_rollup"), reason="needs Linux's smaps_rollup")
def test_tree_pss_counts_shared_pages_once():
    m = run.measure([sys.executable, "-c", SHARING], timeout=60)
    assert m.returncode == 0
    mib = 1024
    # RSS, summed over the tree: the 64 MiB three times (and each child's 8 MiB), PSS: about once.
    assert m.tree_peak_kib >= 3 * 64 * mib
    assert 64 * mib <= m.tree_pss_peak_kib <= 64 * mib + 2 * 8 * mib + 40 * mib  # (+ three interpreters)
    assert m.tree_pss_peak_kib < m.tree_peak_kib * 0.6
    # One process's own peak (ru_maxrss of the parent): the 64 MiB.
    assert m.peak_kib >= 64 * mib


# Each child waits for the other's file: run one after the other, neither would ever see it (and the deadline kills
# them); run together, both end at once. The second exits 3.
MEET = """
import os, sys, time
me, other, code = sys.argv[1], sys.argv[2], int(sys.argv[3])
open(me, "w").close()
deadline = time.monotonic() + 30
while not os.path.exists(other):
    if time.monotonic() > deadline:
        sys.exit(9)
    time.sleep(0.01)
sys.exit(code)
"""


def test_measure_together_runs_the_commands_at_once(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    m = run.measure_together([[sys.executable, "-c", MEET, a, b, "0"], [sys.executable, "-c", MEET, b, a, "3"]],
                             timeout=60)
    assert m.returncode == 3  # the first non-zero exit code (not 9: they met)
    assert m.cpu > 0
    assert m.tree_peak_kib >= m.peak_kib > 0


def test_scaling_lines_set_jobs_against_what_the_machine_gave_n_processes():
    def tool(name, walls, copies=1):
        return run.Tool(name, ["x"], walls=walls, copies=copies)

    tools = [tool("tlsflow --jobs 1", [10.0, 10.0]), tool("tlsflow --jobs 2", [6.0, 6.0]),
             tool("2 × tlsflow --jobs 1 at once", [12.5, 12.5], copies=2), tool("tshark", [40.0])]
    (line,) = run.scaling_lines(tools)
    # 10/6 = 1.67x faster; two at once did 2 x 10 s of work in 12.5 s: 1.60x; 1.67 / 1.60 = 104 %.
    assert line.startswith("--jobs 2: 1.67× faster than --jobs 1; 2 one-process runs at once: 1.60× the throughput")
    assert line.endswith("reaches 104% of it")
    # Without the one-process row there is nothing to compare with.
    assert run.scaling_lines(tools[1:]) == []


def test_jobs_above_one_get_a_row_of_one_process_runs_at_once(tmp_path, capsys):
    path = tmp_path / "empty.pcap"
    path.write_bytes(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
    fake = f"{sys.executable} -c pass {{capture}}"
    rc = run.main([str(path), "--runs", "1", "--tools", "tlsflow", "--tlsflow-cmd", fake, "--jobs", "1,2"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "2 × tlsflow --jobs 1 at once" in out
    assert "--jobs 2:" in out and "of it" in out
    rc = run.main([str(path), "--runs", "1", "--tools", "tlsflow", "--tlsflow-cmd", fake, "--jobs", "1,2",
                   "--no-ceiling"])
    assert "at once" not in capsys.readouterr().out


def test_series_pieces_time_tlsflow_on_the_capture_cut_into_files(generated_capture, tmp_path, capsys):
    import csv
    from pathlib import Path

    from tests.conftest import pcap_frames
    from tlsflow.api import iter_flows

    pieces = run.split_pcap(str(generated_capture), 4, str(tmp_path))
    assert [os.path.basename(p) for p in pieces] == [f"piece-{i:03d}.pcap" for i in range(4)]
    frames = pcap_frames(generated_capture)
    cut = [pcap_frames(Path(p)) for p in pieces]
    assert [f for part in cut for f in part] == frames and min(map(len, cut)) >= len(frames) // 4
    # The tlsflow row reads the pieces with --series: one row per connection of the whole capture, under the
    # pieces' names.
    out = tmp_path / "rows.csv"
    rc = run.main([str(generated_capture), "--runs", "1", "--tools", "tlsflow", "--series-pieces", "3",
                   "--tlsflow-cmd", f"{sys.executable} -m tlsflow analyze {{capture}} --format csv -o {out}",
                   "--jobs", "2", "--no-ceiling"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "tlsflow --jobs 2" in captured.out and "failed" not in captured.out
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(1 for _ in iter_flows(str(generated_capture))) > 100
    assert {os.path.basename(r["capture"]) for r in rows} <= {f"piece-{i:03d}.pcap" for i in range(3)}
