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


class _StreamChunkSlots:
    """StreamChunk's slots in the same order, without the frozen `__setattr__` (see `stream_chunk`)."""

    __slots__ = StreamChunk.__slots__


def stream_chunk(conn: Connection, sender: Sender, offset: int, data: bytes, gap: int, frame: int,
                 ts: float) -> StreamChunk:
    """`StreamChunk(...)` for the reassembler's hot path, at about a third of the cost (measured: ~2.0k instead
    of ~6.7k instructions).

    Why: calling the class runs its Python `__init__` from C, and a frozen instance's slots can only be written
    through their descriptors (a method call each). An instance of a class with the same slots and no frozen
    `__setattr__` is written with plain attribute stores, then given StreamChunk as its class (CPython allows
    `__class__` assignment between classes of the same layout): the result is a genuine StreamChunk, frozen
    like any other. `_check_stream_chunk` falls back to the class itself if that ever stops holding.
    """
    chunk = _StreamChunkSlots()
    chunk.conn = conn  # type: ignore[attr-defined]
    chunk.sender = sender  # type: ignore[attr-defined]
    chunk.offset = offset  # type: ignore[attr-defined]
    chunk.data = data  # type: ignore[attr-defined]
    chunk.gap = gap  # type: ignore[attr-defined]
    chunk.frame = frame  # type: ignore[attr-defined]
    chunk.ts = ts  # type: ignore[attr-defined]
    chunk.__class__ = StreamChunk  # type: ignore[assignment]
    return chunk  # type: ignore[return-value]


def _check_stream_chunk() -> None:
    """Use the class itself if `stream_chunk` cannot give the same object (fields added, layout changed)."""
    global stream_chunk
    sample = (None, None, 7, b"x", 0, 3, 1.5)
    try:
        fast = stream_chunk(*sample)  # type: ignore[arg-type]
        same = (tuple(StreamChunk.__dataclass_fields__) == StreamChunk.__slots__ and type(fast) is StreamChunk
                and fast == StreamChunk(*sample))  # type: ignore[arg-type]
    except TypeError:
        same = False
    if not same:
        stream_chunk = StreamChunk  # type: ignore[assignment]


_check_stream_chunk()
