"""`ParseCache`: the parser's memo between connections lives in an object the caller owns. With it or without it
the parser gives the same events; it stays within its bounds; it never keeps what is unique to a connection; and
the parser keeps nothing in module globals."""
from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlsparse import TlsConnection
from tlsparse.cache import ParseCache
from tlsparse.extensions import (
    _DECODERS,
    COOKIE,
    ENCRYPTED_CLIENT_HELLO,
    KEY_SHARE,
    PRE_SHARED_KEY,
    SESSION_TICKET,
    HelloContext,
    decode_extension,
    parse_extensions,
)
from tlsparse.handshake import LAYER, DecodeContext, _suite_kind, decode_handshake, suite_kind
from tlsparse.reader import Reader

UNIQUE = (KEY_SHARE, PRE_SHARED_KEY, ENCRYPTED_CLIENT_HELLO, COOKIE, SESSION_TICKET)


def _block(*extensions: tuple[int, bytes]) -> bytes:
    body = b"".join(t.to_bytes(2, "big") + len(d).to_bytes(2, "big") + d for t, d in extensions)
    return len(body).to_bytes(2, "big") + body


def _sni(name: bytes) -> bytes:
    return (len(name) + 3).to_bytes(2, "big") + b"\x00" + len(name).to_bytes(2, "big") + name


@pytest.fixture(scope="module")
def real_transcripts(pki) -> list:
    """Real TLS 1.2 and 1.3 handshakes (with application data), each direction's chunks in wire order."""
    import conftest

    return [run.chunks for run in conftest.version_and_alpn_handshakes(pki)]


def _events(chunks, cache: ParseCache | None) -> list:
    import conftest

    return conftest.feed(TlsConnection(cache=cache), chunks)


def test_cached_and_uncached_parses_give_the_same_events(real_transcripts) -> None:
    """Every real handshake twice through one shared cache (the second time from remembered extensions): the
    same events as without a cache, and the cache did fill."""
    cache = ParseCache()
    for _ in range(2):
        for chunks in real_transcripts:
            assert _events(chunks, cache) == _events(chunks, None)
    assert any(cache.extensions[HelloContext.CLIENT_HELLO].values())
    assert any(cache.extensions[HelloContext.SERVER_HELLO].values())


def test_remembered_extensions_are_handed_out_again(real_transcripts) -> None:
    """The second connection with the same hello shares the first one's Extension objects (decoded once)."""
    from tlsparse import HandshakeSeen

    cache = ParseCache()
    first, second = (_events(real_transcripts[-1], cache) for _ in range(2))
    hello = next(e.message for e in first if isinstance(e, HandshakeSeen))
    again = next(e.message for e in second if isinstance(e, HandshakeSeen))
    shared = [a for a, b in zip(hello.extensions, again.extensions, strict=True) if a is b]
    assert shared and all(ext.type not in UNIQUE or not ext.data for ext in shared)  # (an empty one may be)


def test_connection_unique_extensions_are_never_remembered() -> None:
    """Key shares, PSK identities, ECH, cookies and tickets (non-empty) go into no cache, in any context; the
    same block's other extensions do."""
    blocks = {
        KEY_SHARE: b"\x00\x06\x00\x1d\x00\x02\xaa\xbb",
        PRE_SHARED_KEY: b"\x00\x0a\x00\x04abcd\x00\x00\x00\x01\x00\x03\x02\xff\xff",
        ENCRYPTED_CLIENT_HELLO: b"\x00\x00\x01\x00\x01\x01\x00\x00\x00",
        COOKIE: b"\x00\x03abc",
        SESSION_TICKET: b"ticket-bytes",
    }
    for ctx in HelloContext:
        cache = ParseCache()
        for ext_type, data in blocks.items():
            block = _block((ext_type, data), (0, _sni(b"example.com")))
            assert parse_extensions(Reader(block, layer=LAYER), ctx, cache) == parse_extensions(
                Reader(block, layer=LAYER), ctx)
        remembered = {int.from_bytes(key[:2], "big") for key in cache.extensions[ctx]}
        assert remembered == {0}, ctx


def test_extension_memo_stays_bounded() -> None:
    """Distinct bodies by the thousand (as hostile traffic would send): each context's table is emptied, never
    grows past its cap, long bodies are not kept, and what comes out is still what the reference decoder gives."""
    cache = ParseCache()
    ctx = HelloContext.CLIENT_HELLO
    for i in range(3 * ParseCache.MAX_EXTENSIONS):
        data = _sni(f"host{i}.example".encode())
        block = _block((0, data))
        assert parse_extensions(Reader(block, layer=LAYER), ctx, cache) == (decode_extension(0, data, ctx),)
        assert len(cache.extensions[ctx]) <= ParseCache.MAX_EXTENSIONS
    long_name = b"x" * ParseCache.MAX_EXTENSION_BODY
    parse_extensions(Reader(_block((0, _sni(long_name))), layer=LAYER), ctx, cache)
    assert all(len(key) - 4 <= ParseCache.MAX_EXTENSION_BODY for key in cache.extensions[ctx])


def test_suite_kinds_are_remembered_and_bounded() -> None:
    cache = ParseCache()
    for suite in range(3 * ParseCache.MAX_SUITE_KINDS):
        assert _suite_kind(suite, cache) == suite_kind(suite)
        assert len(cache.suite_kinds) <= ParseCache.MAX_SUITE_KINDS
    assert _suite_kind(0xC02F, cache) == _suite_kind(0xC02F, None) == "ecdhe"


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(sorted(_DECODERS) + [0x0A0A, 0x1234]), st.binary(max_size=40),
       st.sampled_from(list(HelloContext)), st.integers(0, 1000))
def test_cached_extension_decoding_agrees_with_the_reference(ext_type: int, data: bytes, ctx: HelloContext,
                                                             base: int) -> None:
    """One cache across every example (bodies recur, at other offsets and in other contexts): what comes out is
    always what the reference decoder gives for that context."""
    block = _block((ext_type, data))
    got = parse_extensions(Reader(block, layer=LAYER, base=base), ctx, _SHARED)
    assert got == (decode_extension(ext_type, data, ctx, base=base + 6),)


_SHARED = ParseCache()


def test_server_key_exchange_with_and_without_a_cache(real_transcripts) -> None:
    from tlsparse import HandshakeSeen

    cache = ParseCache()
    for chunks in real_transcripts:
        for e in _events(chunks, None):
            if isinstance(e, HandshakeSeen) and e.msg_type == 12:
                ctx = DecodeContext(version=0x0303, cipher_suite=0xC02B)
                assert decode_handshake(12, e.raw[4:], ctx, cache=cache) == decode_handshake(12, e.raw[4:], ctx)
    assert cache.suite_kinds in ({}, {0xC02B: "ecdhe"})


def _size(value: object) -> int | None:
    """Elements in a container, nested containers' included (a memo of memos grows inside); an lru_cache's
    current size; None for anything else."""
    if isinstance(value, dict):
        return len(value) + sum(_size(v) or 0 for v in value.values())
    if isinstance(value, list | set):
        return len(value)
    info = getattr(value, "cache_info", None)
    return info().currsize if callable(info) else None


def _mutable_state() -> dict[str, int]:
    """Sizes of the containers and lru_caches held at module level by the parser's modules."""
    sizes = {}
    for name, module in list(sys.modules.items()):
        if not name.startswith("tlsparse.") or module is None:
            continue
        for attr, value in vars(module).items():
            size = _size(value)
            if size is not None:
                sizes[f"{name}.{attr}"] = size
    return sizes


def test_the_parser_keeps_no_memo_in_module_globals(real_transcripts) -> None:
    """Parsing real connections (with and without a cache) changes no module-level container of tlsparse."""
    import tlsparse.registry

    tlsparse.registry.cipher_suite_name(0x1301)  # the registry's data file, loaded once on first use
    _events(real_transcripts[0], ParseCache())
    before = _mutable_state()
    for chunks in real_transcripts:
        _events(chunks, None)
        _events(chunks, ParseCache())
    assert _mutable_state() == before


def test_suite_lists_are_shared_and_bounded() -> None:
    """ClientHellos with the same suite list share one tuple; distinct lists by the thousand keep the table
    within its cap; long lists are decoded every time; the hellos equal the uncached ones."""
    from tlsparse.handshake import fast_client_hello

    def hello(suites: list[int]) -> bytes:
        vector = b"".join(s.to_bytes(2, "big") for s in suites)
        return b"\x03\x03" + bytes(32) + b"\x00" + len(vector).to_bytes(2, "big") + vector + b"\x01\x00"

    cache = ParseCache()
    first, second = fast_client_hello(hello([0x1301, 0xC02F]), cache), fast_client_hello(hello([0x1301, 0xC02F]), cache)
    assert first == second == fast_client_hello(hello([0x1301, 0xC02F]))
    assert first.cipher_suites is second.cipher_suites
    for i in range(3 * ParseCache.MAX_SUITE_LISTS):
        body = hello([0x1301, 0xC000 + i % 0x3000, i])
        assert fast_client_hello(body, cache) == fast_client_hello(body)
        assert len(cache.suite_lists) <= ParseCache.MAX_SUITE_LISTS
    long_list = list(range(1, ParseCache.MAX_SUITE_LIST_BYTES // 2 + 2))
    assert fast_client_hello(hello(long_list), cache).cipher_suites == tuple(long_list)
    assert all(len(key) <= ParseCache.MAX_SUITE_LIST_BYTES for key in cache.suite_lists)


def _certificate_body(*ders: bytes, tls13: bool = False) -> bytes:
    entries = b"".join(len(d).to_bytes(3, "big") + d + (b"\x00\x00" if tls13 else b"") for d in ders)
    return (b"\x00" if tls13 else b"") + len(entries).to_bytes(3, "big") + entries


def test_certificate_messages_are_shared(real_transcripts) -> None:
    """A server's chain on a second connection through the same cache: the very message of the first one (its DER
    blobs held once, however many connections stay open), equal to what decoding it afresh gives."""
    from tlsparse import HandshakeSeen

    def certificates(events: list) -> list:
        return [e.message for e in events if isinstance(e, HandshakeSeen) and e.msg_type == 11]

    cache = ParseCache()
    seen = 0
    for chunks in real_transcripts:
        first, second, fresh = (certificates(_events(chunks, c)) for c in (cache, cache, None))
        assert first == second == fresh
        assert all(a is b for a, b in zip(first, second, strict=True))
        seen += len(first)
    assert seen  # (the TLS 1.2 handshakes send theirs in the clear)
    assert cache.certificates


def test_certificate_memo_is_keyed_by_version_bounded_and_skips_what_does_not_decode() -> None:
    from tlsparse.handshake import decode_message

    cache = ParseCache()
    leaf = bytes(range(256)) * 4
    tls13_body = _certificate_body(leaf, tls13=True)
    for version in (0x0304, 0x0303, None):  # the same bytes read as another version: decoded as that version
        ctx = DecodeContext(version=version)
        assert decode_message(11, tls13_body, ctx, cache=cache) == decode_message(11, tls13_body, ctx)
    assert decode_message(11, tls13_body, DecodeContext(version=0x0304), cache=cache)[1].request_context == b""
    broken = _certificate_body(leaf)[:-1]  # a blob cut short: a bad_handshake anomaly, every time
    for _ in range(2):
        assert decode_message(11, broken, DecodeContext(version=0x0303), cache=cache)[2]
    assert (0x0303, broken) not in cache.certificates
    # Distinct chains by the thousand: the table never holds more than its bytes.
    for i in range(3 * ParseCache.MAX_CERTIFICATE_BYTES // 20_000):
        body = _certificate_body(i.to_bytes(4, "big") * 5_000)
        ctx = DecodeContext(version=0x0303)
        assert decode_message(11, body, ctx, cache=cache) == decode_message(11, body, ctx)
        assert cache.certificate_bytes == sum(len(key[1]) for key in cache.certificates)
        assert cache.certificate_bytes <= ParseCache.MAX_CERTIFICATE_BYTES
    huge = _certificate_body(bytes(ParseCache.MAX_CERTIFICATE_BYTES))
    assert decode_message(11, huge, DecodeContext(version=0x0303), cache=cache)[1].certificates[0] == bytes(
        ParseCache.MAX_CERTIFICATE_BYTES)
    assert (0x0303, huge) not in cache.certificates
