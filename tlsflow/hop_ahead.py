"""The `--jobs` cuts of one capture file, found by a child process while the command line is still starting up.

`tlsflow analyze --jobs N big.pcap` spends its first ~0.2 s importing the analysis, on one core while the others
are idle; then worker 0 starts and the parent hops over the record headers to the cuts (`capture.split`, ~0.2 s of
CPU to the middle of a 1 GB file), and worker k starts only once cut k is found. The command line starts the hop
first thing instead (`start`), in a child process on an idle core: by the time the analysis is imported, the cuts
are known and every worker starts at once. `parallel_ranges.analyze_ranges` takes the hop (`take`) when it is for
the same file and number of jobs, and asks it for the cuts as it would ask its own hop.

Only the standard library is imported here: the child imports the hop itself. Where fork is not available, or when
the child fails, the parent hops itself (the same cuts, later).
"""
from __future__ import annotations

import os
import signal
import struct
import sys
from typing import Any, NoReturn, Self

# One cut in the pipe: the target it is for, byte offset, frames before it, length of the pcapng preamble that
# follows (or _NO_CUT: no cut at or after the target, the end of the file or damage came first).
_CUT = struct.Struct("<qqqq")
_NO_CUT = -1

# The last range is twice this longer than each other one (two jobs: the first is this many bytes shorter than an
# equal share, the second as much longer), so that every other worker ends a little first: it goes on past its
# cut while its connections close (the lingering ones: ~5 s of capture time, read cheaply), and the parent can
# number the last worker's records only once every earlier worker has ended. Measured with the workers starting
# together (1 GB bench capture, --jobs 2, three runs each): 20 MB held back, the last worker ended 0.19 s after
# the first on average; 5 MB, 0.04 s before it; the gap grows by ~0.015 s per MB, and ~0.05 s is what the parent
# needs to give the last worker's waiting records: 12 MB. What a worker does past its cut does not grow with the
# file nor with the number of jobs, so neither does this (a small file: a quarter of a share at most). (Until the
# nineteenth session every range was this much shorter than an equal share, so that the last one was longer by
# as many times this as there are jobs: with 8 jobs on 1 GB, 213 MB against 113 MB for each other one; with 24,
# 282 MB against 31 MB, and the last worker took several times as long as the others.)
RANGE_RESERVE_BYTES = 12 << 20

# How far before its cut a range worker looks for the connections in flight there (parallel_ranges.
# flows_in_window): its segments of those connections belong to an earlier worker's, which follows them to their
# end, so it keeps them cheap. First the near window: enough where connections send densely (the bench capture,
# 48 at once: ~240 of them in 8 MB). On a busy link the packets of one connection lie far apart (20,000 at once:
# ~18 MB of capture between two of one connection's): when the near window holds many connections, the worker
# looks back as far as the far window too. The scan costs ~2.5 ms a MB.
IN_FLIGHT_NEAR_BYTES = 8 << 20
IN_FLIGHT_FAR_BYTES = 64 << 20

_started: dict[tuple[str, int], HopAhead] = {}


def hop_targets(size: int, jobs: int) -> list[int]:
    """What the child hops to, in order, as analyze_ranges asks for them: each cut's windows, then the cut."""
    return [target for cut_target in equal_cut_targets(size, jobs)
            for target in (*window_targets(cut_target), cut_target)]


def window_targets(cut_target: int) -> tuple[int, int]:
    """Where the far and the near windows of a range that starts at `cut_target` start (the hop goes to each
    before the cut)."""
    return max(0, cut_target - IN_FLIGHT_FAR_BYTES), max(0, cut_target - IN_FLIGHT_NEAR_BYTES)


def equal_cut_targets(size: int, jobs: int) -> list[int]:
    """Byte offsets to cut a file of `size` bytes at for `jobs` workers that start together: equal ranges, the
    last one twice RANGE_RESERVE_BYTES longer."""
    reserve = min(RANGE_RESERVE_BYTES, size // (4 * jobs))
    return [max(0, (size - 2 * reserve) * k // jobs) for k in range(1, jobs)]


def start(path: str, jobs: int) -> None:
    """Start hopping to the cuts that `analyze --jobs <jobs>` makes in the file at `path` (`equal_cut_targets`).
    Anything but a file on disk is left alone; a capture that cannot be cut (gzip) ends the child at once, and the
    parent then never asks."""
    if jobs < 2 or not hasattr(os, "fork") or not os.path.isfile(path) or (path, jobs) in _started:
        return
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return  # a forked child could inherit a lock another thread holds (as parallel.start_method)
    _started[(path, jobs)] = HopAhead(path, jobs)


def take(path: str, jobs: int) -> HopAhead | None:
    """The hop started for `path` and `jobs`, if any (the caller closes it)."""
    return _started.pop((path, jobs), None)


def close_all() -> None:
    """Stop the hops nobody took (the capture turned out not to be cut, or the command failed first)."""
    while _started:
        _started.popitem()[1].close()


class HopAhead:
    """A hop (as `capture.split.open_hop` gives: `to(target)`, a context manager that closes it) whose cuts a
    child process finds, for targets `hop_targets(size, jobs)` in order. A `to` for another
    target, or a child that failed, makes the parent hop itself from the start of the file."""

    def __init__(self, path: str, jobs: int) -> None:
        self.path = path
        self._fallback: Any = None
        self._ended = False  # the child said: no more cuts
        read, write = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child
            os.close(read)
            _hop_and_exit(path, jobs, write)
        os.close(write)
        self._pipe = os.fdopen(read, "rb")

    def to(self, target: int) -> Any:
        """The first record (pcap) or block (pcapng) at or after byte `target`, as `split.Cut`, or None."""
        if self._fallback is not None:
            return self._fallback.to(target)
        if self._ended:
            return None
        head = self._pipe.read(_CUT.size)
        if len(head) == _CUT.size:
            for_target, offset, frames_before, preamble_length = _CUT.unpack(head)
            if for_target == target:
                if preamble_length == _NO_CUT:
                    self._ended = True
                    return None
                preamble = self._pipe.read(preamble_length)
                if len(preamble) == preamble_length:
                    from tlsflow.capture.split import Cut

                    return Cut(offset, frames_before, preamble)
        # The child failed (or was asked for other cuts): hop here, from the start.
        from tlsflow.capture.split import open_hop

        self._stop_child()
        self._fallback = open_hop(self.path)
        return self._fallback.to(target)

    def close(self) -> None:
        self._stop_child()
        if self._fallback is not None:
            self._fallback.close()
            self._fallback = None

    def _stop_child(self) -> None:
        if self.pid:
            self._pipe.close()
            try:
                if os.waitpid(self.pid, os.WNOHANG) == (0, 0):  # still hopping: no one will read its cuts
                    os.kill(self.pid, signal.SIGKILL)
                    os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.pid = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _hop_and_exit(path: str, jobs: int, fd: int) -> NoReturn:
    """The child: each cut as soon as it is found, then exit without running anything of the parent's (no
    atexit handlers, no buffers flushed twice)."""
    try:
        with os.fdopen(fd, "wb") as out:
            from tlsflow.capture.split import open_hop

            with open_hop(path) as hop:
                for target in hop_targets(os.path.getsize(path), jobs):
                    cut = hop.to(target)
                    if cut is None:
                        out.write(_CUT.pack(target, 0, 0, _NO_CUT))
                        break
                    out.write(_CUT.pack(target, cut.offset, cut.frames_before, len(cut.preamble)) + cut.preamble)
                    out.flush()
    except BaseException:  # noqa: BLE001, S110 - the parent sees the pipe end early and hops itself
        pass
    finally:
        os._exit(0)
