"""TCP reassembly: packets of a capture in, per-connection byte streams (with explicit gaps) and facts out.

    r = TcpReassembler(max_flows=100_000, max_buffer_per_direction=1 << 20, idle_timeout=300.0)
    for pkt in packets:                  # tlsflow.packet.TcpPacket
        for event in r.add(pkt): ...     # a list, often empty
    for event in r.finish(): ...         # end of capture: holes flushed as gaps, every connection closed
                                         # (finish_each(): the same, a few connections' events at a time)

Events, per connection always in this order:
- `ConnectionOpened(conn)`: the roles are settled (at the first packet when it is a SYN or SYN-ACK; else when the
  first bytes show a ClientHello, or both sides' first bytes are seen, or the hold buffer fills, or the
  connection ends: then guessed from the ports). No chunk of the connection comes before it. Once `lone_syns_from`
  connections are open (1,024), a connection whose first packet is a lone SYN gets it with its next event.
- `StreamChunk(conn, sender, offset, data, gap, frame, ts)`: each direction in stream order with contiguous
  offsets; a gap (`data == b""`, `gap` = bytes lost) when the peer acknowledged bytes the capture never showed,
  when out-of-order data waited beyond a cap, or when the connection ended with a hole.
- `ConnectionClosed(conn)`: `conn.close_reason` is "closed" (RST or both FINs acknowledged, then a short linger),
  "idle", "port_reuse", "evicted" or "end_of_capture"; `conn.client` / `conn.server` hold the facts.

A consumer that needs no more bytes of a connection sets `conn.wants_data = False`: its packets then only update
the facts (no buffering, no chunks). Chunks already returned in the same list are still delivered.
"""
from tlsflow.tcp.events import ConnectionClosed, ConnectionOpened, StreamChunk
from tlsflow.tcp.facts import Connection, DirectionFacts
from tlsflow.tcp.reassembler import TcpReassembler

__all__ = [
    "Connection",
    "ConnectionClosed",
    "ConnectionOpened",
    "DirectionFacts",
    "StreamChunk",
    "TcpReassembler",
]
