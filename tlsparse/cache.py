"""`ParseCache`: what the parser may remember from one connection for the next, owned by the caller.

Why: real traffic repeats the same few client and server stacks, so most extension bodies (server names, groups,
signature algorithms, versions, padding), the cipher-suite lists clients offer and the suites servers pick
recur from one connection to the next, and what they decode to is immutable. A `TlsConnection` given a cache (`TlsConnection(cache=ParseCache())`,
one per capture) decodes each of them once; without one it decodes everything itself. The parser keeps no
memo of its own (no globals): the caller decides how long remembered things live and who shares them.

Bounds (hostile traffic sends distinct bodies by the thousand): each table is emptied when full, so the cache
costs at most its caps times the largest body it keeps. Bodies unique to a connection (key shares, PSK
identities, ECH, cookies, tickets) and long ones are never kept.
"""
from __future__ import annotations

from tlsparse.extensions import HelloContext
from tlsparse.messages import Certificate, Extension

# The contexts as a tuple: iterating the enum class runs a Python generator, twice per cache made (one per capture).
_CONTEXTS = tuple(HelloContext)


class ParseCache:
    """Decoded extensions by message context and wire bytes, ClientHello cipher-suite lists by wire bytes,
    cipher-suite kinds by suite code, and Certificate messages by version and body."""

    MAX_EXTENSIONS = 1024  # per context: real traffic needs a few dozen
    MAX_EXTENSION_BODY = 256  # longer bodies are decoded every time
    MAX_SUITE_LISTS = 1024
    MAX_SUITE_LIST_BYTES = 512  # longer lists are decoded every time
    MAX_SUITE_KINDS = 512
    MAX_EXTENSION_BLOCKS = 64  # per context: lengths of whole extension blocks remembered (16 blocks each at most)
    MAX_EXTENSION_BLOCK = 2048  # longer blocks are not remembered whole
    # Certificate message bodies remembered, in bytes: real servers' chains are 2-10 KB, so this holds a few
    # hundred of them; a hostile stream of distinct chains empties the table each time it is reached.
    MAX_CERTIFICATE_BYTES = 2 << 20

    __slots__ = ("certificate_bytes", "certificates", "clean_extensions", "extension_blocks", "extensions",
                 "suite_kinds", "suite_lists")

    def __init__(self) -> None:
        # context -> (type, length, body) as on the wire -> the Extension they decode to
        self.extensions: dict[HelloContext, dict[bytes, Extension]] = {ctx: {} for ctx in _CONTEXTS}
        # context -> block length -> (how many first bytes, those bytes -> a whole extension block as it recurs but
        # for the bodies unique to a connection): a hello's extensions without going through them one by one (see
        # tlsparse.extensions._known_block)
        self.extension_blocks: dict[HelloContext, dict[int, tuple[int, dict[bytes, tuple]]]] = {  # type: ignore[type-arg]
            ctx: {} for ctx in _CONTEXTS}
        # cipher suite -> "ecdhe" / "dhe" / "other" / None (see tlsparse.handshake.suite_kind)
        self.suite_kinds: dict[int | None, str | None] = {}
        # a ClientHello's cipher_suites vector body as on the wire -> the suite codes (one tuple, shared)
        self.suite_lists: dict[bytes, tuple[int, ...]] = {}
        # The last extensions a remembered block gave that `extension_problems` would find nothing in (the block's
        # own were checked when it was remembered; see tlsparse.extensions._known_block): the decoder skips that
        # check for this very tuple (compared by identity: it is immutable).
        self.clean_extensions: tuple[Extension, ...] | None = None
        # (version the body was read as, Certificate body) -> the message it decodes to (see
        # tlsparse.handshake._remembered_certificate), and the bytes of the bodies kept
        self.certificates: dict[tuple[int | None, bytes], Certificate] = {}
        self.certificate_bytes = 0

    def remember_certificate(self, key: tuple[int | None, bytes], message: Certificate) -> None:
        size = len(key[1])
        if self.certificate_bytes + size > self.MAX_CERTIFICATE_BYTES:
            self.certificates.clear()
            self.certificate_bytes = 0
            if size > self.MAX_CERTIFICATE_BYTES:
                return
        self.certificates[key] = message
        self.certificate_bytes += size

    def clear(self) -> None:
        for memo in self.extensions.values():
            memo.clear()
        for shapes in self.extension_blocks.values():
            shapes.clear()
        self.suite_kinds.clear()
        self.suite_lists.clear()
        self.clean_extensions = None
        self.certificates.clear()
        self.certificate_bytes = 0
