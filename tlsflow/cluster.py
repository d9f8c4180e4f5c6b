"""Scale-out analysis on a Dask cluster: one task per capture file (with `--series`, per folder of rotated files read
as one capture, or per run of a folder's files when there are fewer folders than threads: tlsflow.cluster_series);
each worker writes each capture's Parquet.

For fleets of sensors writing rotating capture files, where one machine is not enough. The workers open the
captures and write the results themselves, so only small per-file summaries travel through the scheduler; that
needs the captures, the output folder, --ca-bundle and --keylog at the same absolute paths on every worker
(shared storage). Dask is imported only here, when a cluster is asked for: plain `tlsflow analyze` runs
without it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

RecordFilter = Callable[[dict[str, Any]], bool]
MANIFEST_NAME = "_tlsflow_run.json"  # a leading '_' keeps it out of pandas/pyarrow/Spark directory reads
_SHARED_STORAGE_HINT = " (is it on shared storage, at the same path on every worker?)"


class ClusterError(Exception):
    """The cluster cannot be used at all: Dask missing, scheduler unreachable, bad output folder."""


@dataclass(frozen=True, slots=True)
class CaptureTask:
    """What a worker needs for one capture: paths only (trust stores and key logs do not pickle cheaply)."""

    name: str  # as the user gave it: the `capture` field
    path: str  # absolute, as the worker opens it
    output: str  # absolute path of this capture's Parquet file
    ca_bundle: str | None = None
    keylog: str | None = None
    keep: RecordFilter | None = None  # the CLI's --failed/--sni/--host/--port filter
    # A series (`--series`: a folder's rotated files, read as one capture): (name, path, output) of each of its
    # files, this task's own first; each file still gets its own Parquet file and result.
    pieces: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class CaptureResult:
    """A worker's summary of one capture; the records themselves are in `output`."""

    capture: str
    output: str | None  # None when no file was written
    rows: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    worker: str | None = None  # the Dask worker's address, for tracing a problem to a machine

    @property
    def failed(self) -> int:
        return self.outcomes.get("failed", 0)


@dataclass(slots=True)
class ClusterRun:
    """Everything the client learnt: one result per capture, in input order."""

    out_dir: str
    results: list[CaptureResult]

    @property
    def rows(self) -> int:
        return sum(r.rows for r in self.results)

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.results)

    @property
    def errors(self) -> list[str]:
        return [e for r in self.results for e in r.errors]

    @property
    def outcomes(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for r in self.results:
            for k, n in r.outcomes.items():
                total[k] = total.get(k, 0) + n
        return total

    @property
    def files(self) -> list[str]:
        return [r.output for r in self.results if r.output]


def output_name(capture_path: str) -> str:
    """`<capture file name>-<10 hex digits of its absolute path's SHA-1>.parquet`: readable, unique when
    rotating sensors reuse file names in different folders, and stable, so that a rerun overwrites instead of
    adding duplicates."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(capture_path)).lstrip("._") or "capture"
    digest = hashlib.sha1(capture_path.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return f"{base[:100]}-{digest}.parquet"


# --- worker side --------------------------------------------------------------------------------------------

_cache_lock = threading.Lock()  # a worker with several threads builds each store once


@lru_cache(maxsize=4)
def _trust_for(ca_bundle: str | None, stamp: tuple[int, int] | None) -> Any:
    from tlsflow.api import _trust_store

    return _trust_store(ca_bundle)


@lru_cache(maxsize=2)
def _keylog_for(path: str, stamp: tuple[int, int]) -> Any:
    from tlsflow.api import _load_keylog

    return _load_keylog(path)


def _stamp(path: str | None) -> tuple[int, int] | None:
    """(mtime, size): a key log a sensor keeps appending to is read again when it changed."""
    if path is None:
        return None
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


def _worker_trust(task: CaptureTask) -> Any:
    with _cache_lock:
        return _trust_for(task.ca_bundle, _stamp(task.ca_bundle))


def _worker_keylog(task: CaptureTask) -> Any:
    if task.keylog is None:
        return None
    with _cache_lock:
        cached = _keylog_for(task.keylog, _stamp(task.keylog))
    from tlsparse.keylog import KeyLog

    # The pipeline merges a pcapng's own secrets into the KeyLog it is given: each capture gets its own copy,
    # so that one capture's secrets never reach another that the same worker analyses later.
    return KeyLog(max_entries=cached.max_entries).merge(cached)


# What the analysis remembers (pipeline.RunCaches), one per worker thread and trust store: a worker analyses file
# after file of the same sensors (rotating captures), whose chains then need checking once. Per thread: tasks on a
# worker's other threads run at the same time, and the caches are not made to be shared between threads.
_thread_caches = threading.local()


def _worker_caches(trust: Any) -> Any:
    from tlsflow.pipeline import RunCaches

    held = getattr(_thread_caches, "held", None)
    if held is None or held[0] is not trust:
        held = _thread_caches.held = (trust, RunCaches(trust))
    return held[1]


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):  # called outside a Dask worker
        return None


def analyze_capture(task: CaptureTask) -> CaptureResult:
    """Run on a worker: analyse one capture into its Parquet file. Never raises for a bad capture or a bug in
    the analysis; those come back as `errors`, so that one file cannot stop the job."""
    result = _analyze_capture(task)
    return replace(result, worker=_worker_address())


def analyze_task(task: CaptureTask) -> tuple[CaptureResult, ...]:
    """Run on a worker: a capture (`analyze_capture`), or a series' files read as one (`analyze_series`)."""
    return analyze_series(task) if task.pieces else (analyze_capture(task),)


def analyze_series(task: CaptureTask) -> tuple[CaptureResult, ...]:
    """Run on a worker: the files of a series read as one capture (tlsflow.series), each file's records (those of
    the connections that began in it) into its own Parquet file; a result per file."""
    from tlsflow.formats import ParquetWriter
    from tlsflow.gcpolicy import fewer_collections
    from tlsflow.series import iter_series

    loaded = _worker_inputs(task)
    if isinstance(loaded, str):
        return tuple(_not_analysed(t, loaded) for t in members(task))
    trust, keylog = loaded
    missing = [name for name, path, _ in task.pieces if not os.path.isfile(path)]
    if missing:  # the client saw them: this worker does not
        return tuple(_not_analysed(replace(task, name=name), f"{path}: no such file on this worker"
                                   f"{_SHARED_STORAGE_HINT}" if name in missing else
                                   f"not analysed: other files of its series are missing on this worker ({missing[0]})")
                     for name, path, _ in task.pieces)
    name_of = {path: name for name, path, _ in task.pieces}
    output_of = {path: output for _, path, output in task.pieces}
    order = [path for _, path, _ in task.pieces]  # (iter_series reads them in capture order)
    tmp_of = {path: _tmp_path(output_of[path]) for path in order}
    writers: dict[str, Any] = {}
    rows = dict.fromkeys(order, 0)
    outcomes: dict[str, dict[str, int]] = {path: {} for path in order}
    errors: dict[str, list[str]] = {path: [] for path in order}
    try:
        for path in order:
            os.makedirs(os.path.dirname(tmp_of[path]), exist_ok=True)
            writers[path] = ParquetWriter(tmp_of[path])
        with fewer_collections():
            for path, result in iter_series(order, trust=trust, keylog=keylog, caches=_worker_caches(trust)):
                name = name_of[path]
                if isinstance(result, str):
                    errors[path].append(name + result[len(path):] if result.startswith(path) else result)
                    continue
                result["capture"] = name
                if task.keep is not None and not task.keep(result):
                    continue
                writers[path].write(result)
                rows[path] += 1
                counts = outcomes[path]
                counts[result["outcome"]] = counts.get(result["outcome"], 0) + 1
        for path in order:
            writers.pop(path).close()
            os.replace(tmp_of[path], output_of[path])
    except BaseException as exc:
        for path in order:
            try:
                os.unlink(tmp_of[path])
            except OSError:
                pass
        if not isinstance(exc, Exception):
            raise
        worker = _worker_address()
        return tuple(CaptureResult(name_of[p], None, rows[p], outcomes[p],
                                   (*errors[p], f"{name_of[p]}: series not analysed: {type(exc).__name__}: {exc}"),
                                   worker) for p in order)
    worker = _worker_address()
    return tuple(CaptureResult(name_of[p], output_of[p], rows[p], outcomes[p], tuple(errors[p]), worker)
                 for p in order)


def _worker_inputs(task: CaptureTask) -> tuple[Any, Any] | str:
    """(trust store, key log) for the task, or why they cannot be loaded: the worker does not see the bundle or
    key log the client saw."""
    trust = None
    try:
        trust = _worker_trust(task)
        return trust, _worker_keylog(task)
    except (OSError, ValueError) as exc:
        which = f"--keylog {task.keylog}" if trust is not None else f"--ca-bundle {task.ca_bundle}"
        return f"cannot load {which}: {exc}{_SHARED_STORAGE_HINT}"


def _tmp_path(output: str) -> str:
    """Where a Parquet file is written before it is renamed to `output`: a dot name (readers of the folder skip
    it), one per process and thread."""
    return os.path.join(os.path.dirname(output), f".{os.path.basename(output)}.{os.getpid()}-{threading.get_ident()}.tmp")


def members(task: CaptureTask) -> list[CaptureTask]:
    """The task of each file a task's results are for: a series' files, or the capture itself."""
    return [replace(task, name=name) for name, _, _ in task.pieces] or [task]


def _not_analysed(task: CaptureTask, message: str) -> CaptureResult:
    return CaptureResult(task.name, None, errors=(f"{task.name}: {message}",))


def _analyze_capture(task: CaptureTask) -> CaptureResult:
    from tlsflow.capture import CaptureError
    from tlsflow.capture.errors import about, damage_message
    from tlsflow.formats import ParquetWriter
    from tlsflow.gcpolicy import fewer_collections
    from tlsflow.pipeline import CaptureReport, iter_flow_records

    loaded = _worker_inputs(task)
    if isinstance(loaded, str):
        return _not_analysed(task, loaded)
    trust, keylog = loaded
    if not os.path.isfile(task.path):  # the client saw it: this worker does not
        return _not_analysed(task, f"{task.path}: no such file on this worker{_SHARED_STORAGE_HINT}")
    out_dir = os.path.dirname(task.output)
    tmp = _tmp_path(task.output)
    try:
        os.makedirs(out_dir, exist_ok=True)
        writer = ParquetWriter(tmp)
    except OSError as exc:
        return _not_analysed(task, f"cannot write {task.output}: {exc.strerror or exc}")
    errors: list[str] = []
    outcomes: dict[str, int] = {}
    rows = 0
    report = CaptureReport(capture=task.name)
    try:
        try:
            with fewer_collections():  # a Dask worker is a user's interpreter too (tlsflow.gcpolicy)
                for record in iter_flow_records(task.path, capture_name=task.name, trust=trust, report=report,
                                                keylog=keylog, caches=_worker_caches(trust)):
                    if task.keep is not None and not task.keep(record):
                        continue
                    writer.write(record)
                    rows += 1
                    outcomes[record["outcome"]] = outcomes.get(record["outcome"], 0) + 1
        except FileNotFoundError as exc:
            errors.append(f"{task.name}: {exc.strerror or exc}{_SHARED_STORAGE_HINT}")
        except OSError as exc:
            errors.append(f"{task.name}: {exc.strerror or exc}")
        except CaptureError as exc:
            errors.append(about(task.name, str(exc)))
        except Exception as exc:  # noqa: BLE001 - a bug on one capture's bytes: reported for it, the rest go on
            errors.append(f"{task.name}: analysis failed: {type(exc).__name__}: {exc}")
        if report.error:
            errors.append(damage_message(task.name, report.error, report.flows))
        writer.close()
        # Readers of the folder skip dot files, so a half-written file is never read; the rename is atomic.
        os.replace(tmp, task.output)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            return CaptureResult(task.name, None, rows, outcomes,
                                 (*errors, f"{task.name}: cannot write {task.output}: {exc.strerror or exc}"))
        raise
    return CaptureResult(task.name, task.output, rows, outcomes, tuple(errors))


# --- client side --------------------------------------------------------------------------------------------

def _connect(scheduler: Any, timeout: float) -> tuple[Any, bool]:
    """A distributed.Client for an address, a LocalCluster or a Client; True when we opened it (and must close
    it)."""
    try:
        import distributed
    except ImportError as exc:
        message = "running on a Dask cluster needs dask.distributed: install tlsflow's 'cluster' extra " \
                  "(pip install 'tlsflow[cluster]', or '.[cluster]' from a checkout)"
        raise ClusterError(message) from exc
    if isinstance(scheduler, distributed.Client):
        return scheduler, False
    address = getattr(scheduler, "scheduler_address", scheduler)
    try:
        return distributed.Client(address, timeout=timeout, set_as_default=False), True
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"cannot connect to the Dask scheduler at {address}: {exc}") from exc


def _series_in_runs(tasks: list[CaptureTask], client: Any) -> dict[str, Any]:
    """The series (tasks with pieces) to cut into runs, by task name: all of them, each in as many runs as the
    cluster's threads give each series, when there are fewer series than threads; none otherwise."""
    series = [task for task in tasks if task.pieces]
    try:
        threads = sum(client.nthreads().values())
    except Exception:  # noqa: BLE001 - (an old or odd client: a task per series, as before)
        return {}
    if not series or len(tasks) >= threads:
        return {}
    from tlsflow.cluster_series import SeriesInRuns

    per_series = max(1, (threads - (len(tasks) - len(series))) // len(series))
    plans = {}
    for task in series:
        runs = min(per_series, len(task.pieces))
        if runs > 1:
            plans[task.name] = SeriesInRuns(task, runs)
    return plans


def _write_manifest(run: ClusterRun) -> None:
    manifest = {"captures": [{"capture": r.capture, "output": r.output and os.path.basename(r.output),
                              "rows": r.rows, "outcomes": r.outcomes, "errors": list(r.errors),
                              "worker": r.worker}
                             for r in run.results]}
    tmp = os.path.join(run.out_dir, f".{MANIFEST_NAME}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
    os.replace(tmp, os.path.join(run.out_dir, MANIFEST_NAME))


def analyze_cluster(paths: str | Path | Iterable[str | Path], scheduler: Any, out_dir: str | Path, *,
                    ca_bundle: str | Path | None = None, keylog: str | Path | None = None,
                    keep: RecordFilter | None = None, connect_timeout: float = 30.0,
                    timeout: float | None = None,
                    on_result: Callable[[CaptureResult], None] | None = None, series: bool = False) -> ClusterRun:
    """Analyse captures on a Dask cluster: one task per capture, each writing `out_dir/<name>-<hash>.parquet`
    with the contract's schema (`pd.read_parquet(out_dir)` reads them all), plus `_tlsflow_run.json` listing
    what each capture gave. `scheduler`: an address (`tcp://host:8786`), a LocalCluster or a Client.

    `paths` are expanded here (files, directories, globs) and opened by the workers at their absolute paths,
    as are `ca_bundle`, `keylog` and `out_dir`: they must be on storage every worker sees at the same path. A
    capture that cannot be read is reported in its result's `errors` (and to `on_result` as soon as it is
    known) and the other captures go on; so is every capture not analysed within `timeout` seconds (then
    cancelled). Raises ClusterError when the cluster cannot be used at all. `series`: each folder's files are
    one capture in pieces (tlsflow.series), analysed as one by one task; each file still gets its own Parquet file
    and result."""
    from tlsflow.api import _expand

    inputs = _expand(paths)
    if "-" in inputs:
        raise ClusterError("standard input (-) cannot be analysed on a cluster: give capture files")
    inputs = list(dict.fromkeys(inputs))  # one task per file: a file named twice would race for its output
    out = os.path.abspath(str(out_dir))
    if os.path.exists(out) and not os.path.isdir(out):
        raise ClusterError(f"{out_dir}: not a directory (the cluster writes one Parquet file per capture)")
    os.makedirs(out, exist_ok=True)
    ca = os.path.abspath(str(ca_bundle)) if ca_bundle else None
    kl = os.path.abspath(str(keylog)) if keylog else None
    tasks = []
    if series:
        from tlsflow.series import group_by_folder

        groups = group_by_folder(inputs)
    else:
        groups = [[name] for name in inputs]
    for group in groups:
        pieces = tuple((name, os.path.abspath(name), os.path.join(out, output_name(os.path.abspath(name))))
                       for name in group)
        name, path, output = pieces[0]
        tasks.append(CaptureTask(name=name, path=path, output=output, ca_bundle=ca, keylog=kl, keep=keep,
                                 pieces=pieces if len(pieces) > 1 else ()))
    client, opened = _connect(scheduler, connect_timeout)
    by_name: dict[str, CaptureResult] = {}
    try:
        from distributed import as_completed

        # Fewer series than the cluster has threads (one sensor's folder): each cut into runs of files, a task per
        # run (tlsflow.cluster_series); the rest a task each.
        in_runs = _series_in_runs(tasks, client) if series else {}
        plain = [task for task in tasks if task.name not in in_runs]
        # pure=False: the same path twice (a rerun on a long-lived cluster) is a new task, as the file may
        # have grown; the scheduler spreads the tasks over the workers as they free up.
        futures = client.map(analyze_task, plain, pure=False, key="tlsflow-analyze") if plain else []
        task_of = {f.key: t for f, t in zip(futures, plain, strict=True)}
        plan_of: dict[str, Any] = {}  # a series' first-round task -> its SeriesInRuns
        for plan in in_runs.values():
            from tlsflow.cluster_series import analyze_series_run

            for rt in plan.run_tasks:
                future = client.submit(analyze_series_run, rt, pure=False)
                futures.append(future)
                plan_of[future.key] = plan
        expired = threading.Event()
        # A watchdog rather than as_completed's own timeout (newer Dask only): cancelled tasks come out of
        # as_completed like finished ones, and are reported one by one.
        watchdog = threading.Timer(timeout, lambda: (expired.set(), client.cancel(
            [f for f in futures if not f.done()]))) if timeout is not None else None
        if watchdog is not None:
            watchdog.daemon = True
            watchdog.start()
        try:
            pending = as_completed(futures, loop=client.loop)
            for future in pending:
                # What the task gave, or why it gave nothing.
                value, failure = None, None
                if future.cancelled():  # by the watchdog, or by someone on the cluster's dashboard
                    failure = f"not analysed within {timeout:g} s" if expired.is_set() else "cancelled on the cluster"
                else:
                    try:
                        value = future.result()
                    # The worker died on it (KilledWorker), or the task could not run there.
                    except Exception as exc:  # noqa: BLE001
                        failure = f"the cluster could not analyse it: {type(exc).__name__}: {exc}"
                future.release()
                plan = plan_of.pop(future.key, None)
                if plan is not None:  # a run of a series: the series goes on once all its runs are back
                    results, after = plan.took(value, failure)
                    for function, *arguments, for_task in after or ():
                        if expired.is_set():
                            results += tuple(_not_analysed(t, f"not analysed within {timeout:g} s")
                                             for t in members(for_task))
                            continue
                        later = client.submit(function, *arguments, pure=False)
                        futures.append(later)
                        task_of[later.key] = for_task
                        pending.add(later)
                elif failure is None:
                    results = value
                else:
                    results = tuple(_not_analysed(t, failure) for t in members(task_of[future.key]))
                for result in results:
                    by_name[result.capture] = result
                    if on_result is not None:
                        on_result(result)
        finally:
            if watchdog is not None:
                watchdog.cancel()
    finally:
        if opened:
            client.close()
    run = ClusterRun(out_dir=out, results=[by_name[name] for name in inputs])
    _write_manifest(run)
    return run


# --- command line -------------------------------------------------------------------------------------------

def cmd_analyze_cluster(args: Any, inputs: list[str], keep: RecordFilter | None) -> int:
    """`tlsflow analyze --scheduler ADDRESS ... -o DIR`: the same exit codes as a local run."""
    import sys

    from tlsflow.cli import EXIT_FAILURES, EXIT_OK, EXIT_UNREADABLE, EXIT_USAGE

    def usage(message: str) -> int:
        sys.stderr.write(f"tlsflow: {message}\n")
        return EXIT_USAGE

    if args.format not in (None, "parquet"):
        return usage("--scheduler writes Parquet only (one file per capture): drop -f or use -f parquet")
    if not args.output or args.output == "-":
        return usage("--scheduler needs -o DIR, a folder every worker can write at the same path")
    if args.keylog and not os.path.isfile(args.keylog):
        return usage(f"--keylog: {args.keylog}: no such file")
    show_progress = not args.quiet and sys.stderr.isatty()
    done = [0]

    def on_result(result: CaptureResult) -> None:
        done[0] += 1
        if show_progress:
            sys.stderr.write("\r" + " " * 60 + "\r")
        for message in result.errors:
            sys.stderr.write(f"tlsflow: {message}\n")
        if show_progress:
            sys.stderr.write(f"{done[0]}/{len(inputs)} captures analysed")
            sys.stderr.flush()

    try:
        run = analyze_cluster(inputs, args.scheduler, args.output, ca_bundle=args.ca_bundle,
                              keylog=args.keylog, keep=keep, on_result=on_result, series=args.series)
    except ClusterError as exc:
        return usage(str(exc))
    if show_progress:
        sys.stderr.write("\r" + " " * 60 + "\r")
    if not args.quiet:
        outcomes = run.outcomes
        sys.stderr.write(f"tlsflow: {run.rows} connection(s): "
                         + ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items()))
                         + f"; {len(run.files)} Parquet file(s) in {args.output}\n")
    if run.errors:
        return EXIT_UNREADABLE
    return EXIT_FAILURES if run.failed else EXIT_OK
