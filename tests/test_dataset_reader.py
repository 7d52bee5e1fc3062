"""Importers: every common dataset format in, one clear error per bad row, nothing half-written."""

from __future__ import annotations

import gzip
import json
import lzma
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from generator.dataset_import import ingest_file
from generator.dataset_reader import read_examples
from generator.errors import DataFileError, InvalidRowError
from generator.schema import PreferenceExample, SFTExample
from generator.store import Store


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


USER_ASSISTANT = [
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4"},
]

GOOD_ROWS: dict[str, dict[str, Any]] = {
    "messages": {"messages": USER_ASSISTANT},
    "sharegpt": {
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "What is 2+2?"},
            {"from": "gpt", "value": "4"},
        ]
    },
    "alpaca": {"instruction": "Add the numbers.", "input": "2 and 2", "output": "4"},
    "prompt_completion": {"prompt": "What is 2+2?", "completion": "4"},
    "self_instruct": {"instruction": "Add.", "instances": [{"input": "2, 2", "output": "4"}]},
    "preference": {
        "prompt": [{"role": "user", "content": "What is 2+2?"}],
        "chosen": [{"role": "assistant", "content": "4"}],
        "rejected": [{"role": "assistant", "content": "5"}],
    },
    "hh": {
        "chosen": "\n\nHuman: What is 2+2?\n\nAssistant: 4",
        "rejected": "\n\nHuman: What is 2+2?\n\nAssistant: 5",
    },
}


@pytest.mark.parametrize("row_format", sorted(GOOD_ROWS))
def test_each_format_is_detected_and_converted(tmp_path: Path, row_format: str) -> None:
    report = read_examples(write_jsonl(tmp_path / "data.jsonl", [GOOD_ROWS[row_format]]))
    assert report.format == row_format
    [row] = report.examples
    assert row.line == 1
    if isinstance(row.example, SFTExample):
        assert row.example.messages[-1].content == "4"
        assert row.example.messages[-2].role == "user"
    else:
        assert isinstance(row.example, PreferenceExample)
        assert row.example.prompt_text() == "What is 2+2?"
        assert (row.example.chosen[0].content, row.example.rejected[0].content) == ("4", "5")


def test_alpaca_input_and_system_are_kept(tmp_path: Path) -> None:
    row = {"instruction": "Add.", "input": "2 and 2", "output": "4", "system": "Be exact."}
    [imported] = read_examples(write_jsonl(tmp_path / "a.jsonl", [row])).examples
    assert isinstance(imported.example, SFTExample)
    assert [m.role for m in imported.example.messages] == ["system", "user", "assistant"]
    assert imported.example.messages[1].content == "Add.\n\n2 and 2"


def test_implicit_prompt_preferences_split_at_the_shared_turns(tmp_path: Path) -> None:
    row = {
        "chosen": [*USER_ASSISTANT[:1], {"role": "assistant", "content": "4"}],
        "rejected": [*USER_ASSISTANT[:1], {"role": "assistant", "content": "5"}],
    }
    [imported] = read_examples(write_jsonl(tmp_path / "p.jsonl", [row])).examples
    assert isinstance(imported.example, PreferenceExample)
    assert len(imported.example.prompt) == 1


def test_gzip_xz_json_array_and_parquet_files_are_read(tmp_path: Path) -> None:
    rows = [GOOD_ROWS["messages"], {"messages": [*USER_ASSISTANT[:1], USER_ASSISTANT[1]]}]
    gz = tmp_path / "rows.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in rows)
    array = tmp_path / "rows.json"
    array.write_text(json.dumps(rows))
    xz = tmp_path / "rows.jsonl.xz"
    xz.write_bytes(lzma.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    parquet = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    for path in (gz, xz, array, parquet):
        report = read_examples(path)
        assert (report.format, report.rows, len(report.examples)) == ("messages", 2, 2), path


def test_the_real_hh_pairs_import_with_each_broken_one_named(real_data: Path) -> None:
    path = real_data / "hh-rlhf" / "harmless-base-test.jsonl.gz"
    report = read_examples(path, collect_errors=True)
    assert report.format == "hh"
    assert report.rows == 2312
    assert len(report.examples) == 2304
    assert [e.line for e in report.errors] == [87, 517, 668, 764, 926, 1104, 1320, 1850]
    assert all(str(e).startswith(f"{path}:{e.line}: ") for e in report.errors)
    # Line 1255's chosen answer itself contains "\n\nAssistant:"; it must stay one turn.
    pair = next(r.example for r in report.examples if r.line == 1255)
    assert isinstance(pair, PreferenceExample)
    assert pair.prompt_text() == "Isn't that drag kings?"
    assert "\n\nAssistant:" in pair.chosen[0].content


def test_the_real_seed_tasks_import(real_data: Path) -> None:
    report = read_examples(real_data / "self-instruct" / "seed_tasks.jsonl")
    assert (report.format, len(report.examples)) == ("self_instruct", 175)


BAD_LINES = [
    (b"{not json", r"invalid JSON"),
    (
        b'{"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "x"}]}',
        r"messages\.1\.role: Input should be 'system', 'user', 'assistant' or 'tool'",
    ),
    (
        b'{"messages": [{"role": "user", "content": "hi"}, '
        b'{"role": "assistant", "content": "  "}]}',
        r"messages\.1\.content: content is empty",
    ),
    (
        b'{"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"}]}',
        r"messages\.0\.role: 'assistant', expected 'user'",
    ),
    (
        b'{"messages": [{"role": "user", "content": "hi"}]}',
        r"last message must be from the assistant",
    ),
    (b'{"messages": []}', r"messages: no messages"),
    (b'{"instruction": "x", "output": "y"}', r"missing field 'messages'"),
    (b'"just a string"', r"expected a JSON object, got str"),
    (b'{"messages": "\xff\xfe oops"}', r"not valid UTF-8"),
]


@pytest.mark.parametrize(("line", "reason"), BAD_LINES)
def test_a_bad_row_is_one_error_naming_file_line_and_reason(
    tmp_path: Path, line: bytes, reason: str
) -> None:
    path = tmp_path / "data.jsonl"
    good = json.dumps(GOOD_ROWS["messages"]).encode()
    path.write_bytes(good + b"\n\n" + line + b"\n")
    with pytest.raises(InvalidRowError, match=rf"^{path}:3: .*{reason}") as caught:
        read_examples(path, "messages")
    assert caught.value.line == 3


def test_collecting_reports_every_bad_row_and_keeps_the_good(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    good = json.dumps(GOOD_ROWS["messages"]).encode()
    path.write_bytes(b"\n".join([good, *(line for line, _ in BAD_LINES), good]) + b"\n")
    report = read_examples(path, collect_errors=True)
    assert [e.line for e in report.errors] == list(range(2, 2 + len(BAD_LINES)))
    assert [r.line for r in report.examples] == [1, len(BAD_LINES) + 2]


def test_a_first_row_of_unknown_shape_is_explained(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "odd.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(InvalidRowError, match=r"odd.jsonl:1: cannot tell the format"):
        read_examples(path)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.jsonl", "no such file"),
        (lambda p: p, "is a directory"),
        (lambda p: (p / "empty.jsonl", (p / "empty.jsonl").write_text("\n\n"))[0], "no rows"),
        (lambda p: (p / "x.json", (p / "x.json").write_text('{"a": 1}'))[0], "array of rows"),
        (lambda p: (p / "x.parquet", (p / "x.parquet").write_text("junk"))[0], "not a readable"),
    ],
)
def test_unreadable_files_are_one_error(tmp_path: Path, make: Any, message: str) -> None:
    with pytest.raises(DataFileError, match=message):
        read_examples(make(tmp_path))


def test_a_bad_row_stores_nothing(store: Store, tmp_path: Path) -> None:
    rows = [GOOD_ROWS["alpaca"], {"instruction": "Add.", "output": ""}]
    with pytest.raises(InvalidRowError, match=r"bad.jsonl:2: messages\.1\.content"):
        ingest_file(store, write_jsonl(tmp_path / "bad.jsonl", rows), "run-1")
    assert store.runs() == []
    assert list(store.redis.scan_iter(match=f"{store.keys.prefix}:*")) == []


def test_ingest_stores_every_row_once_with_its_source(store: Store, tmp_path: Path) -> None:
    second = {"instruction": "Subtract.", "input": "4 and 2", "output": "2"}
    path = write_jsonl(tmp_path / "good.jsonl", [GOOD_ROWS["alpaca"], second])
    first = ingest_file(store, path, "run-1")
    assert (first.rows, first.stored, first.already_present) == (2, 2, 0)
    assert ingest_file(store, path, "run-1").stored == 0
    assert store.counts("run-1") == {"imported": {"pending": 2}}
    lease = store.claim("alice", "run-1")
    assert lease is not None
    assert lease.item.provenance.source == "imported"
    assert lease.item.provenance.source_file == str(path)


# -- conversations with tools ------------------------------------------------------------------

TOOLS_DATA = Path(__file__).parent / "fixtures" / "tools"


def test_trl_tool_calling_rows_import_with_their_calls_results_and_tools() -> None:
    report = read_examples(TOOLS_DATA / "trl_tools.jsonl")
    assert report.format == "messages"
    examples = [row.example for row in report.examples]
    assert all(isinstance(e, SFTExample) and e.tools for e in examples)
    calendar = examples[1]
    assert isinstance(calendar, SFTExample)
    assert [m.role for m in calendar.messages] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    assert [c.function.name for c in calendar.calls()] == ["create_event", "convert_currency"]
    # Row 3 gives its tools as a JSON string, as TRL also accepts.
    parallel = examples[2]
    assert isinstance(parallel, SFTExample) and parallel.tools is not None
    assert [c.function.arguments for c in parallel.calls()] == [
        {"city": "Lisbon"},
        {"city": "Madrid"},
    ]


def test_llama_factory_sharegpt_tool_turns_import_as_the_same_conversation() -> None:
    sharegpt = read_examples(TOOLS_DATA / "sharegpt_tools.jsonl")
    trl = read_examples(TOOLS_DATA / "trl_tools.jsonl")
    assert sharegpt.format == "sharegpt"
    first = sharegpt.examples[0].example
    expected = trl.examples[0].example
    assert isinstance(first, SFTExample) and isinstance(expected, SFTExample)
    assert first.calls() == expected.calls()
    assert first.tools == expected.tools
    assert [m.role for m in first.messages] == ["user", "assistant", "tool", "assistant"]
    multi_turn = sharegpt.examples[1].example
    assert isinstance(multi_turn, SFTExample)
    assert [m.role for m in multi_turn.messages].count("user") == 3


def _tool_row(arguments: dict[str, Any], name: str = "get_weather") -> dict[str, Any]:
    row = json.loads((TOOLS_DATA / "trl_tools.jsonl").read_text().splitlines()[0])
    row["messages"][1]["tool_calls"][0]["function"] = {"name": name, "arguments": arguments}
    row["messages"][2]["name"] = name
    return row


TOOL_BAD_ROWS = {
    "a call to an unknown tool": (
        _tool_row({"city": "Oslo"}, name="send_email"),
        r"messages\.1\.tool_calls\.0: calls unknown tool 'send_email' "
        r"\(tools listed: get_weather\)",
    ),
    "arguments that break the schema": (
        _tool_row({"city": "Oslo", "unit": "kelvin"}),
        r"messages\.1\.tool_calls\.0: arguments for 'get_weather' break its schema: "
        r"unit: 'kelvin' is not one of \['celsius', 'fahrenheit'\]",
    ),
    "a conversation that ends on a user turn": (
        {
            "messages": [
                *_tool_row({"city": "Oslo"})["messages"],
                {"role": "user", "content": "And?"},
            ]
        },
        r"messages: the last message must be from the assistant",
    ),
    "a call left without its result": (
        {"messages": _tool_row({"city": "Oslo"})["messages"][:2]},
        r"messages\.1\.tool_calls: 1 call\(s\) but 0 tool result\(s\) follow",
    ),
    "tools that are no JSON string": (
        {**_tool_row({"city": "Oslo"}), "tools": "[{oops"},
        r"tools: a string that is not valid JSON",
    ),
    "tool turns in a preference row": (
        {
            "prompt": [
                *_tool_row({"city": "Oslo"})["messages"][:3],
                {"role": "assistant", "content": "?"},
                {"role": "user", "content": "ok?"},
            ],
            "chosen": [{"role": "assistant", "content": "yes"}],
            "rejected": [{"role": "assistant", "content": "no"}],
        },
        r"tool calls in a preference row: tool-calling conversations are read from messages",
    ),
    "a ShareGPT function call that is no JSON": (
        {
            "conversations": [
                {"from": "human", "value": "hi"},
                {"from": "function_call", "value": "get("},
            ]
        },
        r"conversations\.1\.value: a function call that is not valid JSON",
    ),
}


@pytest.mark.parametrize("case", sorted(TOOL_BAD_ROWS))
def test_a_bad_tool_row_is_one_error_and_stores_nothing(
    store: Store, tmp_path: Path, case: str
) -> None:
    row, reason = TOOL_BAD_ROWS[case]
    good = (
        GOOD_ROWS["sharegpt"]
        if "conversations" in row
        else GOOD_ROWS["preference"]
        if "chosen" in row
        else _tool_row({"city": "Oslo"})
    )
    path = write_jsonl(tmp_path / "tools.jsonl", [good, row])
    with pytest.raises(InvalidRowError, match=rf"^{path}:2: {reason}"):
        ingest_file(store, path, "run-1")
    assert list(store.redis.scan_iter(match=f"{store.keys.prefix}:*")) == []
