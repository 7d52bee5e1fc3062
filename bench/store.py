"""Benchmark: review round trips (claim + decide) next to raw Redis round trips, same run.

    python bench/store.py [--items 2000] [--url redis://...] [--appendfsync always|everysec]
                          [--no-capacity]

Without --url it starts a bundled Valkey in a temp directory, configured as gapfill configures
its own (AOF on, fsync policy as given; the product default is 'always'). The baseline is the
same Python client doing sequential PING and SET round trips on the same connection, plus
`redis-benchmark` (single client, no pipelining) when it is installed. Target: p95 of one
claim+decide under 5 ms.

Then (``bench/store_capacity.py``) the store's cost per job and per decision with 8, 32 and 128
concurrent clients, and what follows: how many GPU workers and reviewers one server serves.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from store_capacity import LEVELS, capacity, measure, table

from generator.redis_server import BundledServer
from generator.schema import Candidate, CandidateKind, CandidateStatus, Message, SFTExample
from generator.screening import screen_all
from generator.store import Store

TARGET_P95_MS = 5.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(operation: Callable[[], Any], count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        operation()
        latencies.append((time.perf_counter() - start) * 1000)
    return latencies


def summary(name: str, latencies: list[float]) -> dict[str, Any]:
    total_s = sum(latencies) / 1000
    return {
        "figure": name,
        "ops_per_s": len(latencies) / total_s,
        "p50_ms": statistics.median(latencies),
        "p95_ms": percentile(latencies, 0.95),
        "p99_ms": percentile(latencies, 0.99),
    }


def seed(store: Store, run_id: str, count: int) -> None:
    candidates = [
        Candidate(
            kind=CandidateKind.SFT,
            payload=SFTExample(
                messages=[
                    Message(role="user", content=f"{run_id} question {i}: explain item {i}."),
                    Message(
                        role="assistant", content=f"A realistic answer of some length {i}. " * 8
                    ),
                ]
            ),
            run_id=run_id,
            gap_id=f"gap-{i % 10}",
            status=CandidateStatus.PENDING,
            priority=float(i % 97),
        )
        for i in range(count)
    ]
    # Stored as import and the filters store them: screened. (A decision screens again only an
    # edit, or an item whose screen is missing or stale.)
    for start in range(0, count, 500):
        store.put_many(screen_all(candidates[start : start + 500]))


def review_loop(store: Store, run_id: str, reviewer: str, count: int) -> list[float]:
    latencies = []
    verdicts = ["accept", "reject", "accept", "skip"]
    for index in range(count):
        start = time.perf_counter()
        lease = store.claim(reviewer, run_id)
        if lease is None:
            break
        store.decide(lease.item_id, reviewer, verdicts[index % 4], lease.version)  # type: ignore[arg-type]
        latencies.append((time.perf_counter() - start) * 1000)
    return latencies


def concurrent_reviewers(url: str, prefix: str, run_id: str, reviewers: int, each: int) -> float:
    stores = [
        Store(redis.Redis.from_url(url, decode_responses=True), prefix) for _ in range(reviewers)
    ]
    done = [0] * reviewers

    def work(index: int) -> None:
        done[index] = len(review_loop(stores[index], run_id, f"r{index}", each))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(reviewers)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - start)


def redis_benchmark(port: int, host: str, password: str | None = None) -> dict[str, float]:
    binary = shutil.which("redis-benchmark") or shutil.which("valkey-benchmark")
    if binary is None:
        return {}
    result = subprocess.run(
        [binary, "-h", host, "-p", str(port), "-c", "1", "-n", "20000", "-t", "ping,set", "--csv"]
        # the bundled server's password: a throwaway server's, so argv is acceptable here
        + (["-a", password] if password else []),
        capture_output=True,
        text=True,
        timeout=120,
    )
    figures = {}
    for line in result.stdout.splitlines()[1:]:
        cells = [c.strip('"') for c in line.split(",")]
        if len(cells) >= 2:
            figures[cells[0]] = float(cells[1])
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--url", help="benchmark this server instead of a bundled one")
    parser.add_argument("--appendfsync", default="always", choices=["always", "everysec", "no"])
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--no-capacity", action="store_true", help="skip the 8/32/128-client capacity runs"
    )
    args = parser.parse_args()

    temp = tempfile.TemporaryDirectory(prefix="gapfill-bench-")
    server = None
    if args.url:
        url = args.url
    else:
        server = BundledServer(Path(temp.name), appendfsync=args.appendfsync)
        url = server.ensure_running().url
    client = redis.Redis.from_url(url, decode_responses=True)
    prefix = f"gapfill-bench-{uuid.uuid4().hex[:8]}"
    store = Store(client, prefix=prefix)
    try:
        seed(store, "bench", args.items)
        seed(store, "bench-concurrent", args.items)
        key = f"{prefix}:raw"
        for _ in range(200):  # warm up connection, scripts and caches
            client.ping()
        ping = summary("raw PING round trip", timed(client.ping, args.items))
        value = "x" * 64
        set_ = summary("raw SET round trip", timed(lambda: client.set(key, value), args.items))
        review = summary("claim+decide", review_loop(store, "bench", "alice", args.items))
        concurrent = concurrent_reviewers(url, prefix, "bench-concurrent", 8, args.items // 8)
        levels = [] if args.no_capacity else measure(url)
        kwargs = client.get_connection_kwargs()
        external = (
            redis_benchmark(int(kwargs["port"]), str(kwargs["host"]), kwargs.get("password"))
            if server
            else {}
        )
    finally:
        store.delete_prefix()
        if server is not None:
            server.stop()
        temp.cleanup()

    results = {
        "server": "bundled Valkey" if server else url,
        "appendfsync": args.appendfsync if server else "(server's own)",
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "figures": [ping, set_, review],
        "claim_decide_vs_set_ratio": review["ops_per_s"] / set_["ops_per_s"],
        "concurrent_8_reviewers_decisions_per_s": concurrent,
        "redis_benchmark_rps": external,
        "target_p95_ms": TARGET_P95_MS,
        "target_met": review["p95_ms"] < TARGET_P95_MS,
        "capacity_levels": [{**level.__dict__, "per_second": level.per_second} for level in levels],
        "capacity": (
            {
                **capacity(levels).__dict__,
                "gpu_workers": capacity(levels).gpu_workers,
                "reviewers": capacity(levels).reviewers,
            }
            if levels
            else None
        ),
        "capacity_summary": capacity(levels).summary() if levels else None,
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(
        f"server: {results['server']} (appendfsync {results['appendfsync']}), {args.items} ops each"
    )
    print(f"{'figure':<24}{'ops/s':>10}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}")
    for row in results["figures"]:
        print(
            f"{row['figure']:<24}{row['ops_per_s']:>10.0f}{row['p50_ms']:>10.3f}"
            f"{row['p95_ms']:>10.3f}{row['p99_ms']:>10.3f}"
        )
    for name, rps in external.items():
        print(f"redis-benchmark {name} (1 client): {rps:.0f} requests/s")
    print(f"8 concurrent reviewers: {concurrent:.0f} claim+decide/s in total")
    print(
        f"ratio claim+decide / raw SET round trips: {results['claim_decide_vs_set_ratio']:.2f} "
        "(one claim+decide is two scripted round trips)"
    )
    if levels:
        print(f"\ncapacity, {'/'.join(map(str, LEVELS))} concurrent clients (processes):")
        print(table(levels))
        print(capacity(levels).summary())
    verdict = "MET" if results["target_met"] else "MISSED"
    print(f"target p95 claim+decide < {TARGET_P95_MS} ms: {review['p95_ms']:.3f} ms -> {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
