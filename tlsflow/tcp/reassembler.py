"""TCP reassembly for the whole capture: packets in, connection and byte-stream events out.

Flows are keyed by both endpoints (each direction's 4-tuple points at the same flow). Everything runs on capture
time: idle flows, lingering closed flows and a full flow table are handled as packets arrive, never by a clock.
Two time-ordered tables (open flows, flows that saw a RST or both FINs acknowledged) keep expiry and eviction O(1) per packet.
"""
from __future__ import annotations

from array import array
from collections.abc import Collection, Iterable, Iterator
from heapq import heapify, heappop, heappush, heapreplace
from operator import attrgetter
from socket import AF_INET, AF_INET6, inet_ntop, inet_pton
from struct import Struct

from tlsflow.packet import ACK, FIN, RST, SYN, TcpPacket
from tlsflow.tcp import anomalies
from tlsflow.tcp.events import ConnectionClosed, ConnectionOpened, StreamChunk, stream_chunk
from tlsflow.tcp.facts import (
    DUPLICATE_WITHIN,
    PEER_CLOSE_BYTES,
    RETRANSMITTED_FRAMES_KEPT,
    UNSEEN_ACKS_KEPT,
    Connection,
    DirectionFacts,
)
from tlsflow.tcp.roles import guess_client, looks_like_client_hello
from tlsflow.tcp.stream import _NO_HISTORY, HalfStream, Piece, StreamLimits
from tlsparse.events import Sender

Event = ConnectionOpened | StreamChunk | ConnectionClosed
FlowKey = tuple[str, int, str, int]
# One direction of a flow that wants no more data, as `count_lane` takes it: (flow, the sending side, its peer,
# the sending side's facts, the connection).
Lane = tuple["_Flow", HalfStream, HalfStream, DirectionFacts, Connection]
_PORTS = Struct("!HH").pack

_SYN_ACK = SYN | ACK
# An entry of `TcpReassembler.lanes` that no wire 4-tuple matches, put there at the first connection joined in the
# middle with data (see `_open_flow`).
MIDSTREAM_DATA = b"a connection joined in the middle carries data"
_SYN_RST = SYN | RST
_LONE_SYN_FLAGS = SYN | ACK | RST | FIN
# From this many open connections on, a new connection whose first packet is a lone SYN is kept as such
# (`_LoneSyn`) until its next packet: below, full flows cost a few MB at most, and making one at once is cheaper
# (a lone SYN that is answered costs ~7,000 instructions more in all, ~2 µs).
LONE_SYNS_FROM = 1024
_HALF = 1 << 31
_NEG_HALF = -_HALF
_MASK = (1 << 32) - 1
# An ACK this far beyond anything seen cannot be inside any window (max scaled window is 2^30).
_MAX_ACK_AHEAD = 1 << 30
_PROBE_LEN = 6  # bytes a ClientHello check needs
_UNKNOWN = object()
_NEVER = float("-inf")
_WIRE_ADDRESSES_KEPT = 1 << 16  # addresses remembered as wire bytes before that cache is reset
_FLOW_ID = attrgetter("flow_id")
_FINISHED_TOGETHER = 256  # connections closed at a time at the end of the capture (`finish_each`)


class _Flow:
    """The reassembler's private state of one connection."""

    __slots__ = (
        "closing",
        "conn",
        "flow_id",
        "full",
        "hello_index",
        "keys",
        "lane_keys",
        "lanes",
        "last_ts",
        "pending",
        "pending_bytes",
        "settled",
        "sides",
    )

    def __init__(self, conn: Connection, sides: tuple[HalfStream, HalfStream], keys: tuple[FlowKey, ...],
                 ts: float) -> None:
        self.conn = conn
        self.flow_id = conn.flow_id  # (as a lone SYN has it: finish sorts both by it)
        self.sides = sides  # index 0: the side that sent the connection's first packet
        self.keys = keys
        self.settled = False  # roles known, ConnectionOpened emitted
        self.pending: list[tuple[HalfStream, Piece]] = []  # chunks waiting for the roles
        self.pending_bytes = 0
        self.hello_index: int | None = None  # side whose first bytes are a ClientHello
        self.closing = False  # a RST, or both FINs acknowledged: lingers briefly, then closes
        self.full = True  # reassembling (the consumer still wants data)
        self.last_ts = ts
        self.lanes: tuple[Lane, Lane] | None = None  # per side, once the consumer wants no more data
        self.lane_keys: tuple[bytes, ...] = ()  # this flow's entries in TcpReassembler.lanes

    @property
    def last_frame(self) -> int:
        """The frame of the connection's last packet."""
        return self.conn.last_frame


class _LoneSyn:
    """A connection of which only its first packet, a SYN without ACK, payload or cut, has been seen: that packet
    and what the tables need, in place of a `_Flow`. Its next packet makes the `_Flow` the SYN would have made
    (`_hatch`: the same facts, its code being the part of `add` a lone SYN runs); its end (eviction, expiry, end
    of capture) gives the connection that flow's close would give, without making its streams (`_close_lone_syn`).

    Why: a SYN flood or a scan of a silent host fills the flow table with such connections, ~2.7 KB each as full
    flows (the two sides' streams and facts), ~1.0 KB as this with its table entries; 100,000 of them (the table
    full) peaked at 363 MiB, now 173 MiB. The one difference a consumer sees: the connection's ConnectionOpened
    comes with its next event."""

    __slots__ = ("flow_id", "keys", "last_ts", "pkt")
    closing = False  # (read with the flows of the open table: never lingering)

    def __init__(self, flow_id: int, pkt: TcpPacket, keys: tuple[FlowKey, ...]) -> None:
        self.flow_id = flow_id
        self.pkt = pkt
        self.keys = keys
        self.last_ts = pkt.ts

    @property
    def last_frame(self) -> int:
        """The frame of the connection's last packet: its SYN."""
        return self.pkt.frame


class TcpReassembler:
    """Turns `TcpPacket`s into `ConnectionOpened`, `StreamChunk` and `ConnectionClosed` events.

    `add(pkt)` returns the events the packet causes (often none or one chunk); `finish()` ends the capture.
    Caps: `max_flows` open connections (the least recently active one is evicted when a new one needs room),
    `max_buffer_per_direction` out-of-order bytes and `max_segments_per_direction` segments per direction (the
    hole is declared a gap when exceeded), `role_buffer_bytes` of chunks held while the roles are unknown.
    `lone_syns_from`: from this many open connections on, connections that have sent only a SYN are kept compact
    (see `_LoneSyn`; 0: always).
    Timeouts are in capture seconds: `idle_timeout` for open connections, `linger_timeout` after a RST or once
    both FINs are acknowledged (trailing ACKs and stray retransmissions within it still count), or, one
    direction captured, once the side whose packets are there has sent its FIN and acknowledged what can be the
    peer's close.
    """

    def __init__(self, max_flows: int = 100_000, max_buffer_per_direction: int = 1 << 20,
                 idle_timeout: float = 300.0, *, linger_timeout: float = 5.0,
                 max_segments_per_direction: int = 1024, role_buffer_bytes: int = 1 << 16,
                 role_buffer_chunks: int = 64, retransmit_check_bytes: int = 1 << 15,
                 expiry_interval: float = 1.0, lone_syns_from: int | None = None) -> None:
        if max_flows < 1:
            raise ValueError("max_flows must be at least 1")
        self.max_flows = max_flows
        self.idle_timeout = idle_timeout
        self.linger_timeout = linger_timeout
        self.role_buffer_bytes = role_buffer_bytes
        self.role_buffer_chunks = role_buffer_chunks
        self.expiry_interval = expiry_interval
        # (None: the module's LONE_SYNS_FROM as it is when the reassembler is made, which tests may change)
        self._lone_syns_from = LONE_SYNS_FROM if lone_syns_from is None else lone_syns_from
        self.limits = StreamLimits(max_buffer_bytes=max_buffer_per_direction,
                                   max_buffer_segments=max_segments_per_direction,
                                   max_history_bytes=retransmit_check_bytes)
        self._max_history_bytes = retransmit_check_bytes
        self._flows: dict[FlowKey, tuple[_Flow, int]] = {}
        # Open and lingering flows by id. Expiry and eviction take them least recently active first, that is in the
        # order of their last packets' frames: each table has a heap of (a frame of the flow's, flow id), fixed up
        # when it is read (`_oldest`), instead of an ordered dict in which every packet moved its flow to the end
        # (~560 instructions a packet, most packets of a capture).
        self._open: dict[int, _Flow] = {}
        self._closing: dict[int, _Flow] = {}
        self._open_queue: list[tuple[int, int]] = []
        self._closing_queue: list[tuple[int, int]] = []
        # Connections opened so far (the last flow_id given): a plain attribute, as --jobs workers read it after
        # every packet they hand to `add`.
        self.flows_opened = 0
        self._now = float("-inf")
        self._next_expiry = float("-inf")
        self.flows_evicted = 0
        # The directions of open flows that want no more data, by their addresses and ports as they sit on the
        # wire (source address, destination address, source port, destination port: 12 bytes for IPv4, 36 for
        # IPv6), for the capture reader's fast lane: it looks a segment up here and calls `count_lane`, without
        # building a TcpPacket or even the text of the addresses.
        self.lanes: dict[bytes, Lane] = {}
        # Address text -> its wire bytes (None: no lane for it), per IP version, for the lanes' keys.
        self._wire4: dict[str, bytes | None] = {}
        self._wire6: dict[str, bytes | None] = {}
        # 4-tuple -> its lane key, noted by the capture reader for the TcpPackets it builds from the wire bytes
        # (pcap.four_tuple_texts): the lane keys of most flows without converting their addresses back.
        self.wire_keys: dict[FlowKey, bytes] = {}
        # The reader's cache of those 4-tuples' text, by the lane key (pcap.four_tuple_texts), kept here so that a
        # flow's entries in both go when its lanes open: the reader builds no TcpPacket of it then, as a rule.
        self.wire_tuples: dict[bytes, tuple[str, str, int, int]] = {}
        # The flow whose in-order chunk `add` returned last: the next `add` looks whether the consumer stopped
        # wanting its data meanwhile (see `_stopped_early`).
        self._fed: _Flow | None = None

    @property
    def next_expiry(self) -> float:
        """Capture time from which `add`/`advance` run the next expiry pass: `advance(ts)` for an earlier `ts`
        changes nothing that matters (a caller may skip it)."""
        return self._next_expiry

    @property
    def open_flows(self) -> int:
        return len(self._open) + len(self._closing)

    def opened_connections(self) -> list[Connection]:
        """The connections open or lingering whose ConnectionOpened was given (roles settled). Lone SYNs are made
        flows first: their roles were settled by the SYN."""
        self._hatch_all()
        return [flow.conn for table in (self._open, self._closing) for flow in table.values() if flow.settled]

    def open_flow_frames(self) -> list[tuple[int, int, int]]:
        """(flow id, first frame, last frame) of every connection open or lingering, lone SYNs included: what a
        `--jobs` range worker that stops before the end of the file leaves without a record."""
        out = []
        for table in (self._open, self._closing):
            for flow_id, flow in table.items():
                if flow.__class__ is _LoneSyn:
                    frame = flow.pkt.frame
                    out.append((flow_id, frame, frame))
                else:
                    out.append((flow_id, flow.conn.first_frame, flow.conn.last_frame))
        return out

    def midstream_flow_ids(self) -> set[int]:
        """The ids of the connections open or lingering of which neither a SYN nor a SYN-ACK was seen (joined
        mid-stream), their roles settled or not (a lone ACK settles none)."""
        return {flow_id for table in (self._open, self._closing) for flow_id, flow in table.items()
                if flow.__class__ is not _LoneSyn and flow.conn.client.syn_frame is None
                and flow.conn.server.synack_frame is None}

    def open_among(self, keys: Collection[FlowKey]) -> FlowKey | None:
        """A 4-tuple of `keys` whose connection is open and not lingering after its close (a lone SYN counts as
        open); None when every one of them lingers or is gone."""
        if len(self._open) < len(keys):  # (past a range most of a worker's flows linger: look at the open ones)
            for flow in self._open.values():
                for key in flow.keys:
                    if key in keys:
                        return key
            return None
        flows = self._flows
        for key in keys:
            entry = flows.get(key)
            if entry is not None and (entry[0].__class__ is _LoneSyn or not entry[0].closing):
                return key
        return None

    def end_lingering(self, keys: Iterable[FlowKey]
                      ) -> tuple[list[Event], dict[int, tuple[float, tuple[tuple[str, int, int | None], ...]]]]:
        """Close now the lingering connections of `keys` (`open_among` is None for them), as the end of their linger
        would close them ("closed"), the one whose last packet came first first: (the events, and flow id -> (the
        time of its last packet, from which a packet on its 4-tuple within `linger_timeout` would have joined it,
        and the (address, port, ISN or None) of each side: a SYN without ACK with another ISN would have started a
        new connection instead, `parallel_ranges.starts_anew`)).
        Why: a `--jobs` range worker past its range follows its own connections only; once all of them linger, the
        next `linger_timeout` of capture (5 s: on the bench capture 14 % of the file) would only be read for a
        stray packet of theirs, which the later workers see too (`parallel_ranges._Placer` checks)."""
        flows = {entry[0].flow_id: entry[0] for entry in map(self._flows.get, keys)
                 if entry is not None and entry[0].__class__ is not _LoneSyn and entry[0].closing}
        out: list[Event] = []
        ended: dict[int, tuple[float, tuple[tuple[str, int, int | None], ...]]] = {}
        for flow in sorted(flows.values(), key=lambda f: f.conn.last_frame):
            conn = flow.conn
            ended[flow.flow_id] = (flow.last_ts, ((conn.client_ip, conn.client_port, conn.client.isn),
                                                  (conn.server_ip, conn.server_port, conn.server.isn)))
            self._close(flow, "closed", out)
        return out, ended

    def open_flow_ids(self) -> dict[FlowKey, int]:
        """Every 4-tuple of the flow table, in both directions, with its flow's id: the connections open or
        lingering (lone SYNs included), which a `--jobs --series` worker follows into the files after its own."""
        return {key: flow.flow_id for key, (flow, _side) in self._flows.items()}

    def connection(self, src: str, sport: int, dst: str, dport: int) -> Connection | None:
        """The open (or lingering) connection of this 4-tuple, either direction, if there is one."""
        entry = self._flows.get((src, sport, dst, dport))
        if entry is None:
            return None
        flow = entry[0]
        if flow.__class__ is _LoneSyn:
            flow = self._hatch(flow, [])  # (its ConnectionOpened is of no use to this caller)
        return flow.conn

    # --- packets ---------------------------------------------------------------------------------------------

    def add(self, pkt: TcpPacket) -> list[Event]:
        fed = self._fed
        if fed is not None:
            self._fed = None
            if not fed.conn.wants_data:
                self._stopped_early(fed)
        out: list[Event] = []
        ts = pkt.ts
        if ts > self._now:
            self._now = ts
            if ts >= self._next_expiry:
                # Passes at the first packet of each whole interval of capture time, not one interval after the
                # last pass: then a reader that starts in the middle of a capture (--jobs byte ranges) runs its
                # passes at the same packets as one that read it all.
                self._next_expiry = ts - ts % self.expiry_interval + self.expiry_interval
                self._expire(ts, out)
        flags = pkt.flags
        key = (pkt.src, pkt.sport, pkt.dst, pkt.dport)
        entry = self._flows.get(key)
        if entry is not None:
            flow, index = entry
            if ts - flow.last_ts > (self.linger_timeout if flow.closing else self.idle_timeout):
                self._close(flow, "closed" if flow.closing else "idle", out)
                entry = None
            else:
                if flow.__class__ is _LoneSyn:
                    flow = self._hatch(flow, out)
                if flags & _SYN_ACK == SYN and self._starts_new_connection(flow, index, pkt.seq):
                    if not flow.closing and flow.sides[0].fin_offset is None and flow.sides[1].fin_offset is None:
                        flow.conn.note(anomalies.SYN_ON_OPEN_FLOW)
                    self._close(flow, "port_reuse", out)
                    entry = None
        if entry is None:
            if (flags & _LONE_SYN_FLAGS == SYN and len(self._open) >= self._lone_syns_from and not pkt.payload
                    and not pkt.cut):
                self._open_flow(pkt, key, out, lone=True)
                return out
            flow = self._open_flow(pkt, key, out)
            index = 0

        conn = flow.conn
        if not conn.wants_data:
            if flow.full:
                self._stop_reassembly(flow)
            # The same facts as the code below, in fewer steps (count_lane's checks hold here, as add has just
            # run expiry and the idle check; a closing or unsettled flow takes the code below).
            if (not flags & _SYN_RST and flow.settled and not flow.closing
                    and self.count_lane(flow.lanes[index], pkt.frame, ts, pkt.seq,  # type: ignore[index]
                                        pkt.ack, flags, pkt.window, pkt.ttl, len(pkt.payload))):
                return out
        side = flow.sides[index]
        peer = flow.sides[index ^ 1]
        facts = side.facts
        frame = pkt.frame
        full = flow.full

        # Facts every packet updates, whatever the consumer wants.
        facts.packets += 1
        if pkt.cut:
            facts.cut_segments += 1
            if facts.cut_frame is None:
                facts.cut_frame = pkt.frame
        previous_ts = facts.last_ts  # (this side's last packet: a copy of it follows at once)
        if facts.first_ts is None:
            facts.first_ts = ts
        facts.last_ts = ts
        flow.last_ts = ts
        side.lane_until = peer.lane_until = _NEVER  # (last_ts may have gone back: count_lane's bounds are made again)
        if ts > conn.last_ts:  # noqa: PLR1730 (hot path: a call to max() costs more)
            conn.last_ts = ts
        conn.last_frame = frame
        if flags & RST:
            facts.rst_count += 1
            if facts.rst_frame is None:
                facts.rst_frame = frame
                facts.rst_ts = ts
                facts.rst_ttl = pkt.ttl
                facts.rst_ip_id = pkt.ip_id
        else:
            if pkt.ttl != side.ttl_run:  # (the packets of a run are counted by facts.packets)
                side.new_ttl_run(pkt.ttl)
            if pkt.window == 0:
                facts.zero_window = True

        seq = pkt.seq
        payload = pkt.payload
        n = len(payload)
        pieces: list[Piece] | None = None  # delivered by HalfStream.receive (not in order, or roles unknown)
        chunk = None  # the segment itself, in order with nothing waiting, delivered directly
        if flags & SYN:
            self._on_syn(flow, side, peer, pkt, n, out)
            seq = (seq + 1) & 0xFFFFFFFF

        if n:
            if flags & RST:
                # Receivers drop a RST's payload; keep it out of the stream but count it.
                conn.note(anomalies.RST_WITH_DATA)
                facts.payload_bytes += n
            else:
                if not side.started:
                    side.start(seq)
                # side.offset_of(seq), inlined: wrap-safe distance from the highest sequence number seen. Sequence
                # numbers are mostly past 2^30, where each +, - and & of Python's integers allocates: none for the
                # bytes right after the highest (the common case), one subtraction for a distance that needs no wrap.
                start = side.high_offset
                if seq != side.high_seq:
                    distance = seq - side.high_seq
                    if not _NEG_HALF <= distance < _HALF:
                        distance = ((distance + _HALF) & _MASK) - _HALF
                    start += distance
                end = start + n
                facts.payload_bytes += n
                if facts.first_payload_frame is None:
                    facts.first_payload_frame = frame
                    facts.first_payload_ts = ts
                facts.last_payload_frame = frame
                facts.last_payload_ts = ts
                if n > facts.largest_segment:
                    facts.largest_segment = n
                    facts.largest_segment_frame = frame
                    facts.largest_segment_acked = False
                    side.largest_end = end
                if full:
                    if start == side.next_offset and flow.settled and not side.segments:
                        # HalfStream.receive's common case inlined: in order, nothing buffered, roles known (no
                        # list of pieces, no call). Appended last, as _deliver would (after what the ACK frees).
                        # Not delivered when it lies inside a record body the consumer only skips (`skip_until`),
                        # nor kept for the retransmission check (see `skip_until`).
                        if end > side.skip_until:
                            chunk = stream_chunk(conn, side.sender, start, payload, 0, frame, ts)
                            history = side.history
                            if history is _NO_HISTORY:  # (a list from the first delivery on)
                                history = side.history = []
                            history.append((start, end, payload))
                            side.history_bytes += n
                            if side.history_bytes > self._max_history_bytes:
                                side.trim_history()
                        side.next_offset = end
                        seen = 0
                    else:
                        pieces = []
                        seen = side.receive(start, payload, frame, ts, pieces)
                else:
                    # Not reassembling: what lies below the highest byte seen counts as retransmitted.
                    high = side.high_offset
                    seen = (min(end, high) - start) if start < high else 0
                if end > side.high_offset:
                    high_seq = seq + n
                    if high_seq > _MASK:  # (cheaper than masking: a comparison allocates no integer)
                        high_seq &= _MASK
                    side.high_seq = high_seq
                    side.high_offset = facts.stream_bytes = end
                if seen:
                    if (seen == n and end == side.high_offset and previous_ts is not None
                            and ts - previous_ts <= DUPLICATE_WITHIN):
                        facts.duplicates += 1  # the latest bytes again, at once: a second copy in the capture
                    else:
                        self._retransmitted(facts, frame, start, seen)

        if flags & FIN:
            self._on_fin(side, seq, n, frame, ts, previous_ts)

        if flags & ACK and pkt.ack != facts.unseen_ack_last and not peer.facts.packets and not flags & RST:
            _unseen_ack(facts, pkt.ack, ts)  # (the peer's stream may have been started by a SYN-ACK's ack alone)
        if flags & ACK and peer.started:
            ack = pkt.ack
            ack_offset = peer.high_offset
            if ack != peer.high_seq:  # (acknowledging all the peer sent is the common case: as for `start` above)
                distance = ack - peer.high_seq
                if not _NEG_HALF <= distance < _HALF:
                    distance = ((distance + _HALF) & _MASK) - _HALF
                ack_offset += distance
            if ack_offset - peer.high_offset > _MAX_ACK_AHEAD:
                conn.note(anomalies.ACK_BEYOND_WINDOW)
            else:
                if peer.fin_offset is not None and ack_offset > peer.fin_offset:
                    ack_offset = peer.fin_offset  # the FIN takes a sequence number, not a stream byte
                    peer.fin_acked = True
                if ack_offset > facts.acked_bytes:
                    facts.acked_bytes = ack_offset
                    facts.acked_frame = frame
                peer_facts = peer.facts
                if not peer_facts.largest_segment_acked and ack_offset >= peer.largest_end:
                    peer_facts.largest_segment_acked = True
                if not full or flags & RST:
                    pass
                elif not peer.segments:
                    # HalfStream.acked inlined for a peer with nothing buffered (no hole it could declare): forget
                    # the history the ACK covers, raise acked_limit (ack_offset is already capped at the FIN).
                    history = peer.history
                    if history and history[0][1] <= ack_offset:
                        history_bytes = peer.history_bytes
                        covered = 0
                        for h_start, h_end, _ in history:
                            if h_end > ack_offset:
                                break
                            history_bytes -= h_end - h_start
                            covered += 1
                        del history[:covered]  # type: ignore[arg-type]
                        peer.history_bytes = history_bytes
                    if ack_offset > peer.acked_limit:  # noqa: PLR1730 (hot path)
                        peer.acked_limit = ack_offset
                elif ack_offset > peer.acked_limit or peer.history:
                    peer_pieces: list[Piece] = []
                    peer.acked(ack_offset, peer_pieces, frame, ts)
                    if peer_pieces:
                        peer.facts.stream_bytes = peer.high_offset
                        self._deliver(flow, peer, peer_pieces, out)

        if chunk is not None:
            out.append(chunk)
            self._fed = flow
        elif pieces:
            self._deliver(flow, side, pieces, out)
        if not flow.settled and (flow.pending or flow.hello_index is not None):
            self._try_settle(flow, out, force=False)

        # Closed once a RST is seen or both FINs are acknowledged: then only stray packets can follow. A FIN not
        # yet acknowledged will be retransmitted (with backoff, for up to minutes): that flow stays open. Unless
        # the peer has sent nothing: a side that sends a FIN was answered (a SYN-ACK at least), so the peer's
        # packets are missing from the capture (one direction captured), and its acknowledgement of this FIN never
        # comes. Such a flow stayed open for the idle timeout: a busy link seen one way held every connection of
        # the last five minutes (5,000 at once: 17,710 open 25 s in). It lingers instead, as after the last ACK
        # of a close, once this side has also acknowledged what can be the peer's close (`_one_way_closed`).
        # Without that, the peer may still be sending (a half-closed connection: one whose peer was silent 10 s
        # after the client's FIN, then closed, would have given the client's last ACK a connection of its own):
        # the flow stays open.
        if not flow.closing and (flags & RST or (side.fin_acked and peer.fin_acked) or _one_way_closed(side, peer)):
            self._start_closing(flow)
        return out

    def _stopped_early(self, flow: _Flow) -> None:
        """The consumer stopped wanting the data of the flow whose chunk the last `add` returned: stop its
        reassembly now, so that its next segment finds its lanes open (it would come back to `add` otherwise), when
        that changes nothing else: the flow is open and still reassembling, and ending it would deliver nothing (no
        segment waiting, no hole before its FIN or before what the peer acknowledged, on either side), as ending
        it before its next segment (idle, reused, evicted, end of capture) does for a flow still reassembling."""
        if not flow.full or flow.conn.close_reason is not None:  # (closed meanwhile: `advance`, `expire`, `finish`)
            return
        for side in flow.sides:
            if side.segments or (side.started and max(side.fin_offset or 0, side.acked_limit) > side.next_offset):
                return
        self._stop_reassembly(flow)

    def _stop_reassembly(self, flow: _Flow) -> None:
        """The consumer wants no more data from this flow: drop the buffers, and open its lanes (see `lanes`)."""
        flow.full = False
        side0, side1 = flow.sides
        side0.stop_reassembly()
        side1.stop_reassembly()
        self._open_lanes(flow)

    def _open_lanes(self, flow: _Flow) -> None:
        """Put the flow's two directions in `lanes` (found by the reader's fast lane): for a flow that wants no
        more data (`_stop_reassembly`), or one whose consumer only skips a record body (`skip_until`)."""
        side0, side1 = flow.sides
        conn = flow.conn
        flow.lanes = ((flow, side0, side1, side0.facts, conn), (flow, side1, side0, side1.facts, conn))
        if flow.closing or not flow.settled:
            return  # such a flow's packets take add's full code (linger timeout, roles still to settle)
        keys = flow.keys
        if len(keys) == 2:
            wire_keys = self.wire_keys
            raw0 = wire_keys.get(keys[0])
            raw1 = wire_keys.get(keys[1])
            if raw0 is not None and raw1 is not None:
                lanes = self.lanes
                lanes[raw0], lanes[raw1] = flow.lanes
                flow.lane_keys = (raw0, raw1)
                del wire_keys[keys[0]], wire_keys[keys[1]]
                tuples = self.wire_tuples
                tuples.pop(raw0, None)
                tuples.pop(raw1, None)
                return
        wire = self._wire4 if conn.ip_version == 4 else self._wire6
        raw_keys = []
        for src, sport, dst, dport in flow.keys:
            raw_src = wire.get(src, _UNKNOWN)
            if raw_src is _UNKNOWN:
                raw_src = self._wire_address(wire, conn.ip_version, src)
            raw_dst = wire.get(dst, _UNKNOWN)
            if raw_dst is _UNKNOWN:
                raw_dst = self._wire_address(wire, conn.ip_version, dst)
            if raw_src is None or raw_dst is None:
                return
            raw_keys.append(raw_src + raw_dst + _PORTS(sport, dport))  # type: ignore[operator]
        lanes = self.lanes
        for raw, lane in zip(raw_keys, flow.lanes):
            lanes[raw] = lane
        flow.lane_keys = tuple(raw_keys)

    @staticmethod
    def _wire_address(wire: dict[str, bytes | None], ip_version: int, text: str) -> bytes | None:
        """An address as the reader finds it on the wire, or None when the reader would not make this text of
        those bytes (then a segment with them would not have come to this flow as a TcpPacket). Remembered in
        `wire` (the same few addresses open most flows)."""
        family = AF_INET if ip_version == 4 else AF_INET6
        try:
            raw: bytes | None = inet_pton(family, text)
        except (OSError, ValueError):
            raw = None
        else:
            if inet_ntop(family, raw) != text:  # type: ignore[arg-type]
                raw = None
        if len(wire) >= _WIRE_ADDRESSES_KEPT:
            wire.clear()
        wire[text] = raw
        return raw

    @staticmethod
    def _close_lanes(lanes: dict[bytes, Lane], flow: _Flow) -> None:
        for raw in flow.lane_keys:
            del lanes[raw]
        flow.lane_keys = ()

    def _start_closing(self, flow: _Flow) -> None:
        if flow.lane_keys:
            self._close_lanes(self.lanes, flow)
        flow.closing = True
        fid = flow.conn.flow_id
        del self._open[fid]
        self._closing[fid] = flow
        self._queue(self._closing_queue, self._closing, flow.conn.last_frame, fid)

    def advance(self, ts: float) -> list[Event] | tuple[()]:
        """Capture time `ts` passes without a packet for this reassembler (another shard's packet, with `--jobs`
        on one file): the same expiry as `add` would run at that packet, so that flows close exactly when they
        would in a single process."""
        if ts > self._now:
            self._now = ts
            if ts >= self._next_expiry:
                self._next_expiry = ts - ts % self.expiry_interval + self.expiry_interval  # as in `add`
                out: list[Event] = []
                self._expire(ts, out)
                return out
        return ()

    def expire(self, now: float) -> list[Event]:
        """Close the connections idle longer than `idle_timeout` (or lingering longer than `linger_timeout`) at
        time `now`. Reading a capture never needs this (`add` expires by packet time); live capture calls it with
        the wall clock so that a connection is reported when it ends, not when the next packet happens to come."""
        out: list[Event] = []
        self._expire(now, out)
        return out

    def count_only(self, key: FlowKey, frame: int, ts: float, seq: int, ack: int, flags: int, window: int,
                   ttl: int, n: int) -> bool:
        """`add` for a packet given by its header fields, when it belongs to a connection that wants no more data
        and carries no SYN or RST, and its time neither runs expiry nor closes the connection: the capture
        reader calls this before building a TcpPacket, so that such packets (most of a capture) cost a dict
        lookup and a few counters. Returns False, having changed nothing, when `add` must take the packet."""
        entry = self._flows.get(key)
        if entry is None or flags & _SYN_RST:
            return False
        flow, index = entry
        if flow.__class__ is _LoneSyn or flow.full or flow.closing or not flow.settled:
            return False
        return self.count_lane(flow.lanes[index], frame, ts, seq, ack, flags, window, ttl, n)  # type: ignore[index]

    def skip_until(self, conn: Connection, sender: Sender, last: int) -> None:
        """The consumer of `conn`'s stream from `sender` only skips the bytes before stream offset `last` (the last
        byte of a record body it does not read): in-order segments that end before it need not be delivered. Those
        that are not delivered still count in every fact, and as retransmitted when they come again; the next chunk
        delivered (in order or not) starts past them, and the consumer takes the difference as skipped bytes. Why: a
        download joined in the middle never wants no more data (its handshake is not in the capture, its client
        silent), and each of its segments went through a chunk and the parser only to be skipped.

        Their bytes are not kept for the retransmission check (a copy that comes again with other bytes,
        `overlap_data_mismatch`): that check keeps each side's segments until the peer acknowledges them, and where
        acknowledgements are few or not in the capture (one direction of an asymmetric route on a SPAN port, a
        large window) every connection held up to `retransmit_check_bytes` a side for bytes nobody reads, the
        inside of encrypted records. 5,000 connections at once seen one way only: 558 MiB peak; two ways, 125."""
        flow = self._open.get(conn.flow_id)
        if flow is None or flow.__class__ is _LoneSyn or flow.conn is not conn:
            return
        for side in flow.sides:
            if side.sender is sender:
                side.skip_until = last
        # The segments held back need not become TcpPackets either: the flow's lanes let the reader give them (and
        # the peer's bare ACKs) to count_lane, which takes what `add` would hold back (`_count_skipped`).
        if flow.full and flow.settled and not flow.closing and not flow.lane_keys:
            self._open_lanes(flow)

    def count_lane(self, lane: Lane, frame: int, ts: float, seq: int, ack: int, flags: int, window: int,
                   ttl: int, n: int) -> bool:
        """`add` for a segment of a direction found in `lanes` (its connection wants no more data, is settled
        and not closing), given by its header fields; the caller has checked that it carries no SYN or RST.
        Returns False, having changed nothing, when its time runs expiry or ends the flow's idle time: then `add`
        must take it. Otherwise the segment changes exactly the facts that `add`'s full code would (no buffer, no
        chunk, no roles), in fewer steps: most segments of a capture come here.

        `_now` is left as it is: it only gates expiry in `add`/`advance`, and a counted segment's time is before
        `next_expiry` (as every time seen so far is), so a later segment between `_now` and it runs no expiry
        either way.

        The payload is not given, only its length `n`: no segment counted here needs its bytes (those of a flow
        that still wants data lie inside a record body its consumer skips, whose bytes are not kept:
        `skip_until`)."""
        flow, side, peer, facts, conn = lane
        if ts >= side.lane_until or ts < flow.last_ts:
            if flow.full:
                return self._count_skipped(flow, side, peer, facts, conn, frame, ts, seq, ack, flags, window, ttl, n)
            # The full test of the segment's time, and the facts of a side's first segments (see `_lane_time`).
            if not self._lane_time(flow, side, peer, ts):
                return False
            if facts.first_ts is None:
                facts.first_ts = ts
            if n:
                if not side.started:
                    side.start(seq)
                if facts.first_payload_frame is None:
                    facts.first_payload_frame = frame
                    facts.first_payload_ts = ts
            elif facts.first_payload_frame is None:
                side.lane_until = _NEVER  # (see _lane_time)
        facts.packets += 1
        previous_ts = facts.last_ts
        facts.last_ts = ts
        flow.last_ts = ts
        if ts > conn.last_ts:  # noqa: PLR1730 (hot path: a call to max() costs more)
            conn.last_ts = ts
        conn.last_frame = frame
        if ttl != side.ttl_run:
            side.new_ttl_run(ttl)
        if not window:
            facts.zero_window = True
        if n:
            high = side.high_offset
            high_seq = side.high_seq
            facts.payload_bytes += n
            facts.last_payload_frame = frame
            facts.last_payload_ts = ts
            if seq == high_seq:  # the bytes right after the highest seen (start == high): the common case
                end = high + n
                high_seq = seq + n
                if high_seq > _MASK:  # (cheaper than masking: a comparison allocates no integer)
                    high_seq &= _MASK
                side.high_seq = high_seq
                side.high_offset = facts.stream_bytes = end
            else:
                distance = seq - high_seq  # (wrap-safe as in `add`)
                if not _NEG_HALF <= distance < _HALF:
                    distance = ((distance + _HALF) & _MASK) - _HALF
                start = high + distance
                end = start + n
                if end > high:
                    high_seq = seq + n
                    if high_seq > _MASK:
                        high_seq &= _MASK
                    side.high_seq = high_seq
                    side.high_offset = facts.stream_bytes = end
                if start < high:  # bytes below the highest seen: retransmitted, or a copy of the latest
                    if end == high and previous_ts is not None and ts - previous_ts <= DUPLICATE_WITHIN:  # (`add`)
                        facts.duplicates += 1
                    else:
                        self._retransmitted(facts, frame, start, min(end, high) - start)
            if n > facts.largest_segment:
                facts.largest_segment = n
                facts.largest_segment_frame = frame
                facts.largest_segment_acked = False
                side.largest_end = end
        if flags & FIN:
            self._on_fin(side, seq, n, frame, ts, previous_ts)
            if _one_way_closed(side, peer):  # (as in add)
                self._start_closing(flow)
        if flags & ACK and peer.started:
            if ack == peer.high_seq and peer.fin_offset is None:
                # Acknowledges every byte the peer sent so far, no FIN to cap it at: the common case. That is at or
                # past the end of the peer's largest segment (no byte beyond the highest is ever sent).
                ack_offset = peer.high_offset
                if ack_offset > facts.acked_bytes:
                    facts.acked_bytes = ack_offset
                    facts.acked_frame = frame
                peer_facts = peer.facts
                if not peer_facts.largest_segment_acked:
                    peer_facts.largest_segment_acked = True
                return True
            # (As in add; an ACK of nothing new, above, changes nothing there.)
            if ack != facts.unseen_ack_last and not peer.facts.packets:
                _unseen_ack(facts, ack, ts)
                if not flow.closing and _one_way_closed(side, peer):  # (as in add)
                    self._start_closing(flow)
            high = peer.high_offset
            distance = ack - peer.high_seq
            if not _NEG_HALF <= distance < _HALF:
                distance = ((distance + _HALF) & _MASK) - _HALF
            ack_offset = high + distance
            if distance > _MAX_ACK_AHEAD:
                conn.note(anomalies.ACK_BEYOND_WINDOW)
                return True
            fin_offset = peer.fin_offset
            if fin_offset is not None and ack_offset > fin_offset:
                ack_offset = fin_offset  # the FIN takes a sequence number, not a stream byte
                peer.fin_acked = True
                if side.fin_acked:  # the last ACK of the close
                    self._start_closing(flow)
            if ack_offset > facts.acked_bytes:
                facts.acked_bytes = ack_offset
                facts.acked_frame = frame
            if ack_offset >= peer.largest_end:
                peer_facts = peer.facts
                if not peer_facts.largest_segment_acked:
                    peer_facts.largest_segment_acked = True
        elif flags & ACK and ack != facts.unseen_ack_last and not peer.facts.packets:
            _unseen_ack(facts, ack, ts)
            if not flow.closing and _one_way_closed(side, peer):  # (as in add)
                self._start_closing(flow)
        return True

    def _count_skipped(self, flow: _Flow, side: HalfStream, peer: HalfStream, facts: DirectionFacts,
                       conn: Connection, frame: int, ts: float, seq: int, ack: int, flags: int, window: int,
                       ttl: int, n: int) -> bool:
        """count_lane for a flow that still wants data (reassembling, settled, not closing): `add`'s full code for a
        segment that it would deliver nothing of, which are the commonest segments of a download joined in the
        middle: in-order data inside the record body the consumer skips (`skip_until`), with nothing buffered on
        that side, and bare ACKs. Anything else (a FIN, data out of order or past the body, an ACK that could free
        the peer's buffered bytes, a time that runs expiry or ends the idle time, a consumer that no longer wants
        data) returns False having changed nothing: `add` takes it."""
        if (not conn.wants_data or flags & FIN or ts >= self._next_expiry or ts - flow.last_ts > self.idle_timeout
                or side.fin_offset is not None or peer.fin_offset is not None or (flags & ACK and peer.segments)):
            return False
        if n:
            start = side.high_offset
            end = start + n
            if (seq != side.high_seq or start != side.next_offset or end > side.skip_until or side.segments
                    or not side.started):
                return False
        # From here, what add does (in its order) for such a segment.
        facts.packets += 1
        if facts.first_ts is None:
            facts.first_ts = ts
        facts.last_ts = ts
        flow.last_ts = ts
        if ts > conn.last_ts:  # noqa: PLR1730 (hot path)
            conn.last_ts = ts
        conn.last_frame = frame
        if ttl != side.ttl_run:
            side.new_ttl_run(ttl)
        if not window:
            facts.zero_window = True
        if n:
            facts.payload_bytes += n
            if facts.first_payload_frame is None:
                facts.first_payload_frame = frame
                facts.first_payload_ts = ts
            facts.last_payload_frame = frame
            facts.last_payload_ts = ts
            if n > facts.largest_segment:
                facts.largest_segment = n
                facts.largest_segment_frame = frame
                facts.largest_segment_acked = False
                side.largest_end = end
            side.next_offset = end  # (not kept for the retransmission check: see `skip_until`)
            high_seq = seq + n
            if high_seq > _MASK:
                high_seq &= _MASK
            side.high_seq = high_seq
            side.high_offset = facts.stream_bytes = end
        if flags & ACK and ack != facts.unseen_ack_last and not peer.facts.packets:
            _unseen_ack(facts, ack, ts)  # (as in add)
        if flags & ACK and peer.started:
            ack_offset = peer.high_offset
            if ack != peer.high_seq:
                distance = ack - peer.high_seq
                if not _NEG_HALF <= distance < _HALF:
                    distance = ((distance + _HALF) & _MASK) - _HALF
                ack_offset += distance
            if ack_offset - peer.high_offset > _MAX_ACK_AHEAD:
                conn.note(anomalies.ACK_BEYOND_WINDOW)
            else:
                if ack_offset > facts.acked_bytes:
                    facts.acked_bytes = ack_offset
                    facts.acked_frame = frame
                peer_facts = peer.facts
                if not peer_facts.largest_segment_acked and ack_offset >= peer.largest_end:
                    peer_facts.largest_segment_acked = True
                # (HalfStream.acked for a peer with nothing buffered, as in add)
                history = peer.history
                if history and history[0][1] <= ack_offset:
                    history_bytes = peer.history_bytes
                    covered = 0
                    for h_start, h_end, _ in history:
                        if h_end > ack_offset:
                            break
                        history_bytes -= h_end - h_start
                        covered += 1
                    del history[:covered]  # type: ignore[arg-type]
                    peer.history_bytes = history_bytes
                if ack_offset > peer.acked_limit:  # noqa: PLR1730 (hot path)
                    peer.acked_limit = ack_offset
        return True

    def _lane_time(self, flow: _Flow, side: HalfStream, peer: HalfStream, ts: float) -> bool:
        """count_lane's test of a segment's time, in full: False when it runs expiry or ends the flow's idle time.
        Otherwise it sets `side.lane_until`, a time before which the side's later segments (not before the flow's
        last one: count_lane sets last_ts to this one's time) pass the test too, so that count_lane need not run
        it: at most the next expiry, and a time whose distance from this one (measured as the test measures it, in
        floats) is within the idle timeout (its half, unless that is too little to tell at this time's
        magnitude). That holds as long as last_ts does not go back: this sets the peer's bound to -inf when it
        does, and `add` sets both (it may set last_ts back). count_lane also sets the bound to -inf while the side
        has sent no payload: its fast code leaves out the checks of a side's first segment and first payload."""
        next_expiry = self._next_expiry
        idle = self.idle_timeout
        last = flow.last_ts
        if ts >= next_expiry or ts - last > idle:
            return False
        if ts < last:
            peer.lane_until = _NEVER
        until = ts + idle * 0.5
        if until - ts > idle:  # (rounding at a huge time, or a negative timeout)
            until = ts
        side.lane_until = until if until < next_expiry else next_expiry  # noqa: FURB136 (min(): ~400 instructions)
        return True

    def finish(self) -> list[Event]:
        """End of capture: flush every hole as a gap, deliver what waits, close every connection."""
        return [event for events in self.finish_each() for event in events]

    def finish_each(self) -> Iterator[list[Event]]:
        """`finish`, the events of a few connections at a time, each batch given before the next connections are
        closed: a consumer that is done with them lets those connections go (a flow table full of lone SYNs is not
        made into full flows all at once)."""
        flows = sorted([*self._open.values(), *self._closing.values()], key=_FLOW_ID)
        close = self._close
        # (in batches: a generator's turn per connection cost ~1,900 instructions a connection)
        for start in range(0, len(flows), _FINISHED_TOGETHER):
            out: list[Event] = []
            for flow in flows[start:start + _FINISHED_TOGETHER]:
                close(flow, "closed" if flow.closing else "end_of_capture", out)
            yield out

    # --- connection life -------------------------------------------------------------------------------------

    def _hatch(self, syn: _LoneSyn, out: list[Event]) -> _Flow:
        """The flow a lone SYN stands for, in its place in the tables, with the facts and events (ConnectionOpened)
        that `add` gives a connection's first packet when that is a SYN without ACK, payload or cut."""
        pkt = syn.pkt
        flow = self._open_flow(pkt, syn.keys[0], [], syn.flow_id)
        side, peer = flow.sides
        facts = side.facts
        facts.packets = 1
        facts.first_ts = facts.last_ts = pkt.ts
        side.new_ttl_run(pkt.ttl)
        if pkt.window == 0:
            facts.zero_window = True
        self._on_syn(flow, side, peer, pkt, 0, out)
        return flow

    def _close_lone_syn(self, syn: _LoneSyn, reason: str, out: list[Event], anomaly: str | None) -> None:
        """`_close` of the flow `_hatch` would make, without making its streams: the connection and facts that the
        SYN and the close give (the client's SYN, its TTL, roles from it; nothing buffered, nothing to deliver)."""
        pkt = syn.pkt
        src, sport, dst, dport = syn.keys[0]
        frame = pkt.frame
        ts = pkt.ts
        conn = Connection(syn.flow_id, pkt.ip_version, src, sport, dst, dport, frame, ts, ts, frame)
        facts = conn.client
        facts.packets = 1
        facts.first_ts = facts.last_ts = facts.syn_ts = ts
        facts.syn_frame = frame
        facts.isn = pkt.seq
        facts.ttls[pkt.ttl] = 1
        if pkt.window == 0:
            facts.zero_window = True
        conn.roles_from = "syn"
        out.append(ConnectionOpened(conn))
        if anomaly is not None:
            conn.note(anomaly)
        conn.close_reason = reason
        out.append(ConnectionClosed(conn))
        flows = self._flows
        for key in syn.keys:
            del flows[key]
        del self._open[syn.flow_id]

    def _hatch_all(self) -> None:
        """Every lone SYN made a flow (their ConnectionOpened events dropped)."""
        for syn in [flow for flow in self._open.values() if flow.__class__ is _LoneSyn]:
            self._hatch(syn, [])  # type: ignore[arg-type]

    def _open_flow(self, pkt: TcpPacket, key: FlowKey, out: list[Event], hatched: int = 0,
                   lone: bool = False) -> _Flow:
        """The flow of a new connection whose first packet is `pkt` (`key`: its 4-tuple), in the tables; with
        `lone`, that packet kept as a `_LoneSyn` instead (what `add` would do for it waits for `_hatch`); with
        `hatched` (a lone SYN's flow id), the flow of that lone SYN, in its place."""
        if not hatched:
            if len(self._open) + len(self._closing) >= self.max_flows:
                self._evict(out)
            self.flows_opened = flow_id = self.flows_opened + 1
        else:
            flow_id = hatched
        src, sport, dst, dport = key
        frame = pkt.frame
        reverse = (dst, dport, src, sport)
        keys = (key,) if reverse == key else (key, reverse)
        if lone:
            flow: _Flow = _LoneSyn(flow_id, pkt, keys)  # type: ignore[assignment]
        else:
            ts = pkt.ts
            # Positional: keyword arguments cost more to match (fields: flow_id, ip_version, client_ip,
            # client_port, server_ip, server_port, first_frame, start, last_ts, last_frame).
            conn = Connection(flow_id, pkt.ip_version, src, sport, dst, dport, frame, ts, ts, frame)
            limits = self.limits
            sides = (HalfStream(conn, conn.client, limits, 0), HalfStream(conn, conn.server, limits, 1))
            flow = _Flow(conn, sides, keys, ts)
            if pkt.payload and not pkt.flags & SYN and MIDSTREAM_DATA not in self.lanes:
                # The capture reader builds the packets of the commonest layout from the fields its fast lane
                # unpacked (pcap.walk_records) only while `lanes` is not empty: a capture that begins during long
                # transfers, or a --jobs range starting in one, has no flow that wants no more data for a long
                # while (their handshakes are not in it, and one side sends nothing), and every segment took the
                # full decoder. (Scans and floods, never joined in the middle, keep the decoder: building there
                # cost more than it saved.) 440 MB of downloads joined in the middle: -9.8 % instructions.
                self.lanes[MIDSTREAM_DATA] = None  # type: ignore[assignment]
        flows = self._flows
        flows[key] = (flow, 0)
        if reverse != key:
            flows[reverse] = (flow, 1)
        self._open[flow_id] = flow
        if not hatched:
            self._queue(self._open_queue, self._open, frame, flow_id)
        return flow

    @staticmethod
    def _queue(queue: list[tuple[int, int]], table: dict[int, _Flow], frame: int, flow_id: int) -> None:
        """Queue a flow that has just entered `table` (at `frame`, its last packet's). The queue keeps one entry
        per flow it has seen, those of flows gone from the table until they come to its head: once it holds twice
        as many as the table, it is made again from the table (memory stays bounded by the flows kept)."""
        heappush(queue, (frame, flow_id))
        if len(queue) > 2 * len(table) + 64:
            queue[:] = [(flow.last_frame, fid) for fid, flow in table.items()]
            heapify(queue)

    @staticmethod
    def _oldest(queue: list[tuple[int, int]], table: dict[int, _Flow]) -> _Flow | None:
        """The flow of `table` whose last packet came first (None when the table is empty). Entries of flows gone
        are dropped, and a flow whose packets came since it was queued is queued again at its last frame: frames
        only grow, so the entry at the head is then the oldest flow's."""
        while queue:
            frame, fid = queue[0]
            flow = table.get(fid)
            if flow is None:
                heappop(queue)
                continue
            if flow.__class__ is _LoneSyn:
                return flow  # (queued at its one packet)
            last = flow.conn.last_frame
            if last != frame:
                heapreplace(queue, (last, fid))
                continue
            return flow
        return None

    @staticmethod
    def _starts_new_connection(flow: _Flow, index: int, seq: int) -> bool:
        """A SYN without ACK on a known 4-tuple: a retransmission of the same SYN, or a new connection?"""
        side = flow.sides[index]
        if side.isn is not None:
            return seq != side.isn
        # No SYN seen from this side: new unless nothing happened yet that a SYN could belong to.
        if flow.closing:
            return True
        return any(s.facts.payload_bytes or s.fin_offset is not None for s in flow.sides)

    def _on_syn(self, flow: _Flow, side: HalfStream, peer: HalfStream, pkt: TcpPacket, n: int,
                out: list[Event]) -> None:
        facts = side.facts
        seq = pkt.seq
        if pkt.flags & ACK:
            first = facts.synack_frame is None
            if first:
                facts.synack_frame = pkt.frame
                facts.synack_ts = pkt.ts
            if not peer.started:
                peer.start(pkt.ack)  # the SYN-ACK tells where the client's stream starts
        else:
            first = facts.syn_frame is None
            if first:
                facts.syn_frame = pkt.frame
                facts.syn_ts = pkt.ts
        if side.isn is None:
            if not side.started:
                side.isn = facts.isn = seq
                side.start(seq + 1)
            elif side.offset_of(seq + 1) == 0:
                side.isn = facts.isn = seq  # the stream was started by the peer's SYN-ACK; this SYN came late
            else:
                flow.conn.note(anomalies.SYN_SEQ_MISMATCH)
        elif side.isn == seq:
            if not first and n == 0:
                sent = facts.synack_ts if pkt.flags & ACK else facts.syn_ts
                if sent is not None and pkt.ts - sent <= DUPLICATE_WITHIN:
                    facts.duplicates += 1  # a copy in the capture: SYNs are resent after a second at the soonest
                else:
                    self._retransmitted(facts, pkt.frame, 0, 0)
        else:
            flow.conn.note(anomalies.SYN_SEQ_MISMATCH)
        if not flow.settled:
            client_index = side.index ^ 1 if pkt.flags & ACK else side.index
            self._settle(flow, client_index, "syn", out)

    @classmethod
    def _on_fin(cls, side: HalfStream, seq: int, n: int, frame: int, ts: float,
                previous_ts: float | None = None) -> None:
        """A FIN (after `n` payload bytes from `seq`): the end of the side's stream, or a retransmitted FIN (or a
        copy of it: `previous_ts`, the side's packet before this one, within DUPLICATE_WITHIN)."""
        if not side.started:
            side.start(seq)
        facts = side.facts
        fin_offset = side.offset_of(seq) + n
        if side.fin_offset is None:
            side.fin_offset = fin_offset
            facts.fin_frame = frame
            facts.fin_ts = ts
            side.advance_high(fin_offset)
            facts.stream_bytes = side.high_offset
        elif n == 0 and fin_offset == side.fin_offset:
            if previous_ts is not None and ts - previous_ts <= DUPLICATE_WITHIN:
                facts.duplicates += 1
            else:
                cls._retransmitted(facts, frame, fin_offset, 0)

    @staticmethod
    def _retransmitted(facts, frame: int, offset: int, nbytes: int) -> None:  # type: ignore[no-untyped-def]
        """A segment of `nbytes` already seen from stream `offset` on (a SYN: 0; a FIN: where the stream ends)."""
        lowest = facts.lowest_retransmitted_offset
        if lowest is None or offset < lowest:
            facts.lowest_retransmitted_offset = offset
        facts.retransmissions += 1
        facts.retransmitted_bytes += nbytes
        if len(facts.retransmitted_frames) < RETRANSMITTED_FRAMES_KEPT:
            facts.retransmitted_frames.append(frame)

    def _close(self, flow: _Flow, reason: str, out: list[Event], anomaly: str | None = None) -> None:
        """The connection is over (`reason`, `anomaly` noted first if given): its last chunks, ConnectionClosed."""
        if flow.__class__ is _LoneSyn:
            self._close_lone_syn(flow, reason, out, anomaly)  # type: ignore[arg-type]
            return
        conn = flow.conn
        if anomaly is not None:
            conn.note(anomaly)
        if flow.full:
            for side in flow.sides:
                pieces: list[Piece] = []
                fin_frame = side.facts.fin_frame
                if fin_frame is not None:
                    side.flush(pieces, fin_frame, side.facts.fin_ts or conn.last_ts)
                else:
                    side.flush(pieces, conn.last_frame, conn.last_ts)
                if pieces:
                    side.facts.stream_bytes = side.high_offset
                    self._deliver(flow, side, pieces, out)
        if not flow.settled:
            self._try_settle(flow, out, force=True)
        if flow.full:  # (a flow not full has had its buffers dropped already, and none grew since)
            for side in flow.sides:
                side.stop_reassembly()
        conn.close_reason = reason
        for side in flow.sides:
            side.fold_header_facts()
        if flow.lane_keys:
            self._close_lanes(self.lanes, flow)
        flow.lanes = None  # they hold the flow: without this, only the cyclic collector would free it
        out.append(ConnectionClosed(conn))
        wire_keys = self.wire_keys
        for key in flow.keys:
            del self._flows[key]
            if wire_keys:  # the reader's cache of this 4-tuple's text (a lingering flow's packets made it again)
                raw = wire_keys.pop(key, None)
                if raw is not None:
                    self.wire_tuples.pop(raw, None)
        fid = conn.flow_id
        if flow.closing:
            del self._closing[fid]
        else:
            del self._open[fid]

    def _expire(self, now: float, out: list[Event]) -> None:
        for queue, table, timeout, reason in ((self._closing_queue, self._closing, self.linger_timeout, "closed"),
                                              (self._open_queue, self._open, self.idle_timeout, "idle")):
            while True:
                flow = self._oldest(queue, table)
                if flow is None or now - flow.last_ts <= timeout:
                    break
                self._close(flow, reason, out)

    def _evict(self, out: list[Event]) -> None:
        fronts = [flow for flow in (self._oldest(self._open_queue, self._open),
                                    self._oldest(self._closing_queue, self._closing)) if flow is not None]
        victim = min(fronts, key=lambda f: f.last_ts)
        self.flows_evicted += 1
        self._close(victim, "evicted", out, anomalies.FLOW_EVICTED)

    # --- roles and delivery ----------------------------------------------------------------------------------

    def _deliver(self, flow: _Flow, side: HalfStream, pieces: list[Piece], out: list[Event]) -> None:
        if flow.settled:
            conn = flow.conn
            sender = side.sender
            for offset, data, gap, frame, ts in pieces:
                out.append(stream_chunk(conn, sender, offset, data, gap, frame, ts))
            return
        pending = flow.pending
        for piece in pieces:
            pending.append((side, piece))
            flow.pending_bytes += len(piece[1])
            if side.probe_done:
                continue
            offset, data, gap = piece[0], piece[1], piece[2]
            if gap or offset != len(side.probe):
                side.probe_done = True
                continue
            side.probe += data[:_PROBE_LEN - len(side.probe)]
            verdict = looks_like_client_hello(side.probe)
            if verdict is not None:
                side.probe_done = True
                if verdict and flow.hello_index is None:
                    flow.hello_index = side.index

    def _try_settle(self, flow: _Flow, out: list[Event], *, force: bool) -> None:
        """Settle the roles from the first bytes once they tell, or guess when waiting longer is not possible.

        The guess is made as soon as the side it takes for the server has been probed without a ClientHello: only
        the other side's first bytes can still be one, and a ClientHello there gives the guess's roles too. Why:
        in a connection joined in the middle of a download (a busy link's capture starts with thousands), the
        client sends nothing for a long while, and the server's bytes waited here, up to `role_buffer_bytes`
        each (5,000 connections at once: ~2.9 KB per open connection on average), read by nobody."""
        if flow.hello_index is not None:
            self._settle(flow, flow.hello_index, "client_hello", out)
            return
        conn = flow.conn
        client_index = guess_client(conn.client_port, conn.server_port)
        if (force or flow.sides[client_index ^ 1].probe_done
                or flow.pending_bytes > self.role_buffer_bytes or len(flow.pending) > self.role_buffer_chunks):
            self._settle(flow, client_index, "guess", out)

    @staticmethod
    def _settle(flow: _Flow, client_index: int, how: str, out: list[Event]) -> None:
        conn = flow.conn
        if client_index == 1:
            conn.client_ip, conn.server_ip = conn.server_ip, conn.client_ip
            conn.client_port, conn.server_port = conn.server_port, conn.client_port
            conn.client, conn.server = conn.server, conn.client
        flow.sides[client_index].sender = Sender.CLIENT
        flow.sides[client_index ^ 1].sender = Sender.SERVER
        conn.roles_from = how
        flow.settled = True
        out.append(ConnectionOpened(conn))
        for side in flow.sides:
            side.probe = b""
        for side, (offset, data, gap, frame, ts) in flow.pending:
            out.append(stream_chunk(conn, side.sender, offset, data, gap, frame, ts))
        flow.pending = []
        flow.pending_bytes = 0


def _one_way_closed(side: HalfStream, peer: HalfStream) -> bool:
    """One direction captured (`peer` has sent nothing in the capture), `side` has sent its FIN and acknowledged
    what can be the peer's close (`DirectionFacts.unseen_peer_close`): the connection is over, though neither
    FIN is seen acknowledged (those acknowledgements are in the missing direction)."""
    return side.facts.unseen_peer_close and side.fin_offset is not None and not peer.facts.packets


def _unseen_ack(facts: DirectionFacts, ack: int, ts: float) -> None:
    """An ACK of a peer that the capture holds no packet of (`DirectionFacts.unseen_peer_acks`): what it
    acknowledged shows the peer sent, though only this direction was captured."""
    base = facts.unseen_ack_base
    if base is None:
        facts.unseen_ack_base = facts.unseen_ack_last = ack
        facts.unseen_peer_acks = array("d", (ts, 0.0))
        return
    acked = (ack - base) & _MASK
    acks = facts.unseen_peer_acks
    if acked >= _HALF or acked <= acks[-1]:  # type: ignore[index]
        return  # (behind the first one: reordered)
    facts.unseen_peer_close = acked - acks[-1] <= PEER_CLOSE_BYTES  # type: ignore[index]
    facts.unseen_ack_last = ack  # (only here: the fast lanes skip an ACK of nothing new without this call)
    if len(acks) < 2 * UNSEEN_ACKS_KEPT:  # type: ignore[arg-type]
        acks.append(ts)  # type: ignore[union-attr]
        acks.append(acked)  # type: ignore[union-attr]
    else:
        acks[-2] = ts  # type: ignore[index]
        acks[-1] = acked  # type: ignore[index]
