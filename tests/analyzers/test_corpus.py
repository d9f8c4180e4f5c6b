"""Every connection of the labelled corpus (real servers and clients, recorded on loopback) gets its labelled
outcome, failed step and cause, and the alert with its sender."""
from __future__ import annotations

import sys

import pytest

from tests.conftest import CORPUS, REPO, corpus_labels

sys.path.insert(0, str(REPO))
from tools.corpus_report import COMPARED, compare_corpus  # noqa: E402

LABELS = corpus_labels()


@pytest.fixture(scope="module")
def comparisons():
    return {(c.label["scenario"], c.label["flow"]): c for c in compare_corpus(CORPUS)}


def test_corpus_is_shipped():
    assert LABELS, "captures/corpus/labels.jsonl is missing or empty"
    for label in LABELS:
        assert (CORPUS / label["file"]).exists(), label["file"]


@pytest.mark.parametrize("label", LABELS, ids=[f"{lab['scenario']}#{lab['flow']}" for lab in LABELS])
def test_scenario_verdict(label, comparisons):
    comparison = comparisons[(label["scenario"], label["flow"])]
    assert comparison.record is not None, f"no connection {label['flow']} in {label['file']}"
    record = comparison.record
    for name in COMPARED:
        if name == "version" and label.get(name) is None:
            continue
        assert record.get(name) == label.get(name), (
            f"{name}: labelled {label.get(name)!r}, tlsflow said {record.get(name)!r}; "
            f"evidence {record.get('evidence')}")
    if record["outcome"] == "failed":
        assert record["evidence"], "a failure must come with evidence"
        assert any("frame " in fact for fact in record["evidence"]), "evidence cites frames"
        assert record["hint"]
