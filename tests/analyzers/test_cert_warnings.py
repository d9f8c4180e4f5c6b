"""Python warnings that certificates and stapled OCSP responses from the wire made cryptography print on the user's
terminal, with lines of tlsflow's source, found by `tools/fuzz.py certs` and `cert-fields`:
- names outside RFC 5280's length bounds (a three-letter countryName, a commonName over 64 bytes: private PKIs and
  appliances issue them): a UserWarning at each place that read the names, fourteen lines for one connection. Now
  the certificate's description keeps it as a problem;
- an OCSP response without nextUpdate (RFC 6960 allows it: newer status is always available): the deprecated
  naive-datetime accessor was read, and its CryptographyDeprecationWarning printed."""
from __future__ import annotations

import datetime as dt
import warnings

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from analyzers.certchecks import TrustStore, check_chain
from tlsflow.pipeline import FlowAnalyzer
from tlsparse.certificates import CertificateInfo, describe_certificate
from tools import fuzz

LONG_CN = "server.tlsflow.test" + "-x" * 30  # 79 bytes


def _odd_name() -> x509.Name:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # (the builder warns too: not under test)
        return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "USA", _validate=False),
                          x509.NameAttribute(NameOID.COMMON_NAME, LONG_CN, _validate=False)])


def _self_signed(at: dt.datetime) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _odd_name()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(7).not_valid_before(at - dt.timedelta(days=1)).not_valid_after(at + dt.timedelta(days=30))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("server.tlsflow.test")]), critical=False)
                .sign(key, hashes.SHA256()))


def _shown(run) -> list[warnings.WarningMessage]:  # type: ignore[no-untyped-def]
    """The warnings a user's terminal would show while `run()` runs (Python's default filters)."""
    with warnings.catch_warnings(record=True) as shown:
        warnings.resetwarnings()
        warnings.simplefilter("default")
        run()
    return list(shown)


def test_the_description_keeps_the_name_length_problems():
    der = _self_signed(dt.datetime(2026, 11, 27, tzinfo=dt.UTC)).public_bytes(serialization.Encoding.DER)
    info: list = []
    assert _shown(lambda: info.append(describe_certificate(der))) == []
    assert isinstance(info[0], CertificateInfo)
    assert info[0].subject.startswith(f"CN={LONG_CN}")
    assert any("length must be >= 2 and <= 2, but it was 3" in problem for problem in info[0].problems)
    assert any("<= 64, but it was 79" in problem for problem in info[0].problems)


def test_the_chain_checks_and_a_trust_store_with_such_a_root_show_no_warning():
    when = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
    cert = _self_signed(when)
    der = cert.public_bytes(serialization.Encoding.DER)
    reports: list = []
    assert _shown(lambda: reports.append(check_chain([der], at=when, server_name="server.tlsflow.test",
                                                     trust=TrustStore([cert])))) == []
    assert reports[0].trusted
    assert not any("stopped" in fact for fact in reports[0].facts)


def test_a_connection_with_such_a_certificate_is_analysed_without_a_warning():
    template = next(t for t in fuzz.cert_templates() if t["name"] == "tls12_cert_self_signed.pcap")
    at = dt.datetime.fromtimestamp(template["order"][0][3], dt.UTC)
    der = _self_signed(at).public_bytes(serialization.Encoding.DER)
    records: list = []

    def run() -> None:
        analyzer = FlowAnalyzer("odd-names")
        for pkt in fuzz.cert_packets(template, [der], None):
            records.extend(analyzer.feed(pkt))
        records.extend(analyzer.finish())

    assert _shown(run) == []
    assert len(records) == 1
    assert records[0]["cause"] == "cert_self_signed"
    assert records[0]["cert_subject"] == f"CN={LONG_CN},C=USA"


def test_an_ocsp_response_without_next_update_is_read_without_a_warning():
    when = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "server.tlsflow.test")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(9).not_valid_before(when - dt.timedelta(days=1)).not_valid_after(when + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("server.tlsflow.test")]), critical=False)
            .sign(key, hashes.SHA256()))
    response = (ocsp.OCSPResponseBuilder()
                .add_response(cert=cert, issuer=cert, algorithm=hashes.SHA256(), cert_status=ocsp.OCSPCertStatus.GOOD,
                              this_update=when - dt.timedelta(hours=1), next_update=None, revocation_time=None,
                              revocation_reason=None)
                .responder_id(ocsp.OCSPResponderEncoding.HASH, cert).sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    reports: list = []
    assert _shown(lambda: reports.append(check_chain(
        [der], at=when, server_name="server.tlsflow.test", trust=TrustStore([cert]),
        ocsp_der=response.public_bytes(serialization.Encoding.DER)))) == []
    assert "stapled OCSP response: leaf good" in reports[0].facts
    assert not any("not current" in fact for fact in reports[0].facts)  # no nextUpdate: not stale
