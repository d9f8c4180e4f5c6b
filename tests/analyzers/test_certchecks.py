"""analyzers.certchecks on a throwaway PKI made here with `cryptography` (and openssl for the one thing
cryptography no longer does, SHA-1 signatures), and on the chains of the public captures against Zeek's results."""
from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzers.certchecks import (
    ChainReport,
    Finding,
    TrustStore,
    check_chain,
    hostname_matches,
    looks_like_interception,
)
from tlsparse.certificates import CertificateInfo, describe_certificate

UTC = dt.UTC
T0 = dt.datetime(2025, 6, 1, 12, 0, tzinfo=UTC)  # "capture time" for the PKI below
DAY = dt.timedelta(days=1)
REPO = Path(__file__).resolve().parents[2]
PUBLIC = Path(os.environ.get("TLSFLOW_SHARED", REPO.parent / "shared")) / "captures" / "public"


def name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


@dataclass
class Issued:
    cert: x509.Certificate
    key: object

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


def issue(subject: x509.Name, key, issuer: Issued | None, *, ca: bool, san: list | None = None,
          not_before: dt.datetime = T0 - 100 * DAY, not_after: dt.datetime = T0 + 300 * DAY,
          aia: str | None = None) -> Issued:
    signer_key = issuer.key if issuer else key
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.cert.subject if issuer else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    if aia:
        builder = builder.add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
            AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(aia))]), critical=False)
    return Issued(builder.sign(signer_key, hashes.SHA256()), key)


def ec_key():
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class Pki:
    root: Issued
    intermediate: Issued
    leaf_rsa: Issued
    leaf_ec: Issued
    other_root: Issued
    trust: TrustStore


@pytest.fixture(scope="module")
def pki() -> Pki:
    root = issue(name("Test Root CA", "tlsflow tests"), rsa.generate_private_key(65537, 2048), None, ca=True,
                 not_before=T0 - 1000 * DAY, not_after=T0 + 3000 * DAY)
    intermediate = issue(name("Test Intermediate CA", "tlsflow tests"), ec_key(), root, ca=True,
                         not_before=T0 - 500 * DAY, not_after=T0 + 1000 * DAY, aia="http://ca.test/root.der")
    leaf_rsa = issue(name("www.example.test"), rsa.generate_private_key(65537, 2048), intermediate, ca=False,
                     san=[x509.DNSName("www.example.test"), x509.DNSName("example.test")],
                     aia="http://ca.test/intermediate.der")
    leaf_ec = issue(name("api.example.test"), ec_key(), intermediate, ca=False,
                    san=[x509.DNSName("*.example.test"), x509.IPAddress(ipaddress.ip_address("192.0.2.10"))],
                    aia="http://ca.test/intermediate.der")
    other_root = issue(name("Some Other Root"), ec_key(), None, ca=True)
    return Pki(root, intermediate, leaf_rsa, leaf_ec, other_root, TrustStore([root.cert], sources=("test",)))


def kinds(report: ChainReport) -> set[str]:
    return {f.value for f in report.findings}


# ---------------------------------------------------------------- the good case


def test_good_chains_have_no_findings(pki: Pki) -> None:
    for leaf, host in ((pki.leaf_rsa, "www.example.test"), (pki.leaf_ec, "api.example.test")):
        report = check_chain([leaf.der, pki.intermediate.der], at=T0, server_name=host, trust=pki.trust)
        assert report.findings == (), report.facts
        assert report.trusted and report.path == (0, 1)
        assert report.anchor == pki.root.cert.subject.rfc4514_string()
        assert any("anchored at" in fact for fact in report.facts)
    # The root sent along is fine too, and a float capture timestamp works as the time.
    report = check_chain([pki.leaf_rsa.der, pki.intermediate.der, pki.root.der], at=T0.timestamp(),
                         server_name="example.test", trust=pki.trust)
    assert report.findings == () and report.path == (0, 1, 2) and report.trusted


def test_key_facts_of_the_leaves(pki: Pki) -> None:
    report = check_chain([pki.leaf_ec.der, pki.intermediate.der], at=T0, server_name=None, trust=pki.trust)
    leaf = report.leaf
    assert isinstance(leaf, CertificateInfo) and (leaf.key_type, leaf.curve) == ("EC", "secp256r1")
    rsa_leaf = describe_certificate(pki.leaf_rsa.der)
    assert isinstance(rsa_leaf, CertificateInfo) and (rsa_leaf.key_type, rsa_leaf.key_bits) == ("RSA", 2048)


# ---------------------------------------------------------------- time: always the capture's


def test_expired_not_yet_valid_and_expires_soon_follow_the_given_time(pki: Pki) -> None:
    chain = [pki.leaf_rsa.der, pki.intermediate.der]
    leaf_info = describe_certificate(pki.leaf_rsa.der)
    assert isinstance(leaf_info, CertificateInfo)
    after = leaf_info.not_after + 12 * DAY
    report = check_chain(chain, at=after, server_name="www.example.test", trust=pki.trust)
    assert kinds(report) == {"cert_expired"}
    assert report.details[0].cert_index == 0 and "12 days before the capture" in report.details[0].text

    before = leaf_info.not_before - 3 * DAY
    assert kinds(check_chain(chain, at=before, server_name=None, trust=pki.trust)) == {"cert_not_yet_valid"}

    soon = leaf_info.not_after - 10 * DAY
    report = check_chain(chain, at=soon, server_name=None, trust=pki.trust)
    assert kinds(report) == {"cert_expires_soon"}
    assert not report.has(Finding.EXPIRED)


def test_an_expired_intermediate_counts(pki: Pki) -> None:
    old_intermediate = issue(name("Old Intermediate"), ec_key(), pki.root, ca=True,
                             not_before=T0 - 400 * DAY, not_after=T0 - 2 * DAY)
    leaf = issue(name("x.example.test"), ec_key(), old_intermediate, ca=False, san=[x509.DNSName("x.example.test")])
    report = check_chain([leaf.der, old_intermediate.der], at=T0, server_name="x.example.test", trust=pki.trust)
    assert kinds(report) == {"cert_expired"}
    assert [d.cert_index for d in report.details] == [1]


def test_certificate_expired_today_but_valid_at_capture_time_is_fine(pki: Pki) -> None:
    past = dt.datetime(2001, 1, 1, tzinfo=UTC)
    root = issue(name("Old Root"), ec_key(), None, ca=True, not_before=past - 10 * DAY, not_after=past + 900 * DAY)
    leaf = issue(name("old.test"), ec_key(), root, ca=False, san=[x509.DNSName("old.test")],
                 not_before=past - DAY, not_after=past + 300 * DAY)
    report = check_chain([leaf.der], at=past, server_name="old.test", trust=TrustStore([root.cert]))
    assert report.findings == () and report.trusted


# ---------------------------------------------------------------- names


def test_hostname_mismatch(pki: Pki) -> None:
    report = check_chain([pki.leaf_rsa.der, pki.intermediate.der], at=T0, server_name="mail.example.test",
                         trust=pki.trust)
    assert kinds(report) == {"cert_hostname_mismatch"}
    assert "mail.example.test" in report.details[0].text and "www.example.test" in report.details[0].text


@pytest.mark.parametrize(
    ("host", "matches"),
    [
        ("api.example.test", True),
        ("API.Example.Test.", True),  # case and a trailing dot do not matter
        ("example.test", False),  # the wildcard needs a label
        ("a.b.example.test", False),  # and stands for exactly one
        ("192.0.2.10", True),  # IP SAN
        ("192.0.2.11", False),
        ("[192.0.2.10]", True),
    ],
)
def test_wildcard_and_ip_matching(pki: Pki, host: str, matches: bool) -> None:
    info = describe_certificate(pki.leaf_ec.der)
    assert isinstance(info, CertificateInfo)
    assert hostname_matches(info, host) is matches


def test_common_name_is_used_only_without_sans(pki: Pki) -> None:
    no_san = issue(name("legacy.example.test"), ec_key(), pki.intermediate, ca=False)
    info = describe_certificate(no_san.der)
    assert isinstance(info, CertificateInfo) and hostname_matches(info, "legacy.example.test")
    # The CN says www.example.test, but the SANs rule when present.
    with_san = issue(name("www.example.test"), ec_key(), pki.intermediate, ca=False,
                     san=[x509.DNSName("other.example.test")])
    info = describe_certificate(with_san.der)
    assert isinstance(info, CertificateInfo) and not hostname_matches(info, "www.example.test")
    # No wildcard over a one-label suffix, no partial-label wildcards.
    for pattern, host in (("*.test", "example.test"), ("w*.example.test", "www.example.test")):
        odd = issue(name("odd"), ec_key(), pki.intermediate, ca=False, san=[x509.DNSName(pattern)])
        info = describe_certificate(odd.der)
        assert isinstance(info, CertificateInfo) and not hostname_matches(info, host)


# ---------------------------------------------------------------- where the chain ends


def test_self_signed_leaf(pki: Pki) -> None:
    key = ec_key()
    self_signed = issue(name("selfie.test"), key, None, ca=False, san=[x509.DNSName("selfie.test")])
    report = check_chain([self_signed.der], at=T0, server_name="selfie.test", trust=pki.trust)
    assert kinds(report) == {"cert_self_signed"} and not report.trusted
    # Pinned in the trust store (e.g. --ca-bundle with that very certificate): fine.
    pinned = pki.trust.with_certificates([self_signed.cert])
    report = check_chain([self_signed.der], at=T0, server_name="selfie.test", trust=pinned)
    assert report.findings == () and report.trusted


def test_unknown_ca_when_the_root_is_not_trusted(pki: Pki) -> None:
    intermediate = issue(name("Private Intermediate"), ec_key(), pki.other_root, ca=True)
    leaf = issue(name("intranet.test"), ec_key(), intermediate, ca=False, san=[x509.DNSName("intranet.test")])
    report = check_chain([leaf.der, intermediate.der, pki.other_root.der], at=T0, server_name="intranet.test",
                         trust=pki.trust)
    assert kinds(report) == {"cert_unknown_ca"} and report.path == (0, 1, 2) and not report.trusted
    # A leaf whose (unsent) issuer is nowhere to be found and says nothing about where to get it.
    orphan = issue(name("orphan.test"), ec_key(), pki.other_root, ca=False, san=[x509.DNSName("orphan.test")])
    assert kinds(check_chain([orphan.der], at=T0, server_name="orphan.test", trust=pki.trust)) == {"cert_unknown_ca"}


def test_incomplete_chain_when_the_intermediate_is_missing(pki: Pki) -> None:
    report = check_chain([pki.leaf_rsa.der], at=T0, server_name="www.example.test", trust=pki.trust)
    assert kinds(report) == {"cert_incomplete_chain"}
    assert "http://ca.test/intermediate.der" in report.details[0].text
    # With the intermediate in the trust store (as some clients cache it), nothing is missing.
    report = check_chain([pki.leaf_rsa.der], at=T0, server_name="www.example.test",
                         trust=pki.trust.with_certificates([pki.intermediate.cert]))
    assert report.findings == () and report.trusted


def test_out_of_order_chain_still_anchors(pki: Pki) -> None:
    report = check_chain([pki.leaf_rsa.der, pki.root.der, pki.intermediate.der], at=T0,
                         server_name="www.example.test", trust=pki.trust)
    assert kinds(report) == {"cert_chain_out_of_order"}
    assert report.path == (0, 2, 1) and report.trusted


def test_unrelated_extra_certificate_is_a_fact(pki: Pki) -> None:
    report = check_chain([pki.leaf_rsa.der, pki.intermediate.der, pki.other_root.der], at=T0,
                         server_name="www.example.test", trust=pki.trust)
    assert report.findings == () and report.path == (0, 1)
    assert any("2 not on the path" in fact for fact in report.facts)


def test_forged_signature(pki: Pki) -> None:
    impostor = Issued(pki.intermediate.cert, ec_key())  # same name as the real intermediate, another key
    forged = issue(name("www.example.test"), ec_key(), impostor, ca=False, san=[x509.DNSName("www.example.test")])
    report = check_chain([forged.der, pki.intermediate.der], at=T0, server_name="www.example.test",
                         trust=pki.trust)
    assert report.has(Finding.BAD_SIGNATURE) and not report.trusted


def test_a_ca_renewed_under_the_same_name(pki: Pki) -> None:
    """Two roots of the same name in the trust store (a CA renewed with a new key; the corpus's own CA file holds one
    per recording): the one whose key verifies anchors the chain, and the other's failed check is no finding. Before,
    each root tried first added a "signature does not verify" finding, and the chain was not trusted."""
    old_root = issue(pki.root.cert.subject, rsa.generate_private_key(65537, 2048), None, ca=True,
                     not_before=T0 - 3000 * DAY, not_after=T0 + 100 * DAY)
    for roots in ([old_root.cert, pki.root.cert], [pki.root.cert, old_root.cert]):
        report = check_chain([pki.leaf_rsa.der, pki.intermediate.der], at=T0, server_name="www.example.test",
                             trust=TrustStore(roots, sources=("test",)))
        assert report.findings == () and report.trusted, report.facts
        assert not any("does not verify" in fact for fact in report.facts)
    # Only the wrong one: the chain's issuer is there by name, not by key.
    report = check_chain([pki.leaf_rsa.der, pki.intermediate.der], at=T0, server_name="www.example.test",
                         trust=TrustStore([old_root.cert, old_root.cert], sources=("test",)))
    assert report.has(Finding.BAD_SIGNATURE) and not report.trusted
    assert sum("does not verify with trust anchor" in fact for fact in report.facts) == 1


def test_a_leaf_not_for_servers(pki: Pki) -> None:
    """A leaf whose extended key usage is clientAuth only: clients refuse it as a server's ('unsuitable certificate
    purpose'). serverAuth, anyExtendedKeyUsage, or no extension at all are fine."""
    from cryptography.x509.oid import ExtendedKeyUsageOID

    def leaf_with(*usages) -> bytes:
        key = ec_key()
        builder = (x509.CertificateBuilder().subject_name(name("www.example.test"))
                   .issuer_name(pki.intermediate.cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(T0 - 10 * DAY)
                   .not_valid_after(T0 + 100 * DAY)
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName("www.example.test")]), critical=False))
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        return builder.sign(pki.intermediate.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def check(der: bytes) -> ChainReport:
        return check_chain([der, pki.intermediate.der], at=T0, server_name="www.example.test", trust=pki.trust)

    report = check(leaf_with(ExtendedKeyUsageOID.CLIENT_AUTH))
    assert kinds(report) == {"cert_wrong_purpose"} and report.trusted
    assert "its extended key usage is clientAuth, without serverAuth" in report.facts[-1]
    for usages in ((ExtendedKeyUsageOID.SERVER_AUTH,), (ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH),
                   (ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,), ()):
        assert check(leaf_with(*usages)).findings == (), usages


def test_undecodable_leaf(pki: Pki) -> None:
    report = check_chain([b"\x30\x03\x02\x01\x00", pki.intermediate.der], at=T0, server_name=None, trust=pki.trust)
    assert kinds(report) == {"cert_undecodable"}
    assert check_chain([], at=T0, server_name=None, trust=pki.trust).findings == ()


# ---------------------------------------------------------------- weak keys and signatures


def test_rsa_1024_leaf_is_weak(pki: Pki) -> None:
    small = issue(name("small.test"), rsa.generate_private_key(65537, 1024), pki.intermediate, ca=False,
                  san=[x509.DNSName("small.test")])
    report = check_chain([small.der, pki.intermediate.der], at=T0, server_name="small.test", trust=pki.trust)
    assert kinds(report) == {"cert_weak"} and report.weak_key and not report.weak_signature
    assert "1024-bit RSA" in report.details[0].text


def test_small_ec_key_is_weak(pki: Pki) -> None:
    tiny = issue(name("tiny.test"), ec.generate_private_key(ec.SECP192R1()), pki.intermediate, ca=False,
                 san=[x509.DNSName("tiny.test")])
    report = check_chain([tiny.der, pki.intermediate.der], at=T0, server_name="tiny.test", trust=pki.trust)
    assert kinds(report) == {"cert_weak"} and report.weak_key


def _openssl_sha1_chain(tmp_path: Path) -> tuple[bytes, bytes]:
    """A SHA-1-signed leaf under an RSA root: cryptography no longer signs with SHA-1, openssl still does."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-subj", "/CN=SHA1 Test Root", "-days", "400", "-sha256")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=sha1.test")
    (tmp_path / "ext.cnf").write_text("subjectAltName=DNS:sha1.test\nbasicConstraints=critical,CA:FALSE\n")
    run("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-sha1",
        "-days", "200", "-extfile", "ext.cnf", "-out", "leaf.pem")
    root = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    leaf = x509.load_pem_x509_certificate((tmp_path / "leaf.pem").read_bytes())
    return (leaf.public_bytes(serialization.Encoding.DER), root.public_bytes(serialization.Encoding.DER))


@pytest.mark.tools
def test_sha1_signed_leaf_is_weak_but_anchors(tmp_path: Path) -> None:
    leaf_der, root_der = _openssl_sha1_chain(tmp_path)
    leaf = describe_certificate(leaf_der)
    assert isinstance(leaf, CertificateInfo) and leaf.signature_hash == "sha1"
    trust = TrustStore([x509.load_der_x509_certificate(root_der)])
    report = check_chain([leaf_der], at=leaf.not_before + DAY, server_name="sha1.test", trust=trust)
    assert kinds(report) == {"cert_weak"} and report.weak_signature and not report.weak_key
    assert report.trusted  # the SHA-1 signature itself was verified: a weak chain, not a broken one
    # A forged SHA-1 signature is still caught.
    broken = bytearray(leaf_der)
    broken[-5] ^= 0xFF
    report = check_chain([bytes(broken)], at=leaf.not_before + DAY, server_name="sha1.test", trust=trust)
    assert not report.trusted


def test_sha1_self_signature_of_a_root_is_not_weak() -> None:
    """Certifi's SHA-1 roots (if any are left): clients never check a root's own signature."""
    sha1_roots = [c for c in TrustStore.default().anchors() if describe_certificate(
        c.public_bytes(serialization.Encoding.DER)).signature_hash == "sha1"]  # type: ignore[union-attr]
    if not sha1_roots:
        pytest.skip("no SHA-1 roots in this certifi")
    root = sha1_roots[0]
    info = describe_certificate(root.public_bytes(serialization.Encoding.DER))
    assert isinstance(info, CertificateInfo)
    at = info.not_before + (info.not_after - info.not_before) / 2
    report = check_chain([info.der], at=at, server_name=None, trust=TrustStore.default())
    assert not report.has(Finding.WEAK) and report.trusted


# ---------------------------------------------------------------- revocation (stapled OCSP)


def _ocsp(leaf: Issued, issuer: Issued, status: ocsp.OCSPCertStatus, *, revoked_at: dt.datetime | None = None,
          this_update: dt.datetime = T0 - DAY, signer: Issued | None = None) -> bytes:
    signer = signer or issuer
    builder = ocsp.OCSPResponseBuilder().add_response(
        cert=leaf.cert, issuer=issuer.cert, algorithm=hashes.SHA1(), cert_status=status,
        this_update=this_update, next_update=this_update + 7 * DAY,
        revocation_time=revoked_at, revocation_reason=x509.ReasonFlags.key_compromise if revoked_at else None,
    ).responder_id(ocsp.OCSPResponderEncoding.HASH, signer.cert)
    return builder.sign(signer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_revoked_by_stapled_ocsp(pki: Pki) -> None:
    chain = [pki.leaf_ec.der, pki.intermediate.der]
    staple = _ocsp(pki.leaf_ec, pki.intermediate, ocsp.OCSPCertStatus.REVOKED, revoked_at=T0 - 3 * DAY)
    report = check_chain(chain, at=T0, server_name="api.example.test", trust=pki.trust, ocsp_der=staple)
    assert kinds(report) == {"cert_revoked"} and report.ocsp_status == "revoked"
    assert "key_compromise" in report.details[0].text
    assert not any("signature does not verify" in f for f in report.facts)


def test_good_and_foreign_ocsp_responses(pki: Pki) -> None:
    chain = [pki.leaf_ec.der, pki.intermediate.der]
    good = _ocsp(pki.leaf_ec, pki.intermediate, ocsp.OCSPCertStatus.GOOD)
    report = check_chain(chain, at=T0, server_name="api.example.test", trust=pki.trust, ocsp_der=good)
    assert report.findings == () and report.ocsp_status == "good"
    # A response about another certificate says nothing about this leaf.
    other = _ocsp(pki.leaf_rsa, pki.intermediate, ocsp.OCSPCertStatus.REVOKED, revoked_at=T0 - DAY)
    report = check_chain(chain, at=T0, server_name="api.example.test", trust=pki.trust, ocsp_der=other)
    assert report.findings == () and report.ocsp_status is None
    # Stale, and signed by a responder the issuer never certified: facts, not verdicts.
    rogue = issue(name("Rogue Responder"), ec_key(), None, ca=False)
    stale = _ocsp(pki.leaf_ec, pki.intermediate, ocsp.OCSPCertStatus.GOOD, this_update=T0 - 30 * DAY,
                  signer=rogue)
    report = check_chain(chain, at=T0, server_name="api.example.test", trust=pki.trust, ocsp_der=stale)
    assert any("not current" in f for f in report.facts)
    assert any("signature does not verify" in f for f in report.facts)
    report = check_chain(chain, at=T0, server_name=None, trust=pki.trust, ocsp_der=b"junk")
    assert report.ocsp_status is None and any("does not decode" in f for f in report.facts)


# ---------------------------------------------------------------- trust stores


def test_default_trust_store_and_pem_files(pki: Pki, tmp_path: Path) -> None:
    default = TrustStore.default()
    assert len(default) > 100
    assert not default.contains(pki.root.cert)
    bundle = tmp_path / "extra.pem"
    bundle.write_bytes(pki.root.cert.public_bytes(serialization.Encoding.PEM)
                       + pki.other_root.cert.public_bytes(serialization.Encoding.PEM))
    own = TrustStore.from_pem_file(bundle)
    assert len(own) == 2 and own.contains(pki.root.cert)
    both = default.with_pem_file(bundle)
    assert len(both) == len(default) + 2 and both.contains(pki.root.cert)
    assert len(default.combined(own).combined(own)) == len(both)  # duplicates collapse
    report = check_chain([pki.leaf_rsa.der, pki.intermediate.der], at=T0, server_name="www.example.test",
                         trust=both)
    assert report.trusted


# ---------------------------------------------------------------- TLS interception products


@pytest.mark.parametrize(
    ("issuer_name", "product"),
    [
        (name("Zscaler Intermediate Root CA (zscaler.net)", "Zscaler Inc."), "Zscaler"),
        (name("FortiGate CA", "Fortinet"), "Fortinet FortiGate"),
        (name("DO_NOT_TRUST_FiddlerRoot", "DO_NOT_TRUST"), "Fiddler"),
        (name("mitmproxy", "mitmproxy"), "mitmproxy"),
        (name("PortSwigger CA", "PortSwigger"), "Burp Suite (PortSwigger)"),
        (name("Charles Proxy CA (1 Jan 2025, host)", "XK72 Ltd"), "Charles Proxy"),
        (name("Kaspersky Anti-Virus Personal Root Certificate", "AO Kaspersky Lab"), "Kaspersky"),
        (name("Avast Web/Mail Shield Root", "Avast Web/Mail Shield"), "Avast"),
        (name("ESET SSL Filter CA", "ESET, spol. s r. o."), "ESET"),
        (name("Cisco Umbrella Secondary SubCA ash-SG", "Cisco"), "Cisco Umbrella"),
        (name("caas.goskope.com", "Netskope Inc"), "Netskope"),
        (name("Palo Alto Networks Forward Trust CA"), "Palo Alto Networks"),
    ],
)
def test_interception_products_are_named(issuer_name: x509.Name, product: str) -> None:
    ca = issue(issuer_name, ec_key(), None, ca=True)
    leaf = issue(name("www.bank.example"), ec_key(), ca, ca=False, san=[x509.DNSName("www.bank.example")])
    assert looks_like_interception([leaf.der, ca.der]) == product
    assert looks_like_interception([describe_certificate(leaf.der)]) == product  # the issuer alone suffices


def test_ordinary_chains_and_vendor_websites_are_not_interception(pki: Pki) -> None:
    assert looks_like_interception([pki.leaf_rsa.der, pki.intermediate.der]) is None
    vendor_site = issue(name("www.zscaler.com"), ec_key(), pki.intermediate, ca=False,
                        san=[x509.DNSName("www.zscaler.com")])
    assert looks_like_interception([vendor_site.der, pki.intermediate.der]) is None
    report = check_chain([pki.leaf_rsa.der, pki.intermediate.der], at=T0, server_name=None, trust=pki.trust)
    assert looks_like_interception(report) is None
    assert looks_like_interception([b"not a certificate"]) is None


# ---------------------------------------------------------------- chains of the public captures, against Zeek


def zeek_records() -> list[dict]:
    if not (PUBLIC / "expected.jsonl").is_file():
        return []
    out = []
    for line in (PUBLIC / "expected.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["source"] == "zeek-baseline" and (record.get("sni_matches_cert") is not None
                                                    or record.get("validation_status") or record.get("ocsp_status")):
            out.append(record)
    return out


@functools.cache
def capture_flows(path: Path) -> dict[tuple[str, str], dict]:
    """Per (client, server): first packet time, SNI, server chain and stapled OCSP, parsed by tlsparse."""
    from scapy.all import IP, TCP, IPv6, Padding, rdpcap

    from tlsparse import Certificate, CertificateStatus, ClientHello, HandshakeSeen, Sender, TlsConnection

    flows: dict[tuple[str, str], dict] = {}
    next_seq: dict[tuple[str, str], int] = {}
    for frame, packet in enumerate(rdpcap(str(path)), start=1):
        if TCP not in packet or (IP not in packet and IPv6 not in packet):
            continue
        ip = packet[IP] if IP in packet else packet[IPv6]
        tcp = packet[TCP]
        src, dst = f"{ip.src}:{tcp.sport}", f"{ip.dst}:{tcp.dport}"
        payload = bytes(tcp.payload)
        if Padding in packet:
            payload = payload[: len(payload) - len(packet[Padding])]
        flow = flows.get((src, dst)) or flows.get((dst, src))
        if flow is None:
            # Zeek's tls-fragmented-handshake trace carries a 340 kB Certificate message, over the parser's
            # default cap; raise the cap here so that its chain can be compared.
            flow = {"client": src, "ts": float(packet.time), "conn": TlsConnection(max_handshake=1 << 20),
                    "chain": None, "ocsp": None, "sni": None}
            flows[(src, dst)] = flow
        if tcp.flags & 0x02:
            next_seq[(src, dst)] = (tcp.seq + 1) & 0xFFFFFFFF
            continue
        if not payload:
            continue
        expected = next_seq.setdefault((src, dst), tcp.seq)
        skip = (expected - tcp.seq) & 0xFFFFFFFF
        if skip < 0x80000000:  # a retransmission or overlap: keep the new bytes only
            payload = payload[skip:]
        elif skip:
            flow["conn"].receive_gap(Sender.CLIENT if src == flow["client"] else Sender.SERVER,
                                     (tcp.seq - expected) & 0xFFFFFFFF, frame, float(packet.time))
            expected = tcp.seq
        next_seq[(src, dst)] = (expected + len(payload)) & 0xFFFFFFFF
        sender = Sender.CLIENT if src == flow["client"] else Sender.SERVER
        for event in flow["conn"].receive(sender, payload, frame, float(packet.time)):
            if not isinstance(event, HandshakeSeen):
                continue
            if isinstance(event.message, ClientHello):
                flow["sni"] = event.message.sni
            elif isinstance(event.message, Certificate) and event.sender is Sender.SERVER and flow["chain"] is None:
                flow["chain"] = event.message.certificates
                flow["cert_ts"] = event.ts
            elif isinstance(event.message, CertificateStatus):
                flow["ocsp"] = event.message.ocsp_response
    return {(f["client"], server if client == f["client"] else client): f for (client, server), f in flows.items()}


ZEEK = zeek_records()


@pytest.mark.skipif(not ZEEK, reason="public captures absent")
@pytest.mark.parametrize("record", ZEEK, ids=[f"{r['file']}:{r['client']}" for r in ZEEK])
def test_zeek_name_and_ocsp_results(record: dict) -> None:
    pytest.importorskip("scapy")
    flows = capture_flows(PUBLIC / record["file"])
    flow = flows.get((record["client"], record["server"]))
    if flow is None or not flow["chain"]:
        pytest.skip("no server certificate visible for this connection")
    at = dt.datetime.fromtimestamp(flow["cert_ts"], tz=UTC)
    if record.get("sni_matches_cert") is not None:
        leaf = describe_certificate(flow["chain"][0])
        assert isinstance(leaf, CertificateInfo)
        assert record["server_name"] and flow["sni"] == record["server_name"]
        assert hostname_matches(leaf, record["server_name"]) is record["sni_matches_cert"]
    report = check_chain(list(flow["chain"]), at=at, server_name=flow["sni"], trust=TrustStore.default(),
                         ocsp_der=flow["ocsp"])
    if record.get("ocsp_status"):
        assert report.ocsp_status == record["ocsp_status"]
    status = record.get("validation_status")
    if status == "certificate has expired":
        assert report.has(Finding.EXPIRED)
    elif status == "certificate signature failure":
        # CVE-2015-3194: an RSA-PSS signature without its parameters; cryptography refuses to decode the leaf.
        assert report.has(Finding.BAD_SIGNATURE) or report.has(Finding.UNDECODABLE)
        assert not report.trusted
    elif status == "ok":
        # Zeek's store of the time trusted it; today's Mozilla store may have dropped that root, but the
        # signatures must verify and nothing may be out of date at the capture's time.
        assert not report.has(Finding.BAD_SIGNATURE)
        assert not report.has(Finding.EXPIRED) and not report.has(Finding.NOT_YET_VALID)


@given(data=st.data())
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                    HealthCheck.function_scoped_fixture])
def test_check_chain_never_raises_on_damaged_chains(pki: Pki, data: st.DataObject) -> None:
    chain = [bytearray(pki.leaf_rsa.der), bytearray(pki.intermediate.der), bytearray(pki.root.der)]
    for _ in range(data.draw(st.integers(1, 6))):
        victim = chain[data.draw(st.integers(0, 2))]
        victim[data.draw(st.integers(0, len(victim) - 1))] = data.draw(st.integers(0, 255))
    order = data.draw(st.permutations(range(3)))
    ders = [bytes(chain[i]) for i in order][: data.draw(st.integers(1, 3))]
    report = check_chain(ders, at=T0, server_name=data.draw(st.sampled_from([None, "www.example.test", "1.2.3.4"])),
                         trust=pki.trust, ocsp_der=data.draw(st.sampled_from([None, b"", b"\x30\x00"])))
    assert isinstance(report, ChainReport)
    assert all(isinstance(f, Finding) for f in report.findings)
    looks_like_interception(ders)


@pytest.mark.parametrize("at", [None, 1e15, float("nan"), float("inf"), -1e15])
def test_a_capture_time_that_is_not_a_date_skips_the_validity_checks_only(pki: Pki, at) -> None:
    """A packet time no date can hold (year 54,476 from a corrupt pcapng block, NaN, infinity) or none: the chain is
    still built and named, its validity periods are not checked (no expired or not-yet-valid finding from a
    time that is not one), and a fact says so."""
    leaf_info = describe_certificate(pki.leaf_rsa.der)
    assert isinstance(leaf_info, CertificateInfo)
    chain = [pki.leaf_rsa.der, pki.intermediate.der]
    report = check_chain(chain, at=at, server_name="other.example.test", trust=pki.trust)
    assert kinds(report) == {"cert_hostname_mismatch"}
    assert report.trusted
    assert any("not a date" in fact for fact in report.facts)
    # (the same chain at a time past its end: expired, as before)
    assert "cert_expired" in kinds(check_chain(chain, at=leaf_info.not_after + DAY, server_name=None,
                                               trust=pki.trust))
