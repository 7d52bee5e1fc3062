"""Generating conversations: the backend plays the user for more turns and the tools the
assistant calls; calls are constrained to their tools' schemas where the backend can, and a
call that breaks them anyway is kept for the tool_calls filter, never repaired."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from generator.backends import Backend
from generator.conversations import (
    ConversationSettings,
    assistant_turn,
    backend_messages,
    calls_since_user,
    tool_choice_schema,
    tool_results,
)
from generator.filters.tool_calls import ToolCallFilter
from generator.generation import answer_task, run_batch
from generator.prompts import PromptTemplates, tasks_for_gap
from generator.schema import (
    Candidate,
    CandidateStatus,
    Gap,
    SamplingParams,
    SFTExample,
)
from generator.store import Store
from tests.factories import tool_conversations

WEATHER = tool_conversations()[0].tools[0]  # type: ignore[index]


def test_the_turn_schema_admits_an_answer_or_calls_that_fit_their_tools_and_nothing_else() -> None:
    validator = Draft202012Validator(tool_choice_schema([WEATHER], calls_allowed=True))
    assert validator.is_valid({"answer": "It is sunny."})
    assert validator.is_valid(
        {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}
    )
    assert not validator.is_valid({"tool_calls": [{"name": "send_email", "arguments": {}}]})
    assert not validator.is_valid(
        {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "K"}}]}
    )
    assert not validator.is_valid({"answer": "x", "tool_calls": []})
    answer_only = Draft202012Validator(tool_choice_schema([WEATHER], calls_allowed=False))
    assert not answer_only.is_valid(
        {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}
    )


@pytest.mark.parametrize(
    ("text", "content", "calls"),
    [
        ('{"answer": "Sunny."}', "Sunny.", []),
        (
            '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}',
            "",
            ["get_weather"],
        ),
        # Not what was asked for: kept as written, an unknown tool included (the filter flags it).
        ('{"tool_calls": [{"name": "send_email", "arguments": {"to": "x"}}]}', "", ["send_email"]),
        ("It is sunny in Oslo.", "It is sunny in Oslo.", []),
    ],
)
def test_an_assistant_turn_is_read_as_written(text: str, content: str, calls: list[str]) -> None:
    turn = assistant_turn(text, tools_offered=True)
    assert turn is not None and turn.content == content
    assert [c.function.name for c in turn.tool_calls or []] == calls


def test_unusable_output_is_no_turn() -> None:
    assert assistant_turn("  ", tools_offered=True) is None
    assert assistant_turn('{"tool_calls": [{"name": "bad name!"}]}', tools_offered=True) is None


def test_tool_results_need_one_per_call() -> None:
    turn = assistant_turn(
        '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "A"}},'
        ' {"name": "get_weather", "arguments": {"city": "B"}}]}',
        tools_offered=True,
    )
    assert turn is not None
    results = tool_results('{"results": ["12 C", "14 C"]}', turn)
    assert results is not None
    assert [(r.name, r.tool_call_id, r.content) for r in results] == [
        ("get_weather", "call_0", "12 C"),
        ("get_weather", "call_1", "14 C"),
    ]
    assert tool_results('{"results": ["12 C"]}', turn) is None


def test_what_the_backend_is_sent_is_plain_roles_with_calls_as_json() -> None:
    conversation = tool_conversations()[2].messages  # two calls, two results
    sent = backend_messages("Be brief.", conversation)
    assert [m.role for m in sent] == ["system", "user", "assistant", "user", "assistant"]
    assert sent[2].content.startswith('{"tool_calls":[{"name":"get_weather"')
    assert sent[3].content.count("[result of get_weather]") == 2
    assert calls_since_user(list(conversation[:-1])) == 1


def drain(store: Store, backend: Backend, run_id: str, limit: int = 40) -> list[Candidate]:
    """Run every open task of the run, step after step, as workers would."""
    for _ in range(limit):
        open_tasks = store.open_tasks(run_id)
        if not open_tasks:
            break
        run_batch(store, backend, open_tasks)
    else:
        raise AssertionError("the conversation never ended")
    made = store.ids(run_id, CandidateStatus.GENERATED)
    return store.get_many(made)


@pytest.mark.slow
def test_the_bundled_model_writes_multi_turn_tool_conversations_whose_calls_fit_their_schemas(
    store: Store, local_backend: Backend
) -> None:
    gap = Gap(
        id="weather",
        run_id="conv-run",
        kind="taxonomy",
        label="weather questions",
        description="asking about the weather in a city",
        target=3,
        examples=[
            "What's the weather like in Paris today?",
            "Is it raining in London?",
            "Should I take a coat in Oslo this evening?",
        ],
    )
    settings = ConversationSettings(turns=2, tools=[WEATHER], max_tool_rounds=1)
    templates = PromptTemplates()
    # Low temperature and a seed: the 135M model loops less, and a failure reproduces.
    steady = SamplingParams(temperature=0.3, top_p=0.9, max_tokens=256, seed=11)
    defaults = templates.defaults().model_copy(update={"response_sampling": steady})
    [task] = tasks_for_gap(gap, templates, defaults=defaults, wanted=3, conversation=settings)
    assert task.turns == 2 and task.tools == [WEATHER] and task.user_system
    assert "weather questions" in task.user_system
    # The requests are the gap's own examples: the instruction step is tested elsewhere.
    store.add_tasks([answer_task(task, request) for request in gap.examples])
    candidates = drain(store, local_backend, "conv-run")
    conversations = [c for c in candidates if isinstance(c.payload, SFTExample)]
    assert conversations, [c.raw[:3000] for c in candidates if c.raw]
    for item in conversations:
        example = item.payload
        assert isinstance(example, SFTExample)
        assert [m.role for m in example.messages].count("user") == 2
        assert example.tools == [WEATHER]
        steps = [use.step for use in item.provenance.templates]
        assert steps[0] == "instructions" and "user_turn" in steps
        assert all(use.hash for use in item.provenance.templates[1:])
    # Constrained decoding: every call the model made fits its tool's schema.
    assert all(score.passed for score in ToolCallFilter().score(conversations))
