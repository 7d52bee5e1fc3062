"""The data model: what counts as a valid example, candidate and decision."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from generator.errors import InvalidValueError
from generator.schema import (
    Candidate,
    CandidateKind,
    CandidateStatus,
    Decision,
    Gap,
    Message,
    PreferenceExample,
    SamplingParams,
    SFTExample,
    check_identifier,
)
from generator.store.keys import Keys
from tests.factories import candidate, sft


def msg(role: str, content: str = "text") -> dict[str, str]:
    return {"role": role, "content": content}


@pytest.mark.parametrize(
    "roles",
    [["user", "assistant"], ["system", "user", "assistant"], ["user", "assistant"] * 3],
)
def test_alternating_conversations_ending_with_the_assistant_are_valid(roles: list[str]) -> None:
    SFTExample.model_validate({"messages": [msg(r) for r in roles]})


@pytest.mark.parametrize(
    ("roles", "reason"),
    [
        ([], "no messages"),
        (["system"], "only a system message"),
        (["user"], "last message must be from the assistant"),
        (["assistant", "user"], "messages.0.role"),
        (["user", "user", "assistant"], "messages.1.role"),
        (["system", "system", "user", "assistant"], "messages.1.role"),
        (["user", "assistant", "system"], "messages.2.role"),
    ],
)
def test_bad_role_orders_are_refused(roles: list[str], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        SFTExample.model_validate({"messages": [msg(r) for r in roles]})


@pytest.mark.parametrize("content", ["", "   ", "\n\t"])
def test_blank_content_is_refused(content: str) -> None:
    with pytest.raises(ValidationError, match="content is empty"):
        Message(role="user", content=content)


def test_unknown_roles_and_extra_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        Message.model_validate({"role": "function", "content": "x"})
    with pytest.raises(ValidationError):
        Message.model_validate({"role": "user", "content": "x", "weight": 1})


def test_preference_pairs_need_a_user_prompt_and_assistant_completions() -> None:
    good = {"prompt": [msg("user")], "chosen": [msg("assistant")], "rejected": [msg("assistant")]}
    PreferenceExample.model_validate(good)
    with pytest.raises(ValidationError, match="prompt: the last message must be from the user"):
        PreferenceExample.model_validate({**good, "prompt": [msg("user"), msg("assistant")]})
    with pytest.raises(ValidationError, match="rejected: must hold assistant turns only"):
        PreferenceExample.model_validate({**good, "rejected": [msg("user")]})
    with pytest.raises(ValidationError, match="chosen: no messages"):
        PreferenceExample.model_validate({**good, "chosen": []})


def test_candidate_ids_are_content_hashes() -> None:
    assert candidate(1).id == candidate(1, run="other", gap="elsewhere", priority=3).id
    assert candidate(1).id != candidate(2).id
    assert len(candidate(1).id) == 32


def test_malformed_output_is_kept_as_raw_text() -> None:
    broken = Candidate(kind=CandidateKind.SFT, raw='{"instructions": [', run_id="r")
    assert broken.payload is None and broken.id == broken.compute_id()
    with pytest.raises(ValidationError, match="needs a payload"):
        Candidate(kind=CandidateKind.SFT, run_id="r")


def test_a_candidate_payload_must_match_its_kind() -> None:
    with pytest.raises(ValidationError, match="needs a PreferenceExample"):
        Candidate(kind=CandidateKind.PREFERENCE, payload=sft("q"), run_id="r")


@pytest.mark.parametrize("run_id", ["", "has space", "a|b", "x" * 129, "bad/run", "a:status"])
def test_run_ids_are_key_safe(run_id: str) -> None:
    with pytest.raises(ValidationError):
        Candidate(kind=CandidateKind.SFT, payload=sft("q"), run_id=run_id)


def test_a_run_id_holds_no_colon_so_it_cannot_own_another_runs_keys() -> None:
    keys = Keys("p")
    # Run "a:status" would name its queue exactly as run "a" names its set of pending items.
    assert keys.run("a:status", "pending") == keys.status("a", CandidateStatus.PENDING)
    with pytest.raises(InvalidValueError, match=r"^--run: 'a:status' is not a valid id"):
        check_identifier("a:status", "--run")
    assert check_identifier("run-1.b_2", "--run") == "run-1.b_2"


def test_an_edit_decision_carries_the_edited_payload_and_only_an_edit_does() -> None:
    base = {"item_id": "i", "run_id": "r", "reviewer": "alice", "item_version": 0}
    Decision.model_validate({**base, "verdict": "edit", "edited_payload": sft("q").model_dump()})
    with pytest.raises(ValidationError, match="needs the edited payload"):
        Decision.model_validate({**base, "verdict": "edit"})
    with pytest.raises(ValidationError, match="only an edit"):
        Decision.model_validate(
            {**base, "verdict": "accept", "edited_payload": sft("q").model_dump()}
        )
    with pytest.raises(ValidationError):
        Decision.model_validate({**base, "verdict": "maybe"})


@pytest.mark.parametrize(
    "params", [{"temperature": -0.1}, {"top_p": 0}, {"n": 0}, {"max_tokens": 0}, {"top_k": 5}]
)
def test_sampling_parameters_out_of_range_are_refused(params: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        SamplingParams.model_validate(params)


def test_a_gap_deficit_never_goes_negative() -> None:
    assert Gap(id="g", run_id="r", label="x", have=3, target=10).deficit == 7
    assert Gap(id="g", run_id="r", label="x", have=30, target=10).deficit == 0


def answer(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def test_a_ranking_holds_three_to_nine_answers_best_first_with_its_extremes_as_the_pair() -> None:
    prompt = [msg("user", "Name a colour.")]
    ranking = PreferenceExample.ranking(
        [Message.model_validate(m) for m in prompt],
        [[Message.model_validate(m) for m in answer(t)] for t in ("red", "blue", "green", "teal")],
    )
    assert [a[0].content for a in ranking.answers()] == ["red", "blue", "green", "teal"]
    assert (ranking.chosen[0].content, ranking.rejected[0].content) == ("red", "teal")
    reordered = ranking.ordered([2, 0, 3, 1])
    assert [a[0].content for a in reordered.answers()] == ["green", "red", "teal", "blue"]
    assert (reordered.chosen[0].content, reordered.rejected[0].content) == ("green", "blue")
    assert ranking.swapped().chosen[0].content == "teal"
    assert ranking.ranked_pairs("best_worst") == [(0, 3)]
    assert len(ranking.ranked_pairs("all")) == 6
    with pytest.raises(ValueError, match="no ordering of 4 answers"):
        ranking.ordered([0, 0, 1, 2])
    bad = {"prompt": prompt, "chosen": answer("blue"), "rejected": answer("teal")}
    with pytest.raises(ValidationError, match="first and its last answer"):
        PreferenceExample.model_validate(
            {**bad, "ranked": [answer("red"), answer("blue"), answer("teal")]}
        )
    with pytest.raises(ValidationError, match="at least 3"):
        PreferenceExample.model_validate({**bad, "ranked": [answer("blue"), answer("teal")]})
    with pytest.raises(ValidationError, match=r"ranked.1: must hold assistant turns only"):
        PreferenceExample.model_validate(
            {**bad, "ranked": [answer("blue"), [msg("user", "x")], answer("teal")]}
        )


def test_a_pairs_bytes_do_not_change_with_rankings_in_the_model() -> None:
    pair = {"prompt": [msg("user")], "chosen": answer("a"), "rejected": answer("b")}
    assert PreferenceExample.model_validate(pair).model_dump(mode="json") == pair


def test_a_plain_tasks_id_covers_the_fields_it_always_did_so_stored_runs_resume() -> None:
    from generator.schema import GenerationTask, TaskStage, content_hash

    for stage in (TaskStage.INSTRUCTIONS, TaskStage.RESPONSE):
        task = GenerationTask(
            run_id="r", stage=stage, messages=[Message(role="user", content="Write a haiku.")]
        )
        fields = {"run_id", "gap_id", "stage", "kind", "messages", "sampling", "variants"}
        assert task.id == content_hash("task", task.model_dump(mode="json", include=fields))
        talking = GenerationTask(
            run_id="r",
            stage=stage,
            turns=3,
            messages=[Message(role="user", content="Write a haiku.")],
        )
        assert talking.id != task.id, "a conversation's settings are part of its id"
