"""The benchmark capture generator: valid pcap, the connections and handshakes it says it wrote, reproducible."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # bench/ is a tool folder, not an installed package

from bench import bare_loop, gen_capture, record_handshakes, run

SIZE = 200_000
SEED = 20261127


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, gen_capture.Stats]:
    path = tmp_path_factory.mktemp("bench") / "tiny.pcap"
    with open(path, "wb") as out:
        stats = gen_capture.generate(out, SIZE, SEED)
    return path, stats


def test_same_seed_gives_identical_bytes(capture: tuple[Path, gen_capture.Stats]) -> None:
    path, _ = capture
    again = io.BytesIO()
    gen_capture.generate(again, SIZE, SEED)
    assert again.getvalue() == path.read_bytes()
    other = io.BytesIO()
    gen_capture.generate(other, SIZE, SEED + 1)
    assert other.getvalue() != path.read_bytes()


def test_command_line_is_reproducible(tmp_path: Path) -> None:
    outputs = []
    for name in ("a.pcap", "b.pcap"):
        subprocess.run([sys.executable, "-m", "bench.gen_capture", "--size", "200KB", "--seed", "5",
                        "-o", str(tmp_path / name)], cwd=REPO, check=True, timeout=120, capture_output=True)
        outputs.append((tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) >= 200_000


def test_size_and_counts_are_what_the_stats_say(capture: tuple[Path, gen_capture.Stats]) -> None:
    path, stats = capture
    data = path.read_bytes()
    assert stats.bytes == len(data)
    assert SIZE <= len(data) < SIZE + 200_000  # stops opening connections at the size, lets open ones finish
    packets, tcp, connections = bare_loop.count_connections(str(path))
    assert (packets, tcp, connections) == (stats.packets, stats.packets, stats.connections)
    assert run.count_packets(str(path)) == stats.packets
    assert sum(stats.kinds.values()) == stats.connections >= 3


def _tshark_fields(path: Path, display_filter: str, *fields: str) -> list[list[str]]:
    cmd = ["tshark", "-r", str(path), "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
           "-Y", display_filter, "-T", "fields"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    return [line.split("\t") for line in out.splitlines() if line]


@pytest.mark.tools
def test_tshark_reads_the_connections_and_handshakes(capture: tuple[Path, gen_capture.Stats]) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    path, stats = capture
    frames = _tshark_fields(path, "frame", "tcp.stream", "tcp.checksum.status", "ip.checksum.status")
    assert len(frames) == stats.packets
    assert len({f[0] for f in frames}) == stats.connections
    assert all(f[1] == "1" and f[2] == "1" for f in frames), "every IPv4 and TCP checksum verifies"
    assert not _tshark_fields(path, "tcp.analysis.flags || _ws.malformed", "frame.number")

    hellos = _tshark_fields(path, "tls.handshake.type == 1", "tcp.stream", "tls.handshake.extensions_server_name")
    assert len(hellos) == stats.client_hellos
    assert len({h[0] for h in hellos}) == stats.connections
    assert {h[1] for h in hellos} <= set(gen_capture.SERVER_ADDRESSES)



@pytest.mark.tools
def test_tshark_sees_every_kind_in_a_larger_capture(tmp_path: Path) -> None:
    """A few MB hold every recorded kind; tshark's view of versions, alerts and resets matches the mix."""
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    path = tmp_path / "mix.pcap"
    with open(path, "wb") as out:
        stats = gen_capture.generate(out, 6_000_000, SEED)
    assert set(stats.kinds) == set(gen_capture.KIND_WEIGHTS)
    server_hellos = _tshark_fields(path, "tls.handshake.type == 2", "tcp.stream")
    failed_before_server_hello = stats.kinds["tls12-handshake-failure"] + stats.kinds["tls13-rst-after-client-hello"]
    assert len(server_hellos) == stats.connections - failed_before_server_hello

    alerts = Counter(a[1] for a in _tshark_fields(path, "tls.alert_message.desc", "tcp.stream",
                                                  "tls.alert_message.desc"))
    assert alerts["40"] == stats.kinds["tls12-handshake-failure"] > 0
    assert alerts["48"] == stats.kinds["tls13-unknown-ca"] > 0
    resets = _tshark_fields(path, "tcp.flags.reset == 1", "tcp.stream")
    assert len(resets) == stats.kinds["tls13-rst-after-client-hello"] > 0

    versions = Counter(v[1] for v in _tshark_fields(path, "tls.handshake.type == 2", "tcp.stream",
                                                    "tls.handshake.extensions.supported_version"))
    tls13_completed = stats.kinds["tls13-rsa"] + stats.kinds["tls13-ecdsa"] + stats.kinds["tls13-unknown-ca"]
    assert versions["0x0304"] == tls13_completed
    assert versions[""] == stats.kinds["tls12-ecdhe-rsa"] + stats.kinds["tls12-ecdhe-ecdsa"] + stats.kinds[
        "tls12-rsa-kx"]


def test_committed_streams_are_real_tls_records() -> None:
    sessions = record_handshakes.load()
    assert {s.kind for s in sessions} == set(gen_capture.KIND_WEIGHTS)
    for s in sessions:
        direction, first = s.flights[0]
        assert direction == record_handshakes.CLIENT
        assert first[0] == 0x16 and first[5] == 0x01  # handshake record carrying a ClientHello
        for _, flight in s.flights:
            _assert_whole_records(flight)
        if s.outcome == "ok":
            assert set(s.response_records) == set(record_handshakes.RESPONSE_RECORD_SIZES)
            for record in [*s.request_records, *s.response_records.values()]:
                _assert_whole_records(record)
                assert record[0] == 0x17  # application data


def _assert_whole_records(data: bytes) -> None:
    """TLS records back to back, ending exactly at the end of the flight."""
    pos = 0
    while pos < len(data):
        assert data[pos] in (0x14, 0x15, 0x16, 0x17)
        assert data[pos + 1] == 0x03
        pos += 5 + int.from_bytes(data[pos + 3 : pos + 5], "big")
    assert pos == len(data)


def test_recorder_still_produces_every_scenario() -> None:
    """The recorder runs real OpenSSL handshakes in memory; the committed file can be re-made at any time."""
    sessions = record_handshakes.record_all()
    by_kind = {s.kind: s for s in sessions}
    assert set(by_kind) == {sc.kind for sc in record_handshakes.SCENARIOS}
    assert by_kind["tls12-handshake-failure"].flights[-1][1] == bytes.fromhex("15030300020228")
    assert by_kind["tls13-unknown-ca"].flights[-1][1][-2:] == bytes.fromhex("0230")
    assert len(by_kind["tls13-rst-after-client-hello"].flights) == 1


def test_parse_size() -> None:
    assert gen_capture.parse_size("50MB") == 50_000_000
    assert gen_capture.parse_size("1GiB") == 2**30
    assert gen_capture.parse_size("200 kb") == 200_000
    assert gen_capture.parse_size("1234") == 1234


def test_run_fills_the_command_template() -> None:
    assert run.tlsflow_command("tlsflow analyze {capture} -o /dev/null", "/tmp/a b.pcap", None) == [
        "tlsflow", "analyze", "/tmp/a b.pcap", "-o", "/dev/null"]
    assert run.tlsflow_command("t {capture}", "x.pcap", 2) == ["t", "x.pcap", "--jobs", "2"]
    assert run.tlsflow_command("t -j {jobs} {capture}", "x.pcap", 4) == ["t", "-j", "4", "x.pcap"]


def test_run_times_one_process_unless_told_otherwise() -> None:
    """`tlsflow analyze` alone takes every core for a bench-size capture: the default row says `--jobs 1`."""
    default = run.DEFAULT_TLSFLOW_CMD
    assert run.tlsflow_jobs(default, None) == [1]
    assert run.tlsflow_command(default, "x.pcap", 1)[-2:] == ["--jobs", "1"]
    assert run.tlsflow_jobs(default, "1,2") == [1, 2]
    assert run.tlsflow_jobs("t {capture}", None) == [None]  # a template of the user's own: as it is


def test_run_markdown_section_is_replaced_not_duplicated(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# Bench\n\nintro\n")
    run.update_readme(readme, "a.pcap (1 MB)", "### a.pcap (1 MB)\n\nfirst\n")
    run.update_readme(readme, "b.pcap (2 MB)", "### b.pcap (2 MB)\n\nother\n")
    run.update_readme(readme, "a.pcap (1 MB)", "### a.pcap (1 MB)\n\nsecond\n")
    text = readme.read_text()
    assert text.startswith("# Bench\n\nintro\n")
    assert text.count("### a.pcap (1 MB)") == 1 and "second" in text and "first" not in text
    assert text.index("### a.pcap") < text.index("### b.pcap")


@pytest.mark.tools
def test_run_measures_the_tools_and_writes_markdown(capture: tuple[Path, gen_capture.Stats], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    path, stats = capture
    readme = tmp_path / "README.md"
    readme.write_text("# Bench\n")
    rc = run.main([str(path), "--runs", "1", "--tlsflow-cmd", "no-such-tlsflow-binary {capture}",
                   "--markdown", str(readme), "--label", "tiny"])
    assert rc == 0  # a tool that is not installed is reported, not fatal
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in readme.read_text().splitlines()
            if line.startswith("| ") and not line.startswith("| tool")}
    assert rows["tlsflow"][1].startswith("not available")
    assert rows["tshark"][2] == "1.00"
    assert float(rows["bare Python loop"][1]) > 0 and float(rows["bare Python loop"][4]) > 0
    assert f"{stats.packets} packets, {stats.connections} TCP connections" in readme.read_text()
    assert "tshark" in capsys.readouterr().out


def test_tlsflow_reports_what_the_generator_put_in(tmp_path: Path) -> None:
    """The benchmark only means something if tlsflow really analyses the capture: one record per connection, and
    the outcome, version and cause of each kind as ../shared/CONTRACT.md names them."""
    path = tmp_path / "mix.pcap"
    with open(path, "wb") as out:
        stats = gen_capture.generate(out, 6_000_000, SEED)
    out_path = tmp_path / "out.jsonl"
    proc = subprocess.run([sys.executable, "-m", "tlsflow", "analyze", str(path), "--format", "jsonl",
                           "-o", str(out_path)], cwd=REPO, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 1, proc.stderr  # 1: analysed, failed handshakes found
    records = [json.loads(line) for line in out_path.read_text().splitlines() if line.strip()]
    assert len(records) == stats.connections
    seen = Counter((r["outcome"], r["version"], r["cause"]) for r in records)
    k = stats.kinds
    assert seen == Counter({
        ("established", "TLS 1.3", None): k["tls13-rsa"] + k["tls13-ecdsa"],
        ("established", "TLS 1.2", None): k["tls12-ecdhe-rsa"] + k["tls12-ecdhe-ecdsa"] + k["tls12-rsa-kx"],
        ("failed", "TLS 1.3", "cert_unknown_ca"): k["tls13-unknown-ca"],
        ("failed", None, "no_common_cipher"): k["tls12-handshake-failure"],
        ("failed", None, "reset_after_client_hello"): k["tls13-rst-after-client-hello"],
    })


def _payload_by_connection(data: bytes) -> list[tuple[int, int]]:
    """(byte offset of its SYN, payload bytes both ways) per connection of a generated capture, in order of SYN."""
    import struct

    first: dict[tuple[bytes, bytes], int] = {}
    payload: Counter[tuple[bytes, bytes]] = Counter()
    pos = 24
    while pos < len(data):
        caplen = struct.unpack_from("<I", data, pos + 8)[0]
        ip = pos + 16 + 14
        total = struct.unpack_from("!H", data, ip + 2)[0]
        tcp = ip + 20
        ends = sorted((data[ip + 12:ip + 16] + data[tcp:tcp + 2], data[ip + 16:ip + 20] + data[tcp + 2:tcp + 4]))
        key = (ends[0], ends[1])
        first.setdefault(key, pos)
        payload[key] += total - 20 - ((data[tcp + 12] >> 4) << 2)
        pos += 16 + caplen
    return sorted((first[key], payload[key]) for key in first)


@pytest.mark.parametrize("bulk", ["first", "last"])
def test_bulk_downloads_where_asked(monkeypatch: pytest.MonkeyPatch, bulk: str) -> None:
    """`--bulk first`: the first sessions (as many as are open at once) that complete are downloads of
    BULK_RECORDS full records, the rest the usual mix; `--bulk last`: every completed session opened past half of
    the size is one. (Made smaller here: 4 at once, 100 records, longer than any usual response.)"""
    monkeypatch.setattr(gen_capture, "CONCURRENT_CONNECTIONS", 4)
    monkeypatch.setattr(gen_capture, "BULK_RECORDS", 100)
    out = io.BytesIO()
    stats = gen_capture.generate(out, 1_000_000, SEED, bulk=bulk)
    data = out.getvalue()
    assert stats.bytes == len(data)
    big = 100 * 16384
    connections = _payload_by_connection(data)
    downloads = [i for i, (_at, size) in enumerate(connections) if size >= big]
    assert downloads and all(size < 61 * 16384 + 10_000 for i, (_at, size) in enumerate(connections)
                             if i not in downloads)  # (a usual response: 60 full records at most, and the tail)
    if bulk == "first":
        assert len(downloads) >= 2 and max(downloads) < 4  # among the first 4 opened
    else:
        assert all(connections[i][0] >= 1_000_000 // 2 for i in downloads)
        assert connections[downloads[0] - 1][1] < big  # the usual mix before them
