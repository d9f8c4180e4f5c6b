"""Network-failure scenarios of the labelled capture corpus: refused, unanswered, reset, silent, lossy, black-holed.

Each scenario runs a real server and a real client on 127.0.0.1, records the loopback traffic of its port with
tcpdump, and returns one Label per TCP connection. Before a label is returned, the pcap is read back with tshark
and the facts the label rests on are asserted (the RST is there, the SYN got no answer, the large segments were
retransmitted and never acknowledged, ...): a label states what happened on the wire, not what the script meant.

Packet loss is made with iptables rules in the INPUT chain, specific to the scenario's port and always removed in a
`finally`. On loopback, tcpdump sees a packet on its way out, before INPUT: the captures therefore show the lost
segments and their retransmissions, like a capture taken on the sending host.

`python -m captures.scenarios_network [NAME ...]` records (some of) them through `captures.record`.
"""
from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from captures.relay import Direction, Relay, RelayMode, set_linger_reset
from captures.scenario import Label, Pki, Scenario
from captures.tcpdump import Tcpdump

HOST = "127.0.0.1"
CLIENT_TIMEOUT = 3.0  # how long a client waits for the server before giving up
HANDSHAKE_RECORD = 0x16
CLIENT_HELLO = 0x01
LINUX_TTL = 64
INJECTED_TTL = 50  # the spoofed RST's TTL: a middlebox a few hops closer than the server
INJECTED_IP_ID = 0x3039  # and a fixed IP ID without DF, unlike the Linux server's own packets
SMALLEST_LOST = 1400  # the MTU black hole swallows IP packets of this size and larger
ETHERNET_MSS = 1460
ETHERNET_SEGMENT = ETHERNET_MSS - 12  # payload per segment with the TCP timestamp option Linux sends


# libpcap hands packets to tcpdump in blocks that are retired after up to a second; captures.tcpdump stops tcpdump
# 0.3 s after the scenario, so the last packets of a short scenario would be lost without this extra wait.
CAPTURE_DRAIN = 1.2


@contextlib.contextmanager
def capture(pcap: Path, port: int) -> Iterator[None]:
    """Record `tcp port PORT` on lo into `pcap` for the block's duration, losing none of the last packets."""
    with Tcpdump(pcap, f"tcp port {port}"):
        yield
        time.sleep(CAPTURE_DRAIN)


class ScenarioError(RuntimeError):
    """The scenario did not produce on the wire what its label would claim."""


def _expect(condition: object, scenario: str, fact: str) -> None:
    if not condition:
        raise ScenarioError(f"{scenario}: expected on the wire: {fact}")


# --------------------------------------------------------------------------------------------------------------------
# Reading the capture back with tshark
# --------------------------------------------------------------------------------------------------------------------
_TSHARK_FIELDS = (
    "frame.number", "frame.time_epoch", "tcp.stream", "ip.src", "tcp.srcport", "ip.dst", "tcp.dstport",
    "tcp.flags", "ip.ttl", "ip.id", "ip.flags.df", "ip.len", "tcp.len", "tcp.seq", "tcp.ack",
    "tcp.analysis.retransmission", "tcp.payload",
)


@dataclass(frozen=True, slots=True)
class WirePacket:
    """One TCP packet as tshark reads it (sequence numbers relative to each side's ISN)."""

    frame: int
    time: float
    stream: int
    src: str
    dst: str
    flags: int
    ttl: int
    ip_id: int
    df: bool
    ip_len: int
    tcp_len: int
    seq: int
    ack: int
    retransmission: bool
    payload: bytes

    @property
    def syn(self) -> bool:
        return bool(self.flags & 0x02)

    @property
    def rst(self) -> bool:
        return bool(self.flags & 0x04)

    @property
    def fin(self) -> bool:
        return bool(self.flags & 0x01)

    @property
    def has_ack(self) -> bool:
        return bool(self.flags & 0x10)


def read_wire(pcap: Path) -> list[WirePacket]:
    """Every TCP packet of `pcap`, via tshark (the reference reader the labels are checked against)."""
    tshark = shutil.which("tshark")
    if tshark is None:
        raise ScenarioError("tshark is not installed (apt-get install tshark)")
    cmd = [tshark, "-r", str(pcap), "-n", "-Y", "tcp", "-T", "fields", "-E", "separator=|", "-E", "occurrence=f"]
    for name in _TSHARK_FIELDS:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    packets = []
    for line in out.splitlines():
        (frame, when, stream, src, sport, dst, dport, flags, ttl, ip_id, df, ip_len, tcp_len, seq, ack,
         retrans, payload) = line.split("|")
        packets.append(WirePacket(
            frame=int(frame), time=float(when), stream=int(stream), src=f"{src}:{sport}", dst=f"{dst}:{dport}",
            flags=int(flags, 16), ttl=int(ttl), ip_id=int(ip_id, 16), df=df in ("1", "True"), ip_len=int(ip_len),
            tcp_len=int(tcp_len or 0), seq=int(seq or 0), ack=int(ack or 0), retransmission=bool(retrans),
            payload=bytes.fromhex(payload.replace(":", "")) if payload else b"",
        ))
    return packets


@dataclass(frozen=True, slots=True)
class WireFlow:
    """One TCP connection of a capture: its packets, and which side is which (the client sent the SYN)."""

    flow: int  # 1-based, in order of first packet (tshark numbers streams that way)
    client: str
    server: str
    packets: tuple[WirePacket, ...]

    def sent_by_client(self) -> list[WirePacket]:
        return [p for p in self.packets if p.src == self.client]

    def sent_by_server(self) -> list[WirePacket]:
        return [p for p in self.packets if p.src == self.server]

    def client_data(self) -> bytes:
        return _stream_bytes(self.sent_by_client())

    def server_data(self) -> bytes:
        return _stream_bytes(self.sent_by_server())


def _stream_bytes(packets: list[WirePacket]) -> bytes:
    """The bytes one side sent, each sequence range once (retransmissions are not counted twice)."""
    chunks: dict[int, bytes] = {}
    for packet in packets:
        if packet.payload:
            chunks.setdefault(packet.seq, packet.payload)
    return b"".join(chunks[seq] for seq in sorted(chunks))


def wire_flows(pcap: Path) -> list[WireFlow]:
    packets = read_wire(pcap)
    by_stream: dict[int, list[WirePacket]] = {}
    for packet in packets:
        by_stream.setdefault(packet.stream, []).append(packet)
    flows = []
    for index, stream in enumerate(sorted(by_stream, key=lambda s: by_stream[s][0].frame), start=1):
        first = by_stream[stream][0]
        syn = next((p for p in by_stream[stream] if p.syn and not p.has_ack), None)
        client = (syn or first).src
        server = (syn or first).dst
        flows.append(WireFlow(flow=index, client=client, server=server, packets=tuple(by_stream[stream])))
    return flows


# IANA TLS Alert registry (codes in use), so that labels carry the names CONTRACT.md asks for.
ALERT_NAMES = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 21: "decryption_failed_RESERVED",
    22: "record_overflow", 30: "decompression_failure_RESERVED", 40: "handshake_failure",
    41: "no_certificate_RESERVED", 42: "bad_certificate", 43: "unsupported_certificate", 44: "certificate_revoked",
    45: "certificate_expired", 46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca",
    49: "access_denied", 50: "decode_error", 51: "decrypt_error", 60: "export_restriction_RESERVED",
    70: "protocol_version", 71: "insufficient_security", 80: "internal_error", 86: "inappropriate_fallback",
    90: "user_canceled", 100: "no_renegotiation_RESERVED", 109: "missing_extension", 110: "unsupported_extension",
    112: "unrecognized_name", 113: "bad_certificate_status_response", 115: "unknown_psk_identity",
    116: "certificate_required", 120: "no_application_protocol", 121: "ech_required",
}


@dataclass(frozen=True, slots=True)
class WireAlert:
    frame: int
    sender: str  # "ip:port"
    name: str  # IANA name, or "encrypted"


def read_alerts(pcap: Path, server_port: int) -> list[WireAlert]:
    """Fatal (or unreadable) TLS alerts in `pcap`, in frame order, as tshark decodes the port as TLS."""
    cmd = ["tshark", "-r", str(pcap), "-n", "-d", f"tcp.port=={server_port},tls", "-Y", "tls.record.content_type == 21",
           "-T", "fields", "-E", "separator=|", "-e", "frame.number", "-e", "ip.src", "-e", "tcp.srcport",
           "-e", "tls.alert_message.level", "-e", "tls.alert_message.desc"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    alerts = []
    for line in out.splitlines():
        frame, src, sport, levels, descs = line.split("|")
        if not descs:
            alerts.append(WireAlert(int(frame), f"{src}:{sport}", "encrypted"))
            continue
        for level, desc in zip(levels.split(","), descs.split(","), strict=False):
            if level == "2":
                code = int(desc)
                alerts.append(WireAlert(int(frame), f"{src}:{sport}", ALERT_NAMES.get(code, f"unknown({code})")))
    return alerts


_WIRE_VERSIONS = {"0x0300": "SSL 3.0", "0x0301": "TLS 1.0", "0x0302": "TLS 1.1", "0x0303": "TLS 1.2",
                  "0x0304": "TLS 1.3"}


@dataclass(frozen=True, slots=True)
class WireHellos:
    """What the hellos of one connection say, as tshark decodes them."""

    sni: str | None = None  # server_name of the first ClientHello
    version: str | None = None  # version the first ServerHello selected (supported_versions wins)


def read_hellos(pcap: Path, server_port: int) -> dict[int, WireHellos]:
    """SNI and selected version per tcp.stream, from the ClientHello and ServerHello tshark finds."""
    cmd = ["tshark", "-r", str(pcap), "-n", "-d", f"tcp.port=={server_port},tls",
           "-Y", "tls.handshake.type == 1 || tls.handshake.type == 2", "-T", "fields", "-E", "separator=|",
           "-e", "tcp.stream", "-e", "tls.handshake.type", "-e", "tls.handshake.extensions_server_name",
           "-e", "tls.handshake.version", "-e", "tls.handshake.extensions.supported_version"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    hellos: dict[int, WireHellos] = {}
    for line in out.splitlines():
        stream_text, types, snis, versions, supported = line.split("|")
        stream = int(stream_text)
        seen = hellos.get(stream, WireHellos())
        kinds = types.split(",")
        if "1" in kinds and seen.sni is None and snis:
            seen = WireHellos(sni=snis.split(",")[0], version=seen.version)
        if "2" in kinds and seen.version is None:
            # In a ServerHello, supported_versions carries exactly one value: the selected version.
            chosen = supported.split(",")[-1] if supported else versions.split(",")[kinds.index("2")]
            seen = WireHellos(sni=seen.sni, version=_WIRE_VERSIONS.get(chosen, chosen))
        hellos[stream] = seen
    return hellos


def is_client_hello(data: bytes) -> bool:
    return len(data) > 5 and data[0] == HANDSHAKE_RECORD and data[5] == CLIENT_HELLO


# --------------------------------------------------------------------------------------------------------------------
# Servers, clients and firewall rules, all bounded in time and stopped by their own handle
# --------------------------------------------------------------------------------------------------------------------
def _openssl_version() -> str:
    out = subprocess.run(["openssl", "version"], check=False, capture_output=True, text=True, timeout=10).stdout.split()
    return out[1] if len(out) > 1 else "?"


def _python_client_impl() -> str:
    return f"python {sys.version_info.major}.{sys.version_info.minor} ssl ({ssl.OPENSSL_VERSION})"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port, read from /proc (probing it would add packets to the pcap)."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as table:
        return any(cols[1] == want and cols[3] == "0A" for cols in (line.split() for line in table.readlines()[1:]))


def _wait_listening(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _listening(port):
            return
        if proc is not None and proc.poll() is not None:
            raise ScenarioError(f"server on port {port} exited with {proc.returncode}")
        time.sleep(0.05)
    raise ScenarioError(f"nothing listens on port {port} after {timeout} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextlib.contextmanager
def openssl_server(port: int, pki: Pki, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`openssl s_server` with the valid chain, until the block ends (then stopped by its pid)."""
    cmd = ["openssl", "s_server", "-accept", f"{HOST}:{port}", "-cert", str(pki.server_cert),
           "-key", str(pki.server_key), "-cert_chain", str(pki.server_chain), "-quiet", *args]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, proc)
        yield proc
    finally:
        _stop(proc)


@dataclass(frozen=True, slots=True)
class ClientResult:
    version: str | None = None
    alpn: str | None = None
    error: str | None = None


def python_tls_client(port: int, pki: Pki, *, timeout: float = CLIENT_TIMEOUT, alpn: list[str] | None = None,
                      max_version: ssl.TLSVersion | None = None) -> ClientResult:
    """One TLS handshake with Python's ssl module; gives up (closes with FIN) after `timeout` seconds of silence."""
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if max_version is not None:
        ctx.maximum_version = max_version
    try:
        sock = socket.create_connection((HOST, port), timeout=timeout)
    except OSError as exc:
        return ClientResult(error=f"connect: {exc!r}")
    try:
        with ctx.wrap_socket(sock, server_hostname=pki.hostname) as tls:
            result = ClientResult(version=tls.version(), alpn=tls.selected_alpn_protocol())
            with contextlib.suppress(OSError):
                tls.unwrap()
            return result
    except (OSError, ssl.SSLError) as exc:
        return ClientResult(error=repr(exc))
    finally:
        sock.close()


def openssl_client(port: int, pki: Pki, *args: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    """`openssl s_client` with stdin closed: it handshakes (or fails), then exits by itself."""
    cmd = ["openssl", "s_client", "-connect", f"{HOST}:{port}", "-servername", pki.hostname,
           "-CAfile", str(pki.ca_cert), *args]
    return subprocess.run(cmd, check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def iptables_available() -> bool:
    exe = shutil.which("iptables")
    if exe is None:
        return False
    return subprocess.run([exe, "-S", "INPUT"], check=False, capture_output=True, timeout=10).returncode == 0


@contextlib.contextmanager
def iptables_rules(*rules: list[str]) -> Iterator[None]:
    """Insert INPUT rules (each a list of match arguments) for the block's duration; delete them in `finally`."""
    exe = shutil.which("iptables")
    if exe is None:
        raise ScenarioError("iptables is not installed (apt-get install iptables)")
    added: list[list[str]] = []
    try:
        for rule in rules:
            spec = ["INPUT", "-i", "lo", *rule, "-m", "comment", "--comment", "tlsflow-capture", "-j", "DROP"]
            # A run killed before its `finally` may have left this very rule behind: remove it first.
            for _ in range(10):
                if subprocess.run([exe, "-w", "5", "-D", *spec], check=False, capture_output=True,
                                  timeout=15).returncode != 0:
                    break
            subprocess.run([exe, "-w", "5", "-I", *spec], check=True, capture_output=True, timeout=15)
            added.append(spec)
        yield
    finally:
        for spec in reversed(added):
            subprocess.run([exe, "-w", "5", "-D", *spec], check=False, capture_output=True, timeout=15)


class ScriptedServer:
    """A plain-socket server on 127.0.0.1 that plays one misbehaving peer per accepted connection.

    `behave(conn)` runs in a thread for each connection; the server stops accepting after `lifetime` seconds.
    """

    def __init__(self, port: int, behave: Callable[[socket.socket], None], *, lifetime: float = 20) -> None:
        self.port = port
        self.behave = behave
        self.lifetime = lifetime
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def __enter__(self) -> Self:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, self.port))
        listener.listen(8)
        listener.settimeout(0.2)
        self._listener = listener
        thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._threads.append(thread)
        thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=CLIENT_TIMEOUT + 5)
        if self._listener is not None:
            self._listener.close()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        deadline = time.monotonic() + self.lifetime
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(CLIENT_TIMEOUT + 3)
            thread = threading.Thread(target=self._run, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _run(self, conn: socket.socket) -> None:
        try:
            self.behave(conn)
        except OSError:
            pass
        finally:
            conn.close()


def read_tls_record(conn: socket.socket) -> bytes:
    """Read exactly one TLS record (the ClientHello), so that nothing unread makes close() send a RST by itself."""
    data = b""
    while len(data) < 5 or len(data) < 5 + int.from_bytes(data[3:5], "big"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def wait_for_eof(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while conn.recv(65536):
            pass


# --------------------------------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------------------------------
def _label(name: str, flow: WireFlow, pcap: Path, **fields: object) -> Label:
    """The label of `flow`, with its first fatal alert (if any) read from the capture, not assumed."""
    port = int(flow.server.rsplit(":", 1)[1])
    alerts = [a for a in read_alerts(pcap, port) if a.sender in (flow.client, flow.server)]
    hellos = read_hellos(pcap, port).get(flow.packets[0].stream, WireHellos())
    for key, seen in (("sni", hellos.sni), ("version", hellos.version)):
        if key in fields and fields[key] != seen:
            raise ScenarioError(f"{name}: {key} {fields[key]!r} but the capture says {seen!r}")
        fields[key] = seen
    if alerts:
        fields.setdefault("alert", alerts[0].name)
        fields.setdefault("alert_sender", "client" if alerts[0].sender == flow.client else "server")
    return Label(scenario=name, file=f"{name}.pcap", flow=flow.flow, client=flow.client, server=flow.server,
                 **fields)  # type: ignore[arg-type]


def _single_flow(name: str, pcap: Path) -> WireFlow:
    flows = wire_flows(pcap)
    _expect(len(flows) == 1, name, f"exactly one TCP connection (got {len(flows)})")
    return flows[0]


def _expect_client_hello(name: str, flow: WireFlow) -> None:
    _expect(is_client_hello(flow.client_data()), name, "the client's first bytes are a TLS ClientHello")


def _expect_client_hello_acked(name: str, flow: WireFlow) -> None:
    """The server's TCP acknowledged the whole ClientHello: it reached the server."""
    sent = len(flow.client_data())
    _expect(any(p.ack >= sent + 1 for p in flow.sent_by_server()), name, "the server ACKed the whole ClientHello")


# --------------------------------------------------------------------------------------------------------------------
# The scenarios
# --------------------------------------------------------------------------------------------------------------------
def port_closed(workdir: Path, port: int, pki: Pki) -> list[Label]:
    name = "net_port_closed"
    pcap = workdir / f"{name}.pcap"
    _expect(not _listening(port), name, f"nothing listens on port {port} before the client connects")
    with capture(pcap, port):
        result = openssl_client(port, pki)
    flow = _single_flow(name, pcap)
    client, server = flow.sent_by_client(), flow.sent_by_server()
    _expect(client and client[0].syn, name, "the client's SYN")
    _expect(len(server) == 1 and server[0].rst, name, "the only answer is a RST")
    _expect(not flow.client_data(), name, "no data from the client")
    return [_label(name, flow, pcap, outcome="failed", failed_step="tcp_connect", cause="tcp_refused",
                   client_impl=f"openssl s_client {_openssl_version()}", server_impl="none (no listener)",
                   note=f"s_client exit {result.returncode}: connection refused")]


def syn_unanswered(workdir: Path, port: int, pki: Pki) -> list[Label]:
    name = "net_syn_unanswered"
    pcap = workdir / f"{name}.pcap"
    timeout = CLIENT_TIMEOUT + 0.5
    rule = ["-p", "tcp", "--dport", str(port), "--syn"]
    with ScriptedServer(port, wait_for_eof), iptables_rules(rule), capture(pcap, port):
        result = python_tls_client(port, pki, timeout=timeout)
    flow = _single_flow(name, pcap)
    _expect(not flow.sent_by_server(), name, "no packet at all from the server")
    syns = flow.sent_by_client()
    _expect(len(syns) >= 2 and all(p.syn and not p.has_ack for p in syns), name,
            "only SYNs from the client, retransmitted at least once")
    return [_label(name, flow, pcap, outcome="failed", failed_step="tcp_connect", cause="tcp_no_answer",
                   client_impl=_python_client_impl(), server_impl="python socket listener behind an iptables DROP",
                   note=f"SYNs dropped by iptables on lo after the capture point; client gave up after {timeout} s "
                        f"({len(syns)} SYNs); {result.error}")]


def reset_after_client_hello(workdir: Path, port: int, pki: Pki) -> list[Label]:
    name = "net_reset_after_client_hello"
    pcap = workdir / f"{name}.pcap"

    def reset(conn: socket.socket) -> None:
        read_tls_record(conn)
        set_linger_reset(conn)  # the close() in ScriptedServer._run now aborts with RST

    with ScriptedServer(port, reset), capture(pcap, port):
        result = openssl_client(port, pki)
    flow = _single_flow(name, pcap)
    _expect_client_hello(name, flow)
    _expect_client_hello_acked(name, flow)
    _expect(not flow.server_data(), name, "no data from the server")
    server_rsts = [p for p in flow.sent_by_server() if p.rst]
    _expect(server_rsts, name, "a RST from the server")
    _expect(not any(p.fin for p in flow.sent_by_server()), name, "no FIN from the server")
    _expect(all(p.ttl == LINUX_TTL for p in flow.sent_by_server()), name, "the RST has the server's own TTL")
    return [_label(name, flow, pcap, outcome="failed", failed_step="server_hello", cause="reset_after_client_hello",
                   client_impl=f"openssl s_client {_openssl_version()}",
                   server_impl="python socket: reads the ClientHello, closes with SO_LINGER 0",
                   note=f"RST in frame {server_rsts[0].frame}; s_client exit {result.returncode}")]


# A ClientHello too long for one Ethernet packet, as post-quantum key shares make them (X25519MLKEM768: ~1.8 kB
# in all): here made as long by ALPN names, with the same effect on the wire. The client sends the first
# ETHERNET_SEGMENT bytes, then the rest SPLIT_PAUSE later (as a second packet of a real path would come).
SPLIT_HELLO_ALPN = ["h2", "http/1.1", *(f"x-tlsflow-padding-{i:03d}" for i in range(70))]
SPLIT_PAUSE = 0.05


def split_hello_client(port: int, pki: Pki, *, timeout: float = CLIENT_TIMEOUT) -> tuple[ClientResult, int]:
    """Python ssl (through memory BIOs) whose ClientHello goes out as two TCP segments: (result, hello length)."""

    def two_segments(sock: socket.socket, hello: bytes) -> None:
        sock.sendall(hello[:ETHERNET_SEGMENT])
        time.sleep(SPLIT_PAUSE)
        sock.sendall(hello[ETHERNET_SEGMENT:])

    return hello_client(port, pki, two_segments, alpn=SPLIT_HELLO_ALPN, timeout=timeout)


def hello_client(port: int, pki: Pki, send_hello: Callable[[socket.socket, bytes], None], *,
                 alpn: list[str] | None = None, timeout: float = CLIENT_TIMEOUT) -> tuple[ClientResult, int]:
    """Python ssl through memory BIOs, its ClientHello record written by `send_hello(sock, record)`, the rest of the
    handshake as usual, then close_notify: (result, hello length)."""
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=pki.hostname)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            send_hello(sock, hello)
            while True:
                data = sock.recv(65536)
                if not data:
                    return ClientResult(error="closed by the server"), len(hello)
                incoming.write(data)
                try:
                    tls.do_handshake()
                except ssl.SSLWantReadError:
                    continue
                sock.sendall(outgoing.read())
                result = ClientResult(version=tls.version(), alpn=tls.selected_alpn_protocol())
                with contextlib.suppress(ssl.SSLError):
                    tls.unwrap()  # close_notify (it then waits for the server's, which is not read)
                sock.sendall(outgoing.read())
                return result, len(hello)
    except (OSError, ssl.SSLError) as exc:
        return ClientResult(error=repr(exc)), len(hello)


# Where a record-split ClientHello is cut: inside the fixed fields, before the extensions (server_name among them),
# as tools that split the ClientHello to get past SNI filters cut it.
RECORD_SPLIT_AT = 50


def in_two_records(hello: bytes, at: int = RECORD_SPLIT_AT) -> bytes:
    """The one-record ClientHello `hello` as two TLS records, its handshake message cut `at` bytes in (RFC 8446
    section 5.1 allows a handshake message to span records; every record keeps the first one's header fields)."""
    if len(hello) != 5 + int.from_bytes(hello[3:5], "big"):
        raise ScenarioError(f"the client's first write is not one TLS record ({len(hello)} bytes)")
    message = hello[5:]
    return b"".join(hello[:3] + len(part).to_bytes(2, "big") + part for part in (message[:at], message[at:]))


def first_record_cuts_message(data: bytes) -> bool:
    """The first TLS record of `data` holds only part of the handshake message it begins (a device that takes the
    ClientHello from its first record finds it incomplete)."""
    if len(data) < 9:
        return True
    body = int.from_bytes(data[3:5], "big")
    return body < 4 + int.from_bytes(data[6:9], "big")


def _split_hello_flow(name: str, pcap: Path, hello_length: int) -> tuple[WireFlow, list[WirePacket]]:
    """The one connection of a split-ClientHello scenario, checked as far as both have it in common, and its
    client segments that carry bytes."""
    flow = _single_flow(name, pcap)
    _expect_client_hello(name, flow)
    _expect(hello_length > ETHERNET_SEGMENT, name, f"a ClientHello longer than one segment ({hello_length} bytes)")
    hello_segments = [p for p in flow.sent_by_client() if p.tcp_len]
    _expect(hello_segments and hello_segments[0].tcp_len == ETHERNET_SEGMENT, name, "the ClientHello's first segment")
    _expect(not flow.server_data(), name, "no data from the server")
    return flow, hello_segments


def _split_client_impl(hello_length: int) -> str:
    return _python_client_impl() + f", a ClientHello of {hello_length} bytes written in two parts"


def split_client_hello_reset(workdir: Path, port: int, pki: Pki) -> list[Label]:
    """A ClientHello that does not fit in one packet, to a server that reads it from the first packet only
    (the failure https://tldr.fail describes): it gives up at once, with a RST."""
    name = "net_split_client_hello_reset"
    pcap = workdir / f"{name}.pcap"

    def one_read(conn: socket.socket) -> None:
        first = conn.recv(65536)
        if len(first) < 5 or len(first) < 5 + int.from_bytes(first[3:5], "big"):
            set_linger_reset(conn)  # "bad ClientHello": the close() in ScriptedServer._run aborts with RST

    with ScriptedServer(port, one_read), capture(pcap, port):
        result, hello_length = split_hello_client(port, pki)
    flow, hello_segments = _split_hello_flow(name, pcap, hello_length)
    server_rsts = [p for p in flow.sent_by_server() if p.rst]
    _expect(server_rsts and all(p.frame < server_rsts[0].frame for p in hello_segments), name,
            "the server's RST after the ClientHello's first segment")
    _expect(len(flow.client_data()) < hello_length, name, "the rest of the ClientHello never sent (the RST came first)")
    return [_label(name, flow, pcap, outcome="failed", failed_step="client_hello", cause="reset_after_client_hello",
                   client_impl=_split_client_impl(hello_length),
                   server_impl="python socket: reads once, resets when the ClientHello is not all there",
                   note=f"the first {len(flow.client_data())} bytes of the ClientHello in frame "
                        f"{hello_segments[0].frame}, server RST in frame {server_rsts[0].frame}; client: {result.error}")]


def split_client_hello_silent(workdir: Path, port: int, pki: Pki) -> list[Label]:
    """A ClientHello in two segments, to a server that reads only the first and then waits for more of what it
    took for the whole message (the other failure https://tldr.fail describes): the client times out."""
    name = "net_split_client_hello_silent"
    pcap = workdir / f"{name}.pcap"

    def one_read_then_wait(conn: socket.socket) -> None:
        conn.recv(65536)
        wait_for_eof(conn)  # nothing more is read as a ClientHello: no answer ever comes

    with ScriptedServer(port, one_read_then_wait), capture(pcap, port):
        result, hello_length = split_hello_client(port, pki)
    flow, hello_segments = _split_hello_flow(name, pcap, hello_length)
    _expect_client_hello_acked(name, flow)
    _expect(len(hello_segments) == 2 and sum(p.tcp_len for p in hello_segments) == hello_length, name,
            f"the whole ClientHello ({hello_length} bytes) in two segments")
    _expect(result.error is not None and any(p.fin for p in flow.sent_by_client()), name,
            "the client gave up and closed")
    return [_label(name, flow, pcap, outcome="failed", failed_step="server_hello", cause="server_silent",
                   client_impl=_split_client_impl(hello_length),
                   server_impl="python socket: reads once, then waits without answering",
                   note=f"ClientHello in frames {[p.frame for p in hello_segments]}, no answer in {CLIENT_TIMEOUT} s; "
                        f"client: {result.error}")]


def _record_split_client_impl() -> str:
    return _python_client_impl() + f", its ClientHello in two TLS records (cut {RECORD_SPLIT_AT} bytes in)"


def _record_split_flow(name: str, pcap: Path) -> tuple[WireFlow, int]:
    """The one connection of a record-split scenario (its ClientHello, in two records, in one segment) and the
    frame of that segment."""
    flow = _single_flow(name, pcap)
    _expect_client_hello(name, flow)
    hello_segments = [p for p in flow.sent_by_client() if p.tcp_len]
    _expect(first_record_cuts_message(hello_segments[0].payload), name,
            "the client's first record holds only part of the ClientHello")
    first = hello_segments[0].payload
    second_at = 5 + int.from_bytes(first[3:5], "big")
    _expect(len(first) > second_at + 5 and first[second_at] == 22, name,
            "the ClientHello's second record in the same segment")
    return flow, hello_segments[0].frame


def record_split_client_hello_reset(workdir: Path, port: int, pki: Pki) -> list[Label]:
    """A ClientHello in two TLS records (one TCP segment), to a server (or a middlebox before it) that takes the
    ClientHello from the first record only: finding it incomplete, it resets."""
    name = "net_record_split_client_hello_reset"
    pcap = workdir / f"{name}.pcap"

    def first_record_only(conn: socket.socket) -> None:
        if first_record_cuts_message(read_tls_record(conn)):
            set_linger_reset(conn)  # "bad ClientHello": the close() in ScriptedServer._run aborts with RST

    with ScriptedServer(port, first_record_only), capture(pcap, port):
        result, _ = hello_client(port, pki, lambda sock, hello: sock.sendall(in_two_records(hello)))
    flow, hello_frame = _record_split_flow(name, pcap)
    _expect_client_hello_acked(name, flow)
    _expect(not flow.server_data(), name, "no data from the server")
    server_rsts = [p for p in flow.sent_by_server() if p.rst]
    _expect(server_rsts, name, "a RST from the server")
    return [_label(name, flow, pcap, outcome="failed", failed_step="server_hello", cause="reset_after_client_hello",
                   client_impl=_record_split_client_impl(),
                   server_impl="python socket: reads one TLS record, resets when it holds only part of the "
                               "ClientHello",
                   note=f"the whole ClientHello in frame {hello_frame}, server RST in frame {server_rsts[0].frame}; "
                        f"client: {result.error}")]


def record_split_client_hello_accepted(workdir: Path, port: int, pki: Pki) -> list[Label]:
    """The same two-record ClientHello to `openssl s_server`, which reassembles it: a normal TLS 1.3 handshake
    (the control: a split ClientHello is not a failure in itself)."""
    name = "net_record_split_client_hello_accepted"
    pcap = workdir / f"{name}.pcap"
    with openssl_server(port, pki), capture(pcap, port):
        result, _ = hello_client(port, pki, lambda sock, hello: sock.sendall(in_two_records(hello)))
    flow, _ = _record_split_flow(name, pcap)
    _expect(result.error is None and result.version is not None, name, f"the client's handshake completed ({result})")
    return [_label(name, flow, pcap, outcome="established", version=_version_name(result.version), sni=pki.hostname,
                   alpn=None, resumed=False, client_impl=_record_split_client_impl(),
                   server_impl=f"openssl s_server {_openssl_version()}",
                   note="the client closes with close_notify right after its Finished")]


def client_half_close_after_hello(workdir: Path, port: int, pki: Pki) -> list[Label]:
    """A client that shuts down its sending side (FIN) right after its ClientHello, as a script piping a canned
    hello into `nc` does, to `openssl s_server`: the server sends its whole flight, then finds the connection
    closed where the client's Finished should be. OpenSSL answers the end of the stream with an alert, encrypted
    under TLS 1.3 (its record shape says so; tshark cannot name it)."""
    return _client_half_close("net_client_half_close_after_hello", workdir, port, pki, (), "finished",
                              alert="encrypted", alert_sender="server")


def client_half_close_after_hello_tls12(workdir: Path, port: int, pki: Pki) -> list[Label]:
    """The same client to a TLS 1.2 `openssl s_server`: what the client could not send is its key exchange."""
    return _client_half_close("net_client_half_close_after_hello_tls12", workdir, port, pki, ("-tls1_2",),
                              "client_key_exchange")


def _client_half_close(name: str, workdir: Path, port: int, pki: Pki, server_args: tuple[str, ...], step: str,
                       **alert: str) -> list[Label]:
    pcap = workdir / f"{name}.pcap"
    received = bytearray()

    def hello_then_fin(sock: socket.socket, hello: bytes) -> None:
        sock.sendall(hello)
        sock.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            while data := sock.recv(65536):
                received.extend(data)
        raise ConnectionAbortedError("the client read the server's answer to the end, and sent nothing more")

    with openssl_server(port, pki, *server_args), capture(pcap, port):
        result, _ = hello_client(port, pki, hello_then_fin)
    flow = _single_flow(name, pcap)
    _expect_client_hello(name, flow)
    client_fin = next((p for p in flow.sent_by_client() if p.fin), None)
    _expect(client_fin is not None and not any(p.tcp_len for p in flow.sent_by_client() if p.frame > client_fin.frame),
            name, "the client's FIN, and no byte from it after")
    server_data = [p for p in flow.sent_by_server() if p.tcp_len]
    _expect(server_data and server_data[0].frame > client_fin.frame, name, "the server's flight after the client's FIN")
    _expect(received[:1] == b"\x16" and any(p.fin for p in flow.sent_by_server()), name,
            "a ServerHello, then the server's FIN")
    return [_label(name, flow, pcap, outcome="failed", failed_step=step, cause="closed_without_alert", **alert,
                   client_impl=_python_client_impl() + ", its ClientHello written then shutdown(SHUT_WR)",
                   server_impl=f"openssl s_server {_openssl_version()}" + (f" {' '.join(server_args)}" if server_args else ""),
                   note=f"client FIN in frame {client_fin.frame}, before any answer; the server's flight from frame "
                        f"{server_data[0].frame} ({len(received)} bytes); client: {result.error}")]


def connect_proxy(upstream: int, refuse: bytes | None = None) -> Callable[[socket.socket], None]:
    """An HTTP proxy's CONNECT, for ScriptedServer: read the request, then either answer `refuse` (a whole HTTP
    response) and close, or open a connection to 127.0.0.1:`upstream` (whatever host was asked: the test names
    resolve nowhere), answer "200 Connection established" and pass the bytes both ways until both sides close."""
    def behave(conn: socket.socket) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            data = conn.recv(4096)
            if not data:
                return
            request += data
        if not request.startswith(b"CONNECT ") or refuse is not None:
            conn.sendall(refuse or b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        with socket.create_connection((HOST, upstream), timeout=CLIENT_TIMEOUT) as up:
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

            def copy(src: socket.socket, dst: socket.socket) -> None:
                with contextlib.suppress(OSError):
                    while data := src.recv(65536):
                        dst.sendall(data)
                    dst.shutdown(socket.SHUT_WR)

            back = threading.Thread(target=copy, args=(up, conn), daemon=True)
            back.start()
            copy(conn, up)
            back.join(timeout=CLIENT_TIMEOUT)
    return behave


PROXY_AUTH_REQUIRED = (b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\n"
                       b"Content-Length: 0\r\nConnection: close\r\n\r\n")


def _curl_through_proxy(port: int, upstream: int, pki: Pki) -> subprocess.CompletedProcess[str]:
    url = f"https://{pki.hostname}:{upstream}/"
    return subprocess.run(["curl", "-sS", "-o", "/dev/null", "--max-time", "10", "--cacert", str(pki.ca_cert),
                           "--proxy", f"http://{HOST}:{port}", url], capture_output=True, text=True, timeout=30,
                          check=False)


def proxy_connect(workdir: Path, port: int, pki: Pki) -> list[Label]:
    """curl through an HTTP proxy (CONNECT) to openssl s_server: the client's leg carries the CONNECT exchange in
    plain text, then the TLS handshake, which goes through."""
    name = "net_proxy_connect"
    pcap = workdir / f"{name}.pcap"
    upstream = port + 1  # captures.record gives each scenario port .. port+9
    with openssl_server(upstream, pki, "-www"), ScriptedServer(port, connect_proxy(upstream)), capture(pcap, port):
        result = _curl_through_proxy(port, upstream, pki)
    flow = _single_flow(name, pcap)
    _expect(result.returncode == 0, name, f"curl succeeded through the proxy ({result.stderr.strip()})")
    _expect(flow.client_data().startswith(b"CONNECT ") and flow.server_data().startswith(b"HTTP/1.1 200"), name,
            "the CONNECT exchange first")
    return [_label(name, flow, pcap, outcome="established", version="TLS 1.3", sni=pki.hostname, alpn=None,
                   resumed=False, client_impl="curl --proxy (OpenSSL 3.0)",
                   server_impl=f"a Python HTTP CONNECT proxy before openssl s_server {_openssl_version()}",
                   note="only the client's leg (client to proxy) is captured")]


def proxy_connect_refused(workdir: Path, port: int, pki: Pki) -> list[Label]:
    """curl through an HTTP proxy that wants credentials: it answers the CONNECT with 407 and closes; no TLS."""
    name = "net_proxy_connect_refused"
    pcap = workdir / f"{name}.pcap"
    upstream = port + 1
    with ScriptedServer(port, connect_proxy(upstream, refuse=PROXY_AUTH_REQUIRED)), capture(pcap, port):
        result = _curl_through_proxy(port, upstream, pki)
    flow = _single_flow(name, pcap)
    _expect(result.returncode != 0 and "407" in result.stderr, name, f"curl refused by the proxy ({result.stderr})")
    _expect(flow.server_data().startswith(b"HTTP/1.1 407"), name, "the proxy's 407")
    return [_label(name, flow, pcap, outcome="not_tls", client_impl="curl --proxy (OpenSSL 3.0)",
                   server_impl="a Python HTTP CONNECT proxy that asks for credentials (407)",
                   note=f"curl: {result.stderr.strip()}")]


@contextlib.contextmanager
def smtp_server(port: int, pki: Pki | None) -> Iterator[None]:
    """aiosmtpd (a real SMTP server, in this process): with the valid chain when `pki` is given (it then offers
    STARTTLS), without TLS otherwise (it answers STARTTLS with "454 TLS not available")."""
    from aiosmtpd.controller import Controller

    class Sink:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            return "250 OK"

    tls = None
    if pki is not None:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(str(pki.server_chain), str(pki.server_key))
    controller = Controller(Sink(), hostname=HOST, port=port, tls_context=tls)
    controller.start()
    try:
        yield
    finally:
        controller.stop()


def _s_client_starttls(port: int, pki: Pki) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", "s_client", "-connect", f"{HOST}:{port}", "-starttls", "smtp", "-servername",
                           pki.hostname, "-CAfile", str(pki.ca_cert)], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=20, check=False)


def smtp_starttls(workdir: Path, port: int, pki: Pki) -> list[Label]:
    """openssl s_client -starttls smtp to aiosmtpd with TLS: EHLO, STARTTLS, "220 Ready to start TLS", TLS 1.3."""
    name = "smtp_starttls"
    pcap = workdir / f"{name}.pcap"
    with smtp_server(port, pki), capture(pcap, port):
        result = _s_client_starttls(port, pki)
    flow = _single_flow(name, pcap)
    _expect("Verify return code: 0 (ok)" in result.stdout, name, "s_client completed the handshake after STARTTLS")
    _expect(flow.server_data().startswith(b"220 ") and b"STARTTLS" in flow.client_data(), name,
            "an SMTP prelude with STARTTLS")
    return [_label(name, flow, pcap, outcome="established", version="TLS 1.3", sni=pki.hostname, alpn=None,
                   resumed=False, client_impl=f"openssl s_client -starttls smtp {_openssl_version()}",
                   server_impl="aiosmtpd (Python SMTP server) with a TLS context")]


def smtp_starttls_refused(workdir: Path, port: int, pki: Pki) -> list[Label]:
    """openssl s_client -starttls smtp to aiosmtpd without TLS: the server answers STARTTLS with 454; s_client
    sends its ClientHello all the same, and the server answers that with an SMTP error."""
    name = "smtp_starttls_refused"
    pcap = workdir / f"{name}.pcap"
    with smtp_server(port, None), capture(pcap, port):
        result = _s_client_starttls(port, pki)
    flow = _single_flow(name, pcap)
    _expect(b"454 " in flow.server_data(), name, f"the server's 454 to STARTTLS (s_client exit {result.returncode})")
    return [_label(name, flow, pcap, outcome="failed", failed_step="server_hello", cause="not_tls",
                   client_impl=f"openssl s_client -starttls smtp {_openssl_version()}",
                   server_impl="aiosmtpd (Python SMTP server) without TLS: '454 TLS not available'",
                   note="s_client sends its ClientHello after the 454 anyway; the server answers it in SMTP")]


def reset_injected(workdir: Path, port: int, pki: Pki) -> list[Label]:
    """A middlebox forges the server's RST right after the ClientHello; the real answer arrives too late."""
    from scapy.all import IP, TCP, AsyncSniffer, send  # scapy only for live sniffing and sending

    name = "net_reset_injected"
    pcap = workdir / f"{name}.pcap"
    upstream = port + 1  # captures.record gives each scenario port .. port+9
    injected = threading.Event()

    def inject(packet: object) -> None:
        if injected.is_set() or TCP not in packet:  # type: ignore[operator]
            return
        ip, tcp = packet[IP], packet[TCP]  # type: ignore[index]
        if tcp.dport != port or not is_client_hello(bytes(tcp.payload)):
            return
        forged = (IP(src=ip.dst, dst=ip.src, ttl=INJECTED_TTL, id=INJECTED_IP_ID, flags=0)
                  / TCP(sport=tcp.dport, dport=tcp.sport, flags="R", seq=tcp.ack, ack=0))
        send(forged, iface="lo", verbose=False)
        injected.set()

    # The relay holds the server's answer back for a second, as a long path would: the forged RST, sent from
    # "close to the client", overtakes it. The client's kernel answers the late ServerHello with its own RST.
    with openssl_server(upstream, pki), \
            Relay(port, (HOST, upstream), to_client=Direction(delay=1.0)), \
            capture(pcap, port):
        listening = threading.Event()
        sniffer = AsyncSniffer(iface="lo", filter=f"tcp dst port {port}", prn=inject, store=False,
                               started_callback=listening.set)
        sniffer.start()
        _expect(listening.wait(10), name, "the injector's sniffer started")
        try:
            result = python_tls_client(port, pki, timeout=CLIENT_TIMEOUT)
            time.sleep(1.5)  # the late ServerHello and the client's answer to it
        finally:
            sniffer.stop()
    flow = _single_flow(name, pcap)
    _expect_client_hello(name, flow)
    server_packets = flow.sent_by_server()
    synack = next(p for p in server_packets if p.syn)
    rst = next((p for p in server_packets if p.rst), None)
    _expect(rst is not None, name, "a RST from the server's address")
    assert rst is not None
    _expect(rst.ttl != synack.ttl and rst.ttl == INJECTED_TTL, name, "the RST's TTL differs from the SYN-ACK's")
    _expect(rst.ip_id == INJECTED_IP_ID and not rst.df, name, "the RST's IP ID and DF differ from the server's")
    first_data = next((p for p in server_packets if p.tcp_len), None)
    _expect(first_data is None or first_data.frame > rst.frame, name, "the RST came before any server data")
    late = "the real ServerHello came later and the client's kernel answered it with RST" if first_data else ""
    return [_label(name, flow, pcap, outcome="failed", failed_step="server_hello", cause="reset_injected",
                   client_impl=_python_client_impl(),
                   server_impl=f"openssl s_server {_openssl_version()} behind captures.relay (1 s delay)",
                   note=f"forged RST in frame {rst.frame}: TTL {rst.ttl} vs {synack.ttl}, IP ID {rst.ip_id:#x} "
                        f"without DF (scapy); {late}; client: {result.error}")]


def reset_during_handshake(workdir: Path, port: int, pki: Pki) -> list[Label]:
    """TLS 1.2: the server's whole flight arrives, the client answers, and the server side aborts with RST."""
    name = "net_reset_during_handshake"
    pcap = workdir / f"{name}.pcap"
    upstream = port + 1  # captures.record gives each scenario port .. port+9
    # The relay forwards the ClientHello and the server's flight, and resets when the client's second flight
    # (ClientKeyExchange, ChangeCipherSpec, Finished) arrives: a server or load balancer dying mid-handshake.
    with openssl_server(upstream, pki), Relay(port, (HOST, upstream), to_server=Direction(reset_at_chunk=2)), \
            capture(pcap, port):
        result = python_tls_client(port, pki, max_version=ssl.TLSVersion.TLSv1_2)
    flow = _single_flow(name, pcap)
    _expect_client_hello(name, flow)
    server, client = flow.sent_by_server(), flow.sent_by_client()
    _expect(flow.server_data()[5:6] == b"\x02", name, "the server's flight (ServerHello first)")
    client_flight = [p for p in client if p.tcp_len and p.seq > 1]
    _expect(client_flight, name, "the client's second flight")
    rst = next((p for p in server if p.rst), None)
    _expect(rst is not None and rst.frame > client_flight[0].frame, name, "a RST from the server after it")
    assert rst is not None
    _expect(rst.ttl == next(p for p in server if p.syn).ttl, name, "the RST has the server's own TTL")
    _expect(not any(p.tcp_len for p in server if p.frame > client_flight[0].frame), name,
            "no ChangeCipherSpec/Finished from the server")
    return [_label(name, flow, pcap, outcome="failed", failed_step="finished", cause="reset_during_handshake",
                   version="TLS 1.2", sni=pki.hostname, client_impl=_python_client_impl(),
                   server_impl=f"openssl s_server {_openssl_version()} behind captures.relay (RST on the client's "
                               "second flight)",
                   note=f"client sent ClientKeyExchange/ChangeCipherSpec/Finished (frame {client_flight[0].frame}); "
                        f"the server side answered with RST (frame {rst.frame}) instead of its own "
                        f"ChangeCipherSpec/Finished; client: {result.error}")]


def capture_ends_mid_handshake(workdir: Path, port: int, pki: Pki) -> list[Label]:
    """The capture stops while the client still waits for the ServerHello: nothing failed yet on the wire."""
    name = "net_capture_ends_mid_handshake"
    pcap = workdir / f"{name}.pcap"
    outcome: list[ClientResult] = []
    with Relay(port, mode=RelayMode.BLACKHOLE):
        client = threading.Thread(target=lambda: outcome.append(python_tls_client(port, pki)), daemon=True)
        with capture(pcap, port):
            client.start()
        # The capture is closed now; the client gives up (FIN) later, outside it.
        client.join(timeout=CLIENT_TIMEOUT + 5)
    flow = _single_flow(name, pcap)
    _expect_client_hello(name, flow)
    _expect_client_hello_acked(name, flow)
    _expect(not flow.server_data(), name, "no data from the server")
    _expect(not any(p.fin or p.rst for p in flow.packets), name, "no FIN or RST from either side")
    last = flow.packets[-1].time - next(p.time for p in flow.packets if p.tcp_len)
    _expect(last < CLIENT_TIMEOUT, name, "the capture ended before the client's timeout")
    return [_label(name, flow, pcap, outcome="incomplete", sni=pki.hostname, client_impl=_python_client_impl(),
                   server_impl="captures.relay in black-hole mode",
                   note="the capture stopped about a second after the ClientHello; the client was still waiting "
                        f"(it gave up later, unseen: {outcome[0].error if outcome else 'still running'})")]


def server_silent(workdir: Path, port: int, pki: Pki) -> list[Label]:
    name = "net_server_silent"
    pcap = workdir / f"{name}.pcap"
    with Relay(port, mode=RelayMode.BLACKHOLE), capture(pcap, port):
        result = python_tls_client(port, pki, timeout=CLIENT_TIMEOUT)
    flow = _single_flow(name, pcap)
    _expect_client_hello(name, flow)
    _expect_client_hello_acked(name, flow)
    _expect(not flow.server_data(), name, "no data from the server")
    client_fin = next((p for p in flow.sent_by_client() if p.fin), None)
    _expect(client_fin is not None, name, "the client closed (FIN)")
    assert client_fin is not None
    server_fin = next((p for p in flow.sent_by_server() if p.fin or p.rst), None)
    _expect(server_fin is None or server_fin.frame > client_fin.frame, name, "the client closed first")
    hello_time = next(p.time for p in flow.sent_by_client() if p.tcp_len)
    _expect(client_fin.time - hello_time >= CLIENT_TIMEOUT * 0.9, name, "the client waited before giving up")
    return [_label(name, flow, pcap, outcome="failed", failed_step="server_hello", cause="server_silent",
                   client_impl=_python_client_impl(),
                   server_impl="captures.relay in black-hole mode (accepts, reads, never answers)",
                   note=f"client gave up after {CLIENT_TIMEOUT} s; {result.error}")]


def closed_without_alert(workdir: Path, port: int, pki: Pki) -> list[Label]:
    name = "net_closed_without_alert"
    pcap = workdir / f"{name}.pcap"

    def close_quietly(conn: socket.socket) -> None:
        read_tls_record(conn)
        conn.shutdown(socket.SHUT_WR)
        wait_for_eof(conn)

    with ScriptedServer(port, close_quietly), capture(pcap, port):
        result = openssl_client(port, pki)
    flow = _single_flow(name, pcap)
    _expect_client_hello(name, flow)
    _expect_client_hello_acked(name, flow)
    _expect(not flow.server_data(), name, "no data (so no alert) from the server")
    server = flow.sent_by_server()
    _expect(any(p.fin for p in server) and not any(p.rst for p in server), name, "a FIN and no RST from the server")
    first_fin = next(p for p in flow.packets if p.fin)
    _expect(first_fin.src == flow.server, name, "the server closed first")
    return [_label(name, flow, pcap, outcome="failed", failed_step="server_hello", cause="closed_without_alert",
                   client_impl=f"openssl s_client {_openssl_version()}",
                   server_impl="python socket: reads the ClientHello, closes with FIN",
                   note="the server closed (FIN) without an alert; any alert is the client's reaction to the "
                        f"early close; s_client exit {result.returncode}")]


def _nginx_plain_http(port: int, workdir: Path) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    @contextlib.contextmanager
    def run() -> Iterator[subprocess.Popen[bytes]]:
        prefix = workdir / f".nginx-{port}"
        (prefix / "logs").mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(
            "daemon off; master_process off; worker_processes 1; user root;\n"
            f"error_log {prefix}/logs/error.log; pid {prefix}/nginx.pid;\n"
            "events { worker_connections 16; }\n"
            "http { access_log off;\n"
            f"  client_body_temp_path {prefix}/tmp; proxy_temp_path {prefix}/tmp;\n"
            f"  fastcgi_temp_path {prefix}/tmp; uwsgi_temp_path {prefix}/tmp; scgi_temp_path {prefix}/tmp;\n"
            f"  server {{ listen {HOST}:{port}; location / {{ return 200 'plain http\\n'; }} }} }}\n")
        proc = subprocess.Popen(["nginx", "-p", str(prefix), "-c", str(conf)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_listening(port, proc)
            yield proc
        finally:
            _stop(proc)
            shutil.rmtree(prefix, ignore_errors=True)

    return run()


def _nginx_version() -> str:
    out = subprocess.run(["nginx", "-v"], check=False, capture_output=True, text=True, timeout=10).stderr.strip()
    return out.split(":", 1)[-1].strip() or "nginx"


# A TLS client that reaches a non-TLS service has sent a ClientHello: the connection was meant to carry TLS and its
# handshake failed at the server's answer, so the label is failed / server_hello / not_tls (the only way CONTRACT's
# `not_tls` cause can appear, since causes are null unless failed). A connection where no side ever spoke TLS is
# outcome `not_tls` with a null cause.
NOT_TLS_SERVER_LABEL = {"outcome": "failed", "failed_step": "server_hello", "cause": "not_tls"}


def tls_client_to_http_server(workdir: Path, port: int, pki: Pki) -> list[Label]:
    name = "net_tls_client_to_http_server"
    pcap = workdir / f"{name}.pcap"
    with _nginx_plain_http(port, workdir), capture(pcap, port):
        result = openssl_client(port, pki)
    flow = _single_flow(name, pcap)
    _expect_client_hello(name, flow)
    answer = flow.server_data()
    _expect(answer.startswith(b"HTTP/1."), name, "the server answered in plain HTTP")
    status_line = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    return [_label(name, flow, pcap, **NOT_TLS_SERVER_LABEL,
                   client_impl=f"openssl s_client {_openssl_version()}", server_impl=f"{_nginx_version()} (plain http)",
                   note=f"server answered {status_line!r}; "
                        f"s_client exit {result.returncode}")]


SSH_BANNER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"


def tls_client_to_ssh_banner(workdir: Path, port: int, pki: Pki) -> list[Label]:
    name = "net_tls_client_to_ssh_banner"
    pcap = workdir / f"{name}.pcap"

    def ssh_like(conn: socket.socket) -> None:
        conn.sendall(SSH_BANNER)  # an SSH server speaks first
        conn.recv(65536)
        conn.sendall(b"Invalid SSH identification string.\r\n")
        conn.shutdown(socket.SHUT_WR)
        wait_for_eof(conn)

    with ScriptedServer(port, ssh_like), capture(pcap, port):
        result = python_tls_client(port, pki)
    flow = _single_flow(name, pcap)
    answer = flow.server_data()
    _expect(answer.startswith(b"SSH-2.0-"), name, "the server's first bytes are an SSH banner")
    _expect(is_client_hello(flow.client_data()), name, "the client sent a ClientHello anyway")
    ends = "the client closed with unread data, hence its RST" if any(p.rst for p in flow.sent_by_client()) else ""
    return [_label(name, flow, pcap, **NOT_TLS_SERVER_LABEL,
                   client_impl=_python_client_impl(), server_impl="python socket speaking like sshd (banner first)",
                   note=f"server sent an SSH banner on accept, then 'Invalid SSH identification string.' and FIN; "
                        f"{ends}; client: {result.error}")]


def http_client_to_tls_server(workdir: Path, port: int, pki: Pki) -> list[Label]:
    name = "net_http_client_to_tls_server"
    pcap = workdir / f"{name}.pcap"
    request = f"GET / HTTP/1.1\r\nHost: {pki.hostname}\r\nConnection: close\r\n\r\n".encode()
    with openssl_server(port, pki), capture(pcap, port), \
            socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT) as sock:
        sock.sendall(request)
        with contextlib.suppress(OSError):
            while sock.recv(65536):
                pass
    flow = _single_flow(name, pcap)
    _expect(flow.client_data().startswith(b"GET / HTTP/1.1"), name, "the client sent plain HTTP")
    answer = flow.server_data()
    server_fin = any(p.fin for p in flow.sent_by_server())
    return [_label(name, flow, pcap, outcome="not_tls", client_impl="python socket (plain HTTP/1.1 request)",
                   server_impl=f"openssl s_server {_openssl_version()}",
                   note="no ClientHello ever: the client spoke HTTP to a TLS port; the server answered "
                        + (f"{len(answer)} bytes" if answer else "nothing") + (" and closed (FIN)" if server_fin else ""))]


def packet_loss_recovered(workdir: Path, port: int, pki: Pki) -> list[Label]:
    """Every other data segment in each direction is lost once; TCP retransmits and the handshake completes."""
    name = "net_packet_loss_recovered"
    pcap = workdir / f"{name}.pcap"
    nth = ["-m", "length", "--length", "100:65535", "-m", "statistic", "--mode", "nth", "--every", "2",
           "--packet", "0"]
    rules = (["-p", "tcp", "--dport", str(port), *nth], ["-p", "tcp", "--sport", str(port), *nth])
    with openssl_server(port, pki, "-alpn", "http/1.1"), iptables_rules(*rules), \
            capture(pcap, port):
        result = python_tls_client(port, pki, timeout=15, alpn=["h2", "http/1.1"])
    _expect(result.error is None, name, f"the handshake completed (client: {result.error})")
    flow = _single_flow(name, pcap)
    _expect_client_hello(name, flow)
    lost_client = [p for p in flow.sent_by_client() if p.retransmission]
    lost_server = [p for p in flow.sent_by_server() if p.retransmission]
    _expect(lost_client and lost_server, name, "retransmitted segments in both directions")
    _expect(flow.server_data()[:1] == bytes([HANDSHAKE_RECORD]), name, "the server's flight")
    return [_label(name, flow, pcap, outcome="established", version=_version_name(result.version), sni=pki.hostname,
                   alpn=result.alpn, resumed=False, client_impl=_python_client_impl(),
                   server_impl=f"openssl s_server {_openssl_version()}",
                   note="warnings: packet_loss; iptables dropped every other data segment per direction once "
                        f"(retransmissions in frames {[p.frame for p in lost_client + lost_server]})")]


# The response of packet_loss_after_handshake, and the IP packets of it that iptables drops (every other one of
# this length or more, once): the server's handshake flight (its certificate chain, ~3 kB) is shorter.
BULK_RESPONSE_BYTES = 64 * 1024
BULK_SEGMENT_MIN = 8000


@contextlib.contextmanager
def bulk_tls_server(port: int, pki: Pki, nbytes: int) -> Iterator[threading.Thread]:
    """A Python TLS server (the valid chain) that answers one request with `nbytes` bytes, then closes."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki.server_chain), str(pki.server_key))
    listener = socket.create_server((HOST, port))
    listener.settimeout(10)

    def serve() -> None:
        with contextlib.suppress(OSError), listener.accept()[0] as raw, \
                ctx.wrap_socket(raw, server_side=True) as tls:
            request = b""
            while b"\r\n\r\n" not in request:
                more = tls.recv(4096)
                if not more:
                    return
                request += more
            tls.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + bytes(nbytes))
            tls.unwrap()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        thread.join(timeout=15)
        listener.close()


def python_tls_download(port: int, pki: Pki, *, timeout: float = 15) -> tuple[ClientResult, int]:
    """A Python TLS client that sends one HTTP/1.0 request and reads the response to its end: (result, bytes)."""
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    received = 0
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock, \
                ctx.wrap_socket(sock, server_hostname=pki.hostname) as tls:
            result = ClientResult(version=tls.version())
            tls.sendall(b"GET /bulk HTTP/1.0\r\nHost: " + pki.hostname.encode() + b"\r\n\r\n")
            while chunk := tls.recv(65536):
                received += len(chunk)
            with contextlib.suppress(OSError):
                tls.unwrap()
            return result, received
    except (OSError, ssl.SSLError) as exc:
        return ClientResult(error=repr(exc)), received


def packet_loss_after_handshake(workdir: Path, port: int, pki: Pki) -> list[Label]:
    """The handshake goes through untouched; then every other large segment of the server's response is lost once
    and retransmitted: loss in the data, not in the handshake (no packet_loss warning)."""
    name = "net_packet_loss_after_handshake"
    pcap = workdir / f"{name}.pcap"
    rule = ["-p", "tcp", "--sport", str(port), "-m", "length", "--length", f"{BULK_SEGMENT_MIN}:65535",
            "-m", "statistic", "--mode", "nth", "--every", "2", "--packet", "0"]
    with bulk_tls_server(port, pki, BULK_RESPONSE_BYTES), iptables_rules(rule), capture(pcap, port):
        result, received = python_tls_download(port, pki)
    _expect(result.error is None, name, f"the download completed (client: {result.error})")
    _expect(received >= BULK_RESPONSE_BYTES, name, f"the whole response ({received} bytes)")
    flow = _single_flow(name, pcap)
    _expect_client_hello(name, flow)
    lost = [p for p in flow.sent_by_server() if p.retransmission]
    _expect(lost, name, "retransmitted server segments")
    _expect(all(p.ip_len >= BULK_SEGMENT_MIN for p in lost), name, "only segments of the response retransmitted")
    _expect(not any(p.retransmission for p in flow.sent_by_client()), name, "no client retransmission")
    _expect(flow.server_data()[:1] == bytes([HANDSHAKE_RECORD]), name, "the server's flight")
    return [_label(name, flow, pcap, outcome="established", version=_version_name(result.version), sni=pki.hostname,
                   alpn=None, resumed=False, client_impl=_python_client_impl(),
                   server_impl=_python_client_impl(), note="no packet_loss warning (the contract's is for handshake segments): iptables dropped every "
                        f"other server segment of {BULK_SEGMENT_MIN} bytes or more, the response after the handshake, "
                        f"once (retransmissions in frames {[p.frame for p in lost]})")]


def packet_loss_fatal(workdir: Path, port: int, pki: Pki) -> list[Label]:
    """Every copy of the ClientHello is lost on the way: the client retransmits it, then gives up."""
    name = "net_packet_loss_fatal"
    pcap = workdir / f"{name}.pcap"
    rule = ["-p", "tcp", "--dport", str(port), "-m", "length", "--length", "100:65535"]
    timeout = CLIENT_TIMEOUT + 1
    with openssl_server(port, pki), iptables_rules(rule), capture(pcap, port):
        result = python_tls_client(port, pki, timeout=timeout)
    flow = _single_flow(name, pcap)
    _expect_client_hello(name, flow)
    hellos = [p for p in flow.sent_by_client() if p.tcp_len and p.seq == 1]
    _expect(len(hellos) >= 3, name, "the ClientHello sent at least three times")
    _expect(all(p.ack <= 1 for p in flow.sent_by_server()), name, "the server never ACKed any client data")
    _expect(not flow.server_data(), name, "no data from the server")
    return [_label(name, flow, pcap, outcome="failed", failed_step="client_hello", cause="packet_loss",
                   client_impl=_python_client_impl(), server_impl=f"openssl s_server {_openssl_version()}",
                   note=f"iptables dropped every client data segment; ClientHello sent {len(hellos)} times in "
                        f"{timeout} s, never ACKed; client: {result.error}")]


def _mtu_blackhole(workdir: Path, port: int, pki: Pki, name: str, *, split_records: bool) -> list[Label]:
    """Full-size segments from the server vanish (a path MTU below 1500 with ICMP filtered); small ones pass.

    The relay gives the client-facing leg an Ethernet MSS and cuts what the server writes into MSS-sized sends, as
    a server's TCP does on a 1500-byte path. With `split_records`, each TLS record also starts a new segment, so
    the small ServerHello gets through alone and the Certificate is what vanishes. TLS 1.2 keeps the Certificate
    readable in the capture.
    """
    pcap = workdir / f"{name}.pcap"
    upstream = port + 1  # captures.record gives each scenario port .. port+9
    rule = ["-p", "tcp", "--sport", str(port), "-m", "length", "--length", f"{SMALLEST_LOST}:65535"]
    timeout = CLIENT_TIMEOUT + 1
    to_client = Direction(split_records=split_records, max_send=ETHERNET_SEGMENT)
    with openssl_server(upstream, pki), Relay(port, (HOST, upstream), to_client=to_client, client_mss=ETHERNET_MSS), \
            iptables_rules(rule), capture(pcap, port):
        result = python_tls_client(port, pki, timeout=timeout, max_version=ssl.TLSVersion.TLSv1_2)
    flow = _single_flow(name, pcap)
    _expect_client_hello(name, flow)
    server, client = flow.sent_by_server(), flow.sent_by_client()
    big = [p for p in server if p.ip_len >= SMALLEST_LOST]
    _expect(big, name, f"server segments of {SMALLEST_LOST} bytes or more")
    first_big = big[0]
    sent = sum(1 for p in big if p.seq == first_big.seq)
    _expect(sent >= 3, name, "the first large segment retransmitted")
    _expect(all(p.ack <= first_big.seq for p in client), name, "the large segment never ACKed")
    _expect(all(p.ip_len <= ETHERNET_MSS + 40 for p in server), name, "no server packet larger than 1500 bytes")
    small_after = [p for p in server if p.tcp_len and p.ip_len < SMALLEST_LOST and p.seq > first_big.seq]
    _expect(small_after, name, "a smaller segment after the large one got through (the path is not dead)")
    server_hello_first = server[0] if not server[0].syn else next(p for p in server if p.tcp_len)
    hello = flow.server_data()
    _expect(hello[:1] == bytes([HANDSHAKE_RECORD]) and hello[5:6] == b"\x02", name, "the server's ServerHello")
    if split_records:
        _expect(server_hello_first.ip_len < SMALLEST_LOST, name, "the ServerHello got through in a small segment")
        _expect(any(p.ack == first_big.seq for p in client), name, "the client ACKed the ServerHello")
        step, lost = "server_certificate", "the Certificate (the ServerHello got through alone)"
    else:
        _expect(first_big.seq == 1, name, "the ServerHello was in the first, lost, full-size segment")
        step, lost = "server_hello", "the ServerHello and Certificate (in the same full-size segments)"
    return [_label(name, flow, pcap, outcome="failed", failed_step=step, cause="mtu_blackhole",
                   version="TLS 1.2", sni=pki.hostname,
                   client_impl=_python_client_impl(),
                   server_impl=f"openssl s_server {_openssl_version()} behind captures.relay (MSS {ETHERNET_MSS}"
                               + (", one record per segment)" if split_records else ")"),
                   note=f"iptables dropped IP packets >= {SMALLEST_LOST} bytes from the server: lost {lost}; "
                        f"the segment in frame {first_big.frame} was sent {sent} times, never ACKed, while a "
                        f"smaller one after it got through; client gave up after {timeout} s: {result.error}")]


def mtu_blackhole(workdir: Path, port: int, pki: Pki) -> list[Label]:
    return _mtu_blackhole(workdir, port, pki, "net_mtu_blackhole", split_records=False)


def mtu_blackhole_after_server_hello(workdir: Path, port: int, pki: Pki) -> list[Label]:
    return _mtu_blackhole(workdir, port, pki, "net_mtu_blackhole_after_server_hello", split_records=True)


def relay_control(workdir: Path, port: int, pki: Pki) -> list[Label]:
    """A normal handshake through the relay: the control for the relay-based scenarios."""
    name = "net_relay_control"
    pcap = workdir / f"{name}.pcap"
    upstream = port + 1  # captures.record gives each scenario port .. port+9
    with openssl_server(upstream, pki, "-alpn", "http/1.1"), Relay(port, (HOST, upstream)), \
            capture(pcap, port):
        result = openssl_client(port, pki, "-alpn", "h2,http/1.1")
    flow = _single_flow(name, pcap)
    _expect_client_hello(name, flow)
    _expect(result.returncode == 0 and "Verify return code: 0 (ok)" in result.stdout, name,
            "s_client completed the handshake and verified the chain")
    version = next((line.split(",")[1].strip() for line in result.stdout.splitlines()
                    if line.startswith(("New, TLSv", "Reused, TLSv"))), None)
    _expect(version is not None, name, "s_client reported the negotiated version")
    alpn = next((line.split(":", 1)[1].strip() for line in result.stdout.splitlines()
                 if line.startswith("ALPN protocol:")), None)
    return [_label(name, flow, pcap, outcome="established", version=_version_name(version), sni=pki.hostname,
                   alpn=alpn, resumed=False, client_impl=f"openssl s_client {_openssl_version()}",
                   server_impl=f"openssl s_server {_openssl_version()} behind captures.relay (forwarding)",
                   note="only the client-facing leg of the relay is captured")]


def _version_name(openssl_name: str | None) -> str | None:
    if openssl_name is None:
        return None
    return {"TLSv1": "TLS 1.0", "TLSv1.1": "TLS 1.1", "TLSv1.2": "TLS 1.2", "TLSv1.3": "TLS 1.3",
            "SSLv3": "SSL 3.0"}.get(openssl_name, openssl_name)


SCENARIOS: list[Scenario] = [
    Scenario("net_port_closed", "TLS client to a port with no listener: RST to the SYN", port_closed,
             ("network", "fast")),
    Scenario("net_syn_unanswered", "SYNs dropped by a firewall: the client gives up", syn_unanswered,
             ("network", "iptables")),
    Scenario("net_reset_after_client_hello", "server reads the ClientHello and aborts with RST",
             reset_after_client_hello, ("network", "fast")),
    Scenario("net_reset_injected", "a middlebox forges a RST (other TTL and IP ID) before the server answers",
             reset_injected, ("network", "scapy")),
    Scenario("net_reset_during_handshake", "TLS 1.2: RST from the server side after the client's Finished",
             reset_during_handshake, ("network",)),
    Scenario("net_capture_ends_mid_handshake", "the capture stops while the client waits for the ServerHello",
             capture_ends_mid_handshake, ("network",)),
    Scenario("net_server_silent", "server accepts the ClientHello and never answers", server_silent,
             ("network",)),
    Scenario("net_closed_without_alert", "server reads the ClientHello and closes with FIN, no alert",
             closed_without_alert, ("network", "fast")),
    Scenario("net_tls_client_to_http_server", "TLS client to a plain HTTP server (nginx)",
             tls_client_to_http_server, ("network", "fast")),
    Scenario("net_tls_client_to_ssh_banner", "TLS client to a server that speaks SSH first",
             tls_client_to_ssh_banner, ("network", "fast")),
    Scenario("net_http_client_to_tls_server", "plain HTTP client to a TLS server", http_client_to_tls_server,
             ("network", "fast")),
    Scenario("net_packet_loss_recovered", "lossy path, TCP retransmits, the handshake completes",
             packet_loss_recovered, ("network", "iptables")),
    Scenario("net_packet_loss_fatal", "every ClientHello lost, the client gives up", packet_loss_fatal,
             ("network", "iptables")),
    Scenario("net_mtu_blackhole", "full-size server segments vanish, small ones pass: the server's flight never "
             "arrives", mtu_blackhole, ("network", "iptables")),
    Scenario("net_mtu_blackhole_after_server_hello", "MTU black hole where the ServerHello travels alone and "
             "the Certificate vanishes", mtu_blackhole_after_server_hello, ("network", "iptables")),
    Scenario("net_relay_control", "a normal TLS 1.3 handshake through the relay", relay_control,
             ("network", "fast")),
    Scenario("net_packet_loss_after_handshake", "a clean handshake, then segments of the response lost and "
             "retransmitted", packet_loss_after_handshake, ("network", "iptables")),
    Scenario("net_split_client_hello_reset", "a ClientHello too long for one packet, to a server that reads "
             "only the first (tldr.fail): RST", split_client_hello_reset, ("network", "fast")),
    Scenario("net_split_client_hello_silent", "a ClientHello in two segments, to a server that reads only the "
             "first and waits (tldr.fail): no answer", split_client_hello_silent, ("network",)),
    Scenario("net_record_split_client_hello_reset", "a ClientHello in two TLS records, to a server that reads only "
             "the first: RST", record_split_client_hello_reset, ("network", "fast")),
    Scenario("net_record_split_client_hello_accepted", "a ClientHello in two TLS records, to openssl s_server: "
             "established", record_split_client_hello_accepted, ("network", "fast")),
    Scenario("net_client_half_close_after_hello", "the client sends its ClientHello and at once shuts down its "
             "sending side (FIN), as `nc` does: openssl s_server answers, then closes", client_half_close_after_hello,
             ("network", "fast")),
    Scenario("net_client_half_close_after_hello_tls12", "the same client to a TLS 1.2 openssl s_server",
             client_half_close_after_hello_tls12, ("network", "fast")),
    Scenario("net_proxy_connect", "curl through an HTTP proxy (CONNECT), then TLS to openssl s_server",
             proxy_connect, ("network", "fast")),
    Scenario("net_proxy_connect_refused", "curl through an HTTP proxy that answers the CONNECT with 407 (credentials "
             "wanted): no TLS", proxy_connect_refused, ("network", "fast")),
    Scenario("smtp_starttls", "SMTP: openssl s_client -starttls smtp to aiosmtpd with TLS", smtp_starttls,
             ("network", "fast")),
    Scenario("smtp_starttls_refused", "SMTP: the server (aiosmtpd without TLS) answers STARTTLS with '454 TLS not "
             "available'", smtp_starttls_refused, ("network", "fast")),
]


def main(argv: list[str] | None = None) -> int:
    """`python -m captures.scenarios_network [NAME ...]`: record these network scenarios with captures.record."""
    from captures import record

    names = (sys.argv[1:] if argv is None else argv) or [s.name for s in SCENARIOS]
    return record.main(["--only", *names])


if __name__ == "__main__":
    sys.exit(main())
