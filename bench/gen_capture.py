"""Write a large, reproducible pcap of TLS traffic for benchmarks, out of a few real recorded TLS exchanges.

The TLS bytes are real (see `bench/record_handshakes.py`, replayed from `bench/real_streams.json`); everything
around them is synthesised here: many interleaved TCP connections with SYN/FIN/RST, correct sequence and
acknowledgement numbers, Ethernet/IPv4/TCP headers with valid checksums, and advancing timestamps. The mix aims
at the production workload: about 22,000 connections and 1.1 million packets per GB, mostly application data
after ~9 handshake packets per connection. All addresses are in 127.0.0.0/8; nothing is ever sent anywhere.

    python -m bench.gen_capture --size 50MB --seed 1 -o /tmp/bench.pcap

The same seed and size always give the same bytes. Writing is plain `struct` packing streamed to disk.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import struct
import sys
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from bench.record_handshakes import CLIENT, STREAMS_PATH, Session, load

MSS = 1460  # Ethernet MTU 1500 minus 20 bytes of IPv4 and 20 of TCP header (no TCP options on data segments)
SERVER_PORT = 443
SERVER_ADDRESSES = {"www.example.com": "127.0.10.1", "api.example.net": "127.0.10.2"}
CAPTURE_START_US = 1_767_225_600 * 1_000_000  # 2026-01-01T00:00:00Z: fixed, so output does not depend on the clock
# Receivers with GRO acknowledge coalesced segments ("stretch ACKs"); one pure ACK per three data segments also
# puts the packet count where the production workload has it (~1.1 M packets per GB).
ACK_EVERY_SEGMENTS = 3
CONCURRENT_CONNECTIONS = 48  # open at once, interleaved; fewer for small captures (see `generate`)

# Share of connections per kind of recorded exchange; the rest of a session's choice is its server name.
KIND_WEIGHTS = {
    "tls13-rsa": 38,
    "tls13-ecdsa": 20,
    "tls12-ecdhe-rsa": 18,
    "tls12-ecdhe-ecdsa": 8,
    "tls12-rsa-kx": 4,
    "tls13-unknown-ca": 5,
    "tls12-handshake-failure": 4,
    "tls13-rst-after-client-hello": 3,
}

# TCP flags
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

PCAP_GLOBAL_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # microseconds, LINKTYPE_ETHERNET
_record_header = struct.Struct("<IIII").pack
_ip_header = struct.Struct("!BBHHHBBH4s4s").pack
_tcp_header = struct.Struct("!HHIIBBHHH").pack
_ETHERNET_IPV4 = bytes(12) + b"\x08\x00"  # loopback captures carry all-zero MAC addresses
_SYN_OPTIONS = struct.pack("!BBH", 2, 4, MSS)  # MSS option only


def parse_size(text: str) -> int:
    """'50MB' -> 50_000_000, '1GiB' -> 2**30, '200KB', '123' (bytes)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    unit = (m.group(2) or "").lower().rstrip("b")
    scale = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
             "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}.get(unit)
    if scale is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return int(float(m.group(1)) * scale)


def ones_complement_sum(data: bytes) -> int:
    """Sum of big-endian 16-bit words (RFC 1071), not yet folded."""
    if len(data) % 2:
        data += b"\x00"
    words = array("H", data)
    if sys.byteorder == "little":
        words.byteswap()
    return sum(words)


def _addr_words(addr: bytes) -> int:
    return (addr[0] << 8 | addr[1]) + (addr[2] << 8 | addr[3])


@dataclass(frozen=True, slots=True)
class Segment:
    """One packet a connection will send: direction (True = client to server), TCP flags, payload."""

    from_client: bool
    flags: int
    payload: bytes
    payload_sum: int


def _segments(from_client: bool, data: bytes, flags: int = PSH | ACK) -> list[Segment]:
    """Cut one direction's bytes into MSS-sized segments; PSH on the last one, as senders do."""
    out = []
    for start in range(0, len(data), MSS):
        chunk = data[start : start + MSS]
        last = start + MSS >= len(data)
        out.append(Segment(from_client, flags if last else ACK, chunk, ones_complement_sum(chunk)))
    return out


def _bare(from_client: bool, flags: int) -> Segment:
    return Segment(from_client, flags, b"", 0)


@dataclass
class SegmentCache:
    """Segmented payloads are reused across connections, so each distinct cut is summed only once."""

    handshakes: dict[int, list[list[Segment]]] = field(default_factory=dict)
    responses: dict[tuple[int, int, int], list[Segment]] = field(default_factory=dict)
    requests: dict[int, list[Segment]] = field(default_factory=dict)
    closes: dict[tuple[int, bool], list[Segment]] = field(default_factory=dict)

    def flights(self, idx: int, session: Session) -> list[list[Segment]]:
        if idx not in self.handshakes:
            self.handshakes[idx] = [_segments(d == CLIENT, b) for d, b in session.flights]
        return self.handshakes[idx]

    def request(self, idx: int, session: Session) -> list[Segment]:
        if idx not in self.requests:
            self.requests[idx] = _segments(True, b"".join(session.request_records))
        return self.requests[idx]

    def response(self, idx: int, session: Session, full_records: int, tail: int) -> list[Segment]:
        key = (idx, full_records, tail)
        if key not in self.responses:
            body = session.response_records[16384] * full_records + session.response_records[tail]
            out: list[Segment] = []
            for n, seg in enumerate(_segments(False, body), 1):
                out.append(seg)
                if n % ACK_EVERY_SEGMENTS == 0:
                    out.append(_bare(True, ACK))
            self.responses[key] = out
        return self.responses[key]

    def close_notify(self, idx: int, session: Session, from_client: bool) -> list[Segment]:
        key = (idx, from_client)
        if key not in self.closes:
            self.closes[key] = _segments(from_client, session.close_notify["c2s" if from_client else "s2c"])
        return self.closes[key]


# `--bulk`: connections that download BULK_RECORDS full records (~10 MB) in one response
BULK_RECORDS = 600


def connection_script(rng: random.Random, idx: int, session: Session, cache: SegmentCache,
                      bulk: bool = False) -> list[Segment]:
    """Every packet of one connection, in order, from SYN to the last FIN/ACK or RST. `bulk` (a completed
    session): one request and a response of BULK_RECORDS full records instead of the usual exchanges."""
    script = [
        Segment(True, SYN, b"", 0),
        Segment(False, SYN | ACK, b"", 0),
        _bare(True, ACK),
    ]
    flights = cache.flights(idx, session)
    if session.outcome == "rst":
        script += flights[0]
        script.append(_bare(False, RST | ACK))
        return script
    for flight in flights:
        script += flight
    if session.outcome == "ok":
        if bulk:
            script += cache.request(idx, session)
            script += cache.response(idx, session, BULK_RECORDS, 256)
        # Keep-alive: a few request/response exchanges, response sizes drawn from a long-tailed distribution.
        for _ in range(0 if bulk else rng.choice((1, 1, 1, 2, 2, 3))):
            script += cache.request(idx, session)
            full = min(int(rng.expovariate(1 / 2.0)), 60)
            tail = rng.choice((4096, 1024, 256, 256))
            script += cache.response(idx, session, full, tail)
        script += cache.close_notify(idx, session, True)
        script += cache.close_notify(idx, session, False)
        closer = True
    else:
        closer = flights[-1][-1].from_client  # the side that sent the fatal alert hangs up
    script.append(_bare(closer, FIN | ACK))
    script.append(_bare(not closer, FIN | ACK))
    script.append(_bare(closer, ACK))
    return script


class Connection:
    """Walks a connection script, producing finished frames with correct seq/ack, IP ids and checksums."""

    __slots__ = ("addr", "const_ip", "const_tcp", "ip_id", "ports", "pos", "script", "seq")

    def __init__(self, rng: random.Random, script: list[Segment], client: bytes, server: bytes, sport: int) -> None:
        self.script = script
        self.pos = 0
        # index 0: client to server, 1: server to client
        self.seq = [rng.getrandbits(32), rng.getrandbits(32)]
        self.ip_id = [rng.getrandbits(16), rng.getrandbits(16)]
        self.addr = [(client, server), (server, client)]
        self.ports = [(sport, SERVER_PORT), (SERVER_PORT, sport)]
        pair_sum = _addr_words(client) + _addr_words(server)
        ttl_proto = 64 << 8 | 6
        # Parts of the checksums that do not change from packet to packet within a direction.
        self.const_ip = 0x4500 + 0x4000 + ttl_proto + pair_sum
        self.const_tcp = pair_sum + 6 + sport + SERVER_PORT + 65535

    @property
    def done(self) -> bool:
        return self.pos >= len(self.script)

    def next_frame(self) -> bytes:
        seg = self.script[self.pos]
        self.pos += 1
        d = 0 if seg.from_client else 1
        seq = self.seq[d]
        ack = self.seq[1 - d] if seg.flags & ACK else 0
        payload = seg.payload
        flags = seg.flags
        if flags & SYN:
            options = _SYN_OPTIONS
            options_sum = (2 << 8 | 4) + MSS
        else:
            options = b""
            options_sum = 0
        tcp_len = 20 + len(options) + len(payload)
        offset_flags = ((20 + len(options)) // 4) << 12 | flags
        s = (self.const_tcp + tcp_len + (seq >> 16) + (seq & 0xFFFF) + (ack >> 16) + (ack & 0xFFFF)
             + offset_flags + options_sum + seg.payload_sum)
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        tcp_csum = ~s & 0xFFFF
        total_len = 20 + tcp_len
        ip_id = self.ip_id[d]
        self.ip_id[d] = (ip_id + 1) & 0xFFFF
        s = self.const_ip + total_len + ip_id
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        src, dst = self.addr[d]
        sport, dport = self.ports[d]
        self.seq[d] = (seq + len(payload) + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF
        return b"".join((
            _ETHERNET_IPV4,
            _ip_header(0x45, 0, total_len, ip_id, 0x4000, 64, 6, ~s & 0xFFFF, src, dst),
            _tcp_header(sport, dport, seq, ack, offset_flags >> 8, flags, 65535, tcp_csum, 0),
            options,
            payload,
        ))


@dataclass
class Stats:
    connections: int = 0
    packets: int = 0
    bytes: int = 0
    kinds: Counter = field(default_factory=Counter)
    ok_kinds: frozenset[str] = frozenset()  # kinds whose handshake completes

    @property
    def client_hellos(self) -> int:
        return self.connections  # every connection carries exactly one ClientHello

    @property
    def completed_handshakes(self) -> int:
        return sum(n for k, n in self.kinds.items() if k in self.ok_kinds)

    def as_dict(self) -> dict:
        return {
            "connections": self.connections,
            "packets": self.packets,
            "bytes": self.bytes,
            "client_hellos": self.client_hellos,
            "completed_handshakes": self.completed_handshakes,
            "kinds": dict(sorted(self.kinds.items())),
        }


class ClientAddresses:
    """Distinct client endpoints: a pool of 127/8 addresses, each with its own ephemeral port counter."""

    def __init__(self, rng: random.Random, count: int = 4000) -> None:
        seen: set[bytes] = set()
        while len(seen) < count:
            seen.add(bytes((127, rng.randint(1, 254), rng.randint(0, 255), rng.randint(1, 254))))
        self.addresses = sorted(seen)
        self.next_port = [rng.randint(32768, 40000) for _ in self.addresses]

    def take(self, rng: random.Random) -> tuple[bytes, int]:
        i = rng.randrange(len(self.addresses))
        port = self.next_port[i]
        nxt = port + rng.randint(1, 8)
        self.next_port[i] = nxt if nxt <= 60999 else 32768 + (nxt - 61000)
        return self.addresses[i], port


def generate(out: BinaryIO, size: int, seed: int, sessions: list[Session] | None = None, bulk: str = "none",
             concurrent: int | None = None) -> Stats:
    """Write a pcap of about `size` bytes (it stops opening connections there and lets open ones finish).
    `bulk`: "first", the first CONCURRENT_CONNECTIONS completed sessions are downloads of ~10 MB each (the
    capture's first ~half, for a 1 GB one, is long transfers, the rest the usual mix); "last", every completed
    session opened past half of `size` is one (the other way round): captures whose cost per byte is uneven,
    for `--jobs` on one file (the usual mix: "none"). `concurrent`: connections open at once (a busy link's flow
    table: the reader's memory grows with it, not with the capture's size)."""
    sessions = sessions if sessions is not None else load(STREAMS_PATH)
    rng = random.Random(seed)
    choices = [i for i, s in enumerate(sessions) if s.kind in KIND_WEIGHTS]
    weights = [KIND_WEIGHTS[sessions[i].kind] for i in choices]
    cache = SegmentCache()
    clients = ClientAddresses(rng)
    stats = Stats(ok_kinds=frozenset(s.kind for s in sessions if s.outcome == "ok"))
    now_us = CAPTURE_START_US
    active: list[Connection] = []
    buffer: list[bytes] = [PCAP_GLOBAL_HEADER]
    buffered, written = len(PCAP_GLOBAL_HEADER), 0
    randrange, expovariate = rng.randrange, rng.expovariate
    # A connection averages ~45 KB, so a small capture with 48 open at once would overshoot its size many times.
    # More than that at once is asked for explicitly: the file then ends about `concurrent` connections past
    # `size` (~45 KB each).
    if concurrent is None:
        concurrent = CONCURRENT_CONNECTIONS
    concurrency = concurrent if concurrent > CONCURRENT_CONNECTIONS else max(2, min(concurrent, size // 100_000))

    def open_connection() -> None:
        idx = rng.choices(choices, weights)[0]
        session = sessions[idx]
        client, sport = clients.take(rng)
        server = bytes(int(x) for x in SERVER_ADDRESSES[session.server_name].split("."))
        bulky = (stats.connections < CONCURRENT_CONNECTIONS if bulk == "first"
                 else bulk == "last" and written + buffered >= size // 2)
        script = connection_script(rng, idx, session, cache, bulky)
        active.append(Connection(rng, script, client, server, sport))
        stats.connections += 1
        stats.kinds[session.kind] += 1

    if concurrency > CONCURRENT_CONNECTIONS:
        # A busy link is not quiet when the capture starts: its connections are under way. Each of the first ones
        # begins at a random point of its script, as tcpdump would pick it up (the frames before are never
        # written), so that connections open and end at a steady rate from the first packet on.
        while len(active) < concurrency:
            open_connection()
            started = active[-1]
            for _ in range(rng.randrange(len(started.script))):
                started.next_frame()
    while True:
        if written + buffered < size:
            while len(active) < concurrency:
                open_connection()
        elif not active:
            break
        i = randrange(len(active))
        conn = active[i]
        frame = conn.next_frame()
        if conn.done:
            active[i] = active[-1]
            active.pop()
        now_us += 1 + int(expovariate(1 / 40.0))  # ~25,000 packets per second of capture time
        n = len(frame)
        buffer.append(_record_header(now_us // 1_000_000, now_us % 1_000_000, n, n))
        buffer.append(frame)
        buffered += 16 + n
        stats.packets += 1
        if buffered >= 1 << 22:
            out.write(b"".join(buffer))
            written += buffered
            buffer.clear()
            buffered = 0
    out.write(b"".join(buffer))
    stats.bytes = written + buffered
    return stats


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=parse_size, default=parse_size("50MB"), help="target size: 200KB, 50MB, 1GB")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--manifest", type=Path, help="also write the counts (connections, packets, kinds) as JSON")
    parser.add_argument("--bulk", choices=("none", "first", "last"), default="none",
                        help="downloads of ~10 MB in the first or the second half (uneven cost per byte)")
    parser.add_argument("--concurrent", type=int, default=None,
                        help=f"connections open at once (default {CONCURRENT_CONNECTIONS}; a busy link has thousands)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with open(args.output, "wb", buffering=0) as out:
        stats = generate(out, args.size, args.seed, bulk=args.bulk, concurrent=args.concurrent)
    elapsed = time.perf_counter() - started
    summary = stats.as_dict()
    if args.manifest:
        args.manifest.write_text(json.dumps(summary, indent=1) + "\n")
    print(
        f"{args.output}: {stats.bytes / 1e6:.1f} MB, {stats.packets} packets, {stats.connections} connections "
        f"({stats.completed_handshakes} completed handshakes) in {elapsed:.1f} s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
