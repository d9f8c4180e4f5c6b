"""The command line on the shipped corpus: exit codes, formats that round-trip, filters, escaping, explain."""
from __future__ import annotations

import gc
import gzip
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from tests.conftest import CORPUS, corpus_labels
from tlsflow.cli import main
from tlsflow.formats import read_records
from tlsflow.record import FIELDS

LABELS = corpus_labels()


def _pick(outcome: str) -> Path:
    for label in LABELS:
        if label["outcome"] == outcome:
            return CORPUS / label["file"]
    pytest.skip(f"no corpus capture with outcome {outcome}")


def _only_established() -> Path:
    by_file: dict[str, set[str]] = {}
    for label in LABELS:
        by_file.setdefault(label["file"], set()).add(label["outcome"])
    for name, outcomes in sorted(by_file.items()):
        if outcomes == {"established"}:
            return CORPUS / name
    pytest.skip("no capture with only established connections")


def test_exit_code_zero_when_nothing_failed(capsys):
    assert main(["analyze", str(_only_established()), "--format", "jsonl"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rows and all(r["outcome"] == "established" for r in rows)


def test_exit_code_one_when_a_handshake_failed(capsys):
    assert main(["analyze", str(_pick("failed"))]) == 1
    out = capsys.readouterr().out
    assert "failed" in out and "hint:" in out


def test_exit_code_two_on_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["analyze"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["analyze", "x.pcap", "--format", "xml"])
    assert exc.value.code == 2


def test_exit_code_three_on_missing_or_non_capture(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "missing.pcap")]) == 3
    junk = tmp_path / "notes.pcap"
    junk.write_text("this is not a capture\n")
    assert main(["analyze", str(junk)]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and "notes.pcap" in err
    assert err.count(str(junk)) == 1  # named once ("x: x: not a pcap ..." before)


def test_an_output_that_cannot_be_written_is_a_usage_error(tmp_path, capsys):
    for fmt in ("jsonl", "csv", "parquet"):
        out = tmp_path / "missing" / f"out.{fmt}"
        assert main(["analyze", str(CORPUS), "--format", fmt, "-o", str(out), "-q"]) == 2
        err = capsys.readouterr().err
        assert err == f"tlsflow: cannot write {out}: No such file or directory\n", fmt


@pytest.mark.parametrize(("fmt", "jobs"), [("jsonl", "1"), ("jsonl", "2"), ("csv", "1"), ("json", "2")])
def test_a_disk_that_fills_up_while_writing_stops_the_run_with_one_line(tmp_path, capsys, monkeypatch, fmt, jobs):
    """The output's disk fills up part-way (the fifth write fails): exit 2 and one line that says where and how far
    it got, no traceback, and no --jobs worker left running."""
    import errno
    import io
    import multiprocessing

    from tlsflow import formats

    class FillingUp(io.StringIO):
        writes = 0

        def write(self, text):
            FillingUp.writes += 1
            if FillingUp.writes >= 5:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(text)

    def open_writer(fmt, out, stdout):
        stream = FillingUp()
        return {"jsonl": formats.JsonLinesWriter, "json": formats.JsonWriter, "csv": formats.CsvWriter}[fmt](
            stream), stream

    monkeypatch.setattr(formats, "open_writer", open_writer)
    out = tmp_path / f"out.{fmt}"
    assert main(["analyze", str(CORPUS), "--format", fmt, "-o", str(out), "-q", "--jobs", jobs]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    said = [line for line in err.splitlines() if "cannot write" in line]
    assert len(said) == 1
    assert said[0].startswith(f"tlsflow: cannot write {out}: No space left on device (stopped after ")
    assert multiprocessing.active_children() == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_dev_full_as_the_output_is_one_line_and_exit_two(capsys, jobs):
    """/dev/full opens, then takes every write with ENOSPC: a real full disk. The output file is closed all the
    same (it was left open: a ResourceWarning, and a descriptor held for as long as the caller's process ran)."""
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always", ResourceWarning)
        assert main(["analyze", str(CORPUS), "--format", "jsonl", "-o", "/dev/full", "-q", "--jobs", jobs]) == 2
        gc.collect()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "tlsflow: cannot write /dev/full: No space left on device (stopped after " in err
    assert not [w for w in shown if issubclass(w.category, ResourceWarning) and "/dev/full" in str(w.message)]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("args", [[], ["--format", "jsonl"]])
def test_standard_output_on_a_full_disk_is_one_line_and_exit_two(args):
    """`tlsflow analyze ... > file` on a full disk: the text report and JSON lines to standard output alike."""
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "tlsflow", "analyze", str(CORPUS), *args], stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=300, check=False)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "tlsflow: cannot write standard output: No space left on device" in done.stderr


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_truncated_capture_reports_flows_before_the_damage(tmp_path, capsys, jobs):
    source = max((CORPUS / lab["file"] for lab in LABELS), key=lambda p: p.stat().st_size)
    data = source.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: int(len(data) * 0.7)])
    code = main(["analyze", str(cut), "--format", "jsonl", "--jobs", jobs])
    captured = capsys.readouterr()
    assert code == 3
    assert "cut.pcap" in captured.err and "offset" in captured.err
    damage = [line for line in captured.err.splitlines() if "offset" in line]
    assert len(damage) == 1 and damage[0].startswith(f"tlsflow: {cut}: file ends inside")  # the name once
    assert captured.out.strip(), "flows before the damage are still reported"


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
def test_formats_round_trip_to_the_same_rows(tmp_path, fmt):
    out = tmp_path / f"out.{fmt}"
    main(["analyze", str(CORPUS), "--format", fmt, "-o", str(out), "--quiet"])
    rows = list(read_records(out, fmt))
    reference = tmp_path / "ref.jsonl"
    main(["analyze", str(CORPUS), "--format", "jsonl", "-o", str(reference), "--quiet"])
    expected = list(read_records(reference, "jsonl"))
    assert len(rows) == len(expected) > 0
    for got, want in zip(rows, expected):
        assert list(got)[: len(FIELDS)] == list(FIELDS)
        assert {k: got[k] for k in FIELDS} == {k: want[k] for k in FIELDS}


def test_csv_neutralises_formula_cells():
    from tlsflow.formats import _csv_cell, _from_csv_cell

    for value in ("=cmd|' /C calc'!A0", "+1", "-2", "@SUM(1)"):
        cell = _csv_cell("sni", value)
        assert cell.startswith("'")
        assert _from_csv_cell("sni", cell) == value


def test_filters(capsys):
    main(["analyze", str(CORPUS), "--format", "jsonl", "--failed"])
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rows and all(r["outcome"] == "failed" for r in rows)
    port = int(rows[0]["server"].rsplit(":", 1)[1])
    main(["analyze", str(CORPUS), "--format", "jsonl", "--port", str(port)])
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rows and all(str(port) in (r["server"] + r["client"]) for r in rows)


def test_gzip_and_stdin(tmp_path):
    source = _only_established()
    gz = tmp_path / "c.pcap.gz"
    gz.write_bytes(gzip.compress(source.read_bytes()))
    plain = subprocess.run([sys.executable, "-m", "tlsflow.cli", "analyze", str(source), "--format", "jsonl"],
                           capture_output=True, text=True, check=False)
    with open(gz, "rb") as stdin:
        via_stdin = subprocess.run([sys.executable, "-m", "tlsflow.cli", "analyze", "-", "--format", "jsonl"],
                                   stdin=stdin, capture_output=True, check=False)
    rows_plain = [json.loads(x) for x in plain.stdout.splitlines()]
    rows_stdin = [json.loads(x) for x in via_stdin.stdout.decode().splitlines()]
    assert rows_plain and len(rows_plain) == len(rows_stdin)
    assert [r["outcome"] for r in rows_plain] == [r["outcome"] for r in rows_stdin]
    assert all(r["capture"] == "-" for r in rows_stdin)


def test_hostile_sni_is_escaped_in_the_terminal_report():
    import io

    from tlsflow.terminal import write_report

    record = {name: None for name in FIELDS}
    record.update(flow_id=1, client="10.0.0.1:1234", server="10.0.0.2:443", outcome="failed",
                  sni="evil\x1b[2J\x07.example", failed_step="server_hello", cause="handshake_failure",
                  evidence=["frame 3: x\x1b]0;pwn\x07"], hint="h")
    out = io.StringIO()
    write_report([record], out, colour=False, show_capture=False)
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b" in text


def test_explain_draws_a_ladder(capsys):
    label = next((lab for lab in LABELS if lab["outcome"] == "failed" and lab.get("alert")), None)
    if label is None:
        pytest.skip("no failed scenario with an alert in the corpus")
    code = main(["explain", str(CORPUS / label["file"]), "--flow", str(label["flow"])])
    out = capsys.readouterr().out
    assert code == 1
    assert "ClientHello" in out and "───────►" in out and "◄───────" in out
    assert f"{label['failed_step']}: {label['cause']}" in out


def test_version_and_help_show_exit_codes(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert "tlsflow" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["analyze", "--help"])
    assert "exit codes" in capsys.readouterr().out


def test_bad_ca_bundle_or_keylog_is_a_usage_error(tmp_path, capsys):
    capture = str(_only_established())
    bad = tmp_path / "not-a-bundle.pem"
    bad.write_text("nothing here\n")
    for argv in (["analyze", capture, "--ca-bundle", str(tmp_path / "missing.pem")],
                 ["analyze", capture, "--ca-bundle", str(bad)],
                 ["analyze", capture, "--keylog", str(tmp_path / "missing.log")],
                 ["explain", capture, "--flow", "1", "--ca-bundle", str(tmp_path / "missing.pem")]):
        assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--ca-bundle" in err and "--keylog" in err


def test_key_log_makes_a_tls13_alert_readable(capsys):
    label = next((lab for lab in LABELS if lab.get("alert") == "encrypted" and lab.get("version") == "TLS 1.3"
                  and (CORPUS / (Path(lab["file"]).stem + ".keylog")).exists()), None)
    if label is None:
        pytest.skip("no TLS 1.3 encrypted-alert scenario with a key log")
    capture = str(CORPUS / label["file"])
    keylog = str(CORPUS / (Path(label["file"]).stem + ".keylog"))
    main(["analyze", capture, "-f", "jsonl"])
    without = [json.loads(x) for x in capsys.readouterr().out.splitlines()][label["flow"] - 1]
    main(["analyze", capture, "-f", "jsonl", "--keylog", keylog])
    with_keys = [json.loads(x) for x in capsys.readouterr().out.splitlines()][label["flow"] - 1]
    assert without["alert"] == "encrypted"
    assert with_keys["alert"] not in (None, "encrypted")
    assert with_keys["failed_step"] == label["failed_step"]


@pytest.mark.parametrize("asked", [None, "mimalloc"])
def test_parquet_output_uses_the_system_allocator_unless_told_otherwise(tmp_path, asked):
    """pyarrow's default allocator (mimalloc) keeps what each row group freed: Parquet output asks for the C
    library's allocator instead (1 GB capture: peak ~207 -> ~191 MiB, bench/README.md), unless the user chose one."""
    pytest.importorskip("pyarrow")
    out = tmp_path / "rows.parquet"
    script = ("import sys\nfrom tlsflow.cli import main\ncode = main(sys.argv[1:])\nimport pyarrow\n"
              "print(pyarrow.default_memory_pool().backend_name, code)")
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if asked is not None:
        env["ARROW_DEFAULT_MEMORY_POOL"] = asked
    run = subprocess.run([sys.executable, "-c", script, "analyze", str(_pick("failed")), "-o", str(out), "-q"],
                         capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[2],
                         check=False)
    assert run.stdout.split() == [asked or "system", "1"], run.stderr
    rows = list(read_records(out, "parquet"))
    assert rows and any(r["outcome"] == "failed" for r in rows)


def _udp_only_capture(path: Path) -> Path:
    """Real UDP datagrams on loopback (a client and a server socket, answers included), recorded by tcpdump."""
    import socket

    from captures.tcpdump import Tcpdump, TcpdumpError

    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        server.bind(("127.0.0.1", 0))
        server.settimeout(5)
        port = server.getsockname()[1]
        with Tcpdump(path, f"udp port {port}"):
            for i in range(20):
                client.sendto(bytes([0xC0 | i % 16]) + os.urandom(1199), ("127.0.0.1", port))  # QUIC-sized
                data, peer = server.recvfrom(2048)
                server.sendto(data[:100], peer)
                client.recvfrom(2048)
    except TcpdumpError as exc:
        pytest.skip(str(exc))
    finally:
        server.close()
        client.close()
    return path


@pytest.mark.parametrize("fmt", ["text", "jsonl"])
def test_a_capture_without_tcp_says_so(tmp_path, capsys, fmt):
    """An empty report says nothing of why: a capture of UDP only (HTTP/3 is QUIC) gets one line that says TCP is
    what tlsflow reads; a filter that matches nothing does not."""
    capture = _udp_only_capture(tmp_path / "udp.pcap")
    out = ["--format", "jsonl", "-o", str(tmp_path / "out.jsonl")] if fmt == "jsonl" else ["--no-color"]
    assert main(["analyze", str(capture), *out]) == 0
    captured = capsys.readouterr()
    assert "tlsflow: no TCP connection in the input" in captured.err and "QUIC" in captured.err
    assert "0 connection(s)\n" in captured.err + captured.out and "connection(s): \n" not in captured.out
    assert main(["analyze", str(CORPUS), "--sni", "no-such-name.example", *out]) == 0
    captured = capsys.readouterr()
    assert "no TCP connection" not in captured.err and "0 connection(s)\n" in captured.err + captured.out


def test_a_real_quic_capture_says_so():
    """Chromium's HTTP/3 over QUIC (a Zeek trace, when the shared public captures are present)."""
    from tests.conftest import PUBLIC

    capture = PUBLIC / "zeek" / "quic" / "quicv2-http3-443.pcap"
    if not capture.is_file():
        pytest.skip("../shared/captures/public is not present (it is not part of a user's clone)")
    done = subprocess.run([sys.executable, "-m", "tlsflow", "analyze", str(capture), "-f", "jsonl", "-o", os.devnull],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "no TCP connection in the input" in done.stderr
