"""Eval contamination: candidates that contain (or paraphrase) an item of an eval set.

Long n-gram overlap, 13 words by default as in the GPT-3 and Llama 2 reports: any shared 13-gram
flags the candidate. Embedding similarity catches paraphrases and light edits that break every
13-gram: a candidate whose nearest eval item reaches ``similarity`` is flagged too. The evidence
is the matched eval item's id with the overlap or similarity, never the shared words: evidence is
exported with the item (provenance.jsonl), and eval text must not leave through it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from generator.cascade import CascadeIndex
from generator.dataset_reader import RowError, iter_records
from generator.embeddings import Embedder, max_similarity
from generator.errors import DataFileError, InvalidRowError
from generator.filters.base import full_text
from generator.filters.text import words
from generator.schema import Candidate, Score


def ngrams(text: str, size: int) -> set[tuple[str, ...]]:
    tokens = words(text)
    return {tuple(tokens[i : i + size]) for i in range(len(tokens) - size + 1)}


class ContaminationFilter:
    name = "contamination"
    hard = True
    cost = 4

    def __init__(
        self,
        eval_items: Iterable[tuple[str, str]],
        *,
        ngram: int = 13,
        embedder: Embedder | None = None,
        similarity: float = 0.75,
        min_coverage: float = 0.05,
    ) -> None:
        """``eval_items``: (eval item id, text), e.g. HumanEval task ids and prompts."""
        self.size = ngram
        self.similarity = similarity
        self.min_coverage = min_coverage
        self.index: dict[tuple[str, ...], str] = {}
        self.grams_per_item: dict[str, int] = {}
        self.ids: list[str] = []
        texts = []
        for item_id, text in eval_items:
            grams = ngrams(text, ngram)
            self.grams_per_item[item_id] = max(len(grams), 1)
            for gram in grams:
                self.index.setdefault(gram, item_id)
            self.ids.append(item_id)
            texts.append(text)
        self.embedder = embedder
        self.vectors: np.ndarray | None = None
        self.cascade: CascadeIndex | None = None
        if embedder is not None and texts and embedder.cascade:
            self.cascade = CascadeIndex(embedder)  # an eval set's items: static tier only
            self.cascade.add([(text,) for text in texts])
        elif embedder is not None and texts:
            self.vectors = embedder.embed(texts)

    @property
    def embedded(self) -> bool:
        """Whether paraphrases are looked for (an embedder and eval items)."""
        return self.vectors is not None or self.cascade is not None

    def _nearest(self, candidates: list[Candidate]) -> tuple[np.ndarray, np.ndarray]:
        """Per candidate, its best turn's cosine to the nearest eval item (turns are embedded
        one by one, so a planted item is not diluted by the text around it)."""
        best = np.zeros(len(candidates), dtype=np.float32)
        where = np.zeros(len(candidates), dtype=np.int64)
        if not self.embedded or self.embedder is None or not candidates:
            return best, where
        owners, turns = [], []
        for index, candidate in enumerate(candidates):
            parts = (
                [m.text for m in candidate.payload.turns()]
                if candidate.payload
                else [full_text(candidate)]
            )
            owners += [index] * len(parts)
            turns += parts
        vectors = self.embedder.embed(turns)
        if self.cascade is not None:
            keys, sims = self.cascade.search([(turn,) for turn in turns], vectors, 1)
            scores, nearest = sims[:, 0], np.maximum(keys[:, 0], 0)
        else:
            assert self.vectors is not None  # one of the two is set (checked above)
            scores, nearest = max_similarity(vectors, self.vectors)
        for owner, score, item in zip(owners, scores, nearest, strict=True):
            if score > best[owner]:
                best[owner], where[owner] = score, item
        return best, where

    def score(self, candidates: list[Candidate]) -> list[Score]:
        texts = [full_text(c) for c in candidates]
        best, where = self._nearest(candidates)
        scores = []
        for index, text in enumerate(texts):
            shared = [gram for gram in ngrams(text, self.size) if gram in self.index]
            by_item = Counter(self.index[gram] for gram in shared)
            item, count = by_item.most_common(1)[0] if by_item else ("", 0)
            coverage = count / self.grams_per_item[item] if count else 0.0
            if count and coverage >= self.min_coverage:
                scores.append(
                    Score(
                        filter=self.name,
                        value=float(count),
                        passed=False,
                        reason=f"shares {count} {self.size}-grams ({coverage:.0%}) with eval "
                        f"item {item}",
                        evidence={
                            "eval_item": item,
                            "ngrams": count,
                            "coverage": round(coverage, 4),
                        },
                    )
                )
            elif self.embedded and best[index] >= self.similarity:
                item = self.ids[int(where[index])]
                scores.append(
                    Score(
                        filter=self.name,
                        value=round(float(best[index]), 4),
                        passed=False,
                        reason=f"paraphrases eval item {item} (cosine {best[index]:.2f})",
                        evidence={"eval_item": item, "similarity": round(float(best[index]), 4)},
                    )
                )
            else:
                scores.append(
                    Score(
                        filter=self.name,
                        value=round(float(best[index]), 4),
                        passed=True,
                        reason="no eval overlap",
                    )
                )
        return scores


def load_eval_items(path: str | Path) -> list[tuple[str, str]]:
    """(id, text) per row of an eval file: ``task_id``/``id``/``name`` (else FILE:LINE) and the
    prompt (``prompt``/``question``/``instruction``/``text``) with any reference solution, since a
    leaked solution contaminates as much as a leaked question."""
    items = []
    for line, record in iter_records(Path(path)):
        if isinstance(record, RowError) or not isinstance(record, dict):
            raise InvalidRowError(
                str(path),
                line,
                str(record) if isinstance(record, RowError) else "expected a JSON object",
            )
        item_id = next(
            (str(record[k]) for k in ("task_id", "id", "name") if record.get(k)),
            f"{Path(path).name}:{line}",
        )
        parts = [
            str(record[k])
            for k in ("prompt", "question", "instruction", "text", "canonical_solution", "answer")
            if isinstance(record.get(k), str)
        ]
        if not parts:
            raise InvalidRowError(str(path), line, "no prompt/question/instruction/text field")
        items.append((item_id, "\n".join(parts)))
    if not items:
        raise DataFileError(f"{path}: no eval items")
    return items
