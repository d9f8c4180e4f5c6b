"""The lane keys a flow gets from the 4-tuples the capture reader noted (TcpReassembler.wire_keys, filled by
pcap.four_tuple_texts as the walkers build TcpPackets) are the ones its addresses' text converts back to, and a flow
the reader noted nothing of (or one direction only) still gets its lanes."""
from __future__ import annotations

import socket
import struct

from hypothesis import given
from hypothesis import strategies as st

from tlsflow.capture.pcap import four_tuple_texts
from tlsflow.packet import ACK, PSH, SYN, TcpPacket
from tlsflow.tcp import StreamChunk, TcpReassembler

addresses = st.one_of(st.sampled_from(["0.0.0.0", "255.255.255.255", "10.0.0.1", "127.0.0.1"]),
                      st.integers(0, (1 << 32) - 1).map(lambda n: socket.inet_ntoa(n.to_bytes(4, "big"))))
ports = st.integers(0, 0xFFFF)


def _lane_keys(client: str, cport: int, server: str, sport: int, noted: str) -> tuple[tuple[bytes, int], ...]:
    """A flow's lane keys once it stops wanting data, each with the direction of its lane (0: the client's), with
    both, one or none of its directions noted."""
    reassembler = TcpReassembler()
    _, new = four_tuple_texts(reassembler.wire_keys)
    if noted in ("both", "client"):
        new(socket.inet_aton(client) + socket.inet_aton(server) + struct.pack("!HH", cport, sport))
    if noted == "both":
        new(socket.inet_aton(server) + socket.inet_aton(client) + struct.pack("!HH", sport, cport))
    reassembler.add(TcpPacket(1, 1.0, 4, client, server, cport, sport, 100, 0, SYN, 512, b"", 64, 1))
    reassembler.add(TcpPacket(2, 1.1, 4, server, client, sport, cport, 900, 101, SYN | ACK, 512, b"", 64, 2))
    for event in reassembler.add(TcpPacket(3, 1.2, 4, client, server, cport, sport, 101, 901, ACK | PSH, 512,
                                           b"\x16\x03\x01\x00\x01\x01", 64, 3)):
        if isinstance(event, StreamChunk):
            event.conn.wants_data = False
    reassembler.add(TcpPacket(4, 1.3, 4, server, client, sport, cport, 901, 107, ACK, 512, b"", 64, 4))
    return tuple(sorted((key, lane[1].index) for key, lane in reassembler.lanes.items()))


@given(client=addresses, cport=ports, server=addresses, sport=ports)
def test_noted_wire_keys_give_the_lane_keys_the_addresses_give(client: str, cport: int, server: str,
                                                               sport: int) -> None:
    keys = {noted: _lane_keys(client, cport, server, sport, noted) for noted in ("both", "client", "none")}
    assert keys["both"] == keys["client"] == keys["none"]
    same_direction = (client, cport) == (server, sport)
    assert len(keys["none"]) == (1 if same_direction else 2)
