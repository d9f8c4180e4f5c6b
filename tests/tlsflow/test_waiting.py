"""The parent's store of records that wait (tlsflow.waiting), on its own; through --jobs over files and over
ranges of one file in test_parallel_files.py and test_parallel.py."""
from __future__ import annotations

from pathlib import Path

from tlsflow import waiting as waiting_records


def test_batches_come_back_in_order_and_the_disk_holds_only_what_waits(monkeypatch):
    """Each key's batches in order, from its temporary file then from memory; the disk holds only what still
    waits, and nothing is left once the parent is done."""
    monkeypatch.setattr(waiting_records, "WAITING_IN_MEMORY", 3)
    waiting = waiting_records.Waiting()
    try:
        for batch in range(4):
            waiting.add(2, [("file 2", batch)] * 2)
            waiting.add(1, [("file 1", batch)])
        folder = Path(waiting._folder.name)
        assert sorted(p.name for p in folder.iterdir()) == ["1", "2"]
        assert list(waiting.take(1)) == [[("file 1", batch)] for batch in range(4)]
        assert [p.name for p in folder.iterdir()] == ["2"]
        waiting.add(3, [("file 3", 0)])
        assert list(waiting.take(2)) == [[("file 2", batch)] * 2 for batch in range(4)]
        assert list(folder.iterdir()) == []
        waiting.add(4, [("file 4", 0)] * 4)  # on disk again
        assert list(waiting.take(3)) == [[("file 3", 0)]]
        assert waiting._records_in_memory == 0
    finally:
        waiting.close()
    assert not folder.exists()



def test_records_are_counted_as_the_caller_says_and_the_bound_is_over_all_keys(monkeypatch, tmp_path):
    """A range worker's message holds its records first (`records_in`); the bound counts every key's records."""
    monkeypatch.setattr(waiting_records, "WAITING_IN_MEMORY", 5)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    waiting = waiting_records.Waiting(lambda message: len(message[0]), prefix="tlsflow-ranges-")
    try:
        waiting.add(1, (["a", "b", "c"], "opened", 10))
        waiting.add(2, (["d", "e"], "opened", 11))
        assert waiting._folder is None  # 5 records: not past the bound
        waiting.add(2, (["f"], "opened", 12))
        assert [p.name[:15] for p in tmp_path.iterdir()] == ["tlsflow-ranges-"]
        assert waiting._records_in_memory == 0
        waiting.add(1, ([], "opened", 13))
        assert list(waiting.take(2)) == [(["d", "e"], "opened", 11), (["f"], "opened", 12)]
        assert list(waiting.take(1)) == [(["a", "b", "c"], "opened", 10), ([], "opened", 13)]
        assert list(waiting.take(3)) == []
    finally:
        waiting.close()
    assert list(tmp_path.iterdir()) == []
