"""Micro-benchmark of the per-connection work after the parser: folding events into the summary
(`HandshakeSummary.add`), `FlowAnalyzer._record` (TCP facts, certificate cache, verdict, record, fingerprints)
and the JSON lines writer.

The capture is run through the pipeline once, keeping each connection's parser events and its closed connection
object; then each part is timed alone over those, several times, with CPU time (`time.process_time`: on a shared
machine wall time is noise). Report the best run.

    python -m bench.record_cost /tmp/bench-200MB.pcap --runs 5
"""
from __future__ import annotations

import argparse
import io
import time
from typing import Any

from analyzers import summary as summary_mod
from analyzers.summary import HandshakeSummary
from tlsflow import pipeline
from tlsflow.formats import CsvWriter, JsonLinesWriter


class _KeepingAnalyzer(pipeline.FlowAnalyzer):
    """Keeps every closed connection (its summary and TCP facts stay reachable through it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conns: list[Any] = []

    def _record(self, conn: Any) -> dict[str, Any]:
        self.conns.append(conn)
        return super()._record(conn)


def collect(path: str) -> tuple[list[Any], list[list[Any]], float | None]:
    """(closed connections, each one's parser events in order, the capture's last timestamp)."""
    events_by_summary: dict[int, list[Any]] = {}
    original_add_all = HandshakeSummary.add_all

    def keeping_add_all(self: HandshakeSummary, events: Any) -> None:  # `add` goes through it too
        events = list(events)
        events_by_summary.setdefault(id(self), []).extend(events)
        original_add_all(self, events)

    summary_mod.HandshakeSummary.add_all = keeping_add_all  # type: ignore[method-assign]
    made: list[_KeepingAnalyzer] = []
    original_analyzer = pipeline.FlowAnalyzer

    def keeping_analyzer(*args: Any, **kwargs: Any) -> _KeepingAnalyzer:
        made.append(_KeepingAnalyzer(*args, **kwargs))
        return made[-1]

    # The pipeline's own packet loop, with an analyzer that keeps the connections.
    pipeline.FlowAnalyzer = keeping_analyzer  # type: ignore[assignment,misc]
    try:
        for _ in pipeline.iter_flow_records(path):
            pass
    finally:
        summary_mod.HandshakeSummary.add_all = original_add_all  # type: ignore[method-assign]
        pipeline.FlowAnalyzer = original_analyzer  # type: ignore[misc]
    analyzer = made[0]
    events = [events_by_summary.get(id(c.handshake.summary), []) if c.handshake else [] for c in analyzer.conns]
    return analyzer.conns, events, analyzer.last_ts


def _best(fn: Any, runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    conns, events, last_ts = collect(args.capture)
    n = len(conns)

    # The pipeline hands each chunk's events over at once; the bench hands each connection's (a little kinder).
    def fold() -> None:
        for evs in events:
            HandshakeSummary().add_all(evs)

    def fold_one_by_one() -> None:
        for evs in events:
            add = HandshakeSummary().add
            for e in evs:
                add(e)

    records: list[dict[str, Any]] = []

    def record() -> None:
        # A fresh analyzer each run: its certificate cache starts cold, as in a real run.
        analyzer = pipeline.FlowAnalyzer(args.capture)
        analyzer.last_ts = last_ts
        records.clear()
        for conn in conns:
            records.append(analyzer._record(conn))

    def write_jsonl() -> None:
        writer = JsonLinesWriter(io.StringIO())
        for r in records:
            writer.write(r)

    def write_csv() -> None:
        writer = CsvWriter(io.StringIO())
        for r in records:
            writer.write(r)

    times = {"summary.add": _best(fold, args.runs), "(event by event)": _best(fold_one_by_one, args.runs),
             "_record": _best(record, args.runs),
             "jsonl write": _best(write_jsonl, args.runs), "csv write": _best(write_csv, args.runs)}
    print(f"{n} connections, {sum(map(len, events))} events (best of {args.runs}, CPU time)")
    for name, t in times.items():
        print(f"  {name:16s} {t:7.3f} s  {t / n * 1e6:7.1f} µs/conn")
    total = times["summary.add"] + times["_record"] + times["jsonl write"]
    print(f"  {'add+rec+jsonl':16s} {total:7.3f} s  {total / n * 1e6:7.1f} µs/conn")


if __name__ == "__main__":
    main()
