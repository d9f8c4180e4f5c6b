"""pcapng timestamps: the walker turns an enhanced packet block's two 32-bit words into seconds with float
arithmetic (hi * 2**32 + lo, then / units); that is the same number as the exact 64-bit integer divided by the units,
for any words and any resolution a file can declare (both round the integer to the nearest double once)."""
from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from tlsflow.capture.pcapng import _LITTLE, _interface_time

WORD = st.integers(min_value=0, max_value=2**32 - 1)
# if_tsresol: 10**-n or 2**-n seconds (the high bit says which).
RESOLUTION = st.integers(min_value=0, max_value=255).filter(lambda r: (r & 0x7F) <= (63 if r & 0x80 else 19))
OFFSET = st.sampled_from([0.0, 1.0, -3600.0, 1_700_000_000.0])


@given(WORD, WORD, RESOLUTION, OFFSET)
@example(2**32 - 1, 2**32 - 1, 9, 0.0)  # nanoseconds, the largest count: far past 2**53
@example(412_000, 3_000_000_001, 9, 0.0)  # nanoseconds in 2026: 2**53 < count, odd low word
@example(0, 1, 0x80 | 63, 0.0)
def test_float_timestamp_equals_the_integer_division(high: int, low: int, resolution: int, offset: float) -> None:
    option = bytes([9, 0, 1, 0, resolution, 0, 0, 0, 0, 0, 0, 0])  # if_tsresol, then opt_endofopt
    units, _ = _interface_time(_LITTLE, option, 0, len(option))
    assert (high * 4294967296.0 + low) / units + offset == ((high << 32) | low) / units + offset
