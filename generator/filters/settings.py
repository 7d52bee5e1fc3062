"""Filter configuration: which filters run, their thresholds, and which failures auto-reject."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from generator.errors import ConfigError
from generator.yaml_file import read_yaml


class FilterSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    malformed: bool = True
    exact_duplicate: bool = True
    near_duplicate: bool = True
    near_duplicate_threshold: float = Field(default=0.8, gt=0, le=1)
    semantic_duplicate: bool = True
    semantic_duplicate_threshold: float = Field(default=0.92, gt=0, le=1)
    language: bool = True
    languages: list[str] = Field(default_factory=lambda: ["en"], description="Expected answers.")
    unsafe: bool = True
    unsafe_hard: bool = Field(default=False, description="Unsafe flags auto-reject too.")
    disallowed: list[str] | None = Field(
        default=None, description="Disallowed categories (default: all the filter knows)."
    )
    pii: bool = True
    quality: bool = True
    quality_hard: bool = Field(default=False, description="Quality problems auto-reject too.")
    refusals_allowed: bool = Field(
        default=False, description="Gaps about refusals: no boilerplate flag."
    )
    contamination: bool = True
    contamination_ngram: int = Field(default=13, ge=5, le=50)
    # Share of an eval item's n-grams a candidate must contain. A single shared 13-gram is often
    # an idiom: text-davinci-003's prime test shares 2 of HumanEval/127's 186 13-grams (1.1%),
    # while a planted or lightly edited problem shares most of them.
    contamination_min_coverage: float = Field(default=0.05, gt=0, le=1)
    # Measured: HumanEval paraphrases score 0.68-0.78, the best clean seed task 0.73 (p99 0.62).
    contamination_similarity: float = Field(default=0.75, gt=0, le=1)
    off_topic: bool = Field(default=True, description="Flag answers far from their gap's centroid.")
    # Measured on the user-oriented instructions: 9% of on-topic answers fall below 0.15, 71% of
    # answers placed in a foreign app's gap do (a soft flag: a reviewer decides).
    off_topic_similarity: float = Field(default=0.15, ge=-1, le=1)
    diversity: bool = Field(default=True, description="MMR rank inside each gap's batch.")
    diversity_trade_off: float = Field(default=0.5, ge=0, le=1)
    judge: bool = Field(default=False, description="LLM-as-judge through the worker's backend.")
    judge_min_score: float = Field(default=3.0, ge=1, le=5)
    judge_rubric: str = ""
    skip_after_hard_failure: bool = Field(
        default=True, description="A candidate already auto-rejected skips the costlier filters."
    )


def load_filter_settings(path: Path | None) -> FilterSettings:
    """From a YAML file: its ``filters:`` section, or the whole file."""
    if path is None:
        return FilterSettings()
    data: Any = read_yaml(path, ConfigError) or {}
    if isinstance(data, dict) and isinstance(data.get("filters"), dict):
        data = data["filters"]
    try:
        return FilterSettings.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "filters"
        raise ConfigError(f"{path}: filters.{where}: {error['msg']}") from exc
