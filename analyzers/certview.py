"""Runs the passive certificate checks on the chain a connection showed, at the capture's time, and condenses
them into the `CertView` the verdict rules read (findings named as the contract's causes and warnings)."""
from __future__ import annotations

import datetime as dt
from typing import Any

from analyzers.summary import HandshakeSummary
from analyzers.verdict import CertView
from tlsparse.certificates import describe_certificate

# Findings of `analyzers.certchecks` → the contract's cause names.
_CAUSE_OF_FINDING = {
    "expired": "cert_expired", "not_yet_valid": "cert_not_yet_valid", "hostname_mismatch": "cert_hostname_mismatch",
    "self_signed": "cert_self_signed", "unknown_ca": "cert_unknown_ca", "incomplete_chain": "cert_incomplete_chain",
    "revoked": "cert_revoked", "weak": "cert_weak",
    "wrong_purpose": "cert_wrong_purpose",  # (no cause of its own in the contract: a `cert_rejected` says it)
}
# The same findings on a connection that went through: the client accepted them.
_WARNING_OF_FINDING = {
    "expired": "cert_expired_accepted", "hostname_mismatch": "cert_hostname_mismatch_accepted",
    "incomplete_chain": "cert_incomplete_chain_accepted", "expires_soon": "cert_expires_soon",
}


def _finding_name(finding: Any) -> str:
    return str(finding).removeprefix("cert_")  # Finding is a str enum whose value is the contract's name


def assess_certificates(summary: HandshakeSummary, *, at: dt.datetime | float | None, trust: Any
                        ) -> tuple[CertView, Any, int | None]:
    """(the view for the verdict, the leaf's CertificateInfo or None, how many certificates the server sent), at the
    capture's time `at` (a datetime, or seconds since the epoch; validity is not checked for None or a time no
    date can hold: `certchecks.capture_datetime`)."""
    cert_msg = summary.server_certificate
    if cert_msg is None:
        return CertView(), None, None
    ders = list(getattr(cert_msg.message, "certificates", ()))
    if not ders:
        return CertView(), None, 0
    leaf = describe_certificate(ders[0])
    if not hasattr(leaf, "subject"):
        return CertView(facts=(f"frame {cert_msg.frame}: the server's certificate does not decode",)), None, len(ders)
    from analyzers.certchecks import capture_datetime, check_chain, looks_like_interception

    at = capture_datetime(at)

    ch = summary.client_hello
    # TLS <= 1.2 staples OCSP in a CertificateStatus message, TLS 1.3 in the leaf's certificate entry.
    ocsp = summary.certificate_status.message.ocsp_response if summary.certificate_status is not None else \
        getattr(cert_msg.message, "ocsp_response", None)
    report = check_chain(ders, at=at, server_name=ch.sni if ch is not None else None, trust=trust, ocsp_der=ocsp)
    names = {_finding_name(f) for f in report.findings}
    findings = frozenset(_CAUSE_OF_FINDING[n] for n in names if n in _CAUSE_OF_FINDING)
    facts = [f"frame {cert_msg.frame}: server certificate {leaf.subject!r} issued by {leaf.issuer!r}"]
    facts.extend(report.facts)
    warnings = []
    for n in sorted(names):
        if n in _WARNING_OF_FINDING:
            warnings.append(_WARNING_OF_FINDING[n])
    if report.weak_signature:
        warnings.append("cert_sha1_signature")
    if report.weak_key:
        warnings.append("cert_weak_key")
    valid_now = None if at is None else leaf.not_before <= at <= leaf.not_after
    interception = looks_like_interception(report)
    return (CertView(findings=findings, facts=tuple(facts), valid_at_capture_time=valid_now,
                     interception=interception, warnings=tuple(warnings)), leaf, len(ders))
