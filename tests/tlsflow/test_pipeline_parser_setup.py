"""How FlowAnalyzer sets its parsers up (one ParseCache per capture, RecordSeen for each side's first record only)
changes nothing it produces: on every connection of the corpus and of the public captures (when present), the
summaries and records equal those of plain parsers (no cache, every RecordSeen). The flow `explain` keeps gets
every event."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from analyzers.summary import HandshakeSummary, new_summary
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


class _EagerAnalyzer(_KeepingAnalyzer):
    """The parser's state made when the connection opens (before: every connection had one from then on)."""

    def _on_event(self, event: Any) -> dict[str, Any] | None:
        from tlsflow.tcp import ConnectionOpened

        if event.__class__ is ConnectionOpened:
            event.conn.handshake = self._new_state(event.conn)
            return None
        return super()._on_event(event)


class _StatelessCounting(_KeepingAnalyzer):
    """Notes, for each connection that closes without parser state, whether its sides kept a history buffer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stateless: list[tuple[bool, int]] = []  # (a side holds a history deque, payload bytes seen)
        close = self.reassembler._close

        def closing(flow: Any, reason: str, out: list[Any], *more: Any) -> None:
            conn = getattr(flow, "conn", None)  # (a lone SYN has none: no streams, no bytes)
            if conn is not None and conn.handshake is None:
                self.stateless.append((any(side.history.__class__ is not tuple for side in flow.sides),
                                       conn.client.payload_bytes + conn.server.payload_bytes))
            close(flow, reason, out, *more)

        self.reassembler._close = closing  # type: ignore[method-assign]


def test_connections_that_carry_no_byte_get_no_parser_state_and_the_same_records(monkeypatch) -> None:
    """Scans and SYN floods fill the flow table with connections that never carry a byte: their parser state is
    not made (it waits for the first bytes), nor their sides' history, and every record is what it was when the
    state was made as each connection opened."""
    stateless = []
    for path in corpus_and_public_captures():
        eager = _run(path, _EagerAnalyzer, monkeypatch)
        assert [r for _, r in _run(path, _KeepingAnalyzer, monkeypatch)] == [r for _, r in eager], path
        trust, keylog = trust_and_keylog_for(path)
        analyzer = _StatelessCounting(str(path), trust=trust, keylog=keylog)
        with monkeypatch.context() as patch:
            patch.setattr(pipeline, "FlowAnalyzer", lambda *a, _made=analyzer, **k: _made)
            for _ in pipeline.iter_flow_records(path, trust=trust, keylog=keylog,
                                                report=pipeline.CaptureReport(str(path))):
                pass
        stateless.extend(analyzer.stateless)
    without_bytes = [has_history for has_history, payload in stateless if payload == 0]
    assert len(without_bytes) >= 2  # the corpus has them: a SYN unanswered, a port closed
    assert not any(without_bytes)


def test_secrets_read_mid_capture_serve_the_connections_opened_after_them(monkeypatch) -> None:
    """A Decryption Secrets Block read while a connection is open (its roles known, no byte yet): that connection
    keeps the key log it had when it opened (its parser's state is made then), later ones get the new secrets."""
    from tlsflow.capture import open_capture

    path = CORPUS / "tls13_cert_unknown_ca_keylog.pcap"
    if not path.exists():
        path = next(p for p in sorted(CORPUS.glob("tls13*.pcap")) if p.with_suffix(".keylog").exists())
    trust, _ = trust_and_keylog_for(path)
    analyzer = pipeline.FlowAnalyzer(str(path), trust=trust)
    added = False
    with open_capture(str(path)) as cap:
        for pkt in cap.packets():
            if not added and pkt.payload:  # the first bytes of the first connection: its roles are known
                conn = next(iter(analyzer.reassembler.opened_connections()))
                assert conn.handshake is None
                analyzer.add_secrets([path.with_suffix(".keylog").read_bytes()])
                assert conn.handshake is not None and conn.handshake.tls.keylog is None
                added = True
            list(analyzer.feed(pkt))
    assert added and analyzer.keylog is not None  # connections opened from now on get the secrets


class _StickyAnalyzer(_KeepingAnalyzer):
    """The parser and the summary's transcript never let go (as before: they stayed until the connection closed)."""

    @staticmethod
    def _done_with_data(conn: Any, state: Any) -> None:
        conn.wants_data = False


class _ReleaseNoting(_KeepingAnalyzer):
    """Notes, for each connection as it closes, whether it still wanted data and whether its parser's state is
    still held."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parser_held: list[tuple[bool, bool]] = []

    def _record(self, conn: Any) -> dict[str, Any]:
        state = conn.handshake
        self.parser_held.append((conn.wants_data, state is not None and (
            state.tls is not None or (state.summary.transcript is not None and not state.summary.transcript_complete))))
        return super()._record(conn)


def test_a_connection_done_with_its_handshake_lets_its_parser_go(monkeypatch) -> None:
    """Once a connection wants no more data (both sides sent application data, or the parser gave up), only its
    summary is kept for the record, without the raw handshake messages kept for a TLS 1.3 CertificateVerify that
    did not come: a busy link's long-lived connections hold ~1.3 KB less each (the 1 GB bench capture with every
    connection open to the end: 289 -> 253 MiB). The records are those of a parser and transcript kept to the
    end."""
    held: list[tuple[bool, bool]] = []
    for path in corpus_and_public_captures():
        made: list[_ReleaseNoting] = []

        def analyzer(*args: Any, _made: list[_ReleaseNoting] = made, **kwargs: Any) -> _ReleaseNoting:
            _made.append(_ReleaseNoting(*args, **kwargs))
            return _made[-1]

        closed = _run(path, analyzer, monkeypatch)
        assert [r for _, r in closed] == [r for _, r in _run(path, _StickyAnalyzer, monkeypatch)], path
        held.extend(made[0].parser_held)
    done = [parser for wants_data, parser in held if not wants_data]
    assert len(done) > 50
    assert not any(done)


class _ReadOnlySummary(HandshakeSummary):
    """An empty summary that raises on any change (its containers are read-only views)."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AssertionError(f"the shared empty summary was changed: {name}")


def _read_only_empty_summary() -> HandshakeSummary:
    import dataclasses
    from types import MappingProxyType

    summary = _ReadOnlySummary.__new__(_ReadOnlySummary)
    for f in dataclasses.fields(HandshakeSummary):
        value = getattr(new_summary(), f.name)
        if isinstance(value, list):
            value = tuple(value)
        elif isinstance(value, dict):
            value = MappingProxyType(value)
        object.__setattr__(summary, f.name, value)
    return summary


class _FreshSummaryAnalyzer(_KeepingAnalyzer):
    """A connection that carried no byte gets a summary of its own at its record (as before)."""

    def _record(self, conn: Any) -> dict[str, Any]:
        if conn.handshake is None:
            conn.handshake = pipeline.FlowState(None, new_summary())
        return super()._record(conn)


def test_connections_without_bytes_share_one_summary_that_nothing_changes(monkeypatch, tmp_path) -> None:
    """Scans and floods: every connection that carried no byte is judged on one shared empty summary
    (callgrind, 20,000 unanswered SYNs: -3.7 % instructions). Nothing that reads it for a record may change it:
    here it raises if anything does, and the records are those of a summary made per connection."""
    from bench.gen_flood import write_flood

    monkeypatch.setattr(pipeline, "_NO_BYTES", _read_only_empty_summary())
    floods = []
    for rst in (False, True):
        floods.append(tmp_path / f"flood-{rst}.pcap")
        write_flood(str(floods[-1]), 500, 5.0, rst)
    without_bytes = 0
    for path in [*corpus_and_public_captures(), *floods]:
        shared = [r for _, r in _run(path, _KeepingAnalyzer, monkeypatch)]
        assert shared == [r for _, r in _run(path, _FreshSummaryAnalyzer, monkeypatch)], path
        without_bytes += sum(r["cause"] in ("tcp_no_answer", "tcp_refused") for r in shared)
    assert without_bytes > 500
