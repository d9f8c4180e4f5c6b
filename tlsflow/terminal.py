"""The human report: one row per connection (failures first, coloured on a terminal), then a summary by outcome
and cause. Every string from the wire is escaped before it reaches the terminal: an SNI can carry escape codes."""
from __future__ import annotations

import os
from collections import Counter
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


def write_report(records: list[dict[str, Any]], stream: IO[str], *, colour: bool, show_capture: bool,
                 details: bool = True) -> None:
    records = sorted(records, key=lambda r: (_ORDER.get(r.get("outcome") or "", 9), str(r.get("capture")),
                                             r.get("flow_id") or 0))
    header = "  ".join(title.ljust(width) for title, _, width in _COLUMNS)
    if show_capture:
        header = "capture".ljust(24) + "  " + header
    stream.write((_BOLD + header + _RESET if colour else header) + "\n")
    for record in records:
        line = "  ".join(_cell(record, field, width) for _, field, width in _COLUMNS)
        if show_capture:
            line = safe_text(record.get("capture"), 24).ljust(24) + "  " + line
        outcome = record.get("outcome")
        if colour and outcome in _COLOURS:
            line = _COLOURS[outcome] + line + _RESET
        stream.write(line.rstrip() + "\n")
        if details and outcome == "failed":
            pad = " " * 6
            if record.get("alert"):
                stream.write(f"{pad}alert: {safe_text(record['alert'])} from {safe_text(record.get('alert_sender'))}"
                             f" ({safe_text(record.get('confidence'))})\n")
            for fact in record.get("evidence") or ():
                stream.write(f"{pad}- {safe_text(fact, 200)}\n")
            if record.get("hint"):
                stream.write(f"{pad}hint: {safe_text(record['hint'])}\n")
    write_summary(records, stream, colour=colour)


def write_summary(records: list[dict[str, Any]], stream: IO[str], *, colour: bool) -> None:
    outcomes = Counter(r.get("outcome") for r in records)
    causes = Counter((r.get("failed_step"), r.get("cause")) for r in records if r.get("outcome") == "failed")
    warnings = Counter(w for r in records for w in (r.get("warnings") or ()))
    title = f"{len(records)} connection(s): " + ", ".join(
        f"{n} {name}" for name, n in sorted(outcomes.items(), key=lambda kv: _ORDER.get(kv[0] or "", 9)))
    stream.write("\n" + (_BOLD + title + _RESET if colour else title) + "\n")
    for (step, cause), n in causes.most_common():
        stream.write(f"  {n:5d}  failed at {safe_text(step)}: {safe_text(cause)}\n")
    if warnings:
        stream.write("  warnings: " + ", ".join(f"{safe_text(w)} ({n})" for w, n in warnings.most_common()) + "\n")
