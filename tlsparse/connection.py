"""`TlsConnection`: the sans-I/O TLS parser for one TCP connection.

Bytes go in per direction (`receive`, `receive_gap`), events come out (`tlsparse.events`), in wire order. Nothing
here reads files, sockets or clocks; nothing raises on bad input: malformed bytes become `ParseAnomaly` events
and the parse goes on (resynchronising on the next plausible record header when the framing itself is lost).

Encryption rules (what is readable without keys):
- TLS <= 1.2: a direction is encrypted after it sent ChangeCipherSpec. An encrypted alert record (outer type 21)
  is `AlertSeen(encrypted=True)`; other encrypted records are `EncryptedRecordSeen`. `handshake_phase` is True up
  to and including that side's first encrypted handshake record (its Finished), False afterwards.
- TLS 1.3 (a ServerHello, not a HelloRetryRequest, selecting 0x0304 or a draft): every record of outer type 23
  is encrypted, from both sides; the client's plaintext ChangeCipherSpec (middlebox compatibility) and a plaintext
  alert (outer type 21, length 2, as OpenSSL clients send when rejecting the certificate) stay readable.
  `handshake_phase`: the client's first encrypted record (its Finished, or its Certificate with client auth) is
  True, later ones False; the server's records are True until the client's first encrypted record has been seen
  (the server's whole first flight precedes it), False afterwards. With client authentication split over several
  client records, only the first is marked: the others cannot be told apart from application data.
- 0-RTT: after a ClientHello offering TLS 1.3 and early_data, the client's type-23 records before the ServerHello
  are encrypted early data (`handshake_phase=True`).
- A ChangeCipherSpec changes nothing in TLS 1.3 or before the ServerHello of a client that offered TLS 1.3
  (middlebox-compatibility CCS, also after a HelloRetryRequest).

Offsets: every event's `offset` is the stream offset of the record it came from; a handshake message spread over
several records carries the offset of the record where it began. A `ParseAnomaly` from a decoder carries the
absolute offset of the bad field (exact when the message sits in one record; counted as if the message were
contiguous when it spans records).
SSLv2: a stream that starts with an SSLv2 CLIENT-HELLO gives RecordSeen(version=0x0002) + HandshakeSeen with a
`ClientHello(sslv2=True)`; its later SSLv2 records (2- or 3-byte headers) give `Sslv2RecordSeen`; TLS records
that follow on the same stream (the usual upgrade) parse as TLS.

Decryption (`TlsConnection(keylog=KeyLog)`): when the key log holds secrets for the ClientHello's random, each
direction gets a `RecordDecryptor` (TLS 1.3: at the ServerHello; TLS <= 1.2: at that side's ChangeCipherSpec).
Encrypted records still produce the events above; what they decrypt to then goes through the same handshake and
alert decoding as plaintext, giving `HandshakeSeen(decrypted=True)` and `AlertSeen(decrypted=True)` (a decrypted
TLS <= 1.2 alert record gives that readable AlertSeen instead of the opaque one). TLS <= 1.2 application data is
counted, not decrypted. The first record that does not decrypt gives one `decryption_failed` anomaly and
the connection goes back to the keyless behaviour; a suite the decryptor cannot handle gives
`decryption_unsupported`. Offsets of anomalies inside decrypted handshake messages are plaintext positions.
"""
from __future__ import annotations

import enum
import re
from typing import TYPE_CHECKING

from tlsparse import messages as m
from tlsparse.cache import ParseCache
from tlsparse.errors import DecryptError, TlsParseError
from tlsparse.events import (
    AlertSeen,
    ApplicationDataSeen,
    ChangeCipherSpecSeen,
    EncryptedRecordSeen,
    Event,
    GapSeen,
    HandshakeSeen,
    HeartbeatSeen,
    MidstreamJoinSeen,
    NotTlsSeen,
    ParseAnomaly,
    RecordSeen,
    ResyncSeen,
    Sender,
    Sslv2RecordSeen,
    TlsStartSeen,
    TruncatedRecordSeen,
    UnknownRecordSeen,
    UpgradeAskedSeen,
    UpgradeReplySeen,
)
from tlsparse.fastinit import positional_factory
from tlsparse.handshake import DecodeContext, client_hello_prefix, decode_message, is_tls13
from tlsparse.keylog import KeyLog, SessionSecrets
from tlsparse.records import (
    HEADER_LEN,
    MAX_PLAINTEXT_PLUS,
    RECORD_HEADER,
    SSLV2_CLIENT_HELLO,
    SSLV2_CLIENT_MASTER_KEY,
    SSLV2_SERVER_HELLO,
    SSLV2_VERSION,
    decode_sslv2_client_hello,
    plausible_header,
    sslv2_header,
    sslv2_prefix_possible,
    tls_prefix_possible,
)

if TYPE_CHECKING:
    # (imported where a key log is used: tlsparse.decrypt loads cryptography, which a parse without keys never needs)
    from tlsparse.decrypt import RecordDecryptor

# Candidate record headers for resynchronisation: content type 20-24, version 3.0-3.4. Scanning with a regex
# keeps the search in C.
_HEADER_CANDIDATE = re.compile(rb"[\x14-\x18]\x03[\x00-\x04]")
_unpack_header = RECORD_HEADER.unpack_from
_EXT_ENCRYPT_THEN_MAC = 0x0016  # RFC 7366


# How much plaintext may precede TLS on one direction (STARTTLS banners, EHLO/CAPABILITY exchanges, MySQL's
# greeting): beyond it the stream is taken as not TLS for good and no longer scanned.
MAX_PRELUDE = 64 * 1024
# A client's request to start TLS in a plaintext prelude: SMTP/IMAP/LMTP/NNTP/ManageSieve STARTTLS (IMAP's with its
# tag), POP3 STLS, FTP AUTH TLS/SSL, XMPP <starttls/>, LDAP's StartTLS extended operation (its OID), PostgreSQL's
# SSLRequest (8 bytes at the stream's start).
_UPGRADE_REQUEST = re.compile(
    rb"(?im)^(?:[A-Za-z0-9.]+ )?STARTTLS\r?$|^STLS\r?$|^AUTH (?:TLS|SSL)\r?$"
    rb"|<starttls xmlns=['\"]urn:ietf:params:xml:ns:xmpp-tls['\"]|1\.3\.6\.1\.4\.1\.1466\.20037"
    rb"|\A\x00\x00\x00\x08\x04\xd2\x16\x2f")
# The server's answer to it: a text protocol's reply line (SMTP/FTP/NNTP codes, POP3 +OK/-ERR, IMAP's tagged
# OK/NO/BAD, ManageSieve OK/NO), or XMPP's <proceed/>/<failure/>.
_UPGRADE_REPLY = re.compile(
    rb"(?m)^(?:[2-5]\d\d[ -][^\r\n]*|[+-](?:OK|ERR)\b[^\r\n]*|(?:[A-Za-z0-9.]+ )?(?:OK|NO|BAD)\b[^\r\n]*)"
    rb"|<(?:proceed|failure) xmlns=['\"]urn:ietf:params:xml:ns:xmpp-tls['\"][^>]*>")
_ASKED, _ANSWERED = "asked", "answered"  # TlsConnection._upgrade: where a STARTTLS exchange stands
# A direction joined mid-stream whose first this-many bytes are all text (printable ASCII, tab, CR, LF) and hold no
# record header is plain text, not TLS: encrypted records never look like that (for random bytes, (98/256)^64 is
# about 1e-27), and the plaintext parts of a handshake (certificates) have no such run of text.
MIDSTREAM_TEXT_PROBE = 64
_TEXT_BYTES = bytes(range(0x20, 0x7F)) + b"\t\r\n"


class _Mode(enum.Enum):
    START = "start"  # nothing decided yet: the first bytes tell TLS, SSLv2 or not TLS
    RECORDS = "records"  # in sync: the next byte is a record header
    RESYNC = "resync"  # after a gap or garbage: looking for a plausible record header
    PRELUDE = "prelude"  # not TLS so far: scanning a bounded plaintext prelude for a hello (STARTTLS)
    MIDSTREAM = "midstream"  # joined after the stream began: the first bytes may lie inside a record
    DEAD = "dead"  # not TLS: bytes are counted, not parsed


# Enum members and content types as module constants: an enum class attribute costs a metaclass lookup, and
# the record loop reads them for every record.
_START, _RECORDS, _RESYNC, _PRELUDE, _DEAD = _Mode.START, _Mode.RECORDS, _Mode.RESYNC, _Mode.PRELUDE, _Mode.DEAD
_MIDSTREAM = _Mode.MIDSTREAM
_CLIENT, _SERVER = Sender.CLIENT, Sender.SERVER
_CHANGE_CIPHER_SPEC, _ALERT, _HANDSHAKE, _APPLICATION_DATA, _HEARTBEAT = (
    m.CHANGE_CIPHER_SPEC, m.ALERT, m.HANDSHAKE, m.APPLICATION_DATA, m.HEARTBEAT)


# The events built for every record, positionally (see fastinit.positional_factory); arguments in field order.
_new_record_seen = positional_factory(RecordSeen)  # sender, frame, ts, offset, content_type, version, length, encrypted
_new_encrypted_record_seen = positional_factory(EncryptedRecordSeen)  # ..., content_type, length, handshake_phase
_new_change_cipher_spec_seen = positional_factory(ChangeCipherSpecSeen)  # sender, frame, ts, offset
_new_handshake_seen = positional_factory(HandshakeSeen)  # ..., msg_type, length, message, decrypted, raw


_HRR_RANDOM = m.HRR_RANDOM
_NO_BYTES = bytearray()  # never written to: only copied
_NO_CONTEXT = DecodeContext()  # immutable: shared by every connection until its version is known


class _Direction:
    """Parse state of one direction of the connection."""

    __slots__ = (
        "buf",
        "buf_offset",
        "compat_ccs",
        "decryptor",
        "early_records",
        "encrypted",
        "finished",
        "hs_buf",
        "hs_msg_abs",
        "hs_rec_off",
        "hs_skip",
        "mode",
        "report_records",
        "resync_start",
        "sender",
        "skip_left",
        "skip_record",
        "sslv2",
        "sslv2_encrypted",
    )

    def __init__(self, sender: Sender) -> None:
        self.sender = sender
        self.mode = _START
        # (copies of an empty bytearray: `bytearray()` parses its arguments, ~1,300 instructions, a copy ~800)
        self.buf = _NO_BYTES.copy()  # bytes received but not yet parsed (a partial record), at most max_buffer
        self.buf_offset = 0  # stream offset of buf[0]
        self.skip_left = 0  # bytes of the current record body still to come, skipped without buffering
        self.skip_record: tuple[int, int, int, int, bool] | None = None  # (type, version, length, offset, enc)
        self.resync_start = 0  # stream offset where the current resynchronisation began
        self.hs_buf = _NO_BYTES.copy()  # a handshake message split across records, at most max_handshake + 4
        self.hs_msg_abs = 0  # stream offset of the first byte of the message in hs_buf
        self.hs_rec_off = 0  # stream offset of the record where that message began
        self.hs_skip = 0  # bytes of an over-long handshake message still to drop
        self.encrypted = False
        # A client's ChangeCipherSpec taken for TLS 1.3's compatibility one (no ServerHello seen, TLS 1.3
        # offered): a handshake record after it that is no ClientHello shows it was TLS 1.2's (`_record`).
        self.compat_ccs = False
        self.finished = False  # this side's handshake is assumed finished (see the module docstring)
        self.sslv2 = False  # the stream began with SSLv2 framing
        self.sslv2_encrypted = False
        self.decryptor: RecordDecryptor | None = None  # with a key log: decrypts this side's encrypted records
        self.early_records = 0  # 0-RTT records seen before the ServerHello (their sequence numbers are used up)
        self.report_records = True  # the next record gets its RecordSeen (see TlsConnection's every_record)


class TlsConnection:
    """Parses both directions of one TLS connection. See the module docstring for the encryption rules.

    Caps (all attacker-controlled sizes are bounded): `max_record` is the largest record length accepted as a
    header at all (larger ones are treated as lost framing and resynchronised); `max_handshake` the largest
    handshake message reassembled (larger ones are reported and skipped); `max_buffer` the most bytes held for
    an incomplete record (default: one maximal record with its header). Records that need no decoding
    (encrypted, application data) are never buffered: their bodies are counted as they pass.

    `cache`: a `ParseCache` the caller shares between the connections of one capture, so that what recurs
    between them (extension bodies, suite kinds) is decoded once; without one every message is decoded in full.
    The events are the same either way.

    `every_record=False`: `RecordSeen` is reported for the first record of each direction only (the other
    events are unchanged: each record's content still gives its own event). Why: RecordSeen is half the events
    of a handshake, and a caller that only wants to know when each side's first record came (as the pipeline's
    summary) need not have the others built.
    """

    # Where a STARTTLS exchange stands (None, _ASKED, _ANSWERED): a class default, set on the few connections with a
    # plaintext prelude (no per-connection cost for the others).
    _upgrade: str | None = None

    def __init__(self, *, max_record: int = 2**14 + 2048, max_handshake: int = 1 << 18,
                 max_buffer: int | None = None, keylog: KeyLog | None = None,
                 cache: ParseCache | None = None, every_record: bool = True) -> None:
        self.max_record = max_record
        self.max_handshake = max_handshake
        self.max_buffer = max_buffer if max_buffer is not None else max_record + HEADER_LEN
        self._client = _Direction(_CLIENT)
        self._server = _Direction(_SERVER)
        self.version: int | None = None  # negotiated: the ServerHello's selected version (0x0002 for SSLv2)
        self.client_hello: m.ClientHello | None = None  # the last one seen
        self.server_hello: m.ServerHello | None = None  # the last one seen (a HelloRetryRequest included)
        self.hello_retry_request: m.ServerHello | None = None
        self._tls13 = False
        self._early_data = False  # the client may be sending 0-RTT data (offered, no ServerHello yet)
        # The client sent a plaintext handshake message other than a ClientHello (a TLS 1.3 client sends none):
        # its ChangeCipherSpec then encrypts what follows even when no ServerHello was seen (a capture of the
        # client's direction only), however many versions its ClientHello offered.
        self._client_past_hello = False
        self.keylog = keylog
        self._decode_context = _NO_CONTEXT
        self._cache = cache
        self.every_record = every_record
        # Both directions known not to carry TLS (`parsing` is False for each): an attribute, as a caller that
        # stops feeding the connection then reads it after every chunk.
        self.given_up = False

    # --- public ---------------------------------------------------------------------------------------------

    def encrypted(self, sender: Sender) -> bool:
        """Whether that side's records are now encrypted (TLS 1.3: the server from its ServerHello on, the client
        from its first encrypted record on)."""
        return (self._client if sender is _CLIENT else self._server).encrypted

    def buffer_sizes(self, sender: Sender) -> tuple[int, int]:
        """(record buffer, handshake reassembly buffer) bytes held for that direction: bounded by the caps."""
        d = self._client if sender is _CLIENT else self._server
        return len(d.buf), len(d.hs_buf)

    def parsing(self, sender: Sender) -> bool:
        """False once that direction is known not to carry TLS (no hello within the plaintext prelude cap)."""
        return (self._client if sender is _CLIENT else self._server).mode is not _DEAD

    def stream_offset(self, sender: Sender) -> int:
        """Bytes of that direction's stream accounted for so far (received, gaps included)."""
        d = self._client if sender is _CLIENT else self._server
        return d.buf_offset + len(d.buf)

    def receive(self, sender: Sender, data: bytes, frame: int, ts: float) -> list[Event]:
        """Feed the next bytes of one direction. Returns the events completed by them; [] means more is needed."""
        d = self._client if sender is _CLIENT else self._server
        left = d.skip_left
        if left > len(data):
            # Bytes inside the body of a record being skipped (a long encrypted record arrives segment by segment):
            # only the counters move. What the code below does for them, in fewer steps (a direction with a
            # record to skip is in sync, not dead).
            d.skip_left = left - len(data)
            d.buf_offset += len(data)
            return []
        if not data:
            return []
        events: list[Event] = []
        try:
            if d.mode is _DEAD:
                d.buf_offset += len(data)
                return events
            start = 0
            if d.skip_left:
                start = min(d.skip_left, len(data))
                d.skip_left -= start
                d.buf_offset += start
                if d.skip_left == 0:
                    self._finish_skipped(d, frame, ts, events)
                if start == len(data):
                    return events
            if d.buf:
                d.buf += memoryview(data)[start:]
                buf: bytes | bytearray = d.buf
            else:  # fast path: parse the caller's bytes in place, copy only the incomplete tail
                buf = data if start == 0 else data[start:]
            consumed = self._parse(d, buf, frame, ts, events)
            if buf is d.buf:
                del d.buf[:consumed]
            elif consumed < len(buf):  # d.buf is empty: keep only the incomplete tail
                d.buf = bytearray(memoryview(buf)[consumed:])
            d.buf_offset += consumed
        except Exception as exc:  # noqa: BLE001 - last line of defence: a parser bug must not kill the flow
            self._lose_sync(d, d.buf_offset + len(d.buf))
            events.append(ParseAnomaly(sender=sender, frame=frame, ts=ts, offset=d.buf_offset,
                                       name="internal_error", detail=f"{type(exc).__name__}: {exc}"))
        return events

    def end_of_stream(self, sender: Sender, frame: int, ts: float) -> list[Event]:
        """That direction's stream is over (the connection closed, or the capture ended): a record it left cut short
        is reported (TruncatedRecordSeen, at `frame` and `ts`: where its last bytes came), nothing else. Why: a peer
        reset while the other was still sending its first record (a ClientHello too long for one packet, read from
        the first one only) leaves only that partial record to tell what was under way. Nothing changes here."""
        d = self._client if sender is _CLIENT else self._server
        if d.mode is not _RECORDS:
            return []
        if d.skip_left:  # a body being skipped (opaque, not looked at)
            content_type, _, length, offset, _ = d.skip_record
            return [TruncatedRecordSeen(sender=sender, frame=frame, ts=ts, offset=offset, content_type=content_type,
                                        length=length, received=length - d.skip_left)]
        buf = d.buf
        if len(buf) < HEADER_LEN or d.sslv2:
            return []
        content_type, _, length = _unpack_header(buf, 0)
        received = len(buf) - HEADER_LEN
        if received >= length:
            return []
        readable = content_type == _HANDSHAKE and (self._tls13 or not d.encrypted) and d.decryptor is None
        handshake_type = buf[HEADER_LEN] if readable and received and not d.hs_buf else None
        hello = None
        if handshake_type == m.CLIENT_HELLO:
            try:
                hello = client_hello_prefix(bytes(buf[HEADER_LEN + 4:]))
            except Exception:  # noqa: BLE001 - as in `receive`: a parser bug must not kill the flow
                hello = None
        return [TruncatedRecordSeen(sender=sender, frame=frame, ts=ts, offset=d.buf_offset, content_type=content_type,
                                    length=length, received=received, handshake_type=handshake_type, hello=hello)]

    def join_midstream(self, sender: Sender) -> None:
        """The bytes of `sender` given from now on do not start its stream: the capture began after the
        connection did (no SYN seen). Its first bytes may then lie inside a record, which says nothing about
        whether the stream is TLS: the parse starts at the first plausible record header instead (a
        `MidstreamJoinSeen` tells where and after how many bytes), and the direction is taken as not TLS only when none
        comes within MAX_PRELUDE bytes. Call before any of that direction's bytes."""
        d = self._client if sender is _CLIENT else self._server
        if d.mode is _START and d.buf_offset == 0 and not d.buf:
            d.mode = _MIDSTREAM
            d.resync_start = 0

    def position(self, sender: Sender) -> int:
        """The stream offset of the next byte expected from `sender` (every byte fed or declared lost so far)."""
        d = self._client if sender is _CLIENT else self._server
        return d.buf_offset + len(d.buf)

    def opaque_left(self, sender: Sender) -> int:
        """Bytes of the record body being skipped that are still to come from `sender` (0: none): bytes taken
        without being looked at."""
        return (self._client if sender is _CLIENT else self._server).skip_left

    def skip(self, sender: Sender, length: int) -> None:
        """`length` bytes of `sender` that the caller does not hand over, fewer than `opaque_left(sender)`: exactly
        what `receive` does with them (the counters move; no event)."""
        d = self._client if sender is _CLIENT else self._server
        if not 0 <= length < d.skip_left:
            raise ValueError(f"cannot skip {length} bytes: {d.skip_left} left in the record body being skipped")
        d.skip_left -= length
        d.buf_offset += length

    def receive_gap(self, sender: Sender, length: int, frame: int, ts: float) -> list[Event]:
        """`length` bytes of that direction were lost in the capture. The parse resumes on the next plausible
        record header, unless the gap falls inside the body of a record being skipped anyway."""
        d = self._client if sender is _CLIENT else self._server
        if length <= 0:
            return []
        at = d.buf_offset + len(d.buf)
        events: list[Event] = [GapSeen(sender=sender, frame=frame, ts=ts, offset=at, length=length)]
        if d.mode is _DEAD:
            d.buf_offset += length
            return events
        if d.skip_left:
            covered = min(length, d.skip_left)
            d.skip_left -= covered
            d.buf_offset += covered
            length -= covered
            if d.skip_left == 0:
                self._finish_skipped(d, frame, ts, events)
            if length == 0:
                return events
        self._lose_sync(d, d.buf_offset + len(d.buf) + length)
        return events

    # --- framing ----------------------------------------------------------------------------------------------

    def _lose_sync(self, d: _Direction, resume_at: int) -> None:
        """Drop everything partial and look for a record header from stream offset `resume_at` on."""
        d.buf = bytearray()
        d.buf_offset = resume_at
        d.skip_left = 0
        d.skip_record = None
        d.hs_buf = bytearray()
        d.hs_skip = 0
        d.mode = _RESYNC
        d.resync_start = resume_at

    def _parse(self, d: _Direction, b: bytes | bytearray, frame: int, ts: float, events: list[Event]) -> int:
        """Parse as many whole records of `b` (b[0] at stream offset d.buf_offset) as there are; return how many
        bytes are done with (including a record whose body is being skipped)."""
        pos = 0
        n = len(b)
        base = d.buf_offset
        max_record = self.max_record
        while pos < n:
            mode = d.mode
            if mode is _RECORDS:
                if d.sslv2 and (b[pos] & 0x80 or not (20 <= b[pos] <= 24)):
                    # SSLv2 framing: a 2-byte header (high bit set), or a 3-byte one (with padding, used by
                    # block ciphers) whose first byte cannot start a TLS record.
                    long_header = not b[pos] & 0x80
                    header_len = 3 if long_header else 2
                    if n - pos < header_len:
                        break
                    length = ((b[pos] & 0x3F) << 8) | b[pos + 1] if long_header else sslv2_header(b, pos)
                    if length + header_len > self.max_buffer:
                        self._anomaly(d, frame, ts, base + pos, "record_too_long", f"SSLv2 record of {length}", events)
                        d.mode = _RESYNC
                        d.resync_start = base + pos
                        pos += 1
                        continue
                    if n - pos < header_len + length:
                        break
                    self._sslv2_record(d, bytes(b[pos + header_len:pos + header_len + length]), base + pos, frame,
                                       ts, events)
                    pos += header_len + length
                    continue
                if n - pos < HEADER_LEN:
                    break
                ct, version, length = _unpack_header(b, pos)
                if version >> 8 != 3 or version & 0xFF > 4 or length > max_record:
                    name = "record_too_long" if version >> 8 == 3 and length > max_record else "bad_record_header"
                    self._anomaly(d, frame, ts, base + pos, name, f"header {bytes(b[pos:pos + 5]).hex()}", events)
                    d.mode = _RESYNC
                    d.resync_start = base + pos
                    d.hs_buf = bytearray()
                    d.hs_skip = 0
                    pos += 1
                    continue
                end = pos + HEADER_LEN + length
                # Which records are readable (the encryption rules of the module docstring), inline: this runs
                # for every record.
                if self._tls13:
                    encrypted = ct == _APPLICATION_DATA or ct == _HEARTBEAT or (ct == _ALERT and length != 2)
                elif ct == _CHANGE_CIPHER_SPEC:
                    encrypted = False
                elif ct == _APPLICATION_DATA and self._early_data and d.sender is _CLIENT:
                    encrypted = True
                else:
                    encrypted = d.encrypted
                decryptor = d.decryptor
                if encrypted:
                    needs_body = (decryptor is not None and length + HEADER_LEN <= self.max_buffer
                                  and (ct != _APPLICATION_DATA or decryptor.needs_every_record))
                else:
                    needs_body = 20 <= ct <= 22 and length + HEADER_LEN <= self.max_buffer
                if end > n:
                    if needs_body:
                        break
                    d.skip_left = end - n
                    d.skip_record = (ct, version, length, base + pos, encrypted)
                    return n
                if (encrypted and decryptor is None and (ct == _APPLICATION_DATA or ct == _HANDSHAKE)
                        and length <= MAX_PLAINTEXT_PLUS):
                    # Most records: opaque, no key log to read them with. What `_record` would do for them, the
                    # two events, without its general path.
                    offset = base + pos
                    if d.report_records:
                        events.append(_new_record_seen(d.sender, frame, ts, offset, ct, version, length, True))
                        d.report_records = self.every_record
                    events.append(_new_encrypted_record_seen(d.sender, frame, ts, offset, ct, length,
                                                             self._handshake_phase(d, ct)))
                else:
                    self._record(d, ct, version, length, b[pos + HEADER_LEN:end] if needs_body else None,
                                 base + pos, encrypted, frame, ts, events)
                pos = end
            elif mode is _RESYNC:
                found = self._find_header(b, pos)
                if found < 0:
                    return max(pos, n - (HEADER_LEN - 1))  # keep a possible header's first bytes
                events.append(ResyncSeen(sender=d.sender, frame=frame, ts=ts, offset=base + found,
                                         skipped=base + found - d.resync_start))
                d.mode = _RECORDS
                pos = found
            elif mode is _START:
                if n - pos >= HEADER_LEN and plausible_header(b, pos, max_record):
                    d.mode = _RECORDS  # (what tls_prefix_possible says of a whole plausible header, in one test)
                    continue
                head = b[pos:pos + 7]
                tls = tls_prefix_possible(head[:HEADER_LEN], max_record)
                if tls:
                    d.mode = _RECORDS
                    continue
                sslv2 = sslv2_prefix_possible(head)
                if sslv2:
                    d.mode = _RECORDS
                    d.sslv2 = True
                    continue
                if tls is None or sslv2 is None:
                    break
                events.append(NotTlsSeen(sender=d.sender, frame=frame, ts=ts, offset=base + pos,
                                         preview=bytes(b[pos:pos + 16])))
                d.mode = _PRELUDE
                d.resync_start = base + pos
            elif mode is _MIDSTREAM:
                # The first bytes seen of a stream that began before the capture: a record header there is
                # taken as it is; else the first plausible one (as after a gap). Not TLS only if none comes within
                # MAX_PRELUDE bytes.
                found = self._find_header(b, pos)
                if found < 0:
                    if base + pos == d.resync_start and n - pos < MIDSTREAM_TEXT_PROBE:
                        return pos  # (keep the first bytes until there are enough to tell text)
                    if (base + pos == d.resync_start
                            and not bytes(b[pos:pos + MIDSTREAM_TEXT_PROBE]).translate(None, _TEXT_BYTES)):
                        # Plain text (HTTP, SMTP, ...) picked up mid-stream: not TLS, as a stream's first bytes
                        # would say; a STARTTLS upgrade may still follow.
                        events.append(NotTlsSeen(sender=d.sender, frame=frame, ts=ts, offset=base + pos,
                                                 preview=bytes(b[pos:pos + 16])))
                        d.mode = _PRELUDE
                        continue
                    if base + n - d.resync_start > MAX_PRELUDE:
                        # (the preview: the bytes at hand, the first ones are gone by now)
                        events.append(NotTlsSeen(sender=d.sender, frame=frame, ts=ts, offset=base,
                                                 preview=bytes(b[:16])))
                        d.mode = _DEAD
                        self.given_up = self._client.mode is _DEAD and self._server.mode is _DEAD
                        return n
                    return max(pos, n - (HEADER_LEN - 1))  # keep a possible header's first bytes
                events.append(MidstreamJoinSeen(sender=d.sender, frame=frame, ts=ts, offset=base + found,
                                                skipped=base + found - d.resync_start))
                d.mode = _RECORDS
                pos = found
            elif mode is _PRELUDE:
                if self._upgrade is not _ANSWERED:
                    self._watch_upgrade(d, b, pos, frame, ts, base, events)
                found = self._find_hello(d, b, pos)
                if found < 0:
                    if base + n - d.resync_start > MAX_PRELUDE:
                        d.mode = _DEAD  # long plain-text talk: not a STARTTLS prelude
                        self.given_up = self._client.mode is _DEAD and self._server.mode is _DEAD
                        return n
                    return max(pos, n - (HEADER_LEN + 1))  # keep a possible header's first bytes
                events.append(TlsStartSeen(sender=d.sender, frame=frame, ts=ts, offset=base + found,
                                           skipped=base + found - d.resync_start))
                d.mode = _RECORDS
                pos = found
            else:
                return n
        return pos

    def _watch_upgrade(self, d: _Direction, b: bytes | bytearray, pos: int, frame: int, ts: float, base: int,
                       events: list[Event]) -> None:
        """A plaintext prelude: the client's request to start TLS, then the server's first answer after it (a
        refusal explains why no TLS came; an agreement is followed by the hello)."""
        if d.sender is Sender.CLIENT:
            if self._upgrade is None:
                found = _UPGRADE_REQUEST.search(bytes(b[pos:pos + MAX_PRELUDE]))
                if found is not None:
                    self._upgrade = _ASKED
                    events.append(UpgradeAskedSeen(sender=d.sender, frame=frame, ts=ts, offset=base + pos + found.start(),
                                                   command=found.group().strip()[:64]))
            return
        if self._upgrade is not _ASKED:
            return
        text = bytes(b[pos:pos + 4096])
        if text in (b"S", b"N"):  # (PostgreSQL's one-byte answer to its SSLRequest)
            reply = text
            at = 0
        else:
            found = _UPGRADE_REPLY.search(text)
            if found is None:
                return  # (the tail of earlier talk: the answer comes with later bytes)
            reply, at = found.group().rstrip()[:120], found.start()
        self._upgrade = _ANSWERED
        events.append(UpgradeReplySeen(sender=d.sender, frame=frame, ts=ts, offset=base + pos + at, reply=reply))

    def _find_hello(self, d: _Direction, b: bytes | bytearray, pos: int) -> int:
        """In a plaintext prelude: the first handshake record header (16 03 0x len len) whose body starts with the
        hello this side sends first (ClientHello from the client; ServerHello, or an alert, from the server)."""
        want = m.CLIENT_HELLO if d.sender is Sender.CLIENT else m.SERVER_HELLO
        n = len(b)
        while True:
            i = b.find(b"\x16\x03", pos)
            if i < 0 or i + HEADER_LEN + 1 > n:
                return -1  # none, or one cut at the end of the data: the caller keeps the tail for next time
            version_minor = b[i + 2]
            length = (b[i + 3] << 8) | b[i + 4]
            if version_minor <= 4 and 4 <= length <= self.max_record and b[i + 5] == want:
                return i
            pos = i + 1

    def _find_header(self, b: bytes | bytearray, pos: int) -> int:
        """The first plausible record header at or after `pos` whose successor is plausible too (or lies beyond
        the data we have); -1 if none."""
        n = len(b)
        max_record = self.max_record
        while True:
            match = _HEADER_CANDIDATE.search(b, pos)
            if match is None:
                return -1
            i = match.start()
            if i + HEADER_LEN > n:
                return -1
            if plausible_header(b, i, max_record):
                following = i + HEADER_LEN + ((b[i + 3] << 8) | b[i + 4])
                if following + HEADER_LEN > n or plausible_header(b, following, max_record):
                    return i
            pos = i + 1

    # --- records ----------------------------------------------------------------------------------------------

    def _anomaly(self, d: _Direction, frame: int, ts: float, offset: int, name: str, detail: str,
                 events: list[Event] | None = None) -> ParseAnomaly:
        event = ParseAnomaly(sender=d.sender, frame=frame, ts=ts, offset=offset, name=name, detail=detail)
        if events is not None:
            events.append(event)
        return event

    def _finish_skipped(self, d: _Direction, frame: int, ts: float, events: list[Event]) -> None:
        record = d.skip_record
        d.skip_record = None
        if record is not None:
            ct, version, length, offset, encrypted = record
            self._record(d, ct, version, length, None, offset, encrypted, frame, ts, events)

    def _record(self, d: _Direction, ct: int, version: int, length: int, body: bytes | bytearray | None,
                offset: int, encrypted: bool, frame: int, ts: float, events: list[Event]) -> None:
        """Events for one complete record. `body` is None for records whose content is not needed (or that did
        not fit the buffer cap)."""
        sender = d.sender
        if d.report_records:
            events.append(_new_record_seen(sender, frame, ts, offset, ct, version, length, encrypted))
            d.report_records = self.every_record
        if length > MAX_PLAINTEXT_PLUS:
            events.append(self._anomaly(d, frame, ts, offset, "record_too_long",
                                        f"content type {ct}, {length} bytes > {MAX_PLAINTEXT_PLUS}"))
        if not 20 <= ct <= 24:  # unassigned content type: the same whatever the encryption state
            events.append(UnknownRecordSeen(sender=sender, frame=frame, ts=ts, offset=offset, content_type=ct,
                                            length=length))
            return
        if (d.compat_ccs and not encrypted and ct == _HANDSHAKE and self.version is None and body is not None
                and not (len(body) >= 4 and body[0] == m.CLIENT_HELLO and 38 <= int.from_bytes(body[1:4]) <= 1 << 18)):
            # A TLS 1.3 client sends no handshake record in plain text after its compatibility CCS but a second
            # ClientHello (after a HelloRetryRequest): this one is TLS 1.2's encrypted Finished of an abbreviated
            # handshake whose ServerHello the capture lacks (its client's direction alone was captured).
            d.compat_ccs = False
            d.encrypted = encrypted = True
            d.hs_buf = bytearray()
            d.hs_skip = 0
        if encrypted:
            decrypted = self._decrypt(d, ct, version, body, offset, frame, ts, events) if d.decryptor else None
            if decrypted is not None and ct == _ALERT and decrypted[0] == _ALERT:  # TLS <= 1.2, now readable
                self._plaintext_alert(d, decrypted[1], len(decrypted[1]), offset, frame, ts, events, decrypted=True)
                return
            if ct == _ALERT:
                events.append(AlertSeen(sender=sender, frame=frame, ts=ts, offset=offset, level=None,
                                        description=None, encrypted=True, length=length))
            elif ct == _HEARTBEAT:
                events.append(HeartbeatSeen(sender=sender, frame=frame, ts=ts, offset=offset, length=length,
                                            encrypted=True))
            else:
                events.append(_new_encrypted_record_seen(sender, frame, ts, offset, ct, length,
                                                         self._handshake_phase(d, ct)))
            if decrypted is not None:
                inner_type, plaintext = decrypted
                if inner_type == _HANDSHAKE and plaintext:
                    self._handshake_bytes(d, plaintext, offset, frame, ts, events, decrypted=True)
                elif inner_type == _ALERT:
                    self._plaintext_alert(d, plaintext, len(plaintext), offset, frame, ts, events, decrypted=True)
            return
        if ct == _HANDSHAKE:
            if body is None:
                self._anomaly(d, frame, ts, offset, "record_not_buffered",
                              f"handshake record of {length} bytes over the buffer cap", events)
                d.hs_buf = bytearray()
                d.hs_skip = 0
            elif length == 0:
                self._anomaly(d, frame, ts, offset, "empty_handshake_record", "", events)
            elif (not d.hs_buf and not d.hs_skip and length >= 4
                  and (body[1] << 16 | body[2] << 8 | body[3]) + 4 == length and length - 4 <= self.max_handshake):
                # The usual record: exactly one whole message, nothing pending (`_handshake_bytes`'s first case).
                self._handshake_message(d, body[0], length - 4, bytes(body), offset + HEADER_LEN, offset, frame, ts,
                                        events)
            else:
                self._handshake_bytes(d, body, offset, frame, ts, events)
        elif ct == _APPLICATION_DATA:
            events.append(ApplicationDataSeen(sender=sender, frame=frame, ts=ts, offset=offset, length=length))
        elif ct == _ALERT:
            self._plaintext_alert(d, body, length, offset, frame, ts, events)
        elif ct == _CHANGE_CIPHER_SPEC:
            events.append(_new_change_cipher_spec_seen(sender, frame, ts, offset))
            if body is not None and bytes(body) != b"\x01":
                self._anomaly(d, frame, ts, offset, "bad_change_cipher_spec", f"body {bytes(body[:8]).hex()}",
                              events)
            self._change_cipher_spec(d, offset, frame, ts, events)
        else:
            events.append(HeartbeatSeen(sender=sender, frame=frame, ts=ts, offset=offset, length=length,
                                        encrypted=False))

    def _handshake_phase(self, d: _Direction, ct: int) -> bool:
        """`handshake_phase` of d's next opaque record of content type ct (see the module docstring), updating
        what that record tells about the handshake being over."""
        if self._tls13:
            if d.sender is _CLIENT:
                phase = not d.finished
                if ct == _APPLICATION_DATA:
                    d.finished = True
                    d.encrypted = True
                return phase
            return not self._client.finished
        if d.sender is _CLIENT and self._early_data and not d.encrypted:
            d.early_records += 1
            return True  # 0-RTT data before the ServerHello
        phase = not d.finished
        if ct == _HANDSHAKE:
            d.finished = True  # the first encrypted handshake record after CCS is the Finished
        return phase

    def _plaintext_alert(self, d: _Direction, body: bytes | bytearray | None, length: int, offset: int,
                         frame: int, ts: float, events: list[Event], *, decrypted: bool = False) -> None:
        if body is None or length == 0 or length % 2 or any(body[i] not in (1, 2) for i in range(0, length, 2)):
            # Not a whole number of 2-byte alerts with real levels (warning 1, fatal 2): encrypted after a
            # ChangeCipherSpec we did not see (a capture starting mid-connection, a CCS lost in a gap).
            self._anomaly(d, frame, ts, offset, "bad_alert", f"plaintext alert record of {length} bytes", events)
            events.append(AlertSeen(sender=d.sender, frame=frame, ts=ts, offset=offset, level=None,
                                    description=None, encrypted=True, length=length, decrypted=decrypted))
            return
        for i in range(0, length, 2):  # TLS <= 1.2 allows several alerts in one record
            events.append(AlertSeen(sender=d.sender, frame=frame, ts=ts, offset=offset, level=body[i],
                                    description=body[i + 1], encrypted=False, length=2, decrypted=decrypted))

    def _change_cipher_spec(self, d: _Direction, offset: int, frame: int, ts: float,
                            events: list[Event]) -> None:
        if self._tls13:
            return  # middlebox-compatibility CCS (RFC 8446 D.4): no state change
        if self.version is None:
            if self.hello_retry_request is not None:
                return  # compatibility CCS around a HelloRetryRequest
            ch = self.client_hello
            if (d.sender is Sender.CLIENT and ch is not None and not self._client_past_hello
                    and any(is_tls13(v) for v in ch.supported_versions)):
                d.compat_ccs = True
                return  # a TLS 1.3 client's compatibility CCS sent before the ServerHello
        if d.hs_buf or d.hs_skip:
            self._anomaly(d, frame, ts, offset, "handshake_fragment_before_ccs",
                          f"incomplete handshake message dropped ({len(d.hs_buf)} bytes held, {d.hs_skip} still to skip)", events)
            d.hs_buf = bytearray()
            d.hs_skip = 0
        d.encrypted = True
        if self.keylog is not None:
            self._start_tls12_decryption(d, offset, frame, ts, events)

    # --- handshake messages -----------------------------------------------------------------------------------

    def _handshake_bytes(self, d: _Direction, body: bytes | bytearray, rec_off: int, frame: int, ts: float,
                         events: list[Event], *, decrypted: bool = False) -> None:
        """Reassemble handshake messages from a plaintext handshake record's body."""
        if not d.hs_skip and not d.hs_buf and len(body) >= 4:
            # The usual record: exactly one whole message, nothing pending from earlier records.
            length = (body[1] << 16) | (body[2] << 8) | body[3]
            if length + 4 == len(body) and length <= self.max_handshake:
                self._handshake_message(d, body[0], length, bytes(body), rec_off + HEADER_LEN, rec_off, frame, ts,
                                        events, decrypted)
                return
        body_abs = rec_off + HEADER_LEN
        if d.hs_skip:
            k = min(d.hs_skip, len(body))
            d.hs_skip -= k
            body = body[k:]
            body_abs += k
            if not body:
                return
        prev = len(d.hs_buf)
        data = d.hs_buf + body if prev else body
        p = 0
        n = len(data)
        while n - p >= 4:
            msg_type = data[p]
            length = (data[p + 1] << 16) | (data[p + 2] << 8) | data[p + 3]
            continued = p < prev  # this message began in an earlier record
            msg_abs = d.hs_msg_abs if continued else body_abs + p - prev
            msg_rec = d.hs_rec_off if continued else rec_off
            if length > self.max_handshake:
                self._anomaly(d, frame, ts, msg_abs, "handshake_too_long",
                              f"msg_type {msg_type}, {length} bytes > {self.max_handshake}", events)
                available = n - p - 4
                if available >= length:
                    p += 4 + length
                    continue
                d.hs_skip = length - available
                p = n
                break
            if n - p - 4 < length:
                break
            self._handshake_message(d, msg_type, length, bytes(data[p:p + 4 + length]), msg_abs, msg_rec,
                                    frame, ts, events, decrypted)
            p += 4 + length
        if p < n:
            if p >= prev:
                d.hs_msg_abs = body_abs + p - prev
                d.hs_rec_off = rec_off
            d.hs_buf = bytearray(data[p:])
        elif prev:
            d.hs_buf = bytearray()

    def _handshake_message(self, d: _Direction, msg_type: int, length: int, raw: bytes, msg_abs: int,
                           rec_off: int, frame: int, ts: float, events: list[Event], decrypted: bool = False) -> None:
        """One complete message; `raw` is the message as on the wire, its 4-byte header included."""
        sh = self.server_hello
        suite = sh.cipher_suite if sh is not None and sh.random != _HRR_RANDOM else None
        ctx = self._decode_context
        if ctx.version != self.version or ctx.cipher_suite != suite:  # one per connection state, not per message
            ctx = self._decode_context = DecodeContext(version=self.version, cipher_suite=suite)
        reported, message, anomalies = decode_message(msg_type, raw[4:], ctx, msg_abs + 4, self._cache)
        events.append(_new_handshake_seen(d.sender, frame, ts, rec_off, reported, length, message, decrypted, raw))
        if anomalies:
            for name, detail, offset in anomalies:
                self._anomaly(d, frame, ts, offset, name, detail, events)
        self._after_handshake(d, message)
        if self._tls13 and self.keylog is not None and isinstance(message, m.ServerHello):
            self._start_tls13_decryption(rec_off, frame, ts, events)

    # --- decryption (with a key log) --------------------------------------------------------------------------

    def _secrets(self) -> SessionSecrets | None:
        ch = self.client_hello
        if self.keylog is None or ch is None:
            return None
        return self.keylog.secrets_for(ch.random)

    def _start_tls13_decryption(self, offset: int, frame: int, ts: float, events: list[Event]) -> None:
        """At the ServerHello: the server's next records are under its handshake keys, the client's too once it
        has sent its compatibility CCS, or its early keys if it is sending 0-RTT data."""
        secrets = self._secrets()
        sh = self.server_hello
        ch = self.client_hello
        if secrets is None or sh is None or ch is None or not secrets.has_tls13:
            return
        for d in (self._client, self._server):
            if d.sender is Sender.CLIENT:
                logged = (secrets.client_handshake_traffic_secret, secrets.client_traffic_secret_0)
            else:
                logged = (secrets.server_handshake_traffic_secret, secrets.server_traffic_secret_0)
            if logged == (None, None):
                continue  # nothing logged for that side: it stays keyless, silently
            # A client that offered 0-RTT starts under its early keys (if logged); if it sent no early data or
            # the server refused it, the decryptor finds its next records under the handshake keys by itself.
            early = d.sender is Sender.CLIENT and ch.has_extension(m.EXT_EARLY_DATA)
            from tlsparse.decrypt import RecordDecryptor

            try:
                d.decryptor = RecordDecryptor.for_tls13(secrets, sh.cipher_suite, d.sender, early=early,
                                                        initial_sequence=d.early_records if early else 0)
            except DecryptError as err:
                d.decryptor = None
                self._anomaly(d, frame, ts, offset, "decryption_unsupported", err.reason, events)

    def _start_tls12_decryption(self, d: _Direction, offset: int, frame: int, ts: float,
                                events: list[Event]) -> None:
        """At that side's ChangeCipherSpec: its next records are under the keys of the key block."""
        d.decryptor = None
        secrets = self._secrets()
        ch, sh = self.client_hello, self.server_hello
        if secrets is None or secrets.master_secret is None or ch is None or sh is None or self.version is None:
            return
        etm = ch.has_extension(_EXT_ENCRYPT_THEN_MAC) and sh.has_extension(_EXT_ENCRYPT_THEN_MAC)
        from tlsparse.decrypt import RecordDecryptor

        try:
            d.decryptor = RecordDecryptor.for_tls12(secrets.master_secret, ch.random, sh.random, sh.cipher_suite,
                                                    d.sender, version=self.version, encrypt_then_mac=etm)
        except DecryptError as err:
            self._anomaly(d, frame, ts, offset, "decryption_unsupported", err.reason, events)

    def _decrypt(self, d: _Direction, ct: int, version: int, body: bytes | bytearray | None, offset: int,
                 frame: int, ts: float, events: list[Event]) -> tuple[int, bytes] | None:
        """Decrypt one encrypted record of `d` (None when it was not buffered, or on failure: the first failure
        is reported and ends decryption for the connection)."""
        decryptor = d.decryptor
        assert decryptor is not None
        if body is None:
            decryptor.skip()  # application data we do not read, or over the buffer cap: only its number counts
            return None
        try:
            return decryptor.decrypt(ct, version, body)
        except DecryptError as err:
            # Wrong keys (or lost records): say so once, then parse the connection as if there were no key log.
            for each in (self._client, self._server):
                each.decryptor = None
            self.keylog = None
            self._anomaly(d, frame, ts, offset, "decryption_failed", str(err), events)
            return None

    def _after_handshake(self, d: _Direction, message: m.HandshakeBody) -> None:
        if isinstance(message, m.ClientHello):
            self.client_hello = message
            if (self.version is None and message.has_extension(m.EXT_EARLY_DATA)
                    and any(is_tls13(v) for v in message.supported_versions)):
                self._early_data = True
        elif isinstance(message, m.ServerHello):
            self.server_hello = message
            self._early_data = False
            if message.is_hello_retry_request:
                self.hello_retry_request = message
                return
            self.version = message.selected_version
            self._tls13 = is_tls13(self.version)
            if self._tls13:
                d.encrypted = True
                if d.hs_buf:  # RFC 8446 5.1: a key change must fall on a record boundary
                    d.hs_buf = bytearray()
        elif d.sender is Sender.CLIENT and message is not None:
            self._client_past_hello = True

    def _sslv2_record(self, d: _Direction, body: bytes, offset: int, frame: int, ts: float,
                      events: list[Event]) -> None:
        sender = d.sender
        if not d.sslv2_encrypted and body and body[0] == SSLV2_CLIENT_HELLO:
            if d.report_records:
                events.append(RecordSeen(sender=sender, frame=frame, ts=ts, offset=offset, content_type=m.HANDSHAKE,
                                         version=SSLV2_VERSION, length=len(body), encrypted=False))
                d.report_records = self.every_record
            try:
                hello = decode_sslv2_client_hello(body, base=offset + 2)
            except TlsParseError as err:
                self._anomaly(d, frame, ts, err.offset, "bad_sslv2_client_hello", err.reason, events)
                return
            events.append(HandshakeSeen(sender=sender, frame=frame, ts=ts, offset=offset,
                                        msg_type=m.CLIENT_HELLO, length=len(body), message=hello))
            self._after_handshake(d, hello)
            return
        msg_type = None if d.sslv2_encrypted or not body else body[0]
        events.append(Sslv2RecordSeen(sender=sender, frame=frame, ts=ts, offset=offset, msg_type=msg_type,
                                      length=len(body)))
        if msg_type == SSLV2_SERVER_HELLO:
            self.version = SSLV2_VERSION
        if msg_type in (SSLV2_SERVER_HELLO, SSLV2_CLIENT_MASTER_KEY):
            d.sslv2_encrypted = True  # everything after these two is under the session key
            d.encrypted = True
