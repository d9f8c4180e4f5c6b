"""Events a `tlsparse.TlsConnection` returns: what one side put on the wire, in wire order.

Frozen, slotted, keyword-only dataclasses in the manner of h11's events. `frame` and `ts` are those of the TCP
segment that completed the record (as Wireshark attributes a reassembled PDU); `offset` is the byte offset in that
direction's stream where the record starts.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from tlsparse.fastinit import fast_frozen_init
from tlsparse.messages import HandshakeBody


class Sender(enum.Enum):
    CLIENT = "client"
    SERVER = "server"

    # Members are singletons compared by identity, so identity hashing is consistent with equality; it runs in C,
    # where Enum's own __hash__ is a Python call made for every per-side dict lookup downstream.
    __hash__ = object.__hash__

    @property
    def peer(self) -> Sender:
        return Sender.SERVER if self is Sender.CLIENT else Sender.CLIENT


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    sender: Sender
    frame: int
    ts: float
    offset: int


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class RecordSeen(Event):
    """Every record header read, readable or not, before the events of its content."""

    content_type: int
    version: int
    length: int
    encrypted: bool


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeSeen(Event):
    """A complete, readable handshake message (possibly reassembled from several records)."""

    msg_type: int  # 6 (hello_retry_request) for a ServerHello carrying the HRR random
    length: int
    message: HandshakeBody
    decrypted: bool = False  # read from an encrypted record with key log secrets (TlsConnection(keylog=...))
    raw: bytes = b""  # the message as on the wire (4-byte header + body): TLS 1.3 transcript hashes need it


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class AlertSeen(Event):
    """An alert record. When encrypted, level and description are None and `length` is the record length.
    An alert read from an encrypted record with key log secrets has `encrypted=False, decrypted=True`."""

    level: int | None
    description: int | None
    encrypted: bool
    length: int
    decrypted: bool = False


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeCipherSpecSeen(Event):
    pass


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class EncryptedRecordSeen(Event):
    """A record that cannot be read without keys: after ChangeCipherSpec (TLS <= 1.2) or after the ServerHello
    (TLS 1.3). `content_type` is the outer type (23 for TLS 1.3 records); `length` the record length, from which
    analyzers infer an alert (TLS 1.3 AEAD alert: 19 bytes for AES-GCM/ChaCha20), a Finished or application data."""

    content_type: int
    length: int
    handshake_phase: bool  # True while the sender's handshake is not known to be finished


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ApplicationDataSeen(Event):
    """Plaintext application data (only before encryption is on, i.e. a protocol violation or SSLv2 data)."""

    length: int


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatSeen(Event):
    length: int
    encrypted: bool


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownRecordSeen(Event):
    content_type: int
    length: int


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class GapSeen(Event):
    """Bytes lost in the capture (from TCP reassembly). The parser resynchronises after it."""

    length: int


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ResyncSeen(Event):
    """After a gap or garbage the parser found the next plausible record header, skipping `skipped` bytes."""

    skipped: int


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class NotTlsSeen(Event):
    """The stream's first bytes are not TLS (HTTP, SSH, SMTP banner, ...). `preview` holds up to 16 bytes."""

    preview: bytes


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class MidstreamJoinSeen(Event):
    """A direction that the capture joined after its stream began (`TlsConnection.join_midstream`): the first
    record header found in it, after `skipped` bytes (the rest of a record already under way)."""

    skipped: int


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class TlsStartSeen(Event):
    """TLS began after a plaintext prelude of `skipped` bytes (STARTTLS in SMTP/IMAP/XMPP/FTP, MySQL's SSL
    request, ...): the direction was first reported as NotTlsSeen, and a hello record header was found after it."""

    skipped: int


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class UpgradeAskedSeen(Event):
    """In a plaintext prelude, the client asked to start TLS: `command` as sent ("STARTTLS", "STLS", "AUTH TLS",
    an XMPP <starttls/>, PostgreSQL's SSLRequest, LDAP's StartTLS), at most 64 bytes."""

    command: bytes


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class UpgradeReplySeen(Event):
    """The server's first answer after the client asked to start TLS (`UpgradeAskedSeen`): its first line (a text
    protocol's reply: "220 2.0.0 Ready to start TLS", "454 4.7.0 TLS not available"), or its first byte (PostgreSQL:
    S or N), at most 120 bytes. Whether it agreed is the reader's to say; TLS that follows gives TlsStartSeen."""

    reply: bytes


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ParseAnomaly(Event):
    """Malformed input: a record over 2^14+256 bytes, a message that does not decode, a cap exceeded.
    Named strings in the manner of Zeek's weirds (`record_too_long`, `handshake_too_long`, `bad_extension`, ...)."""

    name: str
    detail: str


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Sslv2RecordSeen(Event):
    """An SSLv2 record other than the CLIENT-HELLO (which is reported as RecordSeen(version=0x0002) followed by
    HandshakeSeen with a `ClientHello(sslv2=True)`). `msg_type` is the SSLv2 message type (4 SERVER-HELLO,
    2 CLIENT-MASTER-KEY, ...) or None once that side's SSLv2 records are encrypted."""

    msg_type: int | None
    length: int


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class TruncatedRecordSeen(Event):
    """The direction's stream ended inside a record (`TlsConnection.end_of_stream`): its header announced `length`
    bytes of body and `received` came. `handshake_type` is the type of the message the record begins with, when it
    is a readable handshake record and that byte came (1: a ClientHello cut short), else None."""

    content_type: int
    length: int
    received: int
    handshake_type: int | None = None
    # A ClientHello cut short: its fixed fields and the extensions that came whole (`client_hello_prefix`), so
    # that the server name it was for is known.
    hello: HandshakeBody | None = None
