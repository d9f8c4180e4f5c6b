"""Wrap-safe TCP sequence arithmetic (RFC 1982 serial numbers over 2^32), in the manner of gopacket's Sequence.

Sequence numbers are only ever compared through `seq_diff`, so a stream that crosses 2^32 looks no different
from one that does not.
"""
from __future__ import annotations

SEQ_MOD = 1 << 32
SEQ_MASK = SEQ_MOD - 1
_HALF = 1 << 31


def seq_diff(a: int, b: int) -> int:
    """How far `a` is after `b` (negative when before), assuming they are less than 2^31 apart."""
    d = (a - b) & SEQ_MASK
    return d - SEQ_MOD if d & _HALF else d


def seq_add(a: int, n: int) -> int:
    """The sequence number `n` bytes after `a`."""
    return (a + n) & SEQ_MASK
