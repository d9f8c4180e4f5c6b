"""TLS inside tunnels: VXLAN (and its Linux port, VXLAN-GPE), Geneve, GRE with IP or Ethernet inside, ERSPAN types
I-III, GTP-U, over IPv4 and IPv6, as a traffic mirror, an overlay or a mobile core delivers connections to the host
that captures.

The real proof is `captures/corpus/tunnel_vxlan.pcap` and `tunnel_gre.pcap` (a Linux VXLAN overlay, and a GRE
tunnel made by a relay between TUN devices and raw sockets, between two network namespaces, recorded on the
underlay: checked against their labels by tests/analyzers/test_corpus.py, and here against captures of the same
kind made now, when the machine can). The other tunnels cannot be made on every kernel (ERSPAN and Geneve devices
are modules that containers often lack), so the real corpus captures are wrapped in them frame by frame (tests/tlsflow/pcap_edit.tunnelled): the rows must be those of the capture as it was, and tshark,
which decodes every one of these tunnels itself, must read the same handshake messages out of the wrapped file.
Apple's PKTAP header (macOS captures) is tested the same way at the end."""
from __future__ import annotations

import functools
import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tests.conftest import CORPUS, loopback_captures
from tests.tlsflow.pcap_edit import TUNNELS, encapsulated, snapped, tunnelled
from tlsflow.api import analyze_files
from tlsflow.capture import open_capture

# Every kind of outcome the corpus has, and the captures whose verdicts rest on IP and TCP details (TTL and IP ID
# of an injected RST, segment sizes of an MTU black hole, retransmissions, a capture cut mid-handshake).
SAMPLE = ("tls13_established_plain", "tls12_cert_expired", "tls13_cert_unknown_ca", "net_reset_injected",
          "net_mtu_blackhole", "net_packet_loss_recovered", "net_port_closed", "net_tls_client_to_http_server",
          "tls13_hello_retry_request", "net_capture_ends_mid_handshake", "tls12_resumed_ticket")


def _rows(path: Path) -> list[dict]:
    rows = [record for _capture, record in analyze_files([str(path)], jobs=1)]
    for row in rows:
        row.pop("capture")
    return rows


@functools.cache
def _original_rows(path: Path) -> list[dict]:
    return _rows(path)


def _corpus(name: str) -> Path:
    path = CORPUS / f"{name}.pcap"
    if not path.exists():
        pytest.skip(f"{path} not in this checkout")
    return path


@pytest.mark.parametrize("kind", TUNNELS)
def test_rows_through_a_tunnel_are_those_of_the_capture_itself(kind, tmp_path):
    for name in SAMPLE:
        original = _corpus(name)
        wrapped = tunnelled(original, tmp_path / f"{name}.pcap", kind)
        rows = _rows(wrapped)
        assert rows, (kind, name)
        assert rows == _original_rows(original), (kind, name)


def test_every_corpus_capture_through_vxlan(tmp_path):
    """All of the corpus (Ethernet captures of lo) in VXLAN: the same rows, capture by capture."""
    compared = 0
    for original in loopback_captures():
        wrapped = tunnelled(original, tmp_path / original.name, "vxlan")
        assert _rows(wrapped) == _rows(original), original.name
        compared += 1
    assert compared >= 80


def _tshark_handshakes(path: Path, *decode_as: str) -> list[tuple[str, ...]]:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark not installed")
    argv = [tshark, "-r", str(path), "-n", "-Y", "tls.handshake.type or tls.alert_message", "-T", "fields",
            "-e", "frame.number", "-e", "tcp.stream", "-e", "tls.handshake.type", "-e", "tls.alert_message.desc"]
    for rule in decode_as:
        argv += ["-d", rule]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
    return [tuple(line.split("\t")) for line in out.splitlines()]


@pytest.mark.parametrize("kind", TUNNELS)
def test_tshark_reads_the_same_handshakes_out_of_the_wrapped_capture(kind, tmp_path):
    """The wrapping itself checked by an independent reader: tshark finds every handshake message and alert of
    the original, in the same frames and streams, inside the tunnel."""
    decode_as = ("udp.port==8472,vxlan",) if kind == "vxlan-linux-port" else ()
    for name in ("tls12_cert_expired", "tls13_hello_retry_request", "net_reset_injected"):
        original = _corpus(name)
        wrapped = tunnelled(original, tmp_path / f"{name}.pcap", kind)
        expected = _tshark_handshakes(original)
        assert expected
        assert _tshark_handshakes(wrapped, *decode_as) == expected, (kind, name)


@pytest.mark.parametrize("kind", ["vxlan", "gretap"])
def test_a_tunnelled_capture_as_pcapng_gives_the_same_rows(kind, tmp_path):
    """The pcapng walker hands tunnelled frames to the same handlers (and keeps the times of the segments their
    lanes counted, as the pcap walker does)."""
    from tests.conftest import capture_file_bytes
    from tests.tlsflow.pcap_edit import records

    for name in ("tls12_cert_expired", "net_mtu_blackhole"):
        wrapped = tunnelled(_corpus(name), tmp_path / f"{name}.pcap", kind)
        _, recs = records(wrapped)
        frames = [(struct.unpack_from("<I", r)[0] * 1_000_000 + struct.unpack_from("<I", r, 4)[0], r[16:],
                   len(r) - 16) for r in recs]
        as_pcapng = tmp_path / f"{name}.pcapng"
        as_pcapng.write_bytes(capture_file_bytes(1, frames, pcapng=True))
        assert _rows(as_pcapng) == _original_rows(_corpus(name)), (kind, name)


def test_two_jobs_on_a_tunnelled_capture_equal_one(generated_capture, tmp_path):
    """`--jobs 2` cuts a capture by byte ranges and follows the connections in flight at the cut by their
    4-tuples: through a tunnel those are the inner ones."""
    wrapped = tunnelled(generated_capture, tmp_path / "gen-vxlan.pcap", "vxlan")
    one = sorted((r for _c, r in analyze_files([str(wrapped)], jobs=1)), key=lambda r: r["flow_id"])
    two = sorted((r for _c, r in analyze_files([str(wrapped)], jobs=2)), key=lambda r: r["flow_id"])
    assert len(one) > 100
    assert two == one
    plain = sorted((r for _c, r in analyze_files([str(generated_capture)], jobs=1)), key=lambda r: r["flow_id"])
    assert [{**r, "capture": None} for r in one] == [{**r, "capture": None} for r in plain]


@pytest.mark.parametrize("kind", ["vxlan", "vxlan-ipv6", "geneve", "gretap", "erspan2", "gre-ip", "gtpu"])
def test_a_tunnel_fragmented_by_a_small_underlay_mtu_is_reassembled(kind, tmp_path):
    """An underlay whose MTU leaves no room for the tunnel's headers (a mirror session, an overlay set up with
    the inner MTU of the outer link) sends the large packets of a handshake as IP fragments: the same verdicts
    (frame numbers aside: each fragment is a frame)."""
    fields = ("client", "server", "outcome", "failed_step", "cause", "alert", "alert_sender", "version", "sni",
              "cipher", "history", "warnings", "cert_subject")
    for name in ("tls12_cert_expired", "tls13_established_plain", "net_mtu_blackhole", "tls12_mutual_tls"):
        original = _corpus(name)
        wrapped = tunnelled(original, tmp_path / f"{name}.pcap", kind, mtu=1500)
        with open_capture(wrapped) as cap:
            list(cap.packets())
            assert cap.stats.reassembled > 0, name
        assert ([[r[f] for f in fields] for r in _rows(wrapped)]
                == [[r[f] for f in fields] for r in _original_rows(original)]), (kind, name)


# --------------------------------------------------------------------------------------------------- edge cases

def _frames(tmp_path: Path, frames: list[bytes], name: str = "edge.pcap") -> Path:
    path = tmp_path / name
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    path.write_bytes(header + b"".join(struct.pack("<IIII", 1, i, len(f), len(f)) + f
                                       for i, f in enumerate(frames)))
    return path


def _read(path: Path) -> tuple[list, object]:
    with open_capture(path) as cap:
        packets = list(cap.packets())
        return packets, cap.stats


def _one_tcp_frame() -> bytes:
    """The first frame of a real corpus capture (the client's SYN)."""
    data = _corpus("tls13_established_plain").read_bytes()
    caplen = struct.unpack_from("<I", data, 24 + 8)[0]
    return data[24 + 16:24 + 16 + caplen]


def _wrap_again(frame: bytes, kind: str, times: int) -> bytes:
    for index in range(times):
        frame = encapsulated(kind, frame, index)
    return frame


def test_tunnels_nested_within_the_bound_are_read_and_deeper_ones_are_not(tmp_path):
    syn = _one_tcp_frame()
    packets, stats = _read(_frames(tmp_path, [_wrap_again(syn, "vxlan", 7)]))
    assert len(packets) == 1 and packets[0].flags == 0x02
    # Hostile nesting (a packet that is a tunnel inside a tunnel a hundred times) stops at the bound: no
    # recursion without end, the frame counted as not TCP.
    packets, stats = _read(_frames(tmp_path, [_wrap_again(syn, "vxlan", 100),
                                              _wrap_again(syn, "gre-ip", 100)]))
    assert packets == [] and stats.non_tcp == 2


def test_cut_tunnel_headers_are_malformed_and_other_udp_is_not_tcp(tmp_path):
    syn = _one_tcp_frame()
    whole = {kind: _wrap_again(syn, kind, 1) for kind in ("vxlan", "geneve", "gretap", "erspan3")}
    frames = []
    for wrapped in whole.values():
        ip_end = 14 + 20
        frames.append(wrapped[:ip_end + 4])  # the tunnel header cut short (a short UDP or GRE header)
    dns = bytearray(whole["vxlan"])
    dns[36:38] = struct.pack("!H", 53)  # the same datagram to the DNS port: not a tunnel
    no_vni = bytearray(whole["vxlan"])
    no_vni[42] = 0  # VXLAN without its I flag: not a frame this reader trusts
    packets, stats = _read(_frames(tmp_path, [*frames, bytes(dns), bytes(no_vni), whole["erspan3"]]))
    assert len(packets) == 1 and packets[0].flags == 0x02  # the whole ERSPAN III frame
    assert stats.malformed == 4 and stats.non_tcp == 2


def test_a_tunnelled_segment_cut_by_the_snap_length_is_read_as_cut(tmp_path):
    """A mirror's snap length cuts the outer packet: the inner segment is read as far as it goes, and known to
    be cut (its IP length says so), as the same segment without the tunnel."""
    original = _corpus("tls12_cert_expired")
    wrapped = tunnelled(original, tmp_path / "wrapped.pcap", "vxlan")
    cut_plain, _ = _read(snapped(original, tmp_path / "cut-plain.pcap", 200))
    cut_wrapped, stats = _read(snapped(wrapped, tmp_path / "cut-wrapped.pcap", 200 + 50))
    assert stats.truncated_payloads > 0
    assert [(p.frame, p.seq, p.payload, p.cut) for p in cut_wrapped] == [
        (p.frame, p.seq, p.payload, p.cut) for p in cut_plain]


@pytest.mark.tools
@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["tunnel_vxlan", "tunnel_gre"])
def test_recording_through_a_tunnel_now_gives_the_committed_labels(scenario, tmp_path):
    """The corpus's tunnel captures made again on this machine (two network namespaces, a VXLAN overlay or a GRE
    tunnel between them, real s_server and s_client inside, tcpdump on the underlay): the recorder's tshark checks
    hold, and tlsflow's verdicts are the labels."""
    import os

    from captures import scenarios_tunnel
    from captures.record import discover, record
    from tools.corpus_report import compare_corpus

    for tool in ("tcpdump", "openssl", "tshark", "ip"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    available = scenarios_tunnel.vxlan_available if scenario == "tunnel_vxlan" else scenarios_tunnel.gre_available
    if os.geteuid() != 0 or not available():
        pytest.skip("network namespaces, veth and the tunnel's device (vxlan, /dev/net/tun) need root")
    scenarios = [s for s in discover() if s.name == scenario]
    labels, failures = record(scenarios, tmp_path, all_scenarios=discover(), keep_other_labels=False)
    assert not failures
    committed = [json.loads(line) for line in (CORPUS / "labels.jsonl").read_text().splitlines()
                 if f'"{scenario}"' in line]
    fields = ("outcome", "failed_step", "cause", "alert", "alert_sender", "version", "resumed", "sni")
    assert [[getattr(label, f) for f in fields] for label in labels] == [[c[f] for f in fields] for c in committed]
    comparisons = compare_corpus(tmp_path)
    assert len(comparisons) == len(committed) >= 2
    assert all(not c.mismatches for c in comparisons), [c.mismatches for c in comparisons]


@pytest.mark.tools
@pytest.mark.slow
def test_live_on_the_underlay_reports_the_connections_inside_the_tunnel(tmp_path):
    """`tlsflow live` on a VXLAN overlay's underlay device (as on a mirror's receiving interface): each handshake
    inside the tunnel is reported with its inner addresses as it ends."""
    import os
    import subprocess
    import sys
    import time

    from captures.pki import build_pki
    from captures.scenarios_tunnel import OVERLAY, vxlan_available, vxlan_overlay

    for tool in ("openssl", "ip"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    if os.geteuid() != 0 or not vxlan_available():
        pytest.skip("network namespaces and a vxlan device need root and the kernel's vxlan module")
    pki = build_pki(tmp_path / "pki")
    out = tmp_path / "live.jsonl"
    repo = Path(__file__).resolve().parents[2]
    port = 4433
    with vxlan_overlay(f"lt{os.getpid() % 100000}") as (client_ns, server_ns):
        live = subprocess.Popen(
            ["ip", "netns", "exec", client_ns, sys.executable, "-c",
             "import sys; from tlsflow.cli import main; sys.exit(main())", "live", "-i", "under0", "--format",
             "jsonl", "-o", str(out), "--timeout", "10"],  # (the default filter lets tunnels through)
            cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, PYTHONWARNINGS="ignore"))
        server = None
        try:
            assert live.stderr is not None
            deadline = time.monotonic() + 60
            seen = ""
            while "capturing on under0 (TCP, and tunnels that carry it)" not in seen:
                assert time.monotonic() < deadline and live.poll() is None, seen
                seen += live.stderr.readline()
            server = subprocess.Popen(
                ["ip", "netns", "exec", server_ns, "openssl", "s_server", "-accept", f"{OVERLAY[1]}:{port}",
                 "-cert", str(pki.server_cert), "-cert_chain", str(pki.file("intermediate.pem")), "-key",
                 str(pki.server_key), "-naccept", "1", "-www"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            from captures.scenarios_tls import listening
            while not listening(port, f"/proc/{server.pid}/net"):
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.02)
            for target, succeeds in ((port, True), (port + 1, False)):
                client = subprocess.run(
                    ["ip", "netns", "exec", client_ns, "openssl", "s_client", "-connect", f"{OVERLAY[1]}:{target}",
                     "-servername", pki.hostname, "-CAfile", str(pki.ca_cert), "-verify_return_error"],
                    input=b"", capture_output=True, timeout=20, check=False)
                assert (client.returncode == 0) == succeeds, client.stdout + client.stderr
            live.wait(timeout=60)
            stderr = seen + live.stderr.read()
        finally:
            for proc in (live, server):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)
    assert "stopped by timeout" in stderr and "2 connection(s)" in stderr, stderr
    records = {json.loads(line)["server"]: json.loads(line) for line in out.read_text().splitlines()}
    good, refused = records[f"{OVERLAY[1]}:{port}"], records[f"{OVERLAY[1]}:{port + 1}"]
    assert (good["outcome"], good["version"], good["sni"]) == ("established", "TLS 1.3", pki.hostname)
    assert good["client"].startswith(f"{OVERLAY[0]}:") and good["capture"] == "live:under0"
    assert (refused["outcome"], refused["failed_step"], refused["cause"]) == ("failed", "tcp_connect", "tcp_refused")


def test_gtp_signalling_and_broken_extension_headers_are_not_read_as_packets(tmp_path):
    syn = _one_tcp_frame()
    user = _wrap_again(syn, "gtpu-extension", 1)
    gtp_at = 14 + 20 + 8
    echo = bytearray(user)
    echo[gtp_at + 1] = 1  # an echo request: signalling, no user packet
    version2 = bytearray(user)
    version2[gtp_at] = 0x48  # GTPv2-C
    no_length = bytearray(user)
    no_length[gtp_at + 12] = 0  # an extension header of length 0 (no progress: refused)
    too_long = bytearray(user)
    too_long[gtp_at + 12] = 255  # an extension header past the datagram's end
    packets, stats = _read(_frames(tmp_path, [user, bytes(echo), bytes(version2), bytes(no_length), bytes(too_long)]))
    assert len(packets) == 1 and packets[0].flags == 0x02
    assert stats.non_tcp == 2 and stats.malformed == 2


def _packets_and_stats(path: Path) -> tuple[list[tuple], tuple]:
    """Every segment as a TcpPacket and the reader's counts, with the walkers' lanes on: a reassembler fed nothing,
    but for one lane no segment has (the walkers try their lanes only while some are open), so that every segment
    of a lane's layout is built by the walker, the others by the handlers."""
    from tlsflow.tcp import TcpReassembler

    counter = TcpReassembler()
    counter.lanes[bytes(12)] = None
    with open_capture(path) as cap:
        packets = [(p.frame, p.ts, p.src, p.sport, p.dst, p.dport, p.seq, p.ack, p.flags, p.window, p.payload,
                    p.ttl, p.ip_id, p.cut) for p in cap.packets(counter=counter)]
        stats = cap.stats
        return packets, (stats.tcp_packets, stats.skipped, stats.non_ip, stats.non_tcp, stats.malformed,
                         stats.truncated_payloads)


def test_the_vxlan_fast_path_reads_what_the_general_decoder_reads(tmp_path):
    """VXLAN over IPv4 without options takes the walkers' VXLAN lane (or the Ethernet handler's shortcut to `udp`);
    over IPv6 the general decoder (`network`, `ipv6`, then `udp`): the same inner frames give the same packets, counts and rows, whole, cut by a
    snap length, and for inner frames that carry no TCP or are broken."""
    # (GRE in IPv4 takes the Ethernet handler's shortcut to `gre`; in IPv6, `network` and `ipv6` first.)
    for fast_kind, general_kind, extra in (("vxlan", "vxlan-ipv6", 20), ("gretap", "gretap-ipv6", 20)):
        for name in ("tls12_cert_expired", "net_mtu_blackhole", "tls13_hello_retry_request"):
            original = _corpus(name)
            for snap in (None, 120, 300):
                fast = tunnelled(original, tmp_path / "fast.pcap", fast_kind)
                general = tunnelled(original, tmp_path / "general.pcap", general_kind)
                if snap:
                    outer = len(encapsulated(fast_kind, b"", 0))
                    fast = snapped(fast, tmp_path / "fast-cut.pcap", snap + outer)
                    general = snapped(general, tmp_path / "general-cut.pcap", snap + outer + extra)
                assert _packets_and_stats(fast) == _packets_and_stats(general), (fast_kind, name, snap)
                # And through the analysis, where the walkers' VXLAN lane (pcap.vxlan_lane) counts or builds the
                # segments of VXLAN in IPv4 before any handler sees them.
                assert _rows(fast) == _rows(general), (fast_kind, name, snap)
    syn = _one_tcp_frame()
    odd_inner = [
        syn[:12] + b"\x08\x06" + bytes(28),  # ARP
        syn[:10],  # shorter than an Ethernet header
        syn[:30],  # an IPv4 header cut short
        syn[:14] + b"\x45\x00\x00\x0a" + syn[18:],  # an IP total length shorter than its header
        syn[:23] + b"\x11" + syn[24:],  # UDP inside
        syn[:12] + b"\x81\x00\x00\x07\x08\x00" + syn[14:],  # an 802.1Q tag inside
    ]
    for index, inner in enumerate(odd_inner):
        fast = _frames(tmp_path, [encapsulated("vxlan", inner, 0)], "fast-odd.pcap")
        general = _frames(tmp_path, [encapsulated("vxlan-ipv6", inner, 0)], "general-odd.pcap")
        alone = _frames(tmp_path, [inner], "alone-odd.pcap")  # (the frame itself, without a tunnel)
        assert _packets_and_stats(fast) == _packets_and_stats(general) == _packets_and_stats(alone), index
    # Bytes after the datagram (an Ethernet trailer, an FCS) with an inner IP length of 0 (segmentation offload
    # on the host the mirror copied): the UDP length bounds the inner frame. And a UDP length that leaves no room
    # for a frame: no packet, whatever follows it.
    tso = syn[:16] + b"\x00\x00" + syn[18:]
    udp_length_at = {"vxlan": 14 + 20 + 4, "vxlan-ipv6": 14 + 40 + 4}
    for kind_fast, kind_general in (("vxlan", "vxlan-ipv6"),):
        frames = {}
        for kind in (kind_fast, kind_general):
            trailer = encapsulated(kind, tso, 0) + b"\xde\xad\xbe\xef"
            short = bytearray(encapsulated(kind, syn, 0))
            short[udp_length_at[kind]:udp_length_at[kind] + 2] = struct.pack("!H", 12)  # (UDP, half a VXLAN header)
            no_vni = bytearray(encapsulated(kind, syn, 0))
            no_vni[udp_length_at[kind] + 4] = 0  # VXLAN without its I flag
            frames[kind] = [trailer, bytes(short), bytes(no_vni)]
        fast = _frames(tmp_path, frames[kind_fast], "fast-trailer.pcap")
        general = _frames(tmp_path, frames[kind_general], "general-trailer.pcap")
        packets, stats = _packets_and_stats(fast)
        assert len(packets) == 1 and packets[0][10] == b""  # (a SYN: no payload, and not the trailer)
        assert (packets, stats) == _packets_and_stats(general)


def test_apple_pktap_captures_give_the_rows_of_the_frames_inside(tmp_path):
    """macOS `tcpdump -i pktap` (or `-k`) writes link type 258: a PKTAP header with the interface and the process
    before each frame. The rows are those of the frames alone, and tshark reads the same handshakes."""
    from tests.tlsflow.pcap_edit import pktapped

    for name in ("tls12_cert_expired", "tls13_established_plain", "net_reset_injected"):
        original = _corpus(name)
        wrapped = pktapped(original, tmp_path / f"{name}.pcap")
        assert _rows(wrapped) == _original_rows(original), name
        assert _tshark_handshakes(wrapped) == _tshark_handshakes(original), name
    # A record of another type, a header longer than the frame, a link type inside that is PKTAP again.
    frame = pktapped(_corpus("tls13_established_plain"), tmp_path / "one.pcap").read_bytes()
    first = frame[24 + 16:24 + 16 + struct.unpack_from("<I", frame, 24 + 8)[0]]
    odd = [first[:4] + struct.pack("<I", 0) + first[8:], struct.pack("<I", 5000) + first[4:],
           first[:8] + struct.pack("<I", 258) + first[12:]]
    path = tmp_path / "odd.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 258) + b"".join(
        struct.pack("<IIII", 1, i, len(f), len(f)) + f for i, f in enumerate([first, *odd])))
    packets, stats = _read(path)
    assert len(packets) == 1 and stats.non_ip == 2 and stats.malformed == 1
