"""Bounded IP fragment reassembly (IPv4 and IPv6), so that a TCP segment split into fragments is still seen.

Hostile or lossy captures can leave any number of fragment sets incomplete, so pending sets are capped in number
and in bytes, and sets older than `timeout` seconds of capture time (never wall-clock time) are dropped.
"""
from __future__ import annotations

from .stats import CaptureStats

MAX_DATAGRAM = 65535  # an IP datagram (v4 total length, v6 payload length) cannot be larger


class _FragmentSet:
    __slots__ = ("first_ts", "parts", "size", "total")

    def __init__(self, ts: float) -> None:
        self.first_ts = ts
        self.parts: list[tuple[int, bytes]] = []  # (offset, data) in arrival order
        self.total: int | None = None  # length of the whole payload, known once the last fragment arrived
        self.size = 0


class FragmentReassembler:
    """`add()` fragments keyed by (version, src, dst, id, protocol); returns the whole payload once complete."""

    def __init__(self, stats: CaptureStats, *, max_sets: int = 4096, max_bytes: int = 32 * 1024 * 1024,
                 timeout: float = 60.0) -> None:
        self._stats = stats
        self._sets: dict[tuple[object, ...], _FragmentSet] = {}  # insertion order = age
        self._bytes = 0
        self.max_sets = max_sets
        self.max_bytes = max_bytes
        self.timeout = timeout

    @property
    def pending_sets(self) -> int:
        return len(self._sets)

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    def holds(self, key: tuple[object, ...]) -> bool:
        """A set is being reassembled under `key` (its first fragment was taken)."""
        return key in self._sets

    def add(self, key: tuple[object, ...], offset: int, more: bool, data: bytes, ts: float) -> bytes | None:
        sets = self._sets
        self._expire(ts)
        frags = sets.get(key)
        if frags is None:
            frags = sets[key] = _FragmentSet(ts)
        end = offset + len(data)
        if end > MAX_DATAGRAM or (frags.total is not None and (end > frags.total or
                                                                 (not more and end != frags.total))):
            self._drop(key)  # overlong or contradicting the last fragment: nothing sane can come of this set
            return None
        if not more:
            if any(o + len(d) > end for o, d in frags.parts):
                self._drop(key)
                return None
            frags.total = end
        frags.parts.append((offset, data))
        frags.size += len(data)
        self._bytes += len(data)
        if frags.total is not None:
            whole = _assemble(frags)
            if whole is not None:
                del sets[key]
                self._bytes -= frags.size
                self._stats.reassembled += 1
                return whole
        while len(sets) > self.max_sets or self._bytes > self.max_bytes:
            self._drop(next(iter(sets)))
        return None

    def _expire(self, now: float) -> None:
        sets = self._sets
        limit = now - self.timeout
        while sets:
            key = next(iter(sets))
            if sets[key].first_ts >= limit:
                break
            self._drop(key)

    def _drop(self, key: tuple[object, ...]) -> None:
        frags = self._sets.pop(key)
        self._bytes -= frags.size
        self._stats.fragments_dropped += 1


def _assemble(frags: _FragmentSet) -> bytes | None:
    total = frags.total
    assert total is not None
    covered = 0
    for offset, data in sorted(frags.parts, key=lambda part: part[0]):
        if offset > covered:
            return None  # a hole: wait for more fragments
        covered = max(covered, offset + len(data))
    if covered < total:
        return None
    whole = bytearray(total)
    # Overlaps: the first copy received wins (written last), as most stacks and Wireshark keep it.
    for offset, data in reversed(frags.parts):
        whole[offset:offset + len(data)] = data
    return bytes(whole)
