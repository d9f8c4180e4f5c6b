"""Server name matching (RFC 6125), cross-checked against an independent implementation: cryptography's X.509
verifier (pyca, in Rust), which checks a leaf's subjectAltName dNSNames against a server name. Real certificates
are built for each case; both sides read the same DER.

One difference is policy, not a bug, and is kept out of the comparison: a wildcard over a single label (`*.com`)
matches for cryptography; tlsflow refuses it, as browsers do (RFC 6125 6.4.3 leaves it to the client)."""
from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzers.certchecks import hostname_matches
from tlsparse.certificates import CertificateInfo, describe_certificate

NOW = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
CA_KEY = ec.generate_private_key(ec.SECP256R1())
LEAF_KEY = ec.generate_private_key(ec.SECP256R1())
CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tlsflow name root")])
CA = (x509.CertificateBuilder().subject_name(CA_NAME).issuer_name(CA_NAME).public_key(CA_KEY.public_key())
      .serial_number(1).not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=100))
      .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
      .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                   data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                   encipher_only=False, decipher_only=False), critical=True)
      .add_extension(x509.SubjectKeyIdentifier.from_public_key(CA_KEY.public_key()), critical=False)
      .sign(CA_KEY, hashes.SHA256()))
STORE = Store([CA])


def _leaf(patterns: list[str]) -> x509.Certificate:
    return (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(CA_NAME)
            .public_key(LEAF_KEY.public_key()).serial_number(2)
            .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(p) for p in patterns]), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(CA_KEY.public_key()), critical=False)
            .sign(CA_KEY, hashes.SHA256()))


def _theirs(leaf: x509.Certificate, host: str) -> bool | None:
    """cryptography's answer; None when it refuses the case outright (a name it will not parse)."""
    try:
        verifier = PolicyBuilder().store(STORE).time(NOW).build_server_verifier(x509.DNSName(host))
    except ValueError:
        return None
    try:
        verifier.verify(leaf, [])
    except VerificationError:
        return False
    return True


label = st.sampled_from(["a", "b", "www", "example", "com", "xn--nxasmq6b", "A", "Example", "a-b", "9"])
host = st.lists(label, min_size=1, max_size=4).map(".".join)
pattern = st.tuples(st.sampled_from(["", "*", "a*", "*b", "w*w"]), st.lists(label, min_size=0, max_size=3)).map(
    lambda parts: ".".join(([parts[0]] if parts[0] else []) + parts[1]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patterns=st.lists(pattern.filter(bool), min_size=1, max_size=3), name=host)
def test_tlsflow_matches_names_as_cryptography_does(patterns, name):
    leaf = _leaf(patterns)
    info = describe_certificate(leaf.public_bytes(serialization.Encoding.DER))
    assert isinstance(info, CertificateInfo)
    theirs = _theirs(leaf, name)
    if theirs is None:
        return
    if any(p.startswith("*.") and p.count(".") == 1 for p in patterns):
        return  # the policy difference (module docstring)
    assert hostname_matches(info, name) == theirs, (patterns, name)
