"""Capture input: pcap and pcapng files (optionally gzip-compressed, or on stdin) to decoded TCP segments.

    with open_capture("trace.pcapng") as cap:
        for packet in cap.packets():   # tlsflow.packet.TcpPacket, frame numbers as in Wireshark
            ...
    cap.stats, cap.secrets, cap.bytes_read, cap.total_bytes
"""
from __future__ import annotations

from .errors import CaptureError, CorruptCaptureError, NotACaptureError, TruncatedCaptureError
from .reader import Capture, RawFrame, open_capture
from .stats import CaptureStats

__all__ = [
    "Capture",
    "CaptureError",
    "CaptureStats",
    "CorruptCaptureError",
    "NotACaptureError",
    "RawFrame",
    "TruncatedCaptureError",
    "open_capture",
]
