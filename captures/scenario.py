"""The shapes every scenario module shares: a Scenario to record, the Label it returns, the Pki it may use.

A scenario module (``captures/scenarios_tls.py``, ``captures/scenarios_network.py``) exposes
``SCENARIOS: list[Scenario]``. ``captures.record`` discovers them, builds one Pki, gives each scenario its own
loopback port and calls ``scenario.run(workdir, port, pki)``; the scenario records ``workdir / f"{name}.pcap"``
with ``captures.tcpdump.Tcpdump`` (optionally ``workdir / f"{name}.keylog"``) and returns one Label per TCP
connection in that pcap. Label fields use the vocabulary of CONTRACT.md so that the corpus is the analyzer's
expected output. The port is stable across recordings; the scenario owns ``port`` to ``port + 9`` (a helper such
as a relay or an upstream server may use the extra ones; record with a filter on the port(s) the client uses).
The recorder checks each label against tshark's reading of the pcap (``captures.labels``) and fills in what the
scenario left null: client/server addresses, SNI, version, ALPN, alert and alert_sender.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

# Vocabulary of /work/shared/CONTRACT.md; a Label with anything else is a bug in the scenario.
OUTCOMES = ("established", "failed", "incomplete", "not_tls")
STEPS = (
    "tcp_connect", "client_hello", "server_hello", "server_certificate", "server_key_exchange",
    "certificate_request", "server_hello_done", "client_certificate", "client_key_exchange",
    "certificate_verify", "change_cipher_spec", "finished", "encrypted_extensions",
)
CAUSES = (
    # certificates
    "cert_expired", "cert_not_yet_valid", "cert_hostname_mismatch", "cert_self_signed", "cert_unknown_ca",
    "cert_incomplete_chain", "cert_revoked", "cert_weak", "cert_rejected",
    # client certificates
    "client_cert_missing", "client_cert_rejected",
    # negotiation
    "no_common_version", "no_common_cipher", "weak_cipher_only", "no_common_group", "alpn_mismatch",
    "sni_unrecognized",
    # network
    "tcp_refused", "tcp_no_answer", "reset_after_client_hello", "reset_injected", "reset_during_handshake",
    "server_silent", "closed_without_alert", "not_tls", "packet_loss", "mtu_blackhole",
    # client side, server keys, other
    "client_clock_skew", "cert_key_mismatch", "decrypt_error", "handshake_failure", "alert_other", "unknown",
)
ALERT_SENDERS = ("client", "server")
VERSIONS = ("SSL 3.0", "TLS 1.0", "TLS 1.1", "TLS 1.2", "TLS 1.3")


class LabelError(ValueError):
    """A label that does not fit the contract's vocabulary."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Label:
    """What really happened on one TCP connection of a scenario's pcap (checked against tshark)."""

    scenario: str
    file: str                       # pcap file name, relative to the corpus directory ("NAME.pcap")
    flow: int                       # 1-based connection index in the pcap, in order of first packet
    outcome: str                    # established | failed | incomplete | not_tls
    client: str | None = None       # "ip:port" when known
    server: str | None = None       # "ip:port"
    failed_step: str | None = None  # CONTRACT step, only when outcome == "failed"
    cause: str | None = None        # CONTRACT cause, only when outcome == "failed"
    alert: str | None = None        # IANA name of the first fatal alert, or "encrypted"
    alert_sender: str | None = None  # client | server
    version: str | None = None      # negotiated version ("TLS 1.2", "TLS 1.3"), null if none was negotiated
    sni: str | None = None
    alpn: str | None = None         # ALPN protocol the server selected
    resumed: bool | None = None
    client_impl: str | None = None  # e.g. "openssl s_client 3.0", "curl", "gnutls-cli", "python ssl"
    server_impl: str | None = None
    note: str | None = None         # anything a reader of the label should know (quirks of the implementation)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise LabelError(f"{self.scenario}: outcome {self.outcome!r} not in {OUTCOMES}")
        if self.flow < 1:
            raise LabelError(f"{self.scenario}: flow must be 1-based, got {self.flow}")
        if self.outcome == "failed":
            if self.failed_step not in STEPS:
                raise LabelError(f"{self.scenario}: failed_step {self.failed_step!r} not a CONTRACT step")
            if self.cause not in CAUSES:
                raise LabelError(f"{self.scenario}: cause {self.cause!r} not a CONTRACT cause")
        elif self.failed_step is not None or self.cause is not None:
            raise LabelError(f"{self.scenario}: failed_step/cause only when outcome is failed")
        if self.alert_sender is not None and self.alert_sender not in ALERT_SENDERS:
            raise LabelError(f"{self.scenario}: alert_sender {self.alert_sender!r}")
        if self.version is not None and self.version not in VERSIONS:
            raise LabelError(f"{self.scenario}: version {self.version!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Label:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True, slots=True)
class Pki:
    """Certificates and keys (PEM files) made once per recording by ``captures.pki.build_pki``.

    The named fields are what most scenarios need: a valid chain root CA → intermediate → server leaf for
    ``hostname`` (SAN also holds 127.0.0.1), and a client certificate from the same root. Every other file the
    TLS scenarios use (expired, self-signed, other CA, ...) lives in ``root`` and is reached with ``file(name)``.
    """

    root: Path
    hostname: str          # DNS name in the valid server certificate's SAN; clients send it as SNI
    ca_cert: Path          # root CA that clients trust (-CAfile / --cacert / cafile)
    server_cert: Path      # valid leaf only
    server_chain: Path     # leaf + intermediate: what a correctly configured server sends
    server_key: Path
    client_cert: Path      # client leaf, issued by the same root CA
    client_key: Path

    def file(self, name: str) -> Path:
        path = self.root / name
        if not path.exists():
            raise FileNotFoundError(f"PKI file {name!r} not in {self.root}")
        return path


ScenarioRun = Callable[[Path, int, Pki], list[Label]]


@dataclass(frozen=True, slots=True)
class Scenario:
    """One scenario: ``run(workdir, port, pki)`` records ``workdir/NAME.pcap`` and returns its labels."""

    name: str
    description: str
    run: ScenarioRun
    tags: tuple[str, ...] = field(default=())  # free-form, e.g. ("tls13", "fast"); ``fast`` ones are re-recorded in CI

    def pcap(self, workdir: Path) -> Path:
        return workdir / f"{self.name}.pcap"

    def keylog(self, workdir: Path) -> Path:
        return workdir / f"{self.name}.keylog"
