"""Machine output formats: JSON lines, JSON, CSV and Parquet, all with the contract's fields and values.

Lists become JSON arrays in CSV cells; CSV cells that a spreadsheet would run as a formula (=, +, -, @, tab, CR)
are neutralised with a leading apostrophe, which `read_records` removes again so that every format round-trips.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from math import floor as _floor
from pathlib import Path
from typing import IO, Any

from tlsflow.record import FIELDS, LIST_FIELDS

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_INT_FIELDS = frozenset({"flow_id", "first_frame", "cert_chain_len"})
_FLOAT_FIELDS = frozenset({"start", "end", "tcp_rtt_ms", "server_hello_ms", "handshake_ms"})
_BOOL_FIELDS = frozenset({"resumed"})
_TIMESTAMP_FIELDS = frozenset({"start", "end"})  # capture times (the other floats are short: repr is cheap there)


_FIELD_LIST = list(FIELDS)


def _ordered(record: dict[str, Any]) -> dict[str, Any]:
    if list(record) == _FIELD_LIST:  # as build_record makes them: already in the contract's order
        return record
    out = {name: record.get(name) for name in FIELDS}
    for name, value in record.items():  # fields added later keep their place after the contract's
        if name not in out:
            out[name] = value
    return out


def _json_encoder() -> Any:
    """A function giving exactly `json.dumps(obj, ensure_ascii=False)`, made once.

    Why: `json.dumps` with any argument builds a new JSONEncoder, and `encode` a new C encoder, for every record.
    The C encoder made here with the same settings is reused; without a cycle check, which only matters for
    self-referencing containers (a record holds none: strings, numbers, lists of strings)."""
    encoder = json.JSONEncoder(ensure_ascii=False, check_circular=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator (another Python implementation): the plain path
        return encoder.encode
    c_encode = make(None, encoder.default, json.encoder.encode_basestring, None, encoder.key_separator,
                    encoder.item_separator, False, False, True)

    def encode(obj: Any, _join: Any = "".join) -> str:
        return _join(c_encode(obj, 0))

    return encode


_encode_json = _json_encoder()
_INF = float("inf")


def timestamp_text(value: float) -> str:
    """The JSON text of a float (`float.__repr__`, or the encoder's word for NaN and the infinities), faster for
    capture times with whole microseconds, whose repr digit search (~7,000 instructions) costs more than reading
    the digits off the integer count of microseconds (~4,500).

    Why it is the same text: between 1 and 2**33 a double's spacing is below 1e-6, so at most one multiple of 1e-6
    rounds to it. When `micros / 1e6` (exact operands, one correctly rounded division) gives the value back, that
    multiple is `micros` millionths, and any shorter decimal that rounds to the value would be such a multiple as
    well: repr writes those digits, without trailing zeros (at least one fractional digit), in fixed notation."""
    if 1.0 <= value < 8589934592.0:  # 2**33
        micros = _floor(value * 1e6 + 0.5)
        if micros / 1e6 == value:
            digits = repr(micros)
            return digits[:-6] + "." + (digits[-6:].rstrip("0") or "0")
    return repr(value) if -_INF < value < _INF else _encode_json(value)  # type: ignore[no-any-return]

_encode_string = json.encoder.encode_basestring  # what the C encoder above calls for each string (keys included)
# Fields whose string values are new for almost every connection (the client's port): not worth remembering.
_UNIQUE_STRING_FIELDS = frozenset({"client"})


def _record_encoder_source() -> str:
    """The source of `make(remembered, remember)`, which returns a function giving a contract-ordered record's
    JSON text from its values. One expression per field, picked by the field's usual value (a string, a float,
    an int, a list): anything else (None aside) goes through the C encoder (`_encode_json`), so the text is the
    same whatever the value. Unrolled: a loop over the 37 fields cost more than the encoding it saved."""
    names = [f"v{i}" for i in range(len(FIELDS))]
    pieces = []
    for i, (name, value) in enumerate(zip(FIELDS, names)):
        pieces.append(repr(("{" if i == 0 else ", ") + _encode_string(name) + ": "))
        # A value whose class is exactly float (int) is written by `repr`, which is then `float.__repr__`
        # (`int.__repr__`), as the C encoder writes it, and a cheaper call (~350 instructions less).
        if name == "end":
            # The same float object as the start (a connection of one packet: a lone SYN, a scan's probe): the
            # start's text, made just before (~4,500 instructions saved).
            start = names[_FIELD_LIST.index("start")]
            expr = (f"start_text if {value} is {start} and start_text is not None else timestamp_text({value}) "
                    f"if {value}.__class__ is float else encode({value})")
        elif name == "start":
            expr = (f"(start_text := timestamp_text({value})) if {value}.__class__ is float "
                    f"else encode({value})")
        elif name in _TIMESTAMP_FIELDS:
            expr = f"timestamp_text({value}) if {value}.__class__ is float else encode({value})"
        elif name in _FLOAT_FIELDS:
            # (NaN and the infinities are words of the encoder's own: through it)
            expr = f"repr({value}) if {value}.__class__ is float and -INF < {value} < INF else encode({value})"
        elif name in _INT_FIELDS:
            expr = f"repr({value}) if {value}.__class__ is int else encode({value})"
        elif name in _BOOL_FIELDS:
            # (the two bools by identity: a call to the encoder costs ~2,300 instructions more)
            expr = f'"true" if {value} is True else "false" if {value} is False else encode({value})'
        elif name in LIST_FIELDS:
            # (lists of strings through the encoder: a Python join over remembered texts measured slower)
            expr = f"encode({value})"
        elif name in _UNIQUE_STRING_FIELDS:
            expr = f"encode_string({value}) if {value}.__class__ is str else encode({value})"
        else:
            expr = (f"(remembered({value}) or remember({value})) if {value}.__class__ is str "
                    f"else encode({value})")
        pieces.append(f'"null" if {value} is None else {expr}')
    pieces.append('"}"')
    body = ",\n        ".join(f"({p})" for p in pieces)
    return (f"def make(remembered, remember):\n"
            f"  def encode_values(values):\n"
            f"    {', '.join(names)} = values\n"
            f"    start_text = None\n"
            f"    return join((\n        {body}))\n"
            f"  return encode_values\n")


class RecordEncoder:
    """`encode(record)` is exactly `_encode_json(_ordered(record))`, that is `json.dumps(_ordered(record),
    ensure_ascii=False)`, made faster for the records `build_record` makes.

    Why: encoding a record took ~100k instructions, a good part of them escaping strings that are the same from
    one connection to the next: the 37 keys (the C encoder escapes each key of each dict again) and values such as
    the hint, the cause, the cipher, the certificate's subject. For a record whose keys are the contract's fields
    in order, the keys are written from texts made once, and each string value's JSON text is remembered (at
    most MAX_REMEMBERED strings of at most MAX_REMEMBERED_LENGTH characters, then forgotten all at once: memory
    stays bounded). Numbers and strings are written as the C encoder writes them (`float.__repr__`,
    `int.__repr__`, `encode_basestring`); lists and anything of another type go through the C encoder, one value
    at a time; any other record goes through it whole."""

    MAX_REMEMBERED = 4096
    MAX_REMEMBERED_LENGTH = 1024  # longer strings (hostile captures: a huge certificate subject) every time

    def __init__(self) -> None:
        strings: dict[str, str] = {}

        def remember(value: str) -> str:
            if len(value) > self.MAX_REMEMBERED_LENGTH:
                return _encode_string(value)  # type: ignore[no-any-return]
            if len(strings) >= self.MAX_REMEMBERED:
                strings.clear()
            text = strings[value] = _encode_string(value)
            return text

        self._strings = strings
        self._encode_values = _MAKE_RECORD_ENCODER(strings.get, remember)

    def encode(self, record: dict[str, Any]) -> str:
        if list(record) != _FIELD_LIST:
            return _encode_json(_ordered(record))
        return self._encode_values(record.values())  # type: ignore[no-any-return]


def _compile_record_encoder() -> Any:
    namespace: dict[str, Any] = {"join": "".join, "encode": _encode_json, "encode_string": _encode_string,
                                 "INF": _INF, "timestamp_text": timestamp_text}
    exec(_record_encoder_source(), namespace)  # noqa: S102 - built from the contract's field names only
    return namespace["make"]


_MAKE_RECORD_ENCODER = _compile_record_encoder()


class JsonLinesWriter:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._encode = RecordEncoder().encode

    def write(self, record: dict[str, Any]) -> None:
        self.stream.write(self._encode(record) + "\n")

    def close(self) -> None:
        self.stream.flush()


class JsonWriter:
    """One JSON array; written incrementally so that memory does not hold every record."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.first = True
        self._encode = RecordEncoder().encode
        stream.write("[")

    def write(self, record: dict[str, Any]) -> None:
        self.stream.write(("\n" if self.first else ",\n") + self._encode(record))
        self.first = False

    def close(self) -> None:
        self.stream.write("\n]\n")
        self.stream.flush()


def _csv_cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name in LIST_FIELDS:
        value = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, bool):
        return "true" if value else "false"
    elif not isinstance(value, str):
        return repr(value) if isinstance(value, float) else str(value)
    if value.startswith(_FORMULA_START) or value.startswith("'"):
        return "'" + value
    return value


_CSV_COLUMNS = tuple((name, name in LIST_FIELDS) for name in FIELDS)
_ESCAPED_START = (*_FORMULA_START, "'")  # cells that _csv_cell prefixes with an apostrophe


class CsvWriter:
    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.writer = csv.writer(stream, lineterminator="\n")
        self.writer.writerow(FIELDS)

    def write(self, record: dict[str, Any]) -> None:
        # What _csv_cell gives, with its two commonest cases (null, a plain string) decided inline: 37 calls per
        # record were most of the writer's time.
        cells = []
        append = cells.append
        for name, listed in _CSV_COLUMNS:
            value = record.get(name)
            if value is None:
                append("")
            elif value.__class__ is str and not listed and not value.startswith(_ESCAPED_START):
                append(value)
            else:
                append(_csv_cell(name, value))
        self.writer.writerow(cells)

    def close(self) -> None:
        self.stream.flush()


def parquet_schema():  # pyarrow is imported only when Parquet is asked for: it is slow to import
    import pyarrow as pa

    types = {name: pa.string() for name in FIELDS}
    types.update({name: pa.int64() for name in _INT_FIELDS})
    types.update({name: pa.float64() for name in _FLOAT_FIELDS})
    types.update({name: pa.bool_() for name in _BOOL_FIELDS})
    types.update({name: pa.list_(pa.string()) for name in LIST_FIELDS})
    return pa.schema([(name, types[name]) for name in FIELDS])


class ParquetWriter:
    """Buffers rows into row groups of `batch` records, so memory stays bounded for any number of flows.

    4,096 rows (~250 kB of Parquet here) rather than more: with pyarrow loaded (~40 MB) the peak of a 1 GB capture
    written to Parquet was 230 MB with 20,000-row groups, 223 MB with 8,192 and 205 MB with 4,096, in the same
    time; readers (pandas, DuckDB, Spark) take the row groups as they come."""

    def __init__(self, path: str | Path, batch: int = 4096) -> None:
        import pyarrow.parquet as pq

        self.schema = parquet_schema()
        self.writer = pq.ParquetWriter(str(path), self.schema)
        self.batch = batch
        self.rows: list[dict[str, Any]] = []

    def write(self, record: dict[str, Any]) -> None:
        self.rows.append(record)
        if len(self.rows) >= self.batch:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if self.rows:
            columns = {name: [r.get(name) for r in self.rows] for name in FIELDS}
            self.writer.write_table(pa.Table.from_pydict(columns, schema=self.schema))
            self.rows = []

    def close(self) -> None:
        self._flush()
        self.writer.close()


def _from_csv_cell(name: str, cell: str) -> Any:
    if cell == "":
        return None
    if cell.startswith("'") and (cell[1:].startswith(_FORMULA_START) or cell[1:].startswith("'")):
        cell = cell[1:]
    if name in LIST_FIELDS:
        return json.loads(cell)
    if name in _INT_FIELDS:
        return int(cell)
    if name in _FLOAT_FIELDS:
        return float(cell)
    if name in _BOOL_FIELDS:
        return cell == "true"
    return cell


def read_records(path: str | Path, fmt: str) -> Iterator[dict[str, Any]]:
    """Read back what the writers wrote (tests' round trip, and users who post-process)."""
    if fmt == "jsonl":
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)
    elif fmt == "json":
        with open(path, encoding="utf-8") as f:
            yield from json.load(f)
    elif fmt == "csv":
        with open(path, encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                yield {name: _from_csv_cell(name, row[name]) for name in FIELDS}
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        for row in pq.read_table(str(path)).to_pylist():
            yield row
    else:
        raise ValueError(f"unknown format {fmt!r}")


def open_writer(fmt: str, out: str | None, stdout: IO[str]) -> tuple[Any, IO[str] | None]:
    """A writer for `fmt` into file `out` (or standard output); returns the writer and the file to close."""
    if fmt == "parquet":
        if out is None or out == "-":
            raise ValueError("--format parquet needs -o FILE")
        return ParquetWriter(out), None
    stream: IO[str]
    if out is None or out == "-":
        stream, to_close = stdout, None
    else:
        stream = open(out, "w", encoding="utf-8", newline="")  # noqa: SIM115 (closed by the caller)
        to_close = stream
    writer = {"jsonl": JsonLinesWriter, "json": JsonWriter, "csv": CsvWriter}[fmt](stream)
    return writer, to_close
