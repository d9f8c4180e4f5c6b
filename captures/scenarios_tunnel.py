"""Tunnel scenarios of the labelled corpus: TLS connections recorded inside the tunnel that carries them.

A traffic mirror delivers what it copies inside a tunnel to the host that captures (AWS VPC Traffic Mirroring and
Azure's virtual network TAP use VXLAN), overlay networks carry their hosts' traffic between machines the same way,
and sites are joined by GRE tunnels: a capture taken there holds each TLS connection inside packets between two
other addresses. Here two network namespaces are joined by a veth pair (the underlay), and a tunnel over it:
- `tunnel_vxlan`: a Linux VXLAN overlay (vxlan devices, VNI 42, UDP port 4789);
- `tunnel_gre`: a GRE tunnel (RFC 2784, IPv4 inside) made by a small relay in each namespace between a TUN device
  and a raw IP socket of protocol 47, for kernels without the ip_gre module (containers, as on this project's
  machines): the kernel's own TCP stacks talk through it, the relay only adds and strips the 4-byte GRE header,
  and the kernel writes the outer IP header.
The servers listen in one namespace on its overlay address, the clients connect from the other, and tcpdump records
the client side's veth, where only the tunnel's packets pass. The labels are those of the inner connections.

Needs root, iproute2 with the kernel's veth device, and the vxlan device or /dev/net/tun; openssl and tcpdump.
`python -m captures.record --only tunnel_vxlan tunnel_gre` records them.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from captures.scenario import Label, Pki, Scenario
from captures.scenarios_tls import listening
from captures.tcpdump import Tcpdump

S_CLIENT = "openssl s_client (OpenSSL 3.0)"
S_SERVER = "openssl s_server (OpenSSL 3.0)"
GET = b"GET / HTTP/1.0\r\nHost: server.tlsflow.test\r\n\r\n"
# Documentation ranges (RFC 5737), so that nothing here can meet a real network: the underlay (the veth pair)
# and the overlay (the vxlan devices).
UNDERLAY = ("198.51.100.1", "198.51.100.2")
OVERLAY = ("203.0.113.1", "203.0.113.2")
VXLAN_PORT = 4789
VNI = 42
CLIENT_TIMEOUT = 20.0
SERVER_START_TIMEOUT = 10.0
CAPTURE_DRAIN = 1.2  # (as in captures.scenarios_network: the last packets reach tcpdump's file)


class ScenarioError(RuntimeError):
    """The scenario could not run as designed, or the wire does not show what its label claims."""


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=False)
    if proc.returncode != 0:
        raise ScenarioError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


@contextlib.contextmanager
def _underlay(tag: str) -> Iterator[tuple[str, str]]:
    """Two namespaces (client side, server side) joined by a veth pair (under0, under1) with the UNDERLAY
    addresses; both are deleted (with their devices) however the block ends. Yields their names."""
    client_ns, server_ns = f"tlsflow-{tag}-c", f"tlsflow-{tag}-s"
    made: list[str] = []
    try:
        for ns in (client_ns, server_ns):
            _ip("netns", "add", ns)
            made.append(ns)
        _ip("-n", client_ns, "link", "add", "under0", "type", "veth", "peer", "name", "under1", "netns", server_ns)
        for ns, device, address in ((client_ns, "under0", UNDERLAY[0]), (server_ns, "under1", UNDERLAY[1])):
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", device)
            _ip("-n", ns, "link", "set", device, "up")
        yield client_ns, server_ns
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20, check=False)


@contextlib.contextmanager
def vxlan_overlay(tag: str) -> Iterator[tuple[str, str]]:
    """`_underlay` with a VXLAN overlay over it (the OVERLAY addresses on vx0 in each namespace)."""
    with _underlay(tag) as (client_ns, server_ns):
        for ns, device, address, peer in ((client_ns, "under0", UNDERLAY[0], UNDERLAY[1]),
                                          (server_ns, "under1", UNDERLAY[1], UNDERLAY[0])):
            _ip("-n", ns, "link", "add", "vx0", "type", "vxlan", "id", str(VNI), "dstport", str(VXLAN_PORT),
                "local", address, "remote", peer, "dev", device)
        for ns, address in ((client_ns, OVERLAY[0]), (server_ns, OVERLAY[1])):
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "vx0")
            _ip("-n", ns, "link", "set", "vx0", "up")
        yield client_ns, server_ns


# The GRE relay of one namespace: a TUN device (gre0) whose IP packets go to the peer inside GRE over a raw socket
# of protocol 47 (the kernel adds the outer IPv4 header), and the GRE packets from the peer back into the TUN
# device. Prints "ready" once gre0 exists; runs until killed.
GRE_RELAY = r"""
import fcntl, os, select, socket, struct, sys
tun = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(tun, 0x400454CA, struct.pack("16sH", b"gre0", 0x0001 | 0x1000))  # TUNSETIFF: IFF_TUN, IFF_NO_PI
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
peer = sys.argv[1]
print("ready", flush=True)
while True:
    ready, _, _ = select.select([tun, raw], [], [])
    if tun in ready:
        packet = os.read(tun, 65535)
        if packet[:1] and packet[0] >> 4 == 4:
            raw.sendto(b"\x00\x00\x08\x00" + packet, (peer, 0))  # GRE: no flags, version 0, IPv4 inside
    if raw in ready:
        data, (source, _) = raw.recvfrom(65535)
        gre = data[(data[0] & 15) * 4:]
        if source == peer and gre[:4] == b"\x00\x00\x08\x00":
            os.write(tun, gre[4:])
"""
GRE_MTU = 1476  # the veth's 1500 less the outer IPv4 header and GRE's 4 bytes: no packet is fragmented


@contextlib.contextmanager
def gre_overlay(tag: str) -> Iterator[tuple[str, str]]:
    """`_underlay` with a GRE tunnel over it (the OVERLAY addresses on gre0 in each namespace, see GRE_RELAY)."""
    relays: list[subprocess.Popen[str]] = []
    with _underlay(tag) as (client_ns, server_ns):
        try:
            for ns, address, peer in ((client_ns, OVERLAY[0], UNDERLAY[1]), (server_ns, OVERLAY[1], UNDERLAY[0])):
                relay = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", GRE_RELAY, peer],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)
                relays.append(relay)
                assert relay.stdout is not None
                if relay.stdout.readline().strip() != "ready":
                    error = relay.stderr.read() if relay.stderr else ""
                    raise ScenarioError(f"GRE relay in {ns} did not start: {error}")
                _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "gre0")
                _ip("-n", ns, "link", "set", "gre0", "mtu", str(GRE_MTU), "up")
            yield client_ns, server_ns
        finally:
            for relay in relays:
                relay.kill()
                relay.wait(timeout=10)
                for stream in (relay.stdout, relay.stderr):
                    if stream is not None:
                        stream.close()


def vxlan_available() -> bool:
    """Whether this machine can make the overlay (root, iproute2, the vxlan and veth devices)."""
    return _available(vxlan_overlay)


def gre_available() -> bool:
    """Whether this machine can make the GRE tunnel (root, iproute2, veth, /dev/net/tun, raw sockets)."""
    return _available(gre_overlay)


def _available(overlay: Any) -> bool:
    try:
        with overlay(f"probe{os.getpid() % 100000}"):
            return True
    except (ScenarioError, OSError, subprocess.SubprocessError):
        return False


@contextlib.contextmanager
def _server(ns: str, argv: list[str], port: int, log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not listening(port, f"/proc/{proc.pid}/net"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ScenarioError(f"server did not listen on {port}: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.02)
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _s_client(ns: str, port: int, pki: Pki, keylog: Path, *extra: str) -> int:
    argv = ["ip", "netns", "exec", ns, "openssl", "s_client", "-connect", f"{OVERLAY[1]}:{port}", "-ign_eof",
            "-servername", pki.hostname, "-CAfile", str(pki.ca_cert), "-verify_return_error", "-verify_hostname",
            pki.hostname, "-keylogfile", str(keylog), *extra]
    try:
        return subprocess.run(argv, input=GET, capture_output=True, timeout=CLIENT_TIMEOUT, check=False).returncode
    except subprocess.TimeoutExpired as exc:
        raise ScenarioError(f"s_client to port {port} did not finish in {CLIENT_TIMEOUT} s") from exc


def _s_server(pki: Pki, port: int, version: str, cert: str, chain: str | None) -> list[str]:
    argv = ["openssl", "s_server", "-accept", f"{OVERLAY[1]}:{port}", version, "-cert", str(pki.file(cert)),
            "-key", str(pki.file("server.key")), "-www", "-naccept", "1"]
    return argv + (["-cert_chain", str(pki.file(chain))] if chain else [])


@contextlib.contextmanager
def _recording(name: str, workdir: Path, pki: Pki, overlay: Any, bpf: str) -> Iterator[Callable[..., None]]:
    """Record `workdir/NAME.pcap` on the client side's underlay while the block runs. Yields `connect(port, server,
    succeeds, why)`: start `server` (s_server's arguments, or None: nothing listens) on the server side, run
    s_client from the client side, and raise `why` unless the client succeeded exactly when `succeeds`."""
    workdir.mkdir(parents=True, exist_ok=True)
    keylog = workdir / f"{name}.keylog"
    keylog.unlink(missing_ok=True)
    log = workdir / f".{name}.server.log"
    with (overlay(f"{name[7:10]}{os.getpid() % 100000}") as (client_ns, server_ns),
          Tcpdump(workdir / f"{name}.pcap", bpf, interface="under0", netns=client_ns)):

        def connect(port: int, server: list[str] | None, succeeds: bool, why: str) -> None:
            with _server(server_ns, server, port, log) if server else contextlib.nullcontext():
                if (_s_client(client_ns, port, pki, keylog) == 0) != succeeds:
                    raise ScenarioError(f"{name}: {why}")
            time.sleep(0.1)

        yield connect
        time.sleep(CAPTURE_DRAIN)
    log.unlink(missing_ok=True)


def tunnel_vxlan(workdir: Path, port: int, pki: Pki) -> list[Label]:
    """Three connections through the overlay: a TLS 1.3 handshake that succeeds, a closed port, and a TLS 1.2
    server whose certificate chains to a root the client does not trust."""
    name = "tunnel_vxlan"
    with _recording(name, workdir, pki, vxlan_overlay, f"udp port {VXLAN_PORT}") as connect:
        connect(port, _s_server(pki, port, "-tls1_3", "server-leaf.pem", "intermediate.pem"), True,
                "the TLS 1.3 client failed where it should succeed")
        connect(port + 1, None, False, f"the client reached port {port + 1}, where nothing listens")
        connect(port + 2, _s_server(pki, port + 2, "-tls1_2", "otherca.pem", None), False,
                "the client accepted a certificate from an unknown root")
    note = "recorded on the underlay: every packet inside VXLAN (UDP 4789, VNI 42) between 198.51.100.1 and .2"
    return [
        Label(scenario=name, file=f"{name}.pcap", flow=1, outcome="established", version="TLS 1.3", resumed=False,
              client_impl=S_CLIENT, server_impl=S_SERVER, note=note),
        Label(scenario=name, file=f"{name}.pcap", flow=2, outcome="failed", failed_step="tcp_connect",
              cause="tcp_refused", client_impl=S_CLIENT, server_impl="none (no listener)", note=note),
        Label(scenario=name, file=f"{name}.pcap", flow=3, outcome="failed", failed_step="server_certificate",
              cause="cert_unknown_ca", alert="unknown_ca", alert_sender="client", version="TLS 1.2",
              client_impl=S_CLIENT, server_impl=S_SERVER, note=note),
    ]


def tunnel_gre(workdir: Path, port: int, pki: Pki) -> list[Label]:
    """Two connections through a GRE tunnel: a TLS 1.2 handshake that succeeds, and a TLS 1.3 server whose
    certificate has expired."""
    name = "tunnel_gre"
    with _recording(name, workdir, pki, gre_overlay, "ip proto 47") as connect:
        connect(port, _s_server(pki, port, "-tls1_2", "server-leaf.pem", "intermediate.pem"), True,
                "the TLS 1.2 client failed where it should succeed")
        connect(port + 1, _s_server(pki, port + 1, "-tls1_3", "expired.pem", "intermediate.pem"), False,
                "the client accepted an expired certificate")
    note = ("recorded on the underlay: every packet inside GRE (IP protocol 47, IPv4 inside) between 198.51.100.1 "
            "and .2")
    return [
        Label(scenario=name, file=f"{name}.pcap", flow=1, outcome="established", version="TLS 1.2", resumed=False,
              client_impl=S_CLIENT, server_impl=S_SERVER, note=note),
        Label(scenario=name, file=f"{name}.pcap", flow=2, outcome="failed", failed_step="server_certificate",
              cause="cert_expired", alert="certificate_expired", alert_sender="client", version="TLS 1.3",
              client_impl=S_CLIENT, server_impl=S_SERVER, note=note),
    ]


SCENARIOS: list[Scenario] = [
    Scenario("tunnel_vxlan", "TLS inside a VXLAN overlay, recorded on the underlay (as a VXLAN traffic mirror "
             "delivers it): one success, a closed port, an unknown CA", tunnel_vxlan, tags=("tunnel",)),
    Scenario("tunnel_gre", "TLS inside a GRE tunnel (a relay between TUN devices and raw sockets), recorded on the "
             "underlay: one success, an expired certificate", tunnel_gre, tags=("tunnel",)),
]
