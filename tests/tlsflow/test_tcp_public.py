"""Reassembly of every public capture in ../shared/captures/public against tshark's `follow,tcp,raw`.

For each TCP stream tshark follows, the bytes we deliver (gaps left out: tshark's raw follow omits lost bytes)
must equal tshark's, per endpoint, and every flow that carried data must be one of tshark's streams. Where we
deliver a gap, tshark must have flagged lost data on that stream (`tcp.analysis.lost_segment` or
`tcp.analysis.ack_lost_segment`). Skipped without the shared folder or tshark. Reads the captures with
`tlsflow.capture` (one tshark run per file: about 30 s in all, hence `slow`).
"""
from __future__ import annotations

import collections
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PUBLIC
from tlsflow.tcp import StreamChunk, TcpReassembler

capture = pytest.importorskip("tlsflow.capture")
TSHARK = shutil.which("tshark")
FILES = sorted(p for p in PUBLIC.rglob("*") if p.suffix in (".pcap", ".pcapng")) if PUBLIC.exists() else []

pytestmark = [pytest.mark.tools, pytest.mark.slow,
              pytest.mark.skipif(TSHARK is None, reason="tshark is not installed"),
              pytest.mark.skipif(not FILES, reason="../shared/captures/public is not present")]


def tshark_follow(path: Path, streams: int) -> list[dict]:
    """Every stream tshark follows among the first `streams` indices: its endpoints and each one's bytes."""
    args = [TSHARK, "-r", str(path), "-q"]
    for i in range(streams):
        args += ["-z", f"follow,tcp,raw,{i}"]
    text = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout
    result, current = [], None
    for line in text.splitlines():
        if line.startswith("Follow:"):
            current = {"nodes": {}, 0: bytearray(), 1: bytearray()}
            result.append(current)
        elif line.startswith("Node ") and current is not None:
            host, port = line.split(": ", 1)[1].rsplit(":", 1)
            current["nodes"][int(line[5])] = (host.strip("[]"), int(port))
        elif current is not None and line and not line.startswith(("=", "Filter")):
            current[1 if line.startswith("\t") else 0] += bytes.fromhex(line.strip())
    return [s for s in result if s["nodes"].get(0, ("", 0))[1]]


def streams_with_lost_data(path: Path) -> set[frozenset]:
    out = subprocess.run([TSHARK, "-r", str(path), "-Y", "tcp.analysis.lost_segment || tcp.analysis.ack_lost_segment",
                          "-T", "fields", "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport", "-e", "ip.dst",
                          "-e", "ipv6.dst", "-e", "tcp.dstport"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    pairs = set()
    for line in out.splitlines():
        src4, src6, sport, dst4, dst6, dport = line.split("\t")
        pairs.add(frozenset([(src4 or src6, int(sport)), (dst4 or dst6, int(dport))]))
    return pairs


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(PUBLIC)) for p in FILES])
def test_public_capture_streams_match_tshark(path: Path) -> None:
    r = TcpReassembler()
    with capture.open_capture(path) as cap:
        events = [e for p in cap.packets() for e in r.add(p)]
    events += r.finish()
    flows: dict[int, dict] = {}
    for e in events:
        flow = flows.setdefault(e.conn.flow_id, {"conn": e.conn, "client": bytearray(), "server": bytearray(),
                                                 "gaps": set()})
        if isinstance(e, StreamChunk):
            if e.gap:
                flow["gaps"].add(e.sender.value)
            else:
                flow[e.sender.value] += e.data
    theirs = tshark_follow(path, len(flows) + 2)
    pool = collections.defaultdict(list)
    for flow in flows.values():
        c = flow["conn"]
        pool[frozenset([(c.client_ip, c.client_port), (c.server_ip, c.server_port)])].append(flow)
    for stream in theirs:
        candidates = pool[frozenset(stream["nodes"].values())]
        assert candidates, f"no flow for tshark stream {stream['nodes']}"
        flow = candidates.pop(0)
        c = flow["conn"]
        by_endpoint = {(c.client_ip, c.client_port): bytes(flow["client"]),
                       (c.server_ip, c.server_port): bytes(flow["server"])}
        for node in (0, 1):
            assert by_endpoint[stream["nodes"][node]] == bytes(stream[node]), (c.flow_id, stream["nodes"][node])
    assert not [f for v in pool.values() for f in v if f["conn"].client.payload_bytes + f["conn"].server.payload_bytes]
    # A side never captured at all (one-way captures) has gaps tshark does not flag: its peer's ACKs are the
    # only evidence of its bytes.
    gapped = {frozenset([(f["conn"].client_ip, f["conn"].client_port), (f["conn"].server_ip, f["conn"].server_port)])
              for f in flows.values()
              if any(getattr(f["conn"], side).packets for side in f["gaps"])}
    if gapped:
        assert gapped <= streams_with_lost_data(path)
