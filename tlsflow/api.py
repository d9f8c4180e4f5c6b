"""The Python API: `analyze()` returns a pandas DataFrame, `iter_flows()` streams records.

Both take what the command line takes (files, directories, globs, '-'), and return the contract's fields.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from tlsflow.capture import CaptureError
from tlsflow.capture.errors import about, damage_message
from tlsflow.gcpolicy import fewer_collections
from tlsflow.inputs import cpu_cores
from tlsflow.pipeline import CaptureReport, RunCaches, iter_flow_records
from tlsflow.record import FIELDS

ProgressFactory = Callable[[str], Callable[[int, int | None], None]]


def _trust_store(ca_bundle: str | Path | None, trust: Any = None) -> Any:
    """The trust store given, or the default one plus `ca_bundle`; None for the default one alone, which the
    analysis loads at the first certificate chain it checks (tlsflow.pipeline._CertCache.trust)."""
    if trust is not None or not ca_bundle:
        return trust
    from analyzers.certchecks import TrustStore

    return TrustStore.default().with_pem_file(str(ca_bundle))


def _load_keylog(keylog: Any) -> Any:
    """A KeyLog from a path (SSLKEYLOGFILE format), or the KeyLog given, or None."""
    if keylog is None or hasattr(keylog, "secrets_for"):
        return keylog
    from tlsparse.keylog import KeyLog

    return KeyLog.from_file(str(keylog))


def _one_capture(path: str, trust: Any, progress: Callable[[int, int | None], None] | None = None,
                 keylog: Any = None, caches: RunCaches | None = None) -> Iterator[dict[str, Any] | str]:
    report = CaptureReport(capture=path)
    try:
        yield from iter_flow_records(path, capture_name=path, trust=trust, report=report, progress=progress,
                                     keylog=keylog, caches=caches)
    except OSError as exc:
        yield f"{path}: {exc.strerror or exc}"
        return
    except CaptureError as exc:  # a capture we cannot open at all (not a capture, bad magic): one line
        yield about(path, str(exc))
        return
    if report.error:
        yield damage_message(path, report.error, report.flows)


def _worth_sharing(path: str, jobs: int) -> bool:
    """The capture opens (else the single-process path reports why, as usual), and `jobs` processes are worth it:
    a pcap or pcapng file on disk is cut into byte ranges (`parallel_ranges.splittable`); anything else (gzip) is
    shared out by connection only from `parallel.GZIP_SHARED_FROM` jobs on (below, one process with its
    decompressing child is faster)."""
    from tlsflow.capture import CaptureError, open_capture
    from tlsflow.parallel import GZIP_SHARED_FROM
    from tlsflow.parallel_ranges import cuts_apart

    try:
        with open_capture(path) as cap:
            return jobs >= GZIP_SHARED_FROM or cuts_apart(cap)
    except (CaptureError, OSError):
        return False


def analyze_files(inputs: list[str], *, trust: Any = None, ca_bundle: str | None = None, jobs: int = 1,
                  keylog: Any = None, progress_factory: ProgressFactory | None = None, json_lines: bool = False,
                  series: bool = False) -> Iterator[tuple[str, dict[str, Any] | str]]:
    """Yield (capture, record) for every connection, or (capture, error message) for unreadable input.
    `keylog`: an SSLKEYLOGFILE path (or a tlsparse.keylog.KeyLog) to decrypt handshakes with.
    `jobs > 1`: several files are analysed in parallel, one per process at a time (tlsflow.parallel_files: the
    records and order of one process); a single pcap or pcapng file is cut into `jobs` byte ranges, other single
    files (gzip) are shared out by connection from `parallel.GZIP_SHARED_FROM` jobs on (tlsflow.parallel; records
    as in one process, in another order), and read by one process below that.
    Worker processes build their trust store from `ca_bundle` and their key log from a path, so a `trust` or
    KeyLog object keeps one process. `json_lines`: the caller writes the records as JSON lines, so workers encode them
    too (records are then `shipping.EncodedRecord`s: dicts of the fields `shipping.LINE_FIELDS` only, that carry the
    whole record's line).
    `series`: the files of each folder are pieces of one capture (a sensor's rotated files), read as one, in the
    order of their first packets (tlsflow.series): a connection that crosses from one file to the next is one
    record. `jobs > 1`: as many folders as processes or more, one series per process at a time; fewer, one after
    another, each cut into runs of files, one per process (tlsflow.parallel_series: the records of one process, run
    after run)."""
    if series and len(inputs) > 1:
        from tlsflow.series import iter_series, series_units

        units = series_units(inputs)  # (each folder's files, in capture order)
        parallel = jobs > 1 and trust is None and not hasattr(keylog, "secrets_for")
        if parallel and len(units) >= jobs:
            from tlsflow.parallel_files import analyze_files_parallel  # a series per process at a time

            yield from analyze_files_parallel(units, jobs, ca_bundle=ca_bundle,  # type: ignore[arg-type]
                                              keylog_path=None if keylog is None else str(keylog),
                                              json_lines=json_lines, progress_factory=progress_factory)
            return
        if parallel:
            # Fewer series than processes: one series after another, each cut into runs of files, one per process
            # (tlsflow.parallel_series).
            from tlsflow.parallel_series import analyze_series_parallel

            for unit in units:
                if len(unit) == 1:  # (a file alone, or standard input: as without --series)
                    yield from analyze_files(list(unit), ca_bundle=ca_bundle, keylog=keylog, jobs=jobs,
                                             json_lines=json_lines, progress_factory=progress_factory)
                    continue
                progress = progress_factory(unit[0]) if progress_factory is not None else None
                yield from analyze_series_parallel(list(unit), jobs, ca_bundle=ca_bundle,
                                                   keylog_path=None if keylog is None else str(keylog),
                                                   json_lines=json_lines, progress=progress)
                if progress is not None and hasattr(progress, "clear"):
                    progress.clear()
            return
        trust = _trust_store(ca_bundle, trust)
        keylog = _load_keylog(keylog)
        caches = RunCaches(trust)
        for unit in units:
            yield from iter_series(list(unit), trust=trust, keylog=keylog, caches=caches,
                                   progress_factory=progress_factory)
        return
    if (jobs > 1 and len(inputs) > 1 and "-" not in inputs and trust is None
            and not hasattr(keylog, "secrets_for")):
        # Several files, several processes: each worker takes the next file and streams its records; they come
        # out file by file in input order, as in one process (tlsflow.parallel_files).
        from tlsflow.parallel_files import analyze_files_parallel

        yield from analyze_files_parallel(inputs, jobs, ca_bundle=ca_bundle,
                                          keylog_path=None if keylog is None else str(keylog), json_lines=json_lines,
                                          progress_factory=progress_factory)
        return
    if (jobs > 1 and len(inputs) == 1 and inputs[0] != "-" and trust is None
            and not hasattr(keylog, "secrets_for") and _worth_sharing(inputs[0], jobs)):
        # One file, several processes: each analyses a share of the connections (tlsflow.parallel). The workers
        # build their trust store from `ca_bundle`, so a trust store given as an object keeps one process.
        from tlsflow.parallel import analyze_file_parallel

        path = inputs[0]
        progress = progress_factory(path) if progress_factory is not None else None
        keylog_path = None if keylog is None else str(keylog)
        for result in analyze_file_parallel(path, jobs, ca_bundle=ca_bundle, keylog_path=keylog_path,
                                            progress=progress, json_lines=json_lines):
            yield path, result
        if progress is not None and hasattr(progress, "clear"):
            progress.clear()
        return
    trust = _trust_store(ca_bundle, trust)
    keylog = _load_keylog(keylog)
    caches = RunCaches(trust)  # (one for every capture: rotating files show the same servers file after file)
    for path in inputs:
        progress = progress_factory(path) if progress_factory is not None else None
        for result in _one_capture(path, trust, progress, keylog=keylog, caches=caches):
            yield path, result
        if progress is not None and hasattr(progress, "clear"):
            progress.clear()


def _expand(paths: str | Path | Iterable[str | Path]) -> list[str]:
    from tlsflow.inputs import expand_inputs

    if isinstance(paths, (str, Path)):
        paths = [paths]
    return expand_inputs([str(p) for p in paths])


def iter_flows(paths: str | Path | Iterable[str | Path], ca_bundle: str | Path | None = None,
               errors: list[str] | None = None, keylog: str | Path | None = None,
               jobs: int = 1, series: bool = False) -> Iterator[dict[str, Any]]:
    """Stream one contract record (a dict) per TCP connection, without holding them all. Unreadable input is
    reported in `errors` when given, else raised as ValueError after what could be read. `keylog`: an
    SSLKEYLOGFILE to decrypt handshakes (TLS 1.3 certificates and alerts become readable). `jobs`: processes
    (0: one per core), as `tlsflow analyze --jobs`: files in parallel, one big file cut into byte ranges.
    `series`: each folder's files are pieces of one capture (rotated by the sensor), read as one:
    `tlsflow analyze --series` (with `jobs`, several folders at once)."""
    jobs = jobs if jobs > 0 else cpu_cores()
    trust = _trust_store(ca_bundle) if jobs <= 1 else None  # workers build their own from the path
    problems: list[str] = []
    with fewer_collections():  # (a third of the time otherwise: tlsflow.gcpolicy)
        for _capture, result in analyze_files(_expand(paths), trust=trust, keylog=keylog, jobs=jobs,
                                              ca_bundle=None if ca_bundle is None else str(ca_bundle),
                                              series=series):
            if isinstance(result, str):
                problems.append(result)
            else:
                yield result
    if problems:
        if errors is not None:
            errors.extend(problems)
        else:
            raise ValueError("; ".join(problems))


_CATEGORIES = ("outcome", "failed_step", "cause", "confidence", "version", "alert_sender")


def to_dataframe(records: Iterable[dict[str, Any]]):
    """Records → DataFrame with the contract's columns and useful dtypes (datetimes, categories)."""
    import pandas as pd

    frame = pd.DataFrame.from_records(list(records), columns=list(FIELDS))
    for column in ("start", "end"):
        # (a capture time no datetime can hold, past ~294,000 years from 1970 as pandas keeps microseconds: NaT, not
        # an OutOfBoundsDatetime for the whole table; pcapng's 64-bit times can say so)
        frame[column] = pd.to_datetime(frame[column], unit="s", utc=True, errors="coerce")
    for column in ("cert_not_before", "cert_not_after"):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    for column in _CATEGORIES:
        frame[column] = frame[column].astype("category")
    for column in ("flow_id", "first_frame", "cert_chain_len"):
        frame[column] = frame[column].astype("Int64")
    frame["resumed"] = frame["resumed"].astype("boolean")
    return frame


def analyze(paths: str | Path | Iterable[str | Path], ca_bundle: str | Path | None = None,
            errors: list[str] | None = None, keylog: str | Path | None = None, jobs: int = 1,
            series: bool = False):
    """Analyse captures and return a pandas DataFrame, one row per TCP connection, sorted by capture and flow.
    `jobs`: processes (0: one per core): several files in parallel, one big file cut into byte ranges.
    `series`: each folder's files are one capture rotated into pieces (tcpdump -C/-G, a dumpcap ring buffer): a
    connection that crosses from one file to the next is one row, under the file where it began."""
    frame = to_dataframe(iter_flows(paths, ca_bundle=ca_bundle, errors=errors, keylog=keylog, jobs=jobs,
                                    series=series))
    return frame.sort_values(["capture", "flow_id"], kind="stable").reset_index(drop=True)
