"""Read what really happened on the wire of a corpus pcap with tshark, and hold labels to it.

The recorder uses this to fill the wire facts of each label (client/server addresses, SNI, negotiated version, the
first fatal alert and who sent it, whether it was readable) and to refuse labels that contradict the capture; the
tests use it to check the committed corpus. tshark is the independent reader here, not tlsflow.

An alert counts as "encrypted" when a reader without keys cannot see its description: a TLS 1.2 alert record sent
after ChangeCipherSpec, or a TLS 1.3 alert hidden in an opaque application_data record. With a key log tshark
decrypts it and we learn its real description too (kept in ``WireAlert.decrypted``).
"""
from __future__ import annotations

import bisect
import json
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from captures.scenario import Label

# IANA TLS Alert registry (descriptions only): small and stable, so it lives here rather than in a data file.
ALERT_NAMES = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 21: "decryption_failed_RESERVED",
    22: "record_overflow", 30: "decompression_failure_RESERVED", 40: "handshake_failure",
    41: "no_certificate_RESERVED", 42: "bad_certificate", 43: "unsupported_certificate",
    44: "certificate_revoked", 45: "certificate_expired", 46: "certificate_unknown", 47: "illegal_parameter",
    48: "unknown_ca", 49: "access_denied", 50: "decode_error", 51: "decrypt_error",
    60: "export_restriction_RESERVED", 70: "protocol_version", 71: "insufficient_security", 80: "internal_error",
    86: "inappropriate_fallback", 90: "user_canceled", 100: "no_renegotiation_RESERVED",
    109: "missing_extension", 110: "unsupported_extension", 111: "certificate_unobtainable_RESERVED",
    112: "unrecognized_name", 113: "bad_certificate_status_response", 114: "bad_certificate_hash_value_RESERVED",
    115: "unknown_psk_identity", 116: "certificate_required", 120: "no_application_protocol",
    121: "ech_required",
}
VERSION_NAMES = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}
ENCRYPTED = "encrypted"
# A TLS 1.3 alert as it appears without keys: 2 bytes of alert + 1 byte inner content type + 16 bytes AEAD tag.
TLS13_ALERT_RECORD_LEN = 19

_FIELDS = (
    "frame.number", "tcp.stream", "ip.src", "tcp.srcport", "ip.dst", "tcp.dstport", "tcp.flags.syn",
    "tcp.flags.ack", "tls.record.content_type", "tls.record.opaque_type", "tls.record.length",
    "tls.alert_message.level", "tls.alert_message.desc", "tls.handshake.type",
    "tls.handshake.extensions_server_name", "tls.handshake.extensions.supported_version",
    "tls.handshake.version", "tls.handshake.extensions_alpn_str", "ipv6.src", "ipv6.dst",
    "tls.handshake.extension.type",
)


class WireError(RuntimeError):
    """tshark is missing or could not read the capture."""


@dataclass(frozen=True, slots=True)
class WireAlert:
    frame: int
    sender: str                 # client | server
    level: str | None           # warning | fatal (read with the key log if need be), None when unreadable
    description: str            # IANA name, or "encrypted" when a reader without keys cannot see it
    decrypted: str | None = None  # the real description when the key log let tshark decrypt it

    @property
    def may_be_fatal(self) -> bool:
        return self.level != "warning"


@dataclass(frozen=True, slots=True)
class WireFlow:
    """One TCP connection as tshark reads it (flow = tcp.stream + 1)."""

    flow: int
    client: str | None
    server: str | None
    sni: str | None
    version: str | None
    alpn: str | None            # visible only in TLS 1.2 (or with a key log in TLS 1.3)
    client_hellos: int
    server_hellos: int          # ServerHello and HelloRetryRequest
    alerts: tuple[WireAlert, ...]
    handshake_done: bool        # TLS 1.2: both sides sent ChangeCipherSpec; TLS 1.3: client sent records after CCS/Finished
    first_frame: int = 0        # frame number of the connection's first packet
    resumed: bool | None = None  # TLS 1.2: ServerHello then CCS with no server Certificate; TLS 1.3: PSK accepted

    def first_fatal_alert(self) -> WireAlert | None:
        """The first alert that is fatal, or unreadable before the handshake finished (a failure's alert)."""
        for alert in self.alerts:
            if alert.level == "fatal":
                return alert
            if alert.level is None and not self.handshake_done:
                return alert  # unreadable and no key log: an alert before the handshake finished is its failure
        return None


def tshark_available() -> bool:
    return shutil.which("tshark") is not None


def _run_tshark(pcap: Path, ports: set[int], keylog: Path | None) -> list[dict[str, list[str]]]:
    exe = shutil.which("tshark")
    if exe is None:
        raise WireError("tshark is not installed")
    cmd = [exe, "-r", str(pcap), "-n", "-o", "tcp.relative_sequence_numbers:FALSE", "-T", "fields",
           "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=|"]
    for port in sorted(ports):
        cmd += ["-d", f"tcp.port=={port},tls"]
    if keylog is not None and keylog.exists():
        cmd += ["-o", f"tls.keylog_file:{keylog}"]
    for name in _FIELDS:
        cmd += ["-e", name]
    proc = subprocess.run(cmd, capture_output=True, timeout=300, text=True, check=False)
    if proc.returncode != 0:
        raise WireError(f"tshark failed on {pcap}: {proc.stderr.strip()}")
    rows = []
    for line in proc.stdout.splitlines():
        values = line.split("\t")
        rows.append({name: (values[i].split("|") if i < len(values) and values[i] else [])
                     for i, name in enumerate(_FIELDS)})
    return rows


def _server_ports(pcap: Path) -> set[int]:
    exe = shutil.which("tshark")
    if exe is None:
        raise WireError("tshark is not installed")
    proc = subprocess.run([exe, "-r", str(pcap), "-n", "-Y", "tcp.flags.syn==1 && tcp.flags.ack==0", "-T", "fields",
                           "-e", "tcp.dstport"], capture_output=True, timeout=300, text=True, check=False)
    if proc.returncode != 0:
        raise WireError(f"tshark failed on {pcap}: {proc.stderr.strip()}")
    return {int(p) for p in proc.stdout.split()}


def _endpoint(row: dict[str, list[str]], side: str) -> str:
    # The last address tshark gives is the innermost: in a tunnel (VXLAN, GRE) the outer headers come first, and
    # the connection is the inner one. (Tunnels of the corpus keep one IP version inside and out.)
    v4 = row[f"ip.{side}"]
    port = row["tcp.srcport" if side == "src" else "tcp.dstport"][0]
    if v4:
        return f"{v4[-1]}:{port}"
    return f"[{row[f'ipv6.{side}'][-1]}]:{port}"


def _int(value: str) -> int:
    return int(value, 16) if value.startswith("0x") else int(value)


def _alerts_in(row: dict[str, list[str]]) -> list[tuple[str | None, str | None]]:
    """(level, description) for each alert record in the packet; (None, None) when the record is unreadable."""
    types = [_int(t) for t in row["tls.record.content_type"]]
    levels = row["tls.alert_message.level"]
    descs = row["tls.alert_message.desc"]
    out: list[tuple[str | None, str | None]] = []
    readable = 0
    for content_type in types:
        if content_type != 21:
            continue
        if readable < len(descs):
            level = {1: "warning", 2: "fatal"}.get(_int(levels[readable]), None) if readable < len(levels) else None
            out.append((level, ALERT_NAMES.get(_int(descs[readable]), f"unknown({descs[readable]})")))
            readable += 1
        else:
            out.append((None, None))
    return out


def read_wire(pcap: Path, keylog: Path | None = None) -> list[WireFlow]:
    """Every TCP connection of `pcap`, in order of first packet, with what tshark sees of its TLS handshake."""
    ports = _server_ports(pcap)
    plain = _run_tshark(pcap, ports, None)
    decrypted = _run_tshark(pcap, ports, keylog) if keylog is not None and keylog.exists() else None
    flows = _flows_from_rows(plain, decrypted)
    return [flows[stream] for stream in sorted(flows)]


def read_wires(captures: list[tuple[Path, Path | None]]) -> dict[Path, list[WireFlow]]:
    """`read_wire` for many (pcap, keylog) pairs with three tshark runs in all instead of three per capture.

    tshark's start-up costs far more than reading a small capture, so the captures are appended into one file
    (mergecap -a) and their key logs into one key log; frames and connections are then mapped back to their file.
    """
    if not captures:
        return {}
    mergecap = shutil.which("mergecap")
    if mergecap is None or len(captures) == 1:
        return {pcap: read_wire(pcap, keylog) for pcap, keylog in captures}
    counts = [_count_pcap_frames(pcap) for pcap, _ in captures]
    if any(count is None for count in counts):  # not classic pcap: read them one by one
        return {pcap: read_wire(pcap, keylog) for pcap, keylog in captures}
    with tempfile.TemporaryDirectory(prefix="tlsflow-wire-") as tmp:
        merged = Path(tmp) / "merged.pcap"
        proc = subprocess.run([mergecap, "-a", "-F", "pcap", "-w", str(merged), *[str(p) for p, _ in captures]],
                              capture_output=True, timeout=120, text=True, check=False)
        if proc.returncode != 0:
            raise WireError(f"mergecap failed: {proc.stderr.strip()}")
        keylog = Path(tmp) / "merged.keylog"
        keylog.write_text("".join(k.read_text() + "\n" for _, k in captures if k is not None and k.exists()))
        ports = _server_ports(merged)
        plain = _run_tshark(merged, ports, None)
        decrypted = _run_tshark(merged, ports, keylog) if keylog.stat().st_size > len(captures) else None
    flows = _flows_from_rows(plain, decrypted)
    starts = []  # first global frame number of each capture
    first = 1
    for count in counts:
        starts.append(first)
        first += count or 0
    result: dict[Path, list[WireFlow]] = {pcap: [] for pcap, _ in captures}
    for stream in sorted(flows):
        flow = flows[stream]
        index = bisect.bisect_right(starts, flow.first_frame) - 1
        offset = starts[index] - 1
        pcap = captures[index][0]
        result[pcap].append(replace(flow, flow=len(result[pcap]) + 1, first_frame=flow.first_frame - offset,
                                    alerts=tuple(replace(a, frame=a.frame - offset) for a in flow.alerts)))
    return result


def _count_pcap_frames(pcap: Path) -> int | None:
    """Records in a classic pcap file (None for pcapng or anything else)."""
    data = pcap.read_bytes()
    if len(data) < 24:
        return None
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        return None
    count, offset = 0, 24
    while offset + 16 <= len(data):
        (incl_len,) = struct.unpack_from(endian + "I", data, offset + 8)
        offset += 16 + incl_len
        count += 1
    return count


def _flows_from_rows(plain: list[dict[str, list[str]]],
                     decrypted: list[dict[str, list[str]]] | None) -> dict[int, WireFlow]:
    """Fold tshark's rows (without keys, and with them if a key log was given) into one WireFlow per tcp.stream."""
    decrypted_alerts: dict[int, list[tuple[str | None, str | None]]] = {}
    decrypted_alpn: dict[int, str] = {}
    decrypted_streams: set[int] = set()  # TLS 1.3 streams whose encrypted handshake the key log opened
    if decrypted is not None:
        for row in decrypted:
            decrypted_alerts[int(row["frame.number"][0])] = _alerts_in(row)
            if not row["tcp.stream"]:
                continue
            hs_types = {int(t) for t in row["tls.handshake.type"]}
            if hs_types & {8, 11, 15, 20}:
                decrypted_streams.add(int(row["tcp.stream"][0]))
            if row["tls.handshake.extensions_alpn_str"] and 8 in hs_types:
                decrypted_alpn[int(row["tcp.stream"][0])] = row["tls.handshake.extensions_alpn_str"][0]

    flows: dict[int, dict] = {}
    for row in plain:
        if not row["tcp.stream"]:
            continue
        stream = int(row["tcp.stream"][0])
        frame = int(row["frame.number"][0])
        src = _endpoint(row, "src")
        flow = flows.setdefault(stream, {"client": None, "server": None, "sni": None, "version": None,
                                         "alpn": None, "ch": 0, "sh": 0, "alerts": [], "ccs": set(),
                                         "tail": {}, "last13": {}, "first": frame, "server_cert": False,
                                         "psk": False})
        if row["tcp.flags.syn"] == ["1"] and row["tcp.flags.ack"] == ["0"] and flow["client"] is None:
            flow["client"], flow["server"] = src, _endpoint(row, "dst")
        hs_types = [int(t) for t in row["tls.handshake.type"]]
        if 1 in hs_types and flow["client"] is None:
            flow["client"], flow["server"] = src, _endpoint(row, "dst")
        if flow["client"] is None:
            continue
        sender = "client" if src == flow["client"] else "server"
        flow["ch"] += hs_types.count(1) if sender == "client" else 0
        if sender == "client" and row["tls.handshake.extensions_server_name"] and flow["sni"] is None:
            flow["sni"] = row["tls.handshake.extensions_server_name"][0]
        if sender == "server" and 11 in hs_types:
            flow["server_cert"] = True
        if sender == "server" and 2 in hs_types:
            flow["sh"] += hs_types.count(2)
            # pre_shared_key (41) in the ServerHello: the server accepted a PSK (TLS 1.3 resumption).
            flow["psk"] = flow["psk"] or "41" in row["tls.handshake.extension.type"]
            chosen = row["tls.handshake.extensions.supported_version"] or row["tls.handshake.version"][:1]
            if chosen:
                flow["version"] = VERSION_NAMES.get(_int(chosen[0]), chosen[0])
            if row["tls.handshake.extensions_alpn_str"]:
                flow["alpn"] = row["tls.handshake.extensions_alpn_str"][0]
        # Without keys a TLS 1.3 record shows only its opaque type (23); plaintext records come first in a frame.
        types = [_int(t) for t in row["tls.record.content_type"]] + [_int(t) for t in row["tls.record.opaque_type"]]
        lengths = [int(n) for n in row["tls.record.length"]]
        if 20 in types:
            flow["ccs"].add(sender)
        if types:
            flow["tail"][sender] = (frame, types[-1], lengths[-1] if lengths else 0)
            if types.count(23):
                flow["last13"].setdefault(sender, []).append(
                    (frame, [n for t, n in zip(types, lengths, strict=False) if t == 23]))
        readable = [(level, desc) for level, desc in _alerts_in(row) if desc is not None]
        for level, desc in readable:
            flow["alerts"].append(WireAlert(frame, sender, level, desc))
        revealed = [(level, desc) for level, desc in decrypted_alerts.get(frame, []) if desc is not None]
        hidden = len([1 for _, desc in _alerts_in(row) if desc is None])
        if decrypted is not None:
            # Alerts the key log revealed beyond those readable without it: TLS 1.2 alerts after CCS, TLS 1.3
            # alerts hidden in opaque application_data records.
            for level, desc in revealed[len(readable):]:
                flow["alerts"].append(WireAlert(frame, sender, level, ENCRYPTED, desc))
                hidden -= 1
        for _ in range(max(hidden, 0)):
            flow["alerts"].append(WireAlert(frame, sender, None, ENCRYPTED))
    result = {}
    for stream in sorted(flows):
        f = flows[stream]
        alerts = list(f["alerts"])
        done = {"client", "server"} <= f["ccs"] if f["version"] != "TLS 1.3" else _tls13_done(f)
        if f["version"] == "TLS 1.3" and stream not in decrypted_streams:
            alerts += _tls13_hidden_alerts(f, alerts, done)
        alerts.sort(key=lambda a: a.frame)
        if f["version"] == "TLS 1.3":
            resumed = f["psk"] if f["sh"] else None
        else:
            resumed = (not f["server_cert"] and "server" in f["ccs"]) if f["sh"] else None
        result[stream] = WireFlow(flow=stream + 1, resumed=resumed, client=f["client"], server=f["server"], sni=f["sni"],
                                  version=f["version"], alpn=f["alpn"] or decrypted_alpn.get(stream),
                                  client_hellos=f["ch"], server_hellos=f["sh"], alerts=tuple(alerts),
                                  handshake_done=done, first_frame=f["first"])
    return result


def _tls13_done(f: dict) -> bool:
    """TLS 1.3 without keys: the client sent at least two encrypted records (Finished, then data or close)."""
    records = [n for _, lengths in f["last13"].get("client", []) for n in lengths]
    return len(records) >= 2 and any(n != TLS13_ALERT_RECORD_LEN for n in records)


def _tls13_hidden_alerts(f: dict, seen: list[WireAlert], done: bool) -> list[WireAlert]:
    """Without keys, a TLS 1.3 side whose last record is a lone 19-byte application_data record sent an alert."""
    if done:
        return []
    found = []
    for sender, (frame, content_type, length) in f["tail"].items():
        if content_type == 23 and length == TLS13_ALERT_RECORD_LEN and not any(a.frame == frame for a in seen):
            found.append(WireAlert(frame, sender, None, ENCRYPTED))
    return found


def check_label(label: Label, wire: WireFlow) -> list[str]:
    """What in `label` contradicts the capture (empty when the label holds)."""
    problems = []

    def differs(name: str, have: object) -> None:
        want = getattr(label, name)
        if want is not None and want != have:
            problems.append(f"{label.scenario} flow {label.flow}: {name} is {want!r} in the label, {have!r} on the wire")

    differs("client", wire.client)
    differs("server", wire.server)
    differs("sni", wire.sni)
    differs("version", wire.version)
    if wire.alpn is not None:
        differs("alpn", wire.alpn)
    if label.outcome == "established":
        differs("resumed", wire.resumed)
        if not wire.handshake_done:
            problems.append(f"{label.scenario} flow {label.flow}: established, but the handshake did not finish")
    alert = wire.first_fatal_alert()
    if label.outcome == "established":
        if alert is not None:
            problems.append(f"{label.scenario} flow {label.flow}: established but frame {alert.frame} carries a "
                            f"fatal {alert.description} alert from the {alert.sender}")
    else:
        differs("alert", alert.description if alert else None)
        differs("alert_sender", alert.sender if alert else None)
        if label.alert is None and alert is not None:
            problems.append(f"{label.scenario} flow {label.flow}: label has no alert, the wire has {alert}")
    return problems


def fill_label(label: Label, wire: WireFlow) -> Label:
    """The label with the wire facts it left open (addresses, SNI, version, ALPN, alert and sender) filled in."""
    alert = wire.first_fatal_alert() if label.outcome != "established" else None
    note = label.note
    if alert is not None and alert.decrypted and label.alert in (None, ENCRYPTED):
        seen = f"encrypted alert decrypted with the key log: {alert.decrypted}"
        note = f"{note}; {seen}" if note and seen not in note else (note or seen)
    return replace(
        label,
        note=note,
        client=label.client or wire.client,
        server=label.server or wire.server,
        sni=label.sni or wire.sni,
        version=label.version or wire.version,
        alpn=label.alpn or wire.alpn,
        alert=label.alert or (alert.description if alert else None),
        alert_sender=label.alert_sender or (alert.sender if alert else None),
    )


def read_labels(path: Path) -> list[Label]:
    with path.open() as fh:
        return [Label.from_dict(json.loads(line)) for line in fh if line.strip()]


def write_labels(path: Path, labels: list[Label]) -> None:
    path.write_text("".join(label.to_json() + "\n" for label in labels))
