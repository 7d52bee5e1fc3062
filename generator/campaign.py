"""A campaign from a config file: the whole loop's inputs in one place (`gapfill run`, `gapfill
demo`). This module plans the run: measures the gaps, stores them with the run's config, and adds
generation tasks for the largest gaps; the CLI then runs or enqueues the work.

Paths in the config are relative to the config file, so a campaign directory can move.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from generator.conversations import ConversationSettings
from generator.coverage import (
    DEFAULT_REFERENCE_THRESHOLD,
    GapReport,
    analyse,
    load_reference,
    load_taxonomy,
)
from generator.dataset_reader import read_examples
from generator.embeddings import Embedder
from generator.errors import ConfigError, NoGapToFillError
from generator.feedback import GapFeedback, run_feedback
from generator.filters.contamination import load_eval_items
from generator.filters.settings import FilterSettings
from generator.prompts import PromptTemplates, tasks_for_gap
from generator.rounds import accepted_in, chain
from generator.run_inputs import pack_run
from generator.schema import (
    MAX_RANKED,
    CandidateKind,
    Gap,
    Identifier,
    ReviewSettings,
    RunConfig,
)
from generator.store import Store
from generator.yaml_file import line_of, read_yaml, validation_message


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
        description="Reference prompts (e.g. real user traffic): they are clustered into "
        "topics, and each topic's prompts that no existing example covers are a gap. Give this, "
        "taxonomy, or both.",
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
    answers: int = Field(
        default=2,
        ge=2,
        le=MAX_RANKED,
        description="Preference runs: answers per request. 2 makes a pair (chosen, rejected); "
        "3 or more a ranking the reviewer orders by keyboard, exported as pairs "
        "(`gapfill export --ranking-pairs`). The answers use prompts/defaults.yaml's "
        "preference_variants in turn.",
    )
    conversation: ConversationSettings = Field(
        default_factory=ConversationSettings,
        description="Conversations longer than one exchange (sft runs): more user turns, the "
        "backend playing the user, and tools the assistant may call, the backend playing them.",
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

    @model_validator(mode="after")
    def _conversations_are_sft(self) -> CampaignConfig:
        talk = self.conversation
        if self.kind == "sft" and self.answers != 2:
            raise ValueError(
                "answers: more answers per request are for kind preference (a ranking)"
            )
        if self.kind == "preference" and (talk.turns > 1 or talk.tools):
            raise ValueError(
                "conversation: more turns and tools are generated for kind sft only (a "
                "preference pair compares single answers)"
            )
        return self

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
        raise ConfigError(validation_message(path, exc, CampaignConfig)) from None
    config = config.resolved(path.parent.resolve())
    needed: list[tuple[tuple[str | int, ...], Path | None]] = [
        (("data",), config.data),
        (("taxonomy",), config.taxonomy),
        (("reference",), config.reference),
        *((("eval_sets", index), file) for index, file in enumerate(config.eval_sets)),
    ]
    for key, file in needed:
        if file is not None and not file.is_file():
            line = line_of(path, key)
            where = f"{path}:{line}" if line else str(path)
            dotted = ".".join(str(part) for part in key)
            raise ConfigError(f"{where}: {dotted}: {file}: no such file")
    if config.taxonomy is None and config.reference is None:
        raise ConfigError(f"{path}: give a taxonomy or a reference set (or both)")
    return config


@dataclass
class Plan:
    run: str
    report: GapReport
    chosen: list[str]  # gap ids generated for
    tasks: int
    feedback: dict[str, GapFeedback] = field(default_factory=dict)  # from the earlier rounds
    remaining: dict[str, int] = field(default_factory=dict)  # chosen gap -> deficit still open


def plan(
    config: CampaignConfig, store: Store, embedder: Embedder, *, after: str | None = None
) -> Plan:
    """Measure the gaps and store the run, its gaps and the tasks for the largest ones.

    ``after``: the run this one is the next round of. The accepted items of every round up to
    it (``generator/rounds.py``) count against the gaps' deficits, and each gap they share
    (same id and label) takes their feedback (``generator/feedback.py``): the requests
    reviewers accepted lead the seeds, the latest round's first, and what they turned down or
    cut is listed to avoid. Everything is read and validated before anything is written.
    """
    if after is not None and (after == config.run or after not in store.runs()):
        raise ConfigError(
            f"--after: no earlier run {after!r} in the store (this run: {config.run!r})"
        )
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
    earlier = _earlier_round(store, after, report.gaps)
    remaining = {g.id: g.deficit - earlier.accepted.get(g.id, 0) for g in report.gaps}
    largest = sorted(
        (g for g in report.gaps if remaining[g.id] > 0), key=lambda g: -remaining[g.id]
    )
    chosen = largest[: config.gaps]
    if not chosen:
        raise NoGapToFillError(
            f"{config.data}: no gap to fill (every cell reaches its target"
            + (", counting what earlier rounds accepted)" if after else ")")
        )
    templates = PromptTemplates()
    defaults = templates.defaults()
    if config.max_tokens is not None:
        defaults = defaults.with_max_tokens(config.max_tokens)
    kind = CandidateKind(config.kind)
    tasks = [
        task
        for gap in chosen
        for task in tasks_for_gap(
            gap,
            templates,
            kind=kind,
            defaults=defaults,
            wanted=_wanted(config.per_gap, remaining[gap.id], after),
            accepted=earlier.feedback[gap.id].seeds if gap.id in earlier.feedback else (),
            avoid=(
                earlier.feedback[gap.id].avoid(gap, templates) if gap.id in earlier.feedback else ()
            ),
            conversation=config.conversation,
            answers=config.answers,
        )
    ]
    run = pack_run(
        store,
        RunConfig(
            run_id=config.run,
            kind=kind,
            description=f"campaign on {config.data.name}"
            + (f", the round after run {after}" if after else ""),
            after=after,
            round=earlier.round,
            backend=config.backend,
            model=config.model,
            existing=[str(config.data)],
            eval_sets=[str(p) for p in config.eval_sets],
            filters=config.filters,
            review=config.review,
        ),
        embedder,
        templates,
    )
    # The inputs are in the store before the run and its gaps: no worker sees one without them.
    # The tasks too (no job holds them yet): a plan cut short before save_run is planned again
    # by a resumed round, never taken for a round with nothing to do.
    added = store.add_tasks(tasks)
    store.save_gaps(config.run, report.gaps, report.model_dump_json())
    store.save_run(run)
    return Plan(
        config.run,
        report,
        [g.id for g in chosen],
        added,
        earlier.feedback,
        {g.id: remaining[g.id] for g in chosen},
    )


def _wanted(per_gap: int | None, remaining: int, after: str | None) -> int:
    """Requests to ask for a gap: its remaining deficit, or ``per_gap`` (in a later round no
    more than what is still missing)."""
    if per_gap is None:
        return remaining
    return per_gap if after is None else min(per_gap, remaining)


@dataclass
class EarlierRound:
    accepted: dict[str, int] = field(default_factory=dict)  # gap -> items accepted then
    feedback: dict[str, GapFeedback] = field(default_factory=dict)  # gaps it shares with this
    round: int = 1  # this run's round number


def _earlier_round(store: Store, after: str | None, gaps: list[Gap]) -> EarlierRound:
    """What the earlier rounds of the campaign (``after`` and the rounds before it) leave this
    one: their reviewers' acceptances and feedback, only for gaps each measured the same as
    this one (id and label; a gap id is a cluster's number, which another measurement may give
    to another cluster)."""
    if after is None:
        return EarlierRound()
    rounds = chain(store, after)
    found = EarlierRound(round=rounds[-1].round + 1)
    found.accepted = accepted_in(store, rounds, gaps)
    for config in rounds:  # the first round first: a later round's feedback goes before it
        then = {gap.id: gap.label for gap in store.gaps(config.run_id)}
        shared = {gap.id for gap in gaps if then.get(gap.id) == gap.label}
        for gap_id, taught in run_feedback(store, config.run_id).items():
            if gap_id in shared:
                older = found.feedback.get(gap_id)
                found.feedback[gap_id] = taught if older is None else taught.after(older)
    return found
