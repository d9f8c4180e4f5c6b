"""The one-way pipeline: capture reader → TCP reassembly → tlsparse → summary → verdict → contract records.

`iter_flow_records` streams one record per TCP connection as each connection ends, so memory stays flat however
long the capture is; a connection whose handshake is over stops receiving bytes (`wants_data = False`) and its
later packets only update TCP counters.
"""
from __future__ import annotations

import datetime as _dt
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzers.certview import assess_certificates
from analyzers.summary import HandshakeSummary, new_summary
from analyzers.tcpfacts import SideFacts, TcpFacts
from analyzers.verdict import CertView, decide
from tlsflow.capture import CaptureError, open_capture
from tlsflow.record import CertificateFields, ClientHelloShapes, build_record, certificate_fields
from tlsflow.tcp import ConnectionClosed, StreamChunk, TcpReassembler
from tlsparse import TlsConnection
from tlsparse.cache import ParseCache
from tlsparse.certificates import describe_certificate
from tlsparse.events import Sender

# Members as module constants: `Sender.CLIENT` is a metaclass lookup (~85 ns), read many times per
# connection.
_CLIENT, _SERVER = Sender.CLIENT, Sender.SERVER


@dataclass(slots=True)
class FlowState:
    """What the pipeline keeps per connection (stored in the reassembler's `conn.handshake` slot)."""

    tls: TlsConnection | None  # None once the connection wants no more data: its parser's state is let go
    summary: HandshakeSummary = field(default_factory=HandshakeSummary)
    skipping: bool = False  # the reassembler may hold back bytes of a record body the parser only skips


@dataclass(slots=True)
class CaptureReport:
    """Per-capture outcome of reading, for the CLI's exit code and messages."""

    capture: str
    flows: int = 0
    error: str | None = None
    stats: Any = None


_SIDE_FIELDS: dict[type, tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]] | None] = {}


def _side_facts(d: Any) -> SideFacts:
    """The reassembler's direction facts as the analyzers read them. When they have every SideFacts field they are
    handed on as they are: `_record` runs on a closed connection, which nothing changes any more, so a copy would
    only cost time. Otherwise (another source of facts) the fields they have are copied (names looked up once per
    type)."""
    cls = type(d)
    if cls not in _SIDE_FIELDS:
        names = tuple(n for n in SideFacts.__slots__ if hasattr(d, n))  # type: ignore[attr-defined]
        _SIDE_FIELDS[cls] = None if len(names) == len(SideFacts.__slots__) else (  # type: ignore[attr-defined]
            names, operator.attrgetter(*names) if len(names) > 1 else
            (lambda obj, _n=names: tuple(getattr(obj, x) for x in _n)))
    known = _SIDE_FIELDS[cls]
    if known is None:
        return d  # type: ignore[no-any-return]
    names, get = known
    return SideFacts(**dict(zip(names, get(d))))


def _tcp_facts(conn: Any) -> TcpFacts:
    client, server = _side_facts(conn.client), _side_facts(conn.server)
    # (by position: keywords cost ~2,000 instructions more)
    return TcpFacts(client, server, getattr(conn, "roles_from", "syn"), list(getattr(conn, "anomalies", ())))


_NO_BYTES = new_summary()  # the summary of a connection that carried no byte (`FlowAnalyzer._record`)
# A record body that still has this many bytes to come is skipped by the reassembler rather than fed to the parser
# (`FlowAnalyzer._on_event`): two full segments or more.
SKIP_AT_LEAST = 2920


class RunCaches:
    """What the analysis remembers from one connection to the next, by content only (so the records are those of
    a fresh start): certificate checks, the parser's decoded extensions and Certificate messages, fingerprints per
    hello shape. Each is bounded. One per run, shared by its captures: rotating capture files show the same servers
    file after file, and with one per file their chains were checked again in every file (52 files of 1 MB cut
    from the 50 MB bench capture: the checks were a quarter of the run)."""

    __slots__ = ("certificates", "fingerprints", "parse")

    def __init__(self, trust: Any = None) -> None:
        # (trust None: Mozilla's roots, loaded at the first certificate chain checked; see _CertCache.trust)
        self.certificates = _CertCache(trust)
        # What the parser remembers between connections (extension bodies, suite kinds, Certificate messages).
        self.parse = ParseCache()
        # JA3/JA3S/JA4 and the offered ALPN and version per hello shape: clients repeat their hellos
        self.fingerprints = ClientHelloShapes()


class FlowAnalyzer:
    """Feeds one capture's packets through reassembly and the parser, and yields a record per connection."""

    def __init__(self, capture_name: str, *, trust: Any = None, keep_events_for: int | None = None,
                 idle_timeout: float | None = None, keylog: Any = None, caches: RunCaches | None = None) -> None:
        """`caches`: what earlier captures of the same run learnt (RunCaches, made with the same trust store:
        `trust` is then not read); by default this capture's own."""
        self.capture_name = capture_name
        self.reassembler = TcpReassembler() if idle_timeout is None else TcpReassembler(idle_timeout=idle_timeout)
        self.keylog = keylog
        self.last_ts: float | None = None
        # `tlsflow explain` draws one flow's ladder: keep that flow's parser events and TCP facts.
        self.keep_events_for = keep_events_for
        self.kept_events: list[Any] = []
        self.kept_tcp: TcpFacts | None = None
        if caches is None:
            caches = RunCaches(trust)
        self._cert_cache = caches.certificates
        self._parse_cache = caches.parse
        self._fingerprints = caches.fingerprints

    def feed(self, pkt: Any) -> Iterator[dict[str, Any]]:
        self.last_ts = pkt.ts
        for event in self.reassembler.add(pkt):
            record = self._on_event(event)
            if record is not None:
                yield record

    def tick(self, ts: float) -> list[dict[str, Any]] | tuple[()]:
        """Another shard's packet at `ts` (`--jobs` on one file): only the clock moves; records of the flows that
        this expires."""
        self.last_ts = ts
        events = self.reassembler.advance(ts)
        if not events:
            return ()
        return [record for event in events if (record := self._on_event(event)) is not None]

    def expire(self, now: float) -> Iterator[dict[str, Any]]:
        """Records of the connections idle (or done lingering after their close) at `now`: live mode's
        wall-clock housekeeping, between packets."""
        for event in self.reassembler.expire(now):
            record = self._on_event(event)
            if record is not None:
                yield record

    def finish(self) -> Iterator[dict[str, Any]]:
        on_event = self._on_event
        for events in self.reassembler.finish_each():
            for event in events:
                record = on_event(event)
                if record is not None:
                    yield record

    def _on_event(self, event: Any) -> dict[str, Any] | None:
        if event.__class__ is StreamChunk:  # most events: the exact class check is the cheapest
            conn = event.conn
            state: FlowState | None = conn.handshake
            if state is None or not conn.wants_data:
                if state is not None or not conn.wants_data:
                    return None
                state = conn.handshake = self._new_state(conn)  # the connection's first bytes
            tls = state.tls
            if state.skipping:
                # Bytes the reassembler held back (`skip_until`) lie between the parser's position and this chunk.
                held = event.offset - tls.position(event.sender)
                if held > 0:
                    if held < tls.opaque_left(event.sender):
                        tls.skip(event.sender, held)
                    else:  # (cannot happen: the segment with the body's last byte is always delivered) as lost
                        state.summary.add_all(tls.receive_gap(event.sender, held, event.frame, event.ts))
            if event.gap:
                events = tls.receive_gap(event.sender, event.gap, event.frame, event.ts)
            else:
                events = tls.receive(event.sender, event.data, event.frame, event.ts)
            # Both sides exchange application data, or the parser gave up on both directions (not TLS, not even
            # after a STARTTLS prelude): later bytes cannot change the verdict.
            if events:
                summary = state.summary
                if conn.flow_id == self.keep_events_for:
                    self.kept_events.extend(events)
                summary.add_all(events)
                app_data = summary.app_data_records
                if (app_data[_CLIENT] and app_data[_SERVER]) or tls.given_up:
                    self._done_with_data(conn, state)
            elif tls.given_up:  # (a chunk without events changes no count: a segment inside a long record)
                self._done_with_data(conn, state)
            elif not event.gap and (left := tls.opaque_left(event.sender)) >= SKIP_AT_LEAST:
                # Inside a long record body the parser only skips: the segments before its last byte need not come
                # as chunks (the last one does, with its frame, for the record's events).
                state.skipping = True
                self.reassembler.skip_until(conn, event.sender, event.offset + len(event.data) + left - 1)
            return None
        # ConnectionOpened: the parser's state waits for the connection's first bytes (`_new_state`). Why: scans
        # and SYN floods fill the flow table with connections that never carry one, ~2 KB each for nothing.
        if isinstance(event, ConnectionClosed):
            return self._record(event.conn)
        return None

    @staticmethod
    def _done_with_data(conn: Any, state: FlowState) -> None:
        """The connection wants no more data: what only later bytes could have used is let go, so that a
        connection that stays open (a busy server's keep-alive ones) holds what its record needs and no more."""
        conn.wants_data = False
        state.tls = None  # the parser's state (the record needs the summary only)
        summary = state.summary
        if not summary.transcript_complete:
            # Raw handshake messages kept for the server's TLS 1.3 CertificateVerify, which did not come (the
            # verdict reads them only once it did): without it, they are of no use.
            summary.transcript = None

    @property
    def trust(self) -> Any:
        """The trust store the certificate checks use (the default one is loaded on first use)."""
        return self._cert_cache.trust

    def _new_state(self, conn: Any) -> FlowState:
        # The summary keeps each side's first RecordSeen only: the others are not built, except for the flow
        # whose events `explain` keeps.
        # (by position, the summary from new_summary: FlowState's keywords and HandshakeSummary's own __init__
        # cost ~7,000 instructions more per connection)
        tls = self._new_tls(conn.flow_id == self.keep_events_for)
        if conn.client.syn_frame is None and conn.server.synack_frame is None:
            # Neither SYN seen: the connection began before the capture (or before this flow was tracked), and
            # each direction's first bytes may lie inside a record.
            tls.join_midstream(_CLIENT)
            tls.join_midstream(_SERVER)
        return FlowState(tls, new_summary())

    def add_secrets(self, blocks: list[bytes]) -> None:
        """Key-log text from the capture itself (pcapng DSB): used for connections opened from now on."""
        from tlsparse.keylog import KeyLog

        # Connections already open (their ConnectionOpened given) keep the key log of before, as when their
        # parser's state was made at that event: it is made now for those still waiting for their first bytes.
        for conn in self.reassembler.opened_connections():
            if conn.handshake is None:
                conn.handshake = self._new_state(conn)
        extra = KeyLog.from_blocks(blocks)
        # A new KeyLog: the caller's (shared by every capture of a run) must not gain this capture's secrets.
        self.keylog = extra if self.keylog is None else KeyLog().merge(self.keylog).merge(extra)

    def _new_tls(self, every_record: bool = True) -> TlsConnection:
        # Certificate chains of 300 kB and more exist (Zeek's tls-fragmented-handshake trace): allow 512 KiB for
        # one handshake message, still a bound per connection.
        return TlsConnection(max_handshake=1 << 19, keylog=self.keylog, cache=self._parse_cache,
                             every_record=every_record)

    def _end_of_streams(self, conn: Any, state: FlowState) -> None:
        """The connection is over while its parser still read it: a record either side left cut short."""
        tls = state.tls
        for sender, facts in ((_CLIENT, conn.client), (_SERVER, conn.server)):
            frame = facts.last_payload_frame
            events = tls.end_of_stream(sender, frame, facts.last_payload_ts) if frame is not None else ()  # type: ignore[union-attr]
            if events:
                state.summary.add_all(events)
                if conn.flow_id == self.keep_events_for:
                    self.kept_events.extend(events)

    def _record(self, conn: Any) -> dict[str, Any]:
        state: FlowState | None = conn.handshake
        # No byte came: nothing to summarise. One empty summary serves every such connection (scans, SYN floods):
        # nothing that reads a summary for a record changes it.
        summary = state.summary if state is not None else _NO_BYTES
        if state is not None and state.tls is not None:
            self._end_of_streams(conn, state)
        tcp = _tcp_facts(conn)
        if conn.flow_id == self.keep_events_for:
            self.kept_tcp = tcp
        certs, leaf, chain_len = self._cert_cache.assess(summary, conn.start)
        cert_fields = self._cert_cache.leaf_fields(leaf) if leaf is not None else None
        verdict = decide(summary, tcp, certs, self.last_ts)
        ch, sh = summary.client_hello, summary.server_hello_msg
        if ch is not None:
            ja3_hash, ja4_text, *offered = self._fingerprints.client(ch)
        else:
            ja3_hash = ja4_text = offered = None  # type: ignore[assignment]
        # By position, in build_record's order: twenty keywords cost ~10,000 instructions per connection
        return build_record(
            self.capture_name, conn.flow_id, (conn.client_ip, conn.client_port), (conn.server_ip, conn.server_port),
            conn.start, conn.last_ts, conn.first_frame, summary, verdict, tcp.client.syn_ts, tcp.server.synack_ts,
            leaf, chain_len, ja3_hash, self._fingerprints.server(sh) if sh is not None else None, ja4_text,
            cert_fields, offered,  # type: ignore[arg-type]
        )


# A connection without a server Certificate message: no view, no leaf, no chain length (frozen, so shared).
_NO_CERTIFICATE = (CertView(), None, None)


class _CertCache:
    """Certificate checks, remembered per (chain, server name, what the capture time makes of each certificate).

    Why: the checks (decoding, path building, signature verification) are the largest per-connection cost, and
    real traffic shows the same few chains over and over. `check_chain` reads the capture time only to compare it
    with each certificate's validity (expired, not yet valid, expires within EXPIRES_SOON, each with a rounded
    distance in days or hours in its text) and with a stapled OCSP response's times (never cached). So two
    connections with the same chain and server name get the same result when every certificate falls in the same
    case with the same rounded distance: that tuple is part of the key. The one per-connection part, the frame
    number in the first fact, is put back for each connection.
    """

    MAX_ENTRIES = 4096  # results (and decoded certificates) remembered; emptied when full: memory stays bounded

    def __init__(self, trust: Any) -> None:
        # None: the default store (Mozilla's roots), loaded at the first chain checked. Why not at once: loading
        # it and analyzers.certchecks, which loads cryptography, is ~40 % of tlsflow's start-up, and a capture
        # without a certificate in the clear (TLS 1.3, resets, refused connections) never needs them.
        self._trust = trust
        # analyzers.certchecks' EXPIRES_SOON and _days, bound at the first certificate (`_describe`): an import
        # statement in `_timing` cost ~3,000 instructions each time a certificate was not plainly valid.
        self._expires_soon: Any = None
        self._days: Any = None
        self._datetime: Any = None
        self._entries: dict[tuple[Any, ...], tuple[int, tuple[Any, Any, Any]]] = {}
        self._infos: dict[bytes, tuple[Any, float, float]] = {}
        self._leaf_fields: dict[int, tuple[Any, CertificateFields]] = {}

    @property
    def trust(self) -> Any:
        trust = self._trust
        if trust is None:
            from analyzers.certchecks import TrustStore

            trust = self._trust = TrustStore.default()
        return trust

    def leaf_fields(self, leaf: Any) -> CertificateFields:
        """`certificate_fields(leaf)`, remembered with the leaf: a cached result hands the same leaf object out
        connection after connection. Keyed by identity; the entry holds the leaf, so its id is not reused while
        remembered."""
        entry = self._leaf_fields.get(id(leaf))
        if entry is None or entry[0] is not leaf:
            if len(self._leaf_fields) >= self.MAX_ENTRIES:
                self._leaf_fields.clear()
            entry = self._leaf_fields[id(leaf)] = (leaf, certificate_fields(leaf))
        return entry[1]

    def assess(self, summary: HandshakeSummary, start: float) -> tuple[Any, Any, Any]:
        """The certificate view of a connection that started at capture time `start`."""
        cert_msg = summary.server_certificate
        if cert_msg is None:
            return _NO_CERTIFICATE  # what assess_certificates gives then, without building it again
        if summary.certificate_status is not None:
            return assess_certificates(summary, at=start, trust=self.trust)
        ders = tuple(getattr(cert_msg.message, "certificates", ()))
        timing = self._timing(ders, start) if ders else None
        if timing is None:
            return assess_certificates(summary, at=start, trust=self.trust)
        ch = summary.client_hello
        key = (ders, ch.sni if ch is not None else None, timing)
        entry = self._entries.get(key)
        frame = cert_msg.frame
        if entry is not None:
            cached_frame, result = entry
            if cached_frame == frame:
                return result
            view, leaf, chain_len = result
            old, new = f"frame {cached_frame}:", f"frame {frame}:"
            facts = view.facts
            if facts and facts[0].startswith(old):
                facts = (new + facts[0][len(old):], *facts[1:])
                # CertView's fields spelled out: dataclasses.replace costs several microseconds per connection
                return CertView(findings=view.findings, facts=facts, valid_at_capture_time=view.valid_at_capture_time,
                                interception=view.interception, warnings=view.warnings), leaf, chain_len
        result = assess_certificates(summary, at=start, trust=self.trust)
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (frame, result)
        return result

    def _timing(self, ders: tuple[bytes, ...], start: float) -> tuple[Any, ...] | None:
        """How `check_chain` sees the capture time `start` against each certificate (its validity cases and their
        texts), or None when a certificate does not decode or the time is not a date (then nothing is cached)."""
        infos = self._infos
        out = []
        at = None
        for der in ders:
            known = infos.get(der)
            if known is None:
                if len(infos) >= self.MAX_ENTRIES:
                    infos.clear()
                if self._days is None:
                    from analyzers.certchecks import EXPIRES_SOON, _days, capture_datetime

                    self._expires_soon, self._days, self._datetime = EXPIRES_SOON, _days, capture_datetime
                known = infos[der] = self._describe(der)
            info, plainly_valid_from, plainly_valid_until = known
            if info is None:
                return None
            if plainly_valid_from < start < plainly_valid_until:
                out.append(None)  # valid, and not expiring within EXPIRES_SOON: the common case, without datetimes
                continue
            if at is None:
                at = self._datetime(start)
                if at is None:
                    return None
            days = self._days
            not_before, not_after = info.not_before, info.not_after
            if at > not_after:
                out.append(("expired", days(at - not_after)))
            elif at < not_before:
                out.append(("not_yet_valid", days(not_before - at)))
            elif not_after - at <= self._expires_soon:
                out.append(("expires_soon", days(not_after - at)))
            else:
                out.append(None)
        return tuple(out)

    @staticmethod
    def _describe(der: bytes) -> tuple[Any, float, float]:
        """(the decoded certificate or None when its validity is not readable, and the capture times between which
        it is plainly valid and not expiring soon). The window is narrowed by a millisecond at each end, so that a
        capture time near an edge, where the float timestamp and the datetime check could round apart, takes the
        exact datetime path."""
        from analyzers.certchecks import EXPIRES_SOON

        info = describe_certificate(der)
        not_before, not_after = getattr(info, "not_before", None), getattr(info, "not_after", None)
        if not isinstance(not_before, _dt.datetime) or not isinstance(not_after, _dt.datetime):
            return None, 0.0, 0.0
        if not_before.tzinfo is None or not_after.tzinfo is None:  # not the aware UTC times expected: no shortcut
            return info, float("inf"), float("-inf")
        try:
            return (info, not_before.timestamp() + 1e-3,
                    (not_after - EXPIRES_SOON).timestamp() - 1e-3)
        except (OverflowError, ValueError):  # a validity date out of the platform's timestamp range
            return info, float("inf"), float("-inf")


def feed_capture(analyzer: FlowAnalyzer, cap: Any, damage: list[CaptureError],
                 progress: Callable[[int, int | None], None] | None = None) -> Iterator[dict[str, Any]]:
    """Read an open capture into the analyzer, yielding the records of the connections that end meanwhile (not
    those still open at its end: `analyzer.finish()` gives them, or the next piece of a series goes on with them,
    tlsflow.series). Damage ends the reading: its CaptureError is appended to `damage`."""
    count = 0
    times = 0
    secrets_seen = 0
    secrets = cap.secrets
    # FlowAnalyzer.feed inlined: a generator per packet costs more than the loop around it.
    add = analyzer.reassembler.add
    on_event = analyzer._on_event
    try:
        for pkt in cap.packets(counter=analyzer.reassembler):
            if pkt.__class__ is float:
                # The time of segments the reassembler counted without a TcpPacket (count_lane ran no expiry):
                # the last one of each chunk of the file (pcap and pcapng alike): only the time is left to note.
                analyzer.last_ts = pkt  # type: ignore[assignment]
                times += 1
                if progress is not None and not times & 0xF:
                    progress(cap.bytes_read, cap.total_bytes)
                continue
            if len(secrets) != secrets_seen:  # a Decryption Secrets Block was read
                analyzer.add_secrets(secrets[secrets_seen:])
                secrets_seen = len(secrets)
            analyzer.last_ts = pkt.ts
            for event in add(pkt):
                record = on_event(event)
                if record is not None:
                    yield record
            count += 1
            if progress is not None and not count & 0x3FFF:
                progress(cap.bytes_read, cap.total_bytes)
    except CaptureError as exc:
        damage.append(exc)


def iter_flow_records(source: str | Path, *, capture_name: str | None = None, trust: Any = None,
                      report: CaptureReport | None = None, keylog: Any = None,
                      progress: Callable[[int, int | None], None] | None = None,
                      caches: RunCaches | None = None) -> Iterator[dict[str, Any]]:
    """Stream the contract records of one capture. A capture that breaks part-way still yields every connection
    seen before the damage; the error is then stored in `report.error` (or raised when no report is given).
    `keylog` (a tlsparse.keylog.KeyLog) decrypts handshakes; secrets in the capture's own pcapng Decryption Secrets
    Blocks are used as well. `caches`: a RunCaches shared with the run's other captures (made with `trust`)."""
    name = capture_name if capture_name is not None else str(source)
    raise_at_end = report is None
    report = report if report is not None else CaptureReport(capture=name)
    analyzer = FlowAnalyzer(name, trust=trust, keylog=keylog, caches=caches)
    damage: list[CaptureError] = []
    with open_capture(source) as cap:
        for record in feed_capture(analyzer, cap, damage, progress):
            report.flows += 1
            yield record
        for record in analyzer.finish():
            report.flows += 1
            yield record
        report.stats = cap.stats
        if progress is not None:
            progress(cap.bytes_read, cap.total_bytes)
    error = damage[0] if damage else None
    if error is not None:
        report.error = str(error)
        if raise_at_end:
            raise error
