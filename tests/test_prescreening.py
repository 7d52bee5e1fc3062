"""The learned pre-screen on a run: ordering, auto-decisions with an audit share, and the export
that never passes a model's decision off as a human's. Real pairs and real first votes from
LLMFAO, the real embedding model, a real store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from generator.config import QueueSettings
from generator.embeddings import Embedder
from generator.export.writer import ExportOptions, export
from generator.llmfao import replay_rows
from generator.prescreen import MIN_AUTO_ITEMS, choose_threshold
from generator.prescreening import PreScreenStatus, due, retrain, settled
from generator.queueing import WorkQueue
from generator.replay import replay
from generator.schema import (
    AUTO_REVIEWER,
    AUTO_TAG,
    CandidateKind,
    CandidateStatus,
    PreScreenSettings,
    RunConfig,
)
from generator.store import Store
from tests.factories import cli_env, run_cli
from tests.test_eval_report import assert_documented

RUN = "learning"
ITEMS = 240


def first_votes(real_data: Path, tmp_path: Path) -> Path:
    """240 distinct LLMFAO pairs with both answers present, each with its first crowd vote
    (a run without overlap: one reviewer per item), except every third, left waiting."""
    rows: list[dict[str, Any]] = []
    seen = set()
    for row in replay_rows(real_data / "llmfao"):
        example = row["example"]
        texts = (example["chosen"][0]["content"], example["rejected"][0]["content"])
        if not all(t.strip() for t in texts) or texts in seen or not row["votes"]:
            continue
        seen.add(texts)
        waiting = len(rows) % 3 == 2
        rows.append({**row, "votes": [] if waiting else row["votes"][:1]})
        if len(rows) == ITEMS:
            break
    path = tmp_path / "first-votes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def run_with_votes(store: Store, real_data: Path, tmp_path: Path) -> Store:
    store.save_run(RunConfig(run_id=RUN))
    result = replay(store, first_votes(real_data, tmp_path), RUN, k=1)
    assert result.applied == ITEMS - ITEMS // 3
    return store


def settings(**kwargs: Any) -> PreScreenSettings:
    return PreScreenSettings.model_validate({"min_decisions": 100, **kwargs})


def pending(store: Store) -> set[str]:
    return set(store.ids(RUN, CandidateStatus.PENDING))


def auto_decisions(store: Store) -> list[Any]:
    return [e.decision for e in store.decisions(RUN) if e.decision.reviewer == AUTO_REVIEWER]


# -- the threshold -------------------------------------------------------------------------------


def test_the_threshold_is_the_lowest_confidence_that_still_meets_the_humans() -> None:
    confidence = [0.9 - i * 0.01 for i in range(60)]
    truth = ["accept"] * 60
    predicted = ["accept"] * 40 + ["reject"] * 20  # right while confident, wrong after
    threshold, agreement, share, reason = choose_threshold(predicted, confidence, truth, 0.8)
    assert reason == ""
    assert threshold == pytest.approx(confidence[49])  # 40 of 50 right: 80%
    assert agreement == pytest.approx(0.8)
    assert share == pytest.approx(50 / 60)


def test_a_threshold_that_cannot_meet_the_humans_turns_auto_decisions_off() -> None:
    confidence = [0.9] * 10 + [0.5] * 50
    predicted = ["accept"] * 60
    truth = ["accept"] * 10 + ["reject"] * 50  # right only on too few to rest on
    threshold, agreement, share, reason = choose_threshold(predicted, confidence, truth, 0.6)
    assert (threshold, agreement, share) == (None, None, 0.0)
    assert f"on {MIN_AUTO_ITEMS} or more held-out decisions" in reason
    assert "auto-decisions are off" in reason
    assert choose_threshold(predicted, confidence, truth, None)[3].startswith("no human yardstick")


# -- retraining on a run ---------------------------------------------------------------------------


def test_nothing_is_trained_before_enough_human_decisions(
    run_with_votes: Store, embedder: Embedder
) -> None:
    status = retrain(run_with_votes, RUN, embedder, settings(min_decisions=500))
    assert status.trained_on == 0
    assert "first trains at 500" in status.message
    assert not due(run_with_votes, RUN, settings(min_decisions=500))
    assert due(run_with_votes, RUN, settings())


def test_the_queue_is_reordered_by_expected_usefulness(
    run_with_votes: Store, embedder: Embedder
) -> None:
    store = run_with_votes
    before = {i: store.get(i).priority for i in pending(store)}
    status = retrain(store, RUN, embedder, settings())
    assert status.trained_on == ITEMS - ITEMS // 3
    assert status.reordered == len(before) == ITEMS // 3
    after = {i: store.get(i).priority for i in pending(store)}
    assert len(set(after.values())) > len(before) // 2, "one priority for all: no ordering"
    # The scoring's scale: the gap's deficit (none here: no gap report), then [0, 0.99).
    assert all(0.0 <= p < 0.99 for p in after.values())
    lease = store.claim("someone", RUN)
    assert lease is not None and lease.item_id == max(after, key=lambda i: after[i])
    assert auto_decisions(store) == [], "ordering alone decides nothing"
    assert not status.auto_on and "not asked for" in status.message
    assert not due(store, RUN, settings()), "retrained: not due until 50 more decisions"


def test_without_a_human_yardstick_no_item_is_decided_by_the_model(
    run_with_votes: Store, embedder: Embedder
) -> None:
    status = retrain(run_with_votes, RUN, embedder, settings(auto_decide=True))
    assert not status.auto_on
    assert "no human yardstick" in status.message
    assert auto_decisions(run_with_votes) == []


def test_a_yardstick_the_model_cannot_reach_keeps_auto_decisions_off(
    run_with_votes: Store, embedder: Embedder
) -> None:
    chosen = settings(auto_decide=True, human_agreement=0.99)
    status = retrain(run_with_votes, RUN, embedder, chosen)
    assert not status.auto_on
    assert "no confidence threshold reaches the humans' own agreement (99%)" in status.message
    assert auto_decisions(run_with_votes) == []
    assert len(pending(run_with_votes)) == ITEMS // 3


def test_auto_decisions_are_marked_and_leave_the_audit_share_to_humans(
    run_with_votes: Store, embedder: Embedder
) -> None:
    store = run_with_votes
    chosen = settings(auto_decide=True, human_agreement=0.34, audit_share=0.5)
    status = retrain(store, RUN, embedder, chosen, seed=7)
    assert status.auto_on, status.message
    audit = store.audit(RUN)
    decided = auto_decisions(store)
    considered = len(audit) + len(decided)
    assert considered >= 40
    # Binomial(considered, 0.5): within 4 standard deviations.
    assert abs(len(audit) - considered / 2) <= 4 * (considered / 4) ** 0.5
    assert set(audit) <= pending(store), "audit items wait for humans"
    for decision in decided:
        assert AUTO_TAG in decision.reason_tags
        assert decision.note.startswith("pre-screen, confidence ")
    again = retrain(store, RUN, embedder, chosen, seed=8)
    assert set(store.audit(RUN)) >= set(audit)
    assert not set(audit) & {d.item_id for d in auto_decisions(store)}, "an audit item decided"
    assert again.audit.drawn == len(store.audit(RUN))


def test_auto_decisions_turn_off_when_the_audit_shows_the_model_disagrees(
    run_with_votes: Store, embedder: Embedder
) -> None:
    store = run_with_votes
    chosen = settings(auto_decide=True, human_agreement=0.34, audit_share=1.0)
    retrain(store, RUN, embedder, chosen, seed=1)
    audit = store.audit(RUN)
    assert len(audit) >= MIN_AUTO_ITEMS and auto_decisions(store) == []
    other = {"accept": "reject", "reject": "accept", "swap": "reject"}
    for item_id, label in audit.items():  # a human disagrees with every would-be label
        lease = store.claim_item(item_id, "auditor")
        store.decide(item_id, "auditor", other[label], lease.version)  # type: ignore[arg-type]
    status = retrain(store, RUN, embedder, chosen, seed=2)
    assert status.audit.agreement == 0.0 and status.audit.decided == len(audit)
    assert not status.auto_on
    assert "fell to 0%, under the humans' own 34%" in status.message


def test_a_run_with_overlap_gets_its_human_votes_on_every_item(
    store: Store, real_data: Path, tmp_path: Path, embedder: Embedder
) -> None:
    store.save_run(RunConfig.model_validate({"run_id": RUN, "review": {"reviewers_per_item": 2}}))
    replay(store, first_votes(real_data, tmp_path), RUN)
    status = retrain(store, RUN, embedder, settings(auto_decide=True, human_agreement=0.34))
    assert not status.auto_on and "the run has overlap" in status.message
    assert auto_decisions(store) == []


# -- the export --------------------------------------------------------------------------------


def test_an_auto_decision_never_reaches_an_export_unmarked(
    run_with_votes: Store, embedder: Embedder, model_dir: Path, tmp_path: Path
) -> None:
    store = run_with_votes
    chosen = settings(auto_decide=True, human_agreement=0.34, audit_share=0.1)
    retrain(store, RUN, embedder, chosen, seed=3)
    auto_accepted = {d.item_id for d in auto_decisions(store) if d.verdict in ("accept", "edit")}
    assert auto_accepted, "the model accepted nothing: nothing to check"
    human_accepted = set(store.ids(RUN, CandidateStatus.ACCEPTED)) - auto_accepted
    options = ExportOptions(
        runs=[RUN],
        kind=CandidateKind.PREFERENCE,
        out=tmp_path / "humans",
        tokenizer=str(model_dir),
    )
    result = export(store, options, tmp_path / "data", embedder)
    report = json.loads((tmp_path / "humans" / "eval_report.json").read_text())
    assert_documented(report)
    run = report["calibration"][0]
    assert run["scope"] == f"run {RUN}" and run["humans"]["pairs"] == 0, "one vote per item"
    assert run["judge"]["pairs"] == ITEMS - ITEMS // 3, "GPT-4 on every voted pair"
    assert "## Judge against the reviewers" in (tmp_path / "humans" / "eval_report.md").read_text()
    provenance = [json.loads(line) for line in (tmp_path / "humans" / "provenance.jsonl").open()]
    assert {p["item_id"] for p in provenance} <= human_accepted
    assert not any(p["review"]["auto_decided"] for p in provenance)
    assert result.auto_left_out == len(auto_accepted)
    manifest = json.loads((tmp_path / "humans" / "manifest.json").read_text())
    assert manifest["counts"]["auto_decided_left_out"] == len(auto_accepted)
    assert manifest["counts"]["by_origin"]["auto_decided"] == 0

    marked = options.model_copy(
        update={"out": tmp_path / "all", "include_auto_decided": True, "evaluate": False}
    )
    export(store, marked, tmp_path / "data")
    provenance = [json.loads(line) for line in (tmp_path / "all" / "provenance.jsonl").open()]
    flagged = {p["item_id"] for p in provenance if p["review"]["auto_decided"]}
    assert flagged == auto_accepted
    for record in provenance:
        if record["item_id"] in flagged:
            assert record["review"]["reviewers"] == [AUTO_REVIEWER]
            assert AUTO_TAG in record["review"]["decisions"][-1]["reason_tags"]
    manifest = json.loads((tmp_path / "all" / "manifest.json").read_text())
    assert manifest["counts"]["by_origin"]["auto_decided"] == len(auto_accepted)
    card = (tmp_path / "all" / "README.md").read_text()
    assert f"except {len(auto_accepted)} row" in card
    assert "pre-screen model accepted without a human" in card
    assert "accepted by the pre-screen model, not by a human" in card


# -- the job and the commands -------------------------------------------------------------------


def test_a_worker_retrains_the_prescreen_from_the_scoring_queue(
    run_with_votes: Store, server_url: str
) -> None:
    store = run_with_votes
    config = RunConfig.model_validate(
        {"run_id": RUN, "review": {"prescreen": {"min_decisions": 100}}}
    )
    store.save_run(config)
    connection = redis.Redis.from_url(server_url)
    work = WorkQueue(store, connection, QueueSettings(retries=0, retry_intervals=[]))
    assert due(store, RUN, config.review.prescreen)  # type: ignore[arg-type]
    job = work.enqueue_prescreen(RUN, settled(store, RUN))
    assert job is not None
    assert work.enqueue_prescreen(RUN, settled(store, RUN)) is None, "one job per count"
    result = run_cli(cli_env(store, server_url), "worker", "--queues", "score", "--burst")
    assert result.returncode == 0, result.stderr
    assert "1 jobs ok, 0 failed" in result.stderr + result.stdout
    raw = store.prescreen_status(RUN)
    assert raw is not None
    status = PreScreenStatus.model_validate_json(raw)
    assert status.trained_on == ITEMS - ITEMS // 3 and status.reordered == ITEMS // 3
    assert not due(store, RUN, config.review.prescreen)  # type: ignore[arg-type]


def test_the_commands_replay_calibrate_and_retrain(
    store: Store, server_url: str, real_data: Path, tmp_path: Path
) -> None:
    env = cli_env(store, server_url)
    replay_file = tmp_path / "llmfao.jsonl"
    source = str(real_data / "llmfao")
    converted = run_cli(env, "replay", "llmfao", source, "--out", str(replay_file))
    assert converted.returncode == 0, converted.stderr
    assert "2139 pairs" in converted.stdout
    refused = run_cli(env, "replay", "import", str(replay_file), "--run", "crowd")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "llmfao.jsonl:8: chosen.0.content: content is empty" in refused.stderr
    assert "crowd" not in store.runs(), "a bad line stores nothing"
    small = tmp_path / "small.jsonl"
    small.write_text("".join(replay_file.read_text().splitlines(keepends=True)[:120]))
    done = run_cli(env, "replay", "import", str(small), "--run", "crowd", "--skip-invalid")
    assert done.returncode == 0, done.stderr
    assert "with k=5" in done.stdout and "lines left out" in done.stdout
    table = run_cli(env, "calibration", "--run", "crowd")
    assert table.returncode == 0, table.stderr
    assert "run crowd" in table.stdout and "gap k8s" in table.stdout
    assert "humans" in table.stdout and "judge" in table.stdout
    retrained = run_cli(env, "prescreen", "--run", "crowd")
    assert retrained.returncode == 0, retrained.stderr
    assert "first trains at 100" in retrained.stdout
    missing = run_cli(env, "prescreen", "--run", "nope")
    assert missing.returncode == 1 and "--run: no run 'nope'" in missing.stderr
