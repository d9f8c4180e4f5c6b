"""Coverage-guided fuzzing (atheris, libFuzzer) of what reads hostile bytes: the TLS parser and the whole capture path.

    pip install atheris
    python tools/fuzz.py tls  [libFuzzer options] [corpus folder ...]
    python tools/fuzz.py pcap [libFuzzer options] [corpus folder ...]

`tls`: the input is a run of chunks (a control byte, a 2-byte length, the bytes): each chunk goes to one direction
of a `TlsConnection`, whole, cut in two, or as a gap of lost bytes. Nothing may raise, no `internal_error` anomaly
(the parser's last line of defence: a bug it caught) may come out, and the buffers stay within their caps.
`tls-seeds FOLDER` writes the real sessions of `bench/real_streams.json` in that form, as a starting corpus.
`pcap`: the input is a capture file, read through `iter_flow_records`: records in the contract's field order, and
a `CaptureError` at worst. The corpus captures (`captures/corpus/*.pcap`) make a starting corpus.

Why here and not in the test suite: a run is minutes to hours of CPU. The property tests (hypothesis) keep the
quick version of the same rules in every test run (tests/tlsparse/test_properties.py).
"""
from __future__ import annotations

import base64
import json
import os
import struct
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def chunks(data: bytes):  # type: ignore[no-untyped-def]
    """(control byte, bytes) of each chunk of a `tls` input."""
    pos = 0
    while pos + 3 <= len(data):
        control = data[pos]
        length = struct.unpack_from(">H", data, pos + 1)[0]
        pos += 3
        yield control, data[pos:pos + length]
        pos += length


def fuzz_tls() -> None:
    import atheris

    with atheris.instrument_imports():
        from tlsparse import ParseAnomaly, Sender, TlsConnection
        from tlsparse.cache import ParseCache
    cache = ParseCache()  # shared across inputs, as across a capture's connections

    def one_input(data: bytes) -> None:
        conn = TlsConnection(max_handshake=1 << 19, cache=cache if data[:1] == b"\x01" else None)
        for frame, (control, chunk) in enumerate(chunks(data), 1):
            side = Sender.CLIENT if control & 1 else Sender.SERVER
            if control & 0x80:
                out = conn.receive_gap(side, len(chunk) * 7 + 1, frame, float(frame))
            elif control & 0x40 and len(chunk) > 1:
                cut = chunk[0] % len(chunk)
                out = (conn.receive(side, chunk[:cut], frame, float(frame))
                       + conn.receive(side, chunk[cut:], frame, float(frame)))
            else:
                out = conn.receive(side, chunk, frame, float(frame))
            for event in out:
                if isinstance(event, ParseAnomaly) and event.name == "internal_error":
                    raise AssertionError(f"internal_error: {event.detail}")
            for sender in (Sender.CLIENT, Sender.SERVER):
                record_buffer, handshake_buffer = conn.buffer_sizes(sender)
                if record_buffer > conn.max_buffer or handshake_buffer > conn.max_handshake + 4:
                    raise AssertionError(f"buffers over their caps: {record_buffer}, {handshake_buffer}")

    atheris.Setup(sys.argv[:1] + sys.argv[2:], one_input)
    atheris.Fuzz()


def tls_seeds(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    sessions = json.loads((REPO / "bench" / "real_streams.json").read_text())["sessions"]
    for i, session in enumerate(sessions):
        data = b"\x01"  # (the first control byte also asks for the shared cache)
        for direction, text in session["flights"]:
            flight = base64.b64decode(text)
            for at in range(0, len(flight), 1400):
                piece = flight[at:at + 1400]
                data += bytes([1 if direction == "c2s" else 0]) + struct.pack(">H", len(piece)) + piece
        (out / f"session{i}").write_bytes(data)


def fuzz_pcap() -> None:
    import atheris

    with atheris.instrument_imports():
        from tlsflow.capture import CaptureError
        from tlsflow.pipeline import iter_flow_records
        from tlsflow.record import FIELDS
    fields = list(FIELDS)
    handle, path = tempfile.mkstemp(suffix=".pcap")
    os.close(handle)

    def one_input(data: bytes) -> None:
        with open(path, "wb") as f:
            f.write(data)
        try:
            for record in iter_flow_records(path):
                if list(record)[:len(fields)] != fields:
                    raise AssertionError(f"fields out of the contract's order: {list(record)}")
        except CaptureError:
            pass

    atheris.Setup(sys.argv[:1] + sys.argv[2:], one_input)
    atheris.Fuzz()


def main() -> None:
    sys.path.insert(0, str(REPO))
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "tls":
        fuzz_tls()
    elif what == "pcap":
        fuzz_pcap()
    elif what == "tls-seeds" and len(sys.argv) == 3:
        tls_seeds(sys.argv[2])
    else:
        raise SystemExit("usage: python tools/fuzz.py tls|pcap [libFuzzer options] [corpus ...] | tls-seeds FOLDER")


if __name__ == "__main__":
    main()
