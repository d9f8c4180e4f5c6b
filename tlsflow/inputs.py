"""Turns what the user typed (files, directories, globs, `-`) into the list of captures to read."""
from __future__ import annotations

import glob
import os
from pathlib import Path

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz", ".cap.gz", ".dmp")


class InputError(Exception):
    pass


def expand_inputs(items: list[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        if item == "-":
            out.append("-")
        elif os.path.isdir(item):
            found = sorted(str(p) for p in Path(item).rglob("*") if p.is_file()
                           and p.name.lower().endswith(CAPTURE_SUFFIXES))
            if not found:
                raise InputError(f"{item}: no capture files (.pcap, .pcapng, .cap, optionally .gz) in this directory")
            out.extend(found)
        elif os.path.exists(item):
            out.append(item)
        elif glob.has_magic(item):
            found = sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p))
            if not found:
                raise InputError(f"{item}: no file matches")
            out.extend(found)
        else:
            raise InputError(f"{item}: no such file")
    if out.count("-") > 1:
        raise InputError("standard input (-) can be read only once")
    return out


def cpu_cores() -> int:
    """The CPU cores this process may run on (a container's or taskset's limit, not the machine's count): what
    `--jobs 0` means."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
