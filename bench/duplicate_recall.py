"""Benchmark: near_duplicate and semantic_duplicate precision and recall on labelled T0 pairs.

    python bench/duplicate_recall.py [--json]

Data: the first 1,800 rows of the T0 slice the tests use
(tests/data/t0/t0_train_first_2000.jsonl.gz), each row converted with the prompt_completion
template and compared by its prompt text, paired exactly as
tests/test_semantic.py::test_near_duplicates_in_the_t0_corpus_against_labelled_pairs pairs them:
rows (0, 1), (2, 3) ... (598, 599), consecutive rows that share a template, and rows
(i, i + 1,500) for i < 150, which do not.

Labels: an independent measure, the character-level difflib ratio (SequenceMatcher, autojunk
off): >= 0.9 duplicate, < 0.5 distinct; pairs in between are left out of every figure.

Measured, each on the same labelled pairs:
- near_duplicate: NearDuplicateFilter with the first prompt as its reference, scoring a
  candidate whose user turn is the second prompt (answer "x"), as the test does; a failed score
  counts as "duplicate";
- semantic_duplicate: the cosine of the two prompts' embeddings (generator.embeddings.Embedder,
  all-MiniLM-L6-v2, no cache) >= 0.92.

Baseline, in the same run: the exact-duplicate rule, the ExactDuplicateFilter's own index
(generator.filters.reference.ExactIndex: NFKC, case-folded, whitespace collapsed) holding the
first prompt and asked for the second.

Targets: the floors the test asserts, near_duplicate P >= 0.97 and R >= 0.9, semantic_duplicate
P >= 0.97 and R >= 0.5.
"""

from __future__ import annotations

import argparse
import difflib
import json
import time
from typing import Any

from _data import T0_FIRST_2000

from generator.dataset_reader import convert, iter_records
from generator.embeddings import Embedder
from generator.filters.duplicates import NearDuplicateFilter
from generator.filters.reference import ExactIndex
from generator.schema import Candidate, CandidateKind, Message, SFTExample

SEMANTIC_THRESHOLD = 0.92
TARGETS = {"near_duplicate": (0.97, 0.9), "semantic_duplicate": (0.97, 0.5)}


def labelled_pairs() -> list[tuple[str, str, bool]]:
    """(first prompt, second prompt, is a duplicate) for every pair the difflib ratio labels."""
    rows: list[str] = []
    for _, record in iter_records(T0_FIRST_2000):
        rows.append(convert(record, "prompt_completion").prompt_text())
        if len(rows) == 1800:
            break
    pairs = [(rows[i], rows[i + 1]) for i in range(0, 600, 2)] + [
        (rows[i], rows[i + 1500]) for i in range(150)
    ]
    labelled = []
    for a, b in pairs:
        ratio = difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()
        if ratio >= 0.9 or ratio < 0.5:
            labelled.append((a, b, ratio >= 0.9))
    return labelled


def figures(predicted: list[bool], truth: list[bool], seconds: float) -> dict[str, Any]:
    tp = sum(p and t for p, t in zip(predicted, truth, strict=True))
    fp = sum(p and not t for p, t in zip(predicted, truth, strict=True))
    fn = sum(t and not p for p, t in zip(predicted, truth, strict=True))
    return {
        # The test's convention: a rule that flags nothing has precision 0, not 1.
        "precision": tp / max(tp + fp, 1),
        "recall": tp / max(tp + fn, 1),
        "true_positives": tp,
        "false_positives": fp,
        "missed": fn,
        "seconds": seconds,
    }


def candidate(prompt: str) -> Candidate:
    example = SFTExample(
        messages=[Message(role="user", content=prompt), Message(role="assistant", content="x")]
    )
    return Candidate(id="c1", kind=CandidateKind.SFT, payload=example, run_id="r", gap_id="none")


def near(labelled: list[tuple[str, str, bool]]) -> list[bool]:
    return [
        not NearDuplicateFilter([("a", a)]).score([candidate(b)])[0].passed for a, b, _ in labelled
    ]


def semantic(labelled: list[tuple[str, str, bool]], embedder: Embedder) -> list[bool]:
    left = embedder.embed([a for a, _, _ in labelled])
    right = embedder.embed([b for _, b, _ in labelled])
    return [bool(s) for s in (left * right).sum(axis=1) >= SEMANTIC_THRESHOLD]


def exact(labelled: list[tuple[str, str, bool]]) -> list[bool]:
    found = []
    for a, b, _ in labelled:
        index = ExactIndex()
        index.add("a", a)
        found.append(index.find(b) is not None)
    return found


def timed(run: Any) -> tuple[list[bool], float]:
    started = time.perf_counter()
    predicted = run()
    return predicted, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args()
    labelled = labelled_pairs()
    truth = [d for *_, d in labelled]
    embedder = Embedder()
    embedder.encode_uncached([a for a, _, _ in labelled[:64]])  # load the model outside timing
    result: dict[str, Any] = {
        "pairs": len(labelled),
        "duplicates": sum(truth),
        "distinct": len(truth) - sum(truth),
        "semantic_threshold": SEMANTIC_THRESHOLD,
    }
    for name, run in (
        ("near_duplicate", lambda: near(labelled)),
        ("semantic_duplicate", lambda: semantic(labelled, embedder)),
        ("exact_match", lambda: exact(labelled)),
    ):
        predicted, seconds = timed(run)
        result[name] = figures(predicted, truth, seconds)
    for name, (precision, recall) in TARGETS.items():
        got = result[name]
        result[name]["target"] = f"P >= {precision}, R >= {recall}"
        result[name]["target_met"] = got["precision"] >= precision and got["recall"] >= recall
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{result['pairs']} labelled T0 pairs ({result['duplicates']} duplicate, "
            f"{result['distinct']} distinct)\n"
        )
        print("| rule | precision | recall | TP | FP | missed | target | met |")
        print("|---|---|---|---|---|---|---|---|")
        for name in ("near_duplicate", "semantic_duplicate", "exact_match"):
            f = result[name]
            print(
                f"| {name} | {f['precision']:.2f} | {f['recall']:.2f} | {f['true_positives']} "
                f"| {f['false_positives']} | {f['missed']} | {f.get('target', 'baseline')} "
                f"| {'yes' if f.get('target_met', True) else 'no'} |"
            )


if __name__ == "__main__":
    main()
