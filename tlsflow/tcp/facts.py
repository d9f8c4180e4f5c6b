"""What the reassembler remembers of a connection and of each direction, for the verdicts after the handshake.

Mutable slotted dataclasses: the reassembler updates them packet by packet, the consumer reads them (and sets
`wants_data` and `handshake`). Every collection in them is bounded, so a long or hostile flow cannot grow them.
`ttls` is complete once the connection is closed (its ConnectionClosed event): until then the reassembler keeps the
latest packets' share of it on its side (tlsflow.tcp.stream.HalfStream), where it costs less.
"""
from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# How many retransmitted frames a direction keeps.
RETRANSMITTED_FRAMES_KEPT = 20
# A segment repeating the latest bytes (or the SYN, or the FIN) its side sent, this soon after that side's
# previous packet, is a second copy in the capture, not a retransmission: no TCP stack resends that fast (Linux:
# 10 ms at the least for a tail loss probe, 200 ms for a timeout, 1 s for a SYN).
DUPLICATE_WITHIN = 0.001


class Tally(Counter):  # type: ignore[type-arg]
    """A Counter whose item assignment is dict's own.

    Why: Counter defines `__delitem__` in Python, which puts every item assignment (`c[k] += 1`; for the TTLs, once
    per run of packets with the same TTL) through a generic slot that looks `__setitem__` up and calls it: about
    twice the time of a dict's.
    The only difference: deleting a missing key raises KeyError, as for a dict (nothing deletes TTLs).

    Its `__init__` is dict's too (Counter's, in Python, costs ~0.35 µs, twice per connection): `Tally()` and
    `Tally(mapping)` (as `copy()` and pickling call it) give what Counter's would; an iterable of keys to count
    is not accepted (nothing builds a Tally from one)."""

    __slots__ = ()
    __init__ = dict.__init__
    __delitem__ = dict.__delitem__


@dataclass(slots=True)
class DirectionFacts:
    """Facts of the packets SENT by one side of a connection."""

    packets: int = 0
    payload_bytes: int = 0  # TCP payload bytes of every packet sent, retransmissions included
    stream_bytes: int = 0  # length of the stream seen so far (highest sequence offset, gaps included)
    first_ts: float | None = None
    last_ts: float | None = None
    syn_frame: int | None = None  # first SYN without ACK
    isn: int | None = None  # sequence number of its SYN (or SYN-ACK): a SYN with another starts a new connection
    syn_ts: float | None = None
    synack_frame: int | None = None  # first SYN-ACK (the server's)
    synack_ts: float | None = None
    fin_frame: int | None = None  # first FIN
    fin_ts: float | None = None
    rst_frame: int | None = None  # first RST, with the IP header facts that tell an injected one
    rst_ts: float | None = None
    rst_ttl: int | None = None
    rst_ip_id: int | None = None
    rst_count: int = 0
    ttls: Counter[int] = field(default_factory=Tally)  # TTL / hop limit of the non-RST packets
    retransmissions: int = 0  # segments carrying bytes (or a SYN/FIN) already seen
    retransmitted_frames: list[int] = field(default_factory=list)  # the first RETRANSMITTED_FRAMES_KEPT
    retransmitted_bytes: int = 0
    # Where in this side's stream the earliest retransmitted bytes start: the verdict's packet_loss warning is for
    # a handshake's segments, and those of an established connection's data (a download's) come after them.
    lowest_retransmitted_offset: int | None = None
    # Copies of a packet the capture holds twice (tcpdump -i any over a bridge and its ports, a SPAN session
    # mirroring both directions): the bytes (or SYN, FIN) this side sent last, again within DUPLICATE_WITHIN.
    # Not retransmissions: nothing was lost.
    duplicates: int = 0
    cut_segments: int = 0  # segments the capture's snap length cut short (their payload is not all there)
    cut_frame: int | None = None  # the first of them
    out_of_order_segments: int = 0  # segments that arrived ahead of a hole and had to wait
    overlap_mismatches: int = 0  # overlapping bytes that differed from the ones seen first
    largest_segment: int = 0
    largest_segment_frame: int | None = None
    largest_segment_acked: bool = True  # the peer acknowledged the end of the largest segment
    gaps: int = 0  # holes in this side's stream delivered as gaps
    gap_bytes: int = 0
    acked_bytes: int = 0  # how many of the PEER's stream bytes this side has acknowledged
    acked_frame: int | None = None  # the frame that acknowledged them (last increase)
    zero_window: bool = False  # advertised a zero receive window (outside RSTs)
    first_payload_frame: int | None = None
    first_payload_ts: float | None = None
    last_payload_frame: int | None = None
    last_payload_ts: float | None = None
    # Acknowledgements of a peer that the capture holds no packet of (one direction captured): the first one's
    # number, then time and bytes acknowledged since, at each increase, the first UNSEEN_ACKS_KEPT - 1 and the
    # latest, flat in an array of doubles (time, bytes, time, bytes, ...: ~450 bytes less a connection than
    # tuples).
    unseen_ack_base: int | None = None
    unseen_ack_last: int = -1  # the number of the last that increased it: the same again changes nothing
    unseen_peer_acks: array[float] | None = None
    # The latest of them acknowledged so little more than the one before (PEER_CLOSE_BYTES at most) that it can be
    # the peer's close: its FIN, with or without its close_notify alert (23 to 31 bytes). With this side's own FIN,
    # the connection lingers, then closes (TcpReassembler): the acknowledgement of that FIN is in the missing
    # direction.
    unseen_peer_close: bool = False


UNSEEN_ACKS_KEPT = 8
PEER_CLOSE_BYTES = 64


@dataclass(slots=True, eq=False)
class Connection:
    """One TCP connection. Compared and hashed by identity."""

    flow_id: int  # 1-based, in order of the connection's first packet
    ip_version: int
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    first_frame: int
    start: float  # capture time of the first packet
    last_ts: float  # capture time of the last packet
    last_frame: int
    client: DirectionFacts = field(default_factory=DirectionFacts)
    server: DirectionFacts = field(default_factory=DirectionFacts)
    roles_from: str = "guess"  # "syn" | "client_hello" | "guess"
    anomalies: list[str] = field(default_factory=list)  # named, each at most once
    # "closed" (FIN/RST, then linger), "idle", "port_reuse", "evicted", "end_of_capture"; None while open
    close_reason: str | None = None
    wants_data: bool = True  # set False by the consumer (for good): no more chunks, packets only update facts
    handshake: Any = None  # free slot for the consumer's TLS state

    def note(self, anomaly: str) -> None:
        if anomaly not in self.anomalies:
            self.anomalies.append(anomaly)
