"""The report's sections, each a pure function of the examples (plus the models it needs).

Every section is computed over all rows, except the pairwise ones of diversity, which use at most
``PAIR_SAMPLE`` rows (a deterministic sample) so that the cost stays linear.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from generator.embeddings import Embedder
from generator.evaluation.report import (
    ContaminationSet,
    DiversityFigures,
    DiversitySection,
    FormatSection,
    GapRefusals,
    PreferenceJudge,
    Quantiles,
    RefusalSection,
    SafetySection,
)
from generator.filters.contamination import ContaminationFilter
from generator.filters.pii import PIIFilter
from generator.filters.quality import BOILERPLATE
from generator.filters.reference import item_vectors
from generator.filters.safety import REFUSAL, SafetyFilter
from generator.filters.text import jaccard, shingles, words
from generator.schema import Candidate, CandidateKind, PreferenceExample, SFTExample

Example = SFTExample | PreferenceExample
PAIR_SAMPLE = 5000
NEAR_DUPLICATE_COSINE = 0.92
NEAR_IDENTICAL_PAIR = 0.9  # word 3-shingle Jaccard of chosen vs rejected
# A gap whose id or label says it is about refusals or safety may hold refusals.
_REFUSAL_CELL = re.compile(r"refus|safety|safe|harm|decline", re.IGNORECASE)


def answers(example: Example) -> list[str]:
    if isinstance(example, SFTExample):
        return [m.text for m in example.messages if m.role == "assistant"]
    return [m.text for m in example.chosen]


def _quantiles(values: Sequence[float]) -> Quantiles:
    if not values:
        return Quantiles()
    ordered = np.sort(np.asarray(values, dtype=np.float64))

    def pick(q: float) -> float:
        return float(ordered[min(int(q * len(ordered)), len(ordered) - 1)])

    return Quantiles(
        mean=float(ordered.mean()),
        p50=pick(0.5),
        p90=pick(0.9),
        p99=pick(0.99),
        max=float(ordered[-1]),
    )


def format_section(
    examples: list[Example], rows: int, invalid: list[str], token_counts: list[int], max_length: int
) -> FormatSection:
    turns = [len(e.turns()) for e in examples]
    answer_words = [len(words(" ".join(answers(e)))) for e in examples]
    return FormatSection(
        rows=rows,
        valid=len(examples),
        valid_share=len(examples) / rows if rows else 0.0,
        invalid=invalid[:50],
        turns=_quantiles(turns),
        with_system_prompt=sum(
            1 for e in examples if (e.turns() and e.turns()[0].role == "system")
        ),
        answer_words=_quantiles(answer_words),
        tokens=_quantiles(token_counts),
        max_length=max_length,
        over_max_length=sum(1 for n in token_counts if n > max_length),
        over_max_length_share=(
            sum(1 for n in token_counts if n > max_length) / len(token_counts)
            if token_counts
            else 0.0
        ),
    )


def is_refusal(text: str) -> bool:
    """The documented pattern set: the unsafe filter's refusal phrases and the quality filter's
    assistant boilerplate ("I cannot help with that", "As an AI language model", ...)."""
    head = text[:400]  # a refusal says so at the start; a long answer quoting one does not count
    return bool(REFUSAL.search(head) or BOILERPLATE.search(head))


def refusal_section(
    examples: list[Example], gaps: list[str], labels: dict[str, str]
) -> RefusalSection:
    per_gap: dict[str, list[bool]] = defaultdict(list)
    for example, gap in zip(examples, gaps, strict=True):
        per_gap[gap].append(any(is_refusal(a) for a in answers(example)))
    total = sum(sum(v) for v in per_gap.values())
    rows = []
    for gap, flags in sorted(per_gap.items()):
        # "run/gap" in an export of several runs: the run's name says nothing of the gap.
        own = gap.rpartition("/")[2]
        refusal_cell = bool(_REFUSAL_CELL.search(f"{own} {labels.get(gap, '')}"))
        rows.append(
            GapRefusals(
                gap=gap,
                rows=len(flags),
                refusals=sum(flags),
                share=sum(flags) / len(flags),
                refusal_cell=refusal_cell,
                flagged=sum(flags) > 0 and not refusal_cell,
            )
        )
    return RefusalSection(
        refusals=total,
        share=total / len(examples) if examples else 0.0,
        pattern_set="generator.filters.safety.REFUSAL + generator.filters.quality.BOILERPLATE",
        per_gap=rows,
    )


def distinct_n(texts: Sequence[str], n: int) -> float:
    grams: Counter[tuple[str, ...]] = Counter()
    for text in texts:
        tokens = words(text)
        grams.update(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def dispersion(vectors: np.ndarray) -> dict[str, float]:
    """Mean pairwise cosine distance (in O(n): from the sum of unit vectors) and the share of
    pairs at near-duplicate similarity (on a deterministic sample of at most PAIR_SAMPLE)."""
    n = len(vectors)
    if n < 2:
        return {"mean_pairwise_distance": 0.0, "near_duplicate_pair_share": 0.0, "rows": n}
    total = vectors.sum(axis=0)
    mean_cosine = (float(total @ total) - n) / (n * (n - 1))
    sample = vectors[np.linspace(0, n - 1, min(n, PAIR_SAMPLE)).astype(int)]
    m, close = len(sample), 0
    for start in range(0, m, 1000):
        block = sample[start : start + 1000] @ sample.T
        for offset in range(len(block)):
            block[offset, : start + offset + 1] = -1.0  # each unordered pair once
        close += int((block >= NEAR_DUPLICATE_COSINE).sum())
    return {
        "mean_pairwise_distance": 1.0 - mean_cosine,
        "near_duplicate_pair_share": close / (m * (m - 1) / 2),
        "rows": n,
    }


def diversity_section(
    examples: list[Example],
    vectors: np.ndarray,
    existing: tuple[list[Example], np.ndarray] | None = None,
) -> DiversitySection:
    texts = [" ".join(answers(e)) for e in examples]
    before = None
    if existing is not None:
        old, old_vectors = existing
        old_texts = [" ".join(answers(e)) for e in old]
        before = DiversityFigures.model_validate(
            {
                **dispersion(old_vectors),
                "distinct_1": distinct_n(old_texts, 1),
                "distinct_2": distinct_n(old_texts, 2),
            }
        )
    return DiversitySection.model_validate(
        {
            **dispersion(vectors),
            "distinct_1": distinct_n(texts, 1),
            "distinct_2": distinct_n(texts, 2),
            "existing": before,
        }
    )


def as_candidates(examples: list[Example]) -> list[Candidate]:
    return [
        Candidate(
            id=f"row-{i}",
            kind=CandidateKind.SFT if isinstance(e, SFTExample) else CandidateKind.PREFERENCE,
            payload=e,
            run_id="eval",
        )
        for i, e in enumerate(examples)
    ]


def contamination_section(
    candidates: list[Candidate], eval_sets: dict[str, ContaminationFilter]
) -> dict[str, ContaminationSet]:
    section: dict[str, ContaminationSet] = {}
    for name, check in eval_sets.items():
        matches = []
        for index, score in enumerate(check.score(candidates)):
            if not score.passed:
                matches.append({"row": index, "reason": score.reason, **score.evidence})
        section[name] = ContaminationSet(
            rows_matched=len(matches),
            share=len(matches) / len(candidates) if candidates else 0.0,
            matches=matches[:100],
        )
    return section


def safety_section(candidates: list[Candidate]) -> SafetySection:
    pii_kinds: Counter[str] = Counter()
    pii_rows = []
    for index, score in enumerate(PIIFilter().score(candidates)):
        if not score.passed:
            pii_rows.append(index)
            pii_kinds.update({str(f["kind"]) for f in score.evidence.get("findings", [])})
    unsafe: Counter[str] = Counter()
    unsafe_rows = []
    for index, score in enumerate(SafetyFilter().score(candidates)):
        if not score.passed:
            unsafe_rows.append(index)
            unsafe.update(c.split(" (")[0] for c in score.evidence.get("categories", []))
    return SafetySection(
        pii_rows=len(pii_rows),
        pii_kinds=dict(sorted(pii_kinds.items())),
        pii_row_indexes=pii_rows[:100],
        unsafe_rows=len(unsafe_rows),
        unsafe_categories=dict(sorted(unsafe.items())),
        unsafe_row_indexes=unsafe_rows[:100],
        rows=len(candidates),
    )


def near_identical_pairs(examples: list[Example]) -> list[int]:
    """Rows whose chosen and rejected answers are nearly the same text: no signal for DPO."""
    rows = []
    for index, example in enumerate(examples):
        if isinstance(example, PreferenceExample):
            chosen = shingles(" ".join(m.text for m in example.chosen), 3)
            rejected = shingles(" ".join(m.text for m in example.rejected), 3)
            if jaccard(chosen, rejected) >= NEAR_IDENTICAL_PAIR:
                rows.append(index)
    return rows


def judge_section(
    judged: list[tuple[int, float, bool]], human_rows: set[int], sample: int, *, model: str
) -> PreferenceJudge:
    """``judged``: (row, share of the two orders preferring chosen, position-biased)."""
    usable = [(row, wins, biased) for row, wins, biased in judged if wins >= 0]
    decided = [(row, wins) for row, wins, _ in usable if wins != 0.5]
    human = [(row, wins) for row, wins in decided if row in human_rows]
    return PreferenceJudge(
        model=model,
        sample=sample,
        judged=len(usable),
        no_verdict=len(judged) - len(usable),
        win_rate=statistics.fmean(w for _, w, _ in usable) if usable else None,
        position_bias_share=(sum(b for *_, b in usable) / len(usable)) if usable else None,
        agreement_with_humans=(
            sum(1 for _, w in human if w == 1.0) / len(human) if human else None
        ),
        human_reviewed_judged=len(human),
    )


def item_matrix(embedder: Embedder, examples: list[Example]) -> np.ndarray:
    """One unit vector per row: the mean of its turns' embeddings (each turn embedded once, and
    the contamination check reuses the same turn vectors from the embedder's memory)."""
    return item_vectors(embedder, [[m.text for m in e.turns()] for e in examples])
