"""A flat, typed description of one X.509 certificate as a server sent it (DER in, facts out).

All decoding is done by `cryptography.x509` (in `tlsparse.certificate_decode`); no ASN.1 is written here. A
certificate that does not decode, or whose extensions do not, gives a `CertificateAnomaly` that keeps the raw bytes;
`describe_certificate` never raises.

Why the decoding lives in a module of its own, imported at the first certificate: cryptography's X.509 modules
take about a third of tlsflow's start-up (~250M of ~690M instructions), and many captures never show a
certificate in the clear (TLS 1.3 encrypts it; a reset or a refused connection carries none).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509

__all__ = ["CertificateAnomaly", "CertificateInfo", "describe_certificate", "load_certificate"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateInfo:
    subject: str  # RFC 4514
    issuer: str  # RFC 4514
    san_dns: tuple[str, ...]
    san_ip: tuple[str, ...]
    not_before: dt.datetime  # aware, UTC
    not_after: dt.datetime  # aware, UTC
    serial: str  # lower-case hex, no separators
    key_type: str  # "RSA", "EC", "Ed25519", "Ed448", "DSA", "X25519", "X448", or the key's OID
    key_bits: int | None
    curve: str | None  # EC curve name ("secp256r1")
    signature_algorithm: str  # "sha256WithRSAEncryption", "ecdsa-with-SHA256", or the dotted OID
    signature_hash: str | None  # "sha256", "sha1", "md5", ...; None for Ed25519/Ed448 or unknown
    sha256: str  # fingerprint of the DER, lower-case hex
    is_ca: bool  # basicConstraints cA
    self_issued: bool  # subject == issuer
    aia_ca_issuers: tuple[str, ...]
    ocsp: tuple[str, ...]
    der: bytes
    version: int = 3
    path_length: int | None = None
    key_usage: tuple[str, ...] = ()
    extended_key_usage: tuple[str, ...] = ()
    subject_key_id: str | None = None
    authority_key_id: str | None = None
    common_names: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()  # what decoded badly without stopping the description (bad extension, ...)

    @property
    def san(self) -> tuple[str, ...]:
        """DNS names then IP addresses, as the output contract's `cert_san` lists them."""
        return self.san_dns + self.san_ip


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateAnomaly:
    """DER that does not decode as an X.509 certificate."""

    der: bytes
    error: str
    sha256: str


def load_certificate(der: bytes) -> x509.Certificate | None:
    """The cryptography object for DER bytes, or None when they do not decode."""
    from tlsparse.certificate_decode import load_certificate as load

    return load(der)


def describe_certificate(der: bytes) -> CertificateInfo | CertificateAnomaly:
    """Everything tlsflow reports about one certificate; a CertificateAnomaly when the DER does not decode."""
    from tlsparse.certificate_decode import describe_certificate as describe

    return describe(der)
