"""The filter pipeline: score candidates in cost order, then route them.

Routing: a failed *hard* filter -> ``auto_rejected`` (with every reason kept on the item);
otherwise -> ``pending`` review, with a priority. Nothing is deleted: a reviewer can see why an
item was auto-rejected and send it back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from generator.embeddings import Embedder
from generator.errors import InvalidTransitionError, StaleVersionError
from generator.filters.base import Filter
from generator.filters.contamination import ContaminationFilter
from generator.filters.duplicates import ExactDuplicateFilter, NearDuplicateFilter
from generator.filters.language import LanguageFilter
from generator.filters.malformed import MalformedFilter
from generator.filters.pii import PIIFilter
from generator.filters.quality import QualityFilter
from generator.filters.safety import SafetyFilter
from generator.filters.semantic import SemanticDuplicateFilter
from generator.filters.settings import FilterSettings
from generator.schema import Candidate, CandidateStatus
from generator.store import Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Routed:
    reviewed: int
    auto_rejected: int


class FilterPipeline:
    def __init__(self, filters: Sequence[Filter], *, skip_after_hard_failure: bool = True) -> None:
        self.filters = sorted(filters, key=lambda f: f.cost)
        self.skip_after_hard_failure = skip_after_hard_failure

    @classmethod
    def default(cls) -> FilterPipeline:
        return cls([MalformedFilter()])

    @classmethod
    def build(
        cls,
        settings: FilterSettings,
        *,
        existing: Sequence[tuple[str, str]] = (),
        eval_items: Sequence[tuple[str, str]] = (),
        embedder: Embedder | None = None,
    ) -> FilterPipeline:
        """The configured filters, with the existing data (and accepted items) as the reference
        for duplicates and the eval sets for contamination."""
        filters: list[Filter] = []
        if settings.malformed:
            filters.append(MalformedFilter())
        if settings.exact_duplicate:
            filters.append(ExactDuplicateFilter(existing))
        if settings.near_duplicate:
            filters.append(
                NearDuplicateFilter(existing, threshold=settings.near_duplicate_threshold)
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
        if settings.semantic_duplicate and embedder is not None:
            filters.append(
                SemanticDuplicateFilter(
                    embedder, existing, threshold=settings.semantic_duplicate_threshold
                )
            )
        if settings.contamination and eval_items:
            filters.append(
                ContaminationFilter(
                    eval_items,
                    ngram=settings.contamination_ngram,
                    embedder=embedder,
                    similarity=settings.contamination_similarity,
                )
            )
        return cls(filters, skip_after_hard_failure=settings.skip_after_hard_failure)

    def score(self, candidates: list[Candidate]) -> list[Candidate]:
        """Candidates with every filter's score added (expensive filters skip hard failures)."""
        scored = [c.model_copy(update={"scores": dict(c.scores)}) for c in candidates]
        for candidate_filter in self.filters:
            todo = [c for c in scored if not (self.skip_after_hard_failure and self._failed(c))]
            if not todo:
                continue
            for candidate, score in zip(todo, candidate_filter.score(todo), strict=True):
                candidate.scores[candidate_filter.name] = score
        return scored

    def _failed(self, candidate: Candidate) -> bool:
        hard = {f.name for f in self.filters if f.hard}
        return any(not s.passed for name, s in candidate.scores.items() if name in hard)

    def route(self, candidate: Candidate) -> CandidateStatus:
        return CandidateStatus.AUTO_REJECTED if self._failed(candidate) else CandidateStatus.PENDING

    def priority(self, candidate: Candidate, deficit: int) -> float:
        """Review order: the gap's deficit first, then uncertainty in [0, 1): soft filters that
        flagged something, and novelty, make an item worth a human's look sooner."""
        soft = {f.name for f in self.filters if not f.hard}
        flags = sum(1 for name, s in candidate.scores.items() if name in soft and not s.passed)
        semantic = candidate.scores.get("semantic_duplicate")
        novelty = float(semantic.evidence.get("novelty", 0.0)) if semantic else 0.0
        uncertainty = min(0.25 * flags + 0.25 * novelty, 0.99)
        return float(deficit) + uncertainty

    def score_and_route(self, store: Store, item_ids: list[str]) -> Routed:
        """Score stored ``generated`` items; move each to review (with its priority) or to
        auto-rejection. An item another scoring job routed first is left alone."""
        items = [c for c in store.get_many(item_ids) if c.status is CandidateStatus.GENERATED]
        deficits = {g.id: g.deficit for run in {c.run_id for c in items} for g in store.gaps(run)}
        reviewed = rejected = 0
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
                reviewed += 1
            else:
                rejected += 1
        logger.info(
            "scored %s items: %s to review, %s auto-rejected", len(items), reviewed, rejected
        )
        return Routed(reviewed=reviewed, auto_rejected=rejected)
