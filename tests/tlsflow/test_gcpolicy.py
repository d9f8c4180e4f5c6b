"""The collector's thresholds: raised while the Python API analyses (a third of its time otherwise), the user's
own back afterwards; the command line's process keeps them raised (tune_gc)."""
from __future__ import annotations

import gc
from pathlib import Path

import pytest

import tlsflow
from tlsflow.gcpolicy import YOUNG_COLLECTION_THRESHOLD, fewer_collections


@pytest.fixture
def thresholds():
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def test_raised_while_running_and_given_back(thresholds) -> None:
    with fewer_collections():
        assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, 10, 10)
        with fewer_collections():  # another analysis at the same time (a second generator)
            pass
        assert gc.get_threshold()[0] == YOUNG_COLLECTION_THRESHOLD  # the first still runs
    assert gc.get_threshold() == (700, 10, 10)


def test_automatic_collection_off_stays_off(thresholds) -> None:
    gc.set_threshold(0, 10, 10)
    with fewer_collections():
        assert gc.get_threshold() == (0, 10, 10)
    assert gc.get_threshold() == (0, 10, 10)


def test_a_change_made_meanwhile_is_kept(thresholds) -> None:
    with fewer_collections():
        gc.set_threshold(5000, 10, 10)
    assert gc.get_threshold() == (5000, 10, 10)


def test_iter_flows_raises_them_while_it_yields(thresholds, corpus_dir: Path) -> None:
    flows = tlsflow.iter_flows(corpus_dir / "tls13_established_python.pcap")
    first = next(flows)
    assert first["outcome"] == "established"
    assert gc.get_threshold()[0] == YOUNG_COLLECTION_THRESHOLD
    assert list(flows) == []
    assert gc.get_threshold() == (700, 10, 10)


def test_an_abandoned_iteration_gives_them_back(thresholds, corpus_dir: Path) -> None:
    flows = tlsflow.iter_flows(corpus_dir / "tls13_established_python.pcap")
    next(flows)
    flows.close()
    assert gc.get_threshold() == (700, 10, 10)


def test_analyze_leaves_them_as_they_were(thresholds, corpus_dir: Path) -> None:
    frame = tlsflow.analyze(corpus_dir / "tls12_established_plain.pcap")
    assert list(frame.outcome) == ["established"]
    assert gc.get_threshold() == (700, 10, 10)
