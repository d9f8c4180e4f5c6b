"""Folds one connection's parser events into a `HandshakeSummary`, as Zeek's SSL scripts fold events into a log row.

The summary keeps only what verdicts and outputs need (first hellos, certificates, alerts, record shapes after
encryption, history letters), each with its frame and time, so evidence can cite frames.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tlsparse import events as ev
from tlsparse import messages as m
from tlsparse.events import Sender
from tlsparse.fastinit import positional_factory

# Members as module constants: `Sender.CLIENT` is a metaclass lookup (~85 ns), read many times per
# connection.
_CLIENT, _SERVER = Sender.CLIENT, Sender.SERVER

# Zeek's ssl_history letters for handshake types (CONTRACT.md); unknown types are 'Z'.
_HISTORY_LETTER = {
    m.HELLO_REQUEST: "h", m.CLIENT_HELLO: "c", m.SERVER_HELLO: "s", m.HELLO_VERIFY_REQUEST: "v",
    m.NEW_SESSION_TICKET: "t", m.END_OF_EARLY_DATA: "e", m.HELLO_RETRY_REQUEST: "j", m.ENCRYPTED_EXTENSIONS: "o",
    m.CERTIFICATE: "x", m.SERVER_KEY_EXCHANGE: "k", m.CERTIFICATE_REQUEST: "r", m.SERVER_HELLO_DONE: "n",
    m.CERTIFICATE_VERIFY: "y", m.CLIENT_KEY_EXCHANGE: "g", m.FINISHED: "f", m.CERTIFICATE_URL: "w",
    m.CERTIFICATE_STATUS: "u", m.SUPPLEMENTAL_DATA: "a", m.KEY_UPDATE: "p", m.MESSAGE_HASH: "m",
}
_CLIENT_LETTER = {t: letter.upper() for t, letter in _HISTORY_LETTER.items()}
_SERVER_LETTER = _HISTORY_LETTER
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


def _init_through_slots(cls: type) -> None:
    """Give a frozen slotted dataclass of this module an `__init__` that stores each field through its slot's
    descriptor. Why: the generated one goes through `object.__setattr__` by name for every field (frozen), and
    these are built for most records of every connection. Same positional signature, same object; everything
    else the dataclass made (frozen assignment, eq, repr, replace) is untouched."""
    names = [f.name for f in dataclasses.fields(cls)]
    setters = {f"_set_{n}": cls.__dict__[n].__set__ for n in names}
    body = "".join(f"    _set_{n}(self, {n})\n" for n in names)
    source = f"def make({', '.join(setters)}):\n  def __init__(self, {', '.join(names)}):\n{body}  return __init__\n"
    source = source.replace("\n    _set_", "\n      _set_")
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # noqa: S102 - built from the class's own field names only
    init = namespace["make"](*setters.values())
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[misc]


for _cls in (AlertInfo, MessageAt):
    _init_through_slots(_cls)
# Built for every handshake message: filled as a plain twin class, then made a MessageAt (see fastinit).
_new_message_at = positional_factory(MessageAt)  # frame, ts, message


# Read per event: module globals rather than attributes of modules.
_RECORD_SEEN, _ENCRYPTED_RECORD_SEEN = ev.RecordSeen, ev.EncryptedRecordSeen
_APPLICATION_DATA, _HANDSHAKE = m.APPLICATION_DATA, m.HANDSHAKE
_NO_APP_DATA = {_CLIENT: 0, _SERVER: 0}  # copied for each summary (a copy does not hash the keys again)


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
    # The parser's own (frozen) events where they carry all that is kept (sender, frame, ts, and for encrypted
    # records content_type and length): no copy to build per record.
    ccs: dict[Sender, ev.ChangeCipherSpecSeen] = field(default_factory=dict)
    alerts: list[AlertInfo] = field(default_factory=list)
    encrypted_records: list[ev.EncryptedRecordSeen] = field(default_factory=list)
    first_record: dict[Sender, ev.RecordSeen] = field(default_factory=dict)
    first_handshake_ts: dict[Sender, float] = field(default_factory=dict)
    not_tls: dict[Sender, ev.NotTlsSeen] = field(default_factory=dict)
    starttls: dict[Sender, ev.TlsStartSeen] = field(default_factory=dict)
    # Directions the capture joined after their stream began (no SYN seen): where their records were found.
    joined: dict[Sender, ev.MidstreamJoinSeen] = field(default_factory=dict)
    # A record each direction left cut short when its stream ended (rare: made only then).
    truncated: dict[Sender, ev.TruncatedRecordSeen] | None = None
    # A plaintext prelude in which the client asked to start TLS (STARTTLS, ...), and the server's answer.
    upgrade_asked: ev.UpgradeAskedSeen | None = None
    upgrade_reply: ev.UpgradeReplySeen | None = None
    gaps: list[ev.GapSeen] = field(default_factory=list)
    resyncs: list[ev.ResyncSeen] = field(default_factory=list)
    anomalies: list[ev.ParseAnomaly] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    app_data_records: dict[Sender, int] = field(default_factory=_NO_APP_DATA.copy)
    # TLS 1.3: the raw handshake messages from the first ClientHello to the server's Certificate, to check the
    # server's CertificateVerify signature (visible with a key log); dropped for other versions.
    transcript: list[bytes] | None = field(default_factory=list)
    transcript_complete: bool = False
    server_certificate_verify: MessageAt | None = None
    # `version` remembered with the server_hello it was read from (the verdict, the record and the summary's own
    # properties ask for it several times, and each reading scans the ServerHello's extensions).
    _version_of: MessageAt | None = field(default=None, repr=False, compare=False)
    _version: int | None = field(default=None, repr=False, compare=False)

    # How many encrypted records to keep per side: enough to read the end of any handshake, bounded for hostile peers.
    MAX_ENCRYPTED_KEPT = 32

    @property
    def client_hello(self) -> m.ClientHello | None:
        return self.client_hellos[0].message if self.client_hellos else None  # type: ignore[return-value]

    @property
    def cut_client_hello(self) -> ev.TruncatedRecordSeen | None:
        """The client's ClientHello record, cut short when its stream ended (None when there was none)."""
        cut = self.truncated.get(_CLIENT) if self.truncated else None
        return cut if cut is not None and cut.handshake_type == m.CLIENT_HELLO else None

    @property
    def last_client_hello(self) -> m.ClientHello | None:
        return self.client_hellos[-1].message if self.client_hellos else None  # type: ignore[return-value]

    @property
    def server_hello_msg(self) -> m.ServerHello | None:
        return self.server_hello.message if self.server_hello else None  # type: ignore[return-value]

    @property
    def version(self) -> int | None:
        at = self.server_hello
        if at is None:
            return None
        if at is not self._version_of:
            self._version = at.message.selected_version  # type: ignore[attr-defined]
            self._version_of = at
        return self._version

    @property
    def is_tls13(self) -> bool:
        v = self.version
        return v is not None and (v == 0x0304 or 0x7F00 <= v <= 0x7FFF)

    def encrypted_from(self, sender: Sender) -> list[ev.EncryptedRecordSeen]:
        return [r for r in self.encrypted_records if r.sender is sender]

    @property
    def resumed(self) -> bool:
        """TLS 1.3: the server accepted a PSK. TLS <= 1.2: the server echoed the client's session id (or answered a
        ticket) and went straight to ChangeCipherSpec without a Certificate."""
        at = self.server_hello
        if at is None:
            return False
        sh: m.ServerHello = at.message  # type: ignore[assignment]
        if self.is_tls13:
            return sh.has_extension(m.EXT_PRE_SHARED_KEY)
        if self.server_certificate is not None or self.server_key_exchange is not None:
            return False
        ccs = self.ccs.get(_SERVER)
        if ccs is not None and ccs.ts >= at.ts:
            return True
        ch = self.client_hello
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
            self.history.append(letter.upper() if sender is _CLIENT else letter.lower())

    def add(self, event: ev.Event) -> None:
        """Fold one parser event in."""
        self.add_all((event,))

    def add_all(self, events: Iterable[ev.Event]) -> None:
        """Fold parser events in, in order."""
        # This runs for every record of every connection. The two commonest events (a record header, an encrypted
        # record: three in four) are folded right here, with what they touch looked up once per batch; the others
        # are found by one dict lookup on the event's class instead of a chain of isinstance tests. A subclass of
        # an event class is handled as its base (found once, then remembered).
        # Dicts keyed by sender are probed only until both sides are in: after that a probe cannot add anything.
        first_record = self.first_record
        records = self.encrypted_records
        app_data = self.app_data_records
        kept = self.MAX_ENCRYPTED_KEPT
        for event in events:
            cls = event.__class__
            if cls is _RECORD_SEEN:
                if len(first_record) < 2 and event.sender not in first_record:
                    first_record[event.sender] = event  # type: ignore[assignment]
                continue
            if cls is _ENCRYPTED_RECORD_SEEN:
                sender = event.sender
                content_type = event.content_type  # type: ignore[attr-defined]
                if content_type == _APPLICATION_DATA and not event.handshake_phase:  # type: ignore[attr-defined]
                    app_data[sender] += 1
                # Fewer than MAX_ENCRYPTED_KEPT in all: this side has fewer too, no need to count its own.
                if len(records) < kept or sum(1 for r in records if r.sender is sender) < kept:
                    records.append(event)  # type: ignore[arg-type]
                if content_type == _HANDSHAKE:
                    first = self.first_handshake_ts
                    if len(first) < 2 and sender not in first:
                        first[sender] = event.ts
                continue
            fold = _FOLD_BY_EVENT.get(cls)
            if fold is None:
                fold = _fold_for(_FOLD_BY_EVENT, cls, _ignore)
            fold(self, event)

    # The handlers of events folded inline in `add`, for subclasses of their classes.
    def _add_record(self, event: ev.RecordSeen) -> None:
        if event.sender not in self.first_record:
            self.first_record[event.sender] = event

    def _add_encrypted(self, event: ev.EncryptedRecordSeen) -> None:
        sender = event.sender
        if event.content_type == m.APPLICATION_DATA and not event.handshake_phase:
            self.app_data_records[sender] += 1
        records = self.encrypted_records
        if len(records) < self.MAX_ENCRYPTED_KEPT or \
                sum(1 for r in records if r.sender is sender) < self.MAX_ENCRYPTED_KEPT:
            records.append(event)
        if event.content_type == m.HANDSHAKE:
            self.first_handshake_ts.setdefault(sender, event.ts)

    def _add_alert(self, event: ev.AlertSeen) -> None:
        self.alerts.append(AlertInfo(event.sender, event.frame, event.ts, event.level, event.description,
                                     event.encrypted, event.length))
        self._letter(event.sender, "l")

    def _add_ccs(self, event: ev.ChangeCipherSpecSeen) -> None:
        sender = event.sender
        ccs = self.ccs
        if len(ccs) < 2 and sender not in ccs:
            ccs[sender] = event
        history = self.history
        if len(history) < _HISTORY_MAX:  # _letter, inlined (one or two per connection)
            history.append("I" if sender is _CLIENT else "i")

    def _add_application_data(self, event: ev.ApplicationDataSeen) -> None:
        self.app_data_records[event.sender] += 1

    def _add_truncated(self, event: ev.TruncatedRecordSeen) -> None:
        if self.truncated is None:
            self.truncated = {}
        self.truncated.setdefault(event.sender, event)

    def _add_heartbeat(self, event: ev.HeartbeatSeen) -> None:
        self._letter(event.sender, "b")

    def _add_unknown_record(self, event: ev.UnknownRecordSeen) -> None:
        self._letter(event.sender, "q")

    def _add_not_tls(self, event: ev.NotTlsSeen) -> None:
        self.not_tls.setdefault(event.sender, event)

    def _add_tls_start(self, event: ev.TlsStartSeen) -> None:
        # STARTTLS: the plaintext prelude is over and TLS begins; the stream is TLS after all.
        self.not_tls.pop(event.sender, None)
        self.starttls[event.sender] = event

    def _add_upgrade_asked(self, event: ev.UpgradeAskedSeen) -> None:
        self.upgrade_asked = event

    def _add_upgrade_reply(self, event: ev.UpgradeReplySeen) -> None:
        self.upgrade_reply = event

    def _add_midstream_join(self, event: ev.MidstreamJoinSeen) -> None:
        self.joined[event.sender] = event

    def _add_gap(self, event: ev.GapSeen) -> None:
        self.gaps.append(event)

    def _add_resync(self, event: ev.ResyncSeen) -> None:
        self.resyncs.append(event)

    def _add_anomaly(self, event: ev.ParseAnomaly) -> None:
        if len(self.anomalies) < 50:
            self.anomalies.append(event)

    def _add_to_transcript(self, event: ev.HandshakeSeen, at: MessageAt) -> None:
        transcript = self.transcript
        msg = event.message
        if transcript is None or self.transcript_complete:
            return
        server_hello = isinstance(msg, m.ServerHello) and not msg.is_hello_retry_request
        if server_hello:
            # The version read here is remembered for `version`, which asks for it if `at` becomes server_hello
            # (the first ServerHello that is not a HelloRetryRequest): the extensions are scanned once.
            self._version_of, self._version = at, msg.selected_version  # type: ignore[union-attr]
        if server_hello and self._version != 0x0304:
            self.transcript = None  # not TLS 1.3: no CertificateVerify over a transcript to check
        elif not event.raw or len(transcript) >= 16:
            self.transcript = None  # something is off (SSLv2, a hostile flood): give the check up
        elif isinstance(msg, m.CertificateVerify) and event.sender is _SERVER:
            self.transcript_complete = True  # ClientHello .. server Certificate: what the signature covers
        else:
            transcript.append(event.raw)

    def _add_handshake(self, event: ev.HandshakeSeen) -> None:
        sender, msg = event.sender, event.message
        at = _new_message_at(event.frame, event.ts, msg)
        if self.transcript is not None:
            self._add_to_transcript(event, at)
        first = self.first_handshake_ts
        if len(first) < 2 and sender not in first:
            first[sender] = event.ts
        history = self.history
        if len(history) < _HISTORY_MAX:  # _letter, inlined
            history.append((_CLIENT_LETTER if sender is _CLIENT else _SERVER_LETTER).get(
                event.msg_type, "Z" if sender is _CLIENT else "z"))
        keep = _KEEP_BY_MESSAGE.get(msg.__class__)
        if keep is None:
            keep = _fold_for(_KEEP_BY_MESSAGE, msg.__class__, _ignore)
        keep(self, sender, msg, at)

    def _keep_client_hello(self, sender: Sender, msg: m.ClientHello, at: MessageAt) -> None:
        if len(self.client_hellos) < 4:
            self.client_hellos.append(at)

    def _keep_server_hello(self, sender: Sender, msg: m.ServerHello, at: MessageAt) -> None:
        if msg.is_hello_retry_request:
            if self.hello_retry is None:
                self.hello_retry = at
        elif self.server_hello is None:
            self.server_hello = at

    def _keep_certificate(self, sender: Sender, msg: m.Certificate, at: MessageAt) -> None:
        if sender is _SERVER:
            if self.server_certificate is None:
                self.server_certificate = at
        elif self.client_certificate is None:
            self.client_certificate = at

    def _keep_certificate_verify(self, sender: Sender, msg: m.CertificateVerify, at: MessageAt) -> None:
        if sender is _CLIENT:
            if self.client_certificate_verify is None:
                self.client_certificate_verify = at
        elif self.server_certificate_verify is None:
            self.server_certificate_verify = at

    def _keep_finished(self, sender: Sender, msg: m.Finished, at: MessageAt) -> None:
        self.finished.setdefault(sender, at)


def _fresh_factory(cls: type) -> Any:
    """A function giving what `cls()` gives (every field at its default, each factory called) for a slotted
    dataclass without a base: an instance of a plain twin class with the same slots, filled with attribute stores
    (`[]` and `{}` displays for the list and dict factories), then given `cls` as its class.

    Why: the pipeline makes a summary per connection, and the generated `__init__` (28 parameters, each tested
    against the default-factory marker, fifteen factory calls) cost ~12,700 instructions; this ~8,000. Checked
    here, once: a class for which it does not give an equal object keeps its own constructor."""
    if cls.__bases__ != (object,):
        return cls  # the twin would lack the base's slots
    fields = dataclasses.fields(cls)
    bound: dict[str, Any] = {}
    lines = []
    for i, f in enumerate(fields):
        if f.default_factory is list:
            value = "[]"
        elif f.default_factory is dict:
            value = "{}"
        elif f.default_factory is not dataclasses.MISSING:
            value = f"_factory{i}()"
            bound[f"_factory{i}"] = f.default_factory
        else:
            value = f"_default{i}"
            bound[f"_default{i}"] = f.default
        lines.append(f"        self.{f.name} = {value}\n")
    try:
        twin = type(f"_{cls.__name__}Slots", (object,), {"__slots__": cls.__slots__})  # type: ignore[attr-defined]
    except TypeError:
        return cls
    source = (f"def make(_twin, _cls{''.join(', ' + name for name in bound)}):\n"
              f"    def new_{cls.__name__}():\n"
              "        self = _twin()\n"
              + "".join(lines)
              + "        self.__class__ = _cls\n"
              "        return self\n"
              f"    return new_{cls.__name__}\n")
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # noqa: S102 - built from the class's own field names only
    factory = namespace["make"](twin, cls, *bound.values())
    try:
        first, second, plain = factory(), factory(), cls()
        same = type(first) is cls and all(
            type(getattr(first, f.name)) is type(getattr(plain, f.name))
            and getattr(first, f.name) == getattr(plain, f.name)
            and (f.default_factory is dataclasses.MISSING or getattr(first, f.name) is not getattr(second, f.name))
            for f in fields)
    except (TypeError, AttributeError):  # __class__ assignment refused, a slot missing: the layouts differ
        same = False
    return factory if same else cls


# `HandshakeSummary()`, for the pipeline's one summary per connection.
new_summary: Any = _fresh_factory(HandshakeSummary)


def _ignore(*_args: object) -> None:
    """Events and messages the summary does not keep."""


def _fold_for(table: dict[type, Any], cls: type, default: Any) -> Any:
    """The handler of `cls`'s nearest base class in `table` (as the isinstance chain it replaces would pick it),
    remembered for `cls`."""
    for base in cls.__mro__:
        if base in table:
            table[cls] = table[base]
            return table[base]
    table[cls] = default
    return default


def _keep_first(name: str) -> Any:
    """A handler that keeps the first message of its kind in the summary attribute `name`."""

    def keep(summary: HandshakeSummary, sender: Sender, msg: object, at: MessageAt) -> None:
        if getattr(summary, name) is None:
            setattr(summary, name, at)

    return keep


# How `HandshakeSummary.add` folds each event class; `_fold_for` fills in subclasses as they are met.
_FOLD_BY_EVENT: dict[type, Any] = {
    ev.RecordSeen: HandshakeSummary._add_record,
    ev.HandshakeSeen: HandshakeSummary._add_handshake,
    ev.EncryptedRecordSeen: HandshakeSummary._add_encrypted,
    ev.AlertSeen: HandshakeSummary._add_alert,
    ev.ChangeCipherSpecSeen: HandshakeSummary._add_ccs,
    ev.ApplicationDataSeen: HandshakeSummary._add_application_data,
    ev.HeartbeatSeen: HandshakeSummary._add_heartbeat,
    ev.UnknownRecordSeen: HandshakeSummary._add_unknown_record,
    ev.NotTlsSeen: HandshakeSummary._add_not_tls,
    ev.TlsStartSeen: HandshakeSummary._add_tls_start,
    ev.GapSeen: HandshakeSummary._add_gap,
    ev.MidstreamJoinSeen: HandshakeSummary._add_midstream_join,
    ev.ResyncSeen: HandshakeSummary._add_resync,
    ev.ParseAnomaly: HandshakeSummary._add_anomaly,
    ev.TruncatedRecordSeen: HandshakeSummary._add_truncated,
    ev.UpgradeAskedSeen: HandshakeSummary._add_upgrade_asked,
    ev.UpgradeReplySeen: HandshakeSummary._add_upgrade_reply,
}
# Which handshake messages the summary keeps, and where.
_KEEP_BY_MESSAGE: dict[type, Any] = {
    m.ClientHello: HandshakeSummary._keep_client_hello,
    m.ServerHello: HandshakeSummary._keep_server_hello,
    m.Certificate: HandshakeSummary._keep_certificate,
    m.ServerKeyExchange: _keep_first("server_key_exchange"),
    m.CertificateRequest: _keep_first("certificate_request"),
    m.CertificateStatus: _keep_first("certificate_status"),
    m.ServerHelloDone: _keep_first("server_hello_done"),
    m.ClientKeyExchange: _keep_first("client_key_exchange"),
    m.CertificateVerify: HandshakeSummary._keep_certificate_verify,
    m.EncryptedExtensions: _keep_first("encrypted_extensions"),
    m.Finished: HandshakeSummary._keep_finished,
}
