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


class SpillFolder:
    """A temporary folder (made at the first file written, deleted by `close`) for lists that wait on disk rather
    than in memory: the `Waiting` store's batches, terminal.Report's sorted runs. A disk that refuses (no space
    left, a TMPDIR that is missing or read-only) is tried once: a warning names `what` ("waiting records"), and the
    caller keeps its lists in memory from then on. `read_pickles` reads a file back a list at a time."""

    def __init__(self, prefix: str, what: str) -> None:
        self._prefix, self._what = prefix, what
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self.failed = False  # the disk refused once: nothing more is written

    def path(self, name: str) -> str:
        assert self._folder is not None
        return os.path.join(self._folder.name, name)

    def append(self, name: str, lists: list[list[Any]]) -> bool:
        """Each of `lists` pickled at the end of the folder's file `name`: True once written; False when the disk
        refuses, or refused before (the file is then as it was: half a pickle would end the reading of the lists
        before it)."""
        if self.failed:
            return False
        try:
            if self._folder is None:
                self._folder = tempfile.TemporaryDirectory(prefix=self._prefix)
            with open(self.path(name), "ab", buffering=0) as out:  # (unbuffered: a full disk shows in write)
                size = out.seek(0, os.SEEK_END)
                try:
                    for items in lists:  # (a pickle at a time: a run of the report is ~10 MB)
                        view = memoryview(pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL))
                        while view:
                            view = view[out.write(view):]
                except OSError:
                    out.truncate(size)
                    raise
        except OSError as exc:
            self.failed = True
            where = self._folder.name if self._folder is not None else tempfile.gettempdir()
            warnings.warn(f"tlsflow: cannot keep {self._what} on disk ({where}: {exc.strerror or exc}); "
                          "they stay in memory", RuntimeWarning, stacklevel=4)
            return False
        return True

    def close(self) -> None:
        """Delete the folder and what it holds."""
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None


def read_pickles(path: str) -> Iterator[Any]:
    """The items of every list pickled into the file at `path`, in order (what `SpillFolder.append` writes), a
    list at a time."""
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
        self._in_memory: dict[int, list[Any]] = {}  # key -> batches (after those on disk)
        self._records_in_memory = 0
        self._on_disk: set[int] = set()  # keys with batches in their temporary file
        self._spill = SpillFolder(prefix, "waiting records")

    def add(self, key: int, batch: Any) -> None:
        self._in_memory.setdefault(key, []).append(batch)
        self._records_in_memory += self._records_in(batch)
        if self._records_in_memory > WAITING_IN_MEMORY:
            self._write_out()

    def take(self, key: int) -> Iterator[Any]:
        """The batches of `key`, in order, forgotten here (none of that key is added while this runs)."""
        if key in self._on_disk:
            self._on_disk.remove(key)
            path = self._spill.path(str(key))
            yield from read_pickles(path)
            os.unlink(path)
        batches = self._in_memory.pop(key, [])
        self._records_in_memory -= sum(self._records_in(batch) for batch in batches)
        yield from batches

    def close(self) -> None:
        """Delete whatever still waits on disk (the run ended early)."""
        self._spill.close()

    def _write_out(self) -> None:
        """Every batch in memory to its key's temporary file, after those there already. Where the disk refuses,
        what is not written stays in memory, and nothing more is tried (SpillFolder): the run goes on with more
        memory rather than failing."""
        written: list[int] = []
        for key, batches in self._in_memory.items():
            if not self._spill.append(str(key), [batches]):
                break
            self._on_disk.add(key)
            written.append(key)
        for key in written:
            self._records_in_memory -= sum(self._records_in(batch) for batch in self._in_memory.pop(key))
