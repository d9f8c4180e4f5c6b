"""Cross-check against tshark: every TCP connection of the public captures (and of the repo's captures/) is read
with a small in-test pcap/pcapng reader and TCP reassembly, parsed with TlsConnection, and compared with the
`"source": "tshark"` records of expected.jsonl (tshark 4.0.17): version, cipher, SNI, ALPN, the plaintext
handshake message types in order, alert descriptions. The agreement figure is printed (run with -s) and must stay
above a floor; the known reasons for disagreement are listed in KNOWN_DIFFERENCES.

A live pyshark/tshark run is done for one capture to show the stored records are what tshark says today.
"""
from __future__ import annotations

import csv
import json
import shutil
import struct
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tlsparse import (
    AlertSeen,
    HandshakeSeen,
    ParseAnomaly,
    Sender,
    Sslv2RecordSeen,
    TlsConnection,
)

REPO = Path(__file__).resolve().parents[2]
SHARED_IANA = REPO.parent / "shared" / "iana"

# Why tlsparse and tshark 4.0.17 legitimately differ, per capture (checked by hand):
KNOWN_DIFFERENCES = {
    # (Agrees, noted for the reader: the Certificate message is 339,629 bytes over 21 records, above the default
    # max_handshake of 256 KiB, so tlsparse reports handshake_too_long and skips it; tshark does not show it
    # either, calling the pieces encrypted_handshake.)
    # (STARTTLS captures — SMTP, XMPP, MySQL — agree: the parser finds the hello after the plaintext prelude.)
    # TLS_RSA_WITH_NULL_SHA: after ChangeCipherSpec the Finished is "encrypted" with the NULL cipher, so tshark
    # reads it; tlsparse reports every record after CCS as encrypted without looking at the suite.
    "zeek/globus-url-copy.pcap": "NULL cipher: tshark reads the Finished",
    # Frame 9 (the ServerHello after the HelloRetryRequest, with CCS) shows no TLS fields in tshark 4.0.17; the
    # stored record even says server_hello_is_hrr_only. tlsparse decodes that ServerHello (TLS 1.3, 0x1302),
    # which is what both agree the version and cipher are.
    "zeek/tls/hrr.pcap": "tshark 4.0.17 does not dissect the ServerHello after the HRR",
}

TSHARK_HANDSHAKE_NAMES = {
    0: "hello_request", 1: "client_hello", 2: "server_hello", 3: "hello_verify_request", 4: "new_session_ticket",
    5: "end_of_early_data", 6: "hello_retry_request", 8: "encrypted_extensions", 11: "certificate",
    12: "server_key_exchange", 13: "certificate_request", 14: "server_hello_done", 15: "certificate_verify",
    16: "client_key_exchange", 20: "finished", 21: "certificate_url", 22: "certificate_status",
    23: "supplemental_data", 24: "key_update", 25: "compressed_certificate", 254: "message_hash",
}
VERSION_NAMES = {0x0002: "SSLv2", 0x0300: "SSLv3", 0x0301: "TLSv1.0", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2",
                 0x0304: "TLSv1.3"}


# --- a minimal capture reader ---------------------------------------------------------------------------------

@dataclass
class Segment:
    frame: int
    ts: float
    src: tuple[str, int]
    dst: tuple[str, int]
    seq: int
    flags: int
    payload: bytes


def _ip_text(raw: bytes) -> str:
    if len(raw) == 4:
        return ".".join(map(str, raw))
    import ipaddress
    return str(ipaddress.IPv6Address(raw))


def _decode(linktype: int, pkt: bytes) -> tuple[bytes, int] | None:
    """(ip packet, ip version) from a link-layer frame, for the link types in the corpus."""
    if linktype == 1:  # Ethernet, with VLAN tags
        off, etype = 14, struct.unpack_from("!H", pkt, 12)[0]
        while etype in (0x8100, 0x88A8) and len(pkt) >= off + 4:
            etype = struct.unpack_from("!H", pkt, off + 2)[0]
            off += 4
    elif linktype == 113:  # Linux cooked
        off, etype = 16, struct.unpack_from("!H", pkt, 14)[0]
    elif linktype == 276:  # Linux cooked v2
        off, etype = 20, struct.unpack_from("!H", pkt, 0)[0]
    elif linktype in (0, 108):  # BSD loopback / OpenBSD loop
        family = struct.unpack_from("<I" if linktype == 0 else "!I", pkt, 0)[0]
        off, etype = 4, (0x0800 if family == 2 else 0x86DD)
    elif linktype in (101, 12, 14, 228, 229):  # raw IP
        off = 0
        etype = 0x0800 if pkt and pkt[0] >> 4 == 4 else 0x86DD
    else:
        return None
    if etype == 0x0800:
        return pkt[off:], 4
    if etype == 0x86DD:
        return pkt[off:], 6
    return None


def _tcp(frame: int, ts: float, ip: bytes, version: int) -> Segment | None:
    if version == 4:
        if len(ip) < 20 or ip[9] != 6 or (struct.unpack_from("!H", ip, 6)[0] & 0x3FFF):
            return None  # not TCP, or a fragment
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack_from("!H", ip, 2)[0]
        src, dst, tcp = _ip_text(ip[12:16]), _ip_text(ip[16:20]), ip[ihl:total or len(ip)]
    else:
        if len(ip) < 40:
            return None
        nxt, off = ip[6], 40
        plen = struct.unpack_from("!H", ip, 4)[0]
        while nxt in (0, 43, 60) and len(ip) >= off + 8:
            nxt, off = ip[off], off + (ip[off + 1] + 1) * 8
        if nxt != 6:
            return None
        src, dst, tcp = _ip_text(ip[8:24]), _ip_text(ip[24:40]), ip[off:40 + plen]
    if len(tcp) < 20:
        return None
    sport, dport, seq = struct.unpack_from("!HHI", tcp, 0)
    data_off = (tcp[12] >> 4) * 4
    return Segment(frame, ts, (src, sport), (dst, dport), seq, tcp[13], bytes(tcp[data_off:]))


def read_segments(path: Path) -> list[Segment]:
    data = path.read_bytes()
    out: list[Segment] = []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = "<" if magic[0] in (0xD4, 0x4D) else ">"
        nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
        linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
        pos, frame = 24, 0
        while pos + 16 <= len(data):
            sec, frac, incl, _ = struct.unpack_from(endian + "IIII", data, pos)
            pkt = data[pos + 16:pos + 16 + incl]
            pos += 16 + incl
            frame += 1
            decoded = _decode(linktype, pkt)
            seg = decoded and _tcp(frame, sec + frac / (1e9 if nano else 1e6), *decoded)
            if seg:
                out.append(seg)
        return out
    if magic == b"\x0a\x0d\x0d\x0a":  # pcapng
        endian = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        pos, frame, links = 0, 0, []
        while pos + 12 <= len(data):
            btype, blen = struct.unpack_from(endian + "II", data, pos)
            if blen < 12:
                break
            body = data[pos + 8:pos + blen - 4]
            if btype == 0x0A0D0D0A:
                endian = "<" if body[:4] == b"\x4d\x3c\x2b\x1a" else ">"
                links = []
            elif btype == 1:
                links.append(struct.unpack_from(endian + "H", body, 0)[0])
            elif btype in (6, 3):
                frame += 1
                if btype == 6:
                    iface, hi, lo, incl = struct.unpack_from(endian + "IIII", body, 0)
                    pkt, ts = body[20:20 + incl], ((hi << 32) | lo) / 1e6
                else:
                    iface, pkt, ts = 0, body[4:], 0.0
                decoded = _decode(links[iface] if iface < len(links) else 1, pkt)
                seg = decoded and _tcp(frame, ts, *decoded)
                if seg:
                    out.append(seg)
            pos += blen
        return out
    return out


# --- a minimal TCP reassembly ---------------------------------------------------------------------------------

@dataclass
class HalfStream:
    next_seq: int | None = None
    pending: dict[int, Segment] = field(default_factory=dict)


@dataclass
class Flow:
    client: tuple[str, int]
    server: tuple[str, int]
    conn: TlsConnection = field(default_factory=TlsConnection)
    halves: dict[Sender, HalfStream] = field(default_factory=lambda: {Sender.CLIENT: HalfStream(),
                                                                        Sender.SERVER: HalfStream()})
    events: list = field(default_factory=list)


def _deliver(flow: Flow, sender: Sender, seg: Segment) -> None:
    """In-order delivery: data at the expected sequence number goes to the parser, earlier (retransmitted)
    bytes are trimmed, later segments wait (up to a cap) for the hole to fill or for the end of the capture."""
    half = flow.halves[sender]
    if half.next_seq is None:
        half.next_seq = seg.seq
    rel = (seg.seq - half.next_seq) % 2**32
    if 0 < rel < 2**31:
        if len(half.pending) < 4096:
            half.pending.setdefault(seg.seq, seg)
        return
    queue = [seg]
    while queue:
        s = queue.pop()
        rel = (s.seq - half.next_seq) % 2**32
        skip = 0 if rel == 0 else 2**32 - rel
        if skip < len(s.payload):
            chunk = s.payload[skip:]
            flow.events += flow.conn.receive(sender, chunk, seg.frame, seg.ts)
            half.next_seq = (half.next_seq + len(chunk)) % 2**32
        for k in list(half.pending):
            r = (k - half.next_seq) % 2**32
            if r == 0 or r >= 2**31:
                queue.append(half.pending.pop(k))


def _flush(flow: Flow) -> None:
    for sender, half in flow.halves.items():
        while half.pending:
            seq = min(half.pending, key=lambda k: (k - half.next_seq) % 2**32)
            gap = (seq - half.next_seq) % 2**32
            if gap and gap < 2**31:
                seg = half.pending[seq]
                flow.events += flow.conn.receive_gap(sender, gap, seg.frame, seg.ts)
                half.next_seq = seq
            seg = half.pending.pop(seq)
            _deliver(flow, sender, seg)


def tls_flows(path: Path) -> dict[tuple[str, str], Flow]:
    flows: dict[frozenset, Flow] = {}
    by_pair: dict[tuple[str, str], Flow] = {}
    for seg in read_segments(path):
        key = frozenset((seg.src, seg.dst))
        flow = flows.get(key)
        if flow is None or (seg.flags & 0x02 and not seg.flags & 0x10 and seg.src == flow.client
                            and flow.halves[Sender.CLIENT].next_seq not in (None, (seg.seq + 1) % 2**32)):
            if seg.flags & 0x12 == 0x12:
                client, server = seg.dst, seg.src
            elif seg.flags & 0x02:
                client, server = seg.src, seg.dst
            elif seg.payload[:1] == b"\x16" or (seg.payload[:1] and seg.payload[0] & 0x80):
                client, server = seg.src, seg.dst  # mid-stream capture: the sender of a hello-looking start
            else:
                client, server = (seg.src, seg.dst) if seg.dst[1] < seg.src[1] or seg.dst[1] in (443, 4433) \
                    else (seg.dst, seg.src)
            flow = Flow(client, server)
            flows[key] = flow
            by_pair[(f"{_ep(client)}", f"{_ep(server)}")] = flow
        sender = Sender.CLIENT if seg.src == flow.client else Sender.SERVER
        if seg.flags & 0x02:
            flow.halves[sender].next_seq = (seg.seq + 1) % 2**32
            continue
        if seg.payload:
            _deliver(flow, sender, seg)
    for flow in by_pair.values():
        _flush(flow)
    return by_pair


def _ep(addr: tuple[str, int]) -> str:
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"


# --- comparison -------------------------------------------------------------------------------------------------

def _alert_names() -> dict[int, str]:
    path = SHARED_IANA / "alerts.csv"
    if not path.exists():
        return {}
    with path.open() as f:
        return {int(row["value"]): row["name"] for row in csv.DictReader(f) if row["value"].isdigit()}


def _cipher_names() -> dict[int, str]:
    path = SHARED_IANA / "cipher_suites.csv"
    if not path.exists():
        return {}
    with path.open() as f:
        return {int(row["value"], 16): row["name"] for row in csv.DictReader(f)
                if row["value"].startswith("0x") and "-" not in row["value"]}


def summarize(flow: Flow, alerts: dict[int, str], ciphers: dict[int, str]) -> dict:
    conn = flow.conn
    handshake, alert_list = [], []
    for e in flow.events:
        side = "c" if e.sender is Sender.CLIENT else "s"
        if isinstance(e, HandshakeSeen):
            name = TSHARK_HANDSHAKE_NAMES.get(e.msg_type, str(e.msg_type))
            if getattr(e.message, "sslv2", False):
                name = "sslv2_client_hello"
            handshake.append(f"{side}:{name}")
        elif isinstance(e, Sslv2RecordSeen) and e.msg_type in (2, 4):
            handshake.append(f"{side}:{'sslv2_server_hello' if e.msg_type == 4 else 'sslv2_client_master_key'}")
        elif isinstance(e, AlertSeen) and not e.encrypted:
            level = {1: "warning", 2: "fatal"}.get(e.level, str(e.level))
            alert_list.append(f"{side}:{level}:{alerts.get(e.description, str(e.description))}")
    out: dict = {"handshake": handshake, "alerts": alert_list}
    if conn.version is not None:
        v = conn.version
        out["version"] = VERSION_NAMES.get(v, f"TLSv1.3-draft{v & 0xFF}" if v >> 8 == 0x7F else hex(v))
    sh = conn.server_hello
    if sh is not None and not sh.is_hello_retry_request:
        out["cipher"] = ciphers.get(sh.cipher_suite, hex(sh.cipher_suite))
        if sh.alpn:
            out["server_alpn"] = sh.alpn[0]  # tshark stores the selected protocol as a string
    ch = conn.client_hello
    if ch is not None:
        if ch.sni:
            out["server_name"] = ch.sni
        if ch.alpn:
            # tshark shows bytes that are not UTF-8 as U+FFFD; tlsparse keeps them (latin-1). Compare alike.
            out["client_alpn"] = [a.encode("latin-1").decode("utf-8", "replace") for a in ch.alpn]
    return out


def compare(expected: dict, got: dict) -> list[str]:
    """Fields where tlsparse and tshark disagree. Handshake types: tshark's `handshake` list minus its
    record-level entries (application_data, encrypted_handshake, change_cipher_spec, alerts, heartbeat)."""
    problems = []
    for key in ("version", "cipher", "server_name", "client_alpn", "server_alpn"):
        if key in expected and expected[key] != got.get(key):
            problems.append(f"{key}: tshark {expected[key]!r} tlsparse {got.get(key)!r}")
    record_level = ("application_data", "encrypted_handshake", "change_cipher_spec", "alert", "heartbeat")
    want = [h for h in expected["handshake"] if h.split(":")[1] not in record_level]
    if want != got["handshake"]:
        problems.append(f"handshake: tshark {want} tlsparse {got['handshake']}")
    want_alerts = [a for a in expected.get("alerts", []) if not a.endswith(":encrypted")]
    if want_alerts != got["alerts"] and expected.get("alerts") is not None:
        problems.append(f"alerts: tshark {want_alerts} tlsparse {got['alerts']}")
    return problems


def _capture_dirs() -> list[Path]:
    dirs = []
    public = REPO.parent / "shared" / "captures" / "public"
    if (public / "expected.jsonl").exists():
        dirs.append(public)
    for ours in (REPO / "captures", REPO / "captures" / "corpus"):
        if (ours / "expected.jsonl").exists():
            dirs.append(ours)
    return dirs


def crosscheck(directory: Path) -> tuple[int, int, list[str]]:
    expected = [json.loads(line) for line in (directory / "expected.jsonl").read_text().splitlines() if line]
    expected = [r for r in expected if r.get("source") == "tshark" and r.get("transport", "tcp") == "tcp"]
    alerts, ciphers = _alert_names(), _cipher_names()
    by_file = defaultdict(list)
    for record in expected:
        by_file[record["file"]].append(record)
    agree, total, report = 0, 0, []
    for name, records in sorted(by_file.items()):
        path = directory / name
        if not path.exists():
            continue
        flows = tls_flows(path)
        for record in records:
            total += 1
            flow = flows.get((record["client"], record["server"]))
            if flow is None:
                report.append(f"{name} {record['client']}: connection not found")
                continue
            assert not any(isinstance(e, ParseAnomaly) and e.name == "internal_error" for e in flow.events)
            problems = compare(record, summarize(flow, alerts, ciphers))
            if problems:
                why = KNOWN_DIFFERENCES.get(name, "UNEXPLAINED")
                report.append(f"{name} {record['client']} [{why}]: " + "; ".join(problems))
            else:
                agree += 1
    return agree, total, report


@pytest.mark.slow
def test_agreement_with_tshark_records() -> None:
    dirs = _capture_dirs()
    if not dirs:
        pytest.skip("no capture with tshark expectations (../shared/captures/public absent, captures/ empty)")
    agree = total = 0
    for directory in dirs:
        a, t, report = crosscheck(directory)
        agree, total = agree + a, total + t
        print(f"\n{directory}: {a}/{t} connections agree with tshark")
        for line in report:
            print("  " + line)
    assert total > 0
    assert not [line for d in dirs for line in crosscheck(d)[2] if "UNEXPLAINED" in line]
    # The issue asks for 99% on the public captures; measured 202/204 (the two above are explained).
    assert agree / total >= 0.99, f"{agree}/{total}"


@pytest.mark.tools
def test_live_tshark_agrees_on_one_capture() -> None:
    """pyshark (tshark underneath) read now, not from stored records, for one small capture."""
    public = REPO.parent / "shared" / "captures" / "public"
    path = public / "zeek" / "tls" / "tls1.2.pcap"
    if not path.exists() or shutil.which("tshark") is None:
        pytest.skip("capture or tshark not available")
    pyshark = pytest.importorskip("pyshark")
    cap = pyshark.FileCapture(str(path), display_filter="tls.handshake.type", keep_packets=False)
    try:
        tshark_types = []
        for packet in cap:
            for layer in packet.layers:
                if layer.layer_name != "tls":
                    continue
                for field_ in layer._get_all_fields_with_alternates():
                    if field_.name == "tls.handshake.type":
                        tshark_types.append(int(field_.show))
    finally:
        cap.close()
    flow = next(iter(tls_flows(path).values()))
    ours = [e.msg_type for e in flow.events if isinstance(e, HandshakeSeen)]
    assert ours and ours == tshark_types
