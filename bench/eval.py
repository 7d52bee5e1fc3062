"""Benchmark: `gapfill eval` on 10,000 SFT rows (judge off) next to the raw embedding throughput
of the same texts, in the same run.

    python bench/eval.py [--rows 10000]

Rows (real data): the 1,008 answers of four models to the self-instruct user-oriented
instructions, the HH harmless `chosen` conversations (multi-turn), then T0 prompt/completion rows
until --rows. Eval set: HumanEval. Raw: the sentence-transformers model alone on exactly the texts
the evaluation embeds (each distinct turn once). Target: eval rows/s >= 0.7 x raw rows/s.
"""

from __future__ import annotations

import argparse
import gzip
import json
import lzma
import tempfile
import time
from pathlib import Path

from _data import HH, HUMANEVAL, PREDICTIONS, T0

from generator.dataset_reader import convert
from generator.embeddings import Embedder
from generator.evaluation.runner import EvalOptions, evaluate, read_input
from generator.export.checks import load_tokenizer

TARGET = 0.7


def rows(count: int) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for path in sorted(PREDICTIONS.glob("*.jsonl")):
        for line in path.open(encoding="utf-8"):
            row = json.loads(line)
            if (row.get("response") or "").strip():
                turns = [
                    {"role": "user", "content": row["prompt"].strip()},
                    {"role": "assistant", "content": row["response"].strip()},
                ]
                out.append({"messages": turns})
    with gzip.open(HH, "rt") as handle:
        for line in handle:
            try:
                pair = convert(json.loads(line), "hh")
            except ValueError:
                continue  # the few malformed HH rows
            messages = [m.model_dump() for m in (*pair.prompt, *pair.chosen)]  # type: ignore[union-attr]
            out.append({"messages": messages})
    with lzma.open(T0, "rt") as handle:
        for line in handle:
            if len(out) >= count:
                break
            row = json.loads(line)
            turns = [
                {"role": "user", "content": row["prompt"].strip()},
                {"role": "assistant", "content": row["completion"].strip()},
            ]
            if all(t["content"] for t in turns):
                out.append({"messages": turns})
    return out[:count]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gapfill-bench-eval-") as tmp:
        work = Path(tmp)
        path = work / "rows.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows(args.rows)))
        data = read_input(path, "sft")
        texts = list(dict.fromkeys(m.content for e in data.examples for m in e.turns()))
        tokenizer_dir = work / "data"
        load_tokenizer(None, tokenizer_dir)  # the GGUF converted once, outside the timing

        raw = Embedder()
        raw.encode_uncached(texts[:64])  # warm-up
        started = time.perf_counter()
        raw.encode_uncached(texts)
        raw_s = time.perf_counter() - started

        embedder = Embedder(cache_dir=work / "cold-cache")
        embedder.encode_uncached(texts[:64])  # the same warm-up for this instance
        options = EvalOptions(stage="sft", eval_sets=[HUMANEVAL])
        started = time.perf_counter()
        report = evaluate(data, options, embedder, tokenizer_dir).report
        eval_s = time.perf_counter() - started
    n = len(data.examples)
    raw_rate, rate = n / raw_s, n / eval_s
    if args.json:
        results = {
            "rows": n,
            "distinct_turns": len(texts),
            "raw_rows_per_s": raw_rate,
            "eval_rows_per_s": rate,
            "ratio": rate / raw_rate,
            "target": TARGET,
            "target_met": rate / raw_rate >= TARGET,
            "section_seconds": report.seconds.model_dump(),
        }
        print(json.dumps(results, indent=2))
        return 0
    print(f"{n} SFT rows ({len(texts)} distinct turns); judge off; HumanEval eval set")
    print(f"raw embedding of the same turns : {raw_s:7.1f}s = {raw_rate:6.1f} rows/s")
    print(
        f"gapfill eval, cold cache        : {eval_s:7.1f}s = {rate:6.1f} rows/s "
        f"-> ratio {rate / raw_rate:.2f} (target >= {TARGET})"
    )
    print(f"sections (s): {report.seconds.model_dump()}")
    print(
        f"refusals {report.refusals.share:.1%}, PII rows {report.safety.pii_rows}, "
        f"unsafe rows {report.safety.unsafe_rows}, HumanEval matches "
        f"{report.contamination['HumanEval.jsonl.gz'].rows_matched}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
