"""How FlowAnalyzer sets its parsers up (one ParseCache per capture, RecordSeen for each side's first record only)
changes nothing it produces: on every connection of the corpus and of the public captures (when present), the
summaries and records equal those of plain parsers (no cache, every RecordSeen). The flow `explain` keeps gets
every event."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CORPUS, corpus_and_public_captures, trust_and_keylog_for
from tlsflow import pipeline
from tlsparse import RecordSeen, TlsConnection


class _KeepingAnalyzer(pipeline.FlowAnalyzer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closed: list[tuple[Any, dict[str, Any]]] = []

    def _record(self, conn: Any) -> dict[str, Any]:
        record = super()._record(conn)
        self.closed.append((conn.handshake.summary if conn.handshake else None, record))
        return record


class _PlainAnalyzer(_KeepingAnalyzer):
    def _new_tls(self, every_record: bool = True) -> TlsConnection:
        return TlsConnection(max_handshake=1 << 19, keylog=self.keylog)


def _run(path: Path, cls: type, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, dict[str, Any]]]:
    trust, keylog = trust_and_keylog_for(path)
    made: list[Any] = []

    def analyzer(*args: Any, **kwargs: Any) -> Any:
        made.append(cls(*args, **kwargs))
        return made[-1]

    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "FlowAnalyzer", analyzer)
        for _ in pipeline.iter_flow_records(path, trust=trust, keylog=keylog,
                                            report=pipeline.CaptureReport(str(path))):
            pass
    return made[0].closed


def test_summaries_and_records_equal_those_of_plain_parsers(monkeypatch: pytest.MonkeyPatch) -> None:
    connections = 0
    for path in corpus_and_public_captures():
        ours, plain = _run(path, _KeepingAnalyzer, monkeypatch), _run(path, _PlainAnalyzer, monkeypatch)
        assert ours == plain, path
        connections += len(ours)
    assert connections > 100


def _kept_events(cls: type, path: Path, flow_id: int) -> list[Any]:
    """The events `explain` would draw for that flow (its way of feeding the analyzer)."""
    from tlsflow.capture import open_capture

    analyzer = cls(str(path), keep_events_for=flow_id)
    with open_capture(path) as cap:
        for pkt in cap.packets():
            for _ in analyzer.feed(pkt):
                pass
    for _ in analyzer.finish():
        pass
    return analyzer.kept_events


def test_the_explained_flow_keeps_every_event() -> None:
    path = CORPUS / "tls12_cert_expired.pcap"
    kept = _kept_events(pipeline.FlowAnalyzer, path, 1)
    assert kept == _kept_events(_PlainAnalyzer, path, 1)
    assert sum(type(e) is RecordSeen for e in kept) > 2
