"""Where the benchmarks read their data: inside this repository, never outside it.

``bench/data/`` holds the full T0 corpus and the quality filter's labelled set (only the
benchmarks need them); the smaller real-data files are the tests' copies in ``tests/data/``.
Each directory's README.md says where every file comes from and under which licence.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_DATA = ROOT / "bench" / "data"
TESTS_DATA = ROOT / "tests" / "data"

T0 = BENCH_DATA / "t0" / "t0_train_50k.jsonl.xz"
QUALITY_LABELLED = BENCH_DATA / "quality" / "labelled.jsonl.gz"
SEED_TASKS = TESTS_DATA / "self-instruct" / "seed_tasks.jsonl"
REFERENCE = TESTS_DATA / "self-instruct" / "user_oriented_instructions.jsonl"
PREDICTIONS = TESTS_DATA / "self-instruct" / "predictions"
HH = TESTS_DATA / "hh-rlhf" / "harmless-base-test.jsonl.gz"
HUMANEVAL = TESTS_DATA / "humaneval" / "HumanEval.jsonl.gz"
T0_FIRST_2000 = TESTS_DATA / "t0" / "t0_train_first_2000.jsonl.gz"
