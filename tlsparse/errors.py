"""The one exception type of the TLS parsing layer.

Internal decoders raise `TlsParseError` for malformed input; `TlsConnection` catches it and turns it into a
`ParseAnomaly` event, so nothing ever escapes to the caller of `TlsConnection.receive`.
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
