"""Counters a capture reader keeps while it reads: what was in the file and what was skipped, and why."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class CaptureStats:
    """Running counts; exact once iteration has ended (also when it ended with a CaptureError).

    During iteration `frames`, `skipped` and `link_types` are brought up to date once per chunk read (about a
    megabyte), not per frame, because that bookkeeping would cost measurable time per packet; the other counters
    are always current.

    `frames == tcp_packets + skipped` after `packets()`: a frame yields at most one TCP segment (a reassembled IP
    datagram is yielded at the frame of the fragment that completed it, as Wireshark shows it).
    """

    format: str = ""  # "pcap" or "pcapng"
    compressed: bool = False  # input was gzip-compressed
    frames: int = 0  # every packet record/block, numbered 1.. like Wireshark
    tcp_packets: int = 0  # TCP segments decoded: TcpPackets, and those given as a timestamp (count_only, shard)
    skipped: int = 0  # frames that produced no TcpPacket (sum of the reasons below, plus fragments held back)
    non_ip: int = 0  # link layer carries no IPv4/IPv6 (ARP, LLDP, unsupported link type, ...)
    non_tcp: int = 0  # IP packets that are not TCP (UDP, ICMP, non-first fragments of non-TCP datagrams, ...)
    malformed: int = 0  # link, IP or TCP header cut short or inconsistent
    fragments: int = 0  # IP fragments seen (IPv4 and IPv6)
    reassembled: int = 0  # IP datagrams rebuilt from fragments
    fragments_dropped: int = 0  # fragment sets abandoned: timed out, over the caps, inconsistent, snap-truncated
    truncated_payloads: int = 0  # TCP segments whose payload was cut short by the capture's snap length
    sections: int = 0  # pcapng section header blocks (1 for pcap)
    interfaces: int = 0  # pcapng interface description blocks (1 for pcap)
    unknown_blocks: int = 0  # pcapng blocks of a type this reader does not know, skipped
    ignored_blocks: int = 0  # known pcapng blocks that carry nothing for us (name resolution, statistics, custom)
    secrets_blocks: int = 0  # pcapng decryption secrets blocks (all types; TLS key logs are kept on the reader)
    link_types: dict[int, int] = field(default_factory=dict)  # link type -> packet frames (not custom/journal blocks)
    # A record (pcap) or block (pcapng) boundary the reader has passed, brought up to date once per chunk: where a
    # hop may start instead of the start of the file (a --jobs split of a running range, tlsflow.parallel_ranges),
    # as (file offset, frames before it, pcapng: section header, interface and secrets blocks walked before it,
    # which tells whether a hop's preamble there is still that of where reading started; pcap: 0). None until the
    # first chunk is walked.
    resume_point: tuple[int, int, int] | None = None
