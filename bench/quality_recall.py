"""Benchmark: the quality filter's precision and recall on boilerplate, refusals and repetition.

    python bench/quality_recall.py [--json]

Data: bench/data/quality/labelled.jsonl.gz, 1,880 real (request, answer) rows from HH, LLMFAO
and the self-instruct predictions, labelled boilerplate / refusal / repetition / clean / unsure
by hand or by a rule that is not the filter's (bench/data/README.md says how); the 148 rows
labelled unsure are left out of every figure.

Two families of reasons are measured, each on the answer:

- boilerplate and refusals: positives are the rows labelled boilerplate or refusal, the rest
  (clean, repetition) negatives; a row counts as flagged when the filter gives a
  "boilerplate" or "refusal" reason;
- repetition: positives are the rows labelled repetition, the rest negatives; flagged when the
  filter gives a repetition or low-lexical-diversity reason about the answer.

Baseline, in the same run: the quality filter as it was before (its boilerplate regex and its
repetition rules, copied below), which looked at the answer only. The current filter also
checks the request for repetition: every request here is a real one (HH, LLMFAO, self-instruct
users), so each request it flags is counted as a false positive.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from _data import QUALITY_LABELLED

from generator.filters.quality import QualityFilter, find_boilerplate, repeated_ngram_ratio
from generator.filters.text import words
from generator.schema import Candidate, CandidateKind, Message, SFTExample

JUNK = {"boilerplate", "refusal", "repetition"}

# The filter before: generator/filters/quality.py at commit dd64903.
OLD_BOILERPLATE = re.compile(
    r"as an ai(?: language)? model|i(?:'m| am) (?:just )?an ai\b|i (?:cannot|can't|am unable to) "
    r"(?:help|assist|provide|do that)|i(?:'m| am) sorry, but i|as a large language model",
    re.IGNORECASE,
)


def old_families(request: str, answer: str) -> set[str]:
    """Which families the old filter flagged: its boilerplate regex, its 3-gram share over 0.3
    and its lexical diversity under 0.3 (50+ words), on the answer only."""
    tokens = words(answer)
    found = set()
    if OLD_BOILERPLATE.search(answer):
        found.add("boilerplate")
    low_diversity = len(tokens) >= 50 and len(set(tokens)) / len(tokens) < 0.3
    if repeated_ngram_ratio(tokens) > 0.3 or low_diversity:
        found.add("repetition")
    return found


def new_families(request: str, answer: str, current: QualityFilter) -> set[str]:
    """Which families the current filter's reasons name, for the answer (and "request" when
    it flags the request)."""
    example = SFTExample(
        messages=[Message(role="user", content=request), Message(role="assistant", content=answer)]
    )
    candidate = Candidate(id="row", kind=CandidateKind.SFT, payload=example, run_id="bench")
    found = set()
    for reason in current.problems(candidate):
        if reason.startswith(("boilerplate:", "refusal:")):
            found.add("boilerplate")
        elif reason.startswith("repetitive:") and reason.endswith("in the request"):
            found.add("request")
        elif reason.startswith(("repetitive:", "low lexical diversity")):
            found.add("repetition")
    return found


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, positive: bool, flagged: bool) -> None:
        self.tp += positive and flagged
        self.fp += flagged and not positive
        self.fn += positive and not flagged

    def figures(self) -> dict[str, float | int]:
        flagged, positives = self.tp + self.fp, self.tp + self.fn
        return {
            "precision": self.tp / flagged if flagged else 1.0,
            "recall": self.tp / positives if positives else 1.0,
            "true_positives": self.tp,
            "false_positives": self.fp,
            "missed": self.fn,
        }


def measure(rows: list[dict[str, Any]], families: Callable[[str, str], set[str]]) -> dict[str, Any]:
    """Precision and recall per family, and recall per label, for one version of the filter."""
    boilerplate, repetition, overall = Counts(), Counts(), Counts()
    by_label: dict[str, list[int]] = {label: [0, 0] for label in JUNK}
    requests = 0
    started = time.perf_counter()
    for row in rows:
        label, found = row["label"], families(row["request"], row["answer"])
        boilerplate.add(label in {"boilerplate", "refusal"}, "boilerplate" in found)
        repetition.add(label == "repetition", "repetition" in found)
        overall.add(label in JUNK, bool(found & {"boilerplate", "repetition"}))
        requests += "request" in found
        if label in JUNK:
            family = "repetition" if label == "repetition" else "boilerplate"
            by_label[label][0] += family in found
            by_label[label][1] += 1
    return {
        "boilerplate_and_refusals": boilerplate.figures(),
        "repetition": repetition.figures(),
        "overall": overall.figures(),
        "recall_by_label": {k: hits / total for k, (hits, total) in by_label.items()},
        "requests_flagged": requests,
        "ms_per_row": (time.perf_counter() - started) * 1000 / len(rows),
    }


def worst_megabyte_seconds() -> float:
    """The slowest boilerplate search over 1 MB strings made of the patterns' own openings."""
    units = ["as an ai ", "i'm just an ", "i can't ", "i am not able to ", "i ", "sorry, but "]
    slowest = 0.0
    for unit in units:
        text = (unit * (1_000_000 // len(unit) + 1))[:1_000_000]
        started = time.process_time()
        find_boilerplate(text)
        slowest = max(slowest, time.process_time() - started)
    return slowest


def load() -> list[dict[str, Any]]:
    with gzip.open(QUALITY_LABELLED, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    return [row for row in rows if row["label"] != "unsure"]


def print_table(result: dict[str, Any]) -> None:
    old, new = result["old"], result["new"]
    print(f"{result['rows']:,} labelled rows ({result['labels']})\n")
    print("| family | old precision | old recall | new precision | new recall |")
    print("|---|---|---|---|---|")
    for family in ("boilerplate_and_refusals", "repetition", "overall"):
        o, n = old[family], new[family]
        print(
            f"| {family.replace('_', ' ')} | {o['precision']:.2f} | {o['recall']:.2f} "
            f"| {n['precision']:.2f} | {n['recall']:.2f} |"
        )
    print("\n| label | old recall | new recall |")
    print("|---|---|---|")
    for label in sorted(JUNK):
        print(
            f"| {label} | {old['recall_by_label'][label]:.2f} "
            f"| {new['recall_by_label'][label]:.2f} |"
        )
    print(
        f"\nreal requests flagged for repetition: {new['requests_flagged']} of {result['rows']:,}"
        f"\nms per row: old {old['ms_per_row']:.2f}, new {new['ms_per_row']:.2f}"
        f"\nslowest boilerplate search of a hostile 1 MB string: {result['worst_1mb_s']:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args()
    rows = load()
    current = QualityFilter()
    labels: dict[str, int] = {}
    for row in rows:
        labels[row["label"]] = labels.get(row["label"], 0) + 1
    result = {
        "rows": len(rows),
        "labels": ", ".join(f"{n} {label}" for label, n in sorted(labels.items())),
        "old": measure(rows, old_families),
        "new": measure(rows, lambda request, answer: new_families(request, answer, current)),
        "worst_1mb_s": worst_megabyte_seconds(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
