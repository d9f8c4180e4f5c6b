"""Typed TLS handshake messages and extensions, as they were on the wire.

Wire integers are kept as they were sent (GREASE and unknown codes included); names are views computed by
`tlsparse.registry`. Every message keeps enough to be re-checked later (certificate DER, signatures, raw params).
These classes are the interface between the parser and everything downstream: add fields, do not rename them.
"""
from __future__ import annotations

from dataclasses import dataclass

from tlsparse.fastinit import fast_frozen_init

# Handshake types (IANA TLS HandshakeType).
HELLO_REQUEST = 0
CLIENT_HELLO = 1
SERVER_HELLO = 2
HELLO_VERIFY_REQUEST = 3
NEW_SESSION_TICKET = 4
END_OF_EARLY_DATA = 5
HELLO_RETRY_REQUEST = 6  # never on the wire in TLS 1.3 final; a ServerHello with the HRR random is reported as this
ENCRYPTED_EXTENSIONS = 8
CERTIFICATE = 11
SERVER_KEY_EXCHANGE = 12
CERTIFICATE_REQUEST = 13
SERVER_HELLO_DONE = 14
CERTIFICATE_VERIFY = 15
CLIENT_KEY_EXCHANGE = 16
FINISHED = 20
CERTIFICATE_URL = 21
CERTIFICATE_STATUS = 22
SUPPLEMENTAL_DATA = 23
KEY_UPDATE = 24
COMPRESSED_CERTIFICATE = 25
MESSAGE_HASH = 254

# Content types.
CHANGE_CIPHER_SPEC = 20
ALERT = 21
HANDSHAKE = 22
APPLICATION_DATA = 23
HEARTBEAT = 24

# Extension types used by the helpers below.
EXT_SERVER_NAME = 0x0000
EXT_STATUS_REQUEST = 0x0005
EXT_SUPPORTED_GROUPS = 0x000A
EXT_EC_POINT_FORMATS = 0x000B
EXT_SIGNATURE_ALGORITHMS = 0x000D
EXT_ALPN = 0x0010
EXT_PRE_SHARED_KEY = 0x0029
EXT_EARLY_DATA = 0x002A
EXT_SUPPORTED_VERSIONS = 0x002B
EXT_KEY_SHARE = 0x0033
EXT_ENCRYPTED_CLIENT_HELLO = 0xFE0D
EXT_RENEGOTIATION_INFO = 0xFF01

# RFC 8446 4.1.3: a ServerHello with this random is a HelloRetryRequest.
HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")


def is_grease(value: int) -> bool:
    """RFC 8701 GREASE values: 0x?A?A with both bytes equal."""
    return (value & 0x0F0F) == 0x0A0A and (value >> 8) == (value & 0xFF)


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Extension:
    """One extension as sent. `parsed` holds the decoded body for the types the parser knows (a tuple of ints,
    a tuple of strings, an int, a KeyShare tuple, ...); None when unknown or undecodable (`error` then says why)."""

    type: int
    data: bytes
    parsed: object = None
    error: str | None = None


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class KeyShareEntry:
    group: int
    key_exchange_length: int


def _ext(extensions: tuple[Extension, ...], ext_type: int) -> Extension | None:
    for ext in extensions:
        if ext.type == ext_type:
            return ext
    return None


class _HasExtensions:
    """Read-only views over the extension list shared by ClientHello, ServerHello and EncryptedExtensions."""

    __slots__ = ()
    extensions: tuple[Extension, ...]

    def extension(self, ext_type: int) -> Extension | None:
        return _ext(self.extensions, ext_type)

    def has_extension(self, ext_type: int) -> bool:
        return _ext(self.extensions, ext_type) is not None

    @property
    def extension_types(self) -> tuple[int, ...]:
        return tuple(e.type for e in self.extensions)

    @property
    def alpn(self) -> tuple[str, ...]:
        """ALPN protocol names (decoded latin-1 so any byte survives)."""
        ext = _ext(self.extensions, EXT_ALPN)
        return tuple(ext.parsed) if ext is not None and ext.parsed is not None else ()


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ClientHello(_HasExtensions):
    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suites: tuple[int, ...]
    compression_methods: tuple[int, ...]
    extensions: tuple[Extension, ...] = ()
    sslv2: bool = False  # an SSLv2-compatible CLIENT-HELLO (cipher kinds narrowed to TLS suites where possible)
    sslv2_cipher_kinds: tuple[int, ...] = ()  # 3-byte SSLv2 cipher kinds, as sent, for SSLv2 hellos

    @property
    def sni(self) -> str | None:
        ext = _ext(self.extensions, EXT_SERVER_NAME)
        if ext is None or not ext.parsed:
            return None
        return ext.parsed[0]  # parsed: tuple of host names (decoded latin-1)

    @property
    def supported_versions(self) -> tuple[int, ...]:
        ext = _ext(self.extensions, EXT_SUPPORTED_VERSIONS)
        return tuple(ext.parsed) if ext is not None and ext.parsed is not None else ()

    @property
    def supported_groups(self) -> tuple[int, ...]:
        ext = _ext(self.extensions, EXT_SUPPORTED_GROUPS)
        return tuple(ext.parsed) if ext is not None and ext.parsed is not None else ()

    @property
    def ec_point_formats(self) -> tuple[int, ...]:
        ext = _ext(self.extensions, EXT_EC_POINT_FORMATS)
        return tuple(ext.parsed) if ext is not None and ext.parsed is not None else ()

    @property
    def signature_algorithms(self) -> tuple[int, ...]:
        ext = _ext(self.extensions, EXT_SIGNATURE_ALGORITHMS)
        return tuple(ext.parsed) if ext is not None and ext.parsed is not None else ()

    @property
    def key_shares(self) -> tuple[KeyShareEntry, ...]:
        ext = _ext(self.extensions, EXT_KEY_SHARE)
        if ext is None or ext.parsed is None:
            return ()
        return tuple(ext.parsed)  # type: ignore[call-overload]

    @property
    def key_share_groups(self) -> tuple[int, ...]:
        return tuple(entry.group for entry in self.key_shares)

    @property
    def message_length(self) -> int:
        """The handshake message's length on the wire, its 4-byte header included, as its fields give it (not kept
        from the parse: only a verdict about how the ClientHello was cut up asks, rarely). An empty extensions
        block is not counted: a hello that sent one is 2 bytes longer than this."""
        body = (2 + 32 + 1 + len(self.session_id) + 2 + 2 * len(self.cipher_suites) + 1
                + len(self.compression_methods))
        if self.extensions:
            body += 2 + sum(4 + len(ext.data) for ext in self.extensions)
        return 4 + body

    @property
    def highest_version(self) -> int:
        """The highest non-GREASE version offered: supported_versions wins over legacy_version."""
        offered = [v for v in self.supported_versions if not is_grease(v)]
        return max(offered) if offered else self.legacy_version


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ServerHello(_HasExtensions):
    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    compression_method: int
    extensions: tuple[Extension, ...] = ()

    @property
    def is_hello_retry_request(self) -> bool:
        return self.random == HRR_RANDOM

    @property
    def selected_version(self) -> int:
        """supported_versions (TLS 1.3) wins over legacy_version."""
        ext = _ext(self.extensions, EXT_SUPPORTED_VERSIONS)
        if ext is not None and isinstance(ext.parsed, int):
            return ext.parsed
        return self.legacy_version

    @property
    def key_share_group(self) -> int | None:
        """The group of the server's key share (TLS 1.3), or the group an HRR asks for."""
        ext = _ext(self.extensions, EXT_KEY_SHARE)
        if ext is None or ext.parsed is None:
            return None
        if isinstance(ext.parsed, KeyShareEntry):
            return ext.parsed.group
        if isinstance(ext.parsed, int):  # HelloRetryRequest: selected_group only
            return ext.parsed
        return None


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class EncryptedExtensions(_HasExtensions):
    extensions: tuple[Extension, ...] = ()


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Certificate:
    """Certificate message. `certificates` is the DER of each entry, leaf first, as sent."""

    certificates: tuple[bytes, ...]
    request_context: bytes | None = None  # TLS 1.3 only
    ocsp_response: bytes | None = None  # TLS 1.3: DER OCSPResponse stapled in the leaf's entry (status_request)


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ServerKeyExchange:
    """ECDHE or DHE parameters and their signature; RSA-export and PSK forms are kept in `raw` only."""

    raw: bytes
    kind: str  # "ecdhe", "dhe", "unknown"
    curve: int | None = None  # named group for ECDHE
    public_key_length: int | None = None  # bytes of the ECDH point or DH Ys
    dh_prime_bits: int | None = None
    signature_scheme: int | None = None  # TLS 1.2 SignatureAndHashAlgorithm as a 16-bit code; None before TLS 1.2
    signature: bytes = b""
    signed_params: bytes = b""  # the ServerECDHParams / ServerDHParams bytes the signature covers


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateRequest:
    certificate_types: tuple[int, ...] = ()  # TLS <= 1.2
    signature_algorithms: tuple[int, ...] = ()
    certificate_authorities: tuple[bytes, ...] = ()  # DER distinguished names
    request_context: bytes | None = None  # TLS 1.3 only
    extensions: tuple[Extension, ...] = ()  # TLS 1.3 only


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ServerHelloDone:
    pass


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateVerify:
    signature_scheme: int | None  # None for TLS < 1.2 (no algorithm field)
    signature: bytes


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ClientKeyExchange:
    raw: bytes


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Finished:
    verify_data: bytes


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class NewSessionTicket:
    lifetime: int
    ticket: bytes
    age_add: int | None = None  # TLS 1.3
    nonce: bytes | None = None  # TLS 1.3
    extensions: tuple[Extension, ...] = ()


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateStatus:
    status_type: int
    ocsp_response: bytes  # DER OCSPResponse


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class KeyUpdate:
    request_update: int


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class HelloRequest:
    pass


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class EndOfEarlyData:
    pass


@fast_frozen_init
@dataclass(frozen=True, slots=True, kw_only=True)
class RawHandshake:
    """A handshake type the parser does not decode, or one whose body did not decode (`error` says why)."""

    msg_type: int
    body: bytes
    error: str | None = None


HandshakeBody = (
    ClientHello | ServerHello | EncryptedExtensions | Certificate | ServerKeyExchange | CertificateRequest
    | ServerHelloDone | CertificateVerify | ClientKeyExchange | Finished | NewSessionTicket | CertificateStatus
    | KeyUpdate | HelloRequest | EndOfEarlyData | RawHandshake
)
