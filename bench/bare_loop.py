"""The floor for any pure-Python capture analyzer: read pcap records, parse Ethernet/IPv4/TCP headers, count per
connection. No TLS, no reassembly, no output. Whatever tlsflow does costs this much at least.

    python -m bench.bare_loop CAPTURE     # prints "packets=N tcp=N connections=N"

Classic pcap only (either byte order, micro- or nanosecond timestamps), Ethernet link type.
"""
from __future__ import annotations

import struct
import sys

CHUNK = 1 << 23

_MAGICS = {
    b"\xd4\xc3\xb2\xa1": "<",
    b"\x4d\x3c\xb2\xa1": "<",
    b"\xa1\xb2\xc3\xd4": ">",
    b"\xa1\xb2\x3c\x4d": ">",
}


def count_connections(path: str) -> tuple[int, int, int]:
    """(packets, TCP packets, distinct TCP connections by unordered 4-tuple)."""
    with open(path, "rb") as f:
        header = f.read(24)
        order = _MAGICS.get(header[:4])
        if order is None or len(header) < 24:
            raise SystemExit(f"{path}: not a classic pcap file")
        if struct.unpack(order + "I", header[20:24])[0] != 1:
            raise SystemExit(f"{path}: link type is not Ethernet")
        record = struct.Struct(order + "IIII").unpack_from
        ip_unpack = struct.Struct("!BBHHHBBH4s4s").unpack_from
        tcp_unpack = struct.Struct("!HHIIBBHHH").unpack_from
        connections: dict[tuple, list[int]] = {}
        packets = tcp = 0
        buf = b""
        pos = 0
        eof = False
        while True:
            if not eof and len(buf) - pos < 16 + 65536:
                more = f.read(CHUNK)
                eof = not more
                buf = buf[pos:] + more
                pos = 0
            if len(buf) - pos < 16:
                break
            _, _, caplen, _ = record(buf, pos)
            start = pos + 16
            pos = start + caplen
            if pos > len(buf):
                break  # truncated last record
            packets += 1
            if buf[start + 12 : start + 14] != b"\x08\x00":
                continue
            vihl, _, total_len, _, _, _, proto, _, src, dst = ip_unpack(buf, start + 14)
            if proto != 6:
                continue
            tcp_at = start + 14 + (vihl & 0x0F) * 4
            sport, dport, _seq, _ack, offset, flags, _window, _, _ = tcp_unpack(buf, tcp_at)
            payload_len = total_len - (vihl & 0x0F) * 4 - (offset >> 4) * 4
            key = (src, sport, dst, dport) if (src, sport) < (dst, dport) else (dst, dport, src, sport)
            conn = connections.get(key)
            if conn is None:
                connections[key] = [1, payload_len, flags]
            else:
                conn[0] += 1
                conn[1] += payload_len
                conn[2] |= flags
            tcp += 1
    return packets, tcp, len(connections)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m bench.bare_loop CAPTURE")
    packets, tcp, connections = count_connections(args[0])
    print(f"packets={packets} tcp={tcp} connections={connections}")


if __name__ == "__main__":
    main()
