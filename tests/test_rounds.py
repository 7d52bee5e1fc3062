"""Rounds of a campaign (`gapfill run --rounds K`): each round is a run stored with the round it
follows, so its yield per gap, the deficits still open and the budget spent are read back from
the store; every earlier round's acceptances count and its review feeds the next prompts; the
loop stops when a budget is spent and resumes where it stopped. The slow tests run the whole
loop with the bundled model and a reviewer deciding in the store as the UI does."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from generator.campaign import load_campaign, plan
from generator.config import Settings
from generator.errors import ConfigError, RoundStalledError
from generator.rounds import (
    RoundsBudget,
    Spent,
    already_planned,
    chain,
    over_budget,
    review_progress,
    round_run_id,
    round_yields,
    spent,
)
from generator.schema import AUTO_REVIEWER, Candidate, CandidateKind, CandidateStatus, RunConfig
from generator.store import Store
from tests.factories import cli_env, run_cli, sft, store_url

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo" / "campaign.yaml"


def _items(store: Store, run: str, gap: str, *requests: str) -> list[Candidate]:
    items = [
        Candidate(
            kind=CandidateKind.SFT,
            payload=sft(request, "An answer."),
            run_id=run,
            gap_id=gap,
            status=CandidateStatus.PENDING,
        )
        for request in requests
    ]
    store.put_many(items)
    return items


def _decide(store: Store, item: Candidate, verdict: str, reviewer: str = "ann") -> None:
    lease = store.claim_item(item.id, reviewer)
    tags = ["wrong"] if verdict == "reject" else None
    store.decide(item.id, reviewer, verdict, lease.version, reason_tags=tags)  # type: ignore[arg-type]


def test_round_ids_follow_the_campaigns_run() -> None:
    assert [round_run_id("demo", n) for n in (1, 2, 10)] == ["demo", "demo-r2", "demo-r10"]


def test_each_round_counts_every_earlier_rounds_acceptances_and_learns_from_all_of_them(
    store: Store, embedder: object
) -> None:
    first = plan(load_campaign(DEMO, {"gaps": 1, "per_gap": 2}), store, embedder)  # type: ignore[arg-type]
    gap = first.chosen[0]
    deficit = next(g.deficit for g in first.report.gaps if g.id == gap)
    accepted, rejected = _items(store, "demo", gap, "Round one's request?", "A bad one?")
    _decide(store, accepted, "accept")
    _decide(store, rejected, "reject")
    second = load_campaign(DEMO, {"gaps": 3, "run": "demo-r2"})
    plan(second, store, embedder, after="demo")  # type: ignore[arg-type]
    (kept,) = _items(store, "demo-r2", gap, "Round two's request?")
    _decide(store, kept, "accept")

    (by_model,) = _items(store, "demo-r2", gap, "Accepted by the pre-screen alone?")
    _decide(store, by_model, "accept", reviewer=AUTO_REVIEWER)  # left out of exports: fills nothing

    third = load_campaign(DEMO, {"gaps": 3, "run": "demo-r3"})
    planned = plan(third, store, embedder, after="demo-r2")  # type: ignore[arg-type]

    assert planned.remaining[gap] == deficit - 2  # both rounds' acceptances count
    found = planned.feedback[gap]
    assert found.seeds == ["Round two's request?", "Round one's request?"]  # newest first
    assert found.reasons == {"wrong": 1} and found.decided == 3
    assert [(c.run_id, c.round, c.after) for c in chain(store, "demo-r3")] == [
        ("demo", 1, None),
        ("demo-r2", 2, "demo"),
        ("demo-r3", 3, "demo-r2"),
    ]


def test_yield_per_round_and_gap_is_accepted_over_generated(store: Store) -> None:
    store.save_run(RunConfig(run_id="c"))
    store.save_run(RunConfig(run_id="c-r2", after="c", round=2))
    one = _items(store, "c", "g1", "a?", "b?", "c?", "d?")
    _decide(store, one[0], "accept")
    _decide(store, one[1], "reject")
    two = _items(store, "c-r2", "g1", "e?", "f?")
    _decide(store, two[0], "accept")

    rows = {(row.round, row.gap_id): row for row in round_yields(store, "c-r2")}

    assert set(rows) == {(1, "g1"), (2, "g1")}
    assert (rows[1, "g1"].generated, rows[1, "g1"].reviewed, rows[1, "g1"].pending) == (4, 2, 2)
    assert rows[1, "g1"].rate == 0.25 and rows[2, "g1"].rate == 0.5
    assert [row.round for row in round_yields(store, "c")] == [1]  # a round never sees later ones


def test_the_budget_counts_generated_tokens_and_human_decisions_never_the_models(
    store: Store,
) -> None:
    store.save_run(RunConfig(run_id="c"))
    items = _items(store, "c", "g1", "a?", "b?", "c?")
    _decide(store, items[0], "accept")
    _decide(store, items[1], "reject", reviewer="bob")
    _decide(store, items[2], "accept", reviewer=AUTO_REVIEWER)
    used = spent(store, ["c"])
    assert used.decisions == 2

    assert over_budget(RoundsBudget(decisions=3), used) is None
    assert over_budget(RoundsBudget(decisions=2), used) == (
        "the reviewer-decision budget is spent (2 of 2 decisions)"
    )
    assert over_budget(RoundsBudget(tokens=1_000), Spent(tokens=1_500, decisions=0)) == (
        "the token budget is spent (1,500 of 1,000 tokens)"
    )
    assert over_budget(RoundsBudget(), Spent(tokens=10**9, decisions=10**6)) is None
    with pytest.raises(ValueError):
        RoundsBudget(tokens=0)


def test_a_round_is_settled_only_once_nothing_is_left_to_score_review_or_finish(
    store: Store,
) -> None:
    store.save_run(RunConfig(run_id="c"))
    (item,) = _items(store, "c", "g1", "a?")
    assert not review_progress(store, "c").settled  # waiting for a reviewer
    lease = store.claim("ann", "c")
    assert lease is not None and review_progress(store, "c").leased == 1
    assert not review_progress(store, "c").settled
    store.decide(item.id, "ann", "accept", lease.version)
    assert review_progress(store, "c").settled


def test_a_round_already_in_the_store_resumes_and_a_stranger_run_is_refused(store: Store) -> None:
    assert not already_planned(store, "c-r2", "c", 2)
    store.save_run(RunConfig(run_id="c-r2", after="c", round=2))
    assert already_planned(store, "c-r2", "c", 2)
    store.save_run(RunConfig(run_id="d-r2"))  # a run of that name, planned on its own
    with pytest.raises(ConfigError, match="'d-r2' is in the store but is not round 2"):
        already_planned(store, "d-r2", "d", 2)


def test_the_chain_ends_at_a_missing_or_looping_round(store: Store) -> None:
    store.save_run(RunConfig(run_id="x", after="gone", round=2))
    assert [c.run_id for c in chain(store, "x")] == ["x"]
    store.save_run(RunConfig(run_id="p", after="q", round=2))
    store.save_run(RunConfig(run_id="q", after="p", round=2))
    assert [c.run_id for c in chain(store, "p")] == ["q", "p"]


def test_skips_and_undone_decisions_spend_no_decision_budget(store: Store) -> None:
    store.save_run(RunConfig(run_id="c"))
    skipped, undone, kept = _items(store, "c", "g1", "a?", "b?", "c?")
    lease = store.claim_item(skipped.id, "ann")
    store.decide(skipped.id, "ann", "skip", lease.version)
    _decide(store, undone, "accept")
    store.undo(undone.id, "ann")
    _decide(store, kept, "reject")
    assert spent(store, ["c"]).decisions == 1
    assert spent(store, ["c"], decisions=False).decisions == 0


# The loop itself, with generation stubbed out: the slow tests below run the real model.


class _Context:
    """What run_rounds reads of typer's context: the settings."""

    def __init__(self, settings: Settings) -> None:
        self.obj = settings


def _settings(store: Store, tmp_path: Path) -> Settings:
    return Settings(
        redis_url=store_url(store), key_prefix=store.keys.prefix, data_dir=tmp_path / "data"
    )


def _finish_tasks(store: Store, run_id: str, tokens: int) -> None:
    """What a generation worker leaves when a round's model writes nothing usable: every task
    done, ``tokens`` spent on the first, no item."""
    for index, task in enumerate(store.get_tasks(store.open_tasks(run_id))):
        used = tokens if index == 0 else 0
        store.complete_task(task, [], [], {"prompt_tokens": used, "completion_tokens": 0})


def _rounds(store: Store, tmp_path: Path, generate: Any, **options: Any) -> None:
    from cli.choices import Workers
    from cli.rounds import RoundSteps, run_rounds

    config = load_campaign(DEMO, {"gaps": 1, "per_gap": 2, "run": "camp"})
    run_rounds(
        _Context(_settings(store, tmp_path)),  # type: ignore[arg-type]
        config,
        RoundSteps(announce_plan=lambda planned, after: None, generate=generate),
        rounds=options.get("rounds", 3),
        after=options.get("after"),
        budget=options.get("budget", RoundsBudget()),
        workers=Workers.INPROCESS,
        show_ui=False,
        port=0,
    )


def test_the_token_budget_counts_this_campaigns_rounds_not_the_run_it_follows(
    store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str], embedder: object
) -> None:
    before = load_campaign(DEMO, {"gaps": 1, "per_gap": 2, "run": "base"})
    plan(before, store, embedder)  # type: ignore[arg-type]
    _finish_tasks(store, "base", tokens=1_000_000)  # far over the budget: not this campaign's

    _rounds(
        store,
        tmp_path,
        lambda run_id: _finish_tasks(store, run_id, tokens=40),
        after="base",
        budget=RoundsBudget(tokens=50),
    )

    assert [c.run_id for c in chain(store, "camp-r2")] == ["base", "camp", "camp-r2"]
    assert store.get_run("camp-r3") is None
    out = " ".join(capsys.readouterr().out.split())
    assert "stopping before round 3: the token budget is spent (80 of 50 tokens)" in out


def test_a_campaign_whose_last_round_id_would_be_too_long_is_refused_before_anything_runs(
    store: Store, tmp_path: Path
) -> None:
    from cli.choices import Workers
    from cli.rounds import RoundSteps, run_rounds
    from generator.errors import InvalidValueError

    config = load_campaign(DEMO, {"run": "x" * 126})
    with pytest.raises(InvalidValueError, match="--rounds"):
        run_rounds(
            _Context(_settings(store, tmp_path)),  # type: ignore[arg-type]
            config,
            RoundSteps(announce_plan=lambda planned, after: None, generate=lambda run: None),
            rounds=2,
            after=None,
            budget=RoundsBudget(),
            workers=Workers.INPROCESS,
            show_ui=False,
            port=0,
        )
    assert store.runs() == []


def test_a_round_whose_work_no_job_will_do_stops_the_loop_with_the_reason(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cli.rounds

    monkeypatch.setattr(cli.rounds, "POLL_SECONDS", 0.01)
    with pytest.raises(RoundStalledError, match=r"round 1 \(run camp\): 1 generation tasks"):
        _rounds(store, tmp_path, lambda run_id: None)  # the generation job failed for good
    assert store.get_run("camp-r2") is None


def test_budgets_without_rounds_are_refused_in_one_line(store: Store) -> None:
    done = run_cli(cli_env(store), "run", str(DEMO), "--token-budget", "10")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: --token-budget and --decision-budget limit --rounds 2 or more"
    )
    bad = run_cli(cli_env(store), "run", str(DEMO), "--rounds", "0")
    assert bad.returncode == 2 and "--rounds" in bad.stderr


# The whole loop, with the bundled model: a short campaign on the demo's real data.


def _small_campaign(tmp_path: Path) -> Path:
    """The demo campaign for one gap and two requests. The hard filters are off, so that
    whatever the small model writes reaches the reviewer (the filters have their own tests)."""
    config = yaml.safe_load(DEMO.read_text())
    for key in ("data", "reference"):
        config[key] = str(DEMO.parent / config[key])
    config["eval_sets"] = [str(DEMO.parent / name) for name in config["eval_sets"]]
    hard = ("malformed", "exact_duplicate", "near_duplicate", "semantic_duplicate", "pii")
    config["filters"] = {"judge": False, "contamination": False} | dict.fromkeys(hard, False)
    config.update(run="small", gaps=1, per_gap=2, max_tokens=160)
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class Reviewer(threading.Thread):
    """A reviewer working through each round's queue in the store, as the UI does: every item
    of a round gets that round's verdict (a rejection as wrong); at most ``limit`` decisions."""

    def __init__(self, store: Store, verdicts: dict[str, str], limit: int = 1_000) -> None:
        super().__init__(daemon=True)
        self.store, self.verdicts, self.limit = store, verdicts, limit
        self.decided: dict[str, int] = dict.fromkeys(verdicts, 0)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and sum(self.decided.values()) < self.limit:
            for run, verdict in self.verdicts.items():
                lease = self.store.claim("ann", run)
                if lease is not None:
                    tags = ["wrong"] if verdict == "reject" else None
                    self.store.decide(
                        lease.item_id,
                        "ann",
                        verdict,  # type: ignore[arg-type]
                        lease.version,
                        reason_tags=tags,
                    )
                    self.decided[run] += 1
                    break
            else:
                time.sleep(0.2)


@pytest.fixture
def valkey_store(valkey_url: str, key_prefix: str) -> Iterator[Store]:
    client = redis.Redis.from_url(valkey_url, decode_responses=True)
    store = Store(client, prefix=key_prefix)
    yield store
    store.delete_prefix()
    client.close()


def _env(store: Store, model_dir: Path) -> dict[str, str]:
    return cli_env(store, GAPFILL_DATA_DIR=str(model_dir.parent), GAPFILL_ROUNDS_POLL_SECONDS="0.5")


@pytest.mark.slow
def test_two_rounds_generate_wait_for_review_and_the_second_learns_from_the_first(
    valkey_store: Store, tmp_path: Path, model_dir: Path
) -> None:
    store = valkey_store
    # Round 1 all turned down as wrong: its gap stays the largest, and round 2 is told why.
    reviewer = Reviewer(store, {"small": "reject", "small-r2": "accept"})
    reviewer.start()
    env = _env(store, model_dir)
    done = run_cli(env, "run", str(_small_campaign(tmp_path)), "--rounds", "2", timeout=900)
    reviewer.stop.set()
    assert done.returncode == 0, done.stderr[-3000:]
    second = store.get_run("small-r2")
    assert second is not None and (second.after, second.round) == ("small", 2)
    rows = round_yields(store, "small-r2")
    assert [row.round for row in rows] == [1, 2] and rows[0].gap_id == rows[1].gap_id
    one, two = rows
    assert one.reviewed == one.generated == reviewer.decided["small"] > 0 and one.rate == 0
    assert two.accepted == two.generated == reviewer.decided["small-r2"] > 0 and two.rate == 1
    prompts = [t.messages[0].content for t in store.get_tasks(store.task_ids("small-r2"))]
    wrong = f"({reviewer.decided['small']} answers were wrong)"
    assert any(wrong in prompt for prompt in prompts)
    assert "the rounds' yield" in done.stdout
    status = run_cli(env, "status", "--run", "small-r2")
    assert status.returncode == 0 and "yield per round and gap" in status.stdout


@pytest.mark.slow
def test_the_decision_budget_stops_the_rounds_and_the_same_command_resumes(
    valkey_store: Store, tmp_path: Path, model_dir: Path
) -> None:
    store = valkey_store
    env = _env(store, model_dir)
    reviewer = Reviewer(store, {"small": "accept"}, limit=1)
    reviewer.start()
    args = ("run", str(_small_campaign(tmp_path)), "--rounds", "3", "--decision-budget", "1")
    done = run_cli(env, *args, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "the reviewer-decision budget is spent (1 of 1 decisions)" in done.stdout
    assert store.get_run("small-r2") is None
    again = run_cli(env, *args, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "run 'small' is in the store: resuming it" in again.stdout
    assert "generated and scored already" in again.stdout
    assert "budget is spent" in again.stdout and store.get_run("small-r2") is None
