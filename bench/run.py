"""Time tlsflow against tshark and a bare pure-Python header loop on the same capture.

    python -m bench.run CAPTURE [--runs 3] [--tlsflow-cmd "tlsflow analyze {capture} --format jsonl -o /dev/null"]
                                [--jobs 1,2] [--tools tlsflow,tshark,bare] [--series-pieces N] [--markdown]

Tools run one after the other, alternating within each round, so that a slow drift of the machine (page cache,
thermal state, a neighbour) spreads over all of them instead of penalising whichever ran last. Each is a child
process: wall time is measured around it, its peak RSS comes from `wait4` (the largest single process), and a
poller also sums VmRSS over the child's whole process tree (what `--jobs N` workers add up to), and, less often,
their proportional set sizes (PSS, Linux): forked workers share the parent's pages until they write them, which
the summed RSS counts once per process and PSS once in all (the memory the tree really holds). The table gives
the median wall time of the runs and ratios to tshark: ratios survive a change of machine, seconds do not.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shlex
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

README = Path(__file__).with_name("README.md")
RESULTS_BEGIN = "<!-- bench-results:begin (bench/run.py --markdown writes between these lines) -->"
RESULTS_END = "<!-- bench-results:end -->"
DEFAULT_TLSFLOW_CMD = "tlsflow analyze {capture} --format jsonl -o /dev/null"
TSHARK_FIELDS = ("frame.number", "tcp.stream", "tls.handshake.type", "tls.handshake.extensions_server_name",
                 "tls.handshake.ciphersuite", "tls.alert_message.desc")


def tshark_command(capture: str) -> list[str]:
    cmd = ["tshark", "-r", capture, "-Y", "tls.handshake or tls.alert_message", "-T", "fields"]
    for name in TSHARK_FIELDS:
        cmd += ["-e", name]
    return cmd


def bare_loop_command(capture: str) -> list[str]:
    return [sys.executable, "-m", "bench.bare_loop", capture]


def tlsflow_command(template: str, capture: str, jobs: int | None) -> list[str]:
    """Fill `{capture}` (and `{jobs}`) in the template; without a `{jobs}` placeholder, append `--jobs N`."""
    text = template.replace("{capture}", shlex.quote(capture))
    if jobs is not None:
        text = text.replace("{jobs}", str(jobs)) if "{jobs}" in text else f"{text} --jobs {jobs}"
    return shlex.split(text)


def tlsflow_jobs(template: str, jobs: str | None) -> list[int | None]:
    """The --jobs value of each tlsflow row (None: the template as it is). Without `--jobs`, the default command
    runs with `--jobs 1`: `tlsflow analyze` takes every core by itself for a capture of bench size
    (tlsflow.inputs.auto_jobs), and the first row is the one-core figure the targets mean."""
    if jobs:
        return [int(j) for j in jobs.split(",")]
    return [1] if template == DEFAULT_TLSFLOW_CMD else [None]


@dataclass
class Tool:
    name: str
    argv: list[str]
    ok_exit_codes: frozenset[int] = frozenset({0})
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    peak_kib: int = 0
    tree_peak_kib: int = 0
    tree_pss_peak_kib: int = 0
    failure: str | None = None
    stdout_tail: str = ""
    copies: int = 1  # started together, timed until the last ends (`measure_together`)

    @property
    def median_wall(self) -> float | None:
        return statistics.median(self.walls) if self.walls and not self.failure else None


# ---------------------------------------------------------------------------------------------- measuring
def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _proc_kib(pid: int, file: str, field: str) -> int:
    """A "Field:  N kB" line of /proc/<pid>/<file>, in KiB (0 when the process or the line is gone)."""
    try:
        with open(f"/proc/{pid}/{file}") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _rss_kib(pid: int) -> int:
    return _proc_kib(pid, "status", "VmRSS:")


def _pss_kib(pid: int) -> int:
    return _proc_kib(pid, "smaps_rollup", "Pss:")


def _tree_kib(root: int, of_one: Callable[[int], int] = _rss_kib) -> int:
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += of_one(pid)
        todo += _children(pid)
    return total


class TreeRssPoller(threading.Thread):
    """Samples the summed RSS of a process and its descendants every `interval` seconds, and their summed PSS every
    `pss_every` samples (reading smaps_rollup costs ~0.6 ms a process, sixty times VmRSS: often, it would take CPU
    from the run it measures); keeps the maxima (PSS 0 where the kernel gives none)."""

    def __init__(self, pid: int, interval: float = 0.05, pss_every: int = 4) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.pss_every = pid, interval, pss_every
        self.peak_kib = self.pss_peak_kib = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        samples = 0
        while not self._stop_event.is_set():
            self.peak_kib = max(self.peak_kib, _tree_kib(self.pid))
            if samples % self.pss_every == 0:
                self.pss_peak_kib = max(self.pss_peak_kib, _tree_kib(self.pid, _pss_kib))
            samples += 1
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@dataclass(frozen=True)
class Measurement:
    wall: float
    cpu: float  # user + system seconds of the child and the children it waited for
    peak_kib: int  # ru_maxrss of the child (Linux reports KiB)
    tree_peak_kib: int
    tree_pss_peak_kib: int  # 0: not known (no smaps_rollup)
    returncode: int
    stdout: str
    stderr: str


def measure(argv: list[str], timeout: float) -> Measurement:
    """Run argv to completion; stdout is kept only up to a few KiB (the tools' output goes to /dev/null)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        poller = TreeRssPoller(proc.pid)
        poller.start()
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # keeps Popen from waiting a second time
        poller.stop()
        out.seek(0)
        err.seek(0)
        return Measurement(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, max(poller.peak_kib, usage.ru_maxrss),
                           poller.pss_peak_kib, proc.returncode, out.read(4096).decode(errors="replace"),
                           err.read()[-2000:].decode(errors="replace"))


def measure_together(argvs: list[list[str]], timeout: float) -> Measurement:
    """Run several commands at once, each its own process: wall time until the last one ends, CPU time summed, the
    largest single process, and the trees' peaks summed (an upper bound: their peaks need not coincide). The first
    non-zero exit code is the result's. Why: N one-process runs at once are the most any N-process split of the
    same work can get from this machine (shared caches, memory bandwidth, a neighbour on the host), which tells a
    `--jobs N` figure below N apart from one the machine caps."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        procs, pollers, errs = [], [], []
        for i, argv in enumerate(argvs):
            err = open(os.path.join(tmp, f"err{i}"), "w+b")  # noqa: SIM115 (closed below)
            errs.append(err)
            procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL))
            pollers.append(TreeRssPoller(procs[-1].pid))
            pollers[-1].start()
        deadline = started + timeout
        results: dict[int, tuple[int, float, int]] = {}  # pid -> (exit code, CPU seconds, ru_maxrss)
        wall = 0.0
        while len(results) < len(procs):
            for proc in procs:
                if proc.pid in results:
                    continue
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if not pid and time.perf_counter() > deadline:
                    proc.kill()
                    pid, status, usage = os.wait4(proc.pid, 0)
                if pid:
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    results[pid] = (proc.returncode, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)
                    wall = time.perf_counter() - started
            time.sleep(0.005)
        for poller in pollers:
            poller.stop()
        codes = [results[p.pid][0] for p in procs]
        stderr = ""
        for err in errs:
            err.seek(0)
            stderr += err.read()[-1000:].decode(errors="replace")
            err.close()
        peak = max(results[p.pid][2] for p in procs)
        return Measurement(wall, sum(r[1] for r in results.values()), peak,
                           sum(max(pl.peak_kib, results[p.pid][2]) for pl, p in zip(pollers, procs, strict=True)),
                           sum(pl.pss_peak_kib for pl in pollers), next((c for c in codes if c), 0), "", stderr)


# ---------------------------------------------------------------------------------------------- the capture
# A classic pcap's magic number -> the byte order of its headers (micro- and nanosecond timestamps alike).
_PCAP_BYTE_ORDER = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",
                    b"\xa1\xb2\x3c\x4d": ">"}


def count_packets(capture: str) -> int | None:
    """Packets in a classic pcap by walking record headers; capinfos for anything else; None if neither works."""
    with open(capture, "rb") as f:
        magic = f.read(4)
        order = _PCAP_BYTE_ORDER.get(magic)
        if order is not None:
            record = struct.Struct(order + "IIII")
            f.seek(24)
            count = 0
            while True:
                header = f.read(16)
                if len(header) < 16:
                    return count
                f.seek(record.unpack(header)[2], os.SEEK_CUR)
                count += 1
    if shutil.which("capinfos"):
        out = subprocess.run(["capinfos", "-c", "-M", capture], capture_output=True, text=True,
                             timeout=600, check=False).stdout
        m = re.search(r"Number of packets:\s+(\d+)", out)
        return int(m.group(1)) if m else None
    return None


def split_pcap(capture: str, pieces: int, folder: str) -> list[str]:
    """A classic pcap cut into `pieces` files of about equal packet counts in `folder` (piece-000.pcap, ...), as a
    sensor that rotates its file (tcpdump -C) writes them: `--series-pieces`."""
    packets = count_packets(capture)
    with open(capture, "rb") as f:
        header = f.read(24)
    if header[:4] not in _PCAP_BYTE_ORDER or packets is None or packets < pieces:
        raise SystemExit(f"{capture}: --series-pieces needs a classic pcap of {pieces} packets or more")
    out: list[str] = []
    with open(capture, "rb") as f:
        header = f.read(24)
        record = struct.Struct(_PCAP_BYTE_ORDER[header[:4]] + "IIII")
        for index in range(pieces):
            name = os.path.join(folder, f"piece-{index:03d}.pcap")
            want = packets * (index + 1) // pieces - packets * index // pieces
            with open(name, "wb") as piece:
                piece.write(header)
                for _ in range(want):
                    head = f.read(16)
                    piece.write(head)
                    piece.write(f.read(record.unpack(head)[2]))
            out.append(name)
    return out


def machine_description() -> dict[str, str]:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    tshark = "not installed"
    if shutil.which("tshark"):
        first = subprocess.run(["tshark", "--version"], capture_output=True, text=True, timeout=60, check=False).stdout
        tshark = first.splitlines()[0].rstrip(".") if first else "unknown"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "tshark": tshark,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# ---------------------------------------------------------------------------------------------- reporting
def table_rows(tools: list[Tool], packets: int | None) -> list[list[str]]:
    tshark = next((t for t in tools if t.name == "tshark" and t.median_wall), None)
    rows = []
    for t in tools:
        wall = t.median_wall
        if wall is None:
            rows.append([t.name, t.failure or "not run"])
            continue
        ratio = f"{wall / tshark.median_wall:.2f}" if tshark else "n/a"
        rate = f"{packets * t.copies / wall:,.0f}" if packets else "n/a"  # (N runs at once: all of their packets)
        spread = f"{min(t.walls):.2f}–{max(t.walls):.2f}" if len(t.walls) > 1 else ""
        cpu = statistics.median(t.cpus)
        cpu_ratio = f"{cpu / statistics.median(tshark.cpus):.2f}" if tshark else "n/a"
        pss = f"{t.tree_pss_peak_kib / 1024:.0f}" if t.tree_pss_peak_kib else "n/a"
        rows.append([t.name, f"{wall:.2f}", ratio, rate, f"{t.peak_kib / 1024:.0f}", f"{t.tree_peak_kib / 1024:.0f}",
                     pss, spread, f"{cpu:.2f}", cpu_ratio])
    return rows


def scaling_lines(tools: list[Tool]) -> list[str]:
    """For each `--jobs N` row (N > 1) with a one-process row and a row of N one-process runs at once: how much
    faster N jobs are than one, against the most N processes got from the machine in the same rounds."""
    by_name = {t.name: t.median_wall for t in tools}
    one = by_name.get("tlsflow --jobs 1")
    lines = []
    for t in tools:
        if t.copies < 2 or not t.median_wall or not one:
            continue
        jobs = by_name.get(f"tlsflow --jobs {t.copies}")
        ceiling = t.copies * one / t.median_wall
        line = (f"{t.copies} one-process runs at once: {ceiling:.2f}× the throughput of one (the most {t.copies} "
                f"processes got from this machine)")
        if jobs:
            speedup = one / jobs
            line = (f"--jobs {t.copies}: {speedup:.2f}× faster than --jobs 1; {line}; --jobs {t.copies} reaches "
                    f"{speedup / ceiling:.0%} of it")
        lines.append(line)
    return lines


HEADERS = ["tool", "wall s (median)", "ratio to tshark", "packets/s", "peak MiB", "tree peak MiB", "tree PSS MiB",
           "min–max s", "CPU s (median)", "CPU ratio to tshark"]


def render_text(rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) if i < len(r) else 0 for r in rows)) for i, h in enumerate(HEADERS)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join((r[i] if i < len(r) else "").ljust(w) for i, w in enumerate(widths)))
    return "\n".join(lines)


def render_markdown(label: str, machine: dict[str, str], capture_line: str, rows: list[list[str]]) -> str:
    machine_line = (f"{machine['date']}; {machine['nproc']} × {machine['cpu']}; Python {machine['python']}; "
                    f"{machine['tshark']}; load average after the runs {machine['load']}")
    out = [f"### {label}", "", machine_line, "", capture_line, "",
           "| " + " | ".join(HEADERS) + " |", "|" + "|".join("---" for _ in HEADERS) + "|"]
    for r in rows:
        out.append("| " + " | ".join(r + [""] * (len(HEADERS) - len(r))) + " |")
    return "\n".join(out) + "\n"


def update_readme(readme: Path, label: str, section: str) -> None:
    """Replace the section with the same heading between the result markers, or append it there."""
    text = readme.read_text() if readme.exists() else ""
    if RESULTS_BEGIN not in text:
        text = text.rstrip("\n") + f"\n\n## Results\n\n{RESULTS_BEGIN}\n{RESULTS_END}\n"
    head, rest = text.split(RESULTS_BEGIN, 1)
    body, tail = rest.split(RESULTS_END, 1)
    sections = re.split(r"(?m)^(?=### )", body.strip("\n"))
    sections = [s.strip("\n") + "\n" for s in sections if s.strip()]
    heading = f"### {label}\n"
    for i, s in enumerate(sections):
        if s.startswith(heading):
            sections[i] = section
            break
    else:
        sections.append(section)
    readme.write_text(head + RESULTS_BEGIN + "\n\n" + "\n".join(sections) + "\n" + RESULTS_END + tail)


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("capture")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tlsflow-cmd", default=DEFAULT_TLSFLOW_CMD,
                        help="command template; {capture} is replaced by the capture path, {jobs} by --jobs values")
    parser.add_argument("--tlsflow-ok-codes", default="0,1",
                        help="exit codes that mean success (tlsflow exits 1 when it found failed handshakes, and "
                             "generated captures always have some)")
    parser.add_argument("--jobs", help="comma-separated worker counts: one tlsflow row per value, e.g. 1,2")
    parser.add_argument("--no-ceiling", action="store_true",
                        help="skip the row of N one-process runs at once that each --jobs N > 1 gets by default")
    parser.add_argument("--tools", default="tlsflow,tshark,bare", help="subset of tlsflow,tshark,bare")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before a single run is killed")
    parser.add_argument("--markdown", nargs="?", const=str(README), metavar="README",
                        help=f"append or update the results table in this file (default {README})")
    parser.add_argument("--label", help="heading of the markdown section (default: capture file name and size)")
    parser.add_argument("--series-pieces", type=int, metavar="N",
                        help="cut the capture (classic pcap) into N files in a temporary folder, as a sensor that "
                             "rotates its file writes them, and time `tlsflow analyze --series` on them (tshark and "
                             "the bare loop still read the whole capture)")
    return parser.parse_args(argv)


def compile_bytecode() -> None:
    """Byte-compile the project's packages first, as `pip install` does for an installed copy: a run from a
    checkout whose environment sets PYTHONDONTWRITEBYTECODE (some sandboxes and containers do) would otherwise
    compile every module again at each start (~0.06 s here), which a user's installation never does."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    import compileall

    for package in ("tlsflow", "tlsparse", "analyzers"):
        compileall.compile_dir(os.path.join(root, package), quiet=1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    capture = os.path.abspath(args.capture)
    if not os.path.isfile(capture):
        raise SystemExit(f"{capture}: no such file")
    wanted = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = set(wanted) - {"tlsflow", "tshark", "bare"}
    if unknown:
        raise SystemExit(f"unknown tools: {', '.join(sorted(unknown))}")

    tools: list[Tool] = []
    pieces_folder = None
    target = capture  # what tlsflow reads
    jobs_rows = tlsflow_jobs(args.tlsflow_cmd, args.jobs)
    if args.series_pieces and "tlsflow" in wanted:
        pieces_folder = tempfile.TemporaryDirectory(prefix="bench-series-")
        split_pcap(capture, args.series_pieces, pieces_folder.name)
        target = os.path.join(pieces_folder.name, "*.pcap")  # (tlsflow expands the glob itself)
        args.tlsflow_cmd = args.tlsflow_cmd.replace("{capture}", "--series {capture}", 1)
    if "tlsflow" in wanted:
        ok_codes = frozenset(int(c) for c in args.tlsflow_ok_codes.split(","))
        for jobs in jobs_rows:
            name = "tlsflow" if jobs is None else f"tlsflow --jobs {jobs}"
            tools.append(Tool(name, tlsflow_command(args.tlsflow_cmd, target, jobs), ok_codes))
        if not args.no_ceiling:
            for jobs in jobs_rows:
                if jobs is not None and jobs > 1:
                    tools.append(Tool(f"{jobs} × tlsflow --jobs 1 at once",
                                      tlsflow_command(args.tlsflow_cmd, target, 1), ok_codes, copies=jobs))
    if "tshark" in wanted:
        tools.append(Tool("tshark", tshark_command(capture)))
    if "bare" in wanted:
        tools.append(Tool("bare Python loop", bare_loop_command(capture)))
    for t in tools:
        if shutil.which(t.argv[0]) is None:
            t.failure = f"not available ({t.argv[0]} not found)"

    if "tlsflow" in wanted:
        compile_bytecode()
    packets = count_packets(capture)
    size_mb = os.path.getsize(capture) / 1e6
    print(f"{capture}: {size_mb:,.1f} MB, {packets if packets is not None else '?'} packets", file=sys.stderr)

    for round_no in range(1, args.runs + 1):
        for t in tools:
            if t.failure:
                continue
            m = (measure(t.argv, args.timeout) if t.copies == 1
                 else measure_together([t.argv] * t.copies, args.timeout))
            print(f"run {round_no}/{args.runs} {t.name}: {m.wall:.2f} s wall, {m.cpu:.2f} s CPU, "
                  f"{m.peak_kib / 1024:.0f} MiB"
                  + (f", exit {m.returncode}" if m.returncode else ""), file=sys.stderr)
            if m.returncode not in t.ok_exit_codes:
                t.failure = f"failed (exit {m.returncode})"
                print(f"  {' '.join(t.argv)}\n  {m.stderr.strip()[-600:]}", file=sys.stderr)
                continue
            t.walls.append(m.wall)
            t.cpus.append(m.cpu)
            t.peak_kib = max(t.peak_kib, m.peak_kib)
            t.tree_peak_kib = max(t.tree_peak_kib, m.tree_peak_kib)
            t.tree_pss_peak_kib = max(t.tree_pss_peak_kib, m.tree_pss_peak_kib)
            t.stdout_tail = m.stdout

    rows = table_rows(tools, packets)
    print(render_text(rows))
    scaling = scaling_lines(tools)
    for line in scaling:
        print(line)

    if args.markdown:
        bare = next((t for t in tools if t.name == "bare Python loop" and t.stdout_tail), None)
        connections = re.search(r"connections=(\d+)", bare.stdout_tail).group(1) if bare else "?"
        label = args.label or f"{os.path.basename(capture)} ({size_mb:,.0f} MB)"
        pieces_note = (f"tlsflow read it cut into {args.series_pieces} files, with --series; "
                       if pieces_folder is not None else "")
        capture_line = (f"Capture: `{os.path.basename(capture)}`, {size_mb:,.1f} MB, "
                        f"{packets if packets is not None else '?'} packets, {connections} TCP connections; "
                        f"{pieces_note}{args.runs} run{'s' if args.runs != 1 else ''} each, alternating.")
        section = render_markdown(label, machine_description(), capture_line, rows)
        if scaling:
            section += "\n" + "".join(f"- {line}\n" for line in scaling)
        update_readme(Path(args.markdown), label, section)
        print(f"updated {args.markdown}", file=sys.stderr)
    if pieces_folder is not None:
        pieces_folder.cleanup()
    return 0 if all(t.failure is None or t.failure.startswith("not available") for t in tools) else 1


if __name__ == "__main__":
    sys.exit(main())
