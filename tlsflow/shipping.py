"""Records on their way from a `--jobs` worker process to the parent: compact to pickle and, when the output is
JSON lines, already encoded by the worker.

Why: the parent is the one process that every record goes through, so its cost per record bounds how far
`--jobs N` scales. It used to unpickle each record as a dict and encode it to JSON; now it rebuilds the dict from
a tuple of values in the contract's field order and splices the flow id it renumbers into the worker's text. The
encoding moves to the workers, which run in parallel: the total work is the same (callgrind, 200 MB capture,
2 jobs: +0.7 % instructions in all), the parent's CPU drops by a quarter (1 GB capture, 4 runs each:
0.85-0.95 s -> 0.66-0.73 s, of which ~0.35 s are start-up and the hop, i.e. ~25 -> ~15 µs per record), and its
serial tail after the last worker ends (writing the last range's held records) halves (~0.2 -> ~0.1 s). With 2
jobs on 2 cores the wall time does not measurably change; the parent would now keep up with ~20 workers instead
of ~14 (one worker makes ~3,000 records per second of this capture).

`pack` (worker) and `unpack` (parent) are each other's inverse: `unpack(pack(r, False)) == r` for every record.
With JSON lines the record's text is all the parent writes, so only the fields that the parent and the command
line read travel beside it (LINE_FIELDS: placing, numbering, the outcome counts and the filters): the parent
unpickled ~40 values per record to read six (callgrind, 200 MB capture, --jobs 2: the parent's work per record
~59k -> ~42k instructions beside its start-up). `EncodedRecord.json_line()` is exactly what
`formats.JsonLinesWriter` writes for the whole record, with its flow id of the moment (the only field the parent
changes).
"""
from __future__ import annotations

import functools
import operator
from typing import Any

from tlsflow.formats import RecordEncoder
from tlsflow.record import FIELDS

_FIELD_LIST = list(FIELDS)
_WITH_RANGE = [*FIELDS, "_range"]  # a range worker's record: the contract's fields, then where to place it
_FLOW_ID_KEY = '"flow_id": '
# What the parent (placing and numbering: tlsflow.parallel_ranges, tlsflow.parallel) and the command line (outcome
# counts, --failed, --sni, --host, --port) read of a record that comes with its JSON line.
LINE_FIELDS = ("flow_id", "first_frame", "outcome", "sni", "client", "server")
_LINE_FIELD_LIST = list(LINE_FIELDS)
_line_values = operator.itemgetter(*LINE_FIELDS)


class EncodedRecord(dict):  # type: ignore[type-arg]
    """A record's LINE_FIELDS (a plain dict to every reader of those) with the JSON text of the whole record, cut
    around the flow id."""

    __slots__ = ("json_head", "json_tail")

    def json_line(self) -> str:
        """The record as one JSON line (with its newline), its current flow id spliced in."""
        return f"{self.json_head}{self['flow_id']}{self.json_tail}\n"


def pack(record: dict[str, Any], json_lines: bool) -> Any:
    """What a worker sends for `record`: (values in FIELDS order, or in LINE_FIELDS order with its JSON text; the
    "_range" entry or None; JSON text before and after the flow id, or None). A record with other keys (none
    today) goes as it is."""
    keys = list(record)
    if keys == _WITH_RANGE:
        extra = record.pop("_range")
    elif keys == _FIELD_LIST:
        extra = None
    else:
        return record
    if json_lines:
        text = _encoder().encode(record)
        # The contract's order puts "capture" (a string: its quotes are escaped inside it) before "flow_id", so
        # the key's first occurrence is the key itself.
        at = text.find(_FLOW_ID_KEY) + len(_FLOW_ID_KEY)
        end = text.find(",", at)
        if text[at:end] == str(record["flow_id"]):  # (always; else the record goes whole and the parent encodes it)
            return (_line_values(record), extra, text[:at], text[end:])
    return (tuple(record.values()), extra, None, None)


@functools.cache
def _encoder() -> RecordEncoder:
    """This process's encoder, made at its first record (it remembers string values)."""
    return RecordEncoder()


def unpack(item: Any) -> dict[str, Any]:
    """The record a worker packed (an EncodedRecord when it came with its JSON text)."""
    if item.__class__ is dict:
        return item  # type: ignore[no-any-return]
    values, extra, head, tail = item
    if head is None:
        record = dict(zip(_FIELD_LIST, values))
    else:
        record = EncodedRecord(zip(_LINE_FIELD_LIST, values))
        record.json_head = head
        record.json_tail = tail
    if extra is not None:
        record["_range"] = extra
    return record


def pack_all(records: list[dict[str, Any]], json_lines: bool) -> list[Any]:
    return [pack(record, json_lines) for record in records]


def unpack_all(items: list[Any]) -> list[dict[str, Any]]:
    return [unpack(item) for item in items]
