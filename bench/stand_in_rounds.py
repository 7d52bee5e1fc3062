"""The demo's round 2 against its round 1, with the LLM judge standing in for the reviewer.

    python bench/stand_in_rounds.py [--gaps 3] [--per-gap 8] [--backend openai --base-url URL
                                    --model NAME] [--json]

``gapfill run --rounds 2`` runs the demo campaign (the self-instruct seed tasks' gaps against
the 252 user-oriented instructions, the bundled SmolLM2-135M-Instruct generating, the judge
filter on) in its own process, exactly as a user would. **No human reviews anything here**: a
stand-in reviewer (``stand-in.judge``) takes each item from the store's queue as the UI does and
decides it by the judge's verdict alone: accepted where the judge passed it, rejected as "low
quality" where it failed it, "other" where the judge gave no usable verdict. Round 2 is planned
from round 1's decisions (the accepted requests as seeds, the rejection reasons as an
avoid-list), so the figure is how much round 2's yield (accepted of generated) moves against
round 1's when the feedback comes from this stand-in. The judge is the same small model that
generates: the figure measures the loop, not the quality of the data.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generator.calibration import judge_label  # noqa: E402
from generator.redis_server import BundledServer  # noqa: E402
from generator.rounds import round_yields  # noqa: E402
from generator.store import Store  # noqa: E402

DEMO = ROOT / "examples" / "demo" / "campaign.yaml"
STAND_IN = "stand-in.judge"
PREFIX = "bench-rounds"


class StandIn(threading.Thread):
    """Decides every item of the runs by its judge verdict, as soon as it reaches the queue."""

    def __init__(self, store: Store, runs: list[str]) -> None:
        super().__init__(daemon=True)
        self.store, self.runs = store, runs
        self.stop = threading.Event()
        self.verdicts: dict[str, dict[str, int]] = {run: {} for run in runs}
        self.judge_scores: dict[str, dict[str, int]] = {}  # run -> judge's mean score -> items

    def run(self) -> None:
        while not self.stop.is_set():
            lease = next(
                (found for run in self.runs if (found := self.store.claim(STAND_IN, run))), None
            )
            if lease is None:
                time.sleep(0.3)
                continue
            score = lease.item.scores.get("judge")
            verdict, tags = self.verdict(score)
            scored = self.judge_scores.setdefault(lease.item.run_id, {})
            key = "none" if score is None else f"{score.value:g}"
            scored[key] = scored.get(key, 0) + 1
            self.store.decide(lease.item_id, STAND_IN, verdict, lease.version, reason_tags=tags)
            counts = self.verdicts[lease.item.run_id]
            key = verdict if not tags else f"reject ({tags[0]})"
            counts[key] = counts.get(key, 0) + 1

    @staticmethod
    def verdict(score: Any) -> tuple[Any, list[str] | None]:
        if score is None:
            return "reject", ["other"]
        label = judge_label(score.value, score.passed, score.evidence, pair=False)
        if label is None:
            return "reject", ["other"]
        return ("accept", None) if label == "accept" else ("reject", ["low quality"])


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float] | None:
    """The 95% Wilson interval of a proportion."""
    if not trials:
        return None
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = (
        z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    )
    return centre - half, centre + half


def campaign(work: Path, gaps: int, per_gap: int, backend: dict[str, str]) -> Path:
    config = yaml.safe_load(DEMO.read_text())
    for key in ("data", "reference"):
        config[key] = str(DEMO.parent / config[key])
    config["eval_sets"] = [str(DEMO.parent / name) for name in config["eval_sets"]]
    config["filters"] = {"judge": True}
    config.update(gaps=gaps, per_gap=per_gap, **backend)
    path = work / "campaign.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def measure(gaps: int, per_gap: int, backend: dict[str, str] | None = None) -> dict[str, Any]:
    """``backend``: the campaign's backend, model and base_url keys (default: the bundled
    model), which generates and judges."""
    with tempfile.TemporaryDirectory(prefix="gapfill-bench-rounds-") as directory:
        work = Path(directory)
        server = BundledServer(work / "server")
        url = server.ensure_running().url
        store = Store(redis.Redis.from_url(url, decode_responses=True), PREFIX)
        runs = [config_run := yaml.safe_load(DEMO.read_text())["run"], f"{config_run}-r2"]
        stand_in = StandIn(store, runs)
        stand_in.start()
        env = {
            **os.environ,
            "GAPFILL_REDIS_URL": url,
            "GAPFILL_KEY_PREFIX": PREFIX,
            "GAPFILL_DATA_DIR": str(work / "data"),
            "GAPFILL_ROUNDS_POLL_SECONDS": "1",
            "HF_HUB_OFFLINE": "1",
        }
        config = campaign(work, gaps, per_gap, backend or {})
        started = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "cli", "run", str(config), "--rounds", "2"],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=3600,
            )
            seconds = time.perf_counter() - started
            if done.returncode != 0:
                raise SystemExit(f"gapfill run --rounds 2 failed: {done.stderr[-2000:]}")
            rows = round_yields(store, runs[-1])
        finally:
            stand_in.stop.set()
            store.delete_prefix()
            server.stop()
    rounds = []
    for number in (1, 2):
        mine = [row for row in rows if row.round == number]
        generated = sum(row.generated for row in mine)
        accepted = sum(row.accepted for row in mine)
        interval = wilson(accepted, generated)
        rounds.append(
            {
                "round": number,
                "run": runs[number - 1],
                "generated": generated,
                "auto_rejected": sum(row.auto_rejected for row in mine),
                "reviewed": sum(row.reviewed for row in mine),
                "accepted": accepted,
                "yield": accepted / generated if generated else None,
                "yield_low": interval[0] if interval else None,
                "yield_high": interval[1] if interval else None,
                "per_gap": {
                    row.gap_id: {"label": row.gap_label, "generated": row.generated,
                                 "accepted": row.accepted}
                    for row in mine
                },
                "stand_in_verdicts": stand_in.verdicts[runs[number - 1]],
                "judge_scores": stand_in.judge_scores.get(runs[number - 1], {}),
            }
        )  # fmt: skip
    one, two = rounds
    return {
        "stand_in": STAND_IN,
        "gaps": gaps,
        "per_gap": per_gap,
        "seconds": seconds,
        "rounds": rounds,
        "ratio": (two["yield"] / one["yield"])
        if one["yield"] and two["yield"] is not None
        else None,
    }


def report(result: dict[str, Any]) -> None:
    for found in result["rounds"]:
        low, high = found["yield_low"], found["yield_high"]
        interval = f" [{low:.0%}, {high:.0%}]" if low is not None else ""
        print(
            f"round {found['round']} ({found['run']}): {found['accepted']} accepted of "
            f"{found['generated']} generated ({found['auto_rejected']} auto-rejected): yield "
            f"{found['yield'] if found['yield'] is None else format(found['yield'], '.0%')}"
            f"{interval}; the stand-in's verdicts {found['stand_in_verdicts']}; the judge's "
            f"mean scores {found['judge_scores']}"
        )
    print(f"round 2 / round 1 yield: {result['ratio']}; {result['seconds']:.0f} s in all")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gaps", type=int, default=3)
    parser.add_argument("--per-gap", type=int, default=8)
    parser.add_argument("--backend", choices=["local", "openai"], default="local")
    parser.add_argument("--model", help="The backend's model (default: the bundled one).")
    parser.add_argument("--base-url", help="The OpenAI-compatible server, for --backend openai.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    backend = {"backend": args.backend}
    backend |= {k: v for k, v in (("model", args.model), ("base_url", args.base_url)) if v}
    result = measure(args.gaps, args.per_gap, backend)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
