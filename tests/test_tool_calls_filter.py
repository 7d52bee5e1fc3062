"""The tool_calls filter, and every other filter reading tool turns: a model's bad call is
flagged (never repaired), and PII or a secret in a call's arguments or a tool's result counts
as much as in prose."""

from __future__ import annotations

from typing import Any

from generator.filters.pii import PIIFilter
from generator.filters.pipeline import FilterPipeline
from generator.filters.settings import FilterSettings
from generator.filters.tool_calls import ToolCallFilter
from generator.schema import CandidateStatus, SFTExample
from tests.factories import tool_conversations, wrap


def with_call(example: SFTExample, turn: int, name: str, arguments: dict[str, Any]) -> SFTExample:
    """``example`` with the first call of message ``turn`` replaced (and its result renamed)."""
    data = example.model_dump(mode="json")
    data["messages"][turn]["tool_calls"][0]["function"] = {"name": name, "arguments": arguments}
    result = data["messages"][turn + 1]
    if "name" in result:
        result["name"] = name
    return SFTExample.model_validate(data)


def test_calls_that_fit_their_tools_pass_and_a_plain_answer_has_none() -> None:
    scores = ToolCallFilter().score([wrap(e, i) for i, e in enumerate(tool_conversations())])
    assert all(s.passed for s in scores)
    assert scores[2].reason == "2 tool call(s), each fits its tool's schema"


def test_an_unknown_tool_and_arguments_that_break_the_schema_fail_with_each_named() -> None:
    weather, calendar, _ = tool_conversations()
    unknown = with_call(weather, 1, "send_email", {"to": "a"})
    bad_date = with_call(calendar, 2, "create_event", {"title": "Review", "date": "14 March"})
    unknown_score, date_score = ToolCallFilter().score([wrap(unknown, 0), wrap(bad_date, 1)])
    assert not unknown_score.passed
    assert unknown_score.reason == (
        "messages.1.tool_calls.0: calls unknown tool 'send_email' (tools listed: get_weather)"
    )
    assert not date_score.passed and date_score.value == 0.5  # one of its two calls is bad
    assert "messages.2.tool_calls.0: arguments for 'create_event' break its schema: date:" in (
        date_score.reason
    )


def test_the_pipeline_auto_rejects_a_bad_call_and_leaves_the_call_as_the_model_wrote_it() -> None:
    weather = tool_conversations()[0]
    bad = with_call(weather, 1, "get_weather", {"city": "Oslo", "unit": "kelvin"})
    pipeline = FilterPipeline.build(FilterSettings())
    good_item, bad_item = pipeline.score([wrap(weather, 0), wrap(bad, 1)])
    assert pipeline.route(good_item) is CandidateStatus.PENDING
    assert pipeline.route(bad_item) is CandidateStatus.AUTO_REJECTED
    assert "'kelvin' is not one of" in bad_item.scores["tool_calls"].reason
    assert bad_item.payload == bad, "flagged, never repaired"


def test_pii_in_a_calls_arguments_or_a_tools_result_is_caught() -> None:
    weather = tool_conversations()[0]
    in_arguments = with_call(weather, 1, "get_weather", {"city": "mail jane.doe@example.org"})
    data = weather.model_dump(mode="json")
    data["messages"][2]["content"] = '{"owner_card": "4111 1111 1111 1111"}'
    in_result = SFTExample.model_validate(data)
    scores = PIIFilter().score([wrap(weather, 0), wrap(in_arguments, 1), wrap(in_result, 2)])
    assert [s.passed for s in scores] == [True, False, False]
    assert "e-mail" in scores[1].reason.lower() or "email" in scores[1].reason.lower()


def test_a_secret_shaped_call_id_is_screened_like_any_text() -> None:
    weather = tool_conversations()[0].model_dump(mode="json")
    token = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"  # an id's alphabet, a token's shape
    weather["messages"][1]["tool_calls"][0]["id"] = token
    weather["messages"][2] = {"role": "tool", "tool_call_id": token, "content": "-4 C"}
    [score] = PIIFilter().score([wrap(SFTExample.model_validate(weather), 0)])
    assert not score.passed
