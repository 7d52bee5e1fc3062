"""The fixed choices of command options, as enums: typer checks them and lists them in --help."""

from __future__ import annotations

from enum import StrEnum

from generator.reviewers import Role

# A reviewer's role in the review UI (``gapfill reviewer add --role``); the library owns it, as
# reviewers.json stores it.
__all__ = ["AuthMode", "DemoSize", "Device", "ExportFormat", "OverlapRule", "Role", "Workers"]


class OverlapRule(StrEnum):
    """How the k votes of overlapping reviewers settle an item."""

    MAJORITY = "majority"
    UNANIMOUS = "unanimous"


class ExportFormat(StrEnum):
    JSONL = "jsonl"
    PARQUET = "parquet"


class RankingPairs(StrEnum):
    ALL = "all"
    BEST_WORST = "best-worst"


class Workers(StrEnum):
    """Where a campaign's jobs run: a burst worker in this process, or external workers."""

    INPROCESS = "inprocess"
    EXTERNAL = "external"


class DemoSize(StrEnum):
    SMALL = "small"
    MEDIUM = "medium"


class Device(StrEnum):
    """The local backend's device."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class AuthMode(StrEnum):
    """How the review UI identifies reviewers (its ``GAPFILL_UI_AUTH``)."""

    TOKENS = "tokens"
    LOCAL = "local"
    OIDC = "oidc"
