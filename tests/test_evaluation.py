"""gapfill eval on real data: the report's figures move the right way between a weak and a strong
model's answers, contamination is found where it is planted, preference pairs are judged in both
orders, and bad input is refused in one line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from generator.errors import ConfigError, DataFileError
from generator.evaluation.report import PreferenceJudge
from generator.evaluation.runner import EvalOptions, evaluate, read_input, write_reports
from tests.factories import run_cli

PNG = b"\x89PNG\r\n\x1a\n"


def predictions_as_sft(real_data: Path, model: str, out: Path) -> Path:
    """A self-instruct prediction file as TRL SFT rows (empty answers stay: they are invalid)."""
    path = out / f"{model}.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        source = real_data / "self-instruct" / "predictions" / f"{model}.jsonl"
        for line in source.open(encoding="utf-8"):
            row = json.loads(line)
            turns = [
                {"role": "user", "content": row["prompt"]},
                {"role": "assistant", "content": row.get("response") or ""},
            ]
            handle.write(json.dumps({"messages": turns}) + "\n")
    return path


@pytest.fixture(scope="module")
def humaneval(real_data: Path) -> Path:
    return real_data / "humaneval" / "HumanEval.jsonl.gz"


def sft_options(model_dir: Path, humaneval: Path) -> EvalOptions:
    return EvalOptions(stage="sft", eval_sets=[humaneval], tokenizer=str(model_dir))


def test_a_weak_model_s_answers_score_worse_than_a_strong_one_s(
    real_data: Path, model_dir: Path, embedder: object, humaneval: Path, tmp_path: Path
) -> None:
    reports = {}
    for model in ("davinci", "text-davinci-003"):
        data = read_input(predictions_as_sft(real_data, model, tmp_path), "sft")
        evaluation = evaluate(data, sft_options(model_dir, humaneval), embedder, tmp_path)  # type: ignore[arg-type]
        reports[model] = evaluation.report
    weak, strong = reports["davinci"], reports["text-davinci-003"]
    # davinci is a base model: it rambles on past the answer, repeating itself.
    assert weak.format.answer_words.p50 and strong.format.answer_words.p50
    assert weak.format.answer_words.p50 > 5 * strong.format.answer_words.p50
    assert weak.format.tokens.p90 and strong.format.tokens.p90
    assert weak.format.tokens.p90 > strong.format.tokens.p90
    assert weak.diversity.distinct_2 < 0.5 * strong.diversity.distinct_2
    assert weak.diversity.mean_pairwise_distance < strong.diversity.mean_pairwise_distance
    # No HumanEval problem leaked into either, except one honest match: the instruction "python
    # function to determine whether a number is prime" is HumanEval/31's task (is_prime).
    assert weak.contamination["HumanEval.jsonl.gz"].rows_matched == 0
    matches = strong.contamination["HumanEval.jsonl.gz"].matches
    assert [m["eval_item"] for m in matches] == ["HumanEval/31"]


def test_planted_humaneval_problems_are_listed_with_their_task_ids(
    real_data: Path, model_dir: Path, embedder: object, humaneval: Path, tmp_path: Path
) -> None:
    path = predictions_as_sft(real_data, "text-davinci-003", tmp_path)
    with gzip.open(humaneval, "rt", encoding="utf-8") as handle:
        problems = [json.loads(line) for line in handle][40:50]
    with path.open("a", encoding="utf-8") as handle:
        for problem in problems:
            turns = [
                {"role": "user", "content": f"Complete this function:\n{problem['prompt']}"},
                {"role": "assistant", "content": problem["canonical_solution"]},
            ]
            handle.write(json.dumps({"messages": turns}) + "\n")
    data = read_input(path, "sft")
    evaluation = evaluate(data, sft_options(model_dir, humaneval), embedder, tmp_path)  # type: ignore[arg-type]
    found = {m["eval_item"] for m in evaluation.report.contamination["HumanEval.jsonl.gz"].matches}
    assert {p["task_id"] for p in problems} <= found


def test_the_report_files_are_written_with_stable_keys(
    real_data: Path, model_dir: Path, embedder: object, humaneval: Path, tmp_path: Path
) -> None:
    data = read_input(real_data / "self-instruct" / "seed_tasks.jsonl", "sft")
    evaluation = evaluate(data, sft_options(model_dir, humaneval), embedder, tmp_path)  # type: ignore[arg-type]
    hashes = write_reports(evaluation, tmp_path / "report", data.gaps)
    report = json.loads((tmp_path / "report" / "eval_report.json").read_text())
    assert set(report) == {
        "schema_version", "stage", "source", "generated_at", "rows", "format", "refusals",
        "diversity", "coverage", "contamination", "safety", "preference", "judge", "calibration",
        "seconds",
    }  # fmt: skip
    assert report["rows"] == 175 and report["format"]["valid_share"] == 1.0
    assert report["safety"]["pii_rows"] == 2, "the two seed tasks with real contact details"
    safety = json.loads((tmp_path / "report" / "safety_report.json").read_text())
    assert safety["safety"] == report["safety"]
    markdown = (tmp_path / "report" / "eval_report.md").read_text()
    assert "| rows that validate | 175 of 175" in markdown
    for chart in ("lengths.png", "gaps.png"):
        assert (tmp_path / "report" / chart).read_bytes()[:8] == PNG
    assert set(hashes) == {
        "eval_report.json", "eval_report.md", "safety_report.json", "lengths.png", "gaps.png",
    }  # fmt: skip


def test_hh_pairs_are_judged_in_both_orders_and_near_identical_pairs_flagged(
    real_data: Path, model_dir: Path, embedder: object, local_backend: object, tmp_path: Path
) -> None:
    hh = real_data / "hh-rlhf" / "harmless-base-test.jsonl.gz"
    path = tmp_path / "hh-slice.jsonl"
    with gzip.open(hh, "rt", encoding="utf-8") as source, path.open("w") as out:
        for _, line in zip(range(30), source, strict=False):
            out.write(line)
        row = json.loads(line)  # the last pair again, its rejected answer = chosen + a space
        row["rejected"] = row["chosen"] + " "
        out.write(json.dumps(row) + "\n")
    data = read_input(path, "preference")
    options = EvalOptions(stage="preference", tokenizer=str(model_dir), judge_sample=6)
    report = evaluate(data, options, embedder, tmp_path, backend=local_backend).report  # type: ignore[arg-type]
    assert report.preference is not None
    assert report.preference.near_identical >= 1
    assert len(data.examples) - 1 in report.preference.near_identical_rows
    judge = report.judge
    assert isinstance(judge, PreferenceJudge) and judge.sample == 6
    assert judge.judged + judge.no_verdict == 6
    if judge.judged:
        assert judge.win_rate is not None and 0.0 <= judge.win_rate <= 1.0
        assert judge.position_bias_share is not None and 0.0 <= judge.position_bias_share <= 1.0
    print(f"HH slice, SmolLM2-135M as judge: {judge}")


def test_bad_input_is_refused_clearly(real_data: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataFileError, match="no rows"):
        read_input(empty, "sft")
    hh = real_data / "hh-rlhf" / "harmless-base-test.jsonl.gz"
    with pytest.raises(DataFileError, match="preference rows, not sft rows"):
        read_input(hh, "sft")
    with pytest.raises(ConfigError, match="--stage: 'rlhf' is not sft or preference"):
        read_input(hh, "rlhf")  # type: ignore[arg-type]


def test_gapfill_eval_and_audit_from_the_command_line(
    real_data: Path, model_dir: Path, tmp_path: Path
) -> None:
    env = {
        "GAPFILL_DATA_DIR": str(tmp_path / "data"),
        "PATH": "/usr/bin:/bin",
        "HF_HUB_OFFLINE": "1",
    }
    seed = real_data / "self-instruct" / "seed_tasks.jsonl"
    done = run_cli(
        env, "eval", str(seed), "--stage", "sft", "--out", str(tmp_path / "r"),
        "--tokenizer", str(model_dir),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "175 sft rows" in done.stdout and (tmp_path / "r" / "eval_report.md").exists()
    bad = run_cli(env, "eval", str(seed), "--stage", "dpo", "--out", str(tmp_path / "x"))
    message = " ".join(bad.stderr.replace("│", " ").split())  # typer's usage error, boxed
    assert bad.returncode == 2 and "'dpo' is not one of 'sft', 'preference'" in message
    missing = run_cli(env, "audit", str(tmp_path / "r"))
    assert missing.returncode == 1 and "no manifest.json" in missing.stderr
