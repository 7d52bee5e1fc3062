"""The filter pipeline: score candidates in cost order, then route them.

Routing: a failed *hard* filter -> ``auto_rejected`` (with every reason kept on the item);
otherwise -> ``pending`` review, with a priority. Nothing is deleted: a reviewer can see why an
item was auto-rejected and send it back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from generator.backends.base import Backend
from generator.embeddings import Embedder
from generator.errors import ConfigError, InvalidTransitionError, StaleVersionError
from generator.filters.base import Filter
from generator.filters.contamination import ContaminationFilter
from generator.filters.diversity import DiversityFilter
from generator.filters.duplicates import ExactDuplicateFilter, NearDuplicateFilter
from generator.filters.execution import CodeExecutionFilter
from generator.filters.judge import JudgeFilter
from generator.filters.language import LanguageFilter
from generator.filters.malformed import MalformedFilter
from generator.filters.pii import PIIFilter
from generator.filters.quality import QualityFilter
from generator.filters.reference import EmbeddingIndex, ReferenceIndexes, ReferenceItem
from generator.filters.safety import SafetyFilter
from generator.filters.semantic import SemanticDuplicateFilter
from generator.filters.settings import FilterSettings
from generator.filters.tool_calls import ToolCallFilter
from generator.filters.topic import OffTopicFilter
from generator.prompts import PromptTemplates
from generator.schema import Candidate, CandidateStatus
from generator.store import Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Routed:
    reviewed: int
    auto_rejected: int
    to_review: list[Candidate] = field(default_factory=list)  # as routed, with their scores


class FilterPipeline:
    def __init__(self, filters: Sequence[Filter], *, skip_after_hard_failure: bool = True) -> None:
        self.filters = sorted(filters, key=lambda f: f.cost)
        self.skip_after_hard_failure = skip_after_hard_failure
        self.seconds: dict[str, float] = {f.name: 0.0 for f in self.filters}  # per filter

    @classmethod
    def default(cls) -> FilterPipeline:
        return cls([MalformedFilter()])

    @classmethod
    def build(
        cls,
        settings: FilterSettings,
        *,
        existing: Sequence[tuple[str, str] | ReferenceItem] = (),
        eval_items: Sequence[tuple[str, str]] = (),
        embedder: Embedder | None = None,
        shared: ReferenceIndexes | None = None,
        centroids: Mapping[str, Sequence[float]] | None = None,
        judge: Backend | None = None,
        templates: PromptTemplates | None = None,
        code_gaps: Collection[str] = (),
    ) -> FilterPipeline:
        """The configured filters. Duplicates are checked against ``shared`` (the existing
        dataset's cached indexes) and ``existing`` (small sets: accepted items), contamination
        against the eval sets, topic against the gaps' centroids."""
        exact = shared.exact if shared else None
        near = shared.shingles if shared else None
        vectors = shared.vectors if shared else None
        filters: list[Filter] = []
        if settings.malformed:
            filters.append(MalformedFilter())
        if settings.tool_calls:
            filters.append(ToolCallFilter())
        if settings.exact_duplicate:
            filters.append(ExactDuplicateFilter(existing, shared=exact))
        if settings.near_duplicate:
            filters.append(
                NearDuplicateFilter(
                    existing,
                    threshold=settings.near_duplicate_threshold,
                    edit_threshold=settings.near_duplicate_edit_threshold,
                    shared=near,
                )
            )
        if settings.quality:
            quality = QualityFilter(refusals_allowed=settings.refusals_allowed)
            quality.hard = settings.quality_hard
            filters.append(quality)
        if settings.language:
            filters.append(LanguageFilter(settings.languages))
        if settings.unsafe:
            safety = SafetyFilter(settings.disallowed) if settings.disallowed else SafetyFilter()
            safety.hard = settings.unsafe_hard
            filters.append(safety)
        if settings.pii:
            filters.append(PIIFilter())
        if embedder is not None:
            filters += cls._embedding_filters(settings, embedder, existing, vectors, centroids)
        if settings.contamination and eval_items:
            filters.append(
                ContaminationFilter(
                    eval_items,
                    ngram=settings.contamination_ngram,
                    embedder=embedder,
                    similarity=settings.contamination_similarity,
                    min_coverage=settings.contamination_min_coverage,
                )
            )
        if settings.code_execution or code_gaps:
            # The campaign's option runs every candidate's code; else only the code gaps'.
            only = None if settings.code_execution else code_gaps
            execution = CodeExecutionFilter(settings.code_execution_limits, only)
            execution.hard = settings.code_execution_hard
            filters.append(execution)
        if settings.judge:
            if judge is None:
                raise ConfigError(
                    "filters.judge is on but no judge backend is loaded (a score-only worker "
                    "judges only when started with --backend or --model)"
                )
            filters.append(
                JudgeFilter(
                    judge,
                    templates=templates,
                    rubric=settings.judge_rubric,
                    min_score=settings.judge_min_score,
                )
            )
        return cls(filters, skip_after_hard_failure=settings.skip_after_hard_failure)

    @staticmethod
    def _embedding_filters(
        settings: FilterSettings,
        embedder: Embedder,
        existing: Sequence[tuple[str, str] | ReferenceItem],
        vectors: EmbeddingIndex | None,
        centroids: Mapping[str, Sequence[float]] | None,
    ) -> list[Filter]:
        filters: list[Filter] = []
        if settings.semantic_duplicate:
            filters.append(
                SemanticDuplicateFilter(
                    embedder,
                    existing,
                    threshold=settings.semantic_duplicate_threshold,
                    shared=vectors,
                )
            )
        if settings.off_topic and centroids:
            filters.append(
                OffTopicFilter(embedder, centroids, threshold=settings.off_topic_similarity)
            )
        if settings.diversity:
            filters.append(DiversityFilter(embedder, trade_off=settings.diversity_trade_off))
        return filters

    def score(self, candidates: list[Candidate]) -> list[Candidate]:
        """Candidates with every filter's score added (expensive filters skip hard failures)."""
        scored = [c.model_copy(update={"scores": dict(c.scores)}) for c in candidates]
        for candidate_filter in self.filters:
            todo = [c for c in scored if not (self.skip_after_hard_failure and self._failed(c))]
            if not todo:
                continue
            started = time.perf_counter()
            scores = candidate_filter.score(todo)
            self.seconds[candidate_filter.name] += time.perf_counter() - started
            for candidate, score in zip(todo, scores, strict=True):
                candidate.scores[candidate_filter.name] = score
        return scored

    def _failed(self, candidate: Candidate) -> bool:
        hard = {f.name for f in self.filters if f.hard}
        return any(not s.passed for name, s in candidate.scores.items() if name in hard)

    def route(self, candidate: Candidate) -> CandidateStatus:
        return CandidateStatus.AUTO_REJECTED if self._failed(candidate) else CandidateStatus.PENDING

    def priority(self, candidate: Candidate, deficit: int) -> float:
        """Review order: the gap's deficit first, then, within a gap, uncertainty in [0, 0.5):
        soft filters that flagged something and novelty make an item worth a human's look
        sooner; then diversity in [0, 0.49]: the batch's MMR order, so the items that add the most
        coverage come before near-repeats of each other."""
        soft = {f.name for f in self.filters if not f.hard}
        flags = sum(1 for name, s in candidate.scores.items() if name in soft and not s.passed)
        semantic = candidate.scores.get("semantic_duplicate")
        novelty = float(semantic.evidence.get("novelty", 0.0)) if semantic else 0.0
        uncertainty = min(0.125 * flags + 0.125 * novelty, 0.5)
        diversity = candidate.scores.get("diversity")
        spread = 0.0
        if diversity is not None and diversity.evidence.get("of"):
            rank, of = int(diversity.evidence["mmr_rank"]), int(diversity.evidence["of"])
            spread = 0.49 * (1 - rank / of)
        return float(deficit) + uncertainty + spread

    def score_and_route(self, store: Store, item_ids: list[str]) -> Routed:
        """Score stored ``generated`` items; move each to review (with its priority) or to
        auto-rejection. An item another scoring job routed first is left alone."""
        items = [c for c in store.get_many(item_ids) if c.status is CandidateStatus.GENERATED]
        deficits = {g.id: g.deficit for run in {c.run_id for c in items} for g in store.gaps(run)}
        rejected = 0
        to_review: list[Candidate] = []
        for candidate in self.score(items):
            status = self.route(candidate)
            try:
                store.route(
                    candidate.id,
                    status,
                    priority=self.priority(candidate, deficits.get(candidate.gap_id, 0)),
                    candidate=candidate,
                    expected_version=candidate.version,
                )
            except (StaleVersionError, InvalidTransitionError):
                continue
            if status is CandidateStatus.PENDING:
                to_review.append(candidate)
            else:
                rejected += 1
        logger.info(
            "scored %s items: %s to review, %s auto-rejected", len(items), len(to_review), rejected
        )
        return Routed(reviewed=len(to_review), auto_rejected=rejected, to_review=to_review)
