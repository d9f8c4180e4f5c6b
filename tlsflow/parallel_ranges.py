"""`--jobs N` on one pcap or pcapng file by byte ranges: worker k reads only its part of the file, plus as far past
its end as its own connections go on.

Cuts: the file is cut into N ranges at record boundaries (`capture.split`, a hop over the record or block headers
that also gives each range's first frame number, and for pcapng the blocks its reader must read first). The
parent hops while worker 0 already analyses, and starts worker k as soon as cut k is known; worker k-1 learns
there where its range ends. As worker k starts later than worker k-1 by the time the hop took, its range is a
little shorter (`cut_shares`, with the hop's cost measured); and every range but the last is 2 % of the file
shorter still (`LAST_RANGE_RESERVE`), so that the last worker ends last. The command line starts the hop in a
child process before it imports the analysis (`tlsflow.hop_ahead`): the cuts are then known by the time the
workers start, all at once, on equal ranges (the last one twice `hop_ahead.RANGE_RESERVE_BYTES` longer).

Ownership: a worker owns the connections whose first packet (in a single process's view) lies in its range. It
analyses its range as a single process would, from an empty flow table; past its end it goes on reading, but
only for the connections it already tracks (every other packet just moves the clock, so that idle flows close at
the capture times of a single process; a SYN that reuses a tracked 4-tuple closes the old flow and is not
followed), and stops once it tracks none (or at the end of the file or at damage, where it ends them as a single
process would). So every connection it owns sees all of its packets and the same clock. Once every connection it
still tracks lingers after its close (`TcpReassembler.linger_timeout`, 5 s of capture in which a single process
only waits for a stray packet of theirs), it ends them there instead of reading on: a packet on one of their
4-tuples within the linger lies in a later range, where its worker opens a flow on it, and the parent, which learns
the time of every flow's first packet, then reads the file again in one process (`_Placer._classify`). Their
records are therefore given last, once every later worker's flows are known (`_Placer.unsure`). Expiry
passes run at the first packet of each whole second of capture time (TcpReassembler), so a worker that starts at
a cut runs them at the same packets as a single process as soon as it has seen one packet (checked: its first
pass against the previous worker's next pass at the cut; time running backwards across a cut fails the check).

A busy link: when the 4-tuples in flight at the first cut (`in_flight_at`, found by the parent, which passes them
to worker 1) are SHARDS_FROM_IN_FLIGHT or more, worker 0 is stopped before any record is given and the file is
shared out by connection instead (`parallel.analyze_file_sharded`).

Connections open across a cut: worker k starts from an empty table, so the packets after the cut of a connection
opened before it start a flow of their own in worker k (a phantom). The earlier worker's record of that
connection (same 4-tuple, first frame before the cut, last frame L after it) says which: a worker-k flow on that
4-tuple whose first frame is at most L is made of the earlier connection's packets, and is dropped. A phantom that
went on past L would have taken packets of a later connection on the 4-tuple (a single process opens a new flow
there: port reuse within the idle timeout, after a close that straddles the cut); that, a flow table overflow
(`max_flows`) in any worker (each worker's table holds other flows than a single process's), and a connection
closed idle by a worker whose clock check failed cannot be settled from the records: the parent then analyses
the file again in one process (records already given are not repeated). Exact, slow, and rare. Damage inside a
range (pcapng: within a block whose length the hop could pass) ends the run there, as in one process: the later
ranges do not count.

flow_id: worker 0 numbers its flows as a single process does (it starts at the first frame and opens flows in
frame order). Worker k>0 numbers its own flows the same way, phantoms included; once workers 0..k-1 have ended,
its phantoms are known and each of its records is renumbered after all earlier workers' flows and given as it
comes (`_Placer`), so that the parent writes them while the worker goes on instead of after it.
"""
from __future__ import annotations

import array
import bisect
import collections
import heapq
import inspect
import itertools
import math
import os
import pickle
import socket
import struct
import time
import traceback
from collections.abc import Callable, Collection, Generator, Iterator
from typing import Any

from tlsflow.capture.errors import damage_message
from tlsflow.capture.linktypes import ETHERNET
from tlsflow.gcpolicy import tune_gc
from tlsflow.hop_ahead import equal_cut_targets, window_targets
from tlsflow.hop_ahead import take as hop_taken_ahead
from tlsflow.parallel import BATCH_PACKETS, QUEUE_BATCHES, count_lane_but, shut_down, start_method
from tlsflow.shipping import pack_all, unpack_all
from tlsflow.waiting import Waiting

_NO_END = 1 << 62  # "no end frame known yet" / "reads to the end of the file"
_UNKNOWN = -1  # in the "end" message: the cut was not found (damage or end of file first): read to the end
_UNSURE = -1  # the parent's `waiting` key of the records of connections ended while they lingered (`_Placer.unsure`)


def splittable(path: str) -> bool:
    """A pcap or pcapng file on disk, uncompressed: byte ranges can be read independently."""
    from tlsflow.capture import CaptureError, open_capture

    if path == "-":
        return False
    try:
        with open_capture(path) as cap:
            return cuts_apart(cap)
    except (CaptureError, OSError):
        return False


def cuts_apart(cap: Any) -> bool:
    """`splittable` of a capture already open."""
    return not cap.stats.compressed and cap.total_bytes is not None


def _flow_key(a_ip: str, a_port: int, b_ip: str, b_port: int) -> tuple[tuple[str, int], tuple[str, int]]:
    """A connection's 4-tuple, the same from both directions."""
    one, other = (a_ip, a_port), (b_ip, b_port)
    return (one, other) if one <= other else (other, one)


def _range_analyzer_class() -> type:
    from tlsflow.pipeline import FlowAnalyzer

    class RangeAnalyzer(FlowAnalyzer):
        """A FlowAnalyzer whose records carry, under "_range", what the parent needs to place them: the 4-tuple,
        the last frame, why the flow closed, and its first packet as `starts_anew` takes it (client address, port
        and ISN, when that packet is the client's SYN; else None)."""

        def _record(self, conn: Any) -> dict[str, Any]:
            record = super()._record(conn)
            client = conn.client
            first_syn = ((conn.client_ip, conn.client_port, client.isn)
                         if client.syn_frame is not None and client.syn_frame == conn.first_frame else None)
            record["_range"] = (_flow_key(conn.client_ip, conn.client_port, conn.server_ip, conn.server_port),
                                conn.last_frame, conn.close_reason, first_syn)
            return record

    return RangeAnalyzer


Sides = tuple[tuple[str, int, int | None], ...]  # a connection's (address, port, ISN or None) of each side


def starts_anew(sides: Sides, syn: tuple[str, int, int | None] | None) -> bool:
    """Whether a flow whose first packet is `syn` (a SYN without ACK: sender's address, port, sequence number; None
    for any other packet) starts a new connection on the 4-tuple of a lingering one with those `sides`, rather than
    joining it, as TcpReassembler does (`_starts_new_connection`: its sender sent no SYN yet, or another ISN). A
    new connection there changes no row of a single process: the lingering one closes (its close reason alone is
    "port_reuse"), the new one is the later worker's own."""
    if syn is None:
        return False
    address, port, seq = syn
    for side_address, side_port, isn in sides:
        if side_address == address and side_port == port:
            return isn is None or isn != seq
    return True


class LingerEnd:
    """Past its range (or `--series` run), a worker follows its own connections only: once every one of them
    lingers after its close, it ends them (`records`) instead of reading on through their linger (5 s of capture:
    on the bench capture, 14 % of the file read for nothing by every worker but the last). A packet of one of them
    that a single process would have counted (within its linger) lies in a later range or run: the parent sees it
    there and reads the capture again (`_Placer._classify`, `parallel_series.Placement._check_linger`), which needs
    what `pop` gives of each."""

    __slots__ = ("_analyzer", "_blocker", "_ended")

    def __init__(self, analyzer: Any) -> None:
        self._analyzer = analyzer
        self._blocker: Any = None  # a followed 4-tuple whose connection was open at the last look
        self._ended: dict[int, tuple[float, Sides]] = {}  # own flow id -> (last packet's time, sides)

    def records(self, tracked: Collection[Any]) -> list[dict[str, Any]]:
        """The records of the connections of `tracked` (4-tuples), ended now if every one of them lingers; else
        none. The one found open is looked at first the next time, not every 4-tuple again."""
        reassembler = self._analyzer.reassembler
        if self._blocker is not None and reassembler.open_among((self._blocker,)) is not None:
            return []
        self._blocker = reassembler.open_among(tracked)
        if self._blocker is not None:
            return []
        events, ended = reassembler.end_lingering(tracked)
        self._ended.update(ended)
        return [record for record in map(self._analyzer._on_event, events) if record is not None]

    def pop(self, flow_id: int) -> tuple[float, float, Sides] | None:
        """(last packet's time, linger, sides) of the flow of this worker's id `flow_id` if it was ended so."""
        ended = self._ended.pop(flow_id, None) if self._ended else None
        return None if ended is None else (ended[0], self._analyzer.reassembler.linger_timeout, ended[1])


BATCH_RECORDS = 256  # records in a worker's message at most, where they come in bursts
SUSPECTS_REPORTED = 1024  # open flows opened without a SYN that a worker reports in each message, at most
SYN_FLAG = 0x02
SYN_ACK = 0x12
SPLIT_POLL_SECONDS = 0.01  # capture time between two looks for a split offer, where segments are counted
_FOREIGN = ("another worker's connection",)  # the lane of every segment a following worker does not track


class _FollowLanes(dict):  # type: ignore[type-arg]
    """TcpReassembler.lanes (raw 4-tuple -> lane of a flow that wants no more data, which the reader's fast lane
    counts without building a TcpPacket) past a worker's range: a segment of a 4-tuple the worker does not track
    gets the lane _FOREIGN, which `_follow_packets` takes as its time only (most segments past the range)."""

    tracked: frozenset[bytes] = frozenset()  # raw 4-tuples of tracked flows that have no lane

    def __bool__(self) -> bool:
        return True  # the reader looks up lanes only when there are some: here every key has one

    def get(self, key: bytes, default: Any = None) -> Any:
        lane = dict.get(self, key)
        if lane is None and key not in self.tracked:
            return _FOREIGN
        return lane


def _follow_packets(path: str, cap: Any, reassembler: Any, tracked: dict[tuple[str, int, str, int], int],
                    cut_offset: int, cut_frame: int, last_frame: int, cut_preamble: bytes
                    ) -> tuple[Any, Iterator[Any]]:
    """The packets after frame `last_frame` (past the range, which ends before `cut_frame` at byte `cut_offset`)
    for a worker that follows `tracked` only: a new reader from there that takes every segment of another
    4-tuple as its time only (no TcpPacket), unless an expiry pass is due; for Ethernet, `_follow_ethernet`,
    which does not even decode them. (A reader of its own, so that the range itself was read with the
    reassembler's fast lane untouched.) Returns (capture to close or None, packets)."""
    from tlsflow.capture import open_capture
    from tlsflow.capture.split import BlockHop, Cut, offset_after

    raw = wire_keys(tracked)
    preamble = b""
    if cap.link_type is None:  # pcapng: the blocks that a reader starting after that frame needs first
        with BlockHop(path, Cut(cut_offset, cut_frame - 1, cut_preamble)) as hop:
            after = hop.after_frame(last_frame)
        if after is None:
            raise ValueError(f"{path}: frame {last_frame} was read, but its block cannot be found again")
        offset, preamble = after.offset, after.preamble
    else:
        offset = offset_after(path, cut_offset, cut_frame - 1, last_frame)
    if cap.link_type == ETHERNET:
        return None, _follow_ethernet(path, offset, last_frame, raw, reassembler, cap.reassembler)
    counter = follow_counter(reassembler, raw)
    follow_cap = open_capture(path)
    try:
        follow_cap.reassembler = cap.reassembler  # IP fragments in flight go on being reassembled
        follow_cap.start_at(offset, last_frame, preamble)
        return follow_cap, follow_cap.packets(counter=counter)
    except BaseException:
        follow_cap.close()
        raise


def wire_keys(tracked: Any) -> set[bytes]:
    """The 4-tuples (source, source port, destination, destination port) as the reader's lanes key them: the
    addresses and ports as they sit on the wire."""
    raw = set()
    for src, sport, dst, dport in tracked:
        family = socket.AF_INET6 if ":" in src else socket.AF_INET
        raw.add(socket.inet_pton(family, src) + socket.inet_pton(family, dst) + struct.pack("!HH", sport, dport))
    return raw


# Keys found in the near window (two per connection that sent both ways) from which the far one is read too.
IN_FLIGHT_FAR_FROM_KEYS = 2000
# 4-tuples exchanging segments (not SYNs or RSTs alone: `in_flight_parts`) in flight at the first cut, near and
# far windows, from which `--jobs` shares the file out by connection (`parallel.analyze_file_sharded`: every worker
# reads every record, but analyses only its own connections, and passes the others' segments through the reader's
# fast lane) instead of by byte ranges. Why: a range's worker follows the connections open at its end to their
# close, which the next worker reads too (skipping them as phantoms); on a link with thousands of connections at
# once that is much of the rest of the file, and with 20,000 long ones worker 0 did nearly all the work. Measured
# (2 cores, --jobs 2, three alternated runs each, the twenty-second session), 4-tuples at the middle of the file ->
# byte ranges / by connection: 20,000 connections at once (1.3 GB, most alive for half of it): 31,565 -> 26-32 s /
# 15.8 s (one process 25-29 s); 5,000 at once: 12,057 -> 8.8-10.0 s / 6.0-8.2 s; 2,000 at once: 6,635 -> 4.9-6.7
# s / 4.6-6.5 s; 5,000 at once seen one way: 5,926 -> 8.2-11.8 s / 5.9-7.4 s; 1,000 at once: 4,720 -> 5.1-6.4 s
# / 5.8-6.4 s; 500 at once: 1,279 -> 4.6-4.9 s / 5.0-5.7 s; the 1 GB bench capture (48 at once): 457 -> 5.5-7.9 s
# / 6.7-8.6 s (there the ranges' extra work is smaller than reading every record twice). A flood of 200,000 SYNs
# (75,000 4-tuples in the window, none exchanging) keeps the ranges: its flow table overflows, which shards, each
# with a table of its own connections, would not see as one process does.
SHARDS_FROM_IN_FLIGHT = 5_000


def in_flight_at(path: str, windows: Windows, cut_frame: int) -> set[bytes]:
    """`flows_in_window` of the near window (`_windows`), and of the far one as well when the near one holds many
    connections (a busy link, whose connections send far apart)."""
    exchanging, other = in_flight_parts(path, windows, cut_frame)
    return exchanging | other


def in_flight_parts(path: str, windows: Windows, cut_frame: int) -> tuple[set[bytes], set[bytes]]:
    """`in_flight_at` in two parts: the 4-tuples of segments without SYN or RST (connections exchanging data or
    acknowledgements), and the others' (SYNs and RSTs alone, as in a flood or a scan, and other layouts)."""
    far, near = windows
    exchanging, other = _window_parts(path, near, cut_frame)
    if len(exchanging | other) > IN_FLIGHT_FAR_FROM_KEYS and far[0] < near[0]:  # (a 4-tuple may be in both)
        far_exchanging, far_other = _window_parts(path, far, near[1] + 1)
        exchanging |= far_exchanging
        other |= far_other
    return exchanging, other


def _in_flight(raw: set[bytes], pkt: Any) -> bool:
    """Whether the segment's 4-tuple, either way round, is in `raw` (`wire_keys`)."""
    family = socket.AF_INET6 if pkt.ip_version == 6 else socket.AF_INET
    try:
        src, dst = socket.inet_pton(family, pkt.src), socket.inet_pton(family, pkt.dst)
    except (OSError, ValueError):
        return False
    return (src + dst + struct.pack("!HH", pkt.sport, pkt.dport) in raw
            or dst + src + struct.pack("!HH", pkt.dport, pkt.sport) in raw)


def follow_counter(reassembler: Any, raw: set[bytes]) -> Any:
    """A segment counter (the reader's `counter`) for a worker that follows only the flows of the 4-tuples `raw`
    (`wire_keys`): their segments go to the reassembler's own lanes as before; every other 4-tuple's is taken as
    its time only (no TcpPacket) while no expiry pass is due. The reassembler's lanes are kept in a `_FollowLanes`
    from now on, so `_follow_ethernet` is then given this counter in the reassembler's place."""
    lanes = _FollowLanes(reassembler.lanes)
    lanes.tracked = frozenset(raw)
    reassembler.lanes = lanes  # the reassembler adds and removes its lanes in this one from now on
    return _FollowCounter(lanes, count_lane_but(reassembler, _FOREIGN), reassembler)


class _FollowCounter:
    """`follow_counter`'s counter: what the readers (and `_follow_ethernet`) read of a reassembler."""

    __slots__ = ("_reassembler", "count_lane", "lanes")

    def __init__(self, lanes: _FollowLanes, count_lane: Callable[..., bool], reassembler: Any) -> None:
        self.lanes = lanes
        self.count_lane = count_lane
        self._reassembler = reassembler

    @property
    def next_expiry(self) -> float:
        return self._reassembler.next_expiry  # type: ignore[no-any-return]


class _SeenLanes(dict):  # type: ignore[type-arg]
    """`lanes` for `flows_in_window`: every 4-tuple the reader looks up has a lane; the last one looked up is kept
    for the counter (`_WindowCounter`), which notes it if the segment lies before the cut."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[bytes] = set()
        self.last = b""

    def __bool__(self) -> bool:
        return True

    def get(self, key: bytes, default: Any = None) -> Any:
        self.last = key
        return _FOREIGN


class _WindowCounter:
    """`flows_in_window`'s segment counter: every segment before the cut is counted and its 4-tuple noted (the one
    its reader has just looked up), the first one at or past it is not (the reader then makes it a TcpPacket: the
    scan stops there). Why not noted at the lookup: the segment at the cut would be too, and a connection whose first
    packet is there, without a SYN, was taken for one in flight before the cut (kept cheap, then found to be of its
    own range: the file read again in one process; 5 of 148 runs of the public captures in 3 and 5 ranges). A
    lookup the reader makes for what is no TCP segment after all is not noted either."""

    __slots__ = ("cut_frame", "lanes")

    def __init__(self, cut_frame: int) -> None:
        self.lanes = _SeenLanes()
        self.cut_frame = cut_frame

    def count_lane(self, lane: Any, frame: int, ts: float, seq: int, ack: int, flags: int, window: int, ttl: int,
                   n: int) -> bool:
        if frame < self.cut_frame:
            self.lanes.seen.add(self.lanes.last)
            return True
        return False


def flows_in_window(path: str, window: tuple[int, int, bytes], cut_frame: int) -> set[bytes]:
    """The 4-tuples (as the reader's lanes key them: `wire_keys`) of the TCP segments from the record or block
    `window` (split.Cut's fields) up to frame `cut_frame`, excluded: the connections in flight at a cut there, but
    for those silent all that while. Read through the reader's fast lane: no TcpPacket for most segments."""
    exchanging, other = _window_parts(path, window, cut_frame)
    return exchanging | other


def _window_parts(path: str, window: tuple[int, int, bytes], cut_frame: int) -> tuple[set[bytes], set[bytes]]:
    """`flows_in_window` in the two parts of `in_flight_parts`."""
    from tlsflow.capture import CaptureError, open_capture

    counter = _WindowCounter(cut_frame)
    seen = counter.lanes.seen
    other: set[tuple[str, int, str, int]] = set()
    cap = open_capture(path)
    try:
        if window[1]:  # (else the window starts with the file, headers and all)
            cap.start_at(*window)
        for pkt in cap.packets(counter=counter):
            if pkt.__class__ is float:
                continue
            if pkt.frame >= cut_frame:
                break
            other.add((pkt.src, pkt.sport, pkt.dst, pkt.dport))  # a SYN, a RST, another layout
    except CaptureError:
        pass  # damage before the cut: the worker's own reading reports it where it matters
    finally:
        cap.close()
    return seen, wire_keys(other)


FOLLOW_CHUNK = 1 << 20


def _follow_ethernet(path: str, offset: int, frames_before: int, tracked: set[bytes], reassembler: Any,
                     fragments: Any) -> Generator[Any, None, int]:
    """Past the range of an Ethernet pcap file: the records from byte `offset` (frame `frames_before + 1`), as
    the reader would give them, except that a TCP segment (IPv4 untagged or with one 802.1Q tag, or IPv6 without
    extension headers) of a 4-tuple not in `tracked` (raw, as on the wire) is skipped when no expiry pass is due
    at its time: the record header and a few bytes of the frame are all that is read of most packets past the
    range. Segments skipped are TCP for certain (what decode takes for one), so the time of the last one comes out
    at the end of each chunk (the clock of a single process at the end of the file); so does that of a tracked
    flow's segment that the reassembler's fast lane counted (a time before the next expiry pass: only the clock
    needs it). Damage stops it with a CaptureError (the last worker reports it). (Before IPv6 and tagged frames were skipped too, worker 0 of a
    200 MB IPv6 capture spent 0.56 s decoding the packets past its range: --jobs 2 gained nothing there.)"""
    from tlsflow.capture import pcap
    from tlsflow.capture.decode import make_handlers
    from tlsflow.capture.errors import CorruptCaptureError, TruncatedCaptureError
    from tlsflow.capture.stats import CaptureStats

    with open(path, "rb") as f:
        header = pcap.parse_header(f.read(pcap.HEADER_SIZE))
        handle = make_handlers(CaptureStats(), fragments, counter=reassembler)(header.link_type)
        record = struct.Struct(header.byte_order + "III4x").unpack_from
        ip_fields = struct.Struct("!HBBHHHBB").unpack_from  # EtherType, version/IHL, TOS, total, id, frag, TTL, proto
        # Untagged IPv4, from the EtherType on: EtherType, version/IHL, total length, flags and fragment offset,
        # protocol, addresses and ports (the raw 4-tuple), TCP data offset. One call for what took five.
        untagged_ipv4 = struct.Struct("!HB1xH2xH1xB2x12s8xB").unpack_from
        ipv6_fields = struct.Struct("!IH").unpack_from  # version/traffic class/flow label, payload length
        # From the IPv4 TTL on (untagged, no options): TTL, sequence and acknowledgement numbers, flags, window.
        tcp_fields = struct.Struct("!B11x4xII1xBH").unpack_from
        lanes, count_lane = reassembler.lanes, reassembler.count_lane
        size = header.record_header_size
        units = float(header.ts_units)
        max_caplen = min(max(header.snaplen, pcap.STANDARD_MAX_CAPLEN), pcap.ABSOLUTE_MAX_CAPLEN)
        f.seek(offset)
        buf = b""
        pos = 0
        frame = frames_before
        # The last segment skipped: (seconds, fraction), or the time of one counted in a lane.
        skipped: tuple[int, int] | float | None = None

        def time_of(last: tuple[int, int] | float) -> float:
            return last if last.__class__ is float else last[0] + last[1] / units  # type: ignore[index,operator,return-value]

        # A record whose seconds field is below this lies before the next expiry pass (a record of the same second
        # may too: it is decoded, which is always right). Comparing integers spares the float per record.
        next_second = _whole_seconds_before(reassembler.next_expiry)
        while True:
            chunk = f.read(FOLLOW_CHUNK)
            if not chunk:
                if skipped is not None:
                    yield time_of(skipped)
                if pos != len(buf):
                    raise TruncatedCaptureError("file ends inside a packet record", offset + pos, frame + 1)
                return frame  # (the frames of the file: a --series worker numbers the next file's after them)
            buf = buf[pos:] + chunk
            offset += pos
            pos = 0
            end = len(buf)
            while end - pos >= size:
                seconds, fraction, caplen = record(buf, pos)
                if caplen > max_caplen:
                    if skipped is not None:
                        yield time_of(skipped)
                    raise CorruptCaptureError(f"packet record claims {caplen} captured bytes", offset + pos, frame + 1)
                start = pos + size
                stop = start + caplen
                if stop > end:
                    break
                frame += 1
                pos = stop
                # Most records: another worker's 4-tuple (looked at first), certainly TCP (what decode takes
                # for a segment): IPv4 without options, untagged or with one 802.1Q tag, or IPv6 without
                # extension headers.
                if seconds < next_second and caplen >= 54:
                    ethertype, version_ihl, total, frag, proto, key, offset_byte = untagged_ipv4(buf, start + 12)
                    if ethertype == 0x0800:
                        # (as below: IPv4 without options, not a fragment, TCP, its length within the frame,
                        # a valid data offset)
                        if (version_ihl == 0x45 and proto == 6 and not frag & 0x3FFF
                                and offset_byte >= 0x50 and ((offset_byte >> 4) << 2) + 20 <= total <= caplen - 14):
                            if key not in tracked:
                                skipped = (seconds, fraction)
                                continue
                            # A tracked flow's segment: its lane, as decode's handler for this layout would take
                            # it (handle below, when the lane does not take it).
                            lane = lanes.get(key)
                            if lane is not None:
                                ttl, seq, ack, flags, window = tcp_fields(buf, start + 22)
                                ts = seconds + fraction / units
                                if not flags & 0x06 and count_lane(lane, frame, ts, seq, ack, flags, window, ttl,
                                                                   total - ((offset_byte >> 4) << 2) - 20):
                                    skipped = ts
                                    continue
                    elif ethertype == 0x8100:
                        ip = start + 18
                        if caplen >= 58 and buf[ip + 12:ip + 24] not in tracked:
                            ethertype, version_ihl, _tos, total, _id, frag, _ttl, proto = ip_fields(buf, ip - 2)
                            data = ip + 20 + ((buf[ip + 32] >> 4) << 2)
                            if (ethertype == 0x0800 and version_ihl == 0x45 and proto == 6 and not frag & 0x3FFF
                                    and total >= 40 and ip + total <= stop and ip + 40 <= data <= ip + total):
                                skipped = (seconds, fraction)
                                continue
                    elif (ethertype == 0x86DD and caplen >= 74 and buf[start + 20] == 6
                            and buf[start + 22:start + 58] not in tracked):
                        version_flow, payload_length = ipv6_fields(buf, start + 14)
                        data = start + 74 + (((buf[start + 66] >> 4) - 5) << 2)
                        if (version_flow >> 28 == 6 and payload_length >= 20 and start + 54 + payload_length <= stop
                                and start + 74 <= data <= start + 54 + payload_length):
                            skipped = (seconds, fraction)
                            continue
                out = handle(buf, start, stop, frame, seconds + fraction / units)
                if out is not None:
                    if out.__class__ is float:  # a tracked flow's segment, counted in its lane
                        skipped = out
                        continue
                    skipped = None
                    yield out
                    next_second = _whole_seconds_before(reassembler.next_expiry)
            if skipped is not None:
                yield time_of(skipped)
                skipped = None


def _whole_seconds_before(when: float) -> int:
    """The whole seconds s for which every time in [s, s + 1) is before `when` are those below this."""
    if math.isnan(when) or when == -math.inf:
        return -1
    if when == math.inf:
        return 1 << 62
    return math.floor(when)


def _pickled(records: list[dict[str, Any]], json_lines: bool) -> tuple[int, bytes]:
    """A batch of records as a worker sends it: (how many, the packed records pickled). Pickled here, the parent
    can keep a batch that must wait (the later ranges', on disk past `waiting.WAITING_IN_MEMORY`) as the bytes
    they are: it unpickles each record once, when it places it (before: twice more, to the disk and back; ~0.1 s
    of the parent's CPU for the 1 GB capture)."""
    return len(records), pickle.dumps(pack_all(records, json_lines), protocol=pickle.HIGHEST_PROTOCOL)


def _range_main(path: str, index: int, start: tuple[int, int] | None, next_target: int | None, parent: Any,
                ca_bundle: str | None, keylog_path: str | None, queue: Any, meter: Any, json_lines: bool,
                window: Windows | None = None, in_flight: set[bytes] | None = None) -> None:
    import queue as queues

    tune_gc()
    # The parent may write this worker more than a pipe holds (a "watch" of thousands of phantoms on a busy link)
    # while this worker waits for it to read its own messages (the queue is full, or this process is exiting,
    # which waits for the queue to take its last ones): each then waited for the other for ever (20,000
    # connections at once, --jobs 2). So this worker reads the parent's messages while it waits to hand one over
    # (they wait in `inbox` for `range_messages`), and closes its end before it exits (the parent's write then
    # fails at once: `analyze_ranges.tell`).
    inbox = _Inbox(parent)
    try:
        from tlsflow.api import _load_keylog, _trust_store

        for message in range_messages(path, start, next_target, inbox, trust=_trust_store(ca_bundle),
                                      keylog=_load_keylog(keylog_path), meter=meter, json_lines=json_lines,
                                      splittable=True, window=window, in_flight=in_flight):
            while True:
                try:
                    queue.put((index, message), timeout=HAND_OVER_POLL_SECONDS)
                    break
                except queues.Full:
                    inbox.read_waiting()
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        queue.put((index, ("crash", traceback.format_exc())))
    finally:
        parent.close()


HAND_OVER_POLL_SECONDS = 0.05  # how long a worker waits for room in the queue before it reads the parent's messages


class _Inbox:
    """A range worker's end of the parent's pipe (`poll`, `recv`, as `range_messages` reads it), with the messages
    read while the worker waited to hand over its own (`_range_main`) kept for it, in order."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self._kept: collections.deque[Any] = collections.deque()

    def poll(self) -> bool:
        return bool(self._kept) or self._connection.poll()

    def recv(self) -> Any:
        return self._kept.popleft() if self._kept else self._connection.recv()

    def read_waiting(self) -> None:
        while self._connection.poll():
            self._kept.append(self._connection.recv())


# A range worker's meter, shared with the parent (doubles, no lock): when it began, the bytes of its range done, and
# a record or block boundary it has passed (`CaptureStats.resume_point`), written behind a sequence number that is
# odd meanwhile, so that the parent never pairs one point's offset with another's frames (`resume_point`).
METER_SLOTS = 6
_BEGAN, _DONE, _RESUME_SEQ, _RESUME_OFFSET, _RESUME_FRAMES, _RESUME_BLOCKS = range(METER_SLOTS)


def _measure(meter: Any, cap: Any, start_offset: int) -> None:
    meter[_DONE] = cap.bytes_read - start_offset
    point = cap.stats.resume_point
    if point is not None and point[0] != meter[_RESUME_OFFSET]:
        seq = meter[_RESUME_SEQ]
        meter[_RESUME_SEQ] = seq + 1
        meter[_RESUME_OFFSET], meter[_RESUME_FRAMES], meter[_RESUME_BLOCKS] = point
        meter[_RESUME_SEQ] = seq + 2


def resume_point(meter: Any) -> tuple[int, int, int] | None:
    """The last boundary a worker published in its meter (`CaptureStats.resume_point`); None if none yet (or the
    worker was writing it each time it was looked at)."""
    for _ in range(4):
        seq = meter[_RESUME_SEQ]
        if seq and not seq % 2:
            offset, frames, blocks = meter[_RESUME_OFFSET], meter[_RESUME_FRAMES], meter[_RESUME_BLOCKS]
            if meter[_RESUME_SEQ] == seq:
                return int(offset), int(frames), int(blocks)
    return None


def range_messages(path: str, start: tuple[int, int] | None, next_target: int | None, parent: Any, *,
                   trust: Any, keylog: Any = None, batch_packets: int = BATCH_PACKETS,
                   meter: Any = None, json_lines: bool = False, splittable: bool = False,
                   window: Windows | None = None, in_flight: set[bytes] | None = None
                   ) -> Iterator[tuple[Any, ...]]:
    """One worker's work, as messages: ("batch", records (`_pickled`), bytes of its range done, flows opened, flows
    evicted so far, next expiry pass after its first packet, frame, phantoms) and at the end ("end", error text or None,
    flows evicted, next expiry pass after its first packet, next expiry pass when it passed its end, whether the
    error came before the range's end, (flow id, last frame) of the flows of its range it left open: see
    `_Placer.finish`). Every flow's "opened" entry comes in the same message as its record or an
    earlier one. `frame`: every packet up to it has been taken; `phantoms`: (flow id, last frame) of the flows
    the parent asked to watch that are open.

    `start`: (byte offset, frames before it, pcapng preamble) of the range's first record or block
    (split.Cut), None for the start of the file.
    `next_target`: a byte offset at or after which the next range starts (None: the range runs to the end of
    the file).
    `parent`: the parent's messages (a pipe end: poll, recv): ("end", (first frame, byte offset, pcapng
    preamble) of the next range, or `_UNKNOWN`: there is no next range after all), as soon as its hop has found
    the cut; ("watch", [(flow id, src, sport, dst, dport)]): flows of this worker that are phantoms (`_Placer`).
    `meter`: shared (start time, bytes done, a record boundary passed: METER_SLOTS) that the parent reads to weigh
    the cuts (`analyze_ranges`) and to hop to a split's cut (`_Splitter`).
    Records go packed (`tlsflow.shipping`), with their JSON text when `json_lines`.
    `splittable`: once it knows where its range ends, the parent may offer to end it earlier, at a cut ahead, for a
    new worker to take the rest (`_Splitter`): ("split", (first frame, byte offset, pcapng preamble) of the cut).
    The worker takes it while nothing at or past the cut has been read, and answers ("split", taken) at once;
    its `meter`'s bytes done are brought up to date each time it looks for an offer.
    `window`: the far and the near window's first record or block before `start` (split.Cut's fields, see
    `_windows`): the connections with segments from there to the range's start are in flight at the cut
    (`in_flight_at`), another worker's as a rule. A flow this worker
    opens on one of those 4-tuples without a SYN is made cheap: no TLS parse (its consumer wants no data) and not
    followed past the range's end. The parent drops it as a phantom; one that turns out not to be (a connection of
    this range after all) makes the parent analyse the file in one process (`_Placer`). Without it, on a busy link
    (thousands of connections at once) a later worker spent most of its time parsing other workers' connections
    again, and following them to the end of the file: `--jobs 2` was slower than one process.
    `in_flight`: those 4-tuples, when the parent has found them already (`in_flight_at` of `window`).
    """
    from tlsflow.capture import CaptureError, open_capture

    analyzer = _range_analyzer_class()(path, trust=trust, keylog=keylog)
    reassembler = analyzer.reassembler
    first_frame = start[1] + 1 if start is not None else 1
    end_frame = _NO_END  # the first frame of the next range, once known
    end_preamble = b""  # pcapng: what a reader starting there reads first (split.Cut.preamble)
    end_known = next_target is None
    start_offset = start[0] if start is not None else 0
    # Flows this worker follows, by 4-tuple in both directions -> first frame.
    tracked: dict[tuple[str, int, str, int], int] = {}
    # The time of the next expiry pass after this worker's first packet, and when it reached its end: the parent
    # compares them to tell whether this worker's passes run at the same packets as a single process's.
    first_clock: float | None = None
    cut_clock: float | None = None
    records: list[dict[str, Any]] = []
    # The flows this worker opened since its last message, for the parent to number its records as they come
    # (`_Placer`): (flow_id in this worker, src, sport, dst, dport, first frame, its time, and (src, sport, seq)
    # when it is a SYN without ACK: `starts_anew`). Worker 0 numbers its flows as a single process does already.
    report_opened = start is not None
    opened: list[tuple[Any, ...]] = []
    error: str | None = None
    watched: dict[int, Any] = {}  # flow id -> Connection, phantoms the parent asked about
    # Flows this worker opened without a SYN (any phantom but one opened by a retransmitted SYN), reported with the
    # watched ones before the parent knows which are phantoms: its messages wait until the earlier workers end,
    # and these reports then let it give the records that a phantom holds back (a connection's last ACK alone past
    # the cut makes a phantom open to the end of the file) instead of keeping them all until the end.
    suspects: dict[int, Any] = {}
    position = 0  # the frame of the last packet taken
    # Raw 4-tuples in flight at the range's start (`window`), and the flows made cheap on them (own ids).
    if in_flight is None:
        in_flight = in_flight_at(path, window, first_frame) if window is not None and start else set()
    cheap: set[int] = set()
    split_taken: bool | None = None  # the answer to the parent's offer to split, until given
    poll_at = -math.inf  # splittable: the capture time from which a counted segment makes it look for an offer
    lingering = LingerEnd(analyzer)  # past the range

    def listen(block: bool) -> None:
        """The parent's messages so far; with `block`, until the end of the range is known."""
        nonlocal end_frame, end_known, stop_offset, end_preamble, split_taken
        while (block and not end_known) or parent.poll():
            kind, value = parent.recv()
            if kind == "end":
                if value == _UNKNOWN:
                    end_frame, stop_offset = _NO_END, cap.total_bytes or 0
                else:
                    end_frame, stop_offset, end_preamble = value
                end_known = True
            elif kind == "split":
                # Everything taken so far lies before what the reader has read (`bytes_read`): a cut at or after
                # that (and before the range's end) ends this range as if it had been known from the start.
                split_taken = end_known and past is None and cap.bytes_read <= value[1] and value[0] < end_frame
                if split_taken:
                    end_frame, stop_offset, end_preamble = value
            else:
                for own_id, *key in value:
                    conn = reassembler.connection(*key)
                    if conn is not None and conn.flow_id == own_id:
                        watched[own_id] = conn

    def phantoms() -> list[tuple[int, int]]:
        listen(block=False)
        return [(own_id, conn.last_frame) for flows in (watched, suspects) for own_id, conn in flows.items()]

    def take_one(record: dict[str, Any]) -> None:
        (a_ip, a_port), (b_ip, b_port) = record["_range"][0]
        first = record["first_frame"]
        if watched:
            watched.pop(record["flow_id"], None)
        if suspects:
            suspects.pop(record["flow_id"], None)
        for direction in ((a_ip, a_port, b_ip, b_port), (b_ip, b_port, a_ip, a_port)):
            if tracked.get(direction) == first:
                del tracked[direction]
        if first_frame <= first < end_frame:
            if cheap and record["flow_id"] in cheap:
                record["_range"] = (*record["_range"], True)  # (for `_Placer`: it must be a phantom)
            elif (lingered := lingering.pop(record["flow_id"])) is not None:
                # (for `_Placer`: no later worker's flow on its 4-tuple may begin within its linger)
                record["_range"] = (*record["_range"], False, *lingered)
            records.append(record)

    def take(new: Any) -> None:
        for record in new:
            take_one(record)

    def clock(ts: float) -> None:
        """A segment the reassembler counted without a TcpPacket, or another worker's: only its time matters."""
        analyzer.last_ts = ts
        if ts >= reassembler.next_expiry:
            take(analyzer.tick(ts))

    cap = open_capture(path)
    follow_cap = None
    stopped = False  # past its range, nothing of this worker's open any more: the rest is other workers'
    past = None  # the first TcpPacket past the range
    try:
        if start is not None:
            cap.start_at(*start)
        # Where the range ends, for the progress bar (next_target until the cut is known).
        stop_offset = next_target if next_target is not None else (cap.total_bytes or 0)
        n = 0
        if meter is not None:
            meter[_BEGAN] = time.monotonic()
        try:
            lanes = "counter" in inspect.signature(cap.packets).parameters and isinstance(
                getattr(reassembler, "lanes", None), dict)
            # The reassembler's own fast lane in the range (see `_follow_packets` for past it).
            packets = cap.packets(counter=reassembler) if lanes else cap.packets(count_only=reassembler.count_only)
            add = reassembler.add
            on_event = analyzer._on_event
            secrets = cap.secrets  # pcapng decryption secrets blocks read so far (the preamble's first)
            secrets_seen = 0
            for pkt in packets:
                if pkt.__class__ is float:
                    clock(pkt)  # type: ignore[arg-type]
                else:
                    if len(secrets) != secrets_seen:  # as pipeline.iter_flow_records
                        analyzer.add_secrets(secrets[secrets_seen:])
                        secrets_seen = len(secrets)
                    if not end_known and cap.bytes_read >= next_target:
                        # This packet may lie past the cut: wait for the parent's hop to say where the cut is
                        # (it is far ahead as a rule).
                        listen(block=True)
                    if pkt.frame >= end_frame:
                        past = pkt
                        break
                    # FlowAnalyzer.feed inlined, as in pipeline.iter_flow_records: no generator per packet.
                    before = reassembler.flows_opened
                    analyzer.last_ts = pkt.ts
                    for event in add(pkt):
                        record = on_event(event)
                        if record is not None:
                            take_one(record)
                    if first_clock is None:
                        first_clock = reassembler.next_expiry
                    if reassembler.flows_opened != before:
                        if in_flight and not pkt.flags & SYN_FLAG and _in_flight(in_flight, pkt):
                            # Most likely the rest of a connection an earlier worker follows: counted only.
                            conn = reassembler.connection(pkt.src, pkt.sport, pkt.dst, pkt.dport)
                            if conn is not None and conn.flow_id == before + 1:
                                conn.wants_data = False
                                conn.handshake = None
                                cheap.add(before + 1)
                        if before + 1 not in cheap:
                            tracked[(pkt.src, pkt.sport, pkt.dst, pkt.dport)] = pkt.frame
                            tracked[(pkt.dst, pkt.dport, pkt.src, pkt.sport)] = pkt.frame
                        if report_opened:
                            opened.append((before + 1, pkt.src, pkt.sport, pkt.dst, pkt.dport, pkt.frame, pkt.ts,
                                           (pkt.src, pkt.sport, pkt.seq) if pkt.flags & SYN_ACK == SYN_FLAG else None))
                            if not pkt.flags & SYN_FLAG and len(suspects) < SUSPECTS_REPORTED:
                                conn = reassembler.connection(pkt.src, pkt.sport, pkt.dst, pkt.dport)
                                if conn is not None and conn.flow_id == before + 1:
                                    suspects[before + 1] = conn
                    position = pkt.frame
                n += 1
                if meter is not None and not n & 0x3FF:
                    _measure(meter, cap, start_offset)
                # A splittable worker looks for the parent's offer every 256 packets, or at a counted segment
                # SPLIT_POLL_SECONDS of capture time after it last looked (where the reader counts most segments
                # itself, as in long transfers, few packets come out of it).
                if splittable and (not n & 0xFF or (pkt.__class__ is float and pkt >= poll_at)):
                    if pkt.__class__ is float:
                        poll_at = pkt + SPLIT_POLL_SECONDS  # type: ignore[operator]
                    if meter is not None:
                        _measure(meter, cap, start_offset)
                    listen(block=False)
                    if split_taken is not None:
                        yield ("split", split_taken)
                        split_taken = None
                if n >= batch_packets:
                    n = 0
                    yield ("batch", _pickled(records, json_lines), min(cap.bytes_read, stop_offset) - start_offset, opened,
                           reassembler.flows_evicted, first_clock, position, phantoms())
                    records, opened = [], []
                    if split_taken is not None:  # (an offer read with the phantoms' reports)
                        yield ("split", split_taken)
                        split_taken = None
            if past is not None:
                # Past the range: only the connections this worker tracks, until there are none.
                cut_clock = reassembler.next_expiry  # a single process's, when this worker's is
                if lanes:
                    follow_cap, packets = _follow_packets(path, cap, reassembler, tracked, stop_offset, end_frame,
                                                          past.frame, end_preamble)
                for pkt in itertools.chain((past,), packets):
                    if pkt.__class__ is float:
                        clock(pkt)  # type: ignore[arg-type]
                    else:
                        if (pkt.src, pkt.sport, pkt.dst, pkt.dport) in tracked:
                            # A flow this opens (port reuse, or after the tracked one timed out) is not followed.
                            take(analyzer.feed(pkt))
                        else:
                            clock(pkt.ts)
                        position = pkt.frame
                    if tracked and (pkt.__class__ is float or not n & 0xFF):
                        take(lingering.records(tracked))
                    if not tracked:
                        stopped = True
                        break
                    n += 1
                    # Past the range, records come in bursts (the lingering connections closing): sent in small
                    # batches, the parent writes them while this worker goes on.
                    if n >= batch_packets or len(records) >= BATCH_RECORDS:
                        n = 0
                        yield ("batch", _pickled(records, json_lines), stop_offset - start_offset, opened, reassembler.flows_evicted,
                               first_clock, position, phantoms())
                        records, opened = [], []
        except CaptureError as exc:
            error = str(exc)
        if not stopped:
            # The end of the file (or damage) closes every open connection at once: in small batches too.
            for record in analyzer.finish():
                take_one(record)
                if len(records) >= BATCH_RECORDS:
                    yield ("batch", _pickled(records, json_lines), stop_offset - start_offset, opened, reassembler.flows_evicted,
                           first_clock, position, [])
                    records, opened = [], []
        yield ("batch", _pickled(records, json_lines), stop_offset - start_offset, opened, reassembler.flows_evicted, first_clock,
               position, [])
    finally:
        cap.close()
        if follow_cap is not None:
            follow_cap.close()
    # Damage before the range's end (pcapng: inside a block whose length the parent's hop could pass): a single
    # process stops there, so no later range counts.
    # (A range that ends at a split counts as one with a next range. An offer not answered by then is refused: the
    # parent takes this message so.)
    broke_in_range = error is not None and past is None and (next_target is not None or end_frame != _NO_END)
    # Stopped past its range, with none of its own connections open: the flows of its range still open give no
    # record (phantoms kept cheap, as a rule: not followed past the range, so their last frames are final).
    left_open = ([(flow_id, last) for flow_id, first, last in reassembler.open_flow_frames()
                  if first_frame <= first < end_frame] if stopped else [])
    yield ("end", error, reassembler.flows_evicted, first_clock, cut_clock, broke_in_range, left_open)


def cut_shares(jobs: int, hop_ratio: float) -> list[float]:
    """Where to cut (shares of the file) so that the workers finish together, when the hop costs `hop_ratio` of
    the analysis per byte: worker k starts once the parent's hop has reached cut k, so each range is a little
    shorter than the one before. With b_k the k-th cut and u the time of each worker (1 = the whole file's
    analysis): b_1 = u, b_k+1 = b_k + u - r b_k, so b_k = u (1 - (1 - r)^k) / r, and b_jobs = 1 gives u."""
    r = min(max(hop_ratio, 0.0), 0.5)
    if r < 1e-9:
        return [k / jobs for k in range(1, jobs)]
    u = r / (1 - (1 - r) ** jobs)
    return [u * (1 - (1 - r) ** k) / r for k in range(1, jobs)]


# When the parent hops while worker 0 already runs (the API; the command line hops ahead: tlsflow.hop_ahead),
# every range but the last is made this share of the file shorter still, so that its worker ends first: it goes
# on past its cut while its connections close, and the parent can number the last worker's records only once
# every earlier worker has ended. (1 GB bench capture: 0 -> 2 % gave 3.92 -> 3.85 s on average over 3 runs each;
# the first range ended first in every run from 1.5 % up.)
LAST_RANGE_RESERVE = 0.02
DEFAULT_HOP_RATIO = 0.05  # the hop's cost per byte over the analysis's, when it could not be measured


def analyze_ranges(path: str, jobs: int, *, ca_bundle: str | None = None, keylog_path: str | None = None,
                   progress: Callable[[int, int | None], None] | None = None,
                   cut_targets: list[int] | None = None, json_lines: bool = False
                   ) -> Iterator[dict[str, Any] | str]:
    """`analyze_file_parallel` by byte ranges. `cut_targets`: the byte offsets to cut at (tests); by default the
    cuts balance the workers (`cut_shares`) with the hop's cost measured on the way to the first one."""
    from tlsflow.capture.split import open_hop

    total = os.path.getsize(path)
    ctx = start_method()
    queue = ctx.Queue(QUEUE_BATCHES)
    workers: list[Any] = []
    pipes: list[Any] = []
    starts: list[int] = [1]  # first frame of each range

    # Worker 0's start time and bytes done, in shared memory: how fast it analyses weighs the cuts.
    meter = ctx.Array("d", METER_SLOTS, lock=False)

    def launch(start: tuple[int, int, bytes] | None, next_target: int | None,
               window: Windows | None = None, in_flight: set[bytes] | None = None) -> None:
        receive, send = ctx.Pipe(duplex=False)
        # Each worker's pace, for `_Splitter` (worker 0's also weighs the cuts).
        own_meter = ctx.Array("d", METER_SLOTS, lock=False) if workers else meter
        worker = ctx.Process(target=_range_main, args=(path, len(workers), start, next_target, receive, ca_bundle,
                                                       keylog_path, queue, own_meter, json_lines, window, in_flight),
                             daemon=True)
        worker.start()
        # Only the worker reads this pipe: once it has stopped, a message to it must fail rather than wait (see
        # `_range_main`), and workers started later must not inherit this end.
        receive.close()
        workers.append(worker)
        pipes.append(send)
        splitter.started(start, own_meter)

    def tell_end(index: int, end: tuple[int, int, bytes] | None) -> None:
        """Worker `index`'s range ends where the range `end` starts (None: at the end of the file)."""
        try:
            pipes[index].send(("end", _UNKNOWN if end is None else end))
        except OSError:
            pass  # it has ended already (damage, or a crash its messages report)
        splitter.ends_at(index, end)

    def launch_split(cut: Any, end: tuple[int, int, bytes] | None, window: Any) -> None:
        launch((cut.offset, cut.frames_before, cut.preamble), None if end is None else end[1], window)
        if end is not None:
            tell_end(len(workers) - 1, end)

    splitter = _Splitter(path, total, jobs, pipes, launch_split)
    shards = False  # the file is shared out by connection instead (`SHARDS_FROM_IN_FLIGHT`)

    # The command line's hop, started while it was still importing (tlsflow.hop_ahead): then every cut is
    # known at once, the workers start together and the ranges are equal shares.
    ahead = hop_taken_ahead(path, jobs) if cut_targets is None else None
    try:
        # Every balanced cut lies at or after its equal share (later ranges start later, so they are shorter):
        # a worker may read up to its next equal share before it must know where its range ends.
        lower = cut_targets if cut_targets is not None else equal_cut_targets(total, jobs)
        launch(None, lower[0] if lower else None)
        if lower and ctx.get_start_method() == "fork":
            warm_certificate_checks()
        with ahead if ahead is not None else open_hop(path) as hop:
            targets = lower
            if cut_targets is None and lower and ahead is None:
                # Hop to the first equal share, timed, and see how fast worker 0 analyses meanwhile.
                began = time.monotonic()
                hop.to(lower[0])
                hop_rate = lower[0] / max(time.monotonic() - began, 1e-6)
                worker_began, done = meter[_BEGAN], meter[_DONE]
                ratio = DEFAULT_HOP_RATIO
                if done and worker_began:
                    ratio = done / max(time.monotonic() - worker_began, 1e-6) / hop_rate
                targets = [max(int(total * (share - LAST_RANGE_RESERVE)), low)
                           for share, low in zip(cut_shares(jobs, ratio), lower)]
            for k, target in enumerate(targets):
                window = _windows(hop, target)
                cut = hop.to(target) if window is not None else None
                if cut is None:
                    tell_end(len(pipes) - 1, None)  # the last range started runs to the end (or to the damage)
                    break
                in_flight = None
                if k == 0 and cut_targets is None:
                    # Found here rather than by worker 1 (which takes them), to choose how to share the file out.
                    # Connections that exchange segments count, not SYNs alone: a flood fills the flow table, which
                    # the ranges see and shards would not (each shard's table holds its own connections only).
                    exchanging, other = in_flight_parts(path, window, cut.frames_before + 1)  # type: ignore[arg-type]
                    if len(exchanging) >= SHARDS_FROM_IN_FLIGHT:
                        shards = True
                        break
                    in_flight = exchanging | other
                tell_end(len(pipes) - 1, (cut.frames_before + 1, cut.offset, cut.preamble))
                starts.append(cut.frames_before + 1)
                launch((cut.offset, cut.frames_before, cut.preamble), lower[k + 1] if k + 1 < len(lower) else None,
                       window, in_flight)
        if shards:
            # No record given yet: worker 0 is stopped, and the file is shared out by connection instead.
            shut_down(workers, queue)
            from tlsflow.parallel import analyze_file_sharded

            yield from analyze_file_sharded(path, jobs, ca_bundle=ca_bundle, keylog_path=keylog_path,
                                            progress=progress, json_lines=json_lines)
            return

        def tell(index: int, message: tuple[str, Any]) -> None:
            try:
                pipes[index].send(message)
            except OSError:
                pass  # the worker has ended: it has nothing more to say about its phantoms

        yield from _merge_ranges(_range_messages_with_splits(queue, workers, path, splitter), len(workers), starts,
                                 path, total, progress, lambda: _stop(workers), ca_bundle, keylog_path, tell=tell)
    finally:
        if ahead is not None:
            ahead.close()  # (closed already, unless launching a worker failed before the hop's block)
        shut_down(workers, queue)


def warm_certificate_checks() -> None:
    """What checks certificate chains, imported and loaded in the parent (cryptography's X.509 code and the default
    trust store), so that the workers it forks from now on have it. Why: a worker loads it at its first chain
    (0.051-0.058 s of CPU, five runs, in a process with the rest of the analysis imported), and the workers after
    the first start only once the hop has found their cut, which on the command line comes ~0.1 s after worker 0
    has started (`tlsflow.hop_ahead`): the parent does it in that wait instead, once, and the last worker, whose
    end the run waits for, starts without that cost (1 GB bench capture, --jobs 2, eleven and ten alternated runs:
    medians 3.35 -> 3.24 s, within the machine's noise)."""
    from analyzers.certchecks import TrustStore

    TrustStore.default()


# A split of a range (`_Splitter`) is offered only when its worker, at its own pace so far, has at least this long
# to read: below that, the new worker's start and the following past the cut eat up the gain. Its end of run (the
# connections closing, then those lingering ended at once: ~0.2-0.3 s on the 1 GB bench capture) is not in that
# estimate; whoever ends the file has one. (0.5 s until the twenty-first session, when the split took ~0.35 s to
# start: worker 1 of --jobs 2 then often ended 0.7-0.9 s after worker 0, unsplit.)
MIN_SPLIT_SECONDS = 0.25
SPLIT_ANSWER_SECONDS = 0.2  # how long the parent waits for the answer to an offer before it goes on merging
SPLIT_MARGIN_BYTES = 12 << 20  # a split's cut lies at least this far past what that range's worker has read
SPLIT_START_SECONDS = 0.05  # what a new worker takes to start (the hop, the fork) before it reads
# What the split worker does once at its new cut, which the new worker at the end of the file barely has: follow its
# connections until they only linger, then end those (its records of the last 5 s of capture). Measured on the
# 1 GB bench capture: ~0.45 s from the cut to its end, against ~0.1 s for the new worker past its reading.
SPLIT_FOLLOW_SECONDS = 0.3
SPLIT_PACE_BYTES = 4 << 20  # a worker's pace is taken once it has read this much


class _Range:
    """What the parent knows of a running range (`_Splitter`)."""

    __slots__ = ("end", "meter", "running", "start")

    def __init__(self, start: Any, end: tuple[int, int, bytes] | None, meter: Any) -> None:
        self.start = start  # split.Cut where it starts, None for the start of the file
        self.end = end  # (first frame, byte offset, pcapng preamble) of the next range; None: the end of the file
        self.meter = meter  # its worker's (start time, bytes done)
        self.running = True


class _Splitter:
    """Dynamic ranges. The cuts are equal shares of the file's bytes, but a byte costs more to analyse where
    connections are short (handshakes, verdicts) than in long transfers: a capture whose first half is a few big
    downloads and second half many short connections left worker 0 idle after 1.1 s of a 3.6 s run (--jobs 2,
    1.1x), and the same halves the other way round left worker 1 idle. So when a worker ends while another still
    has far to go (at its own pace so far), the rest of that range is cut in two: the parent hops to the cut from
    the range's start and offers it to its worker ("split"); taken (nothing at or past the cut read yet), that
    range now ends there, and a new worker takes the rest up to where the range ended, as a range of its own right
    after it (the merge keeps the ranges in file order). One offer at a time; none after any worker's error."""

    def __init__(self, path: str, total: int, jobs: int, pipes: list[Any], launch: Callable[[Any, Any], None]
                 ) -> None:
        self.path, self.total, self.jobs = path, total, jobs
        self._pipes = pipes
        self._launch = launch  # (cut, end, window): start a worker from cut, its range ending at end
        self._ranges: list[_Range] = []  # by worker
        self._offered: tuple[int, Any, Any] | None = None  # (worker, cut, its window) offered, until it answers
        self._free = False  # a worker has ended: a new one may start
        self._refused = 0
        self._stopped = False
        self._pcapng: bool | None = None  # the file's format, learnt at the first offer
        # pcapng: the blocks a hop from each range's start reads first, by that start's offset (`_preamble`), and
        # the cut past the blocks that open the file (the first range's start), once looked up.
        self._preamble_blocks: dict[int, int] = {}
        self._opening: Any = None

    def started(self, start: tuple[int, int, bytes] | None, meter: Any) -> None:
        """The next worker was started, on the range from `start` (None: the start of the file)."""
        from tlsflow.capture.split import Cut

        self._ranges.append(_Range(Cut(*start) if start is not None else None, None, meter))

    def ends_at(self, index: int, end: tuple[int, int, bytes] | None) -> None:
        """Worker `index` was told where its range ends (None: at the end of the file)."""
        self._ranges[index].end = end

    @property
    def offered_to(self) -> int | None:
        """The worker offered a cut that has not answered yet, if any."""
        return self._offered[0] if self._offered is not None else None

    @property
    def wanting(self) -> bool:
        """A worker has ended and no offer is out: `offer` may make one once the workers' pace is known."""
        return self._free and not self._stopped and self._offered is None

    def ended(self, index: int, message: tuple[Any, ...], running: int) -> None:
        """Worker `index` sent its "end"; `running` workers are left."""
        self._ranges[index].running = False
        if self._offered is not None and self._offered[0] == index:
            self._offered = None  # (ended without answering: refused)
        if message[1] is not None:
            self._stopped = True  # an error: the ranges after it may not count
            return
        self._free = running < self.jobs
        self.offer()

    def offer(self) -> None:
        """Offer the worker with the most left to do (MIN_SPLIT_SECONDS or more) a cut in the middle of it."""
        if not self.wanting:
            return
        now = time.monotonic()
        best = None
        for index, known in enumerate(self._ranges):
            if not known.running:
                continue
            began, done = known.meter[_BEGAN], known.meter[_DONE]
            if not began or done < SPLIT_PACE_BYTES or now <= began:
                if began and now - began < 1.0:
                    return  # a worker's pace is not known yet (`_range_messages_with_splits` asks again shortly)
                continue
            rate = done / (now - began)  # bytes per second, this worker's so far
            position = (known.start.offset if known.start is not None else 0) + int(done)
            end = known.end[1] if known.end is not None else self.total
            left = (end - position) / rate
            if left >= MIN_SPLIT_SECONDS and (best is None or left > best[0]):
                best = (left, index, known, position, rate, end)
        if best is None:
            self._free = False  # (asked again when another worker ends)
            return
        _left, index, known, position, rate, end = best
        target = self._target(position, rate, end)
        if target >= end:
            self._free = False
            return
        from tlsflow.capture.split import Cut, open_hop

        # From the last boundary that worker passed rather than from its range's start: the hop to a cut in the
        # second half of the last range crossed a quarter of the file (0.2-0.5 s of a 1 GB capture's), while the
        # free worker waited.
        start = known.start
        point = resume_point(known.meter)
        if point is not None and point[0] > (start.offset if start is not None else 0):
            preamble = self._preamble(start, point[2])
            if preamble is not None:
                start = Cut(point[0], point[1], preamble)
        with open_hop(self.path, start) as hop:
            window = _windows(hop, target, position)
            cut = hop.to(target) if window is not None else None
        if cut is None or cut.offset >= end:
            self._free = False  # the end of the file or damage before the target
            return
        try:
            self._pipes[index].send(("split", (cut.frames_before + 1, cut.offset, cut.preamble)))
        except OSError:
            return  # the worker has ended meanwhile: its "end" comes next
        self._offered = (index, cut, window)

    def _preamble(self, start: Any, blocks: int) -> bytes | None:
        """What a hop from a boundary that the worker of the range from `start` passed, with `blocks` section
        header, interface and secrets blocks walked before it (`CaptureStats.resume_point`), reads first: pcap,
        nothing; pcapng, the range's own preamble (the blocks that open the file, for the first range) when the
        worker has walked no such block since, else None (the hop goes from the range's start)."""
        from tlsflow.capture import pcapng
        from tlsflow.capture.split import BlockHop

        # (Each looked up once per run: offers come a few times a run, each on a range offered before as a rule.)
        if self._pcapng is None:
            with open(self.path, "rb") as file:
                self._pcapng = pcapng.is_pcapng_magic(file.read(4))
        if not self._pcapng:
            return b""
        if start is None:
            if self._opening is None:
                with BlockHop(self.path) as hop:
                    self._opening = hop.opening() or False
            if self._opening is False:
                return None
            start = self._opening
        known = self._preamble_blocks.get(start.offset)
        if known is None:
            with BlockHop(self.path, start) as hop:
                known = self._preamble_blocks[start.offset] = hop.preamble_blocks
        return start.preamble if known == blocks else None  # type: ignore[no-any-return]

    @staticmethod
    def _target(position: int, rate: float, end: int) -> int:
        """Where to cut a range that ends at byte `end`, whose worker is at byte `position` and reads `rate` bytes a
        second: both parts end together, that worker reading on to the cut, then following its connections, while
        the new one starts, then reads the rest."""
        return max(int((position + end + rate * (SPLIT_START_SECONDS - SPLIT_FOLLOW_SECONDS)) / 2),
                   position + SPLIT_MARGIN_BYTES)

    def answered(self, index: int, taken: bool) -> tuple[int, int] | None:
        """Worker `index` answered an offer: (the new worker's index, its range's first frame) when it took it (the
        new worker is started), else None."""
        if self._offered is None or self._offered[0] != index:
            return None
        cut, window = self._offered[1:]
        self._offered = None
        if not taken:  # it had read that far already: offered again further on, a few times at most
            self._refused += 1
            self._stopped = self._refused >= 3
            return None
        self._free = False
        split = self._ranges[index]
        end, split.end = split.end, (cut.frames_before + 1, cut.offset, cut.preamble)
        self._launch(cut, end, window)  # (calls started and ends_at for the new worker)
        return len(self._pipes) - 1, cut.frames_before + 1


def _range_messages_with_splits(queue: Any, workers: list[Any], path: str, splitter: _Splitter
                                ) -> Iterator[tuple[int, tuple[Any, ...]]]:
    """`parallel.worker_messages` for range workers, whose number grows with the splits: a split taken comes out
    as (the new worker's index, ("range", its first frame, the index of the worker whose range was cut)) before any
    of that worker's messages."""
    import queue as queues

    done: list[bool] = []
    early: collections.deque[tuple[int, tuple[Any, ...]]] = collections.deque()  # taken while awaiting an answer

    def answer(index: int, taken: bool) -> Iterator[tuple[int, tuple[Any, ...]]]:
        new = splitter.answered(index, taken)
        if new is not None:
            yield new[0], ("range", new[1], index)

    while True:
        done.extend([False] * (len(workers) - len(done)))
        if all(done):
            return
        if splitter.wanting:
            splitter.offer()
        if early:
            index, message = early.popleft()
        else:
            try:
                index, message = queue.get(timeout=0.02 if splitter.wanting else 1.0)
            except queues.Empty:
                for i, worker in enumerate(workers):
                    if not done[i] and not worker.is_alive() and queue.empty():
                        raise RuntimeError(f"--jobs worker {i} on {path} died (exit code {worker.exitcode})") from None
                continue
        kind = message[0]
        if kind == "split":
            yield from answer(index, message[1])
            continue
        if kind in ("end", "crash"):
            done[index] = True
        if kind == "end":
            # The free worker's core is offered before the merge takes the end, and the answer awaited (the other
            # messages meanwhile kept in order): the merge then gives the next range's records, which waited for
            # this end (~0.1 s at the end of --jobs 2 on a 1 GB capture), while the new worker starts, not before.
            splitter.ended(index, message, done.count(False))
            deadline = time.monotonic() + SPLIT_ANSWER_SECONDS
            while (offered := splitter.offered_to) is not None and (wait := deadline - time.monotonic()) > 0:
                try:
                    item = queue.get(timeout=wait)
                except queues.Empty:
                    break
                if item[0] == offered and item[1][0] == "split":
                    yield from answer(offered, item[1][1])
                    continue
                early.append(item)
                if item[0] == offered and item[1][0] in ("end", "crash"):
                    break  # it ended without answering: `ended` takes that as a refusal
        yield index, message


class _Inexact(Exception):
    """The records of the ranges cannot be put together into a single process's: analyse again in one."""


def _fields(cut: Any) -> tuple[int, int, bytes] | None:
    """A split.Cut as a range worker takes it (`start_at`'s arguments)."""
    return None if cut is None else (cut.offset, cut.frames_before, cut.preamble)


Windows = tuple[tuple[int, int, bytes], tuple[int, int, bytes]]


def _windows(hop: Any, cut_target: int, at_least: int = 0) -> Windows | None:
    """The far and near windows of the range that starts at the first record at or after `cut_target`
    (`hop_ahead.window_targets`, none before byte `at_least`): the hop goes on to each. None when the hop finds
    the end of the file (or damage) first."""
    far_target, near_target = window_targets(cut_target)
    far = hop.to(max(far_target, at_least))
    near = hop.to(max(near_target, at_least)) if far is not None else None
    if near is None:
        return None
    return _fields(far), _fields(near)  # type: ignore[return-value]


def _stop(workers: list[Any]) -> None:
    for worker in workers:
        if worker.is_alive():
            worker.terminate()


def ranges_in_one_process(path: str, cut_targets: list[int], *, trust: Any = None, keylog: Any = None,
                          batch_packets: int = BATCH_PACKETS,
                          interleave: Callable[[list[Iterator[tuple[Any, ...]]]],
                                               Iterator[tuple[int, tuple[Any, ...]]]] | None = None,
                          json_lines: bool = False) -> Iterator[dict[str, Any] | str]:
    """The work of `analyze_ranges`, one range after another in this process (tests: many cuts, no process
    start-up). Same cuts, same workers' messages, same merge. `interleave`: given every worker's messages (an
    iterator per worker, which runs as far as it is pulled), the order in which the parent gets them as (worker,
    message), each worker's in its own order (worker processes run at their own speeds); by default worker 0's,
    then worker 1's, and so on. `json_lines`: records come with their JSON text, as for `--format jsonl`."""
    from tlsflow.api import _trust_store
    from tlsflow.capture.split import find_cuts

    trust = _trust_store(None, trust)
    cuts = list(find_cuts(path, cut_targets))
    starts = [1] + [cut.frames_before + 1 for cut in cuts]
    ranges = [None] + [(cut.offset, cut.frames_before, cut.preamble) for cut in cuts]
    fars = find_cuts(path, [window_targets(t)[0] for t in cut_targets])
    nears = find_cuts(path, [window_targets(t)[1] for t in cut_targets])
    windows = [None] + [(_fields(far), _fields(near)) for far, near in zip(fars, nears)]

    class Channel:
        """What the parent tells a worker, in this process."""

        def __init__(self, cut: tuple[int, int, bytes] | None) -> None:
            self.waiting: collections.deque[tuple[str, Any]] = collections.deque()
            if cut is not None:
                self.waiting.append(("end", cut))

        def poll(self) -> bool:
            return bool(self.waiting)

        def recv(self) -> tuple[str, Any]:
            return self.waiting.popleft()

        def send(self, message: tuple[str, Any]) -> None:
            self.waiting.append(message)

    last = len(ranges) - 1
    channels = [Channel(None if index == last else (starts[index + 1], cuts[index].offset, cuts[index].preamble))
                for index in range(len(ranges))]

    def worker(index: int) -> Iterator[tuple[Any, ...]]:
        next_target = None if index == last else cut_targets[index]
        return range_messages(path, ranges[index], next_target, channels[index], trust=trust, keylog=keylog,
                              batch_packets=batch_packets, window=windows[index] if index < len(windows) else None,
                              json_lines=json_lines)

    def messages() -> Iterator[tuple[int, tuple[Any, ...]]]:
        if interleave is not None:
            yield from interleave([worker(index) for index in range(len(ranges))])
            return
        for index in range(len(ranges)):
            for message in worker(index):
                yield index, message

    yield from _merge_ranges(messages(), len(ranges), starts, path, os.path.getsize(path), None, lambda: None,
                             None, None, trust=trust, keylog=keylog,
                             tell=lambda index, message: channels[index].send(message))


def _merge_ranges(messages: Iterator[tuple[int, tuple[Any, ...]]], jobs: int, starts: list[int], path: str,
                  total: int, progress: Callable[[int, int | None], None] | None, stop: Callable[[], None],
                  ca_bundle: str | None, keylog_path: str | None, *, trust: Any = None, keylog: Any = None,
                  tell: Callable[[int, tuple[str, Any]], None] = lambda index, message: None
                  ) -> Iterator[dict[str, Any] | str]:
    """The workers' records as a single process's: the first range's as they come; each later range's as they
    come too, once the workers of every range before it have ended (before, they wait): see `_Placer`.
    `tell(k, message)` sends worker k a message. A range split while it runs (`_Splitter`) comes as
    (new worker, ("range", its first frame, the worker of the range it was cut from)): it lies right after that
    one, so ranges are kept in file order (`ranges`) apart from the workers' numbers."""
    done_bytes = [0] * jobs  # by worker
    waiting = Waiting(_records_in_message, prefix="tlsflow-ranges-")
    by_worker = [_Placer(start, waiting, index) for index, start in enumerate(starts)]
    ranges = list(by_worker)  # in file order
    _link(ranges)
    given = FrameSet()  # first frames of the records already yielded
    flows_before = 0  # connections of the ranges before `placed`
    placed = 0  # the first range (in `ranges`) whose records are not all given
    error: str | None = None
    counted = jobs  # the ranges whose records count (fewer when a range is damaged)
    same_passes = _passes_on_whole_intervals()  # as a single process's, up to range `placed` (see below)
    try:
        for index, message in messages:
            kind = message[0]
            if kind == "crash":
                raise RuntimeError(f"--jobs worker {index} failed on {path}:\n{message[1]}")
            if kind == "range":
                placer = _Placer(message[1], waiting, index)
                at = ranges.index(by_worker[message[2]]) + 1
                if at < counted or counted == len(ranges):  # (after damage, later ranges do not count)
                    counted += 1
                ranges.insert(at, placer)
                _link(ranges)
                by_worker.append(placer)
                done_bytes.append(0)
                continue
            placer = by_worker[index]
            out: list[dict[str, Any]] = []
            if kind == "end":
                _, worker_error, evicted, first_clock, placer.at_cut, broke_in_range, placer.left_open = message
                placer.done = True
                at = ranges.index(placer)
                if broke_in_range and at + 1 < counted:
                    # The file is damaged inside this range: a single process stops there, later ranges do not
                    # count (their workers read on from a cut past the damage).
                    counted = at + 1
                    error = worker_error
                elif worker_error is not None and at < counted and (error is None or at == len(ranges) - 1):
                    error = worker_error
            else:
                _, records, done_bytes[index], opened, evicted, first_clock, position, phantoms = message
                placer.take(records, opened, position, phantoms, out)
                if progress is not None:
                    progress(sum(done_bytes), total)
            if evicted:
                # This worker's flow table overflowed: it evicted other flows than a single process would.
                raise _Inexact
            if first_clock is not None:
                placer.first_clock = first_clock
            while placed < counted:
                placer = ranges[placed]
                if not placer.started:
                    if placed > 0:
                        # Expiry passes run at the first packet of each whole second (TcpReassembler.add): worker
                        # k's first packet sets its next pass; if that is not before a single process's next pass
                        # at the cut (the previous worker's, if its own were right), every later pass is the same.
                        if placer.first_clock is None and not placer.done:
                            break  # not known yet
                        first, cut = placer.first_clock, ranges[placed - 1].at_cut
                        same_passes = same_passes and (first is None or (cut is not None and first >= cut))
                    placer.start(ranges[:placed], flows_before, same_passes or placed == 0)
                    for _ in placer.replay(out):  # what waited (on disk, then in memory), a message at a time
                        yield from _given(out, given)
                if placer.to_watch:
                    tell(placer.worker, ("watch", placer.to_watch))
                    placer.to_watch = []
                if not placer.done:
                    break
                placer.finish(out)
                if placer.unsure:
                    waiting.add(_UNSURE, ((len(placer.unsure), placer.unsure),))  # (a message's shape)
                    placer.unsure = []
                flows_before += placer.flows
                placed += 1
            yield from _given(out, given)
            if placed == counted:
                break
        if counted < len(ranges):
            stop()
        for ((_, unsure),) in waiting.take(_UNSURE):  # (every later flow classified: no packet joins them)
            out.extend(unsure)
            yield from _given(out, given)
    except _Inexact:
        waiting.close()
        stop()
        yield from _single_process(path, given, ca_bundle, keylog_path, progress, trust, keylog)
        return
    finally:
        waiting.close()
    if error is not None:
        yield damage_message(path, error, len(given))


def _link(ranges: list[_Placer]) -> None:
    """Each range told where the next one starts (`_Placer.kept`)."""
    for placer, after in itertools.pairwise(ranges):
        placer.next_start = after.start_frame
    if ranges:
        ranges[-1].next_start = math.inf


def _given(out: list[dict[str, Any]], given: FrameSet) -> Iterator[dict[str, Any]]:
    """The records placed in `out` (emptied), noted in `given` by first frame."""
    for record in out:
        given.add(record["first_frame"])
        yield record
    out.clear()


class FrameSet:
    """Frame numbers: the first frames of the records the merge has given, which the fallback to one process skips
    (`_single_process`). A record's first frame is its connection's first packet and a record is given once, so no
    frame comes twice, and `len` counts the records. Why not a set: one held ~75 bytes a record, and the parent's
    memory grew with the file (4 GB capture, --jobs 2: 88,011 records, ~6.5 MiB); here 8 bytes a record, looked up
    only by the rare fallback (sorted then, once)."""

    __slots__ = ("_frames", "_sorted")

    def __init__(self) -> None:
        self._frames = array.array("q")
        self._sorted = True

    def add(self, frame: int) -> None:
        frames = self._frames
        if self._sorted and frames and frame < frames[-1]:
            self._sorted = False
        frames.append(frame)

    def __contains__(self, frame: int) -> bool:
        if not self._sorted:
            self._frames = array.array("q", sorted(self._frames))
            self._sorted = True
        frames = self._frames
        at = bisect.bisect_left(frames, frame)
        return at < len(frames) and frames[at] == frame

    def __len__(self) -> int:
        return len(self._frames)


def _records_in_message(message: tuple[Any, ...]) -> int:
    """The records a waiting message of a worker holds (`_Placer.take` before `start`). Both workers run at once, so the second
    one's records up to the end of the first are most of them: held in memory they made the parent's peak grow
    with the file (1 GB: ~60 MB, 4 GB: 191 MB for --jobs 2); past `waiting.WAITING_IN_MEMORY` they wait on
    disk."""
    return message[0][0]  # type: ignore[no-any-return]


class _Placer:
    """One worker's records, numbered as a single process numbers them, each given as soon as that is certain.

    Worker k opens its flows in frame order, so its own flow ids count them in order of first frame, phantoms
    included. Once workers 0..k-1 have ended, their connections open across this range's first frame (`across`:
    4-tuple -> last frame) tell which of the flows it opened are phantoms (the "opened" entries of its messages,
    which come no later than the flows' records); a record's flow_id is then the connections of earlier workers,
    plus its own id, less the phantoms opened before it. Until they have ended, its records wait.

    A phantom of a connection whose last frame is L must take no packet after L. If it did, a single process has
    one more connection there, opened after L, and the flow ids of the connections opened after that one are one
    more: so a record whose first frame is after L waits while the phantom is open, until the phantom's record
    shows its last frame (after L: `_Inexact`, before any of those was given), or until the worker, asked to watch
    the phantom, says that at its frame P the phantom is still open with nothing after L (then no connection
    before P is concerned). A connection open across the cut for the rest of the capture thus holds nothing back
    for long."""

    def __init__(self, start: int, waiting: Waiting, index: int) -> None:
        self.start_frame = start  # the range's first frame
        self.worker = index
        self.started = False
        self.done = False  # its worker has ended
        self.at_cut: float | None = None  # the worker's next expiry pass when it passed its end
        # (own flow id, last frame) of the flows of its range it left open, having stopped before the end of the
        # file: they give no record (`finish`)
        self.left_open: list[tuple[int, int]] = []
        self.first_clock: float | None = None  # the worker's next expiry pass after its first packet
        self.flows = 0  # its connections placed
        # (4-tuple, first frame, last frame) of those of its connections that may be open across a later range's
        # first frame: those whose last frame is at or after `next_start` when they are placed. The others cannot
        # be, ever: a range that a split makes after this one starts past every frame its worker had read when
        # it took the split, so past the last frame of every record placed until then (before, every connection
        # was kept: the parent's memory grew with the file, ~25 MiB at 4 GB with --jobs 2).
        self.kept: list[tuple[Any, int, int]] = []
        self.next_start: float = math.inf  # the first frame of the range after this one (`_merge_ranges` sets it)
        # (4-tuple, last frame, last packet's time, linger, sides) of its connections ended while they lingered
        # past its range (`LingerEnd`)
        self.lingered: list[tuple[Any, int, float, float, Sides]] = []
        self.unsure: list[dict[str, Any]] = []  # their records, numbered, until the end of the run
        self.to_watch: list[tuple[int, str, int, str, int]] = []  # phantoms the worker is to be asked about
        # Before `start`: the worker's messages (packed records, opened flows, position, reports of open flows),
        # under its index in the parent's `waiting` (in memory, then on disk).
        self._waiting = waiting
        self._index = index
        self._across: dict[Any, int] = {}
        self._lingered: dict[Any, tuple[int, float, float, Sides]] = {}  # earlier workers' `lingered`, by 4-tuple
        self._flows_before = 0
        self._same_passes = True
        self._phantom_ids: list[int] = []  # in increasing order (flows are reported in the order they open)
        # A phantom's id -> [L, the first frame from which records wait for it]
        self._open_phantoms: dict[int, list[int]] = {}
        self._held: list[tuple[int, dict[str, Any]]] = []  # (first frame, record), a heap

    def take(self, records: tuple[int, bytes], opened: list[tuple[Any, ...]],
             position: int, phantoms: list[tuple[int, int]], out: list[dict[str, Any]]) -> None:
        """A worker's message: its new records and flows, and at frame `position`, the last frame of each phantom
        it watches."""
        if not self.started:
            self._waiting.add(self._index, (records, opened, position, phantoms))
            return
        self._classify(opened)
        self._place(unpack_all(pickle.loads(records[1])), out)
        open_phantoms = self._open_phantoms
        for own_id, last in phantoms:
            entry = open_phantoms.get(own_id)
            if entry is not None:
                if last > entry[0]:
                    raise _Inexact
                entry[1] = max(entry[1], position)
        self._release(out)

    def start(self, earlier: list[_Placer], flows_before: int, same_passes: bool) -> None:
        """Workers `earlier` have ended; `flows_before`: their connections; `same_passes`: this worker runs its
        expiry passes at a single process's packets. Its messages so far then come through `replay`."""
        start = self.start_frame
        self.started = True
        self._across = {key: last for placer in earlier for key, first, last in placer.kept if first < start <= last}
        self._lingered = {key: (last, last_ts, linger, sides) for placer in earlier
                          for key, last, last_ts, linger, sides in placer.lingered}
        self._flows_before = flows_before
        self._same_passes = same_passes

    def replay(self, out: list[dict[str, Any]]) -> Iterator[None]:
        """After `start`: the messages that waited (on disk, then in memory), placed into `out` one at a time
        (the caller gives `out` away after each step)."""
        for message in self._waiting.take(self._index):
            self.take(*message, out)
            yield

    def finish(self, out: list[dict[str, Any]]) -> None:
        """The worker has ended: every record is in, but for the flows it left open (`left_open`). A worker that
        is not the last stops once none of the connections of its range is open any more, and the flows it leaves
        open are phantoms as a rule (kept cheap, not followed past the range): a phantom whose last frame is not
        after its connection's is dropped, as its record would have been. Any other flow left open is a connection
        whose record will never come: then nothing here is certain."""
        open_phantoms = self._open_phantoms
        for own_id, last in self.left_open:
            entry = open_phantoms.pop(own_id, None)
            if entry is None or last > entry[0]:
                raise _Inexact
        if open_phantoms:
            raise _Inexact  # cannot happen (every flow gives a record or is left open), but then nothing is certain
        while self._held:
            out.append(heapq.heappop(self._held)[1])

    def _classify(self, opened: list[tuple[Any, ...]]) -> None:
        across, lingered = self._across, self._lingered
        if not across and not lingered:
            return
        for own_id, src, sport, dst, dport, first, first_ts, syn in opened:
            key = _flow_key(src, sport, dst, dport)
            before = across.get(key)
            if before is not None and first <= before:
                self._phantom_ids.append(own_id)
                self._open_phantoms[own_id] = [before, before]
                self.to_watch.append((own_id, src, sport, dst, dport))
                continue
            ended = lingered.get(key) if lingered else None
            if (ended is not None and first > ended[0] and first_ts - ended[1] <= ended[2]
                    and not starts_anew(ended[3], syn)):
                # An earlier worker ended that connection while it lingered past its range; a single process
                # counts this packet in it (TcpReassembler.add: within linger_timeout of its last packet).
                raise _Inexact

    def _place(self, records: list[dict[str, Any]], out: list[dict[str, Any]]) -> None:
        open_phantoms = self._open_phantoms
        # Found once per message: a busy link has thousands of phantoms open at a time (the minimum over them for
        # each record took the parent seconds). Phantoms that close meanwhile only raise it: a record held for a
        # limit found before goes at the next `_release`.
        limit = None
        for record in records:
            key, last, reason, _first_syn, *more = record.pop("_range")
            own_id = record["flow_id"]
            if own_id in open_phantoms:
                if last > open_phantoms.pop(own_id)[0]:
                    raise _Inexact  # the phantom took packets of a later connection on this 4-tuple
                continue
            if more and more[0]:
                raise _Inexact  # taken for another worker's connection (in flight at the cut), analysed as such
            lingered = len(more) == 4  # ended while it lingered past the range: (False, last time, linger, sides)
            if lingered:
                self.lingered.append((key, last, more[1], more[2], more[3]))
            if reason == "idle" and not self._same_passes:
                raise _Inexact  # closed by an expiry pass that may not run at the same packet as in one process
            first = record["first_frame"]
            self.flows += 1
            if last >= self.next_start:
                self.kept.append((key, first, last))
            record["flow_id"] = self._flows_before + own_id - bisect.bisect_left(self._phantom_ids, own_id)
            if lingered:
                # Not certain until every later worker's flows are known: a packet on its 4-tuple within its linger
                # would belong to it (`_classify`), and the file is then read again in one process, which gives it
                # with that packet. Given at the end (`_merge_ranges`).
                self.unsure.append(record)
                continue
            if open_phantoms:
                if limit is None:
                    limit = self._limit()
                if first > limit:
                    heapq.heappush(self._held, (first, record))
                    continue
            out.append(record)

    def _limit(self) -> int:
        """Records with a later first frame wait (phantoms are few, and open for a short while as a rule)."""
        return min(entry[1] for entry in self._open_phantoms.values()) if self._open_phantoms else _NO_END

    def _release(self, out: list[dict[str, Any]]) -> None:
        held = self._held
        if held:
            limit = self._limit()
            while held and held[0][0] <= limit:
                out.append(heapq.heappop(held)[1])


def _passes_on_whole_intervals() -> bool:
    """TcpReassembler runs its expiry passes at the first packet of each whole interval of capture time (what
    lets a worker that starts at a cut run them at a single process's packets), as it did when this was written.
    Asked of the class itself, so that a change there makes the ranges careful again instead of wrong."""
    from tlsflow.tcp import TcpReassembler

    probe = TcpReassembler(expiry_interval=1.0)
    probe.advance(10.25)
    return probe.next_expiry == 11.0


def _single_process(path: str, given: FrameSet, ca_bundle: str | None, keylog_path: str | None,
                    progress: Callable[[int, int | None], None] | None, trust: Any = None, keylog: Any = None
                    ) -> Iterator[dict[str, Any] | str]:
    """The fallback: the whole file in this process; the records already given are not given again."""
    from tlsflow.api import _load_keylog, _trust_store
    from tlsflow.pipeline import CaptureReport, iter_flow_records

    report = CaptureReport(capture=path)
    for record in iter_flow_records(path, capture_name=path, trust=_trust_store(ca_bundle, trust), report=report,
                                    keylog=_load_keylog(keylog if keylog is not None else keylog_path),
                                    progress=progress):
        if record["first_frame"] not in given:
            yield record
    if report.error:
        yield damage_message(path, report.error, report.flows)
