"""Record real TLS byte streams, once, for the capture generator to replay.

Each scenario runs a real client and a real server (Python `ssl`, i.e. OpenSSL) against each other through
MemoryBIO pairs: no socket, no network. What each side writes is kept, in order, as flights of
(direction, bytes). OpenSSL's randomness makes every run different, so the generator does not call this at
generation time: the result is committed as `bench/real_streams.json` and the generator replays it, which is what
makes a capture reproducible from a seed alone. Re-record with `python -m bench.record_handshakes`.
"""
from __future__ import annotations

import argparse
import base64
import datetime
import json
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

STREAMS_PATH = Path(__file__).with_name("real_streams.json")

# Plaintext sizes of the server's application-data records kept per session; the generator builds responses of
# any length out of these (full 16 KiB records first, then one of the smaller ones as the tail).
RESPONSE_RECORD_SIZES = (16384, 4096, 1024, 256)
SERVER_NAMES = ("www.example.com", "api.example.net")
CLIENT = "c2s"
SERVER = "s2c"


@dataclass
class Session:
    """One real exchange: handshake flights, then (for completed handshakes) application-data records."""

    kind: str
    server_name: str
    outcome: str  # "ok", "alert" (a fatal alert ends it), "rst" (the server resets after the ClientHello)
    flights: list[tuple[str, bytes]] = field(default_factory=list)
    request_records: list[bytes] = field(default_factory=list)
    response_records: dict[int, bytes] = field(default_factory=dict)
    close_notify: dict[str, bytes] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- certificates
def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer: str, issuer_key, *, ca: bool, sans: tuple[str, ...] = ()) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem_files(tmp: Path) -> dict[str, Path]:
    """A trusted CA with an RSA and an ECDSA leaf for SERVER_NAMES, and an untrusted CA (for unknown_ca)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("tlsflow bench CA", ca_key, "tlsflow bench CA", ca_key, ca=True)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _cert("some other CA", other_key, "some other CA", other_key, ca=True)
    files: dict[str, Path] = {}

    def write(name: str, data: bytes) -> None:
        files[name] = tmp / name
        files[name].write_bytes(data)

    write("ca.pem", ca.public_bytes(serialization.Encoding.PEM))
    write("other-ca.pem", other.public_bytes(serialization.Encoding.PEM))
    for label, key in (("rsa", rsa.generate_private_key(65537, 2048)), ("ecdsa", ec.generate_private_key(ec.SECP256R1()))):
        leaf = _cert(SERVER_NAMES[0], key, "tlsflow bench CA", ca_key, ca=False, sans=SERVER_NAMES)
        chain = leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
        write(f"{label}.pem", chain)
        write(
            f"{label}.key",
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
    return files


# ---------------------------------------------------------------------------------------------- scenarios
@dataclass(frozen=True)
class Scenario:
    kind: str
    cert: str  # "rsa" or "ecdsa"
    version: ssl.TLSVersion
    outcome: str
    client_ciphers: str | None = None
    server_ciphers: str | None = None
    client_ca: str = "ca.pem"
    client_offers_tls13: bool = False  # a current client meeting a TLS 1.2-only server (the usual way 1.2 happens)


SCENARIOS = (
    Scenario("tls13-rsa", "rsa", ssl.TLSVersion.TLSv1_3, "ok"),
    Scenario("tls13-ecdsa", "ecdsa", ssl.TLSVersion.TLSv1_3, "ok"),
    Scenario("tls12-ecdhe-rsa", "rsa", ssl.TLSVersion.TLSv1_2, "ok", server_ciphers="ECDHE-RSA-AES128-GCM-SHA256",
             client_offers_tls13=True),
    Scenario("tls12-ecdhe-ecdsa", "ecdsa", ssl.TLSVersion.TLSv1_2, "ok",
             server_ciphers="ECDHE-ECDSA-AES256-GCM-SHA384", client_offers_tls13=True),
    Scenario("tls12-rsa-kx", "rsa", ssl.TLSVersion.TLSv1_2, "ok",
             client_ciphers="DEFAULT:AES128-GCM-SHA256", server_ciphers="AES128-GCM-SHA256"),
    Scenario("tls13-unknown-ca", "rsa", ssl.TLSVersion.TLSv1_3, "alert", client_ca="other-ca.pem"),
    Scenario("tls12-handshake-failure", "rsa", ssl.TLSVersion.TLSv1_2, "alert",
             client_ciphers="ECDHE-ECDSA-AES128-GCM-SHA256", server_ciphers="ECDHE-RSA-AES256-GCM-SHA384"),
    Scenario("tls13-rst-after-client-hello", "rsa", ssl.TLSVersion.TLSv1_3, "rst"),
)


def _contexts(sc: Scenario, files: dict[str, Path]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(files[f"{sc.cert}.pem"], files[f"{sc.cert}.key"])
    server.maximum_version = sc.version
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(files[sc.client_ca])
    if not sc.client_offers_tls13:
        client.maximum_version = sc.version
    if sc.server_ciphers:
        server.set_ciphers(sc.server_ciphers)
    if sc.client_ciphers:
        client.set_ciphers(sc.client_ciphers)
    return client, server


class _Side:
    def __init__(self, ctx: ssl.SSLContext, *, server: bool, hostname: str | None) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_side=server, server_hostname=hostname)
        self.done = False
        self.failed = False

    def step(self) -> None:
        if self.done or self.failed:
            return
        try:
            self.obj.do_handshake()
            self.done = True
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except ssl.SSLError:
            self.failed = True  # the alert it sends is already in `outgoing`


def record_session(sc: Scenario, server_name: str, files: dict[str, Path]) -> Session:
    client_ctx, server_ctx = _contexts(sc, files)
    client = _Side(client_ctx, server=False, hostname=server_name)
    server = _Side(server_ctx, server=True, hostname=None)
    session = Session(sc.kind, server_name, sc.outcome)

    def move(src: _Side, dst: _Side, direction: str) -> bool:
        data = src.outgoing.read()
        if data:
            session.flights.append((direction, data))
            dst.incoming.write(data)
        return bool(data)

    client.step()
    move(client, server, CLIENT)
    if sc.outcome == "rst":
        return session  # the server side of the capture answers the ClientHello with a TCP reset
    for _ in range(10):
        server.step()
        moved = move(server, client, SERVER)
        client.step()
        moved |= move(client, server, CLIENT)
        if (client.done and server.done and not moved) or client.failed or server.failed:
            break
    server.step()
    move(server, client, SERVER)
    if sc.outcome == "ok":
        if not (client.done and server.done):
            raise RuntimeError(f"{sc.kind}: handshake did not complete")
        # In TLS 1.3 the server's session tickets leave with its first write; read them on the client side so
        # that they stay part of the handshake flights rather than the first response record.
        try:
            client.obj.read(1)
        except ssl.SSLWantReadError:
            pass
        request = f"GET /bench HTTP/1.1\r\nHost: {server_name}\r\nUser-Agent: tlsflow-bench\r\n\r\n".encode()
        client.obj.write(request)
        session.request_records.append(client.outgoing.read())
        server.incoming.write(session.request_records[-1])
        server.obj.read(len(request))
        for size in RESPONSE_RECORD_SIZES:
            server.obj.write(b"x" * size)
            session.response_records[size] = server.outgoing.read()
        for side, direction in ((client, CLIENT), (server, SERVER)):
            try:
                side.obj.unwrap()
            except ssl.SSLWantReadError:
                pass
            session.close_notify[direction] = side.outgoing.read()
    elif not (client.failed or server.failed):
        raise RuntimeError(f"{sc.kind}: expected a failed handshake")
    return session


def record_all() -> list[Session]:
    with tempfile.TemporaryDirectory() as tmp:
        files = _pem_files(Path(tmp))
        return [record_session(sc, name, files) for sc in SCENARIOS for name in SERVER_NAMES]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def save(sessions: list[Session], path: Path = STREAMS_PATH) -> None:
    doc = {
        "recorded_with": ssl.OPENSSL_VERSION,
        "sessions": [
            {
                "kind": s.kind,
                "server_name": s.server_name,
                "outcome": s.outcome,
                "flights": [[d, _b64(b)] for d, b in s.flights],
                "request_records": [_b64(b) for b in s.request_records],
                "response_records": {str(k): _b64(v) for k, v in s.response_records.items()},
                "close_notify": {k: _b64(v) for k, v in s.close_notify.items()},
            }
            for s in sessions
        ],
    }
    path.write_text(json.dumps(doc, indent=1) + "\n")


def load(path: Path = STREAMS_PATH) -> list[Session]:
    doc = json.loads(path.read_text())
    out = []
    for s in doc["sessions"]:
        out.append(
            Session(
                s["kind"],
                s["server_name"],
                s["outcome"],
                [(d, base64.b64decode(b)) for d, b in s["flights"]],
                [base64.b64decode(b) for b in s["request_records"]],
                {int(k): base64.b64decode(v) for k, v in s["response_records"].items()},
                {k: base64.b64decode(v) for k, v in s["close_notify"].items()},
            )
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-o", "--output", type=Path, default=STREAMS_PATH)
    args = parser.parse_args(argv)
    sessions = record_all()
    save(sessions, args.output)
    for s in sessions:
        flights = " ".join(f"{d}:{len(b)}" for d, b in s.flights)
        print(f"{s.kind:30} {s.server_name:16} {s.outcome:5} {flights}")


if __name__ == "__main__":
    main()
