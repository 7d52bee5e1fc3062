"""Generating conversations: the backend plays the user for more turns and the tools the
assistant calls; calls are constrained to their tools' schemas where the backend can, and a
call that breaks them anyway is kept for the tool_calls filter, never repaired."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
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
    ToolDefinition,
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


@pytest.fixture
def valkey_store(valkey_url: str, key_prefix: str) -> Iterator[Store]:
    """The bundled Valkey only: what the model writes does not depend on the server, and the
    test takes a minute and a half."""
    client = redis.Redis.from_url(valkey_url, decode_responses=True)
    store = Store(client, prefix=key_prefix)
    yield store
    store.delete_prefix()
    client.close()


@pytest.mark.slow
def test_the_bundled_model_writes_multi_turn_tool_conversations_whose_calls_fit_their_schemas(
    valkey_store: Store, local_backend: Backend
) -> None:
    store = valkey_store
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


def test_a_tools_own_references_still_resolve_inside_the_turn_schema() -> None:
    unit = ToolDefinition.model_validate(
        {
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "$defs": {"Unit": {"enum": ["celsius", "fahrenheit"]}},
                    "properties": {"unit": {"$ref": "#/$defs/Unit"}},
                    "required": ["unit"],
                },
            }
        }
    )
    validator = Draft202012Validator(tool_choice_schema([WEATHER, unit], calls_allowed=True))
    call = {"name": "get_weather", "arguments": {"unit": "celsius"}}
    assert validator.is_valid({"tool_calls": [call]})
    wrong = {"name": "get_weather", "arguments": {"unit": "kelvin"}}
    assert not validator.is_valid({"tool_calls": [wrong]})


class AlwaysCalling:
    """A backend that calls a tool whatever it is asked (one ignoring the schema's limit on
    rounds, as an OpenAI server without strict schemas can): pure routing logic."""

    name, model = "scripted", "script"

    def load(self) -> None: ...

    def close(self) -> None: ...

    def generate(self, requests: list[Any]) -> list[Any]:
        from generator.backends import ChatResult, Completion

        call = '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}'
        results = '{"results": ["-4 C"]}'
        return [
            ChatResult(
                request_id=r.id,
                completions=[
                    Completion(
                        text=results if "results" in str(r.json_schema) else call,
                        finish_reason="stop",
                        tokens=3,
                    )
                ],
                prompt_tokens=5,
                seconds=0.01,
            )
            for r in requests
        ]


def test_a_backend_that_never_stops_calling_ends_its_conversation_at_the_round_limit(
    store: Store,
) -> None:
    gap = Gap(id="weather", run_id="conv-run", label="weather", target=1, examples=["x"])
    settings = ConversationSettings(tools=[WEATHER], max_tool_rounds=2)
    [task] = tasks_for_gap(gap, PromptTemplates(), wanted=1, conversation=settings)
    store.add_tasks([answer_task(task, "Is it cold in Oslo?")])
    [item] = drain(store, AlwaysCalling(), "conv-run", limit=12)  # type: ignore[arg-type]
    assert item.payload is None and item.raw is not None
    kept = json.loads(item.raw)["conversation"]
    assert sum(1 for m in kept if m.get("tool_calls")) == 2, "two rounds, then it ended"


def test_output_nested_thousands_deep_is_kept_and_fails_nothing(store: Store) -> None:
    from generator.backends import ChatResult, Completion

    class Nested(AlwaysCalling):
        def generate(self, requests: list[Any]) -> list[Any]:
            deep = (
                '{"tool_calls": [{"name": "get_weather", "arguments": '
                + "[" * 5000
                + "]" * 5000
                + "}]}"
            )
            texts = [deep, '{"answer": "It is cold."}']
            return [
                ChatResult(
                    request_id=r.id,
                    completions=[Completion(text=texts[i], finish_reason="stop", tokens=3)],
                    prompt_tokens=5,
                    seconds=0.01,
                )
                for i, r in enumerate(requests)
            ]

    gap = Gap(id="weather", run_id="conv-run", label="weather", target=2, examples=["x"])
    [task] = tasks_for_gap(
        gap, PromptTemplates(), wanted=2, conversation=ConversationSettings(tools=[WEATHER])
    )
    tasks = [answer_task(task, q) for q in ("Is it cold in Oslo?", "Is it cold in Rome?")]
    store.add_tasks(tasks)
    outcome = run_batch(store, Nested(), [t.id for t in tasks])  # type: ignore[arg-type]
    assert outcome.tasks_done == 2, "neither task failed the batch"
    assert len(store.get_many(outcome.candidate_ids)) == 2, "each kept, nothing lost"


def test_data_in_a_tool_schema_is_not_rewritten_with_its_references() -> None:
    tool = ToolDefinition.model_validate(
        {
            "function": {
                "name": "tag",
                "parameters": {
                    "type": "object",
                    "properties": {"label": {"const": {"$ref": "#/kept"}}},
                },
            }
        }
    )
    validator = Draft202012Validator(tool_choice_schema([tool], calls_allowed=True))
    kept = {"name": "tag", "arguments": {"label": {"$ref": "#/kept"}}}
    assert validator.is_valid({"tool_calls": [kept]})


def test_a_conversations_steps_are_seeded_and_a_plain_answers_are_left_alone() -> None:
    gap = Gap(id="weather", run_id="conv-run", label="weather", target=1, examples=["x"])
    [talking] = tasks_for_gap(
        gap, PromptTemplates(), wanted=1, conversation=ConversationSettings(turns=2)
    )
    [plain] = tasks_for_gap(gap, PromptTemplates(), wanted=1)
    first = answer_task(talking, "Is it cold in Oslo?")
    assert first.sampling.seed is not None
    assert answer_task(talking, "Is it cold in Oslo?").sampling.seed == first.sampling.seed
    assert answer_task(talking, "Is it cold in Rome?").sampling.seed != first.sampling.seed
    assert answer_task(plain, "Is it cold in Oslo?").sampling.seed is None
