"""Link-layer type numbers (tcpdump.org LINKTYPE_* values) and the EtherTypes and address families we decode."""
from __future__ import annotations

NULL = 0  # BSD loopback: 4-byte address family in the capturing host's byte order
ETHERNET = 1
RAW_BSD = 12  # DLT_RAW as written on some BSDs: raw IP
RAW_OPENBSD = 14  # DLT_RAW as written on OpenBSD: raw IP
RAW = 101
LOOP = 108  # OpenBSD loopback: address family in network byte order
LINUX_SLL = 113
IPV4 = 228
IPV6 = 229
PKTAP = 258  # Apple's PKTAP (macOS `tcpdump -i pktap` or `-k`): a header with the process, then the frame
LINUX_SLL2 = 276

NAMES = {
    NULL: "NULL", ETHERNET: "ETHERNET", RAW_BSD: "RAW(12)", RAW_OPENBSD: "RAW(14)", RAW: "RAW", LOOP: "LOOP",
    LINUX_SLL: "LINUX_SLL", IPV4: "IPV4", IPV6: "IPV6", LINUX_SLL2: "LINUX_SLL2", PKTAP: "PKTAP",
}
SUPPORTED = frozenset(NAMES)

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_VLAN = 0x8100  # 802.1Q
ETHERTYPE_QINQ = 0x88A8  # 802.1ad service tag
ETHERTYPE_QINQ_OLD = 0x9100  # pre-standard QinQ
VLAN_TPIDS = frozenset((ETHERTYPE_VLAN, ETHERTYPE_QINQ, ETHERTYPE_QINQ_OLD, 0x9200, 0x9300))
ETHERTYPE_PPPOE_SESSION = 0x8864
ETHERTYPE_MPLS = 0x8847
ETHERTYPE_TEB = 0x6558  # transparent Ethernet bridging: an Ethernet frame follows (GRE, Geneve)
ETHERTYPE_ERSPAN_II = 0x88BE  # GRE protocol of ERSPAN types I (no sequence number) and II
ETHERTYPE_ERSPAN_III = 0x22EB
ETHERTYPE_MPLS_MULTICAST = 0x8848

AF_INET = 2
# AF_INET6 differs between BSDs: NetBSD/OpenBSD 24, FreeBSD/DragonFly 28, macOS 30 (the file says which host
# wrote it only through this value), so all three mean IPv6.
AF_INET6_BSD = frozenset((24, 28, 30))


def link_type_name(link_type: int) -> str:
    return NAMES.get(link_type, f"unknown({link_type})")
