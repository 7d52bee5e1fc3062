"""Reading datasets in the common formats into ``SFTExample`` / ``PreferenceExample``.

Files: JSONL (``.jsonl``, ``.ndjson``), JSONL compressed with gzip (``.gz``) or xz (``.xz``), a
JSON array (``.json``), Parquet.
Row formats (detected from the first readable row, or given explicitly):

========================  ================================================================
``messages``              TRL conversational SFT: ``{"messages": [{"role", "content"}, ...]}``,
                          with ``tool_calls`` / ``tool`` turns and a ``tools`` list (or JSON
                          string) for tool-calling rows
``preference``            TRL preference: ``{"prompt", "chosen", "rejected"}`` as message lists
                          (conversational) or strings (standard); without ``prompt``, chosen and
                          rejected are whole conversations sharing a prefix (implicit prompt)
``sharegpt``              ``{"conversations": [{"from": "human"|"gpt"|"system", "value"}]}``;
                          LLaMA-Factory's ``function_call`` / ``observation`` turns, ``tools``
                          and ``system`` fields
``alpaca``                ``{"instruction", "input"?, "output", "system"?}``
``prompt_completion``     ``{"prompt", "completion"}``, strings or message lists
``hh``                    Anthropic HH: ``{"chosen", "rejected"}`` as ``\\n\\nHuman: ...``
                          ``\\n\\nAssistant: ...`` transcripts
``self_instruct``         Self-Instruct tasks: ``{"instruction", "instances": [{"input",
                          "output"}]}``; the first instance makes the example
========================  ================================================================

Every problem is an ``InvalidRowError`` naming the file, the line (row number for Parquet and JSON
arrays) and the reason. Callers either stop at the first one or collect them all into a report.
Nothing here writes anywhere: a caller that stores rows does so only after a clean read.
"""

from __future__ import annotations

import codecs
import gzip
import io
import lzma
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import orjson
from pydantic import ValidationError

from generator.errors import DataFileError, InvalidRowError, one_line
from generator.schema import Example, PreferenceExample, SFTExample
from generator.tools import call_problems

Format = Literal[
    "messages", "preference", "sharegpt", "alpaca", "prompt_completion", "hh", "self_instruct"
]
FORMATS: tuple[str, ...] = get_args(Format)


class RowError(ValueError):
    """Raised by a row converter; the reader adds the file and line."""


@dataclass(frozen=True)
class ImportedRow:
    line: int
    example: Example


@dataclass
class ImportReport:
    """What reading a file gave: its format, the valid examples, and every invalid row."""

    path: str
    format: Format | None
    rows: int = 0
    examples: list[ImportedRow] = field(default_factory=list)
    errors: list[InvalidRowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


# -- reading raw records ---------------------------------------------------------------------

# Rows are a few levels deep (an object, a list of turns, a turn). Anything much deeper is broken
# or hostile, and deep values make pydantic, repr and the JSON encoder recurse: refused here.
MAX_DEPTH = 64
# orjson (not the json module) parses: it refuses lone surrogates (which cannot be stored as
# UTF-8), NaN and Infinity, nests at most 1,024 deep without recursing, and has no 4,300-digit
# integer limit to trip over (an integer too large for a double is an error, not a crash).


def _too_deep(value: Any) -> bool:
    """Whether ``value`` nests lists/objects more than ``MAX_DEPTH`` levels (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > MAX_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _checked(record: Any) -> Any:
    return RowError(f"nested deeper than {MAX_DEPTH} levels") if _too_deep(record) else record


def _json_reason(exc: orjson.JSONDecodeError) -> str:
    if "depth limit" in exc.msg:
        return f"nested deeper than {MAX_DEPTH} levels"
    if "infinity" in exc.msg:
        return f"invalid JSON: a number too large to read (column {exc.colno})"
    if "surrogate" in exc.msg:
        return f"invalid JSON: a lone UTF-16 surrogate escape is not text (column {exc.colno})"
    return f"invalid JSON: {exc.msg} (column {exc.colno})"


def _decode_line(raw: bytes) -> Any:
    """One JSONL line to a record, or a ``RowError`` saying why it is not one."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            return RowError(f"not valid UTF-8 (byte {bad.start + 1} of the line)")
        return RowError(_json_reason(exc))
    # Counting brackets is cheap; only a line with many of them is walked.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:
        return _checked(record)
    return record


XZ_MAGIC = b"\xfd7zXZ\x00"


def _open(path: Path, compression: str | None) -> io.BufferedIOBase:
    if compression == "gzip":
        return gzip.open(path, "rb")
    if compression == "xz":
        return lzma.open(path, "rb")
    return open(path, "rb")


def _raw_lines(path: Path, compression: str | None) -> Iterator[tuple[int, bytes]]:
    """Numbered lines; a broken or truncated gzip or xz stream (or a read error) is a
    ``DataFileError`` naming the line it stopped at, not a traceback (or click's bare "Aborted."
    for EOFError)."""
    number = 0
    try:
        with _open(path, compression) as handle:
            for number, raw in enumerate(handle, start=1):
                yield number, raw
    except EOFError as exc:
        raise DataFileError(
            f"{path}:{number + 1}: the {compression} data ends early (truncated file?)"
        ) from exc
    except (OSError, zlib.error, lzma.LZMAError) as exc:
        what = f"not valid {compression} data" if compression else "cannot read the file"
        raise DataFileError(f"{path}:{number + 1}: {what}: {one_line(str(exc))}") from exc


def _json_lines(path: Path, compression: str | None) -> Iterator[tuple[int, Any]]:
    for number, raw in _raw_lines(path, compression):
        if number == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)  # editors on Windows write one
        if raw.strip():
            yield number, _decode_line(raw)


def _json_array(path: Path) -> Iterator[tuple[int, Any]]:
    raw = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            raise DataFileError(f"{path}: not valid UTF-8 (byte {bad.start + 1})") from exc
        raise DataFileError(f"{path}:{exc.lineno}: {_json_reason(exc)}") from exc
    if not isinstance(data, list):
        raise DataFileError(f"{path}: a .json file must hold an array of rows (or use .jsonl)")
    for number, record in enumerate(data, start=1):
        yield number, _checked(record)


def _parquet_batches(path: Path) -> Iterator[list[dict[str, Any]]]:
    """Row batches; a file or page pyarrow cannot decode is a ``DataFileError`` naming the first
    row of the batch it failed on."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataFileError(f"{path}: not a readable Parquet file: {_first_line(exc)}") from exc
    batches, first = parquet.iter_batches(batch_size=4096), 1
    while True:
        try:
            batch = next(batches, None)
            rows = None if batch is None else batch.to_pylist()
        except Exception as exc:  # a corrupt page: ArrowInvalid, OSError, UnicodeDecodeError...
            raise DataFileError(
                f"{path}:{first}: corrupt Parquet data (row {first} onwards cannot be read): "
                f"{_first_line(exc)}"
            ) from exc
        if rows is None:
            return
        yield rows
        first += len(rows)


def _first_line(exc: BaseException) -> str:
    return one_line(str(exc).strip().split("\n")[0])


def _parquet(path: Path) -> Iterator[tuple[int, Any]]:
    number = 0
    for rows in _parquet_batches(path):
        for row in rows:
            number += 1
            yield number, _checked(row)


def iter_records(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line, record)`` pairs; a record that could not be decoded is a ``RowError``. A file
    that cannot be read (or stops being readable part way) is a ``DataFileError``."""
    _check_name(path)
    if not path.exists():
        raise DataFileError(f"{path}: no such file")
    if path.is_dir():
        raise DataFileError(f"{path}: is a directory, not a data file")
    if not path.is_file():  # a FIFO would block the read forever; a device never ends
        raise DataFileError(f"{path}: not a regular file (a pipe or a device?)")
    try:
        with open(path, "rb") as probe:
            magic = probe.read(6)
    except OSError as exc:
        raise DataFileError(f"{path}: cannot read the file: {exc.strerror}") from exc
    suffixes = [s.lower() for s in path.suffixes]
    if magic[:2] == b"\x1f\x8b":
        yield from _json_lines(path, "gzip")
    elif magic == XZ_MAGIC:
        yield from _json_lines(path, "xz")
    elif magic[:4] == b"PAR1" or suffixes[-1:] == [".parquet"]:
        yield from _parquet(path)
    elif suffixes[-1:] == [".json"]:
        yield from _json_array(path)
    else:
        yield from _json_lines(path, None)


def _check_name(path: Path) -> None:
    """A file name that is not UTF-8 (Python keeps its bytes as lone surrogates) could be neither
    printed nor stored as the items' source: refused up front."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise DataFileError(
            f"{one_line(str(path))}: the file name is not valid UTF-8; rename the file"
        ) from None


# -- detecting and converting row formats ----------------------------------------------------


def detect_format(record: dict[str, Any]) -> Format:
    keys = set(record)
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    if {"instruction", "instances"} <= keys:
        return "self_instruct"
    if {"chosen", "rejected"} <= keys:
        if "prompt" not in keys and isinstance(record["chosen"], str):
            return "hh"
        return "preference"
    if {"prompt", "completion"} <= keys:
        return "prompt_completion"
    raise RowError(
        f"cannot tell the format from the fields {sorted(keys)}; expected one of: "
        + ", ".join(FORMATS)
    )


def _require(record: dict[str, Any], *names: str) -> None:
    for name in names:
        if name not in record or record[name] is None:
            raise RowError(f"missing field {name!r}")


# A message's fields gapfill keeps; anything else on a row's message (a weight, a timestamp) is
# left behind.
_MESSAGE_FIELDS = ("role", "content", "tool_calls", "name", "tool_call_id")


def _messages(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise RowError(f"{where}: expected a list of {{role, content}} objects")
    return [
        {"role": m.get("role"), "content": m.get("content")}
        | {key: m[key] for key in _MESSAGE_FIELDS[2:] if m.get(key) is not None}
        for m in value
    ]


def _tools(value: Any) -> list[dict[str, Any]] | None:
    """A row's ``tools``: a list, or a JSON string of one (as TRL and LLaMA-Factory write it);
    a bare function definition ``{"name", "parameters"}`` is wrapped as OpenAI lays it out."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise RowError("tools: a string that is not valid JSON") from None
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise RowError("tools: expected a list of tool definitions")
    return [
        t if "function" in t or "name" not in t else {"type": "function", "function": t}
        for t in value
    ]


def _with_checked_calls(example: SFTExample) -> SFTExample:
    """An imported conversation whose calls name unknown tools, or break their schemas, is bad
    input: refused, with the first problem."""
    if example.calls():
        problems = call_problems(example)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise RowError(problems[0] + more)
    return example


def _text(record: dict[str, Any], name: str) -> str:
    value = record.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowError(f"field {name!r} must be a string, not {type(value).__name__}")
    return value


def _from_messages(record: dict[str, Any]) -> Example:
    _require(record, "messages")
    example = SFTExample.model_validate(
        {
            "messages": _messages(record["messages"], "messages"),
            "tools": _tools(record.get("tools")),
        }
    )
    return _with_checked_calls(example)


_SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
}


def _sharegpt_calls(value: Any, where: str) -> list[dict[str, Any]]:
    """A LLaMA-Factory ``function_call`` turn's value: one ``{"name", "arguments"}`` object, or
    a list of them (parallel calls), as JSON text."""
    try:
        calls = orjson.loads(value) if isinstance(value, str) else value
    except orjson.JSONDecodeError:
        raise RowError(f"{where}.value: a function call that is not valid JSON") from None
    calls = calls if isinstance(calls, list) else [calls]
    if not calls or not all(isinstance(c, dict) and "name" in c for c in calls):
        raise RowError(f"{where}.value: expected {{name, arguments}} objects")
    return [
        {"type": "function", "function": {"name": c["name"], "arguments": c.get("arguments", {})}}
        for c in calls
    ]


def _from_sharegpt(record: dict[str, Any]) -> Example:
    """ShareGPT turns; LLaMA-Factory's tool turns too (``function_call``: the assistant calls,
    ``observation``: the results, ``tools``: the definitions as a JSON string)."""
    _require(record, "conversations")
    turns = record["conversations"]
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise RowError("conversations: expected a list of {from, value} objects")
    messages: list[dict[str, Any]] = []
    for index, turn in enumerate(turns):
        speaker = str(turn.get("from", "")).lower()
        where = f"conversations.{index}"
        if speaker == "function_call":
            messages.append(
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": _sharegpt_calls(turn.get("value"), where),
                }
            )
        elif speaker in ("observation", "tool", "function"):
            messages.append({"role": "tool", "content": turn.get("value")})
        elif speaker in _SHAREGPT_ROLES:
            messages.append({"role": _SHAREGPT_ROLES[speaker], "content": turn.get("value")})
        else:
            raise RowError(f"{where}.from: unknown speaker {turn.get('from')!r}")
    if record.get("system") and (not messages or messages[0]["role"] != "system"):
        messages.insert(0, {"role": "system", "content": record["system"]})
    example = SFTExample.model_validate(
        {"messages": messages, "tools": _tools(record.get("tools"))}
    )
    return _with_checked_calls(example)


def _from_alpaca(record: dict[str, Any]) -> Example:
    _require(record, "instruction", "output")
    instruction, extra = _text(record, "instruction"), _text(record, "input")
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    messages = [
        {"role": "user", "content": user},
        {"role": "assistant", "content": record["output"]},
    ]
    system = _text(record, "system")
    if system.strip():
        messages.insert(0, {"role": "system", "content": system})
    return SFTExample.model_validate({"messages": messages})


def _from_self_instruct(record: dict[str, Any]) -> Example:
    _require(record, "instruction", "instances")
    instances = record["instances"]
    if not isinstance(instances, list) or not instances or not isinstance(instances[0], dict):
        raise RowError("instances: expected a non-empty list of {input, output} objects")
    return _from_alpaca({"instruction": record["instruction"], **instances[0]})


def _no_tool_turns(example: PreferenceExample | SFTExample, layout: str) -> Example:
    turns = example.turns()
    if any(m.role == "tool" or m.tool_calls for m in turns):
        raise RowError(
            f"tool calls in a {layout} row: tool-calling conversations are read from "
            "messages or sharegpt rows, with their tools"
        )
    return example


def _from_prompt_completion(record: dict[str, Any]) -> Example:
    _require(record, "prompt", "completion")
    prompt, completion = record["prompt"], record["completion"]
    if isinstance(prompt, str) and isinstance(completion, str):
        messages = [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": completion},
        ]
    else:
        messages = _messages(prompt, "prompt") + _messages(completion, "completion")
    return _no_tool_turns(SFTExample.model_validate({"messages": messages}), "prompt_completion")


def _common_prefix(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> int:
    length = 0
    while length < min(len(a), len(b)) and a[length] == b[length]:
        length += 1
    return length


def _from_preference(record: dict[str, Any]) -> Example:
    _require(record, "chosen", "rejected")
    chosen, rejected, prompt = record["chosen"], record["rejected"], record.get("prompt")
    if isinstance(chosen, str) and isinstance(rejected, str):
        if not isinstance(prompt, str):
            raise RowError("field 'prompt' must be a string when chosen/rejected are strings")
        return PreferenceExample.model_validate(
            {
                "prompt": [{"role": "user", "content": prompt}],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}],
            }
        )
    chosen_m, rejected_m = _messages(chosen, "chosen"), _messages(rejected, "rejected")
    if prompt is None:  # implicit prompt: the shared leading turns
        shared = _common_prefix(chosen_m, rejected_m)
        prompt_m, chosen_m, rejected_m = chosen_m[:shared], chosen_m[shared:], rejected_m[shared:]
    else:
        prompt_m = _messages(prompt, "prompt")
    pair = PreferenceExample.model_validate(
        {"prompt": prompt_m, "chosen": chosen_m, "rejected": rejected_m}
    )
    return _no_tool_turns(pair, "preference")


_HH_MARKER = re.compile(r"\n\n(Human|Assistant):")
_HH_ASSISTANT = "\n\nAssistant:"


def _hh_turns(transcript: str) -> list[dict[str, Any]]:
    parts = _HH_MARKER.split(transcript)
    if parts[0].strip():
        raise RowError("transcript text before the first 'Human:' turn")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [
        {"role": roles[speaker], "content": content.strip()}
        for speaker, content in zip(parts[1::2], parts[2::2], strict=True)
    ]


def _from_hh(record: dict[str, Any]) -> Example:
    """Split at the last ``Assistant:`` before the transcripts diverge (as TRL's HH script does),
    so an answer that itself contains ``Assistant:`` stays one turn."""
    _require(record, "chosen", "rejected")
    chosen, rejected = _text(record, "chosen"), _text(record, "rejected")
    diverge = 0
    while diverge < min(len(chosen), len(rejected)) and chosen[diverge] == rejected[diverge]:
        diverge += 1
    cut = chosen.rfind(_HH_ASSISTANT, 0, diverge + 1)
    if cut < 0:
        raise RowError("chosen and rejected share no prompt ending in an 'Assistant:' turn")
    prompt_end = cut + len(_HH_ASSISTANT)
    answers = {"chosen": chosen[prompt_end:], "rejected": rejected[prompt_end:]}
    for name, answer in answers.items():
        if "\n\nHuman:" in answer:
            raise RowError(
                f"{name} continues with a further 'Human:' turn: the transcripts differ "
                "before the final answer"
            )
    return PreferenceExample.model_validate(
        {
            "prompt": _hh_turns(chosen[:cut]),
            "chosen": [{"role": "assistant", "content": answers["chosen"].strip()}],
            "rejected": [{"role": "assistant", "content": answers["rejected"].strip()}],
        }
    )


CONVERTERS: dict[str, Callable[[dict[str, Any]], Example]] = {
    "messages": _from_messages,
    "preference": _from_preference,
    "sharegpt": _from_sharegpt,
    "alpaca": _from_alpaca,
    "prompt_completion": _from_prompt_completion,
    "hh": _from_hh,
    "self_instruct": _from_self_instruct,
}


def describe(exc: ValidationError) -> str:
    """A validation error as one line: ``field.path: message`` (its first error)."""
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{location}: {message}" if location else message


def convert(record: Any, row_format: Format) -> Example:
    """One record to an example; raises ``RowError`` with a readable reason."""
    if isinstance(record, RowError):
        raise record
    if not isinstance(record, dict):
        raise RowError(f"expected a JSON object, got {type(record).__name__}")
    try:
        return CONVERTERS[row_format](record)
    except ValidationError as exc:
        raise RowError(describe(exc)) from exc


def read_examples(
    path: str | Path, row_format: Format | None = None, *, collect_errors: bool = False
) -> ImportReport:
    """Read a dataset file. Without ``collect_errors`` the first invalid row raises."""
    file = Path(path)
    if row_format is not None and row_format not in FORMATS:
        raise DataFileError(f"unknown format {row_format!r}; expected one of: {', '.join(FORMATS)}")
    report = ImportReport(path=str(path), format=row_format)
    for line, record in iter_records(file):
        report.rows += 1
        try:
            if report.format is None:
                if isinstance(record, RowError) or not isinstance(record, dict):
                    convert(record, "messages")  # raises the decoding error for this line
                report.format = detect_format(record)
            report.examples.append(ImportedRow(line, convert(record, report.format)))
        except RowError as exc:
            error = InvalidRowError(str(path), line, str(exc))
            if not collect_errors:
                raise error from exc
            report.errors.append(error)
    if report.rows == 0:
        raise DataFileError(f"{path}: no rows")
    return report


def load_examples(path: str | Path, row_format: Format | None = None) -> list[Example]:
    """All examples of a file, or an ``InvalidRowError`` for the first bad row."""
    return [row.example for row in read_examples(path, row_format).examples]
