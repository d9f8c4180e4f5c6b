"""`tlsflow explain`: one connection drawn as a ladder (client | server), with frame numbers and relative times,
the place where it broke, and the verdict with its evidence and hint."""
from __future__ import annotations

from typing import IO, Any

from tlsflow.capture import CaptureError, open_capture
from tlsflow.pipeline import FlowAnalyzer
from tlsflow.terminal import safe_text
from tlsparse import events as ev
from tlsparse import messages as m
from tlsparse import registry
from tlsparse.events import Sender

_WIDTH = 34
_MESSAGE_NAMES = {
    m.HELLO_REQUEST: "HelloRequest", m.CLIENT_HELLO: "ClientHello", m.SERVER_HELLO: "ServerHello",
    m.HELLO_RETRY_REQUEST: "HelloRetryRequest", m.NEW_SESSION_TICKET: "NewSessionTicket",
    m.END_OF_EARLY_DATA: "EndOfEarlyData", m.ENCRYPTED_EXTENSIONS: "EncryptedExtensions",
    m.CERTIFICATE: "Certificate", m.SERVER_KEY_EXCHANGE: "ServerKeyExchange",
    m.CERTIFICATE_REQUEST: "CertificateRequest", m.SERVER_HELLO_DONE: "ServerHelloDone",
    m.CERTIFICATE_VERIFY: "CertificateVerify", m.CLIENT_KEY_EXCHANGE: "ClientKeyExchange", m.FINISHED: "Finished",
    m.CERTIFICATE_STATUS: "CertificateStatus", m.KEY_UPDATE: "KeyUpdate",
}


def _label(event: Any) -> str | None:
    if isinstance(event, ev.HandshakeSeen):
        msg = event.message
        name = _MESSAGE_NAMES.get(event.msg_type) or registry.handshake_type_name(event.msg_type)
        if getattr(event, "decrypted", False):
            name += " (decrypted)"
        if isinstance(msg, m.ClientHello):
            extra = registry.version_name(msg.highest_version)
            if msg.sni:
                extra += f", SNI {safe_text(msg.sni, 40)}"
            return f"ClientHello ({extra})"
        if isinstance(msg, m.ServerHello) and not msg.is_hello_retry_request:
            return (f"ServerHello ({registry.version_name(msg.selected_version)}, "
                    f"{registry.cipher_suite_name(msg.cipher_suite)})")
        if isinstance(msg, m.Certificate):
            return f"Certificate ({len(msg.certificates)} cert(s))"
        return name
    if isinstance(event, ev.AlertSeen):
        if event.encrypted:
            return f"Alert (encrypted, {event.length} bytes)"
        level = "fatal" if event.level == 2 else "warning"
        return f"Alert {level} {registry.alert_name(event.description)}"
    if isinstance(event, ev.ChangeCipherSpecSeen):
        return "ChangeCipherSpec"
    if isinstance(event, ev.EncryptedRecordSeen):
        kind = "handshake" if event.content_type == m.HANDSHAKE or event.handshake_phase else "data"
        return f"[encrypted {kind} record, {event.length} bytes]"
    if isinstance(event, ev.NotTlsSeen):
        return f"not TLS: {safe_text(event.preview.decode('latin-1'), 24)}"
    if isinstance(event, ev.GapSeen):
        return f"[{event.length} bytes missing from the capture]"
    if isinstance(event, ev.MidstreamJoinSeen):
        skipped = f" after {event.skipped} bytes of a record under way" if event.skipped else ""
        return f"[joined mid-stream: TLS records from here{skipped}]"
    if isinstance(event, ev.ParseAnomaly):
        return f"[malformed: {event.name}]"
    if isinstance(event, ev.TruncatedRecordSeen):
        what = (_MESSAGE_NAMES.get(event.handshake_type) or registry.handshake_type_name(event.handshake_type)
                if event.handshake_type is not None else registry.content_type_name(event.content_type) + " record")
        return f"{what} cut at {event.received + 5:,}/{event.length + 5:,} B"  # (the stream ended there)
    return None


def _line(frame: int | None, t: float, sender: Sender, text: str) -> str:
    frame_text = f"{frame:>7}" if frame is not None else "       "
    limit = _WIDTH if sender is Sender.CLIENT else 2 * _WIDTH
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    # Client messages sit left of a right-pointing arrow, server messages right of a left-pointing one, so each
    # side reads as a column.
    if sender is Sender.CLIENT:
        body = f"{text:<{_WIDTH}} ───────►"
    else:
        body = f"{'':<{_WIDTH - 8}}◄─────── {text}"
    return f"{frame_text} {t * 1000:10.3f} ms  {body}"


def render_ladder(events: list[Any], tcp: Any, record: dict[str, Any], frame_base: int = 0) -> list[str]:
    """The connection's packets and messages as a ladder; frame numbers less `frame_base` (a series: the frames of
    the files before the one the connection began in)."""
    rows: list[tuple[float, int, Sender, str]] = []
    for side, sender in ((tcp.client, Sender.CLIENT), (tcp.server, Sender.SERVER)):
        if side.syn_frame is not None:
            rows.append((side.syn_ts, side.syn_frame, sender, "SYN"))
        if side.synack_frame is not None:
            rows.append((side.synack_ts, side.synack_frame, sender, "SYN-ACK"))
        if side.fin_frame is not None:
            rows.append((side.fin_ts, side.fin_frame, sender, "FIN"))
        if side.rst_frame is not None:
            rows.append((side.rst_ts, side.rst_frame, sender, f"RST (TTL {side.rst_ttl})"))
    # A side the capture holds no packet of (one direction captured): its stream is all "missing", which is no loss.
    unseen = {sender for side, sender in ((tcp.client, Sender.CLIENT), (tcp.server, Sender.SERVER)) if not side.packets}
    # A ClientHello that came in several TLS records (some servers and middleboxes fail on it): says how many.
    hello_records = 0
    for event in events:
        if event.sender is not Sender.CLIENT:
            continue
        if event.__class__ is ev.RecordSeen and event.content_type == m.HANDSHAKE:
            hello_records += 1
        elif event.__class__ is ev.HandshakeSeen or event.__class__ is not ev.RecordSeen:
            break
    for event in events:
        label = _label(event)
        if hello_records > 1 and label is not None and label.startswith("ClientHello (") and \
                event.sender is Sender.CLIENT:
            label = f"ClientHello in {hello_records} records {label[len('ClientHello '):]}"
            hello_records = 0
        if label is not None:
            if unseen and event.__class__ is ev.GapSeen and event.sender in unseen:
                label = f"[{event.length} bytes, not captured]"
            rows.append((event.ts, event.frame, event.sender, label))
    rows.sort(key=lambda r: (r[1], r[0]))
    start = record["start"]
    lines = [f"{'frame':>7} {'time':>13}  {'client':<{_WIDTH - 8}}{'':9}server", "─" * 100]
    for ts, frame, sender, label in rows:
        lines.append(_line(frame - frame_base if frame is not None else None, ts - start, sender, label))
    return lines


def explain_flow(path: str, flow_id: int, out: IO[str], *, trust: Any = None, colour: bool = False,
                 keylog: Any = None, series: list[str] | None = None) -> int:
    """The ladder, verdict, evidence and hint of one connection. `series`: the files of a capture rotated into
    pieces (`analyze --series`), `path` among them: the connection is the `flow_id`-th that began in `path`, its
    frames numbered from that file's first."""
    if series:
        found = _in_series(path, flow_id, out, series, trust, keylog)
        if isinstance(found, int):
            return found
        record, analyzer, frame_base = found
    else:
        frame_base = 0
        analyzer = FlowAnalyzer(path, trust=trust, keep_events_for=flow_id, keylog=keylog)
        record = None
        try:
            with open_capture(path) as cap:
                try:
                    for pkt in cap.packets():
                        for r in analyzer.feed(pkt):
                            if r["flow_id"] == flow_id:
                                record = r
                except CaptureError as exc:
                    out.write(f"tlsflow: {exc}\n")
                for r in analyzer.finish():
                    if r["flow_id"] == flow_id:
                        record = r
        except (OSError, CaptureError) as exc:
            out.write(f"tlsflow: {path}: {exc}\n")
            return 3
    if record is None or analyzer.kept_tcp is None:
        out.write(f"tlsflow: {path}: no connection with flow id {flow_id}\n")
        return 2
    out.write(f"flow {flow_id}: {record['client']} → {record['server']}"
              + (f"  SNI {safe_text(record['sni'])}" if record.get("sni") else "") + "\n\n")
    for line in render_ladder(analyzer.kept_events, analyzer.kept_tcp, record, frame_base):
        out.write(line + "\n")
    out.write("\n")
    outcome = record["outcome"]
    head = f"outcome: {outcome}"
    if outcome == "failed":
        head += f" at {record['failed_step']}: {record['cause']} ({record['confidence']})"
        if colour:
            head = "\x1b[31m" + head + "\x1b[0m"
    out.write(head + "\n")
    if record.get("alert"):
        out.write(f"alert: {record['alert']} from {record['alert_sender']}\n")
    for fact in record.get("evidence") or ():
        out.write(f"  - {safe_text(fact)}\n")
    if record.get("hint"):
        out.write(f"hint: {safe_text(record['hint'])}\n")
    if record.get("warnings"):
        out.write("warnings: " + ", ".join(record["warnings"]) + "\n")
    return 1 if outcome == "failed" else 0


def _in_series(path: str, flow_id: int, out: IO[str], series: list[str], trust: Any, keylog: Any
               ) -> tuple[dict[str, Any] | None, FlowAnalyzer, int] | int:
    """(the record, the analyzer that kept its events, the frames before `path`) of the connection, read through
    the whole series as `analyze --series` reads it; or the exit code after saying why not."""
    from tlsflow.series import group_by_folder, iter_series

    path = next((p for p in series if p == path or _same_file(p, path)), path)
    if path not in series:
        out.write(f"tlsflow: {path} is not one of the --series files\n")
        return 2
    analyzer = FlowAnalyzer(path, trust=trust, keep_events_for=-1, keylog=keylog)
    frame_base = 0

    def begin(piece: str, frames_before: int) -> None:
        nonlocal frame_base
        if piece == path:  # the connection's flow_id in the series' own numbering is known from here
            analyzer.keep_events_for = analyzer.reassembler.flows_opened + flow_id
            frame_base = frames_before

    record = None
    # The series is the files of CAPTURE's folder, as `analyze --series` groups them (a glob over every sensor's
    # folder may be given).
    group = next(group for group in group_by_folder(series) if path in group)
    for capture, result in iter_series(group, analyzer=analyzer, on_begin=begin):
        if isinstance(result, str):
            out.write(f"tlsflow: {result}\n")
        elif capture == path and result["flow_id"] == flow_id:
            record = result
    return record, analyzer, frame_base


def _same_file(a: str, b: str) -> bool:
    import os

    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
