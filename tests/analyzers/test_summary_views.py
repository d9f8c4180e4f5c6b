"""HandshakeSummary.version is remembered with the ServerHello it was read from: it follows the summary's
server_hello wherever that is set from, and equal summaries stay equal whatever was remembered."""
from __future__ import annotations

from analyzers.summary import HandshakeSummary, MessageAt
from tlsparse.messages import Extension, ServerHello


def _server_hello(selected: int | None) -> ServerHello:
    extensions = () if selected is None else (
        Extension(type=0x002B, data=selected.to_bytes(2, "big"), parsed=selected),)
    return ServerHello(legacy_version=0x0303, random=bytes(32), session_id=b"", cipher_suite=0x1301,
                       compression_method=0, extensions=extensions)


def test_version_follows_the_server_hello() -> None:
    s = HandshakeSummary()
    assert s.version is None and not s.is_tls13
    s.server_hello = MessageAt(1, 1.0, _server_hello(0x0304))
    assert s.version == 0x0304 and s.is_tls13
    s.server_hello = MessageAt(2, 2.0, _server_hello(None))  # set directly, as a caller may
    assert s.version == 0x0303 and not s.is_tls13
    s.server_hello = None
    assert s.version is None


def test_remembered_version_is_not_part_of_equality_or_repr() -> None:
    at = MessageAt(1, 1.0, _server_hello(0x0304))
    read, unread = HandshakeSummary(server_hello=at), HandshakeSummary(server_hello=at)
    assert read.version == 0x0304
    assert read == unread and repr(read) == repr(unread)
