"""Benchmark: the filter pipeline's throughput next to raw embedding throughput, same run.

    python bench/filters.py [--existing 55185] [--candidates 2000] [--cache DIR]

Existing set: the T0 corpus (bench/data/t0/t0_train_50k.jsonl.xz, 55,185 prompt/completion
rows), indexed once (exact digests, MinHash LSH, HNSW over embeddings) and cached on disk under
``--cache``; the first run's build time and embedding throughput are reported as their own figure
(later runs load the cache and report the load time, plus the stored build figures).

Candidates: real model outputs: the four self-instruct prediction files (1,008 answers to the
user-oriented instructions), HH harmless first turns with their chosen answers, and 5% T0 rows
with a light edit (realistic near duplicates). Eval set: HumanEval. Judge off.

Figures:
- raw: the sentence-transformers model alone on exactly the texts the pipeline embeds (each
  candidate's turns; also shown: the candidates' full texts, one text each);
- pipeline: every filter (malformed, exact/near/semantic duplicates against the 55k set,
  quality, language, unsafe, PII/secrets, contamination, diversity) from a cold embedding cache,
  candidates/s, and its ratio to raw (target >= 0.8).
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import resource
import tempfile
import time
from collections import Counter
from pathlib import Path

from _data import HH, HUMANEVAL, PREDICTIONS, T0

from generator.dataset_reader import convert, iter_records
from generator.embeddings import Embedder
from generator.filters.base import full_text, turn_texts
from generator.filters.contamination import load_eval_items
from generator.filters.pipeline import FilterPipeline
from generator.filters.reference import IndexOptions, ReferenceIndexes, ReferenceItem
from generator.filters.settings import FilterSettings
from generator.schema import Candidate, CandidateKind, Message, SFTExample

TARGET_RATIO = 0.8


def t0_items(count: int) -> list[ReferenceItem]:
    items = []
    for line, record in iter_records(T0):
        example = convert(record, "prompt_completion")
        items.append(ReferenceItem(f"t0:{line}", tuple(m.content for m in example.turns())))
        if len(items) == count:
            break
    return items


def sft(prompt: str, answer: str) -> SFTExample:
    return SFTExample(
        messages=[Message(role="user", content=prompt), Message(role="assistant", content=answer)]
    )


def candidates(count: int, existing: list[ReferenceItem]) -> list[Candidate]:
    examples: list[SFTExample] = []
    for path in sorted(PREDICTIONS.glob("*.jsonl")):
        for line in path.open(encoding="utf-8"):
            row = json.loads(line)
            answer = (row.get("response") or "").strip()
            if answer:
                examples.append(sft(row["prompt"].strip(), answer))
    with gzip.open(HH, "rt", encoding="utf-8") as handle:
        for line in handle:
            chosen = json.loads(line)["chosen"]
            human, _, rest = chosen.partition("\n\nAssistant:")
            answer = rest.split("\n\nHuman:")[0].strip()
            if answer:
                examples.append(sft(human.replace("Human:", "").strip(), answer))
    copies = max(count // 20, 1)
    step = max(len(existing) // copies, 1)
    edited = [
        sft(existing[i].turns[0].replace(" the ", " a ", 1), existing[i].turns[-1])
        for i in range(0, step * copies, step)
    ]
    chosen = examples[: count - len(edited)] + edited
    return [
        Candidate(id=f"bench-{i}", kind=CandidateKind.SFT, payload=e, run_id="bench", gap_id="g")
        for i, e in enumerate(chosen)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--existing", type=int, default=55_185)
    parser.add_argument("--candidates", type=int, default=2000)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "gapfill-bench")
    parser.add_argument(
        "--max-tokens", type=int, default=None, help="embedding truncation (default: the model's)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    existing = t0_items(args.existing)
    batch = candidates(args.candidates, existing)
    settings = FilterSettings()
    options = IndexOptions(near_threshold=settings.near_duplicate_threshold)

    builder = Embedder(cache_dir=args.cache / "embeddings", max_tokens=args.max_tokens)
    started = time.perf_counter()
    shared = ReferenceIndexes.cached(existing, options, builder, args.cache / "indexes")
    index_seconds = time.perf_counter() - started
    key = ReferenceIndexes.cache_key(existing, options, builder)
    build_record = args.cache / "indexes" / f"{key}.build.json"
    if not shared.loaded_from_cache:
        texts = sum(len(i.turns) for i in existing)
        build_record.write_text(
            json.dumps({"seconds": index_seconds, "texts": texts, "embedded": shared.embedded})
        )
    build = json.loads(build_record.read_text()) if build_record.exists() else None

    # Distinct texts: the pipeline embeds each text once (four models answered the same prompts).
    turn_list = list(dict.fromkeys(t for c in batch for t in turn_texts(c)))
    whole = list(dict.fromkeys(full_text(c) for c in batch))
    raw = Embedder(max_tokens=args.max_tokens)
    raw.encode_uncached(turn_list[:64])  # warm-up: first-call allocations
    started = time.perf_counter()
    raw.encode_uncached(turn_list)
    raw_seconds = time.perf_counter() - started
    started = time.perf_counter()
    raw.encode_uncached(whole)
    whole_seconds = time.perf_counter() - started

    eval_items = load_eval_items(HUMANEVAL)
    with tempfile.TemporaryDirectory(prefix="gapfill-bench-filters-") as cold:
        embedder = Embedder(cache_dir=Path(cold), max_tokens=args.max_tokens)
        embedder.encode_uncached(turn_list[:64])  # the same warm-up for this model instance
        # Once per run, like the existing set's indexes: the eval set's embeddings.
        started = time.perf_counter()
        pipeline = FilterPipeline.build(
            settings, eval_items=eval_items, embedder=embedder, shared=shared
        )
        setup_seconds = time.perf_counter() - started
        embedder.computed = 0
        started = time.perf_counter()
        scored = pipeline.score(batch)
        routes = Counter(pipeline.route(c).value for c in scored)
        pipeline_seconds = time.perf_counter() - started
        embedded = embedder.computed

    failures = Counter(n for c in scored for n, s in c.scores.items() if not s.passed)
    raw_rate = len(batch) / raw_seconds
    rate = len(batch) / pipeline_seconds
    results = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "existing": len(existing),
        "embedding_max_tokens": args.max_tokens or "model default",
        "candidates": len(batch),
        "index_built_now": not shared.loaded_from_cache,
        "index_ready_s": index_seconds,
        "index_build": build,
        "raw_turn_texts": len(turn_list),
        "raw_candidates_per_s": raw_rate,
        "raw_full_text_candidates_per_s": len(batch) / whole_seconds,
        "pipeline_candidates_per_s": rate,
        "ratio": rate / raw_rate,
        "texts_embedded_by_pipeline": embedded,
        "pipeline_setup_s": setup_seconds,
        "filter_seconds": {name: round(v, 2) for name, v in pipeline.seconds.items()},
        "routes": dict(routes),
        "failures": dict(failures),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"{len(batch)} candidates against {len(existing)} existing T0 rows; HumanEval eval set; "
        f"embedding truncation: {results['embedding_max_tokens']}"
    )
    if build is not None:
        print(
            f"existing-set indexes, cold build : {build['seconds']:7.1f}s for {build['texts']} "
            f"texts ({build['embedded']} embedded: "
            f"{build['embedded'] / build['seconds']:.1f} texts/s incl. MinHash and HNSW)"
        )
    state = "built" if results["index_built_now"] else "loaded from the disk cache"
    print(f"existing-set indexes, this run   : {index_seconds:7.1f}s ({state})")
    print(
        f"raw embedding (model alone)      : {raw_seconds:7.1f}s = {raw_rate:6.1f} candidates/s "
        f"({len(turn_list)} turns); full texts: "
        f"{results['raw_full_text_candidates_per_s']:.1f} candidates/s"
    )
    print(
        f"filter pipeline, cold cache      : {pipeline_seconds:7.1f}s = {rate:6.1f} candidates/s "
        f"-> ratio {results['ratio']:.3f} (target >= {TARGET_RATIO})"
    )
    print(f"pipeline set-up (eval set embedded once per run): {setup_seconds:.1f}s")
    print(f"seconds per filter: {results['filter_seconds']}")
    print(f"routes: {dict(routes)}; failed filters: {dict(failures)}")
    print(f"texts embedded by the pipeline: {embedded}; peak RSS {results['peak_rss_mib']:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
