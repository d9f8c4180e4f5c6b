"""A hello whose extensions come from a remembered block skips `extension_problems` when the block was clean
(tlsparse.cache.ParseCache.clean_extensions): its anomalies must still be those of an uncached decode. Hellos built
from blocks with repeated types, empty and malformed unique bodies (key shares), remembered, then changed."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tlsparse import messages as m
from tlsparse.cache import ParseCache
from tlsparse.extensions import KEY_SHARE, PADDING, SERVER_NAME, SESSION_TICKET
from tlsparse.handshake import DecodeContext, decode_message

_KINDS = st.sampled_from([SERVER_NAME, PADDING, 0x1234, KEY_SHARE, SESSION_TICKET, m.EXT_SUPPORTED_VERSIONS])


def _ext(ext_type: int, body: bytes) -> bytes:
    return ext_type.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


def _hello(msg_type: int, block: bytes) -> bytes:
    if msg_type == m.CLIENT_HELLO:
        head = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    else:
        head = b"\x03\x03" + bytes(range(32)) + b"\x00" + b"\x13\x01" + b"\x00"
    return head + len(block).to_bytes(2, "big") + block


def _decoded(msg_type: int, body: bytes, cache: ParseCache | None) -> tuple[object, ...]:
    reported, message, anomalies = decode_message(msg_type, body, DecodeContext(), 40, cache)
    return reported, message, list(anomalies)


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from([m.CLIENT_HELLO, m.SERVER_HELLO]),
       st.lists(st.tuples(_KINDS, st.binary(max_size=12)), min_size=1, max_size=6), st.data())
def test_hellos_from_remembered_blocks_report_what_an_uncached_decode_reports(msg_type, exts, data) -> None:
    first = _hello(msg_type, b"".join(_ext(t, b) for t, b in exts))
    cache = ParseCache()
    for _ in range(4):  # the bodies memoised, the length marked, the block remembered, then used
        assert _decoded(msg_type, first, cache) == _decoded(msg_type, first, None)
    other = [(t, data.draw(st.binary(min_size=len(b), max_size=len(b))) if b and data.draw(st.booleans()) else b)
             for t, b in exts]
    second = _hello(msg_type, b"".join(_ext(t, b) for t, b in other))
    assert _decoded(msg_type, second, cache) == _decoded(msg_type, second, None)
    assert _decoded(msg_type, first, cache) == _decoded(msg_type, first, None)


def test_a_clean_remembered_block_is_marked_and_a_bad_key_share_is_not() -> None:
    """The shortcut is taken (the tuple is marked) for a clean block with a well-formed key share; a key share
    that does not decode, in the same block, is reported as the uncached decode reports it."""
    share = (0x001D).to_bytes(2, "big") + (32).to_bytes(2, "big") + bytes(32)
    good = _hello(m.CLIENT_HELLO, _ext(SERVER_NAME, b"") + _ext(KEY_SHARE, len(share).to_bytes(2, "big") + share))
    cache = ParseCache()
    for _ in range(4):
        _, message, anomalies = decode_message(m.CLIENT_HELLO, good, DecodeContext(), 0, cache)
    assert message.extensions is cache.clean_extensions and not anomalies
    bad = good[:-36] + b"\xff" * 36  # same length, the key share's entries no longer add up
    assert _decoded(m.CLIENT_HELLO, bad, cache) == _decoded(m.CLIENT_HELLO, bad, None)
    assert _decoded(m.CLIENT_HELLO, bad, None)[2]  # (it is reported)
    cache.clear()
    assert cache.clean_extensions is None
