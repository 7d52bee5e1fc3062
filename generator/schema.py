"""The data model shared by every part of gapfill: chat messages, examples, gaps, candidates,
review decisions and run configs.

These pydantic models are the boundary: whatever enters the store or leaves as an export has been
validated by them. Chat layouts follow TRL's conversational formats, so an exported example is
exactly what ``trl`` loads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Protocol

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from generator.errors import InvalidValueError
from generator.filters.settings import FilterSettings
from generator.tools import MAX_DEPTH, depth, schema_problem

Role = Literal["system", "user", "assistant", "tool"]

# Run and gap ids appear inside Redis keys and index fields, so they are kept to a safe alphabet.
# No ':' (the keys' separator): run "a:status" would otherwise own the key names
# ``run:a:status:<...>`` that run "a" uses for its status sets (see store/keys.py).
IDENTIFIER_PATTERN = r"^[A-Za-z0-9_.-]+$"
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=IDENTIFIER_PATTERN)
]
_IDENTIFIER = TypeAdapter(Identifier)


def check_identifier(value: str, what: str) -> str:
    """``value`` if it is a valid id, else an ``InvalidValueError`` naming ``what`` (e.g. the
    command-line option it came from): a user's mistake, not a validation traceback."""
    try:
        return _IDENTIFIER.validate_python(value)
    except ValidationError:
        raise InvalidValueError(
            f"{what}: {value!r} is not a valid id: use 1 to 128 letters, digits, '_', '.' or '-'"
        ) from None


def utcnow() -> datetime:
    return datetime.now(UTC)


# A tool's or a call's name: what the OpenAI API allows (letters, digits, '_', '-', at most 64).
TOOL_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
ToolName = Annotated[str, StringConstraints(pattern=TOOL_NAME_PATTERN)]
# A call's id (OpenAI's call_..., Anthropic's toolu_..., Mistral's 9 characters): an id, never
# free text, so nothing hides in it past the filters.
CallId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


def _json_object(value: Any, what: str) -> Any:
    """A JSON object given as a string (the OpenAI wire format) parsed; anything else as is."""
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise ValueError(f"{what} is a string that is not valid JSON") from None
    return value


class FunctionCall(BaseModel):
    """What a tool call asks for: a tool by name, with arguments (a JSON object)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ToolName
    arguments: dict[str, Any] = Field(default_factory=dict)

    @field_validator("arguments", mode="before")
    @classmethod
    def _parsed(cls, value: Any) -> Any:
        # OpenAI sends arguments as a JSON string; TRL and chat templates want the object.
        # Depth is checked here, whatever the source: a string's nesting escapes the readers'.
        value = _json_object(value, "arguments")
        if depth(value) > MAX_DEPTH:
            raise ValueError(f"arguments nested deeper than {MAX_DEPTH} levels")
        return value


class ToolCall(BaseModel):
    """One call in an assistant turn, as TRL and the OpenAI chat format lay it out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["function"] = "function"
    id: CallId | None = None
    function: FunctionCall

    @model_serializer(mode="wrap")
    def _without_unset(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class FunctionDefinition(BaseModel):
    """A tool the model may call: its name, what it does, and its parameters' JSON Schema."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ToolName = Field(
        description="The name calls use: letters, digits, '_', '.', '-', at most 64."
    )
    description: str = Field(default="", description="What the tool does, for the model.")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="A JSON Schema for the call's arguments object.",
    )
    strict: bool | None = Field(
        default=None, description="OpenAI's strict flag, kept as given (gapfill always checks)."
    )

    @field_validator("parameters")
    @classmethod
    def _a_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        problem = schema_problem(value)
        if problem:
            raise ValueError(f"not a valid JSON Schema: {problem}")
        return value

    @model_serializer(mode="wrap")
    def _without_unset(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class ToolDefinition(BaseModel):
    """One entry of an example's ``tools`` list (the OpenAI and TRL layout)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["function"] = Field(default="function", description="Always 'function'.")
    function: FunctionDefinition = Field(description="The tool: name, description, parameters.")


# Keys a message has only when it uses them: a plain turn is exactly {"role", "content"}, as it
# was before tools, so its bytes, its content hash and its exported row are unchanged.
_OPTIONAL_MESSAGE_KEYS = ("tool_calls", "name", "tool_call_id")


class Message(BaseModel):
    """One chat turn, as TRL and the OpenAI chat API lay it out: an assistant turn may call
    tools (``tool_calls``, its content then possibly empty); a ``tool`` turn carries a call's
    result, naming the tool (``name``, TRL) and/or the call (``tool_call_id``, OpenAI)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Role
    # Declared before ``content`` so that content's check can see whether the turn calls tools
    # (fields validate in this order); the dump puts content back second.
    tool_calls: list[ToolCall] | None = None
    content: str = Field(
        default="",
        description="The turn's text; must contain something besides whitespace, except in an "
        "assistant turn that calls tools.",
    )
    name: ToolName | None = None
    tool_call_id: CallId | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return "" if value is None else value  # OpenAI writes content null beside tool calls

    @field_validator("content")
    @classmethod
    def _content_not_blank(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip() and not info.data.get("tool_calls"):
            raise ValueError("content is empty")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Message:
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError("tool_calls: only an assistant turn calls tools")
        if self.tool_calls is not None and not self.tool_calls:
            raise ValueError("tool_calls: empty (leave it out instead)")
        if (self.name is not None or self.tool_call_id is not None) and self.role != "tool":
            raise ValueError("name and tool_call_id belong to tool turns only")
        return self

    @model_serializer(mode="wrap")
    def _without_unset(self, handler: Any) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        dumped = {"role": data["role"], "content": data["content"]}
        for key in _OPTIONAL_MESSAGE_KEYS:
            if data.get(key) is not None:
                dumped[key] = data[key]
        return dumped

    @property
    def text(self) -> str:
        """Everything the turn says, its tool calls written out as ``name({...})``: what the
        filters score (PII in a call's arguments counts as much as in prose)."""
        if not self.tool_calls:
            return self.content
        calls = [
            f"{call.function.name}({orjson.dumps(call.function.arguments).decode()})"
            for call in self.tool_calls
        ]
        return "\n".join([self.content, *calls]) if self.content.strip() else "\n".join(calls)


def _check_tool_results(messages: list[Message], call_at: int, field: str) -> int:
    """The tool turns after the assistant turn at ``call_at``: one per call, in order, each
    naming its call (by id) or its tool (by name) where it names one. Returns the index after
    them."""
    calls = messages[call_at].tool_calls or []
    for offset, call in enumerate(calls, start=1):
        position = call_at + offset
        if position >= len(messages) or messages[position].role != "tool":
            raise ValueError(
                f"{field}.{call_at}.tool_calls: {len(calls)} call(s) but "
                f"{offset - 1} tool result(s) follow"
            )
        result = messages[position]
        if result.name is not None and result.name != call.function.name:
            raise ValueError(
                f"{field}.{position}.name: {result.name!r} answers a call to {call.function.name!r}"
            )
        if (
            result.tool_call_id is not None
            and call.id is not None
            and result.tool_call_id != call.id
        ):
            raise ValueError(
                f"{field}.{position}.tool_call_id: {result.tool_call_id!r}, expected {call.id!r}"
            )
    return call_at + len(calls) + 1


def _check_alternation(messages: list[Message], *, must_end_with: Role, field: str) -> None:
    """Roles go [system] user assistant user assistant ... and end with ``must_end_with``.
    An assistant turn that calls tools is followed by one tool turn per call, then by an
    assistant turn again (which may call more); a conversation never ends on a call."""
    if not messages:
        raise ValueError(f"{field}: no messages")
    index = 1 if messages[0].role == "system" else 0
    if index == len(messages):
        raise ValueError(f"{field}: only a system message")
    expected: Role = "user"
    while index < len(messages):
        message = messages[index]
        if message.role != expected:
            hint = (
                "a tool turn must answer a call of the assistant turn before it"
                if message.role == "tool"
                else "roles must alternate user/assistant after an optional system turn"
            )
            raise ValueError(
                f"{field}.{index}.role: {message.role!r}, expected {expected!r} ({hint})"
            )
        if message.tool_calls:
            index = _check_tool_results(messages, index, field)
            if index == len(messages) and must_end_with == "user":
                return  # a prompt that ends on tool results: the assistant answers next
            if index == len(messages):
                raise ValueError(f"{field}: ends on tool results; the assistant must answer")
            expected = "assistant"
            continue
        expected = "assistant" if message.role == "user" else "user"
        index += 1
    if messages[-1].role != must_end_with:
        raise ValueError(f"{field}: the last message must be from the {must_end_with}")


def _check_conversation_so_far(stage: str, messages: list[Message]) -> None:
    """A generation step's conversation: a response step's awaits the assistant (it ends on a
    user turn or on tool results), a user step's on the assistant's answer, a tool step's on
    the assistant's calls."""
    field = "example_prompt"
    if stage == "response":
        _check_alternation(messages, must_end_with="user", field=field)
    elif stage in ("user_turn", "code_tests"):
        _check_alternation(messages, must_end_with="assistant", field=field)
    else:
        if not messages or not messages[-1].tool_calls:
            raise ValueError(f"{field}: a tool step's conversation ends on the assistant's calls")
        _check_alternation(messages[:-1], must_end_with="user", field=field)


class SFTExample(BaseModel):
    """A supervised example: TRL's conversational ``{"messages": [...]}`` layout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    messages: list[Message]
    tools: list[ToolDefinition] | None = Field(
        default=None, description="The tools the conversation may call (JSON Schemas)."
    )

    @model_validator(mode="after")
    def _roles_alternate(self) -> SFTExample:
        _check_alternation(self.messages, must_end_with="assistant", field="messages")
        if self.tools is not None:
            names = [tool.function.name for tool in self.tools]
            if len(set(names)) != len(names):
                raise ValueError("tools: two tools share a name")
        return self

    @model_serializer(mode="wrap")
    def _without_unset(self, handler: Any) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("tools") is None:
            data.pop("tools", None)
        return data

    def calls(self) -> list[ToolCall]:
        """Every tool call the conversation makes, in order."""
        return [call for m in self.messages for call in (m.tool_calls or [])]

    def prompt_text(self) -> str:
        """The last user turn: what the example asks."""
        return next(m.content for m in reversed(self.messages) if m.role == "user")

    def response_text(self) -> str:
        return self.messages[-1].content

    def turns(self) -> list[Message]:
        """Every message, in order."""
        return list(self.messages)


MIN_RANKED, MAX_RANKED = 3, 9


class PreferenceExample(BaseModel):
    """A preference pair in TRL's conversational layout: a shared prompt and two completions.

    A ranking of three or more answers is the same thing with ``ranked``: every answer, best
    first; ``chosen`` and ``rejected`` are then its best and its worst, so whatever reads a pair
    (filters, judge, desk, export) reads a ranking's extremes, and the export turns the whole
    order into pairs (``ranked_pairs``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]
    ranked: list[list[Message]] | None = Field(
        default=None,
        min_length=MIN_RANKED,
        max_length=MAX_RANKED,
        description="Three or more answers, best first (a reviewer's ranking once reviewed).",
    )

    @model_validator(mode="after")
    def _well_formed(self) -> PreferenceExample:
        _check_alternation(self.prompt, must_end_with="user", field="prompt")
        named = [("chosen", self.chosen), ("rejected", self.rejected)]
        named += [(f"ranked.{i}", answer) for i, answer in enumerate(self.ranked or [])]
        for name, completion in named:
            if not completion:
                raise ValueError(f"{name}: no messages")
            if any(m.role != "assistant" for m in completion):
                raise ValueError(f"{name}: must hold assistant turns only")
        if self.ranked is not None and (
            self.ranked[0] != self.chosen or self.ranked[-1] != self.rejected
        ):
            raise ValueError("ranked: chosen and rejected must be its first and its last answer")
        return self

    @model_serializer(mode="wrap")
    def _without_unset(self, handler: Any) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("ranked") is None:
            data.pop("ranked", None)  # a pair's bytes and id stay what they were
        return data

    @classmethod
    def ranking(cls, prompt: list[Message], answers: list[list[Message]]) -> PreferenceExample:
        """Answers in a proposed order, best first (a pair when there are two)."""
        if len(answers) == 2:
            return cls(prompt=prompt, chosen=answers[0], rejected=answers[1])
        return cls(prompt=prompt, chosen=answers[0], rejected=answers[-1], ranked=answers)

    def answers(self) -> list[list[Message]]:
        """Every answer, in the order held (best first)."""
        return self.ranked if self.ranked is not None else [self.chosen, self.rejected]

    def prompt_text(self) -> str:
        return next(m.content for m in reversed(self.prompt) if m.role == "user")

    def turns(self) -> list[Message]:
        """Every message: the prompt, then each answer (chosen first, rejected last)."""
        return [*self.prompt, *(m for answer in self.answers() for m in answer)]

    def swapped(self) -> PreferenceExample:
        """The same answers in the reverse order: a reviewer's swap of a pair."""
        return self.ordered(list(reversed(range(len(self.answers())))))

    def ordered(self, order: list[int]) -> PreferenceExample:
        """The answers re-ranked: ``order`` lists the indices of the present answers, best
        first (every index once)."""
        answers = self.answers()
        if sorted(order) != list(range(len(answers))):
            raise ValueError(f"order: {order} is no ordering of {len(answers)} answers")
        return PreferenceExample.ranking(self.prompt, [answers[i] for i in order])

    def ranked_pairs(self, how: Literal["all", "best_worst"]) -> list[tuple[int, int]]:
        """(better, worse) answer positions the ranking's pairs compare: every pair, or the
        best against the worst only."""
        count = len(self.answers())
        if how == "best_worst" or count == 2:
            return [(0, count - 1)]
        return [(i, j) for i in range(count) for j in range(i + 1, count)]


Example = SFTExample | PreferenceExample


class CandidateKind(StrEnum):
    SFT = "sft"
    PREFERENCE = "preference"


class CandidateStatus(StrEnum):
    """Where a candidate is in its life.

    generated -> (filters) -> pending | auto_rejected; pending -> (review) -> accepted | rejected.
    A reviewer can send an auto-rejected item back to pending.
    """

    GENERATED = "generated"
    PENDING = "pending"
    AUTO_REJECTED = "auto_rejected"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class Score(BaseModel):
    """One filter's verdict on one candidate. Filters annotate; the pipeline routes."""

    model_config = ConfigDict(extra="forbid")

    filter: str
    value: float
    passed: bool
    reason: str = ""
    evidence: dict[str, Any] = Field(default_factory=dict)


TemplateStep = Literal[
    "instructions", "response", "judge", "pairwise", "user_turn", "tool_results", "code_tests"
]


class TemplateUse(BaseModel):
    """One prompt template as it was used for an item: which, which version, and exactly what it
    rendered to (what the model was sent), so the step can be rerun as it ran."""

    model_config = ConfigDict(extra="forbid")

    step: TemplateStep = Field(
        description="instructions: asked for the request; response: asked for the answer(s); "
        "judge and pairwise: asked the judge to score it"
    )
    name: str = Field(description="The template's file name in the prompts directory.")
    hash: str | None = Field(default=None, description="SHA-256 prefix of the template source.")
    messages: list[Message] = Field(
        default_factory=list, description="The rendered messages sent to the model."
    )


class Usage(BaseModel):
    """What making something cost its backend: tokens in and out, and seconds of the calls. A
    share can be fractional: a batch's seconds split over its requests, an instruction
    request's tokens over the requests it wrote."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_tokens: float = Field(default=0.0, ge=0)
    completion_tokens: float = Field(default=0.0, ge=0)
    backend_seconds: float = Field(default=0.0, ge=0)

    @property
    def tokens(self) -> float:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            backend_seconds=self.backend_seconds + other.backend_seconds,
        )

    def share(self, parts: int) -> Usage:
        """One of ``parts`` equal shares."""
        parts = max(parts, 1)
        return Usage(
            prompt_tokens=self.prompt_tokens / parts,
            completion_tokens=self.completion_tokens / parts,
            backend_seconds=self.backend_seconds / parts,
        )


class Provenance(BaseModel):
    """How a candidate was made: enough to reproduce it or to find every sibling of a bad one."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["generated", "imported"] = "generated"
    backend: str | None = None
    model: str | None = None
    sampling: dict[str, Any] = Field(default_factory=dict)
    # The template of the last step (the one whose output this is); ``templates`` has them all.
    template_name: str | None = None
    template_hash: str | None = None
    templates: list[TemplateUse] = Field(default_factory=list)
    rendered_prompt: list[Message] | str | None = None
    run_id: str | None = None
    worker_id: str | None = None
    task_id: str | None = None
    finish_reason: str | None = None
    error: str | None = None
    source_file: str | None = None
    source_line: int | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    usage: Usage | None = Field(
        default=None,
        description="Its share of the backend's tokens and seconds, the instruction step's "
        "included (None: imported, or made before gapfill counted it).",
    )
    code_tests: str | None = Field(
        default=None,
        description="Code gaps: tests a backend wrote for the answer's code, which stated none; "
        "the code_execution filter runs them after the code. Not part of the example.",
    )
    created_at: datetime = Field(default_factory=utcnow)


def content_hash(kind: str, content: Any) -> str:
    """A stable id for a piece of content: the same content always gets the same id.

    128 bits of SHA-256 over canonical JSON (sorted keys), so ids are short enough for keys and
    collisions are not a practical concern.
    """
    canonical = orjson.dumps({"kind": kind, "content": content}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:32]


class Candidate(BaseModel):
    """A generated (or imported) example waiting to be filtered, reviewed and maybe exported.

    ``payload`` is ``None`` only for malformed output, whose raw text is kept in ``raw`` so a
    reviewer (or a later parser) can still see what the model wrote.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = ""
    kind: CandidateKind
    payload: SFTExample | PreferenceExample | None = None
    raw: str | None = None
    run_id: Identifier
    gap_id: Identifier = "none"
    provenance: Provenance = Field(default_factory=Provenance)
    scores: dict[str, Score] = Field(default_factory=dict)
    status: CandidateStatus = CandidateStatus.GENERATED
    priority: float = 0.0
    version: int = 0
    edited: SFTExample | PreferenceExample | None = None
    created_at: datetime = Field(default_factory=utcnow)

    @model_validator(mode="after")
    def _payload_matches_kind_and_id(self) -> Candidate:
        if self.payload is None and self.raw is None:
            raise ValueError("a candidate needs a payload or, for malformed output, its raw text")
        expected = SFTExample if self.kind is CandidateKind.SFT else PreferenceExample
        if self.payload is not None and not isinstance(self.payload, expected):
            raise ValueError(f"a {self.kind.value} candidate needs a {expected.__name__} payload")
        if not self.id:
            self.id = self.compute_id()
        return self

    def compute_id(self) -> str:
        content = self.payload.model_dump(mode="json") if self.payload is not None else self.raw
        return content_hash(self.kind.value, content)


class SamplingParams(BaseModel):
    """Sampling settings shared by every backend; out-of-range values are refused up front."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(default=1, ge=1, le=64)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(default=256, ge=1, le=32768)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)


# accept/reject/edit/skip: a reviewer's decision on a leased item; undo: the same reviewer takes
# their decision back (the item returns to review); reopen and bulk_reject: bulk actions from the
# browse page, on items nobody holds.
# Reason tags with a meaning beyond the record. On an edit of an SFT item: also export the pair
# (edited answer chosen, original rejected). On an accept: the reviewer checked the PII/secret
# flag and clears the item for export.
PREFERENCE_PAIR_TAG = "preference_pair"
# On an edit of a ranking of 3+ answers: the answers' order is a reviewer's (the export takes
# only such rankings).
RANKED_TAG = "ranked"
PII_CLEARED_TAG = "pii_cleared"
# The pre-screen's decisions: its reviewer id (a ':' no human reviewer's name can hold) and the
# tag on each of its decisions, so the log, the export and the card can never pass one off as a
# human's.
AUTO_REVIEWER = "model:prescreen"
AUTO_TAG = "auto_decided"

# adjudicate: an admin settles an item whose overlap votes split; its reason tag is the outcome
# (accept or reject).
Verdict = Literal["accept", "reject", "edit", "skip", "undo", "reopen", "bulk_reject", "adjudicate"]


class TaskStage(StrEnum):
    """Two-step generation, as in Self-Instruct / Magpie: write requests, then answer them.
    A conversation goes on in steps of its own: the backend plays the user for the next turn
    (``user_turn``), or the tools a turn called (``tool_results``), then answers again."""

    INSTRUCTIONS = "instructions"
    RESPONSE = "response"
    USER_TURN = "user_turn"
    TOOL_RESULTS = "tool_results"
    CODE_TESTS = "code_tests"  # a code gap's answer stated no tests: the backend writes some


def instructions_schema(count: int | None = None) -> dict[str, Any]:
    """The JSON an instruction task must answer with: ``count`` requests (any number if None)
    of sane length.

    The bounds matter under constrained decoding: without a maxLength a small model can spend its
    whole token budget inside one string and leave the JSON unfinished, and without minItems it
    stops after one request when the task asked for five.
    """
    requests: dict[str, Any] = {
        "type": "array",
        "minItems": 1,
        "items": {"type": "string", "minLength": 10, "maxLength": 300},
    }
    if count is not None:
        requests["minItems"] = requests["maxItems"] = count
    return {
        "type": "object",
        "properties": {"instructions": requests},
        "required": ["instructions"],
        "additionalProperties": False,
    }


INSTRUCTIONS_SCHEMA: dict[str, Any] = instructions_schema()


_CONVERSATION_ID_FIELDS = (
    "example_prompt",
    "turns",
    "user_system",
    "tools",
    "tool_system",
    "max_tool_rounds",
    "code",
    "code_tests_system",
)


class GenerationTask(BaseModel):
    """One prompt to run for a gap: the unit of work that generation jobs carry (by id).

    An ``instructions`` task asks for new user requests (JSON); each request it yields becomes a
    ``response`` task. A ``response`` task's output completes ``example_prompt`` into an SFT
    example, or, for preference runs, one completion per sampling variant into a pair.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = ""
    run_id: Identifier
    gap_id: Identifier = "none"
    stage: TaskStage = TaskStage.RESPONSE
    kind: CandidateKind = CandidateKind.SFT
    messages: list[Message] = Field(min_length=1, description="The rendered prompt to send.")
    example_prompt: list[Message] = Field(
        default_factory=list, description="The turns the dataset example starts with."
    )
    sampling: SamplingParams = Field(default_factory=SamplingParams)
    variants: list[SamplingParams] = Field(
        default_factory=list, description="Preference responses: one sampling setting per side."
    )
    response_sampling: SamplingParams | None = Field(
        default=None, description="Instruction tasks: sampling for the response tasks they spawn."
    )
    response_system: str | None = None
    json_schema: dict[str, Any] | None = None
    template_name: str | None = None
    template_hash: str | None = None
    templates: list[TemplateUse] = Field(
        default_factory=list,
        description="The templates behind this task, earliest step first; the last one rendered "
        "``messages``.",
    )
    response_template_hash: str | None = Field(
        default=None,
        description="Instruction tasks: the hash of response.jinja, which rendered "
        "``response_system`` for the response tasks they spawn.",
    )
    parent_id: str | None = None
    priority: float = 0.0
    upstream: Usage = Field(
        default_factory=Usage,
        description="Response tasks: their share of the instruction request that wrote them, "
        "passed on to the candidates they make.",
    )
    turns: int = Field(
        default=1, ge=1, le=20, description="User turns the conversation is to have."
    )
    user_system: str | None = Field(
        default=None,
        description="Multi-turn: the system prompt of the backend playing the user (its "
        "persona and goal, rendered from user_turn.jinja).",
    )
    tools: list[ToolDefinition] | None = Field(
        default=None, description="The tools the assistant may call (the campaign's)."
    )
    tool_system: str | None = Field(
        default=None,
        description="Tool use: the system prompt of the backend playing the tools (rendered "
        "from tool_results.jinja).",
    )
    max_tool_rounds: int = Field(default=2, ge=1, le=5)
    code: bool = Field(
        default=False,
        description="A code gap's task: an answer whose code states no tests gets tests written "
        "by the backend (a code_tests step) for the execution filter to run.",
    )
    code_tests_system: str | None = Field(
        default=None, description="Code gaps: code_tests.jinja, rendered."
    )
    step_template_hashes: dict[str, str] = Field(
        default_factory=dict,
        description="Conversations: the hashes of the templates their later steps were "
        "rendered from (user_turn, tool_results, tools), for those steps' records.",
    )

    @property
    def conversational(self) -> bool:
        """Whether the task is (or starts) a conversation of more steps than one answer."""
        return (
            self.turns > 1
            or bool(self.tools)
            or self.code
            or self.stage
            not in (
                TaskStage.INSTRUCTIONS,
                TaskStage.RESPONSE,
            )
        )

    @model_validator(mode="after")
    def _consistent(self) -> GenerationTask:
        if self.stage is not TaskStage.INSTRUCTIONS:
            if not self.example_prompt:
                self.example_prompt = [m for m in self.messages if m.role != "system"]
            _check_conversation_so_far(self.stage, self.example_prompt)
            if self.kind is CandidateKind.PREFERENCE and len(self.variants) < 2:
                raise ValueError("a preference response task needs at least two sampling variants")
        elif self.json_schema is None:
            self.json_schema = INSTRUCTIONS_SCHEMA
        if not self.id:
            self.id = content_hash(
                "task",
                self.model_dump(
                    mode="json",
                    include={
                        "run_id",
                        "gap_id",
                        "stage",
                        "kind",
                        "messages",
                        "sampling",
                        "variants",
                        # A conversation's steps, and the settings that shape them (plain
                        # tasks' ids stay what they were).
                        *(_CONVERSATION_ID_FIELDS if self.conversational else []),
                    },
                ),
            )
        return self


class Decision(BaseModel):
    """A reviewer's decision on one item, as appended to the (never rewritten) decision log."""

    model_config = ConfigDict(extra="forbid")

    item_id: str
    run_id: Identifier
    gap_id: Identifier = "none"
    reviewer: str = Field(min_length=1)
    verdict: Verdict
    reason_tags: list[str] = Field(default_factory=list)
    note: str = ""
    edited_payload: SFTExample | PreferenceExample | None = None
    item_version: int = Field(ge=0, description="The item version the reviewer saw and decided on.")
    decided_at: datetime = Field(default_factory=utcnow)

    @model_validator(mode="after")
    def _edit_has_payload(self) -> Decision:
        if self.verdict == "edit" and self.edited_payload is None:
            raise ValueError("an edit decision needs the edited payload")
        if self.verdict != "edit" and self.edited_payload is not None:
            raise ValueError("only an edit decision carries an edited payload")
        return self


class DecisionFacts(Protocol):
    """What replaying the log needs of a decision: a ``Decision`` or a ``DecisionRecord``."""

    @property
    def item_id(self) -> str: ...

    @property
    def reviewer(self) -> str: ...

    @property
    def verdict(self) -> str: ...

    @property
    def reason_tags(self) -> Sequence[str]: ...


@dataclass(slots=True)
class DecisionRecord:
    """A logged decision as bulk readers (the export) take it: the facts, read from the log
    without validation. Every logged decision was validated as a ``Decision`` when it was
    appended; validating 100,000 again (datetimes parsed, edited payloads rebuilt) cost an
    export about a second. Read-only by convention: ``frozen=True`` would make building one
    five times slower."""

    item_id: str
    reviewer: str
    verdict: str
    reason_tags: list[str]
    note: str
    decided_at: str  # ISO 8601, as logged


class Gap(BaseModel):
    """Something the existing data covers too thinly: a taxonomy cell or a reference cluster."""

    model_config = ConfigDict(extra="forbid")

    id: Identifier
    run_id: Identifier
    kind: Literal["taxonomy", "reference", "manual"] = "manual"
    label: str
    description: str = ""
    have: int = Field(default=0, ge=0)
    target: int = Field(default=0, ge=0)
    examples: list[str] = Field(default_factory=list)
    # The existing example closest to the gap's centroid, and its cosine: what the dataset
    # already has nearest to what the gap needs (a reviewer's yardstick; empty for manual gaps).
    nearest_existing: str = ""
    nearest_similarity: float | None = None
    code: bool = False  # a taxonomy cell marked code: its answers' code is run by the filters

    @property
    def deficit(self) -> int:
        return max(self.target - self.have, 0)


MIN_AUDIT_SHARE = 0.01


class PreScreenSettings(BaseModel):
    """The ``review.prescreen:`` section of a campaign (``generator/prescreening.py``): a model
    of the run's own human decisions that reorders its queue and, if asked, decides items."""

    model_config = ConfigDict(extra="forbid")

    order: bool = Field(default=True, description="Reorder the queue by expected value.")
    auto_decide: bool = Field(
        default=False, description="Let the model decide the items it is confident of."
    )
    audit_share: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="Of the items the model would decide, the random share left to humans.",
    )
    min_decisions: int = Field(
        default=100, ge=10, description="Items decided by humans before it first trains."
    )
    retrain_every: int = Field(
        default=50, ge=1, description="Human decisions between two retrainings."
    )
    human_agreement: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="The humans' agreement with each other, for a run without overlap to "
        "measure it on (from an earlier run with overlap, say).",
    )

    @model_validator(mode="after")
    def _audited(self) -> PreScreenSettings:
        if self.auto_decide and self.audit_share < MIN_AUDIT_SHARE:
            raise ValueError(
                f"audit_share: at least {MIN_AUDIT_SHARE} with auto_decide (a model's decisions "
                "are always audited by humans)"
            )
        return self


class ReviewSettings(BaseModel):
    """The ``review:`` section of a campaign: how many reviewers see each of the run's items and
    how their votes settle it."""

    model_config = ConfigDict(extra="forbid")

    lease_seconds: int | None = Field(
        default=None,
        ge=5,
        le=86_400,
        description="How long a reviewer's claim on one of the run's items lasts, in seconds, "
        "before it goes back to the queue; unset: the lease_seconds setting "
        "(GAPFILL_LEASE_SECONDS, default 300).",
    )
    reviewers_per_item: int = Field(
        default=1,
        ge=1,
        le=10,
        description="Overlap: how many different reviewers vote on each item.",
    )
    overlap_rule: Literal["majority", "unanimous"] = Field(
        default="majority",
        description="How k votes settle an item: more than half accept (a tie rejects), or all.",
    )
    prescreen: PreScreenSettings | None = Field(
        default=None, description="A learned pre-screen for the run (none unless set)."
    )


class EmbeddingSpec(BaseModel):
    """The embedding model a run was created with: every worker that scores the run must embed
    with this very model (same files) and limit, or refuse the job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="The embedding_model setting the run was created with.")
    max_tokens: int | None = Field(default=None, description="embedding_max_tokens, if set.")
    fingerprint: str = Field(description="SHA-256 over the model directory's files.")
    # A run stored before tiers existed embedded every row fully: that is its default.
    tier: Literal["cascade", "full"] = Field(
        default="full", description="embedding_tier: how large sets were searched."
    )


class RunInput(BaseModel):
    """A file a run's scoring reads, stored in the store by its content (``store.blobs``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["existing", "eval_set", "template"]
    name: str = Field(
        min_length=1, max_length=255, description="The file's name (its format is read from it)."
    )
    source: str = Field(description="Where the file was when the run was created.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)

    @field_validator("name")
    @classmethod
    def _bare_name(cls, value: str) -> str:
        # A worker writes the file under this name in its cache, and the store's content is
        # untrusted: a bare file name only, never a path.
        if value in (".", "..") or any(c in value for c in "/\\\x00"):
            raise ValueError("must be a bare file name, not a path")
        return value


class RunConfig(BaseModel):
    """What one campaign run is asked to do; stored with the run so every item can be traced."""

    model_config = ConfigDict(extra="forbid")

    run_id: Identifier
    kind: CandidateKind = CandidateKind.SFT
    description: str = ""
    after: Identifier | None = Field(
        default=None,
        description="The run this one is the next round of (`gapfill run --after/--rounds`): "
        "its rounds' accepted items count against the gaps, and their review feeds the prompts.",
    )
    round: int = Field(
        default=1, ge=1, description="This run's round: 1, or the earlier one's + 1."
    )
    backend: str = "local"
    model: str | None = None
    sampling: SamplingParams = Field(default_factory=SamplingParams)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    existing: list[str] = Field(
        default_factory=list,
        description="Existing dataset files the duplicate filters check against "
        "(paths the scoring workers can read).",
    )
    eval_sets: list[str] = Field(
        default_factory=list, description="Eval sets the contamination filter checks against."
    )
    filters: FilterSettings = Field(default_factory=FilterSettings)
    inputs: list[RunInput] = Field(
        default_factory=list,
        description="The existing data, eval sets and prompt templates, by content, in the "
        "store: what a worker on any host scores with (existing/eval_sets are provenance).",
    )
    embedding: EmbeddingSpec | None = Field(
        default=None, description="The embedding model every scoring worker must use."
    )
    created_at: datetime = Field(default_factory=utcnow)
