"""The human report: one row per connection (failures first, coloured on a terminal), then a summary by outcome
and cause. Every string from the wire is escaped before it reaches the terminal: an SNI can carry escape codes."""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from typing import IO, Any

_COLOURS = {"failed": "\x1b[31m", "not_tls": "\x1b[35m", "incomplete": "\x1b[33m", "established": "\x1b[32m"}
_RESET = "\x1b[0m"
_BOLD = "\x1b[1m"
_ORDER = {"failed": 0, "not_tls": 1, "incomplete": 2, "established": 3}


def os_reason(exc: BaseException | None) -> str:
    """An OSError's reason as the system says it ("No space left on device"), without its number or file name
    (nor pyarrow's longer text around it)."""
    return os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else str(exc)


def output_name(path: str | None) -> str:
    """How a message names an output: its path, or standard output for none or '-'."""
    return path if path and path != "-" else "standard output"


def safe_text(value: Any, width: int | None = None) -> str:
    """Printable text: control, escape and non-printable characters shown as \\xNN / \\uNNNN, cut to `width`."""
    if value is None:
        return "-"
    text = str(value)
    out = []
    for ch in text:
        if ch.isprintable() and ch not in "\x1b":
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    text = "".join(out)
    if width is not None and len(text) > width:
        text = text[: max(1, width - 1)] + "…"
    return text


_COLUMNS = (("#", "flow_id", 4), ("client", "client", 21), ("server", "server", 21), ("SNI", "sni", 24),
            ("version", "version", 7), ("outcome", "outcome", 11), ("step", "failed_step", 18),
            ("cause", "cause", 24))


def _cell(record: dict[str, Any], field: str, width: int) -> str:
    value = record.get(field)
    if field == "version" and isinstance(value, str):
        value = value.replace("TLS ", "")
    return safe_text(value, width).ljust(width)


def write_report(records: Iterable[dict[str, Any]], stream: IO[str], *, colour: bool, show_capture: bool,
                 details: bool = True) -> None:
    report = Report(stream, colour=colour, show_capture=show_capture, details=details)
    try:
        for record in records:
            report.add(record)
        report.write()
    finally:
        report.close()


class Report:
    """The report of `write_report`, taken a record at a time: memory stays flat however many connections a
    capture holds (the command line's default output, a 4 GB capture is ~88,000 rows).

    Each record is made into its text block (row and, for a failure, its details) as it comes; only that text
    waits, with its place in the report (failures first, then by capture and flow id, as they came for equal
    keys). Past BLOCKS_IN_MEMORY blocks they are sorted and written to a temporary file (a run); `write` merges
    the runs and what is left in memory. Why not the records: a record is ~2 KB of Python objects, a block
    ~150 bytes (~600 for a failure), and a list of every record made the peak grow ~28 MB per GB of capture. A
    disk that refuses a run leaves the blocks in memory, with a warning."""

    BLOCKS_IN_MEMORY = 16_384
    _RUN_PICKLE = 256  # blocks per pickle in a run's file (read back a pickle at a time while merging)

    def __init__(self, stream: IO[str], *, colour: bool, show_capture: bool, details: bool = True) -> None:
        self.stream, self.colour, self.show_capture, self.details = stream, colour, show_capture, details
        # (outcome rank, capture, flow id, arrival: the place in the report; the text; what the summary counts)
        self._blocks: list[tuple[int, str, int, int, str, tuple[Any, ...]]] = []
        self._runs: list[str] = []  # files of sorted blocks
        self._spill: Any = None  # a waiting.SpillFolder, from the first run on
        self._count = 0

    def add(self, record: dict[str, Any]) -> None:
        outcome = record.get("outcome")
        self._count += 1
        counted = (outcome, record.get("failed_step"), record.get("cause"), tuple(record.get("warnings") or ()))
        self._blocks.append((_ORDER.get(outcome or "", 9), str(record.get("capture")), record.get("flow_id") or 0,
                             self._count, self._block(record), counted))
        if len(self._blocks) >= self.BLOCKS_IN_MEMORY and (self._spill is None or not self._spill.failed):
            self._write_run()

    def write(self) -> None:
        """The report: header, every block in order, summary."""
        header = "  ".join(title.ljust(width) for title, _, width in _COLUMNS)
        if self.show_capture:
            header = "capture".ljust(24) + "  " + header
        # (imported here and below: the command line imports this module for every output format)
        import heapq

        from tlsflow.waiting import read_pickles

        stream = self.stream
        stream.write((_BOLD + header + _RESET if self.colour else header) + "\n")
        self._blocks.sort()
        # Counted in the report's order, as write_summary counts sorted records: equal counts keep that order.
        outcomes: Counter[Any] = Counter()
        causes: Counter[tuple[Any, Any]] = Counter()
        warned: Counter[Any] = Counter()
        for block in heapq.merge(*(read_pickles(path) for path in self._runs), self._blocks):
            stream.write(block[4])
            outcome, step, cause, block_warnings = block[5]
            outcomes[outcome] += 1
            if outcome == "failed":
                causes[(step, cause)] += 1
            for warning in block_warnings:
                warned[warning] += 1
        _write_counts(self._count, outcomes, causes, warned, stream, colour=self.colour)

    def close(self) -> None:
        """Delete the runs on disk."""
        if self._spill is not None:
            self._spill.close()

    def _block(self, record: dict[str, Any]) -> str:
        line = "  ".join(_cell(record, field, width) for _, field, width in _COLUMNS)
        if self.show_capture:
            line = safe_text(record.get("capture"), 24).ljust(24) + "  " + line
        outcome = record.get("outcome")
        if self.colour and outcome in _COLOURS:
            line = _COLOURS[outcome] + line + _RESET
        parts = [line.rstrip(), "\n"]
        if self.details and outcome not in ("failed", "established") and record.get("evidence"):
            # Incomplete or not TLS: the first fact says why there is no verdict.
            parts.append(f"      - {safe_text(record['evidence'][0], 200)}\n")
        elif self.details and outcome == "failed":
            pad = " " * 6
            if record.get("alert"):
                parts.append(f"{pad}alert: {safe_text(record['alert'])} from {safe_text(record.get('alert_sender'))}"
                             f" ({safe_text(record.get('confidence'))})\n")
            for fact in record.get("evidence") or ():
                parts.append(f"{pad}- {safe_text(fact, 200)}\n")
            if record.get("hint"):
                parts.append(f"{pad}hint: {safe_text(record['hint'])}\n")
        return "".join(parts)

    def _write_run(self) -> None:
        from tlsflow.waiting import SpillFolder

        if self._spill is None:
            self._spill = SpillFolder("tlsflow-report-", "the report's rows")
        blocks = self._blocks
        blocks.sort()
        name = str(len(self._runs))
        step = self._RUN_PICKLE
        if self._spill.append(name, [blocks[at:at + step] for at in range(0, len(blocks), step)]):
            self._runs.append(self._spill.path(name))
            self._blocks = []


def write_summary(records: Iterable[dict[str, Any]], stream: IO[str], *, colour: bool) -> None:
    records = list(records)
    outcomes = Counter(r.get("outcome") for r in records)
    causes = Counter((r.get("failed_step"), r.get("cause")) for r in records if r.get("outcome") == "failed")
    warned = Counter(w for r in records for w in (r.get("warnings") or ()))
    _write_counts(len(records), outcomes, causes, warned, stream, colour=colour)


def _write_counts(count: int, outcomes: Counter[Any], causes: Counter[tuple[Any, Any]], warned: Counter[Any],
                  stream: IO[str], *, colour: bool) -> None:
    title = f"{count} connection(s)" + (": " if outcomes else "") + ", ".join(
        f"{n} {name}" for name, n in sorted(outcomes.items(), key=lambda kv: _ORDER.get(kv[0] or "", 9)))
    stream.write("\n" + (_BOLD + title + _RESET if colour else title) + "\n")
    for (step, cause), n in causes.most_common():
        stream.write(f"  {n:5d}  failed at {safe_text(step)}: {safe_text(cause)}\n")
    if warned:
        stream.write("  warnings: " + ", ".join(f"{safe_text(w)} ({n})" for w, n in warned.most_common()) + "\n")
