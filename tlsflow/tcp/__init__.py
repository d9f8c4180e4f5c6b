"""TCP reassembly: packets of a capture in, per-connection byte streams (with explicit gaps) and facts out.

    r = TcpReassembler()
    for pkt in packets:
        for event in r.add(pkt): ...
    for event in r.finish(): ...

Events: `ConnectionOpened(conn)`, `StreamChunk(conn, sender, offset, data, gap, frame, ts)`,
`ConnectionClosed(conn)`. A consumer that needs no more bytes of a connection sets `conn.wants_data = False`.
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
