"""TLS extension lists: split into `Extension` objects and decode the bodies the parser knows.

An extension whose body does not decode keeps its raw bytes, gets `parsed=None` and an `error`; the message that
carries it still decodes (the connection reports a `bad_extension` anomaly). GREASE and unknown types are kept raw.
"""
from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from types import MappingProxyType
from typing import TYPE_CHECKING

from tlsparse.errors import TlsParseError
from tlsparse.fastinit import positional_factory
from tlsparse.messages import Extension, KeyShareEntry
from tlsparse.reader import Reader

if TYPE_CHECKING:
    from tlsparse.cache import ParseCache

LAYER = "extension"

# Caps on attacker-controlled counts. A message is already bounded by the handshake cap; these keep the
# decoded objects small too.
MAX_EXTENSIONS = 512
_MAX_BLOCK_UNDER_CAP = 4 * MAX_EXTENSIONS  # an extension block this long holds at most MAX_EXTENSIONS
MAX_LIST_ITEMS = 8192


class HelloContext(enum.Enum):
    """Which message an extension list belongs to: several extensions have a different body in each."""

    CLIENT_HELLO = "client_hello"
    SERVER_HELLO = "server_hello"
    HELLO_RETRY_REQUEST = "hello_retry_request"
    ENCRYPTED_EXTENSIONS = "encrypted_extensions"
    CERTIFICATE_REQUEST = "certificate_request"
    NEW_SESSION_TICKET = "new_session_ticket"
    CERTIFICATE = "certificate"

    __hash__ = object.__hash__  # identity, in C: see Sender (a memo is looked up by context for every hello)


CH = HelloContext.CLIENT_HELLO
SH = HelloContext.SERVER_HELLO
HRR = HelloContext.HELLO_RETRY_REQUEST
NST = HelloContext.NEW_SESSION_TICKET

# Extension code points (IANA "TLS ExtensionType Values").
SERVER_NAME = 0
MAX_FRAGMENT_LENGTH = 1
STATUS_REQUEST = 5
SUPPORTED_GROUPS = 10
EC_POINT_FORMATS = 11
SIGNATURE_ALGORITHMS = 13
HEARTBEAT = 15
ALPN = 16
SIGNED_CERTIFICATE_TIMESTAMP = 18
PADDING = 21
ENCRYPT_THEN_MAC = 22
EXTENDED_MASTER_SECRET = 23
COMPRESS_CERTIFICATE = 27
RECORD_SIZE_LIMIT = 28
SESSION_TICKET = 35
PRE_SHARED_KEY = 41
EARLY_DATA = 42
SUPPORTED_VERSIONS = 43
COOKIE = 44
PSK_KEY_EXCHANGE_MODES = 45
CERTIFICATE_AUTHORITIES = 47
POST_HANDSHAKE_AUTH = 49
SIGNATURE_ALGORITHMS_CERT = 50
KEY_SHARE = 51
APPLICATION_SETTINGS_OLD = 0x4469  # ALPS as Chrome first shipped it (17513)
APPLICATION_SETTINGS = 0x44CD  # ALPS, new code point (17613)
ENCRYPTED_CLIENT_HELLO = 0xFE0D
RENEGOTIATION_INFO = 0xFF01


def _names(r: Reader, what: str) -> tuple[str, ...]:
    """A list of u8-prefixed names (ALPN, ALPS), latin-1 decoded so that every byte survives."""
    names: list[str] = []
    while not r.done():
        if len(names) >= MAX_LIST_ITEMS:
            raise r.fail(f"too_many_items: {what}")
        names.append(r.vec8(what).decode("latin-1"))
    return tuple(names)


def _empty(r: Reader, ctx: HelloContext) -> bool:
    r.expect_end("empty extension")
    return True


def _server_name(r: Reader, ctx: HelloContext) -> tuple[str, ...]:
    if r.done():  # the server's acknowledgement (SH/EE) is empty
        return ()
    lst = r.sub16("server_name_list")
    r.expect_end("server_name_list")
    names: list[str] = []
    while not lst.done():
        name_type = lst.u8("name_type")
        name = lst.vec16("host_name")
        if name_type == 0:
            if len(names) >= MAX_LIST_ITEMS:
                raise lst.fail("too_many_items: server_name")
            names.append(name.decode("latin-1"))
    return tuple(names)


def _alpn(r: Reader, ctx: HelloContext) -> tuple[str, ...]:
    lst = r.sub16("protocol_name_list")
    r.expect_end("protocol_name_list")
    return _names(lst, "protocol_name")


def _u16_vec16(r: Reader, ctx: HelloContext) -> tuple[int, ...]:
    lst = r.sub16("list")
    r.expect_end("list")
    return lst.u16_list("list", MAX_LIST_ITEMS)


def _u8_vec8(r: Reader, ctx: HelloContext) -> tuple[int, ...]:
    lst = r.sub8("list")
    r.expect_end("list")
    return lst.u8_list("list", MAX_LIST_ITEMS)


def _u16_vec8(r: Reader, ctx: HelloContext) -> tuple[int, ...]:
    lst = r.sub8("list")
    r.expect_end("list")
    return lst.u16_list("list", MAX_LIST_ITEMS)


def _supported_versions(r: Reader, ctx: HelloContext) -> tuple[int, ...] | int:
    if ctx in (SH, HRR):
        value = r.u16("selected_version")
        r.expect_end("selected_version")
        return value
    return _u16_vec8(r, ctx)


def _key_share_entry(r: Reader) -> KeyShareEntry:
    group = r.u16("group")
    length = r.u16("key_exchange length")
    r.take(length, "key_exchange")
    return KeyShareEntry(group=group, key_exchange_length=length)


def _key_share(r: Reader, ctx: HelloContext) -> tuple[KeyShareEntry, ...] | KeyShareEntry | int:
    if ctx is HRR:
        value = r.u16("selected_group")
        r.expect_end("selected_group")
        return value
    if ctx is SH:
        entry = _key_share_entry(r)
        r.expect_end("server_share")
        return entry
    lst = r.sub16("client_shares")
    r.expect_end("client_shares")
    entries: list[KeyShareEntry] = []
    while not lst.done():
        if len(entries) >= MAX_LIST_ITEMS:
            raise lst.fail("too_many_items: client_shares")
        entries.append(_key_share_entry(lst))
    return tuple(entries)


def _pre_shared_key(r: Reader, ctx: HelloContext) -> int:
    """CH: the number of offered identities; SH: the selected identity index."""
    if ctx is CH:
        identities = r.sub16("identities")
        count = 0
        while not identities.done():
            identities.vec16("identity")
            identities.u32("obfuscated_ticket_age")
            count += 1
        r.sub16("binders")
        r.expect_end("pre_shared_key")
        return count
    value = r.u16("selected_identity")
    r.expect_end("selected_identity")
    return value


def _early_data(r: Reader, ctx: HelloContext) -> bool | int:
    if ctx is NST:
        value = r.u32("max_early_data_size")
        r.expect_end("max_early_data_size")
        return value
    return _empty(r, ctx)


def _status_request(r: Reader, ctx: HelloContext) -> bool | int:
    """CH: the status_type (1 = ocsp); an empty acknowledgement (SH, CR): True."""
    if r.done():
        return True
    status_type = r.u8("status_type")
    if ctx is CH and status_type == 1:
        r.vec16("responder_id_list")
        r.vec16("request_extensions")
        r.expect_end("status_request")
    return status_type


def _renegotiation_info(r: Reader, ctx: HelloContext) -> bytes:
    value = r.vec8("renegotiated_connection")
    r.expect_end("renegotiation_info")
    return value


def _u16_value(r: Reader, ctx: HelloContext) -> int:
    value = r.u16("value")
    r.expect_end("value")
    return value


def _u8_value(r: Reader, ctx: HelloContext) -> int:
    value = r.u8("value")
    r.expect_end("value")
    return value


def _raw(r: Reader, ctx: HelloContext) -> bytes:
    return r.rest()


def _padding(r: Reader, ctx: HelloContext) -> int:
    return len(r.rest())


def _cookie(r: Reader, ctx: HelloContext) -> bytes:
    value = r.vec16("cookie")
    r.expect_end("cookie")
    return value


def _ech(r: Reader, ctx: HelloContext) -> int | bool:
    """CH: the ECHClientHello type (0 outer, 1 inner); the payload stays in `data`. Elsewhere: presence."""
    if ctx is CH:
        value = r.u8("ech_type")
        r.rest()
        return value
    r.rest()
    return True


def _application_settings(r: Reader, ctx: HelloContext) -> tuple[str, ...] | bytes:
    if ctx is CH:
        return _alpn(r, ctx)
    return r.rest()


def _sct(r: Reader, ctx: HelloContext) -> bool | bytes:
    return True if r.done() else r.rest()


_DECODERS: dict[int, Callable[[Reader, HelloContext], object]] = {
    SERVER_NAME: _server_name,
    MAX_FRAGMENT_LENGTH: _u8_value,
    STATUS_REQUEST: _status_request,
    SUPPORTED_GROUPS: _u16_vec16,
    EC_POINT_FORMATS: _u8_vec8,
    SIGNATURE_ALGORITHMS: _u16_vec16,
    SIGNATURE_ALGORITHMS_CERT: _u16_vec16,
    HEARTBEAT: _u8_value,
    ALPN: _alpn,
    SIGNED_CERTIFICATE_TIMESTAMP: _sct,
    PADDING: _padding,
    ENCRYPT_THEN_MAC: _empty,
    EXTENDED_MASTER_SECRET: _empty,
    COMPRESS_CERTIFICATE: _u16_vec8,
    RECORD_SIZE_LIMIT: _u16_value,
    SESSION_TICKET: _raw,
    PRE_SHARED_KEY: _pre_shared_key,
    EARLY_DATA: _early_data,
    SUPPORTED_VERSIONS: _supported_versions,
    COOKIE: _cookie,
    PSK_KEY_EXCHANGE_MODES: _u8_vec8,
    POST_HANDSHAKE_AUTH: _empty,
    KEY_SHARE: _key_share,
    APPLICATION_SETTINGS_OLD: _application_settings,
    APPLICATION_SETTINGS: _application_settings,
    ENCRYPTED_CLIENT_HELLO: _ech,
    RENEGOTIATION_INFO: _renegotiation_info,
}

# --- fast decoders ----------------------------------------------------------------------------------------------
# Why: a ClientHello carries a dozen extensions and a Reader object per sub-structure made their decoding most of
# the parser's time. These decode a well-formed body with plain indexing and precompiled structs; anything they do
# not recognise as exactly well-formed (a length that does not add up, a cap reached) raises `_Declined` (or
# IndexError / struct.error on a short body) and the body goes through the Reader-based decoder above, which
# stays the reference for results and for error reasons. tests/tlsparse checks both agree on arbitrary bodies.

_EXT_HEADER = struct.Struct("!HH").unpack_from
_U16 = struct.Struct("!H").unpack_from
_U32 = struct.Struct("!I").unpack_from
# Compiled formats for the list lengths real hellos have (cipher suites, groups, signature algorithms); longer
# lists, which a peer picks, use struct's own bounded cache of formats. Built once: the parser keeps no state.
_U16_LISTS: tuple[Callable[[bytes, int], tuple[int, ...]], ...] = tuple(
    struct.Struct(f"!{count}H").unpack_from for count in range(129))


_new_extension = positional_factory(Extension)  # type, data, parsed, error
_new_key_share_entry = positional_factory(KeyShareEntry)  # group, key_exchange_length


class _Declined(Exception):
    """A fast decoder hands the body to the reference decoder."""


def u16_values(data: bytes | bytearray, pos: int, count: int) -> tuple[int, ...]:
    """`count` big-endian u16 values at `pos` (the caller has checked the bounds)."""
    if count < 129:
        return _U16_LISTS[count](data, pos)
    return struct.unpack_from(f"!{count}H", data, pos)


def _fast_u16_vec16(body: bytes, ctx: HelloContext) -> tuple[int, ...]:
    n = _U16(body, 0)[0]
    if n + 2 != len(body) or n & 1 or n > 2 * MAX_LIST_ITEMS:
        raise _Declined
    return u16_values(body, 2, n >> 1)


def _fast_u16_vec8(body: bytes, ctx: HelloContext) -> tuple[int, ...]:
    n = body[0]
    if n + 1 != len(body) or n & 1:
        raise _Declined
    return u16_values(body, 1, n >> 1)


def _fast_u8_vec8(body: bytes, ctx: HelloContext) -> tuple[int, ...]:
    if body[0] + 1 != len(body):
        raise _Declined
    return tuple(body[1:])


def _fast_supported_versions(body: bytes, ctx: HelloContext) -> tuple[int, ...] | int:
    if ctx is SH or ctx is HRR:
        if len(body) != 2:
            raise _Declined
        return _U16(body, 0)[0]
    return _fast_u16_vec8(body, ctx)


def _fast_server_name(body: bytes, ctx: HelloContext) -> tuple[str, ...]:
    end = len(body)
    if end == 0:
        return ()
    if _U16(body, 0)[0] + 2 != end:
        raise _Declined
    names: list[str] = []
    pos = 2
    while pos < end:
        stop = pos + 3 + _U16(body, pos + 1)[0]
        if stop > end:
            raise _Declined
        if body[pos] == 0:
            if len(names) >= MAX_LIST_ITEMS:
                raise _Declined
            names.append(body[pos + 3:stop].decode("latin-1"))
        pos = stop
    return tuple(names)


def _fast_alpn(body: bytes, ctx: HelloContext) -> tuple[str, ...]:
    end = len(body)
    if _U16(body, 0)[0] + 2 != end:
        raise _Declined
    names: list[str] = []
    pos = 2
    while pos < end:
        stop = pos + 1 + body[pos]
        if stop > end or len(names) >= MAX_LIST_ITEMS:
            raise _Declined
        names.append(body[pos + 1:stop].decode("latin-1"))
        pos = stop
    return tuple(names)


def _fast_application_settings(body: bytes, ctx: HelloContext) -> tuple[str, ...] | bytes:
    return _fast_alpn(body, ctx) if ctx is CH else body


def _fast_key_share(body: bytes, ctx: HelloContext) -> tuple[KeyShareEntry, ...] | KeyShareEntry | int:
    end = len(body)
    if ctx is HRR:
        if end != 2:
            raise _Declined
        return _U16(body, 0)[0]
    if ctx is SH:
        group, length = _EXT_HEADER(body, 0)
        if length + 4 != end:
            raise _Declined
        return _new_key_share_entry(group, length)
    if _U16(body, 0)[0] + 2 != end:
        raise _Declined
    entries: list[KeyShareEntry] = []
    pos = 2
    while pos < end:
        if pos + 4 > end or len(entries) >= MAX_LIST_ITEMS:
            raise _Declined
        group, length = _EXT_HEADER(body, pos)
        pos += 4 + length
        if pos > end:
            raise _Declined
        entries.append(_new_key_share_entry(group, length))
    return tuple(entries)


def _fast_empty(body: bytes, ctx: HelloContext) -> bool:
    if body:
        raise _Declined
    return True


def _fast_early_data(body: bytes, ctx: HelloContext) -> bool | int:
    if ctx is NST:
        if len(body) != 4:
            raise _Declined
        return _U32(body, 0)[0]
    return _fast_empty(body, ctx)


def _fast_status_request(body: bytes, ctx: HelloContext) -> bool | int:
    if not body:
        return True
    status_type = body[0]
    if ctx is CH and status_type == 1:  # responder_id_list and request_extensions, nothing after them
        end = len(body)
        pos = 3 + _U16(body, 1)[0]
        if pos + 2 > end or pos + 2 + _U16(body, pos)[0] != end:
            raise _Declined
    return status_type


def _fast_renegotiation_info(body: bytes, ctx: HelloContext) -> bytes:
    if body[0] + 1 != len(body):
        raise _Declined
    return body[1:]


def _fast_u16_value(body: bytes, ctx: HelloContext) -> int:
    if len(body) != 2:
        raise _Declined
    return _U16(body, 0)[0]


def _fast_u8_value(body: bytes, ctx: HelloContext) -> int:
    if len(body) != 1:
        raise _Declined
    return body[0]


def _fast_raw(body: bytes, ctx: HelloContext) -> bytes:
    return body


def _fast_padding(body: bytes, ctx: HelloContext) -> int:
    return len(body)


def _fast_sct(body: bytes, ctx: HelloContext) -> bool | bytes:
    return body if body else True


def _fast_cookie(body: bytes, ctx: HelloContext) -> bytes:
    if _U16(body, 0)[0] + 2 != len(body):
        raise _Declined
    return body[2:]


# Extension types whose bodies are unique to a connection: never remembered in a ParseCache (see tlsparse.cache).
_UNIQUE_PER_CONNECTION = frozenset((KEY_SHARE, PRE_SHARED_KEY, ENCRYPTED_CLIENT_HELLO, COOKIE, SESSION_TICKET))
_NO_MEMO: MappingProxyType[bytes, Extension] = MappingProxyType({})  # what is looked up without a cache

# Every type of _DECODERS except the rare ones (pre_shared_key, ECH), which keep the Reader path.
_FAST_DECODERS: dict[int, Callable[[bytes, HelloContext], object]] = {
    SERVER_NAME: _fast_server_name,
    MAX_FRAGMENT_LENGTH: _fast_u8_value,
    STATUS_REQUEST: _fast_status_request,
    SUPPORTED_GROUPS: _fast_u16_vec16,
    EC_POINT_FORMATS: _fast_u8_vec8,
    SIGNATURE_ALGORITHMS: _fast_u16_vec16,
    SIGNATURE_ALGORITHMS_CERT: _fast_u16_vec16,
    HEARTBEAT: _fast_u8_value,
    ALPN: _fast_alpn,
    SIGNED_CERTIFICATE_TIMESTAMP: _fast_sct,
    PADDING: _fast_padding,
    ENCRYPT_THEN_MAC: _fast_empty,
    EXTENDED_MASTER_SECRET: _fast_empty,
    COMPRESS_CERTIFICATE: _fast_u16_vec8,
    RECORD_SIZE_LIMIT: _fast_u16_value,
    SESSION_TICKET: _fast_raw,
    EARLY_DATA: _fast_early_data,
    SUPPORTED_VERSIONS: _fast_supported_versions,
    COOKIE: _fast_cookie,
    PSK_KEY_EXCHANGE_MODES: _fast_u8_vec8,
    POST_HANDSHAKE_AUTH: _fast_empty,
    KEY_SHARE: _fast_key_share,
    APPLICATION_SETTINGS_OLD: _fast_application_settings,
    APPLICATION_SETTINGS: _fast_application_settings,
    RENEGOTIATION_INFO: _fast_renegotiation_info,
}


def decode_extension(ext_type: int, data: bytes, ctx: HelloContext, *, base: int = 0) -> Extension:
    """One extension; an undecodable body yields `parsed=None` and `error`, never an exception."""
    decoder = _DECODERS.get(ext_type)
    if decoder is None:
        return Extension(type=ext_type, data=data)
    try:
        parsed = decoder(Reader(data, layer=LAYER, base=base), ctx)
    except TlsParseError as err:
        return Extension(type=ext_type, data=data, error=err.reason)
    return Extension(type=ext_type, data=data, parsed=parsed)


def parse_extensions(r: Reader, ctx: HelloContext, cache: ParseCache | None = None) -> tuple[Extension, ...]:
    """The u16-length-prefixed extension list at the reader's position (the whole block is consumed).
    `cache` remembers the extensions that recur from one connection to the next (see tlsparse.cache)."""
    data, pos = r.data, r.pos
    if r.end - pos >= 2:
        stop = pos + 2 + ((data[pos] << 8) | data[pos + 1])
        if stop <= r.end:
            fast = split_extensions(data, pos + 2, stop, ctx, r.base, cache)
            if fast is not None:
                r.pos = stop
                return fast
    return _parse_extensions_checked(r, ctx)


def _parse_extensions_checked(r: Reader, ctx: HelloContext) -> tuple[Extension, ...]:
    """The reference path: field by field through a Reader, for blocks whose framing is broken (it raises the
    exact error at the exact offset)."""
    block = r.sub16("extensions")
    extensions: list[Extension] = []
    while not block.done():
        if len(extensions) >= MAX_EXTENSIONS:
            raise block.fail(f"too_many_extensions: more than {MAX_EXTENSIONS}")
        ext_type = block.u16("extension_type")
        start = block.pos + 2
        data = block.vec16("extension_data")
        extensions.append(decode_extension(ext_type, data, ctx, base=block.base + start))
    return tuple(extensions)


def split_extensions(data: bytes | bytearray, pos: int, stop: int, ctx: HelloContext,
                     base: int = 0, cache: ParseCache | None = None) -> tuple[Extension, ...] | None:
    """The extensions in `data[pos:stop]` (a whole block's contents), or None when its framing is broken (then
    `_parse_extensions_checked` says how). Each body goes through its fast decoder, and through the Reader-based
    one when the fast decoder declines it, so results and errors are the same as the reference path's. With a
    `cache`, bodies that recur are decoded once (the same objects are handed out again), and so are whole blocks
    that recur but for the bodies unique to a connection (see `_known_block`)."""
    if data.__class__ is not bytes:
        data = bytes(data)  # slices must be bytes (memo keys, Extension.data)
    first = pos
    if cache is not None:
        shapes = cache.extension_blocks[ctx].get(stop - pos)
        if shapes is not None:
            shape = shapes[1].get(data[pos:pos + shapes[0]])
            if shape is not None:
                known = _known_block(shape, data, pos, ctx, base, cache)
                if known is not None:
                    return known
    extensions: list[Extension] = []
    append = extensions.append
    get = cache.extensions[ctx].get if cache is not None else _NO_MEMO.get
    # (index, start, end) of the bodies unique to the connection, while every other body is found in the memo
    # (then the block may recur: see _remember_block); None once one is not.
    varying: list[tuple[int, int, int]] | None = []
    # Kept to the fewest operations: a ClientHello's dozen extensions go round this loop on every connection,
    # and most of them are found in the memo.
    if stop - pos <= _MAX_BLOCK_UNDER_CAP:
        # Too short to hold more than MAX_EXTENSIONS extensions (4 bytes at least each): no count to keep. And
        # no test for a header cut short: its length, read from bytes past `stop` when there are some, gives an
        # end past `stop` all the same; when there are none the index fails.
        while pos < stop:
            try:
                end = pos + 4 + ((data[pos + 2] << 8) | data[pos + 3])
            except IndexError:
                return None
            if end > stop:
                return None
            key = data[pos:end]
            ext = get(key)
            if ext is None:
                ext = _decode_and_remember(key, ctx, base + pos + 4, cache)
                if varying is not None:
                    if ext.data and ext.type in _UNIQUE_PER_CONNECTION:
                        varying.append((len(extensions), pos, end))
                    else:
                        varying = None
            append(ext)
            pos = end
    else:
        while pos < stop:
            if pos + 4 > stop or len(extensions) >= MAX_EXTENSIONS:  # (the cap: hostile blocks stop here too)
                return None
            end = pos + 4 + ((data[pos + 2] << 8) | data[pos + 3])
            if end > stop:
                return None
            key = data[pos:end]
            ext = get(key)
            append(ext if ext is not None else _decode_and_remember(key, ctx, base + pos + 4, cache))
            pos = end
        varying = None  # (longer than any block worth remembering whole)
    found = tuple(extensions)
    if varying is not None and cache is not None:
        _remember_block(found, varying, data, first, stop, ctx, cache)
    return found


# Blocks remembered whole (ParseCache.extension_blocks): by length, then by their first bytes up to the first body
# unique to a connection (the same count of bytes for every block of that length: the first one's), the parts
# of the rest that must match byte for byte ((start, end, bytes) relative to the block's start: everything but
# those bodies, whose headers are in them), those bodies' extensions ((index, start, end): their wire bytes,
# header included) and the block's extensions (None at those indexes).
# A fourth item says whether the extensions kept are free of what `extension_problems` reports (no error, no type
# twice: the unique bodies' types included).
_BlockShape = tuple[tuple[tuple[int, int, bytes], ...], tuple[tuple[int, int, int], ...], tuple[Extension | None, ...],
                    bool]
_SHAPES_PER_LENGTH = 16  # blocks of one length remembered (clients whose blocks never recur stop adding here)


def _known_block(shape: _BlockShape, data: bytes, pos: int, ctx: HelloContext,
                 base: int, cache: ParseCache | None = None) -> tuple[Extension, ...] | None:
    """The extensions of a block whose first bytes are those of a remembered one of its length, when it matches
    that block but for the bodies unique to a connection; None otherwise. Why it gives what the walk would:
    the extensions' headers are among the bytes that match, so every extension starts and ends where it did in
    the remembered block, and the same bytes decode to the same extensions; the unique bodies are decoded as
    the walk decodes them (they are never in the memo).

    With a `cache`, a result `extension_problems` would find nothing in (the block's kept extensions were clean,
    and so are the unique bodies just decoded) becomes `cache.clean_extensions`: the decoder then skips that
    check for it (~5,000 instructions per ClientHello)."""
    fixed, unique, slots, clean = shape
    for start, end, part in fixed:
        if data[pos + start:pos + end] != part:
            return None
    if not unique:
        if clean and cache is not None:
            cache.clean_extensions = slots  # type: ignore[assignment]
        return slots  # type: ignore[return-value]
    extensions = list(slots)
    for index, start, end in unique:
        ext = extensions[index] = _decode_and_remember(data[pos + start:pos + end], ctx, base + pos + start + 4,
                                                       None)
        if ext.error is not None:
            clean = False
    found = tuple(extensions)
    if clean and cache is not None:
        cache.clean_extensions = found  # type: ignore[assignment]
    return found  # type: ignore[return-value]


def _remember_block(extensions: tuple[Extension, ...], varying: list[tuple[int, int, int]], data: bytes, first: int,
                    stop: int, ctx: HelloContext, cache: ParseCache) -> None:
    """Remember the block `data[first:stop]`, whose extensions were all in the memo but for the bodies unique to
    the connection (`varying`: their indexes and wire bytes, as split_extensions found them)."""
    size = stop - first
    if size > cache.MAX_EXTENSION_BLOCK:
        return
    lengths = cache.extension_blocks[ctx]
    entry = lengths.get(size)
    if entry is None:
        # The first block of that length that could recur: blocks are remembered from the next one on (why: many
        # captures hold a couple of connections per client, and a block remembered for one more hello costs more
        # than it saves). The entry holds no block: its empty first bytes find none.
        if len(lengths) >= cache.MAX_EXTENSION_BLOCKS:
            lengths.clear()
        lengths[size] = (0, {})
        return
    parts = []
    slots: list[Extension | None] = list(extensions)
    part_start = first
    for index, start, end in varying:
        parts.append((part_start - first, start + 4 - first, data[part_start:start + 4]))  # its header included
        slots[index] = None
        part_start = end
    if part_start < stop or not parts:
        parts.append((part_start - first, size, data[part_start:stop]))
    probe, head = parts[0][1], parts[0][2]  # (parts[0] starts the block)
    if entry[0] != probe:
        entry = lengths[size] = (probe, {})
    elif len(entry[1]) >= _SHAPES_PER_LENGTH:
        return
    kept = [ext for ext in slots if ext is not None]
    clean = len({ext.type for ext in extensions}) == len(extensions) and all(ext.error is None for ext in kept)
    entry[1][head] = (tuple(parts[1:]), tuple([(index, start - first, end - first) for index, start, end in varying]),
                      tuple(slots), clean)


def _decode_and_remember(key: bytes, ctx: HelloContext, base: int, cache: ParseCache | None) -> Extension:
    """The extension whose wire bytes (type, length, body) are `key`, decoded and kept in the cache (if any) when
    it is the kind that recurs."""
    ext_type = (key[0] << 8) | key[1]
    body = key[4:]
    fast = _FAST_DECODERS.get(ext_type)
    if fast is not None:
        try:
            ext = _new_extension(ext_type, body, fast(body, ctx), None)
        except (_Declined, IndexError, struct.error):
            ext = decode_extension(ext_type, body, ctx, base=base)
    elif ext_type in _DECODERS:
        ext = decode_extension(ext_type, body, ctx, base=base)
    else:
        ext = _new_extension(ext_type, body, None, None)
    if cache is not None:
        length = len(body)
        if length <= cache.MAX_EXTENSION_BODY and (length == 0 or ext_type not in _UNIQUE_PER_CONNECTION):
            memo = cache.extensions[ctx]
            if len(memo) >= cache.MAX_EXTENSIONS:
                memo.clear()
            memo[key] = ext
    return ext


def extension_problems(extensions: tuple[Extension, ...]) -> list[tuple[str, str]]:
    """(anomaly name, detail) for undecodable and duplicated extensions (RFC 8446 4.2: at most one of each)."""
    if len({ext.type for ext in extensions}) == len(extensions):  # the usual case, checked cheaply first
        for ext in extensions:
            if ext.error is not None:
                break
        else:
            return []
    problems: list[tuple[str, str]] = []
    seen: set[int] = set()
    for ext in extensions:
        if ext.error is not None:
            problems.append(("bad_extension", f"extension 0x{ext.type:04x}: {ext.error}"))
        if ext.type in seen:
            problems.append(("duplicate_extension", f"extension 0x{ext.type:04x}"))
        seen.add(ext.type)
    return problems
