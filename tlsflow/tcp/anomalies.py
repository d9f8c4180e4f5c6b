"""Names of the TCP anomalies a connection records in `Connection.anomalies`, in the manner of Zeek's weirds.

A flow that hits one records the name (once) and goes on; none of them stops the analysis.
"""
from __future__ import annotations

# The out-of-order buffer of one direction went over its byte or segment cap: the hole was declared a gap early.
REASSEMBLY_BYTES_EXCEEDED = "reassembly_buffer_bytes_exceeded"
REASSEMBLY_SEGMENTS_EXCEEDED = "reassembly_buffer_segments_exceeded"
# A retransmitted or overlapping segment carried bytes different from the ones seen first (first data wins).
OVERLAP_DATA_MISMATCH = "overlap_data_mismatch"
# The flow table was full and this (least recently active) flow was closed to make room.
FLOW_EVICTED = "flow_evicted"
# A new SYN arrived on this 4-tuple before any FIN or RST of the connection: the old one is ended.
SYN_ON_OPEN_FLOW = "syn_on_open_flow"
# A SYN whose sequence number differs from the one the side sent first, on the same connection.
SYN_SEQ_MISMATCH = "syn_seq_mismatch"
# A RST that carries payload (e.g. a middlebox block page); the payload is not delivered, as receivers drop it.
RST_WITH_DATA = "rst_with_data"
# The peer acknowledged more than 2^30 bytes beyond anything seen: the ACK is ignored for gaps and facts.
ACK_BEYOND_WINDOW = "ack_beyond_window"
