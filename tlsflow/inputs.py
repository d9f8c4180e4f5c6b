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


# `tlsflow analyze` without --jobs (`auto_jobs`): one process for less input than this, where starting and feeding
# workers costs about what a second core saves (the bench generator's captures, 2 cores: 12 MB 0.31-0.33 s in one
# process and 0.33-0.34 s with two; 28 MB 0.41-0.49 against 0.41-0.47 s; 52 MB 0.61-0.80 against 0.54-0.62 s).
AUTO_PARALLEL_FROM = 40 << 20
# ... and one process per this much input at most: a byte range much shorter than this costs more to start and
# merge than it saves.
AUTO_BYTES_PER_JOB = 20 << 20


def auto_jobs(inputs: list[str], cores: int | None = None) -> int:
    """How many processes `tlsflow analyze` uses when --jobs is not given: every core (`cpu_cores`) for input
    that pays for them (AUTO_PARALLEL_FROM bytes or more; no more processes than files when there are several, no
    more than one per AUTO_BYTES_PER_JOB of a single file), else one. Standard input and a single gzipped file are
    read by one process, and so is everything where worker processes cannot start (`workers_available`).
    Why a default of several: a user who hands tlsflow an hour of a busy link should not have to know a flag to
    get the cores they have (--jobs 2 takes ~0.6 of the time on the 1 GB bench capture); small captures, the
    common case, gain nothing from more and keep one."""
    cores = cpu_cores() if cores is None else cores
    if cores <= 1 or "-" in inputs:
        return 1
    try:
        total = sum(os.path.getsize(path) for path in inputs)
    except OSError:  # (gone since it was listed: the analysis reports it, in one process)
        return 1
    if total < AUTO_PARALLEL_FROM:
        return 1
    if len(inputs) > 1:
        jobs = min(cores, len(inputs))
    elif _gzipped(inputs[0]):
        # One gzipped file is read by one process and its decompressing child: shared out by connection, every
        # worker would decompress all of it (tlsflow.parallel.GZIP_SHARED_FROM), which pays only where the
        # analysis costs far more than the decompression; --jobs N asks for it.
        return 1
    else:
        jobs = max(1, min(cores, total // AUTO_BYTES_PER_JOB))
    return jobs if jobs == 1 or workers_available() else 1


def workers_available() -> bool:
    """Whether worker processes can be started here: multiprocessing's queues and locks need POSIX semaphores,
    which some sandboxes and serverless runtimes lack (no /dev/shm). There the default stays one process, which
    works where --jobs N would fail."""
    try:
        import multiprocessing

        multiprocessing.get_context().Lock()
    except (ImportError, OSError, NotImplementedError):
        return False
    return True


def _gzipped(path: str) -> bool:
    # The reader's own test (imported here: only a big single file asks).
    from tlsflow.capture.source import GZIP_MAGIC

    try:
        with open(path, "rb") as f:
            return f.read(len(GZIP_MAGIC)) == GZIP_MAGIC
    except OSError:
        return False


def cpu_cores() -> int:
    """The CPU cores this process may run on (a container's or taskset's limit, not the machine's count): what
    `--jobs 0` means."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
