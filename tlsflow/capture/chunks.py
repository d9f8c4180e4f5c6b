"""Walking a capture chunk by chunk: what to do with a record (or block) cut by the end of a chunk.

Both walkers (pcap records, pcapng blocks) decode in place in the chunk they hold. The bytes of a unit cut by the
end of a chunk are carried over; rather than copying the whole next chunk behind them (a copy of the file in fresh
memory), only the cut unit is completed from the next chunk and walked from a small buffer of its own, and the
walk then goes on inside the next chunk.
"""
from __future__ import annotations

from collections.abc import Callable


def carry_over(leftover: bytes, chunk: bytes, header_size: int,
               unit_length: Callable[[bytes], int]) -> tuple[bytes, bytes | None, int]:
    """The buffer to walk next, and where the walk goes on afterwards: (buffer, rest of `chunk` or None, offset
    in it).

    `leftover`: the bytes of the cut unit (may be empty). `unit_length(head)`: the whole unit's length in bytes
    from its first `header_size` bytes, or -1 when the loop must judge it (an absurd or byte-order-dependent
    length): then the leftover and the whole chunk are walked together, as the loop's checks expect."""
    n = len(leftover)
    if not n:
        return chunk, None, 0
    head = leftover
    if n < header_size:
        head += chunk[:header_size - n]
    need = unit_length(head) - n if len(head) >= header_size else -1
    if 0 < need <= len(chunk):
        return leftover + chunk[:need], chunk, need
    return leftover + chunk, None, 0
