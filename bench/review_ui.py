"""Benchmark: key press -> next item shown in the review UI, in a real browser, next to the
store's own claim+decide time measured in the same run.

    python bench/review_ui.py [--decisions 50]

Starts a bundled Valkey in a temporary directory, seeds it with real model outputs
(text-davinci-003's answers to the user-oriented instructions), serves `gapfill ui --local` on a
free port, and drives Debian's chromium with Playwright: each accept is a key press, timed until
the next item's id is on screen. Target: p95 under 500 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import redis
from _data import PREDICTIONS

from generator.redis_server import BundledServer
from generator.schema import Candidate, CandidateKind, CandidateStatus, Message, SFTExample
from generator.store import Store

ITEM = re.compile(r"item ([0-9a-f]{8,})")
TARGET_P95_MS = 500.0


def candidates(run: str, count: int, source: str = "text-davinci-003") -> list[Candidate]:
    items = []
    for line in (PREDICTIONS / f"{source}.jsonl").open(encoding="utf-8"):
        row = json.loads(line)
        if row.get("response", "").strip():
            messages = [
                Message(role="user", content=row["prompt"].strip()),
                Message(role="assistant", content=row["response"].strip()),
            ]
            items.append(
                Candidate(
                    kind=CandidateKind.SFT,
                    payload=SFTExample(messages=messages),
                    run_id=run,
                    gap_id="gap-a",
                    status=CandidateStatus.PENDING,
                    priority=float(count - len(items)),
                )
            )
        if len(items) == count:
            break
    return items


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(share * len(ordered)), len(ordered) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gapfill-bench-ui-") as directory:
        server = BundledServer(Path(directory) / "data")
        url = server.ensure_running().url
        store = Store(redis.Redis.from_url(url, decode_responses=True), prefix="bench")
        store.put_many(candidates("ui", args.decisions + 5))
        store.put_many(candidates("direct", args.decisions + 5, "text-davinci-001"))

        direct = []
        for _ in range(args.decisions):
            started = time.perf_counter()
            lease = store.claim("bench", "direct")
            assert lease is not None
            store.decide(lease.item_id, "bench", "accept", lease.version)
            direct.append((time.perf_counter() - started) * 1000)

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {
            **os.environ,
            "GAPFILL_REDIS_URL": url,
            "GAPFILL_KEY_PREFIX": "bench",
            "GAPFILL_DATA_DIR": str(Path(directory) / "data"),
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "ui", "--local", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        address = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(f"{address}/_stcore/health", timeout=2)
                    break
                except OSError:
                    time.sleep(0.3)
            latencies = browse(address + "/?run=ui", args.decisions)
        finally:
            process.terminate()
            process.wait(timeout=20)
            server.stop()

    median, p95 = statistics.median(latencies), percentile(latencies, 0.95)
    if args.json:
        results = {
            "decisions": args.decisions,
            "direct_p95_ms": percentile(direct, 0.95),
            "ui_median_ms": median,
            "ui_p95_ms": p95,
            "target_p95_ms": TARGET_P95_MS,
            "target_met": p95 < TARGET_P95_MS,
        }
        print(json.dumps(results, indent=2))
        return 0
    print(f"{args.decisions} decisions by key press in chromium (Playwright), gapfill ui --local")
    print(
        f"store claim+decide (direct)  : median {statistics.median(direct):6.1f} ms, "
        f"p95 {percentile(direct, 0.95):6.1f} ms"
    )
    print(
        f"key press -> next item shown : median {median:6.1f} ms, p95 {p95:6.1f} ms "
        f"(target p95 < {TARGET_P95_MS:.0f} ms)"
    )
    return 0


def browse(address: str, decisions: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(address)
        idle = '[data-testid="stApp"][data-test-script-state="notRunning"]'

        def shown() -> str:
            text = page.get_by_text(ITEM).first.inner_text(timeout=15_000)
            match = ITEM.search(text)
            return match.group(1) if match else ""

        current = shown()
        latencies = []
        for _ in range(decisions):
            page.wait_for_selector(idle)
            started = time.perf_counter()
            page.keyboard.press("a")
            while True:
                try:
                    now = shown()
                except Exception:  # re-rendering
                    now = current
                if now != current:
                    break
                if time.perf_counter() - started > 15:
                    raise RuntimeError("the next item never showed")
            latencies.append((time.perf_counter() - started) * 1000)
            current = now
        browser.close()
    return latencies


if __name__ == "__main__":
    raise SystemExit(main())
