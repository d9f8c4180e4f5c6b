"""`tlsflow live`: sniff an interface, report each TLS connection as soon as it ends, summarise on exit.

Frames come from scapy's Linux PF_PACKET sockets as raw bytes (`recv_raw`) and are decoded by the capture
reader's own frame handlers (`tlsflow.capture.decode`), not by scapy layers: dissecting every packet into scapy
objects would cost more than the whole analysis, and live and offline decoding must agree.
Live mode is the one place where the wall clock is used: once a second, connections idle for `--idle-timeout`
seconds (and closed ones whose linger is over) are reported, so that nothing waits for the next packet and memory
stays flat however long the capture runs.
"""
from __future__ import annotations

import argparse
import errno
import os
import select
import signal
import socket
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from tlsflow.capture import CaptureStats, linktypes
from tlsflow.capture.decode import TCP_AND_TUNNELS_BPF, make_handlers
from tlsflow.capture.fragments import FragmentReassembler
from tlsflow.formats import open_writer
from tlsflow.pipeline import FlowAnalyzer
from tlsflow.terminal import os_reason, output_name, safe_text, write_summary

EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_UNREADABLE = 0, 1, 2, 3
NEEDS_PRIVILEGE = ("tlsflow live: capturing on {iface} needs root or CAP_NET_RAW "
                   "(try sudo, or setcap cap_net_raw+ep on the Python binary)")
ARPHRD_LOOPBACK = 772
# Linux ARPHRD_* hardware type of the interface → the link type of the frames a PF_PACKET SOCK_RAW socket reads.
# Loopback frames carry a (zeroed) Ethernet header; tun, PPP and IP tunnels hand over bare IP packets.
LINK_TYPES = {1: linktypes.ETHERNET, ARPHRD_LOOPBACK: linktypes.ETHERNET, 512: linktypes.RAW, 768: linktypes.RAW,
              769: linktypes.RAW, 776: linktypes.RAW, 778: linktypes.RAW, 823: linktypes.RAW, 0xFFFE: linktypes.RAW}
# Larger than any frame the kernel hands over (loopback MTU 65536 plus headers, GRO super-packets): a frame cut by
# a short receive buffer would look like lost bytes to the reassembler.
RECV_BUFFER = 1 << 18
SOCKET_BUFFER = 64 << 20  # kernel receive buffer asked for: about a second of a busy gigabit link
SO_RCVBUFFORCE = 33  # Linux; not exported by the socket module
HOUSEKEEPING_S = 1.0  # how often idle connections are looked for
MAX_BATCH = 256  # frames read per wake-up before the stop conditions and housekeeping are looked at again
DRAIN_LIMIT = 100_000  # frames still queued in the socket when told to stop, read before closing it

# --- saving frames --------------------------------------------------------------------------------------------

class PcapNgWriter:
    """A minimal pcapng writer (one section, one interface, Enhanced Packet Blocks, microsecond timestamps).

    Written here rather than with scapy's writer because that one wants scapy packet objects, and we hold bytes.
    """

    def __init__(self, path: str, link_type: int, interface: str, snaplen: int = RECV_BUFFER) -> None:
        self.file = open(path, "wb")  # noqa: SIM115 - closed by close()
        app = _option(4, b"tlsflow live")  # shb_userappl
        self._block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + app + _option(0, b""))
        options = _option(2, interface.encode("utf-8", "replace")) + _option(9, b"\x06") + _option(0, b"")
        self._block(0x00000001, struct.pack("<HHI", link_type, 0, snaplen) + options)  # if_name, if_tsresol 10^-6

    def _block(self, block_type: int, body: bytes) -> None:
        body += b"\x00" * (-len(body) % 4)
        length = 12 + len(body)
        self.file.write(struct.pack("<II", block_type, length) + body + struct.pack("<I", length))

    def write(self, data: bytes, ts: float) -> None:
        micros = round(ts * 1_000_000)
        self._block(0x00000006, struct.pack("<IIIII", 0, micros >> 32, micros & 0xFFFFFFFF, len(data), len(data))
                    + data)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


# --- the sniffer ----------------------------------------------------------------------------------------------

class CaptureDenied(Exception):
    """The socket could not be opened for lack of privilege."""


class CaptureLost(Exception):
    """The socket failed while capturing (interface down or removed)."""


class OutputLost(Exception):
    """Writing failed (a full disk): `which` is "records" or "capture" (the --write file); the cause is the
    OSError. (Not an OSError itself, so that the socket's errors are never taken for it.)"""

    def __init__(self, which: str) -> None:
        super().__init__(which)
        self.which = which


class Sniffer:
    """A scapy PF_PACKET socket on one interface with a BPF filter, read as (bytes, timestamp) frames.

    On loopback every packet passes the socket twice (leaving and arriving): scapy's L2Socket drops the outgoing
    copy. On other interfaces L2ListenSocket keeps both directions, so this host's own connections are seen whole.
    """

    def __init__(self, interface: str, bpf: str | None) -> None:
        import logging

        import scapy.arch  # noqa: F401 - fills conf.L2socket / conf.L2listen for this platform
        from scapy.config import conf
        from scapy.error import Scapy_Exception

        try:
            socket.if_nametoindex(interface)
        except OSError as exc:  # scapy would say so only through its filter compiler, as a usage error
            raise OSError(errno.ENODEV, "no such interface") from exc
        loopback = _hardware_type(interface) == ARPHRD_LOOPBACK
        factory = conf.L2socket if loopback else conf.L2listen
        if loopback:
            # Drop the outgoing copy in the kernel already: it halves what the socket buffer has to hold.
            bpf = f"inbound and ({bpf})" if bpf else "inbound"
        # scapy warns when it has no dissector for the link type; we decode the bytes ourselves, so say nothing.
        scapy_log = logging.getLogger("scapy.runtime")
        level = scapy_log.level
        scapy_log.setLevel(logging.ERROR)
        try:
            self.sock = factory(iface=interface, filter=bpf or None, promisc=False)
        except PermissionError as exc:
            raise CaptureDenied(str(exc)) from exc
        except Scapy_Exception as exc:  # the filter did not compile: a usage error
            raise ValueError(str(exc)) from exc
        finally:
            scapy_log.setLevel(level)
        hardware = self.sock.ins.getsockname()[3]
        link_type = LINK_TYPES.get(hardware)
        if link_type is None:
            self.sock.close()
            raise ValueError(f"interface {interface}: link layer (ARPHRD {hardware}) is not supported")
        self.link_type = link_type
        self.sock.ins.setblocking(False)  # select() says when to read; reads stop at EAGAIN
        _enlarge_receive_buffer(self.sock.ins)

    def fileno(self) -> int:
        return self.sock.fileno()

    def available(self, limit: int) -> Iterator[tuple[bytes, float]]:
        """The frames waiting in the socket now, at most `limit` reads (outgoing loopback copies count)."""
        recv = self.sock.recv_raw
        for _ in range(limit):
            try:
                _, data, ts = recv(RECV_BUFFER)
            except BlockingIOError:
                return
            except OSError as exc:  # the interface went down or away
                raise CaptureLost(exc.strerror or str(exc)) from exc
            if data:  # None: the outgoing copy of a loopback packet
                yield data, ts if ts is not None else time.time()

    def kernel_drops(self) -> int | None:
        """Frames the kernel dropped because we did not read fast enough (PACKET_STATISTICS), if it says."""
        try:
            raw = self.sock.ins.getsockopt(263, 6, 8)  # SOL_PACKET, PACKET_STATISTICS: tp_packets, tp_drops
        except (OSError, AttributeError):
            return None
        return struct.unpack("II", raw)[1]

    def close(self) -> None:
        self.sock.close()


def _enlarge_receive_buffer(sock: socket.socket) -> None:
    """scapy leaves the socket buffer at 64 KiB, a few hundred frames: a burst of connections would be dropped
    by the kernel before we read it. SO_RCVBUFFORCE passes net.core.rmem_max when we may (CAP_NET_ADMIN)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, SOCKET_BUFFER)
    except OSError:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)  # capped at rmem_max
        except OSError:
            pass


def _hardware_type(interface: str) -> int | None:
    try:
        with open(f"/sys/class/net/{interface}/type", encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


# --- the report -----------------------------------------------------------------------------------------------

_COLOURS = {"failed": "\x1b[31m", "not_tls": "\x1b[35m", "incomplete": "\x1b[33m", "established": "\x1b[32m"}
_RESET = "\x1b[0m"


def format_line(record: dict[str, Any], *, colour: bool) -> str:
    """One connection as one line (plus the hint under a failure), every wire string escaped."""
    outcome = record.get("outcome") or "-"
    stamp = time.strftime("%H:%M:%S", time.localtime(record["end"])) if record.get("end") else "--:--:--"
    endpoints = f"{safe_text(record.get('client'))} -> {safe_text(record.get('server'))}"
    parts = [stamp, f"{safe_text(outcome):<11}", endpoints]
    if record.get("sni"):
        parts.append(f"sni={safe_text(record['sni'], 60)}")
    if record.get("version"):
        parts.append(safe_text(record["version"]))
    if outcome == "failed":
        parts.append(f"at {safe_text(record.get('failed_step'))}: {safe_text(record.get('cause'))}")
        if record.get("alert"):
            parts.append(f"(alert {safe_text(record['alert'])} from {safe_text(record.get('alert_sender'))})")
    line = "  ".join(parts)
    if colour and outcome in _COLOURS:
        line = _COLOURS[outcome] + line + _RESET
    if outcome == "failed" and record.get("hint"):
        line += "\n          hint: " + safe_text(record["hint"])
    return line


class TextWriter:
    def __init__(self, stream: IO[str], colour: bool) -> None:
        self.stream, self.colour = stream, colour

    def write(self, record: dict[str, Any]) -> None:
        self.stream.write(format_line(record, colour=self.colour) + "\n")

    def close(self) -> None:
        self.stream.flush()


class Tally:
    """What the final summary needs, in memory bounded by the vocabulary rather than by the number of
    connections: records reduced to (outcome, step, cause, warnings) with a count. Iterating yields one small
    record per connection again, which is what `write_summary` reads."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[Any, ...]] = Counter()
        self.total = 0

    def add(self, record: dict[str, Any]) -> None:
        self.counts[(record.get("outcome"), record.get("failed_step"), record.get("cause"),
                     tuple(record.get("warnings") or ()))] += 1
        self.total += 1

    def __len__(self) -> int:
        return self.total

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for (outcome, step, cause, warnings), n in self.counts.items():
            stub = {"outcome": outcome, "failed_step": step, "cause": cause, "warnings": list(warnings)}
            for _ in range(n):
                yield stub

    @property
    def failed(self) -> int:
        return sum(n for key, n in self.counts.items() if key[0] == "failed")


# --- the loop -------------------------------------------------------------------------------------------------

class _StopFlag:
    """SIGINT/SIGTERM set a flag and wake the select() through a pipe: the loop then stops between two packets,
    never inside the analyzer, so the final flush sees consistent state."""

    def __init__(self) -> None:
        self.stop = False
        self.reason = ""
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: the caller handles its own signals
                return

    def _handle(self, signum: int, _frame: Any) -> None:
        self.stop = True
        self.reason = signal.Signals(signum).name
        try:
            os.write(self._write, b"x")
        except OSError:
            pass

    def fileno(self) -> int:
        return self._read

    def close(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        os.close(self._read)
        os.close(self._write)


class LiveSession:
    """One run: frames in (to the optional pcapng file and the analyzer), records out as connections end."""

    def __init__(self, sniffer: Sniffer, writer: Any, out: IO[str], pcapng: PcapNgWriter | None, *,
                 capture_name: str, trust: Any, idle_timeout: float, count: int,
                 keep: Callable[[dict[str, Any]], bool], keylog: Any = None) -> None:
        self.sniffer, self.writer, self.out, self.pcapng = sniffer, writer, out, pcapng
        self.count, self.keep = count, keep
        stats = CaptureStats()
        self.analyzer = FlowAnalyzer(capture_name, trust=trust, idle_timeout=idle_timeout, keylog=keylog)
        # The reassembler's fast lane, as when reading a file: a segment of a connection past its handshake is
        # counted from its header fields, without a TcpPacket (the handler gives its time instead).
        self.decode = make_handlers(stats, FragmentReassembler(stats),
                                    counter=self.analyzer.reassembler)(sniffer.link_type)
        self.tally = Tally()
        self.frames = 0

    def emit(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            if self.keep(record):
                self.tally.add(record)
                try:
                    self.writer.write(record)
                except OSError as exc:
                    raise OutputLost("records") from exc

    def take(self, frames: Iterable[tuple[bytes, float]]) -> bool:
        """Feed frames; False once `--count` frames have been taken."""
        try:
            for data, ts in frames:
                self.frames += 1
                if self.pcapng is not None:
                    try:
                        self.pcapng.write(data, ts)
                    except OSError as exc:
                        raise OutputLost("capture") from exc
                packet = self.decode(data, 0, len(data), self.frames, ts)
                if packet.__class__ is float:  # counted in the fast lane: only its time is left to note
                    self.analyzer.last_ts = packet  # type: ignore[assignment]
                elif packet is not None:
                    self.emit(self.analyzer.feed(packet))
                if self.count and self.frames >= self.count:
                    return False
            return True
        finally:
            self._flush()  # once per batch: records show up promptly without a write per record

    def housekeeping(self) -> None:
        self.emit(self.analyzer.expire(time.time()))
        self._flush()
        if self.pcapng is not None:
            try:
                self.pcapng.flush()
            except OSError as exc:
                raise OutputLost("capture") from exc

    def _flush(self) -> None:
        try:
            self.out.flush()
        except OSError as exc:
            raise OutputLost("records") from exc

    def run(self, flag: _StopFlag, timeout: float | None) -> None:
        """Capture until a signal, the timeout or the count; raises CaptureLost if the socket fails, OutputLost
        if writing does."""
        deadline = time.monotonic() + timeout if timeout else None
        next_housekeeping = time.monotonic() + HOUSEKEEPING_S
        while not flag.stop:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                flag.reason = "timeout"
                break
            wait = next_housekeeping - now if deadline is None else min(next_housekeeping, deadline) - now
            readable, _, _ = select.select([self.sniffer, flag], [], [], max(0.0, wait))
            if self.sniffer in readable and not self.take(self.sniffer.available(MAX_BATCH)):
                flag.stop, flag.reason = True, "count"
                return
            if time.monotonic() >= next_housekeeping:
                self.housekeeping()
                next_housekeeping = time.monotonic() + HOUSEKEEPING_S
        # Frames the kernel queued before the stop are part of what was seen: take them, within a budget so that
        # a busy link cannot keep us from stopping.
        self.take(self.sniffer.available(DRAIN_LIMIT))

    def finish(self, writing: bool = True) -> int | None:
        """Stop sniffing, then report every connection still open: nothing seen is lost (unless not `writing`: an
        output failed). Returns kernel drops. Raises OutputLost if writing fails, after closing everything."""
        drops = self.sniffer.kernel_drops()
        self.sniffer.close()
        lost: OutputLost | None = None
        try:
            if writing:
                self.emit(self.analyzer.finish())
        except OutputLost as exc:
            lost = exc
        for which, close in (("records", self.writer.close), ("capture", getattr(self.pcapng, "close", None))):
            try:
                if close is not None:
                    close()
            except OSError as exc:
                if lost is None:
                    lost = OutputLost(which)
                    lost.__cause__ = exc
        if lost is not None and writing:
            raise lost
        return drops


def _open_outputs(args: argparse.Namespace, fmt: str, stdout: IO[str], link_type: int
                  ) -> tuple[Any, IO[str], IO[str] | None, PcapNgWriter | None]:
    """(record writer, its stream, the file to close, the pcapng writer); OSError if a file cannot be opened."""
    to_close: IO[str] | None = None
    try:
        if fmt == "text":
            out = stdout
            if args.output and args.output != "-":
                out = to_close = open(args.output, "w", encoding="utf-8")  # noqa: SIM115 - closed by the caller
            colour = out.isatty() and not getattr(args, "no_color", False) and "NO_COLOR" not in os.environ
            writer: Any = TextWriter(out, colour)
        else:
            writer, to_close = open_writer(fmt, args.output, stdout)
            out = to_close or stdout
        pcapng = PcapNgWriter(args.write, link_type, args.interface) if args.write else None
    except OSError:
        if to_close is not None:
            to_close.close()
        raise
    return writer, out, to_close, pcapng


def _open_sniffer(interface: str, bpf: str | None, stderr: IO[str]) -> Sniffer | int:
    """The sniffer, or the exit code after one line on standard error."""
    try:
        return Sniffer(interface, bpf)
    except CaptureDenied:
        stderr.write(NEEDS_PRIVILEGE.format(iface=safe_text(interface)) + "\n")
        return EXIT_UNREADABLE
    except ValueError as exc:
        stderr.write(f"tlsflow live: {safe_text(exc)}\n")
        return EXIT_USAGE
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            stderr.write(NEEDS_PRIVILEGE.format(iface=safe_text(interface)) + "\n")
        elif exc.errno == errno.ENODEV:
            stderr.write(f"tlsflow live: no such interface: {safe_text(interface)}\n")
        else:
            stderr.write(f"tlsflow live: cannot capture on {safe_text(interface)}: {exc.strerror or exc}\n")
        return EXIT_UNREADABLE


def _keylog(args: argparse.Namespace) -> Any:
    """The key log given with --keylog. Read once at start: a browser appending to it later is not followed."""
    path = getattr(args, "keylog", None)
    if not path:
        return None
    from tlsparse.keylog import KeyLog

    return KeyLog.from_file(path)


def run_live(args: argparse.Namespace, *, trust: Any = None,
             keep: Callable[[dict[str, Any]], bool] | None = None,
             stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> int:
    """Sniff `args.interface` until Ctrl-C/SIGTERM, `--count` packets or `--timeout` seconds; exit code as
    `analyze`: 0 no failed handshake, 1 failed handshakes reported, 2 usage error, 3 cannot capture."""
    stdout = stdout if stdout is not None else sys.stdout
    stderr = stderr if stderr is not None else sys.stderr
    fmt = args.format or "text"
    # (No --bpf: TCP and the tunnels the decoders read; an empty one: no filter.)
    sniffer = _open_sniffer(args.interface, TCP_AND_TUNNELS_BPF if args.bpf is None else args.bpf, stderr)
    if isinstance(sniffer, int):
        return sniffer
    try:
        writer, out, to_close, pcapng = _open_outputs(args, fmt, stdout, sniffer.link_type)
    except OSError as exc:
        sniffer.close()
        stderr.write(f"tlsflow live: {safe_text(exc)}\n")
        return EXIT_USAGE

    session = LiveSession(sniffer, writer, out, pcapng, capture_name=f"live:{args.interface}", trust=trust,
                          idle_timeout=args.idle_timeout if args.idle_timeout and args.idle_timeout > 0 else 60.0,
                          count=args.count or 0, keep=keep if keep is not None else (lambda _record: True),
                          keylog=_keylog(args))
    flag = _StopFlag()
    flag.install()
    if args.bpf is None:
        filter_text = " (TCP, and tunnels that carry it)"
    else:
        filter_text = f" (filter: {safe_text(args.bpf)})" if args.bpf else ""
    stderr.write(f"tlsflow live: capturing on {safe_text(args.interface)}{filter_text}; Ctrl-C to stop\n")
    stderr.flush()
    lost = False
    failed_output: OutputLost | None = None
    try:
        session.run(flag, args.timeout)
    except CaptureLost as exc:
        lost = True
        flag.reason = f"a capture error ({safe_text(exc)})"
    except OutputLost as exc:
        failed_output = exc
    finally:
        try:
            drops = session.finish(writing=failed_output is None)
        except OutputLost as exc:
            failed_output, drops = exc, None
        if failed_output is not None:
            flag.reason = "a write error"
        summary_stream = out if fmt == "text" and failed_output is None else stderr
        try:
            write_summary(session.tally, summary_stream, colour=getattr(writer, "colour", False))
            summary_stream.flush()
            if to_close is not None:
                to_close.close()
        except OSError as exc:  # (the text report's own summary, on a disk that has just filled up)
            if failed_output is None:
                failed_output = OutputLost("records")
                failed_output.__cause__ = exc
        if failed_output is not None:
            name = args.write if failed_output.which == "capture" else output_name(args.output)
            stderr.write(f"tlsflow live: cannot write {safe_text(name)}: {os_reason(failed_output.__cause__)}\n")
        stderr.write(f"tlsflow live: {session.frames} packet(s) captured"
                     + (f", {drops} dropped by the kernel" if drops else "")
                     + (f"; stopped by {flag.reason}" if flag.reason else "") + "\n")
        stderr.flush()
        flag.close()  # our handlers stay until here: a second SIGTERM must not cut the final flush short
    if failed_output is not None:
        return EXIT_USAGE
    if lost:
        return EXIT_UNREADABLE
    return EXIT_FAILURES if session.tally.failed else EXIT_OK
