"""Runs tlsflow over the labelled corpus and compares every connection with its label.

`python tools/corpus_report.py` prints the per-scenario table (markdown) used in the README and the accuracy
figures; the test suite calls `compare_corpus()` for its assertions.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "captures" / "corpus"
COMPARED = ("outcome", "failed_step", "cause", "alert", "alert_sender", "version")


@dataclass
class Comparison:
    label: dict[str, Any]
    record: dict[str, Any] | None

    @property
    def mismatches(self) -> dict[str, tuple[Any, Any]]:
        if self.record is None:
            return {"flow": (self.label.get("flow"), None)}
        out = {}
        for name in COMPARED:
            expected = self.label.get(name)
            if name == "version" and expected is None:
                continue
            if expected != self.record.get(name):
                out[name] = (expected, self.record.get(name))
        return out


def load_labels(corpus: Path = CORPUS) -> list[dict[str, Any]]:
    path = corpus / "labels.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def compare_corpus(corpus: Path = CORPUS) -> list[Comparison]:
    from tlsflow.api import iter_flows

    labels = load_labels(corpus)
    by_file: dict[str, dict[int, dict[str, Any]]] = {}
    for label in labels:
        name = label["file"]
        if name not in by_file:
            by_file[name] = {r["flow_id"]: r for r in iter_flows(corpus / name)}
    return [Comparison(label, by_file[label["file"]].get(label["flow"])) for label in labels]


def markdown_table(comparisons: list[Comparison]) -> str:
    rows = ["| scenario | flow | labelled (outcome / step / cause) | tlsflow says | agrees |",
            "|---|---|---|---|---|"]
    for c in comparisons:
        lab = c.label
        rec = c.record or {}
        said = " / ".join(str(rec.get(k) or "-") for k in ("outcome", "failed_step", "cause"))
        want = " / ".join(str(lab.get(k) or "-") for k in ("outcome", "failed_step", "cause"))
        rows.append(f"| {lab['scenario']} | {lab['flow']} | {want} | {said} | {'yes' if not c.mismatches else 'NO'} |")
    return "\n".join(rows)


def main() -> int:
    comparisons = compare_corpus()
    print(markdown_table(comparisons))
    good = sum(1 for c in comparisons if not c.mismatches)
    verdict_good = sum(1 for c in comparisons if not ({"outcome", "failed_step", "cause"} & set(c.mismatches)))
    print(f"\n{good}/{len(comparisons)} connections agree on every compared field; "
          f"{verdict_good}/{len(comparisons)} on outcome, step and cause.")
    for c in comparisons:
        if c.mismatches:
            print(f"  {c.label['scenario']} flow {c.label['flow']}: {c.mismatches}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
