"""Reading datasets in the common formats into ``SFTExample`` / ``PreferenceExample``.

Files: JSONL (``.jsonl``, ``.ndjson``), gzipped JSONL (``.gz``), a JSON array (``.json``), Parquet.
Row formats (detected from the first readable row, or given explicitly):

========================  ================================================================
``messages``              TRL conversational SFT: ``{"messages": [{"role", "content"}, ...]}``
``preference``            TRL preference: ``{"prompt", "chosen", "rejected"}`` as message lists
                          (conversational) or strings (standard); without ``prompt``, chosen and
                          rejected are whole conversations sharing a prefix (implicit prompt)
``sharegpt``              ``{"conversations": [{"from": "human"|"gpt"|"system", "value"}]}``
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

import gzip
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import ValidationError

from generator.errors import DataFileError, InvalidRowError
from generator.schema import Example, PreferenceExample, SFTExample

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


def _json_lines(path: Path, compressed: bool) -> Iterator[tuple[int, Any]]:
    with gzip.open(path, "rb") if compressed else open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, RowError(f"not valid UTF-8 (byte {exc.start + 1} of the line)")
                continue
            if not text.strip():
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, RowError(f"invalid JSON: {exc.msg} (column {exc.colno})")


def _json_array(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataFileError(f"{path}: not valid UTF-8 (byte {exc.start + 1})") from exc
    except json.JSONDecodeError as exc:
        raise DataFileError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
    if not isinstance(data, list):
        raise DataFileError(f"{path}: a .json file must hold an array of rows (or use .jsonl)")
    yield from enumerate(data, start=1)


def _parquet(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataFileError(f"{path}: not a readable Parquet file: {exc}") from exc
    number = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            number += 1
            yield number, row


def iter_records(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line, record)`` pairs; a record that could not be decoded is a ``RowError``."""
    if not path.exists():
        raise DataFileError(f"{path}: no such file")
    if path.is_dir():
        raise DataFileError(f"{path}: is a directory, not a data file")
    with open(path, "rb") as probe:
        magic = probe.read(4)
    suffixes = [s.lower() for s in path.suffixes]
    if magic[:2] == b"\x1f\x8b":
        yield from _json_lines(path, compressed=True)
    elif magic == b"PAR1" or suffixes[-1:] == [".parquet"]:
        yield from _parquet(path)
    elif suffixes[-1:] == [".json"]:
        yield from _json_array(path)
    else:
        yield from _json_lines(path, compressed=False)


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


def _messages(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise RowError(f"{where}: expected a list of {{role, content}} objects")
    return [{"role": m.get("role"), "content": m.get("content")} for m in value]


def _text(record: dict[str, Any], name: str) -> str:
    value = record.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowError(f"field {name!r} must be a string, not {type(value).__name__}")
    return value


def _from_messages(record: dict[str, Any]) -> Example:
    _require(record, "messages")
    return SFTExample.model_validate({"messages": _messages(record["messages"], "messages")})


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


def _from_sharegpt(record: dict[str, Any]) -> Example:
    _require(record, "conversations")
    turns = record["conversations"]
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise RowError("conversations: expected a list of {from, value} objects")
    messages = []
    for index, turn in enumerate(turns):
        speaker = str(turn.get("from", "")).lower()
        if speaker not in _SHAREGPT_ROLES:
            raise RowError(f"conversations.{index}.from: unknown speaker {turn.get('from')!r}")
        messages.append({"role": _SHAREGPT_ROLES[speaker], "content": turn.get("value")})
    return SFTExample.model_validate({"messages": messages})


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
    return SFTExample.model_validate({"messages": messages})


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
    return PreferenceExample.model_validate(
        {"prompt": prompt_m, "chosen": chosen_m, "rejected": rejected_m}
    )


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


def _describe(exc: ValidationError) -> str:
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
        raise RowError(_describe(exc)) from exc


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
