"""`--jobs` byte ranges on a busy link: thousands of connections at once, so that every cut falls inside many of
them. A later range's worker sees the rest of each as a flow without a SYN (a phantom of the earlier worker's
connection); the 4-tuples in flight just before its cut (`parallel_ranges.in_flight_at`) are kept cheap there (no
TLS parse, not followed past the range). The rows stay one process's; a cheap flow that turns out to be a
connection of its own range makes the parent analyse the file in one process."""
from __future__ import annotations

import io
import socket
import struct
from pathlib import Path

import pytest

from bench import gen_capture
from tlsflow import parallel_ranges
from tlsflow.capture.split import find_cuts
from tlsflow.parallel_ranges import ranges_in_one_process
from tlsflow.pipeline import iter_flow_records

SEED = 5


@pytest.fixture(scope="module")
def busy(tmp_path_factory) -> Path:
    """Real TLS sessions (bench/real_streams.json), 100 connections at once from the first packet on, as a capture
    of a busy link starts: the connections already under way have no SYN in it."""
    out = io.BytesIO()
    gen_capture.generate(out, 12_000_000, SEED, concurrent=100)
    path = tmp_path_factory.mktemp("busy") / "busy.pcap"
    path.write_bytes(out.getvalue())
    return path


@pytest.fixture
def cheap_records(monkeypatch) -> list[tuple]:
    """The `_range` entries of the records the parent places that a worker marked cheap."""
    seen: list[tuple] = []
    original = parallel_ranges._Placer._place

    def watching(self, records, out):
        seen.extend(r["_range"] for r in records if len(r["_range"]) == 4)
        return original(self, records, out)

    monkeypatch.setattr(parallel_ranges._Placer, "_place", watching)
    return seen


def _single(path: Path) -> list[dict]:
    return sorted(iter_flow_records(str(path)), key=lambda r: r["flow_id"])


def _in_ranges(path: Path, targets: list[int]) -> list[dict]:
    out = list(ranges_in_one_process(str(path), targets, batch_packets=64))
    assert all(isinstance(r, dict) for r in out), [r for r in out if not isinstance(r, dict)]
    return sorted(out, key=lambda r: r["flow_id"])


def test_busy_link_ranges_give_one_process_rows(busy, fallbacks, cheap_records):
    single = _single(busy)
    size = busy.stat().st_size
    # Connections under way at the capture's start (no SYN), and many open across any cut.
    assert sum(1 for r in single if r["first_frame"] < 100 and r["history"] is None) > 30
    for targets in ([size // 3], [size // 2], [size * 2 // 3], [size // 4, size // 2, size * 3 // 4]):
        assert _in_ranges(busy, targets) == single, targets
    assert not fallbacks
    # The later workers kept the rest of the connections in flight at their cuts cheap (about a hundred per cut),
    # and every one of those was another worker's connection.
    assert len(cheap_records) > 300


def test_in_flight_at_finds_the_connections_open_across_the_cut(busy):
    size = busy.stat().st_size
    cut = next(find_cuts(str(busy), [size // 2]))
    far, near = (next(find_cuts(str(busy), [target])) for target in parallel_ranges.window_targets(size // 2))
    found = parallel_ranges.in_flight_at(str(busy), (parallel_ranges._fields(far), parallel_ranges._fields(near)),
                                         cut.frames_before + 1)
    single = _single(busy)
    times = {}
    with open(busy, "rb") as f:  # frame -> time
        data = f.read()
    pos, frame = 24, 0
    while pos + 16 <= len(data):
        sec, usec, caplen, _ = struct.unpack_from("<IIII", data, pos)
        frame += 1
        times[frame] = sec + usec / 1e6
        pos += 16 + caplen
    at_cut = times[cut.frames_before + 1]
    across = [r for r in single if r["first_frame"] <= cut.frames_before and r["end"] >= at_cut]
    assert len(across) > 60

    def key(r: dict) -> bytes:
        (a, ap), (b, bp) = (x.rsplit(":", 1) for x in (r["client"], r["server"]))
        return socket.inet_aton(a) + socket.inet_aton(b) + struct.pack("!HH", int(ap), int(bp))

    # (the server's segments are keyed the other way round)
    assert sum(1 for r in across if key(r) in found) >= len(across) * 0.9


def test_the_window_ends_before_the_packet_at_the_cut(busy):
    # The busy capture starts with connections under way: their first packets carry no SYN. Cut right at one of
    # them (its 4-tuple seen nowhere before): the window before that cut must not count it in flight, or the later
    # worker keeps that connection of its own cheap and the parent has to read the file again in one process.
    single = _single(busy)
    first_of = {}
    for r in single:
        first_of.setdefault((r["client"], r["server"]), r["first_frame"])
    joined = sorted(r["first_frame"] for r in single if r["history"] is None and r["first_frame"] > 20
                    and first_of[(r["client"], r["server"])] == r["first_frame"])
    assert joined
    cut_frame = joined[0]
    everything = (next(find_cuts(str(busy), [0])).offset, 0, b"")
    found = parallel_ranges.flows_in_window(str(busy), everything, cut_frame)
    at_cut = next(r for r in single if r["first_frame"] == cut_frame)
    (a, ap), (b, bp) = (x.rsplit(":", 1) for x in (at_cut["client"], at_cut["server"]))
    keys = {socket.inet_aton(a) + socket.inet_aton(b) + struct.pack("!HH", int(ap), int(bp)),
            socket.inet_aton(b) + socket.inet_aton(a) + struct.pack("!HH", int(bp), int(ap))}
    assert not keys & found
    # ... while the packets before the cut are all in it: one more frame, and that connection is found too.
    assert keys & parallel_ranges.flows_in_window(str(busy), everything, cut_frame + 1)


def _records(path: Path) -> tuple[bytes, list[bytes]]:
    data = path.read_bytes()
    pos, out = 24, []
    while pos + 16 <= len(data):
        caplen = struct.unpack_from("<I", data, pos + 8)[0]
        out.append(data[pos:pos + 16 + caplen])
        pos += 16 + caplen
    return data[:24], out


def test_a_cheap_flow_of_its_own_range_falls_back_to_one_process(busy, tmp_path, monkeypatch, fallbacks,
                                                                  cheap_records):
    """A connection that opens after the cut whose SYN and SYN-ACK the capture lost (no SYN: like a phantom),
    on a 4-tuple taken for one in flight: made cheap, it is not another worker's, so the parent cannot use that
    range's rows and analyses the file in one process. The rows are one process's."""
    header, records = _records(busy)
    size = busy.stat().st_size
    cut = next(find_cuts(str(busy), [size // 2]))
    # The first SYN after the cut: its connection's SYN and SYN-ACK go.
    offset, index = 24, 0
    while offset < cut.offset:
        offset += len(records[index])
        index += 1
    while not (records[index][16 + 14 + 33] & 0x02):  # (TCP flags)
        index += 1
    syn = records[index]
    client = syn[16 + 14 + 12:16 + 14 + 20] + syn[16 + 14 + 20:16 + 14 + 24]  # addresses and ports, as on the wire
    server = client[4:8] + client[:4] + client[10:12] + client[8:10]

    def wire_key(record: bytes) -> bytes:
        return record[16 + 14 + 12:16 + 14 + 20] + record[16 + 14 + 20:16 + 14 + 24]

    kept = [r for r in records if not (wire_key(r) in (client, server) and r[16 + 14 + 33] & 0x02)]
    assert len(kept) == len(records) - 2
    lost = tmp_path / "lost_syn.pcap"
    lost.write_bytes(header + b"".join(kept))
    original = parallel_ranges.in_flight_at
    monkeypatch.setattr(parallel_ranges, "in_flight_at",
                        lambda *args: original(*args) | {client, server})
    single = _single(lost)
    assert _in_ranges(lost, [size // 2]) == single
    assert fallbacks


def test_a_worker_waiting_for_the_parent_still_reads_what_the_parent_writes(busy):
    """A range's worker waits for the parent to read its messages when the queue is full (and, before its process
    exits, for its last ones to be taken); the parent may meanwhile be writing it a list of phantoms to watch
    longer than a pipe holds (a busy link: thousands). Both then waited for ever (seen with 20,000 connections at
    once, --jobs 2). Now the worker reads the parent's messages while it waits, and closes its end before it
    exits: the parent's writes end, and so does the worker, with every message."""
    import queue as queues
    import threading

    from tlsflow.parallel import start_method

    ctx = start_method()
    queue = ctx.Queue(1)  # (room for one message: the worker soon waits for the parent)
    receive, send = ctx.Pipe(duplex=False)
    worker = ctx.Process(target=parallel_ranges._range_main,
                         args=(str(busy), 0, None, None, receive, None, None, queue, None, False), daemon=True)
    worker.start()
    receive.close()
    messages = [queue.get(timeout=60)]  # the parent reads one message, then writes for a while
    outcome: list[BaseException | None] = []

    def write() -> None:
        try:
            for _ in range(40):  # ~4 MB, far more than a pipe holds
                send.send(("watch", [(n, "127.0.0.1", 40000 + n % 20000, "127.0.10.1", 443) for n in range(4000)]))
            outcome.append(None)
        except OSError as exc:  # (the worker has ended: what `tell` ignores)
            outcome.append(exc)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join(timeout=60)
    assert not writer.is_alive(), "the parent's write waited for a worker that was waiting for the parent"
    while True:
        try:
            index, message = queue.get(timeout=60)
        except queues.Empty:
            break
        messages.append((index, message))
        if message[0] in ("end", "crash"):
            break
    worker.join(timeout=30)
    assert worker.exitcode == 0
    kinds = [m[1][0] for m in messages]
    assert kinds[-1] == "end" and "crash" not in kinds and len(kinds) >= 3
