"""Benchmark: gapfill's near_duplicate filter beside HF datatrove's MinHash dedup, on T0.

    python bench/dedup_peer.py [--existing 50000] [--sample 400] [--json]

Data: the 55,185 T0 rows (``bench/data/t0``), each converted with the prompt_completion
template; a row's text is its turns joined by a newline (what the filter compares). The first
``--existing`` rows are the existing set, the rest the candidates, in file order.

Labels, independent of both tools: ``--sample`` candidates drawn at random (seed 0), each
labelled by its highest difflib ratio (SequenceMatcher, autojunk off) against every existing
row and every earlier candidate: >= 0.9 duplicate, < 0.5 distinct, in between left out. The
label is exact without 55k difflib calls a candidate: RapidFuzz's Indel ratio is never below
difflib's (difflib's matching blocks are a common subsequence, Indel counts the longest), so
difflib runs only where the Indel ratio could reach the bound in question.

Tools, each timed from the raw texts to its verdicts, in the same run:
- gapfill: ``NearDuplicateFilter`` with the existing rows as its reference, scoring every
  candidate in order (as a scoring worker does; a candidate it passes joins its index);
- datatrove 0.10.1 (its own venv, ``scripts/install-datatrove.sh``): the four MinHash stages of
  its example, 5-gram shingles, 14 buckets x 8 hashes (``bench/_datatrove_minhash.py``); a
  candidate it removes is a duplicate.

Goal (issue 23): gapfill's recall >= 0.95 at precision >= 0.99, at least 3x faster than
datatrove.
"""

from __future__ import annotations

import argparse
import difflib
import json
import random
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _data import T0
from rapidfuzz import fuzz
from rapidfuzz.process import cdist

from generator.dataset_reader import convert, iter_records
from generator.filters.duplicates import NearDuplicateFilter
from generator.schema import Candidate, CandidateKind, SFTExample

ROOT = Path(__file__).resolve().parents[1]
DATATROVE = ROOT / ".venv-datatrove" / "bin" / "python"
DUPLICATE, DISTINCT = 0.9, 0.5
BATCH = 256


def examples() -> list[SFTExample]:
    return [convert(record, "prompt_completion") for _, record in iter_records(T0)]


def text(example: SFTExample) -> str:
    return "\n".join(m.content for m in example.turns())


def label(query: str, others: list[str], indel: np.ndarray) -> bool | None:
    """Duplicate (True: difflib >= 0.9 against one of ``others``), distinct (False: < 0.5
    against all) or neither (None), exactly: a difflib ratio never exceeds the Indel ratio, so
    only the texts whose Indel ratio reaches a bound are compared with difflib."""
    order = np.argsort(-indel, kind="stable")
    between = False
    for index in order:
        bound = indel[index] / 100
        if bound < DISTINCT or (between and bound < DUPLICATE):
            break
        matcher = difflib.SequenceMatcher(None, query, others[index], autojunk=False)
        wanted = DUPLICATE if between else DISTINCT
        if matcher.quick_ratio() < wanted:
            continue
        ratio = matcher.ratio()
        if ratio >= DUPLICATE:
            return True
        between = between or ratio >= DISTINCT
    return None if between else False


def labels(rows: list[str], existing: int, sample: int) -> dict[int, bool]:
    """candidate row index -> duplicate (True) or distinct (False), for the labelled ones."""
    chosen = sorted(random.Random(0).sample(range(existing, len(rows)), sample))
    found = {}
    for start in range(0, len(chosen), 50):
        batch = chosen[start : start + 50]
        scores = cdist(
            [rows[i] for i in batch], rows[: batch[-1]], scorer=fuzz.ratio, workers=-1,
            score_cutoff=DISTINCT * 100,
            dtype=np.float32,
        )  # fmt: skip
        for row, index in zip(scores, batch, strict=True):
            verdict = label(rows[index], rows[:index], row[:index])
            if verdict is not None:
                found[index] = verdict
    return found


def gapfill(rows: list[SFTExample], existing: int) -> tuple[set[int], float]:
    started = time.perf_counter()
    near = NearDuplicateFilter([(f"e{i}", text(rows[i])) for i in range(existing)])
    flagged = set()
    for start in range(existing, len(rows), BATCH):
        batch = [
            Candidate(id=f"c{i}", kind=CandidateKind.SFT, payload=rows[i], run_id="r", gap_id="g")
            for i in range(start, min(start + BATCH, len(rows)))
        ]
        for candidate, score in zip(batch, near.score(batch), strict=True):
            if not score.passed:
                flagged.add(int(candidate.id[1:]))
    return flagged, time.perf_counter() - started


def datatrove(rows: list[str]) -> tuple[set[int], float]:
    if not DATATROVE.exists():
        raise SystemExit("datatrove's venv is missing: bash scripts/install-datatrove.sh")
    with tempfile.TemporaryDirectory(prefix="gapfill-bench-datatrove-") as directory:
        work = Path(directory)
        source = work / "input" / "t0.jsonl"
        source.parent.mkdir()
        started = time.perf_counter()
        with source.open("w") as out:
            for index, row in enumerate(rows):
                out.write(json.dumps({"id": str(index), "text": row}) + "\n")
        runner = ROOT / "bench" / "_datatrove_minhash.py"
        done = subprocess.run(
            [str(DATATROVE), str(runner), str(source), str(work / "run")],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"datatrove failed: {done.stderr[-2000:]}")
    return {int(i) for i in json.loads(done.stdout.strip().splitlines()[-1])}, seconds


def figures(
    flagged: set[int], truth: dict[int, bool], seconds: float, existing: int
) -> dict[str, Any]:
    tp = sum(truth[i] and i in flagged for i in truth)
    fp = sum(not truth[i] and i in flagged for i in truth)
    fn = sum(truth[i] and i not in flagged for i in truth)
    return {
        "precision": tp / max(tp + fp, 1),
        "recall": tp / max(tp + fn, 1),
        "true_positives": tp,
        "false_positives": fp,
        "missed": fn,
        # datatrove removes existing rows too (all but one of each cluster): candidates only.
        "flagged_candidates": sum(i >= existing for i in flagged),
        "seconds": seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--existing", type=int, default=50_000)
    parser.add_argument("--sample", type=int, default=400)
    parser.add_argument("--labels-only", action="store_true", help="Time the labelling only.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    found = examples()
    rows = [text(example) for example in found]
    started = time.perf_counter()
    truth = labels(rows, args.existing, args.sample)
    labelled_in = time.perf_counter() - started
    if args.labels_only:
        print(json.dumps({"labelled": len(truth), "duplicates": sum(truth.values()),
                          "seconds": labelled_in}))  # fmt: skip
        return 0
    ours, our_seconds = gapfill(found, args.existing)
    theirs, their_seconds = datatrove(rows)
    result = {
        "rows": len(rows),
        "existing": args.existing,
        "candidates": len(rows) - args.existing,
        "sample": args.sample,
        "labelled": len(truth),
        "duplicates": sum(truth.values()),
        "distinct": len(truth) - sum(truth.values()),
        "labelling_seconds": labelled_in,
        "gapfill": figures(ours, truth, our_seconds, args.existing),
        "datatrove": figures(theirs, truth, their_seconds, args.existing),
    }
    g = result["gapfill"]
    result["speedup"] = their_seconds / our_seconds
    result["target_met"] = g["recall"] >= 0.95 and g["precision"] >= 0.99 and result["speedup"] >= 3
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{result['labelled']} labelled candidates ({result['duplicates']} duplicates, "
        f"{result['distinct']} distinct) of {result['candidates']}, labelled in "
        f"{labelled_in:.0f} s"
    )
    for name in ("gapfill", "datatrove"):
        f = result[name]
        print(
            f"{name}: precision {f['precision']:.3f}, recall {f['recall']:.3f} (TP "
            f"{f['true_positives']}, FP {f['false_positives']}, missed {f['missed']}), "
            f"{f['flagged_candidates']} candidates flagged, {f['seconds']:.1f} s"
        )
    print(
        f"gapfill {result['speedup']:.1f}x faster; target (recall >= 0.95 at precision >= 0.99, "
        f">= 3x faster): {'met' if result['target_met'] else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
