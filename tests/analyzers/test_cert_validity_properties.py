"""The validity of a certificate against the capture's time, as a property over real certificates (built and signed
by cryptography) and two real TLS 1.2 handshakes of the corpus replayed with them (`tools/fuzz.py`'s replay).

The pipeline does not ask `check_chain` for every connection: it caches each chain's report, keyed by how the
connection's start time falls against each certificate's validity (`pipeline._CertCache._timing`, a fast path in
float seconds with a millisecond's margin at each edge). So the same chain at two times in one run, either side of
an edge, must get each time's own findings; the model here is RFC 5280's (valid from notBefore to notAfter, both
included) and the contract's (expires soon: within 30 days).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzers.certchecks import Finding, TrustStore, check_chain
from tlsflow.pipeline import FlowAnalyzer
from tools import fuzz

# A client that went on (its certificate accepted) and one that refused it (alert bad_certificate): what the
# certificate checks found shows as the first one's warnings, as the second one's cause.
ACCEPTED, REFUSED = (next(t for t in fuzz.cert_templates() if t["name"] == name)
                     for name in ("tls12_established_plain.pcap", "tls12_cert_not_yet_valid.pcap"))
NOW = dt.datetime.fromtimestamp(ACCEPTED["order"][0][3], dt.UTC)
CA_KEY = ec.generate_private_key(ec.SECP256R1())
LEAF_KEY = ec.generate_private_key(ec.SECP256R1())
CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tlsflow property root")])
CA = (x509.CertificateBuilder().subject_name(CA_NAME).issuer_name(CA_NAME).public_key(CA_KEY.public_key())
      .serial_number(1).not_valid_before(NOW - dt.timedelta(days=3650)).not_valid_after(NOW + dt.timedelta(days=3650))
      .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(CA_KEY, hashes.SHA256()))
TRUST = TrustStore([CA])
DAY = 86400
VALIDITY_FINDINGS = {Finding.EXPIRED, Finding.NOT_YET_VALID, Finding.EXPIRES_SOON}


def _leaf(not_before: dt.datetime, not_after: dt.datetime) -> bytes:
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "server.tlsflow.test")]))
            .issuer_name(CA_NAME).public_key(LEAF_KEY.public_key()).serial_number(2)
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("server.tlsflow.test")]), critical=False)
            .sign(CA_KEY, hashes.SHA256())).public_bytes(serialization.Encoding.DER)


def _model(not_before: dt.datetime, not_after: dt.datetime, at: float) -> set[Finding]:
    when = dt.datetime.fromtimestamp(at, dt.UTC)
    if when < not_before:
        return {Finding.NOT_YET_VALID}
    if when > not_after:
        return {Finding.EXPIRED}
    if not_after - when <= dt.timedelta(days=30):
        return {Finding.EXPIRES_SOON}
    return set()


def _moved(packets: list, shift: float, port: int) -> list:
    """The same connection `shift` seconds later, from another client port."""
    moved = []
    for pkt in packets:
        client = pkt.sport == 40000
        moved.append(dataclasses.replace(pkt, ts=pkt.ts + shift, sport=port if client else pkt.sport,
                                         dport=pkt.dport if client else port))
    return moved


# Where the validity starts, in seconds from the template connection's start, and how long it lasts: about now, or
# anywhere within a year; a few seconds, about 30 days (where "expires soon" starts at once), or up to two years.
start_offset = st.one_of(st.integers(-3, 3), st.integers(-400 * DAY, 400 * DAY))
length = st.one_of(st.integers(0, 5), st.integers(30 * DAY - 3, 30 * DAY + 3), st.integers(0, 800 * DAY))
# Each connection starts within two seconds of an edge of the validity (either side: the float fast path and the
# exact datetimes must agree there), or in the middle of the time it is plainly valid.
near = st.one_of(st.sampled_from([-1.5, -0.75, -0.25, -0.001, 0.0, 0.001, 0.25, 0.75, 1.5]), st.floats(-2.0, 2.0))
moment = st.tuples(st.sampled_from(["not_before", "not_after", "expires_soon_from", "middle"]), near)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(begins=start_offset, lasts=length, moments=st.tuples(moment, moment), refused=st.booleans())
def test_each_connection_gets_its_own_times_findings_though_the_chain_is_cached(begins, lasts, moments, refused):
    # Whole seconds: X.509 times have no fraction.
    not_before = NOW.replace(microsecond=0) + dt.timedelta(seconds=begins)
    not_after = not_before + dt.timedelta(seconds=lasts)
    soon = not_after - dt.timedelta(days=30)
    edges = {"not_before": not_before, "not_after": not_after, "expires_soon_from": soon,
             "middle": not_before + max(soon - not_before, dt.timedelta(0)) / 2}
    der = _leaf(not_before, not_after)
    template = fuzz.cert_packets(REFUSED if refused else ACCEPTED, [der], None)
    packets = []
    for port, (edge, near) in enumerate(moments, 40001):
        packets += _moved(template, edges[edge].timestamp() + near - template[0].ts, port)
    packets.sort(key=lambda pkt: pkt.ts)  # (the capture's order: the second connection may come first)
    analyzer = FlowAnalyzer("validity", trust=TRUST)
    records = []
    frames_of: dict[int, set[int]] = {}  # client port -> its connection's frames
    for frame, pkt in enumerate(packets, 1):
        frames_of.setdefault(pkt.sport if pkt.sport != 443 else pkt.dport, set()).add(frame)
        records.extend(analyzer.feed(dataclasses.replace(pkt, frame=frame)))
    records.extend(analyzer.finish())
    assert len(records) == 2
    for record in records:
        # Evidence from a cached report names this connection's frames, not those of the one it was cached for.
        own = frames_of[int(record["client"].rsplit(":", 1)[1])]
        assert {int(n) for line in record["evidence"] or () for n in re.findall(r"\bframe (\d+)", line)} <= own
        expected = _model(not_before, not_after, record["start"])
        direct = check_chain([der], at=record["start"], server_name="server.tlsflow.test", trust=TRUST)
        assert set(direct.findings) & VALIDITY_FINDINGS == expected
        # The record (through the cache) says what the direct check says.
        warnings = set(record["warnings"] or ())
        assert ("cert_expires_soon" in warnings) == (Finding.EXPIRES_SOON in expected)
        if refused:
            assert (record["cause"] == "cert_expired") == (Finding.EXPIRED in expected)
            assert (record["cause"] == "cert_not_yet_valid") == (Finding.NOT_YET_VALID in expected)
        else:  # (one not yet valid has no warning of its own in the contract's list)
            assert ("cert_expired_accepted" in warnings) == (Finding.EXPIRED in expected)
