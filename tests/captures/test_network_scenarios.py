"""The network-failure scenarios: the relay on its own, a few scenarios re-recorded, and the committed corpus.

Re-recorded captures are checked with tshark display filters written here, independently of the assertions the
scenario module makes while recording: a label has to hold for a plain reading of the pcap.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from captures import scenarios_network as net
from captures.relay import Direction, Relay, RelayMode, split_tls_records
from captures.scenario import Label, Pki
from tests.conftest import CORPUS, corpus_labels

NETWORK_NAMES = {s.name for s in net.SCENARIOS}


# ---------------------------------------------------------------------------------------------------------------
# The relay, without root
# ---------------------------------------------------------------------------------------------------------------
def _record(content_type: int, body: bytes) -> bytes:
    return bytes([content_type, 3, 3]) + len(body).to_bytes(2, "big") + body


def test_split_tls_records_cuts_whole_records_and_keeps_the_rest() -> None:
    hello, cert = _record(0x16, b"\x02" + b"h" * 40), _record(0x16, b"\x0b" + b"c" * 3000)
    partial = _record(0x16, b"\x0c" + b"k" * 100)[:50]
    records, rest = split_tls_records(hello + cert + partial)
    assert records == [hello, cert]
    assert rest == partial


def test_split_tls_records_waits_for_a_header() -> None:
    assert split_tls_records(b"\x16\x03") == ([], b"\x16\x03")


def _free_pair() -> int:
    """A port p with p and p+1 both free on 127.0.0.1."""
    for _ in range(50):
        port = net.free_port()
        with socket.socket() as probe:
            try:
                probe.bind((net.HOST, port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two adjacent free ports")


@pytest.fixture
def echo_server() -> Iterator[int]:
    """A plain echo server on a free port, stopped after the test."""
    listener = socket.socket()
    listener.bind((net.HOST, 0))
    listener.listen(4)
    listener.settimeout(0.1)  # short, so that the accept loop notices the stop quickly
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                while data := conn.recv(65536):
                    conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    listener.close()
    thread.join(timeout=10)


def _exchange(port: int, payload: bytes) -> bytes:
    with socket.create_connection((net.HOST, port), timeout=5) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_relay_forwards_both_directions_and_passes_the_close_on(echo_server: int) -> None:
    payload = b"".join(_record(0x16, bytes([i]) * 700) for i in range(8))
    with Relay(net.free_port(), (net.HOST, echo_server)) as relay:
        assert _exchange(relay.listen_port, payload) == payload
        assert relay.connections == 1


def test_relay_pacing_by_record_and_segment_keeps_the_bytes(echo_server: int) -> None:
    payload = _record(0x16, b"\x02" * 80) + _record(0x16, b"\x0b" * 5000) + _record(0x16, b"\x0e")
    paced = Direction(split_records=True, max_send=net.ETHERNET_SEGMENT)
    with Relay(net.free_port(), (net.HOST, echo_server), to_client=paced, client_mss=net.ETHERNET_MSS) as relay:
        assert _exchange(relay.listen_port, payload) == payload


def test_relay_reset_mode_aborts_after_the_first_bytes() -> None:
    with Relay(net.free_port(), mode=RelayMode.RESET_AFTER_FIRST) as relay, \
            socket.create_connection((net.HOST, relay.listen_port), timeout=5) as sock:
        sock.sendall(_record(0x16, b"\x01" * 200))
        with pytest.raises(ConnectionResetError):
            while sock.recv(65536):
                pass


def test_relay_reset_at_chunk_forwards_the_first_and_resets_on_the_second(echo_server: int) -> None:
    with Relay(net.free_port(), (net.HOST, echo_server), to_server=Direction(reset_at_chunk=2)) as relay, \
            socket.create_connection((net.HOST, relay.listen_port), timeout=5) as sock:
        first = _record(0x16, b"\x01" * 100)
        sock.sendall(first)
        echoed = b""
        while len(echoed) < len(first):
            echoed += sock.recv(65536)
        assert echoed == first
        sock.sendall(_record(0x16, b"\x10" * 50))
        with pytest.raises(ConnectionResetError):
            while sock.recv(65536):
                pass


# ---------------------------------------------------------------------------------------------------------------
# Re-recording a few scenarios (root, tcpdump, tshark, openssl)
# ---------------------------------------------------------------------------------------------------------------
def _need_recording_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("recording on lo needs root")
    for tool in ("tcpdump", "tshark", "openssl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    pki_module = pytest.importorskip("captures.pki")
    return pki_module.build_pki(tmp_path_factory.mktemp("pki"))


def _tshark_count(pcap: Path, port: int, display_filter: str) -> int:
    out = subprocess.run(["tshark", "-r", str(pcap), "-n", "-d", f"tcp.port=={port},tls", "-Y", display_filter,
                          "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return len(out.split())


def _rerecord(scenario_name: str, workdir: Path, pki: Pki) -> tuple[Label, Path, int]:
    scenario = next(s for s in net.SCENARIOS if s.name == scenario_name)
    port = _free_pair()
    labels = scenario.run(workdir, port, pki)
    assert len(labels) == 1
    pcap = scenario.pcap(workdir)
    assert pcap.exists()
    _holds_for_the_recorder(labels[0], pcap)
    return labels[0], pcap, port


def _holds_for_the_recorder(label: Label, pcap: Path) -> None:
    """The recorder's own label check (captures.labels) agrees, where that module is present."""
    try:
        from captures.labels import check_label, read_wire
    except ImportError:
        return
    wire = {flow.flow: flow for flow in read_wire(pcap)}
    assert check_label(label, wire[label.flow]) == []


@pytest.mark.tools
def test_port_closed_is_a_rst_to_the_syn(tmp_path: Path, pki: Pki) -> None:
    _need_recording_tools()
    label, pcap, port = _rerecord("net_port_closed", tmp_path, pki)
    assert (label.outcome, label.failed_step, label.cause) == ("failed", "tcp_connect", "tcp_refused")
    assert label.server == f"{net.HOST}:{port}"
    assert _tshark_count(pcap, port, "tcp.flags.syn==1 && tcp.flags.ack==0") == 1
    assert _tshark_count(pcap, port, f"tcp.srcport=={port} && tcp.flags.reset==1") == 1
    assert _tshark_count(pcap, port, "tcp.len > 0") == 0


@pytest.mark.tools
def test_reset_after_client_hello(tmp_path: Path, pki: Pki) -> None:
    _need_recording_tools()
    label, pcap, port = _rerecord("net_reset_after_client_hello", tmp_path, pki)
    assert (label.outcome, label.failed_step, label.cause) == ("failed", "server_hello", "reset_after_client_hello")
    assert label.alert is None
    assert _tshark_count(pcap, port, f"tcp.dstport=={port} && tls.handshake.type==1") == 1
    assert _tshark_count(pcap, port, f"tcp.srcport=={port} && tcp.flags.reset==1") >= 1
    assert _tshark_count(pcap, port, f"tcp.srcport=={port} && tcp.len > 0") == 0
    assert _tshark_count(pcap, port, f"tcp.srcport=={port} && tcp.flags.fin==1") == 0


@pytest.mark.tools
def test_closed_without_alert(tmp_path: Path, pki: Pki) -> None:
    _need_recording_tools()
    label, pcap, port = _rerecord("net_closed_without_alert", tmp_path, pki)
    assert (label.outcome, label.failed_step, label.cause) == ("failed", "server_hello", "closed_without_alert")
    assert _tshark_count(pcap, port, f"tcp.srcport=={port} && tcp.flags.fin==1") >= 1
    assert _tshark_count(pcap, port, f"tcp.srcport=={port} && (tcp.len > 0 || tcp.flags.reset==1)") == 0
    # Whatever alert the label names was sent by the client, after the server's FIN.
    if label.alert is not None:
        assert label.alert_sender == "client"
        assert _tshark_count(pcap, port, f"tcp.dstport=={port} && tls.alert_message") == 1


@pytest.mark.tools
@pytest.mark.slow
def test_packet_loss_recovered_retransmits_and_cleans_its_rules(tmp_path: Path, pki: Pki) -> None:
    label, pcap, port = _rerecord_with_iptables("net_packet_loss_recovered", tmp_path, pki)
    assert label.outcome == "established" and label.cause is None
    assert label.version == "TLS 1.3"
    assert "packet_loss" in (label.note or "")
    assert _tshark_count(pcap, port, f"tcp.srcport=={port} && tcp.analysis.retransmission") >= 1
    assert _tshark_count(pcap, port, f"tcp.dstport=={port} && tcp.analysis.retransmission") >= 1
    assert _tshark_count(pcap, port, "tls.handshake.type==2") == 1
    _assert_no_rules_left()


def _rerecord_with_iptables(name: str, tmp_path: Path, pki: Pki) -> tuple[Label, Path, int]:
    _need_recording_tools()
    if not net.iptables_available():
        pytest.skip("iptables is not installed or netfilter is unavailable")
    return _rerecord(name, tmp_path, pki)


def _assert_no_rules_left() -> None:
    rules = subprocess.run(["iptables", "-S", "INPUT"], check=False, capture_output=True, text=True, timeout=10).stdout
    assert "tlsflow-capture" not in rules


@pytest.mark.tools
@pytest.mark.slow
def test_packet_loss_after_handshake_loses_only_the_response(tmp_path: Path, pki: Pki) -> None:
    label, pcap, port = _rerecord_with_iptables("net_packet_loss_after_handshake", tmp_path, pki)
    assert label.outcome == "established" and label.cause is None
    retransmitted = f"tcp.srcport=={port} && tcp.analysis.retransmission"
    assert _tshark_count(pcap, port, retransmitted) >= 1
    assert _tshark_count(pcap, port, f"{retransmitted} && ip.len < {net.BULK_SEGMENT_MIN}") == 0
    assert _tshark_count(pcap, port, f"tcp.dstport=={port} && tcp.analysis.retransmission") == 0
    _assert_no_rules_left()


@pytest.mark.tools
def test_split_client_hello_reset_before_the_rest(tmp_path: Path, pki: Pki) -> None:
    _need_recording_tools()
    label, pcap, port = _rerecord("net_split_client_hello_reset", tmp_path, pki)
    assert (label.outcome, label.failed_step, label.cause) == ("failed", "client_hello", "reset_after_client_hello")
    assert _tshark_count(pcap, port, f"tcp.dstport=={port} && tcp.len == {net.ETHERNET_SEGMENT}") == 1
    assert _tshark_count(pcap, port, f"tcp.dstport=={port} && tcp.len > 0") == 1  # the rest never went out
    assert _tshark_count(pcap, port, f"tcp.srcport=={port} && tcp.flags.reset==1") == 1
    assert _tshark_count(pcap, port, "tls.handshake.type==1") == 0  # tshark cannot read a ClientHello cut short


@pytest.mark.tools
@pytest.mark.slow
def test_split_client_hello_silent(tmp_path: Path, pki: Pki) -> None:
    _need_recording_tools()
    label, pcap, port = _rerecord("net_split_client_hello_silent", tmp_path, pki)
    assert (label.outcome, label.failed_step, label.cause) == ("failed", "server_hello", "server_silent")
    assert _tshark_count(pcap, port, f"tcp.dstport=={port} && tcp.len > 0") == 2
    assert _tshark_count(pcap, port, "tls.handshake.type==1") == 1  # reassembled from the two
    assert _tshark_count(pcap, port, f"tcp.srcport=={port} && tcp.len > 0") == 0


@pytest.mark.tools
def test_record_split_client_hello_reset(tmp_path: Path, pki: Pki) -> None:
    _need_recording_tools()
    label, pcap, port = _rerecord("net_record_split_client_hello_reset", tmp_path, pki)
    assert (label.outcome, label.failed_step, label.cause) == ("failed", "server_hello", "reset_after_client_hello")
    assert _tshark_count(pcap, port, f"tcp.dstport=={port} && tcp.len > 0") == 1  # both records in one segment
    assert _tshark_count(pcap, port, f"tcp.dstport=={port} && tls.record.length == {net.RECORD_SPLIT_AT}") == 1
    assert _tshark_count(pcap, port, "tls.handshake.type==1") == 1  # reassembled from the two records
    assert _tshark_count(pcap, port, f"tcp.srcport=={port} && tcp.flags.reset==1") >= 1


@pytest.mark.tools
def test_record_split_client_hello_accepted(tmp_path: Path, pki: Pki) -> None:
    _need_recording_tools()
    label, pcap, port = _rerecord("net_record_split_client_hello_accepted", tmp_path, pki)
    assert (label.outcome, label.version, label.sni) == ("established", "TLS 1.3", pki.hostname)
    assert _tshark_count(pcap, port, f"tcp.dstport=={port} && tls.record.length == {net.RECORD_SPLIT_AT}") == 1
    assert _tshark_count(pcap, port, "tls.handshake.type==2") == 1


@pytest.mark.tools
@pytest.mark.parametrize(("name", "server_first"), [("net_client_half_close_after_hello", "tls.handshake.type==2"),
                                                    ("net_client_half_close_after_hello_tls12", "tls.handshake.type==14")])
def test_client_half_close_after_hello(tmp_path: Path, pki: Pki, name: str, server_first: str) -> None:
    _need_recording_tools()
    label, pcap, port = _rerecord(name, tmp_path, pki)
    assert (label.outcome, label.cause, label.alert_sender) == ("failed", "closed_without_alert", "server")
    assert _tshark_count(pcap, port, f"tcp.dstport=={port} && tcp.len > 0") == 1  # the ClientHello, nothing more
    fin = subprocess.run(["tshark", "-r", str(pcap), "-Y", f"tcp.dstport=={port} && tcp.flags.fin==1", "-T", "fields",
                          "-e", "frame.number"], capture_output=True, text=True, timeout=60, check=True).stdout.split()
    answer = subprocess.run(["tshark", "-r", str(pcap), "-n", "-d", f"tcp.port=={port},tls", "-Y", server_first,
                             "-T", "fields", "-e", "frame.number"],
                            capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert fin and answer and int(fin[0]) < int(answer[0])  # the client's FIN before the server's answer


@pytest.mark.tools
def test_smtp_starttls_refused(tmp_path: Path, pki: Pki) -> None:
    _need_recording_tools()
    label, pcap, port = _rerecord("smtp_starttls_refused", tmp_path, pki)
    assert (label.outcome, label.failed_step, label.cause) == ("failed", "server_hello", "not_tls")
    assert _tshark_count(pcap, port, f"tcp.dstport=={port} && tcp.payload contains \"STARTTLS\"") == 1
    assert _tshark_count(pcap, port, f"tcp.srcport=={port} && tcp.payload contains \"454 \"") == 1


def test_in_two_records_keeps_the_message_and_cuts_the_record() -> None:
    """The re-framing the two scenarios use, on a hand-built record: the same handshake bytes, two headers."""
    message = bytes([1, 0, 0, 96]) + bytes(range(96))
    hello = bytes([22, 3, 1, 0, 100]) + message
    split = net.in_two_records(hello, 50)
    assert split[:5] == bytes([22, 3, 1, 0, 50]) and split[55:60] == bytes([22, 3, 1, 0, 50])
    assert split[5:55] + split[60:] == message
    assert net.first_record_cuts_message(split) and not net.first_record_cuts_message(hello)
    with pytest.raises(net.ScenarioError):
        net.in_two_records(hello + b"\x17")


# ---------------------------------------------------------------------------------------------------------------
# The committed corpus
# ---------------------------------------------------------------------------------------------------------------
def _tls_part(data: bytes) -> bytes:
    """A direction's bytes from its first TLS handshake record on: past a plaintext prelude (an HTTP proxy's
    CONNECT exchange, SMTP up to STARTTLS)."""
    if data.startswith(b"\x16\x03"):
        return data
    at = data.find(b"\x16\x03")
    return data[at:] if at >= 0 else data


def _network_labels() -> list[dict]:
    return [label for label in corpus_labels() if label["scenario"] in NETWORK_NAMES]


def test_every_network_scenario_is_in_the_corpus_with_its_pcap(corpus_dir: Path) -> None:
    labels = _network_labels()
    assert {label["scenario"] for label in labels} == NETWORK_NAMES
    for label in labels:
        assert (corpus_dir / label["file"]).is_file(), label["file"]
        Label.from_dict(label)  # the contract's vocabulary


@pytest.mark.tools
@pytest.mark.parametrize("label", _network_labels(), ids=lambda label: f"{label['scenario']}#{label['flow']}")
def test_committed_network_label_matches_its_pcap(label: dict) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    flows = net.wire_flows(CORPUS / label["file"])
    flow = flows[label["flow"] - 1]
    assert (flow.client, flow.server) == (label["client"], label["server"])
    client, server = flow.sent_by_client(), flow.sent_by_server()
    if label["cause"] == "tcp_refused":
        assert [p.rst for p in server] == [True]
    elif label["cause"] == "tcp_no_answer":
        assert not server and len(client) >= 2
    elif label["cause"] in ("reset_after_client_hello", "reset_injected"):
        assert net.is_client_hello(flow.client_data())
        rst = next(p for p in server if p.rst)
        assert not any(p.tcp_len for p in server if p.frame < rst.frame)
        synack = next(p for p in server if p.syn)
        assert (rst.ttl != synack.ttl) == (label["cause"] == "reset_injected")
    elif label["cause"] == "reset_during_handshake":
        rst = next(p for p in server if p.rst)
        assert rst.ttl == next(p for p in server if p.syn).ttl
        assert any(p.tcp_len for p in server if p.frame < rst.frame)  # the server's flight came first
        assert any(p.tcp_len and p.seq > 1 for p in client if p.frame < rst.frame)  # and the client answered it
    elif label["cause"] == "closed_without_alert" and label["failed_step"] not in ("client_hello", "server_hello"):
        # The client closed right after its hello: the server's flight came after the client's FIN.
        fin = next(p for p in client if p.fin)
        assert net.is_client_hello(flow.client_data())
        assert not any(p.tcp_len for p in client if p.frame > fin.frame)
        assert all(p.frame > fin.frame for p in server if p.tcp_len) and flow.server_data()[:1] == b"\x16"
    elif label["cause"] in ("server_silent", "closed_without_alert"):
        assert net.is_client_hello(flow.client_data()) and not flow.server_data()
    elif label["cause"] == "packet_loss" or "packet_loss" in (label["note"] or ""):
        assert any(p.retransmission for p in flow.packets)
    elif label["cause"] == "mtu_blackhole":
        assert any(p.retransmission and p.ip_len >= net.SMALLEST_LOST for p in server)
    elif label["cause"] == "not_tls":
        assert net.is_client_hello(_tls_part(flow.client_data())) and flow.server_data()[:1] != b"\x16"
    elif label["outcome"] == "not_tls":
        assert not net.is_client_hello(flow.client_data())
    if label["outcome"] == "incomplete":
        assert not any(p.fin or p.rst for p in flow.packets)
    if label["outcome"] == "established":
        assert net.is_client_hello(_tls_part(flow.client_data())) and _tls_part(flow.server_data())[:1] == b"\x16"
