"""Tools in conversations: checking a tool's JSON Schema, and a conversation's calls against
the tools it lists.

Two different strictnesses use these. An imported row whose call names an unknown tool or
breaks its tool's schema is refused (``dataset_reader``): it is bad input. A generated one is
kept and flagged by the ``tool_calls`` filter (``filters/tool_calls.py``): a model's invalid call
is a finding for the reviewer, never silently fixed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson
import regex
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import SchemaError, ValidationError
from referencing import Registry
from referencing.exceptions import Unresolvable

if TYPE_CHECKING:
    from generator.schema import SFTExample, ToolDefinition

# A schema or arguments nested deeper than this are refused: jsonschema, orjson and the chat
# templates all recurse once per level.
MAX_DEPTH = 32
# What checking one call may cost: a short schema can still ask for exponential work (a chain
# of $refs each used twice), so the check gives up past this.
CALL_SECONDS = 1.0
MAX_UNIQUE_ITEMS = 1000  # uniqueItems compares every pair


def depth(value: Any, level: int = 0) -> int:
    """How deep ``value`` nests (counted up to just past MAX_DEPTH)."""
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((depth(v, level + 1) for v in value.values()), default=level)
    if isinstance(value, list):
        return max((depth(v, level + 1) for v in value), default=level)
    return level


# Keywords whose values are data, not schemas: nothing inside them is a keyword.
DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})
# Keywords that change which schema a reference means, or which validator checks a branch (a
# sub-schema's $schema gets jsonschema's stock validator: no clock, re's backtracking), or
# that jsonschema checks with re whatever the validator: refused in a tool's schema.
REFUSED_KEYWORDS = frozenset(
    {
        "$schema",
        "$id",
        "id",
        "$anchor",
        "$dynamicAnchor",
        "$recursiveRef",
        "$recursiveAnchor",
        "unevaluatedProperties",
    }
)
# Keywords whose values map property names to schemas: those names are data.
NAMED_SCHEMAS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)


def keywords(schema: Any) -> Iterator[tuple[str, Any]]:
    """Every (keyword, value) of a schema and its sub-schemas, property names and data
    (const, enum, default) left out."""
    if isinstance(schema, list):
        for inner in schema:
            yield from keywords(inner)
        return
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        yield key, value
        if key in DATA_KEYWORDS:
            continue
        if key in NAMED_SCHEMAS and isinstance(value, dict):
            for inner in value.values():
                yield from keywords(inner)
        else:
            yield from keywords(value)


def schema_problem(schema: dict[str, Any]) -> str:
    """Why ``schema`` is no usable JSON Schema for a call's arguments ('' if it is one)."""
    if depth(schema) > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH} levels"
    # The root may say which draft it is written in (pydantic's schemas do); nothing below it.
    for key, value in keywords({k: v for k, v in schema.items() if k != "$schema"}):
        if (
            key in ("$ref", "$dynamicRef")
            and not (isinstance(value, str) and value.startswith("#/"))
            and value != "#"
        ):
            # jsonschema's default registry fetches what a reference names (a file, a URL):
            # a tool's schema is untrusted, so it points inside itself only, by path.
            return f"$ref {str(value)[:80]!r}: only references by path inside the schema ('#/...')"
        if key in REFUSED_KEYWORDS:
            return f"{key!r} is not accepted in a tool's schema"
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return str(exc.message)
    if schema.get("type", "object") != "object":
        return "a call's arguments are an object: the schema's type must be 'object'"
    return ""


# A tool's schema is untrusted (an imported row's, a model's): its regular expressions run
# under the ``regex`` module with a time limit, never ``re``'s unbounded backtracking. A
# pattern like (a+)+$ against a long argument would otherwise hold a worker for hours.
PATTERN_SECONDS = 0.05


def _matches(pattern: str, text: str) -> bool | None:
    """Whether ``pattern`` matches somewhere in ``text``; None if it took too long or is no
    regular expression the ``regex`` module reads."""
    try:
        return regex.search(pattern, text, timeout=PATTERN_SECONDS) is not None
    except (TimeoutError, regex.error):
        return None


class _OutOfTime(Exception):
    """Checking a call went past CALL_SECONDS."""


_budget = threading.local()


def _in_time() -> None:
    deadline = getattr(_budget, "deadline", None)
    if deadline is not None and time.monotonic() > deadline:
        raise _OutOfTime


def _timed(keyword: Any) -> Any:
    """A keyword's check that first looks at the clock: every $ref, every subschema passes
    through one, so no schema holds the check past its budget."""

    def checked(
        validator: Any, value: Any, instance: Any, schema: Any
    ) -> Iterator[ValidationError]:
        _in_time()
        yield from keyword(validator, value, instance, schema)

    return checked


def _canonical(value: Any) -> Any:
    """JSON Schema's equality as plain values: 1 and 1.0 are equal, true and 1 are not."""
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value


def _unique_items(
    validator: Any, unique: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    """Linear, by each item's canonical JSON: jsonschema's own compares every pair."""
    if not unique or not validator.is_type(instance, "array"):
        return
    seen: set[bytes] = set()
    for item in instance:
        key = orjson.dumps(_canonical(item), option=orjson.OPT_SORT_KEYS)
        if key in seen:
            yield ValidationError("has non-unique elements")
            return
        seen.add(key)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "string"):
        return
    found = _matches(pattern, instance)
    if found is None:
        yield ValidationError(f"pattern {pattern[:80]!r} cannot be checked (too slow or invalid)")
    elif not found:
        yield ValidationError(f"{instance[:200]!r} does not match {pattern[:80]!r}")


def _keys_matching(patterns: dict[str, Any], key: str) -> list[str] | None:
    matched = []
    for pattern in patterns:
        _in_time()
        found = _matches(pattern, key)
        if found is None:
            return None
        if found:
            matched.append(pattern)
    return matched


def _pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for key, value in instance.items():
        matched = _keys_matching(patterns, key)
        if matched is None:
            yield ValidationError(f"property {key[:80]!r} cannot be checked (a slow pattern)")
            continue
        for pattern in matched:
            yield from validator.descend(value, patterns[pattern], path=key, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    known = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    extras = []
    for key in instance:
        if key in known:
            continue
        matched = _keys_matching(patterns, key)
        if matched is None:
            yield ValidationError(f"property {key[:80]!r} cannot be checked (a slow pattern)")
            return
        if not matched:
            extras.append(key)
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        names = ", ".join(repr(e) for e in sorted(extras)[:5])
        yield ValidationError(f"Additional properties are not allowed ({names} unexpected)")


_SAFE_KEYWORDS = {
    **Draft202012Validator.VALIDATORS,
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
    "uniqueItems": _unique_items,
}
_SafeValidator = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, {name: _timed(check) for name, check in _SAFE_KEYWORDS.items()}
)


@lru_cache(maxsize=256)
def _validator(schema_json: bytes) -> Any:
    # An empty registry: a reference resolves inside the schema or not at all (no fetching,
    # whatever slipped past schema_problem). The root's $schema (the only one accepted) is
    # dropped: a reference to the root would otherwise hand it to jsonschema's stock class.
    schema = orjson.loads(schema_json)
    schema.pop("$schema", None)
    return _SafeValidator(schema, registry=Registry())


def argument_problem(tool: ToolDefinition, arguments: dict[str, Any]) -> str:
    """Why ``arguments`` do not fit ``tool``'s parameters ('' if they do): the first error
    found, with the path of the argument it is about. Within the example's budget (see
    ``call_problems``; CALL_SECONDS when called alone), or it says so."""
    schema = orjson.dumps(tool.function.parameters, option=orjson.OPT_SORT_KEYS)
    own = getattr(_budget, "deadline", None) is None
    if own:
        _budget.deadline = time.monotonic() + CALL_SECONDS
    try:
        error: ValidationError | None = next(_validator(schema).iter_errors(arguments), None)
    except _OutOfTime:
        return f"its schema took longer than {CALL_SECONDS:g} s to check: refused"
    except (Unresolvable, RecursionError) as exc:
        return f"its schema cannot be applied: {type(exc).__name__}: {exc}"[:300]
    finally:
        if own:
            _budget.deadline = None
    if error is None:
        return ""
    where = ".".join(str(part) for part in error.path)
    return f"{where}: {error.message}" if where else error.message


def call_problems(example: SFTExample) -> list[str]:
    """Every call of ``example`` that names a tool it does not list, or whose arguments break
    that tool's schema: one line each, naming the turn and the call."""
    tools = {tool.function.name: tool for tool in example.tools or []}
    problems: list[str] = []
    # One budget for the whole example: a row may hold any number of calls.
    _budget.deadline = time.monotonic() + CALL_SECONDS
    try:
        _check_calls(example, tools, problems)
    finally:
        _budget.deadline = None
    return problems


def _check_calls(
    example: SFTExample, tools: dict[str, ToolDefinition], problems: list[str]
) -> None:
    for turn, message in enumerate(example.messages):
        for position, call in enumerate(message.tool_calls or []):
            where = f"messages.{turn}.tool_calls.{position}"
            name = call.function.name
            tool = tools.get(name)
            if tool is None:
                listed = ", ".join(sorted(tools)) or "none"
                problems.append(f"{where}: calls unknown tool {name!r} (tools listed: {listed})")
                continue
            problem = argument_problem(tool, call.function.arguments)
            if problem:
                problems.append(f"{where}: arguments for {name!r} break its schema: {problem}")
