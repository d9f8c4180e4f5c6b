"""What the parent of `--jobs` workers must hold before it can write it: the records of a file later than the one
being written (`parallel_files`), or a range worker's messages until every earlier range's worker has ended
(`parallel_ranges`, whose records cannot be numbered before).

Such batches wait in memory up to WAITING_IN_MEMORY records in all, then each key's (a file, a range) in a
temporary file of its own (pickled lists of batches) in one temporary folder, deleted once read: the parent's
memory does not grow with the captures, the disk holds only what still waits, and no file stays open however many
keys wait. A disk that refuses (full, TMPDIR missing) leaves them in memory, with a warning, instead of failing.
"""
from __future__ import annotations

import os
import pickle
import tempfile
import warnings
from collections.abc import Callable, Iterator
from typing import Any

WAITING_IN_MEMORY = 2048  # records


def read_pickles(path: str) -> Iterator[Any]:
    """The items of every list pickled into the file at `path`, in order: a spill file written a list at a time is
    read back a list at a time (here and in terminal.Report's runs)."""
    with open(path, "rb") as spilled:
        while True:
            try:
                items = pickle.load(spilled)
            except EOFError:
                return
            yield from items


class Waiting:
    """Batches by key, each key's in the order they came. `records_in(batch)`: how many records a batch holds."""

    def __init__(self, records_in: Callable[[Any], int] = len, prefix: str = "tlsflow-waiting-") -> None:
        self._records_in = records_in
        self._prefix = prefix
        self._in_memory: dict[int, list[Any]] = {}  # key -> batches (after those on disk)
        self._records_in_memory = 0
        self._on_disk: set[int] = set()  # keys with batches in their temporary file
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._disk_failed = False  # the disk refused once: everything stays in memory from then on

    def add(self, key: int, batch: Any) -> None:
        self._in_memory.setdefault(key, []).append(batch)
        self._records_in_memory += self._records_in(batch)
        if self._records_in_memory > WAITING_IN_MEMORY:
            self._write_out()

    def take(self, key: int) -> Iterator[Any]:
        """The batches of `key`, in order, forgotten here (none of that key is added while this runs)."""
        if key in self._on_disk:
            self._on_disk.remove(key)
            path = self._path(key)
            yield from read_pickles(path)
            os.unlink(path)
        batches = self._in_memory.pop(key, [])
        self._records_in_memory -= sum(self._records_in(batch) for batch in batches)
        yield from batches

    def close(self) -> None:
        """Delete whatever still waits on disk (the run ended early)."""
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def _path(self, key: int) -> str:
        assert self._folder is not None
        return os.path.join(self._folder.name, str(key))

    def _write_out(self) -> None:
        """Every batch in memory to its key's temporary file, after those there already. Where the disk refuses
        (no space left, a TMPDIR that is missing or read-only), what is not written stays in memory, and nothing
        more is tried: the run goes on with more memory rather than failing."""
        if self._disk_failed:
            return
        written: list[int] = []
        try:
            if self._folder is None:
                self._folder = tempfile.TemporaryDirectory(prefix=self._prefix)
            for key, batches in self._in_memory.items():
                data = pickle.dumps(batches, protocol=pickle.HIGHEST_PROTOCOL)
                with open(self._path(key), "ab", buffering=0) as out:  # (unbuffered: a full disk shows in write)
                    size = out.seek(0, os.SEEK_END)
                    try:
                        view = memoryview(data)
                        while view:
                            view = view[out.write(view):]
                    except OSError:
                        out.truncate(size)  # half a pickle would end the reading of the batches before it
                        raise
                self._on_disk.add(key)
                written.append(key)
        except OSError as exc:
            self._disk_failed = True
            where = self._folder.name if self._folder is not None else tempfile.gettempdir()
            warnings.warn(f"tlsflow: cannot keep waiting records on disk ({where}: {exc.strerror or exc}); "
                          "they stay in memory", RuntimeWarning, stacklevel=3)
        for key in written:
            self._records_in_memory -= sum(self._records_in(batch) for batch in self._in_memory.pop(key))
