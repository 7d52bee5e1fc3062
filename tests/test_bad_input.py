"""Hostile and broken data files: every one is a single ``FILE:LINE: reason`` (or ``FILE: reason``)
line and exit 1, from `gapfill validate` and from `gapfill import`, and import stores nothing.

The commands run in-process (typer's runner) against the session's real Valkey; a property-based
test then throws random bytes and random JSON shapes at the same library calls the two commands
make, and only the project's user errors (``GapfillError``) may come out.
"""

from __future__ import annotations

import gzip
import io
import json
import lzma
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from cli.app import app
from generator.coverage import load_taxonomy
from generator.dataset_import import ingest_file
from generator.dataset_reader import read_examples
from generator.errors import DataFileError, GapfillError, InvalidValueError
from generator.store import Store
from generator.task_reader import read_tasks

GOOD = {
    "messages": [
        {"role": "user", "content": "What is two plus two?"},
        {"role": "assistant", "content": "Four."},
    ]
}
GOOD_LINE = json.dumps(GOOD).encode() + b"\n"
GOOD_TASK = {"prompt": "What is two plus two?"}


def _line(row: dict[str, Any]) -> bytes:
    return json.dumps(row).encode() + b"\n"


def _varied(row: dict[str, Any]) -> dict[str, Any]:
    """The row with random words in its question, so that a file of such rows does not compress
    (or dictionary-encode) to a few bytes."""
    text = json.dumps(row).replace("two", f"two {os.urandom(8).hex()}")
    varied: dict[str, Any] = json.loads(text)
    return varied


def _deep_jsonl(path: Path, good: dict[str, Any]) -> None:
    path.write_bytes(_line(good) + b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n")


def _deep_json_array(path: Path, good: dict[str, Any]) -> None:
    path.write_bytes(b"[" + _line(good) + b", " + b"[" * 100_000 + b"]" * 100_000 + b"]")


def _huge_integer(path: Path, good: dict[str, Any]) -> None:
    path.write_bytes(_line(good) + b'{"messages": [], "n": ' + b"9" * 5_000 + b"}\n")


def _bad_gzip(path: Path, good: dict[str, Any]) -> None:
    path.write_bytes(b"\x1f\x8b" + b"not deflate data" * 8)


def _truncated_gzip(path: Path, good: dict[str, Any]) -> None:
    # Rows unlike each other, so the compressed stream is long enough to cut mid-way.
    rows = b"".join(_line(_varied(good)) for _ in range(2_000))
    whole = gzip.compress(rows)
    path.write_bytes(whole[: len(whole) // 2])


def _truncated_xz(path: Path, good: dict[str, Any]) -> None:
    rows = b"".join(_line(_varied(good)) for _ in range(2_000))
    whole = lzma.compress(rows)
    path.write_bytes(whole[: len(whole) // 2])


def _bad_xz(path: Path, good: dict[str, Any]) -> None:
    path.write_bytes(b"\xfd7zXZ\x00" + b"not lzma data" * 8)


def _corrupt_parquet(path: Path, good: dict[str, Any]) -> None:
    rows = [_varied(good) for _ in range(2_000)]
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer, compression="NONE", use_dictionary=False)
    data = bytearray(buffer.getvalue())
    start = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(0).column(0).data_page_offset
    data[start + 40 : start + 240] = b"\xff" * 200  # in the first data page; the footer is intact
    path.write_bytes(bytes(data))


def _lone_surrogate(path: Path, good: dict[str, Any]) -> None:
    path.write_bytes(_line(good) + _line(good).replace(b"two", b"two \\ud800"))


# (file name, how to write it, the reason expected after "FILE:LINE: ").
CASES: dict[str, tuple[str, Callable[[Path, dict[str, Any]], None], str]] = {
    "JSON nested 100k deep": ("deep.jsonl", _deep_jsonl, r":2: nested deeper than 64 levels"),
    "a JSON array nested 100k deep": (
        "deep.json",
        _deep_json_array,
        r":2: nested deeper than 64 levels",  # the file's line 2 (where the nesting starts)
    ),
    "an integer of 5,000 digits": (
        "big.jsonl",
        _huge_integer,
        r":2: invalid JSON: a number too large to read",
    ),
    "a bad gzip file": ("bad.jsonl.gz", _bad_gzip, r":1: not valid gzip data"),
    "a truncated gzip file": (
        "cut.jsonl.gz",
        _truncated_gzip,
        r":\d+: the gzip data ends early \(truncated file\?\)",
    ),
    "a bad xz file": ("bad.jsonl.xz", _bad_xz, r":1: not valid xz data"),
    "a truncated xz file": (
        "cut.jsonl.xz",
        _truncated_xz,
        r":\d+: the xz data ends early \(truncated file\?\)",
    ),
    "a corrupt Parquet page": ("bad.parquet", _corrupt_parquet, r":1: corrupt Parquet data"),
    "a lone surrogate": (
        "surrogate.jsonl",
        _lone_surrogate,
        r":2: invalid JSON: a lone UTF-16 surrogate escape is not text",
    ),
}


@pytest.fixture
def cli_store(store: Store, server_url: str, monkeypatch: pytest.MonkeyPatch) -> Store:
    """The in-process CLI on the test store's server and key prefix."""
    monkeypatch.setenv("GAPFILL_REDIS_URL", server_url)
    monkeypatch.setenv("GAPFILL_KEY_PREFIX", store.keys.prefix)
    return store


def gapfill(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def assert_one_line_error(result: Result, path: Path, reason: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output and "Aborted" not in result.output
    lines = [line for line in result.output.splitlines() if str(path) in line]
    assert lines, result.output
    assert all(len(line) < 400 for line in lines)
    pattern = rf"^(error: )?{path}{reason}"
    assert any(re.match(pattern, line) for line in lines), result.output


def stored_keys(store: Store) -> list[str]:
    return list(store.redis.scan_iter(match=f"{store.keys.prefix}:*"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_validate_names_the_file_and_line_of_each_broken_file(tmp_path: Path, case: str) -> None:
    name, write, reason = CASES[case]
    path = tmp_path / name
    write(path, GOOD)
    assert_one_line_error(gapfill("validate", str(path)), path, reason)


@pytest.mark.parametrize("case", sorted(CASES))
def test_import_of_each_broken_file_is_one_line_and_stores_nothing(
    cli_store: Store, tmp_path: Path, case: str
) -> None:
    name, write, reason = CASES[case]
    path = tmp_path / name
    write(path, GOOD)
    result = gapfill("import", str(path), "--run", "r1")
    assert_one_line_error(result, path, reason)
    assert result.stderr.count("\n") == 1, result.stderr
    assert stored_keys(cli_store) == [], "a failed import leaves the store untouched"


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_task_file_gives_the_same_one_line_errors(tmp_path: Path, case: str) -> None:
    name, write, reason = CASES[case]
    path = tmp_path / name
    write(path, GOOD_TASK)
    with pytest.raises(GapfillError) as caught:
        read_tasks(path, "r1")
    assert re.match(rf"^{path}{reason}", str(caught.value)), caught.value


@pytest.mark.parametrize(
    ("option", "value"),
    [("--run", "bad/run"), ("--run", "a:status"), ("--run", ""), ("--gap", "x|y")],
)
def test_import_refuses_an_id_that_cannot_be_a_key_naming_the_option(
    cli_store: Store, tmp_path: Path, option: str, value: str
) -> None:
    path = tmp_path / "good.jsonl"
    path.write_bytes(GOOD_LINE)
    args = {"--run": "r1", "--gap": "imported", option: value}
    result = gapfill("import", str(path), *(part for pair in args.items() for part in pair))
    assert result.exit_code == 1, result.output
    assert result.stderr == f"error: {option}: {value!r} is not a valid id: use 1 to 128 " + (
        "letters, digits, '_', '.' or '-'\n"
    )
    assert stored_keys(cli_store) == []


def test_a_file_name_that_is_not_utf8_is_refused_before_reading(tmp_path: Path) -> None:
    name = os.fsdecode(b"bad-\xff.jsonl")  # the byte is kept as a lone surrogate
    (tmp_path / name).write_bytes(GOOD_LINE)
    result = gapfill("validate", str(tmp_path / name))
    assert result.exit_code == 1
    assert "bad-\\udcff.jsonl: the file name is not valid UTF-8; rename the file" in result.stderr


def test_a_byte_order_mark_on_the_first_line_is_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD_LINE)
    assert len(read_examples(path).examples) == 1


# -- property-based: nothing but a user error comes out -----------------------------------------

FIELDS = [
    "messages", "role", "content", "prompt", "chosen", "rejected", "completion", "conversations",
    "from", "value", "instruction", "input", "output", "system", "instances", "user", "assistant",
    "human", "gpt",
]  # fmt: skip
ANY_TEXT = st.text(st.characters(codec=None), max_size=40) | st.text(
    st.characters(categories=["Cs", "Cc", "Zl"]), max_size=4
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**4000)  # 4,300 digits: Python's own limit
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["user", "assistant", "system", "human", "gpt", "\n\nHuman: hi"])
    | ANY_TEXT
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | ANY_TEXT, children, max_size=5)
    ),
    max_leaves=25,
)
TURNS = st.lists(st.tuples(ANY_TEXT, ANY_TEXT), min_size=1, max_size=3)
# Rows that are, or nearly are, what the readers accept: so that hostile text reaches the store.
ROW_LIKE = st.one_of(
    TURNS.map(
        lambda turns: {
            "messages": [
                {"role": role, "content": text}
                for pair in turns
                for role, text in zip(("user", "assistant"), pair, strict=True)
            ]
        }
    ),
    st.fixed_dictionaries({"instruction": ANY_TEXT, "input": SCALARS, "output": ANY_TEXT}),
    st.fixed_dictionaries({"prompt": ANY_TEXT, "chosen": ANY_TEXT, "rejected": ANY_TEXT}),
    st.fixed_dictionaries({"chosen": ANY_TEXT, "rejected": ANY_TEXT}).map(
        lambda r: {k: f"\n\nHuman: hi\n\nAssistant: {v}" for k, v in r.items()}
    ),
    st.fixed_dictionaries(
        {"conversations": st.lists(st.fixed_dictionaries({"from": SCALARS, "value": SCALARS}))}
    ),
)
ROWS = st.lists(JSON_VALUES | ROW_LIKE, min_size=1, max_size=4)


def _json(value: Any) -> bytes:
    """Python's encoder on purpose: it writes NaN, Infinity, huge integers and lone surrogates
    (escaped), all of which a hostile file may hold."""
    return json.dumps(value).encode()


def _write(path: Path, rows: list[Any], suffix: str) -> bool:
    """Rows as a file of that kind; False if the rows cannot be laid out that way."""
    if suffix == ".json":
        path.write_bytes(_json(rows))
    elif suffix == ".parquet":
        try:
            pq.write_table(pa.Table.from_pylist([r for r in rows if isinstance(r, dict)]), path)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            return False
    else:
        lines = b"\n".join(_json(r) for r in rows) + b"\n"
        path.write_bytes(gzip.compress(lines) if suffix == ".jsonl.gz" else lines)
    return True


def _must_be_user_errors(store: Store, path: Path) -> None:
    """What `gapfill validate` and `gapfill import` call, on one file."""
    for call in (
        lambda: read_examples(path, collect_errors=True),
        lambda: ingest_file(store, path, "prop"),
        lambda: ingest_file(store, path, "prop", skip_invalid=True),
    ):
        try:
            call()
        except GapfillError as exc:
            assert "\n" not in str(exc), str(exc)


SUFFIXES = st.sampled_from([".jsonl", ".json", ".jsonl.gz", ".parquet"])
PROPERTY = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY
@given(rows=ROWS, suffix=SUFFIXES)
def test_random_json_shapes_give_nothing_but_user_errors(
    store: Store, tmp_path: Path, rows: list[Any], suffix: str
) -> None:
    path = tmp_path / f"rows{suffix}"
    assume(_write(path, rows, suffix))
    _must_be_user_errors(store, path)


@PROPERTY
@given(
    data=st.binary(max_size=600),
    prefix=st.sampled_from([b"", b"\x1f\x8b", b"PAR1", b"[", b'{"messages": [']),
    suffix=SUFFIXES,
    compress=st.booleans(),
)
def test_random_bytes_give_nothing_but_user_errors(
    store: Store, tmp_path: Path, data: bytes, prefix: bytes, suffix: str, compress: bool
) -> None:
    path = tmp_path / f"bytes{suffix}"
    content = prefix + data + (b"PAR1" if prefix == b"PAR1" else b"")
    path.write_bytes(gzip.compress(content)[: len(content) // 2 + 10] if compress else content)
    _must_be_user_errors(store, path)


def test_a_taxonomy_nested_100k_deep_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "taxonomy.yaml"
    path.write_text("cells: " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(DataFileError, match=rf"^{path}: nested too deeply$"):
        load_taxonomy(path)


def test_the_library_import_refuses_a_run_id_that_cannot_be_a_key(
    cli_store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "good.jsonl"
    path.write_bytes(GOOD_LINE)
    with pytest.raises(InvalidValueError, match="'a:status' is not a valid id"):
        ingest_file(cli_store, path, "a:status")
    assert stored_keys(cli_store) == []


def test_a_named_pipe_is_refused_instead_of_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "rows.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(DataFileError, match=r"not a regular file"):
        read_examples(fifo)
