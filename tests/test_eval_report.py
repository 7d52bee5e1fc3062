"""The eval report's JSON: a real report, written, reads back as the same model, and its keys are
exactly the documented ones (README, "Evaluation") for schema_version 1, in the written order."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from generator.coverage import GapReport
from generator.evaluation import metrics
from generator.evaluation.report import (
    SCHEMA_VERSION,
    EvalReport,
    PreferenceJudge,
    SafetyReport,
    SFTJudge,
)
from generator.evaluation.runner import EvalOptions, evaluate, read_input, write_reports
from generator.schema import Gap

QUANTILES = ["mean", "p50", "p90", "p99", "max"]
FIGURES = [
    "mean_pairwise_distance", "near_duplicate_pair_share", "rows", "distinct_1", "distinct_2",
]  # fmt: skip
# schema_version 1, as the README's Evaluation table documents it.
DOCUMENTED: dict[str, Any] = {
    "schema_version": None,
    "stage": None,
    "source": None,
    "generated_at": None,
    "rows": None,
    "format": {
        "rows": None,
        "valid": None,
        "valid_share": None,
        "invalid": None,
        "turns": QUANTILES,
        "with_system_prompt": None,
        "answer_words": QUANTILES,
        "tokens": QUANTILES,
        "max_length": None,
        "over_max_length": None,
        "over_max_length_share": None,
    },
    "refusals": {
        "refusals": None,
        "share": None,
        "pattern_set": None,
        "per_gap": ["gap", "rows", "refusals", "share", "refusal_cell", "flagged"],
    },
    "diversity": {**dict.fromkeys(FIGURES), "existing": FIGURES},
    "coverage": {
        "runs": None,
        "runs_without_gap_report": None,
        "counted": None,
        "counted_rows": None,
        "not_counted_rows": None,
        "not_counted": ["merged_existing", "no_gap_report"],
        "measured_on": [
            "run",
            "data",
            "data_rows",
            "measured_at",
            "merged",
            "merged_is_measured",
            "note",
        ],
        "gaps": ["run", "gap", "label", "have", "added", "after", "target"],
    },
    "contamination": ["rows_matched", "share", "matches"],  # per eval set
    "safety": [
        "pii_rows",
        "pii_kinds",
        "pii_row_indexes",
        "unsafe_rows",
        "unsafe_categories",
        "unsafe_row_indexes",
        "rows",
    ],
    "preference": ["near_identical", "near_identical_share", "near_identical_rows"],
    "judge": None,  # by stage: below
    "calibration": None,  # an export's: tests/test_prescreening.py, tests/test_calibration.py
    "seconds": ["format", "refusals", "diversity", "contamination", "safety", "judge"],
}
SFT_JUDGE = ["model", "sample", "judged", "mean_score"]
CALIBRATION = ["scope", "items_with_votes", "humans", "judge", "judge_in_place"]
COMPARISON = [
    "pairs",
    "items",
    "agreement",
    "kappa",
    "kappa_low",
    "kappa_high",
    "confusion",
    "decisive_pairs",
    "decisive_agreement",
]
PREFERENCE_JUDGE = [
    "model",
    "sample",
    "judged",
    "no_verdict",
    "win_rate",
    "position_bias_share",
    "agreement_with_humans",
    "human_reviewed_judged",
]


def keys(value: dict[str, Any]) -> list[str]:
    return list(value)


def assert_documented(report: dict[str, Any]) -> None:
    assert keys(report) == list(DOCUMENTED)
    assert report["schema_version"] == SCHEMA_VERSION == 3
    fmt = report["format"]
    assert keys(fmt) == list(DOCUMENTED["format"])
    for name in ("turns", "answer_words", "tokens"):
        assert keys(fmt[name]) == QUANTILES
    refusals = report["refusals"]
    assert keys(refusals) == list(DOCUMENTED["refusals"])
    assert refusals["per_gap"] and all(
        keys(g) == DOCUMENTED["refusals"]["per_gap"] for g in refusals["per_gap"]
    )
    diversity = report["diversity"]
    assert keys(diversity) in (FIGURES, [*FIGURES, "existing"])
    if "existing" in diversity:
        assert keys(diversity["existing"]) == FIGURES
    if report["coverage"] is not None:
        coverage = report["coverage"]
        assert keys(coverage) == list(DOCUMENTED["coverage"])
        assert keys(coverage["not_counted"]) == DOCUMENTED["coverage"]["not_counted"]
        for name in ("measured_on", "gaps"):
            assert coverage[name] and all(
                keys(g) == DOCUMENTED["coverage"][name] for g in coverage[name]
            )
    for section in report["contamination"].values():
        assert keys(section) == DOCUMENTED["contamination"]
    assert keys(report["safety"]) == DOCUMENTED["safety"]
    if report["preference"] is not None:
        assert keys(report["preference"]) == DOCUMENTED["preference"]
    if report["judge"] is not None:
        expected = SFT_JUDGE if report["stage"] == "sft" else PREFERENCE_JUDGE
        assert keys(report["judge"]) == expected
    assert keys(report["seconds"]) == DOCUMENTED["seconds"]
    for calibration in report["calibration"]:
        assert keys(calibration) == CALIBRATION
        for who in ("humans", "judge", "judge_in_place"):
            if calibration[who] is not None:
                assert keys(calibration[who]) == COMPARISON


def written(evaluation: Any, out: Path, gaps: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    write_reports(evaluation, out, gaps)
    return (
        json.loads((out / "eval_report.json").read_text()),
        json.loads((out / "safety_report.json").read_text()),
    )


def test_a_real_sft_report_round_trips_with_the_documented_keys(
    real_data: Path, model_dir: Path, embedder: object, tmp_path: Path
) -> None:
    seed = real_data / "self-instruct" / "seed_tasks.jsonl"
    humaneval = real_data / "humaneval" / "HumanEval.jsonl.gz"
    data = read_input(seed, "sft")
    data.gap_reports["r"] = GapReport(
        run_id="r",
        data=str(seed),
        data_rows=data.rows,
        embedding_model="all-MiniLM-L6-v2",
        gaps=[Gap(id="g-1", run_id="r", label="a gap", have=2, target=10)],
    )
    options = EvalOptions(
        stage="sft", eval_sets=[humaneval], existing=seed, tokenizer=str(model_dir)
    )
    evaluation = evaluate(data, options, embedder, tmp_path)  # type: ignore[arg-type]
    # The judge section as an SFT judge writes it (no judge model needed to check its keys).
    report = evaluation.report
    report.judge = SFTJudge(model="m", sample=4, judged=3, mean_score=0.5)
    as_json, safety = written(evaluation, tmp_path / "out", data.gaps)

    assert EvalReport.model_validate(as_json) == report
    assert EvalReport.model_validate_json(report.model_dump_json()) == report
    assert_documented(as_json)
    assert as_json["coverage"]["gaps"][0]["gap"] == "g-1"
    assert "existing" in as_json["diversity"] and "HumanEval.jsonl.gz" in as_json["contamination"]

    assert SafetyReport.model_validate(safety) == report.safety_report()
    assert keys(safety) == [
        "schema_version", "stage", "source", "generated_at", "rows",
        "safety", "contamination", "refusals",
    ]  # fmt: skip
    assert keys(safety["refusals"]) == ["refusals", "share", "pattern_set"]
    assert safety["safety"] == as_json["safety"]


def test_a_real_preference_report_round_trips_and_omits_what_it_did_not_measure(
    real_data: Path, model_dir: Path, embedder: object, tmp_path: Path
) -> None:
    path = tmp_path / "hh.jsonl"
    source = real_data / "hh-rlhf" / "harmless-base-test.jsonl.gz"
    with gzip.open(source, "rt", encoding="utf-8") as rows, path.open("w") as out:
        out.writelines(line for _, line in zip(range(20), rows, strict=False))
    data = read_input(path, "preference")
    options = EvalOptions(stage="preference", tokenizer=str(model_dir))
    evaluation = evaluate(data, options, embedder, tmp_path)  # type: ignore[arg-type]
    report = evaluation.report
    as_json, _ = written(evaluation, tmp_path / "out", data.gaps)
    assert EvalReport.model_validate(as_json) == report
    assert_documented(as_json)
    assert as_json["coverage"] is None and as_json["judge"] is None
    assert as_json["contamination"] == {}
    assert "existing" not in as_json["diversity"]
    assert as_json["preference"] is not None

    judge = metrics.judge_section([(0, 1.0, False), (1, -1.0, False)], {0}, 2, model="m")
    report.judge = judge
    as_json, _ = written(evaluation, tmp_path / "judged", data.gaps)
    read_back = EvalReport.model_validate(as_json)
    assert read_back == report and isinstance(read_back.judge, PreferenceJudge)
    assert_documented(as_json)


def test_a_report_that_lacks_a_documented_key_or_has_another_is_refused() -> None:
    from pydantic import ValidationError

    quantiles = dict.fromkeys(QUANTILES, 1.0)
    report: dict[str, Any] = {
        "stage": "sft",
        "source": "x",
        "generated_at": "now",
        "rows": 1,
        "format": {
            "rows": 1, "valid": 1, "valid_share": 1.0, "invalid": [], "turns": quantiles,
            "with_system_prompt": 0, "answer_words": quantiles, "tokens": {}, "max_length": 16,
            "over_max_length": 0, "over_max_length_share": 0.0,
        },
        "refusals": {"refusals": 0, "share": 0.0, "pattern_set": "p", "per_gap": []},
        "diversity": dict.fromkeys(FIGURES, 0),
        "safety": {
            "pii_rows": 0, "pii_kinds": {}, "pii_row_indexes": [], "unsafe_rows": 0,
            "unsafe_categories": {}, "unsafe_row_indexes": [], "rows": 1,
        },
        "seconds": dict.fromkeys(DOCUMENTED["seconds"], 0.0),
    }  # fmt: skip
    parsed = EvalReport.model_validate(report)
    assert parsed.model_dump()["format"]["tokens"] == {}, "no values: no quantiles, as before"
    with pytest.raises(ValidationError, match="colour"):
        EvalReport.model_validate({**report, "safety": {**report["safety"], "colour": 1}})
    with pytest.raises(ValidationError, match="pattern_set"):
        EvalReport.model_validate({**report, "refusals": {"refusals": 0, "share": 0.0}})
