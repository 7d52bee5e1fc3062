"""Coverage: what the existing data leaves thin, against a taxonomy and/or a reference set.

Taxonomy coverage: each existing example goes to its nearest cell (cosine between the example's
prompt and the mean of the cell's description and example prompts); below ``threshold`` it is
unassigned. Have vs target per cell gives the deficit.

Reference coverage: each reference prompt's nearest existing example; below ``threshold`` the
prompt is uncovered. The reference set is clustered into topics (k-means, k chosen by silhouette
within bounds); each topic's uncovered prompts are a gap, named by the topic's majority label
and described by its most central uncovered prompts, with a target proportional to their number.

Everything is embedded once (``Embedder`` caches by content hash), and ``compare`` counts newly
accepted items into the same gaps for a before/after view.
"""

from __future__ import annotations

import hashlib
import math
import textwrap
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from generator.cascade import BORDERLINE_BAND, CascadeIndex, Projection, best_rows
from generator.dataset_reader import RowError, convert, detect_format, iter_records
from generator.embeddings import Embedder, max_similarity
from generator.errors import DataFileError, InvalidRowError
from generator.schema import Gap, Identifier, PreferenceExample, SFTExample, utcnow
from generator.yaml_file import read_yaml, validation_message

DEFAULT_TAXONOMY_THRESHOLD = 0.25
DEFAULT_REFERENCE_THRESHOLD = 0.5
# Up to this many rows, coverage embeds every row in full even in the cascade tier: exact labels
# for at most about 40 s of MiniLM on two cores (T0-length prompts), where the cascade would
# save little and mark some prompts borderline.
EXACT_COVERAGE_ROWS = 2_000
# The most rows the cascade confirms around one gap's centroid to count its ``have``.
NEAR_CAP = 2_048


class TaxonomyCell(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Identifier
    description: str = Field(min_length=3)
    examples: list[str] = Field(default_factory=list)
    target: int | None = Field(default=None, ge=0)
    share: float | None = Field(default=None, gt=0, le=1)
    labels: dict[str, str] = Field(
        default_factory=dict, description="Free dimensions: domain, skill, language, safety..."
    )
    code: bool = Field(
        default=False,
        description="Its answers are code: the code_execution filter runs their Python blocks "
        "(the solution and the tests it states) in the sandbox, whatever the run's filters say.",
    )

    @model_validator(mode="after")
    def _one_target(self) -> TaxonomyCell:
        if self.target is not None and self.share is not None:
            raise ValueError("give either target (a count) or share (a fraction), not both")
        return self


class Taxonomy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cells: list[TaxonomyCell] = Field(min_length=1)
    threshold: float = Field(default=DEFAULT_TAXONOMY_THRESHOLD, ge=-1, le=1)

    @model_validator(mode="after")
    def _consistent(self) -> Taxonomy:
        ids = [c.id for c in self.cells]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"cell ids must be unique; repeated: {', '.join(repeated)}")
        shares = sum(c.share or 0 for c in self.cells)
        if shares > 1.0 + 1e-9:
            raise ValueError(f"the cells' shares add up to {shares:.2f}, more than 1")
        return self


def load_taxonomy(path: str | Path) -> Taxonomy:
    """A taxonomy from YAML; any problem is one error naming the file and the key."""
    file = Path(path)
    data = read_yaml(file, DataFileError)
    if not isinstance(data, dict):
        raise DataFileError(f"{path}: expected a mapping with a 'cells' list")
    try:
        return Taxonomy.model_validate(data)
    except ValidationError as exc:
        where = "README.md's 'Coverage gaps'"
        raise DataFileError(validation_message(file, exc, Taxonomy, keys_listed_by=where)) from None


class ReferencePrompt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    label: str | None = None
    line: int


def _reference_text(record: dict[str, Any]) -> str:
    for field in ("prompt", "text", "question"):
        if isinstance(record.get(field), str) and record[field].strip():
            return str(record[field])
    if isinstance(record.get("instruction"), str):
        extra = record.get("input") or ""
        return (
            f"{record['instruction']}\n\n{extra}" if str(extra).strip() else record["instruction"]
        )
    row_format = detect_format(record)
    example = convert(record, row_format)
    return example.prompt_text()


def file_sha256(path: Path) -> str:
    """The file's sha256, read in 1 MiB blocks (a dataset can be larger than memory wants)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def short_label(text: str, width: int = 60) -> str:
    """A gap's label from its central prompt (no label field): shortened at a word, since a
    label is read, not parsed; a first word longer than the label is cut, marked with '…'."""
    flat = " ".join(text.split())
    short = textwrap.shorten(flat, width, placeholder=" …")
    return short if short != "…" else flat[: width - 1] + "…"


def load_reference(path: str | Path, label_field: str | None = None) -> list[ReferencePrompt]:
    """Reference prompts: ``prompt``/``text``/``question``/``instruction`` fields, or any dataset
    format the importers read (its last user turn). Labels from ``label_field`` or ``label``."""
    prompts = []
    for line, record in iter_records(Path(path)):
        try:
            if isinstance(record, RowError):
                raise record
            if not isinstance(record, dict):
                raise RowError(f"expected a JSON object, got {type(record).__name__}")
            text = _reference_text(record)
        except (RowError, ValidationError) as exc:
            reason = str(exc).splitlines()[0]
            raise InvalidRowError(str(path), line, f"no reference prompt: {reason}") from exc
        label = record.get(label_field or "label")
        prompts.append(ReferencePrompt(text=text, label=str(label) if label else None, line=line))
    if not prompts:
        raise DataFileError(f"{path}: no reference prompts")
    return prompts


class ReferenceCoverage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line: int
    text: str
    label: str | None
    similarity: float
    covered: bool
    nearest: str
    gap_id: str | None = None
    borderline: bool = Field(
        default=False,
        description="Uncovered by the rows the cascade confirmed, but within "
        "BORDERLINE_BAND of the threshold: a row it did not confirm may cover it (the full tier "
        "decides such a prompt exactly).",
    )


class Assignment(BaseModel):
    """Where one existing example went in the taxonomy, and how sure that is."""

    model_config = ConfigDict(extra="forbid")

    row: int = Field(description="0-based position of the example in the dataset.")
    cell: str | None = Field(description="The nearest cell, or None below the threshold.")
    nearest_cell: str
    confidence: float = Field(description="Cosine similarity to the nearest cell.")


class GapReport(BaseModel):
    """The measured gaps of a dataset: stored with the run, printed, and written as JSON."""

    model_config = ConfigDict(extra="forbid")

    run_id: Identifier
    created_at: datetime = Field(default_factory=utcnow)
    data: str
    data_rows: int
    # The measured file's content hash: an export can then tell whether the file it merges is
    # this dataset (None: measured from rows with no file, or a report from before the field).
    data_sha256: str | None = None
    taxonomy: str | None = None
    reference: str | None = None
    embedding_model: str
    taxonomy_threshold: float | None = None
    reference_threshold: float | None = None
    gaps: list[Gap]
    unassigned: int = 0
    assignments: list[Assignment] = Field(default_factory=list)
    reference_coverage: list[ReferenceCoverage] = Field(default_factory=list)
    # Per gap: its centroid (taxonomy cells count new items by it; the off-topic filter uses
    # every gap's) and the similarity that counts.
    centroids: dict[str, list[float]] = Field(default_factory=dict)
    thresholds: dict[str, float] = Field(default_factory=dict)
    kind: str = "taxonomy"

    def gap(self, gap_id: str) -> Gap:
        return next(g for g in self.gaps if g.id == gap_id)

    @property
    def covered_share(self) -> float | None:
        if not self.reference_coverage:
            return None
        return sum(r.covered for r in self.reference_coverage) / len(self.reference_coverage)

    def to_json(self) -> dict[str, Any]:
        """The report as written by ``--json``: per gap its deficit too; no vectors."""
        data = self.model_dump(mode="json", exclude={"centroids", "thresholds", "kind"})
        data["gaps"] = [{**g.model_dump(mode="json"), "deficit": g.deficit} for g in self.gaps]
        data["covered_share"] = self.covered_share
        return data


def prompt_texts(examples: Sequence[SFTExample | PreferenceExample]) -> list[str]:
    """What coverage is measured on: the request each example answers (its last user turn)."""
    return [example.prompt_text() for example in examples]


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    normalised: np.ndarray = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
    return normalised


def _given_target(cell: TaxonomyCell, total: int) -> int | None:
    if cell.target is not None:
        return cell.target
    return math.ceil(cell.share * total) if cell.share is not None else None


def cell_targets(cells: Sequence[TaxonomyCell], total: int) -> list[int]:
    """Each cell's target for a dataset of ``total`` examples: its ``target`` count, or its
    ``share`` of the dataset (rounded up), or, for a cell with neither, an even part of what the
    counts and shares leave (nothing when they take it all). The even parts add up to exactly
    what is left, so cells without a target never push the total past the dataset."""
    given = [_given_target(cell, total) for cell in cells]
    free = given.count(None)
    left = max(total - sum(g for g in given if g is not None), 0)
    extra = iter(range(free))  # the first (left mod free) even parts take one more
    return [g if g is not None else left // free + (next(extra) < left % free) for g in given]


class ExistingRows:
    """The existing rows as coverage reads them. Full tier: every row's full-model vector.
    Cascade tier: every row's static vector; the full model embeds only the rows a shortlist
    puts near a reference prompt or a gap's centroid (``generator.cascade.best_rows``), and
    every similarity reported is the full model's."""

    def __init__(self, texts: list[str], embedder: Embedder, *, cascade: bool = False) -> None:
        self.texts = texts
        self.embedder = embedder
        self.cascade: CascadeIndex | None = None
        self.projection: Projection | None = None  # fitted by the reference prompts' search
        self._confirmed_all = False
        self._full: np.ndarray | None = None
        if cascade and embedder.cascade and texts:
            self.cascade = CascadeIndex(embedder)
            self.cascade.add([(text,) for text in texts])

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def searched(self) -> bool:
        """Whether the rows were searched by the cascade, short of embedding every row in full
        (a small dataset's search may have confirmed every row: then it was exact)."""
        return self.projection is not None and not self._confirmed_all

    @property
    def full(self) -> np.ndarray:
        """Every row's full-model vector (what a taxonomy's assignment of every row needs)."""
        if self._full is None:
            self._full = self.embedder.embed(self.texts)
        return self._full

    def nearest(
        self, vectors: np.ndarray, texts: Sequence[str], threshold: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per query (its full vector and text), the best cosine to a row and that row. The
        cascade searches for what coverage asks, whether any row reaches ``threshold``."""
        if self.cascade is None:
            return max_similarity(vectors, self.full)
        static = self.cascade.static_of([(text,) for text in texts])
        search = best_rows(self.cascade, static, vectors, threshold)
        self.projection = search.projection
        self._confirmed_all = search.confirmed >= len(self.texts)
        return search.similarities, np.maximum(search.keys, 0)

    def near(self, vector: np.ndarray, threshold: float) -> tuple[int, int, float]:
        """How many rows are at least ``threshold`` from ``vector`` (a centroid), and the
        closest row with its cosine. Cascade: the shortlist around it, drawn by the projection
        the reference prompts' search fitted, grows until its far end falls below the
        threshold or it reaches ``NEAR_CAP`` rows; the count is then of the rows it confirmed,
        so it is at least what it says (an uncovered topic's centroid has few rows near it)."""
        if self.cascade is None or self.projection is None:
            scores = self.full @ vector
            closest = int(scores.argmax())
            return int((scores >= threshold).sum()), closest, float(scores[closest])
        size = 32  # an uncovered cluster's centroid has few rows near it; grown when it has more
        while True:
            keys, sims = self.cascade.search_projected(self.projection, vector[None], size, size)
            found = keys[0] >= 0
            count = int((sims[0][found] >= threshold).sum())
            done = count < found.sum() or found.sum() < size
            if done or size >= min(len(self.texts), NEAR_CAP):
                return count, int(keys[0, 0]), float(sims[0, 0])
            size = min(size * 4, NEAR_CAP)


def _taxonomy_gaps(
    run_id: str, taxonomy: Taxonomy, rows: ExistingRows, texts: list[str], embedder: Embedder
) -> tuple[list[Gap], list[Assignment], dict[str, list[float]]]:
    # Every row is assigned to a cell or to none: every row needs the full model's vector.
    existing = rows.full
    cell_texts = [[cell.description, *cell.examples] for cell in taxonomy.cells]
    flat = embedder.embed([t for texts_ in cell_texts for t in texts_])
    centroids, start = [], 0
    for texts_ in cell_texts:
        centroids.append(flat[start : start + len(texts_)].mean(axis=0))
        start += len(texts_)
    cells = _normalise(np.stack(centroids))
    scores = existing @ cells.T if len(existing) else np.zeros((0, len(cells)), dtype=np.float32)
    nearest = scores.argmax(axis=1) if len(existing) else np.zeros(0, dtype=np.int64)
    assigned = scores.max(axis=1) >= taxonomy.threshold if len(existing) else np.zeros(0, bool)
    targets = cell_targets(taxonomy.cells, len(texts))
    gaps = []
    for index, cell in enumerate(taxonomy.cells):
        members = np.flatnonzero(assigned & (nearest == index))
        members = members[np.argsort(-scores[members, index])]
        target = targets[index]
        seeds = [texts[i] for i in members[:20]] or list(cell.examples)
        closest = int(scores[:, index].argmax()) if len(existing) else -1
        nearest_similarity = round(float(scores[closest, index]), 4) if closest >= 0 else None
        gaps.append(
            Gap(
                id=cell.id,
                run_id=run_id,
                kind="taxonomy",
                label=cell.id,
                description=cell.description,
                have=len(members),
                target=target,
                examples=seeds,
                nearest_existing=texts[closest] if closest >= 0 else "",
                nearest_similarity=nearest_similarity,
                code=cell.code,
            )
        )
    ids = [cell.id for cell in taxonomy.cells]
    assignments = [
        Assignment(
            row=row,
            cell=ids[nearest[row]] if assigned[row] else None,
            nearest_cell=ids[nearest[row]],
            confidence=round(float(scores[row, nearest[row]]), 4),
        )
        for row in range(len(texts))
    ]
    vectors = {cell.id: cells[i].tolist() for i, cell in enumerate(taxonomy.cells)}
    return gaps, assignments, vectors


def _choose_k(points: np.ndarray, low: int, high: int) -> np.ndarray:
    """Each point's cluster: k-means with k in ``low..high`` chosen by silhouette (cosine);
    every point in one cluster when there are too few distinct points to compare."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    distinct = len(np.unique(points, axis=0))
    # A fixed sample past 3,000 prompts: the score is quadratic in them.
    sample = np.arange(len(points))
    if len(points) > 3_000:
        sample = np.sort(np.random.default_rng(0).choice(len(points), 3_000, replace=False))
    best_labels, best_score = np.zeros(len(points), dtype=np.int64), -2.0
    for k in range(low, min(high, distinct, len(points) - 1) + 1):
        labels = KMeans(n_clusters=k, n_init=5, random_state=0).fit_predict(points)
        if len(np.unique(labels[sample])) < 2:  # silhouette needs two clusters to compare
            continue
        score = silhouette_score(points[sample], labels[sample], metric="cosine")
        if score > best_score:
            best_labels, best_score = labels.astype(np.int64), float(score)
    return best_labels


def reference_topics(references: np.ndarray, k_bounds: tuple[int, int]) -> np.ndarray:
    """Each reference prompt's topic: k-means over the whole reference set (k by silhouette).

    The whole set, not only its uncovered prompts: the topics then depend on the reference set
    alone, so measuring again after the data changed, or with the other embedding tier, gives
    the same gaps, each with its uncovered prompts. Clustering only the uncovered prompts made
    the gaps unstable: on 10,000 T0 rows, leaving out 2 of the 227 uncovered prompts changed
    the number of gaps from 9 to 10, 11 or 12 in 6 of 8 tries (and every gap's members)."""
    return _choose_k(references, *k_bounds)


def _topic_label(
    reference: list[ReferencePrompt], references: np.ndarray, members: np.ndarray
) -> str:
    """A topic's majority label, or without labels its most central prompt, shortened."""
    majority = Counter(reference[i].label for i in members if reference[i].label).most_common(1)
    if majority:
        return str(majority[0][0])
    centroid = _normalise(references[members].mean(axis=0, keepdims=True))[0]
    return short_label(reference[members[int(np.argmax(references[members] @ centroid))]].text)


def _reference_gaps(
    run_id: str,
    reference: list[ReferencePrompt],
    references: np.ndarray,
    existing: ExistingRows,
    texts: list[str],
    *,
    threshold: float,
    per_prompt: float,
    k_bounds: tuple[int, int],
) -> tuple[list[Gap], list[ReferenceCoverage], dict[str, list[float]]]:
    if len(existing):
        best, where = existing.nearest(references, [p.text for p in reference], threshold)
    else:
        best, where = np.full(len(reference), -1.0, np.float32), np.zeros(len(reference), int)
    coverage = [
        ReferenceCoverage(
            line=prompt.line,
            text=prompt.text,
            label=prompt.label,
            similarity=round(float(best[i]), 4),
            covered=bool(best[i] >= threshold),
            nearest=texts[where[i]] if len(existing) else "",
            borderline=existing.searched and threshold - BORDERLINE_BAND <= best[i] < threshold,
        )
        for i, prompt in enumerate(reference)
    ]
    uncovered = best < threshold
    if not uncovered.any():
        return [], coverage, {}
    topics = reference_topics(references, k_bounds)
    clusters = [np.flatnonzero(uncovered & (topics == t)) for t in range(int(topics.max()) + 1)]
    # largest first; a tie goes to the topic k-means numbered first (the same every time).
    # The gap's id is its topic's number, so ids need not follow this order.
    order = sorted((t for t, m in enumerate(clusters) if len(m)), key=lambda t: -len(clusters[t]))
    gaps, centroids = [], {}
    for topic in order:
        members = clusters[topic]
        centroid = _normalise(references[members].mean(axis=0, keepdims=True))[0]
        central = members[np.argsort(-(references[members] @ centroid))]
        # Its id and label come from the whole topic, not from which of its prompts are
        # uncovered: the same gap keeps both when it is measured again (rounds match on them).
        gap_id = f"ref-{topic + 1}"
        label = _topic_label(reference, references, np.flatnonzero(topics == topic))
        if len(existing):
            have, closest, closest_similarity = existing.near(centroid, threshold)
        else:
            have, closest, closest_similarity = 0, -1, 0.0
        gaps.append(
            Gap(
                id=gap_id,
                run_id=run_id,
                kind="reference",
                label=label,
                description=f"{len(members)} uncovered reference prompts, e.g.: "
                + " | ".join(reference[i].text[:80] for i in central[:3]),
                have=have,
                target=have + math.ceil(len(members) * per_prompt),
                examples=[reference[i].text for i in central[:20]],
                nearest_existing=texts[closest] if closest >= 0 else "",
                nearest_similarity=round(closest_similarity, 4) if closest >= 0 else None,
            )
        )
        centroids[gap_id] = centroid.tolist()
        for i in members:
            coverage[i].gap_id = gap_id
    return gaps, coverage, centroids


def analyse(
    run_id: str,
    data_path: str | Path,
    examples: Sequence[SFTExample | PreferenceExample],
    embedder: Embedder,
    *,
    taxonomy: Taxonomy | None = None,
    taxonomy_path: str | None = None,
    reference: list[ReferencePrompt] | None = None,
    reference_path: str | None = None,
    reference_threshold: float = DEFAULT_REFERENCE_THRESHOLD,
    per_reference_prompt: float = 1.0,
    k_bounds: tuple[int, int] = (2, 12),
    cascade_rows: bool | None = None,
) -> GapReport:
    """Measure the gaps of ``examples`` against a taxonomy and/or a reference set.

    ``cascade_rows``: search the rows by shortlist and full-model confirmation
    (``generator.cascade.best_rows``) instead of embedding every row in full; by default, when
    the embedder's tier is the cascade and there are more than ``EXACT_COVERAGE_ROWS``
    rows. A taxonomy assigns every row, so with one every row is
    embedded in full and the reference prompts are measured on those vectors, exactly. The
    cascade can only understate a prompt's best similarity: an uncovered prompt within
    ``BORDERLINE_BAND`` of the threshold is marked ``borderline``.
    """
    if taxonomy is None and reference is None:
        raise DataFileError("give a taxonomy, a reference set, or both")
    if not examples:
        raise DataFileError(f"{data_path}: the dataset has no examples")
    texts = prompt_texts(examples)
    if cascade_rows is None:
        cascade_rows = embedder.cascade and len(examples) > EXACT_COVERAGE_ROWS
    cascade = cascade_rows and taxonomy is None  # a taxonomy embeds every row in full anyway
    existing = ExistingRows(texts, embedder, cascade=cascade)
    gaps: list[Gap] = []
    centroids: dict[str, list[float]] = {}
    thresholds: dict[str, float] = {}
    assignments: list[Assignment] = []
    if taxonomy is not None:
        cell_gaps, assignments, vectors = _taxonomy_gaps(
            run_id, taxonomy, existing, texts, embedder
        )
        gaps += cell_gaps
        centroids |= vectors
        thresholds |= dict.fromkeys(vectors, taxonomy.threshold)
    coverage: list[ReferenceCoverage] = []
    if reference is not None:
        references = embedder.embed([p.text for p in reference])
        ref_gaps, coverage, vectors = _reference_gaps(
            run_id, reference, references, existing, texts,
            threshold=reference_threshold, per_prompt=per_reference_prompt, k_bounds=k_bounds,
        )  # fmt: skip
        gaps += ref_gaps
        centroids |= vectors
        thresholds |= dict.fromkeys(vectors, reference_threshold)
    return GapReport(
        run_id=run_id,
        data=str(data_path),
        data_rows=len(examples),
        data_sha256=file_sha256(Path(data_path)) if Path(data_path).is_file() else None,
        taxonomy=taxonomy_path,
        reference=reference_path,
        embedding_model=embedder.model_name,
        taxonomy_threshold=taxonomy.threshold if taxonomy else None,
        reference_threshold=reference_threshold if reference is not None else None,
        gaps=gaps,
        unassigned=sum(a.cell is None for a in assignments),
        assignments=assignments,
        reference_coverage=coverage,
        centroids=centroids,
        thresholds=thresholds,
    )


def count_into_gaps(report: GapReport, texts: Sequence[str], embedder: Embedder) -> dict[str, int]:
    """How many of ``texts`` each gap gains, by the rule the gap was measured with (see
    ``gaps_of``)."""
    gained = dict.fromkeys((g.id for g in report.gaps), 0)
    for memberships in gaps_of(report, texts, embedder):
        for gap_id in memberships:
            gained[gap_id] += 1
    return gained


def gaps_of(report: GapReport, texts: Sequence[str], embedder: Embedder) -> list[list[str]]:
    """Per text, the gaps it counts into (at most one taxonomy cell and one reference gap).

    Taxonomy cells: the nearest cell, above its threshold. Reference gaps: a text counts when it
    covers one of the gap's uncovered reference prompts (similarity >= the reference threshold,
    the definition of coverage), and goes to the gap of the prompt it is closest to. Not the
    gap's centroid: a cluster's centroid is an average, and half of the real prompts in a demo
    cluster sit below 0.5 from it, so on-topic items would never count.
    """
    found: list[list[str]] = [[] for _ in texts]
    known = {g.id for g in report.gaps}
    if not texts or not report.centroids:
        return found
    vectors = embedder.embed(list(texts))
    cell_ids = [g.id for g in report.gaps if g.kind == "taxonomy"]
    if cell_ids:
        cells = np.array([report.centroids[i] for i in cell_ids], dtype=np.float32)
        scores = vectors @ cells.T
        nearest, best = scores.argmax(axis=1), scores.max(axis=1)
        for row, index in enumerate(nearest):
            if best[row] >= report.thresholds[cell_ids[index]]:
                found[row].append(cell_ids[index])
    members = [r for r in report.reference_coverage if r.gap_id in known]
    if members:
        scores = vectors @ embedder.embed([m.text for m in members]).T
        nearest, best = scores.argmax(axis=1), scores.max(axis=1)
        for row, index in enumerate(nearest):
            gap_id = members[index].gap_id
            if gap_id is not None and best[row] >= report.thresholds[gap_id]:
                found[row].append(gap_id)
    return found
