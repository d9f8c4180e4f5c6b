"""The shortcuts taken in building each connection's record give exactly what the plain computation gives.

Arithmetic shortcuts are compared with the plain expression over arbitrary and adversarial values (Hypothesis);
the others on every connection of the shipped corpus and the public captures (when present).
"""
from __future__ import annotations

import math
import struct

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tlsflow.record import duration_ms


def _same_float(a: float, b: float) -> bool:
    """Equal as the JSON writer would print them (the sign of a zero, NaN included)."""
    return repr(a) == repr(b)


# Capture times as pcap and pcapng give them: whole microseconds or nanoseconds after a second count.
_capture_times = st.builds(lambda s, f, unit: s + f / unit, st.integers(0, 4_000_000_000), st.integers(0, 999_999),
                           st.sampled_from([1e6, 1e9, 1e3]))


@settings(max_examples=3000, deadline=None)
@given(_capture_times, st.one_of(st.floats(0, 1e-3), st.floats(0, 10), st.floats(0, 1e6), st.integers(0, 10**7).map(
    lambda n: n / 1e6), st.integers(0, 10**7).map(lambda n: n / 1e7 + 0.0005)))
@example(1767225600.000047, 0.0)
@example(1767225600.000047, 5e-7)
@example(0.0, 2.5e-6)  # an exact tie: round() rounds it half to even
def test_duration_ms_equals_round_on_capture_times(start: float, elapsed: float) -> None:
    end = start + elapsed
    assert _same_float(duration_ms(start, end), round((end - start) * 1000.0, 3))


@settings(max_examples=3000, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True, allow_infinity=True))
@example(0.0, -0.0)
@example(-0.0, 0.0)
@example(1.0, math.inf)
@example(0.0, 1e6)
@example(0.0, 1e6 + 0.0005)
def test_duration_ms_equals_round_on_any_floats(earlier: float, later: float) -> None:
    assert _same_float(duration_ms(earlier, later), round((later - earlier) * 1000.0, 3))


@settings(max_examples=2000, deadline=None)
@given(st.integers(0, (1 << 63) - 1))
def test_duration_ms_equals_round_on_every_bit_pattern_of_a_positive_duration(bits: int) -> None:
    elapsed = struct.unpack("<d", struct.pack("<Q", bits))[0]
    if math.isfinite(elapsed):
        assert _same_float(duration_ms(0.0, elapsed), round(elapsed * 1000.0, 3))
