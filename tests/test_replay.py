"""Replaying recorded reviews: LLMFAO's real votes, through the store's leases and decisions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from generator.agreement import votes_by_item
from generator.calibration import calibrate, judge_label
from generator.errors import DataFileError, InvalidRowError, LeaseError
from generator.llmfao import replay_rows, write_replay
from generator.replay import read_replay, replay
from generator.schema import CandidateStatus, PreferenceExample
from generator.store import Store

RUN = "replayed"


def pair_row(
    source: str, votes: list[tuple[str, str]], judge: str | None = None, gap: str = "g1"
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": source,
        "gap": gap,
        "model": "model-a vs model-b",
        "example": {
            "prompt": [{"role": "user", "content": f"Question {source}?"}],
            "chosen": [{"role": "assistant", "content": f"Answer A to {source}."}],
            "rejected": [{"role": "assistant", "content": f"Answer B to {source}."}],
        },
        "votes": [{"reviewer": who, "vote": vote} for who, vote in votes],
    }
    if judge is not None:
        row["judge"] = {"model": "judge-m", "vote": judge}
    return row


def write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


# -- LLMFAO ------------------------------------------------------------------------------------


def test_llmfao_becomes_one_replay_row_per_pair_with_every_crowd_vote(real_data: Path) -> None:
    rows = list(replay_rows(real_data / "llmfao"))
    assert len(rows) == 2139
    assert sum(len(row["votes"]) for row in rows) == 8931
    assert len({v["reviewer"] for row in rows for v in row["votes"]}) == 124
    first = rows[0]  # pair 0: two crowd ties, GPT-4 for the left answer (model_x)
    assert first["id"] == "llmfao-0" and first["gap"] == "k8s"
    assert first["model"] == "Airoboros L2 70B vs Weaver 12k"
    assert first["votes"][:2] == [
        {"reviewer": "crowd-58", "vote": "reject", "reason": "tie"},
        {"reviewer": "crowd-83", "vote": "reject", "reason": "tie"},
    ]
    assert first["judge"] == {"model": "gpt-4", "vote": "accept"}


def test_llmfao_reproduces_the_published_human_and_gpt4_agreement(real_data: Path) -> None:
    """The yardsticks quoted in the issue: one worker against the majority of the others 62%
    (77% where neither said tie); GPT-4 against the crowd majority 45% (75%)."""
    votes, judge = {}, {}
    for row in replay_rows(real_data / "llmfao"):
        votes[row["id"]] = {v["reviewer"]: v["vote"] for v in row["votes"]}
        judge[row["id"]] = row["judge"]["vote"]
    result = calibrate(votes, judge)
    assert result.humans.agreement == pytest.approx(0.617, abs=0.001)
    assert result.humans.decisive_agreement == pytest.approx(0.771, abs=0.001)
    assert result.judge is not None
    assert result.judge.agreement == pytest.approx(0.446, abs=0.001)
    assert result.judge.decisive_agreement == pytest.approx(0.746, abs=0.001)
    assert not result.judge_meets_humans  # kappa 0.22 against the humans' 0.42


def test_a_directory_that_is_not_llmfao_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="not an LLMFAO directory"):
        list(replay_rows(tmp_path))


# -- reading a replay file -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (pair_row("p1", [("ann", "maybe")]), "votes.0.vote"),
        (pair_row("p1", [("ann", "accept"), ("ann", "swap")]), "a reviewer votes twice"),
        (pair_row("p1", [("", "accept")]), "votes.0.reviewer"),
        ({**pair_row("p1", []), "extra": 1}, "extra"),
        ({**pair_row("p1", []), "example": {"nothing": "here"}}, ""),
        (
            {
                "id": "s1",
                "example": {"messages": [{"role": "user", "content": "Hi?"}]},
                "votes": [],
            },
            "assistant",
        ),
        (
            {
                "id": "s1",
                "example": {
                    "messages": [
                        {"role": "user", "content": "Hi?"},
                        {"role": "assistant", "content": "Hello."},
                    ]
                },
                "votes": [{"reviewer": "ann", "vote": "swap"}],
            },
            "'swap' is for a preference pair only",
        ),
    ],
)
def test_a_bad_line_is_named_with_its_reason(tmp_path: Path, row: Any, reason: str) -> None:
    path = write(tmp_path / "replay.jsonl", [pair_row("p0", [("ann", "accept")]), row])
    with pytest.raises(InvalidRowError, match=rf"replay.jsonl:2: .*{reason}"):
        read_replay(path, RUN)


def test_a_bad_line_stores_nothing(store: Store, tmp_path: Path) -> None:
    path = write(tmp_path / "r.jsonl", [pair_row("p0", [("ann", "accept")]), "not an object"])
    with pytest.raises(InvalidRowError, match=r"r\.jsonl:2"):
        replay(store, path, RUN)
    assert RUN not in store.runs()
    assert store.decisions(RUN) == []


def test_skipping_lists_bad_and_repeated_lines_and_replays_the_rest(
    store: Store, tmp_path: Path
) -> None:
    empty = pair_row("p2", [("ann", "accept")])
    empty["example"]["chosen"][0]["content"] = ""
    rows = [pair_row("p0", [("ann", "accept")]), empty, {**pair_row("p0", []), "id": "again"}]
    result = replay(store, write(tmp_path / "r.jsonl", rows), RUN, skip_invalid=True)
    assert result.items == 1 and result.applied == 1
    assert [(e.line, e.reason) for e in result.skipped] == [
        (2, "chosen.0.content: content is empty"),
        (3, "the same example as line 1"),
    ]


# -- votes through the store ---------------------------------------------------------------------


def test_votes_are_leases_and_decisions_under_the_runs_overlap_rule(
    store: Store, tmp_path: Path
) -> None:
    rows = [
        pair_row("swapped", [("ann", "swap"), ("bob", "swap"), ("cy", "accept")]),
        pair_row("kept", [("ann", "accept"), ("bob", "accept"), ("cy", "swap")]),
        pair_row("split", [("ann", "accept"), ("bob", "swap"), ("cy", "reject")]),
        pair_row("waiting", [("ann", "swap")]),
    ]
    result = replay(store, write(tmp_path / "r.jsonl", rows), RUN)
    assert (result.k, result.votes, result.applied) == (3, 10, 10)
    by_source = {source: item for item, source in result.source_ids.items()}
    swapped = store.get(by_source["swapped"])
    assert swapped.status == CandidateStatus.ACCEPTED
    original = swapped.payload
    assert isinstance(original, PreferenceExample)
    assert swapped.edited == original.swapped()  # the order two of three chose
    kept = store.get(by_source["kept"])
    assert kept.status == CandidateStatus.ACCEPTED and kept.edited is None
    assert store.get(by_source["split"]).status == CandidateStatus.REJECTED  # no majority
    waiting = store.get(by_source["waiting"])
    assert waiting.status == CandidateStatus.PENDING  # one vote of three
    assert waiting.edited is None  # a swap vote is not an edit the next reviewer sees
    assert store.votes(waiting.id) == {"ann": "swap"}
    assert by_source["split"] in store.split_votes(RUN)
    log = store.decisions(RUN)
    assert [d.decision.reviewer for d in log[:3]] == ["ann", "bob", "cy"]
    assert votes_by_item(d.decision for d in log)[by_source["swapped"]] == {
        "ann": "swap",
        "bob": "swap",
        "cy": "accept",
    }


def test_a_claimed_item_is_refused_to_a_reviewer_who_voted_or_while_another_holds_it(
    store: Store, tmp_path: Path
) -> None:
    result = replay(
        store, write(tmp_path / "r.jsonl", [pair_row("p", [("ann", "accept")])]), RUN, k=3
    )
    item = next(iter(result.source_ids))
    with pytest.raises(LeaseError, match="ann has voted on item"):
        store.claim_item(item, "ann")
    lease = store.claim_item(item, "bob")
    with pytest.raises(LeaseError, match="leased to 'bob'"):
        store.claim_item(item, "cy")
    store.decide(item, "bob", "reject", lease.version)
    assert store.votes(item) == {"ann": "accept", "bob": "reject"}


def test_calibration_from_the_log_and_the_recorded_judge(store: Store, tmp_path: Path) -> None:
    rows = [
        pair_row(f"p{n}", [("ann", vote), ("bob", vote), ("cy", "reject")], judge=judge)
        for n, (vote, judge) in enumerate(
            [("accept", "accept"), ("swap", "swap"), ("accept", "swap"), ("swap", "swap")]
        )
    ]
    replay(store, write(tmp_path / "r.jsonl", rows), RUN)
    items = store.get_many([i for s in CandidateStatus for i in store.ids(RUN, s)])
    judged = {}
    for item in items:
        score = item.scores["judge"]
        judged[item.id] = judge_label(score.value, score.passed, score.evidence, pair=True)
    votes = votes_by_item(d.decision for d in store.decisions(RUN))
    result = calibrate(votes, judged)  # type: ignore[arg-type]
    assert result.judge is not None
    assert result.judge.agreement == pytest.approx(3 / 4)
    assert result.items_with_votes == 4


def test_a_file_with_more_votes_on_an_item_than_the_run_takes_is_refused(
    store: Store, tmp_path: Path
) -> None:
    path = write(tmp_path / "r.jsonl", [pair_row("p", [("ann", "accept"), ("bob", "swap")])])
    with pytest.raises(DataFileError, match="more than k=1"):
        replay(store, path, RUN, k=1)


def test_the_llmfao_replay_file_is_written_whole(real_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "llmfao.jsonl"
    assert write_replay(real_data / "llmfao", out) == 2139
    assert not (tmp_path / "llmfao.jsonl.partial").exists()
    skipped: list[InvalidRowError] = []
    items = read_replay(out, RUN, skipped=skipped)
    assert len(items) == 1760  # 289 pairs with an empty answer, 90 repeats of another pair
    assert sum("content is empty" in e.reason for e in skipped) == 289
    assert sum("the same example" in e.reason for e in skipped) == 90


# -- found by an independent attack ------------------------------------------------------------


def test_a_swap_win_undone_by_its_settler_settles_again_on_the_next_vote(
    store: Store, tmp_path: Path
) -> None:
    rows = [pair_row("x", [("a", "swap"), ("b", "swap"), ("c", "reject")])]
    result = replay(store, write(tmp_path / "r.jsonl", rows), RUN, k=3)
    item = next(iter(result.source_ids))
    settled = store.get(item)
    assert settled.status == CandidateStatus.ACCEPTED
    assert isinstance(settled.payload, PreferenceExample)
    swapped = settled.payload.swapped()
    assert settled.edited == swapped
    store.undo(item, "c")  # the settler takes their vote back: the swap goes with it
    back = store.get(item)
    assert back.status == CandidateStatus.PENDING and back.edited is None
    assert store.votes(item) == {"a": "swap", "b": "swap"}
    lease = store.claim_item(item, "d")
    store.decide(item, "d", "reject", lease.version)
    again = store.get(item)
    assert again.status == CandidateStatus.ACCEPTED and again.edited == swapped
    assert store.decisions(RUN)[-1].decision.reviewer == "d", "logged"


def test_an_example_another_run_holds_gets_none_of_the_files_votes(
    store: Store, tmp_path: Path
) -> None:
    live = replay(store, write(tmp_path / "live.jsonl", [pair_row("p", [])]), "live", k=1)
    item = next(iter(live.source_ids))
    other = write(tmp_path / "other.jsonl", [pair_row("p", [("ann", "accept")])])
    result = replay(store, other, "other", k=1)
    assert result.applied == 0 and result.in_other_runs == ["p"]
    assert store.get(item).status == CandidateStatus.PENDING
    assert store.decisions("live") == [] and store.decisions("other") == []


def test_a_replay_cannot_vote_as_the_prescreen(tmp_path: Path) -> None:
    path = write(tmp_path / "r.jsonl", [pair_row("p", [("model:prescreen", "accept")])])
    with pytest.raises(InvalidRowError, match=r"r\.jsonl:1: votes\.0\.reviewer"):
        read_replay(path, RUN)


def test_the_prescreen_cannot_claim_an_item_of_the_audit_share(
    store: Store, tmp_path: Path
) -> None:
    from generator.schema import AUTO_REVIEWER

    result = replay(store, write(tmp_path / "r.jsonl", [pair_row("p", [])]), RUN, k=1)
    item = next(iter(result.source_ids))
    store.add_audit(RUN, {item: "accept"})
    store.add_audit(RUN, {item: "reject"})
    assert store.audit(RUN) == {item: "accept"}, "a drawn item keeps its first label"
    with pytest.raises(LeaseError, match="audit share"):
        store.claim_item(item, AUTO_REVIEWER)
    assert store.claim_item(item, "ann").reviewer == "ann", "a human may"
