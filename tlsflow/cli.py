"""The `tlsflow` command: `analyze` captures, `explain` one connection, `live` sniffing.

Exit codes (also in --help and the README): 0 analysed, no failed handshake; 1 analysed, failed handshakes found;
2 usage error; 3 an input could not be read (after reporting whatever could be read from it).
"""
from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import time
from typing import IO, Any

from tlsflow import __version__, hop_ahead
from tlsflow.inputs import InputError, auto_jobs, cpu_cores, expand_inputs
from tlsflow.terminal import os_reason, output_name

# Nothing of the analysis is imported at the top: `analyze --jobs N` on one big file starts hopping to its cuts
# before (tlsflow.hop_ahead), and --help or --version need none of it.
FORMATS = ("text", "jsonl", "json", "csv", "parquet")  # the writers: tlsflow.formats.open_writer

EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_UNREADABLE = 0, 1, 2, 3
EXIT_CODES_HELP = """exit codes:
  0  analysed, no failed handshake
  1  analysed, failed handshakes found
  2  usage error, or the output cannot be written (a full disk)
  3  an input could not be read (whatever could be read is still reported)"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 already; keep the message to one line
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tlsflow", description="Passive TLS handshake analyzer: for every failed handshake, the "
                     "step, the cause, the evidence and the fix.", epilog=EXIT_CODES_HELP,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"tlsflow {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    def common_filters(p: argparse.ArgumentParser) -> None:
        p.add_argument("--ca-bundle", metavar="FILE", help="PEM file of trusted CAs for certificate checks "
                       "(added to the default Mozilla bundle)")
        p.add_argument("--keylog", metavar="FILE", help="SSLKEYLOGFILE to decrypt handshakes (TLS 1.3 certificates "
                       "and encrypted alerts become readable); secrets inside a pcapng are used too")

    a = sub.add_parser("analyze", help="analyse capture files", epilog=EXIT_CODES_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Analyse pcap/pcapng captures (files, directories, globs, gzip, '-' for stdin).")
    a.add_argument("inputs", nargs="+", metavar="CAPTURE")
    a.add_argument("-f", "--format", choices=FORMATS, default=None,
                   help="output format (default: text report on a terminal; jsonl for -o FILE.jsonl etc.)")
    a.add_argument("-o", "--output", metavar="FILE", help="write records to FILE ('-' for standard output)")
    a.add_argument("--failed", action="store_true", help="only connections whose handshake failed")
    a.add_argument("--sni", metavar="PATTERN", help="only connections whose SNI matches (glob, e.g. '*.example.com')")
    a.add_argument("--host", metavar="IP", help="only connections with this client or server IP")
    a.add_argument("--port", type=int, metavar="N", help="only connections with this client or server port")
    a.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary on standard error")
    a.add_argument("--no-color", action="store_true", help="no colours in the text report")
    a.add_argument("-j", "--jobs", type=int, default=None, metavar="N",
                   help="analyse with N processes (files in parallel; one pcap or pcapng file: cut into N byte "
                        "ranges); 0: one per CPU core. Default: one per core for 40 MiB of input and more, else one")
    a.add_argument("--series", action="store_true",
                   help="the files of each folder are one capture in pieces (tcpdump -C/-G, a dumpcap ring buffer): "
                        "read them as one, in the order of their first packets, so that a connection crossing from "
                        "one file to the next is one record, under the file where it began (with --jobs: a process per "
                        "folder; one folder's files cut into runs, a process per run)")
    a.add_argument("--scheduler", metavar="ADDRESS", help="run on a Dask cluster (tcp://host:8786), one Parquet file "
                   "per capture into the -o folder; captures and folder at the same paths on every worker")
    common_filters(a)

    e = sub.add_parser("explain", help="draw one connection's handshake as a ladder, with the verdict")
    e.add_argument("input", metavar="CAPTURE")
    e.add_argument("--flow", type=int, required=True, metavar="N", help="flow_id as shown by analyze")
    e.add_argument("--series", nargs="+", metavar="FILE", help="the files of the series CAPTURE belongs to, as given "
                   "to analyze --series (globs too): flow N is the N-th connection that began in CAPTURE")
    e.add_argument("--no-color", action="store_true")
    common_filters(e)

    live = sub.add_parser("live", help="sniff an interface and report each handshake as it ends")
    live.add_argument("-i", "--interface", required=True)
    live.add_argument("--bpf", metavar="FILTER",
                      help="capture filter (default: TCP, and the tunnels that carry it: GRE and ERSPAN, VXLAN, "
                           "Geneve, GTP-U)")
    live.add_argument("-f", "--format", choices=("text", "jsonl", "json", "csv"), default="text")
    live.add_argument("-o", "--output", metavar="FILE")
    live.add_argument("--write", metavar="PCAPNG", help="also save the packets to this capture file")
    live.add_argument("--idle-timeout", type=float, default=60.0, metavar="S",
                      help="report a connection after S seconds without packets (default 60)")
    live.add_argument("--count", type=int, default=0, help="stop after this many packets (0: never)")
    live.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")
    live.add_argument("--failed", action="store_true", help="only report failed handshakes")
    live.add_argument("--no-color", action="store_true", help="no colours in the text report")
    common_filters(live)
    return parser


def _filter(args: argparse.Namespace):
    def keep(record: dict[str, Any]) -> bool:
        if args.failed and record.get("outcome") != "failed":
            return False
        if getattr(args, "sni", None) and not fnmatch.fnmatchcase((record.get("sni") or "").lower(),
                                                                  args.sni.lower()):
            return False
        if getattr(args, "host", None):
            hosts = {_host(record.get("client")), _host(record.get("server"))}
            if args.host.strip("[]") not in hosts:
                return False
        return getattr(args, "port", None) is None or \
            args.port in {_port(record.get("client")), _port(record.get("server"))}

    return keep


def _host(endpoint: str | None) -> str:
    return (endpoint or "").rsplit(":", 1)[0].strip("[]")


def _port(endpoint: str | None) -> int | None:
    try:
        return int((endpoint or "").rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None


class ProgressBar:
    """A one-line bar on standard error, redrawn at most five times a second."""

    def __init__(self, stream: IO[str], label: str) -> None:
        self.stream, self.label, self.last = stream, label, 0.0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.last < 0.2:
            return
        self.last = now
        if total:
            frac = min(1.0, done / total)
            bar = "#" * int(frac * 30)
            self.stream.write(f"\r{self.label[-30:]} [{bar:<30}] {frac * 100:5.1f}% {done / 1e6:8.1f} MB")
        else:
            self.stream.write(f"\r{self.label[-30:]} {done / 1e6:8.1f} MB")
        self.stream.flush()

    def clear(self) -> None:
        if self.last:
            self.stream.write("\r" + " " * 80 + "\r")
            self.stream.flush()


def _trust(args: argparse.Namespace):
    from analyzers.certchecks import TrustStore

    store = TrustStore.default()
    if getattr(args, "ca_bundle", None):
        store = store.with_pem_file(args.ca_bundle)
    return store


def _trust_or_none(args: argparse.Namespace):
    """The trust store for --ca-bundle, or None after saying on one line why the bundle cannot be used."""
    try:
        return _trust(args)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"tlsflow: --ca-bundle: {exc}\n")
        return None


NO_TCP_CONNECTION = ("no TCP connection in the input (tlsflow reads TLS over TCP; QUIC, which HTTP/3 uses, and DTLS "
                     "run over UDP and are not analysed)")


class _WriteFailed(Exception):
    """Writing the output failed (a full disk): the cause is the OSError. (Not an OSError itself, so that the
    input's errors are never taken for it.)"""


def cmd_analyze(args: argparse.Namespace) -> int:
    try:
        inputs = expand_inputs(args.inputs)
    except InputError as exc:
        sys.stderr.write(f"tlsflow: {exc}\n")
        return EXIT_UNREADABLE
    if args.jobs is None:
        jobs = auto_jobs(inputs)
    else:
        jobs = args.jobs if args.jobs > 0 else cpu_cores()
    if args.series and len(inputs) > 1:
        from tlsflow.series import group_by_folder

        # (a process per series, a folder's files, or fewer series than processes, each cut into runs of files, one
        # per process: no more processes than files either way)
        folders = group_by_folder(inputs)
        jobs = min(jobs, max(len(folders), max(len(group) for group in folders)))
    if jobs > 1 and len(inputs) == 1 and not args.scheduler:
        hop_ahead.start(inputs[0], jobs)  # on another core, while the analysis is imported
    try:
        return _analyze(args, inputs, jobs)
    finally:
        hop_ahead.close_all()


def _analyze(args: argparse.Namespace, inputs: list[str], jobs: int) -> int:
    from tlsflow.api import analyze_files
    from tlsflow.formats import JsonLinesWriter, open_writer
    from tlsflow.gcpolicy import tune_gc
    from tlsflow.shipping import EncodedRecord

    tune_gc()
    fmt = args.format
    if fmt is None:
        out = args.output or ""
        fmt = next((f for f in ("jsonl", "json", "csv", "parquet") if out.endswith("." + f)), None)
        fmt = fmt or ("jsonl" if args.output and args.output != "-" else "text")
    # Without --ca-bundle, the default store is loaded only if a certificate chain is checked (None here).
    trust = _trust_or_none(args) if args.ca_bundle else None
    if args.ca_bundle and trust is None:
        return EXIT_USAGE
    if args.scheduler:  # a Dask cluster (optional dependency, imported only here)
        from tlsflow.cluster import cmd_analyze_cluster

        return cmd_analyze_cluster(args, inputs, _filter(args))
    keep = _filter(args)
    show_progress = not args.quiet and sys.stderr.isatty()
    writer = to_close = report = None
    if fmt == "parquet":
        # The C library's allocator for pyarrow's buffers (a user's own setting wins): its default, mimalloc, keeps
        # what each row group freed, which put a 1 GB capture written to Parquet at ~207 MiB; ~190 MiB with this.
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    if fmt != "text":
        try:
            writer, to_close = open_writer(fmt, args.output, sys.stdout)
        except OSError as exc:  # (not "[Errno 2] No such file or directory: 'x'", nor pyarrow's longer text)
            sys.stderr.write(f"tlsflow: cannot write {output_name(args.output)}: {os_reason(exc)}\n")
            return EXIT_USAGE
        except ValueError as exc:
            sys.stderr.write(f"tlsflow: {exc}\n")
            return EXIT_USAGE
    failed = 0
    outcomes: dict[str, int] = {}
    unreadable = False
    if args.keylog and not os.path.isfile(args.keylog):
        sys.stderr.write(f"tlsflow: --keylog: {args.keylog}: no such file\n")
        return EXIT_USAGE
    if writer is None:  # the text report: its rows wait as text, in memory then on disk (terminal.Report)
        from tlsflow.terminal import Report

        report = Report(sys.stdout, colour=sys.stdout.isatty() and not args.no_color and "NO_COLOR" not in os.environ,
                        show_capture=len(inputs) > 1)
    # --jobs and JSON lines: the workers encode the records they send (tlsflow.shipping), the parent writes them.
    lines = writer.stream.write if jobs > 1 and isinstance(writer, JsonLinesWriter) else None
    results = analyze_files(inputs, trust=trust if jobs <= 1 else None, ca_bundle=args.ca_bundle, jobs=jobs,
                            json_lines=lines is not None, keylog=args.keylog, series=args.series,
                            progress_factory=(lambda name: ProgressBar(sys.stderr, name)) if show_progress else None)
    written = 0
    analysed = 0  # connections, before the filters
    crossing = _CrossingCount() if len(inputs) > 1 and not args.series else None
    try:
        for capture, result in results:
            if isinstance(result, str):  # an error message for this capture
                unreadable = True
                sys.stderr.write(f"tlsflow: {result}\n")
                continue
            record = result
            analysed += 1
            if crossing is not None:
                crossing.add(capture, record)
            if not keep(record):
                continue
            outcomes[record["outcome"]] = outcomes.get(record["outcome"], 0) + 1
            if record["outcome"] == "failed":
                failed += 1
            try:  # (a try block costs nothing per record in Python 3.11, a context manager ~1 us)
                if lines is not None and record.__class__ is EncodedRecord:
                    lines(record.json_line())
                elif writer is not None:
                    writer.write(record)
                else:
                    report.add(record)  # type: ignore[union-attr]
            except BrokenPipeError:
                raise  # (the reader of our standard output went away: main ends quietly)
            except OSError as exc:
                raise _WriteFailed from exc
            written += 1
        if writer is not None:
            try:
                writer.close()
                if to_close is not None:
                    to_close.close()
            except BrokenPipeError:
                raise
            except OSError as exc:
                raise _WriteFailed from exc
    except _WriteFailed as failure:
        results.close()  # (stops --jobs workers)
        if to_close is not None:
            try:
                to_close.close()  # (what it holds cannot be written either; the file is closed all the same)
            except OSError:
                pass
        sys.stderr.write(f"tlsflow: cannot write {output_name(args.output)}: {os_reason(failure.__cause__)} "
                         f"(stopped after {written} connection(s))\n")
        return EXIT_USAGE
    if writer is not None:
        if not args.quiet:
            total = sum(outcomes.values())
            sys.stderr.write(f"tlsflow: {total} connection(s)" + (": " if outcomes else "")
                             + ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())) + "\n")
    else:
        try:
            report.write()  # type: ignore[union-attr]
            sys.stdout.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            sys.stderr.write(f"tlsflow: cannot write standard output: {os_reason(exc)}\n")
            return EXIT_USAGE
        finally:
            report.close()  # type: ignore[union-attr]
    if crossing is not None and crossing.count and not args.quiet:
        sys.stderr.write(f"tlsflow: {crossing.count} connection(s) seem to go on from one file into the next (the "
                         "same client and server port, incomplete in the later file): if the files are one capture "
                         "rotated into pieces, --series reads them as one\n")
    if not analysed and not args.quiet:
        # An empty report says nothing of why: most often the capture holds no TCP at all (HTTP/3 is QUIC, over UDP).
        sys.stderr.write(f"tlsflow: {NO_TCP_CONNECTION}\n")
    if unreadable:
        return EXIT_UNREADABLE
    return EXIT_FAILURES if failed else EXIT_OK


class _CrossingCount:
    """Records that look like the second half of a connection cut by a file rotation: incomplete, on the client
    and server (addresses and ports) of a connection of the file just before. Only the previous file's pairs are
    kept (records come file by file). A hint for `--series`, which users of rotated files may not know about."""

    def __init__(self) -> None:
        self.count = 0
        self._capture: str | None = None
        self._current: set[tuple[str, str]] = set()
        self._previous: set[tuple[str, str]] = set()

    def add(self, capture: str, record: dict[str, Any]) -> None:
        if capture != self._capture:
            self._capture = capture
            self._previous, self._current = self._current, set()
        pair = (record["client"], record["server"])
        if record["outcome"] == "incomplete" and pair in self._previous:
            self.count += 1
        self._current.add(pair)


def cmd_explain(args: argparse.Namespace) -> int:
    from tlsflow.explain import explain_flow

    trust = _trust_or_none(args) if args.ca_bundle else None  # (None: the default store, loaded if needed)
    if args.ca_bundle and trust is None:
        return EXIT_USAGE
    colour = sys.stdout.isatty() and not args.no_color and "NO_COLOR" not in os.environ
    keylog = None
    if args.keylog:
        from tlsparse.keylog import KeyLog

        keylog = KeyLog.from_file(args.keylog)
    series = None
    if args.series:
        try:
            series = expand_inputs(args.series)
        except InputError as exc:
            sys.stderr.write(f"tlsflow: {exc}\n")
            return EXIT_UNREADABLE
    return explain_flow(args.input, args.flow, sys.stdout, trust=trust, colour=colour, keylog=keylog,
                        series=series)


def cmd_live(args: argparse.Namespace) -> int:
    from tlsflow.gcpolicy import tune_gc
    from tlsflow.live import run_live

    tune_gc()  # (a sniffer holds the live flows for hours: the default thresholds walk them over and over)
    trust = _trust_or_none(args)
    if trust is None:
        return EXIT_USAGE
    return run_live(args, trust=trust, keep=_filter(args))


def _plain_warnings() -> None:
    """tlsflow's own warnings (their text starts with "tlsflow:") on one line of their own, as its other messages,
    without Python's file name, line number and source line; any other warning as Python shows it."""
    import warnings

    python_format = warnings.formatwarning
    if getattr(python_format, "plain_tlsflow", False):
        return  # (main called again in this process)

    def formatwarning(message, category, filename, lineno, line=None):  # type: ignore[no-untyped-def]
        if str(message).startswith("tlsflow:"):
            return f"{message}\n"
        return python_format(message, category, filename, lineno, line)

    formatwarning.plain_tlsflow = True  # type: ignore[attr-defined]
    warnings.formatwarning = formatwarning


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    handler = {"analyze": cmd_analyze, "explain": cmd_explain, "live": cmd_live}[args.command]
    _plain_warnings()
    try:
        return handler(args)
    except KeyboardInterrupt:
        sys.stderr.write("tlsflow: interrupted\n")
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
