"""Property tests: any segmentation, order, duplication and loss of a stream reassembles to that stream, with the
lost bytes as explicit gaps at the right offsets and first data winning on overlaps."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tlsflow.packet import ACK, PSH, SYN, TcpPacket
from tlsflow.tcp import StreamChunk, TcpReassembler
from tlsparse.events import Sender


@st.composite
def segmented_stream(draw):  # type: ignore[no-untyped-def]
    size = draw(st.integers(1, 400))
    # Two versions of the stream: a segment carries one or the other, so overlaps may disagree.
    versions = [bytes(draw(st.binary(min_size=size, max_size=size))), bytes((i * 7 + 3) % 256 for i in range(size))]
    cuts = sorted(draw(st.sets(st.integers(1, size - 1), max_size=20))) if size > 1 else []
    bounds = list(zip([0, *cuts], [*cuts, size]))
    segs = [(a, b, 0) for a, b in bounds]
    # Extra overlapping segments (retransmissions, repacketised), possibly from the other version.
    for _ in range(draw(st.integers(0, 8))):
        a = draw(st.integers(0, size - 1))
        b = draw(st.integers(a + 1, min(size, a + 120)))
        segs.append((a, b, draw(st.integers(0, 1))))
    order = draw(st.permutations(range(len(segs))))
    lost = draw(st.sets(st.integers(0, len(bounds) - 1), max_size=3))  # indices into the base segmentation
    isn = draw(st.one_of(st.integers(0, (1 << 32) - 1), st.integers((1 << 32) - 300, (1 << 32) - 1)))
    return versions, [segs[i] for i in order if i not in lost], isn


def feed(segs, versions, isn: int, **kw):  # type: ignore[no-untyped-def]
    r = TcpReassembler(**kw)
    events = r.add(TcpPacket(frame=1, ts=1.0, ip_version=4, src="10.0.0.1", dst="10.0.0.2", sport=40000, dport=443,
                             seq=isn, ack=0, flags=SYN, window=1000, payload=b"", ttl=64, ip_id=1))
    for i, (a, b, v) in enumerate(segs):
        events += r.add(TcpPacket(frame=i + 2, ts=1.0 + i * 1e-3, ip_version=4, src="10.0.0.1", dst="10.0.0.2",
                                  sport=40000, dport=443, seq=(isn + 1 + a) & 0xFFFFFFFF, ack=0,
                                  flags=ACK | PSH, window=1000, payload=versions[v][a:b], ttl=64, ip_id=i + 2))
    return events + r.finish()


def first_arrivals(segs, size: int) -> list[int | None]:  # type: ignore[no-untyped-def]
    """For each offset, the version of the first segment that carried it (None: never received)."""
    owner: list[int | None] = [None] * size
    for a, b, v in segs:
        for x in range(a, b):
            if owner[x] is None:
                owner[x] = v
    return owner


@settings(max_examples=300, deadline=None)
@given(segmented_stream())
def test_reassembly_delivers_first_data_and_explicit_gaps(case) -> None:  # type: ignore[no-untyped-def]
    versions, segs, isn = case
    size = len(versions[0])
    events = feed(segs, versions, isn)
    chunks = [e for e in events if isinstance(e, StreamChunk)]
    assert all(c.sender is Sender.CLIENT for c in chunks)
    owner = first_arrivals(segs, size)
    end = max((i + 1 for i, o in enumerate(owner) if o is not None), default=0)
    pos = 0
    for c in chunks:
        assert c.offset == pos
        if c.gap:
            assert c.data == b"" and all(o is None for o in owner[pos:pos + c.gap])
            pos += c.gap
        else:
            assert c.data == bytes(versions[owner[x]][x] for x in range(pos, pos + len(c.data)))
            pos += len(c.data)
    assert pos == end  # everything received was delivered, nothing past it invented
    conn = chunks[0].conn if chunks else None
    if conn is not None:
        mismatch = any(versions[0][a:b] != versions[1][a:b] for a, b, v in segs if v == 1)
        if "overlap_data_mismatch" in conn.anomalies:
            assert mismatch


@settings(max_examples=150, deadline=None)
@given(segmented_stream(), st.integers(1, 64), st.integers(1, 4))
def test_small_caps_never_lose_or_invent_bytes(case, cap_bytes: int, cap_segments: int) -> None:  # type: ignore[no-untyped-def]
    """With tiny buffers holes are declared early; bytes that arrive after their hole was declared are dropped,
    but what is delivered is always the stream's bytes at the right offsets, in order."""
    versions, segs, isn = case
    segs = [(a, b, 0) for a, b, _ in segs]  # one version: delivered bytes must equal the stream
    events = feed(segs, versions, isn, max_buffer_per_direction=cap_bytes, max_segments_per_direction=cap_segments)
    pos = 0
    for c in (e for e in events if isinstance(e, StreamChunk)):
        assert c.offset == pos
        if not c.gap:
            assert c.data == versions[0][pos:pos + len(c.data)]
        pos += c.gap or len(c.data)
    assert pos <= len(versions[0])


@settings(max_examples=200, deadline=None)
@given(segmented_stream(), st.data())
def test_receiver_acks_declare_only_lost_bytes_as_gaps(case, data) -> None:  # type: ignore[no-untyped-def]
    """The receiver got every segment (the capture lost some) and ACKs its contiguous prefix after some of them.
    Delivered bytes are always the stream's; every byte the capture never saw is inside a gap; the stream
    reaches as far as the data seen or the highest ACK."""
    versions, segs, isn = case
    segs = [(a, b, 0) for a, b, _ in segs]
    size = len(versions[0])
    r = TcpReassembler()
    events = r.add(TcpPacket(frame=1, ts=1.0, ip_version=4, src="10.0.0.1", dst="10.0.0.2", sport=40000, dport=443,
                             seq=isn, ack=0, flags=SYN, window=1000, payload=b"", ttl=64, ip_id=1))
    covered = [False] * size  # what the receiver holds: everything sent so far, captured or not
    captured = [False] * size
    frame = 1
    highest_ack = 0
    # Lost segments were still sent: the receiver gets them at a random point among the captured ones.
    lost = list(_missing_ranges(segs, size))
    arrivals = [("seg", s) for s in segs] + [("lost", s) for s in lost]
    order = data.draw(st.permutations(range(len(arrivals))))
    for i in order:
        kind, (a, b, *_) = arrivals[i]
        for x in range(a, b):
            covered[x] = True
        frame += 1
        if kind == "seg":
            for x in range(a, b):
                captured[x] = True
            events += r.add(TcpPacket(frame=frame, ts=1.0 + frame * 1e-3, ip_version=4, src="10.0.0.1",
                                      dst="10.0.0.2", sport=40000, dport=443, seq=(isn + 1 + a) & 0xFFFFFFFF, ack=0,
                                      flags=ACK | PSH, window=1000, payload=versions[0][a:b], ttl=64, ip_id=frame))
        if data.draw(st.booleans()):
            prefix = next((x for x in range(size) if not covered[x]), size)
            highest_ack = max(highest_ack, prefix)
            frame += 1
            events += r.add(TcpPacket(frame=frame, ts=1.0 + frame * 1e-3, ip_version=4, src="10.0.0.2",
                                      dst="10.0.0.1", sport=443, dport=40000, seq=7, ack=(isn + 1 + prefix) & 0xFFFFFFFF,
                                      flags=ACK, window=1000, payload=b"", ttl=64, ip_id=frame))
    events += r.finish()
    pos = 0
    gap_bytes = set()
    for c in (e for e in events if isinstance(e, StreamChunk)):
        assert c.offset == pos
        if c.gap:
            gap_bytes.update(range(pos, pos + c.gap))
        else:
            assert c.data == versions[0][pos:pos + len(c.data)]
        pos += c.gap or len(c.data)
    seen_end = max((x + 1 for x in range(size) if captured[x]), default=0)
    assert pos == max(seen_end, highest_ack)
    assert {x for x in range(pos) if not captured[x]} <= gap_bytes


def _missing_ranges(segs, size: int):  # type: ignore[no-untyped-def]
    have = [False] * size
    for a, b, _ in segs:
        for x in range(a, b):
            have[x] = True
    x = 0
    while x < size:
        if have[x]:
            x += 1
            continue
        y = x
        while y < size and not have[y]:
            y += 1
        yield (x, y)
        x = y
