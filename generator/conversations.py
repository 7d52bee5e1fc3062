"""Generating conversations longer than one exchange: the backend plays the user for the next
turn, and the tools the assistant calls, until the conversation has its turns.

Every step is a generation task of its own (``TaskStage``), completed exactly once like any
other, so a conversation survives a worker's death between turns and each step's prompt is on
the record. What the backend is sent is backend-neutral text: an assistant's calls as the JSON
it was asked to write, tool results as a user-side note. Not every backend's chat template
renders tool turns (the bundled SmolLM2's drops them), and an OpenAI-compatible server refuses
a ``tool`` turn that lacks the id of its call. The conversation stored as the candidate is in
TRL's layout, whatever the backend saw.

The assistant's turn, where tools are offered, is constrained (where the backend can: all
three can) to ``{"answer": ...}`` or ``{"tool_calls": [{"name", "arguments"}]}`` with each
tool's own parameters schema. A backend that writes something else is not corrected: text that
is not that JSON is taken as a plain answer, and a call that names no listed tool or breaks its
schema stays as written for the ``tool_calls`` filter to flag.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from generator.schema import Message, ToolDefinition
from generator.tools import DATA_KEYWORDS, NAMED_SCHEMAS

MAX_CALLS_PER_TURN = 4
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.MULTILINE)
# A simulated user often labels its message as a transcript would, and goes on to the reply.
_USER_LABEL = re.compile(r"^user\s*:\s*", re.IGNORECASE)
_ASSISTANT_SIDE = re.compile(r"\n\s*assistant\s*:", re.IGNORECASE)


class ConversationSettings(BaseModel):
    """The ``conversation:`` section of a campaign."""

    model_config = ConfigDict(extra="forbid")

    turns: int = Field(
        default=1,
        ge=1,
        le=10,
        description="User turns per conversation: after the first (a generated request), the "
        "backend plays the user, with a persona and the gap as its goal.",
    )
    tools: list[ToolDefinition] = Field(
        default_factory=list,
        description="Tools the assistant may call, in the OpenAI/TRL layout ({type: function, "
        "function: {name, description, parameters: JSON Schema}}); the backend also plays "
        "them, writing each call's result.",
    )
    max_tool_rounds: int = Field(
        default=2,
        ge=1,
        le=5,
        description="Rounds of calls the assistant may make before it must answer, per user turn.",
    )
    personas: list[str] = Field(
        default_factory=list,
        description="Who the simulated user is (one drawn per instruction task); default: "
        "prompts/defaults.yaml's personas.",
    )


def tool_choice_schema(tools: list[ToolDefinition], *, calls_allowed: bool) -> dict[str, Any]:
    """What an assistant turn may be: an answer, or (while calls are allowed) calls of the
    listed tools, each with its tool's parameters."""
    answer = {
        "type": "object",
        "properties": {"answer": {"type": "string", "minLength": 1}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    if not calls_allowed or not tools:
        return answer
    one_call = [
        {
            "type": "object",
            "properties": {
                "name": {"const": tool.function.name},
                "arguments": {"$ref": f"#/$defs/{_tool_def(index)}"},
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for index, tool in enumerate(tools)
    ]
    calls = {
        "type": "object",
        "properties": {
            "tool_calls": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_CALLS_PER_TURN,
                "items": {"anyOf": one_call},
            }
        },
        "required": ["tool_calls"],
        "additionalProperties": False,
    }
    # Each tool's parameters under $defs, their own references re-rooted there: a tool's
    # "#/$defs/Unit" would point nowhere inside this larger schema.
    defs = {_tool_def(i): _rerooted(t.function.parameters, i) for i, t in enumerate(tools)}
    return {"anyOf": [answer, calls], "$defs": defs}


def _tool_def(index: int) -> str:
    return f"gapfill_tool_{index}"


def _rerooted(schema: Any, index: int) -> Any:
    """``schema`` with every reference ("#" or "#/...", the only ones a tool's schema may
    hold) pointing into the tool's place; data (const, enum, default) and property names as
    they are."""
    if isinstance(schema, list):
        return [_rerooted(inner, index) for inner in schema]
    if not isinstance(schema, dict):
        return schema
    moved: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("$ref", "$dynamicRef") and isinstance(value, str) and value.startswith("#"):
            moved[key] = f"#/$defs/{_tool_def(index)}{value[1:]}"
        elif key in DATA_KEYWORDS:
            moved[key] = value
        elif key in NAMED_SCHEMAS and isinstance(value, dict):
            moved[key] = {name: _rerooted(inner, index) for name, inner in value.items()}
        else:
            moved[key] = _rerooted(value, index)
    return moved


def results_schema(count: int) -> dict[str, Any]:
    """The tool step's output: one result (text, often JSON) per call."""
    return {
        "type": "object",
        "properties": {
            "results": {
                "type": "array",
                "minItems": count,
                "maxItems": count,
                "items": {"type": "string", "minLength": 1, "maxLength": 300},
            }
        },
        "required": ["results"],
        "additionalProperties": False,
    }


USER_MESSAGE_MAX_CHARS = 600


def user_turn_schema() -> dict[str, Any]:
    """The simulated user's output: one message. Bounded: a small model asked for the next
    message of a transcript goes on writing the transcript (both sides) until its budget ends;
    a simulated user's message cut at 600 characters still reads as a user's message."""
    return {
        "type": "object",
        "properties": {
            "message": {"type": "string", "minLength": 1, "maxLength": USER_MESSAGE_MAX_CHARS}
        },
        "required": ["message"],
        "additionalProperties": False,
    }


def user_message(text: str) -> str | None:
    """The simulated user's message: the ``{"message"}`` JSON's, else the text itself (a
    backend without constrained decoding), up to where it starts writing the assistant's
    side; None if nothing is left."""
    data = _json(text)
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        text = data["message"]
    text = _ASSISTANT_SIDE.split(text, maxsplit=1)[0]
    text = _USER_LABEL.sub("", text.strip()).strip()
    return text or None


def _json(text: str) -> Any:
    cleaned = _FENCE.sub("", text.strip())
    # ValueError covers JSONDecodeError; RecursionError: JSON nested thousands deep.
    try:
        return json.loads(cleaned)
    except (ValueError, RecursionError):
        start, end = cleaned.find("{"), cleaned.rfind("}")
        if 0 <= start < end:
            try:
                return json.loads(cleaned[start : end + 1])
            except (ValueError, RecursionError):
                return None
    return None


def assistant_turn(text: str, *, tools_offered: bool) -> Message | None:
    """The assistant's turn from a backend's output: plain text without tools; with tools,
    the answer or the calls of ``{"answer"}`` / ``{"tool_calls"}`` JSON, else the text as it
    is (an answer). None: nothing usable (empty, or calls that are no calls at all)."""
    if not text.strip():
        return None
    data = _json(text) if tools_offered else None
    try:
        if isinstance(data, dict) and isinstance(data.get("answer"), str):
            return Message(role="assistant", content=data["answer"])
        if isinstance(data, dict) and isinstance(data.get("tool_calls"), list):
            calls = [
                {
                    "type": "function",
                    "id": f"call_{index}",
                    "function": {"name": call.get("name"), "arguments": call.get("arguments", {})},
                }
                for index, call in enumerate(data["tool_calls"])
                if isinstance(call, dict)
            ]
            return Message.model_validate({"role": "assistant", "content": "", "tool_calls": calls})
        return Message(role="assistant", content=text.strip())
    except ValidationError:
        return None


def tool_results(text: str, calls: Message) -> list[Message] | None:
    """The tool turns answering ``calls`` from the tool step's output, or None if it gave no
    result per call."""
    data = _json(text)
    results = data.get("results") if isinstance(data, dict) else None
    wanted = calls.tool_calls or []
    if not isinstance(results, list) or len(results) != len(wanted):
        return None
    if not all(isinstance(r, str) and r.strip() for r in results):
        return None
    return [
        Message(role="tool", name=call.function.name, tool_call_id=call.id, content=result.strip())
        for call, result in zip(wanted, results, strict=True)
    ]


def user_turns(conversation: list[Message]) -> int:
    return sum(1 for m in conversation if m.role == "user")


def calls_since_user(conversation: list[Message]) -> int:
    """Rounds of calls the assistant made since the last user turn."""
    rounds = 0
    for message in reversed(conversation):
        if message.role == "user":
            break
        rounds += bool(message.tool_calls)
    return rounds


def _said(message: Message) -> str:
    """A turn as backend-neutral text."""
    if message.tool_calls:
        calls = [
            {"name": c.function.name, "arguments": c.function.arguments} for c in message.tool_calls
        ]
        return orjson.dumps({"tool_calls": calls}).decode()
    return message.content


def backend_messages(system: str | None, conversation: list[Message]) -> list[Message]:
    """The assistant's request: the conversation with calls as the JSON the assistant writes
    and results as a user-side note (see the module's docstring)."""
    sent = [Message(role="system", content=system)] if system else []
    for message in conversation:
        if message.role == "tool":
            note = f"[result of {message.name or 'the tool'}] {message.content}"
            if sent and sent[-1].role == "user":  # several results: one note
                sent[-1] = Message(role="user", content=f"{sent[-1].content}\n{note}")
            else:
                sent.append(Message(role="user", content=note))
        elif message.role != "system":
            sent.append(Message(role=message.role, content=_said(message)))
    return sent


def transcript(conversation: list[Message]) -> str:
    """The conversation as a plain transcript, for the backend playing the user or the tools."""
    names = {"user": "User", "assistant": "Assistant", "tool": "Tool", "system": "System"}
    return "\n\n".join(f"{names[m.role]}: {_said(m)}" for m in conversation if m.role != "system")


def user_turn_messages(system: str, conversation: list[Message]) -> list[Message]:
    return [
        Message(role="system", content=system),
        Message(
            role="user",
            content=f"{transcript(conversation)}\n\nWrite the user's next message, and only "
            'it, as JSON: {"message": "..."}',
        ),
    ]


def tool_results_messages(
    system: str, tools: list[ToolDefinition], conversation: list[Message]
) -> list[Message]:
    calls = conversation[-1].tool_calls or []
    listed = "\n".join(orjson.dumps(t.model_dump(mode="json")).decode() for t in tools)
    asked = "\n".join(
        f"{i + 1}. {c.function.name}({orjson.dumps(c.function.arguments).decode()})"
        for i, c in enumerate(calls)
    )
    return [
        Message(role="system", content=system),
        Message(
            role="user",
            content=f"Tools:\n{listed}\n\nConversation:\n{transcript(conversation[:-1])}\n\n"
            f"Calls:\n{asked}\n\nWrite the result of each call, in order.",
        ),
    ]
