"""The exception types of the TLS parsing layer.

Internal decoders raise `TlsParseError` for malformed input; `TlsConnection` catches it and turns it into a
`ParseAnomaly` event, so nothing ever escapes to the caller of `TlsConnection.receive`. `DecryptError` (raised by
`tlsparse.decrypt`) is not about malformed input but about a record a key log cannot open; it lives here so that
the parser can catch it without importing tlsparse.decrypt, which loads cryptography, before a key log is used.
"""
from __future__ import annotations


class TlsParseError(Exception):
    """Malformed TLS input: which layer, where (absolute stream offset when known), and why (a short weird name
    such as `truncated` or `trailing_bytes`, optionally followed by details)."""

    def __init__(self, layer: str, offset: int, reason: str) -> None:
        super().__init__(f"{layer} at offset {offset}: {reason}")
        self.layer = layer
        self.offset = offset
        self.reason = reason


class DecryptError(Exception):
    """A record that does not decrypt (or a suite that cannot be decrypted): why, and at which record sequence
    number of that direction (None when not about one record)."""

    def __init__(self, reason: str, *, sequence: int | None = None) -> None:
        super().__init__(reason if sequence is None else f"record {sequence}: {reason}")
        self.reason = reason
        self.sequence = sequence
