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
    decrypted: bool = False  # analysed with the scenario's key log: encrypted alerts read as their names

    @property
    def mismatches(self) -> dict[str, tuple[Any, Any]]:
        if self.record is None:
            return {"flow": (self.label.get("flow"), None)}
        out = {}
        for name in COMPARED:
            expected = self.label.get(name)
            if name == "version" and expected is None:
                continue
            if name == "alert" and expected == "encrypted" and self.decrypted and self.record.get(name):
                continue  # the label says what a keyless observer sees; with the key log the alert is readable
            if expected != self.record.get(name):
                out[name] = (expected, self.record.get(name))
        return out


def load_labels(corpus: Path = CORPUS) -> list[dict[str, Any]]:
    path = corpus / "labels.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def compare_corpus(corpus: Path = CORPUS, *, use_keylogs: bool = True) -> list[Comparison]:
    """Analyse each labelled capture (with the corpus CA as trust anchor, and the scenario's key log when there
    is one and `use_keylogs`) and pair each label with tlsflow's record of that connection."""
    from tlsflow.api import iter_flows

    labels = load_labels(corpus)
    ca = corpus / "ca.pem"
    by_file: dict[str, dict[int, dict[str, Any]]] = {}
    for label in labels:
        name = label["file"]
        if name not in by_file:
            keylog = corpus / (Path(name).stem + ".keylog")
            records = iter_flows(corpus / name, ca_bundle=ca if ca.exists() else None,
                                 keylog=keylog if use_keylogs and keylog.exists() else None)
            by_file[name] = {r["flow_id"]: r for r in records}
    return [Comparison(label, by_file[label["file"]].get(label["flow"]),
                       decrypted=use_keylogs and (corpus / (Path(label["file"]).stem + ".keylog")).exists())
            for label in labels]


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
