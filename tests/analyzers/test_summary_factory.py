"""`new_summary()` (the pipeline's summary per connection) gives what `HandshakeSummary()` gives: every field equal
and of the same type, each container its own; a class the twin-class shortcut cannot serve keeps its constructor.
The parser's per-direction buffers, copies of one empty bytearray, are each their own and leave it empty."""
from __future__ import annotations

import dataclasses

from analyzers.summary import HandshakeSummary, _fresh_factory, new_summary
from tlsparse import TlsConnection
from tlsparse import connection as tls_connection
from tlsparse.events import Sender


def _fields(summary: HandshakeSummary) -> list[tuple[str, type, object]]:
    return [(f.name, type(v := getattr(summary, f.name)), v) for f in dataclasses.fields(summary)]


def test_new_summary_equals_the_class_call() -> None:
    assert new_summary is not HandshakeSummary  # the shortcut is in use on this interpreter
    made, plain = new_summary(), HandshakeSummary()
    assert type(made) is HandshakeSummary
    assert _fields(made) == _fields(plain) and made == plain and repr(made) == repr(plain)


def test_each_summary_has_its_own_containers() -> None:
    first, second = new_summary(), new_summary()
    for f in dataclasses.fields(HandshakeSummary):
        if f.default_factory is not dataclasses.MISSING:
            assert getattr(first, f.name) is not getattr(second, f.name), f.name
    first.history.append("C")
    first.app_data_records[Sender.CLIENT] += 1
    assert second.history == [] and second.app_data_records == HandshakeSummary().app_data_records


def test_a_class_with_a_slotted_base_keeps_its_constructor() -> None:
    @dataclasses.dataclass(slots=True)
    class Base:
        a: int = 1

    @dataclasses.dataclass(slots=True)
    class Derived(Base):
        b: list[int] = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(slots=True)
    class Plain:
        a: int = 1
        b: list[int] = dataclasses.field(default_factory=list)
        c: dict[int, int] = dataclasses.field(default_factory=lambda: {1: 2})

    assert _fresh_factory(Derived) is Derived
    factory = _fresh_factory(Plain)
    assert factory is not Plain and factory() == Plain() and factory().c is not factory().c


def test_direction_buffers_are_fresh_and_the_template_stays_empty() -> None:
    first, second = TlsConnection(), TlsConnection()
    buffers = [first._client.buf, first._client.hs_buf, first._server.buf, first._server.hs_buf,
               second._client.buf]
    assert len({id(b) for b in buffers}) == len(buffers)
    assert all(type(b) is bytearray and not b for b in buffers)
    # A handshake record cut short: its first part waits in the direction's buffer.
    first.receive(Sender.CLIENT, b"\x16\x03\x01\x00\x30\x01\x00\x00\x2c" + bytes(10), 1, 0.0)
    assert first.buffer_sizes(Sender.CLIENT)[0] > 0
    assert tls_connection._NO_BYTES == bytearray() and second.buffer_sizes(Sender.CLIENT) == (0, 0)
