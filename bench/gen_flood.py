"""A capture of connections that never carry a byte, for measuring what they cost: SYNs to port 443 from distinct
addresses and ports, spread evenly over some seconds, unanswered (a SYN flood, or a scan of a silent host) or
answered by a RST (a scan of a closed port).

    python -m bench.gen_flood --syns 200000 --seconds 60 -o /tmp/syn-flood.pcap
    python -m bench.gen_flood --syns 200000 --seconds 60 --rst -o /tmp/port-scan.pcap

Classic pcap, Ethernet, correct IPv4 checksums; the same arguments and `--seed` give the same bytes.
"""
from __future__ import annotations

import argparse
import random
import struct

_ETHERNET = bytes(range(12)) + b"\x08\x00"
_SERVER = bytes([192, 0, 2, 1])
_START = 1767225600.0  # 2026-01-01T00:00:00Z


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _frame(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 64240, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0x4000, 64, 6, 0, src, dst)
    return _ETHERNET + ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:] + tcp


def write_flood(path: str, syns: int, seconds: float, rst: bool, seed: int = 1) -> None:
    rng = random.Random(seed)
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(syns):
            client = bytes([10, (i >> 16) & 255, (i >> 8) & 255, i & 255])
            sport, seq = 1024 + rng.randrange(60000), rng.randrange(1 << 32)
            ts = _START + seconds * i / syns
            frames = [(ts, _frame(client, _SERVER, sport, 443, seq, 0, 0x02))]
            if rst:
                frames.append((ts + 1e-4, _frame(_SERVER, client, 443, sport, 0, (seq + 1) & 0xFFFFFFFF, 0x14)))
            for when, frame in frames:
                micros = round(when * 1_000_000)
                out.write(struct.pack("<IIII", micros // 1_000_000, micros % 1_000_000, len(frame), len(frame)))
                out.write(frame)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gen_flood", description=__doc__.split("\n\n")[0])
    parser.add_argument("--syns", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rst", action="store_true", help="answer every SYN with a RST (a closed port)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args(argv)
    write_flood(args.output, args.syns, args.seconds, args.rst, args.seed)


if __name__ == "__main__":
    main()
