"""The TLS parser alone: replay what `tlsflow analyze` feeds `TlsConnection` for a capture, timed in CPU seconds.

Why a replay: the parser's share of a whole run is hidden in the capture reading, reassembly and analysis around
it, and wall time on a shared machine is noise. So this records, once, every `receive`/`receive_gap` call the
real pipeline makes (the same chunks, in the same order, stopping where the pipeline stops feeding a connection)
and keeps them in a cache file; each timed run then feeds them through fresh `TlsConnection` objects and reports
`time.process_time()` per run and per connection. Events are counted and digested (their full repr, after the
timing) so that a change in the parser's output shows up next to its speed.

    python -m bench.parser_only /tmp/bench-200MB.pcap --runs 5
    python -m bench.parser_only /tmp/bench-200MB.pcap --profile    # cProfile of one replay, by own time
"""
from __future__ import annotations

import argparse
import hashlib
import pickle
import sys
import time
from pathlib import Path
from typing import Any

from tlsparse import ParseCache, TlsConnection
from tlsparse.events import Sender

# (sender is client, data or None, gap length, frame, ts) per call, one list per connection in opening order.
Workload = list[list[tuple[bool, bytes | None, int, int, float]]]


def record_workload(capture: Path) -> Workload:
    """Run the real pipeline once, recording each connection's parser input in call order."""
    from tlsflow.pipeline import iter_flow_records

    calls: dict[int, list[tuple[bool, bytes | None, int, int, float]]] = {}
    original_receive, original_gap = TlsConnection.receive, TlsConnection.receive_gap

    def receive(self: TlsConnection, sender: Sender, data: bytes, frame: int, ts: float) -> list[Any]:
        calls.setdefault(id(self), []).append((sender is Sender.CLIENT, bytes(data), 0, frame, ts))
        return original_receive(self, sender, data, frame, ts)

    def receive_gap(self: TlsConnection, sender: Sender, length: int, frame: int, ts: float) -> list[Any]:
        calls.setdefault(id(self), []).append((sender is Sender.CLIENT, None, length, frame, ts))
        return original_gap(self, sender, length, frame, ts)

    keep: list[TlsConnection] = []  # ids must stay unique: keep every parser alive while recording
    original_init = TlsConnection.__init__

    def init(self: TlsConnection, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        keep.append(self)

    TlsConnection.receive, TlsConnection.receive_gap = receive, receive_gap  # type: ignore[method-assign]
    TlsConnection.__init__ = init  # type: ignore[method-assign]
    try:
        for _ in iter_flow_records(capture):
            pass
    finally:
        TlsConnection.receive, TlsConnection.receive_gap = original_receive, original_gap  # type: ignore[method-assign]
        TlsConnection.__init__ = original_init  # type: ignore[method-assign]
    return [calls[id(tls)] for tls in keep if id(tls) in calls]


def load_workload(capture: Path, cache: Path) -> Workload:
    if cache.exists():
        with cache.open("rb") as f:
            return pickle.load(f)
    workload = record_workload(capture)
    with cache.open("wb") as f:
        pickle.dump(workload, f, protocol=pickle.HIGHEST_PROTOCOL)
    return workload


def replay(workload: Workload, *, digest_events: bool = True, every_record: bool = False) -> tuple[float, int, str]:
    """Feed every connection through a fresh parser set up as the pipeline sets it up (one ParseCache shared by
    the capture's connections, RecordSeen for each side's first record only unless `every_record`):
    (CPU seconds, events, digest of the events)."""
    client, server = Sender.CLIENT, Sender.SERVER
    all_events: list[list[Any]] = []
    start = time.process_time()
    cache = ParseCache()
    for calls in workload:
        tls = TlsConnection(max_handshake=1 << 19, cache=cache, every_record=every_record)
        events: list[Any] = []
        for is_client, data, gap, frame, ts in calls:
            sender = client if is_client else server
            if data is None:
                events += tls.receive_gap(sender, gap, frame, ts)
            else:
                events += tls.receive(sender, data, frame, ts)
        all_events.append(events)
    elapsed = time.process_time() - start
    if not digest_events:
        return elapsed, sum(map(len, all_events)), ""
    digest = hashlib.sha256()
    count = 0
    for events in all_events:
        for e in events:
            count += 1
            digest.update(repr(e).encode())
    return elapsed, count, digest.hexdigest()[:16]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cache", type=Path, help="workload cache (default: /tmp/<capture>.parser-calls.pickle)")
    parser.add_argument("--profile", action="store_true", help="cProfile one replay instead of timing")
    parser.add_argument("--every-record", action="store_true",
                        help="a RecordSeen for every record (TlsConnection's default) instead of the pipeline's setting")
    args = parser.parse_args(argv)
    cache = args.cache or Path("/tmp") / f"{args.capture.name}.parser-calls.pickle"
    workload = load_workload(args.capture, cache)
    connections = len(workload)
    calls = sum(len(c) for c in workload)
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(replay, workload, digest_events=False, every_record=args.every_record)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        return 0
    times = []
    for _ in range(args.runs):
        elapsed, count, digest = replay(workload, every_record=args.every_record)
        times.append(elapsed)
        print(f"{elapsed:.3f} s CPU  {elapsed / connections * 1e6:.1f} us/connection  {count} events  "
              f"digest {digest}", file=sys.stderr)
    best = min(times)
    print(f"{args.capture.name}: {connections} connections, {calls} calls: best of {args.runs} "
          f"{best:.3f} s CPU, {best / connections * 1e6:.1f} us per connection")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
