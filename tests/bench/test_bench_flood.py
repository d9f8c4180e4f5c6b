"""The flood generator (bench/gen_flood.py): valid pcap that tshark reads as the SYNs (and RSTs) it says, the same
bytes for the same arguments, and tlsflow reports each connection as what it is."""
from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # bench/ is a tool folder, not an installed package

from bench import gen_flood
from tlsflow.pipeline import iter_flow_records


@pytest.mark.parametrize("rst", [False, True])
def test_flood_is_what_it_says(tmp_path: Path, rst: bool) -> None:
    path, again = tmp_path / "flood.pcap", tmp_path / "again.pcap"
    gen_flood.main(["--syns", "300", "--seconds", "400", *(["--rst"] if rst else []), "-o", str(path)])
    gen_flood.write_flood(str(again), 300, 400.0, rst)
    assert path.read_bytes() == again.read_bytes()
    if shutil.which("tshark"):
        out = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "tcp.flags", "-e", "ip.checksum.status",
                              "-o", "ip.check_checksum:TRUE"], capture_output=True, text=True, check=True).stdout
        flags = Counter(line.split("\t")[0] for line in out.splitlines())
        assert flags == ({"0x0002": 300, "0x0014": 300} if rst else {"0x0002": 300})
        assert {line.split("\t")[1] for line in out.splitlines()} == {"1"}  # checksums good
    records = list(iter_flow_records(str(path)))
    # 300 SYNs over 400 s: the unanswered ones time out (300 s idle) except those of the capture's last 300 s,
    # still waiting when it ends; every refused one is a RST answer.
    causes = Counter((r["outcome"], r["cause"]) for r in records)
    if rst:
        assert causes == {("failed", "tcp_refused"): 300}
    else:
        assert len(records) == 300 and causes[("failed", "tcp_no_answer")] > 0
        assert set(causes) <= {("failed", "tcp_no_answer"), ("incomplete", None)}
