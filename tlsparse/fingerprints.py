"""TLS client and server fingerprints computed from typed hello messages: JA3, JA3S and JA4.

- JA3 / JA3S follow salesforce/ja3: decimal values joined with "-", fields joined with ",", MD5 of that string.
  GREASE (RFC 8701) is removed from the cipher, extension and group lists of JA3. JA3S keeps the server's values as
  sent, as salesforce's JA3S does (servers do not send GREASE).
- JA4 follows FoxIO's JA4 TLS client specification (technical_details/JA4.md; JA4 itself is BSD-3-Clause). The
  other JA4+ fingerprints (JA4S, JA4X, ...) are under a non-commercial licence and are deliberately absent.

SSLv2-compatible CLIENT-HELLOs: salesforce's ja3.py and Wireshark/tshark compute no JA3 for them (they only read
TLS handshake records), so `ja3` returns None for them and the record's `ja3` field stays null. JA4 has a version
code for SSL 2.0 ("s2"), so `ja4` computes one from the hello as the parser narrowed it (TLS cipher suites only,
no extensions): a hello of a TLS-capable client shows its offered version (e.g. "t10i..."), a pure SSLv2 client "s2".

The functions read the parser's decoded extension bodies (`Extension.parsed`); when a body was not decoded they
decode the few list-shaped extensions they need from the raw bytes, so a fingerprint survives a parser that could
not make sense of one extension.
"""
from __future__ import annotations

import hashlib
from typing import Any

from tlsparse.messages import (
    EXT_ALPN,
    EXT_EC_POINT_FORMATS,
    EXT_SERVER_NAME,
    EXT_SIGNATURE_ALGORITHMS,
    EXT_SUPPORTED_GROUPS,
    EXT_SUPPORTED_VERSIONS,
    ClientHello,
    Extension,
    ServerHello,
)
from tlsparse.registry import is_grease

__all__ = ["HelloFingerprints", "ja3", "ja3s", "ja4", "ja4_raw"]

# JA4's two-character version codes (JA4.md, "TLS and DTLS Version"); anything else is "00".
_JA4_VERSIONS = {
    0x0304: "13",
    0x0303: "12",
    0x0302: "11",
    0x0301: "10",
    0x0300: "s3",
    0x0002: "s2",
    0xFEFF: "d1",
    0xFEFD: "d2",
    0xFEFC: "d3",
}
_JA4_EMPTY_HASH = "000000000000"


def _u16_list(data: bytes, length_bytes: int) -> tuple[int, ...]:
    """A <length><u16 u16 ...> vector as TLS writes it; stops quietly at the first inconsistency."""
    if len(data) < length_bytes:
        return ()
    size = int.from_bytes(data[:length_bytes], "big")
    body = data[length_bytes:length_bytes + size]
    return tuple(int.from_bytes(body[i:i + 2], "big") for i in range(0, len(body) - 1, 2))


def _u8_list(data: bytes) -> tuple[int, ...]:
    if not data:
        return ()
    return tuple(data[1:1 + data[0]])


def _ext_u16s(ext: Extension | None, length_bytes: int = 2) -> tuple[int, ...]:
    if ext is None:
        return ()
    if isinstance(ext.parsed, (tuple, list)):
        return tuple(int(v) for v in ext.parsed)
    return _u16_list(ext.data, length_bytes)


def _find(extensions: tuple[Extension, ...], ext_type: int) -> Extension | None:
    for ext in extensions:
        if ext.type == ext_type:
            return ext
    return None


def _first_alpn(ext: Extension | None) -> bytes | None:
    """The first ALPN protocol name as bytes, or None when there is none."""
    if ext is None:
        return None
    if isinstance(ext.parsed, (tuple, list)):
        if not ext.parsed:
            return None
        first = ext.parsed[0]
        return first.encode("latin-1") if isinstance(first, str) else bytes(first)
    data = ext.data
    if len(data) < 3:
        return None
    size = data[2]
    return data[3:3 + size] if size else None


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("ascii"), usedforsecurity=False).hexdigest()


def _dash(values: tuple[int, ...] | list[int]) -> str:
    return "-".join(str(v) for v in values)


def ja3(ch: ClientHello) -> tuple[str, str] | None:
    """(md5 hex, JA3 string) of a ClientHello; None for an SSLv2-compatible hello (see the module docstring).

    JA3 string: legacy_version,ciphers,extension types,supported groups,EC point formats.
    """
    if ch.sslv2:
        return None
    ciphers = [c for c in ch.cipher_suites if not is_grease(c)]
    ext_types = [e.type for e in ch.extensions if not is_grease(e.type)]
    groups = [g for g in _ext_u16s(_find(ch.extensions, EXT_SUPPORTED_GROUPS)) if not is_grease(g)]
    point_ext = _find(ch.extensions, EXT_EC_POINT_FORMATS)
    if point_ext is None:
        points: tuple[int, ...] = ()
    elif isinstance(point_ext.parsed, (tuple, list)):
        points = tuple(point_ext.parsed)
    else:
        points = _u8_list(point_ext.data)
    text = ",".join((str(ch.legacy_version), _dash(ciphers), _dash(ext_types), _dash(groups), _dash(points)))
    return _md5(text), text


def ja3s(sh: ServerHello) -> tuple[str, str]:
    """(md5 hex, JA3S string) of a ServerHello: legacy_version,cipher suite,extension types."""
    text = ",".join((str(sh.legacy_version), str(sh.cipher_suite), _dash([e.type for e in sh.extensions])))
    return _md5(text), text


def _ja4_version(ch: ClientHello) -> str:
    sv_ext = _find(ch.extensions, EXT_SUPPORTED_VERSIONS)
    if sv_ext is not None:
        offered = [v for v in _ext_u16s(sv_ext, length_bytes=1) if not is_grease(v)]
        version = max(offered) if offered else -1
    else:
        version = ch.legacy_version
    return _JA4_VERSIONS.get(version, "00")


def _is_alnum(byte: int) -> bool:
    return 0x30 <= byte <= 0x39 or 0x41 <= byte <= 0x5A or 0x61 <= byte <= 0x7A


def _ja4_alpn(ch: ClientHello) -> str:
    first = _first_alpn(_find(ch.extensions, EXT_ALPN))
    if not first:
        return "00"
    if _is_alnum(first[0]) and _is_alnum(first[-1]):
        return chr(first[0]) + chr(first[-1])  # one character: it is both first and last
    hex_form = first.hex()
    return hex_form[0] + hex_form[-1]


def _hash12(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:12]


def _ja4_parts(ch: ClientHello, transport: str) -> tuple[str, str, str]:
    """JA4's a part, the sorted cipher list and the sorted extension list with signature algorithms."""
    if transport not in ("t", "q", "d"):
        raise ValueError(f"JA4 transport must be 't', 'q' or 'd', not {transport!r}")
    ciphers = [c for c in ch.cipher_suites if not is_grease(c)]
    ext_types = [e.type for e in ch.extensions if not is_grease(e.type)]
    sni = "d" if EXT_SERVER_NAME in ext_types else "i"
    part_a = (
        f"{transport}{_ja4_version(ch)}{sni}{min(len(ciphers), 99):02d}{min(len(ext_types), 99):02d}"
        f"{_ja4_alpn(ch)}"
    )
    cipher_list = ",".join(f"{c:04x}" for c in sorted(ciphers))
    hashed_exts = sorted(t for t in ext_types if t not in (EXT_SERVER_NAME, EXT_ALPN))
    ext_list = ",".join(f"{t:04x}" for t in hashed_exts)
    sig_algs = [s for s in _ext_u16s(_find(ch.extensions, EXT_SIGNATURE_ALGORITHMS)) if not is_grease(s)]
    if sig_algs:
        ext_list += "_" + ",".join(f"{s:04x}" for s in sig_algs)
    return part_a, cipher_list, ext_list if hashed_exts else ""


def ja4(ch: ClientHello, transport: str = "t") -> str:
    """FoxIO JA4 of a ClientHello, e.g. "t13d1516h2_8daaf6152771_e5627efa2ab1".

    transport: "t" (TLS over TCP), "q" (QUIC) or "d" (DTLS).
    """
    part_a, cipher_list, ext_list = _ja4_parts(ch, transport)
    part_b = _hash12(cipher_list) if cipher_list else _JA4_EMPTY_HASH
    part_c = _hash12(ext_list) if ext_list else _JA4_EMPTY_HASH
    return f"{part_a}_{part_b}_{part_c}"


def ja4_raw(ch: ClientHello, transport: str = "t") -> str:
    """JA4_r: the same fields before hashing (sorted lists), for debugging a fingerprint mismatch."""
    part_a, cipher_list, ext_list = _ja4_parts(ch, transport)
    return f"{part_a}_{cipher_list}_{ext_list}"


# Extensions whose bodies JA3 or JA4 read; of every other extension they read only the type.
_FINGERPRINTED_BODIES = frozenset({EXT_SUPPORTED_GROUPS, EXT_EC_POINT_FORMATS, EXT_SUPPORTED_VERSIONS, EXT_ALPN,
                                   EXT_SIGNATURE_ALGORITHMS})


class HelloFingerprints:
    """JA3, JA4 and JA3S remembered per hello shape, for an analyzer that fingerprints many connections.

    Why: real clients and servers repeat their hellos exactly but for the random, the session id, the key shares
    and the server name, none of which JA3, JA3S or JA4 read, and hashing the hello again for each connection was
    a good part of the per-connection cost. The key holds everything the fingerprints read: the legacy version,
    the SSLv2 flag, the cipher suites, every extension type in order, and both the raw body and the decoded value
    of the extensions whose content they read. A hello whose decoded values cannot be hashed (lists, from a
    hand-built hello) is fingerprinted without the memo.

    A subclass may remember more per ClientHello shape by extending `_client_values`, with values that depend only
    on what the key holds.
    """

    MAX_ENTRIES = 4096  # hello shapes remembered per side; emptied when full: memory stays bounded

    def __init__(self) -> None:
        self._client: dict[tuple[object, ...], tuple[Any, ...]] = {}
        self._server: dict[tuple[object, ...], str] = {}

    def client(self, ch: ClientHello) -> tuple[Any, ...]:
        """(JA3 hash or None, JA4) of a ClientHello, as `ja3(ch)[0]` and `ja4(ch)` give them (then what a
        subclass's `_client_values` adds)."""
        bodies = _FINGERPRINTED_BODIES
        key = (ch.legacy_version, ch.sslv2, ch.cipher_suites,
               tuple([(t, e.data, e.parsed) if (t := e.type) in bodies else t for e in ch.extensions]))
        try:
            found = self._client.get(key)
        except TypeError:  # an unhashable decoded value
            return self._client_values(ch)
        if found is None:
            found = self._client_values(ch)
            if len(self._client) >= self.MAX_ENTRIES:
                self._client.clear()
            self._client[key] = found
        return found

    def _client_values(self, ch: ClientHello) -> tuple[Any, ...]:
        pair = ja3(ch)
        return (pair[0] if pair is not None else None), ja4(ch)

    def server(self, sh: ServerHello) -> str:
        """The JA3S hash of a ServerHello, as `ja3s(sh)[0]` gives it."""
        key = (sh.legacy_version, sh.cipher_suite, tuple([e.type for e in sh.extensions]))
        found = self._server.get(key)
        if found is None:
            found = ja3s(sh)[0]
            if len(self._server) >= self.MAX_ENTRIES:
                self._server.clear()
            self._server[key] = found
        return found
