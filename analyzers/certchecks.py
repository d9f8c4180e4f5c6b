"""Passive checks of the certificate chain a server sent, at a given time (the capture's, never today's).

`check_chain` rebuilds the path leaf → intermediates → trust anchor from the certificates as sent, verifying each
signature with the issuer's public key, and reports what a client would object to, named as the output contract's
causes (`cert_expired`, `cert_unknown_ca`, ...), with short facts for the evidence. `looks_like_interception` names
the TLS-inspection product whose CA issued a chain, when it is a well-known one.
"""
from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509 import ocsp

from tlsparse.certificate_decode import quiet_name_warnings
from tlsparse.certificates import CertificateAnomaly, CertificateInfo, describe_certificate, load_certificate

__all__ = [
    "ChainReport",
    "Finding",
    "FindingDetail",
    "TrustStore",
    "check_chain",
    "hostname_matches",
    "looks_like_interception",
]

EXPIRES_SOON = dt.timedelta(days=30)
MIN_RSA_BITS = 2048
MIN_DSA_BITS = 2048
MIN_EC_BITS = 224
WEAK_SIGNATURE_HASHES = frozenset({"md5", "sha1", "md2", "md4"})
# anyExtendedKeyUsage, by name or (where the X.509 library has no name for it) by its OID.
_ANY_USAGE = frozenset({"anyExtendedKeyUsage", "2.5.29.37.0"})


class Finding(str, enum.Enum):
    """What is wrong with a chain. Values are the contract's cause (or warning) names where the contract has one."""

    EXPIRED = "cert_expired"
    NOT_YET_VALID = "cert_not_yet_valid"
    HOSTNAME_MISMATCH = "cert_hostname_mismatch"
    SELF_SIGNED = "cert_self_signed"
    UNKNOWN_CA = "cert_unknown_ca"
    INCOMPLETE_CHAIN = "cert_incomplete_chain"
    REVOKED = "cert_revoked"
    WEAK = "cert_weak"
    EXPIRES_SOON = "cert_expires_soon"  # a warning in the contract, not a cause
    # Not causes in the contract; the verdict rules may fold them into `cert_rejected` or keep them as facts.
    OUT_OF_ORDER = "cert_chain_out_of_order"
    BAD_SIGNATURE = "cert_bad_signature"  # a certificate's issuer is in the chain but the signature does not verify
    WRONG_PURPOSE = "cert_wrong_purpose"  # the leaf's extended key usage leaves out TLS servers (serverAuth)
    UNDECODABLE = "cert_undecodable"  # the leaf (or a certificate on the path) is not decodable DER

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True, kw_only=True)
class FindingDetail:
    finding: Finding
    cert_index: int | None  # position in the chain as sent (0 = leaf); None for trust-store certificates
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainReport:
    findings: tuple[Finding, ...]  # unique, in order of first detection
    details: tuple[FindingDetail, ...]
    facts: tuple[str, ...]  # short sentences for the evidence list
    certificates: tuple[CertificateInfo | CertificateAnomaly, ...]  # as sent
    path: tuple[int, ...]  # indices (as sent) of the certificates on the path from the leaf
    anchor: str | None  # RFC 4514 subject of the trust anchor the path reached, None when it reached none
    trusted: bool  # the path reached a trust anchor with every signature verifying
    ocsp_status: str | None = None  # "good", "revoked", "unknown" from a stapled response about the leaf
    weak_key: bool = False  # the WEAK finding involves a small key (contract warning cert_weak_key)
    weak_signature: bool = False  # the WEAK finding involves an MD5/SHA-1 signature (cert_sha1_signature)

    def has(self, finding: Finding | str) -> bool:
        return Finding(finding) in self.findings

    @property
    def leaf(self) -> CertificateInfo | None:
        first = self.certificates[0] if self.certificates else None
        return first if isinstance(first, CertificateInfo) else None


# ------------------------------------------------------------------------------------------------ trust store


def _key_der(cert: x509.Certificate) -> bytes:
    try:
        return cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return b""


class TrustStore:
    """Trust anchors indexed by subject name. Immutable: the `with_*` methods return a new store."""

    __slots__ = ("_by_subject", "_keys", "_sources")

    def __init__(self, anchors: Iterable[x509.Certificate] = (), *, sources: tuple[str, ...] = ()) -> None:
        self._by_subject: dict[x509.Name, list[x509.Certificate]] = {}
        self._keys: set[tuple[bytes, bytes]] = set()
        self._sources = sources
        with quiet_name_warnings():  # (a CA file's own odd names: not the capture's business)
            for cert in anchors:
                identity = (cert.subject.public_bytes(), _key_der(cert))
                if identity in self._keys:
                    continue
                self._keys.add(identity)
                self._by_subject.setdefault(cert.subject, []).append(cert)

    @classmethod
    def default(cls) -> TrustStore:
        """Mozilla's roots as packaged by certifi."""
        return _default_store()

    @classmethod
    def from_pem_file(cls, path: str | Path) -> TrustStore:
        return cls.from_pem(Path(path).read_bytes(), source=str(path))

    @classmethod
    def from_pem(cls, data: bytes, *, source: str = "pem") -> TrustStore:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)  # e.g. a root with serial 0
            return cls(x509.load_pem_x509_certificates(data), sources=(source,))

    def with_pem_file(self, path: str | Path) -> TrustStore:
        """This store plus the certificates of a PEM bundle (--ca-bundle)."""
        return self.combined(TrustStore.from_pem_file(path))

    def with_certificates(self, certs: Iterable[x509.Certificate], *, source: str = "extra") -> TrustStore:
        return TrustStore([*self.anchors(), *certs], sources=(*self._sources, source))

    def combined(self, other: TrustStore) -> TrustStore:
        return TrustStore([*self.anchors(), *other.anchors()], sources=(*self._sources, *other._sources))

    def anchors(self) -> list[x509.Certificate]:
        return [cert for certs in self._by_subject.values() for cert in certs]

    def candidates_for(self, issuer: x509.Name) -> list[x509.Certificate]:
        return list(self._by_subject.get(issuer, ()))

    def contains(self, cert: x509.Certificate) -> bool:
        """True when an anchor has this certificate's subject and public key (a re-issued root counts)."""
        return (cert.subject.public_bytes(), _key_der(cert)) in self._keys

    @property
    def sources(self) -> tuple[str, ...]:
        return self._sources

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"TrustStore({len(self)} anchors from {', '.join(self._sources) or 'nothing'})"


@cache
def _default_store() -> TrustStore:
    import warnings

    import certifi
    from cryptography.utils import CryptographyDeprecationWarning

    # certifi ships a root with a non-positive serial; cryptography warns on loading it, on every start.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return TrustStore.from_pem_file(certifi.where())


# ------------------------------------------------------------------------------------------------ helpers


class _Signed(enum.Enum):
    NOT_ISSUER = "not_issuer"  # the names do not chain
    VERIFIED = "verified"
    BAD = "bad"  # the names chain but the signature does not verify with the issuer's key
    UNCHECKED = "unchecked"  # the names chain; the algorithm or key cannot be checked here


def _verify_manually(subject: x509.Certificate, issuer: x509.Certificate) -> None:
    """Signature check without cryptography's X.509 policy, which refuses SHA-1 and MD5 signatures outright
    (old chains in captures use them, and a weak signature is a finding of its own, not a broken chain)."""
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    key = issuer.public_key()
    params = subject.signature_algorithm_parameters
    algorithm = subject.signature_hash_algorithm
    if isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
        key.verify(subject.signature, subject.tbs_certificate_bytes, params, algorithm)  # type: ignore[arg-type]
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(subject.signature, subject.tbs_certificate_bytes, params)  # type: ignore[arg-type]
    elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        key.verify(subject.signature, subject.tbs_certificate_bytes)
    elif isinstance(key, dsa.DSAPublicKey) and algorithm is not None:
        key.verify(subject.signature, subject.tbs_certificate_bytes, algorithm)
    else:
        raise UnsupportedAlgorithm(f"{type(key).__name__} signatures")


def _issued_by(subject: x509.Certificate, issuer: x509.Certificate) -> _Signed:
    if subject.issuer != issuer.subject:
        return _Signed.NOT_ISSUER
    try:
        subject.verify_directly_issued_by(issuer)
        return _Signed.VERIFIED
    except InvalidSignature:
        return _Signed.BAD
    except (ValueError, TypeError, UnsupportedAlgorithm):
        pass  # names matched, so: an algorithm cryptography's X.509 layer will not check (SHA-1, MD5, ...)
    try:
        _verify_manually(subject, issuer)
        return _Signed.VERIFIED
    except InvalidSignature:
        return _Signed.BAD
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return _Signed.UNCHECKED


def _self_signed(cert: x509.Certificate) -> bool:
    return _issued_by(cert, cert) in (_Signed.VERIFIED, _Signed.UNCHECKED)


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _days(delta: dt.timedelta) -> str:
    days = abs(delta.total_seconds()) / 86400
    return f"{days:.0f} days" if days >= 2 else f"{abs(delta.total_seconds()) / 3600:.0f} hours"


def _role(index: int, info: CertificateInfo) -> str:
    if index == 0:
        return "leaf"
    return "root" if info.self_issued else "intermediate"


def capture_datetime(at: dt.datetime | float | None) -> dt.datetime | None:
    """A capture time as an aware UTC datetime; None when it is not one a date can hold (a packet time of year
    54,476 from a corrupt pcapng block, NaN): the checks against it are then skipped, not the analysis."""
    if at is None:
        return None
    if isinstance(at, dt.datetime):
        return at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)
    try:
        return dt.datetime.fromtimestamp(at, tz=dt.UTC)
    except (OverflowError, ValueError, OSError):
        return None


# ------------------------------------------------------------------------------------------------ hostnames


def _normalise_host(name: str) -> str:
    name = name.strip().rstrip(".").lower()
    try:
        return name.encode("idna").decode("ascii") if not name.isascii() else name
    except UnicodeError:
        return name


def _dns_matches(pattern: str, host: str) -> bool:
    """RFC 6125 6.4: exact match, or a wildcard that is the whole left-most label and stands for exactly one
    label; never `*.com`-style wildcards over a public suffix of one label, never partial-label wildcards."""
    pattern = _normalise_host(pattern)
    if not pattern or not host:
        return False
    if "*" not in pattern:
        return pattern == host
    labels = pattern.split(".")
    if labels[0] != "*" or "*" in ".".join(labels[1:]) or len(labels) < 3:
        return False
    host_labels = host.split(".")
    return len(host_labels) == len(labels) and host_labels[1:] == labels[1:] and host_labels[0] != ""


def hostname_matches(info: CertificateInfo, server_name: str) -> bool:
    """RFC 6125 matching of a server name (DNS name or IP literal) against a certificate.

    IP literals match only iPAddress SANs. DNS names match dNSName SANs; the subject CN is consulted only when the
    certificate has no DNS or IP SANs at all (legacy certificates; browsers no longer do even that).
    """
    host = server_name.strip().strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        return any(ipaddress.ip_address(ip) == address for ip in info.san_ip)
    host = _normalise_host(host)
    if info.san_dns or info.san_ip:
        return any(_dns_matches(name, host) for name in info.san_dns)
    return any(_dns_matches(cn, host) for cn in info.common_names)


# ------------------------------------------------------------------------------------------------ the checks


@dataclass(slots=True)
class _Collector:
    findings: list[Finding] = field(default_factory=list)
    details: list[FindingDetail] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)

    def add(self, finding: Finding, index: int | None, text: str) -> None:
        if finding not in self.findings:
            self.findings.append(finding)
        self.details.append(FindingDetail(finding=finding, cert_index=index, text=text))
        self.facts.append(text)


def _build_path(
    certs: list[x509.Certificate | None], trust: TrustStore, out: _Collector,
) -> tuple[list[int], x509.Certificate | None, bool]:
    """Follow issuers from the leaf through the certificates as sent, then into the trust store.

    Returns (indices on the path, the anchor reached or None, whether the path ended at a self-signed cert).
    """
    path = [0]
    current = certs[0]
    assert current is not None
    while True:
        if trust.contains(current):
            return path, current, _self_signed(current)
        if _self_signed(current):
            return path, None, True
        # The issuer among the certificates the server sent (any position: servers send them out of order). Several
        # may bear the issuer's name (a CA renewed under the same name, with a new key): a signature that does not
        # verify with one of them is a finding only when none verifies it.
        next_index = None
        wrong_keys: list[str] = []
        for index, candidate in enumerate(certs):
            if candidate is None or index in path:
                continue
            verdict = _issued_by(current, candidate)
            if verdict in (_Signed.VERIFIED, _Signed.UNCHECKED):
                if verdict is _Signed.UNCHECKED:
                    out.facts.append(f"signature of certificate {path[-1]} by certificate {index} not checked "
                                     f"(algorithm not supported here)")
                next_index = index
                break
            if verdict is _Signed.BAD:
                wrong_keys.append(f"certificate {path[-1]}'s signature does not verify with the key of certificate "
                                  f"{index} ({candidate.subject.rfc4514_string()})")
        if next_index is not None:
            path.append(next_index)
            current = certs[next_index]
            assert current is not None
            continue
        for anchor in trust.candidates_for(current.issuer):
            verdict = _issued_by(current, anchor)
            if verdict in (_Signed.VERIFIED, _Signed.UNCHECKED):
                return path, anchor, False
            if verdict is _Signed.BAD:
                wrong_keys.append(f"certificate {path[-1]}'s signature does not verify with trust anchor "
                                  f"{anchor.subject.rfc4514_string()}")
        for text in dict.fromkeys(wrong_keys):  # (the same name, said once)
            out.add(Finding.BAD_SIGNATURE, path[-1], text)
        return path, None, False


def _check_ocsp(
    ocsp_der: bytes, leaf: x509.Certificate, issuer: x509.Certificate | None, at: dt.datetime | None,
    out: _Collector,
) -> str | None:
    """Status of the leaf in a stapled OCSP response ("good", "revoked", "unknown"), None when it says nothing
    about the leaf. The response's signature and freshness become facts: a passive observer reports what the server
    stapled, the client decides."""
    try:
        response = ocsp.load_der_ocsp_response(ocsp_der)
    except ValueError as exc:
        out.facts.append(f"stapled OCSP response does not decode ({exc})")
        return None
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        out.facts.append(f"stapled OCSP response status {response.response_status.name.lower()}")
        return None
    for single in response.responses:
        if single.serial_number != leaf.serial_number:
            continue
        if issuer is not None:
            key_hash = _issuer_key_hash(issuer, single.hash_algorithm)
            if key_hash is not None and key_hash != single.issuer_key_hash:
                continue  # same serial, another CA
        if _ocsp_signature_ok(response, issuer) is False:
            out.facts.append("stapled OCSP response signature does not verify with the issuer or its responder")
        this_update = _ocsp_time(single, "this_update")
        next_update = _ocsp_time(single, "next_update")
        assert this_update is not None
        if at is not None and (at < this_update or (next_update is not None and at > next_update)):
            out.facts.append(f"stapled OCSP response not current at the capture's time "
                             f"(thisUpdate {_iso(this_update)}, nextUpdate "
                             f"{_iso(next_update) if next_update else 'none'})")
        status = single.certificate_status
        if status == ocsp.OCSPCertStatus.REVOKED:
            when = _ocsp_time(single, "revocation_time")
            reason = single.revocation_reason.name if single.revocation_reason is not None else "unspecified"
            if when is None or at is None or when <= at:
                since = f" since {_iso(when)}" if when is not None else ""
                out.add(Finding.REVOKED, 0, f"stapled OCSP response: leaf revoked{since} (reason {reason})")
                return "revoked"
            out.facts.append(f"stapled OCSP response: leaf revoked only after the capture ({_iso(when)})")
            return "good"
        if status == ocsp.OCSPCertStatus.GOOD:
            out.facts.append("stapled OCSP response: leaf good")
            return "good"
        out.facts.append("stapled OCSP response: leaf status unknown")
        return "unknown"
    out.facts.append("stapled OCSP response does not cover the leaf certificate")
    return None


_NO_ACCESSOR = object()


def _ocsp_time(single: object, attr: str) -> dt.datetime | None:
    """cryptography >= 43 has aware `*_utc` accessors; older ones only naive UTC datetimes. (Where the aware one
    exists, its None is the answer: a response without nextUpdate. The naive one, read then, printed cryptography's
    deprecation warning on the user's terminal; found by `tools/fuzz.py cert-fields`.)"""
    aware = getattr(single, attr + "_utc", _NO_ACCESSOR)
    if aware is not _NO_ACCESSOR:
        return aware  # type: ignore[no-any-return]
    naive = getattr(single, attr)
    return naive.replace(tzinfo=dt.UTC) if naive is not None else None


def _issuer_key_hash(issuer: x509.Certificate, algorithm: hashes.HashAlgorithm) -> bytes | None:
    """issuerKeyHash as an OCSP CertID computes it (hash of the issuer's public key bits), via a throwaway
    request so that no ASN.1 is handled here."""
    try:
        return ocsp.OCSPRequestBuilder().add_certificate(issuer, issuer, algorithm).build().issuer_key_hash
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None


def _ocsp_signature_ok(response: ocsp.OCSPResponse, issuer: x509.Certificate | None) -> bool | None:
    """Whether the response is signed by the issuer, or by a responder certificate the issuer signed."""
    if issuer is None:
        return None
    signers = [issuer] + [c for c in response.certificates if _issued_by(c, issuer) is _Signed.VERIFIED]
    for signer in signers:
        try:
            _verify_signature(signer, response.signature, response.tbs_response_bytes,
                              response.signature_hash_algorithm)
            return True
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
            continue
    return False


def _verify_signature(signer: x509.Certificate, signature: bytes, data: bytes,
                      algorithm: hashes.HashAlgorithm | None) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa

    key = signer.public_key()
    if isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
        key.verify(signature, data, padding.PKCS1v15(), algorithm)
    elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
        key.verify(signature, data, ec.ECDSA(algorithm))
    elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        key.verify(signature, data)
    else:
        raise UnsupportedAlgorithm("OCSP signer key type")


def check_chain(
    ders: Sequence[bytes],
    *,
    at: dt.datetime | float | None,
    server_name: str | None,
    trust: TrustStore,
    ocsp_der: bytes | None = None,
) -> ChainReport:
    """Check the chain a server sent (leaf first, as on the wire) at time `at` (the capture's time; None, or a time
    no date can hold: the validity periods and the OCSP response's freshness are not checked, and a fact says so).

    Never raises on hostile certificates: what cannot be checked becomes a finding or a fact.
    """
    at = capture_datetime(at)
    infos = tuple(describe_certificate(der) for der in ders)
    try:
        with quiet_name_warnings():  # (describe_certificate has kept it in the certificate's problems)
            return _check_chain(ders, infos, at, server_name, trust, ocsp_der)
    except Exception as exc:  # noqa: BLE001 - cryptography decodes lazily; one odd certificate must not stop a run
        stopped = f"certificate checks stopped: {type(exc).__name__}: {exc}"
        return ChainReport(findings=(), details=(), facts=(stopped,), certificates=infos, path=(), anchor=None,
                           trusted=False)


def _check_chain(
    ders: Sequence[bytes],
    infos: tuple[CertificateInfo | CertificateAnomaly, ...],
    at: dt.datetime | None,
    server_name: str | None,
    trust: TrustStore,
    ocsp_der: bytes | None,
) -> ChainReport:
    out = _Collector()
    if not ders:
        return ChainReport(findings=(), details=(), facts=("no certificate sent",), certificates=(), path=(),
                           anchor=None, trusted=False)
    # Only certificates that describe cleanly take part in path building.
    certs = [load_certificate(der) if isinstance(info, CertificateInfo) else None for der, info in zip(ders, infos)]
    leaf_info = infos[0]
    if certs[0] is None or not isinstance(leaf_info, CertificateInfo):
        error = leaf_info.error if isinstance(leaf_info, CertificateAnomaly) else "undecodable"
        out.add(Finding.UNDECODABLE, 0, f"leaf certificate does not decode ({error})")
        return ChainReport(findings=tuple(out.findings), details=tuple(out.details), facts=tuple(out.facts),
                           certificates=infos, path=(), anchor=None, trusted=False)
    for index, info in enumerate(infos):
        if isinstance(info, CertificateAnomaly):
            out.facts.append(f"certificate {index} does not decode ({info.error})")

    path, anchor, ends_self_signed = _build_path(certs, trust, out)
    last = certs[path[-1]]
    assert last is not None
    last_info = infos[path[-1]]
    assert isinstance(last_info, CertificateInfo)
    trusted = anchor is not None and Finding.BAD_SIGNATURE not in out.findings

    # --- where the path ends
    if anchor is not None:
        out.facts.append(f"chain anchored at {anchor.subject.rfc4514_string()} (trust store)")
    elif ends_self_signed and path == [0]:
        out.add(Finding.SELF_SIGNED, 0, f"leaf {leaf_info.subject} is self-signed and not in the trust store")
    elif ends_self_signed:
        out.add(Finding.UNKNOWN_CA, path[-1],
                f"chain ends at root {last_info.subject}, which is not in the trust store")
    elif last_info.aia_ca_issuers or (path[-1] != 0 and last_info.is_ca):
        where = f"; its AIA points to {last_info.aia_ca_issuers[0]}" if last_info.aia_ca_issuers else ""
        out.add(Finding.INCOMPLETE_CHAIN, path[-1],
                f"issuer {last_info.issuer} of certificate {path[-1]} was not sent and is not a trust "
                f"anchor{where}")
    else:
        out.add(Finding.UNKNOWN_CA, path[-1],
                f"issuer {last_info.issuer} of certificate {path[-1]} is neither sent nor in the trust store")

    # --- order and extras
    if path != list(range(len(path))):
        out.add(Finding.OUT_OF_ORDER, None,
                f"chain sent out of order: the path uses certificates {'→'.join(map(str, path))}")
    unused = [i for i in range(len(ders)) if i not in path]
    if unused:
        out.facts.append(f"certificate{'s' if len(unused) > 1 else ''} {', '.join(map(str, unused))} "
                         f"not on the path to the leaf")

    # --- validity, key and signature strength of each certificate on the path
    weak_key = weak_signature = False
    for index in path:
        info = infos[index]
        assert isinstance(info, CertificateInfo)
        role = _role(index, info)
        if at is None:
            pass  # (said once, below)
        elif at > info.not_after:
            out.add(Finding.EXPIRED, index, f"{role} {info.subject} expired {_iso(info.not_after)}, "
                    f"{_days(at - info.not_after)} before the capture")
        elif at < info.not_before:
            out.add(Finding.NOT_YET_VALID, index, f"{role} {info.subject} is valid only from "
                    f"{_iso(info.not_before)}, {_days(info.not_before - at)} after the capture")
        elif info.not_after - at <= EXPIRES_SOON:
            out.add(Finding.EXPIRES_SOON, index, f"{role} {info.subject} expires {_iso(info.not_after)}, "
                    f"{_days(info.not_after - at)} after the capture")
        small = (
            (info.key_type == "RSA" and (info.key_bits or 0) < MIN_RSA_BITS)
            or (info.key_type == "DSA" and (info.key_bits or 0) < MIN_DSA_BITS)
            or (info.key_type == "EC" and (info.key_bits or 0) < MIN_EC_BITS)
        )
        if small:
            weak_key = True
            out.add(Finding.WEAK, index, f"{role} {info.subject} has a {info.key_bits}-bit {info.key_type} key")
        # A root's self-signature is never checked by clients, so its hash does not matter.
        if info.signature_hash in WEAK_SIGNATURE_HASHES and not (info.self_issued and _self_signed(certs[index])):
            weak_signature = True
            out.add(Finding.WEAK, index, f"{role} {info.subject} is signed with {info.signature_algorithm}")

    if at is None:
        out.facts.append("the capture's time is not a date: the certificates' validity periods were not checked")

    # --- name
    if server_name:
        if hostname_matches(leaf_info, server_name):
            out.facts.append(f"leaf matches server name {server_name}")
        else:
            names = ", ".join((*leaf_info.san_dns, *leaf_info.san_ip)) or f"CN {', '.join(leaf_info.common_names)}"
            out.add(Finding.HOSTNAME_MISMATCH, 0, f"leaf is for {names or 'no name'}, not {server_name}")

    # --- purpose: clients refuse a server certificate whose extended key usage leaves out serverAuth (OpenSSL:
    # "unsuitable certificate purpose"), as a client certificate used by a server has it.
    usages = leaf_info.extended_key_usage
    if usages and "serverAuth" not in usages and not _ANY_USAGE & set(usages):
        out.add(Finding.WRONG_PURPOSE, 0, f"leaf {leaf_info.subject} is not for TLS servers: its extended key usage "
                f"is {', '.join(usages)}, without serverAuth")

    # --- revocation (stapled OCSP only: a passive observer sees nothing else)
    ocsp_status = None
    if ocsp_der:
        issuer = certs[path[1]] if len(path) > 1 else anchor
        ocsp_status = _check_ocsp(ocsp_der, certs[0], issuer, at, out)

    return ChainReport(
        findings=tuple(out.findings),
        details=tuple(out.details),
        facts=tuple(out.facts),
        certificates=infos,
        path=tuple(path),
        anchor=anchor.subject.rfc4514_string() if anchor is not None else None,
        trusted=trusted,
        ocsp_status=ocsp_status,
        weak_key=weak_key,
        weak_signature=weak_signature,
    )


# ------------------------------------------------------------------------------------------------ interception

# Issuer/CA-subject patterns of TLS-inspection proxies and antivirus "web shields" that re-sign server chains
# with their own CA. Matched against issuers of every certificate and subjects of CA certificates only, so that
# a vendor's own website (CN=www.zscaler.com, issued by a public CA) does not match.
_INTERCEPTION_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (product, re.compile(pattern, re.IGNORECASE))
    for product, pattern in (
        ("Zscaler", r"zscaler"),
        ("Fortinet FortiGate", r"fortinet|fortigate|\bFGT[0-9A-Z]"),
        ("Palo Alto Networks", r"palo ?alto"),
        ("Blue Coat / Symantec SSL Visibility", r"blue ?coat|ssl ?visibility"),
        ("Cisco Umbrella", r"cisco umbrella|opendns"),
        ("Netskope", r"netskope"),
        ("Sophos", r"sophos"),
        ("Kaspersky", r"kaspersky"),
        ("ESET", r"\beset ssl filter|\beset,? spol|O=ESET\b"),
        ("Avast", r"avast"),
        ("AVG", r"\bAVG (web|technologies|mail)"),
        ("Bitdefender", r"bitdefender"),
        ("mitmproxy", r"mitmproxy"),
        ("Fiddler", r"DO_NOT_TRUST|fiddler"),
        ("Charles Proxy", r"charles proxy|charlesproxy"),
        ("Burp Suite (PortSwigger)", r"portswigger|\bburp\b"),
        ("Check Point", r"check ?point"),
        ("Forcepoint / Websense", r"forcepoint|websense"),
        ("McAfee / Skyhigh Web Gateway", r"mcafee web gateway|skyhigh"),
        ("Barracuda", r"barracuda"),
        ("WatchGuard", r"watchguard"),
        ("SonicWall", r"sonicwall"),
        ("Untangle", r"untangle"),
        ("Smoothwall", r"smoothwall"),
        ("iboss", r"\biboss\b"),
        ("Lightspeed Systems", r"lightspeed systems"),
        ("Securly", r"securly"),
        ("ContentKeeper", r"contentkeeper"),
    )
)


def looks_like_interception(
    chain: Sequence[bytes | CertificateInfo | CertificateAnomaly] | ChainReport,
) -> str | None:
    """The TLS-inspection product whose CA appears in the chain, or None."""
    items = chain.certificates if isinstance(chain, ChainReport) else chain
    texts: list[str] = []
    for index, item in enumerate(items):
        info = describe_certificate(item) if isinstance(item, (bytes, bytearray)) else item
        if not isinstance(info, CertificateInfo):
            continue
        texts.append(info.issuer)
        if index > 0 or info.is_ca:
            texts.append(info.subject)
    for product, pattern in _INTERCEPTION_PATTERNS:
        if any(pattern.search(text) for text in texts):
            return product
    return None
