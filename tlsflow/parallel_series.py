"""`--jobs N --series` on one sensor's files: the series cut into N runs of whole files, one process each, with
the records of a single process reading the series (tlsflow.series).

Why: a sensor that rotates its file every 100 MB writes one folder of many files, and `--series` read them in one
process: one core, however many the machine has. The cuts fall between files, so no hop is needed to find them;
the rest is `parallel_ranges`' scheme at file granularity.

Groups: the files, in capture order, are cut into runs of about equal bytes (`group_starts`). Worker k reads its
run as a series from an empty flow table, then goes on into the files after it, but only for the connections it
has open when its run ends (every other packet just moves the clock), until none is left or all that are left
linger after their close: those it ends there (`group_messages`), instead of reading on through their linger (5 s
of capture, most of a 100 MB file of the bench capture). A later run's flow on one of their 4-tuples that begins
within the linger would have been part of it in a single process (`Placement._check_linger`): the parent then
reads the series in one process. Their records are given last, once every run's are known.

Ownership: a worker owns the connections that begin in its run. Those of an earlier run still open when worker k
starts appear in its run as flows of their own (phantoms). The earlier worker's record of such a connection
(its 4-tuple, and its last packet's position past that worker's run) tells which: a flow of worker k on that
4-tuple whose first packet is at or before that position is made of the earlier connection's packets, and is
dropped (`Placement`). A phantom that went on past that position took packets of a later connection, a flow
table overflow in any worker, or a connection closed idle by a worker whose expiry passes may not fall at a
single process's packets cannot be settled from the records: the parent then reads the series in one process
(the records already given are not given again). Exact, slow, and rare.

Positions are (file, frame in that file): the workers number frames from their own first file, a series in one
process from the first; within a file both agree. flow_id counts the connections that began in the record's file
(tlsflow.series): a worker counts its phantoms too, so each record's id is lowered by the phantoms of its file
opened before it.

Output: the first run's records as they come (it has no phantom); each later run's once its worker and every
earlier one have ended, waiting meanwhile in memory and then on disk (`waiting.Waiting`). Within a run, records
come in the order they end; the runs one after another.
"""
from __future__ import annotations

import array
import bisect
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from tlsflow.capture import CaptureError, open_capture
from tlsflow.capture.errors import damage_message
from tlsflow.gcpolicy import tune_gc
from tlsflow.parallel import QUEUE_BATCHES, shut_down, start_method, worker_messages
from tlsflow.shipping import pack_all, unpack_all
from tlsflow.waiting import Waiting

BATCH_RECORDS = 256  # records in a worker's message at most
Position = tuple[int, int]  # (file in the series' order, frame in that file)
# What the parent needs of each record to place it: (file, flow_id in that file as the worker counts, 4-tuple,
# first frame in that file, position of the last packet, why the connection closed, the time of its first packet,
# for a connection the worker ended while it lingered past the run (see `group_messages`) the time of its last
# packet, the linger and its sides, else None, and its first packet when that is the client's SYN (client address,
# port, ISN; `parallel_ranges.starts_anew`), else None).
Meta = tuple[int, int, Any, int, Position, str | None, float, tuple[float, float, Any] | None,
             tuple[str, int, int | None] | None]


def group_starts(sizes: list[int], jobs: int) -> list[int]:
    """The first file of each run: min(jobs, files) runs of whole files, of about equal bytes (a run begins at
    the file whose middle passes its share)."""
    runs = max(1, min(jobs, len(sizes)))
    total = sum(sizes)
    starts = [0]
    done = 0
    for index, size in enumerate(sizes):
        if index and len(starts) < runs and (len(sizes) - index <= runs - len(starts)
                                             or (done + size / 2) * runs >= total * len(starts)):
            starts.append(index)
        done += size
    return starts


def plan_runs(paths: list[str], jobs: int) -> tuple[list[tuple[str, float | None]], list[int], list[int]]:
    """A series' files in capture order with their first packets' times (series._timed_order), their sizes, and
    the first file of each of at most `jobs` runs (`group_starts`)."""
    from tlsflow.series import _timed_order

    timed = _timed_order(paths)
    sizes = _sizes([path for path, _t in timed])
    return timed, sizes, group_starts(sizes, jobs)


def _sizes(paths: list[str]) -> list[int]:
    import os

    out = []
    for path in paths:
        try:
            out.append(os.path.getsize(path))
        except OSError:
            out.append(0)
    return out


def group_messages(timed: list[tuple[str, float | None]], first: int, end: int, *, trust: Any, keylog: Any = None,
                   caches: Any = None, json_lines: bool = False, batch_records: int = BATCH_RECORDS
                   ) -> Iterator[tuple[Any, ...]]:
    """One worker's work: the files `timed[first:end]` (path, first packet's time; the series in capture order) read
    as a series, then the files after them for the connections open at the end of the last one. Messages:
    ("records", packed records, their Metas, bytes read), ("message", path, text) for a file that cannot be read,
    ("damage", path, error, file) for a file whose reading stopped at damage, and last ("end", next expiry pass
    after the run's first packet, next expiry pass when the run ended, flows evicted, bytes read, the time of the
    run's last packet, the Metas of the flows joined mid-stream that were not followed past the run and gave no
    record)."""
    from tlsflow.capture.linktypes import ETHERNET
    from tlsflow.capture.pcap import HEADER_SIZE
    from tlsflow.parallel_ranges import (
        LingerEnd,
        _follow_ethernet,
        _range_analyzer_class,
        follow_counter,
        wire_keys,
    )
    from tlsflow.pipeline import RunCaches
    from tlsflow.series import Pieces, read_piece

    caches = caches if caches is not None else RunCaches(trust)
    analyzer = _range_analyzer_class()(timed[first][0], trust=trust, keylog=keylog, caches=caches)
    reassembler = analyzer.reassembler
    pieces = Pieces()
    file_of: list[int] = []  # each of pieces' files -> its place in the series
    place_of: dict[str, int] = {}  # a file's path -> its place in the series
    records: list[dict[str, Any]] = []
    metas: list[Meta] = []
    read_before = 0  # bytes of the run's files done
    read_now = 0  # of the file being read

    def progress(done: int, _size: int | None) -> None:
        nonlocal read_now
        read_now = done

    def position(frame: int) -> Position:
        at = bisect.bisect_left(pieces.frame_bases, frame) - 1
        return file_of[at], frame - pieces.frame_bases[at]

    def meta_of(record: dict[str, Any], lingered: tuple[float, float, Any] | None = None) -> Meta | None:
        """The Meta of a record placed by `pieces` (its "_range" entry taken out), None when its connection
        began after the run."""
        key, last_frame, reason, first_syn = record.pop("_range")
        file = place_of[record["capture"]]
        if file >= end:
            return None
        return (file, record["flow_id"], key, record["first_frame"], position(last_frame), reason, record["start"],
                lingered, first_syn)

    def keep(record: dict[str, Any], lingered: tuple[float, float, Any] | None = None) -> None:
        """A record placed by `pieces`, kept when its connection began in the run."""
        meta = meta_of(record, lingered)
        if meta is not None:
            records.append(record)
            metas.append(meta)

    def batch() -> tuple[Any, ...]:
        nonlocal records, metas
        message = ("records", pack_all(records, json_lines), metas, read_before + read_now)
        records, metas = [], []
        return message

    # Expiry passes run at the first packet of each whole second (TcpReassembler.advance): a run that starts at
    # its first file's first packet runs them at a single process's packets when that process's next pass at the
    # cut (the previous run's `cut_clock`) is not later than this run's.
    first_clock = None
    begins = next((t for _path, t in timed[first:end] if t is not None), None)
    if first > 0 and begins is not None:
        analyzer.tick(begins)
        first_clock = reassembler.next_expiry
    frames = 0
    pending: list[tuple[Any, ...]] = []  # messages about the file being read, sent after its records so far

    def on_damage(path: str, error: str) -> None:
        pending.append(("damage", path, error, place_of[path]))

    for index in range(first, end):
        path, begins = timed[index]
        place_of[path] = index
        read_now = 0
        piece = read_piece(path, begins, analyzer, pieces, frames, progress,
                           on_begin=lambda _path, _frames, index=index: file_of.append(index), on_damage=on_damage)
        while True:
            try:
                _capture, result = next(piece)
            except StopIteration as stop:
                frames = stop.value
                break
            if result.__class__ is str:
                pending.append(("message", path, result))
                continue
            keep(result)  # type: ignore[arg-type]
            if len(records) >= batch_records:
                yield batch()
        read_before += _sizes([path])[0]
        read_now = 0
        if pending:
            if records:
                yield batch()
            yield from pending
            pending.clear()
    cut_clock = reassembler.next_expiry
    cut_ts = analyzer.last_ts  # (the time its last file ends: the next run's first file should begin after it)
    # Past the run: only its open connections, until none is left. Not those joined mid-stream (no SYN or SYN-ACK
    # seen) in a run after the first: the rest of connections of earlier runs as a rule (phantoms), which those
    # runs' workers follow to their end. Followed here, a connection's last ACK alone past the run's start (open
    # until the idle timeout) made the worker read every later file of the series. What becomes of them past the
    # run is not a record but a flow left open, which the parent checks is a phantom (`Placement.phantoms`).
    tracked = reassembler.open_flow_ids()
    joined: set[int] = set()
    if 0 < first and end < len(timed):
        joined = reassembler.midstream_flow_ids()
        tracked = {key: flow_id for key, flow_id in tracked.items() if flow_id not in joined}
    left_open: list[Meta] = []
    lingering = LingerEnd(analyzer)  # past the run

    def past_run(record: dict[str, Any]) -> None:
        """A record made past the run: kept, or for a flow not followed there, its Meta in `left_open`."""
        own_id = record["flow_id"]  # (the worker's own id: `place` renumbers it by file)
        followed = own_id not in joined
        lingered = lingering.pop(own_id)
        placed = pieces.place(record)[1]
        if followed:
            keep(placed, lingered)
        elif (meta := meta_of(placed)) is not None:
            left_open.append(meta)

    stopped = False
    if tracked and end < len(timed):
        raw = wire_keys(tracked)
        counter = follow_counter(reassembler, raw)
        keys_of: dict[int, list[Any]] = {}  # flow id -> its 4-tuples in `tracked`
        for key, flow_id in tracked.items():
            keys_of.setdefault(flow_id, []).append(key)

        def take(new: Any) -> None:
            for record in new:
                for key in keys_of.pop(record["flow_id"], ()):
                    del tracked[key]
                past_run(record)

        for index in range(end, len(timed)):
            path = timed[index][0]
            try:
                cap = open_capture(path)
            except (OSError, CaptureError):
                continue  # (its owner says why)
            with cap:
                cap.number_from(frames)
                pieces.begin(path, frames, reassembler.flows_opened)
                file_of.append(index)
                place_of[path] = index
                if cap.link_type == ETHERNET and not cap.stats.compressed:
                    # (most packets here are other runs': this reader does not even decode them)
                    walker: Iterator[Any] = _follow_ethernet(path, HEADER_SIZE, frames, raw, counter,
                                                             cap.reassembler)
                else:
                    walker = cap.packets(counter=counter)
                frames_after: list[int | None] = []
                try:
                    for looked, pkt in enumerate(_returned(walker, frames_after), 1):
                        ts = pkt if pkt.__class__ is float else pkt.ts  # type: ignore[union-attr]
                        if pkt.__class__ is not float and (pkt.src, pkt.sport, pkt.dst, pkt.dport) in tracked:
                            take(analyzer.feed(pkt))
                        else:
                            analyzer.last_ts = ts  # type: ignore[assignment]
                            if ts >= reassembler.next_expiry:
                                take(analyzer.tick(ts))  # type: ignore[arg-type]
                        if tracked and (pkt.__class__ is float or not looked & 0xFF):
                            take(lingering.records(tracked))
                        if not tracked:
                            break
                        if len(records) >= batch_records:
                            yield batch()
                except CaptureError as exc:
                    # (as one process: the series goes on with the next file; its owner reports the damage)
                    frames_after.append(exc.frame - 1 if exc.frame else None)
                frames = frames_after[0] if frames_after and frames_after[0] is not None else cap.stats.frames
            if not tracked:
                stopped = True
                break
    if not stopped or joined:  # (the flows not followed that are still open give their Metas to `left_open`)
        for record in analyzer.finish():
            past_run(record)
    yield batch()
    yield ("end", first_clock, cut_clock, reassembler.flows_evicted, read_before, cut_ts, left_open)


def _returned(walker: Iterator[Any], out: list[int | None]) -> Iterator[Any]:
    """The items of `walker`; what it returns (a follow reader: the frames of its file) appended to `out`."""
    value = yield from walker
    out.append(value)


def _group_main(index: int, timed: list[tuple[str, float | None]], starts: list[int], ca_bundle: str | None,
                keylog_path: str | None, queue: Any, json_lines: bool) -> None:
    """A worker process: run `index`'s messages to `queue` as (index, message); ("crash", traceback) if it fails."""
    tune_gc()
    try:
        from tlsflow.api import _load_keylog, _trust_store

        end = starts[index + 1] if index + 1 < len(starts) else len(timed)
        for message in group_messages(timed, starts[index], end, trust=_trust_store(ca_bundle),
                                      keylog=_load_keylog(keylog_path), json_lines=json_lines):
            queue.put((index, message))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        queue.put((index, ("crash", traceback.format_exc())))


def analyze_series_parallel(paths: list[str], jobs: int, *, ca_bundle: str | None = None,
                            keylog_path: str | None = None, json_lines: bool = False,
                            progress: Callable[[int, int | None], None] | None = None
                            ) -> Iterator[tuple[str, dict[str, Any] | str]]:
    """(capture, record or message) for one series (`paths`: a folder's files), as `series.iter_series` yields
    them, by `jobs` processes (at most one per file). Workers build their trust store from `ca_bundle` and their
    key log from `keylog_path`; with `json_lines` they encode the records (tlsflow.shipping)."""
    timed, sizes, starts = plan_runs(paths, jobs)
    ctx = start_method()
    queue = ctx.Queue(QUEUE_BATCHES)
    workers = [ctx.Process(target=_group_main, args=(index, timed, starts, ca_bundle, keylog_path, queue,
                                                     json_lines), daemon=True)
               for index in range(len(starts))]
    for worker in workers:
        worker.start()
    given = _Given()
    try:
        try:
            yield from _merge_groups(worker_messages(queue, workers, paths[0]), timed, starts, sizes, given, progress)
            return
        except _Inexact:
            pass
    finally:
        shut_down(workers, queue)
    yield from _single_process(paths, given, ca_bundle, keylog_path, progress)


def groups_in_one_process(paths: list[str], jobs: int, *, trust: Any = None, keylog: Any = None,
                          json_lines: bool = False, batch_records: int = BATCH_RECORDS,
                          interleave: Callable[[list[Iterator[tuple[Any, ...]]]],
                                               Iterator[tuple[int, tuple[Any, ...]]]] | None = None
                          ) -> Iterator[tuple[str, dict[str, Any] | str]]:
    """The work of `analyze_series_parallel` in this process (tests): each run's messages as its worker makes them,
    put in order by the same merge. `interleave`: given every run's messages, the order in which the parent gets
    them as (run, message); by default the runs one after another."""
    from tlsflow.pipeline import RunCaches

    timed, sizes, starts = plan_runs(paths, jobs)
    caches = RunCaches(trust)
    every = [group_messages(timed, start, starts[k + 1] if k + 1 < len(starts) else len(timed), trust=trust,
                            keylog=keylog, caches=caches, json_lines=json_lines, batch_records=batch_records)
             for k, start in enumerate(starts)]
    ordered = ((k, m) for k, each in enumerate(every) for m in each) if interleave is None else interleave(every)
    given = _Given()
    try:
        yield from _merge_groups(ordered, timed, starts, sizes, given, None)
        return
    except _Inexact:
        pass
    from tlsflow.series import iter_series

    for capture, result in iter_series(paths, trust=trust, keylog=keylog):
        if (capture, result) not in given:
            yield capture, result


class _Inexact(Exception):
    """The runs' records cannot be placed as a single process's (see the module's docstring)."""


class _Given:
    """What the parent has given, for the fallback not to give it again: per file a bit per flow id (flow ids of
    a file count from 1 without gaps), and the messages' texts. A few bytes per thousand records, where a set of
    (file, flow id) pairs grew by ~100 bytes a record."""

    def __init__(self) -> None:
        self._flows: dict[str, bytearray] = {}
        self._texts: set[str] = set()

    def add(self, capture: str, result: dict[str, Any] | str) -> None:
        if result.__class__ is str:
            self._texts.add(result)  # type: ignore[arg-type]
            return
        flow_id = result["flow_id"]  # type: ignore[index]
        bits = self._flows.setdefault(capture, bytearray())
        if len(bits) <= flow_id >> 3:
            bits.extend(bytes((flow_id >> 3) + 1 - len(bits)))
        bits[flow_id >> 3] |= 1 << (flow_id & 7)

    def __contains__(self, item: tuple[str, dict[str, Any] | str]) -> bool:
        capture, result = item
        if result.__class__ is str:
            return result in self._texts
        flow_id = result["flow_id"]  # type: ignore[index]
        bits = self._flows.get(capture)
        return bits is not None and len(bits) > flow_id >> 3 and bool(bits[flow_id >> 3] & 1 << (flow_id & 7))


def _single_process(paths: list[str], given: _Given, ca_bundle: str | None,
                    keylog_path: str | None, progress: Callable[[int, int | None], None] | None
                    ) -> Iterator[tuple[str, dict[str, Any] | str]]:
    """The fallback: the series in this process; what was given already is not given again."""
    from tlsflow.api import _load_keylog, _trust_store
    from tlsflow.series import iter_series, series_progress

    factory = series_progress(paths, progress) if progress is not None else None
    for capture, result in iter_series(paths, trust=_trust_store(ca_bundle), keylog=_load_keylog(keylog_path),
                                       progress_factory=factory):
        if (capture, result) not in given:
            yield capture, result


class _Group:
    """A run's messages, until they can be placed: kept in `waiting` under the run's number (on disk past
    `waiting.WAITING_IN_MEMORY` records), and what `phantoms_of` reads of each record in memory: its file, flow id,
    4-tuple's hash, first frame, last packet's position and whether it closed idle, as 7 integers (56 bytes; as
    tuples a record's Meta took ~650). A hash that matched another 4-tuple's is caught when the record is placed
    (`give` compares the 4-tuples themselves, from the message)."""

    FIELDS = 7

    def __init__(self) -> None:
        self.metas = array.array("q")
        self.first_ts = array.array("d")  # each record's first packet's time
        self.first_syn: list[Any] = []  # each record's first packet when it is the client's SYN (else None)
        self.end: tuple[Any, ...] | None = None  # its "end" message, once its worker has ended

    def note(self, metas: list[Meta]) -> None:
        append, times, syns = self.metas.extend, self.first_ts.append, self.first_syn.append
        for file, flow_id, key, first, (last_file, last_frame), reason, first_ts, _lingered, first_syn in metas:
            append((file, flow_id, hash(key), first, last_file, last_frame, reason == "idle"))
            times(first_ts)
            syns(first_syn)


class Placement:
    """Which records of the runs are kept, under which flow id, decided run after run (the module's docstring): the
    local merge (`_merge_groups`) and the Dask cluster's series in runs (tlsflow.cluster_series) both place with it.
    Raises _Inexact where the runs cannot be placed as one process's."""

    def __init__(self, starts: list[int], files: int) -> None:
        from tlsflow.parallel_ranges import _passes_on_whole_intervals

        self.starts = starts
        self.files = files
        self.same_passes = _passes_on_whole_intervals()
        # Connections kept so far that go on past the start of a later run: 4-tuple's hash -> (4-tuple, position
        # of the last packet).
        self.across: dict[int, tuple[Any, Position]] = {}
        # Connections kept so far that their worker ended while they lingered past its run: 4-tuple's hash ->
        # (position of the last packet, its time, the linger, its sides). A packet on the 4-tuple within the linger,
        # in a later run, would have been one of theirs in a single process (but a SYN that `starts_anew`).
        self.lingered: dict[int, tuple[Position, float, float, Any]] = {}

    def phantoms(self, run: int, group: _Group, previous_end: tuple[Any, ...] | None
                 ) -> tuple[dict[int, list[int]], dict[int, tuple[Any, Position]]]:
        """The flows of run `run` (its records' metas in `group`, its "end" message there) that are phantoms, by
        file (their ids in increasing order), and the connections open across its start that tell them, once
        every earlier run's records were `settle`d (`previous_end`: the run before's "end" message)."""
        if run == 0:
            return {}, {}
        assert group.end is not None and previous_end is not None
        _end, first_clock, _cut, _evicted, _read, _ts, left_open = group.end
        cut_clock = previous_end[2]
        passes_right = self.same_passes and (first_clock is None
                                             or (cut_clock is not None and first_clock >= cut_clock))
        start = (self.starts[run], 0)
        open_across = {hashed: entry for hashed, entry in self.across.items() if entry[1] > start}
        out: dict[int, list[int]] = {}
        metas, times, syns, lingered = group.metas, group.first_ts, group.first_syn, self.lingered
        for at in range(0, len(metas), _Group.FIELDS):
            file, flow_id, hashed, first, last_file, last_frame, idle = metas[at:at + _Group.FIELDS]
            entry = open_across.get(hashed)
            if entry is not None and (file, first) <= entry[1]:
                if (last_file, last_frame) > entry[1]:
                    raise _Inexact  # the phantom took packets of a later connection on this 4-tuple
                out.setdefault(file, []).append(flow_id)
                continue
            if idle and not passes_right:
                raise _Inexact  # closed by an expiry pass that may not run at the same packet as in one process
            if lingered:
                self._check_linger(hashed, (file, first), times[at // _Group.FIELDS], syns[at // _Group.FIELDS])
        # The flows the worker did not follow past its run (joined mid-stream) must be phantoms: a connection of
        # this run among them would have lost its packets past the run.
        for file, flow_id, key, first, last, _reason, _first_ts, _lingered, _first_syn in left_open:
            entry = open_across.get(hash(key))
            if entry is None or entry[0] != key or (file, first) > entry[1] or last > entry[1]:
                raise _Inexact
            out.setdefault(file, []).append(flow_id)
        for ids in out.values():
            ids.sort()
        return out, open_across

    def _check_linger(self, hashed: int, first: Position, first_ts: float, first_syn: Any) -> None:
        """A flow of a later run, first seen at `first`, at time `first_ts`: a single process counts that packet
        in an earlier run's connection on its 4-tuple still lingering then, which that run's worker ended (unless
        it is a SYN that starts a new connection there)."""
        from tlsflow.parallel_ranges import starts_anew

        entry = self.lingered.get(hashed)
        if (entry is not None and first > entry[0] and first_ts - entry[1] <= entry[2]
                and not starts_anew(entry[3], first_syn)):
            raise _Inexact  # (a hash shared with another 4-tuple: read again in one process too, rare and exact)

    def settle(self, run: int, meta: Meta, phantoms: dict[int, list[int]],
               open_across: dict[int, tuple[Any, Position]]) -> int | None:
        """A record of run `run` (its Meta), given `phantoms(run)`: its flow id as one process numbers it, or None
        for a phantom. A kept connection that goes on past its run is noted for the later runs' phantoms."""
        file, flow_id, key, _first, last, _reason, _first_ts, lingered, _first_syn = meta
        ids = phantoms.get(file)
        if ids is not None:
            at = bisect.bisect_left(ids, flow_id)
            if at < len(ids) and ids[at] == flow_id:
                if open_across[hash(key)][0] != key:
                    raise _Inexact  # (two 4-tuples of one hash: `phantoms` cannot tell them apart)
                return None
            flow_id -= at
        if lingered is not None:
            self.lingered[hash(key)] = (last, *lingered)
        if last[0] >= (self.starts[run + 1] if run + 1 < len(self.starts) else self.files):
            hashed = hash(key)
            earlier = self.across.get(hashed)
            if earlier is None or earlier[1] < last:
                if earlier is not None and earlier[0] != key:
                    raise _Inexact  # (as above)
                self.across[hashed] = (key, last)
        return flow_id  # type: ignore[no-any-return]


def _merge_groups(messages: Iterator[tuple[int, tuple[Any, ...]]], timed: list[tuple[str, float | None]],
                  starts: list[int], sizes: list[int], given: _Given,
                  progress: Callable[[int, int | None], None] | None) -> Iterator[tuple[str, dict[str, Any] | str]]:
    """The runs' messages as (capture, record or message), the first run's as they come, each later run's once
    it and every run before it have ended. Raises _Inexact (see the module's docstring)."""
    from tlsflow.series import _check_follows

    runs = len(starts)
    groups = [_Group() for _ in range(runs)]
    waiting = Waiting(_records_in_message, prefix="tlsflow-series-")
    done_bytes = [0] * runs
    total = sum(sizes)
    placement = Placement(starts, len(timed))
    placed = 0  # the run being output
    kept_in_file: dict[int, int] = {}  # records given per file, for the damage messages
    paths = [path for path, _t in timed]

    def give(run: int, message: tuple[Any, ...], phantoms: dict[int, list[int]],
             open_across: dict[int, tuple[Any, Position]]) -> Iterator[tuple[str, Any]]:
        kind = message[0]
        if kind == "records":
            unsure = []
            for record, meta in zip(unpack_all(message[1]), message[2]):
                flow_id = placement.settle(run, meta, phantoms, open_across)
                if flow_id is None:
                    continue
                record["flow_id"] = flow_id
                file = meta[0]
                kept_in_file[file] = kept_in_file.get(file, 0) + 1
                if meta[7] is not None:
                    # Ended while it lingered past its run: not certain until every later run's flows are known
                    # (`Placement._check_linger`). Given at the end.
                    unsure.append((paths[file], record))
                    continue
                given.add(paths[file], record)
                yield paths[file], record
            if unsure:
                waiting.add(_UNSURE, ("unsure", unsure))
        elif kind == "message":
            given.add(message[1], message[2])
            yield message[1], message[2]
        else:  # "damage"
            text = damage_message(message[1], message[2], kept_in_file.get(message[3], 0))
            given.add(message[1], text)
            yield message[1], text

    try:
        for run, message in messages:
            kind = message[0]
            if kind == "crash":
                raise RuntimeError(f"--jobs worker {run} failed on the series of {paths[0]}:\n{message[1]}")
            group = groups[run]
            if kind == "end":
                group.end = message
                done_bytes[run] = message[4]
                if message[3]:
                    raise _Inexact  # this worker's flow table overflowed: it evicted other flows than one process
            else:
                if kind == "records":
                    done_bytes[run] = message[3]
                if run == placed == 0:
                    yield from give(0, message, {}, {})
                else:
                    if kind == "records":
                        group.note(message[2])
                    waiting.add(run, message)
            if progress is not None:
                progress(sum(done_bytes), total)
            while placed < runs and groups[placed].end is not None:
                if placed > 0:
                    first = starts[placed]  # (the overlap warning of one process, between the runs' files)
                    _check_follows(paths[first - 1], groups[placed - 1].end[5], paths[first], timed[first][1])  # type: ignore[index]
                    phantoms, open_across = placement.phantoms(placed, groups[placed], groups[placed - 1].end)
                    for waited in waiting.take(placed):
                        yield from give(placed, waited, phantoms, open_across)
                    group = groups[placed]
                    group.metas, group.first_ts, group.first_syn = array.array("q"), array.array("d"), []
                placed += 1
        if placed == runs:
            for _, unsure in waiting.take(_UNSURE):  # (every run placed: no later flow joins them)
                for capture, record in unsure:
                    given.add(capture, record)
                    yield capture, record
    finally:
        waiting.close()
    if placed != runs:
        raise RuntimeError(f"--jobs: a worker of the series of {paths[0]} ended without its records")


def _records_in_message(message: tuple[Any, ...]) -> int:
    return len(message[1]) if message[0] in ("records", "unsure") else 1


_UNSURE = -1  # the parent's `waiting` key of the records of connections ended while they lingered past their run
