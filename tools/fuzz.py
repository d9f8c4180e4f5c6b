"""Coverage-guided fuzzing (atheris, libFuzzer) of what reads hostile bytes: the TLS parser and the whole capture path.

    pip install atheris
    python tools/fuzz.py tls  [libFuzzer options] [corpus folder ...]
    python tools/fuzz.py pcap [libFuzzer options] [corpus folder ...]

`tls`: the input is a run of chunks (a control byte, a 2-byte length, the bytes): each chunk goes to one direction
of a `TlsConnection`, whole, cut in two, or as a gap of lost bytes. Nothing may raise, no `internal_error` anomaly
(the parser's last line of defence: a bug it caught) may come out, and the buffers stay within their caps.
`tls-seeds FOLDER` writes the real sessions of `bench/real_streams.json` in that form, as a starting corpus.
`pcap`: the input is a capture file, read through `iter_flow_records`: records in the contract's field order, and
a `CaptureError` at worst. The corpus captures (`captures/corpus/*.pcap`) make a starting corpus.
In these and the modes below, a Python warning let through (one that would reach the user's terminal) is a finding.
`certs`: the input is a certificate chain (and maybe a stapled OCSP response) that a real TLS 1.2 handshake of the
corpus carries instead of its own, the connection fed packet by packet to `FlowAnalyzer` (the certificate decoding,
chain, name, validity and OCSP checks, the verdict and the record, with the corpus CA trusted or not): a record in
the contract's field order, and no exception. `certs-seeds FOLDER` writes the corpus's own chains in that form.
`cert-fields`: the same handshakes, with chains that the input's bytes describe field by field and cryptography
builds and signs (names, SANs, validity dates from year 1950 to 9999, serials, key types and sizes, signature
hashes, extensions, chain shapes, stapled OCSP responses of every status): well-formed certificates with odd values,
which random bytes seldom reach. Besides the `certs` rules, the checks may not stop on them ("certificate checks
stopped": an exception caught in the checks).
`tls13-keys`: the input is the plaintext of a TLS 1.3 server's encrypted flight (EncryptedExtensions, Certificate,
CertificateVerify, Finished, ... as the key log lets tlsflow read them), encrypted with the handshake keys of a real
handshake of the corpus (whose key log is given to FlowAnalyzer) in place of the server's own: the decrypted path's
decoders, the CertificateVerify check and the certificate checks, under the `certs` rules.
`tls13-keys-seeds FOLDER` writes the corpus's own flights in that form.
`keylog`: the input is key log text (SSLKEYLOGFILE, or a pcapng Decryption Secrets Block), read with a small entry
cap: nothing raises, the entries stay within the cap, every line is counted once, and each secret looked up is one
of the text's own. The corpus's `.keylog` files make a starting corpus.

Why here and not in the test suite: a run is minutes to hours of CPU. The property tests (hypothesis) keep the
quick version of the same rules in every test run (tests/tlsparse/test_properties.py).
"""
from __future__ import annotations

import base64
import json
import os
import struct
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shown_warnings(run):  # type: ignore[no-untyped-def]
    """Run `run()`; raise if it let a Python warning through other than tlsflow's own ("tlsflow: ..."): such a
    warning reaches the user's terminal with a line of tlsflow's source (two were found so, in cryptography's
    certificate and OCSP code)."""
    import warnings

    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        result = run()
    for warning in shown:
        if not str(warning.message).startswith("tlsflow:"):
            raise AssertionError(f"a warning shown: {warning.category.__name__}: {warning.message} "
                                 f"({warning.filename}:{warning.lineno})")
    return result


def analysed(analyzer, packets: list, fields: list[str]) -> dict:  # type: ignore[no-untyped-def]
    """The record FlowAnalyzer gives for `packets` (one connection), checked: no warning shown, one record, its
    fields in the contract's order."""
    records: list = []

    def run() -> None:
        for pkt in packets:
            records.extend(analyzer.feed(pkt))
        records.extend(analyzer.finish())

    shown_warnings(run)
    if len(records) != 1:
        raise AssertionError(f"{len(records)} records for one connection")
    if list(records[0])[:len(fields)] != fields:
        raise AssertionError(f"fields out of the contract's order: {list(records[0])}")
    return records[0]


def chunks(data: bytes):  # type: ignore[no-untyped-def]
    """(control byte, bytes) of each chunk of a `tls` input."""
    pos = 0
    while pos + 3 <= len(data):
        control = data[pos]
        length = struct.unpack_from(">H", data, pos + 1)[0]
        pos += 3
        yield control, data[pos:pos + length]
        pos += length


def fuzz_tls() -> None:
    import atheris

    with atheris.instrument_imports():
        from tlsparse import ParseAnomaly, Sender, TlsConnection
        from tlsparse.cache import ParseCache
    cache = ParseCache()  # shared across inputs, as across a capture's connections

    def one_input(data: bytes) -> None:
        conn = TlsConnection(max_handshake=1 << 19, cache=cache if data[:1] == b"\x01" else None)
        for frame, (control, chunk) in enumerate(chunks(data), 1):
            side = Sender.CLIENT if control & 1 else Sender.SERVER
            if control & 0x80:
                out = conn.receive_gap(side, len(chunk) * 7 + 1, frame, float(frame))
            elif control & 0x40 and len(chunk) > 1:
                cut = chunk[0] % len(chunk)
                out = (conn.receive(side, chunk[:cut], frame, float(frame))
                       + conn.receive(side, chunk[cut:], frame, float(frame)))
            else:
                out = conn.receive(side, chunk, frame, float(frame))
            for event in out:
                if isinstance(event, ParseAnomaly) and event.name == "internal_error":
                    raise AssertionError(f"internal_error: {event.detail}")
            for sender in (Sender.CLIENT, Sender.SERVER):
                record_buffer, handshake_buffer = conn.buffer_sizes(sender)
                if record_buffer > conn.max_buffer or handshake_buffer > conn.max_handshake + 4:
                    raise AssertionError(f"buffers over their caps: {record_buffer}, {handshake_buffer}")
        for sender in (Sender.CLIENT, Sender.SERVER):  # the streams end: a record cut short, a ClientHello's prefix
            for event in conn.end_of_stream(sender, 0, 0.0):
                hello = event.hello  # type: ignore[attr-defined]
                if hello is not None:
                    (hello.sni, hello.alpn, hello.supported_versions)  # noqa: B018 - what the record reads of it

    atheris.Setup(sys.argv[:1] + sys.argv[2:], one_input)
    atheris.Fuzz()


def tls_seeds(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    sessions = json.loads((REPO / "bench" / "real_streams.json").read_text())["sessions"]
    for i, session in enumerate(sessions):
        data = b"\x01"  # (the first control byte also asks for the shared cache)
        for direction, text in session["flights"]:
            flight = base64.b64decode(text)
            for at in range(0, len(flight), 1400):
                piece = flight[at:at + 1400]
                data += bytes([1 if direction == "c2s" else 0]) + struct.pack(">H", len(piece)) + piece
        (out / f"session{i}").write_bytes(data)


def fuzz_pcap() -> None:
    import atheris

    with atheris.instrument_imports():
        from tlsflow.capture import CaptureError
        from tlsflow.pipeline import iter_flow_records
        from tlsflow.record import FIELDS
    fields = list(FIELDS)
    handle, path = tempfile.mkstemp(suffix=".pcap")
    os.close(handle)

    def one_input(data: bytes) -> None:
        with open(path, "wb") as f:
            f.write(data)

        def run() -> None:
            try:
                for record in iter_flow_records(path):
                    if list(record)[:len(fields)] != fields:
                        raise AssertionError(f"fields out of the contract's order: {list(record)}")
            except CaptureError:
                pass

        shown_warnings(run)

    atheris.Setup(sys.argv[:1] + sys.argv[2:], one_input)
    atheris.Fuzz()


# A `certs` input: a control byte (which template handshake, the corpus CA trusted or not, the last blob an OCSP
# response or a certificate), then blobs, each a 3-byte length and its bytes.
def blobs(data: bytes) -> list[bytes]:
    out, pos = [], 1
    while pos + 3 <= len(data) and len(out) < 16:
        length = int.from_bytes(data[pos:pos + 3], "big")
        out.append(data[pos + 3:pos + 3 + length])
        pos += 3 + length
    return out


def _connection(path: Path) -> tuple[bytes, bytes, list[tuple[bool, int, int, float]]] | None:
    """The first TCP connection of a loopback capture without loss: (client bytes, server bytes, each segment with
    data in capture order as (from the client, start and end offsets in its direction's bytes, time))."""
    from tlsflow.capture import open_capture

    streams: dict[bool, bytearray] = {True: bytearray(), False: bytearray()}
    first_seq: dict[bool, int] = {}
    order = []
    client = None
    with open_capture(path) as cap:
        for pkt in cap.packets():
            if pkt.flags & 0x12 == 0x02 and client is None:
                client = (pkt.src, pkt.sport)
            if client is None or client not in ((pkt.src, pkt.sport), (pkt.dst, pkt.dport)) or not pkt.payload:
                continue
            side = (pkt.src, pkt.sport) == client
            start = (pkt.seq - first_seq.setdefault(side, pkt.seq)) & 0xFFFFFFFF
            if start != len(streams[side]):
                continue  # a copy (or a loss: not in the corpus's loopback captures)
            streams[side] += pkt.payload
            order.append((side, start, start + len(pkt.payload), pkt.ts))
    if client is None:
        return None
    return bytes(streams[True]), bytes(streams[False]), order


def _plaintext_flight(stream: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """The handshake messages (type, body) of the server's first flight (the plaintext records that open `stream`, up
    to the record with its ServerHelloDone), and where that flight ends."""
    pos, handshake, messages, at = 0, b"", [], 0
    while pos + 5 <= len(stream) and stream[pos] == 22 and 14 not in [kind for kind, _ in messages]:
        length = int.from_bytes(stream[pos + 3:pos + 5], "big")
        handshake += stream[pos + 5:pos + 5 + length]
        pos += 5 + length
        while at + 4 <= len(handshake):
            size = int.from_bytes(handshake[at + 1:at + 4], "big")
            if at + 4 + size > len(handshake):
                break
            messages.append((handshake[at], handshake[at + 4:at + 4 + size]))
            at += 4 + size
    return messages, pos


def _records(messages: list[tuple[int, bytes]]) -> bytes:
    handshake = b"".join(bytes([kind]) + len(body).to_bytes(3, "big") + body for kind, body in messages)
    return b"".join(b"\x16\x03\x03" + len(piece).to_bytes(2, "big") + piece
                    for piece in (handshake[at:at + 16384] for at in range(0, len(handshake), 16384)))


def cert_templates() -> list[dict]:
    """The corpus's TLS 1.2 handshakes with a Certificate message in the clear: both directions' bytes, the
    server's plaintext messages and where they end, and the order of the segments."""
    templates = []
    for path in sorted((REPO / "captures" / "corpus").glob("tls12_*.pcap")):
        connection = _connection(path)
        if connection is None:
            continue
        client, server, order = connection
        messages, flight_end = _plaintext_flight(server)
        if 11 not in [kind for kind, _ in messages]:
            continue
        templates.append({"name": path.name, "client": client, "server": server, "messages": messages,
                          "flight_end": flight_end, "order": order})
    return templates


def certificate_message(ders: list[bytes]) -> bytes:
    body = b"".join(len(der).to_bytes(3, "big") + der for der in ders)
    return len(body).to_bytes(3, "big") + body


def template_chain(template: dict) -> tuple[list[bytes], bytes | None]:
    """The chain a template's server sent (DER, leaf first) and its stapled OCSP response, if any: what
    `cert_packets` puts back."""
    messages = dict(template["messages"])
    body = messages[11][3:]
    ders, at = [], 0
    while at + 3 <= len(body):
        length = int.from_bytes(body[at:at + 3], "big")
        ders.append(body[at + 3:at + 3 + length])
        at += 3 + length
    status = messages.get(22)  # (status type, 3-byte length, the response)
    return ders, (status[4:] if status is not None else None)


def cert_packets(template: dict, ders: list[bytes], ocsp: bytes | None) -> list:
    """The template's connection as TcpPackets, the server's chain (and stapled OCSP response) replaced."""
    messages = []
    for kind, body in template["messages"]:
        if kind == 11:
            messages.append((11, certificate_message(ders)))
            if ocsp is not None:
                messages.append((22, b"\x01" + len(ocsp).to_bytes(3, "big") + ocsp))
        elif kind != 22 or ocsp is None:
            messages.append((kind, body))
    return replayed_packets(template, 0, template["flight_end"], _records(messages))


def replayed_packets(template: dict, start: int, end: int, replacement: bytes) -> list:
    """The template's connection as TcpPackets in its own order and times, the server's bytes from `start` to `end`
    replaced: the replacement goes whole with the last segment that held those bytes, every later server byte moves
    by the difference in length, and each data segment is acknowledged at once."""
    from tlsflow.packet import TcpPacket

    server = template["server"][:start] + replacement + template["server"][end:]
    shift = len(replacement) - (end - start)
    data = {True: template["client"], False: server}
    isn = {True: 1000, False: 5000}
    sent = {True: 0, False: 0}
    packets: list = []
    first_ts = template["order"][0][3] if template["order"] else 1767225600.0

    def moved(offset: int) -> int:
        return offset if offset <= start else (start if offset < end else offset + shift)

    def packet(client: bool, flags: int, ts: float, payload: bytes = b"") -> None:
        ends = (("10.0.0.1", 40000), ("10.0.0.2", 443)) if client else (("10.0.0.2", 443), ("10.0.0.1", 40000))
        syn = 0 if flags & 0x02 else 1
        packets.append(TcpPacket(frame=len(packets) + 1, ts=ts, ip_version=4, src=ends[0][0], dst=ends[1][0],
                                 sport=ends[0][1], dport=ends[1][1], seq=(isn[client] + syn + sent[client]),
                                 ack=isn[not client] + 1 + sent[not client],
                                 flags=flags, window=65535, payload=payload, ttl=64, ip_id=len(packets) + 1))
        sent[client] += len(payload)

    packet(True, 0x02, first_ts - 0.002)
    packet(False, 0x12, first_ts - 0.0015)
    packet(True, 0x10, first_ts - 0.001)
    for client, first, last, ts in template["order"]:
        if not client:
            first, last = moved(first), moved(last)
        piece = data[client][first:last]
        if not piece:
            continue  # (inside the replaced bytes: they go with the last segment that held them)
        for at in range(0, len(piece), 16384):
            packet(client, 0x18, ts, piece[at:at + 16384])
        packet(not client, 0x10, ts + 0.0001)
    last_ts = template["order"][-1][3] if template["order"] else first_ts
    packet(True, 0x11, last_ts + 0.001)
    isn[True] += 1  # (the FIN takes a sequence number)
    packet(False, 0x11, last_ts + 0.0015)
    isn[False] += 1
    packet(True, 0x10, last_ts + 0.002)
    return packets


def fuzz_certs() -> None:
    import atheris

    with atheris.instrument_imports():
        import analyzers.certchecks  # noqa: F401 - instrumented before the pipeline imports it
        import tlsparse.certificate_decode  # noqa: F401
        from analyzers.certchecks import TrustStore
        from tlsflow.pipeline import FlowAnalyzer
        from tlsflow.record import FIELDS
    fields = list(FIELDS)
    templates = cert_templates()
    trusted = TrustStore.from_pem_file(REPO / "captures" / "corpus" / "ca.pem")

    def one_input(data: bytes) -> None:
        if not data:
            return
        parts = blobs(data)
        control = data[0]
        ocsp = parts.pop() if control & 0x80 and parts else None
        template = templates[(control & 0x3F) % len(templates)]
        analysed(FlowAnalyzer("fuzz", trust=trusted if control & 0x40 else None), cert_packets(template, parts, ocsp),
                 fields)

    atheris.Setup(sys.argv[:1] + sys.argv[2:], one_input)
    atheris.Fuzz()


class _Keys:
    """Keys made once per run (RSA key generation takes ~0.1 s each), picked by the input."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

        self.choices = [
            ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP384R1()),
            ec.generate_private_key(ec.SECP521R1()), ec.generate_private_key(ec.SECP256K1()),
            rsa.generate_private_key(65537, 2048), rsa.generate_private_key(65537, 1024),
            rsa.generate_private_key(3, 2048), ed25519.Ed25519PrivateKey.generate(),
            ed448.Ed448PrivateKey.generate(), dsa.generate_private_key(2048),
        ]
        self.root = ec.generate_private_key(ec.SECP256R1())
        self.intermediate = ec.generate_private_key(ec.SECP256R1())


def _text(fdp, most: int = 40) -> str:
    """Mostly plausible DNS-like names, sometimes any Unicode."""
    if fdp.ConsumeIntInRange(0, 3) == 0:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, most))
    labels = ["server", "tlsflow", "test", "*", "xn--nxasmq6b", "a*b", "", "WWW", "localhost", "192.0.2.1", "*.test"]
    return ".".join(labels[fdp.ConsumeIntInRange(0, len(labels) - 1)] for _ in range(fdp.ConsumeIntInRange(1, 4)))


def built_chain(fdp, keys: _Keys, capture_time: float) -> tuple[list[bytes], bytes | None, list]:
    """(DER chain as sent, stapled OCSP response or None, root certificates to trust) described by `fdp`."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
    from cryptography.x509 import ocsp
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common: str) -> x509.Name:
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common)] if common else []
        if fdp.ConsumeBool():
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, fdp.ConsumeUnicodeNoSurrogates(12) or "o"))
        return x509.Name(attributes)

    def when(base: float) -> dt.datetime:
        choice = fdp.ConsumeIntInRange(0, 4)
        if choice == 0:
            year = fdp.ConsumeIntInRange(1950, 9999)
            return dt.datetime(year, 1 + fdp.ConsumeIntInRange(0, 11), 1 + fdp.ConsumeIntInRange(0, 27),
                               tzinfo=dt.UTC)
        seconds = fdp.ConsumeIntInRange(-40 * 86400, 40 * 86400) if choice < 4 else fdp.ConsumeIntInRange(-2, 2)
        return dt.datetime.fromtimestamp(base + seconds, dt.UTC)

    def hash_for(key) -> hashes.HashAlgorithm | None:  # type: ignore[no-untyped-def]
        if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
            return None
        options = [hashes.SHA256(), hashes.SHA384(), hashes.SHA512(), hashes.SHA1(), hashes.SHA224()]
        if isinstance(key, rsa.RSAPrivateKey):
            options.append(hashes.MD5())
        if isinstance(key, dsa.DSAPrivateKey):
            options = options[:1] + options[3:4]
        return options[fdp.ConsumeIntInRange(0, len(options) - 1)]

    def certificate(subject: x509.Name, issuer: x509.Name, public, signer, leaf: bool):  # type: ignore[no-untyped-def]
        not_before, not_after = when(capture_time - 86400), when(capture_time + 86400 * 30)
        serial = fdp.ConsumeIntInRange(1, (1 << 159) - 1) if fdp.ConsumeBool() else fdp.ConsumeIntInRange(1, 3)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public)
                   .serial_number(serial).not_valid_before(not_before).not_valid_after(not_after))
        if fdp.ConsumeBool():
            builder = builder.add_extension(x509.BasicConstraints(
                ca=not leaf if fdp.ConsumeIntInRange(0, 3) else leaf,
                path_length=fdp.ConsumeIntInRange(0, 3) if fdp.ConsumeBool() and not leaf else None),
                critical=fdp.ConsumeBool())
        if leaf and fdp.ConsumeIntInRange(0, 4):
            names: list[x509.GeneralName] = []
            for _ in range(fdp.ConsumeIntInRange(0, 6)):
                kind = fdp.ConsumeIntInRange(0, 5)
                try:
                    if kind <= 2:
                        names.append(x509.DNSName(_text(fdp)))
                    elif kind == 3:
                        names.append(x509.IPAddress(ipaddress.ip_address(fdp.ConsumeBytes(4 if fdp.ConsumeBool()
                                                                                            else 16).ljust(4, b"\0"))))
                    elif kind == 4:
                        names.append(x509.RFC822Name(_text(fdp)))
                    else:
                        names.append(x509.UniformResourceIdentifier(_text(fdp)))
                except ValueError:
                    pass
            if names:
                builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=fdp.ConsumeBool())
        if fdp.ConsumeBool():
            bits = [fdp.ConsumeBool() for _ in range(9)]
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=bits[0], content_commitment=bits[1], key_encipherment=bits[2],
                data_encipherment=bits[3], key_agreement=bits[4], key_cert_sign=bits[5], crl_sign=bits[6],
                encipher_only=bits[4] and bits[7], decipher_only=bits[4] and bits[8] and not bits[7]),
                critical=fdp.ConsumeBool())
        if fdp.ConsumeBool():
            usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH,
                      ExtendedKeyUsageOID.CODE_SIGNING, x509.ObjectIdentifier("1.2.3.4.5")]
            chosen = [usage for usage in usages if fdp.ConsumeBool()]
            if chosen:
                builder = builder.add_extension(x509.ExtendedKeyUsage(chosen), critical=fdp.ConsumeBool())
        if fdp.ConsumeBool():
            builder = builder.add_extension(x509.AuthorityInformationAccess([
                x509.AccessDescription(x509.oid.AuthorityInformationAccessOID.OCSP,
                                       x509.UniformResourceIdentifier(_text(fdp) or "http://ocsp")),
                x509.AccessDescription(x509.oid.AuthorityInformationAccessOID.CA_ISSUERS,
                                       x509.UniformResourceIdentifier(_text(fdp) or "http://ca"))]), critical=False)
        if fdp.ConsumeBool():
            builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        if fdp.ConsumeBool():
            builder = builder.add_extension(x509.UnrecognizedExtension(
                x509.ObjectIdentifier("1.3.6.1.4.1.99999." + str(fdp.ConsumeIntInRange(1, 9))),
                fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40))), critical=fdp.ConsumeBool())
        return builder.sign(signer, hash_for(signer))

    root_name = name("tlsflow fuzz root")
    root = certificate(root_name, root_name, keys.root.public_key(), keys.root, leaf=False)
    middle_name = name("tlsflow fuzz intermediate")
    middle = certificate(middle_name, root_name if fdp.ConsumeIntInRange(0, 5) else name("someone else"),
                         keys.intermediate.public_key(), keys.root, leaf=False)
    leaf_key = keys.choices[fdp.ConsumeIntInRange(0, len(keys.choices) - 1)]
    leaf_name = name(_text(fdp) if fdp.ConsumeIntInRange(0, 2) else "server.tlsflow.test")
    shape = fdp.ConsumeIntInRange(0, 5)
    if shape == 0:  # self-signed
        leaf = certificate(leaf_name, leaf_name, leaf_key.public_key(), leaf_key, leaf=True)
    else:
        signer = keys.intermediate if shape != 5 else keys.root  # (5: signed by a key that is not its issuer's)
        leaf = certificate(leaf_name, middle_name, leaf_key.public_key(), signer, leaf=True)
    chain = [leaf] + ([middle] if shape in (1, 3, 5) else []) + ([root] if shape == 3 else [])
    if fdp.ConsumeIntInRange(0, 7) == 0:
        chain.reverse()
    ders = [cert.public_bytes(serialization.Encoding.DER) for cert in chain]
    ocsp_der = None
    if fdp.ConsumeIntInRange(0, 2) == 0:
        if fdp.ConsumeIntInRange(0, 5) == 0:
            ocsp_der = ocsp.OCSPResponseBuilder.build_unsuccessful(
                [ocsp.OCSPResponseStatus.MALFORMED_REQUEST, ocsp.OCSPResponseStatus.TRY_LATER,
                 ocsp.OCSPResponseStatus.UNAUTHORIZED][fdp.ConsumeIntInRange(0, 2)]).public_bytes(
                serialization.Encoding.DER)
        else:
            status = [ocsp.OCSPCertStatus.GOOD, ocsp.OCSPCertStatus.REVOKED,
                      ocsp.OCSPCertStatus.UNKNOWN][fdp.ConsumeIntInRange(0, 2)]
            revoked = status == ocsp.OCSPCertStatus.REVOKED
            this_update = when(capture_time - 3600)
            builder = ocsp.OCSPResponseBuilder().add_response(
                cert=leaf, issuer=middle, algorithm=[hashes.SHA1(), hashes.SHA256()][fdp.ConsumeIntInRange(0, 1)],
                cert_status=status, this_update=this_update,
                next_update=when(capture_time + 86400) if fdp.ConsumeBool() else None,
                revocation_time=when(capture_time - 86400) if revoked else None,
                revocation_reason=(x509.ReasonFlags.key_compromise if revoked and fdp.ConsumeBool() else None))
            responder = keys.intermediate if fdp.ConsumeIntInRange(0, 3) else leaf_key
            responder_cert = middle if responder is keys.intermediate else leaf
            builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH if fdp.ConsumeBool()
                                           else ocsp.OCSPResponderEncoding.NAME, responder_cert)
            if isinstance(responder, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, dsa.DSAPrivateKey)):
                ocsp_der = builder.sign(responder, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
            else:
                ocsp_der = builder.sign(responder, None).public_bytes(serialization.Encoding.DER)
    return ders, ocsp_der, [root]


def fuzz_cert_fields() -> None:
    import atheris

    with atheris.instrument_imports():
        import analyzers.certchecks
        import tlsparse.certificate_decode  # noqa: F401
        from analyzers.certchecks import TrustStore
        from tlsflow.pipeline import FlowAnalyzer
        from tlsflow.record import FIELDS
    from cryptography.exceptions import UnsupportedAlgorithm

    fields = list(FIELDS)
    templates = cert_templates()
    keys = _Keys()
    # check_chain turns an exception in the checks into a fact ("certificate checks stopped"), so that one odd
    # certificate does not stop a run; on certificates cryptography built itself, that is a bug to see.
    stopped: list[BaseException] = []
    checks = analyzers.certchecks._check_chain

    def keeping(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return checks(*args, **kwargs)
        except Exception as exc:
            stopped.append(exc)
            raise

    analyzers.certchecks._check_chain = keeping

    def one_input(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        template = templates[fdp.ConsumeIntInRange(0, len(templates) - 1)]
        capture_time = template["order"][0][3]
        try:
            ders, ocsp_der, roots = built_chain(fdp, keys, capture_time)
        except (ValueError, TypeError, OverflowError, UnsupportedAlgorithm):
            return  # a combination cryptography refuses to build (not what is under test)
        trust = TrustStore(roots) if fdp.ConsumeIntInRange(0, 3) else None
        analysed(FlowAnalyzer("fuzz", trust=trust), cert_packets(template, ders, ocsp_der), fields)
        if stopped:
            raise stopped.pop()

    atheris.Setup(sys.argv[:1] + sys.argv[2:], one_input)
    atheris.Fuzz()


def tls13_templates() -> list[dict]:
    """The corpus's TLS 1.3 handshakes with a key log (but the HelloRetryRequest one): the `cert_templates`
    fields, the server's handshake keys, where its encrypted flight lies in its bytes and that flight's plaintext."""
    from cryptography.hazmat.primitives import hashes

    from tlsparse.decrypt import _TrafficKeys, _xor_nonce, cipher_spec
    from tlsparse.keylog import KeyLog

    templates = []
    for path in sorted((REPO / "captures" / "corpus").glob("tls13_*.pcap")):
        keylog_path = path.with_suffix(".keylog")
        connection = _connection(path) if keylog_path.exists() and "retry" not in path.name else None
        if connection is None:
            continue
        client, server, order = connection
        secrets = KeyLog.from_file(keylog_path).secrets_for(client[11:43])
        hello = server[5:5 + int.from_bytes(server[3:5], "big")]
        if secrets is None or secrets.server_handshake_traffic_secret is None or hello[:1] != b"\x02":
            continue
        at = 4 + 2 + 32
        suite = int.from_bytes(hello[at + 1 + hello[at]:at + 3 + hello[at]], "big")
        spec = cipher_spec(suite)
        if spec is None:
            continue
        keys = _TrafficKeys(spec, hashes.SHA384() if spec.prf_hash == "SHA384" else hashes.SHA256(),
                            secrets.server_handshake_traffic_secret)
        pos = 5 + len(hello)
        while pos + 5 <= len(server) and server[pos] == 20:  # the compatibility ChangeCipherSpec
            pos += 5 + int.from_bytes(server[pos + 3:pos + 5], "big")
        start, plaintext, sequence = pos, b"", 0
        while pos + 5 <= len(server) and server[pos] == 23 and not _finished_in(plaintext):
            length = int.from_bytes(server[pos + 3:pos + 5], "big")
            inner = keys.aead.decrypt(_xor_nonce(keys.iv, sequence), server[pos + 5:pos + 5 + length], server[pos:pos + 5])
            plaintext += inner.rstrip(b"\0")[:-1]
            sequence += 1
            pos += 5 + length
        templates.append({"name": path.name, "client": client, "server": server, "order": order,
                          "keylog": keylog_path, "keys": (keys.aead, keys.iv, _xor_nonce), "start": start, "end": pos,
                          "plaintext": plaintext})
    return templates


def _finished_in(handshake: bytes) -> bool:
    at = 0
    while at + 4 <= len(handshake):
        if handshake[at] == 20:
            return True
        at += 4 + int.from_bytes(handshake[at + 1:at + 4], "big")
    return False


def tls13_flight(template: dict, plaintext: bytes) -> bytes:
    """`plaintext` (handshake messages) as the server's records under its handshake keys, 16 KiB a record."""
    aead, iv, xor_nonce = template["keys"]
    out = b""
    for sequence, at in enumerate(range(0, len(plaintext), 16384)):
        inner = plaintext[at:at + 16384] + b"\x16"
        header = b"\x17\x03\x03" + (len(inner) + 16).to_bytes(2, "big")
        out += header + aead.encrypt(xor_nonce(iv, sequence), inner, header)
    return out


def fuzz_tls13_keys() -> None:
    import atheris

    with atheris.instrument_imports():
        import analyzers.certchecks  # noqa: F401 - instrumented before the pipeline imports it
        import tlsparse.certificate_decode  # noqa: F401
        from analyzers.certchecks import TrustStore
        from tlsflow.pipeline import FlowAnalyzer
        from tlsflow.record import FIELDS
        from tlsparse.keylog import KeyLog
    fields = list(FIELDS)
    templates = tls13_templates()
    keylogs = {template["name"]: KeyLog.from_file(template["keylog"]) for template in templates}
    trusted = TrustStore.from_pem_file(REPO / "captures" / "corpus" / "ca.pem")

    def one_input(data: bytes) -> None:
        if not data:
            return
        template = templates[(data[0] & 0x3F) % len(templates)]
        packets = replayed_packets(template, template["start"], template["end"], tls13_flight(template, data[1:]))
        analyzer = FlowAnalyzer("fuzz", trust=trusted if data[0] & 0x40 else None, keylog=keylogs[template["name"]])
        analysed(analyzer, packets, fields)

    atheris.Setup(sys.argv[:1] + sys.argv[2:], one_input)
    atheris.Fuzz()


def fuzz_keylog() -> None:
    import atheris

    with atheris.instrument_imports():
        from tlsparse.keylog import KeyLog

    def one_input(data: bytes) -> None:
        cap = 1 + data[0] % 8 if data else 1
        keylog = KeyLog.from_blocks([data[1:]], max_entries=cap)
        if len(keylog) > cap:
            raise AssertionError(f"{len(keylog)} entries over the cap of {cap}")
        lines = [line for line in data[1:].splitlines() if line.strip() and not line.lstrip().startswith(b"#")]
        if keylog.lines != len(lines):
            raise AssertionError(f"{keylog.lines} lines counted of {len(lines)}")
        for line in lines:
            fields = line.split()
            if len(fields) == 3:
                try:
                    secrets = keylog.secrets_for(bytes.fromhex(fields[1].decode("ascii")))
                except (ValueError, UnicodeDecodeError):
                    continue
                if secrets is not None and secrets.client_random != bytes.fromhex(fields[1].decode("ascii")):
                    raise AssertionError("secrets filed under another client random")

    atheris.Setup(sys.argv[:1] + sys.argv[2:], one_input)
    atheris.Fuzz()


def tls13_keys_seeds(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for index, template in enumerate(tls13_templates()):
        (out / template["name"]).write_bytes(bytes([index | 0x40]) + template["plaintext"])


def certs_seeds(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for index, template in enumerate(cert_templates()):
        ders, ocsp = template_chain(template)
        control = index | 0x40 | (0x80 if ocsp is not None else 0)
        blobs_out = ders + ([ocsp] if ocsp is not None else [])
        data = bytes([control]) + b"".join(len(blob).to_bytes(3, "big") + blob for blob in blobs_out)
        (out / template["name"]).write_bytes(data)


def main() -> None:
    sys.path.insert(0, str(REPO))
    modes = {"tls": fuzz_tls, "pcap": fuzz_pcap, "certs": fuzz_certs, "cert-fields": fuzz_cert_fields,
             "tls13-keys": fuzz_tls13_keys, "keylog": fuzz_keylog}
    seeds = {"tls-seeds": tls_seeds, "certs-seeds": certs_seeds, "tls13-keys-seeds": tls13_keys_seeds}
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what in modes:
        modes[what]()
    elif what in seeds and len(sys.argv) == 3:
        seeds[what](sys.argv[2])
    else:
        raise SystemExit(f"usage: python tools/fuzz.py {'|'.join(modes)} [libFuzzer options] [corpus ...] | "
                         f"{'|'.join(seeds)} FOLDER")


if __name__ == "__main__":
    main()
