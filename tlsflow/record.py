"""Builds the contract's output record (../shared/CONTRACT.md) for one connection from its summary and verdict.

The field list here is the public interface: every output format and the DataFrame use exactly these names.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from analyzers.summary import HandshakeSummary
from analyzers.verdict import Verdict
from tlsflow.packet import endpoint_text
from tlsparse import registry
from tlsparse.events import Sender
from tlsparse.fingerprints import HelloFingerprints
from tlsparse.messages import ClientHello, is_grease

# Members as module constants: `Sender.CLIENT` is a metaclass lookup (~85 ns), read many times per
# connection.
_CLIENT, _SERVER = Sender.CLIENT, Sender.SERVER

FIELDS: tuple[str, ...] = (
    "capture", "flow_id", "client", "server", "start", "end", "first_frame", "sni", "alpn_offered", "alpn",
    "version_offered", "version", "cipher", "group", "resumed", "history", "outcome", "failed_step", "cause",
    "confidence", "alert", "alert_sender", "evidence", "hint", "warnings", "tcp_rtt_ms", "server_hello_ms",
    "handshake_ms", "cert_subject", "cert_issuer", "cert_not_before", "cert_not_after", "cert_san",
    "cert_chain_len", "ja3", "ja3s", "ja4",
)
LIST_FIELDS = frozenset({"alpn_offered", "evidence", "warnings", "cert_san"})
_NULL_RECORD: dict[str, Any] = dict.fromkeys(FIELDS)


class _Remembered(dict):  # type: ignore[type-arg]
    """`memo[key]` is `compute(key)`, remembered: a hit is a plain dict subscript (no Python call), only a miss
    calls `__missing__`. At most `limit` entries, then forgotten all at once."""

    def __init__(self, compute: Callable[[Any], str], limit: int) -> None:
        super().__init__()
        self.compute, self.limit = compute, limit

    def __missing__(self, key: Any) -> str:
        if len(self) >= self.limit:
            self.clear()
        found = self[key] = self.compute(key)
        return found


# Registry names (pure functions of 16-bit codes: the limit is never reached); the registry's own lookup is several
# calls deep and runs a few times per connection.
_VERSION_NAMES = _Remembered(registry.version_name, 1 << 16)
_CIPHER_SUITE_NAMES = _Remembered(registry.cipher_suite_name, 1 << 16)
_GROUP_NAMES = _Remembered(registry.group_name, 1 << 16)
# `ip:port` of servers (a few per capture, unlike the clients' ports), from (ip, port).
_SERVER_TEXTS = _Remembered(lambda server: endpoint_text(*server), 4096)

class ClientHelloShapes(HelloFingerprints):
    """JA3 and JA4 remembered per ClientHello shape, with the record fields that shape decides as well: the
    offered ALPN protocols and the name of the highest offered version (the shape's key holds the ALPN and
    supported_versions extensions and the legacy version they are read from). Real clients repeat their hellos:
    reading these again for each connection was a good part of building its record.

    `client(ch)` gives (ja3, ja4, alpn_offered as a tuple, version_offered); `build_record` takes the last two
    as `offered`."""

    def _client_values(self, ch: ClientHello) -> tuple[Any, ...]:
        return (*super()._client_values(ch), ch.alpn, registry.version_name(ch.highest_version))


def duration_ms(earlier: float, later: float) -> float:
    """`round((later - earlier) * 1000.0, 3)`: a duration in milliseconds rounded to the microsecond, mostly
    without the decimal string round trip that `round(x, 3)` makes (~2,500 instructions, three times per record).

    That rounding gives the double nearest to n / 1000, n being the exact ms * 1000 rounded to an integer (ms the
    double `(later - earlier) * 1000.0`). Below 1e12 microseconds, `(later - earlier) * 1e6` is off that exact
    product by less than 2**-12, and its fraction (`% 1.0`) is exact: when the fraction is more than 0.001 away from
    one half, n is the product rounded, and n / 1000 (exact operands, one correctly rounded division) is that same
    double. Anything else (a fraction near one half, negative, huge, NaN) goes through `round`."""
    scaled = (later - earlier) * 1e6
    if 0.0 <= scaled < 1e12:
        fraction = scaled % 1.0
        if fraction < 0.499:
            return (scaled - fraction) / 1000.0
        if fraction > 0.501:
            return (scaled - fraction + 1.0) / 1000.0
    return round((later - earlier) * 1000.0, 3)


CertificateFields = tuple[str, str, str, str, tuple[str, ...]]


def certificate_fields(leaf: Any) -> CertificateFields:
    """The leaf certificate's record fields: subject, issuer, notBefore and notAfter (ISO 8601 UTC), and the
    subjectAltName DNS names then IPs. Worth remembering with the leaf: the same leaf comes back connection after
    connection."""
    return (leaf.subject, leaf.issuer, leaf.not_before.isoformat().replace("+00:00", "Z"),
            leaf.not_after.isoformat().replace("+00:00", "Z"), (*leaf.san_dns, *leaf.san_ip))


def build_record(capture: str, flow_id: int, client: tuple[str, int], server: tuple[str, int], start: float,
                 end: float, first_frame: int, summary: HandshakeSummary, verdict: Verdict,
                 syn_ts: float | None, synack_ts: float | None, leaf: Any = None, chain_len: int | None = None,
                 ja3: str | None = None, ja3s: str | None = None, ja4: str | None = None,
                 cert_fields: CertificateFields | None = None,
                 offered: tuple[tuple[str, ...], str] | None = None) -> dict[str, Any]:
    """One record, its fields in the contract's order. `cert_fields` is `certificate_fields(leaf)` and `offered`
    the first ClientHello's (alpn, name of highest_version), when the caller has them at hand (see
    `ClientHelloShapes`); otherwise they are worked out from `leaf` and the hello.

    Reading each hello once: this runs for every connection. The pipeline passes the arguments by position: a call
    with these twenty keywords costs ~10,000 instructions more (CPython matches each keyword to its parameter).
    Keywords work as well."""
    s = summary
    hellos = s.client_hellos
    if hellos:
        first_hello = hellos[0]
        ch: Any = first_hello.message
        ch_ts: float | None = first_hello.ts
        sni = ch.sni
        if offered is None:
            offered = (ch.alpn, _VERSION_NAMES[ch.highest_version])
        offered_alpn, version_offered = offered
        alpn_offered = list(offered_alpn) if offered_alpn else None
    else:
        ch_ts = sni = alpn_offered = version_offered = None
        cut = s.cut_client_hello
        if cut is not None and cut.hello is not None:  # a ClientHello cut short: what came whole of it
            hello: Any = cut.hello
            sni = hello.sni
            alpn_offered = list(hello.alpn) if hello.alpn else None
            versions = [v for v in hello.supported_versions if not is_grease(v)]  # (legacy_version says little)
            version_offered = _VERSION_NAMES[max(versions)] if versions else None
    sh_at = s.server_hello
    if sh_at is not None:
        sh: Any = sh_at.message
        selected = sh.alpn
        alpn = selected[0] if selected else None
        version = _VERSION_NAMES[s.version]
        cipher = _CIPHER_SUITE_NAMES[sh.cipher_suite]
        kg = sh.key_share_group
        if kg is not None:
            group = _GROUP_NAMES[kg]
        else:
            ske = s.server_key_exchange
            curve = getattr(ske.message, "curve", None) if ske is not None else None
            group = _GROUP_NAMES[curve] if curve is not None else None
        resumed = s.resumed
    else:
        alpn = version = cipher = group = resumed = None
    if alpn is None and s.encrypted_extensions is not None:
        selected = s.encrypted_extensions.message.alpn  # type: ignore[attr-defined]
        alpn = selected[0] if selected else None
    if cert_fields is None and leaf is not None:
        cert_fields = certificate_fields(leaf)
    if cert_fields is not None:
        subject, issuer, not_before, not_after, sans = cert_fields
        cert_san = list(sans) if sans else None
    else:
        subject = issuer = not_before = not_after = cert_san = None
    end_ts = verdict.end_ts
    server_first = s.first_handshake_ts.get(_SERVER)
    # Filled into a copy of a record of nulls: the dict display this replaces grew its table four times per record
    # (37 keys added one by one), a copy starts at full size with every key in place.
    record = _NULL_RECORD.copy()
    record["capture"] = capture
    record["flow_id"] = flow_id
    record["client"] = endpoint_text(*client)
    record["server"] = _SERVER_TEXTS[server]
    record["start"] = start
    record["end"] = end
    record["first_frame"] = first_frame
    record["sni"] = sni
    record["alpn_offered"] = alpn_offered
    record["alpn"] = alpn
    record["version_offered"] = version_offered
    record["version"] = version
    record["cipher"] = cipher
    record["group"] = group
    record["resumed"] = resumed
    record["history"] = s.history_text or None
    record["outcome"] = verdict.outcome
    record["failed_step"] = verdict.failed_step
    record["cause"] = verdict.cause
    record["confidence"] = verdict.confidence
    record["alert"] = verdict.alert
    record["alert_sender"] = verdict.alert_sender
    record["evidence"] = list(verdict.evidence) or None
    record["hint"] = verdict.hint
    record["warnings"] = list(verdict.warnings) or None
    # durations: milliseconds rounded to the microsecond, null when an end is missing or out of order
    record["tcp_rtt_ms"] = (None if syn_ts is None or synack_ts is None or synack_ts < syn_ts
                            else duration_ms(syn_ts, synack_ts))
    record["server_hello_ms"] = (None if ch_ts is None or server_first is None or server_first < ch_ts
                                 else duration_ms(ch_ts, server_first))
    record["handshake_ms"] = (None if ch_ts is None or end_ts is None or end_ts < ch_ts
                              else duration_ms(ch_ts, end_ts))
    record["cert_subject"] = subject
    record["cert_issuer"] = issuer
    record["cert_not_before"] = not_before
    record["cert_not_after"] = not_after
    record["cert_san"] = cert_san
    record["cert_chain_len"] = chain_len
    record["ja3"] = ja3
    record["ja3s"] = ja3s
    record["ja4"] = ja4
    return record
