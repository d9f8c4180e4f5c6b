"""Opening capture input as a byte stream: a path or "-" (standard input), gzip detected by magic, not by name.

The readers pull the stream in large chunks (`read_chunk`), so memory stays bounded by the chunk size plus the
largest record, whatever the size of the capture; `bytes_read` counts bytes taken from the underlying file
(compressed bytes for gzip input) so that it can be compared with `total_bytes` for a progress bar.
A regular uncompressed file is read through windows mapped from it (`_MappedReader`) rather than copied into
fresh bytes by read(): the walkers read records in place either way. A gzipped file is decompressed by a child
process (`_GunzipChild`) while this one analyses: on a second core the decompression no longer adds to the time.
"""
from __future__ import annotations

import gzip
import mmap
import os
import stat
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import BinaryIO

from .errors import CaptureError, NotACaptureError

GZIP_MAGIC = b"\x1f\x8b"
# Compressions we recognise only to say so: a bare "not a capture" would leave the user guessing.
OTHER_COMPRESSIONS = {
    b"\x28\xb5\x2f\xfd": "zstd",
    b"\x04\x22\x4d\x18": "lz4",
    b"BZh": "bzip2",
    b"\xfd7zXZ": "xz",
}
# The most bytes a chunk holds when they are copied (read1 from a file, a pipe or gzip): the walkers ask for more
# (pcap.CHUNK_SIZE) and take what the source gives.
READ_SIZE = 1 << 20
# The most bytes of a regular uncompressed file mapped at a time (_MappedReader); 0: such files are read with
# read1 like the others. The window's pages count in the peak memory (RSS) while it is mapped: 4 MiB, +1.8 MB
# (1 GB and 4 GB pcap) for the system time of 8 MiB (+6 MB); 1 MiB windows cost ~0.01 s more per GB.
MAP_WINDOW = 4 << 20


# The child that decompresses a gzipped file (`_GunzipChild`): this module's own reading of it (CaptureSource,
# decompressing in-process), its bytes past the first `skip` (read here already) sent in frames of (kind, compressed
# bytes read by then, length) + data. Kinds: 0 data, 1 the end, 2 cut short, 3 damaged (the data is the message).
_GUNZIP_CHILD = r"""
import sys
sys.path.insert(0, sys.argv[1])
from tlsflow.capture.source import _GUNZIP_FRAME, READ_SIZE, CaptureSource, SourceReadError
path, skip = sys.argv[2], int(sys.argv[3])
out = sys.stdout.buffer
source = CaptureSource(path, decompress_apart=False)
skip -= len(source.head)
def send(kind, data):
    out.write(_GUNZIP_FRAME.pack(kind, source.bytes_read, len(data)))
    out.write(data)
try:
    while True:
        try:
            chunk = source.read_chunk(READ_SIZE)
        except SourceReadError as exc:
            send(2 if exc.truncated else 3, str(exc).encode(errors="replace"))
            break
        if skip:
            cut = min(skip, len(chunk))
            chunk, skip = chunk[cut:], skip - cut
            if not chunk and cut:
                continue
        if not chunk:
            send(1, b"")
            break
        send(0, chunk)
    out.flush()
except (BrokenPipeError, KeyboardInterrupt):
    pass
"""
_GUNZIP_FRAME = struct.Struct("<BQI")
# Where the child imports this package from: the parent may have found it on a path the child would not search.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class _GunzipChild:
    """`read` of a gzipped file's decompressed bytes, decompressed by a child process (`_GUNZIP_CHILD`) and handed
    over a pipe. Why a process: zlib inflating in a thread of this one barely overlapped the analysis (measured:
    a thread decompressing 4 MiB blocks beside a pure-Python loop, 0.94 + 0.77 s alone, took 1.39 s together),
    while the gzipped 200 MB bench capture spent ~1 s decompressing before ~1.1 s of analysis. `count` is the
    compressed bytes the child had read by the last chunk handed out (the progress bar's); a damaged or cut stream
    raises the SourceReadError that reading it here would, after every byte before the damage, and again at each
    later read."""

    def __init__(self, path: str, skip: int, count: int) -> None:
        self._proc = subprocess.Popen([sys.executable, "-c", _GUNZIP_CHILD, _PACKAGE_ROOT, path, str(skip)],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._pipe = self._proc.stdout
        self.count = count
        self._left = b""  # the rest of a chunk longer than what was asked for
        self._error: SourceReadError | None = None
        self._ended = False

    def _exactly(self, size: int) -> bytes:
        data = self._pipe.read(size) if size else b""  # type: ignore[union-attr]
        if len(data) != size:
            raise SourceReadError("the decompressing process ended early", truncated=False)
        return data

    def read(self, size: int) -> bytes:
        if self._left:
            data, self._left = self._left[:size], self._left[size:]
            return data
        if self._error is not None:
            raise self._error
        if self._ended:
            return b""
        try:
            kind, count, length = _GUNZIP_FRAME.unpack(self._exactly(_GUNZIP_FRAME.size))
            data = self._exactly(length)
        except SourceReadError as exc:
            self._error = exc
            raise
        self.count = count
        if kind == 0:
            if len(data) > size:
                data, self._left = data[:size], data[size:]
            return data
        if kind == 1:
            self._ended = True
            return b""
        self._error = SourceReadError(data.decode(errors="replace"), truncated=kind == 2)
        raise self._error

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._pipe.close()  # type: ignore[union-attr]
        self._proc.wait()


class SourceReadError(Exception):
    """The compressed stream is damaged; the format reader turns this into a CaptureError with offset and frame."""

    def __init__(self, message: str, truncated: bool) -> None:
        super().__init__(message)
        self.truncated = truncated


class _CountingReader:
    """Read-only file wrapper that counts bytes taken from `raw` and first replays bytes already peeked."""

    __slots__ = ("_prefix", "_raw", "count", "mode", "name")

    def __init__(self, raw: BinaryIO, prefix: bytes, already_counted: int) -> None:
        self._raw = raw
        self._prefix = prefix
        self.count = already_counted
        self.name = ""  # gzip looks at .name and .mode
        self.mode = "rb"

    def read(self, size: int = -1) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            if size is None or size < 0:
                rest = self._raw.read()
                self.count += len(rest)
                return data + rest
            if len(data) > size:
                data, self._prefix = data[:size], data[size:]
            return data
        data = self._raw.read(size)
        self.count += len(data)
        return data

    def read1(self, size: int = -1) -> bytes:
        if size < 0 or size > READ_SIZE:
            size = READ_SIZE
        if self._prefix:
            return self.read(size)
        reader = getattr(self._raw, "read1", self._raw.read)
        data = reader(size)
        self.count += len(data)
        return data


class _MappedReader:
    """`read1` of a regular file as read-only windows mapped from it (mmap objects, used by the walkers as bytes:
    unpack_from, indexing, slices that are bytes), so that the kernel copies nothing into fresh memory (1 GB pcap,
    a whole run: 0.26-0.38 s of system time with read1 of 1 MiB, 0.11-0.15 s in windows of 4 MiB).

    A window starts at a multiple of mmap.ALLOCATIONGRANULARITY (mmap's rule): from anywhere else (after the file
    header, a `--jobs` range starting at a record) the bytes up to the next boundary are read plainly first. A
    window ends where the file ends at that moment (fstat), so that a file still being written reads to its
    current end as read() would; at that end a plain read says whether there is more (a file whose size fstat
    does not tell, as in /proc) or not. If the file cannot be mapped, it is read plainly (pread) from then on.
    A window is unmapped when the walker lets it go. (A file truncated while one of its windows is mapped would
    kill the process with SIGBUS at the next access of a page past the new end; capture files are appended to,
    not truncated.)"""

    __slots__ = ("_fileno", "_mapping", "count")

    def __init__(self, fileno: int, position: int) -> None:
        self._fileno = fileno
        self.count = position  # the file offset of the next byte; also bytes_read, as if all before was read
        self._mapping = True

    def read1(self, size: int = -1) -> bytes:
        position = self.count
        granularity = mmap.ALLOCATIONGRANULARITY
        if size < 0:
            size = READ_SIZE
        if self._mapping:
            window = min(size, MAP_WINDOW)
            window -= window % granularity
            if window and not position % granularity:
                try:
                    length = min(window, os.fstat(self._fileno).st_size - position)
                    if length > 0:
                        mapped = map_window(self._fileno, length, position)
                        self.count = position + length
                        return mapped  # type: ignore[return-value]
                except (OSError, ValueError):
                    self._mapping = False
            elif position % granularity:
                size = min(size, granularity - position % granularity)
        data = os.pread(self._fileno, min(size, READ_SIZE), position)
        self.count = position + len(data)
        return data


def map_window(fileno: int, length: int, offset: int) -> mmap.mmap:
    """A read-only window of the file (here and for split's hop). Linux: its pages are entered at once
    (MAP_POPULATE) rather than one fault at a time as the reader reaches them (1 GB pcap, hop to the middle:
    0.15-0.17 s of CPU instead of 0.16-0.19, four runs each)."""
    populate = getattr(mmap, "MAP_POPULATE", 0)
    if populate:
        return mmap.mmap(fileno, length, flags=mmap.MAP_SHARED | populate, prot=mmap.PROT_READ, offset=offset)
    return mmap.mmap(fileno, length, offset=offset, access=mmap.ACCESS_READ)


class CaptureSource:
    """An open capture input: `head` is the first decompressed bytes (at least 4 unless the input is shorter)."""

    def __init__(self, path: str | os.PathLike[str], *, decompress_apart: bool = True) -> None:
        self.name = str(path)
        self.compressed = False
        self.total_bytes: int | None = None
        self._owned: BinaryIO | None = None
        if self.name == "-":
            if sys.stdin is None or not hasattr(sys.stdin, "buffer"):
                raise NotACaptureError("cannot read standard input: there is none", source=self.name)
            raw: BinaryIO = sys.stdin.buffer
        else:
            try:
                raw = self._owned = open(Path(path), "rb")  # noqa: SIM115 - closed by close()
            except OSError as exc:
                raise NotACaptureError(f"cannot open: {exc.strerror or exc}", source=self.name) from exc
        try:
            info = os.fstat(raw.fileno())
            if stat.S_ISREG(info.st_mode):
                self.total_bytes = info.st_size
        except (OSError, ValueError, AttributeError):
            pass
        try:
            magic = _read_exactly(raw, 4)
        except OSError as exc:
            self.close()
            raise NotACaptureError(f"cannot read: {exc.strerror or exc}", source=self.name) from exc
        self._counter: _CountingReader | _MappedReader = _CountingReader(raw, magic, len(magic))
        self._stream: object = self._counter
        self._child: _GunzipChild | None = None
        self._decompressed = 0  # gzip: decompressed bytes read here (before the child takes over)
        if magic[:2] == GZIP_MAGIC:
            self.compressed = True
            self._stream = gzip.GzipFile(fileobj=self._counter, mode="rb")  # type: ignore[arg-type]
        elif self.seekable and MAP_WINDOW and hasattr(os, "pread"):
            # Reads the file from its start again, magic included (pread: the buffered file's position is moot).
            self._counter = self._stream = _MappedReader(raw.fileno(), 0)
        self.read_chunk = self._read_chunk_gzip if self.compressed else self._counter.read1
        try:
            self.head = self._read_head(4)
        except SourceReadError as exc:
            self.close()
            raise NotACaptureError(f"not a readable gzip file: {exc}", 0, source=self.name) from exc
        for prefix, what in OTHER_COMPRESSIONS.items():
            if magic.startswith(prefix):
                self.close()
                raise NotACaptureError(f"{what}-compressed input is not supported (decompress it, or use gzip)",
                                       source=self.name)
        if self.compressed and self._owned is not None and decompress_apart:
            self.read_chunk = self._read_chunk_child  # (standard input cannot be read again by a child)

    def _read_chunk_child(self, size: int) -> bytes:
        """The walkers' reads of a gzipped file: from the decompressing child, started by the first one (not by
        opening: `--jobs` reads the headers of a capture it does not go on to read)."""
        if self._child is None:
            try:
                self._child = _GunzipChild(self.name, self._decompressed, self._counter.count)
            except OSError:  # no child process here: decompress in this one
                self.read_chunk = self._read_chunk_gzip
                return self._read_chunk_gzip(size)
        return self._child.read(size)

    def _read_head(self, size: int) -> bytes:
        # (fixed-size headers: read here until the walker's reading has started the child)
        read = (self._child.read if self._child is not None else
                self._read_chunk_gzip if self.compressed else self.read_chunk)
        head = b""
        while len(head) < size:
            chunk = read(size - len(head))
            if not chunk:
                break
            head += chunk
        return head

    def read_exactly(self, size: int) -> bytes:
        """Up to `size` bytes (fewer only at the end of input); used for fixed-size file headers."""
        return self._read_head(size)

    def _read_chunk_gzip(self, size: int) -> bytes:
        # read1: a damaged tail must not swallow the good data decompressed just before it.
        try:
            data = self._stream.read1(min(size, READ_SIZE))  # type: ignore[attr-defined]
            self._decompressed += len(data)
            return data  # type: ignore[no-any-return]
        except EOFError as exc:
            raise SourceReadError("gzip data ends before its end-of-stream marker", truncated=True) from exc
        except (gzip.BadGzipFile, zlib.error, OSError) as exc:
            raise SourceReadError(f"damaged gzip data: {exc}", truncated=False) from exc

    @property
    def bytes_read(self) -> int:
        return self._child.count if self._child is not None else self._counter.count

    @property
    def seekable(self) -> bool:
        """A regular uncompressed file: reading can start anywhere (`seek`)."""
        return self._owned is not None and not self.compressed and self.total_bytes is not None

    def seek(self, offset: int) -> None:
        """Continue reading at byte `offset` of the file (only when `seekable`): `--jobs` byte ranges of one pcap
        file (tlsflow.parallel). `bytes_read` then counts from the start of the file, as if all before was read."""
        if not self.seekable:
            raise ValueError(f"{self.name}: only a regular uncompressed file can be read from an offset")
        if MAP_WINDOW and hasattr(os, "pread"):
            self._counter = _MappedReader(self._owned.fileno(), offset)  # type: ignore[union-attr]
        else:
            self._owned.seek(offset)  # type: ignore[union-attr]
            self._counter = _CountingReader(self._owned, b"", offset)  # type: ignore[arg-type]
        self._stream = self._counter
        self.read_chunk = self._counter.read1

    def close(self) -> None:
        child = getattr(self, "_child", None)
        if child is not None:
            child.close()
            self._child = None
        stream = getattr(self, "_stream", None)
        if isinstance(stream, gzip.GzipFile):
            stream.close()
        if self._owned is not None:
            self._owned.close()
            self._owned = None


def _read_exactly(raw: BinaryIO, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = raw.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


__all__ = ["CaptureError", "CaptureSource", "SourceReadError"]
