"""Live cross-check against tshark's dissector (through pyshark) on every capture the project ships:
captures/corpus/*.pcap and the pcap/pcapng files under tests/data/.

Both readers look at the plaintext only (no key logs; a pcapng's Decryption Secrets Blocks are left out of the copy
tshark reads). Per TCP connection and per direction they must agree on:
- the records, in order: (frame, content type — TLS 1.3's outer opaque type —, record version, length);
- the plaintext handshake messages, in order: (frame, wire type); a HelloRetryRequest is type 2 on the wire,
  which is what tshark shows (tlsparse reports it as 6 by convention, and keeps the wire bytes in `raw`);
- the plaintext alerts: (frame, level, description);
- per ClientHello: legacy version, SNI, ALPN offered, supported_versions offered, JA3 (md5 and string);
- per ServerHello: legacy version, selected version (supported_versions), cipher suite (numeric), ALPN selected,
  JA3S (md5 and string);
- per Certificate message: the SHA-256 of each certificate's DER and its subject (RFC 4514, tshark's RDNs
  rendered by `cryptography` the way tlsparse renders the certificate's own).

tshark is told the server port of each capture (`-d tcp.port==N,tls`: the corpus uses ports 24000-28999, which
tshark does not dissect as TLS on its own), the ports coming from tlsflow's own TCP reassembly. The agreement
figure is printed (run with -s); every disagreement must be listed in KNOWN_DIFFERENCES with its reason, and
every entry there must still be needed.
"""
from __future__ import annotations

import hashlib
import shutil
import struct
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tlsflow.capture import open_capture
from tlsflow.packet import endpoint_text
from tlsflow.tcp import Connection, ConnectionOpened, StreamChunk, TcpReassembler
from tlsparse import (
    AlertSeen,
    Certificate,
    ClientHello,
    HandshakeSeen,
    ParseAnomaly,
    RecordSeen,
    Sender,
    ServerHello,
    TlsConnection,
)
from tlsparse.certificates import describe_certificate
from tlsparse.fingerprints import ja3, ja3s

REPO = Path(__file__).resolve().parents[2]
CAPTURES = sorted((REPO / "captures" / "corpus").glob("*.pcap")) + sorted(
    p for p in (REPO / "tests" / "data").rglob("*") if p.suffix in (".pcap", ".pcapng"))

# (capture file name, field) -> why tlsparse and tshark 4.0.17 legitimately differ there (checked by hand).
# Empty: on 2026-11-27 every field of every connection agreed (92 connections, 84 captures). A new entry needs a
# comment saying what each reader shows and why tshark's reading is not the one to follow.
KNOWN_DIFFERENCES: dict[tuple[str, str], str] = {}

# tshark preferences that decide what it shows; set explicitly so a user profile cannot change the outcome.
TSHARK_PREFS = {
    "tls.keylog_file": "",  # plaintext only
    "tls.desegment_ssl_records": "TRUE",
    "tls.desegment_ssl_application_data": "TRUE",
    "tcp.desegment_tcp_streams": "TRUE",
    "tcp.reassemble_out_of_order": "TRUE",  # tlsflow's reassembler waits for holes to fill, so does tshark then
}

Side = dict[str, list]  # field name -> list of values, in wire order
ConnKey = tuple[str, str, int]  # (client endpoint, server endpoint, n-th connection with these endpoints)


def _new_side() -> Side:
    return defaultdict(list)


# --- tlsparse's view ------------------------------------------------------------------------------------------

def _subject_of(der: bytes) -> str | None:
    info = describe_certificate(der)
    return getattr(info, "subject", None)


def tlsparse_view(path: Path) -> tuple[dict[ConnKey, dict[Sender, Side]], set[int], list[str]]:
    """Per connection and direction, the fields compared; also the server ports and any internal errors."""
    reassembler = TcpReassembler()
    parsers: dict[Connection, TlsConnection] = {}  # Connection hashes by identity
    keys: dict[Connection, ConnKey] = {}
    seen: defaultdict[tuple[str, str], int] = defaultdict(int)
    views: dict[ConnKey, dict[Sender, Side]] = {}
    ports: set[int] = set()
    errors: list[str] = []

    def handle(events: list) -> None:
        for ev in events:
            if isinstance(ev, ConnectionOpened):
                c = ev.conn
                pair = (endpoint_text(c.client_ip, c.client_port), endpoint_text(c.server_ip, c.server_port))
                keys[c] = (*pair, seen[pair])
                seen[pair] += 1
                parsers[c] = TlsConnection()
                views[keys[c]] = {Sender.CLIENT: _new_side(), Sender.SERVER: _new_side()}
                ports.add(c.server_port)
            elif isinstance(ev, StreamChunk):
                parser = parsers[ev.conn]
                if ev.gap:
                    out = parser.receive_gap(ev.sender, ev.gap, ev.frame, ev.ts)
                else:
                    out = parser.receive(ev.sender, ev.data, ev.frame, ev.ts)
                sides = views[keys[ev.conn]]
                for tls_event in out:
                    _add_tlsparse_event(sides[tls_event.sender], tls_event)
                    if isinstance(tls_event, ParseAnomaly) and tls_event.name == "internal_error":
                        errors.append(f"{path.name} frame {tls_event.frame}: {tls_event.detail}")

    with open_capture(str(path)) as cap:
        for packet in cap.packets():
            handle(reassembler.add(packet))
    handle(reassembler.finish())
    return views, ports, errors


def _add_tlsparse_event(side: Side, e: Any) -> None:
    if isinstance(e, RecordSeen):
        side["records"].append((e.frame, e.content_type, e.version, e.length))
    elif isinstance(e, AlertSeen) and not e.encrypted:
        side["alerts"].append((e.frame, e.level, e.description))
    elif isinstance(e, HandshakeSeen) and not e.decrypted:
        wire_type = e.raw[0] if e.raw else (2 if e.msg_type == 6 else e.msg_type)
        side["handshake"].append((e.frame, wire_type))
        msg = e.message
        if isinstance(msg, ClientHello) and not msg.sslv2:
            fp = ja3(msg)
            side["client_hello"].append({
                "legacy_version": msg.legacy_version,
                "sni": msg.sni,
                "alpn": list(msg.alpn),
                "supported_versions": list(msg.supported_versions),
                "ja3": fp,
            })
        elif isinstance(msg, ServerHello):
            side["server_hello"].append({
                "legacy_version": msg.legacy_version,
                "selected_version": msg.selected_version,
                "cipher": msg.cipher_suite,
                "alpn": list(msg.alpn),
                "ja3s": ja3s(msg),
            })
        elif isinstance(msg, Certificate):
            side["certificates"].append([(hashlib.sha256(der).hexdigest(), _subject_of(der))
                                         for der in msg.certificates])


# --- tshark's view (pyshark, JSON output) ---------------------------------------------------------------------

def _as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _find_all(tree: Any, key: str) -> list:
    """Every value stored under `key` anywhere in a tshark JSON tree, in document order."""
    found: list = []
    if isinstance(tree, list):
        for item in tree:
            found += _find_all(item, key)
    elif isinstance(tree, dict):
        for k, v in tree.items():
            if k == key:
                found += _as_list(v)
            elif isinstance(v, (dict, list)):
                found += _find_all(v, key)
    return found


def _rdn_subject(subject_tree: dict) -> str:
    """tshark's subject RDNs (x509if.oid + the string under x509sat.*) rendered as RFC 4514 by cryptography."""
    from cryptography import x509
    from cryptography.x509.oid import ObjectIdentifier

    rdns = []
    for item in _find_all(subject_tree, "x509if.RDNSequence_item_tree"):
        attrs = []
        for element in _find_all(item, "x509if.RelativeDistinguishedName_item_element"):
            oid = element["x509if.oid"]
            values = [v for k, v in _walk_leaves(element) if k.startswith("x509sat.") and isinstance(v, str)
                      and k != "x509sat.DirectoryString"]
            attrs.append(x509.NameAttribute(ObjectIdentifier(oid), values[0] if values else ""))
        rdns.append(x509.RelativeDistinguishedName(attrs))
    return x509.Name(rdns).rfc4514_string()


def _walk_leaves(tree: Any):
    if isinstance(tree, dict):
        for k, v in tree.items():
            if isinstance(v, (dict, list)):
                yield from _walk_leaves(v)
            else:
                yield k, v
    elif isinstance(tree, list):
        for item in tree:
            yield from _walk_leaves(item)


def _tshark_handshake(side: Side, frame: int, hs: dict) -> None:
    hs_type = int(hs["tls.handshake.type"])
    side["handshake"].append((frame, hs_type))
    if hs_type == 1:
        md5 = hs.get("tls.handshake.ja3")
        side["client_hello"].append({
            "legacy_version": int(hs["tls.handshake.version"], 16),
            "sni": next(iter(_find_all(hs, "tls.handshake.extensions_server_name")), None),
            "alpn": _find_all(hs, "tls.handshake.extensions_alpn_str"),
            "supported_versions": [int(v, 16) for v in _find_all(hs, "tls.handshake.extensions.supported_version")],
            "ja3": (md5, hs.get("tls.handshake.ja3_full")) if md5 else None,
        })
    elif hs_type == 2:
        versions = _find_all(hs, "tls.handshake.extensions.supported_version")
        legacy = int(hs["tls.handshake.version"], 16)
        side["server_hello"].append({
            "legacy_version": legacy,
            "selected_version": int(versions[0], 16) if versions else legacy,
            "cipher": int(hs["tls.handshake.ciphersuite"], 16),
            "alpn": _find_all(hs, "tls.handshake.extensions_alpn_str"),
            "ja3s": (hs.get("tls.handshake.ja3s"), hs.get("tls.handshake.ja3s_full")),
        })
    elif hs_type == 11:
        ders = [bytes.fromhex(d.replace(":", "")) for d in _find_all(hs, "tls.handshake.certificate")]
        subjects = [_rdn_subject(t) for t in _find_all(hs, "x509af.subject_tree")]
        side["certificates"].append([(hashlib.sha256(der).hexdigest(), subject)
                                     for der, subject in zip(ders, subjects, strict=True)])


def _tshark_view_retrying(path: Path, ports: set[int]) -> dict[tuple[str, str, int], Side]:
    """pyshark's asyncio child watcher sometimes loses tshark's exit status when another part of the test process
    reaps children (seen in full-suite runs: "Unknown child process pid …, will report returncode 255", and
    pyshark raises TSharkCrashException although tshark ran fine; once twice in a row). Read the capture again,
    up to three times in all."""
    import pyshark

    for _ in range(2):
        try:
            return tshark_view(path, ports)
        except pyshark.capture.capture.TSharkCrashException:
            time.sleep(0.2)
    return tshark_view(path, ports)


TUNNEL_LAYERS = frozenset(("vxlan", "gre", "erspan", "geneve"))


def _innermost_addresses(path: Path) -> dict[int, tuple[str, str]]:
    """Frame number -> the innermost IP source and destination of each TCP packet, as tshark reads them."""
    import subprocess

    out = subprocess.run([shutil.which("tshark") or "tshark", "-r", str(path), "-n", "-Y", "tcp", "-T", "fields",
                          "-E", "occurrence=l", "-e", "frame.number", "-e", "ip.src", "-e", "ip.dst", "-e",
                          "ipv6.src", "-e", "ipv6.dst"], capture_output=True, text=True, timeout=120, check=True)
    addresses = {}
    for line in out.stdout.splitlines():
        frame, v4_src, v4_dst, v6_src, v6_dst = line.split("\t")
        addresses[int(frame)] = (v4_src or v6_src, v4_dst or v6_dst)
    return addresses


def tshark_view(path: Path, ports: set[int]) -> dict[tuple[str, str, int], Side]:
    """Per (sender endpoint, receiver endpoint, tcp.stream): the fields compared, as tshark dissects them."""
    import pyshark

    cap = pyshark.FileCapture(str(path), display_filter="tls", keep_packets=False, use_json=True,
                              decode_as={f"tcp.port=={port}": "tls" for port in sorted(ports)},
                              override_prefs=TSHARK_PREFS)
    views: dict[tuple[str, str, int], Side] = defaultdict(_new_side)
    inner: dict[int, tuple[str, str]] | None = None
    try:
        for packet in cap:
            if any(layer.layer_name in TUNNEL_LAYERS for layer in packet.layers):
                # pyshark's JSON mode keeps one layer per name: the outer IP header, which only carries the
                # connection (tunnel_vxlan). tshark's own fields give the innermost addresses.
                if inner is None:
                    inner = _innermost_addresses(path)
                ip_src, ip_dst = inner[int(packet.number)]
            else:
                ip = packet.ip if hasattr(packet, "ip") else packet.ipv6
                ip_src, ip_dst = ip.src, ip.dst
            src = endpoint_text(ip_src, int(packet.tcp.srcport))
            dst = endpoint_text(ip_dst, int(packet.tcp.dstport))
            side = views[(src, dst, int(packet.tcp.stream))]
            frame = int(packet.number)
            for layer in packet.layers:
                if layer.layer_name != "tls":
                    continue
                # pyshark's JsonLayer keeps tshark's JSON tree (duplicate keys made lists) in _all_fields; its
                # field accessors flatten the per-record structure this comparison needs, so walk the tree.
                # (pyshark's duplicate-key hook drops a first value that is falsy, "" or {}; none of the keys
                # read here repeats within one object after such a value: one header and one body per record.)
                for tree in [layer._all_fields] + [d._all_fields for d in layer.duplicate_layers]:
                    for record in _as_list(tree.get("tls.record")):
                        _tshark_record(side, frame, record)
    finally:
        try:
            cap.close()
        finally:
            # When closing raises (the lost exit status above), pyshark keeps the process in its list and its
            # __del__ closes it again later, raising where nothing can catch it (an "unraisable exception" warning
            # in the test run). The caller reads the capture again anyway.
            cap._running_processes.clear()
    return views


def _tshark_record(side: Side, frame: int, record: Any) -> None:
    if not isinstance(record, dict):
        side["records"].append((frame, "undissected", record))
        return
    content_type = record.get("tls.record.opaque_type", record.get("tls.record.content_type"))
    version = record.get("tls.record.version")
    length = record.get("tls.record.length")
    # A field tshark leaves out (SSLv2 framing, a malformed header) stays None: it then shows as a difference.
    side["records"].append((frame, content_type and int(content_type), version and int(version, 16),
                            length and int(length)))
    for hs in _as_list(record.get("tls.handshake")):
        if isinstance(hs, dict) and "tls.handshake.type" in hs:
            _tshark_handshake(side, frame, hs)  # a string here is tshark's "Encrypted Handshake Message"
    for alert in _as_list(record.get("tls.alert_message")):
        if isinstance(alert, dict):  # a string: "Encrypted Alert"
            side["alerts"].append((frame, int(alert["tls.alert_message.level"]),
                                   int(alert["tls.alert_message.desc"])))


def _without_secrets(path: Path, tmp: Path) -> Path:
    """A pcapng may embed its key log (Decryption Secrets Block, type 0x0A), which tshark would use to decrypt:
    copy the file without those blocks. (editcap --discard-all-secrets refuses this file in 4.0.17: "can't be
    written as a pcapng file".) Every other block is copied byte for byte, so the packets are the same."""
    if path.suffix != ".pcapng":
        return path
    data = path.read_bytes()
    out, pos = bytearray(), 0
    endian = "<"
    while pos + 12 <= len(data):
        if data[pos:pos + 4] == b"\x0a\x0d\x0d\x0a":  # section header: its byte-order magic sets the endianness
            endian = "<" if data[pos + 8:pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        block_type, length = struct.unpack_from(endian + "II", data, pos)
        assert length >= 12, f"{path.name}: corrupt pcapng block at {pos}"
        if block_type != 0x0000000A:
            out += data[pos:pos + length]
        pos += length
    stripped = tmp / path.name
    stripped.write_bytes(bytes(out))
    return stripped


# --- comparison -----------------------------------------------------------------------------------------------

FIELDS = ("records", "handshake", "alerts", "client_hello", "server_hello", "certificates")


def compare_capture(path: Path, tmp: Path) -> tuple[int, int, int, list[tuple[str, str, str]]]:
    """(fields that agree, of which not empty on both sides, fields compared, [(capture, field, detail)] for each
    disagreement). A field is one of FIELDS for one direction of one connection."""
    ours, ports, errors = tlsparse_view(path)
    assert not errors, errors
    theirs = _tshark_view_retrying(_without_secrets(path, tmp), ports)
    agree = agree_non_empty = total = 0
    diffs: list[tuple[str, str, str]] = []
    # tshark numbers TCP streams in order of their first packet, as the reassembler numbers connections: the
    # n-th stream between a client and a server is the n-th connection with those endpoints.
    client_pairs = {key[:2] for key in ours}
    streams: defaultdict[tuple[str, str], list[int]] = defaultdict(list)
    for src, dst, stream in sorted(theirs, key=lambda k: k[2]):
        pair = (src, dst) if (src, dst) in client_pairs else (dst, src)
        if stream not in streams[pair]:
            streams[pair].append(stream)
    matched: set[tuple[str, str, int | None]] = set()
    for (client, server, nth), sides in ours.items():
        stream_ids = streams.get((client, server), [])
        stream = stream_ids[nth] if nth < len(stream_ids) else None
        for sender, (src, dst) in ((Sender.CLIENT, (client, server)), (Sender.SERVER, (server, client))):
            mine = sides[sender]
            key = (src, dst, stream)
            matched.add(key)
            other = theirs.get(key, _new_side())
            for name in FIELDS:
                total += 1
                if mine.get(name, []) == other.get(name, []):
                    agree += 1
                    agree_non_empty += bool(mine.get(name))
                else:
                    diffs.append((path.name, name,
                                  f"{sender.value} {src}: tlsparse {mine.get(name, [])} tshark {other.get(name, [])}"))
    for key in theirs:
        if key not in matched:
            total += 1
            detail = f"tshark shows TLS from {key[0]} to {key[1]}, tlsflow has no such connection"
            diffs.append((path.name, "connection", detail))
    return agree, agree_non_empty, total, diffs


@pytest.mark.slow
@pytest.mark.tools
def test_pyshark_agrees_on_every_shipped_capture(tmp_path: Path) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    pytest.importorskip("pyshark")
    assert CAPTURES, "no capture found under captures/corpus or tests/data"
    agree = agree_non_empty = total = 0
    unexplained: list[str] = []
    explained: list[str] = []
    used: set[tuple[str, str]] = set()
    for path in CAPTURES:
        a, a_non_empty, t, diffs = compare_capture(path, tmp_path)
        agree, agree_non_empty, total = agree + a, agree_non_empty + a_non_empty, total + t
        for name, field_, detail in diffs:
            why = KNOWN_DIFFERENCES.get((name, field_))
            if why is None:
                unexplained.append(f"{name} {field_}: {detail}")
            else:
                used.add((name, field_))
                explained.append(f"{name} {field_} [{why}]: {detail}")
    print(f"\npyshark/tshark vs tlsparse over {len(CAPTURES)} captures: {agree}/{total} fields agree "
          f"({100 * agree / total:.2f}%; {agree_non_empty} of them not empty)")
    for line in explained + unexplained:
        print("  " + line)
    assert agree_non_empty > 0, "nothing was compared: neither reader saw any TLS"
    assert not unexplained, "\n".join(unexplained)
    assert set(KNOWN_DIFFERENCES) <= used, f"stale KNOWN_DIFFERENCES: {set(KNOWN_DIFFERENCES) - used}"
