"""TLS scenarios: real servers and clients (OpenSSL, nginx, curl, GnuTLS, Python ssl) on 127.0.0.1.

Each scenario starts one server on its port, runs one or more clients against it while tcpdump records the port,
stops everything by pid and returns what each connection was meant to show. The recorder then checks those
labels against tshark's reading of the pcap (``captures.labels``), so a label that does not hold is an error,
not a silent lie. Where an implementation behaves differently from what one might expect (OpenSSL's s_server
ignoring an ALPN mismatch, nginx accepting a missing client certificate), the label says what really happened.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from captures.scenario import Label, Pki, Scenario
from captures.tcpdump import Tcpdump

GET = b"GET / HTTP/1.0\r\nHost: server.tlsflow.test\r\n\r\n"
CLIENT_TIMEOUT = 20.0
SERVER_START_TIMEOUT = 10.0
TCPDUMP_FLUSH_WAIT = 1.2

S_CLIENT = "openssl s_client (OpenSSL 3.0)"
S_SERVER = "openssl s_server (OpenSSL 3.0)"
CURL = "curl 7.88 (OpenSSL 3.0)"
NGINX = "nginx 1.22 (OpenSSL 3.0)"
GNUTLS = "gnutls-cli 3.7"
G_SERVER = "gnutls-serv 3.7, %DISABLE_SAFE_RENEGOTIATION"
PY_CLIENT = "python 3.11 ssl client (OpenSSL 3.0)"
PY_SERVER = "python 3.11 ssl server (OpenSSL 3.0)"


class ScenarioError(RuntimeError):
    """A scenario could not run as designed (a server did not start, a client behaved unexpectedly)."""


@dataclass(frozen=True, slots=True)
class Ctx:
    """What a command builder needs: where to write, which port, which certificates."""

    name: str
    workdir: Path
    tmp: Path
    port: int
    pki: Pki

    @property
    def keylog(self) -> Path:
        return self.workdir / f"{self.name}.keylog"

    def file(self, name: str) -> str:
        return str(self.pki.file(name))


@dataclass(frozen=True, slots=True)
class Command:
    argv: list[str]
    stdin: bytes = b""
    env: dict[str, str] = field(default_factory=dict)


Builder = Callable[[Ctx], Command]


# ---------------------------------------------------------------- processes


def listening(port: int, net: str = "/proc/net") -> bool:
    """Whether something listens on `port`, read from /proc so that probing makes no packet on the wire. `net`:
    another network namespace's tables (`/proc/PID/net` of a process inside it)."""
    for table in (f"{net}/tcp", f"{net}/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


class _Server:
    """A server process started for one scenario, stopped by its pid however the scenario ends."""

    def __init__(self, command: Command, ctx: Ctx, *, stop_signal: int = signal.SIGTERM) -> None:
        self.command = command
        self.ctx = ctx
        self.stop_signal = stop_signal
        self.log = ctx.tmp / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(self.command.argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env={**os.environ, **self.command.env},
                                         cwd=self.ctx.tmp)
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not listening(self.ctx.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ScenarioError(f"{self.ctx.name}: server did not listen on {self.ctx.port}: "
                                    f"{self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True, slots=True)
class ClientRun:
    returncode: int
    output: str


def _run_client(command: Command, ctx: Ctx) -> ClientRun:
    try:
        proc = subprocess.run(command.argv, input=command.stdin, capture_output=True, timeout=CLIENT_TIMEOUT,
                              env={**os.environ, **command.env}, cwd=ctx.tmp, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ScenarioError(f"{ctx.name}: client {command.argv[0]} did not finish in {CLIENT_TIMEOUT} s") from exc
    output = (proc.stdout + proc.stderr).decode(errors="replace")
    return ClientRun(proc.returncode, output)


# ---------------------------------------------------------------- servers


def s_server(*extra: str, cert: str = "server-leaf.pem", key: str = "server.key",
             chain: str | None = "intermediate.pem", naccept: int = 1, keylog: bool = True) -> Builder:
    """openssl s_server answering `GET /` with its status page, exiting after `naccept` connections."""
    def build(ctx: Ctx) -> Command:
        argv = ["openssl", "s_server", "-accept", f"127.0.0.1:{ctx.port}", "-cert", ctx.file(cert),
                "-key", ctx.file(key), "-www", "-naccept", str(naccept)]
        if chain:
            argv += ["-cert_chain", ctx.file(chain)]
        if keylog:
            argv += ["-keylogfile", str(ctx.tmp / "server.keylog")]
        return Command(argv + [a.format(**_vars(ctx)) for a in extra])
    return build


def nginx(*, protocols: str = "TLSv1.2 TLSv1.3", http2: bool = False, extra: str = "",
          cert: str = "server.pem") -> Builder:
    """nginx with a minimal configuration in the scenario's temp dir, in the foreground, as root."""
    def build(ctx: Ctx) -> Command:
        prefix = ctx.tmp / "nginx"
        (prefix / "logs").mkdir(parents=True, exist_ok=True)
        listen = f"127.0.0.1:{ctx.port} ssl" + (" http2" if http2 else "")
        conf = f"""
user root;
worker_processes 1;
error_log {prefix}/logs/error.log info;
pid {prefix}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy; fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi; scgi_temp_path {prefix}/scgi;
    server {{
        listen {listen};
        server_name {ctx.pki.hostname};
        ssl_certificate {ctx.file(cert)};
        ssl_certificate_key {ctx.pki.server_key};
        ssl_protocols {protocols};
        ssl_session_cache shared:tlsflow:1m;
        {extra.format(**_vars(ctx))}
        location / {{ default_type text/plain; return 200 "ok ssl_client_verify=$ssl_client_verify\\n"; }}
    }}
}}
"""
        (prefix / "nginx.conf").write_text(conf)
        return Command(["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"])
    return build


PY_SERVER_SCRIPT = r"""
import json, socket, ssl, sys
cfg = json.loads(sys.argv[1])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cfg["cert"], cfg["key"])
if cfg.get("min"): ctx.minimum_version = ssl.TLSVersion[cfg["min"]]
if cfg.get("max"): ctx.maximum_version = ssl.TLSVersion[cfg["max"]]
if cfg.get("alpn"): ctx.set_alpn_protocols(cfg["alpn"])
if cfg.get("client_ca"):
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cfg["client_ca"])
if cfg.get("keylog"): ctx.keylog_filename = cfg["keylog"]
if cfg.get("sni_only"):
    def on_sni(sock, name, context):
        # The server knows exactly one name: anything else gets a fatal unrecognized_name alert.
        return None if name == cfg["sni_only"] else ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
    ctx.sni_callback = on_sni
if cfg.get("sni_required"):
    def on_sni(sock, name, context):
        # As CDNs and multi-site servers do: a ClientHello without a server name is refused outright.
        return None if name else ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
    ctx.sni_callback = on_sni
srv = socket.create_server(("127.0.0.1", cfg["port"]))
srv.settimeout(20)
for _ in range(cfg.get("naccept", 1)):
    conn, _ = srv.accept()
    conn.settimeout(10)
    try:
        tls = ctx.wrap_socket(conn, server_side=True)
        tls.recv(4096)
        tls.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
        # close_notify first: a bare FIN makes OpenSSL 3 clients see an unexpected EOF.
        tls.unwrap().close()
    except (OSError, ssl.SSLError) as exc:
        print("handshake:", exc, file=sys.stderr)
        conn.close()
srv.close()
"""


def py_server(**cfg: Any) -> Builder:
    """A Python ssl server (a separate process): cert/key/client_ca are PKI file names."""
    def build(ctx: Ctx) -> Command:
        full = dict(cfg, port=ctx.port, keylog=str(ctx.tmp / "server.keylog"))
        full["cert"] = ctx.file(cfg.get("cert", "server.pem"))
        full["key"] = ctx.file(cfg.get("key", "server.key"))
        if "client_ca" in cfg:
            full["client_ca"] = ctx.file(cfg["client_ca"])
        return Command([sys.executable, "-c", PY_SERVER_SCRIPT, json.dumps(full)])
    return build


Rewrite = Callable[[str, bytes], bytes]  # (sender "client"/"server", one whole TLS record) -> bytes to forward


class _RecordRelay:
    """A loopback relay that hands each whole TLS record to a rewrite function before forwarding it.

    It makes what no real server or client will do on purpose: a certificate that does not match the key that
    signs (no server loads such a pair), a corrupted Finished. `rewriter()` gives a fresh rewrite function (with
    its own state) per connection. Threads are daemons with socket timeouts, joined on exit; only the relay's
    port is recorded.
    """

    def __init__(self, listen_port: int, upstream_port: int, rewriter: Callable[[], Rewrite]) -> None:
        self.listen = socket.create_server(("127.0.0.1", listen_port))
        self.listen.settimeout(0.2)
        self.upstream_port = upstream_port
        self.rewriter = rewriter
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Self:
        self._spawn(self._accept_loop)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self.listen.close()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listen.accept()
            except TimeoutError:
                continue
            server = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            client.settimeout(10)
            rewrite = self.rewriter()
            self._spawn(self._pump, client, server, "client", rewrite)
            self._spawn(self._pump, server, client, "server", rewrite)

    def _pump(self, src: socket.socket, dst: socket.socket, sender: str, rewrite: Rewrite) -> None:
        pending = b""
        try:
            while not self._stop.is_set():
                try:
                    data = src.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                pending += data
                out = b""
                while len(pending) >= 5 and len(pending) >= 5 + int.from_bytes(pending[3:5], "big"):
                    size = 5 + int.from_bytes(pending[3:5], "big")
                    out += rewrite(sender, pending[:size])
                    pending = pending[size:]
                if out:
                    dst.sendall(out)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            src.close()


def _swap_certificate(pki: Pki, done: list[bool]) -> Callable[[], Rewrite]:
    """Replace the server's leaf (DER) by its same-length twin for another key in the server's records."""
    old, new = _der(pki.server_cert), _der(pki.file("mismatch-leaf.pem"))

    def rewriter() -> Rewrite:
        def rewrite(sender: str, record: bytes) -> bytes:
            if sender == "server" and old in record:
                done.append(True)
                return record.replace(old, new)
            return record
        return rewrite
    return rewriter


def _corrupt_client_finished(pki: Pki, done: list[bool]) -> Callable[[], Rewrite]:
    """Flip the last byte (inside the AEAD tag) of the client's first encrypted record after its CCS: Finished."""
    def rewriter() -> Rewrite:
        seen_ccs = [False]

        def rewrite(sender: str, record: bytes) -> bytes:
            if sender != "client":
                return record
            if record[0] == 20:
                seen_ccs[0] = True
            elif seen_ccs[0] and not done and record[0] in (22, 23):
                done.append(True)
                return record[:-1] + bytes([record[-1] ^ 0x01])
            return record
        return rewrite
    return rewriter


def _der(path: Path) -> bytes:
    pem = path.read_bytes()
    return ssl.PEM_cert_to_DER_cert(pem.decode())


def _relayed_scenario(name: str, description: str, server: Builder, client: Builder,
                      rewriter: Callable[[Pki, list[bool]], Callable[[], Rewrite]], label: dict[str, Any],
                      tags: tuple[str, ...]) -> Scenario:
    """Client → record relay (on the recorded port) → server (port + 1, not recorded)."""
    def run(workdir: Path, port: int, pki: Pki) -> list[Label]:
        tmp = Path(tempfile.mkdtemp(prefix=f"tlsflow-{name}-"))
        server_ctx = Ctx(name=name, workdir=workdir, tmp=tmp, port=port + 1, pki=pki)
        client_ctx = Ctx(name=name, workdir=workdir, tmp=tmp, port=port, pki=pki)
        client_ctx.keylog.unlink(missing_ok=True)
        done: list[bool] = []
        try:
            relay = _RecordRelay(port, port + 1, rewriter(pki, done))
            with Tcpdump(workdir / f"{name}.pcap", f"tcp port {port}"), _Server(server(server_ctx), server_ctx), \
                    relay:
                result = _run_client(client(client_ctx), client_ctx)
                time.sleep(TCPDUMP_FLUSH_WAIT)
            if not done or (result.returncode == 0) != (label["outcome"] == "established"):
                raise ScenarioError(f"{name}: rewritten={bool(done)}, client exit {result.returncode}:\n"
                                    f"{result.output[-2000:]}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _drop_empty_keylog(client_ctx.keylog)
        return [Label(scenario=name, file=f"{name}.pcap", flow=1, **label)]

    return Scenario(name=name, description=description, run=run, tags=tags)


# ---------------------------------------------------------------- clients


def _vars(ctx: Ctx) -> dict[str, str]:
    return {"port": str(ctx.port), "host": ctx.pki.hostname, "tmp": str(ctx.tmp), "pki": str(ctx.pki.root)}


def s_client(*extra: str, sni: bool = True, verify: bool = True, keylog: bool = True, prefix: tuple[str, ...] = (),
             sess_out: bool = False, sess_in: bool = False) -> Builder:
    """openssl s_client verifying the server (the handshake fails on a bad certificate), sending one GET."""
    def build(ctx: Ctx) -> Command:
        argv = [*prefix, "openssl", "s_client", "-connect", f"127.0.0.1:{ctx.port}", "-ign_eof"]
        argv += ["-servername", ctx.pki.hostname] if sni else ["-noservername"]
        if verify:
            argv += ["-CAfile", str(ctx.pki.ca_cert), "-verify_return_error", "-verify_hostname", ctx.pki.hostname]
        if keylog:
            argv += ["-keylogfile", str(ctx.keylog)]
        if sess_out:
            argv += ["-sess_out", str(ctx.tmp / "session.pem")]
        if sess_in:
            argv += ["-sess_in", str(ctx.tmp / "session.pem")]
        return Command(argv + [a.format(**_vars(ctx)) for a in extra], stdin=GET)
    return build


def curl(*extra: str, path: str = "/", by_address: bool = False) -> Builder:
    """curl verifying the server; `by_address`: to https://127.0.0.1 (no SNI: curl sends none for an address)."""
    def build(ctx: Ctx) -> Command:
        url = f"https://{'127.0.0.1' if by_address else ctx.pki.hostname}:{ctx.port}{path}"
        argv = ["curl", "-sS", "-o", "/dev/null", "--max-time", "10", "--cacert", str(ctx.pki.ca_cert),
                "--resolve", f"{ctx.pki.hostname}:{ctx.port}:127.0.0.1", url]
        return Command(argv + [a.format(**_vars(ctx), url=url) for a in extra], env={"SSLKEYLOGFILE": str(ctx.keylog)})
    return build


def plain_tcp_client(*, wait: float, speak_first: bool = False) -> Builder:
    """A client that opens a TCP connection and sends nothing: it closes after `wait` seconds (a TCP-only health
    check), or, `speak_first`, waits up to `wait` seconds for the server to speak first (an SMTP client on an
    implicit-TLS port) and exits 1 when the server closes instead."""
    def build(ctx: Ctx) -> Command:
        if speak_first:
            code = (f"import socket, sys; s = socket.create_connection(('127.0.0.1', {ctx.port})); "
                    f"s.settimeout({wait}); sys.exit(0 if s.recv(1) else 1)")
        else:
            code = (f"import socket, time; s = socket.create_connection(('127.0.0.1', {ctx.port})); "
                    f"time.sleep({wait}); s.close()")
        return Command([sys.executable, "-c", code])
    return build


def gnutls_serv(*extra: str, cert: str = "server.pem", key: str = "server.key") -> Builder:
    """gnutls-serv answering HTTP (its status page), with the valid chain unless told otherwise."""
    def build(ctx: Ctx) -> Command:
        argv = ["gnutls-serv", "-p", str(ctx.port), "--http", "--x509certfile", ctx.file(cert), "--x509keyfile",
                ctx.file(key)]
        return Command(argv + [a.format(**_vars(ctx)) for a in extra])
    return build


def gnutls_cli(*extra: str, keylog: bool = True) -> Builder:
    """gnutls-cli: unlike OpenSSL's clients it encrypts the alerts it sends once TLS 1.3 handshake keys exist."""
    def build(ctx: Ctx) -> Command:
        argv = ["gnutls-cli", "127.0.0.1", "-p", str(ctx.port), "--sni-hostname", ctx.pki.hostname,
                "--verify-hostname", ctx.pki.hostname, "--x509cafile", str(ctx.pki.ca_cert)]
        env = {"SSLKEYLOGFILE": str(ctx.keylog)} if keylog else {}
        return Command(argv + [a.format(**_vars(ctx)) for a in extra], stdin=GET, env=env)
    return build


PY_CLIENT_SCRIPT = r"""
import json, socket, ssl, sys
cfg = json.loads(sys.argv[1])
ctx = ssl.create_default_context(cafile=cfg["ca"])
if cfg.get("min"): ctx.minimum_version = ssl.TLSVersion[cfg["min"]]
if cfg.get("max"): ctx.maximum_version = ssl.TLSVersion[cfg["max"]]
if cfg.get("alpn"): ctx.set_alpn_protocols(cfg["alpn"])
if cfg.get("cert"): ctx.load_cert_chain(cfg["cert"], cfg["key"])
ctx.keylog_filename = cfg["keylog"]
sock = socket.create_connection(("127.0.0.1", cfg["port"]), timeout=10)
try:
    tls = ctx.wrap_socket(sock, server_hostname=cfg["sni"])
except (OSError, ssl.SSLError) as exc:
    print("handshake:", exc)
    sys.exit(2)
print(json.dumps({"version": tls.version(), "alpn": tls.selected_alpn_protocol()}))
tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
try:
    while tls.recv(4096):
        pass
    tls.unwrap()
except (OSError, ssl.SSLError) as exc:
    print("after handshake:", exc)
tls.close()
"""


def py_client(**cfg: Any) -> Builder:
    def build(ctx: Ctx) -> Command:
        full = dict(cfg, port=ctx.port, ca=str(ctx.pki.ca_cert), sni=cfg.get("sni", ctx.pki.hostname),
                    keylog=str(ctx.keylog))
        if "cert" in cfg:
            full["cert"], full["key"] = ctx.file(cfg["cert"]), ctx.file(cfg["key"])
        return Command([sys.executable, "-c", PY_CLIENT_SCRIPT, json.dumps(full)])
    return build


# ---------------------------------------------------------------- scenario assembly


def _drop_empty_keylog(path: Path) -> None:
    """A key log without a secret (the handshake failed before any key existed) is only noise in the corpus."""
    if path.exists() and not any(line.strip() and not line.startswith("#")
                                 for line in path.read_text(errors="replace").splitlines()):
        path.unlink()


def _tls_scenario(name: str, description: str, server: Builder, clients: list[Builder],
                  expect: list[dict[str, Any] | list[dict[str, Any]]], *, tags: tuple[str, ...] = (),
                  server_stop: int = signal.SIGTERM) -> Scenario:
    """A scenario: one server, clients run one after the other, one expected label per client connection.

    Each `expect` entry holds Label fields (a list of them when one client run makes several connections); `ok` (default: outcome == "established") is whether the client must
    exit 0 — a client that succeeds where it should fail (or the reverse) means the scenario is broken.
    """
    def run(workdir: Path, port: int, pki: Pki) -> list[Label]:
        workdir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"tlsflow-{name}-"))
        ctx = Ctx(name=name, workdir=workdir, tmp=tmp, port=port, pki=pki)
        ctx.keylog.unlink(missing_ok=True)
        labels = []
        try:
            with Tcpdump(workdir / f"{name}.pcap", f"tcp port {port}"), _Server(server(ctx), ctx,
                                                                               stop_signal=server_stop):
                for index, (client, want) in enumerate(zip(clients, expect, strict=True), start=1):
                    flows = [dict(w) for w in (want if isinstance(want, list) else [want])]
                    must_succeed = flows[0].pop("ok", flows[0]["outcome"] == "established")
                    result = _run_client(client(ctx), ctx)
                    if (result.returncode == 0) != must_succeed:
                        raise ScenarioError(f"{name}: client {index} exited {result.returncode}, expected "
                                            f"{'success' if must_succeed else 'failure'}:\n{result.output[-3000:]}")
                    for flow in flows:
                        flow.pop("ok", None)
                        labels.append(Label(scenario=name, file=f"{name}.pcap", flow=len(labels) + 1, **flow))
                    time.sleep(0.1)
                # tcpdump (without --immediate-mode) hands packets over in blocks retired every second or so;
                # stopping it sooner loses the tail of the capture (or all of it).
                time.sleep(TCPDUMP_FLUSH_WAIT)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _drop_empty_keylog(ctx.keylog)
        return labels
    return Scenario(name=name, description=description, run=run, tags=tags)


def ok(version: str, client_impl: str, server_impl: str, **more: Any) -> dict[str, Any]:
    return {"outcome": "established", "version": version, "resumed": False, "client_impl": client_impl,
            "server_impl": server_impl, **more}


def fail(step: str, cause: str, alert: str | None, sender: str | None, client_impl: str, server_impl: str,
         **more: Any) -> dict[str, Any]:
    return {"outcome": "failed", "failed_step": step, "cause": cause, "alert": alert, "alert_sender": sender,
            "client_impl": client_impl, "server_impl": server_impl, **more}


V12, V13 = "TLS 1.2", "TLS 1.3"
T12, T13 = "-tls1_2", "-tls1_3"

SCENARIOS: list[Scenario] = []
_add = SCENARIOS.append

# ---- established
_add(_tls_scenario(
    "tls12_established_plain", "TLS 1.2 full handshake, no SNI, openssl s_client to s_server",
    s_server(T12), [s_client(sni=False)], [ok(V12, S_CLIENT, S_SERVER)], tags=("fast", "tls12")))
_add(_tls_scenario(
    "tls13_established_plain", "TLS 1.3 full handshake, no SNI, openssl s_client to s_server",
    s_server(T13), [s_client(sni=False)], [ok(V13, S_CLIENT, S_SERVER)], tags=("fast", "tls13")))
_add(_tls_scenario(
    "tls12_established_sni_curl_nginx", "TLS 1.2 with SNI, curl to nginx",
    nginx(protocols="TLSv1.2"), [curl("--tlsv1.2", "--tls-max", "1.2")],
    [ok(V12, CURL, NGINX, sni="server.tlsflow.test")], tags=("tls12",), server_stop=signal.SIGQUIT))
_add(_tls_scenario(
    "tls13_established_sni_curl_nginx", "TLS 1.3 with SNI, curl to nginx",
    nginx(protocols="TLSv1.3"), [curl("--tlsv1.3")],
    [ok(V13, CURL, NGINX, sni="server.tlsflow.test")], tags=("fast", "tls13"), server_stop=signal.SIGQUIT))
_add(_tls_scenario(
    "tls12_established_alpn_h2", "TLS 1.2, curl offers h2 and http/1.1, nginx selects h2",
    nginx(protocols="TLSv1.2", http2=True), [curl("--http2", "--tlsv1.2", "--tls-max", "1.2")],
    [ok(V12, CURL, NGINX, sni="server.tlsflow.test", alpn="h2")], tags=("tls12",), server_stop=signal.SIGQUIT))
_add(_tls_scenario(
    "tls13_established_alpn_h2", "TLS 1.3, curl offers h2 and http/1.1, nginx selects h2 (in EncryptedExtensions)",
    nginx(protocols="TLSv1.3", http2=True), [curl("--http2", "--tlsv1.3")],
    [ok(V13, CURL, NGINX, sni="server.tlsflow.test", alpn="h2")], tags=("tls13",), server_stop=signal.SIGQUIT))
_add(_tls_scenario(
    "tls13_established_python", "TLS 1.3 between Python's ssl client and server, ALPN http/1.1",
    py_server(alpn=["http/1.1"]), [py_client(alpn=["h2", "http/1.1"])],
    [ok(V13, PY_CLIENT, PY_SERVER, sni="server.tlsflow.test", alpn="http/1.1")], tags=("fast", "tls13")))
_add(_tls_scenario(
    "tls12_established_gnutls", "TLS 1.2, gnutls-cli to s_server",
    s_server(T12), [gnutls_cli()], [ok(V12, GNUTLS, S_SERVER, sni="server.tlsflow.test")], tags=("tls12",)))
_add(_tls_scenario(
    "tls13_established_gnutls", "TLS 1.3, gnutls-cli to s_server",
    s_server(T13), [gnutls_cli()], [ok(V13, GNUTLS, S_SERVER, sni="server.tlsflow.test")], tags=("tls13",)))
_add(_tls_scenario(
    "tls12_resumed_session_id", "TLS 1.2 resumption by session ID (tickets off): full handshake, then abbreviated",
    s_server(T12, "-no_ticket", naccept=2), [s_client(sess_out=True), s_client(sess_in=True)],
    [ok(V12, S_CLIENT, S_SERVER), ok(V12, S_CLIENT, S_SERVER, resumed=True)], tags=("tls12",)))
_add(_tls_scenario(
    "tls12_resumed_ticket", "TLS 1.2 resumption by session ticket (RFC 5077): full handshake, then abbreviated",
    s_server(T12, naccept=2), [s_client(sess_out=True), s_client(sess_in=True)],
    [ok(V12, S_CLIENT, S_SERVER), ok(V12, S_CLIENT, S_SERVER, resumed=True)], tags=("tls12",)))
_add(_tls_scenario(
    "tls13_resumed_psk", "TLS 1.3 resumption with a PSK from a NewSessionTicket: full handshake, then psk_dhe_ke",
    s_server(T13, naccept=2), [s_client(sess_out=True), s_client(sess_in=True)],
    [ok(V13, S_CLIENT, S_SERVER), ok(V13, S_CLIENT, S_SERVER, resumed=True)], tags=("fast", "tls13")))
_add(_tls_scenario(
    "tls12_resumed_curl_nginx", "TLS 1.2, curl fetches two URLs on two connections, the second resumes",
    nginx(protocols="TLSv1.2"), [curl("--tlsv1.2", "--tls-max", "1.2", "-H", "Connection: close",
                                       "-o", "/dev/null", "{url}")],
    [[ok(V12, CURL, NGINX, sni="server.tlsflow.test"),
      ok(V12, CURL, NGINX, sni="server.tlsflow.test", resumed=True,
         note="one curl run with two URLs and Connection: close; curl resumes its cached session")]],
    tags=("tls12",), server_stop=signal.SIGQUIT))
_add(_tls_scenario(
    "tls12_mutual_tls", "TLS 1.2 with a client certificate the server requires and trusts",
    s_server(T12, "-Verify", "1", "-verifyCAfile", "{pki}/ca.pem"),
    [s_client("-cert", "{pki}/client.pem", "-key", "{pki}/client.key")],
    [ok(V12, S_CLIENT, S_SERVER)], tags=("tls12",)))
_add(_tls_scenario(
    "tls13_mutual_tls", "TLS 1.3 with a client certificate the server requires and trusts",
    s_server(T13, "-Verify", "1", "-verifyCAfile", "{pki}/ca.pem"),
    [s_client("-cert", "{pki}/client.pem", "-key", "{pki}/client.key")],
    [ok(V13, S_CLIENT, S_SERVER)], tags=("tls13",)))
_add(_tls_scenario(
    "tls13_hello_retry_request", "TLS 1.3 HelloRetryRequest: the client sends an X25519 key share, the server "
    "accepts only P-256 and asks again",
    s_server(T13, "-groups", "P-256"), [s_client("-groups", "X25519:P-256")],
    [ok(V13, S_CLIENT, S_SERVER, note="two ClientHellos, the first answered by a HelloRetryRequest")],
    tags=("fast", "tls13")))

# ---- server certificate rejected by the client
_add(_tls_scenario(
    "tls13_cert_expired", "TLS 1.3, the server's certificate expired a year ago; s_client rejects it",
    s_server(T13, cert="expired.pem"), [s_client()],
    [fail("server_certificate", "cert_expired", "certificate_expired", "client", S_CLIENT, S_SERVER, version=V13)],
    tags=("fast", "tls13")))
_add(_tls_scenario(
    "tls12_cert_expired", "TLS 1.2, the server's certificate expired a year ago; curl rejects it",
    s_server(T12, cert="expired.pem"), [curl()],
    [fail("server_certificate", "cert_expired", "certificate_expired", "client", CURL, S_SERVER, version=V12)],
    tags=("tls12",)))
_add(_tls_scenario(
    "tls12_cert_not_yet_valid", "TLS 1.2, the server's certificate becomes valid next year; s_client rejects it",
    s_server(T12, cert="notyet.pem"), [s_client()],
    [fail("server_certificate", "cert_not_yet_valid", "bad_certificate", "client", S_CLIENT, S_SERVER,
          version=V12)], tags=("tls12",)))
_add(_tls_scenario(
    "tls13_cert_not_yet_valid", "TLS 1.3, the server's certificate becomes valid next year; Python rejects it",
    s_server(T13, cert="notyet.pem"), [py_client()],
    [fail("server_certificate", "cert_not_yet_valid", "bad_certificate", "client", PY_CLIENT, S_SERVER,
          version=V13)], tags=("tls13",)))
_add(_tls_scenario(
    "tls13_cert_hostname_mismatch", "TLS 1.3, the certificate names other.tlsflow.test; curl asked for "
    "server.tlsflow.test",
    s_server(T13, cert="wronghost.pem"), [curl()],
    [fail("server_certificate", "cert_hostname_mismatch", None, None, CURL, S_SERVER, version=V13, ok=False,
          note="curl checks the host name itself after the handshake: the TLS handshake completes, then curl "
               "closes with an encrypted close_notify without sending its request; no fatal alert")],
    tags=("tls13",)))
_add(_tls_scenario(
    "tls12_cert_hostname_mismatch", "TLS 1.2, the certificate names other.tlsflow.test; s_client checks the name",
    s_server(T12, cert="wronghost.pem"), [s_client()],
    [fail("server_certificate", "cert_hostname_mismatch", "bad_certificate", "client", S_CLIENT, S_SERVER,
          version=V12)], tags=("tls12",)))
_add(_tls_scenario(
    "tls12_cert_self_signed", "TLS 1.2, the server sends a self-signed certificate; Python rejects it",
    s_server(T12, cert="selfsigned.pem", key="selfsigned.key", chain=None), [py_client()],
    [fail("server_certificate", "cert_self_signed", "unknown_ca", "client", PY_CLIENT, S_SERVER, version=V12)],
    tags=("tls12",)))
_add(_tls_scenario(
    "tls13_cert_self_signed", "TLS 1.3, the server sends a self-signed certificate; s_client rejects it",
    s_server(T13, cert="selfsigned.pem", key="selfsigned.key", chain=None), [s_client()],
    [fail("server_certificate", "cert_self_signed", "unknown_ca", "client", S_CLIENT, S_SERVER, version=V13)],
    tags=("tls13",)))
_add(_tls_scenario(
    "tls12_cert_unknown_ca", "TLS 1.2, the certificate chains to a root the client does not trust; s_client",
    s_server(T12, cert="otherca.pem", chain=None), [s_client()],
    [fail("server_certificate", "cert_unknown_ca", "unknown_ca", "client", S_CLIENT, S_SERVER, version=V12)],
    tags=("fast", "tls12")))
_add(_tls_scenario(
    "tls13_cert_unknown_ca_gnutls", "TLS 1.3, unknown root; gnutls-cli rejects it with an ENCRYPTED alert",
    s_server(T13, cert="otherca.pem", chain=None), [gnutls_cli()],
    [fail("server_certificate", "cert_unknown_ca", "encrypted", "client", GNUTLS, S_SERVER, version=V13)],
    tags=("fast", "tls13")))
_add(_tls_scenario(
    "tls12_cert_unknown_ca_gnutls", "TLS 1.2, unknown root; gnutls-cli rejects it (plaintext alert in 1.2)",
    s_server(T12, cert="otherca.pem", chain=None), [gnutls_cli()],
    [fail("server_certificate", "cert_unknown_ca", "bad_certificate", "client", GNUTLS, S_SERVER, version=V12,
          note="GnuTLS answers every verification failure with bad_certificate")],
    tags=("tls12",)))
_add(_tls_scenario(
    "tls13_cert_incomplete_chain", "TLS 1.3, the server sends its leaf without the intermediate; s_client "
    "cannot build the chain",
    s_server(T13, chain=None), [s_client()],
    [fail("server_certificate", "cert_incomplete_chain", "unknown_ca", "client", S_CLIENT, S_SERVER,
          version=V13)], tags=("tls13",)))
_add(_tls_scenario(
    "tls12_cert_incomplete_chain", "TLS 1.2, nginx configured with the leaf only; curl cannot build the chain",
    nginx(protocols="TLSv1.2", cert="leaf-only.pem"), [curl()],
    [fail("server_certificate", "cert_incomplete_chain", "unknown_ca", "client", CURL, NGINX, version=V12)],
    tags=("tls12",), server_stop=signal.SIGQUIT))
_add(_tls_scenario(
    "tls12_cert_revoked_ocsp_gnutls", "TLS 1.2, s_server staples an OCSP response saying revoked; gnutls-cli "
    "--ocsp rejects the certificate",
    s_server(T12, "-status_file", "{pki}/revoked.ocsp", cert="revoked.pem"), [gnutls_cli("--ocsp")],
    [fail("server_certificate", "cert_revoked", "bad_certificate", "client", GNUTLS, S_SERVER, version=V12,
          note="the revocation is visible in the stapled OCSP response (CertificateStatus); GnuTLS alerts "
               "bad_certificate")],
    tags=("tls12",)))
_add(_tls_scenario(
    "tls13_cert_revoked_ocsp_gnutls", "TLS 1.3, stapled OCSP response says revoked; gnutls-cli --ocsp rejects it",
    s_server(T13, "-status_file", "{pki}/revoked.ocsp", cert="revoked.pem"), [gnutls_cli("--ocsp")],
    [fail("server_certificate", "cert_revoked", "encrypted", "client", GNUTLS, S_SERVER, version=V13)],
    tags=("tls13",)))
_add(_tls_scenario(
    "tls12_cert_weak_rsa1024", "TLS 1.2, a 1024-bit RSA server key (server at SECLEVEL 0); s_client at "
    "the default SECLEVEL 2 rejects it",
    s_server(T12, "-cipher", "DEFAULT:@SECLEVEL=0", cert="weak1024.pem", key="weak1024.key"), [s_client()],
    [fail("server_certificate", "cert_weak", "bad_certificate", "client", S_CLIENT, S_SERVER, version=V12,
          note="OpenSSL verification error 66: EE certificate key too weak")],
    tags=("tls12",)))
_add(_tls_scenario(
    "tls13_cert_sha1_signature", "TLS 1.3, leaf signed with SHA-1; s_client at SECLEVEL 2 rejects it",
    s_server(T13, "-cipher", "DEFAULT:@SECLEVEL=0", cert="sha1.pem"), [s_client()],
    [fail("server_certificate", "cert_weak", "bad_certificate", "client", S_CLIENT, S_SERVER, version=V13)],
    tags=("tls13",)))

# ---- negotiation
_add(_tls_scenario(
    "no_common_version_old_client", "a TLS 1.2-only client against a TLS 1.3-only server",
    s_server(T13), [s_client(T12)],
    [fail("server_hello", "no_common_version", "protocol_version", "server", S_CLIENT, S_SERVER)],
    tags=("fast",)))
_add(_tls_scenario(
    "no_common_version_new_client", "a TLS 1.3-only client against a TLS 1.2-only server",
    s_server(T12), [s_client(T13)],
    [fail("server_hello", "no_common_version", "protocol_version", "server", S_CLIENT, S_SERVER)]))
_add(_tls_scenario(
    "tls12_no_common_cipher", "TLS 1.2, client offers only AES-CBC suites, server accepts only AES-GCM",
    s_server(T12, "-cipher", "ECDHE-RSA-AES256-GCM-SHA384"), [s_client("-cipher", "AES128-SHA:ECDHE-RSA-AES128-SHA")],
    [fail("server_hello", "no_common_cipher", "handshake_failure", "server", S_CLIENT, S_SERVER)],
    tags=("tls12",)))
_add(_tls_scenario(
    "tls13_no_common_cipher", "TLS 1.3, client offers only TLS_AES_128_GCM_SHA256, server only "
    "TLS_CHACHA20_POLY1305_SHA256",
    s_server(T13, "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"), [s_client("-ciphersuites", "TLS_AES_128_GCM_SHA256")],
    [fail("server_hello", "no_common_cipher", "handshake_failure", "server", S_CLIENT, S_SERVER)],
    tags=("tls13",)))
_add(_tls_scenario(
    "tls12_weak_cipher_only", "TLS 1.2, the server offers only NULL-encryption suites (SECLEVEL 0); curl offers "
    "none of them (this OpenSSL build has no 3DES or RC4)",
    s_server(T12, "-cipher", "NULL-SHA256:ECDHE-RSA-NULL-SHA:@SECLEVEL=0"), [curl("--tlsv1.2", "--tls-max", "1.2")],
    [fail("server_hello", "weak_cipher_only", "handshake_failure", "server", CURL, S_SERVER)], tags=("tls12",)))
_add(_tls_scenario(
    "tls13_no_common_group", "TLS 1.3, the client supports only X25519, the server only P-256: no HRR possible",
    s_server(T13, "-groups", "P-256"), [s_client("-groups", "X25519")],
    [fail("server_hello", "no_common_group", "handshake_failure", "server", S_CLIENT, S_SERVER)],
    tags=("tls13",)))
_add(_tls_scenario(
    "tls12_no_common_group", "TLS 1.2, ECDHE-only suites, client groups X25519, server groups P-384",
    s_server(T12, "-groups", "P-384", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"),
    [s_client("-groups", "X25519", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256")],
    [fail("server_hello", "no_common_group", "handshake_failure", "server", S_CLIENT, S_SERVER)],
    tags=("tls12",)))
_add(_tls_scenario(
    "tls12_alpn_mismatch_nginx", "TLS 1.2, the client offers only ALPN 'foo', nginx (http2) knows h2/http1.1",
    nginx(protocols="TLSv1.2", http2=True), [s_client("-alpn", "foo")],
    [fail("server_hello", "alpn_mismatch", "no_application_protocol", "server", S_CLIENT, NGINX)],
    tags=("tls12",), server_stop=signal.SIGQUIT))
_add(_tls_scenario(
    "tls13_alpn_mismatch_nginx", "TLS 1.3, the client offers only ALPN 'foo', nginx (http2) knows h2/http1.1",
    nginx(protocols="TLSv1.3", http2=True), [s_client("-alpn", "foo")],
    [fail("server_hello", "alpn_mismatch", "no_application_protocol", "server", S_CLIENT, NGINX)],
    tags=("tls13",), server_stop=signal.SIGQUIT))
_add(_tls_scenario(
    "tls13_alpn_mismatch_s_server", "TLS 1.3, s_server -alpn h2 and a client offering only 'foo'",
    s_server(T13, "-alpn", "h2"), [s_client("-alpn", "foo")],
    [fail("server_hello", "alpn_mismatch", "no_application_protocol", "server", S_CLIENT, S_SERVER)],
    tags=("fast", "tls13")))
_add(_tls_scenario(
    "tls12_alpn_mismatch_ignored_python", "TLS 1.2, a Python server offering h2 and a Python client offering "
    "only 'foo': the server selects nothing and the handshake goes on",
    py_server(alpn=["h2"], max="TLSv1_2"), [py_client(alpn=["foo"])],
    [ok(V12, PY_CLIENT, PY_SERVER, sni="server.tlsflow.test",
        note="no ALPN overlap; CPython's ALPN callback answers 'no ack', so no ALPN and no alert")],
    tags=("tls12",)))
_add(_tls_scenario(
    "tls12_sni_unrecognized_s_server", "TLS 1.2, s_server -servername_fatal knows only 'known.tlsflow.test'",
    s_server(T12, "-servername", "known.tlsflow.test", "-servername_fatal", "-cert2", "{pki}/server-leaf.pem",
             "-key2", "{pki}/server.key"),
    [s_client()],
    [fail("server_hello", "sni_unrecognized", "unrecognized_name", "server", S_CLIENT, S_SERVER)],
    tags=("tls12",)))
_add(_tls_scenario(
    "tls13_sni_unrecognized_python", "TLS 1.3, a Python server whose sni_callback refuses every other name",
    py_server(sni_only="known.tlsflow.test"), [py_client()],
    [fail("server_hello", "sni_unrecognized", "unrecognized_name", "server", PY_CLIENT, PY_SERVER)],
    tags=("tls13",)))

# ---- client certificates
_add(_tls_scenario(
    "tls12_client_cert_missing", "TLS 1.2, the server requires a client certificate, the client has none",
    s_server(T12, "-Verify", "1", "-verifyCAfile", "{pki}/ca.pem"), [s_client()],
    [fail("client_certificate", "client_cert_missing", "handshake_failure", "server", S_CLIENT, S_SERVER,
          version=V12)], tags=("tls12",)))
_add(_tls_scenario(
    "tls13_client_cert_missing", "TLS 1.3, the server requires a client certificate, the client has none",
    s_server(T13, "-Verify", "1", "-verifyCAfile", "{pki}/ca.pem"), [s_client()],
    [fail("client_certificate", "client_cert_missing", "encrypted", "server", S_CLIENT, S_SERVER, version=V13)],
    tags=("tls13",)))
_add(_tls_scenario(
    "tls13_client_cert_missing_nginx", "TLS 1.3, nginx ssl_verify_client on, curl without a certificate: the "
    "handshake completes and nginx answers HTTP 400",
    nginx(protocols="TLSv1.3", extra="ssl_verify_client on; ssl_client_certificate {pki}/ca.pem;"), [curl()],
    [ok(V13, CURL, NGINX, sni="server.tlsflow.test",
        note="nginx does not fail the TLS handshake; it answers 400 'No required SSL certificate was sent'")],
    tags=("tls13",), server_stop=signal.SIGQUIT))
_add(_tls_scenario(
    "tls12_client_cert_untrusted", "TLS 1.2, the client certificate comes from a CA the server does not trust",
    s_server(T12, "-Verify", "1", "-verifyCAfile", "{pki}/ca.pem", "-verify_return_error"),
    [s_client("-cert", "{pki}/untrusted-client.pem", "-key", "{pki}/untrusted-client.key")],
    [fail("client_certificate", "client_cert_rejected", "unknown_ca", "server", S_CLIENT, S_SERVER,
          version=V12)], tags=("tls12",)))
_add(_tls_scenario(
    "tls13_client_cert_untrusted", "TLS 1.3, the client certificate comes from a CA the server does not trust",
    s_server(T13, "-Verify", "1", "-verifyCAfile", "{pki}/ca.pem", "-verify_return_error"),
    [s_client("-cert", "{pki}/untrusted-client.pem", "-key", "{pki}/untrusted-client.key")],
    [fail("client_certificate", "client_cert_rejected", "encrypted", "server", S_CLIENT, S_SERVER, version=V13)],
    tags=("tls13",)))

# ---- client side
_add(_tls_scenario(
    "tls13_client_clock_skew", "TLS 1.3, a valid certificate, but the client's clock says 2040 (faketime)",
    s_server(T13), [s_client(prefix=("faketime", "2040-01-01 00:00:00"))],
    [fail("server_certificate", "client_clock_skew", "certificate_expired", "client", S_CLIENT + " under faketime",
          S_SERVER, version=V13)], tags=("tls13",)))
_add(_tls_scenario(
    "tls12_client_clock_skew_attime", "TLS 1.2, a valid certificate, but s_client verifies as of 2001 (-attime)",
    s_server(T12), [s_client("-attime", "978307200")],
    [fail("server_certificate", "client_clock_skew", "bad_certificate", "client", S_CLIENT + " -attime 2001",
          S_SERVER, version=V12)], tags=("tls12",)))
_add(_relayed_scenario(
    "tls12_cert_key_mismatch", "TLS 1.2, the certificate's public key does not match the key that signed "
    "ServerKeyExchange; s_client alerts decrypt_error",
    s_server(T12, "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"), s_client(), _swap_certificate,
    fail("server_key_exchange", "cert_key_mismatch", "decrypt_error", "client", S_CLIENT,
         S_SERVER + " behind a relay swapping its certificate", version=V12,
         note="the certificate the client received is a valid twin of the server's for another key (a relay "
              "swapped it in transit, since no server loads a mismatched pair); ServerKeyExchange does not "
              "verify with it"),
    ("tls12",)))
_add(_tls_scenario(
    "tls13_cert_unknown_ca", "TLS 1.3, unknown root; s_client rejects it with a PLAINTEXT alert (OpenSSL clients "
    "send it before switching to handshake keys)",
    s_server(T13, cert="otherca.pem", chain=None), [s_client()],
    [fail("server_certificate", "cert_unknown_ca", "unknown_ca", "client", S_CLIENT, S_SERVER, version=V13)],
    tags=("tls13",)))
_add(_tls_scenario(
    "tls13_cert_weak_rsa1024", "TLS 1.3, a 1024-bit RSA server key (server at SECLEVEL 0); curl rejects it",
    s_server(T13, "-cipher", "DEFAULT:@SECLEVEL=0", cert="weak1024.pem", key="weak1024.key"), [curl()],
    [fail("server_certificate", "cert_weak", "bad_certificate", "client", CURL, S_SERVER, version=V13)],
    tags=("tls13",)))
_add(_tls_scenario(
    "tls12_cert_sha1_signature", "TLS 1.2, leaf signed with SHA-1; Python's client (SECLEVEL 2) rejects it",
    s_server(T12, "-cipher", "DEFAULT:@SECLEVEL=0", cert="sha1.pem"), [py_client()],
    [fail("server_certificate", "cert_weak", "bad_certificate", "client", PY_CLIENT, S_SERVER, version=V12)],
    tags=("tls12",)))
_add(_tls_scenario(
    "tls13_sni_unrecognized_s_server", "TLS 1.3, s_server -servername_fatal knows only 'known.tlsflow.test'",
    s_server(T13, "-servername", "known.tlsflow.test", "-servername_fatal", "-cert2", "{pki}/server-leaf.pem",
             "-key2", "{pki}/server.key"),
    [s_client()],
    [fail("server_hello", "sni_unrecognized", "unrecognized_name", "server", S_CLIENT, S_SERVER)],
    tags=("tls13",)))
_add(_tls_scenario(
    "tls12_cert_revoked_ocsp_ignored_s_client", "TLS 1.2, stapled OCSP response says revoked; s_client -status "
    "prints it but does not fail the handshake",
    s_server(T12, "-status_file", "{pki}/revoked.ocsp", cert="revoked.pem"), [s_client("-status")],
    [ok(V12, S_CLIENT, S_SERVER, note="the certificate is revoked (stapled OCSP, CertificateStatus message) but "
        "OpenSSL's s_client only prints the status; the connection goes on")],
    tags=("tls12",)))
_add(_tls_scenario(
    "tls12_established_curl_python", "TLS 1.2, curl to a Python ssl server",
    py_server(max="TLSv1_2"), [curl()], [ok(V12, CURL, PY_SERVER, sni="server.tlsflow.test")], tags=("tls12",)))
_add(_tls_scenario(
    "tls13_cert_expired_gnutls", "TLS 1.3, expired server certificate; gnutls-cli rejects it with an encrypted alert",
    s_server(T13, cert="expired.pem"), [gnutls_cli()],
    [fail("server_certificate", "cert_expired", "encrypted", "client", GNUTLS, S_SERVER, version=V13)],
    tags=("tls13",)))


def _resumption_refused_scenario() -> Scenario:
    name = "tls12_resumption_refused"

    def run(workdir: Path, port: int, pki: Pki) -> list[Label]:
        tmp = Path(tempfile.mkdtemp(prefix=f"tlsflow-{name}-"))
        ctx = Ctx(name=name, workdir=workdir, tmp=tmp, port=port, pki=pki)
        other = Ctx(name=name, workdir=workdir, tmp=tmp, port=port + 1, pki=pki)
        try:
            # A session from another server process (not recorded): the recorded server has never seen its ID.
            with _Server(s_server(T12, "-no_ticket")(other), other):
                first = _run_client(s_client(sess_out=True)(other), other)
            ctx.keylog.unlink(missing_ok=True)
            if first.returncode != 0 or not (tmp / "session.pem").exists():
                raise ScenarioError(f"{name}: no session to offer:\n{first.output[-2000:]}")
            with Tcpdump(workdir / f"{name}.pcap", f"tcp port {port}"), _Server(s_server(T12, "-no_ticket")(ctx), ctx):
                result = _run_client(s_client(sess_in=True)(ctx), ctx)
                time.sleep(TCPDUMP_FLUSH_WAIT)
            if result.returncode != 0 or "Reused" in result.output:
                raise ScenarioError(f"{name}: client exit {result.returncode}:\n{result.output[-2000:]}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _drop_empty_keylog(ctx.keylog)
        return [Label(scenario=name, file=f"{name}.pcap", flow=1, **ok(
            V12, S_CLIENT, S_SERVER,
            note="the client offers a session ID from another server process; the server does not know it and "
                 "answers with a new session ID and a full handshake"))]

    return Scenario(name=name, description="TLS 1.2, the client offers a cached session ID the server does not "
                    "know; full handshake, not resumed", run=run, tags=("tls12",))


_add(_resumption_refused_scenario())
_add(_relayed_scenario(
    "tls12_finished_corrupted", "TLS 1.2, a relay flips one bit of the client's encrypted Finished; the server "
    "cannot authenticate it",
    s_server(T12), s_client(), _corrupt_client_finished,
    fail("finished", "decrypt_error", "bad_record_mac", "server", S_CLIENT, S_SERVER + " behind a corrupting relay",
         version=V12, note="the relay flipped the last bit of the AEAD tag of the client's Finished record"),
    ("tls12",)))
_add(_relayed_scenario(
    "tls13_finished_corrupted", "TLS 1.3, a relay flips one bit of the client's encrypted Finished; the server "
    "answers with an encrypted alert",
    s_server(T13), s_client(), _corrupt_client_finished,
    fail("finished", "decrypt_error", "encrypted", "server", S_CLIENT, S_SERVER + " behind a corrupting relay",
         version=V13, note="the relay flipped the last bit of the AEAD tag of the client's Finished record"),
    ("tls13",)))
_add(_tls_scenario(
    "tls12_dh_key_too_small", "TLS 1.2, the server offers only DHE with the 1024-bit group of RFC 2409 (SECLEVEL 0); "
    "curl refuses it at its ServerKeyExchange ('dh key too small')",
    s_server(T12, "-cipher", "DHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0", "-dhparam", "{pki}/dh1024.pem"), [curl()],
    [fail("server_key_exchange", "no_common_group", "handshake_failure", "client", CURL, S_SERVER, version=V12,
          note="OpenSSL: tls_process_ske_dhe: dh key too small (security level 2 wants 2048 bits)")],
    tags=("tls12",)))
_add(_tls_scenario(
    "tls12_unsafe_legacy_renegotiation", "TLS 1.2, a server without secure renegotiation (RFC 5746: no "
    "renegotiation_info in its ServerHello); curl (OpenSSL 3) refuses it ('unsafe legacy renegotiation disabled')",
    gnutls_serv("--priority", "NORMAL:-VERS-TLS1.3:%DISABLE_SAFE_RENEGOTIATION"), [curl()],
    [fail("server_hello", "handshake_failure", "handshake_failure", "client", CURL, G_SERVER, version=V12,
          note="OpenSSL: final_renegotiate: unsafe legacy renegotiation disabled")],
    tags=("tls12",)))
_add(_tls_scenario(
    "tcp_connect_only", "a TCP-only health check: the client connects and closes 0.2 s later without a byte; "
    "s_server answers the end of the stream with a decode_error alert",
    s_server(T12), [plain_tcp_client(wait=0.2)],
    [{"outcome": "incomplete", "ok": True, "alert": "decode_error", "alert_sender": "server",
      "client_impl": "python socket: connect, wait 0.2 s, close", "server_impl": S_SERVER}], tags=("fast",)))
_add(_tls_scenario(
    "tcp_client_waits_for_server", "a client that waits for the server to speak first (an SMTP client on an "
    "implicit-TLS port): nginx gives up on the ClientHello after its 1 s header timeout",
    nginx(extra="client_header_timeout 1s;"), [plain_tcp_client(wait=5, speak_first=True)],
    [{"outcome": "incomplete", "client_impl": "python socket: connect, wait for a banner", "server_impl": NGINX}],
    tags=("fast",)))
_add(_tls_scenario(
    "tls13_sni_missing_refused", "TLS 1.3, curl to the server's address (so no SNI), a Python server that refuses a "
    "ClientHello without a server name (handshake_failure), as CDNs and multi-site servers do",
    py_server(sni_required=True), [curl(by_address=True)],
    [fail("server_hello", "sni_unrecognized", "handshake_failure", "server", CURL, PY_SERVER)],
    tags=("tls13",)))
_add(_tls_scenario(
    "tls12_cert_wrong_purpose", "TLS 1.2, the server's certificate has the right name and chain but an extended key "
    "usage of clientAuth only; curl refuses it ('unsuitable certificate purpose')",
    s_server(T12, cert="clientpurpose.pem"), [curl()],
    [fail("server_certificate", "cert_rejected", "unsupported_certificate", "client", CURL, S_SERVER, version=V12,
          note="OpenSSL verification error 26: unsuitable certificate purpose")], tags=("tls12",)))
_add(_tls_scenario(
    "tls10_server_refused", "a TLS 1.0-only server (SECLEVEL 0); curl (OpenSSL 3) accepts the version but refuses its "
    "MD5/SHA-1 signed key exchange ('legacy sigalg disallowed or unsupported', internal_error)",
    s_server("-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"), [curl()],
    [fail("server_hello", "no_common_version", "internal_error", "client", CURL, S_SERVER, version="TLS 1.0",
          note="OpenSSL: legacy sigalg disallowed or unsupported")], tags=("tls12",)))
