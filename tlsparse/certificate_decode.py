"""`tlsparse.certificates`' decoding, with cryptography (imported with this module, at the first certificate)."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import warnings
from collections.abc import Iterator

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import AuthorityInformationAccessOID

from tlsparse.certificates import CertificateAnomaly, CertificateInfo

__all__ = ["NAME_LENGTH_WARNING", "describe_certificate", "load_certificate", "quiet_name_warnings"]

# cryptography warns (a UserWarning, per line of its caller) each time it reads a name attribute longer or shorter
# than RFC 5280 allows: a countryName that is not two letters, a commonName over 64 bytes. Such certificates are
# real (private PKIs, appliances), and the warning reached the user's terminal with a line of tlsflow's source, once
# for each place that reads a name. It says something about the certificate: `describe_certificate` keeps it in the
# certificate's `problems`; the checks that read names again ignore it (`quiet_name_warnings`).
NAME_LENGTH_WARNING = "Attribute's length must be"


@contextlib.contextmanager
def quiet_name_warnings() -> Iterator[None]:
    """Within it, cryptography's name length warning is not shown (the filters are put back after)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=NAME_LENGTH_WARNING, category=UserWarning)
        yield


def load_certificate(der: bytes) -> x509.Certificate | None:
    """The cryptography object for DER bytes, or None when they do not decode."""
    with warnings.catch_warnings():
        # Non-positive serials and similar sins are reported as `problems`, not as Python warnings.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        try:
            return x509.load_der_x509_certificate(der)
        except (ValueError, TypeError, x509.InvalidVersion):  # InvalidVersion is not a ValueError
            return None


def _utc(cert: x509.Certificate, attr: str) -> dt.datetime:
    # cryptography >= 42 has the *_utc accessors; the naive ones are deprecated.
    return getattr(cert, attr + "_utc")


def _key_facts(cert: x509.Certificate) -> tuple[str, int | None, str | None]:
    try:
        key = cert.public_key()
    except (ValueError, TypeError) as exc:  # unsupported algorithm or bad key encoding
        oid = cert.public_key_algorithm_oid if hasattr(cert, "public_key_algorithm_oid") else None
        return (oid.dotted_string if oid is not None else f"unsupported({exc})"), None, None
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size, None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.key_size, key.curve.name
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256, None
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456, None
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size, None
    if isinstance(key, x25519.X25519PublicKey):
        return "X25519", 256, None
    if isinstance(key, x448.X448PublicKey):
        return "X448", 448, None
    return type(key).__name__, None, None


def _signature_facts(cert: x509.Certificate) -> tuple[str, str | None]:
    oid = cert.signature_algorithm_oid
    name = getattr(oid, "_name", None) or oid.dotted_string
    if name == "Unknown OID":
        name = oid.dotted_string
    try:
        hash_algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:  # exotic or broken signature OIDs
        hash_algorithm = None
    return name, hash_algorithm.name if hash_algorithm is not None else None


def _extension(cert: x509.Certificate, cls: type, errors: list[str]):
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None
    except (ValueError, TypeError) as exc:  # a duplicate or undecodable extension
        errors.append(f"{cls.__name__}: {exc}")
        return None


def _oid_name(oid: x509.ObjectIdentifier) -> str:
    """The OID's short name where the X.509 library has one ("serverAuth"), else its dotted form (the library names
    the others "Unknown OID", which would make every such usage look alike)."""
    name = getattr(oid, "_name", None)
    return name if name and name != "Unknown OID" else oid.dotted_string


def describe_certificate(der: bytes) -> CertificateInfo | CertificateAnomaly:
    """Everything tlsflow reports about one certificate; a CertificateAnomaly when the DER does not decode."""
    fingerprint = hashlib.sha256(der).hexdigest()
    cert = load_certificate(der)
    if cert is None:
        return CertificateAnomaly(der=der, error="not a decodable X.509 certificate", sha256=fingerprint)
    try:
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            warnings.filterwarnings("always", message=NAME_LENGTH_WARNING, category=UserWarning)
            info = _describe(cert, der, fingerprint)
    except Exception as exc:  # noqa: BLE001 - lazy decoding: a broken name or field surfaces only here
        return CertificateAnomaly(der=der, error=f"{type(exc).__name__}: {exc}", sha256=fingerprint)
    for warning in shown:  # (none as a rule: names within RFC 5280's bounds)
        text = str(warning.message)
        problem = f"name attribute: {text}" if text.startswith(NAME_LENGTH_WARNING) else text
        if problem not in info.problems:
            info = dataclasses.replace(info, problems=(*info.problems, problem))
    return info


def _describe(cert: x509.Certificate, der: bytes, fingerprint: str) -> CertificateInfo:
    errors: list[str] = []
    san = _extension(cert, x509.SubjectAlternativeName, errors)
    san_dns = tuple(san.get_values_for_type(x509.DNSName)) if san is not None else ()
    san_ip = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress)) if san is not None else ()
    basic = _extension(cert, x509.BasicConstraints, errors)
    aia = _extension(cert, x509.AuthorityInformationAccess, errors)
    aia_ca_issuers: list[str] = []
    ocsp: list[str] = []
    if aia is not None:
        for desc in aia:
            if isinstance(desc.access_location, x509.UniformResourceIdentifier):
                if desc.access_method == AuthorityInformationAccessOID.CA_ISSUERS:
                    aia_ca_issuers.append(desc.access_location.value)
                elif desc.access_method == AuthorityInformationAccessOID.OCSP:
                    ocsp.append(desc.access_location.value)
    key_usage = _extension(cert, x509.KeyUsage, errors)
    usages: list[str] = []
    if key_usage is not None:
        for usage in ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                      "key_agreement", "key_cert_sign", "crl_sign"):
            if getattr(key_usage, usage):
                usages.append(usage)
    eku = _extension(cert, x509.ExtendedKeyUsage, errors)
    ski = _extension(cert, x509.SubjectKeyIdentifier, errors)
    aki = _extension(cert, x509.AuthorityKeyIdentifier, errors)
    try:
        cert.extensions  # noqa: B018 - decoding the whole list reports duplicates/garbage once
    except (ValueError, TypeError) as exc:
        if not errors:
            errors.append(str(exc))
    if cert.serial_number <= 0:
        errors.append("serial number is not positive (RFC 5280 4.1.2.2)")
    key_type, key_bits, curve = _key_facts(cert)
    signature_algorithm, signature_hash = _signature_facts(cert)
    subject = cert.subject.rfc4514_string()
    issuer = cert.issuer.rfc4514_string()
    common_names = tuple(
        str(attr.value) for attr in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    )
    return CertificateInfo(
        subject=subject,
        issuer=issuer,
        san_dns=san_dns,
        san_ip=san_ip,
        not_before=_utc(cert, "not_valid_before"),
        not_after=_utc(cert, "not_valid_after"),
        serial=format(cert.serial_number, "x") if cert.serial_number >= 0 else "-" + format(-cert.serial_number, "x"),
        key_type=key_type,
        key_bits=key_bits,
        curve=curve,
        signature_algorithm=signature_algorithm,
        signature_hash=signature_hash,
        sha256=fingerprint,
        is_ca=bool(basic is not None and basic.ca),
        self_issued=cert.subject == cert.issuer,
        aia_ca_issuers=tuple(aia_ca_issuers),
        ocsp=tuple(ocsp),
        der=der,
        version=cert.version.value + 1,
        path_length=basic.path_length if basic is not None else None,
        key_usage=tuple(usages),
        extended_key_usage=tuple(_oid_name(oid) for oid in eku) if eku else (),
        subject_key_id=ski.digest.hex() if ski is not None else None,
        authority_key_id=aki.key_identifier.hex() if aki is not None and aki.key_identifier else None,
        common_names=common_names,
        problems=tuple(errors),
    )
