"""describe_certificate over real certificates (certifi's roots, chains in the public captures, with Suricata's
expected subject/serial/validity/fingerprint) and over generated ones for the fields a CA sets on purpose."""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import ipaddress
import json
import os
import re
import warnings
from collections import defaultdict
from pathlib import Path

import certifi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsparse import Certificate, HandshakeSeen, Sender, TlsConnection
from tlsparse.certificates import CertificateAnomaly, CertificateInfo, describe_certificate

REPO = Path(__file__).resolve().parents[2]
PUBLIC = Path(os.environ.get("TLSFLOW_SHARED", REPO.parent / "shared")) / "captures" / "public"
UTC = dt.UTC


@functools.cache
def certifi_ders() -> list[bytes]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # certifi carries a root with serial 0
        certs = x509.load_pem_x509_certificates(Path(certifi.where()).read_bytes())
    return [c.public_bytes(serialization.Encoding.DER) for c in certs]


def test_every_certifi_root_is_described() -> None:
    ders = certifi_ders()
    assert len(ders) > 100
    for der in ders:
        info = describe_certificate(der)
        assert isinstance(info, CertificateInfo), info
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cert = x509.load_der_x509_certificate(der)
        assert info.subject == cert.subject.rfc4514_string()
        assert info.sha256 == hashlib.sha256(der).hexdigest()
        assert info.not_before.tzinfo is not None and info.not_before.utcoffset() == dt.timedelta(0)
        assert info.not_before < info.not_after
        assert info.key_type in ("RSA", "EC") and info.key_bits and info.key_bits >= 256
        assert (info.curve is not None) == (info.key_type == "EC")
        assert info.signature_hash in ("sha1", "sha256", "sha384", "sha512")
        assert info.self_issued and info.der == der
        if info.path_length is not None or info.is_ca:
            assert info.is_ca


def test_undecodable_der_gives_an_anomaly_with_the_bytes() -> None:
    good = certifi_ders()[0]
    for junk in (b"", b"\x30\x03\x02\x01\x01", good[:100], b"\xff" * 64, good[:-1]):
        result = describe_certificate(junk)
        assert isinstance(result, CertificateAnomaly)
        assert result.der == junk and result.error
        assert result.sha256 == hashlib.sha256(junk).hexdigest()


# ---------------------------------------------------------------- generated certificates


def _name(**attrs: str) -> x509.Name:
    oids = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME, "C": NameOID.COUNTRY_NAME}
    return x509.Name([x509.NameAttribute(oids[k], v) for k, v in attrs.items()])


def _build(key, issuer_key, *, subject: x509.Name, issuer: x509.Name, algorithm=None, extensions=()) -> bytes:
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
               .serial_number(0x0123456789ABCDEF)
               .not_valid_before(dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))
               .not_valid_after(dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)))
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(issuer_key, algorithm).public_bytes(serialization.Encoding.DER)


def test_fields_of_a_generated_ecdsa_leaf() -> None:
    ca_key = ec.generate_private_key(ec.SECP384R1())
    key = ec.generate_private_key(ec.SECP256R1())
    der = _build(
        key, ca_key, subject=_name(C="DE", O="Example, Inc.", CN="www.example.com"), issuer=_name(CN="Example CA"),
        algorithm=hashes.SHA384(),
        extensions=[
            (x509.SubjectAlternativeName([x509.DNSName("www.example.com"), x509.DNSName("*.example.net"),
                                          x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
                                          x509.IPAddress(ipaddress.ip_address("2001:db8::1"))]), False),
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (x509.AuthorityInformationAccess([
                x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                       x509.UniformResourceIdentifier("http://ocsp.example.com")),
                x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                       x509.UniformResourceIdentifier("http://ca.example.com/ca.der")),
            ]), False),
            (x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                           data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                           encipher_only=False, decipher_only=False), True),
            (x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), False),
        ],
    )
    info = describe_certificate(der)
    assert isinstance(info, CertificateInfo)
    assert info.subject == "CN=www.example.com,O=Example\\, Inc.,C=DE"  # RFC 4514: most specific first
    assert info.issuer == "CN=Example CA"
    assert info.san_dns == ("www.example.com", "*.example.net")
    assert info.san_ip == ("192.0.2.7", "2001:db8::1")
    assert info.san == info.san_dns + info.san_ip
    assert info.not_before == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert info.not_after == dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert info.serial == "123456789abcdef"
    assert (info.key_type, info.key_bits, info.curve) == ("EC", 256, "secp256r1")
    assert (info.signature_algorithm, info.signature_hash) == ("ecdsa-with-SHA384", "sha384")
    assert not info.is_ca and not info.self_issued
    assert info.ocsp == ("http://ocsp.example.com",)
    assert info.aia_ca_issuers == ("http://ca.example.com/ca.der",)
    assert info.key_usage == ("digital_signature",)
    assert info.extended_key_usage == ("serverAuth",)
    assert info.common_names == ("www.example.com",)
    assert info.problems == ()


def test_rsa_1024_and_ed25519_certificates() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    der = _build(rsa_key, rsa_key, subject=_name(CN="old"), issuer=_name(CN="old"), algorithm=hashes.SHA256(),
                 extensions=[(x509.BasicConstraints(ca=True, path_length=0), True)])
    info = describe_certificate(der)
    assert isinstance(info, CertificateInfo)
    assert (info.key_type, info.key_bits, info.curve) == ("RSA", 1024, None)
    assert (info.signature_algorithm, info.signature_hash) == ("sha256WithRSAEncryption", "sha256")
    assert info.is_ca and info.path_length == 0 and info.self_issued

    ed_key = ed25519.Ed25519PrivateKey.generate()
    info = describe_certificate(_build(ed_key, ed_key, subject=_name(CN="ed"), issuer=_name(CN="ed")))
    assert isinstance(info, CertificateInfo)
    assert (info.key_type, info.signature_algorithm, info.signature_hash) == ("Ed25519", "ed25519", None)
    assert info.san_dns == () and info.aia_ca_issuers == () and not info.is_ca


def test_sha1_signed_roots_in_certifi() -> None:
    """cryptography will not sign with SHA-1 any more; certifi still ships a few SHA-1 self-signed roots."""
    sha1 = [info for info in map(describe_certificate, certifi_ders())
            if isinstance(info, CertificateInfo) and info.signature_hash == "sha1"]
    if not sha1:
        pytest.skip("this certifi has no SHA-1 roots left")
    assert all(info.signature_algorithm == "sha1WithRSAEncryption" for info in sha1)


# ---------------------------------------------------------------- certificates in the public captures


def capture_chains(path: Path) -> list[tuple[str, float, tuple[bytes, ...]]]:
    """(server "ip:port", first packet time, certificate chain) of each Certificate message in a capture, parsed by
    tlsparse.TlsConnection from TCP payloads fed in capture order (scapy reads the file: tests only)."""
    from scapy.all import IP, TCP, IPv6, Padding, rdpcap

    conns: dict[frozenset, tuple[TlsConnection, dict, float]] = {}
    next_seq: dict[tuple, int] = {}
    chains = []
    for frame, packet in enumerate(rdpcap(str(path)), start=1):
        if TCP not in packet or (IP not in packet and IPv6 not in packet):
            continue
        ip = packet[IP] if IP in packet else packet[IPv6]
        tcp = packet[TCP]
        src, dst = f"{ip.src}:{tcp.sport}", f"{ip.dst}:{tcp.dport}"
        key = frozenset((src, dst))
        payload = bytes(tcp.payload)
        if Padding in packet:  # Ethernet minimum-frame padding is not TCP payload
            payload = payload[: len(payload) - len(packet[Padding])]
        if key not in conns:
            conns[key] = (TlsConnection(), {}, float(packet.time))
        conn, roles, _ = conns[key]
        if tcp.flags & 0x02:
            next_seq[(src, dst)] = (tcp.seq + 1) & 0xFFFFFFFF
            roles.setdefault(src, Sender.CLIENT if not tcp.flags & 0x10 else Sender.SERVER)
            continue
        if not payload:
            continue
        roles.setdefault(src, Sender.CLIENT if not roles else Sender.SERVER)
        expected = next_seq.setdefault((src, dst), tcp.seq)
        ahead = (tcp.seq - expected) & 0xFFFFFFFF
        if ahead >= 0x80000000:  # retransmission: keep only the new bytes
            payload = payload[(expected - tcp.seq) & 0xFFFFFFFF:]
            ahead = 0
        if ahead:
            conn.receive_gap(roles[src], ahead, frame, float(packet.time))
        next_seq[(src, dst)] = (expected + ahead + len(payload)) & 0xFFFFFFFF
        for event in conn.receive(roles[src], payload, frame, float(packet.time)):
            if isinstance(event, HandshakeSeen) and isinstance(event.message, Certificate) \
                    and event.sender is Sender.SERVER and event.message.certificates:
                chains.append((src, conns[key][2], event.message.certificates))
    return chains


SURICATA_CERT_RECORDS = []
if (PUBLIC / "expected.jsonl").is_file():
    for line in (PUBLIC / "expected.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["source"] == "suricata-verify" and "tls.serial" in record.get("notes", ""):
            fields = json.loads(record["notes"].split("other matched keys: ", 1)[1])
            SURICATA_CERT_RECORDS.append((record["file"], fields))


def _suricata_dn(info_dn: str) -> str:
    """Suricata prints the DN most general first, `, `-separated, emailAddress as Email=."""
    parts = [p.replace("1.2.840.113549.1.9.1=", "Email=") for p in re.split(r"(?<!\\),", info_dn)]
    return ", ".join(reversed(parts)).replace("\\,", ",")


@pytest.mark.skipif(not SURICATA_CERT_RECORDS, reason="public captures absent")
@pytest.mark.parametrize(("file", "fields"), SURICATA_CERT_RECORDS, ids=[f for f, _ in SURICATA_CERT_RECORDS])
def test_leaf_facts_match_suricata(file: str, fields: dict) -> None:
    pytest.importorskip("scapy")
    chains = capture_chains(PUBLIC / file)
    assert chains, "no Certificate message parsed"
    info = describe_certificate(chains[0][2][0])
    assert isinstance(info, CertificateInfo)
    assert hashlib.sha1(info.der).hexdigest() == fields["tls.fingerprint"].replace(":", "")
    assert int(info.serial, 16) == int(fields["tls.serial"].replace(":", ""), 16)
    assert info.not_before.strftime("%Y-%m-%dT%H:%M:%S") == fields["tls.notbefore"]
    assert info.not_after.strftime("%Y-%m-%dT%H:%M:%S") == fields["tls.notafter"]
    assert _suricata_dn(info.subject) == fields["tls.subject"]
    assert _suricata_dn(info.issuer) == fields["tls.issuerdn"]


@pytest.mark.skipif(not (PUBLIC / "MANIFEST.tsv").is_file(), reason="public captures absent")
def test_every_certificate_in_the_public_captures_is_described() -> None:
    pytest.importorskip("scapy")
    files = sorted({line.split("\t")[0] for line in (PUBLIC / "MANIFEST.tsv").read_text().splitlines()[1:]})
    seen: dict[str, int] = defaultdict(int)
    for name in files:
        if "quic" in name or "dtls" in name:
            continue
        for _, _, chain in capture_chains(PUBLIC / name):
            for der in chain:
                info = describe_certificate(der)
                seen[type(info).__name__] += 1
                if isinstance(info, CertificateInfo):
                    assert info.sha256 == hashlib.sha256(der).hexdigest()
                    assert info.subject is not None and info.not_before.tzinfo is not None
    assert seen["CertificateInfo"] > 20


@given(data=st.data())
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_describe_never_raises_on_damaged_der(data: st.DataObject) -> None:
    der = bytearray(certifi_ders()[data.draw(st.integers(0, 20))])
    for _ in range(data.draw(st.integers(1, 4))):
        der[data.draw(st.integers(0, len(der) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(der)))
    result = describe_certificate(bytes(der[:cut]))
    assert isinstance(result, (CertificateInfo, CertificateAnomaly))
    assert result.sha256 == hashlib.sha256(bytes(der[:cut])).hexdigest()
