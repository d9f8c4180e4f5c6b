"""Whole extension blocks remembered in a `ParseCache` (tlsparse.extensions._known_block): a hello whose block
matches a remembered one but for the bodies unique to a connection gives exactly the extensions that going
through the block one extension at a time gives, and without a cache; a block that differs anywhere else does
too (it takes the walk). Real hellos (TLS 1.2 and 1.3, with and without ALPN) and hellos of the bench capture
generator, then the same hellos with their unique bodies replaced and with any byte changed."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tlsparse import ClientHello, HandshakeSeen, ServerHello
from tlsparse.cache import ParseCache
from tlsparse.extensions import (
    _UNIQUE_PER_CONNECTION,
    KEY_SHARE,
    PADDING,
    SERVER_NAME,
    SESSION_TICKET,
    HelloContext,
    split_extensions,
)
from tlsparse.handshake import DecodeContext, decode_message

CONTEXTS = (HelloContext.CLIENT_HELLO, HelloContext.SERVER_HELLO, HelloContext.HELLO_RETRY_REQUEST)


@pytest.fixture(scope="module")
def real_hellos(pki, generated_capture) -> list[tuple[int, bytes]]:
    """(msg_type, body) of real ClientHellos and ServerHellos: live handshakes, and the bench capture's."""
    import conftest

    from tlsflow.capture import open_capture
    from tlsflow.tcp import StreamChunk, TcpReassembler

    out = []
    for run in conftest.version_and_alpn_handshakes(pki):
        _, events = conftest.parse_all(run.chunks)
        out += [(e.msg_type, e.raw[4:]) for e in events
                if isinstance(e, HandshakeSeen) and isinstance(e.message, ClientHello | ServerHello)]
    reassembler = TcpReassembler()
    seen = set()
    with open_capture(generated_capture) as cap:
        for pkt in cap.packets():
            for event in reassembler.add(pkt):
                if event.__class__ is StreamChunk and event.offset == 0 and not event.gap:
                    body = _first_message_body(event.data)
                    if body is not None and body not in seen:
                        seen.add(body)
                        out.append((event.data[5], body))
    return out


def _first_message_body(record: bytes) -> bytes | None:
    """The body of the hello that starts a stream's first record, when it is whole in that chunk."""
    if len(record) < 9 or record[0] != 0x16 or record[5] not in (1, 2):
        return None
    length = int.from_bytes(record[6:9], "big")
    return record[9:9 + length] if len(record) >= 9 + length else None


def _decoded(msg_type: int, body: bytes, cache: ParseCache | None):
    ctx = DecodeContext()
    reported, message, anomalies = decode_message(msg_type, body, ctx, 100, cache)
    return reported, message, list(anomalies)


def _uses_a_remembered_block(cache: ParseCache) -> bool:
    return any(blocks for lengths in cache.extension_blocks.values() for _, blocks in lengths.values())


def test_real_hellos_equal_the_walk_and_the_uncached_decode(real_hellos) -> None:
    """Each real hello four times through one cache (remembered whole the third time, from the remembered block
    the fourth): what an uncached decode gives, every time."""
    cache = ParseCache()
    for _ in range(4):
        for msg_type, body in real_hellos:
            assert _decoded(msg_type, body, cache) == _decoded(msg_type, body, None)
    assert _uses_a_remembered_block(cache)


def _extension_spans(body: bytes, msg_type: int) -> list[tuple[int, int, int]] | None:
    """(type, start, end) of each extension of a hello body, from its fields' lengths."""
    p = 35 + body[34]
    if msg_type == 1:
        p += 2 + int.from_bytes(body[p:p + 2], "big")
        p += 1 + body[p]
    else:
        p += 3
    if p + 2 > len(body):
        return None
    p += 2
    spans = []
    while p + 4 <= len(body):
        end = p + 4 + int.from_bytes(body[p + 2:p + 4], "big")
        spans.append((int.from_bytes(body[p:p + 2], "big"), p, end))
        p = end
    return spans


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.large_base_example])
@given(st.data())
def test_changed_hellos_equal_the_uncached_decode(real_hellos, data) -> None:
    """A real hello remembered, then the same hello with its unique bodies (key shares, tickets, PSK identities)
    replaced by other bytes of the same length, or any byte of it changed (a header, a length, another body):
    the same result as without a cache, whether the remembered block matched or not."""
    msg_type, body = data.draw(st.sampled_from(real_hellos))
    cache = ParseCache()
    for _ in range(3):
        _decoded(msg_type, body, cache)
    changed = bytearray(body)
    spans = _extension_spans(body, msg_type) or []
    for ext_type, start, end in spans:
        if ext_type in _UNIQUE_PER_CONNECTION and end - start > 4 and data.draw(st.booleans()):
            changed[start + 4:end] = data.draw(st.binary(min_size=end - start - 4, max_size=end - start - 4))
    if data.draw(st.booleans()):
        at = data.draw(st.integers(0, len(body) - 1))
        changed[at] = data.draw(st.integers(0, 255))
    changed_body = bytes(changed)
    assert _decoded(msg_type, changed_body, cache) == _decoded(msg_type, changed_body, None)
    assert _decoded(msg_type, body, cache) == _decoded(msg_type, body, None)


def _ext(ext_type: int, body: bytes) -> bytes:
    return ext_type.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


@st.composite
def blocks(draw) -> tuple[list[tuple[int, bytes]], HelloContext]:
    """A block's extensions: recurring ones (server names, padding, an unknown type) and unique ones (key
    shares, tickets), in any order, any of them empty."""
    kinds = st.sampled_from([SERVER_NAME, PADDING, 0x1234, KEY_SHARE, SESSION_TICKET])
    exts = draw(st.lists(st.tuples(kinds, st.binary(max_size=12)), max_size=6))
    return exts, draw(st.sampled_from(CONTEXTS))


@settings(max_examples=1500, deadline=None)
@given(blocks(), st.data())
def test_blocks_with_the_same_layout_equal_the_walk(block, data) -> None:
    """A block remembered (seen three times), then a block of the same length whose bytes differ in any of its
    extensions: the extensions split_extensions gives are those it gives without a cache."""
    exts, ctx = block
    first = b"".join(_ext(t, b) for t, b in exts)
    cache = ParseCache()
    for _ in range(3):
        split_extensions(first, 0, len(first), ctx, 0, cache)
    other = []
    for t, b in exts:
        if b and data.draw(st.booleans()):
            b = data.draw(st.binary(min_size=len(b), max_size=len(b)))
        other.append((t, b))
    second = bytearray(b"".join(_ext(t, b) for t, b in other))
    if second and data.draw(st.booleans()):
        second[data.draw(st.integers(0, len(second) - 1))] ^= data.draw(st.integers(1, 255))
    second = bytes(second)
    prefix = data.draw(st.binary(max_size=3))
    assert (split_extensions(prefix + second, len(prefix), len(prefix) + len(second), ctx, 7, cache)
            == split_extensions(second, 0, len(second), ctx, 7 + len(prefix), None))
    assert split_extensions(first, 0, len(first), ctx, 0, cache) == split_extensions(first, 0, len(first), ctx)


def test_the_remembered_blocks_stay_within_their_caps() -> None:
    """Blocks of many lengths and many first bytes: at most MAX_EXTENSION_BLOCKS lengths per context, 16 blocks
    per length, none longer than MAX_EXTENSION_BLOCK."""
    cache = ParseCache()
    ctx = HelloContext.CLIENT_HELLO
    for size in range(1, 200):
        for name in range(20):
            block = _ext(0x1234, bytes([name]) * size) + _ext(KEY_SHARE, b"k" * 8)
            for _ in range(3):
                split_extensions(block, 0, len(block), ctx, 0, cache)
    big = _ext(0x1234, b"x" * cache.MAX_EXTENSION_BLOCK)
    for _ in range(3):
        split_extensions(big, 0, len(big), ctx, 0, cache)
    lengths = cache.extension_blocks[ctx]
    assert 0 < len(lengths) <= cache.MAX_EXTENSION_BLOCKS
    assert any(blocks for _, blocks in lengths.values())
    assert all(len(blocks) <= 16 for _, blocks in lengths.values())
    assert all(length <= cache.MAX_EXTENSION_BLOCK for length in lengths)
    cache.clear()
    assert not any(cache.extension_blocks.values())
