"""LLMFAO (dustalov/llmfao, CC BY 4.0) as a replay file: real pairs with real votes.

2,139 pairs of answers by many LLMs to 13 prompts, each compared side by side by 1 to 5 crowd
workers (8,931 votes by 124 workers: left, right or tie) and by GPT-4. The left answer is
``model_x``'s in every row of both files (checked here), so it becomes the pair's ``chosen``:
a vote for it is ``accept``, for the right one ``swap``, a tie ``reject`` (reason ``tie``). The
gap is the prompt's slug, so every figure can be read per prompt as per gap.
"""

from __future__ import annotations

import csv
import gzip
import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from generator.errors import DataFileError

FILES = ("pairs-crowd.jsonl.gz", "crowd-comparisons.csv", "gpt4-crowd-comparisons.csv")
VOTE = {"left": "accept", "right": "swap", "tie": "reject"}


def replay_rows(directory: str | Path) -> Iterator[dict[str, Any]]:
    """The replay rows (``generator/replay.py``'s format), in pair id order."""
    root = Path(directory)
    missing = [name for name in (*FILES, "models.jsonl") if not (root / name).is_file()]
    if missing:
        raise DataFileError(f"{root}: not an LLMFAO directory (missing {', '.join(missing)})")
    names = {row["id"]: row["name"] for row in _json_lines(root / "models.jsonl")}
    crowd: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for line, row in _csv(root / "crowd-comparisons.csv", names):
        crowd[int(row["id"])].append(
            {"reviewer": f"crowd-{row['worker']}", "vote": _vote(row, line), **_tie(row)}
        )
    gpt4 = {int(row["id"]): _vote(row, line) for line, row in _csv(root / FILES[2], names)}
    with gzip.open(root / FILES[0], "rt", encoding="utf-8") as pairs:
        for text in pairs:
            pair = json.loads(text)
            votes = crowd.get(pair["id"], [])
            yield {
                "id": f"llmfao-{pair['id']}",
                "gap": pair["slug"],
                "model": f"{names[pair['model_x']]} vs {names[pair['model_y']]}",
                "example": {
                    "prompt": [{"role": "user", "content": pair["text"]}],
                    "chosen": [{"role": "assistant", "content": pair["result_x"]}],
                    "rejected": [{"role": "assistant", "content": pair["result_y"]}],
                },
                "votes": votes,
                **(
                    {"judge": {"model": "gpt-4", "vote": gpt4[pair["id"]]}}
                    if pair["id"] in gpt4
                    else {}
                ),
            }


def write_replay(directory: str | Path, out: str | Path) -> int:
    """Write the replay file; returns its rows. Written whole to a temporary file first."""
    target = Path(out)
    partial = target.with_name(target.name + ".partial")
    rows = 0
    with partial.open("w", encoding="utf-8") as handle:
        for row in replay_rows(directory):
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            rows += 1
    partial.replace(target)
    return rows


def _json_lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def _csv(path: Path, names: dict[int, str]) -> Iterator[tuple[int, dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            if names.get(int(row["model_x"])) != row["left"]:
                raise DataFileError(f"{path}:{line}: the left answer is not model_x's")
            yield line, row


def _vote(row: dict[str, str], line: int) -> str:
    if row["winner"] not in VOTE:
        raise DataFileError(f"line {line}: winner {row['winner']!r} is not left, right or tie")
    return VOTE[row["winner"]]


def _tie(row: dict[str, str]) -> dict[str, str]:
    return {"reason": "tie"} if row["winner"] == "tie" else {}
