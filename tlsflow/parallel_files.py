"""`--jobs N` over several capture files: N worker processes take the files one at a time, in input order, each
as soon as it is free, and stream each file's records to the parent in batches as they come; the parent yields
them file by file in input order, each file's as a single process gives them, so the output is a single
process's.

Why streamed: a worker that returned a whole file's records at its end held them all (peak memory grew with the
file: two 1 GB files, ~150 MB; 4 GB, four times that), and the parent unpacked and wrote the last files' records
alone after the workers had ended. Now a worker holds one batch, and the parent writes the records of the file
it is at while the workers go on. The records of a later file that come while an earlier one is still being
written wait, packed, in memory up to `waiting.WAITING_IN_MEMORY` records in all, and past that in temporary
files (`waiting.Waiting`), so the parent's memory does not grow with the files either. Two 1 GB files, --jobs 2:
peak RSS 145 -> 87 MiB; two 4 GB files: 475 -> 90 MiB (one process: ~90 MiB at either size).
"""
from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from tlsflow.gcpolicy import tune_gc
from tlsflow.parallel import QUEUE_BATCHES, shut_down, start_method, worker_messages
from tlsflow.shipping import pack_all, unpack_all
from tlsflow.waiting import Waiting

if TYPE_CHECKING:
    from tlsflow.api import ProgressFactory

BATCH_RECORDS = 256  # records in a worker's message at most
# Bytes of capture read between two messages at most (when records come): about parallel.BATCH_PACKETS packets
# of the bench captures, so that the records of a file with few connections do not wait for its end.
BATCH_BYTES = 1 << 24


Unit = str | tuple[str, ...]  # a file, or the files of a series (tlsflow.series: read in capture order)


def unit_name(unit: Unit) -> str:
    """What a unit's records and progress bar go by: the file, or a series' first file given."""
    return unit if isinstance(unit, str) else unit[0]


def file_messages(path: Unit, *, trust: Any, keylog: Any = None, json_lines: bool = False,
                  batch_records: int = BATCH_RECORDS, batch_bytes: int = BATCH_BYTES,
                  caches: Any = None) -> Iterator[tuple[Any, ...]]:
    """One file's work, as messages: ("records", packed records, bytes read, file size), in the order of a single
    process, then ("done", error texts, bytes read, file size): what `api._one_capture` yields after the records
    (it yields none before them). Records go packed (`tlsflow.shipping`), with their JSON text when `json_lines`.
    Bytes read and size as the reader reports its progress (the size: None when unknown; for a series, of all its
    files). `caches`: the pipeline.RunCaches of the worker's earlier files. `path`: a file, or a series' files."""
    from tlsflow.api import _one_capture

    read = 0
    size: int | None = None

    def progress(done: int, total: int | None) -> None:
        nonlocal read, size
        read, size = done, total

    records: list[dict[str, Any]] = []
    errors: list[str] = []
    sent_at = 0
    if isinstance(path, str):
        results: Iterator[Any] = _one_capture(path, trust, progress, keylog=keylog, caches=caches)
    else:
        from tlsflow.series import iter_series, series_progress

        results = (r for _capture, r in iter_series(list(path), trust=trust, keylog=keylog, caches=caches,
                                                    progress_factory=series_progress(path, progress)))
    for result in results:
        if result.__class__ is str:
            errors.append(result)  # type: ignore[arg-type]
            continue
        records.append(result)  # type: ignore[arg-type]
        if len(records) >= batch_records or read - sent_at >= batch_bytes:
            sent_at = read
            yield ("records", pack_all(records, json_lines), read, size)
            records = []
    if records:
        yield ("records", pack_all(records, json_lines), read, size)
    yield ("done", errors, read, size)


def _files_main(index: int, inputs: list[Unit], next_file: Any, ca_bundle: str | None, keylog_path: str | None,
                queue: Any, json_lines: bool) -> None:
    """A worker process: takes the next file not yet taken (`next_file`, shared) until there is none, and streams
    (index, (kind, file number, ...)) to `queue`; the last message is ("end",) or ("crash", path, traceback)."""
    tune_gc()
    path = None
    try:
        from tlsflow.api import _load_keylog, _trust_store
        from tlsflow.pipeline import RunCaches

        trust, keylog = _trust_store(ca_bundle), _load_keylog(keylog_path)  # one for all its files, as one process
        caches = RunCaches(trust)
        while True:
            with next_file.get_lock():
                file = next_file.value
                next_file.value = file + 1
            if file >= len(inputs):
                break
            path = inputs[file]
            for kind, *rest in file_messages(path, trust=trust, keylog=keylog, json_lines=json_lines, caches=caches,
                                             batch_records=BATCH_RECORDS):
                queue.put((index, (kind, file, *rest)))
        queue.put((index, ("end",)))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        queue.put((index, ("crash", path, traceback.format_exc())))


def analyze_files_parallel(inputs: list[Unit], jobs: int, *, ca_bundle: str | None = None,
                           keylog_path: str | None = None, json_lines: bool = False,
                           progress_factory: ProgressFactory | None = None
                           ) -> Iterator[tuple[str, dict[str, Any] | str]]:
    """(capture, record or error text) for every file of `inputs`, as `api.analyze_files` yields them in one
    process, analysed by `jobs` processes (at most one per file). Workers build their trust store from
    `ca_bundle` and their key log from `keylog_path`. `json_lines`: the records will be written as JSON lines, so
    the workers encode them (`tlsflow.shipping`). `progress_factory`: as for `api.analyze_files`, a bar for each
    file while it is output."""
    ctx = start_method()
    queue = ctx.Queue(QUEUE_BATCHES)
    next_file = ctx.Value("q", 0)  # the next file to take: handed out in input order, to whichever worker is free
    workers = [ctx.Process(target=_files_main, args=(index, inputs, next_file, ca_bundle, keylog_path, queue,
                                                     json_lines), daemon=True)
               for index in range(min(jobs, len(inputs)))]
    for worker in workers:
        worker.start()
    first = unit_name(inputs[0])
    named = first if len(inputs) == 1 else f"{first} and {len(inputs) - 1} other input(s)"
    try:
        yield from in_input_order(worker_messages(queue, workers, named), inputs, progress_factory)
    finally:
        shut_down(workers, queue)


def files_in_one_process(inputs: list[Unit], *, trust: Any = None, keylog: Any = None, json_lines: bool = False,
                         batch_records: int = BATCH_RECORDS,
                         interleave: Callable[[list[Iterator[tuple[Any, ...]]]],
                                              Iterator[tuple[int, tuple[Any, ...]]]] | None = None,
                         progress_factory: ProgressFactory | None = None
                         ) -> Iterator[tuple[str, dict[str, Any] | str]]:
    """The work of `analyze_files_parallel` in this process (tests): each file's messages as a worker makes them,
    put in order by the same merge. `interleave`: given every file's messages (an iterator per file, which runs
    as far as it is pulled), the order in which the parent gets them as (file number, message), each file's in
    its own order; by default the files one after another."""
    from tlsflow.api import _trust_store
    from tlsflow.pipeline import RunCaches

    trust = _trust_store(None, trust)
    caches = RunCaches(trust)

    def messages(file: int) -> Iterator[tuple[Any, ...]]:
        for kind, *rest in file_messages(inputs[file], trust=trust, keylog=keylog, json_lines=json_lines, caches=caches,
                                         batch_records=batch_records):
            yield (kind, file, *rest)

    every = [messages(file) for file in range(len(inputs))]
    if interleave is None:
        ordered: Iterable[tuple[int, tuple[Any, ...]]] = ((file, m) for file, each in enumerate(every) for m in each)
    else:
        ordered = interleave(every)
    yield from in_input_order(ordered, inputs, progress_factory)


def in_input_order(messages: Iterable[tuple[int, tuple[Any, ...]]], units: list[Unit],
                   progress_factory: ProgressFactory | None = None) -> Iterator[tuple[str, dict[str, Any] | str]]:
    """The workers' (worker, message) pairs turned into (capture, record or error text), file by file in input
    order: the records of the file being output as they come; a later file's wait (`waiting.Waiting`) until every file
    before it is done. Each file's messages come in order from the one worker that took it. (A series is one unit:
    its records and errors come under its first file's name as given.)"""
    inputs = [unit_name(unit) for unit in units]
    current = 0  # the file being output
    ended: dict[int, list[str]] = {}  # files done, after `current`: their error texts
    waiting = Waiting(prefix="tlsflow-files-")
    progress = _Progress(progress_factory, inputs)
    try:
        for index, message in messages:
            kind = message[0]
            if kind == "crash":
                raise RuntimeError(f"--jobs worker {index} failed on {message[1]}:\n{message[2]}")
            if kind == "end":
                continue
            file = message[1]
            progress.reached(file, current, *message[3:5])
            if kind == "records":
                if file == current:
                    path = inputs[file]
                    for record in unpack_all(message[2]):
                        yield path, record
                else:
                    waiting.add(file, message[2])
                continue
            ended[file] = message[2]
            while current in ended:  # "done": this file and those after it that were done already are output
                path = inputs[current]
                for error in ended.pop(current):
                    yield path, error
                progress.output(current)
                current += 1
                if current < len(inputs):
                    path = inputs[current]
                    progress.started(current)
                    for packed in waiting.take(current):
                        for record in unpack_all(packed):
                            yield path, record
    finally:
        waiting.close()
    if current != len(inputs):  # (cannot happen: every worker ends after the files it took are done)
        raise RuntimeError(f"--jobs: {inputs[current]} was never analysed")


class _Progress:
    """The progress bars of a run (`progress_factory`), one file after another as in one process: the bar of the
    file being output shows how far its worker has read; where workers are in later files is kept until then."""

    def __init__(self, factory: ProgressFactory | None, inputs: list[str]) -> None:
        self._factory = factory
        self._inputs = inputs
        self._bar: Any = None
        self._bar_file = -1
        self._later: dict[int, tuple[int, int | None]] = {}  # file -> (bytes read, size) last reported

    def reached(self, file: int, current: int, read: int, size: int | None) -> None:
        """The worker on `file` has read `read` bytes of `size`."""
        if self._factory is None or (not read and size is None):
            return  # (nothing read: a file that did not open shows no bar, as in one process)
        if file != current:
            self._later[file] = (read, size)
            return
        if self._bar_file != file:
            self._bar, self._bar_file = self._factory(self._inputs[file]), file
        self._bar(read, size)

    def started(self, file: int) -> None:
        """`file` is now the one being output."""
        where = self._later.pop(file, None)
        if where is not None:
            self.reached(file, file, *where)

    def output(self, file: int) -> None:
        """Every record of `file` has been given."""
        if self._bar_file == file and hasattr(self._bar, "clear"):
            self._bar.clear()
