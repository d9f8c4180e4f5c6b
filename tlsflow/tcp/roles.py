"""Which side of a connection is the client, when no SYN says it: the first bytes, else the ports."""
from __future__ import annotations

# Ports of TLS services below 1024 or commonly used above it; a side on one of them is taken for the server.
TLS_SERVICE_PORTS = frozenset({443, 465, 563, 636, 853, 989, 990, 992, 993, 994, 995, 3269, 4433, 5061, 5223,
                               5986, 6697, 8443, 9443})


def looks_like_client_hello(prefix: bytes) -> bool | None:
    """Whether a stream starting with `prefix` starts with a ClientHello; None when more bytes are needed.

    TLS: handshake record (0x16), major version 3, any minor, 2-byte length, then handshake type 1 at byte 5.
    SSLv2: 2-byte record header with the high bit set, then message type 1 (CLIENT-HELLO) at byte 2.
    """
    if not prefix:
        return None
    first = prefix[0]
    if first == 0x16:
        if len(prefix) >= 2 and prefix[1] != 0x03:
            return False
        return prefix[5] == 0x01 if len(prefix) >= 6 else None
    if first & 0x80:
        return prefix[2] == 0x01 if len(prefix) >= 3 else None
    return False


def guess_client(first_port: int, second_port: int) -> int:
    """Index (0: the side that sent the connection's first packet, 1: the other) of the likely client.

    A side on a well-known (< 1024) or TLS service port is the server when the other is not; else the higher
    (ephemeral-looking) port is the client; with equal ports, the side that sent first.
    """
    known0 = first_port < 1024 or first_port in TLS_SERVICE_PORTS
    known1 = second_port < 1024 or second_port in TLS_SERVICE_PORTS
    if known0 != known1:
        return 1 if known0 else 0
    if first_port != second_port:
        return 0 if first_port > second_port else 1
    return 0
