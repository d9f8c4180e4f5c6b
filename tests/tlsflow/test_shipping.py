"""Records packed by a --jobs worker and unpacked by the parent are the records, and the JSON text a worker makes
is what the JSON lines writer writes for them, whatever the flow id the parent gives."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsflow.formats import JsonLinesWriter
from tlsflow.parallel import GZIP_SHARED_FROM
from tlsflow.pipeline import iter_flow_records
from tlsflow.record import FIELDS
from tlsflow.shipping import LINE_FIELDS, EncodedRecord, pack, unpack

CORPUS = Path(__file__).resolve().parents[2] / "captures" / "corpus"


def _written(record: dict) -> str:
    out = io.StringIO()
    JsonLinesWriter(out).write(record)
    return out.getvalue()


@pytest.fixture(scope="module")
def corpus_records() -> list[dict]:
    records = []
    for path in sorted(CORPUS.glob("*.pcap"))[:20]:
        records.extend(iter_flow_records(str(path)))
    assert len(records) >= 20
    return records


def test_corpus_records_come_back_the_same(corpus_records):
    for record in corpus_records:
        back = unpack(pack(dict(record), False))
        assert back == record and list(back) == list(record)
        assert back.__class__ is dict


def test_with_their_line_records_bring_what_is_read_of_them(corpus_records):
    """With JSON lines: the fields the parent and the command line read, and the whole record's line."""
    for record in corpus_records:
        back = unpack(pack(dict(record), True))
        assert back.__class__ is EncodedRecord
        assert back == {k: record[k] for k in LINE_FIELDS} and list(back) == list(LINE_FIELDS)
        assert back.json_line() == _written(record)


def test_range_entry_travels_beside_the_fields(corpus_records):
    record = dict(corpus_records[0], _range=((("10.0.0.1", 1), ("10.0.0.2", 443)), 42, "closed"))
    back = unpack(pack(dict(record), False))
    assert back == record
    back = unpack(pack(dict(record), True))
    assert back.pop("_range") == record["_range"]
    assert back == {k: record[k] for k in LINE_FIELDS}
    assert back.json_line() == _written({k: v for k, v in record.items() if k != "_range"})


def test_a_record_with_other_keys_goes_as_it_is(corpus_records):
    record = dict(corpus_records[0], extra_field=1)
    assert unpack(pack(dict(record), True)) == record


@settings(max_examples=200, deadline=None)
@given(capture=st.text(), flow_id=st.integers(min_value=0, max_value=10**12),
       new_id=st.integers(min_value=0, max_value=10**12), sni=st.one_of(st.none(), st.text()))
def test_flow_id_is_spliced_whatever_the_capture_name(corpus_records, capture, flow_id, new_id, sni):
    """Capture names and SNIs may hold anything, '"flow_id": 7,' included: the key found is the real one."""
    record = dict(corpus_records[0], capture=capture, flow_id=flow_id, sni=sni)
    back = unpack(pack(dict(record), True))
    assert json.loads(back.json_line()) == record
    back["flow_id"] = new_id  # what the parent does when it numbers a later range's flows
    assert back.json_line() == _written(dict(record, flow_id=new_id))


def test_fields_are_the_contracts(corpus_records):
    assert list(corpus_records[0]) == list(FIELDS)


@pytest.fixture(scope="module")
def generated(generated_capture) -> Path:
    return generated_capture


def _lines(tmp_path: Path, inputs: list[str], jobs: int, *options: str) -> list[str]:
    from tlsflow.cli import main

    out = tmp_path / f"j{jobs}.jsonl"
    main(["analyze", *inputs, "--format", "jsonl", "-o", str(out), "--jobs", str(jobs), *(options or ["-q"])])
    return sorted(out.read_text().splitlines(keepends=True))


@pytest.mark.parametrize("kind", ["one pcap in ranges", "gzip in shards", "many files"])
def test_cli_writes_the_workers_lines_byte_for_byte(generated, tmp_path, monkeypatch, kind):
    """`tlsflow analyze --jobs 2 -f jsonl`: the lines the workers encoded, flow ids renumbered by the parent, are
    byte for byte a single process's (order aside), on each way a run is shared out."""
    import gzip

    if kind == "one pcap in ranges":
        inputs = [str(generated)]
    elif kind == "gzip in shards":
        packed = tmp_path / "gen.pcap.gz"
        packed.write_bytes(gzip.compress(generated.read_bytes(), compresslevel=1))
        inputs = [str(packed)]
    else:
        inputs = [str(p) for p in sorted(CORPUS.glob("*.pcap"))[:12]]
    used = []
    original = EncodedRecord.json_line
    monkeypatch.setattr(EncodedRecord, "json_line", lambda self: used.append(1) or original(self))
    single = _lines(tmp_path, inputs, 1)
    assert not used
    # (a gzipped file is shared out by connection from GZIP_SHARED_FROM jobs on; with two, one process reads it)
    double = _lines(tmp_path, inputs, GZIP_SHARED_FROM if kind == "gzip in shards" else 2)
    assert double == single
    assert len(used) == len(single) > 10


@pytest.mark.parametrize("options", [["--failed"], ["--sni", "*.example.com"], ["--port", "443"],
                                     ["--host", "127.0.10.2"]])
def test_cli_filters_the_workers_lines(generated, tmp_path, capsys, options):
    """The filters read the fields that come with a worker's line: the same lines and summary as one process."""
    single = _lines(tmp_path, [str(generated)], 1, *options)
    summary = capsys.readouterr().err
    double = _lines(tmp_path, [str(generated)], 2, *options)
    assert double == single and single
    assert capsys.readouterr().err == summary and "connection(s):" in summary
