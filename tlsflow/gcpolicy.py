"""How the cyclic garbage collector runs while tlsflow analyses.

The analysis allocates many small objects that live as long as their connection: with Python's default thresholds
(a young collection every 700 net allocations) the collector walks the same live flows thousands of times, for
almost nothing to free (reference counting frees nearly everything at once). On the 1 GB bench capture that is a
third of the time: `tlsflow.analyze()` took 7.5-7.9 s with the defaults and 5.4-5.5 s with fewer collections
(three alternated runs each).

Young objects: with these thresholds a collection runs once a million more tracked objects are alive than at the
last one. The live flows of a busy link hold ~100k (the 1 GB bench capture: ~2,500 lingering connections), so at
100k a young collection walked them over and over, for nothing: 18 collections, 0.20 s of a 1 GB run, for ~450
objects freed, all per capture file (closures and classes of a reader), none per connection. At a million: no
collection at all during that run. The bound stays: garbage in cycles could pile up to a million objects (~100 MB)
before it is collected.
"""
from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

YOUNG_COLLECTION_THRESHOLD = 1_000_000

_lock = threading.Lock()
_active = 0  # analyses running in this interpreter under `fewer_collections`
_saved: tuple[int, ...] | None = None  # the thresholds they found, put back when the last one ends


def tune_gc() -> None:
    """For a process tlsflow owns (the command line, its worker processes): fewer young collections, and what
    exists now (modules, classes, tables: ~200k objects that a full collection would otherwise walk each time)
    left out of every later collection (`gc.freeze`)."""
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, 50, 100)
    gc.freeze()


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """For an analysis in a user's interpreter (the Python API, a notebook): the young-collection threshold of
    `tune_gc` while it runs, the interpreter's own thresholds back once it (and any other running at the same time)
    has ended. No freeze: the user's objects stay collectable. A threshold of 0 (automatic collection off) or
    above ours is left as it is."""
    global _active, _saved
    with _lock:
        if _active == 0:
            _saved = gc.get_threshold()
            if 0 < _saved[0] < YOUNG_COLLECTION_THRESHOLD:
                gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *_saved[1:])
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _saved is not None:
                if gc.get_threshold()[0] == YOUNG_COLLECTION_THRESHOLD:  # (unless changed meanwhile)
                    gc.set_threshold(*_saved)
                _saved = None
