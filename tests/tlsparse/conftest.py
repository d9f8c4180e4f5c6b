"""Fixtures for the tlsparse tests: real TLS bytes made live with Python's ssl over memory BIOs (no sockets, no
network), a throwaway PKI to make them with, and helpers to feed bytes into a TlsConnection."""
from __future__ import annotations

import datetime
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tlsparse import Event, Sender, TlsConnection


@dataclass
class Pki:
    ca_cert: Path
    server_chain: Path  # leaf + CA
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path  # a CA nobody signed with: makes the client reject the server


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer: str, issuer_key, *, ca: bool, san: str | None = None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    out = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("tlsparse test CA", ca_key, "tlsparse test CA", ca_key, ca=True)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _cert("unrelated CA", other_key, "unrelated CA", other_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _cert("localhost", server_key, "tlsparse test CA", ca_key, ca=False, san="localhost")
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert("test client", client_key, "tlsparse test CA", ca_key, ca=False)

    def pem(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(key) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    files = {
        "ca.pem": pem(ca), "chain.pem": pem(server) + pem(ca), "server.key": key_pem(server_key),
        "client.pem": pem(client), "client.key": key_pem(client_key), "other.pem": pem(other),
    }
    for name, data in files.items():
        (out / name).write_bytes(data)
    return Pki(ca_cert=out / "ca.pem", server_chain=out / "chain.pem", server_key=out / "server.key",
               client_cert=out / "client.pem", client_key=out / "client.key", other_ca_cert=out / "other.pem")


@dataclass
class Transcript:
    """What each side put on the wire, in the order it was written: [(sender, bytes)]."""

    chunks: list[tuple[Sender, bytes]] = field(default_factory=list)
    client_error: str | None = None
    server_error: str | None = None

    def stream(self, sender: Sender) -> bytes:
        return b"".join(data for who, data in self.chunks if who is sender)


def run_tls(client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, *, server_hostname: str | None = "localhost",
            app_data: bytes = b"ping", rounds: int = 40) -> Transcript:
    """Drive a real handshake between two ssl objects over memory BIOs, then exchange a little data and close.
    Errors (alerts) are recorded, not raised: the bytes up to and including the alert are what the tests need."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    t = Transcript()
    done = {"c": False, "s": False}
    sent = {"c": False, "s": False}

    def step(obj: ssl.SSLObject, key: str) -> None:
        if getattr(t, "client_error" if key == "c" else "server_error"):
            return
        try:
            if not done[key]:
                obj.do_handshake()
                done[key] = True
            if not sent[key]:
                obj.write(app_data)
                sent[key] = True
            obj.read(1024)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except ssl.SSLError as err:
            setattr(t, "client_error" if key == "c" else "server_error", str(err))

    for _ in range(rounds):
        step(client, "c")
        data = c_out.read()
        if data:
            t.chunks.append((Sender.CLIENT, data))
            s_in.write(data)
        step(server, "s")
        data = s_out.read()
        if data:
            t.chunks.append((Sender.SERVER, data))
            c_in.write(data)
        if not data and not c_out.pending and (all(sent.values()) or t.client_error or t.server_error):
            break
    return t


def up_to(pki: Pki, version: ssl.TLSVersion, *, alpn: list[str] | None = None,
          client_ciphers: str | None = None) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(client, server) contexts trusting the test CA, neither above `version` (the client's defaults below it, as
    its ClientHello offers them); ALPN offered and accepted, the client's cipher list."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(pki.ca_cert)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(pki.server_chain, pki.server_key)
    client.maximum_version = server.maximum_version = version
    if alpn:
        client.set_alpn_protocols(alpn)
        server.set_alpn_protocols(alpn)
    if client_ciphers:
        client.set_ciphers(client_ciphers)
    return client, server


def version_and_alpn_handshakes(pki: Pki) -> list[Transcript]:
    """Real TLS 1.2 and 1.3 handshakes, each with and without ALPN offered (h2, http/1.1), with a little data."""
    return [run_tls(*up_to(pki, version, alpn=alpn))
            for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3) for alpn in (None, ["h2", "http/1.1"])]


@pytest.fixture
def tls_contexts(pki: Pki) -> Callable[..., tuple[ssl.SSLContext, ssl.SSLContext]]:
    """A factory of (client, server) contexts trusting the test CA; keyword args tune versions, ALPN, client
    certificates and groups."""

    def make(*, version: ssl.TLSVersion | None = None, alpn: Iterable[str] | None = None,
             server_alpn: Iterable[str] | None = None, client_cert: bool = False, require_client_cert: bool = False,
             server_curve: str | None = None, trust_other_ca: bool = False,
             ciphers: str | None = None) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.load_verify_locations(pki.other_ca_cert if trust_other_ca else pki.ca_cert)
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(pki.server_chain, pki.server_key)
        if version is not None:
            for ctx in (client, server):
                ctx.minimum_version = version
                ctx.maximum_version = version
        if alpn:
            client.set_alpn_protocols(list(alpn))
        if server_alpn:
            server.set_alpn_protocols(list(server_alpn))
        if client_cert:
            client.load_cert_chain(pki.client_cert, pki.client_key)
        if require_client_cert:
            server.load_verify_locations(pki.ca_cert)
            server.verify_mode = ssl.CERT_REQUIRED
        if server_curve:
            server.set_ecdh_curve(server_curve)
        if ciphers:
            client.set_ciphers(ciphers)
            server.set_ciphers(ciphers)
        return client, server

    return make


def feed(conn: TlsConnection, chunks: Iterable[tuple[Sender, bytes]], *, split: int | None = None) -> list[Event]:
    """Feed chunks in order; `split=1` feeds byte by byte. Frame numbers count the pieces fed."""
    events: list[Event] = []
    frame = 0
    for sender, data in chunks:
        step = split or len(data) or 1
        for i in range(0, len(data), step):
            frame += 1
            events.extend(conn.receive(sender, data[i:i + step], frame, float(frame)))
    return events


def parse_all(chunks: Iterable[tuple[Sender, bytes]], *, split: int | None = None,
              **caps: int) -> tuple[TlsConnection, list[Event]]:
    conn = TlsConnection(**caps)
    return conn, feed(conn, chunks, split=split)


def mutate(draw: Callable[..., Any], data: bytes, *, edits: tuple[int, int], drop: int, insert: int,
           truncate: bool = False) -> bytes:
    """`data` with a drawn number of edits (`edits`: least, most): a byte flipped, up to `drop` bytes dropped, up
    to `insert` drawn bytes inserted (and, with `truncate`, the rest cut off), each at a drawn place. `draw` is a
    hypothesis `data.draw`."""
    from hypothesis import strategies as st

    out = bytearray(data)
    actions = ["flip", "drop", "insert", "truncate"] if truncate else ["flip", "drop", "insert"]
    for _ in range(draw(st.integers(*edits))):
        if not out:
            break
        i = draw(st.integers(0, len(out) - 1))
        action = draw(st.sampled_from(actions))
        if action == "flip":
            out[i] ^= draw(st.integers(1, 255))
        elif action == "drop":
            del out[i:i + draw(st.integers(1, drop))]
        elif action == "insert":
            out[i:i] = draw(st.binary(min_size=1, max_size=insert))
        else:
            del out[i:]
    return bytes(out)


def record(content_type: int, body: bytes, version: int = 0x0303) -> bytes:
    return bytes([content_type]) + version.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


def handshake_msg(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def three_ways(data: bytes, sender: Sender = Sender.SERVER, *, prime: Iterable[tuple[Sender, bytes]] = (),
               **caps: int) -> list[Event]:
    """Parse `data` whole, byte by byte, and followed by trailing bytes (the start of another record); assert
    the three agree on every event (frames aside) and return the events of the whole feed. `prime` is fed first
    (e.g. the hellos that set the version)."""
    results = []
    for split, trailing in ((None, b""), (1, b""), (None, b"\x16\x03\x03\x00")):
        conn = TlsConnection(**caps)
        feed(conn, prime)
        events = feed(conn, [(sender, data + trailing)], split=split)
        results.append([(type(e).__name__, e.sender, e.offset, getattr(e, "message", None),
                          getattr(e, "msg_type", None), getattr(e, "name", None)) for e in events])
    assert results[0] == results[1] == results[2]
    conn = TlsConnection(**caps)
    feed(conn, prime)
    return feed(conn, [(sender, data)])
