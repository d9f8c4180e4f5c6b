"""Events `TcpReassembler` returns: a connection opened, a piece of one direction's byte stream, the end.

Frozen and slotted like the parser's events. Per connection the order is always ConnectionOpened, then the
StreamChunks of both directions (each direction in stream order, offsets contiguous: every chunk starts where the
previous one of that direction ended, a gap included), then ConnectionClosed.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tlsflow.tcp.facts import Connection
from tlsparse.events import Sender


@dataclass(frozen=True, slots=True)
class ConnectionOpened:
    """The roles of a new connection are settled; no chunk of it has been delivered yet."""

    conn: Connection


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """Bytes of one direction's stream, or a gap: `gap` bytes lost in the capture (then `data` is b"").

    `offset` counts bytes from the start of that direction's stream (the byte after the SYN, or the first byte
    seen when the capture started mid-connection). `frame`/`ts` are those of the packet that delivered the chunk:
    the segment itself when in order, the segment that filled the hole (or made the hole be declared a gap) when
    it had to wait, the chunk's own segment when flushed at the end of the connection.
    """

    conn: Connection
    sender: Sender
    offset: int
    data: bytes
    gap: int
    frame: int
    ts: float


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The connection is over (closed and lingered, idle, reused, evicted or end of capture); `conn` holds all
    its facts and `conn.close_reason` says which."""

    conn: Connection


def _fast_chunk_init() -> None:
    """Give StreamChunk an __init__ that writes its slots through their descriptors (and ConnectionOpened and
    ConnectionClosed one for their single slot).

    A frozen dataclass's generated __init__ goes through object.__setattr__ by name for every field, which makes
    a chunk cost about 2 µs; one chunk is made per in-order segment, so this is on the hot path (and the other two
    once per connection each). The slot descriptors write the same slots without the name lookup; the instances
    stay frozen (assignment still raises).
    """
    setters = [StreamChunk.__dict__[name].__set__ for name in StreamChunk.__dataclass_fields__]
    s_conn, s_sender, s_offset, s_data, s_gap, s_frame, s_ts = setters

    def __init__(self: StreamChunk, conn: Connection, sender: Sender, offset: int, data: bytes, gap: int,
                 frame: int, ts: float) -> None:
        s_conn(self, conn)
        s_sender(self, sender)
        s_offset(self, offset)
        s_data(self, data)
        s_gap(self, gap)
        s_frame(self, frame)
        s_ts(self, ts)

    __init__.__qualname__ = "StreamChunk.__init__"
    StreamChunk.__init__ = __init__  # type: ignore[method-assign]

    for cls in (ConnectionOpened, ConnectionClosed):
        cls.__init__ = _conn_init(cls)  # type: ignore[method-assign]


def _conn_init(cls: type) -> Callable[[Any, Connection], None]:
    set_conn = cls.__dict__["conn"].__set__

    def __init__(self: Any, conn: Connection) -> None:
        set_conn(self, conn)

    __init__.__qualname__ = f"{cls.__name__}.__init__"
    return __init__


_fast_chunk_init()
