"""The shortcuts of the per-connection work after the parser give what the plain code gives.

Each shortcut (fingerprints remembered per hello shape, the JSON lines encoder, ...) is compared with the plain
computation on every connection of the shipped corpus and of the public captures (when present), plus hand-built
edge cases.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import corpus_and_public_captures, trust_and_keylog_for
from tests.tlsparse.test_fingerprints import alpn_body, doc_hello
from tlsflow.pipeline import FlowAnalyzer
from tlsflow.record import FIELDS
from tlsparse.fingerprints import HelloFingerprints, ja3, ja3s, ja4
from tlsparse.messages import EXT_ALPN, EXT_SUPPORTED_GROUPS, Extension


class _KeepingAnalyzer(FlowAnalyzer):
    """Keeps each closed connection (summary and TCP facts) beside its record."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closed: list[tuple[Any, dict[str, Any]]] = []

    def _record(self, conn: Any) -> dict[str, Any]:
        record = super()._record(conn)
        self.closed.append((conn, record))
        return record


def _analyse(path: Path, monkeypatch: pytest.MonkeyPatch, cls: type[_KeepingAnalyzer] | None = None) -> Any:
    from tlsflow import pipeline
    trust, keylog = trust_and_keylog_for(path)
    made: list[_KeepingAnalyzer] = []

    def keeping_analyzer(*args: Any, **kwargs: Any) -> _KeepingAnalyzer:
        made.append((cls or _KeepingAnalyzer)(*args, **kwargs))
        return made[-1]

    # The pipeline's own packet loop, with an analyzer that keeps the connections.
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "FlowAnalyzer", keeping_analyzer)
        for _ in pipeline.iter_flow_records(path, trust=trust, keylog=keylog, report=pipeline.CaptureReport(str(path))):
            pass
    return made[0]


@pytest.fixture(scope="module")
def analysed() -> list[_KeepingAnalyzer]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        return [_analyse(p, monkeypatch) for p in corpus_and_public_captures()]


@pytest.fixture(scope="module")
def summaries(analysed: list[_KeepingAnalyzer]) -> list[Any]:
    out = [conn.handshake.summary for a in analysed for conn, _ in a.closed if conn.handshake is not None]
    assert out, "no connection in the corpus"
    return out


# ---------------------------------------------------------------- fingerprints per hello shape


def test_remembered_fingerprints_equal_the_computed_ones_on_every_hello(summaries: list[Any]) -> None:
    memo = HelloFingerprints()
    hellos = servers = 0
    for s in summaries:
        for at in s.client_hellos:
            ch = at.message
            pair = ja3(ch)
            assert memo.client(ch) == ((pair[0] if pair else None), ja4(ch))
            hellos += 1
        if s.server_hello_msg is not None:
            assert memo.server(s.server_hello_msg) == ja3s(s.server_hello_msg)[0]
            servers += 1
    assert hellos and servers
    # Same-shape hellos were answered from the memo: fewer shapes than hellos.
    assert len(memo._client) < hellos and len(memo._server) < servers


def test_hellos_that_differ_where_fingerprints_do_not_look_share_an_entry() -> None:
    memo = HelloFingerprints()
    first = doc_hello()
    other = replace(first, random=b"\x01" * 32, session_id=b"\x02" * 32)
    assert memo.client(first) == memo.client(other) == (ja3(first)[0], ja4(first))
    assert len(memo._client) == 1


def _with_extension(ch: Any, ext: Extension) -> Any:
    return replace(ch, extensions=tuple(ext if e.type == ext.type else e for e in ch.extensions))


@pytest.mark.parametrize("changed", [
    # the same raw bytes with another decoded value (hand-built), and the other way round
    Extension(type=EXT_SUPPORTED_GROUPS, data=b"", parsed=(0x001D,)),
    Extension(type=EXT_SUPPORTED_GROUPS, data=b"\x00\x02\x00\x17", parsed=None),
    Extension(type=EXT_ALPN, data=alpn_body([b"http/1.1"]), parsed=("http/1.1",)),
])
def test_a_changed_fingerprinted_extension_gets_its_own_fingerprints(changed: Extension) -> None:
    memo = HelloFingerprints()
    base = doc_hello()
    variant = _with_extension(base, changed)
    memo.client(base)
    assert memo.client(variant) == (ja3(variant)[0], ja4(variant))
    assert memo.client(variant) != memo.client(base)


def test_unhashable_decoded_values_are_fingerprinted_without_the_memo() -> None:
    memo = HelloFingerprints()
    listed = _with_extension(doc_hello(), Extension(type=EXT_SUPPORTED_GROUPS, data=b"", parsed=[0x001D, 0x0017]))
    assert memo.client(listed) == (ja3(listed)[0], ja4(listed))
    assert not memo._client


def test_sslv2_hellos_keep_a_null_ja3() -> None:
    memo = HelloFingerprints()
    v2 = replace(doc_hello(), sslv2=True, extensions=())
    assert memo.client(v2) == (None, ja4(v2))
    assert memo.client(replace(v2, sslv2=False))[0] is not None


def test_client_hello_shapes_give_the_hello_fields_of_every_hello(summaries: list[Any]) -> None:
    from tlsflow.record import ClientHelloShapes
    from tlsparse import registry

    memo = ClientHelloShapes()
    hellos = 0
    for s in summaries:
        for at in s.client_hellos:
            ch = at.message
            pair = ja3(ch)
            assert memo.client(ch) == ((pair[0] if pair else None), ja4(ch), ch.alpn,
                                       registry.version_name(ch.highest_version))
            hellos += 1
    assert len(memo._client) < hellos


def test_leaf_fields_are_remembered_per_leaf_object(analysed: list[_KeepingAnalyzer]) -> None:
    from tlsflow.record import certificate_fields

    leaves = 0
    for a in analysed:
        for conn, record in a.closed:
            if record["cert_subject"] is None:
                continue
            _, leaf, _ = a._cert_cache.assess(conn.handshake.summary, conn.start)
            assert a._cert_cache.leaf_fields(leaf) == certificate_fields(leaf)
            subject, issuer, not_before, not_after, sans = certificate_fields(leaf)
            assert (record["cert_subject"], record["cert_issuer"], record["cert_not_before"],
                    record["cert_not_after"], record["cert_san"]) == (subject, issuer, not_before, not_after,
                                                                      list(sans) or None)
            leaves += 1
    assert leaves


# ---------------------------------------------------------------- JSON lines encoder

HOSTILE_STRINGS = [
    "", "plain", "quote \" backslash \\ slash /", "\x00\x01\x1f\x7f control", "\x1b[31mred\x1b[0m", "tab\tcr\rlf\n",
    "é ü ß ñ 中文 日本語 🔒", "\u2028\u2029 line separators", "\ud800 lone high", "lone low \udfff", "\ufeff bom",
    "'=cmd|' /C calc'!A0",
]
HOSTILE_VALUES = [None, True, False, 0, -1, 2**70, 0.1, 1e300, -0.0, float("nan"), float("inf"), float("-inf"),
                  1767225600.00181, [], HOSTILE_STRINGS, ["a", None, 1, 2.5]]


@pytest.mark.parametrize("value", HOSTILE_STRINGS + HOSTILE_VALUES)
def test_json_encoder_equals_json_dumps(value: Any) -> None:
    import json

    from tlsflow.formats import _encode_json
    from tlsflow.record import FIELDS

    record = {name: value for name in FIELDS}
    assert _encode_json(record) == json.dumps(record, ensure_ascii=False)
    record["extra field"] = {"nested": value}
    assert _encode_json(record) == json.dumps(record, ensure_ascii=False)


def test_json_lines_writer_equals_json_dumps_on_every_record(analysed: list[_KeepingAnalyzer]) -> None:
    import io
    import json

    from tlsflow.formats import JsonLinesWriter, JsonWriter, _ordered

    records = [record for a in analysed for _, record in a.closed]
    lines, array = io.StringIO(), io.StringIO()
    jsonl, whole = JsonLinesWriter(lines), JsonWriter(array)
    for record in records:
        jsonl.write(record)
        whole.write(record)
    whole.close()
    assert lines.getvalue() == "".join(json.dumps(_ordered(r), ensure_ascii=False) + "\n" for r in records)
    assert json.loads(array.getvalue()) == json.loads("[" + ",".join(lines.getvalue().splitlines()) + "]")


@pytest.mark.parametrize("start", [1767225600.000299, 0.1, -0.0, float("nan"), float("inf"), 2**70, "text", None])
def test_an_end_that_is_the_start_is_written_as_the_start(start: Any) -> None:
    """A connection of one packet (a lone SYN, a scan's probe) has its start as its end, the same float object:
    the encoder writes the start's text again. An end equal to the start but another object, or of another type,
    is written by itself."""
    import json
    import struct

    from tlsflow.formats import RecordEncoder
    from tlsflow.record import FIELDS

    encode = RecordEncoder().encode
    twin = struct.unpack("<d", struct.pack("<d", start))[0] if isinstance(start, float) else start  # (another object)
    for end in (start, twin, 1767225601.5, None, "x"):
        record = dict.fromkeys(FIELDS)
        record["start"], record["end"] = start, end
        assert encode(record) == json.dumps(record, ensure_ascii=False)


def test_records_in_another_order_are_written_in_the_contract_order() -> None:
    import io
    import json

    from tlsflow.formats import JsonLinesWriter
    from tlsflow.record import FIELDS

    shuffled = {name: name for name in reversed(FIELDS)} | {"added": 1}
    out = io.StringIO()
    JsonLinesWriter(out).write(shuffled)
    assert list(json.loads(out.getvalue())) == [*FIELDS, "added"]


# ---------------------------------------------------------------- summary folding


def test_subclassed_events_and_messages_are_folded_as_their_base() -> None:
    from analyzers.summary import HandshakeSummary
    from tlsparse import events as ev
    from tlsparse import messages as m

    class LateAlert(ev.AlertSeen):
        __slots__ = ()

    class OddFinished(m.Finished):
        __slots__ = ()

    s = HandshakeSummary()
    s.add(LateAlert(sender=ev.Sender.SERVER, frame=3, ts=1.0, offset=0, level=2, description=40, encrypted=False,
                    length=2))
    s.add(ev.HandshakeSeen(sender=ev.Sender.CLIENT, frame=4, ts=2.0, offset=0, msg_type=m.FINISHED, length=12,
                           message=OddFinished(verify_data=b"\x00" * 12)))
    assert [a.description for a in s.alerts] == [40]
    assert s.finished[ev.Sender.CLIENT].frame == 4
    assert s.history_text == "lF"


# ---------------------------------------------------------------- certificate cache


def test_cert_cache_rebuilds_every_certview_field() -> None:
    """_CertCache builds the CertView of a cache hit field by field (dataclasses.replace is slow): a field added
    to CertView must be added there too."""
    import dataclasses
    import inspect

    from analyzers.verdict import CertView
    from tlsflow.pipeline import _CertCache

    source = inspect.getsource(_CertCache.assess)
    for f in dataclasses.fields(CertView):
        assert f"{f.name}=" in source, f"_CertCache.assess does not carry CertView.{f.name} over"


def test_cert_cache_hits_give_the_uncached_view(analysed: list[_KeepingAnalyzer]) -> None:
    import datetime as dt

    from analyzers.certview import assess_certificates

    compared = 0
    for a in analysed:
        for conn, record in a.closed:
            s = conn.handshake.summary if conn.handshake is not None else None
            if s is None or s.server_certificate is None:
                continue
            at = dt.datetime.fromtimestamp(conn.start, tz=dt.UTC)
            assert a._cert_cache.assess(s, conn.start) == assess_certificates(s, at=at, trust=a.trust)
            compared += 1
    assert compared


# ---------------------------------------------------------------- CSV writer


@pytest.mark.parametrize("value", HOSTILE_STRINGS + HOSTILE_VALUES + ["=1+1", "+x", "-x", "@x", "'quoted", "a,b"])
def test_csv_rows_equal_the_cell_by_cell_rows(value: Any) -> None:
    import csv
    import io

    from tlsflow.formats import CsvWriter, _csv_cell
    from tlsflow.record import FIELDS

    record = {name: value for name in FIELDS}
    out, expected = io.StringIO(), io.StringIO()
    CsvWriter(out).write(record)
    plain = csv.writer(expected, lineterminator="\n")
    plain.writerow(FIELDS)
    plain.writerow([_csv_cell(name, record.get(name)) for name in FIELDS])
    assert out.getvalue() == expected.getvalue()


def _timing_by_datetimes(ders: tuple[bytes, ...], start: float) -> tuple[Any, ...] | None:
    """The cache's validity key worked out with datetimes only (what the cache did before its float shortcut)."""
    import datetime as dt

    from analyzers.certchecks import EXPIRES_SOON, _days
    from tlsparse.certificates import describe_certificate

    at = dt.datetime.fromtimestamp(start, tz=dt.UTC)
    out = []
    for der in ders:
        info = describe_certificate(der)
        not_before, not_after = getattr(info, "not_before", None), getattr(info, "not_after", None)
        if not isinstance(not_before, dt.datetime) or not isinstance(not_after, dt.datetime):
            return None
        if at > not_after:
            out.append(("expired", _days(at - not_after)))
        elif at < not_before:
            out.append(("not_yet_valid", _days(not_before - at)))
        elif not_after - at <= EXPIRES_SOON:
            out.append(("expires_soon", _days(not_after - at)))
        else:
            out.append(None)
    return tuple(out)


def test_cert_cache_validity_key_equals_the_datetime_one_near_every_edge(summaries: list[Any]) -> None:
    from analyzers.certchecks import EXPIRES_SOON, TrustStore
    from tlsflow.pipeline import _CertCache
    from tlsparse.certificates import describe_certificate

    chains = {tuple(s.server_certificate.message.certificates) for s in summaries
              if s.server_certificate is not None and s.server_certificate.message.certificates}
    assert chains
    cache = _CertCache(TrustStore.default())
    checked = 0
    for ders in chains:
        info = describe_certificate(ders[0])
        if not hasattr(info, "not_before"):
            continue
        for edge in (info.not_before, info.not_after, info.not_after - EXPIRES_SOON):
            for offset in (0.0, 1e-7, -1e-7, 5e-7, 1e-6, -1e-6, 5e-4, -5e-4, 1e-3, -1e-3, 2e-3, -2e-3, 1.0, -86400.0,
                           86400.0 * 3):
                start = edge.timestamp() + offset
                assert cache._timing(ders, start) == _timing_by_datetimes(ders, start), (edge, offset)
                checked += 1
    assert checked


# ---------------------------------------------------------------- the record encoder (contract-ordered records)

class _Str(str):
    pass


class _Int(int):
    pass


class _Float(float):
    pass


_JSON_SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | st.text()
                 | st.sampled_from([_Str("sub"), _Int(7), _Float(1.5), float("nan"), float("-inf"), -0.0]))
_JSON_VALUES = st.recursive(_JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                            | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=6)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.fixed_dictionaries({name: _JSON_VALUES for name in FIELDS}), min_size=1, max_size=6),
       st.integers(min_value=1, max_value=4), st.integers(min_value=0, max_value=5))
def test_record_encoder_equals_json_dumps_for_any_values(records: list[dict[str, Any]], cap: int,
                                                         longest: int) -> None:
    """Any value in any field, repeated over records (the remembered strings, forgotten when `cap` is reached;
    those over `longest` characters never remembered)."""
    import json

    from tlsflow.formats import RecordEncoder

    encoder = RecordEncoder()
    encoder.MAX_REMEMBERED = cap
    encoder.MAX_REMEMBERED_LENGTH = longest
    for drawn in records + records:
        record = {name: drawn[name] for name in FIELDS}  # in the contract's order, as build_record makes them
        assert encoder.encode(record) == json.dumps(record, ensure_ascii=False)


@settings(max_examples=100, deadline=None)
@given(st.fixed_dictionaries({name: _JSON_VALUES for name in FIELDS}), st.randoms(use_true_random=False),
       st.dictionaries(st.text(max_size=4), _JSON_VALUES, max_size=2))
def test_record_encoder_equals_the_reordering_path_for_other_records(record: dict[str, Any], rnd: Any,
                                                                     extra: dict[str, Any]) -> None:
    """A record with keys in another order, missing or added: what `_encode_json(_ordered(record))` gives."""
    from tlsflow.formats import RecordEncoder, _encode_json, _ordered

    keys = list(record)
    rnd.shuffle(keys)
    other = {k: record[k] for k in keys[: rnd.randint(0, len(keys))]} | extra
    assert RecordEncoder().encode(other) == _encode_json(_ordered(other))


def test_record_encoder_equals_json_dumps_on_every_record(analysed: list[_KeepingAnalyzer]) -> None:
    import json

    from tlsflow.formats import RecordEncoder

    encoder = RecordEncoder()
    for _, record in [pair for a in analysed for pair in a.closed] * 2:
        assert encoder.encode(record) == json.dumps(record, ensure_ascii=False)


def test_records_have_the_contract_fields_in_order_and_share_nothing(analysed: list[_KeepingAnalyzer]) -> None:
    """build_record fills a copy of a record of nulls: each record is its own dict, in the contract's order, and
    what a reader does to one record (a filter adding a field, a renumbering) reaches neither the others nor the
    template."""
    from tlsflow import record as record_module

    # built again (not the fixture's records, which other tests read)
    records = [FlowAnalyzer._record(a, conn) for a in analysed for conn, _ in list(a.closed)]
    assert records == [record for a in analysed for _, record in a.closed]
    assert records and all(list(record) == list(FIELDS) for record in records)
    assert len({id(record) for record in records}) == len(records)
    for record in records:
        record["flow_id"] = -1
        record["added"] = True
    assert record_module._NULL_RECORD == dict.fromkeys(FIELDS)


class _EveryChunkFolded(_KeepingAnalyzer):
    """The chunk handling before chunks without events were skipped: every chunk's events folded, the stop
    condition checked after each chunk. Counts the chunks it hands the parser."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chunks = 0

    def _on_event(self, event: Any) -> dict[str, Any] | None:
        from tlsflow.pipeline import _CLIENT, _SERVER
        from tlsflow.tcp import StreamChunk

        if event.__class__ is not StreamChunk:
            return super()._on_event(event)
        conn = event.conn
        if not conn.wants_data:
            return None
        state = conn.handshake
        if state is None:  # (made at the connection's first bytes, as the pipeline does)
            state = conn.handshake = self._new_state(conn)
        self.chunks += 1
        if event.gap:
            events = state.tls.receive_gap(event.sender, event.gap, event.frame, event.ts)
        else:
            events = state.tls.receive(event.sender, event.data, event.frame, event.ts)
        state.summary.add_all(events)
        app_data = state.summary.app_data_records
        if (app_data[_CLIENT] and app_data[_SERVER]) or state.tls.given_up:
            conn.wants_data = False
        return None


class _ChunkCounting(_KeepingAnalyzer):
    """The pipeline's own chunk handling, counting the chunks it hands the parser."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chunks = 0

    def _on_event(self, event: Any) -> dict[str, Any] | None:
        from tlsflow.tcp import StreamChunk

        if event.__class__ is StreamChunk and event.conn.wants_data:
            self.chunks += 1
        return super()._on_event(event)


def test_chunks_without_events_stop_the_feeding_where_folding_them_did(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skipping the fold of chunks that gave no event: the same records, and the parser fed the same chunks.
    (Record bodies held back by the reassembler, which make fewer chunks, are off here: test_skipped_bodies.)"""
    from tlsflow import pipeline

    monkeypatch.setattr(pipeline, "SKIP_AT_LEAST", 1 << 62)
    for path in corpus_and_public_captures():
        reference = _analyse(path, monkeypatch, _EveryChunkFolded)
        fed = _analyse(path, monkeypatch, _ChunkCounting)
        assert [r for _, r in fed.closed] == [r for _, r in reference.closed]
        assert fed.chunks == reference.chunks


def test_the_client_records_after_the_server_flight_are_those_the_rules_computed(summaries: list[Any]) -> None:
    """The list the TLS 1.3 rules share (worked out once per verdict) is the one each computed for itself."""
    from analyzers.tcpfacts import SideFacts, TcpFacts
    from analyzers.verdict import CertView, _Decider
    from tlsparse.events import Sender

    checked = 0
    for summary in summaries:
        decider = _Decider(summary, TcpFacts(client=SideFacts(), server=SideFacts()), CertView(), None)
        server_enc = summary.encrypted_from(Sender.SERVER)
        expected = [r for r in summary.encrypted_from(Sender.CLIENT) if r.ts >= server_enc[0].ts] if server_enc \
            else []
        assert decider._client_after_server_flight() == expected
        assert decider._client_after_server_flight() is decider._client_after_server_flight()
        checked += bool(expected)
    assert checked
