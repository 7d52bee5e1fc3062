"""Benchmark: exporting 100,000 accepted items (JSONL, manifest, provenance, card) next to a raw
orjson dump of the same payloads read from the same store, in the same run.

    python bench/export.py [--items 100000]

Items: real prompts and answers from the T0 corpus (bench/data/t0, 55,185 rows; beyond that,
rows repeat with a numbered variant of the prompt so every item is distinct), stored as accepted
in a bundled Valkey, each with an accept decision in the log (the export replays the log for
provenance). Setup writes the log entries directly, in a pipeline: going through claim+decide
would only make the setup slower, not the export.

Two exports of the same items, each next to its own raw dump:
- first, with no token counts cached: the export tokenises every conversation too long to pass
  the length check by its byte count (what an export with a tokenizer nobody counted with pays);
- then, as in normal use: the scoring workers counted each candidate under the default tokenizer
  when they routed it to review (done here the way they do it, timed apart, outside the export).
The second is the figure held against the target: that is what an export of scored items costs.

Baseline: the same payloads read from the store (pipelined HGET) and dumped with orjson, one line
each. Target: export items/s >= 0.5 x baseline items/s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import orjson
import redis
from _data import T0

from generator.export.checks import (
    DEFAULT_MAX_LENGTH,
    LengthCheck,
    load_tokenizer,
    payload_conversations,
)
from generator.export.writer import ExportOptions, ExportResult, export
from generator.redis_server import BundledServer
from generator.schema import (
    Candidate,
    CandidateKind,
    CandidateStatus,
    Decision,
    Message,
    Provenance,
    RunConfig,
    Score,
    SFTExample,
)
from generator.screening import SCREENED_HASH, candidate_screened_hash
from generator.store import Store

TARGET = 0.5


def t0_pairs() -> list[tuple[str, str]]:
    pairs = []
    with lzma.open(T0, "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            prompt, answer = row["prompt"].strip(), row["completion"].strip()
            if prompt and answer:
                pairs.append((prompt, answer))
    return pairs


# Each item carries the passing pii score a screen at import or scoring time leaves (stamped with
# the hash of its content, so the export's gate finds it current): the screen's own cost is
# import's and the filters' (bench/filters.py), not the export's.
_SCREENED = Score(filter="pii", value=0.0, passed=True, reason="no PII or secrets found")


def _stamped(item: Candidate) -> Candidate:
    screen = _SCREENED.model_copy(
        update={"evidence": {SCREENED_HASH: candidate_screened_hash(item)}}
    )
    return item.model_copy(update={"scores": {"pii": screen}})


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
                    scores={"pii": _SCREENED},
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
        store.put_many(_stamped(c) for c in batch)
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


def no_background_rewrites(client: redis.Redis) -> None:
    """The server's append-only file is not rewritten while timings are taken.

    Seeding grows it by hundreds of MB and every export marks 100,000 items, so the server would
    fork a rewrite (a full core for seconds, on a two-core machine) in the middle of whichever
    measurement came next: the raw dump or the export, by chance. The rewrite in progress, if
    any, is waited out.
    """
    client.config_set("auto-aof-rewrite-percentage", 0)
    while cast(dict[str, Any], client.info("persistence"))["aof_rewrite_in_progress"]:
        time.sleep(0.2)


def raw_dump(store: Store, out: Path) -> tuple[int, float]:
    """Read every payload from the store and dump it; returns the count and the seconds."""
    started = time.perf_counter()
    ids = sorted(store.ids("bench", CandidateStatus.ACCEPTED))
    payloads = []
    for start in range(0, len(ids), 5000):
        with store.redis.pipeline(transaction=False) as pipe:
            for item_id in ids[start : start + 5000]:
                pipe.hget(store.keys.item(item_id), "data")
            payloads.extend(orjson.loads(b)["payload"] for b in pipe.execute())
    with out.open("wb") as handle:
        handle.writelines(orjson.dumps(p) + b"\n" for p in payloads)
    return len(ids), time.perf_counter() - started


def prime_like_the_workers(store: Store, tokenizer: object) -> float:
    """Token counts as the scoring workers cache them (workers/jobs.score_batch); seconds."""
    started = time.perf_counter()
    ids = sorted(store.ids("bench", CandidateStatus.ACCEPTED))
    lengths = LengthCheck(tokenizer, DEFAULT_MAX_LENGTH, cache=store)
    for start in range(0, len(ids), 5000):
        items = store.get_many_raw(ids[start : start + 5000])
        lengths.prime([c for item in items for c in payload_conversations(item["payload"])])
    return time.perf_counter() - started


def timed_export(store: Store, out: Path, data_dir: Path) -> tuple[ExportResult, float]:
    # The eval report embeds every row (the embedding cache makes that free when the scoring
    # workers ran here); measured by bench/eval.py, so left out of this figure.
    options = ExportOptions(runs=["bench"], kind=CandidateKind.SFT, out=out, evaluate=False)
    started = time.perf_counter()
    result = export(store, options, data_dir)
    return result, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; medians reported")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    say = (lambda *_: None) if args.json else print
    with tempfile.TemporaryDirectory(prefix="gapfill-bench-export-") as tmp:
        work = Path(tmp)
        server = BundledServer(work / "valkey", appendfsync="no")
        info = server.ensure_running()
        client = redis.Redis.from_url(info.url, decode_responses=True)
        store = Store(client, prefix="bench")
        try:
            started = time.perf_counter()
            seed(store, args.items)
            say(f"seeded {args.items} accepted items in {time.perf_counter() - started:.1f}s")
            no_background_rewrites(client)
            tokenizer = load_tokenizer(None, work / "data")  # GGUF converted once, untimed

            cache = store.keys.tokens(LengthCheck(tokenizer, 16).fingerprint)
            figures = {"cold": _measured(store, work, "cold", args.repeat, before=cache)}
            prime_s = prime_like_the_workers(store, tokenizer)
            figures["warm"] = _measured(store, work, "warm", args.repeat)
        finally:
            client.close()
            server.stop()
        data = {digest for f in figures.values() for digest in f.pop("data_sha256")}
        if len(data) != 1:
            raise SystemExit("the exports differ: cached token counts changed the data")
        if args.json:
            warm_figures = figures["warm"]
            print(
                json.dumps(
                    {
                        "items": args.items,
                        "raw_items_per_s": warm_figures["raw_items_per_s"],
                        "export_items_per_s": warm_figures["export_items_per_s"],
                        "ratio": warm_figures["ratio"],
                        "target": TARGET,
                        "target_met": warm_figures["ratio"] >= TARGET,
                        "scoring_time_counting_s": prime_s,
                        "exports": figures,
                    },
                    indent=2,
                )
            )
            return 0
        for name, label in (
            ("cold", "no token counts cached (every long conversation tokenised)"),
            ("warm", "token counts cached at scoring time, as the workers do"),
        ):
            f = figures[name]
            print(f"\n{name}: {label}")
            print(
                f"  medians of {args.repeat}: raw orjson dump (store read + dump): "
                f"{f['raw_items_per_s']:,.0f} items/s; "
                f"gapfill export: {f['rows']} rows in {f['export_s']:.2f}s = "
                f"{f['export_items_per_s']:,.0f} items/s -> ratio {f['ratio']:.2f} "
                f"(target >= {TARGET})"
            )
            stages = ", ".join(f"{n} {sec:.2f}s" for n, sec in f["stage_seconds"].items())
            print(f"  stages: {stages}")
            print(
                f"  conversations tokenised: {f['tokenised']}, counts from the cache: "
                f"{f['cached']} (the rest fit by byte count)"
            )
        print(f"\ncounting at scoring time (not in the export): {prime_s:.2f}s in all")
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


def _measured(store: Store, work: Path, mode: str, repeat: int, before: str = "") -> dict[str, Any]:
    """Median figures of ``repeat`` raw dumps and exports, taken in turns (drift hits both).

    ``before``: a key deleted before each export (the token count cache, for the cold runs).
    """
    raws, exports, digests = [], [], set()
    for attempt in range(repeat):
        raws.append(raw_dump(store, work / "raw.jsonl"))
        if before:
            store.redis.delete(before)
        out = work / f"export-{mode}-{attempt}"
        exports.append(timed_export(store, out, work / "data"))
        counts = json.loads((out / "manifest.json").read_text())["counts"]
        digests.add(hashlib.sha256((out / "train.jsonl").read_bytes()).hexdigest())
        # Gone before the next run: a GB of finished exports in the page cache, written back
        # to disk in the background, would slow whatever ran next.
        shutil.rmtree(out)
    dumped, raw_s = sorted(raws, key=lambda r: r[1])[len(raws) // 2]
    result, export_s = sorted(exports, key=lambda r: r[1])[len(exports) // 2]
    rows = sum(result.rows.values())
    return {
        "data_sha256": sorted(digests),
        "rows": rows,
        "export_s": export_s,
        "export_runs_s": [e[1] for e in exports],
        "raw_runs_s": [r[1] for r in raws],
        "raw_items_per_s": dumped / raw_s,
        "export_items_per_s": rows / export_s,
        "ratio": (rows / export_s) / (dumped / raw_s),
        "stage_seconds": result.seconds,
        "tokenised": counts["length_checked_with_tokenizer"],
        "cached": counts["length_counts_from_cache"],
    }


if __name__ == "__main__":
    raise SystemExit(main())
