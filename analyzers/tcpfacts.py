"""What the analyzers need to know of a connection's TCP life, filled in by the application from its reassembly.

Kept here (not imported from tlsflow) because imports point one way: tlsflow → analyzers → tlsparse.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(slots=True)
class SideFacts:
    """Packets SENT by one side."""

    packets: int = 0
    payload_bytes: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    syn_frame: int | None = None
    syn_ts: float | None = None
    synack_frame: int | None = None
    synack_ts: float | None = None
    fin_frame: int | None = None
    fin_ts: float | None = None
    rst_frame: int | None = None
    rst_ts: float | None = None
    rst_ttl: int | None = None
    rst_ip_id: int | None = None
    ttls: Counter = field(default_factory=Counter)
    retransmissions: int = 0
    retransmitted_frames: list[int] = field(default_factory=list)
    retransmitted_bytes: int = 0
    lowest_retransmitted_offset: int | None = None  # stream offset; None: not known (counted as the handshake's)
    duplicates: int = 0  # packets the capture holds twice (not retransmissions)
    cut_segments: int = 0  # segments the capture's snap length cut short
    cut_frame: int | None = None
    largest_segment: int = 0
    largest_segment_frame: int | None = None
    largest_segment_acked: bool = True
    gaps: int = 0
    gap_bytes: int = 0
    acked_bytes: int = 0  # of the PEER's stream
    zero_window: bool = False
    first_payload_frame: int | None = None
    first_payload_ts: float | None = None
    last_payload_frame: int | None = None
    last_payload_ts: float | None = None
    # Time and bytes of the peer's acknowledged since the first ACK, at each increase, flat (time, bytes, time,
    # ...), when the capture holds none of the peer's packets: one direction captured.
    unseen_peer_acks: Sequence[float] | None = None


@dataclass(slots=True)
class TcpFacts:
    client: SideFacts
    server: SideFacts
    roles_from: str = "syn"
    anomalies: list[str] = field(default_factory=list)
