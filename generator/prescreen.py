"""A learned pre-screen: a model of a run's own human decisions that orders the queue and may,
where it has earned it, decide items itself.

The model is scikit-learn's logistic regression over features every item has:

- the item's embedding (the prompt, and the answer; for a pair, chosen minus rejected, so that a
  swap flips the sign), and the answers' lengths;
- its filter scores (each filter's value and pass);
- the judge's verdict (``generator/calibration.judge_label``);
- its gap, and the model that wrote it (for a pair written by two models, ``"A vs B"``: +1 for
  the chosen answer's model, -1 for the rejected one's).

It predicts the humans' majority label (accept / reject, and swap for pairs). Two uses:

1. **Ordering.** On the scoring's scale: the gap's deficit first (the largest gaps first), then
   within a gap the chance an item is useful (accepted in either order), plus a share for the
   items the model is least sure of, so that it keeps learning where it is weakest.
2. **Auto-decisions** (off unless asked for). The confidence threshold is chosen on
   cross-validated predictions over the decisions it learns from (never on the decisions it is
   then measured on): the lowest threshold at which its agreement with the humans' majority is
   at least the humans' own (one reviewer against the majority of the others,
   ``generator/calibration.py``). No such threshold: no auto-decisions, with the reason.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from generator.calibration import judge_label
from generator.embeddings import Embedder
from generator.schema import Candidate, Message, PreferenceExample, SFTExample

USEFUL = ("accept", "swap")
MIN_AUTO_ITEMS = 30  # the fewest cross-validated predictions a threshold may rest on
# The fewest human decisions in an item's gap before the model may decide it: on LLMFAO, a model
# whose cross-validated agreement was 70% agreed 48% with the humans on prompts it had not seen.
MIN_GAP_DECISIONS = 30
EXPLORE = 0.25  # the weight of uncertainty in the order, beside expected usefulness
FOLDS = 5


@dataclass
class Features:
    """The feature matrix of some items and the names of its non-embedding columns."""

    ids: list[str]
    matrix: np.ndarray


@dataclass
class FeatureSpace:
    """The columns, fixed when the model is fitted, so new items are described the same way."""

    filters: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, candidates: Sequence[Candidate]) -> FeatureSpace:
        return cls(
            filters=sorted({n for c in candidates for n in c.scores if n != "judge"}),
            gaps=sorted({c.gap_id for c in candidates}),
            models=sorted({m for c in candidates for m in _models(c)[0] + _models(c)[1]}),
        )

    def describe(self, candidates: Sequence[Candidate], embedder: Embedder) -> Features:
        texts = [_texts(c) for c in candidates]
        prompts = embedder.embed([t[0] for t in texts])
        firsts = embedder.embed([t[1] for t in texts])
        seconds = embedder.embed([t[2] for t in texts])
        rows = []
        for index, candidate in enumerate(candidates):
            pair = isinstance(_item(candidate), PreferenceExample)
            answer = firsts[index] - seconds[index] if pair else firsts[index]
            rows.append(
                np.concatenate([prompts[index], answer, self._facts(candidate, texts[index], pair)])
            )
        return Features([c.id for c in candidates], np.vstack(rows).astype(np.float32))

    def _facts(self, candidate: Candidate, texts: tuple[str, str, str], pair: bool) -> np.ndarray:
        first, second = len(texts[1]), len(texts[2])
        lengths = [math.log1p(first), math.log1p(second), float(first == 0), float(second == 0)]
        scores = []
        for name in self.filters:
            score = candidate.scores.get(name)
            scores += [score.value, float(score.passed), 1.0] if score else [0.0, 0.0, 0.0]
        judge = candidate.scores.get("judge")
        label = judge_label(judge.value, judge.passed, judge.evidence, pair=pair) if judge else None
        verdict = [float(label == name) for name in ("accept", "swap", "reject")]
        gaps = [float(candidate.gap_id == gap) for gap in self.gaps]
        chosen, rejected = _models(candidate)
        models = [float(m in chosen) - float(m in rejected) for m in self.models]
        return np.array([*lengths, *scores, *verdict, *gaps, *models], dtype=np.float32)


@dataclass
class PreScreen:
    """A fitted pre-screen and what is known of how far it can be trusted."""

    space: FeatureSpace
    classifier: object
    labels: list[str]
    trained_on: int
    yardstick: float | None  # the humans' own agreement
    threshold: float | None  # None: auto-decisions are off (``off_reason`` says why)
    cross_validated_agreement: float | None  # above the threshold, out of fold
    cross_validated_share: float  # of the training items above the threshold
    off_reason: str = ""
    gap_decisions: dict[str, int] = field(default_factory=dict)  # what it learnt from, per gap

    def may_decide(self, candidate: Candidate) -> bool:
        """Only items of a gap it has learnt enough human decisions of."""
        return self.gap_decisions.get(candidate.gap_id, 0) >= MIN_GAP_DECISIONS

    def probabilities(self, features: Features) -> np.ndarray:
        return self.classifier.predict_proba(features.matrix)  # type: ignore[attr-defined,no-any-return]

    def priorities(self, features: Features, deficits: Sequence[float]) -> np.ndarray:
        """Queue priorities on the scoring's own scale (``FilterPipeline.priority``): the gap's
        deficit, so the largest gaps come first, then within a gap [0, 0.99): the chance the
        item is useful (accepted in either order), plus the model's uncertainty (1 - its
        confidence) at ``EXPLORE``'s weight, so it keeps learning where it is weakest."""
        probabilities = self.probabilities(features)
        useful = sum(
            probabilities[:, self.labels.index(label)] for label in USEFUL if label in self.labels
        )
        uncertain = 1.0 - probabilities.max(axis=1)
        value = (np.asarray(useful) + EXPLORE * uncertain) / (1.0 + EXPLORE) * 0.99
        priorities: np.ndarray = np.asarray(deficits, dtype=float) + value
        return priorities

    def decide(self, features: Features) -> list[tuple[str, float]]:
        """Each item's most likely label and the model's confidence in it."""
        probabilities = self.probabilities(features)
        best = probabilities.argmax(axis=1)
        return [
            (self.labels[int(b)], float(p[b])) for b, p in zip(best, probabilities, strict=True)
        ]


def fit(
    candidates: Sequence[Candidate],
    labels: Sequence[str],
    embedder: Embedder,
    yardstick: float | None,
    *,
    seed: int = 0,
    for_ordering_only: bool = False,
) -> PreScreen:
    """Fit on items with the humans' majority label; choose the auto-decision threshold on
    cross-validated predictions (not made ``for_ordering_only``: then auto-decisions are off)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    space = FeatureSpace.of(candidates)
    features = space.describe(candidates, embedder)
    target = np.array(labels)
    classes = sorted(set(labels))
    folds = min(FOLDS, min(int((target == c).sum()) for c in classes)) if len(classes) > 1 else 0
    if folds < 2:
        raise ValueError("the pre-screen needs two labels with two decisions each, at least")
    if for_ordering_only:
        threshold, agreement, share, reason = None, None, 0.0, "fitted to order the queue only"
    else:
        split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        held_out = cross_val_predict(
            _classifier(seed), features.matrix, target, cv=split, method="predict_proba"
        )
        threshold, agreement, share, reason = choose_threshold(
            [classes[int(i)] for i in held_out.argmax(axis=1)],
            held_out.max(axis=1).tolist(),
            list(labels),
            yardstick,
        )
    classifier = _classifier(seed)
    classifier.fit(features.matrix, target)
    return PreScreen(
        space=space,
        classifier=classifier,
        labels=[str(c) for c in classifier.classes_],
        trained_on=len(labels),
        yardstick=yardstick,
        threshold=threshold,
        cross_validated_agreement=agreement,
        cross_validated_share=share,
        off_reason=reason,
        gap_decisions=dict(Counter(c.gap_id for c in candidates)),
    )


def choose_threshold(
    predicted: Sequence[str],
    confidence: Sequence[float],
    truth: Sequence[str],
    yardstick: float | None,
) -> tuple[float | None, float | None, float, str]:
    """The lowest confidence at which the predictions at or above it agree with the humans at
    least as well as the humans agree with each other: (threshold, agreement, share, reason)."""
    if yardstick is None:
        return None, None, 0.0, "no human yardstick yet: no item had two votes"
    order = np.argsort(-np.asarray(confidence), kind="stable")
    right = np.cumsum([predicted[i] == truth[i] for i in order])
    best: tuple[float | None, float | None, float] = (None, None, 0.0)
    for count in range(MIN_AUTO_ITEMS, len(order) + 1):
        agreement = right[count - 1] / count
        threshold = confidence[order[count - 1]]
        if count < len(order) and confidence[order[count]] == threshold:
            continue  # a threshold takes every item at its confidence, not part of them
        if agreement >= yardstick:
            best = (float(threshold), float(agreement), count / len(order))
    if best[0] is None:
        return (
            None,
            None,
            0.0,
            f"no confidence threshold reaches the humans' own agreement ({yardstick:.0%}) on "
            f"{MIN_AUTO_ITEMS} or more held-out decisions: auto-decisions are off",
        )
    return best[0], best[1], best[2], ""


def _classifier(seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(), LogisticRegression(C=0.05, max_iter=2000, random_state=seed)
    )


def _item(candidate: Candidate) -> SFTExample | PreferenceExample | None:
    """The item as proposed, not as a reviewer's edit or swap left it: the labels say what
    reviewers made of the proposal."""
    return candidate.payload


def _texts(candidate: Candidate) -> tuple[str, str, str]:
    """(prompt, first answer, second answer): for a pair chosen and rejected; for SFT the
    answer and ''."""
    item = _item(candidate)
    if isinstance(item, PreferenceExample):
        return item.prompt_text(), _joined(item.chosen), _joined(item.rejected)
    if isinstance(item, SFTExample):
        users = [m.text for m in item.messages if m.role == "user"]
        answers = [m for m in item.messages if m.role == "assistant"]
        return "\n".join(users), _joined(answers), ""
    return "", candidate.raw or "", ""


def _joined(messages: Sequence[Message]) -> str:
    return "\n\n".join(m.text for m in messages)


def _models(candidate: Candidate) -> tuple[list[str], list[str]]:
    """(the chosen answer's models, the rejected answer's): "A vs B" names both sides."""
    model = candidate.provenance.model or ""
    if not model:
        return [], []
    if " vs " in model and isinstance(_item(candidate), PreferenceExample):
        chosen, _, rejected = model.partition(" vs ")
        return [chosen], [rejected]
    return [model], []
