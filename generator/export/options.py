"""What ``gapfill export`` is asked to do, and what it did."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from generator.export.checks import DEFAULT_MAX_LENGTH
from generator.schema import CandidateKind


class ExportOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runs: list[str] = Field(min_length=1)
    kind: CandidateKind
    format: Literal["jsonl", "parquet"] = "jsonl"
    out: Path
    overwrite: bool = False
    merge: Path | None = Field(
        default=None, description="Existing dataset merged in, deduplicated."
    )
    eval_fraction: float = Field(default=0.0, ge=0, lt=1)
    tokenizer: str | None = Field(
        default=None, description="Tokenizer dir; default: the bundled SmolLM2."
    )
    max_length: int = Field(default=DEFAULT_MAX_LENGTH, ge=16)
    base_model: str | None = None
    pretraining_data: list[str] = Field(default_factory=list)
    previous: Path | None = Field(default=None, description="The export this one follows.")
    evaluate: bool = Field(default=True, description="Write the stage's eval and safety reports.")
    eval_sets: list[Path] = Field(default_factory=list, description="For the contamination check.")
    judge: str | None = Field(default=None, description="BACKEND/MODEL judging the eval report.")
    ranking_pairs: Literal["all", "best_worst"] = Field(
        default="all",
        description="A ranking of 3+ answers becomes every pair, better chosen (n(n-1)/2 "
        "rows), or only the best against the worst.",
    )
    include_auto_decided: bool = Field(
        default=False,
        description="Also export items the pre-screen model accepted without a human (marked).",
    )
    mode: int = Field(
        default=0o750, ge=0, le=0o777, description="The export folder's permissions (files: no x)."
    )


@dataclass
class ExportResult:
    out: Path
    export_id: str
    rows: dict[str, int]
    excluded: list[tuple[str, str]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    auto_left_out: int = 0  # accepted by the pre-screen model alone, not asked for
    manifest_sha256: str = ""
    seconds: dict[str, float] = field(default_factory=dict)  # per stage, for benchmarks
