"""The one exception type of the capture layer: what is wrong with the input, where, and at which frame.

Every error names the byte offset (in the uncompressed capture stream) and the frame number at which reading
stopped, so a user can open the file in a hex editor or Wireshark and look; `str()` is one line for the CLI.
"""
from __future__ import annotations


class CaptureError(Exception):
    """Unreadable or malformed capture input.

    `offset` is the byte offset in the (decompressed) capture stream of the record or block that could not be read;
    `frame` is the 1-based number that frame would have had (every frame before it was delivered).
    """

    def __init__(self, message: str, offset: int | None = None, frame: int | None = None,
                 *, source: str | None = None) -> None:
        super().__init__(message, offset, frame)
        self.message = message
        self.offset = offset
        self.frame = frame
        self.source = source  # file name ("-" for stdin), filled in by the reader
        self.compressed = False  # offsets of a gzip input count decompressed bytes: said in str()

    def __str__(self) -> str:
        where = []
        if self.offset is not None:
            where.append(f"at byte offset {self.offset}" + (" of the decompressed data" if self.compressed else ""))
        if self.frame:
            where.append(f"frame {self.frame}")
        text = self.message + (f" ({', '.join(where)})" if where else "")
        return f"{self.source}: {text}" if self.source else text


class NotACaptureError(CaptureError):
    """The input is neither pcap nor pcapng (nor a gzip-compressed one of them), or cannot be opened."""


class TruncatedCaptureError(CaptureError):
    """The input ends in the middle of a record or block (an interrupted capture, a partial download)."""


class CorruptCaptureError(CaptureError):
    """A record or block is inconsistent (impossible length, unknown interface, bad byte-order magic, ...)."""


def about(path: str, text: str) -> str:
    """`text` as one line about the capture at `path`: prefixed with its name, unless the text starts with it
    already (a CaptureError's text names its file once the reader knew it: "x.pcap: x.pcap: ..." otherwise)."""
    return text if text.startswith(f"{path}: ") else f"{path}: {text}"


def damage_message(path: str, error: str, flows: int) -> str:
    """The line about a capture whose reading stopped at damage (`error`) after `flows` connections were reported:
    the same words whichever way it was read (one process, --jobs, Dask)."""
    return about(path, f"{error} ({flows} connection(s) before the damage were reported)")
