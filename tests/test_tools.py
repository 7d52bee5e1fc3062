"""Conversations with tools: what a tool call, a tool result and a tools list may be, and how a
conversation's calls are checked against the tools it lists."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from pydantic import ValidationError

from generator.schema import Message, SFTExample, content_hash
from generator.tools import call_problems, schema_problem

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather now in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def call(name: str = "get_weather", arguments: Any = None, **extra: Any) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "arguments": {"city": "Paris"} if arguments is None else arguments,
        },
        **extra,
    }


def conversation(
    *calls: dict[str, Any], results: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    results = (
        results
        if results is not None
        else [{"role": "tool", "content": "18 C, sunny"}] * len(calls)
    )
    return {
        "messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": list(calls)},
            *results,
            {"role": "assistant", "content": "It is 18 C and sunny in Paris."},
        ],
        "tools": [WEATHER],
    }


def test_a_tool_calling_conversation_round_trips_in_trl_layout() -> None:
    row = conversation(call())
    row["messages"][2] = {"role": "tool", "name": "get_weather", "content": "18 C, sunny"}
    example = SFTExample.model_validate(row)
    assert example.model_dump(mode="json") == row
    assert [c.function.arguments for c in example.calls()] == [{"city": "Paris"}]


def test_openai_wire_format_arguments_as_a_json_string_are_parsed() -> None:
    example = SFTExample.model_validate(
        conversation(call(arguments='{"city": "Oslo"}', id="call_1"))
    )
    assert example.calls()[0].function.arguments == {"city": "Oslo"}
    with pytest.raises(ValidationError, match="arguments is a string that is not valid JSON"):
        SFTExample.model_validate(conversation(call(arguments="{city: Oslo")))


def test_a_plain_turn_keeps_exactly_role_and_content_so_ids_do_not_change() -> None:
    plain = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    }
    example = SFTExample.model_validate(plain)
    assert example.model_dump(mode="json") == plain
    assert content_hash("sft", example.model_dump(mode="json")) == content_hash("sft", plain)


def test_only_an_assistant_turn_calls_tools_and_only_a_tool_turn_names_one() -> None:
    with pytest.raises(ValidationError, match="only an assistant turn calls tools"):
        Message.model_validate({"role": "user", "content": "x", "tool_calls": [call()]})
    with pytest.raises(ValidationError, match="belong to tool turns only"):
        Message.model_validate({"role": "assistant", "content": "x", "name": "get_weather"})
    with pytest.raises(ValidationError, match="content is empty"):
        Message.model_validate({"role": "assistant", "content": "  "})
    with pytest.raises(ValidationError, match="tool_calls: empty"):
        Message.model_validate({"role": "assistant", "content": "x", "tool_calls": []})


def test_every_call_gets_its_result_before_the_assistant_speaks_again() -> None:
    with pytest.raises(ValidationError, match=r"2 call\(s\) but 1 tool result"):
        SFTExample.model_validate(
            conversation(call(), call(), results=[{"role": "tool", "content": "18 C"}])
        )
    with pytest.raises(ValidationError, match="'tool', expected 'assistant'"):
        SFTExample.model_validate(
            conversation(call(), results=[{"role": "tool", "content": "a"}] * 2)
        )


def test_a_result_names_the_call_it_answers() -> None:
    with pytest.raises(ValidationError, match="'get_time' answers a call to 'get_weather'"):
        SFTExample.model_validate(
            conversation(call(), results=[{"role": "tool", "name": "get_time", "content": "1"}])
        )
    with pytest.raises(ValidationError, match="tool_call_id: 'b', expected 'a'"):
        SFTExample.model_validate(
            conversation(
                call(id="a"), results=[{"role": "tool", "tool_call_id": "b", "content": "1"}]
            )
        )


def test_a_tool_turn_without_a_call_before_it_is_refused() -> None:
    with pytest.raises(ValidationError, match="a tool turn must answer a call"):
        SFTExample.model_validate(
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "tool", "content": "18 C"},
                    {"role": "assistant", "content": "ok"},
                ]
            }
        )


def test_a_conversation_ends_on_an_assistant_answer_never_on_a_user_turn_or_a_call() -> None:
    row = conversation(call())
    with pytest.raises(ValidationError, match="the last message must be from the assistant"):
        SFTExample.model_validate(
            {**row, "messages": [*row["messages"], {"role": "user", "content": "And Rome?"}]}
        )
    with pytest.raises(ValidationError, match="ends on tool results"):
        SFTExample.model_validate({**row, "messages": row["messages"][:3]})
    with pytest.raises(ValidationError, match=r"1 call\(s\) but 0 tool result"):
        SFTExample.model_validate({**row, "messages": row["messages"][:2]})


def test_tools_must_be_usable_json_schemas_with_distinct_names() -> None:
    broken = {"type": "function", "function": {"name": "f", "parameters": {"type": "nope"}}}
    with pytest.raises(ValidationError, match="not a valid JSON Schema"):
        SFTExample.model_validate({**conversation(call()), "tools": [WEATHER, broken]})
    with pytest.raises(ValidationError, match="two tools share a name"):
        SFTExample.model_validate({**conversation(call()), "tools": [WEATHER, WEATHER]})
    assert "type must be 'object'" in schema_problem({"type": "string"})
    assert schema_problem(WEATHER["function"]["parameters"]) == ""  # type: ignore[index]


def test_calls_are_checked_against_the_tools_listed() -> None:
    assert call_problems(SFTExample.model_validate(conversation(call()))) == []
    unknown = SFTExample.model_validate(conversation(call("book_flight", {"to": "Rome"})))
    assert call_problems(unknown) == [
        "messages.1.tool_calls.0: calls unknown tool 'book_flight' (tools listed: get_weather)"
    ]
    wrong_type = SFTExample.model_validate(conversation(call(arguments={"city": 75001})))
    assert call_problems(wrong_type) == [
        "messages.1.tool_calls.0: arguments for 'get_weather' break its schema: "
        "city: 75001 is not of type 'string'"
    ]
    missing = SFTExample.model_validate(conversation(call(arguments={"unit": "celsius"})))
    assert "'city' is a required property" in call_problems(missing)[0]
    extra = SFTExample.model_validate(conversation(call(arguments={"city": "Oslo", "x": 1})))
    assert "Additional properties are not allowed" in call_problems(extra)[0]


def test_a_turns_text_includes_its_calls_so_filters_see_the_arguments() -> None:
    example = SFTExample.model_validate(conversation(call(arguments={"city": "bob@example.com"})))
    assert 'get_weather({"city":"bob@example.com"})' in example.messages[1].text


def test_a_hostile_pattern_in_a_tool_schema_cannot_hold_the_check() -> None:
    # (a|aa)+$ backtracks exponentially: with re, 60 a's and a '!' take longer than the age
    # of the universe. The check gives up on the pattern after a fraction of a second.
    slow = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "pattern": "(a|aa)+$"}},
                "patternProperties": {"(b|bb)+$": {"type": "string"}},
            },
        },
    }
    example = SFTExample.model_validate(
        {
            **conversation(call(arguments={"city": "a" * 60 + "!", "b" * 60 + "!": "x"})),
            "tools": [slow],
        }
    )
    started = time.monotonic()
    problems = call_problems(example)
    assert time.monotonic() - started < 2
    assert "cannot be checked" in problems[0]


def test_a_schema_may_point_inside_itself_only_so_nothing_is_fetched() -> None:
    for outside in ("file:///etc/passwd", "http://127.0.0.1:9/schema.json", "other.json#/x"):
        broken = {
            "type": "function",
            "function": {
                "name": "f",
                "parameters": {"type": "object", "properties": {"x": {"$ref": outside}}},
            },
        }
        with pytest.raises(ValidationError, match="only references by path inside the schema"):
            SFTExample.model_validate({**conversation(call()), "tools": [broken]})
    inside = {
        "type": "object",
        "$defs": {"Unit": {"enum": ["celsius", "fahrenheit"]}},
        "properties": {"city": {"type": "string"}, "unit": {"$ref": "#/$defs/Unit"}},
    }
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": inside}}
    kelvin = call(arguments={"city": "Oslo", "unit": "kelvin"})
    example = SFTExample.model_validate({**conversation(kelvin), "tools": [tool]})
    assert "unit: 'kelvin' is not one of" in call_problems(example)[0]


def fan_out_tool(levels: int = 30) -> dict[str, Any]:
    """A tool whose schema asks for 2^levels checks: each level refers to the next twice."""
    defs: dict[str, Any] = {
        f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]}
        for i in range(levels)
    }
    defs[f"d{levels}"] = {"type": "string"}
    return {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "$defs": defs,
                "properties": {"city": {"$ref": "#/$defs/d0"}},
            },
        },
    }


def test_a_schema_that_asks_for_exponential_work_is_given_up_on_within_its_budget() -> None:
    tool = fan_out_tool()
    example = SFTExample.model_validate({**conversation(call()), "tools": [tool]})
    started = time.monotonic()
    assert "took longer than 1 s to check" in call_problems(example)[0]
    assert time.monotonic() - started < 3


def test_arguments_nested_too_deep_are_refused_even_as_a_json_string() -> None:
    deep = '{"a": ' * 40 + "1" + "}" * 40
    with pytest.raises(ValidationError, match="arguments nested deeper than 32 levels"):
        SFTExample.model_validate(conversation(call(arguments=deep)))


def test_call_ids_are_ids_not_free_text() -> None:
    secret = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    with pytest.raises(ValidationError, match=r"tool_calls\.0\.id"):
        SFTExample.model_validate(conversation(call(id=f"call {secret} and more")))
    assert SFTExample.model_validate(conversation(call(id="toolu_01A09q90qw90lq917835lq9")))


@pytest.mark.parametrize(
    ("where", "schema"),
    [
        # A sub-schema's $schema would hand its branch to jsonschema's stock validator.
        (
            "$schema",
            {"$schema": "https://json-schema.org/draft/2020-12/schema", "pattern": "^(a+)+$"},
        ),
        ("$id", {"$id": "file:///etc/", "type": "string"}),
        ("$anchor", {"$anchor": "unit", "type": "string"}),
        (
            "unevaluatedProperties",
            {"patternProperties": {"^(a+)+$": {}}, "unevaluatedProperties": False},
        ),
    ],
)
def test_keywords_that_change_which_schema_or_validator_applies_are_refused(
    where: str, schema: dict[str, Any]
) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": schema}},
        },
    }
    with pytest.raises(ValidationError, match=re.escape(f"'{where}' is not accepted")):
        SFTExample.model_validate({**conversation(call()), "tools": [tool]})


def test_data_and_property_names_that_look_like_keywords_are_data() -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "$comment": "pydantic-style",
            "parameters": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "properties": {
                    "$ref": {"type": "string"},
                    "id": {"const": {"$ref": "x.json", "$id": "y"}},
                    "city": {"type": "string"},
                },
            },
        },
    }
    tool["function"].pop("$comment")
    example = SFTExample.model_validate(
        {
            **conversation(
                call(arguments={"city": "Oslo", "$ref": "a", "id": {"$ref": "x.json", "$id": "y"}})
            ),
            "tools": [tool],
        }
    )
    assert call_problems(example) == []


def test_uniqueness_is_checked_in_linear_time_with_json_schemas_equality() -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"days": {"type": "array", "uniqueItems": True}},
            },
        },
    }
    many = [{"day": i, **{f"k{j}": j for j in range(50)}} for i in range(5000)]
    unique = SFTExample.model_validate(
        {**conversation(call(arguments={"days": many})), "tools": [tool]}
    )
    started = time.monotonic()
    assert call_problems(unique) == []
    assert time.monotonic() - started < 2
    repeated = SFTExample.model_validate(
        {**conversation(call(arguments={"days": [1, 1.0]})), "tools": [tool]}
    )
    assert "non-unique" in call_problems(repeated)[0]
    distinct = SFTExample.model_validate(
        {**conversation(call(arguments={"days": [1, True]})), "tools": [tool]}
    )
    assert call_problems(distinct) == []


def test_one_budget_covers_every_call_of_a_row() -> None:
    tool = fan_out_tool()
    calls = [call() for _ in range(4)]
    example = SFTExample.model_validate({**conversation(*calls), "tools": [tool]})
    started = time.monotonic()
    problems = call_problems(example)
    assert len(problems) == 4 and time.monotonic() - started < 2
