"""Benchmark: exporting 100,000 accepted items (JSONL, manifest, provenance, card) next to a raw
orjson dump of the same payloads read from the same store, in the same run.

    python bench/export.py [--items 100000]

Items: real prompts and answers from the T0 corpus (../shared/data/t0, 55,185 rows; beyond that,
rows repeat with a numbered variant of the prompt so every item is distinct), stored as accepted
in an embedded Valkey, each with an accept decision in the log (the export replays the log for
provenance). Setup writes the log entries directly, in a pipeline: going through claim+decide
would only make the setup slower, not the export.

Baseline: the same payloads read from the store (pipelined HGET, as the export reads) and dumped
with orjson, one line each. Target: export items/s >= 0.5 x baseline items/s.
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import tempfile
import time
from pathlib import Path

import orjson
import redis

from generator.export.checks import load_tokenizer
from generator.export.writer import ExportOptions, export
from generator.redis_server import EmbeddedServer
from generator.schema import (
    Candidate,
    CandidateKind,
    CandidateStatus,
    Decision,
    Message,
    Provenance,
    RunConfig,
    SFTExample,
)
from generator.store import Store

ROOT = Path(__file__).resolve().parents[1]
T0 = ROOT.parent / "shared" / "data" / "t0" / "t0_train_50k.jsonl.gz"
TARGET = 0.5


def t0_pairs() -> list[tuple[str, str]]:
    pairs = []
    with gzip.open(T0, "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            prompt, answer = row["prompt"].strip(), row["completion"].strip()
            if prompt and answer:
                pairs.append((prompt, answer))
    return pairs


def seed(store: Store, count: int) -> None:
    pairs = t0_pairs()
    store.save_run(RunConfig(run_id="bench"))
    for start in range(0, count, 5000):
        batch = []
        for index in range(start, min(start + 5000, count)):
            prompt, answer = pairs[index % len(pairs)]
            if index >= len(pairs):
                prompt = f"{prompt}\n(variant {index // len(pairs)})"
            batch.append(
                Candidate(
                    kind=CandidateKind.SFT,
                    payload=SFTExample(
                        messages=[
                            Message(role="user", content=prompt),
                            Message(role="assistant", content=answer),
                        ]
                    ),
                    run_id="bench",
                    gap_id=f"gap-{index % 12}",
                    status=CandidateStatus.ACCEPTED,
                    provenance=Provenance(
                        backend="vllm",
                        model="SmolLM2-135M-Instruct",
                        sampling={"temperature": 0.7, "top_p": 0.95, "max_tokens": 512},
                        template_name="responses.jinja",
                        template_hash="0" * 16,
                        run_id="bench",
                    ),
                )
            )
        store.put_many(batch)
        with store.redis.pipeline(transaction=False) as pipe:
            for item in batch:
                decision = Decision(
                    item_id=item.id, run_id="bench", reviewer="alice", verdict="accept",
                    item_version=0,
                )  # fmt: skip
                pipe.xadd(
                    store.keys.log,
                    {
                        "item": item.id,
                        "run": "bench",
                        "gap": item.gap_id,
                        "verdict": "accept",
                        "decision": decision.model_dump_json(exclude={"run_id", "gap_id"}),
                    },
                )
            pipe.execute()


def raw_dump(store: Store, out: Path) -> tuple[int, float]:
    """Read every payload from the store and dump it; returns the count and the dump's share."""
    ids = sorted(store.ids("bench", CandidateStatus.ACCEPTED))
    payloads = []
    for start in range(0, len(ids), 5000):
        with store.redis.pipeline(transaction=False) as pipe:
            for item_id in ids[start : start + 5000]:
                pipe.hget(store.keys.item(item_id), "data")
            payloads.extend(orjson.loads(b)["payload"] for b in pipe.execute())
    started = time.perf_counter()
    with out.open("wb") as handle:
        handle.writelines(orjson.dumps(p) + b"\n" for p in payloads)
    return len(ids), time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gapfill-bench-export-") as tmp:
        work = Path(tmp)
        server = EmbeddedServer(work / "valkey", appendfsync="no")
        info = server.ensure_running()
        client = redis.Redis.from_url(info.url, decode_responses=True)
        store = Store(client, prefix="bench")
        try:
            started = time.perf_counter()
            seed(store, args.items)
            seed_s = time.perf_counter() - started
            if not args.json:
                print(f"seeded {args.items} accepted items in {seed_s:.1f}s")

            started = time.perf_counter()
            dumped, dump_only_s = raw_dump(store, work / "raw.jsonl")
            raw_s = time.perf_counter() - started

            # The eval report embeds every row (the embedding cache makes that free when the
            # scoring workers ran here); measured by bench/eval.py, so left out of this figure.
            options = ExportOptions(
                runs=["bench"], kind=CandidateKind.SFT, out=work / "export", evaluate=False
            )
            load_tokenizer(None, work / "data")  # the GGUF converted once, outside the timing
            started = time.perf_counter()
            result = export(store, options, work / "data")
            export_s = time.perf_counter() - started
        finally:
            client.close()
            server.stop()
        manifest = json.loads((work / "export" / "manifest.json").read_text())
        raw_rate, rate = dumped / raw_s, sum(result.rows.values()) / export_s
        if args.json:
            results = {
                "items": args.items,
                "raw_items_per_s": raw_rate,
                "export_items_per_s": rate,
                "ratio": rate / raw_rate,
                "target": TARGET,
                "target_met": rate / raw_rate >= TARGET,
                "stage_seconds": result.seconds,
                "length_checked_with_tokenizer": manifest["counts"][
                    "length_checked_with_tokenizer"
                ],
            }
            print(json.dumps(results, indent=2))
            return 0
        print(
            f"raw orjson dump (store read + dump): {dumped} items in {raw_s:.1f}s = "
            f"{raw_rate:,.0f} items/s (the dump alone, from memory: {dump_only_s:.2f}s)"
        )
        print(
            f"gapfill export (selection, checks, JSONL, provenance, manifest, card): "
            f"{sum(result.rows.values())} rows in {export_s:.1f}s = {rate:,.0f} items/s "
            f"-> ratio {rate / raw_rate:.2f} (target >= {TARGET})"
        )
        stages = ", ".join(f"{name} {sec:.1f}s" for name, sec in result.seconds.items())
        print(f"export stages: {stages}")
        print(
            f"excluded {len(result.excluded)}; length-checked with the tokenizer: "
            f"{manifest['counts']['length_checked_with_tokenizer']} conversations "
            f"(the rest fit by byte count); files: "
            + ", ".join(f"{n} {f['bytes'] / 1e6:.1f} MB" for n, f in manifest["files"].items())
        )
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
