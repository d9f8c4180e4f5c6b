"""The hot-path builders of frozen objects (`events.stream_chunk`, `decode.packet_builder`) give what the class itself
gives: an instance of that very class, equal field by field, frozen, without a __dict__, that pickles and copies;
and they fall back to a slower equal builder when their trick (`__class__` assignment between classes of the same
slots) is refused."""
from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from tlsflow.capture import decode
from tlsflow.packet import TcpPacket
from tlsflow.tcp import events
from tlsflow.tcp.events import StreamChunk
from tlsparse.events import Sender

PACKETS = [
    (1, 1767225600.000041, 4, "127.0.0.1", "127.0.10.1", 40001, 443, 1, 0, 0x02, 64240, b"", 64, 17),
    (2, 0.5, 6, "2001:db8::1", "2001:db8::2", 443, 51000, 4294967295, 12, 0x18, 0, b"\x16\x03\x01", 57, None),
]
CHUNKS = [(None, Sender.CLIENT, 0, b"\x16\x03\x01\x00\x05", 0, 4, 1.25), (None, Sender.SERVER, 517, b"", 40, 9, 2.5)]


def _is_same_frozen_object(made: object, reference: object) -> None:
    cls = type(reference)
    assert type(made) is cls and made == reference and repr(made) == repr(reference)
    assert not hasattr(made, "__dict__")
    first = dataclasses.fields(cls)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, first, None)
    assert pickle.loads(pickle.dumps(made)) == reference and copy.copy(made) == reference
    assert hash(made) == hash(reference)


@pytest.mark.parametrize("fields", PACKETS)
def test_packet_builder_gives_the_constructors_packet(fields: tuple) -> None:
    build = decode.packet_builder()
    assert build is not TcpPacket  # the fast builder was accepted
    _is_same_frozen_object(build(*fields), TcpPacket(*fields))


@pytest.mark.parametrize("fields", CHUNKS)
def test_stream_chunk_gives_the_constructors_chunk(fields: tuple) -> None:
    assert events.stream_chunk is not StreamChunk
    _is_same_frozen_object(events.stream_chunk(*fields), StreamChunk(*fields))


def test_packet_builder_falls_back_to_slot_descriptors_when_class_assignment_is_refused(monkeypatch) -> None:
    # A slots class of another layout: `__class__` assignment raises TypeError, as it would if TcpPacket changed.
    real_type = type

    def other_layout(*args: object) -> type:
        if len(args) == 3 and args[0] == "_TcpPacketSlots":
            args = (*args[:2], {"__slots__": (*args[2]["__slots__"], "extra")})  # type: ignore[index]
        return real_type(*args)

    monkeypatch.setattr(decode, "type", other_layout, raising=False)
    build = decode.packet_builder()
    assert build is not TcpPacket and "_set0" in build.__code__.co_names
    for fields in PACKETS:
        _is_same_frozen_object(build(*fields), TcpPacket(*fields))


def test_stream_chunk_falls_back_to_the_class_when_class_assignment_is_refused(monkeypatch) -> None:
    class OtherLayout:
        __slots__ = (*StreamChunk.__slots__, "extra")

    monkeypatch.setattr(events, "_StreamChunkSlots", OtherLayout)
    monkeypatch.setattr(events, "stream_chunk", events.stream_chunk)  # restored afterwards
    events._check_stream_chunk()
    assert events.stream_chunk is StreamChunk
