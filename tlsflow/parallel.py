"""`--jobs N` on ONE capture file. A pcap or pcapng file on disk is cut into byte ranges (tlsflow.parallel_ranges),
unless thousands of connections are in flight at the first cut (`parallel_ranges.SHARDS_FROM_IN_FLIGHT`: then the
ranges' workers would follow them through most of the file); that file and other input (gzip) are shared out by
connection, as described here (gzip from GZIP_SHARED_FROM jobs on: below that one process reads it, with a child
decompressing: `api.analyze_files`): N worker processes, each reading the whole file but analysing only its share
of the connections.

Sharding (for input that cannot be cut at a byte offset, as gzip cannot seek, or whose connections outlive the ranges): a connection belongs to shard `shard_of(addresses, ports) % N`, the
same for both directions. Each worker walks every record; the reader's fast lane takes another shard's segments
as their time only (`_ShardCounter`: the frame handler decodes a connection's first one, or one at an expiry pass,
as far as its 4-tuple and hands the pipeline its timestamp), so that the worker's reassembler expires idle and
lingering flows at exactly the capture times a single process would (`FlowAnalyzer.tick`). Everything else
(reassembly, TLS parsing, certificate checks, verdicts, records) happens once per connection, in one worker.

flow_id is the connection's rank by first frame over the whole capture. A worker numbers only its own flows, so
it reports, batch by batch, the first frames of the flows it opened and how far it has read; the parent turns a
worker's local number L of a flow first seen at frame F into L + (flows the other workers opened before F) as
soon as every other worker has read past F. The records are the single process's, in another order.

Not identical to one process only when the flow table overflows (`max_flows` open connections at once): each
worker then has its own table and evicts other flows.
"""
from __future__ import annotations

import heapq
import os
import traceback
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from tlsflow.capture.errors import damage_message
from tlsflow.gcpolicy import tune_gc
from tlsflow.shipping import pack_all, unpack_all

BATCH_PACKETS = 1 << 14  # packets between two messages of a worker (records, opened flows, progress)
QUEUE_BATCHES = 64  # messages waiting in the queue at most: memory stays bounded if the parent falls behind
_END = 1 << 62  # "read past every frame": the progress of a worker that has finished


def _shard_main(path: str, index: int, count: int, ca_bundle: str | None, keylog_path: str | None,
                queue: Any, json_lines: bool = False) -> None:
    """A worker process: stream (index, message) tuples to `queue`; the last message is ("end", ...) or
    ("crash", traceback text)."""
    tune_gc()
    try:
        from tlsflow.api import _load_keylog, _trust_store

        for message in shard_messages(path, index, count, trust=_trust_store(ca_bundle),
                                      keylog=_load_keylog(keylog_path), json_lines=json_lines):
            queue.put((index, message))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        queue.put((index, ("crash", traceback.format_exc())))


def count_lane_but(reassembler: Any, others: Any) -> Callable[..., bool]:
    """`reassembler.count_lane` for a worker that leaves some connections to other workers: a segment whose lane is
    `others` is taken as its time only while no expiry pass is due at it (then it goes to the frame handler, whose
    float makes the worker run the pass)."""
    count = reassembler.count_lane

    def count_lane(lane: Any, frame: int, ts: float, seq: int, ack: int, flags: int, window: int, ttl: int,
                   n: int) -> bool:
        # Arguments spelled out: packing them (*fields) costs more than the rest of this call.
        if lane is others:
            return ts < reassembler.next_expiry  # type: ignore[no-any-return]
        return count(lane, frame, ts, seq, ack, flags, window, ttl, n)  # type: ignore[no-any-return]

    return count_lane


_OTHER_SHARD = ("another shard's connection",)  # the lane of every 4-tuple of another worker's shard
OTHER_SHARD_KEYS_KEPT = 1 << 16  # such lanes at most: then they are all let go, and made again as segments come


class _ShardCounter:
    """The reader's segment counter (pcap.SegmentCounter) for the worker of one shard: the reassembler's lanes, in
    which the frame handler enters each 4-tuple of another shard it meets (`mark_other_shard`) with the lane
    _OTHER_SHARD; the walker's fast lane then takes that connection's next segments as their time only, while no
    expiry pass is due (a segment at or past it goes to the handler, whose float makes the worker run the pass).
    Why: every worker reads every record, and most are other shards' (all but 1/N); each was decoded by the frame
    handler, then came out as a float through the worker's loop."""

    __slots__ = ("_marked", "count_lane", "lanes")

    def __init__(self, reassembler: Any) -> None:
        # The reassembler's own dict: it puts and takes its flows' lanes there (its own shard's 4-tuples only).
        self.lanes = reassembler.lanes
        self._marked: list[bytes] = []
        self.count_lane = count_lane_but(reassembler, _OTHER_SHARD)

    def mark_other_shard(self, key: bytes) -> None:
        marked = self._marked
        if len(marked) >= OTHER_SHARD_KEYS_KEPT:
            lanes = self.lanes
            for old in marked:
                if lanes.get(old) is _OTHER_SHARD:
                    del lanes[old]
            marked.clear()
        if key not in self.lanes:
            self.lanes[key] = _OTHER_SHARD
            marked.append(key)


def shard_messages(path: str, index: int, count: int, *, trust: Any, keylog: Any = None,
                   batch_packets: int = BATCH_PACKETS, json_lines: bool = False) -> Iterator[tuple[Any, ...]]:
    """One worker's work, as messages: ("batch", progress frame, opened first frames, records, bytes read) and at
    the end ("end", error text or None, flows reported). Records carry the worker's own flow numbering."""
    from tlsflow.capture import CaptureError, open_capture
    from tlsflow.pipeline import FlowAnalyzer

    analyzer = FlowAnalyzer(path, trust=trust, keylog=keylog)
    reassembler = analyzer.reassembler
    records: list[dict[str, Any]] = []
    opened = array("q")
    flows = 0
    error: str | None = None
    progress = 0  # every flow this worker opened at a frame <= progress has been reported in `opened`
    # Every worker reads the whole file: a decompressing child each would only add the copying through its pipe.
    with open_capture(path, decompress_apart=False) as cap:
        secrets_seen = 0
        n = 0
        try:
            # (The reader's fast lane counts this worker's own segments of flows that want no more data, as in one
            # process: before, the frame handler decoded each and gave it to the older `count_only`; conc5000, one
            # worker of two, three alternated runs: 8.14-9.15 -> 7.73-8.23 s of CPU.)
            for pkt in cap.packets(shard=(index, count), counter=_ShardCounter(reassembler)):
                if pkt.__class__ is float:  # another shard's segment, or the time of segments its lanes counted
                    analyzer.last_ts = pkt  # type: ignore[assignment]
                    if pkt >= reassembler.next_expiry:  # type: ignore[operator]
                        records.extend(analyzer.tick(pkt))  # type: ignore[arg-type]
                else:
                    if len(cap.secrets) != secrets_seen:
                        analyzer.add_secrets(cap.secrets[secrets_seen:])
                        secrets_seen = len(cap.secrets)
                    before = reassembler.flows_opened
                    records.extend(analyzer.feed(pkt))
                    if reassembler.flows_opened != before:
                        opened.append(pkt.frame)
                    progress = pkt.frame
                n += 1
                if n >= batch_packets:
                    n = 0
                    flows += len(records)
                    yield ("batch", progress, opened, pack_all(records, json_lines), cap.bytes_read)
                    records, opened = [], array("q")
        except CaptureError as exc:
            error = str(exc)
        records.extend(analyzer.finish())
        flows += len(records)
        yield ("batch", _END, opened, pack_all(records, json_lines), cap.bytes_read)
    yield ("end", error, flows)


def analyze_file_parallel(path: str, jobs: int, *, ca_bundle: str | None = None, keylog_path: str | None = None,
                          progress: Callable[[int, int | None], None] | None = None,
                          cut_targets: list[int] | None = None, json_lines: bool = False
                          ) -> Iterator[dict[str, Any] | str]:
    """The records of one capture analysed by `jobs` processes (flow_id as in a single process), then an error
    text if the capture is damaged, as `api._one_capture` yields them.

    A pcap or pcapng file on disk is cut into byte ranges (`tlsflow.parallel_ranges`); anything else (gzip) is
    shared out by connection (`api.analyze_files` reads a gzipped file with two jobs in one process instead:
    `GZIP_SHARED_FROM`). `cut_targets` (tests): the byte offsets to cut at instead of equal shares.
    `json_lines`: the records will be written as JSON lines, so the workers encode them (`tlsflow.shipping`).
    """
    from tlsflow.parallel_ranges import analyze_ranges, splittable

    if splittable(path):
        yield from analyze_ranges(path, jobs, ca_bundle=ca_bundle, keylog_path=keylog_path, progress=progress,
                                  cut_targets=cut_targets, json_lines=json_lines)
        return
    yield from analyze_file_sharded(path, jobs, ca_bundle=ca_bundle, keylog_path=keylog_path, progress=progress,
                                    json_lines=json_lines)


# Jobs from which one gzipped file is shared out by connection rather than read by one process (which a child
# decompresses for, on a second core). Each sharing worker decompresses the whole file, so with D the time to
# decompress it and A to analyse it, sharing takes about D + A/N against max(D, A). Measured on the gzipped
# 200 MB bench capture (D ~1.0 s, A ~1.1 s): two workers 2.19 s, one process 1.64 s. With more workers, or a
# heavier analysis (a key log's decryption), sharing can win.
GZIP_SHARED_FROM = 3


def start_method() -> Any:
    """fork when it is safe (no other thread whose locks a child could inherit held): the workers start at once,
    with every module already imported; spawn costs each worker a fresh interpreter and all the imports."""
    import multiprocessing
    import threading

    fork = "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1
    return multiprocessing.get_context("fork" if fork else "spawn")


def analyze_file_sharded(path: str, jobs: int, *, ca_bundle: str | None = None, keylog_path: str | None = None,
                         progress: Callable[[int, int | None], None] | None = None, json_lines: bool = False
                         ) -> Iterator[dict[str, Any] | str]:
    """`analyze_file_parallel` by connection shards (every worker reads the whole file)."""
    ctx = start_method()
    queue = ctx.Queue(QUEUE_BATCHES)
    workers = [ctx.Process(target=_shard_main, args=(path, i, jobs, ca_bundle, keylog_path, queue,
                                                         json_lines), daemon=True)
               for i in range(jobs)]
    for worker in workers:
        worker.start()
    try:
        yield from _merge(queue, workers, path, progress)
    finally:
        shut_down(workers, queue)


def shut_down(workers: list[Any], queue: Any) -> None:
    """Stop the workers still running (the consumer may stop reading early) and wait for all of them."""
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
        worker.join()
    queue.close()


def worker_messages(queue: Any, workers: list[Any], path: str) -> Iterator[tuple[int, tuple[Any, ...]]]:
    """The workers' (index, message) pairs until each has sent its "end" or "crash"; raises if a worker died
    without saying so."""
    import queue as queues

    done = [False] * len(workers)
    while not all(done):
        try:
            index, message = queue.get(timeout=1.0)
        except queues.Empty:
            for i, worker in enumerate(workers):
                if not done[i] and not worker.is_alive() and queue.empty():
                    raise RuntimeError(f"--jobs worker {i} on {path} died (exit code {worker.exitcode})") from None
            continue
        if message[0] in ("end", "crash"):
            done[index] = True
        yield index, message


def _merge(queue: Any, workers: list[Any], path: str, progress: Callable[[int, int | None], None] | None
           ) -> Iterator[dict[str, Any] | str]:
    jobs = len(workers)
    total = None
    try:
        total = os.path.getsize(path)
    except OSError:
        pass
    opened = [array("q") for _ in range(jobs)]
    read_to = [0] * jobs
    waiting: list[list[tuple[int, int, int, dict[str, Any]]]] = [[] for _ in range(jobs)]  # heaps by first frame
    flows = 0
    error: str | None = None
    tie = 0
    for index, message in worker_messages(queue, workers, path):
        kind = message[0]
        if kind == "crash":
            raise RuntimeError(f"--jobs worker {index} failed on {path}:\n{message[1]}")
        if kind == "end":
            flows += message[2]
            if index == 0:
                error = message[1]
            continue
        _, read, new_opened, records, bytes_read = message
        opened[index].extend(new_opened)
        read_to[index] = read
        heap = waiting[index]
        for record in unpack_all(records):
            tie += 1
            heapq.heappush(heap, (record["first_frame"], tie, record["flow_id"], record))
        if progress is not None and index == 0:
            progress(bytes_read, total)
        # Release every waiting record whose first frame all the other workers have read past.
        for w in range(jobs):
            heap = waiting[w]
            if not heap:
                continue
            limit = min((read_to[v] for v in range(jobs) if v != w), default=_END)
            while heap and heap[0][0] <= limit:
                first_frame, _, local_id, record = heapq.heappop(heap)
                record["flow_id"] = local_id + sum(bisect_left(opened[v], first_frame)
                                                   for v in range(jobs) if v != w)
                yield record
    if error is not None:
        yield damage_message(path, error, flows)
