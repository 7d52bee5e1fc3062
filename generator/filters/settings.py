"""Filter configuration: which filters run, their thresholds, and which failures auto-reject."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from generator.errors import ConfigError
from generator.sandbox import SandboxLimits
from generator.yaml_file import read_yaml, validation_message


class FilterSettings(BaseModel):
    """The ``filters:`` section of a campaign (and of ``gapfill score --config``): each filter
    on or off, its thresholds, and which failures auto-reject (hard) instead of informing review.
    """

    model_config = ConfigDict(extra="forbid")

    malformed: bool = Field(
        default=True,
        description="Hard: unparseable or truncated output, chat-template tokens, control "
        "characters, over 100k characters, backend errors.",
    )
    tool_calls: bool = Field(
        default=True,
        description="Hard: a tool call to a tool the conversation does not list, or with "
        "arguments that break the tool's JSON Schema (flagged, never repaired).",
    )
    exact_duplicate: bool = Field(
        default=True,
        description="Hard: the same normalised text (NFKC, case-folded, whitespace collapsed) as "
        "an existing or accepted item or an earlier candidate.",
    )
    near_duplicate: bool = Field(
        default=True,
        description="Hard: word 3-shingles this similar to an existing or accepted item or an "
        "earlier candidate (MinHash LSH, confirmed by the true Jaccard).",
    )
    near_duplicate_threshold: float = Field(
        default=0.8, gt=0, le=1, description="The Jaccard similarity that makes a near duplicate."
    )
    near_duplicate_edit_threshold: float | None = Field(
        default=0.9,
        gt=0,
        le=1,
        description="Also a near duplicate: a text whose characters are this similar to one of "
        "the MinHash candidates (RapidFuzz's Indel similarity of the normalised texts), for "
        "templated rows that differ in a few words (they lose many shingles, few characters); "
        "null: the Jaccard alone decides.",
    )
    semantic_duplicate: bool = Field(
        default=True,
        description="Hard: an embedding this close to an existing or accepted item or an "
        "earlier candidate.",
    )
    semantic_duplicate_threshold: float = Field(
        default=0.92,
        gt=0,
        le=1,
        description="The cosine similarity that makes a semantic duplicate.",
    )
    language: bool = Field(
        default=True, description="Flag answers not in one of languages (py3langid); soft."
    )
    languages: list[str] = Field(
        default_factory=lambda: ["en"],
        description="The languages answers are expected in (ISO 639-1 codes).",
    )
    unsafe: bool = Field(
        default=True,
        description="Flag answers with profanity or a disallowed category's content (refusals "
        "exempt); soft unless unsafe_hard.",
    )
    unsafe_hard: bool = Field(default=False, description="Unsafe flags auto-reject too.")
    disallowed: list[str] | None = Field(
        default=None,
        description="The unsafe categories flagged, of violence, weapons, self_harm, "
        "illegal_activity, hate, sexual (default: all of them).",
    )
    pii: bool = Field(
        default=True,
        description="Hard: personal data or a secret (e-mail, phone, card, IBAN, SSN, IP, API "
        "keys, private keys...) in the candidate.",
    )
    quality: bool = Field(
        default=True,
        description="Flag short or overlong answers, repetition, assistant boilerplate and "
        "refusals, low lexical diversity, answers restating the question; soft unless "
        "quality_hard.",
    )
    quality_hard: bool = Field(default=False, description="Quality problems auto-reject too.")
    refusals_allowed: bool = Field(
        default=False,
        description="Do not flag boilerplate or refusals in answers (for a run whose gaps are "
        "about declining requests).",
    )
    contamination: bool = Field(
        default=True,
        description="Hard: a candidate holding or paraphrasing an item of the run's eval sets "
        "(only when the run has eval sets).",
    )
    contamination_ngram: int = Field(
        default=13, ge=5, le=50, description="The word n-gram length compared with eval items."
    )
    # Share of an eval item's n-grams a candidate must contain. A single shared 13-gram is often
    # an idiom: text-davinci-003's prime test shares 2 of HumanEval/127's 186 13-grams (1.1%),
    # while a planted or lightly edited problem shares most of them.
    contamination_min_coverage: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="The share of an eval item's n-grams a candidate must contain to be "
        "contaminated.",
    )
    # Measured: HumanEval paraphrases score 0.68-0.78, the best clean seed task 0.73 (p99 0.62).
    contamination_similarity: float = Field(
        default=0.75,
        gt=0,
        le=1,
        description="A turn this close to an eval item (embedding cosine) is contaminated too: "
        "paraphrases share no n-gram.",
    )
    off_topic: bool = Field(
        default=True,
        description="Flag answers far from their gap's centroid (only for gaps the gap report "
        "gives a centroid); soft.",
    )
    # Measured on the user-oriented instructions: 9% of on-topic answers fall below 0.15, 71% of
    # answers placed in a foreign app's gap do (a soft flag: a reviewer decides).
    off_topic_similarity: float = Field(
        default=0.15,
        ge=-1,
        le=1,
        description="Below this cosine similarity to its gap's centroid a candidate is off topic.",
    )
    diversity: bool = Field(
        default=True,
        description="Score novelty (distance to the nearest existing, accepted or earlier item) "
        "and the MMR rank inside each gap's batch; never fails.",
    )
    diversity_trade_off: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="MMR's weight on novelty against closeness to the batch's items already "
        "ranked (1: novelty only).",
    )
    judge: bool = Field(
        default=False,
        description="LLM-as-judge through the scoring worker's backend: 1-5 on helpfulness, "
        "correctness and safety (preference pairs: chosen's win rate); soft.",
    )
    judge_min_score: float = Field(
        default=3.0,
        ge=1,
        le=5,
        description="Below this mean judge score an SFT item is flagged (a preference pair is "
        "flagged when its rejected answer wins in both orders).",
    )
    judge_rubric: str = Field(
        default="",
        description="More for the judge to weigh, added to its prompt as 'Also consider: ...'.",
    )
    code_execution: bool = Field(
        default=False,
        description="Run each answer's Python blocks (its code and the tests it states) in a "
        "sandbox: no network, limits on CPU, memory, processes, output and time; soft unless "
        "code_execution_hard. Off by default; the candidates of a taxonomy cell marked "
        "`code: true` are run either way.",
    )
    code_execution_hard: bool = Field(
        default=False, description="Code that fails or hits a limit auto-rejects too."
    )
    code_execution_limits: SandboxLimits = Field(
        default_factory=SandboxLimits, description="What one run of the code may take."
    )
    skip_after_hard_failure: bool = Field(
        default=True, description="A candidate already auto-rejected skips the costlier filters."
    )


def load_filter_settings(path: Path | None) -> FilterSettings:
    """From a YAML file: its ``filters:`` section, or the whole file."""
    if path is None:
        return FilterSettings()
    data: Any = read_yaml(path, ConfigError) or {}
    within: tuple[str, ...] = ()
    if isinstance(data, dict) and isinstance(data.get("filters"), dict):
        data, within = data["filters"], ("filters",)
    try:
        return FilterSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_message(path, exc, FilterSettings, within)) from None
