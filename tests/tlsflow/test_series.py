"""`--series`: a capture rotated into several files is read as one. Every connection gives the record it gives in
the unsplit capture, under the file where it began, with that file's frame numbers and flow ids."""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest

from tests.conftest import CORPUS, capture_file_bytes, pcap_frames, trust_and_keylog_for
from tlsflow import cli
from tlsflow.api import analyze, analyze_files
from tlsflow.series import in_capture_order, renumber

ETHERNET = 1


def split(path: Path, cuts: list[int], out_dir: Path, names: list[str], pcapng_pieces: tuple[int, ...] = ()
          ) -> list[Path]:
    """The frames of a classic pcap in pieces: piece i holds frames cuts[i-1]..cuts[i]-1 (0-based), as a sensor
    that rotates its file writes them; pieces whose index is in `pcapng_pieces` are written as pcapng."""
    frames = pcap_frames(path)
    bounds = [0, *cuts, len(frames)]
    pieces = []
    for i, name in enumerate(names):
        part = frames[bounds[i]:bounds[i + 1]]
        piece = out_dir / name
        piece.write_bytes(capture_file_bytes(ETHERNET, [(t, data, len(data)) for t, data in part],
                                             pcapng=i in pcapng_pieces))
        pieces.append(piece)
    return pieces


def as_in_whole(record: dict, frame_bases: dict[str, int], whole_name: str) -> dict:
    """A series record with the numbers of the unsplit capture: frames counted from its first file."""
    base = frame_bases[record["capture"]]
    out = dict(record, capture=whole_name, first_frame=record["first_frame"] + base)
    if record["evidence"]:
        out["evidence"] = [renumber(text, -base) for text in record["evidence"]]
    del out["flow_id"]
    return out


def records_of(inputs: list[str], **kwargs) -> list[dict]:
    out = []
    for _capture, result in analyze_files(inputs, **kwargs):
        assert not isinstance(result, str), result
        out.append(result)
    return out


def test_rotated_pieces_give_the_records_of_the_whole_capture(generated_capture, tmp_path):
    frames = len(pcap_frames(generated_capture))
    cuts = [frames // 5, frames // 2, frames * 3 // 4]
    # Named as tcpdump -C names its files: a sort by name puts "cap10" before "cap9"; the series goes by time.
    names = ["cap9.pcap", "cap10.pcap", "cap11.pcap", "cap12.pcap"]
    pieces = split(generated_capture, cuts, tmp_path, names, pcapng_pieces=(2,))
    given = sorted(str(p) for p in pieces)
    assert given[0].endswith("cap10.pcap")
    assert in_capture_order(given) == [str(p) for p in pieces]

    whole = records_of([str(generated_capture)])
    series = records_of(given, series=True)
    assert len(series) == len(whole) > 100
    bases = dict(zip([str(p) for p in pieces], [0, *cuts], strict=True))
    expected = {r["first_frame"]: {k: v for k, v in r.items() if k != "flow_id"} | {"capture": "whole"}
                for r in whole}
    got = {}
    for r in series:
        back = as_in_whole(r, bases, "whole")
        got[back["first_frame"]] = back
    assert got == expected
    # Flow ids count the connections that begin in each file, from 1.
    for piece in pieces:
        ids = sorted(r["flow_id"] for r in series if r["capture"] == str(piece))
        assert ids == list(range(1, len(ids) + 1))
    # Connections crossed the cuts: read file by file they are split in two, their halves "incomplete".
    apart = records_of(given)
    assert len(apart) > len(whole)
    assert sum(r["outcome"] == "incomplete" for r in apart) > sum(r["outcome"] == "incomplete" for r in whole)


LABELLED = ["tls12_cert_expired.pcap", "net_reset_after_client_hello.pcap", "net_packet_loss_recovered.pcap",
            "tls12_alpn_mismatch_nginx.pcap", "no_common_version_old_client.pcap", "net_closed_without_alert.pcap"]


@pytest.mark.parametrize("name", LABELLED)
def test_a_cut_at_any_frame_changes_no_record(name, tmp_path):
    """Real failures from the corpus, cut in two at every frame: the series gives the unsplit record each time."""
    path = CORPUS / name
    trust, keylog = trust_and_keylog_for(path)
    whole = [{k: v for k, v in r.items() if k != "flow_id"} | {"capture": "whole"}
             for r in records_of([str(path)], trust=trust, keylog=keylog)]
    frames = len(pcap_frames(path))
    for cut in range(1, frames):
        pieces = split(path, [cut], tmp_path, [f"{cut}-a.pcap", f"{cut}-b.pcap"])
        series = records_of([str(p) for p in pieces], trust=trust, keylog=keylog, series=True)
        bases = {str(pieces[0]): 0, str(pieces[1]): cut}
        assert sorted((as_in_whole(r, bases, "whole") for r in series), key=lambda r: r["first_frame"]) == whole, cut


def test_renumber_shifts_every_frame_number_of_an_evidence_text():
    assert renumber("frame 107: server alert unknown_ca (48)", 100) == "frame 7: server alert unknown_ca (48)"
    assert (renumber("3 server retransmission(s) at frames 120, 131, 150", 100)
            == "3 server retransmission(s) at frames 20, 31, 50")
    assert (renumber("client sent its data 3 times (again at frames 104, 109), no answer", 100)
            == "client sent its data 3 times (again at frames 4, 9), no answer")
    assert renumber("no ClientHello; 2 TLS records", 100) == "no ClientHello; 2 TLS records"


def test_damage_in_a_middle_piece_is_reported_in_its_own_frames_and_the_series_goes_on(generated_capture, tmp_path):
    frames = len(pcap_frames(generated_capture))
    cuts = [frames // 3, frames * 2 // 3]
    pieces = split(generated_capture, cuts, tmp_path, ["a.pcap", "b.pcap", "c.pcap"])
    data = pieces[1].read_bytes()
    pieces[1].write_bytes(data[:len(data) // 2])  # the sensor's file cut short (a full disk, a crash)
    results = list(analyze_files([str(p) for p in pieces], series=True))
    messages = [r for _c, r in results if isinstance(r, str)]
    assert len(messages) == 1
    message = messages[0]
    assert message.startswith(f"{pieces[1]}: ") and "file ends inside a packet record" in message
    frame = int(re.search(r"frame (\d+)\)", message).group(1))
    assert 1 < frame < cuts[1] - cuts[0]  # a frame number of b.pcap itself
    records = [r for _c, r in results if not isinstance(r, str)]
    assert {r["capture"] for r in records} == {str(p) for p in pieces}
    assert any(r["capture"] == str(pieces[2]) and r["outcome"] == "established" for r in records)


def test_command_line_and_dataframe(generated_capture, tmp_path):
    frames = len(pcap_frames(generated_capture))
    pieces = split(generated_capture, [frames // 2], tmp_path, ["x1.pcap", "x2.pcap"])
    out = tmp_path / "out.jsonl"
    rc = cli.main(["analyze", "--series", "-q", "-o", str(out), *map(str, pieces)])
    assert rc in (0, 1)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    whole = analyze(generated_capture)
    assert len(lines) == len(whole)
    frame = analyze([str(p) for p in pieces], series=True)
    assert len(frame) == len(whole)
    assert sorted(frame["capture"].unique()) == sorted(map(str, pieces))


def test_explain_in_a_series_shows_the_connection_analyze_reported(generated_capture, tmp_path, capsys):
    frames = len(pcap_frames(generated_capture))
    cut = frames // 2
    pieces = [str(p) for p in split(generated_capture, [cut], tmp_path, ["y1.pcap", "y2.pcap"])]
    records = records_of(pieces, series=True)
    # A connection that crosses the cut (it began in y1.pcap, its frames go on past y1's last), and a failed one
    # that began in y2.pcap.
    crossing = max((r for r in records if r["capture"] == pieces[0] and r["outcome"] == "established"),
                   key=lambda r: r["first_frame"])
    failed = next(r for r in records if r["capture"] == pieces[1] and r["outcome"] == "failed")
    for record in (crossing, failed):
        rc = cli.main(["explain", record["capture"], "--flow", str(record["flow_id"]), "--series", *pieces])
        out = capsys.readouterr().out
        assert rc == (1 if record["outcome"] == "failed" else 0)
        assert f"outcome: {record['outcome']}" in out
        assert f"{record['client']} → {record['server']}" in out
        if record["sni"]:
            assert f"SNI {record['sni']}" in out
        for fact in record["evidence"] or ():
            assert f"  - {fact}" in out
        ladder = [int(line.split()[0]) for line in out.splitlines() if line[:7].strip().isdigit()]
        assert ladder[0] == record["first_frame"]  # the ladder's frames are those of the record's own file
        if record is crossing:
            assert max(ladder) > cut  # its handshake went on in y2.pcap: frames counted on past y1's last
    rc = cli.main(["explain", str(generated_capture), "--flow", "1", "--series", *pieces])
    assert rc == 2 and "not one of the --series files" in capsys.readouterr().out
    # Another sensor's folder among the --series files: only CAPTURE's folder is its series, as analyze has it.
    (tmp_path / "other").mkdir()
    others = [str(p) for p in split(generated_capture, [cut // 2], tmp_path / "other", ["o1.pcap", "o2.pcap"])]
    rc = cli.main(["explain", failed["capture"], "--flow", str(failed["flow_id"]), "--series", *others, *pieces])
    out = capsys.readouterr().out
    assert rc == 1 and f"{failed['client']} → {failed['server']}" in out


def test_files_that_overlap_in_time_are_not_a_series_and_a_warning_says_so(generated_capture, tmp_path):
    frames = pcap_frames(generated_capture)
    t0 = frames[0][0]

    def sensor(name: str, shift_us: int) -> str:
        # The capture's ~0.1 s stretched to ~15 s, as two sensors see the same link, the second `shift_us` later.
        path = tmp_path / name
        path.write_bytes(capture_file_bytes(ETHERNET, [(t0 + (t - t0) * 100 + shift_us, d, len(d))
                                                       for t, d in frames], pcapng=False))
        return str(path)

    a, b = sensor("sensor-a.pcap", 0), sensor("sensor-b.pcap", 5_000_000)
    with pytest.warns(UserWarning, match=r"sensor-b\.pcap begins \d+\.\d s before .*sensor-a\.pcap ends"):
        records_of([b, a], series=True)
    pieces = split(generated_capture, [len(frames) // 2], tmp_path, ["z1.pcap", "z2.pcap"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # consecutive pieces: no warning
        records_of([str(p) for p in pieces], series=True)


def test_without_series_a_hint_counts_the_connections_that_go_on_into_the_next_file(generated_capture, tmp_path,
                                                                                     capsys):
    frames = len(pcap_frames(generated_capture))
    pieces = [str(p) for p in split(generated_capture, [frames // 3, frames * 2 // 3], tmp_path,
                                    ["w1.pcap", "w2.pcap", "w3.pcap"])]
    apart = records_of(pieces)
    # The second halves: incomplete records of a client and server that the file before had too.
    pairs = [{(r["client"], r["server"]) for r in apart if r["capture"] == p} for p in pieces]
    expected = sum(1 for r in apart if r["outcome"] == "incomplete" and r["capture"] != pieces[0]
                   and (r["client"], r["server"]) in pairs[pieces.index(r["capture"]) - 1])
    assert expected > 10
    for jobs in ("1", "2"):
        cli.main(["analyze", "-o", str(tmp_path / "o.jsonl"), "--jobs", jobs, *pieces])
        err = capsys.readouterr().err
        assert f"{expected} connection(s) seem to go on from one file into the next" in err, jobs
        assert "--series reads them as one" in err
    cli.main(["analyze", "--series", "-o", str(tmp_path / "o.jsonl"), *pieces])
    assert "--series reads" not in capsys.readouterr().err
    # Files that are not pieces of one capture: no hint.
    cli.main(["analyze", "-o", str(tmp_path / "o.jsonl"), str(CORPUS / "tls12_cert_expired.pcap"),
              str(CORPUS / "net_reset_after_client_hello.pcap"), str(CORPUS / "net_closed_without_alert.pcap")])
    assert "--series" not in capsys.readouterr().err


def test_each_folder_is_a_series_and_jobs_read_several_at_once(generated_capture, tmp_path):
    """Two sensors, each writing its rotated files into a folder of its own: each folder is read as one capture,
    and with --jobs 2 both at once, giving the same records in the same order."""
    from bench.gen_capture import generate

    other = tmp_path / "other.pcap"
    with other.open("wb") as out:
        generate(out, 1_500_000, seed=5)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    n_a, n_b = len(pcap_frames(generated_capture)), len(pcap_frames(other))
    a = split(generated_capture, [n_a // 3, n_a * 2 // 3], tmp_path / "a", ["s1.pcap", "s2.pcap", "s3.pcap"])
    b = split(other, [n_b // 2], tmp_path / "b", ["s1.pcap", "s2.pcap"])
    given = [str(p) for p in (b[1], a[2], a[0], b[0], a[1])]  # mixed up, as a shell glob over folders would not
    one = records_of(given, series=True)
    assert records_of([*given, str(a[0])], series=True) == one  # a file given twice is read once
    two = records_of(given, series=True, jobs=2)
    assert one == two
    # Folders in the order of their first file given (b), each one's files in capture order.
    assert [r["capture"] for r in one] == sorted((r["capture"] for r in one),
                                                  key=lambda c: (not c.startswith(str(tmp_path / "b")), c))
    for pieces, whole, cuts in ((a, generated_capture, [n_a // 3, n_a * 2 // 3]), (b, other, [n_b // 2])):
        bases = dict(zip([str(p) for p in pieces], [0, *cuts], strict=True))
        mine = [as_in_whole(r, bases, "whole") for r in one if r["capture"] in bases]
        expected = [{k: v for k, v in r.items() if k != "flow_id"} | {"capture": "whole"}
                    for r in records_of([str(whole)])]
        assert sorted(mine, key=lambda r: r["first_frame"]) == sorted(expected, key=lambda r: r["first_frame"])


def test_a_series_progress_counts_the_bytes_of_all_its_files(tmp_path):
    from tlsflow.series import series_progress

    files = []
    for name, size in (("p1", 100), ("p2", 50)):
        (tmp_path / name).write_bytes(b"x" * size)
        files.append(str(tmp_path / name))
    seen = []
    factory = series_progress(files, lambda read, total: seen.append((read, total)))
    first = factory(files[0])
    first(40, 100)
    first(100, 100)
    second = factory(files[1])
    second(50, 50)
    assert seen == [(40, 150), (100, 150), (150, 150)]


def test_dated_folders_below_a_sensors_folder_are_one_series(generated_capture, tmp_path):
    """tcpdump -G with a strftime path (sensor1/%Y-%m-%d/cap-%H%M.pcap) starts a folder at midnight: a connection
    open then is still one record. Other folder names stay sensors of their own."""
    from tlsflow.series import group_by_folder, sensor_folder

    frames = len(pcap_frames(generated_capture))
    for day in ("2026-11-27", "2026-11-28"):
        (tmp_path / "sensor1" / day).mkdir(parents=True)
    pieces = split(generated_capture, [frames // 2], tmp_path,
                   ["sensor1/2026-11-27/cap-2359.pcap", "sensor1/2026-11-28/cap-0000.pcap"])
    whole = records_of([str(generated_capture)])
    series = records_of([str(p) for p in pieces], series=True)
    assert len(series) == len(whole)
    assert sum(r["outcome"] == "incomplete" for r in series) == sum(r["outcome"] == "incomplete" for r in whole)
    for folder in ("sensor1/2026-11-28", "sensor1/20261128", "sensor1/2026/11/28", "sensor1/2026/11/28/00",
                   "sensor1/2026-11-28_00"):
        assert sensor_folder(f"/data/{folder}") == "/data/sensor1", folder
    assert sensor_folder("/data/sensors/1") == "/data/sensors/1"
    assert sensor_folder("/data/sensor1/2026/13/28") == "/data/sensor1/2026/13/28"  # (no month 13)
    assert group_by_folder(["/d/s1/2026-11-27/a.pcap", "/d/s2/2026-11-27/a.pcap", "/d/s1/2026-11-28/a.pcap"]) == [
        ["/d/s1/2026-11-27/a.pcap", "/d/s1/2026-11-28/a.pcap"], ["/d/s2/2026-11-27/a.pcap"]]
