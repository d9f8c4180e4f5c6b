"""Build the certificates and keys the scenarios need, fresh for each recording, with pyca/cryptography.

Validity windows are relative to the moment of recording, so that "expired" and "not yet valid" are true in the
capture (the analyzer compares them to capture time). Keys are RSA because the weak-cipher scenarios need
RSA-authenticated suites and because the weak-key scenario needs RSA 1024.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from captures.scenario import Pki

HOSTNAME = "server.tlsflow.test"
WRONG_HOSTNAME = "other.tlsflow.test"
DAY = dt.timedelta(days=1)


def _key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tlsflow test PKI"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class _Issuer:
    """A certificate and the key that signed it, able to issue more."""

    def __init__(self, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> None:
        self.cert = cert
        self.key = key


def _build(subject: str, key: rsa.RSAPrivateKey, issuer: _Issuer | None, *, ca: bool,
           not_before: dt.datetime, not_after: dt.datetime, san: list[str] | None = None,
           client: bool = False, hash_alg: hashes.HashAlgorithm | None = None,
           path_len: int | None = None) -> x509.Certificate:
    issuer_name = issuer.cert.subject if issuer else _name(subject)
    signing_key = issuer.key if issuer else key
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject)).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=path_len if ca else None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False), critical=True)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(_general_names(san)), critical=False)
    if issuer is not None and not ca and issuer.cert.subject != issuer.cert.issuer:
        # As every public CA does, leaves issued by an intermediate say where to fetch it (caIssuers): this is
        # what lets a passive observer tell a chain missing its intermediate from a leaf of an unknown root.
        builder = builder.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
            x509.oid.AuthorityInformationAccessOID.CA_ISSUERS,
            x509.UniformResourceIdentifier("http://pki.tlsflow.test/intermediate.der"))]), critical=False)
    return builder.sign(signing_key, hash_alg or hashes.SHA256())


def _sign_sha1(root: Path, key: rsa.RSAPrivateKey, san: list[str], issuer: _Issuer) -> x509.Certificate:
    """A server leaf signed with SHA-1: cryptography no longer signs with SHA-1, the openssl CLI still does."""
    work = root / "sha1-work"
    work.mkdir(exist_ok=True)
    csr = (x509.CertificateSigningRequestBuilder().subject_name(_name(HOSTNAME))
           .add_extension(x509.SubjectAlternativeName(_general_names(san)), critical=False)
           .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
           .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
           .sign(key, hashes.SHA256()))
    (work / "req.pem").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    _write_cert(work / "ca.pem", issuer.cert)
    _write_key(work / "ca.key", issuer.key)
    subprocess.run(["openssl", "x509", "-req", "-in", str(work / "req.pem"), "-CA", str(work / "ca.pem"),
                    "-CAkey", str(work / "ca.key"), "-sha1", "-set_serial", "4242", "-copy_extensions", "copyall",
                    "-days", "365", "-out", str(work / "out.pem")],
                   check=True, capture_output=True, timeout=30)
    cert = x509.load_pem_x509_certificate((work / "out.pem").read_bytes())
    shutil.rmtree(work)
    return cert


def _general_names(san: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for entry in san:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(entry)))
        except ValueError:
            names.append(x509.DNSName(entry))
    return names


def _twin(cert: x509.Certificate, key: rsa.RSAPrivateKey, issuer: _Issuer) -> x509.Certificate:
    """`cert` again (same serial, names, validity, extensions), but for another public key of the same size.

    Its DER has the same length as the original, so that a relay can swap one for the other inside a TLS 1.2
    Certificate message without touching any length field.
    """
    builder = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer)
               .public_key(key.public_key()).serial_number(cert.serial_number)
               .not_valid_before(cert.not_valid_before_utc).not_valid_after(cert.not_valid_after_utc))
    for ext in cert.extensions:
        value = ext.value
        if isinstance(value, x509.SubjectKeyIdentifier):
            value = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        builder = builder.add_extension(value, critical=ext.critical)
    twin = builder.sign(issuer.key, hashes.SHA256())
    if len(twin.public_bytes(serialization.Encoding.DER)) != len(cert.public_bytes(serialization.Encoding.DER)):
        raise ValueError("twin certificate has another DER length")
    return twin


def _write_cert(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return path


def _ocsp_response(path: Path, cert: x509.Certificate, issuer: _Issuer, now: dt.datetime, *,
                   revoked: bool) -> Path:
    """A DER OCSP response signed by the issuer itself (RFC 6960 allows the CA to sign its own responses)."""
    builder = ocsp.OCSPResponseBuilder().add_response(
        cert=cert, issuer=issuer.cert, algorithm=hashes.SHA1(),
        cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
        this_update=now - DAY, next_update=now + 7 * DAY,
        revocation_time=(now - 2 * DAY) if revoked else None,
        revocation_reason=x509.ReasonFlags.key_compromise if revoked else None,
    ).responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.cert)
    response = builder.sign(issuer.key, hashes.SHA256())
    path.write_bytes(response.public_bytes(serialization.Encoding.DER))
    return path


# The 1024-bit MODP group of RFC 2409 (Oakley group 2, generator 2) as PKCS#3 DH parameters: the DH group of many
# old servers, which current clients refuse ("dh key too small"). A published group: nothing to generate, the same
# file every time (and no finite-field DH in `cryptography`, which deprecates it).
RFC2409_GROUP2_PEM = b"""-----BEGIN DH PARAMETERS-----
MIGHAoGBAP//////////yQ/aoiFowjTExmKLgNwc0SkCTgiKZ8x0Agu+pjsTmyJR
Sgh5jjQE3e+VGbPNOkMbMCsKbfJfFDdP4TVtbVHCReSFtXZiXn7G9ExC6aY37WsL
/1y29Aa37e44a/taiZ+lrp8kEXxLH+ZJKGZR7OZTgf//////////AgEC
-----END DH PARAMETERS-----
"""


def build_pki(root: Path, *, now: dt.datetime | None = None) -> Pki:
    """Write every certificate, key and OCSP response into `root` and return the Pki describing it.

    Extra files (reach them with ``pki.file(name)``):
    ``expired.pem``, ``notyet.pem``, ``wronghost.pem`` (valid chains whose leaf is expired / not yet valid / for
    another host; leaf+intermediate), ``selfsigned.pem`` (+``selfsigned.key``), ``otherca.pem`` (leaf from a CA the
    clients do not know, + ``otherca-root.pem``), ``leaf-only.pem`` (valid leaf without its intermediate),
    ``revoked.pem`` + ``revoked.ocsp`` (stapled OCSP saying revoked), ``good.ocsp`` (for server.pem),
    ``weak1024.pem`` + ``weak1024.key``, ``sha1.pem``, ``untrusted-client.pem`` + ``untrusted-client.key``,
    ``intermediate.pem``, ``dh1024.pem`` (DH parameters: RFC 2409's 1024-bit group), ``clientpurpose.pem`` (the
    server's name and key, but an extended key usage of clientAuth only), ``other.key`` (an RSA key), ``mismatch-leaf.pem`` (server-leaf.pem's twin for other.key:
    same serial, names and DER length, another public key).
    Every leaf except selfsigned/weak1024 uses ``server.key``.
    """
    root.mkdir(parents=True, exist_ok=True)
    now = now or dt.datetime.now(dt.UTC).replace(microsecond=0)
    valid = {"not_before": now - DAY, "not_after": now + 365 * DAY}
    ca_valid = {"not_before": now - 3650 * DAY, "not_after": now + 3650 * DAY}

    root_key = _key()
    root_ca = _Issuer(_build("tlsflow test root CA", root_key, None, ca=True, **ca_valid), root_key)
    inter_key = _key()
    inter = _Issuer(_build("tlsflow test intermediate CA", inter_key, root_ca, ca=True, path_len=0,
                           **ca_valid), inter_key)
    server_key = _key()
    san = [HOSTNAME, "127.0.0.1"]

    def leaf(subject: str = HOSTNAME, names: list[str] | None = None, **validity: dt.datetime) -> x509.Certificate:
        return _build(subject, server_key, inter, ca=False, san=names or san, **(validity or valid))

    ca_cert = _write_cert(root / "ca.pem", root_ca.cert)
    _write_cert(root / "intermediate.pem", inter.cert)
    server = leaf()
    server_cert = _write_cert(root / "server-leaf.pem", server)
    server_chain = _write_cert(root / "server.pem", server, inter.cert)
    _write_cert(root / "leaf-only.pem", server)
    server_key_path = _write_key(root / "server.key", server_key)
    _ocsp_response(root / "good.ocsp", server, inter, now, revoked=False)

    _write_cert(root / "expired.pem", leaf(not_before=now - 730 * DAY, not_after=now - 365 * DAY), inter.cert)
    _write_cert(root / "notyet.pem", leaf(not_before=now + 365 * DAY, not_after=now + 730 * DAY), inter.cert)
    _write_cert(root / "wronghost.pem", leaf(WRONG_HOSTNAME, [WRONG_HOSTNAME]), inter.cert)
    revoked = leaf()
    _write_cert(root / "revoked.pem", revoked, inter.cert)
    _ocsp_response(root / "revoked.ocsp", revoked, inter, now, revoked=True)
    _write_cert(root / "sha1.pem", _sign_sha1(root, server_key, san, inter), inter.cert)

    self_key = _key()
    _write_cert(root / "selfsigned.pem", _build(HOSTNAME, self_key, None, ca=False, san=san, **valid))
    _write_key(root / "selfsigned.key", self_key)

    other_root_key = _key()
    other_root = _Issuer(_build("unknown test root CA", other_root_key, None, ca=True, **ca_valid), other_root_key)
    _write_cert(root / "otherca-root.pem", other_root.cert)
    _write_cert(root / "otherca.pem", _build(HOSTNAME, server_key, other_root, ca=False, san=san, **valid))

    weak_key = _key(1024)
    _write_cert(root / "weak1024.pem", _build(HOSTNAME, weak_key, inter, ca=False, san=san, **valid), inter.cert)
    _write_key(root / "weak1024.key", weak_key)

    client_key = _key()
    client_cert = _write_cert(root / "client.pem", _build("tlsflow test client", client_key, root_ca, ca=False,
                                                         client=True, **valid))
    client_key_path = _write_key(root / "client.key", client_key)
    _write_cert(root / "untrusted-client.pem", _build("untrusted test client", client_key, other_root, ca=False,
                                                      client=True, **valid))
    _write_key(root / "untrusted-client.key", client_key)
    (root / "dh1024.pem").write_bytes(RFC2409_GROUP2_PEM)
    _write_cert(root / "clientpurpose.pem", _build(HOSTNAME, server_key, inter, ca=False, san=san, client=True,
                                                   **valid), inter.cert)
    other_key = _key()
    _write_key(root / "other.key", other_key)
    _write_cert(root / "mismatch-leaf.pem", _twin(server, other_key, inter))

    return Pki(root=root, hostname=HOSTNAME, ca_cert=ca_cert, server_cert=server_cert, server_chain=server_chain,
               server_key=server_key_path, client_cert=client_cert, client_key=client_key_path)
