"""Folds one connection's parser events into a `HandshakeSummary`, as Zeek's SSL scripts fold events into a log row.

The summary keeps only what verdicts and outputs need (first hellos, certificates, alerts, record shapes after
encryption, history letters), each with its frame and time, so evidence can cite frames.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tlsparse import events as ev
from tlsparse import messages as m
from tlsparse.events import Sender

# Zeek's ssl_history letters for handshake types (CONTRACT.md); unknown types are 'Z'.
_HISTORY_LETTER = {
    m.HELLO_REQUEST: "h", m.CLIENT_HELLO: "c", m.SERVER_HELLO: "s", m.HELLO_VERIFY_REQUEST: "v",
    m.NEW_SESSION_TICKET: "t", m.END_OF_EARLY_DATA: "e", m.HELLO_RETRY_REQUEST: "j", m.ENCRYPTED_EXTENSIONS: "o",
    m.CERTIFICATE: "x", m.SERVER_KEY_EXCHANGE: "k", m.CERTIFICATE_REQUEST: "r", m.SERVER_HELLO_DONE: "n",
    m.CERTIFICATE_VERIFY: "y", m.CLIENT_KEY_EXCHANGE: "g", m.FINISHED: "f", m.CERTIFICATE_URL: "w",
    m.CERTIFICATE_STATUS: "u", m.SUPPLEMENTAL_DATA: "a", m.KEY_UPDATE: "p", m.MESSAGE_HASH: "m",
}
_HISTORY_MAX = 100


@dataclass(frozen=True, slots=True)
class AlertInfo:
    sender: Sender
    frame: int
    ts: float
    level: int | None
    description: int | None
    encrypted: bool
    length: int


@dataclass(frozen=True, slots=True)
class MessageAt:
    """A handshake message with where it was seen."""

    frame: int
    ts: float
    message: object


@dataclass(frozen=True, slots=True)
class EncryptedRecord:
    sender: Sender
    frame: int
    ts: float
    content_type: int
    length: int


@dataclass(slots=True)
class HandshakeSummary:
    client_hellos: list[MessageAt] = field(default_factory=list)
    server_hello: MessageAt | None = None
    hello_retry: MessageAt | None = None
    server_certificate: MessageAt | None = None
    client_certificate: MessageAt | None = None
    server_key_exchange: MessageAt | None = None
    certificate_request: MessageAt | None = None
    certificate_status: MessageAt | None = None
    server_hello_done: MessageAt | None = None
    client_key_exchange: MessageAt | None = None
    client_certificate_verify: MessageAt | None = None
    encrypted_extensions: MessageAt | None = None
    finished: dict[Sender, MessageAt] = field(default_factory=dict)
    ccs: dict[Sender, MessageAt] = field(default_factory=dict)
    alerts: list[AlertInfo] = field(default_factory=list)
    encrypted_records: list[EncryptedRecord] = field(default_factory=list)
    first_record: dict[Sender, MessageAt] = field(default_factory=dict)
    first_handshake_ts: dict[Sender, float] = field(default_factory=dict)
    not_tls: dict[Sender, ev.NotTlsSeen] = field(default_factory=dict)
    starttls: dict[Sender, ev.TlsStartSeen] = field(default_factory=dict)
    gaps: list[ev.GapSeen] = field(default_factory=list)
    resyncs: list[ev.ResyncSeen] = field(default_factory=list)
    anomalies: list[ev.ParseAnomaly] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    app_data_records: dict[Sender, int] = field(default_factory=lambda: {Sender.CLIENT: 0, Sender.SERVER: 0})
    # TLS 1.3: the raw handshake messages from the first ClientHello to the server's Certificate, to check the
    # server's CertificateVerify signature (visible with a key log); dropped for other versions.
    transcript: list[bytes] | None = field(default_factory=list)
    transcript_complete: bool = False
    server_certificate_verify: MessageAt | None = None

    # How many encrypted records to keep per side: enough to read the end of any handshake, bounded for hostile peers.
    MAX_ENCRYPTED_KEPT = 32

    @property
    def client_hello(self) -> m.ClientHello | None:
        return self.client_hellos[0].message if self.client_hellos else None  # type: ignore[return-value]

    @property
    def last_client_hello(self) -> m.ClientHello | None:
        return self.client_hellos[-1].message if self.client_hellos else None  # type: ignore[return-value]

    @property
    def server_hello_msg(self) -> m.ServerHello | None:
        return self.server_hello.message if self.server_hello else None  # type: ignore[return-value]

    @property
    def version(self) -> int | None:
        sh = self.server_hello_msg
        return sh.selected_version if sh is not None else None

    @property
    def is_tls13(self) -> bool:
        v = self.version
        return v is not None and (v == 0x0304 or 0x7F00 <= v <= 0x7FFF)

    def encrypted_from(self, sender: Sender) -> list[EncryptedRecord]:
        return [r for r in self.encrypted_records if r.sender is sender]

    @property
    def resumed(self) -> bool:
        """TLS 1.3: the server accepted a PSK. TLS <= 1.2: the server echoed the client's session id (or answered a
        ticket) and went straight to ChangeCipherSpec without a Certificate."""
        sh = self.server_hello_msg
        ch = self.client_hello
        if sh is None:
            return False
        if self.is_tls13:
            return sh.has_extension(m.EXT_PRE_SHARED_KEY)
        if self.server_certificate is not None or self.server_key_exchange is not None:
            return False
        if Sender.SERVER in self.ccs and self.ccs[Sender.SERVER].ts >= self.server_hello.ts:
            return True
        return bool(ch is not None and sh.session_id and sh.session_id == ch.session_id)

    @property
    def first_fatal_alert(self) -> AlertInfo | None:
        for alert in self.alerts:
            if alert.encrypted or alert.level == 2:
                return alert
            # TLS 1.3 (RFC 8446 6): every alert but close_notify and user_canceled is fatal, whatever its level.
            # Before it, a warning (e.g. unrecognized_name) lets the handshake go on.
            if self.is_tls13 and alert.description not in (0, 90):
                return alert
        return None

    @property
    def history_text(self) -> str:
        return "".join(self.history)[:_HISTORY_MAX]

    def _letter(self, sender: Sender, letter: str) -> None:
        if len(self.history) < _HISTORY_MAX:
            self.history.append(letter.upper() if sender is Sender.CLIENT else letter.lower())

    def add(self, event: ev.Event) -> None:
        """Fold one parser event in."""
        sender = event.sender
        if isinstance(event, ev.RecordSeen):
            self.first_record.setdefault(sender, MessageAt(event.frame, event.ts, event))
            return
        if isinstance(event, ev.HandshakeSeen):
            self._add_handshake(event)
            return
        if isinstance(event, ev.EncryptedRecordSeen):
            if event.content_type == m.APPLICATION_DATA and not event.handshake_phase:
                self.app_data_records[sender] += 1
            kept = sum(1 for r in self.encrypted_records if r.sender is sender)
            if kept < self.MAX_ENCRYPTED_KEPT:
                self.encrypted_records.append(
                    EncryptedRecord(sender, event.frame, event.ts, event.content_type, event.length))
            if event.content_type == m.HANDSHAKE:
                self.first_handshake_ts.setdefault(sender, event.ts)
            return
        if isinstance(event, ev.AlertSeen):
            self.alerts.append(AlertInfo(sender, event.frame, event.ts, event.level, event.description,
                                         event.encrypted, event.length))
            self._letter(sender, "l")
            return
        if isinstance(event, ev.ChangeCipherSpecSeen):
            self.ccs.setdefault(sender, MessageAt(event.frame, event.ts, event))
            self._letter(sender, "i")
            return
        if isinstance(event, ev.ApplicationDataSeen):
            self.app_data_records[sender] += 1
            return
        if isinstance(event, ev.HeartbeatSeen):
            self._letter(sender, "b")
            return
        if isinstance(event, ev.UnknownRecordSeen):
            self._letter(sender, "q")
            return
        if isinstance(event, ev.NotTlsSeen):
            self.not_tls.setdefault(sender, event)
            return
        if isinstance(event, ev.TlsStartSeen):
            # STARTTLS: the plaintext prelude is over and TLS begins; the stream is TLS after all.
            self.not_tls.pop(sender, None)
            self.starttls[sender] = event
            return
        if isinstance(event, ev.GapSeen):
            self.gaps.append(event)
            return
        if isinstance(event, ev.ResyncSeen):
            self.resyncs.append(event)
            return
        if isinstance(event, ev.ParseAnomaly) and len(self.anomalies) < 50:
            self.anomalies.append(event)

    def _add_to_transcript(self, event: ev.HandshakeSeen) -> None:
        transcript = self.transcript
        msg = event.message
        if transcript is None or self.transcript_complete:
            return
        if isinstance(msg, m.ServerHello) and not msg.is_hello_retry_request and msg.selected_version != 0x0304:
            self.transcript = None  # not TLS 1.3: no CertificateVerify over a transcript to check
        elif not event.raw or len(transcript) >= 16:
            self.transcript = None  # something is off (SSLv2, a hostile flood): give the check up
        elif isinstance(msg, m.CertificateVerify) and event.sender is Sender.SERVER:
            self.transcript_complete = True  # ClientHello .. server Certificate: what the signature covers
        else:
            transcript.append(event.raw)

    def _add_handshake(self, event: ev.HandshakeSeen) -> None:
        sender, msg = event.sender, event.message
        at = MessageAt(event.frame, event.ts, msg)
        self._add_to_transcript(event)
        self.first_handshake_ts.setdefault(sender, event.ts)
        self._letter(sender, _HISTORY_LETTER.get(event.msg_type, "z"))
        if isinstance(msg, m.ClientHello):
            if len(self.client_hellos) < 4:
                self.client_hellos.append(at)
        elif isinstance(msg, m.ServerHello):
            if msg.is_hello_retry_request:
                self.hello_retry = self.hello_retry or at
            elif self.server_hello is None:
                self.server_hello = at
        elif isinstance(msg, m.Certificate):
            if sender is Sender.SERVER:
                self.server_certificate = self.server_certificate or at
            else:
                self.client_certificate = self.client_certificate or at
        elif isinstance(msg, m.ServerKeyExchange):
            self.server_key_exchange = self.server_key_exchange or at
        elif isinstance(msg, m.CertificateRequest):
            self.certificate_request = self.certificate_request or at
        elif isinstance(msg, m.CertificateStatus):
            self.certificate_status = self.certificate_status or at
        elif isinstance(msg, m.ServerHelloDone):
            self.server_hello_done = self.server_hello_done or at
        elif isinstance(msg, m.ClientKeyExchange):
            self.client_key_exchange = self.client_key_exchange or at
        elif isinstance(msg, m.CertificateVerify) and sender is Sender.CLIENT:
            self.client_certificate_verify = self.client_certificate_verify or at
        elif isinstance(msg, m.CertificateVerify):
            self.server_certificate_verify = self.server_certificate_verify or at
        elif isinstance(msg, m.EncryptedExtensions):
            self.encrypted_extensions = self.encrypted_extensions or at
        elif isinstance(msg, m.Finished):
            self.finished.setdefault(sender, at)
