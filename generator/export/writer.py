"""``gapfill export``: approved items to a directory a trainer loads as it is, all or nothing.

Everything is computed and written into a temporary directory beside the target, which is then
renamed into place, so a failure at any point leaves no partial export (and an ``--overwrite``
keeps the old export until the new one is complete). Data files depend only on the accepted set:
rows sorted by item id (merged existing rows first, in file order), canonical JSON, so the same
set exports to the same bytes.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from generator import __version__
from generator.coverage import GapReport
from generator.dataset_reader import read_examples
from generator.embeddings import Embedder
from generator.errors import ExportError
from generator.evaluation.runner import EvalInput, EvalOptions, evaluate, write_reports
from generator.export import manifest as record
from generator.export.checks import DEFAULT_MAX_LENGTH, LengthCheck, load_tokenizer
from generator.export.prepare import Prepared, approved_row, existing_row
from generator.export.rows import Row, RowRefused, preference_row, row_bytes, sft_row
from generator.export.selection import Selection
from generator.export.split import split
from generator.filters.text import normalise
from generator.schema import CandidateKind, CandidateStatus, PreferenceExample, SFTExample
from generator.store import Store


class ExportOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runs: list[str] = Field(min_length=1)
    kind: CandidateKind
    format: Literal["jsonl", "parquet"] = "jsonl"
    out: Path
    overwrite: bool = False
    merge: Path | None = Field(
        default=None, description="Existing dataset merged in, deduplicated."
    )
    eval_fraction: float = Field(default=0.0, ge=0, lt=1)
    tokenizer: str | None = Field(
        default=None, description="Tokenizer dir; default: the bundled SmolLM2."
    )
    max_length: int = Field(default=DEFAULT_MAX_LENGTH, ge=16)
    base_model: str | None = None
    pretraining_data: list[str] = Field(default_factory=list)
    previous: Path | None = Field(default=None, description="The export this one follows.")
    evaluate: bool = Field(default=True, description="Write the stage's eval and safety reports.")
    eval_sets: list[Path] = Field(default_factory=list, description="For the contamination check.")
    judge: str | None = Field(default=None, description="BACKEND/MODEL judging the eval report.")


@dataclass
class ExportResult:
    out: Path
    export_id: str
    rows: dict[str, int]
    excluded: list[tuple[str, str]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    manifest_sha256: str = ""
    seconds: dict[str, float] = field(default_factory=dict)  # per stage, for benchmarks


class _Clock:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now


def _check_target(options: ExportOptions) -> None:
    out = options.out
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not options.overwrite:
        raise ExportError(f"{out}: exists and is not empty (use --overwrite to replace it)")


def _conversation_key(row: Row) -> str:
    parts = [f"{m['role']}\x00{normalise(m['content'])}" for turns in row.values() for m in turns]
    return hashlib.sha256("\x01".join(parts).encode()).hexdigest()


def _existing_rows(path: Path, kind: CandidateKind, lengths: LengthCheck) -> list[Prepared]:
    rows = []
    for imported in read_examples(path).examples:
        example = imported.example
        if kind is CandidateKind.SFT and isinstance(example, SFTExample):
            row = sft_row(example.model_dump())
        elif kind is CandidateKind.PREFERENCE and isinstance(example, PreferenceExample):
            row = preference_row(example.model_dump())
        else:
            continue
        rows.append(existing_row(row, imported.line, lengths))
    if not rows:
        raise ExportError(f"{path}: no {kind.value} rows to merge")
    return rows


def _prepared_rows(
    options: ExportOptions, selection: Selection, lengths: LengthCheck
) -> tuple[list[Prepared], list[tuple[str, str]]]:
    """The approved items' rows, in id order, each prepared as it is read; and those refused."""
    prepared, excluded = [], []
    for approved in selection:
        try:
            prepared.append(approved_row(approved, options.kind, lengths))
        except RowRefused as exc:
            excluded.append((approved.id, str(exc)))
    if len(options.runs) > 1:  # each run's come in id order
        prepared.sort(key=_key)
        excluded.sort()
    return prepared, excluded


def _key(entry: Prepared) -> str:
    return entry.key


def _checked_rows(
    options: ExportOptions,
    generated: list[Prepared],
    excluded: list[tuple[str, str]],
    lengths: LengthCheck,
) -> list[Prepared]:
    """Rows that pass every check, merged existing rows first; ``excluded`` gets the others,
    with reasons."""
    existing = _existing_rows(options.merge, options.kind, lengths) if options.merge else []
    if existing:  # the existing dataset wins: a generated copy of one of its rows is dropped
        seen = {_conversation_key(entry.row): entry.line for entry in existing}
        unique = []
        for entry in generated:
            line = seen.get(_conversation_key(entry.row))
            if line is None:
                unique.append(entry)
            else:
                excluded.append((entry.key, f"already in {options.merge} (line {line})"))
        generated = unique
    kept, unsure = [], []
    for entry in existing + generated:
        if entry.problem is not None:
            excluded.append((entry.key, entry.problem))
        else:
            kept.append(entry)
            if not entry.surely_fits:
                unsure.append(entry)
    too_long = dict(
        zip([e.key for e in unsure], lengths.problems([e.row for e in unsure]), strict=True)
    )
    rows = []
    for entry in kept:
        problem = too_long.get(entry.key)
        if problem is None:
            rows.append(entry)
        else:
            excluded.append((entry.key, problem))
    return rows


def _prompt_text(row: Row) -> str:
    turns = row["messages"][:-1] if "messages" in row else row["prompt"]
    return " ".join(m["content"] for m in turns)


def _split(rows: list[Prepared], eval_fraction: float) -> dict[str, list[Prepared]]:
    if eval_fraction <= 0:
        return {"train": rows, "eval": []}
    to_eval = split([r.key for r in rows], [_prompt_text(r.row) for r in rows], eval_fraction)
    splits: dict[str, list[Prepared]] = {"train": [], "eval": []}
    for entry, goes_to_eval in zip(rows, to_eval, strict=True):
        splits["eval" if goes_to_eval else "train"].append(entry)
    return splits


def _previous_manifest(store: Store, options: ExportOptions) -> dict[str, Any]:
    candidates: list[Path] = []
    if options.previous is not None:
        if not (options.previous / "manifest.json").is_file():
            raise ExportError(f"--previous {options.previous}: no manifest.json there")
        candidates.append(options.previous / "manifest.json")
    candidates.append(options.out / "manifest.json")
    for path in candidates:
        if path.is_file():
            data = path.read_bytes()
            export_id = orjson.loads(data).get("export_id")
            return {
                "previous_manifest_sha256": hashlib.sha256(data).hexdigest(),
                "previous_export_id": export_id,
                "previous_out": str(path.parent),
            }
    same = [
        e for e in store.exports() if e["kind"] == options.kind.value and e["runs"] == options.runs
    ]
    if same:
        last = same[-1]
        return {
            "previous_manifest_sha256": last["manifest_sha256"],
            "previous_export_id": last["export_id"],
            "previous_out": last["out"],
        }
    return {"previous_manifest_sha256": None, "previous_export_id": None, "previous_out": None}


def _scored_elsewhere(store: Store, run_ids: list[str]) -> list[dict[str, Any]]:
    """Filter scores of the runs' items that were not exported (read raw: only scores needed)."""
    scored: list[dict[str, Any]] = []
    for run_id in run_ids:
        for status in (
            CandidateStatus.PENDING,
            CandidateStatus.REJECTED,
            CandidateStatus.AUTO_REJECTED,
        ):
            ids = list(store.ids(run_id, status))
            with store.redis.pipeline(transaction=False) as pipe:
                for item_id in ids:
                    pipe.hget(store.keys.item(item_id), "data")
                blobs = pipe.execute()
            scored.extend(orjson.loads(b).get("scores", {}) for b in blobs if b)
    return scored


def _write_rows(path: Path, part: list[Prepared], fmt: str) -> None:
    if fmt == "jsonl":
        with path.open("wb") as handle:
            handle.writelines(row_bytes(entry.row) for entry in part)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([entry.row for entry in part]), path, compression="zstd")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _place(staging: Path, out: Path) -> None:
    """Rename the finished export into place; an old one is removed only after that."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
        staging.rename(out)
        shutil.rmtree(old)
    else:
        staging.rename(out)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while the export holds every item in memory.

    An export allocates millions of small dicts and strings that all stay alive until it ends;
    each automatic collection walks all of them again, which made up a third of an export's
    time. Nothing the export builds is cyclic, so pausing loses nothing.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def export(
    store: Store, options: ExportOptions, data_dir: Path, embedder: Embedder | None = None
) -> ExportResult:
    """Write the approved items of the runs; raises ExportError (nothing written) when it can't."""
    with _collector_paused():
        return _export(store, options, data_dir, embedder)


def _export(
    store: Store, options: ExportOptions, data_dir: Path, embedder: Embedder | None
) -> ExportResult:
    _check_target(options)
    known = set(store.runs())
    for run_id in options.runs:
        if run_id not in known:
            raise ExportError(f"--run {run_id}: no such run in the store")
    clock = _Clock()
    tokenizer = load_tokenizer(options.tokenizer, data_dir)
    lengths = LengthCheck(tokenizer, options.max_length, cache=store)
    clock.lap("tokenizer")

    selection = Selection(store, options.runs, options.kind)
    generated, excluded = _prepared_rows(options, selection, lengths)
    clock.lap("select")
    rows = _checked_rows(options, generated, excluded, lengths)
    clock.lap("check")
    if not rows:
        refused = f", {len(selection.refused)} refused" if selection.refused else ""
        raise ExportError(
            f"nothing to export: no accepted {options.kind.value} items in "
            f"{', '.join(options.runs)} pass the checks ({len(excluded)} excluded{refused})"
        )
    splits = _split(rows, options.eval_fraction)
    clock.lap("split")

    options.out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{options.out.name}.tmp-", dir=options.out.parent))
    exported_ids = [r.approved.id for part in splits.values() for r in part if r.approved]
    identified: Future[_Identity] | None = None
    background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gapfill-export")
    try:
        reports = (
            _evaluate(store, options, staging, splits, data_dir, embedder)
            if options.evaluate
            else None
        )
        clock.lap("evaluate")
        rows_per_file = _write_data(options, staging, splits)
        # While this thread writes the provenance, a second one hashes the data files (hashlib
        # lets go of the interpreter lock) and marks the items exported under the id the hashes
        # give (the server's work): both overlap this thread's instead of following it. The marks
        # come before the export is in place, so no item of a placed export can still be undone;
        # a failure puts them back.
        identified = background.submit(
            _identify_and_mark, store, staging, rows_per_file, exported_ids
        )
        _write_provenance(options, staging, splits)
        _write_excluded(staging, [*excluded, *selection.refused])
        identity = identified.result()
        result = _write_manifest(
            store, options, staging, identity, splits, selection, excluded, tokenizer, lengths,
            reports,
        )  # fmt: skip
        clock.lap("write")
        _place(staging, options.out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if identified is not None and identified.exception() is None:
            marked = identified.result()
            store.unmark_exported(marked.export_id, exported_ids, marked.previous_marks)
        raise
    finally:
        background.shutdown()
    store.record_export(
        {
            "export_id": result.export_id,
            "kind": options.kind.value,
            "runs": options.runs,
            "out": str(options.out.resolve()),
            "manifest_sha256": result.manifest_sha256,
            "exported_at": datetime.now(UTC).isoformat(),
        }
    )
    if reports is not None:
        for run_id in options.runs:
            store.save_eval_report(run_id, reports.report_json)
    clock.lap("record")
    result.seconds = clock.laps
    result.out = options.out
    return result


@dataclass
class _Reports:
    hashes: dict[str, str]
    report_json: str


def _evaluate(
    store: Store,
    options: ExportOptions,
    staging: Path,
    splits: dict[str, list[Prepared]],
    data_dir: Path,
    embedder: Embedder | None,
) -> _Reports:
    """The stage's eval report over every exported row, written into the export."""
    rows = [entry for part in splits.values() for entry in part]
    model = SFTExample if options.kind is CandidateKind.SFT else PreferenceExample
    examples = [model.model_validate(entry.row) for entry in rows]
    gaps = [entry.approved.item["gap_id"] if entry.approved else "existing" for entry in rows]
    labels = {g.id: g.label for run in options.runs for g in store.gaps(run)}
    gap_report = next(
        (GapReport.model_validate_json(raw) for run in options.runs
         if (raw := store.gap_report_json(run)) is not None),
        None,
    )  # fmt: skip
    data = EvalInput(
        source=f"export of {', '.join(options.runs)}",
        rows=len(examples),
        examples=examples,
        gaps=gaps,
        labels=labels,
        human_reviewed={i for i, entry in enumerate(rows) if entry.approved is not None},
        gap_report=gap_report,
    )
    eval_options = EvalOptions(
        stage=options.kind.value,
        eval_sets=options.eval_sets,
        existing=options.merge,
        judge=options.judge,
        tokenizer=options.tokenizer,
        max_length=options.max_length,
    )
    evaluation = evaluate(
        data, eval_options, embedder or Embedder(cache_dir=data_dir / "cache"), data_dir
    )
    hashes = write_reports(evaluation, staging, gaps)
    return _Reports(hashes, evaluation.report.model_dump_json())


def _write_data(
    options: ExportOptions, staging: Path, splits: dict[str, list[Prepared]]
) -> dict[str, int]:
    """The data files; their names and rows."""
    suffix = "jsonl" if options.format == "jsonl" else "parquet"
    rows_per_file = {}
    for name, part in splits.items():
        if part:
            _write_rows(staging / f"{name}.{suffix}", part, options.format)
            rows_per_file[f"{name}.{suffix}"] = len(part)
    return rows_per_file


@dataclass
class _Identity:
    files: dict[str, dict[str, Any]]  # the data files' manifest entries
    export_id: str  # a hash of the data files' hashes: the same data, the same id
    previous_marks: list[str | None]  # of the exported items, before this export marked them


def _identify_and_mark(
    store: Store, staging: Path, rows_per_file: dict[str, int], exported_ids: list[str]
) -> _Identity:
    files = {
        name: {
            "rows": rows,
            "bytes": (staging / name).stat().st_size,
            "sha256": _sha256(staging / name),
        }
        for name, rows in rows_per_file.items()
    }
    export_id = hashlib.sha256(
        "".join(f"{n}:{f['sha256']}" for n, f in sorted(files.items())).encode()
    ).hexdigest()
    return _Identity(files, export_id, store.mark_exported(export_id, exported_ids))


def _write_provenance(
    options: ExportOptions, staging: Path, splits: dict[str, list[Prepared]]
) -> None:
    def line(entry: Prepared, split: str, index: int) -> bytes:
        if entry.approved is not None:
            made = record.provenance_record(entry.approved, split, index)
        else:
            made = {
                "item_id": None,
                "split": split,
                "row": index,
                "source": "existing",
                "source_file": str(options.merge),
                "source_line": entry.line,
            }
        return orjson.dumps(made, option=orjson.OPT_APPEND_NEWLINE)

    with (staging / "provenance.jsonl").open("wb") as handle:
        for name, part in splits.items():
            handle.writelines(line(entry, name, index) for index, entry in enumerate(part))


def _write_excluded(staging: Path, excluded: list[tuple[str, str]]) -> None:
    with (staging / "excluded.jsonl").open("wb") as handle:
        for item_id, reason in excluded:
            handle.write(orjson.dumps({"item": item_id, "reason": reason}) + b"\n")


def _write_manifest(
    store: Store,
    options: ExportOptions,
    staging: Path,
    identity: _Identity,
    splits: dict[str, list[Prepared]],
    selection: Selection,
    excluded: list[tuple[str, str]],
    tokenizer: Any,
    lengths: LengthCheck,
    reports: _Reports | None,
) -> ExportResult:
    """The manifest (file hashes, counts, generation, filters, review, stage audit) and card."""
    files, export_id = dict(identity.files), identity.export_id
    for name in ("provenance.jsonl", "excluded.jsonl", *(reports.hashes if reports else ())):
        path = staging / name
        files[name] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}

    generated = [entry for part in splits.values() for entry in part if entry.origin]
    origins = Counter([entry.origin for entry in generated if entry.origin])
    decisions = selection.decisions
    run_configs = {run: store.get_run(run) for run in options.runs}
    dataset_files = {n: f["sha256"] for n, f in files.items() if n.split(".")[0] in splits}
    manifest: dict[str, Any] = {
        "gapfill_version": __version__,
        "export_id": export_id,
        "exported_at": datetime.now(UTC).isoformat(),
        "runs": options.runs,
        "kind": options.kind.value,
        "format": options.format,
        "files": files,
        "counts": {
            "rows": sum(len(p) for p in splits.values()),
            "by_split": {n: len(p) for n, p in splits.items() if p},
            **record.origin_counts(origins, sum(len(p) for p in splits.values()) - len(generated)),
            "excluded": len(excluded),
            "refused_pii": len(selection.refused),
            "length_checked_with_tokenizer": lengths.tokenised,
            "length_counts_from_cache": lengths.cached,
        },
        "generation": record.generation_summary(origins),
        "filters": {
            "config": {
                run: (c.filters.model_dump(mode="json") if c else None)
                for run, c in run_configs.items()
            },
            "pass_rates": record.pass_rates(
                [entry.scores or {} for entry in generated] + _scored_elsewhere(store, options.runs)
            ),
        },
        "review": record.review_summary(
            decisions, {run: store.review_rule(run) for run in options.runs}
        ),
        "merged_existing": str(options.merge) if options.merge else None,
        "split": {
            "eval_fraction": options.eval_fraction,
            "key": "sha256 of the near-duplicate group's smallest item id",
        },
        "stage_audit": {
            "base_model": options.base_model,
            "continued_pretraining_data": options.pretraining_data,
            "sft_dataset": dataset_files if options.kind is CandidateKind.SFT else None,
            "preference_dataset": (
                dataset_files if options.kind is CandidateKind.PREFERENCE else None
            ),
            "chat_template": {
                "tokenizer": options.tokenizer or "bundled SmolLM2-135M-Instruct",
                "sha256": hashlib.sha256(str(tokenizer.chat_template).encode()).hexdigest(),
                "max_length": options.max_length,
            },
            # The stage's eval and safety reports (gapfill eval), written beside the data.
            "eval_report": (
                {"file": "eval_report.json", "sha256": reports.hashes["eval_report.json"]}
                if reports
                else None
            ),
            "safety_report": (
                {"file": "safety_report.json", "sha256": reports.hashes["safety_report.json"]}
                if reports
                else None
            ),
            "rollback_artifacts": _previous_manifest(store, options),
        },
    }
    manifest_bytes = orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n"
    (staging / "manifest.json").write_bytes(manifest_bytes)
    (staging / "README.md").write_text(record.dataset_card(manifest), encoding="utf-8")
    return ExportResult(
        out=staging,
        export_id=export_id,
        rows=manifest["counts"]["by_split"],
        excluded=excluded,
        refused=selection.refused,
        manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(),
    )
