"""One capture in several files (tcpdump -C or -G, dumpcap's ring buffer, editcap -c): `tlsflow analyze --series`.

A sensor that rotates its capture file cuts every connection open at that moment in two. Read file by file, each
half is a connection of its own: the first ends "incomplete" with the file, the second begins in the middle of a
stream, and a handshake that straddles the cut is lost (a 52 MB capture cut in three: 1,250 records for 1,154
connections, 101 of them false "incomplete"). Read as a series, the files go through one reassembler and one
parser, one after the other, as if they were one file: one record per connection.

What a record says about where it is (the contract: `capture`, `flow_id`, `first_frame`, frame numbers in
`evidence`): `capture` is the file that holds the connection's first packet, `flow_id` counts the connections that
begin in that file, and frame numbers count from that file's first frame, on into the files after it, as
Wireshark numbers the frames of those files joined end to end (`mergecap -a`). A connection that lies in one file
gets exactly the numbers of a run on that file alone.

Order: the files are read in the order of their first packet's time (a glob sorts `x10.pcap` before `x2.pcap`);
files that cannot be read, or hold no packet, keep their place ahead of the others.

Sensors: the files of each folder are one series (`group_by_folder`; dated folders below a sensor's are its own:
`sensor_folder`), as a sensor writes its rotated files into a folder of its own: `tlsflow analyze --series
'sensors/*/*.pcap'` reads each sensor's files as one capture, and with `--jobs` several sensors at once (one process
per series, tlsflow.parallel_files), or one sensor's files in runs (tlsflow.parallel_series).
"""
from __future__ import annotations

import bisect
import os
import re
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from tlsflow.capture import CaptureError, open_capture
from tlsflow.capture.errors import about, damage_message
from tlsflow.pipeline import FlowAnalyzer, RunCaches, feed_capture

Progress = Callable[[int, int | None], None]

# A file that begins this much before the one before it ends is not the next piece of the same capture.
OVERLAP_TOLERANCE = 1.0  # seconds

# "frame 7", "frames 12, 15, 19": the numbers that evidence texts give (analyzers.verdict writes no other form).
_FRAMES = re.compile(r"\b(frames?) (\d+(?:, \d+)*)")


def first_timestamp(path: str) -> float | None:
    """The time of the file's first packet; None for a file without one, or that cannot be read, and for standard
    input (read once only: it is read with the others, in its place)."""
    if path == "-":
        return None
    try:
        with open_capture(path, decompress_apart=False) as cap:
            for frame in cap.frames():
                return frame.ts
    except (CaptureError, OSError):
        pass
    return None


def in_capture_order(paths: list[str]) -> list[str]:
    """The files by their first packet's time (ties and files without a time keep their given order, the latter
    first: their errors or emptiness come out before any record)."""
    return [path for path, _begins in _timed_order(paths)]


def _timed_order(paths: list[str]) -> list[tuple[str, float | None]]:
    """`in_capture_order`, each file with its first packet's time (read once per file)."""
    timed = [(path, first_timestamp(path)) for path in paths]
    order = sorted(range(len(timed)), key=lambda i: (timed[i][1] is not None, timed[i][1] or 0.0, i))
    return [timed[i] for i in order]


def group_by_folder(paths: list[str]) -> list[list[str]]:
    """The files by the folder they are in (`sensor_folder`: dated folders below a sensor's are its own), folders
    in the order of their first file given (standard input: a series of its own)."""
    groups: dict[str, list[str]] = {}
    for path in dict.fromkeys(paths):  # (a file given twice is read once: its packets twice would be copies)
        folder = "-" if path == "-" else sensor_folder(os.path.dirname(os.path.abspath(path)))
        groups.setdefault(folder, []).append(path)
    return list(groups.values())


# A folder named for a date, with an hour perhaps: what tcpdump -G writes with a strftime path such as
# sensor1/%Y-%m-%d/cap-%H%M.pcap, or %Y%m%d, or %Y-%m-%d_%H.
_DATE_FOLDER = re.compile(r"(?:19|20)\d\d([-_.]?)(?:0[1-9]|1[0-2])\1(?:0[1-9]|[12]\d|3[01])(?:[-_T.]?[0-2]\d)?")
_YEAR, _MONTH = re.compile(r"(?:19|20)\d\d"), re.compile(r"0[1-9]|1[0-2]")
_DAY, _HOUR = re.compile(r"0[1-9]|[12]\d|3[01]"), re.compile(r"[01]\d|2[0-3]")


def sensor_folder(folder: str) -> str:
    """The folder of the sensor whose file is in `folder`: `folder` without the dated folders at its end
    (sensor1/2026-11-28, sensor1/20261128, sensor1/2026/11/28, with an hour's folder below them perhaps), so that a
    sensor that writes a folder a day (or an hour) is one series, and its connections open at midnight are not cut.
    Folders with other names are sensors of their own (sensors/1 and sensors/2 stay two)."""
    parts = folder.split(os.sep)
    while len(parts) > 1:
        last = parts[-1]
        if _DATE_FOLDER.fullmatch(last):
            parts.pop()
        elif _nested_date(parts[-3:]):
            del parts[-3:]  # year/month/day
        elif _nested_date(parts[-4:-1]) and _HOUR.fullmatch(last):
            del parts[-4:]  # year/month/day/hour
        else:
            break
    return os.sep.join(parts) or os.sep


def _nested_date(parts: list[str]) -> bool:
    return (len(parts) == 3 and bool(_YEAR.fullmatch(parts[0])) and bool(_MONTH.fullmatch(parts[1]))
            and bool(_DAY.fullmatch(parts[2])))


def series_units(paths: list[str]) -> list[tuple[str, ...]]:
    """Each folder's files as a series (`iter_series` reads them in capture order)."""
    return [tuple(group) for group in group_by_folder(paths)]


def series_progress(paths: tuple[str, ...] | list[str], progress: Progress) -> Callable[[str], Progress]:
    """A progress factory for `iter_series` that reports to `progress` the bytes of the whole series: those of
    the files read before, plus how far the current one is, out of all their sizes (None when one is unknown)."""
    sizes: dict[str, int | None] = {}
    for path in paths:
        try:
            sizes[path] = os.path.getsize(path) if path != "-" else None
        except OSError:
            sizes[path] = 0
    total = None if any(v is None for v in sizes.values()) else sum(v or 0 for v in sizes.values())
    done_before = 0

    def factory(path: str) -> Progress:
        nonlocal done_before
        base = done_before
        done_before += sizes.get(path) or 0

        def report(read: int, _size: int | None) -> None:
            progress(base + read, total)

        return report

    return factory


def renumber(text: str, base: int) -> str:
    """The frame numbers of an evidence text, less `base` (the frames of the files before the one they count
    from)."""
    def shift(match: re.Match[str]) -> str:
        numbers = ", ".join(str(int(n) - base) for n in match.group(2).split(", "))
        return f"{match.group(1)} {numbers}"

    return _FRAMES.sub(shift, text)


class Pieces:
    """Where each file of a series starts: its first frame and its first flow, in the series' own numbering (the
    reader's and the reassembler's, which count on from file to file). `place` gives a record the numbers of the
    file its connection began in."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.frame_bases: list[int] = []  # frames before each file
        self.flow_bases: list[int] = []  # connections opened before each file
        self.flows: list[int] = []  # records placed in each file

    def begin(self, name: str, frames_before: int, flows_before: int) -> None:
        self.names.append(name)
        self.frame_bases.append(frames_before)
        self.flow_bases.append(flows_before)
        self.flows.append(0)

    def place(self, record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        index = bisect.bisect_left(self.frame_bases, record["first_frame"]) - 1
        name = self.names[index]
        self.flows[index] += 1
        record["capture"] = name
        frame_base = self.frame_bases[index]
        if frame_base:
            record["first_frame"] -= frame_base
            evidence = record.get("evidence")
            if evidence:
                record["evidence"] = [renumber(text, frame_base) for text in evidence]
        record["flow_id"] -= self.flow_bases[index]
        return name, record


def iter_series(paths: list[str], *, trust: Any = None, keylog: Any = None, caches: RunCaches | None = None,
                progress_factory: Callable[[str], Progress] | None = None, analyzer: FlowAnalyzer | None = None,
                on_begin: Callable[[str, int], None] | None = None) -> Iterator[tuple[str, dict[str, Any] | str]]:
    """(capture, record) for every connection of the files read as one capture, in capture order (see
    `in_capture_order`); (capture, message) for a file that cannot be read, or whose reading stopped at damage
    (the series goes on with the next file: what the damage cut off is lost, as a sensor's lost packets are).
    `analyzer`: the FlowAnalyzer to read them with (`trust`, `keylog` and `caches` are then its own: explain's,
    which keeps one connection's events); `on_begin(path, frames before it)`: called as each file begins."""
    timed = _timed_order(paths)
    if analyzer is None:
        caches = caches if caches is not None else RunCaches(trust)
        analyzer = FlowAnalyzer(timed[0][0] if timed else "", trust=trust, keylog=keylog, caches=caches)
    pieces = Pieces()
    frames = 0
    for path, begins in timed:
        progress = progress_factory(path) if progress_factory is not None else None
        frames = yield from read_piece(path, begins, analyzer, pieces, frames, progress, on_begin)
    for record in analyzer.finish():
        yield pieces.place(record)


def read_piece(path: str, begins: float | None, analyzer: FlowAnalyzer, pieces: Pieces, frames: int,
               progress: Progress | None = None, on_begin: Callable[[str, int], None] | None = None,
               on_damage: Callable[[str, str], None] | None = None) -> Iterator[tuple[str, dict[str, Any] | str]]:
    """One file of a series (its first packet at `begins`) read into `analyzer`, after `frames` frames of the files
    before it: what `iter_series` yields for it (the records of the connections that end meanwhile, a message for
    a file that cannot be read or is damaged). Returns the series' frames after it. `on_damage(path, error)`:
    called for damage instead of the message (whose count of connections before it the caller then makes)."""
    try:
        cap = open_capture(path)
    except OSError as exc:
        yield path, f"{path}: {exc.strerror or exc}"
        return frames
    except CaptureError as exc:
        yield path, about(path, str(exc))
        return frames
    damage: list[CaptureError] = []
    with cap:
        if pieces.names:
            _check_follows(pieces.names[-1], analyzer.last_ts, path, begins)
        cap.number_from(frames)
        pieces.begin(path, frames, analyzer.reassembler.flows_opened)
        if on_begin is not None:
            on_begin(path, frames)
        for record in feed_capture(analyzer, cap, damage, progress):
            yield pieces.place(record)
        frames = cap.stats.frames
        if progress is not None:
            progress(cap.bytes_read, cap.total_bytes)
            if hasattr(progress, "clear"):
                progress.clear()
    if damage:
        error = damage[0]
        if error.frame:
            error.frame -= pieces.frame_bases[-1]  # (the file's own frame number, as a user looks it up)
        if on_damage is not None:
            on_damage(path, str(error))
        else:
            yield path, damage_message(path, str(error), pieces.flows[-1])
    return frames


def _check_follows(previous: str, previous_end: float | None, path: str, begins: float | None) -> None:
    """Warn when `path` begins (its first packet at `begins`) well before the file read before it ends: the files
    overlap in time (two sensors' files, or the same traffic captured twice), and read as one capture their packets
    would go back in time."""
    if begins is not None and previous_end is not None and begins < previous_end - OVERLAP_TOLERANCE:
        warnings.warn(f"tlsflow: --series: {path} begins {previous_end - begins:.1f} s before {previous} ends: "
                      "these files overlap in time and are not one capture in pieces (give each sensor's files as a "
                      "series of their own)", stacklevel=2)
