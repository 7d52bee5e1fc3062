"""Benchmark: coverage analysis throughput next to raw embedding throughput, same texts, same run.

    python bench/coverage.py [--examples 5000]

Existing data: the first N rows of the T0 corpus (bench/data/t0/t0_train_50k.jsonl.xz);
reference: the 252 user-oriented self-instruct prompts. Figures:
- raw: the sentence-transformers model alone on exactly the texts the analysis embeds;
- analysis: `coverage.analyse` from scratch (empty embedding cache): embedding, nearest
  neighbours, clustering, report; as examples/s, and its ratio to raw (target >= 0.8);
- second run on the same corpus (warm cache): speed-up over the first (target >= 10x);
- peak RSS.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

from _data import REFERENCE, T0

from generator.coverage import analyse, load_reference, prompt_texts
from generator.dataset_reader import convert, iter_records
from generator.embeddings import Embedder
from generator.schema import PreferenceExample, SFTExample

TARGET_RATIO, TARGET_SPEEDUP = 0.8, 10.0


def t0_slice(count: int) -> list[SFTExample | PreferenceExample]:
    examples = []
    for _, record in iter_records(T0):
        examples.append(convert(record, "prompt_completion"))
        if len(examples) == count:
            break
    return examples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=5000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    examples = t0_slice(args.examples)
    reference = load_reference(REFERENCE, "motivation_app")
    texts = prompt_texts(examples) + [p.text for p in reference]
    unique = list(dict.fromkeys(texts))

    raw_model = Embedder()
    raw_model.encode_uncached(unique[:64])  # warm-up: first-call allocations
    started = time.perf_counter()
    raw_model.encode_uncached(unique)
    raw_seconds = time.perf_counter() - started

    with tempfile.TemporaryDirectory(prefix="gapfill-bench-cov-") as cache:
        embedder = Embedder(cache_dir=Path(cache))
        embedder.encode_uncached(unique[:64])  # the same warm-up for this model instance
        started = time.perf_counter()
        report = analyse("bench", T0, examples, embedder, reference=reference)
        first_seconds = time.perf_counter() - started
        computed = embedder.computed

        again = Embedder(cache_dir=Path(cache))
        started = time.perf_counter()
        analyse("bench", T0, examples, again, reference=reference)
        second_seconds = time.perf_counter() - started

    raw_rate = args.examples / raw_seconds
    analysis_rate = args.examples / first_seconds
    results = {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "examples": args.examples,
        "reference_prompts": len(reference),
        "texts_embedded": computed,
        "raw_embedding_texts_per_s": len(unique) / raw_seconds,
        "raw_examples_per_s": raw_rate,
        "analysis_examples_per_s": analysis_rate,
        "ratio": analysis_rate / raw_rate,
        "first_run_s": first_seconds,
        "second_run_s": second_seconds,
        "speedup": first_seconds / second_seconds,
        "gaps": len(report.gaps),
        "covered_share": report.covered_share,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"{args.examples} T0 examples + {len(reference)} reference prompts "
        f"({len(unique)} distinct texts)"
    )
    print(
        f"raw embedding (model alone)   : {raw_seconds:7.1f}s = {raw_rate:6.1f} examples/s "
        f"({results['raw_embedding_texts_per_s']:.1f} texts/s)"
    )
    print(
        f"coverage analysis, cold cache : {first_seconds:7.1f}s = {analysis_rate:6.1f} examples/s"
        f" -> ratio {results['ratio']:.3f} (target >= {TARGET_RATIO})"
    )
    print(
        f"coverage analysis, warm cache : {second_seconds:7.1f}s -> {results['speedup']:.1f}x "
        f"faster (target >= {TARGET_SPEEDUP:.0f}x)"
    )
    print(
        f"{len(report.gaps)} gaps; {report.covered_share:.0%} of reference prompts covered; "
        f"peak RSS {results['peak_rss_mib']:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
