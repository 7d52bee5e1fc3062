"""Benchmark: the cascade embedding tier beside the full-MiniLM tier, quality and speed, one run.

    python bench/cascade.py [--coverage-rows 10000,50000] [--index-rows 55185] [--full-rows 1000]
                            [--parts index,duplicates,contamination,coverage] [--million] [--json]

Quality, each figure for both tiers on the same data, the full tier as the baseline:
- semantic duplicates: the labelled T0 pairs of bench/duplicate_recall.py (difflib >= 0.9
  duplicate, < 0.5 distinct); the existing set is each pair's first prompt plus
  ``--distractors`` other T0 prompts, the candidates are the second prompts, scored by
  SemanticDuplicateFilter against the existing set's index (what a scoring worker does);
- contamination: every HumanEval problem planted three ways (verbatim after a seed task,
  edited, and the three hand-written paraphrases of tests/test_filters.py), and the 175 clean
  seed tasks for false positives, scored by ContaminationFilter;
- coverage: the 252 user-oriented reference prompts against the first N T0 rows, for each N
  of ``--coverage-rows``: each prompt's covered/uncovered label and the uncovered clusters
  (labels in order, and their members), cascade against full.
Speed, same run:
- the index build (exact, MinHash, vectors) of the first ``--index-rows`` T0 rows in the cascade
  tier, against the full tier on the first ``--full-rows`` (the full tier on all 55k rows takes
  about an hour here: its rate is measured on a part and said so);
- coverage analysis, cascade against full, each cold, on the same rows (50,000: the size the
  goal is set for; the full tier takes about 15 minutes there);
- ``--million``: a 1,048,515-row corpus derived from T0 (each of the 55,185 prompts paired with
  19 different completions: row i's prompt with the completion of row (i + 2,903 v) mod 55,185,
  v = 0..18), indexed in the cascade tier in a child process, its wall time and peak RSS.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _data import HUMANEVAL, REFERENCE, SEED_TASKS, T0
from duplicate_recall import figures, labelled_pairs

from generator.coverage import analyse, load_reference
from generator.dataset_reader import convert, iter_records, load_examples
from generator.embeddings import Embedder
from generator.filters.contamination import ContaminationFilter, load_eval_items
from generator.filters.reference import IndexOptions, ReferenceIndexes, ReferenceItem
from generator.filters.semantic import SemanticDuplicateFilter
from generator.schema import Candidate, CandidateKind, Message, SFTExample

ROOT = Path(__file__).resolve().parents[1]
PARAPHRASES = {
    "HumanEval/0": "Write a Python function that checks whether any two numbers in a given list "
    "are closer to each other than a given threshold value.",
    "HumanEval/1": "Given a string of several groups of nested parentheses separated by spaces, "
    "split it into a list of the separate balanced groups, ignoring spaces.",
    "HumanEval/3": "You get a list of deposits and withdrawals on a bank account that starts at "
    "zero. Return True if the balance ever drops below zero, otherwise False.",
}
T0_ROWS = 55_185
MILLION_STRIDE = 2_903
MILLION_VARIANTS = 19


def sft(prompt: str, answer: str, index: int) -> Candidate:
    example = SFTExample(
        messages=[Message(role="user", content=prompt), Message(role="assistant", content=answer)]
    )
    return Candidate(
        id=f"c{index}", kind=CandidateKind.SFT, payload=example, run_id="r", gap_id="g"
    )


def one_turn(text: str, index: int) -> Candidate:
    """A candidate whose one text is ``text`` (compared turn for turn with one-turn rows)."""
    return Candidate(id=f"c{index}", kind=CandidateKind.SFT, raw=text, run_id="r", gap_id="g")


def t0_rows(count: int) -> list[tuple[str, str]]:
    rows = []
    for _, record in iter_records(T0):
        rows.append((str(record["prompt"]), str(record["completion"])))
        if len(rows) == count:
            break
    return rows


def embedders(cache: Path) -> dict[str, Embedder]:
    tiers = {t: Embedder(cache_dir=cache / t, tier=t) for t in ("full", "cascade")}  # type: ignore[arg-type]
    tiers["full"].encode_uncached(["warm"])
    tiers["cascade"].encode_uncached(["warm"])
    tiers["cascade"].static.embed(["warm"])  # distilled (once) or loaded outside any timing
    return tiers


# -- quality -----------------------------------------------------------------------------------


def semantic_duplicates(tiers: dict[str, Embedder], distractors: int) -> dict[str, Any]:
    labelled = labelled_pairs()
    truth = [d for *_, d in labelled]
    others = [p for p, _ in t0_rows(2_000 + distractors)[2_000:]]
    existing = [ReferenceItem(f"a{i}", (a,)) for i, (a, _, _) in enumerate(labelled)] + [
        ReferenceItem(f"t{i}", (p,)) for i, p in enumerate(others)
    ]
    candidates = [one_turn(b, i) for i, (_, b, _) in enumerate(labelled)]
    out: dict[str, Any] = {
        "pairs": len(labelled),
        "duplicates": sum(truth),
        "existing": len(existing),
    }
    for tier, embedder in tiers.items():
        started = time.perf_counter()
        shared = ReferenceIndexes.build(existing, IndexOptions(tier=tier), embedder)
        scored = []
        for candidate in candidates:  # one by one: the batch must not see itself
            filter_ = SemanticDuplicateFilter(embedder, shared=shared.vectors)
            scored.append(not filter_.score([candidate])[0].passed)
        out[tier] = figures(scored, truth, time.perf_counter() - started)
    return out


def contamination(tiers: dict[str, Embedder]) -> dict[str, Any]:
    with gzip.open(HUMANEVAL, "rt") as handle:
        problems = [json.loads(line) for line in handle]
    seeds = load_examples(SEED_TASKS)
    planted, expected = [], []
    for i, problem in enumerate(problems):
        seed = seeds[i % len(seeds)]
        planted.append(sft(f"{seed.prompt_text()}\n\n{problem['prompt']}", "ok", len(planted)))
        edited = problem["prompt"].replace("def ", "def my_").replace("Return", "Give back")
        planted.append(
            sft(seed.prompt_text(), edited + problem["canonical_solution"], len(planted))
        )
        expected += [problem["task_id"]] * 2
    for task_id, text in PARAPHRASES.items():
        planted.append(sft(text, "Here is a solution.", len(planted)))
        expected.append(task_id)
    clean = [sft(s.prompt_text(), s.response_text(), 10_000 + i) for i, s in enumerate(seeds)]
    items = load_eval_items(HUMANEVAL)
    out: dict[str, Any] = {"planted": len(planted), "clean": len(clean)}
    for tier, embedder in tiers.items():
        started = time.perf_counter()
        filter_ = ContaminationFilter(items, embedder=embedder)
        caught = filter_.score(planted)
        flagged = filter_.score(clean)
        hits = sum(
            not s.passed and s.evidence.get("eval_item") == want
            for s, want in zip(caught, expected, strict=True)
        )
        false = sum(not s.passed for s in flagged)
        paraphrases = sum(not s.passed for s in caught[-len(PARAPHRASES) :])
        out[tier] = {
            "recall": hits / len(planted),
            "paraphrases_caught": paraphrases,
            "false_positives": false,
            "precision": hits / max(hits + false, 1),
            "seconds": time.perf_counter() - started,
        }
    return out


def coverage(cache: Path, rows: int) -> dict[str, Any]:
    """Both tiers on the first ``rows`` T0 rows, each cold (its own cache directory)."""
    examples = [
        convert({"prompt": p, "completion": c}, "prompt_completion") for p, c in t0_rows(rows)
    ]
    reference = load_reference(REFERENCE, "motivation_app")
    out: dict[str, Any] = {"rows": rows, "reference_prompts": len(reference)}
    reports = {}
    for tier, embedder in embedders(cache / f"coverage-{rows}").items():
        started = time.perf_counter()
        reports[tier] = analyse(
            "bench", T0, examples, embedder, reference=reference, cascade_rows=tier == "cascade"
        )
        seconds = time.perf_counter() - started
        out[tier] = {"seconds": seconds, "rows_per_s": rows / seconds}
    full, fast = reports["full"], reports["cascade"]
    pairs = list(zip(full.reference_coverage, fast.reference_coverage, strict=True))
    out["agreement"] = sum(a.covered == b.covered for a, b in pairs) / len(reference)
    # The prompts the tiers label apart: the full model's best similarity and the cascade's
    # (the cascade can only understate: a missed row it never confirmed).
    out["disagreements"] = [
        {"full": a.similarity, "cascade": b.similarity} for a, b in pairs if a.covered != b.covered
    ]
    out["covered"] = {t: sum(r.covered for r in reports[t].reference_coverage) for t in reports}
    out["gaps"] = {t: [g.label for g in reports[t].gaps] for t in reports}
    out["gap_sizes"] = {
        t: [sum(r.gap_id == g.id for r in reports[t].reference_coverage) for g in reports[t].gaps]
        for t in reports
    }
    # The prompts both tiers leave uncovered: grouped into gaps the same way by both?
    gap_of = {
        t: {r.line: r.gap_id for r in reports[t].reference_coverage if r.gap_id} for t in reports
    }
    both = gap_of["full"].keys() & gap_of["cascade"].keys()
    groups = {
        t: {
            frozenset(line for line in both if gap_of[t][line] == g)
            for g in set(gap_of[t].values())
        }
        - {frozenset()}
        for t in reports
    }
    out["same_clusters"] = groups["full"] == groups["cascade"]
    out["borderline"] = sum(r.borderline for r in fast.reference_coverage)
    out["same_gaps"] = out["gaps"]["full"] == out["gaps"]["cascade"]
    out["speedup"] = out["full"]["seconds"] / out["cascade"]["seconds"]
    return out


# -- speed -------------------------------------------------------------------------------------


def build_rate(embedder: Embedder, rows: list[tuple[str, str]], tier: str) -> dict[str, Any]:
    items = [ReferenceItem(f"t0:{i}", row) for i, row in enumerate(rows)]
    started = time.perf_counter()
    ReferenceIndexes.build(items, IndexOptions(tier=tier), embedder)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    return {"rows": len(items), "seconds": seconds, "rows_per_s": len(items) / seconds}


def million_rows() -> list[ReferenceItem]:
    rows = t0_rows(T0_ROWS)
    items = []
    for variant in range(MILLION_VARIANTS):
        for i, (prompt, _) in enumerate(rows):
            completion = rows[(i + MILLION_STRIDE * variant) % len(rows)][1]
            items.append(ReferenceItem(f"m{variant}:{i}", (prompt, completion)))
    return items


def million_child(cache: Path) -> None:
    """In a child process, so its peak RSS is the index's own."""
    items = million_rows()
    embedder = Embedder(cache_dir=cache, tier="cascade")
    embedder.static.embed(["warm"])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    ReferenceIndexes.build(items, IndexOptions(tier="cascade"), embedder)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "rows": len(items), "seconds": seconds, "rows_per_s": len(items) / seconds,
        "peak_rss_gib": peak / 2**20, "rss_before_build_gib": before / 2**20,
    }))  # fmt: skip


def million(cache: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--million-child", str(cache)],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--coverage-rows", default="10000,50000", help="sizes, comma-separated")
    parser.add_argument("--parts", default="index,duplicates,contamination,coverage")
    parser.add_argument("--index-rows", type=int, default=T0_ROWS)
    parser.add_argument("--full-rows", type=int, default=1_000)
    parser.add_argument("--distractors", type=int, default=3_000)
    parser.add_argument("--million", action="store_true")
    parser.add_argument("--million-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.million_child:
        million_child(args.million_child)
        return 0
    with tempfile.TemporaryDirectory(prefix="gapfill-bench-cascade-") as directory:
        cache = Path(directory)
        tiers = embedders(cache)
        parts = set(args.parts.split(","))
        result: dict[str, Any] = {
            "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}"
        }
        if "index" in parts:
            rows = t0_rows(args.index_rows)
            index = result["index"] = {
                "cascade": build_rate(tiers["cascade"], rows, "cascade"),
                "full": build_rate(tiers["full"], rows[: args.full_rows], "full"),
            }
            index["speedup"] = index["cascade"]["rows_per_s"] / index["full"]["rows_per_s"]
        if "duplicates" in parts:
            dup = result["semantic_duplicates"] = semantic_duplicates(tiers, args.distractors)
            dup["recall_ratio"] = dup["cascade"]["recall"] / max(dup["full"]["recall"], 1e-9)
        if "contamination" in parts:
            con = result["contamination"] = contamination(tiers)
            con["recall_ratio"] = con["cascade"]["recall"] / max(con["full"]["recall"], 1e-9)
        if "coverage" in parts:
            sizes = [int(size) for size in args.coverage_rows.split(",")]
            result["coverage"] = [coverage(cache, size) for size in sizes]
        if args.million:
            result["million"] = million(cache / "cascade")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
