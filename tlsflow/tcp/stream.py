"""One direction of a TCP connection: sequence numbers to stream offsets, the out-of-order buffer, gaps.

Offsets are plain Python integers counted from the start of the direction's stream, so that everything past the
sequence-number mapping (buffer, gaps, history) is free of wrap-around. The mapping itself goes through the
highest sequence number seen (`high_seq` ↔ `high_offset`) with wrap-safe differences.

Delivered pieces are appended to a caller's list as `(offset, data, gap, frame, ts)` tuples; the reassembler
turns them into `StreamChunk`s once the connection's roles are known.
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from tlsflow.tcp import anomalies
from tlsflow.tcp.facts import Connection, DirectionFacts
from tlsflow.tcp.seq import SEQ_MASK, seq_diff

Piece = tuple[int, bytes, int, int, float]  # offset, data, gap, frame, ts
_NO_FRAME = -1
_NEVER = float("-inf")
# A side's history before its first delivered byte (then a list: it holds a few segments until they are acknowledged,
# and a deque, ~620 bytes however few, made a busy link's open connections ~7 % bigger). A capture of scans or a SYN
# flood fills the flow table (100,000 flows) with connections that never carry a byte.
_NO_HISTORY: tuple[()] = ()


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """Caps shared by every direction of one reassembler."""

    max_buffer_bytes: int = 1 << 20  # out-of-order bytes waiting per direction
    max_buffer_segments: int = 1024  # out-of-order segments waiting per direction
    # Recently delivered bytes kept (until the peer ACKs them) to tell a retransmission that differs.
    max_history_bytes: int = 1 << 15


def _start(seg: tuple[int, int, bytes, int, float]) -> int:
    return seg[0]


class HalfStream:
    """Reassembly state of the bytes one side sends."""

    __slots__ = (
        "acked_limit",
        "buffered_bytes",
        "conn",
        "facts",
        "fin_acked",
        "fin_offset",
        "high_offset",
        "high_seq",
        "history",
        "history_bytes",
        "index",
        "isn",
        "lane_until",
        "largest_end",
        "limits",
        "next_offset",
        "probe",
        "probe_done",
        "segments",
        "sender",
        "skip_until",
        "started",
        "ttl_run",
        "ttl_run_mark",
    )

    def __init__(self, conn: Connection, facts: DirectionFacts, limits: StreamLimits, index: int) -> None:
        self.conn = conn
        self.facts = facts
        self.limits = limits
        self.index = index  # 0: the side that sent the connection's first packet
        self.sender = None  # tlsparse Sender once the roles are settled
        self.started = False  # the sequence number of offset 0 is known
        self.isn: int | None = None  # sequence number of this side's SYN
        self.high_seq = 0  # sequence number just past the highest byte seen ...
        self.high_offset = 0  # ... and its stream offset
        self.next_offset = 0  # next offset to deliver (everything before it is delivered or declared a gap)
        self.fin_offset: int | None = None
        self.fin_acked = False  # the peer acknowledged the FIN itself
        self.acked_limit = 0  # the peer acknowledged every byte before this offset
        # Out-of-order data: sorted, non-overlapping (start, end, data, frame, ts), all starting after next_offset.
        self.segments: list[tuple[int, int, bytes, int, float]] = []
        self.buffered_bytes = 0
        # Recently delivered (start, end, data): a list from the first delivery on (see `_NO_HISTORY`).
        self.history: list[tuple[int, int, bytes]] | tuple[()] = _NO_HISTORY
        self.history_bytes = 0
        # The offset of the last byte of a record whose body the consumer only skips (`TcpReassembler.skip_until`):
        # in-order segments that end before it are not delivered.
        self.skip_until = 0
        self.largest_end = 0  # offset just past the largest segment, to see whether the peer ACKed it
        # The reassembler's fast lane (count_lane): a time before which this side's segments need not be tested
        # in full (-inf: none known).
        self.lane_until = _NEVER
        self.probe = b""  # the stream's first bytes, while the roles wait for a ClientHello
        self.probe_done = False
        # The TTLs of the packets sent, kept here while the connection is open and written into `facts` by
        # `fold_header_facts` when it closes: a run of packets with the same TTL costs nothing per packet (its
        # length is told by the packet counts; a Counter item costs ~twice an integer increase, per packet).
        self.ttl_run = -1  # the TTL of the latest packets (-1: none yet) ...
        # ... and how many packets outside RSTs (facts.packets - facts.rst_count) came before its run: the run's
        # packets not yet in facts.ttls are those counted since.
        self.ttl_run_mark = 0

    def start(self, seq: int) -> None:
        """Offset 0 is at `seq` (the byte after the SYN, or the first byte seen mid-connection)."""
        self.started = True
        self.high_seq = seq & SEQ_MASK
        self.high_offset = 0
        self.next_offset = 0

    def new_ttl_run(self, ttl: int) -> None:
        """A packet (counted in facts.packets already, not a RST) whose TTL differs from the previous packet's: the
        previous run goes into facts.ttls (as runs end in the order their TTLs first appear, the Counter's keys
        come in the same order as counting every packet would put them)."""
        facts = self.facts
        before = facts.packets - facts.rst_count - 1  # packets outside RSTs before this one
        run = before - self.ttl_run_mark
        if run:
            ttls = facts.ttls
            ttls[self.ttl_run] = ttls.get(self.ttl_run, 0) + run  # (no Counter.__missing__ call)
        self.ttl_run = ttl
        self.ttl_run_mark = before

    def fold_header_facts(self) -> None:
        """Write the pending TTL run into `facts` (once, when the connection closes)."""
        facts = self.facts
        counted = facts.packets - facts.rst_count
        run = counted - self.ttl_run_mark
        if run:
            ttls = facts.ttls
            ttls[self.ttl_run] = ttls.get(self.ttl_run, 0) + run
            self.ttl_run_mark = counted

    def offset_of(self, seq: int) -> int:
        return self.high_offset + seq_diff(seq, self.high_seq)

    def advance_high(self, end_offset: int) -> None:
        if end_offset > self.high_offset:
            self.high_seq = (self.high_seq + end_offset - self.high_offset) & SEQ_MASK
            self.high_offset = end_offset

    # --- full reassembly -------------------------------------------------------------------------------------

    def receive(self, start: int, data: bytes, frame: int, ts: float, out: list[Piece]) -> int:
        """Take a segment at stream offset `start`; return how many of its bytes were already seen."""
        end = start + len(data)
        nxt = self.next_offset
        seen = 0
        if start < nxt:
            old = min(end, nxt)
            self._compare_with_history(start, data, old)
            if end <= nxt:
                return len(data)
            seen = nxt - start
            data = data[seen:]
            start = nxt
        segments = self.segments
        if start == nxt and (not segments or end <= segments[0][0]):
            # The common case: in order, nothing waiting in its way. No copy, no buffer.
            out.append((start, data, 0, frame, ts))
            self.next_offset = end
            self._remember(start, end, data)
            if segments and segments[0][0] == end:
                self._drain(out, frame, ts)
            return seen
        seen += self._insert(start, end, data, frame, ts)
        if segments and segments[0][0] <= self.next_offset:
            self._drain(out, frame, ts)
        elif start > nxt:
            self.facts.out_of_order_segments += 1
            if self.acked_limit > nxt:  # the peer had acknowledged the hole before this segment arrived
                self.skip_to(min(self.acked_limit, max(end, self.high_offset)), out, frame, ts)
        self._enforce_caps(out, frame, ts)
        return seen

    def _insert(self, start: int, end: int, data: bytes, frame: int, ts: float) -> int:
        """Buffer the parts of [start, end) not buffered yet (first data wins); return the bytes already there."""
        segments = self.segments
        i = bisect_right(segments, start, key=_start)
        if i and segments[i - 1][1] > start:
            i -= 1
        pieces = []
        pos = start
        seen = 0
        j = i
        while j < len(segments) and segments[j][0] < end:
            s_start, s_end, s_data = segments[j][0], segments[j][1], segments[j][2]
            if s_start > pos:
                pieces.append((pos, s_start, data[pos - start:s_start - start], frame, ts))
            lo, hi = max(pos, s_start), min(end, s_end)
            if hi > lo:
                seen += hi - lo
                if s_data[lo - s_start:hi - s_start] != data[lo - start:hi - start]:
                    self._mismatch()
            pos = max(pos, s_end)
            j += 1
        if pos < end:
            pieces.append((pos, end, data[pos - start:] if pos > start else data, frame, ts))
        if pieces:
            for piece in pieces:
                k = bisect_right(segments, piece[0], key=_start)
                segments.insert(k, piece)
                self.buffered_bytes += piece[1] - piece[0]
        return seen

    def _drain(self, out: list[Piece], frame: int, ts: float) -> None:
        """Deliver the buffered segments that now continue the stream. frame == _NO_FRAME: their own frames."""
        segments = self.segments
        while segments and segments[0][0] <= self.next_offset:
            s_start, s_end, s_data, s_frame, s_ts = segments.pop(0)
            self.buffered_bytes -= s_end - s_start
            nxt = self.next_offset
            if s_end <= nxt:
                continue
            if s_start < nxt:
                s_data = s_data[nxt - s_start:]
            if frame == _NO_FRAME:
                out.append((nxt, s_data, 0, s_frame, s_ts))
            else:
                out.append((nxt, s_data, 0, frame, ts))
            self._remember(nxt, s_end, s_data)
            self.next_offset = s_end

    def _gap_to(self, target: int, out: list[Piece], frame: int, ts: float) -> None:
        nxt = self.next_offset
        if target <= nxt:
            return
        out.append((nxt, b"", target - nxt, frame, ts))
        self.facts.gaps += 1
        self.facts.gap_bytes += target - nxt
        self.next_offset = target
        self.advance_high(target)

    def skip_to(self, target: int, out: list[Piece], frame: int, ts: float) -> None:
        """Everything before `target` was sent: deliver what is buffered and declare the holes gaps."""
        while self.next_offset < target:
            segments = self.segments
            if segments and segments[0][0] <= self.next_offset:
                self._drain(out, frame, ts)
                continue
            hole_end = min(target, segments[0][0]) if segments else target
            self._gap_to(hole_end, out, frame, ts)

    def _enforce_caps(self, out: list[Piece], frame: int, ts: float) -> None:
        limits = self.limits
        while self.segments and (self.buffered_bytes > limits.max_buffer_bytes
                                 or len(self.segments) > limits.max_buffer_segments):
            if self.buffered_bytes > limits.max_buffer_bytes:
                self.conn.note(anomalies.REASSEMBLY_BYTES_EXCEEDED)
            else:
                self.conn.note(anomalies.REASSEMBLY_SEGMENTS_EXCEEDED)
            first = self.segments[0]
            self._gap_to(first[0], out, frame, ts)
            self._drain(out, frame, ts)

    def acked(self, ack_offset: int, out: list[Piece], frame: int, ts: float) -> None:
        """The peer acknowledged everything before `ack_offset`: forget delivered history up to there, and
        declare as gaps the holes it covers (the receiver got those bytes; the capture did not).

        Only holes below data already seen are declared now. An ACK ahead of everything seen is also what a
        capture that reordered a segment and its ACK looks like, so that hole waits for the next segment (or the
        end of the connection) to tell a loss from a late segment."""
        history = self.history
        covered = 0
        for h_start, h_end, _ in history:
            if h_end > ack_offset:
                break
            self.history_bytes -= h_end - h_start
            covered += 1
        if covered:
            del history[:covered]  # type: ignore[union-attr]
        if self.fin_offset is not None and ack_offset > self.fin_offset:
            ack_offset = self.fin_offset
        self.acked_limit = max(self.acked_limit, ack_offset)
        if self.segments and ack_offset > self.next_offset:
            self.skip_to(min(ack_offset, self.high_offset), out, frame, ts)

    def flush(self, out: list[Piece], end_frame: int, end_ts: float) -> None:
        """The connection is over: deliver every buffered byte (holes as gaps), then the hole before the FIN or
        before what the peer acknowledged (`end_frame`/`end_ts`: the FIN's, else the connection's last packet)."""
        while self.segments:
            first = self.segments[0]
            self._gap_to(first[0], out, first[3], first[4])
            self._drain(out, _NO_FRAME, 0.0)
        end = max(self.fin_offset or 0, self.acked_limit)
        if end > self.next_offset and self.started:
            self._gap_to(end, out, end_frame, end_ts)

    def stop_reassembly(self) -> None:
        """The consumer wants no more data: drop every buffer."""
        self.segments = []
        self.buffered_bytes = 0
        self.history = _NO_HISTORY
        self.history_bytes = 0
        self.probe = b""

    # --- retransmission checks --------------------------------------------------------------------------------

    def _remember(self, start: int, end: int, data: bytes) -> None:
        if self.history is _NO_HISTORY:
            self.history = []
        self.history.append((start, end, data))  # type: ignore[union-attr]
        self.history_bytes += end - start
        if self.history_bytes > self.limits.max_history_bytes:
            self.trim_history()

    def trim_history(self) -> None:
        """Forget the oldest delivered bytes until the history fits its cap."""
        history = self.history
        limit = self.limits.max_history_bytes
        dropped = 0
        for h_start, h_end, _ in history:
            if self.history_bytes <= limit:
                break
            self.history_bytes -= h_end - h_start
            dropped += 1
        if dropped:
            del history[:dropped]  # type: ignore[union-attr]

    def _compare_with_history(self, start: int, data: bytes, stop: int) -> None:
        """Compare the already delivered part [start, stop) of a segment with what was delivered first."""
        for h_start, h_end, h_data in self.history:
            if h_end <= start:
                continue
            if h_start >= stop:
                break
            lo, hi = max(start, h_start), min(stop, h_end)
            if h_data[lo - h_start:hi - h_start] != data[lo - start:hi - start]:
                self._mismatch()
                return

    def _mismatch(self) -> None:
        self.facts.overlap_mismatches += 1
        self.conn.note(anomalies.OVERLAP_DATA_MISMATCH)
