"""A series of rotated files on a Dask cluster in runs of files, one task each, when there are fewer series than
the cluster has threads (one sensor's folder, say): `tlsflow.parallel_series` spread over the cluster.

Two rounds of tasks. First a task per run (`analyze_series_run`): the worker reads its run of the series, following
the connections open at its end into the next files (`parallel_series.group_messages`), and writes each of its
files' records to a hidden Parquet file beside that file's output, phantoms included; it sends back only what
placing them takes (each record's file, flow id, 4-tuple and positions: `parallel_series.Meta`). Once every run of
a series has come back, the client places them (`parallel_series.Placement`: which records are phantoms, which flow
id each keeps) and a second task per run (`place_series_run`) writes each file's Parquet without its phantoms, its
flow ids renumbered. Where the runs cannot be placed as one process's, the series goes to a single task as before
(`cluster.analyze_series`). The records, Parquet files and results are those of that single task.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

from tlsflow.cluster import (
    _SHARED_STORAGE_HINT,
    CaptureResult,
    CaptureTask,
    _not_analysed,
    _tmp_path,
    _worker_address,
    _worker_caches,
    _worker_inputs,
    members,
)


@dataclass(frozen=True, slots=True)
class SeriesRunTask:
    """What a worker needs for one run: the series' task (paths, outputs, --ca-bundle, --keylog, the filter), its
    files in capture order with their first packets' times, where each run starts, and which run this is."""

    task: CaptureTask
    timed: tuple[tuple[str, float | None], ...]
    starts: tuple[int, ...]
    run: int

    @property
    def files(self) -> range:
        end = self.starts[self.run + 1] if self.run + 1 < len(self.starts) else len(self.timed)
        return range(self.starts[self.run], end)


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """A run's first round: what placing its records takes, and what it says about its files."""

    run: int
    metas: list[Any] = field(default_factory=list)  # parallel_series.Meta of every record, in order
    end: tuple[Any, ...] | None = None  # group_messages' "end" message
    errors: dict[int, list[str]] = field(default_factory=dict)  # file -> lines about it (cannot be read)
    damage: list[tuple[int, str, list[int]]] = field(default_factory=list)  # (file, error, its flow ids before)
    failure: str | None = None  # why the run was not analysed at all


def run_output(output: str, run: int) -> str:
    """The hidden Parquet file where a run writes a file's records before they are placed (readers of the folder
    skip dot names)."""
    return os.path.join(os.path.dirname(output), f".{os.path.basename(output)}.run{run}")


def _pieces_by_path(rt: SeriesRunTask) -> dict[str, tuple[str, str, str]]:
    return {path: (name, path, output) for name, path, output in rt.task.pieces}


def analyze_series_run(rt: SeriesRunTask) -> RunOutcome:
    """Run on a worker: the first round of run `rt.run` (see the module's docstring)."""
    from tlsflow.formats import ParquetWriter
    from tlsflow.gcpolicy import fewer_collections
    from tlsflow.parallel_series import group_messages
    from tlsflow.shipping import unpack_all

    loaded = _worker_inputs(rt.task)
    if isinstance(loaded, str):
        return RunOutcome(rt.run, failure=loaded)
    trust, keylog = loaded
    missing = [path for path, _t in rt.timed if not os.path.isfile(path)]
    if missing:  # (the client saw them: this worker does not)
        return RunOutcome(rt.run, failure=f"{missing[0]}: no such file on this worker{_SHARED_STORAGE_HINT}")
    piece = _pieces_by_path(rt)
    files = rt.files
    place = {path: index for index, (path, _t) in enumerate(rt.timed)}
    writers: dict[int, Any] = {}
    emitted: dict[int, list[int]] = {file: [] for file in files}
    outcome = RunOutcome(rt.run, errors={file: [] for file in files})
    try:
        for file in files:
            output = run_output(piece[rt.timed[file][0]][2], rt.run)
            os.makedirs(os.path.dirname(output), exist_ok=True)
            writers[file] = ParquetWriter(output)
        end = None
        with fewer_collections():
            for message in group_messages(list(rt.timed), files.start, files.stop, trust=trust, keylog=keylog,
                                          caches=_worker_caches(trust)):
                kind = message[0]
                if kind == "records":
                    for record, meta in zip(unpack_all(message[1]), message[2]):
                        file = meta[0]
                        emitted[file].append(meta[1])
                        outcome.metas.append(meta)
                        record["capture"] = piece[rt.timed[file][0]][0]
                        if rt.task.keep is None or rt.task.keep(record):
                            writers[file].write(record)
                elif kind == "message":
                    path, text = message[1], message[2]
                    name = piece[path][0]
                    outcome.errors[place[path]].append(name + text[len(path):] if text.startswith(path) else text)
                elif kind == "damage":
                    outcome.damage.append((message[3], message[2], list(emitted[message[3]])))
                else:
                    end = message
        for writer in writers.values():
            writer.close()
        writers.clear()
    except Exception as exc:  # noqa: BLE001 - a bug on a run's bytes: reported for its series, the rest go on
        for file in files:
            try:
                os.unlink(run_output(piece[rt.timed[file][0]][2], rt.run))
            except OSError:
                pass
        return RunOutcome(rt.run, failure=f"series not analysed: {type(exc).__name__}: {exc}")
    return replace(outcome, end=end)


def place_series_run(rt: SeriesRunTask, outcome: RunOutcome, phantoms: dict[int, list[int]]
                     ) -> tuple[CaptureResult, ...]:
    """Run on a worker: the second round of run `rt.run`: each of its files' Parquet without the run's phantoms
    (`phantoms`: flow ids by file, increasing), flow ids as one process numbers them; a result per file."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from tlsflow.capture.errors import damage_message

    piece = _pieces_by_path(rt)
    worker = _worker_address()
    results = []
    for file in rt.files:
        path = rt.timed[file][0]
        name, _path, output = piece[path]
        written = run_output(output, rt.run)
        ids = np.asarray(phantoms.get(file, ()), dtype=np.int64)
        errors = list(outcome.errors.get(file, ()))
        dropped = set(ids.tolist())
        for damaged, error, before in outcome.damage:
            if damaged == file:
                kept = sum(1 for flow_id in before if flow_id not in dropped)
                text = damage_message(path, error, kept)
                errors.append(name + text[len(path):] if text.startswith(path) else text)
        tmp = _tmp_path(output)
        try:
            if not ids.size:  # (no phantom in this file: its records are placed as they were written)
                os.replace(written, output)
                table = pq.read_table(output, columns=["outcome"])
                outcomes = {str(k): int(v) for k, v in zip(*_value_counts(pc, table.column("outcome")))}
                results.append(CaptureResult(name, output, table.num_rows, outcomes, tuple(errors), worker))
                continue
            table = pq.read_table(written)
            flow = table.column("flow_id").to_numpy()
            at = np.searchsorted(ids, flow)  # phantoms of this file before each row's flow id (or at it)
            keep = ~((at < ids.size) & (ids[np.minimum(at, ids.size - 1)] == flow))
            table = table.filter(pa.array(keep))
            column = table.schema.get_field_index("flow_id")
            table = table.set_column(column, table.schema.field(column),
                                     pa.array(flow[keep] - at[keep], type=pa.int64()))
            pq.write_table(table, tmp, row_group_size=4096)
            os.replace(tmp, output)
            os.unlink(written)
        except OSError as exc:
            for leftover in (tmp, written):
                try:
                    os.unlink(leftover)
                except OSError:
                    pass
            problem = f"{name}: cannot write {output}: {exc.strerror or exc}"
            results.append(CaptureResult(name, None, 0, {}, (*errors, problem), worker))
            continue
        outcomes = {str(k): int(v) for k, v in zip(*_value_counts(pc, table.column("outcome")))}
        results.append(CaptureResult(name, output, table.num_rows, outcomes, tuple(errors), worker))
    return tuple(results)


def _value_counts(pc: Any, column: Any) -> tuple[list[Any], list[int]]:
    counts = pc.value_counts(column)
    return counts.field("values").to_pylist(), counts.field("counts").to_pylist()


class SeriesInRuns:
    """One series on the cluster in runs (client side): its first round's tasks, then, once all have come back,
    its second round's (or the whole series as one task, where the runs cannot be placed)."""

    def __init__(self, task: CaptureTask, runs: int) -> None:
        from tlsflow.parallel_series import plan_runs

        self.task = task
        ordered, _sizes, first_files = plan_runs([path for _, path, _ in task.pieces], runs)
        timed, starts = tuple(ordered), tuple(first_files)
        self.run_tasks = [SeriesRunTask(task, timed, starts, run) for run in range(len(starts))]
        self.outcomes: dict[int, RunOutcome] = {}
        self.came = 0  # first-round tasks back
        self.failure: str | None = None  # why a run could not be analysed (then the series is not)

    def run_task_members(self, run: int) -> CaptureTask:
        """The series' task limited to run `run`'s files (what a cancelled or failed second-round task names)."""
        rt = self.run_tasks[run]
        piece = _pieces_by_path(rt)
        return replace(self.task, pieces=tuple(piece[rt.timed[file][0]] for file in rt.files))

    def took(self, outcome: RunOutcome | None, failure: str | None = None
             ) -> tuple[tuple[CaptureResult, ...], list[tuple[Any, ...]] | None]:
        """A first-round task came back (`outcome`, or None with `failure`: it was cancelled, or the worker died).
        Returns the results to report now, and once every run is in, what to submit next: [(function,
        *arguments, the task its results are for)], or None while runs are missing."""
        from tlsflow.cluster import analyze_task
        from tlsflow.parallel_series import _Inexact

        if outcome is None or outcome.failure is not None:
            self.failure = self.failure or failure or outcome.failure  # type: ignore[union-attr]
        else:
            self.outcomes[outcome.run] = outcome
        self.came += 1
        if self.came < len(self.run_tasks):
            return (), None
        if self.failure is not None:
            self._remove_run_outputs()
            return tuple(_not_analysed(t, self.failure) for t in members(self.task)), []
        try:
            phantoms = self._place()
        except _Inexact:
            self._remove_run_outputs()
            return (), [(analyze_task, self.task, self.task)]  # the whole series in one task, as before
        return (), [(place_series_run, self.run_tasks[run], self.outcomes[run], phantoms[run],
                     self.run_task_members(run)) for run in range(len(self.run_tasks))]

    def _place(self) -> list[dict[int, list[int]]]:
        from tlsflow.parallel_series import Placement, _Group, _Inexact

        first = self.run_tasks[0]
        placement = Placement(list(first.starts), len(first.timed))
        out = []
        previous_end = None
        for run in range(len(self.run_tasks)):
            outcome = self.outcomes[run]
            if outcome.end is None or outcome.end[3]:
                raise _Inexact  # (no end: cannot happen; flows evicted: another table than one process's)
            group = _Group()
            group.note(outcome.metas)
            group.end = outcome.end
            phantoms, open_across = placement.phantoms(run, group, previous_end)
            for meta in outcome.metas:
                placement.settle(run, meta, phantoms, open_across)
            out.append(phantoms)
            previous_end = outcome.end
        return out

    def _remove_run_outputs(self) -> None:
        for rt in self.run_tasks:
            piece = _pieces_by_path(rt)
            for file in rt.files:
                try:
                    os.unlink(run_output(piece[rt.timed[file][0]][2], rt.run))
                except OSError:
                    pass
