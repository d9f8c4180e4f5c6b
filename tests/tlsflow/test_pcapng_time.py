"""pcapng timestamps: the walker turns an enhanced packet block's two 32-bit words into seconds with float
arithmetic (hi * 2**32 + lo, then / units); that is the same number as the exact 64-bit integer divided by the units,
for any words and any resolution a file can declare (both round the integer to the nearest double once)."""
from __future__ import annotations

import struct
from pathlib import Path

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


def _as_pcapng_at(pcap: Path, out: Path, seconds: float) -> Path:
    """The pcap's packets as a pcapng (`capture_file_bytes`), the first one at `seconds` after the epoch and the
    others as far apart as they were."""
    from tests.conftest import capture_file_bytes
    from tests.tlsflow.pcap_edit import records

    header, recs = records(pcap)
    stamps = [sec * 1_000_000 + usec for sec, usec in (struct.unpack_from("<II", rec) for rec in recs)]
    moved = [(int(seconds * 1_000_000) + stamp - stamps[0], rec[16:], struct.unpack_from("<I", rec, 12)[0])
             for stamp, rec in zip(stamps, recs, strict=True)]
    out.write_bytes(capture_file_bytes(struct.unpack_from("<I", header, 20)[0], moved, pcapng=True))
    return out


def test_packet_times_no_date_can_hold_do_not_stop_the_analysis(tmp_path: Path) -> None:
    """A pcapng whose packet times lie in year 60,000 (a corrupt or hostile timestamp: the fuzzer's find): the
    analysis gives the same connection as at the real time, its certificate named, its validity not checked
    (said in the evidence) instead of the run ending in a ValueError at the certificate checks."""
    from tests.conftest import CORPUS
    from tlsflow.pipeline import iter_flow_records

    pcap = CORPUS / "tls12_cert_expired.pcap"
    real = list(iter_flow_records(str(pcap)))
    far = list(iter_flow_records(str(_as_pcapng_at(pcap, tmp_path / "far.pcapng", 1.83e12))))
    assert len(far) == len(real) == 1
    assert real[0]["cause"] == "cert_expired"
    for field in ("outcome", "failed_step", "alert", "cert_subject", "client", "server", "version"):
        assert far[0][field] == real[0][field], field
    assert far[0]["start"] > 1e12
    assert any("not a date" in line for line in far[0]["evidence"])


def test_the_dataframe_takes_packet_times_no_datetime_can_hold(tmp_path: Path) -> None:
    """`tlsflow.analyze()` on packets of year ~318,000 (past what pandas' datetimes hold): the row is there, its
    start and end are NaT (the JSON and Parquet outputs keep the seconds), not an OutOfBoundsDatetime."""
    import tlsflow
    from tests.conftest import CORPUS

    pcap = CORPUS / "tls12_cert_expired.pcap"
    real = tlsflow.analyze(pcap)
    far = tlsflow.analyze(_as_pcapng_at(pcap, tmp_path / "far.pcapng", 1e13))
    assert len(far) == len(real) == 1
    assert far["start"].isna().all() and far["end"].isna().all() and real["start"].notna().all()
    assert list(far["outcome"]) == list(real["outcome"]) and list(far["cert_subject"]) == list(real["cert_subject"])
