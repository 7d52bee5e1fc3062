"""Benchmark: learning from review, on real reviews (LLMFAO's crowd votes and GPT-4 verdicts).

    python bench/learning.py [--train-share 0.5] [--decisive 500] [--rounds-per-gap 8]
                             [--no-rounds] [--json]

LLMFAO (``tests/data/llmfao``, CC BY 4.0) is converted to a replay file
(``generator/llmfao.py``) and replayed into a bundled Valkey through the store's own leases and
decisions (``generator/replay.py``): 2,139 pairs, of which 289 have an empty answer and 90 repeat
another pair word for word (no dataset may hold either; listed, left out), so 1,760 pairs and
their 7,335 votes. Then, from the store's decision log:

1. **Calibration**: the humans' own agreement (each vote against the majority of the other votes
   on its pair) and GPT-4's (its verdict against the majority of all votes), with Cohen's kappa
   and its bootstrap interval; overall and where neither side said tie. Also on all 2,139 pairs
   straight from the files, the figures the issue quotes (62% / 77%; 45% / 75%).
2. **Auto-decisions**: the pairs are split by LLMFAO's pair id (the first ``--train-share`` for
   training, the rest measured). The pre-screen (``generator/prescreen.py``) learns from the
   training pairs' majority labels and picks its threshold on its cross-validated predictions
   there; on the measured pairs it decides those above the threshold. Goal: it decides at least
   50% of the measured pairs, and in each worker's place (against the majority of the other
   votes) agrees at least as often as each worker does against the same majority.
3. **Ordering**: the reviewer decisions (votes) it takes to collect ``--decisive`` decisive pairs
   (majority for one answer, not a tie): the queue in the store's order (priority, then id) next
   to the learned order, retrained every 100 pairs on the decisions so far (cold start: the
   first 100 in the store's order). Goal: at least 20% fewer decisions.

4. **Rounds**: the demo's round 2 against its round 1 with ``gapfill run --rounds 2``, the LLM
   judge standing in for the reviewer (``bench/stand_in_rounds.py``: no human reviews there).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generator.agreement import votes_by_item  # noqa: E402
from generator.calibration import Calibration, calibrate, judge_label, majority  # noqa: E402
from generator.embeddings import Embedder  # noqa: E402
from generator.llmfao import replay_rows, write_replay  # noqa: E402
from generator.prescreen import Features, fit  # noqa: E402
from generator.redis_server import BundledServer  # noqa: E402
from generator.replay import replay  # noqa: E402
from generator.schema import Candidate, CandidateStatus  # noqa: E402
from generator.store import Store  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from stand_in_rounds import measure as rounds  # noqa: E402
from stand_in_rounds import report as report_rounds  # noqa: E402

LLMFAO = ROOT / "tests" / "data" / "llmfao"
RUN = "llmfao"
TARGET_AUTO_SHARE = 0.5
TARGET_FEWER = 0.2
RETRAIN_EVERY = 50
STARTING_ORDERS = 4  # shuffled starting orders, beside the store's own


def figures(result: Calibration) -> dict[str, Any]:
    def one(c: Any) -> dict[str, Any] | None:
        return None if c is None else c.model_dump(exclude={"confusion"})

    return {
        "humans": one(result.humans),
        "judge": one(result.judge),
        "judge_in_place": one(result.judge_in_place),
    }


def from_files() -> Calibration:
    votes, judge = {}, {}
    for row in replay_rows(LLMFAO):
        votes[row["id"]] = {v["reviewer"]: v["vote"] for v in row["votes"]}
        if "judge" in row:
            judge[row["id"]] = row["judge"]["vote"]
    return calibrate(votes, judge)


def load(store: Store, work: Path) -> tuple[list[Candidate], dict[str, dict[str, str]], dict]:
    path = work / "llmfao.jsonl"
    write_replay(LLMFAO, path)
    started = time.perf_counter()
    result = replay(store, path, RUN, skip_invalid=True)
    seconds = time.perf_counter() - started
    ids = [i for status in CandidateStatus for i in store.ids(RUN, status)]
    candidates = store.get_many(ids)
    order = {item_id: int(source.split("-")[1]) for item_id, source in result.source_ids.items()}
    candidates.sort(key=lambda c: order[c.id])  # LLMFAO's pair id order: the split's order
    votes = votes_by_item(d.decision for d in store.decisions(RUN))
    info = {
        "pairs_in_files": result.items + len(result.skipped),
        "pairs_replayed": result.items,
        "left_out": len(result.skipped),
        "votes_replayed": result.applied,
        "votes_in_file": result.votes,
        "replay_seconds": seconds,
        "k": result.k,
    }
    return candidates, votes, info


def judge_labels(candidates: Sequence[Candidate]) -> dict[str, str]:
    labels = {}
    for candidate in candidates:
        score = candidate.scores.get("judge")
        label = score and judge_label(score.value, score.passed, score.evidence, pair=True)
        if label:
            labels[candidate.id] = label
    return labels


def auto_decisions(
    candidates: list[Candidate],
    votes: dict[str, dict[str, str]],
    embedder: Embedder,
    train_share: float,
    within_gap: bool,
) -> dict[str, Any]:
    train, measured = split(candidates, train_share, within_gap)
    labelled = [(c, majority(list(votes.get(c.id, {}).values()))) for c in train]
    labelled = [(c, label) for c, label in labelled if label is not None]
    train_votes = {c.id: votes.get(c.id, {}) for c in train}
    yardstick = calibrate(train_votes, {}).humans.agreement
    started = time.perf_counter()
    model = fit([c for c, _ in labelled], [label for _, label in labelled], embedder, yardstick)
    fit_seconds = time.perf_counter() - started
    measured_votes = {c.id: votes.get(c.id, {}) for c in measured}
    humans_here = calibrate(measured_votes, {}).humans
    decided = model.decide(model.space.describe(measured, embedder))
    confident = [
        (c, label)
        for c, (label, confidence) in zip(measured, decided, strict=True)
        if model.threshold is not None and confidence >= model.threshold
    ]
    auto = [(c, label) for c, label in confident if model.may_decide(c)]
    unguarded = _agreement(confident, measured_votes)
    agreement, compared = _agreement(auto, measured_votes)
    share = len(auto) / len(measured)
    # Like for like: on the decided pairs, the model in each reviewer's place (against the
    # majority of the other votes), beside each reviewer against the same majority.
    decided_votes = {c.id: measured_votes[c.id] for c, _ in auto}
    fair = calibrate(decided_votes, {c.id: label for c, label in auto})
    in_place = fair.judge_in_place.agreement if fair.judge_in_place else None
    humans_decided = fair.humans.agreement
    return {
        "train_pairs": len(train),
        "train_labelled": len(labelled),
        "measured_pairs": len(measured),
        "yardstick_train": yardstick,
        "humans_measured": humans_here.agreement,
        "threshold": model.threshold,
        "off_reason": model.off_reason,
        "cross_validated_agreement": model.cross_validated_agreement,
        "cross_validated_share": model.cross_validated_share,
        "auto_share": share,
        "auto_agreement": agreement,
        "auto_compared": compared,
        "auto_in_place": in_place,
        "humans_on_decided": humans_decided,
        "in_place_rows": fair.humans.pairs,
        "without_gap_guard": {"share": len(confident) / len(measured), "agreement": unguarded[0]},
        "fit_seconds": fit_seconds,
        "target_share": TARGET_AUTO_SHARE,
        "target_met": bool(
            share >= TARGET_AUTO_SHARE
            and in_place is not None
            and humans_decided is not None
            and in_place >= humans_decided
        ),
    }


def _agreement(
    decided: list[tuple[Candidate, str]], votes: dict[str, dict[str, str]]
) -> tuple[float | None, int]:
    """The share of the model's labels that are the humans' majority (pairs with one)."""
    compared = [
        (label, majority(list(votes[c.id].values())))
        for c, label in decided
        if majority(list(votes[c.id].values())) is not None
    ]
    return (sum(a == b for a, b in compared) / len(compared) if compared else None), len(compared)


def split(
    candidates: list[Candidate], train_share: float, within_gap: bool
) -> tuple[list[Candidate], list[Candidate]]:
    """By pair id: the first ``train_share`` of each gap's pairs (the queue of a live run: the
    model learns from a gap's first decisions and decides the rest of it), or of all pairs
    (LLMFAO numbers its pairs prompt by prompt, so the measured pairs then answer prompts the
    model never saw)."""
    if not within_gap:
        cut = int(len(candidates) * train_share)
        return candidates[:cut], candidates[cut:]
    train: list[Candidate] = []
    measured: list[Candidate] = []
    for gap in dict.fromkeys(c.gap_id for c in candidates):
        members = [c for c in candidates if c.gap_id == gap]
        cut = int(len(members) * train_share)
        train += members[:cut]
        measured += members[cut:]
    return train, measured


def decisive(candidate: Candidate, votes: dict[str, dict[str, str]]) -> bool:
    return majority(list(votes.get(candidate.id, {}).values())) in ("accept", "swap")


def cost(candidate: Candidate, votes: dict[str, dict[str, str]]) -> int:
    return max(len(votes.get(candidate.id, {})), 1)


def store_order(candidates: list[Candidate]) -> list[Candidate]:
    """The store's queue order: priority, then id, highest first (claim.lua's ZREVRANGE)."""
    return sorted(candidates, key=lambda c: (c.priority, c.id), reverse=True)


def decisions_to(goal: int, order: list[Candidate], votes: dict[str, dict[str, str]]) -> int | None:
    spent = found = 0
    for candidate in order:
        spent += cost(candidate, votes)
        found += decisive(candidate, votes)
        if found >= goal:
            return spent
    return None


def learned_run(
    goal: int, start: list[Candidate], votes: dict[str, dict[str, str]], embedder: Embedder
) -> tuple[int | None, int]:
    """Decisions to ``goal`` decisive pairs when the queue, in ``start``'s order at first, is
    reordered by the pre-screen after every ``RETRAIN_EVERY`` pairs decided (retrained on all
    the decisions so far)."""
    remaining = list(start)
    done: list[Candidate] = []
    spent = found = retrains = 0
    while remaining:
        batch, remaining = remaining[:RETRAIN_EVERY], remaining[RETRAIN_EVERY:]
        for candidate in batch:
            spent += cost(candidate, votes)
            found += decisive(candidate, votes)
            done.append(candidate)
            if found >= goal:
                return spent, retrains
        labelled = [(c, majority(list(votes.get(c.id, {}).values()))) for c in done]
        labelled = [(c, label) for c, label in labelled if label is not None]
        try:
            model = fit(
                [c for c, _ in labelled],
                [lab for _, lab in labelled],
                embedder,
                None,
                for_ordering_only=True,
            )
        except ValueError:
            continue  # too few decisions of each kind yet: keep the order
        retrains += 1
        if remaining:
            described: Features = model.space.describe(remaining, embedder)
            priority = model.priorities(described, [0.0] * len(remaining))  # no gap deficits
            ranked = sorted(zip(priority, range(len(remaining)), strict=True), reverse=True)
            remaining = [remaining[i] for _, i in ranked]
    return None, retrains


def ordering(
    goal: int, candidates: list[Candidate], votes: dict[str, dict[str, str]], embedder: Embedder
) -> dict[str, Any]:
    """The store's order and ``STARTING_ORDERS`` shuffles of it (one order alone is one draw of
    how the decisive pairs happen to fall): decisions to ``goal`` in that order, then learned."""
    starts = [store_order(candidates)]
    for seed in range(STARTING_ORDERS):
        shuffled = list(candidates)
        random.Random(seed).shuffle(shuffled)
        starts.append(shuffled)
    started = time.perf_counter()
    runs = []
    for start in starts:
        base = decisions_to(goal, start, votes)
        learned, retrains = learned_run(goal, start, votes, embedder)
        runs.append({"base": base, "learned": learned, "retrains": retrains})
    complete = [r for r in runs if r["base"] and r["learned"]]
    fewer = [1 - r["learned"] / r["base"] for r in complete]
    mean = statistics.mean(fewer) if len(complete) == len(runs) else None
    return {
        "goal_decisive": goal,
        "runs": runs,
        "fewer_each": fewer,
        "fewer_mean": mean,
        "base_mean": statistics.mean(r["base"] for r in complete) if complete else None,
        "learned_mean": statistics.mean(r["learned"] for r in complete) if complete else None,
        "retrain_every": RETRAIN_EVERY,
        "seconds": time.perf_counter() - started,
        "target_fewer": TARGET_FEWER,
        "target_met": mean is not None and mean >= TARGET_FEWER,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-share", type=float, default=0.5)
    parser.add_argument("--decisive", type=int, default=500)
    parser.add_argument("--rounds-gaps", type=int, default=3)
    parser.add_argument("--rounds-per-gap", type=int, default=8)
    parser.add_argument("--no-rounds", action="store_true", help="Skip the demo's rounds.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="gapfill-bench-learning-") as directory:
        work = Path(directory)
        server = BundledServer(work / "data")
        store = Store(
            redis.Redis.from_url(server.ensure_running().url, decode_responses=True), "bench"
        )
        try:
            embedder = Embedder(cache_dir=work / "embedding-cache")
            candidates, votes, info = load(store, work)
            replayed = calibrate(votes, judge_labels(candidates))
            files = from_files()
            auto = auto_decisions(candidates, votes, embedder, args.train_share, True)
            unseen = auto_decisions(candidates, votes, embedder, args.train_share, False)
            order = ordering(args.decisive, candidates, votes, embedder)
        finally:
            store.delete_prefix()
            server.stop()
    results = {
        "replay": info,
        "calibration_replayed": figures(replayed),
        "calibration_files": figures(files),
        "auto": auto,
        "auto_unseen_prompts": unseen,
        "ordering": order,
        "rounds": None if args.no_rounds else rounds(args.rounds_gaps, args.rounds_per_gap),
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    report(results)
    return 0


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def report(r: dict[str, Any]) -> None:
    info = r["replay"]
    print(
        f"replayed {info['pairs_replayed']} of {info['pairs_in_files']} LLMFAO pairs "
        f"({info['left_out']} left out), {info['votes_replayed']} votes in "
        f"{info['replay_seconds']:.0f} s"
    )
    for name in ("calibration_files", "calibration_replayed"):
        for who in ("humans", "judge", "judge_in_place"):
            c = r[name][who]
            print(
                f"{name} {who}: agreement {_pct(c['agreement'])}, no tie "
                f"{_pct(c['decisive_agreement'])}, kappa {c['kappa']:.3f} "
                f"[{c['kappa_low']:.3f}, {c['kappa_high']:.3f}] over {c['pairs']} comparisons"
            )
    for name in ("auto", "auto_unseen_prompts"):
        a = r[name]
        print(
            f"{name}: decides {_pct(a['auto_share'])} of {a['measured_pairs']} pairs; in a "
            f"worker's place agrees {_pct(a['auto_in_place'])}, each worker "
            f"{_pct(a['humans_on_decided'])} (target: >= 50% decided, agreement >= one "
            f"worker's: {'met' if a['target_met'] else 'NOT met'})"
        )
    o = r["ordering"]
    print(
        f"ordering: {o['goal_decisive']} decisive pairs after {o['base_mean']:.0f} decisions in "
        f"queue order, {o['learned_mean']:.0f} learned: {_pct(o['fewer_mean'])} fewer (each "
        f"start: {', '.join(_pct(f) for f in o['fewer_each'])}; target >= 20%: "
        f"{'met' if o['target_met'] else 'NOT met'})"
    )
    if r["rounds"] is not None:
        report_rounds(r["rounds"])


if __name__ == "__main__":
    raise SystemExit(main())
