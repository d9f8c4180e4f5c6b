"""Rules that turn a connection's handshake summary and TCP facts into one verdict: outcome, the step that broke,
the cause, how sure we are, the evidence (with frame numbers) and what to do.

The rules run in the order a handshake runs: TCP connect, then what the bytes are, then explicit alerts (the wire
says it), then inferences from record shapes and TCP endings. The first rule that explains the failure wins.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from analyzers.hints import hint_for
from analyzers.summary import AlertInfo, HandshakeSummary
from analyzers.tcpfacts import SideFacts, TcpFacts
from tlsparse import registry
from tlsparse.events import EncryptedRecordSeen, Sender, TruncatedRecordSeen
from tlsparse.messages import APPLICATION_DATA, EXT_ENCRYPTED_CLIENT_HELLO, EXT_RENEGOTIATION_INFO

# Members as module constants: `Sender.CLIENT` is a metaclass lookup (~85 ns), read many times per
# connection.
_CLIENT, _SERVER = Sender.CLIENT, Sender.SERVER

# Failures where the server (or what stands before it) gave up on the ClientHello without a word; when that
# ClientHello did not fit in one packet or one TLS record, the verdict says so (`_hello_cut_up`).
_GAVE_UP_AT_HELLO = frozenset({"reset_after_client_hello", "reset_injected", "closed_without_alert", "server_silent"})
LARGE_KEY_SHARE = 800  # bytes: post-quantum key shares (ML-KEM-768: 1,184; X25519MLKEM768: 1,216), not classical
# A server's DHE group below this many bits is refused by current clients (OpenSSL at its default security level 2
# and up; Java, browsers that still do DHE at all, ask 1024 to 2048).
MIN_DH_PRIME_BITS = 2048
WEAK_DH_HINT = ("Server side: its DHE key exchange uses a {bits}-bit group, which current clients refuse ('dh key too "
                "small'): configure DH parameters of 2048 bits or more (nginx ssl_dhparam, Apache SSLOpenSSLConfCmd "
                "DHParameters, or the RFC 7919 ffdhe2048 group), or offer ECDHE suites, which every current client "
                "prefers.")
OLD_VERSION_HINT = ("Server side: enable TLS 1.2 (and 1.3) on the server or the device that ends TLS for it; TLS 1.0 "
                    "and 1.1 are deprecated (RFC 8996) and current clients no longer complete them. A client can be "
                    "made to accept them (OpenSSL: CipherString = DEFAULT@SECLEVEL=0) only as a stopgap.")
RENEGOTIATION_SCSV = 0x00FF  # TLS_EMPTY_RENEGOTIATION_INFO_SCSV: a client's way to ask for RFC 5746 in its suites
LEGACY_RENEGOTIATION_HINT = ("Server side: update the server (or the device that ends TLS for it) to one that supports "
                             "secure renegotiation (RFC 5746, every TLS library since 2010). Until then, OpenSSL 3 "
                             "clients connect only with UnsafeLegacyServerConnect set in their openssl.cnf (Options "
                             "line of the system_default section), at the risk RFC 5746 fixed.")
ECH_REQUIRED = 121
ECH_DECLINED_HINT = ("The client offered Encrypted Client Hello (ECH) and the server did not take it: the ECH keys "
                     "the client had (from the name's DNS HTTPS record) are not the server's. Browsers retry at once "
                     "with the keys the server sent back; if the retry fails too, or a client without that retry "
                     "fails, bring the DNS HTTPS record's ech= value in line with the server's ECH keys.")
ECH_OR_CERT_HINT = ("The client offered Encrypted Client Hello (ECH): a client whose ECH the server declined ends the "
                    "handshake the same way (an encrypted ech_required alert) before it retries with the server's "
                    "new ECH keys, so this may be no certificate problem. Without the key log the wire cannot tell "
                    "the two apart; look for a retry from the same client right after, or capture with "
                    "SSLKEYLOGFILE. (Chrome also sends a decoy ECH extension to servers without ECH.)")
# What an HTTP proxy's refusal of a CONNECT means, by status (then by class; 0: any other).
_PROXY_HINTS = {
    407: "The proxy wants the client to authenticate (407 Proxy Authentication Required): give the client the "
         "proxy's credentials (curl --proxy-user, HTTPS_PROXY=http://user:password@proxy:port, the JVM's "
         "https.proxyUser), or have the destination allowed without authentication.",
    403: "The proxy's policy forbids a tunnel to this destination (403 Forbidden): ask its administrators to allow "
         "the host and port, or bypass the proxy for it (NO_PROXY).",
    502: "The proxy could not reach the server (502 Bad Gateway): check the destination's name and port from the "
         "proxy's side (DNS, firewall, the server being up).",
    504: "The proxy gave up reaching the server (504 Gateway Timeout): check the path from the proxy to the server.",
    500: "The proxy failed to open the tunnel (a 5xx status): see the proxy's log for this request.",
    400: "The proxy refused the tunnel request (a 4xx status): check the CONNECT target (host:port) the client "
         "sends and the proxy's rules for it.",
    0: "The proxy did not open the tunnel the client asked for: see the proxy's answer and log.",
}
WRONG_PURPOSE_HINT = ("Server side: the certificate is not issued for TLS servers (its extended key usage lacks "
                      "serverAuth, as a client certificate's does): reissue it with serverAuth in its extended key "
                      "usage.")
CERT_REJECTED_READABLE_HINT = ("Client side refused the server certificate (see the alert): check the client's trust "
                               "store, the name it connects to, and the certificate's validity and extensions against "
                               "the client's rules.")
CERT_REJECTED_UNSEEN_HINT = ("Client side refused the server certificate (see the alert); TLS 1.3 encrypts the "
                             "certificate: a key log (SSLKEYLOGFILE) lets tlsflow read it and name the reason. Check "
                             "the client's trust store, the name it connects to, and the certificate's validity.")
NO_SNI_HINT = ("The client sent no server name (SNI), and the server needs one to choose its site and certificate: "
               "connect by host name rather than by address (or pass the name: curl --resolve or --connect-to, "
               "openssl s_client -servername), or give the server a default site for clients without SNI.")
UPGRADE_REFUSED_HINT = ("The server refused to start TLS: its TLS is off or broken (a mail server's '454 TLS not "
                        "available' mostly means it cannot read its certificate or key: see its log). Fix TLS on the "
                        "server, or use its implicit-TLS port if it has one.")
POSTGRES_NO_SSL_HINT = ("The PostgreSQL server does not accept SSL ('N' to the client's SSLRequest): turn ssl on in "
                        "postgresql.conf with a certificate and key, or let the client connect without SSL "
                        "(sslmode=prefer or disable) if the network allows it.")
CLIENT_SENT_NOTHING_HINT = ("The client opened the TCP connection and closed it without a ClientHello: a TCP-only "
                            "check (a load balancer's or monitor's health check, a port scan) does that, and so does a "
                            "client that failed before TLS began (a Java client with no protocol or suite in common: "
                            "'No appropriate protocol'). If it is a health check, nothing is wrong; otherwise the "
                            "client's own log says why.")
SERVER_WAITED_HINT = ("The client connected but never sent a ClientHello, and the server gave up waiting: a plain-TCP "
                      "client that waits for the server to speak first (an SMTP, IMAP or FTP client on an implicit-TLS "
                      "port such as 465, 993 or 990 instead of its STARTTLS port) does that; check the client's port "
                      "and TLS mode.")
CLIENT_HALF_CLOSE_HINT = ("The client shut down its sending side right after its ClientHello, so it could not finish "
                          "the handshake: a script that pipes a fixed ClientHello into nc or socat, or a scanner or "
                          "health check that only wants the server's answer, does that. If that is what it is, the "
                          "server is fine; otherwise fix the client so that it keeps sending until the handshake "
                          "ends.")
# Alerts a server sends when it cannot read a ClientHello: with one that came in several TLS records, the verdict
# says so too.
_REFUSED_HELLO = frozenset({"alert_other", "handshake_failure"})
RECORD_SPLIT_HINT = ("This ClientHello came in more than one TLS record, as tools that get past SNI filtering send it "
                     "(RFC 8446 allows it): servers and middleboxes that read the ClientHello from its first record "
                     "only fail on it. To confirm, retry without the record splitting (a plain client, or the tool's "
                     "fragmentation turned off); then fix or bypass the failing device.")
SPLIT_HELLO_HINT = ("This ClientHello did not fit in one packet: servers and middleboxes that read it from the first "
                    "packet only fail on such hellos, which post-quantum key shares make common (https://tldr.fail). "
                    "To confirm, retry with a client limited to classical groups (e.g. X25519 only); then update or "
                    "bypass the failing device.")

# Alert descriptions (IANA TLS Alerts).
CLOSE_NOTIFY = 0
UNEXPECTED_MESSAGE = 10
BAD_RECORD_MAC = 20
HANDSHAKE_FAILURE = 40
BAD_CERTIFICATE = 42
UNSUPPORTED_CERTIFICATE = 43
CERTIFICATE_REVOKED = 44
CERTIFICATE_EXPIRED = 45
CERTIFICATE_UNKNOWN = 46
ILLEGAL_PARAMETER = 47
UNKNOWN_CA = 48
ACCESS_DENIED = 49
DECODE_ERROR = 50
DECRYPT_ERROR = 51
PROTOCOL_VERSION = 70
INSUFFICIENT_SECURITY = 71
INTERNAL_ERROR = 80
USER_CANCELED = 90
NO_RENEGOTIATION = 100
MISSING_EXTENSION = 109
UNSUPPORTED_EXTENSION = 110
UNRECOGNIZED_NAME = 112
BAD_CERTIFICATE_STATUS_RESPONSE = 113
UNKNOWN_PSK_IDENTITY = 115
CERTIFICATE_REQUIRED = 116
NO_APPLICATION_PROTOCOL = 120

CERTIFICATE_ALERTS = {BAD_CERTIFICATE, UNSUPPORTED_CERTIFICATE, CERTIFICATE_REVOKED, CERTIFICATE_EXPIRED,
                      CERTIFICATE_UNKNOWN, UNKNOWN_CA, ACCESS_DENIED, BAD_CERTIFICATE_STATUS_RESPONSE}

# A TLS 1.3 record holding only an alert: 2 bytes of alert + 1 byte of inner type + the AEAD tag (16 bytes, or 8
# for CCM_8). A Finished is at least 32 + 4 + 1 + 16 = 53 bytes. Anything up to 24 is taken as an alert.
MAX_ENCRYPTED_ALERT_LENGTH = 24
# A TLS 1.3 record holding only a Finished: verify_data (SHA-256 or SHA-384) + 4 + 1 + 16-byte tag.
TLS13_FINISHED_RECORD_LENGTHS = frozenset({32 + 4 + 1 + 16, 48 + 4 + 1 + 16})
# Client's encrypted handshake bytes above which its TLS 1.3 flight must hold a (non-empty) Certificate.
TLS13_CLIENT_FLIGHT_WITH_CERT = 200
# Signalling values in the cipher-suite list that are not suites: renegotiation SCSV and fallback SCSV.
_SIGNALLING_SUITES = frozenset({RENEGOTIATION_SCSV, 0x5600})
# Suites every maintained TLS server enables: a server that refuses all of them offers only weak/exotic suites.
_WIDELY_SUPPORTED_SUITES = frozenset({0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA8, 0xCCA9,
                                      0x009C, 0x009D, 0x002F, 0x0035, 0xC013, 0xC014})
# A client that closes within this time after its Finished, without data, is hanging up, not done.
HANG_UP_SECONDS = 0.5
# Seconds without an answer to the ClientHello before "server silent" is called on a flow still open.
SILENT_AFTER_SECONDS = 5.0
# The first evidence line of a connection that the capture (or the flow table) joined after it began.
_JOINED_MIDSTREAM = ("no SYN: the connection began before the capture (or before tlsflow followed it), its handshake "
                     "is not in this record")


@dataclass(frozen=True, slots=True)
class CertView:
    """What certificate checks found, in the contract's cause names (`cert_expired`, ...), with evidence."""

    findings: frozenset[str] = frozenset()
    facts: tuple[str, ...] = ()
    valid_at_capture_time: bool | None = None  # None: not checked (no certificate visible)
    interception: str | None = None  # the product name, when the issuer is a TLS-inspection product
    warnings: tuple[str, ...] = ()


@dataclass(slots=True)
class Verdict:
    outcome: str
    failed_step: str | None = None
    cause: str | None = None
    confidence: str | None = None
    alert: str | None = None
    alert_sender: str | None = None
    evidence: list[str] = field(default_factory=list)
    hint: str | None = None
    warnings: list[str] = field(default_factory=list)
    end_ts: float | None = None  # when the handshake ended or failed (for handshake_ms)


# Certificate findings in the order a user should fix them: the first one explains a rejection best.
_CERT_CAUSE_ORDER = ("cert_revoked", "cert_expired", "cert_not_yet_valid", "cert_self_signed",
                     "cert_incomplete_chain", "cert_unknown_ca", "cert_hostname_mismatch", "cert_weak")
_ALERT_TO_CERT_CAUSE = {CERTIFICATE_EXPIRED: ("cert_expired", "cert_not_yet_valid"),
                        CERTIFICATE_REVOKED: ("cert_revoked",),
                        UNKNOWN_CA: ("cert_self_signed", "cert_incomplete_chain", "cert_unknown_ca")}


_NOT_YET = object()  # a value not worked out yet (None is a value)


def _alert_name(code: int | None) -> str:
    return "encrypted" if code is None else registry.alert_name(code)


_SIDE_NAMES = {_CLIENT: _CLIENT.value, _SERVER: _SERVER.value}  # (an Enum's .value is a descriptor call)


def _side(sender: Sender) -> str:
    return _SIDE_NAMES[sender]


def _first_close(side: SideFacts) -> tuple[float, int, str] | None:
    """(time, frame, "FIN" or "RST") of the side's first close (by time, then frame), or None."""
    closes = [(ts, frame, kind) for ts, frame, kind in ((side.fin_ts, side.fin_frame, "FIN"),
                                                        (side.rst_ts, side.rst_frame, "RST")) if ts is not None]
    return min(closes) if closes else None  # type: ignore[return-value,type-var]


def _refusal(reply: bytes) -> bool:
    """A server's answer to a request to start TLS that says no: a 4xx/5xx code, -ERR, NO or BAD, XMPP's
    <failure/>, PostgreSQL's N."""
    head = reply.split(b" ", 2)
    if reply[:1] in (b"4", b"5") and reply[:3].isdigit():
        return True
    if reply == b"N" or reply.startswith((b"-ERR", b"<failure")):
        return True
    return any(word in (b"NO", b"BAD") for word in head[:2])


def _duration(seconds: float) -> str:
    """A time span for evidence: milliseconds below a second, seconds above."""
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.1f} s"


class _Decider:
    __slots__ = ("_client_after", "_encrypted", "_fatal_alert", "_signature_checked", "_signature_ok", "capture_end",
                 "certs", "missing", "s", "tcp", "tls13", "v")

    def __init__(self, s: HandshakeSummary, tcp: TcpFacts, certs: CertView, capture_end: float | None) -> None:
        self.s, self.tcp, self.certs, self.capture_end = s, tcp, certs, capture_end
        self.v = Verdict("incomplete")  # (by position: a keyword costs ~900 instructions more)
        self._signature_checked: bool | None = None
        self._signature_ok: bool | None = None
        # Read by several rules; the summary computes them on each access (by scanning extensions, alerts and
        # records), and it does not change while the rules run: worked out once here.
        self.tls13 = s.is_tls13
        self._fatal_alert: AlertInfo | None | object = _NOT_YET
        self._encrypted: tuple[list[EncryptedRecordSeen], list[EncryptedRecordSeen]] | None = None
        self._client_after: list[EncryptedRecordSeen] | None = None
        self.missing = None if tcp.client.packets and tcp.server.packets else self._missing_side()

    def _missing_side(self) -> Sender | None:
        """The side whose direction the capture lacks, though the other side's packets show it was there: one
        direction of an asymmetric route, a SPAN port that copies one way, a capture filter on one direction. Its
        silence is then no failure, and what it sent cannot be judged. A server sends nothing without a client; a
        client goes on past its ClientHello (or alerts, or sends data) only once it has the server's answer. (A
        client that sent a ClientHello alone may face a silent server: that is not taken for a missing one.)"""
        c, srv, s = self.tcp.client, self.tcp.server, self.s
        if srv.packets and not c.packets:
            # (A connection joined at its very end may show a last segment or two of the server's alone: without
            # a SYN-ACK, a ServerHello or bytes of the client's acknowledged, only more new segments than a
            # server sends unacknowledged tell.)
            if srv.synack_frame is not None or s.server_hello is not None or _unseen_acked(srv) or \
                    srv.packets - srv.retransmissions >= ONE_WAY_SEGMENTS:
                return _CLIENT
        elif c.packets and not srv.packets:
            if _unseen_acked(c):
                return _SERVER
            if s.client_hellos:
                after = s.client_hellos[0].ts
                if (_CLIENT in s.ccs or s.client_key_exchange is not None or s.app_data_records[_CLIENT]
                        or self.enc(_CLIENT) or any(a.sender is _CLIENT and a.ts >= after for a in s.alerts)):
                    return _SERVER
            elif c.packets - c.retransmissions >= ONE_WAY_SEGMENTS and s.app_data_records[_CLIENT]:
                return _SERVER
        return None

    @property
    def first_fatal_alert(self) -> AlertInfo | None:
        if self._fatal_alert is _NOT_YET:
            self._fatal_alert = self.s.first_fatal_alert
        return self._fatal_alert  # type: ignore[return-value]

    def enc(self, sender: Sender) -> list[EncryptedRecordSeen]:
        """`s.encrypted_from(sender)`, the records split by side in one pass (read-only: shared by the rules)."""
        split = self._encrypted
        if split is None:
            client: list[EncryptedRecordSeen] = []
            server: list[EncryptedRecordSeen] = []
            for r in self.s.encrypted_records:
                # one pass, split with `is` (no per-record dict probe)
                (client if r.sender is _CLIENT else server).append(r)
            split = self._encrypted = (client, server)
        return split[0] if sender is _CLIENT else split[1]

    def _client_after_server_flight(self) -> list[EncryptedRecordSeen]:
        """TLS 1.3: the client's encrypted records from the server's first encrypted record on (empty when the
        server sent none), worked out once for the rules that read them."""
        after = self._client_after
        if after is None:
            server_enc = self.enc(_SERVER)
            if server_enc:
                flight_ts = server_enc[0].ts
                after = [r for r in self.enc(_CLIENT) if r.ts >= flight_ts]
            else:
                after = []
            self._client_after = after
        return after

    @property
    def ske_signature_ok(self) -> bool | None:
        """The server's own signature checked with its certificate (computed only when a rule asks: it costs a
        public-key operation per connection)."""
        if self._signature_checked is None:
            self._signature_ok = self._check_ske_signature()
            self._signature_checked = True
        return self._signature_ok

    def _check_ske_signature(self) -> bool | None:
        """TLS 1.2: the ServerKeyExchange signature; TLS 1.3 (with a key log): the server's CertificateVerify."""
        s = self.s
        if self.tls13:
            return self._check_tls13_certificate_verify()
        if s.server_key_exchange is None or s.server_certificate is None or s.server_hello_msg is None \
                or s.client_hello is None or not s.server_certificate.message.certificates:
            return None
        from analyzers.signatures import verify_server_key_exchange

        return verify_server_key_exchange(s.server_certificate.message.certificates[0], s.client_hello.random,
                                          s.server_hello_msg.random, s.server_key_exchange.message)

    # -- helpers -------------------------------------------------------------------------------------------------
    def fail(self, step: str, cause: str, confidence: str, *evidence: str, end_ts: float | None = None) -> Verdict:
        v = self.v
        v.outcome, v.failed_step, v.cause, v.confidence = "failed", step, cause, confidence
        v.evidence.extend(evidence)
        v.hint = hint_for(cause)
        v.end_ts = end_ts
        return v

    def _ch_frame(self) -> str:
        return f"frame {self.s.client_hellos[0].frame}: ClientHello" if self.s.client_hellos else "no ClientHello"

    def _before(self, ts: float, msg_at) -> bool:
        return msg_at is not None and msg_at.ts <= ts

    def step_at(self, ts: float, sender: Sender) -> str:
        """The first handshake step not completed when something happened at `ts` (an alert, a reset)."""
        s = self.s
        if s.server_hello is None or s.server_hello.ts > ts:
            return "server_hello"
        if self.tls13:
            # Without keys the server's flight is one opaque block: a client that aborts after it rejected
            # something in it, almost always the certificate.
            client_enc = [r for r in self.enc(_CLIENT) if r.ts <= ts]
            server_enc = [r for r in self.enc(_SERVER) if r.ts <= ts]
            if sender is _CLIENT or not client_enc:
                return "server_certificate" if server_enc or sender is _CLIENT else "encrypted_extensions"
            return "client_certificate" if self._certificate_request_seen(ts) else "finished"
        if s.server_certificate is None and s.server_key_exchange is None and s.server_hello_done is None:
            if s.resumed:
                return "finished"
            return "server_certificate"
        if not self._before(ts, s.server_hello_done):
            if s.server_certificate is None or s.server_certificate.ts > ts:
                return "server_certificate"
            if s.server_key_exchange is None or s.server_key_exchange.ts > ts:
                return "server_key_exchange" if sender is _SERVER else "server_certificate"
            return "server_hello_done"
        # Server's first flight complete: what the client sends next.
        if sender is _CLIENT and s.client_key_exchange is None:
            return "server_certificate"  # the client judged the server's flight and refused it
        if s.certificate_request is not None and (s.client_certificate is None or s.client_certificate.ts > ts):
            return "client_certificate"
        if s.client_key_exchange is None or s.client_key_exchange.ts > ts:
            return "client_key_exchange"
        if s.certificate_request is not None and sender is _SERVER and s.client_certificate is not None:
            return "client_certificate"
        if _CLIENT not in s.ccs or s.ccs[_CLIENT].ts > ts:
            return "change_cipher_spec"
        return "finished"

    def _certificate_request_seen(self, ts: float) -> bool:
        s = self.s
        return s.certificate_request is not None and s.certificate_request.ts <= ts

    def _check_tls13_certificate_verify(self) -> bool | None:
        s = self.s
        cv, cert = s.server_certificate_verify, s.server_certificate
        if cv is None or cert is None or not s.transcript_complete or not cert.message.certificates:
            return None
        from analyzers.signatures import verify_tls13_certificate_verify

        info = registry.cipher_suite_info(s.server_hello_msg.cipher_suite)
        return verify_tls13_certificate_verify(cert.message.certificates[0], s.transcript or [],
                                               info.hash if info else None, cv.message.signature_scheme,
                                               cv.message.signature)

    # -- the rules -----------------------------------------------------------------------------------------------
    def decide(self) -> Verdict:
        s = self.s
        for rule in _RULES:
            verdict = rule(self)
            if verdict is not None:
                break
        else:
            verdict = self.v
        cut = self.tcp.client.cut_segments + self.tcp.server.cut_segments  # (by the snap length)
        if verdict.outcome == "incomplete" and not s.client_hellos:
            if self.tcp.client.syn_frame is None and self.tcp.server.synack_frame is None:
                verdict.evidence.extend(self._joined_evidence())
            cut_hello = s.cut_client_hello
            if cut_hello is not None:
                verdict.evidence.append(self._cut_hello_fact(cut_hello, "the rest is not in the capture"))
            elif self._nothing_from_client(verdict):
                pass
            elif not s.first_record and not s.not_tls and not cut:
                verdict.evidence.append("no TLS bytes on this connection")
        elif verdict.outcome == "incomplete" and not verdict.evidence:
            verdict.evidence.extend(self._where_the_capture_stops())
        if cut and verdict.outcome != "established":
            first = min(f for f in (self.tcp.client.cut_frame, self.tcp.server.cut_frame) if f is not None)
            verdict.evidence.append(f"frame {first}: the capture's snap length cut {cut} segment(s) of this "
                                    "connection short, and what they carried cannot be read: capture with a larger "
                                    "snap length (tcpdump -s 0)")
        if "flow_evicted" in self.tcp.anomalies:
            verdict.evidence.append("the flow table was full: tlsflow stopped following this connection here, "
                                    "its later packets (if any) make another record")
        if self.missing is not None:
            seen = _side(self.missing.peer)
            acked = _unseen_acked(self.tcp.server if self.missing is _CLIENT else self.tcp.client)
            proof = (f" (it acknowledged {acked} byte{'s' if acked > 1 else ''} of the {_side(self.missing)}'s)"
                     if acked else "")
            verdict.evidence.append(f"no packet from the {_side(self.missing)} in the capture, though the {seen}'s "
                                    f"show it was there{proof}: only the {seen}'s direction was captured "
                                    "(asymmetric routing, a one-way SPAN port or capture filter)")
            if verdict.outcome == "incomplete":
                verdict.hint = ONE_WAY_HINT
        if verdict.outcome == "failed" and verdict.failed_step in ("client_hello", "server_hello") and \
                (verdict.cause in _GAVE_UP_AT_HELLO or verdict.cause in _REFUSED_HELLO):
            self._hello_cut_up(verdict)
        self.add_warnings(verdict)
        return verdict

    def _where_the_capture_stops(self) -> list[str]:
        """An unfinished handshake with no failure in sight: where this connection's bytes stop in the capture (a
        capture ended, filtered or cut by a packet count, or a connection still waiting)."""
        s, c, srv = self.s, self.tcp.client, self.tcp.server
        facts = [self._ch_frame()]
        for sender in (_SERVER, _CLIENT):
            cut = (s.truncated or {}).get(sender)
            if cut is not None:
                facts.append(f"frame {cut.frame}: the {_side(sender)}'s bytes stop inside a record "
                             f"({cut.received + 5:,} of its {cut.length + 5:,} bytes): the rest is not in the capture")
                return facts
        frames = [(side.last_payload_ts, side.last_payload_frame, sender) for sender, side in ((_CLIENT, c),
                                                                                             (_SERVER, srv))
                  if side.last_payload_frame is not None]
        if frames and s.client_hellos:
            ts, frame, sender = max(frames)
            hello = s.client_hellos[-1]
            if frame <= hello.frame:
                facts.append("no TLS bytes of this connection in the capture after the ClientHello: the server's "
                             "answer is not in it")
            else:
                facts.append(f"frame {frame}: the last bytes of this connection in the capture (the {_side(sender)}'s, "
                             f"{_duration(max(0.0, ts - hello.ts))} after the ClientHello): the rest of the handshake "
                             "is not in it")
        return facts

    def _nothing_from_client(self, v: Verdict) -> bool:
        """A connection opened in the capture on which the client sent no byte before one side closed: no TLS
        handshake was tried. Says who closed, after how long, and what that usually is (a TCP-only health check,
        a client that failed before TLS, or one that waits for the server to speak first)."""
        c, srv = self.tcp.client, self.tcp.server
        if c.payload_bytes or c.syn_frame is None or srv.synack_frame is None or self.missing is not None:
            return False
        closes = [(*closed, side) for closed, side in ((_first_close(c), "client"), (_first_close(srv), "server"))
                  if closed is not None]
        if not closes:
            return False
        ts, frame, kind, side = min(closes)
        after = ts - (c.syn_ts if c.syn_ts is not None else ts)
        if side == "client":
            v.evidence.append(f"frame {frame}: the client closed ({kind}) {_duration(after)} after the connection "
                              "opened, without sending a byte: no TLS handshake was tried")
            v.hint = CLIENT_SENT_NOTHING_HINT
        else:
            v.evidence.append(f"frame {frame}: the server closed ({kind}) {_duration(after)} after the connection "
                              "opened, the client having sent nothing: it waited for a ClientHello that never came")
            v.hint = SERVER_WAITED_HINT
        for alert in self.s.alerts:
            if alert.sender is _SERVER and not alert.encrypted and alert.ts >= ts:
                v.alert, v.alert_sender = _alert_name(alert.description), "server"
                v.evidence.append(f"frame {alert.frame}: server alert {v.alert} in reaction")
                break
        return True

    def _joined_evidence(self) -> list[str]:
        """A connection the capture joined after it began: why there is no handshake to judge."""
        facts = [_JOINED_MIDSTREAM]
        for sender, seen in sorted(self.s.joined.items(), key=lambda item: item[1].frame):
            where = f" (after {seen.skipped} bytes of a record under way)" if seen.skipped else ""
            facts.append(f"frame {seen.frame}: {_side(sender)} TLS records from here on{where}")
        return facts

    def tcp_connect(self) -> Verdict | None:
        c, srv = self.tcp.client, self.tcp.server
        if c.syn_frame is None or srv.synack_frame is not None or c.payload_bytes or srv.payload_bytes:
            return None
        if srv.rst_frame is not None:
            return self.fail("tcp_connect", "tcp_refused", "certain",
                             f"frame {c.syn_frame}: client SYN", f"frame {srv.rst_frame}: server RST, no SYN-ACK",
                             end_ts=srv.rst_ts)
        if srv.packets == 0:
            tries = 1 + c.retransmissions
            waited = (c.last_ts or 0) - (c.syn_ts or 0)
            if tries > 1 or (self.capture_end is not None and self.capture_end - (c.syn_ts or 0) >= 3.0):
                return self.fail("tcp_connect", "tcp_no_answer", "likely",
                                 f"frame {c.syn_frame}: client SYN, sent {tries} time(s) over {waited:.1f} s",
                                 "no packet from the server", end_ts=c.last_ts)
        return None

    def not_tls(self) -> Verdict | None:
        s = self.s
        if not s.not_tls:
            return None
        v = self.v
        if _SERVER in s.not_tls and s.client_hellos and _CLIENT not in s.not_tls:
            seen = s.not_tls[_SERVER]
            verdict = self.fail("server_hello", "not_tls", "certain", self._ch_frame(),
                                f"frame {seen.frame}: server answered with non-TLS bytes {seen.preview[:16]!r}",
                                end_ts=seen.ts)
            self._upgrade_refused(verdict)  # (a client that sent its ClientHello though the server said no)
            return verdict
        v.outcome = "not_tls"
        for sender, seen in s.not_tls.items():
            preview = seen.preview[:16]
            v.evidence.append(f"frame {seen.frame}: {_side(sender)} sent non-TLS bytes {preview!r}")
        if _SERVER in s.not_tls and s.client_hellos:
            v.evidence.insert(0, self._ch_frame())
        v.hint = hint_for("not_tls")
        v.confidence = "certain"
        self._proxy_refused(v)
        self._upgrade_refused(v)
        return v

    def _upgrade_refused(self, v: Verdict) -> None:
        """The client asked to start TLS in a plaintext protocol (STARTTLS, STLS, AUTH TLS, PostgreSQL's SSLRequest,
        ...) and the server said no: TLS never began. Says what was asked and answered (the server's own words)."""
        s = self.s
        asked, reply = s.upgrade_asked, s.upgrade_reply
        if asked is None or reply is None or _SERVER in s.starttls or not _refusal(reply.reply):
            return
        command = asked.command.decode("latin-1")
        if command.startswith("\x00"):
            command = "SSLRequest"
        answer = reply.reply.decode("latin-1")
        v.evidence.insert(0, f"frame {reply.frame}: the server refused the client's request to start TLS "
                             f"({command!r}, frame {asked.frame}): {answer!r}; no TLS began")
        v.hint = POSTGRES_NO_SSL_HINT if command == "SSLRequest" else UPGRADE_REFUSED_HINT

    def _proxy_refused(self, v: Verdict) -> None:
        """The client asked an HTTP proxy for a tunnel (CONNECT) and the proxy answered with an error status instead
        of "200": TLS never began. Says what the status means (a CONNECT that succeeded is followed through to its
        TLS, as a STARTTLS upgrade is)."""
        s = self.s
        asked, answer = s.not_tls.get(_CLIENT), s.not_tls.get(_SERVER)
        if asked is None or answer is None or not asked.preview.startswith(b"CONNECT "):
            return
        head = answer.preview
        if not (head.startswith(b"HTTP/1.") and len(head) >= 12 and head[9:12].isdigit()):
            return
        status = int(head[9:12])
        if 200 <= status < 300:
            return
        v.evidence.insert(0, f"frame {answer.frame}: the HTTP proxy refused the tunnel the client asked for "
                             f"(CONNECT) with status {status}: no TLS began")
        v.hint = _PROXY_HINTS.get(status) or _PROXY_HINTS.get(status // 100 * 100) or _PROXY_HINTS[0]

    def readable_alert(self) -> Verdict | None:
        s = self.s
        alert = self.first_fatal_alert
        if alert is None or alert.encrypted or not (s.client_hellos or s.server_hello or (
                self.missing is _CLIENT and alert.sender is _SERVER and self.tcp.server.synack_frame is not None
                and _unseen_acked(self.tcp.server) > 1)):
            # (last: the server refused a ClientHello the capture lacks, of a connection begun in it; its
            # acknowledgements show the client sent more than a FIN)
            return None
        v = self.v
        v.alert, v.alert_sender = _alert_name(alert.description), _side(alert.sender)
        desc = alert.description
        ev_alert = (f"frame {alert.frame}: {_side(alert.sender)} alert {_alert_name(desc)} ({desc})"
                    + ("" if alert.level == 2 else f", level {alert.level}"))
        step = self.step_at(alert.ts, alert.sender)
        if self.missing is _SERVER and s.server_hello is None and alert.sender is _CLIENT and \
                desc in CERTIFICATE_ALERTS:
            step = "server_certificate"  # (the client judged a certificate that the capture does not hold)
        reaction = self._reaction_to_close(alert)
        if reaction is not None:
            return reaction
        hint = None
        refusal = self._client_refusal(alert) if alert.sender is _CLIENT else None
        if refusal is not None:
            step, cause, confidence, extra, hint = refusal
        else:
            cause, confidence, extra = self.cause_for_alert(alert, step)
            if step == "server_certificate" and cause.startswith("client_cert"):
                step = "client_certificate"
            if cause == "cert_key_mismatch":
                step = "certificate_verify" if self.tls13 else "server_key_exchange"
            if cause in ("client_cert_missing", "client_cert_rejected"):
                step = "client_certificate"
            if desc == ECH_REQUIRED and alert.sender is _CLIENT:
                hint = ECH_DECLINED_HINT
            elif cause == "sni_unrecognized" and s.client_hello is not None and not s.client_hello.sni:
                hint = NO_SNI_HINT
            elif cause == "cert_rejected":
                # The alert is readable: a key log would only show the certificate, when TLS 1.3 encrypted it.
                if "cert_wrong_purpose" in self.certs.findings:
                    hint = WRONG_PURPOSE_HINT
                elif s.server_certificate is None and self.tls13:
                    hint = CERT_REJECTED_UNSEEN_HINT
                else:
                    hint = CERT_REJECTED_READABLE_HINT
        evidence = [self._ch_frame()]
        if s.server_hello is not None and s.server_hello.ts <= alert.ts:
            evidence.append(self._server_hello_evidence())
        evidence.append(ev_alert)
        evidence.extend(extra)
        verdict = self.fail(step, cause, confidence, *evidence, end_ts=alert.ts)
        if hint is not None:
            verdict.hint = hint
        return verdict

    def _client_refusal(self, alert: AlertInfo) -> tuple[str, str, str, list[str], str] | None:
        """A client's bare handshake_failure (or insufficient_security) that what the server had just sent explains,
        as OpenSSL 3 clients refuse a server without secure renegotiation or with a small DHE group: (step, cause,
        confidence, evidence, hint), or None. Such a client checks these before the certificate, so they come
        first."""
        desc = alert.description
        kx = self.s.client_key_exchange
        if kx is not None and kx.ts <= alert.ts:
            return None  # (the client went on past what the server sent first: none of these)
        if desc in (HANDSHAKE_FAILURE, INSUFFICIENT_SECURITY, INTERNAL_ERROR):
            facts = self._old_version_facts(alert)
            if facts:
                return "server_hello", "no_common_version", "likely", facts, OLD_VERSION_HINT
        if desc == HANDSHAKE_FAILURE:
            facts = self._legacy_renegotiation_facts(alert)
            if facts:
                return "server_hello", "handshake_failure", "likely", facts, LEGACY_RENEGOTIATION_HINT
        if desc in (HANDSHAKE_FAILURE, INSUFFICIENT_SECURITY):
            facts = self._weak_dh_facts(alert)
            if facts:
                bits = self.s.server_key_exchange.message.dh_prime_bits  # type: ignore[union-attr]
                return "server_key_exchange", "no_common_group", "likely", facts, WEAK_DH_HINT.format(bits=bits)
        return None

    def _ech_offered_fact(self) -> str | None:
        """The evidence that the first ClientHello carries an outer Encrypted Client Hello extension, or None."""
        at = self.s.client_hellos[0] if self.s.client_hellos else None
        ech = at.message.extension(EXT_ENCRYPTED_CLIENT_HELLO) if at is not None else None
        if ech is None or ech.parsed != 0:  # (0: the outer ClientHello)
            return None
        return f"frame {at.frame}: the ClientHello offers Encrypted Client Hello (its sni is the outer name)"

    def client_half_closed(self) -> Verdict | None:
        """A client that shut down its sending side (FIN) right after its ClientHello, before the server's answer
        came: whatever the server then sent (its whole flight, then an alert or a close when it found the stream
        ended) cannot be answered. The failure is the client's: the step after the server's flight."""
        c = self.tcp.client
        fin_ts = c.fin_ts
        if fin_ts is None:
            return None
        s = self.s
        sh = s.server_hello
        if sh is None or sh.ts < fin_ts or not s.client_hellos or self.missing is not None or \
                c.rst_ts is not None and c.rst_ts < sh.ts:
            return None
        ch_at = s.client_hellos[0]
        if not 0 <= fin_ts - ch_at.ts < HANG_UP_SECONDS or ch_at.ts > sh.ts:
            return None  # (a client that gave up waiting: the server was slow, not the client's close)
        srv = self.tcp.server
        v = self.v
        facts = [self._ch_frame(),
                 (f"frame {c.fin_frame}: client shut down its sending side (FIN) "
                  f"{(fin_ts - ch_at.ts) * 1000:.1f} ms after its ClientHello, before any answer: it could send "
                  "nothing more"),
                 self._server_hello_evidence()]
        if self.tls13:  # (a CertificateRequest is seen only with a key log)
            step = "client_certificate" if s.certificate_request is not None else "finished"
        elif s.resumed:
            step = "finished"
        elif s.server_hello_done is None:
            step = self.step_at(max(t for t in (srv.fin_ts, srv.rst_ts, srv.last_ts, sh.ts) if t is not None), _SERVER)
        else:
            step = "client_certificate" if s.certificate_request is not None else "client_key_exchange"
        alert = self.first_fatal_alert
        if alert is not None and alert.sender is _SERVER:
            v.alert, v.alert_sender = _alert_name(alert.description), "server"
            facts.append(f"frame {alert.frame}: server alert {v.alert} in reaction")
        elif self.tls13:
            last = self.enc(_SERVER)[-1:]
            if last and last[0].length <= MAX_ENCRYPTED_ALERT_LENGTH and self._closed_after(_SERVER, last[0].ts):
                v.alert, v.alert_sender = "encrypted", "server"
                facts.append(f"frame {last[0].frame}: server answered the end of the stream with one encrypted "
                             f"record of {last[0].length} bytes (alert-sized)")
        closed = _first_close(srv)
        if closed is not None:
            facts.append(f"frame {closed[1]}: server closed ({closed[2]})")
        self.fail(step, "closed_without_alert", "certain", *facts, end_ts=fin_ts)
        v.hint = CLIENT_HALF_CLOSE_HINT
        return v

    def _reaction_to_close(self, alert: AlertInfo) -> Verdict | None:
        """An alert sent after the peer had already closed or reset without a word of TLS is the sender's reaction
        (decode_error, unexpected EOF): the failure is the peer's silent close."""
        tcp = self.tcp
        peer = tcp.server if alert.sender is _CLIENT else tcp.client
        peer_sender = alert.sender.peer
        closed = _first_close(peer)
        if closed is None or closed[0] > alert.ts or peer_sender in self.s.first_record:
            return None
        closed_ts, frame, kind = closed
        cause = "closed_without_alert" if kind == "FIN" else "reset_after_client_hello"
        step = self.step_at(closed_ts, peer_sender)
        return self.fail(step, cause, "certain", self._ch_frame(),
                         f"frame {frame}: {_side(peer_sender)} closed ({kind}) without any TLS answer",
                         f"frame {alert.frame}: {_side(alert.sender)} alert {_alert_name(alert.description)} "
                         f"({alert.description}) in reaction", end_ts=closed_ts)

    def _server_hello_evidence(self) -> str:
        s = self.s
        sh = s.server_hello_msg
        assert sh is not None and s.server_hello is not None
        return (f"frame {s.server_hello.frame}: ServerHello {registry.version_name(sh.selected_version)} "
                f"{registry.cipher_suite_name(sh.cipher_suite)}")

    def cause_for_alert(self, alert: AlertInfo, step: str) -> tuple[str, str, list[str]]:
        """Cause, confidence and extra evidence for a readable fatal alert seen at `step`."""
        s = self.s
        desc = alert.description
        from_server = alert.sender is _SERVER
        ch = s.client_hello
        if desc == PROTOCOL_VERSION:
            return "no_common_version", "certain", self._version_facts()
        if desc == UNRECOGNIZED_NAME:
            return "sni_unrecognized", "certain", [f"SNI {ch.sni!r}" if ch and ch.sni else "no SNI sent"]
        if desc == NO_APPLICATION_PROTOCOL:
            offered = ", ".join(ch.alpn) if ch and ch.alpn else "none"
            return "alpn_mismatch", "certain", [f"client offered ALPN: {offered}"]
        if desc == CERTIFICATE_REQUIRED:
            return "client_cert_missing", "certain", []
        if desc == ECH_REQUIRED and not from_server:
            return "alert_other", "certain", [self._ech_offered_fact() or "the client's ECH was declined"]
        if from_server and step in ("client_certificate", "client_key_exchange", "change_cipher_spec", "finished",
                                    "certificate_verify") and self._certificate_request_seen(alert.ts) \
                and (desc in CERTIFICATE_ALERTS or desc in (HANDSHAKE_FAILURE, DECRYPT_ERROR)):
            return self._client_cert_cause(alert)
        if desc in (BAD_RECORD_MAC, DECRYPT_ERROR):
            if not from_server and self.tls13 and self.ske_signature_ok is False:
                return "cert_key_mismatch", "certain", [
                    (f"frame {s.server_certificate_verify.frame}: the server's CertificateVerify signature does "
                     "not verify with the certificate's public key")]
            if not from_server and s.server_key_exchange is not None and step in ("server_certificate",
                                                                                "server_key_exchange",
                                                                                "server_hello_done"):
                if self.ske_signature_ok is False:
                    return "cert_key_mismatch", "certain", [
                        (f"frame {s.server_key_exchange.frame}: the ServerKeyExchange signature does not verify "
                         "with the certificate's public key")]
                return "cert_key_mismatch", "likely", [("the client could not verify the ServerKeyExchange "
                                                        "signature with the certificate's key")]
            return "decrypt_error", "certain", []
        if not from_server and (desc in CERTIFICATE_ALERTS or step == "server_certificate"
                                and desc in (HANDSHAKE_FAILURE, INSUFFICIENT_SECURITY)):
            cause, confidence, extra = self._server_cert_cause(desc)
            if cause != "cert_rejected" or desc in CERTIFICATE_ALERTS:
                return cause, confidence, extra
        if desc in (HANDSHAKE_FAILURE, INSUFFICIENT_SECURITY):
            return self._negotiation_cause(alert, step)
        if desc == ILLEGAL_PARAMETER and s.hello_retry is not None and not from_server:
            return "no_common_group", "likely", [f"frame {s.hello_retry.frame}: HelloRetryRequest"]
        return "alert_other", "certain", []

    def _old_version_facts(self, alert: AlertInfo) -> list[str]:
        """A client that refused (before its key exchange: `_client_refusal`) a server that chose TLS 1.0 or 1.1 (or
        SSL 3.0): their handshake signatures use MD5 and SHA-1, which current clients refuse even where they still
        offer the version (OpenSSL 3: 'legacy sigalg disallowed or unsupported', sent as internal_error). The
        evidence, or nothing."""
        s = self.s
        sh = s.server_hello_msg
        if sh is None or s.server_hello.ts > alert.ts or not 0x0300 <= sh.selected_version < 0x0303:
            return []
        return [(f"frame {s.server_hello.frame}: the server chose {registry.version_name(sh.selected_version)}, "
                 "deprecated (RFC 8996): its handshake signatures use MD5 and SHA-1, which current clients refuse "
                 "(OpenSSL 3: 'legacy sigalg disallowed or unsupported')")]

    def _legacy_renegotiation_facts(self, alert: AlertInfo) -> list[str]:
        """A client that offered secure renegotiation (RFC 5746) and refused, at once (`_client_refusal`), a TLS <=
        1.2 ServerHello without it: OpenSSL 3 does so by default ("unsafe legacy renegotiation disabled"). The
        evidence, or nothing."""
        s = self.s
        sh, ch = s.server_hello_msg, s.client_hello
        if sh is None or ch is None or s.server_hello.ts > alert.ts or sh.selected_version >= 0x0304:
            return []
        if sh.has_extension(EXT_RENEGOTIATION_INFO):
            return []
        if RENEGOTIATION_SCSV not in ch.cipher_suites and not ch.has_extension(EXT_RENEGOTIATION_INFO):
            return []
        return [(f"frame {s.server_hello.frame}: the ServerHello has no renegotiation_info: the server does not do "
                 "secure renegotiation (RFC 5746), which the client asked for; OpenSSL 3 clients refuse such servers "
                 "('unsafe legacy renegotiation disabled')")]

    def _weak_dh_facts(self, alert: AlertInfo) -> list[str]:
        """A client that refused the server's ServerKeyExchange as soon as it came (`_client_refusal`), whose DHE
        group is smaller than current clients accept (OpenSSL's "dh key too small"): the evidence, or nothing."""
        ske = self.s.server_key_exchange
        if ske is None or ske.ts > alert.ts:
            return []
        bits = ske.message.dh_prime_bits
        if ske.message.kind != "dhe" or bits is None or bits >= MIN_DH_PRIME_BITS:
            return []
        return [(f"frame {ske.frame}: ServerKeyExchange: DHE with a {bits}-bit group; current clients want "
                 f"{MIN_DH_PRIME_BITS} bits or more (OpenSSL: 'dh key too small')")]

    def _version_facts(self) -> list[str]:
        s = self.s
        facts = []
        ch = s.client_hello
        if ch is not None:
            offered = [v for v in (ch.supported_versions or (ch.legacy_version,)) if not registry.is_grease(v)]
            facts.append("client offered " + ", ".join(registry.version_name(v) for v in offered))
        if s.server_hello_msg is not None:
            facts.append("server chose " + registry.version_name(s.server_hello_msg.selected_version))
        return facts

    def _server_cert_cause(self, desc: int | None) -> tuple[str, str, list[str]]:
        certs = self.certs
        extra = list(certs.facts)
        if desc == UNSUPPORTED_CERTIFICATE and "cert_wrong_purpose" in certs.findings:
            # The alert for a certificate of the wrong kind or purpose: whatever our trust store says of its chain,
            # the client refused what the leaf is for (the contract has no cause of its own for it).
            return "cert_rejected", "certain", extra
        if desc in (CERTIFICATE_EXPIRED, BAD_CERTIFICATE) and certs.valid_at_capture_time and not certs.findings:
            # OpenSSL sends certificate_expired for an expired certificate and bad_certificate for a not yet valid
            # one; a certificate that passes every check at the capture's time was judged with a wrong clock.
            return "client_clock_skew", "likely", extra + ["the certificate chain is valid at the capture's time"]
        candidates = _ALERT_TO_CERT_CAUSE.get(desc, _CERT_CAUSE_ORDER)
        for cause in candidates:
            if cause in certs.findings:
                return cause, "certain" if desc in _ALERT_TO_CERT_CAUSE else "likely", extra
        if desc == CERTIFICATE_EXPIRED:
            return "cert_expired", "likely", extra
        if desc == CERTIFICATE_REVOKED:
            return "cert_revoked", "certain", extra
        if desc == UNKNOWN_CA:
            return "cert_unknown_ca", "certain", extra
        for cause in _CERT_CAUSE_ORDER:
            if cause in certs.findings:
                return cause, "likely", extra
        return "cert_rejected", "certain" if desc in CERTIFICATE_ALERTS else "likely", extra

    def _client_cert_cause(self, alert: AlertInfo) -> tuple[str, str, list[str]]:
        s = self.s
        cert = s.client_certificate
        if self.missing is _CLIENT:
            # What the client sent is not in the capture: the alert alone tells a certificate refused from none.
            if alert.description in CERTIFICATE_ALERTS:
                return "client_cert_rejected", "likely", [
                    f"frame {s.certificate_request.frame}: server CertificateRequest"]
            return "client_cert_missing", "possible", [f"frame {s.certificate_request.frame}: server CertificateRequest"]
        if cert is None or not getattr(cert.message, "certificates", ()):
            where = f"frame {cert.frame}: client sent an empty Certificate" if cert else "client sent no Certificate"
            return "client_cert_missing", "certain", [f"frame {s.certificate_request.frame}: server CertificateRequest",
                                                      where]
        count = len(cert.message.certificates)
        return "client_cert_rejected", "certain", [f"frame {cert.frame}: client Certificate ({count} cert(s))"]

    def _negotiation_cause(self, alert: AlertInfo, step: str) -> tuple[str, str, list[str]]:
        """A handshake_failure / insufficient_security: which part of the negotiation found nothing in common.
        The server does not say; the ClientHello's shape does: a narrow group list, a narrow suite list, or a broad
        modern offer that a server can only refuse when it has nothing but weak or exotic suites."""
        s = self.s
        ch = s.last_client_hello
        if step == "server_hello" and alert.sender is _SERVER and ch is not None:
            suites = [c for c in ch.cipher_suites if not registry.is_grease(c) and c not in _SIGNALLING_SUITES]
            infos = [i for i in (registry.cipher_suite_info(c) for c in suites) if i is not None]
            groups = [g for g in ch.supported_groups if not registry.is_grease(g)]
            needs_group = ch.highest_version >= 0x0304 or (infos and all(i.kx in ("ECDHE", "TLS13") for i in infos))
            facts = [f"client offered {len(suites)} cipher suite(s)"]
            if needs_group and 0 < len(groups) <= 2:
                facts.append("client offered only the group(s) " + ", ".join(registry.group_name(g) for g in groups)
                             + ", and every suite it offered needs one")
                return "no_common_group", "likely", facts
            if infos and all(i.weak for i in infos):
                facts.append("every suite the client offered is weak (" + ", ".join(i.name for i in infos[:3])
                             + ("…" if len(infos) > 3 else "") + ")")
                return "no_common_cipher", "likely", facts
            # A narrow offer for any version the client speaks explains the failure by itself; a full offer for
            # every version it speaks can only be refused by a server whose suites are all weak or exotic.
            tls13_suites = [c for c in suites if 0x1300 <= c <= 0x13FF]
            legacy_suites = [c for c in suites if not 0x1300 <= c <= 0x13FF]
            narrow = ((ch.highest_version >= 0x0304 and len(tls13_suites) < 3)
                      or (legacy_suites and len(legacy_suites) <= 4))
            common = [c for c in suites if c in _WIDELY_SUPPORTED_SUITES]
            if not narrow and len(common) >= 3 and not ch.sni and not s.starttls:
                # A broad modern offer without a server name: what such a server refuses is the missing name (CDNs
                # and servers of several sites need it to pick a certificate), not the suites.
                facts.append("the client sent no server name (SNI), as clients do when given an address instead "
                             "of a host name")
                return "sni_unrecognized", "likely", facts
            if not narrow and len(common) >= 3:
                facts.append(f"the server shares none of the {len(common)} widely supported suites the client "
                             "offered: it accepts only weak or unusual suites")
                return "weak_cipher_only", "possible", facts
            facts.append("client offered: " + ", ".join(registry.cipher_suite_name(c) for c in suites[:4])
                         + ("…" if len(suites) > 4 else ""))
            return "no_common_cipher", "likely", facts
        if alert.sender is _CLIENT and s.server_hello_msg is not None:
            info = registry.cipher_suite_info(s.server_hello_msg.cipher_suite)
            if info is not None and info.weak:
                return "weak_cipher_only", "likely", [f"server chose weak suite {info.name}"]
            if "cert_weak" in self.certs.findings:
                return "cert_weak", "likely", list(self.certs.facts)
        return "handshake_failure", "certain", []

    def encrypted_alert_tls12(self) -> Verdict | None:
        s = self.s
        alert = self.first_fatal_alert
        if alert is None or not alert.encrypted or not (s.client_hellos or s.server_hello):
            return None
        v = self.v
        v.alert, v.alert_sender = "encrypted", _side(alert.sender)
        step = self.step_at(alert.ts, alert.sender)
        if alert.sender is _SERVER and step == "finished" and s.certificate_request is not None:
            step = "client_certificate"
        ev_alert = f"frame {alert.frame}: {_side(alert.sender)} sent an encrypted alert ({alert.length} bytes)"
        # After both Finished an encrypted alert is the close_notify of a finished handshake, not a failure.
        if self._tls12_finished(_CLIENT, before=alert.ts) and self._tls12_finished(_SERVER,
                                                                                        before=alert.ts):
            return None
        # Only the sender's direction is in the capture: after its own Finished, its alert tells nothing of a
        # handshake whose other half cannot be seen (mostly it is the close_notify of a finished one).
        if self.missing is alert.sender.peer and self._tls12_finished(alert.sender, before=alert.ts):
            return None
        cause = {"client_certificate": "client_cert_rejected", "finished": "decrypt_error"}.get(step, "alert_other")
        return self.fail(step, cause, "likely", self._ch_frame(), ev_alert, end_ts=alert.ts)

    def _tls12_finished(self, sender: Sender, before: float | None = None) -> bool:
        """TLS <= 1.2: the side sent ChangeCipherSpec and then an encrypted handshake record (its Finished)."""
        s = self.s
        ccs = s.ccs.get(sender)
        if ccs is None or (before is not None and ccs.ts > before):
            return False
        if sender in s.finished:
            return True
        since = ccs.ts
        for r in self.enc(sender):  # (a loop: any() over a generator costs ~1,500 instructions more)
            if r.content_type == 22 and r.ts >= since and (before is None or r.ts <= before):
                return True
        return False

    def tls13_record_shapes(self) -> Verdict | None:
        s = self.s
        if not self.tls13 or s.server_hello is None:
            return None
        server_enc = self.enc(_SERVER)
        if not server_enc:
            return None
        client_after = self._client_after_server_flight()
        if client_after:
            first = client_after[0]
            if first.length <= MAX_ENCRYPTED_ALERT_LENGTH and self._closed_after(_CLIENT, first.ts):
                v = self.v
                v.alert, v.alert_sender = "encrypted", "client"
                facts = [self._ch_frame(), self._server_hello_evidence(),
                         f"frame {server_enc[0].frame}: server encrypted flight",
                         (f"frame {first.frame}: client answered with one encrypted record of {first.length} bytes "
                          "(alert-sized) and closed")]
                ech = self._ech_offered_fact()
                if ech is not None:
                    verdict = self.fail("server_certificate", "cert_rejected", "possible", *facts, ech,
                                        end_ts=first.ts)
                    verdict.hint = f"{verdict.hint} {ECH_OR_CERT_HINT}"
                    return verdict
                return self.fail("server_certificate", "cert_rejected", "likely", *facts, end_ts=first.ts)
            # The client's flight went out; did the server answer it with nothing but an alert and a close (no
            # session tickets, no data)?
            server_later = [r for r in server_enc if r.ts > first.ts]
            # (one or two records, both alert-sized: tested without all() over a generator, the count first)
            if server_later and len(server_later) <= 2 and \
                    server_later[0].length <= MAX_ENCRYPTED_ALERT_LENGTH and \
                    server_later[-1].length <= MAX_ENCRYPTED_ALERT_LENGTH and \
                    self._closed_after(_SERVER, server_later[0].ts) and \
                    not self._closed_before(_CLIENT, server_later[0].ts):
                # The client's flight is the records of its first segment after the server's flight.
                flight = sum(r.length for r in client_after if r.frame == first.frame)
                v = self.v
                v.alert, v.alert_sender = "encrypted", "server"
                facts = [self._ch_frame(), self._server_hello_evidence(),
                         f"frame {first.frame}: client encrypted flight ({flight} bytes)",
                         (f"frame {server_later[0].frame}: server answered with one encrypted record of "
                          f"{server_later[0].length} bytes (alert-sized) and closed")]
                if flight in TLS13_FINISHED_RECORD_LENGTHS:
                    # A flight that is exactly one Finished holds no Certificate: the server asked for none (a
                    # client must answer a CertificateRequest, if only with an empty Certificate), so what it
                    # refused is the Finished itself.
                    facts.append("the client's flight is a lone Finished: no client certificate was requested")
                    return self.fail("finished", "decrypt_error", "likely", *facts, end_ts=server_later[0].ts)
                cause = "client_cert_rejected" if flight > TLS13_CLIENT_FLIGHT_WITH_CERT else "client_cert_missing"
                return self.fail("client_certificate", cause, "likely", *facts, end_ts=server_later[0].ts)
        return None

    def _closed_before(self, sender: Sender, ts: float) -> bool:
        """The side had closed (FIN or RST) before `ts`: what its peer sends then is a reply to the close."""
        side = self.tcp.client if sender is _CLIENT else self.tcp.server
        return any(t is not None and t < ts for t in (side.fin_ts, side.rst_ts))

    def _closed_after(self, sender: Sender, ts: float) -> bool:
        side = self.tcp.client if sender is _CLIENT else self.tcp.server
        for t in (side.fin_ts, side.rst_ts):
            if t is not None and t >= ts:
                return True
        return False

    def established(self) -> Verdict | None:
        s = self.s
        if s.server_hello is None:
            return self._established_from_client() if self.missing is _SERVER else None
        done = False
        end_ts = None
        if self.tls13:
            client_enc = self._client_after_server_flight()
            if client_enc:
                done, end_ts = True, client_enc[0].ts
            elif _CLIENT in s.finished:
                done, end_ts = True, s.finished[_CLIENT].ts
            elif self.missing is _CLIENT:
                return self._established_one_way_tls13()
        else:
            if self._tls12_finished(_CLIENT) and self._tls12_finished(_SERVER):
                done = True
                end_ts = max(s.ccs[_CLIENT].ts, s.ccs[_SERVER].ts)
                later = [r.ts for r in s.encrypted_records if r.content_type == 22 and r.ts >= end_ts]
                end_ts = min(later) if later else end_ts
            elif self.missing is _CLIENT and self._tls12_finished(_SERVER):
                return self._established_one_way()
        if not done:
            return None
        if "cert_hostname_mismatch" in self.certs.findings:  # (the first thing _client_hung_up asks)
            hung_up = self._client_hung_up(end_ts)
            if hung_up is not None:
                return hung_up
        v = self.v
        v.outcome = "established"
        v.confidence = "certain"
        v.end_ts = end_ts
        for alert in s.alerts:
            if not alert.encrypted and alert.description == CLOSE_NOTIFY:
                v.evidence.append(f"frame {alert.frame}: {_side(alert.sender)} close_notify")
                break
        return v

    def _established_one_way(self) -> Verdict | None:
        """TLS <= 1.2 seen from the server's direction only: its Finished shows the handshake done when the
        client's came first, as in a full handshake (the server sends its own only once the client's checks out),
        or, in an abbreviated one, when the server then sent application data (which waits for the client's
        Finished)."""
        s = self.s
        ccs_ts = s.ccs[_SERVER].ts
        finished = s.finished.get(_SERVER)
        if finished is None:
            finished = next(r for r in self.enc(_SERVER) if r.content_type == 22 and r.ts >= ccs_ts)
        data = next((r for r in self.enc(_SERVER) if r.content_type == 23 and r.ts > ccs_ts), None)
        if s.server_certificate is not None or s.server_hello_done is not None:
            fact = (f"frame {finished.frame}: server Finished, which a server sends only once the client's "
                    "Finished has come in a full handshake")
        elif data is not None:
            fact = (f"frame {data.frame}: server application data after its Finished (frame {finished.frame}), "
                    "which waits for the client's Finished")
        else:
            return None
        v = self.v
        v.outcome = "established"
        v.confidence = "likely"
        v.end_ts = finished.ts
        v.evidence.extend([self._server_hello_evidence(), fact])
        return v

    def _established_from_client(self) -> Verdict | None:
        """Seen from the client's direction only (no ServerHello: TLS 1.2 and 1.3 alike): after its Finished (the
        record after its ChangeCipherSpec) the client acknowledged more of the server's bytes than session tickets,
        a Finished and an alert come to: a response, which a server sends only once the client's Finished checks
        out (one that refuses it sends an alert and closes)."""
        s = self.s
        ccs = s.ccs.get(_CLIENT)
        acks = self.tcp.client.unseen_peer_acks
        if ccs is None or not acks or not s.client_hellos:  # (a handshake begun in the capture, as two ways)
            return None
        finished = next((r for r in self.enc(_CLIENT) if r.ts >= ccs.ts), None)
        if finished is None:
            return None
        pairs = _ack_pairs(acks)
        # (Only the first increases are kept, then the latest: what the client had acknowledged at its Finished is
        # known when one kept before the latest comes after it; and the server's Finished or tickets come first.)
        if not any(ts > finished.ts for ts, _ in pairs[:-1]):
            return None
        at_finished = _acked_by(pairs, finished.ts)
        response = pairs[-1][1] - at_finished
        if pairs[-1][0] <= finished.ts or response <= CLIENT_SIDE_RESPONSE_BYTES:
            return None
        v = self.v
        v.outcome = "established"
        v.confidence = "likely"
        v.end_ts = finished.ts
        v.evidence.extend([self._ch_frame(), f"frame {finished.frame}: client Finished (after its ChangeCipherSpec)",
                           (f"the client then acknowledged {response} bytes of the server's: a response, which "
                            "follows the server's acceptance of the client's Finished")])
        return v

    def _established_one_way_tls13(self) -> Verdict | None:
        """TLS 1.3 seen from the server's direction only. After its encrypted flight the server acknowledges the
        client's second flight (Finished, or a refusal); when it then acknowledges more of the client's than an
        alert and a FIN (application data, which a client sends only past its Finished) and answers with a record
        larger than an alert, the handshake was done. (A session ticket alone shows that the client's Finished
        came, not that the client accepted what it saw: curl checks the host name after the handshake and closes.)
        """
        server_enc = self.enc(_SERVER)
        acks = self.tcp.server.unseen_peer_acks
        if not server_enc or not acks:
            return None
        flight_ts = server_enc[0].ts
        pairs = _ack_pairs(acks)
        at_flight = _acked_by(pairs, flight_ts)
        after = [(ts, acked) for ts, acked in pairs if ts > flight_ts and acked > at_flight]
        for (_, before), (data_ts, acked) in itertools.pairwise(after):
            if acked - before > MAX_ENCRYPTED_ALERT_LENGTH + 5 + 1:  # (a whole alert record and a FIN)
                answer = next((r for r in server_enc if r.ts >= data_ts and r.length > MAX_ENCRYPTED_ALERT_LENGTH),
                              None)
                if answer is not None:
                    break
        else:
            return None
        v = self.v
        v.outcome = "established"
        v.confidence = "likely"
        v.end_ts = after[0][0]
        v.evidence.extend([self._server_hello_evidence(), f"frame {server_enc[0].frame}: server encrypted flight",
                           (f"the server then acknowledged the client's second flight and {acked - before} bytes "
                            f"more (application data) and answered with a {answer.length}-byte record (frame "
                            f"{answer.frame})")])
        return v

    def _client_hung_up(self, end_ts: float | None) -> Verdict | None:
        """Clients that check the certificate after the handshake (curl's host-name check, for one) finish the
        handshake, then close at once without sending a byte of data. When the certificate has a problem that
        explains it, the handshake failed at the certificate even though both Finished went out."""
        s, c = self.s, self.tcp.client
        # Only the host name is checked this way by clients (curl, libraries with a separate verify step); other
        # findings may just reflect our trust store, and a client that trusted the chain closes the same way.
        if end_ts is None or "cert_hostname_mismatch" not in self.certs.findings:
            return None
        closed = [t for t in (c.fin_ts, c.rst_ts) if t is not None and end_ts <= t <= end_ts + HANG_UP_SECONDS]
        if not closed:
            return None
        data = [r for r in self.enc(_CLIENT)
                if r.ts > end_ts and r.content_type == 23 and r.length > MAX_ENCRYPTED_ALERT_LENGTH]
        if data or s.app_data_records[_CLIENT] > len(
                [r for r in self.enc(_CLIENT) if r.ts > end_ts and r.content_type == 23]):
            return None
        frame = c.fin_frame if c.fin_ts in closed else c.rst_frame
        return self.fail("server_certificate", "cert_hostname_mismatch", "likely", self._ch_frame(),
                         *self.certs.facts,
                         f"frame {frame}: the client closed right after the handshake without sending any data "
                         "(it rejected the certificate's name after the handshake)", end_ts=min(closed))

    def tcp_ending(self) -> Verdict | None:
        """No alert and no finished handshake: how did the connection end?"""
        s, tcp = self.s, self.tcp
        c, srv = tcp.client, tcp.server
        if not s.client_hellos:
            cut_hello = s.cut_client_hello
            if cut_hello is not None and _SERVER not in s.first_record:
                return self._client_hello_cut_off(cut_hello)
            if srv.rst_frame is not None and c.payload_bytes == 0 and srv.payload_bytes == 0 and \
                    srv.synack_frame is not None:
                return self.fail("client_hello", "reset_during_handshake", "likely",
                                 f"frame {srv.rst_frame}: server RST before any TLS byte", end_ts=srv.rst_ts)
            return None
        ch_at = s.client_hellos[0]
        server_tls = _SERVER in s.first_record
        step = self.step_at(max(srv.rst_ts or 0, srv.fin_ts or 0, c.fin_ts or 0, c.rst_ts or 0, ch_at.ts),
                            _SERVER)
        # Loss first: it explains resets and silences that follow it (unless the server's direction is not in the
        # capture: then whether the retransmitted segments got through is not known).
        loss = self._loss_verdict(step) if self.missing is None else None
        if loss is not None:
            return loss
        if srv.rst_frame is not None and (c.rst_frame is None or srv.rst_ts <= c.rst_ts):
            step = self.step_at(srv.rst_ts, _SERVER)
            server_tls = _SERVER in s.first_record and s.first_record[_SERVER].ts <= srv.rst_ts
            if not server_tls:
                injected = self._rst_injected()
                if injected:
                    return self.fail("server_hello", "reset_injected", "likely", self._ch_frame(), *injected,
                                     end_ts=srv.rst_ts)
                return self.fail("server_hello", "reset_after_client_hello", "certain", self._ch_frame(),
                                 f"frame {srv.rst_frame}: server RST "
                                 f"{(srv.rst_ts - ch_at.ts) * 1000:.1f} ms after the ClientHello",
                                 end_ts=srv.rst_ts)
            injected = self._rst_injected()
            if injected:
                return self.fail(step, "reset_injected", "likely", self._ch_frame(), *injected, end_ts=srv.rst_ts)
            return self.fail(step, "reset_during_handshake", "likely", self._ch_frame(),
                             f"frame {srv.rst_frame}: server RST during the handshake", end_ts=srv.rst_ts)
        # A server FIN that only answers the close of a client that gave up waiting first is silence (a client that
        # half-closes right after its ClientHello has not waited for anything: the server's FIN is its own).
        answered_close = (c.fin_ts is not None and srv.fin_ts is not None and c.fin_ts < srv.fin_ts
                          and c.fin_ts - ch_at.ts >= HANG_UP_SECONDS)
        if srv.fin_frame is not None and not server_tls and not answered_close:
            return self.fail("server_hello", "closed_without_alert", "certain", self._ch_frame(),
                             f"frame {srv.fin_frame}: server closed (FIN) without a TLS answer", end_ts=srv.fin_ts)
        if not server_tls and srv.payload_bytes == 0:
            if srv.packets == 0 or (srv.last_ts is not None and srv.last_ts < ch_at.ts and srv.acked_bytes == 0):
                # The capture holds nothing of the server after the ClientHello (one-way capture, or a capture
                # cut right there): silence cannot be told from not seeing it. (`decide` says why when the
                # client's packets show the server answered.)
                self.v.evidence.append(self._ch_frame())
                if self.missing is None:
                    self.v.evidence.append("no packet from the server after it in the capture")
                return None
            client_gave_up = c.fin_frame is not None or c.rst_frame is not None
            waited = ((c.fin_ts or c.rst_ts) if client_gave_up else (self.capture_end or ch_at.ts)) - ch_at.ts
            acked = srv.acked_bytes > 0
            if client_gave_up or waited >= SILENT_AFTER_SECONDS:
                facts = [self._ch_frame(),
                         ("server acknowledged it" if acked else "server did not even acknowledge it"),
                         f"no answer for {waited:.1f} s"]
                if client_gave_up:
                    end_frame = c.fin_frame if c.fin_frame is not None else c.rst_frame
                    facts.append(f"frame {end_frame}: client gave up and closed")
                return self.fail("server_hello", "server_silent", "likely", *facts,
                                 end_ts=c.fin_ts or c.rst_ts or self.capture_end)
            return None
        if srv.fin_frame is not None:
            return self.fail(step, "closed_without_alert", "likely", self._ch_frame(),
                             f"frame {srv.fin_frame}: server closed (FIN) in the middle of the handshake",
                             end_ts=srv.fin_ts)
        if c.rst_frame is not None or c.fin_frame is not None:
            frame = c.rst_frame if c.rst_frame is not None else c.fin_frame
            kind = "RST" if c.rst_frame is not None else "FIN"
            cause = "reset_during_handshake" if kind == "RST" else "closed_without_alert"
            return self.fail(step, cause, "likely", self._ch_frame(),
                             f"frame {frame}: client closed ({kind}) without an alert",
                             end_ts=c.rst_ts if kind == "RST" else c.fin_ts)
        return None

    def _client_hello_cut_off(self, cut: TruncatedRecordSeen) -> Verdict | None:
        """The server reset or closed while the client was still sending its ClientHello (its stream ends inside
        that record): the step it broke is the ClientHello itself."""
        c, srv = self.tcp.client, self.tcp.server
        began = c.first_payload_ts if c.first_payload_ts is not None else cut.ts
        partial = self._cut_hello_fact(cut, "the rest never came")
        if srv.rst_frame is not None and (c.rst_frame is None or srv.rst_ts <= c.rst_ts):
            injected = self._rst_injected()
            if injected:
                return self.fail("client_hello", "reset_injected", "likely", partial, *injected, end_ts=srv.rst_ts)
            return self.fail("client_hello", "reset_after_client_hello", "certain", partial,
                             f"frame {srv.rst_frame}: server RST {(srv.rst_ts - began) * 1000:.1f} ms after the "
                             "ClientHello's first bytes", end_ts=srv.rst_ts)
        if srv.fin_frame is not None:
            return self.fail("client_hello", "closed_without_alert", "certain", partial,
                             f"frame {srv.fin_frame}: server closed (FIN) before the whole ClientHello came",
                             end_ts=srv.fin_ts)
        return None

    def _cut_hello_fact(self, cut: TruncatedRecordSeen, then: str) -> str:
        first = self.tcp.client.first_payload_frame
        where = f"frame {cut.frame}" if first is None or first == cut.frame else f"frames {first}-{cut.frame}"
        return f"{where}: the first {cut.received + 5:,} of the {cut.length + 5:,} bytes of a ClientHello record; {then}"

    def _hello_cut_up(self, v: Verdict) -> None:
        """A server (or a middlebox before it) that gave up right after a ClientHello too long for one packet, or
        one that came in several TLS records: say so, and what to try. Servers that read the ClientHello from the
        first packet only fail on long hellos, which post-quantum key shares (X25519MLKEM768: ~1.2 kB) now make
        common (https://tldr.fail); those that read it from the first record fail on hellos split into records, as
        tools that get past SNI filters send them. A server's alert comes after it read what it could: only the
        record split is then said."""
        s, c = self.s, self.tcp.client
        if s.starttls or s.joined or c.first_payload_frame is None:
            return
        hints = []
        if s.client_hellos:
            at = s.client_hellos[0]
            first_record = s.first_record.get(_CLIENT)
            if first_record is None or at.message.sslv2:
                return
            size = at.message.message_length
            in_records = first_record.length < size
            if at.frame > c.first_payload_frame and v.cause in _GAVE_UP_AT_HELLO:
                large = [f"{registry.group_name(e.group)} ({e.key_exchange_length:,} bytes)"
                         for e in at.message.key_shares if e.key_exchange_length >= LARGE_KEY_SHARE]
                with_shares = f", with key share {', '.join(large)}" if large else ""
                length = f"{size:,}-byte message" if in_records else f"{first_record.length + 5:,} bytes"
                v.evidence.append(f"frames {c.first_payload_frame}-{at.frame}: the ClientHello "
                                  f"({length}{with_shares}) came in more than one TCP segment")
                hints.append(SPLIT_HELLO_HINT)
            if in_records:
                v.evidence.append(f"frame {first_record.frame}: the ClientHello ({size:,}-byte message) came in more "
                                  f"than one TLS record, the first one carrying {first_record.length:,} bytes of it")
                hints.append(RECORD_SPLIT_HINT)
        elif s.cut_client_hello is not None and v.cause in _GAVE_UP_AT_HELLO:
            hints.append(SPLIT_HELLO_HINT)  # (cut short: its evidence says how much came)
        if hints:
            v.hint = " ".join(([v.hint] if v.hint else []) + hints)

    def _rst_injected(self) -> list[str]:
        """Evidence that the server-side RST was forged: its TTL differs from every TTL of the server's own packets
        (they left the same host, so they share an initial TTL and path)."""
        srv = self.tcp.server
        if srv.rst_ttl is None or not srv.ttls:
            return []
        if srv.rst_ttl in srv.ttls:
            return []
        seen = ", ".join(str(t) for t in sorted(srv.ttls))
        return [f"frame {srv.rst_frame}: RST with IP TTL {srv.rst_ttl}, while the server's own packets have TTL {seen}"]

    def _loss_verdict(self, step: str) -> Verdict | None:
        c, srv = self.tcp.client, self.tcp.server
        s = self.s
        ended = any(x is not None for x in (c.fin_frame, c.rst_frame, srv.fin_frame, srv.rst_frame))
        # The ClientHello itself never got through: sent again and again, never acknowledged.
        if c.retransmitted_bytes and c.retransmissions >= 2 and srv.acked_bytes == 0 and s.client_hellos:
            frames = ", ".join(str(f) for f in c.retransmitted_frames[:5])
            return self.fail("client_hello", "packet_loss", "likely", self._ch_frame(),
                             f"client sent its data {1 + c.retransmissions} times (again at frames {frames}), "
                             "the server never acknowledged it", end_ts=c.last_ts)
        for side_name, side, peer in (("server", srv, c), ("client", c, srv)):
            if side.retransmitted_bytes == 0:  # SYN retransmissions alone say nothing of the TLS handshake
                continue
            if not ended and side.retransmissions < 2 and (
                    self.capture_end is None or side.last_ts is None
                    or self.capture_end - side.last_ts < SILENT_AFTER_SECONDS):
                continue  # the capture stops while the sender may still be retrying
            frames = ", ".join(str(f) for f in side.retransmitted_frames[:5])
            if not side.largest_segment_acked and side.largest_segment >= 1200 and side.retransmissions >= 2:
                lost_step = self._step_of_segment(side_name, side.largest_segment_frame) or step
                return self.fail(lost_step, "mtu_blackhole", "likely", self._ch_frame(),
                                 f"{side_name} segment of {side.largest_segment} bytes (frame "
                                 f"{side.largest_segment_frame}) retransmitted and never acknowledged",
                                 f"smaller packets got through ({peer.packets} from the "
                                 f"{'client' if side is srv else 'server'})",
                                 f"retransmissions at frames {frames}", end_ts=side.last_ts)
            if side.retransmissions >= 2 or side.gaps:
                return self.fail(step, "packet_loss", "likely", self._ch_frame(),
                                 f"{side.retransmissions} {side_name} retransmission(s) at frames {frames}",
                                 end_ts=side.last_ts)
        return None

    def _step_of_segment(self, side_name: str, frame: int | None) -> str | None:
        """The step of the first message the lost segment carried (its frame completes or starts that message)."""
        if frame is None or side_name != "server":
            return None
        s = self.s
        for at, step in ((s.server_hello, "server_hello"), (s.server_certificate, "server_certificate"),
                         (s.server_key_exchange, "server_key_exchange"),
                         (s.certificate_request, "certificate_request"), (s.server_hello_done, "server_hello_done")):
            if at is not None and at.frame >= frame:
                return step
        enc = self.enc(_SERVER)
        if enc and enc[0].frame >= frame:
            return "server_certificate"
        return None

    def _handshake_retransmitted(self, side: SideFacts, sender: Sender, v: Verdict) -> bool:
        """The side retransmitted some of its handshake (the contract's packet_loss warning): of an established
        connection, bytes before the side's first application data record; of any other, whatever it resent."""
        if not side.retransmissions:
            return False
        lowest = side.lowest_retransmitted_offset
        if v.outcome != "established" or lowest is None:
            return True
        for r in self.enc(sender):
            if r.content_type == APPLICATION_DATA and not r.handshake_phase:
                return lowest < r.offset
        return True  # (no application data record kept: its handshake may be all it sent)

    # -- warnings on every flow ------------------------------------------------------------------------------------
    def add_warnings(self, v: Verdict) -> None:
        s, tcp, certs = self.s, self.tcp, self.certs
        w = v.warnings
        hellos = s.client_hellos
        if hellos:
            ch = hellos[0].message
            if not ch.sni and not ch.sslv2:  # type: ignore[attr-defined]
                w.append("sni_missing")
        if s.server_hello is not None:
            sh = s.server_hello.message
            w.extend(_negotiated_warnings(s.version, sh.cipher_suite))  # type: ignore[arg-type,attr-defined]
        if certs.warnings:
            # (Accepted: not by a client that refused, nor by one whose direction the capture lacks unless the
            # server's side shows the handshake done.)
            unseen = v.outcome == "failed" or (self.missing is _CLIENT and v.outcome != "established")
            w.extend(x for x in certs.warnings if not (unseen and x.endswith("_accepted")))
        if certs.interception:
            w.append("tls_interception_suspected")
        # (A SYN sent again and again is what tcp_no_answer says: the same fact, not a warning besides.)
        if (tcp.client.retransmissions or tcp.server.retransmissions) and v.cause not in (
                "packet_loss", "mtu_blackhole", "tcp_no_answer") and (
                self._handshake_retransmitted(tcp.client, _CLIENT, v) or
                self._handshake_retransmitted(tcp.server, _SERVER, v)):
            w.append("packet_loss")
        if s.resyncs or s.gaps:
            # The bytes of a direction the capture lacks are all missing: not a gap of that stream.
            missing = self.missing
            if missing is None or any(e.sender is not missing for e in s.resyncs) or \
                    any(e.sender is not missing for e in s.gaps):
                w.append("resync_after_gap")
        server_first = s.first_handshake_ts.get(_SERVER) if hellos else None
        if server_first is not None and server_first - hellos[0].ts > 1.0:
            w.append("slow_server_hello")
        if len(w) > 1:
            seen: set[str] = set()
            v.warnings[:] = [x for x in w if not (x in seen or seen.add(x))]


def _ack_pairs(acks: Sequence[float]) -> list[tuple[float, int]]:
    """`SideFacts.unseen_peer_acks` as (time, bytes acknowledged) pairs."""
    return list(zip(acks[0::2], map(int, acks[1::2])))


def _acked_by(pairs: list[tuple[float, int]], ts: float) -> int:
    """Bytes acknowledged at time `ts` (the pairs increase)."""
    return max((acked for at, acked in pairs if at <= ts), default=0)


def _unseen_acked(side: SideFacts) -> int:
    """Bytes of its peer's that a side acknowledged though the capture holds no packet of the peer."""
    acks = side.unseen_peer_acks
    return int(acks[-1]) if acks else 0


# Server bytes a client acknowledges after its Finished, above which they are a response (session tickets, the
# server's Finished and an alert come to less).
CLIENT_SIDE_RESPONSE_BYTES = 3072

# New segments from one side, none from the other, in a connection joined after its start: more than a sender
# sends before it must hear an acknowledgement.
ONE_WAY_SEGMENTS = 8
ONE_WAY_HINT = ("Only one direction of this connection is in the capture: capture where both directions pass (on "
                "either host, or a SPAN port or TAP that copies both ways) to judge its handshake.")

# The rules in the order `_Decider.decide` tries them: the first one that returns a verdict wins.
_RULES = (_Decider.tcp_connect, _Decider.not_tls, _Decider.client_half_closed, _Decider.readable_alert,
          _Decider.encrypted_alert_tls12,
          _Decider.tls13_record_shapes, _Decider.established, _Decider.tcp_ending)

_NEGOTIATED_WARNINGS: dict[tuple[int, int], tuple[str, ...]] = {}


def _negotiated_warnings(version: int, suite: int) -> tuple[str, ...]:
    """Warnings about the negotiated version and suite, remembered per pair (16-bit codes, static registry)."""
    found = _NEGOTIATED_WARNINGS.get((version, suite))
    if found is None:
        out = []
        if version < 0x0303 and not (0x7F00 <= version <= 0x7FFF):
            out.append("old_version")
        info = registry.cipher_suite_info(suite)
        if info is not None:
            if info.weak:
                out.append("weak_cipher")
            if not info.forward_secrecy and info.kx != "TLS13":
                out.append("no_forward_secrecy")
        if len(_NEGOTIATED_WARNINGS) >= 4096:
            _NEGOTIATED_WARNINGS.clear()
        found = _NEGOTIATED_WARNINGS[(version, suite)] = tuple(out)
    return found


def decide(summary: HandshakeSummary, tcp: TcpFacts, certs: CertView | None = None,
           capture_end: float | None = None) -> Verdict:
    """The verdict for one connection."""
    return _Decider(summary, tcp, certs or CertView(), capture_end).decide()
