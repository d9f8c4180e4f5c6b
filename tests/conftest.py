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


@pytest.fixture(scope="session")
def generated_capture(tmp_path_factory) -> Path:
    """A bench capture (bench.gen_capture, 3 MB, seed 3): real handshakes (TLS 1.2 and 1.3, failures, resets)
    interleaved over many connections, made once per test session."""
    from bench.gen_capture import generate

    path = tmp_path_factory.mktemp("generated") / "gen.pcap"
    with path.open("wb") as out:
        generate(out, 3_000_000, seed=3)
    return path
