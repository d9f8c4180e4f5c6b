"""The shortcuts taken in building each connection's record give exactly what the plain computation gives.

Arithmetic shortcuts are compared with the plain expression over arbitrary and adversarial values (Hypothesis);
the others on every connection of the shipped corpus and the public captures (when present).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import struct
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from analyzers.summary import HandshakeSummary
from tests.conftest import corpus_and_public_captures, trust_and_keylog_for
from tlsflow import record
from tlsflow.pipeline import FlowAnalyzer
from tlsflow.record import duration_ms
from tlsparse.events import Sender
from tlsparse.fingerprints import ja3, ja3s, ja4


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


# ---------------------------------------------------------------- the whole record


class _CheckingAnalyzer(FlowAnalyzer):
    """Builds each record a second time the plain way (every call by keyword, a fresh TcpFacts and Verdict, the
    certificate view from an uncached check) and checks it equals the pipeline's."""

    checked = 0

    def _record(self, conn: Any) -> dict[str, Any]:
        from analyzers.certview import assess_certificates
        from analyzers.summary import HandshakeSummary
        from analyzers.tcpfacts import TcpFacts
        from analyzers.verdict import decide

        fast = super()._record(conn)
        summary = conn.handshake.summary if conn.handshake is not None else HandshakeSummary()
        tcp = TcpFacts(client=conn.client, server=conn.server, roles_from=conn.roles_from,
                       anomalies=list(conn.anomalies))
        certs, leaf, chain_len = assess_certificates(
            summary, at=datetime.datetime.fromtimestamp(conn.start, tz=datetime.UTC), trust=self.trust)
        verdict = decide(summary, tcp, certs, capture_end=self.last_ts)
        ch, sh = summary.client_hello, summary.server_hello_msg
        plain = record.build_record(
            capture=self.capture_name, flow_id=conn.flow_id,
            client=(conn.client_ip, conn.client_port), server=(conn.server_ip, conn.server_port),
            start=conn.start, end=conn.last_ts, first_frame=conn.first_frame, summary=summary, verdict=verdict,
            syn_ts=tcp.client.syn_ts, synack_ts=tcp.server.synack_ts, leaf=leaf, chain_len=chain_len,
            ja3=(ja3(ch) or (None,))[0] if ch is not None else None, ja3s=ja3s(sh)[0] if sh is not None else None,
            ja4=ja4(ch) if ch is not None else None)
        assert list(fast) == list(plain)
        assert json.dumps(fast) == json.dumps(plain)
        type(self).checked += 1
        return fast


def test_records_equal_the_plainly_built_ones(monkeypatch: pytest.MonkeyPatch, generated_capture: Path) -> None:
    from tlsflow import pipeline

    for path in [*corpus_and_public_captures(), generated_capture]:
        trust, keylog = trust_and_keylog_for(path)
        with monkeypatch.context() as patch:
            patch.setattr(pipeline, "FlowAnalyzer", _CheckingAnalyzer)
            for _ in pipeline.iter_flow_records(path, trust=trust, keylog=keylog,
                                                report=pipeline.CaptureReport(str(path))):
                pass
    assert _CheckingAnalyzer.checked > 100


# ---------------------------------------------------------------- remembered names and endpoints


def test_remembered_names_are_the_registry_names_and_the_endpoints_the_endpoint_texts() -> None:
    from tlsflow.packet import endpoint_text
    from tlsparse import registry

    for code in [*range(0x0300, 0x0306), 0x7F1C, 0xFEFD, 0x0A0A, 0x1301, 0xC02F, 0x001D, 0x11EC, 0xFFFF, 0]:
        assert record._VERSION_NAMES[code] == registry.version_name(code)
        assert record._CIPHER_SUITE_NAMES[code] == registry.cipher_suite_name(code)
        assert record._GROUP_NAMES[code] == registry.group_name(code)
    for server in [("127.0.0.1", 443), ("::1", 443), ("2001:db8::1", 8443), ("10.0.0.1", 0)]:
        assert record._SERVER_TEXTS[server] == endpoint_text(*server)


def test_remembered_values_are_forgotten_past_the_limit() -> None:
    calls: list[int] = []
    memo = record._Remembered(lambda key: calls.append(key) or str(key), 3)
    assert [memo[k] for k in (1, 2, 1, 3, 4, 1)] == ["1", "2", "1", "3", "4", "1"]
    assert calls == [1, 2, 3, 4, 1]  # the fourth key emptied the memo
    assert len(memo) <= 3


# ---------------------------------------------------------------- summary views


class _KeepingAnalyzer(FlowAnalyzer):
    kept: ClassVar[list[Any]] = []

    def _record(self, conn: Any) -> dict[str, Any]:
        type(self).kept.append(conn)
        return super()._record(conn)


@pytest.fixture(scope="module")
def summaries(generated_capture: Path) -> list[Any]:
    from tlsflow import pipeline

    _KeepingAnalyzer.kept = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "FlowAnalyzer", _KeepingAnalyzer)
        for path in [*corpus_and_public_captures(), generated_capture]:
            trust, keylog = trust_and_keylog_for(path)
            for _ in pipeline.iter_flow_records(path, trust=trust, keylog=keylog,
                                                report=pipeline.CaptureReport(str(path))):
                pass
    return [conn.handshake.summary for conn in _KeepingAnalyzer.kept if conn.handshake is not None]


def _resumed_plainly(s: Any) -> bool:
    """HandshakeSummary.resumed as first written (every view through the summary's properties)."""
    from tlsparse import messages as m

    sh = s.server_hello_msg
    ch = s.client_hello
    if sh is None:
        return False
    if s.is_tls13:
        return sh.has_extension(m.EXT_PRE_SHARED_KEY)
    if s.server_certificate is not None or s.server_key_exchange is not None:
        return False
    if Sender.SERVER in s.ccs and s.ccs[Sender.SERVER].ts >= s.server_hello.ts:
        return True
    return bool(ch is not None and sh.session_id and sh.session_id == ch.session_id)


def test_resumed_equals_the_plain_reading_on_every_connection(summaries: list[Any]) -> None:
    assert len(summaries) > 100
    assert any(s.resumed for s in summaries) and not all(s.resumed for s in summaries)
    for s in summaries:
        assert s.resumed is _resumed_plainly(s)


class _PlainSummary(HandshakeSummary):
    """The summary with its ChangeCipherSpec and transcript folds as first written (the version read on demand
    only, the history letter through `_letter`)."""

    __slots__ = ()

    def _add_ccs(self, event: Any) -> None:
        if len(self.ccs) < 2 and event.sender not in self.ccs:
            self.ccs[event.sender] = event
        self._letter(event.sender, "i")

    def _add_to_transcript(self, event: Any, at: Any = None) -> None:
        from tlsparse import messages as m

        transcript = self.transcript
        msg = event.message
        if transcript is None or self.transcript_complete:
            return
        if isinstance(msg, m.ServerHello) and not msg.is_hello_retry_request and msg.selected_version != 0x0304:  # noqa: SIM114 - as first written
            self.transcript = None
        elif not event.raw or len(transcript) >= 16:
            self.transcript = None
        elif isinstance(msg, m.CertificateVerify) and event.sender is Sender.SERVER:
            self.transcript_complete = True
        else:
            transcript.append(event.raw)


def test_summaries_fold_as_the_plain_folds_on_every_connection(monkeypatch: pytest.MonkeyPatch,
                                                              generated_capture: Path) -> None:
    from analyzers import summary as summary_mod
    from tlsflow import pipeline

    folded: dict[int, tuple[HandshakeSummary, list[Any]]] = {}
    original = HandshakeSummary.add_all

    def keeping_add_all(self: HandshakeSummary, events: Any) -> None:
        events = list(events)
        folded.setdefault(id(self), (self, []))[1].extend(events)
        original(self, events)

    monkeypatch.setattr(summary_mod.HandshakeSummary, "add_all", keeping_add_all)
    for path in [*corpus_and_public_captures(), generated_capture]:
        trust, keylog = trust_and_keylog_for(path)
        for _ in pipeline.iter_flow_records(path, trust=trust, keylog=keylog,
                                            report=pipeline.CaptureReport(str(path))):
            pass
    monkeypatch.undo()
    names = [f.name for f in dataclasses.fields(HandshakeSummary) if f.compare]
    transcripts = 0
    released = 0
    for summary, events in folded.values():
        plain = _PlainSummary()
        plain.add_all(events)
        if summary.transcript is None and plain.transcript is not None and not plain.transcript_complete:
            # (the pipeline lets a transcript go once the connection wants no more data, if it cannot be used:
            # FlowAnalyzer._done_with_data)
            plain.transcript = None
            released += 1
        assert [getattr(summary, n) for n in names] == [getattr(plain, n) for n in names]
        assert summary.version == plain.version
        assert summary.version == (summary.server_hello.message.selected_version if summary.server_hello else None)
        transcripts += bool(summary.transcript_complete)
    assert len(folded) > 100 and transcripts and released


# ---------------------------------------------------------------- JSON text of capture times


@settings(max_examples=3000, deadline=None)
@given(st.one_of(_capture_times, st.floats(allow_nan=True, allow_infinity=True), st.floats(0.5, 2.0 ** 34),
                 st.integers(0, (1 << 64) - 1).map(lambda bits: struct.unpack("<d", struct.pack("<Q", bits))[0]),
                 st.integers(10**6, 2**33 * 10**6).map(lambda micros: micros / 1e6)))
@example(1.0)
@example(0.999999)
@example(2.0 ** 33)
@example(2.0 ** 33 - 1e-6)
@example(1767225600.0)
@example(1767225600.000047)
@example(1767225600.1)
@example(-1767225600.5)
def test_timestamp_text_equals_the_json_text(value: float) -> None:
    from tlsflow.formats import timestamp_text

    assert timestamp_text(value) == json.dumps(value)
