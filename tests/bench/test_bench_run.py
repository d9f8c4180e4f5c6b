"""bench.run's memory columns: a process tree whose children share the parent's pages (as forked `--jobs` workers
do) sums them once per process in RSS, once in all in PSS."""
from __future__ import annotations

import os
import sys

import pytest

from bench import run

# A parent that fills 64 MiB, then forks two children that keep those pages (written before the fork, read after)
# and each write 8 MiB of their own; all three stay alive for a while.
SHARING = """
import os, time
pages = bytearray(os.urandom(1 << 20) * 64)
children = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        own = bytearray(os.urandom(1 << 20) * 8)
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
