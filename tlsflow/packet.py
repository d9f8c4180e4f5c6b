"""The decoded TCP packet that flows from the capture readers into TCP reassembly.

One object per TCP segment seen in the capture; everything later stages need from the IP and TCP headers, and
nothing else, so that link-layer and IP details stay inside `tlsflow.capture`.
"""
from __future__ import annotations

from dataclasses import dataclass

# TCP flag bits as they sit in the header's flags byte (RFC 9293).
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80


@dataclass(frozen=True, slots=True)
class TcpPacket:
    frame: int  # 1-based frame number in the capture, as Wireshark numbers frames
    ts: float  # capture timestamp, epoch seconds
    ip_version: int  # 4 or 6
    src: str  # IP address text ("192.0.2.1", "2001:db8::1")
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int  # TCP flags byte, see the constants above
    window: int
    payload: bytes
    ttl: int  # IPv4 TTL or IPv6 hop limit: tells an injected RST from the peer's own packets
    ip_id: int | None  # IPv4 identification; None for IPv6
    cut: int = 0  # payload bytes the capture's snap length left out (the segment carried len(payload) + cut)

    @property
    def syn(self) -> bool:
        return bool(self.flags & SYN)

    @property
    def fin(self) -> bool:
        return bool(self.flags & FIN)

    @property
    def rst(self) -> bool:
        return bool(self.flags & RST)

    @property
    def has_ack(self) -> bool:
        return bool(self.flags & ACK)


def endpoint_text(ip: str, port: int) -> str:
    """`ip:port`, IPv6 as `[addr]:port`, as ../shared/CONTRACT.md spells endpoints."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
