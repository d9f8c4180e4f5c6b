"""The parent's store of records that wait (tlsflow.waiting), on its own; through --jobs over files and over
ranges of one file in test_parallel_files.py and test_parallel.py."""
from __future__ import annotations

import errno
import io
from pathlib import Path

import pytest

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
        folder = Path(waiting._spill._folder.name)
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
        assert waiting._spill._folder is None  # 5 records: not past the bound
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


def test_a_missing_temporary_folder_leaves_the_records_in_memory_with_a_warning(monkeypatch, tmp_path):
    monkeypatch.setattr(waiting_records, "WAITING_IN_MEMORY", 2)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "gone"))
    waiting = waiting_records.Waiting()
    try:
        waiting.add(0, [0])
        waiting.add(1, [1])
        with pytest.warns(RuntimeWarning, match="cannot keep waiting records on disk"):
            waiting.add(0, [2])  # past 2: the folder cannot be made
        waiting.add(1, [3])
        waiting.add(0, [4])
        assert waiting._records_in_memory == 5  # none went out, and it was tried once only
        assert list(waiting.take(0)) == [[0], [2], [4]]
        assert list(waiting.take(1)) == [[1], [3]]
    finally:
        waiting.close()


def test_a_disk_that_fills_up_keeps_every_batch_in_order(monkeypatch, tmp_path):
    """The first write-out goes to disk; in the second the disk fills up half-way through a key's batches: that
    key's file is cut back to what it held, and its batches stay in memory after those on disk."""
    monkeypatch.setattr(waiting_records, "WAITING_IN_MEMORY", 3)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    writes = []

    class FillingUp(io.FileIO):
        def write(self, data):
            writes.append(len(data))
            if len(writes) == 3:  # the second write-out's first key: half of it fits
                super().write(bytes(data)[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(data)

    def opening(path, mode, buffering=-1):
        return FillingUp(path, "a") if mode == "ab" else open(path, mode)

    monkeypatch.setattr(waiting_records, "open", opening, raising=False)
    waiting = waiting_records.Waiting()
    try:
        waiting.add(1, ["a", "b"])
        waiting.add(2, ["c", "d"])  # past 3: both keys to disk (writes 1 and 2)
        folder = Path(waiting._spill._folder.name)
        sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
        waiting.add(1, ["e"])
        with pytest.warns(RuntimeWarning, match="No space left on device"):
            waiting.add(1, ["f", "g", "h"])  # past 3 again: key 1's write fails half-way
        assert {p.name: p.stat().st_size for p in folder.iterdir()} == sizes  # cut back
        waiting.add(2, ["i", "j", "k", "l"])  # stays in memory: no more tries
        assert len(writes) == 3
        assert list(waiting.take(1)) == [["a", "b"], ["e"], ["f", "g", "h"]]
        assert list(waiting.take(2)) == [["c", "d"], ["i", "j", "k", "l"]]
    finally:
        waiting.close()
    assert list(tmp_path.iterdir()) == []
