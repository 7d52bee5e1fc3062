"""A campaign from a config file: the whole loop's inputs in one place (`gapfill run`, `gapfill
demo`). This module plans the run: measures the gaps, stores them with the run's config, and adds
generation tasks for the largest gaps; the CLI then runs or enqueues the work.

Paths in the config are relative to the config file, so a campaign directory can move.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from generator.coverage import (
    DEFAULT_REFERENCE_THRESHOLD,
    GapReport,
    analyse,
    load_reference,
    load_taxonomy,
)
from generator.dataset_reader import read_examples
from generator.embeddings import Embedder
from generator.errors import ConfigError, DataFileError
from generator.filters.contamination import load_eval_items
from generator.filters.settings import FilterSettings
from generator.prompts import PromptTemplates, tasks_for_gap
from generator.schema import CandidateKind, Identifier, ReviewSettings, RunConfig
from generator.store import Store
from generator.yaml_file import read_yaml


class CampaignConfig(BaseModel):
    """`gapfill run CONFIG.yaml`: every field is a key of the YAML file (docs/campaign.md is
    generated from these fields by scripts/campaign_reference.py)."""

    model_config = ConfigDict(extra="forbid")

    run: Identifier = Field(
        description="The run id the campaign's gaps, tasks and items are stored under (letters, "
        "digits, '.', '_' and '-'); `gapfill status --run` and `gapfill export --run` name it."
    )
    kind: Literal["sft", "preference"] = Field(
        default="sft",
        description="What is generated: 'sft' (a request and one answer) or 'preference' (a "
        "request and two answers, chosen and rejected, from the two preference_variants of "
        "prompts/defaults.yaml).",
    )
    data: Path = Field(
        description="The existing dataset (any format `gapfill validate` reads) whose gaps are "
        "measured; the duplicate filters also check candidates against it."
    )
    taxonomy: Path | None = Field(
        default=None,
        description="A taxonomy YAML (cells with descriptions, examples and targets): gaps are "
        "the cells below their target. Give this, reference, or both.",
    )
    reference: Path | None = Field(
        default=None,
        description="Reference prompts (e.g. real user traffic): gaps are clusters of the "
        "prompts no existing example covers. Give this, taxonomy, or both.",
    )
    reference_label: str | None = Field(
        default=None,
        description="The field of each reference row holding its label, which names the gap "
        "(default: the row's 'label' field).",
    )
    reference_threshold: float = Field(
        default=DEFAULT_REFERENCE_THRESHOLD,
        description="A reference prompt is uncovered when no existing example is this close to "
        "it (cosine similarity of their embeddings).",
    )
    eval_sets: list[Path] = Field(
        default_factory=list,
        description="Eval set files (rows with a prompt, e.g. HumanEval.jsonl.gz) nothing "
        "generated may leak: the contamination filter checks every candidate against them.",
    )
    backend: Literal["local", "openai", "vllm"] = Field(
        default="local",
        description="The generation backend: 'local' (transformers on this machine), 'openai' "
        "(any OpenAI-compatible server, at base_url) or 'vllm' (vLLM's engine, in the worker's "
        "process).",
    )
    model: str | None = Field(
        default=None,
        description="The backend's model (a path or a name); default: the bundled "
        "SmolLM2-135M-Instruct. Used by `--workers inprocess`; external workers take their own "
        "`--model`.",
    )
    base_url: str | None = Field(
        default=None,
        description="The OpenAI-compatible server's URL, for the openai backend (used by "
        "`--workers inprocess`).",
    )
    gaps: int = Field(
        default=3, ge=1, description="Generate for this many gaps, the largest deficits first."
    )
    per_gap: int | None = Field(
        default=None,
        ge=1,
        description="Requests asked for per chosen gap, split into tasks of requests_per_task "
        "(prompts/defaults.yaml); default: the gap's deficit.",
    )
    max_tokens: int | None = Field(
        default=None,
        ge=16,
        le=32768,
        description="The most tokens each generation may produce (the requests, the answers and "
        "both preference answers); default: prompts/defaults.yaml's (512). An output that hits "
        "it is cut off: the malformed filter rejects it as 'truncated: the generation hit "
        "max_tokens', and `gapfill generate`/`run` count such outputs.",
    )
    filters: FilterSettings = Field(
        default_factory=FilterSettings,
        description="Which filters score the candidates, their thresholds, and which failures "
        "auto-reject; stored with the run for its scoring workers.",
    )
    review: ReviewSettings = Field(
        default_factory=ReviewSettings,
        description="How the run's items are reviewed; stored with the run.",
    )

    def resolved(self, base: Path) -> CampaignConfig:
        def at(path: Path | None) -> Path | None:
            return None if path is None else (path if path.is_absolute() else base / path)

        return self.model_copy(
            update={
                "data": at(self.data),
                "taxonomy": at(self.taxonomy),
                "reference": at(self.reference),
                "eval_sets": [at(p) for p in self.eval_sets],
            }
        )


def load_campaign(path: Path, overrides: dict[str, Any] | None = None) -> CampaignConfig:
    """A campaign config; every problem is one error naming the file and the key."""
    raw = read_yaml(path, ConfigError)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of campaign settings")
    raw.update(overrides or {})
    try:
        config = CampaignConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_config_error(path, exc)) from None
    config = config.resolved(path.parent.resolve())
    for needed in [config.data, config.taxonomy, config.reference, *config.eval_sets]:
        if needed is not None and not needed.is_file():
            raise ConfigError(f"{path}: {needed}: no such file")
    if config.taxonomy is None and config.reference is None:
        raise ConfigError(f"{path}: give a taxonomy or a reference set (or both)")
    return config


def _config_error(path: Path, exc: ValidationError) -> str:
    """``FILE:LINE: key.path: reason`` for the first problem; an unknown key first (a typo of a
    required key is also that key "missing", and the typo is the news), with the closest
    known key at its level as a hint."""
    errors = exc.errors()
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = [str(part) for part in error["loc"]]
    line = _line_of(path, error["loc"])
    where = f"{path}:{line}" if line else str(path)
    if error["type"] != "extra_forbidden":
        return f"{where}: {'.'.join(loc)}: {error['msg']}"
    known = _keys_at(CampaignConfig, error["loc"][:-1])
    close = difflib.get_close_matches(loc[-1], known, n=1)
    hint = f"did you mean '{close[0]}'?" if close else "`gapfill run --schema` lists the keys"
    return f"{where}: {'.'.join(loc)}: unknown key; {hint}"


def _keys_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The field names of the model nested at ``loc`` (a key path of sections)."""
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _line_of(path: Path, loc: tuple[int | str, ...]) -> int | None:
    """The line of the YAML key at ``loc`` (None: a key the file does not hold, e.g. one left
    out, or one set by an override)."""
    node: yaml.Node | None = yaml.compose(path.read_text(encoding="utf-8"))
    line = None
    for part in loc:
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
            continue
        if not isinstance(node, yaml.MappingNode):
            return None
        pairs = [(k, v) for k, v in node.value if getattr(k, "value", None) == str(part)]
        if not pairs:
            return None
        line, node = pairs[0][0].start_mark.line + 1, pairs[0][1]
    return line


@dataclass
class Plan:
    report: GapReport
    chosen: list[str]  # gap ids generated for
    tasks: int


def plan(config: CampaignConfig, store: Store, embedder: Embedder) -> Plan:
    """Measure the gaps and store the run, its gaps and the tasks for the largest ones.

    Everything is read and validated before anything is written.
    """
    examples = [row.example for row in read_examples(config.data).examples]
    for eval_set in config.eval_sets:
        load_eval_items(eval_set)
    report = analyse(
        config.run,
        config.data,
        examples,
        embedder,
        taxonomy=load_taxonomy(config.taxonomy) if config.taxonomy else None,
        taxonomy_path=str(config.taxonomy) if config.taxonomy else None,
        reference=(
            load_reference(config.reference, config.reference_label) if config.reference else None
        ),
        reference_path=str(config.reference) if config.reference else None,
        reference_threshold=config.reference_threshold,
    )
    largest = sorted((g for g in report.gaps if g.deficit > 0), key=lambda g: -g.deficit)
    chosen = largest[: config.gaps]
    if not chosen:
        raise DataFileError(f"{config.data}: no gap to fill (every cell reaches its target)")
    templates = PromptTemplates()
    defaults = templates.defaults()
    if config.max_tokens is not None:
        defaults = defaults.with_max_tokens(config.max_tokens)
    kind = CandidateKind(config.kind)
    tasks = [
        task
        for gap in chosen
        for task in tasks_for_gap(
            gap, templates, kind=kind, defaults=defaults, wanted=config.per_gap
        )
    ]
    store.save_gaps(config.run, report.gaps, report.model_dump_json())
    store.save_run(
        RunConfig(
            run_id=config.run,
            kind=kind,
            description=f"campaign on {config.data.name}",
            backend=config.backend,
            model=config.model,
            existing=[str(config.data)],
            eval_sets=[str(p) for p in config.eval_sets],
            filters=config.filters,
            review=config.review,
        )
    )
    return Plan(report, [g.id for g in chosen], store.add_tasks(tasks))
