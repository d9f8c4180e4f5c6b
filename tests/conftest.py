"""Shared test fixtures: where the shipped corpus and the shared public captures are."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "captures" / "corpus"
SHARED = Path(os.environ.get("TLSFLOW_SHARED", REPO.parent / "shared")).resolve()
PUBLIC = SHARED / "captures" / "public"


def corpus_labels() -> list[dict]:
    path = CORPUS / "labels.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    if not (CORPUS / "labels.jsonl").exists():
        pytest.fail("captures/corpus/labels.jsonl is missing: the corpus ships with the repository")
    return CORPUS


@pytest.fixture(scope="session")
def public_dir() -> Path:
    if not (PUBLIC / "expected.jsonl").exists():
        pytest.skip("../shared/captures/public is not present (it is not part of a user's clone)")
    return PUBLIC
