"""Record tests/data/tcp/loopback_tls.pcap: real TLS connections over loopback, for the reassembly test against
tshark. Run from the repository root as root (tcpdump): `python tests/data/tcp/record_loopback.py`.

Two connections to a Python `ssl` server on 127.0.0.1 (a fresh self-signed certificate, not kept): a bulk one
(the client sends 40 000 bytes, the server answers 60 000) with a small MSS so that both streams span many
segments, and a chatty one (ten short request/response pairs). Everything is bounded by timeouts.
"""
from __future__ import annotations

import datetime as dt
import socket
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from captures.tcpdump import Tcpdump

OUT = Path(__file__).with_name("loopback_tls.pcap")
MSS = 1000


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=2)).sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def recv_exactly(sock: ssl.SSLSocket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def serve(listener: socket.socket, ctx: ssl.SSLContext) -> None:
    for _ in range(2):
        raw, _ = listener.accept()
        raw.settimeout(10)
        with ctx.wrap_socket(raw, server_side=True) as conn:
            kind = recv_exactly(conn, 1)
            if kind == b"B":
                recv_exactly(conn, 40_000)
                conn.sendall(bytes(i % 251 for i in range(60_000)))
            else:
                for i in range(10):
                    line = recv_exactly(conn, 8)
                    conn.sendall(line[::-1] + str(i).encode())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = self_signed(Path(tmp))
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(cert, key)
        client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_ctx.check_hostname = False
        client_ctx.verify_mode = ssl.CERT_NONE
        listener = socket.socket()
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, MSS)
        listener.bind(("127.0.0.1", 0))
        listener.listen(2)
        listener.settimeout(10)
        port = listener.getsockname()[1]
        with Tcpdump(OUT, f"tcp port {port}"):
            server = threading.Thread(target=serve, args=(listener, server_ctx), daemon=True)
            server.start()
            for kind in (b"B", b"C"):
                raw = socket.socket()
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, MSS)
                raw.settimeout(10)
                raw.connect(("127.0.0.1", port))
                with client_ctx.wrap_socket(raw, server_hostname="localhost") as conn:
                    conn.sendall(kind)
                    if kind == b"B":
                        conn.sendall(bytes(i % 241 for i in range(40_000)))
                        recv_exactly(conn, 60_000)
                    else:
                        for i in range(10):
                            conn.sendall(f"line{i:04d}".encode())
                            recv_exactly(conn, 9)
            server.join(timeout=10)
            # tcpdump (without --immediate-mode) hands packets over in blocks that retire after up to a second;
            # stopping sooner loses them. Wait for the last block.
            time.sleep(2.0)
        listener.close()
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes), server port {port}")


if __name__ == "__main__":
    main()
