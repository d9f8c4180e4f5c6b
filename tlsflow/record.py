"""Builds the contract's output record (../shared/CONTRACT.md) for one connection from its summary and verdict.

The field list here is the public interface: every output format and the DataFrame use exactly these names.
"""
from __future__ import annotations

from typing import Any

from analyzers.summary import HandshakeSummary
from analyzers.verdict import Verdict
from tlsflow.packet import endpoint_text
from tlsparse import registry
from tlsparse.events import Sender

FIELDS: tuple[str, ...] = (
    "capture", "flow_id", "client", "server", "start", "end", "first_frame", "sni", "alpn_offered", "alpn",
    "version_offered", "version", "cipher", "group", "resumed", "history", "outcome", "failed_step", "cause",
    "confidence", "alert", "alert_sender", "evidence", "hint", "warnings", "tcp_rtt_ms", "server_hello_ms",
    "handshake_ms", "cert_subject", "cert_issuer", "cert_not_before", "cert_not_after", "cert_san",
    "cert_chain_len", "ja3", "ja3s", "ja4",
)
LIST_FIELDS = frozenset({"alpn_offered", "evidence", "warnings", "cert_san"})


def _ms(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b < a:
        return None
    return round((b - a) * 1000.0, 3)


def build_record(*, capture: str, flow_id: int, client: tuple[str, int], server: tuple[str, int], start: float,
                 end: float, first_frame: int, summary: HandshakeSummary, verdict: Verdict,
                 syn_ts: float | None, synack_ts: float | None, leaf: Any = None, chain_len: int | None = None,
                 ja3: str | None = None, ja3s: str | None = None, ja4: str | None = None) -> dict[str, Any]:
    s = summary
    ch = s.client_hello
    sh = s.server_hello_msg
    group = None
    if sh is not None:
        kg = sh.key_share_group
        if kg is not None:
            group = registry.group_name(kg)
        elif s.server_key_exchange is not None and getattr(s.server_key_exchange.message, "curve", None) is not None:
            group = registry.group_name(s.server_key_exchange.message.curve)
    ch_ts = s.client_hellos[0].ts if s.client_hellos else None
    server_first = s.first_handshake_ts.get(Sender.SERVER)
    record: dict[str, Any] = {
        "capture": capture,
        "flow_id": flow_id,
        "client": endpoint_text(*client),
        "server": endpoint_text(*server),
        "start": start,
        "end": end,
        "first_frame": first_frame,
        "sni": ch.sni if ch is not None else None,
        "alpn_offered": list(ch.alpn) if ch is not None and ch.alpn else None,
        "alpn": (sh.alpn[0] if sh is not None and sh.alpn else None),
        "version_offered": registry.version_name(ch.highest_version) if ch is not None else None,
        "version": registry.version_name(sh.selected_version) if sh is not None else None,
        "cipher": registry.cipher_suite_name(sh.cipher_suite) if sh is not None else None,
        "group": group,
        "resumed": s.resumed if sh is not None else None,
        "history": s.history_text or None,
        "outcome": verdict.outcome,
        "failed_step": verdict.failed_step,
        "cause": verdict.cause,
        "confidence": verdict.confidence,
        "alert": verdict.alert,
        "alert_sender": verdict.alert_sender,
        "evidence": list(verdict.evidence) or None,
        "hint": verdict.hint,
        "warnings": list(verdict.warnings) or None,
        "tcp_rtt_ms": _ms(syn_ts, synack_ts),
        "server_hello_ms": _ms(ch_ts, server_first),
        "handshake_ms": _ms(ch_ts, verdict.end_ts),
        "cert_subject": None, "cert_issuer": None, "cert_not_before": None, "cert_not_after": None,
        "cert_san": None,
        "cert_chain_len": chain_len,
        "ja3": ja3, "ja3s": ja3s, "ja4": ja4,
    }
    if s.encrypted_extensions is not None and record["alpn"] is None:
        alpn = s.encrypted_extensions.message.alpn  # type: ignore[union-attr]
        record["alpn"] = alpn[0] if alpn else None
    if leaf is not None:
        record["cert_subject"] = leaf.subject
        record["cert_issuer"] = leaf.issuer
        record["cert_not_before"] = leaf.not_before.isoformat().replace("+00:00", "Z")
        record["cert_not_after"] = leaf.not_after.isoformat().replace("+00:00", "Z")
        sans = list(leaf.san_dns) + list(leaf.san_ip)
        record["cert_san"] = sans or None
    return record
