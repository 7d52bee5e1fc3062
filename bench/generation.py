"""Benchmark: pipeline efficiency of generation, same prompts, same run.

    python bench/generation.py [--backend local] [--prompts 64] [--max-tokens 64]
    .venv-vllm/bin/python bench/generation.py --backend vllm     # vLLM's CPU engine

(a) the backend called directly on 64 prompts; (b) the same prompts as generation tasks through
gapfill: stored in Redis, enqueued as an RQ job, run by a gapfill worker (in this process, the
backend already loaded), outputs stored by content hash, scoring jobs run. Both use the same
seeds, so they generate the same text. Reported: generated tokens/s of each and the ratio
(b)/(a) (target >= 0.9, goal 0.95), the backend's load (worker start-up) time, and peak RSS.
Prompts: the self-instruct seed tasks (tests/data/self-instruct).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import redis
from _data import SEED_TASKS

from generator.backends import BackendOptions, ChatRequest, create_backend
from generator.config import QueueSettings
from generator.connection import connect
from generator.dataset_reader import read_examples
from generator.generation import requests_for
from generator.queueing import WorkQueue, queue_names
from generator.redis_server import BundledServer
from generator.schema import GenerationTask, SamplingParams, SFTExample
from generator.store import Store
from workers.registry import install
from workers.worker import GapfillWorker

TARGET, GOAL = 0.9, 0.95


def prompts(count: int, max_tokens: int) -> list[GenerationTask]:
    examples = [r.example for r in read_examples(SEED_TASKS).examples]
    tasks = []
    for index, example in enumerate(examples[:count]):
        assert isinstance(example, SFTExample)
        tasks.append(
            GenerationTask(
                run_id="bench",
                gap_id=f"g{index % 8}",
                messages=example.messages[:-1],
                sampling=SamplingParams(max_tokens=max_tokens, temperature=0.7, seed=index),
            )
        )
    return tasks


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def tree_rss_mib() -> float | None:
    """RSS of this process and its children now (vLLM's engine runs in child processes)."""
    try:
        import psutil
    except ImportError:
        return None
    me = psutil.Process()
    processes = [me, *me.children(recursive=True)]
    return sum(p.memory_info().rss for p in processes) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="local", choices=["local", "vllm"])
    parser.add_argument("--model", help="a model directory (default: the bundled SmolLM2)")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

    temp = Path(tempfile.mkdtemp(prefix="gapfill-bench-gen-"))
    data_dir = Path(os.environ.get("GAPFILL_BENCH_DATA_DIR", temp))
    options = BackendOptions(
        dtype="float32", enforce_eager=True, max_model_len=2048, batch_size=8, device="cpu"
    )
    backend = create_backend(args.backend, args.model, options, data_dir=data_dir)
    started = time.perf_counter()
    backend.load()
    load_seconds = time.perf_counter() - started
    install(backend)

    tasks = prompts(args.prompts, args.max_tokens)
    requests: list[ChatRequest] = [r for t in tasks for r in requests_for(t)]
    # Warm-up. vLLM caches prompt prefixes: it warms up on every prompt, so that (a) and (b) both
    # run with a warm cache (otherwise (b) would gain from (a)'s). transformers has no such cache.
    backend.generate(requests if args.backend == "vllm" else requests[:4])

    started = time.perf_counter()
    direct = backend.generate(requests)
    direct_seconds = time.perf_counter() - started
    direct_tokens = sum(r.completion_tokens for r in direct)

    server = BundledServer(temp / "store", appendfsync="always")
    url = server.ensure_running().url
    try:
        store = Store(connect(url), prefix="bench")
        connection = redis.Redis.from_url(url)
        work = WorkQueue(store, connection, QueueSettings(batch_size=args.prompts, retries=0))
        started = time.perf_counter()
        store.add_tasks(tasks)
        work.enqueue_tasks("bench")
        worker = GapfillWorker(
            list(queue_names("bench")), connection=connection, maintenance_interval=30
        )
        worker.work(burst=True, logging_level="ERROR")
        piped_seconds = time.perf_counter() - started
        done, total = store.task_counts("bench")
        piped_tokens = int(store.run_stats("bench")["completion_tokens"])
        scored = sum(store.counts("bench").get(f"g{i}", {}).get("generated", 0) for i in range(8))
    finally:
        server.stop()

    direct_rate, piped_rate = direct_tokens / direct_seconds, piped_tokens / piped_seconds
    ratio = piped_rate / direct_rate
    results = {
        "backend": f"{args.backend} ({backend.model})",
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "prompts": args.prompts,
        "max_tokens": args.max_tokens,
        "direct_tokens": direct_tokens,
        "direct_tokens_per_s": direct_rate,
        "pipeline_tokens": piped_tokens,
        "pipeline_tokens_per_s": piped_rate,
        "pipeline_tasks_done": f"{done}/{total}",
        "unscored_after_run": scored,
        "ratio": ratio,
        "target": TARGET,
        "target_met": ratio >= TARGET,
        "worker_startup_s": load_seconds,
        "peak_rss_mib": peak_rss_mib(),
        "process_tree_rss_mib": tree_rss_mib(),
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"backend {results['backend']} on {results['machine']}: {args.prompts} prompts, "
        f"max_tokens {args.max_tokens}, same seeds in both paths"
    )
    print(
        f"(a) backend directly          : {direct_tokens:>6} tokens in {direct_seconds:6.1f}s"
        f" = {direct_rate:7.1f} tok/s"
    )
    print(
        f"(b) gapfill generate (RQ+store): {piped_tokens:>6} tokens in {piped_seconds:6.1f}s"
        f" = {piped_rate:7.1f} tok/s  ({done}/{total} tasks, scored)"
    )
    verdict = (
        "MET" if ratio >= GOAL else ("MET (below the 0.95 goal)" if ratio >= TARGET else "MISSED")
    )
    print(f"ratio (b)/(a): {ratio:.3f} (target >= {TARGET}, goal {GOAL}) -> {verdict}")
    tree = results["process_tree_rss_mib"]
    print(
        f"worker start-up (backend load): {load_seconds:.1f}s; peak RSS {peak_rss_mib():.0f} MiB"
        + (f"; RSS with child processes (engine) {tree:.0f} MiB" if tree is not None else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
