"""`tlsflow live` on loopback with real openssl servers and clients: records as connections end, SIGTERM keeps
everything seen, the --write capture reads back to the same verdicts, and no privilege gives one clear line.

Needs root (or CAP_NET_RAW) and the openssl binary; every process is bounded by a timeout and stopped by pid, and
all traffic stays on 127.0.0.1.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.tools,
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="live capture needs root"),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl binary"),
    pytest.mark.skipif(not Path("/sys/class/net/lo").exists(), reason="needs a Linux loopback interface"),
]

HOST = "server.tlsflow.test"
LIVE = [sys.executable, "-c", "import sys; from tlsflow.cli import main; sys.exit(main())", "live", "-i", "lo"]
START_TIMEOUT = 60  # loading the trust store and scapy on a slow CI machine


# --- a small PKI: the server's CA, and another CA that the failing client trusts instead ------------------------

def _write_pki(root: Path) -> dict[str, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def ca(cn: str):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn)).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .sign(key, hashes.SHA256()))
        return cert, key

    server_ca, server_ca_key = ca("tlsflow live test CA")
    other_ca, _ = ca("tlsflow live other CA")
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(name(HOST)).issuer_name(server_ca.subject)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
            .sign(server_ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    paths = {"server_ca": root / "server_ca.pem", "other_ca": root / "other_ca.pem", "cert": root / "leaf.pem",
             "key": root / "leaf.key"}
    paths["server_ca"].write_bytes(server_ca.public_bytes(pem))
    paths["other_ca"].write_bytes(other_ca.public_bytes(pem))
    paths["cert"].write_bytes(leaf.public_bytes(pem))
    paths["key"].write_bytes(leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    return paths


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    return _write_pki(tmp_path_factory.mktemp("pki"))


# --- processes --------------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lines:
    """Collects a process stream's lines on a thread, so that waiting for one line can be bounded."""

    def __init__(self, stream) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in iter(stream.readline, ""):
            self.queue.put(line)
        self.queue.put(None)

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line containing {text!r} within {timeout}s; got {self.seen!r}")
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"stream ended before a line containing {text!r}; got {self.seen!r}")
            self.seen.append(line)
            if text in line:
                return line

    def rest(self, timeout: float = 10) -> str:
        """Everything until the stream ends (the process has exited)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            self.seen.append(line)
        return "".join(self.seen)


@contextmanager
def _process(cmd: list[str], **kwargs) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(cmd, text=True, **kwargs)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _live(args: list[str]):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return _process(LIVE + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                    cwd=Path(__file__).resolve().parents[2])


def _server(pki: dict[str, Path], port: int, connections: int):
    """openssl s_server that exits after `connections` connections; yields once it accepts."""
    return _process(["timeout", "60", "openssl", "s_server", "-accept", f"127.0.0.1:{port}",
                     "-cert", str(pki["cert"]), "-key", str(pki["key"]), "-naccept", str(connections), "-www"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def _client(port: int, ca: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", HOST,
                           "-CAfile", str(ca), "-verify_return_error", "-verify_hostname", HOST],
                          input="", capture_output=True, check=False, text=True, timeout=20)


def _refused(port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)


# --- tests ------------------------------------------------------------------------------------------------------

def _endpoint_port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def test_live_reports_established_failed_and_refused(pki, tmp_path):
    port, closed = _free_port(), _free_port()
    out, saved = tmp_path / "live.jsonl", tmp_path / "live.pcapng"
    with _live(["--bpf", f"tcp port {port} or tcp port {closed}", "--format", "jsonl", "-o", str(out),
                "--write", str(saved), "--timeout", "8"]) as live:
        err = Lines(live.stderr)
        err.wait_for("capturing on lo", START_TIMEOUT)
        with _server(pki, port, 2) as server:
            Lines(server.stdout).wait_for("ACCEPT", 20)
            good = _client(port, pki["server_ca"])
            assert good.returncode == 0, good.stdout + good.stderr
            bad = _client(port, pki["other_ca"])
            assert bad.returncode != 0 and "unable to get local issuer certificate" in bad.stdout + bad.stderr
            _refused(closed)
        live.wait(timeout=60)
        stderr = err.rest()
    assert live.returncode == 1, stderr  # failed handshakes were reported
    assert "stopped by timeout" in stderr and "3 connection(s)" in stderr

    records = [json.loads(line) for line in out.read_text().splitlines()]
    by_port: dict[int, list[dict]] = {}
    for record in records:
        by_port.setdefault(_endpoint_port(record["server"]), []).append(record)
    assert sorted(len(v) for v in by_port.values()) == [1, 2], records
    established = [r for r in by_port[port] if r["outcome"] == "established"]
    failed = [r for r in by_port[port] if r["outcome"] == "failed"]
    assert len(established) == 1 and len(failed) == 1, by_port[port]
    assert established[0]["sni"] == HOST and established[0]["version"] == "TLS 1.3"
    assert failed[0]["failed_step"] == "server_certificate"
    assert failed[0]["cause"] == "cert_unknown_ca"
    assert failed[0]["alert"] == "unknown_ca" and failed[0]["alert_sender"] == "client"
    assert failed[0]["hint"]
    [refused] = by_port[closed]
    assert (refused["outcome"], refused["failed_step"], refused["cause"]) == ("failed", "tcp_connect", "tcp_refused")
    assert all(r["capture"] == "live:lo" for r in records)

    # The saved capture reads back (our own reader) to the same verdicts, frame numbers included.
    from tlsflow.api import iter_flows

    offline = {(r["client"], r["server"]): r for r in iter_flows(saved)}
    for record in records:
        again = offline[(record["client"], record["server"])]
        for name in ("outcome", "failed_step", "cause", "sni", "version", "first_frame", "evidence"):
            assert again[name] == record[name], name


def test_sigterm_flushes_open_connections_and_prints_the_summary(pki, tmp_path):
    port, closed = _free_port(), _free_port()
    saved = tmp_path / "live.pcapng"
    with _live(["--bpf", f"tcp port {port} or tcp port {closed}", "--write", str(saved), "--timeout", "60",
                "--idle-timeout", "60"]) as live:
        err, out = Lines(live.stderr), Lines(live.stdout)
        err.wait_for("capturing on lo", START_TIMEOUT)
        with _server(pki, port, 1) as server:
            Lines(server.stdout).wait_for("ACCEPT", 20)
            # A client that completes its handshake and stays connected: only the final flush can report it.
            with _process(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", HOST,
                           "-CAfile", str(pki["server_ca"]), "-verify_return_error"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as client:
                Lines(client.stdout).wait_for("Verify return code: 0", 20)
                _refused(closed)
                live.send_signal(signal.SIGTERM)
                live.wait(timeout=60)
                client.stdin.close()
        stderr, stdout = err.rest(), out.rest()
    assert live.returncode == 1, stderr
    assert "stopped by SIGTERM" in stderr
    lines = stdout.splitlines()
    assert any("established" in line and f"127.0.0.1:{port}" in line and f"sni={HOST}" in line for line in lines)
    assert any("tcp_refused" in line and f"127.0.0.1:{closed}" in line for line in lines)
    assert any(line.startswith("hint:") for line in (x.strip() for x in lines))
    assert "2 connection(s): 1 failed, 1 established" in stdout
    assert "failed at tcp_connect: tcp_refused" in stdout
    assert saved.stat().st_size > 0


def test_hostile_sni_is_escaped_in_the_text_report():
    from tlsflow.live import format_line

    line = format_line({"outcome": "failed", "client": "127.0.0.1:1", "server": "127.0.0.1:2",
                        "sni": "evil\x1b[2J.test", "failed_step": "server_hello", "cause": "handshake_failure",
                        "hint": "x\x1b]0;pwned\x07"}, colour=False)
    assert "\x1b" not in line and "\x07" not in line and "\\x1b[2J" in line


@pytest.mark.skipif(shutil.which("capsh") is None, reason="needs capsh to drop CAP_NET_RAW")
def test_without_cap_net_raw_one_clear_line_and_exit_3():
    command = " ".join(f"'{part}'" for part in LIVE + ["--timeout", "1"])
    done = subprocess.run(["capsh", "--drop=cap_net_raw", "--", "-c", command], capture_output=True, text=True,
                          timeout=60, check=False, env=dict(os.environ, PYTHONWARNINGS="ignore"),
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 3
    assert done.stderr.strip().splitlines()[-1] == (
        "tlsflow live: capturing on lo needs root or CAP_NET_RAW (try sudo, or setcap cap_net_raw+ep on the "
        "Python binary)")
    assert "Traceback" not in done.stderr


def test_unknown_interface_and_bad_filter():
    for args, code, text in ((["-i", "nosuchif0"], 3, "no such interface"),
                             (["-i", "lo", "--bpf", "tcp port"], 2, "tlsflow live:")):
        done = subprocess.run(LIVE[:-3] + ["live", *args, "--timeout", "1"], capture_output=True, text=True,
                              timeout=60, check=False, env=dict(os.environ, PYTHONWARNINGS="ignore"))
        assert done.returncode == code, done.stderr
        assert text in done.stderr and "Traceback" not in done.stderr


def _wait_for_records(path: Path, want: int, process: subprocess.Popen, timeout: float) -> list[dict]:
    """Records written so far, once there are `want` of them (the capture still running), within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "tlsflow live exited early"
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= want:
            return [json.loads(line) for line in lines]
        time.sleep(0.2)
    raise AssertionError(f"fewer than {want} record(s) in {path} within {timeout}s")


def test_idle_and_closed_connections_are_reported_while_the_capture_runs(pki, tmp_path):
    port, closed = _free_port(), _free_port()
    out = tmp_path / "live.jsonl"
    with _live(["--bpf", f"tcp port {port} or tcp port {closed}", "--format", "jsonl", "-o", str(out),
                "--idle-timeout", "2", "--timeout", "120"]) as live:
        err = Lines(live.stderr)
        err.wait_for("capturing on lo", START_TIMEOUT)
        _refused(closed)
        [refused] = _wait_for_records(out, 1, live, 60)  # reported once its linger is over, no packet needed
        assert refused["cause"] == "tcp_refused"
        with _server(pki, port, 1) as server:
            Lines(server.stdout).wait_for("ACCEPT", 20)
            with _process(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", HOST,
                           "-CAfile", str(pki["server_ca"])],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as client:
                Lines(client.stdout).wait_for("Verify return code: 0", 20)
                # The connection stays open and silent: the idle timeout reports it while live runs.
                records = _wait_for_records(out, 2, live, 60)
                live.send_signal(signal.SIGTERM)
                live.wait(timeout=60)
                client.stdin.close()
        stderr = err.rest()
    assert "stopped by SIGTERM" in stderr
    idle = records[1]
    assert (idle["outcome"], idle["sni"], _endpoint_port(idle["server"])) == ("established", HOST, port)
    final = [json.loads(line) for line in out.read_text().splitlines()]
    assert final == records  # nothing reported twice at the final flush


def test_count_stops_after_that_many_packets(tmp_path):
    closed = _free_port()
    out = tmp_path / "live.jsonl"
    with _live(["--bpf", f"tcp port {closed}", "--format", "jsonl", "-o", str(out), "--count", "2",
                "--timeout", "60"]) as live:
        err = Lines(live.stderr)
        err.wait_for("capturing on lo", START_TIMEOUT)
        _refused(closed)  # SYN, then RST: two packets
        live.wait(timeout=60)
        stderr = err.rest()
    assert "2 packet(s) captured; stopped by count" in stderr
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["cause"] == "tcp_refused"
    assert live.returncode == 1


@pytest.mark.parametrize("full", ["records", "capture"])
def test_a_full_disk_stops_the_capture_with_one_line(tmp_path, full):
    """/dev/full takes every write with ENOSPC: as the records' file (-o) or as the --write capture, one line says
    which file could not be written and why, the summary still comes on standard error, exit 2, no traceback."""
    closed = _free_port()
    records = "/dev/full" if full == "records" else str(tmp_path / "live.jsonl")
    saved = "/dev/full" if full == "capture" else str(tmp_path / "live.pcapng")
    with _live(["--bpf", f"tcp port {closed}", "--format", "jsonl", "-o", records, "--write", saved,
                "--count", "2", "--timeout", "60"]) as live:
        err = Lines(live.stderr)
        err.wait_for("capturing on lo", START_TIMEOUT)
        _refused(closed)  # SYN, then RST: two packets
        live.wait(timeout=60)
        stderr = err.rest()
    assert "Traceback" not in stderr
    assert "tlsflow live: cannot write /dev/full: No space left on device" in stderr
    assert "packet(s) captured; stopped by a write error" in stderr
    assert live.returncode == 2
