"""The pcap and pcapng walkers build the TcpPackets of plain IPv4/TCP frames themselves (from the fields their fast
lane unpacked) when a reader has a fast lane: the packets, their order, the timestamps yielded for the others and
the capture's statistics are those the frame handlers give, for every kind of frame (VLAN tags, IP options,
fragments, IPv6 (with or without extension headers), other protocols, invalid TCP data offsets, IP lengths shorter or longer than the frame, cut by
the snap length), in Ethernet, Linux cooked (v1, v2) and raw-IP captures."""
from __future__ import annotations

import dataclasses
import socket
import struct
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import capture_file_bytes, link_frame
from tlsflow.capture import linktypes as lt
from tlsflow.capture import open_capture
from tlsflow.capture.pcap import four_tuple_texts

ADDRESSES4 = ["10.0.0.1", "10.0.0.2", "192.0.2.200", "255.255.255.255", "0.0.0.0"]
ADDRESSES6 = ["2001:db8::1", "::1"]


class NoLane:
    """A fast lane that knows no 4-tuple (`count_lane` is never reached): every plain frame is built by the
    walker."""

    def __init__(self) -> None:
        self.lanes = {b"not a 4-tuple": None}

    def count_lane(self, *args: object) -> bool:
        raise AssertionError("no lane was known")


@st.composite
def frames(draw: Any) -> tuple[bytes, int]:
    """A frame's network layer on: (bytes, snap length cut), mostly plain IPv4/TCP, else one thing changed."""
    change = draw(st.sampled_from(["none"] * 6 + ["options", "fragment", "udp", "offset", "short_total",
                                                  "long_total", "zero_total", "ipv6", "cut", "padding"]))
    payload = draw(st.binary(max_size=40))
    tcp_options = b"\x01" * 4 * draw(st.integers(0, 3))
    offset_words = (20 + len(tcp_options)) // 4
    if change == "offset":
        offset_words = draw(st.sampled_from([0, 1, 4, 15]))
    tcp = struct.pack("!HHIIBBHHH", draw(st.integers(0, 0xFFFF)), draw(st.sampled_from([443, 8443, 40000])),
                      draw(st.integers(0, (1 << 32) - 1)), draw(st.integers(0, (1 << 32) - 1)), offset_words << 4,
                      draw(st.integers(0, 0xFF)), draw(st.integers(0, 0xFFFF)), 0, 0) + tcp_options + payload
    if change == "ipv6":  # plain (the walkers' IPv6 lane builds it), or one thing changed
        variant = draw(st.sampled_from(["plain"] * 3 + ["extension", "zero_length", "long_length", "short_length",
                                                        "cut", "padding", "traffic_class"]))
        src, dst = draw(st.sampled_from(ADDRESSES6)), draw(st.sampled_from(ADDRESSES6))
        body, next_header = tcp, 6
        if variant == "extension":  # a hop-by-hop options header (8 bytes of padding options) before TCP
            body, next_header = bytes([6, 0, 1, 4, 0, 0, 0, 0]) + tcp, 0
        length = {"zero_length": 0, "long_length": len(body) + 9,
                  "short_length": max(len(body) - 7, 0)}.get(variant, len(body))
        first_word = 6 << 28 | (0x0B800123 if variant == "traffic_class" else 0)
        ip = struct.pack("!IHBB16s16s", first_word, length, next_header, draw(st.integers(0, 255)),
                         socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)) + body
        if variant == "padding":
            ip += b"\x00" * draw(st.integers(1, 20))
        return ip, (draw(st.integers(1, 30)) if variant == "cut" else 0)
    ip_options = b"\x01\x01\x01\x00" if change == "options" else b""
    total = 20 + len(ip_options) + len(tcp)
    if change == "short_total":
        total = draw(st.integers(20, total))
    elif change == "long_total":
        total += draw(st.integers(1, 30))
    elif change == "zero_total":
        total = 0
    frag = draw(st.sampled_from([0x2001, 0x0010, 0x2000])) if change == "fragment" else draw(
        st.sampled_from([0, 0x4000]))
    proto = 17 if change == "udp" else 6
    src, dst = draw(st.sampled_from(ADDRESSES4)), draw(st.sampled_from(ADDRESSES4))
    ip = struct.pack("!BBHHHBBH4s4s", 0x45 + len(ip_options) // 4, 0, total, draw(st.integers(0, 0xFFFF)), frag,
                     draw(st.integers(0, 255)), proto, 0, socket.inet_aton(src), socket.inet_aton(dst))
    ip += ip_options + tcp
    if change == "padding":
        ip += b"\x00" * draw(st.integers(1, 20))
    cut = draw(st.integers(1, 30)) if change == "cut" else 0
    return ip, cut


def _write(path: Path, link_type: int, records: list[tuple[bytes, int]], pcapng: bool) -> None:
    """`records`: (frame, bytes cut off its end as a snap length would, at least one byte kept)."""
    path.write_bytes(capture_file_bytes(
        link_type, [(1_700_000_000_000_000 + 1000 * index, frame[:max(len(frame) - cut, 1)], len(frame))
                    for index, (frame, cut) in enumerate(records)], pcapng))


def _read(path: Path, counter: Any) -> tuple[list[Any], dict[str, Any]]:
    with open_capture(path) as cap:
        packets = list(cap.packets(counter=counter) if counter is not None else cap.packets())
        return packets, dataclasses.asdict(cap.stats)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(st.tuples(frames(), st.booleans()), min_size=1, max_size=25),
       link_type=st.sampled_from([lt.ETHERNET, lt.LINUX_SLL, lt.LINUX_SLL2, lt.RAW]), pcapng=st.booleans())
def test_the_walkers_build_the_packets_the_handlers_build(tmp_path: Path, records: list, link_type: int,  # type: ignore[type-arg]
                                                           pcapng: bool) -> None:
    path = tmp_path / "walker.pcap"
    _write(path, link_type, [(link_frame(link_type, ip, vlan), cut) for (ip, cut), vlan in records], pcapng)
    built, built_stats = _read(path, NoLane())
    handled, handled_stats = _read(path, None)
    assert built == handled
    assert [type(p) for p in built] == [type(p) for p in handled]
    assert built_stats == handled_stats


def test_the_walker_builds_when_it_has_a_fast_lane(tmp_path: Path, monkeypatch: Any) -> None:
    """The property above compares something: with a fast lane, the handler is not called for plain frames."""
    from tlsflow.capture import decode

    calls = []
    real = decode.make_handlers

    def counting(*args: Any, **kwargs: Any) -> Any:
        handler_for = real(*args, **kwargs)

        def wrapped(link_type: int) -> Any:
            handler = handler_for(link_type)

            def handle(*frame: Any) -> Any:
                calls.append(frame[3])
                return handler(*frame)

            handle.tcp_packet_builder = handler.tcp_packet_builder  # type: ignore[attr-defined]
            return handle

        return wrapped

    monkeypatch.setattr("tlsflow.capture.reader.make_handlers", counting)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, socket.inet_aton("10.0.0.1"),
                     socket.inet_aton("10.0.0.2")) + struct.pack("!HHIIBBHHH", 40000, 443, 1, 2, 0x50, 0x10, 9, 0, 0)
    for pcapng in (False, True):
        calls.clear()
        path = tmp_path / "plain.pcap"
        _write(path, lt.ETHERNET, [(link_frame(lt.ETHERNET, ip, False), 0)] * 3, pcapng)
        packets, _ = _read(path, NoLane())
        assert len(packets) == 3 and calls == []
        assert (packets[0].src, packets[0].dst, packets[0].sport, packets[0].dport) == ("10.0.0.1", "10.0.0.2",
                                                                                           40000, 443)


def test_four_tuple_texts_are_decodes_and_bounded(monkeypatch: Any) -> None:
    from tlsflow.capture import pcap

    monkeypatch.setattr(pcap, "_TUPLES_KEPT", 4)
    wire_keys: dict = {}  # type: ignore[type-arg]
    get, new = four_tuple_texts(wire_keys)
    for k in range(10):
        key = socket.inet_aton(f"10.0.0.{k}") + socket.inet_aton("192.0.2.1") + struct.pack("!HH", 1000 + k, 443)
        assert get(key) is None
        assert new(key) == (f"10.0.0.{k}", "192.0.2.1", 1000 + k, 443) == get(key)
        assert wire_keys[(f"10.0.0.{k}", 1000 + k, "192.0.2.1", 443)] == key
        assert len(wire_keys) <= 4
