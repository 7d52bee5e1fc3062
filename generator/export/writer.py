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
from generator.embeddings import Embedder
from generator.errors import ExportError
from generator.evaluation.runner import EvalInput, EvalOptions, evaluate, write_reports
from generator.export import manifest as record
from generator.export.checks import (
    DEFAULT_MAX_LENGTH,
    LengthCheck,
    load_tokenizer,
    structure_problem,
)
from generator.export.rows import Row, RowRefused, preference_row, row_bytes, row_for, sft_row
from generator.export.selection import Approved, Selection, select
from generator.export.split import split
from generator.filters.text import normalise
from generator.importers import read_examples
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
    tokenizer: str | None = Field(default=None, description="Tokenizer dir; default: embedded.")
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


@dataclass
class _Row:
    key: str  # sort and split key: item id, or "existing:<line>"
    row: Row
    approved: Approved | None = None  # None for a merged existing row
    line: int | None = None


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


def _existing_rows(path: Path, kind: CandidateKind) -> list[_Row]:
    rows = []
    for imported in read_examples(path).examples:
        example = imported.example
        if kind is CandidateKind.SFT and isinstance(example, SFTExample):
            rows.append(
                _Row(
                    f"existing:{imported.line:09d}",
                    sft_row(example.model_dump()),
                    None,
                    imported.line,
                )
            )
        elif kind is CandidateKind.PREFERENCE and isinstance(example, PreferenceExample):
            row = preference_row(example.model_dump())
            rows.append(_Row(f"existing:{imported.line:09d}", row, None, imported.line))
    if not rows:
        raise ExportError(f"{path}: no {kind.value} rows to merge")
    return rows


def _checked_rows(
    options: ExportOptions, approved: list[Approved], lengths: LengthCheck
) -> tuple[list[_Row], list[tuple[str, str]]]:
    """Rows that pass every check (merged existing rows first), and the excluded with reasons."""
    excluded: list[tuple[str, str]] = []
    generated: list[_Row] = []
    for item in approved:
        try:
            row = row_for(item.item, item.decisions, options.kind)
        except RowRefused as exc:
            excluded.append((item.id, str(exc)))
            continue
        generated.append(_Row(item.id, row, item))
    existing = _existing_rows(options.merge, options.kind) if options.merge else []
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
    checked = existing + generated
    kept = []
    for entry, too_long in zip(checked, lengths.problems([e.row for e in checked]), strict=True):
        problem = structure_problem(entry.row) or too_long
        if problem is None:
            kept.append(entry)
        else:
            excluded.append((entry.key, problem))
    return kept, excluded


def _prompt_text(row: Row) -> str:
    turns = row["messages"][:-1] if "messages" in row else row["prompt"]
    return " ".join(m["content"] for m in turns)


def _split(rows: list[_Row], eval_fraction: float) -> dict[str, list[_Row]]:
    if eval_fraction <= 0:
        return {"train": rows, "eval": []}
    to_eval = split([r.key for r in rows], [_prompt_text(r.row) for r in rows], eval_fraction)
    splits: dict[str, list[_Row]] = {"train": [], "eval": []}
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


def _write_rows(path: Path, rows: list[Row], fmt: str) -> None:
    if fmt == "jsonl":
        with path.open("wb") as handle:
            handle.writelines(row_bytes(r) for r in rows)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path, compression="zstd")


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

    selection = select(store, options.runs, options.kind)
    clock.lap("select")
    rows, excluded = _checked_rows(options, selection.approved, lengths)
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
    marking: Future[list[str | None]] | None = None
    background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gapfill-export-mark")
    try:
        reports = (
            _evaluate(store, options, staging, splits, data_dir, embedder)
            if options.evaluate
            else None
        )
        clock.lap("evaluate")
        files, export_id = _write_data(options, staging, splits)
        # The items are marked exported while the record is written: the server's work then
        # overlaps this process's, instead of following it. Marked before the export is in
        # place, so no item of a placed export can still be undone; a failure puts them back.
        marking = background.submit(store.mark_exported, export_id, exported_ids)
        result = _write_record(
            store, options, staging, files, export_id, splits, selection, excluded, tokenizer,
            lengths, reports,
        )  # fmt: skip
        marking.result()
        clock.lap("write")
        _place(staging, options.out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if marking is not None and marking.exception() is None:
            store.unmark_exported(export_id, exported_ids, marking.result())
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
    splits: dict[str, list[_Row]],
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
    options: ExportOptions, staging: Path, splits: dict[str, list[_Row]]
) -> tuple[dict[str, dict[str, Any]], str]:
    """The data files, their entries for the manifest and the export id (a hash of them)."""
    suffix = "jsonl" if options.format == "jsonl" else "parquet"
    files: dict[str, dict[str, Any]] = {}
    for name, part in splits.items():
        if not part:
            continue
        path = staging / f"{name}.{suffix}"
        _write_rows(path, [r.row for r in part], options.format)
        files[path.name] = {
            "rows": len(part),
            "bytes": path.stat().st_size,
            "sha256": _sha256(path),
        }
    export_id = hashlib.sha256(
        "".join(f"{n}:{f['sha256']}" for n, f in sorted(files.items())).encode()
    ).hexdigest()
    return files, export_id


def _write_record(
    store: Store,
    options: ExportOptions,
    staging: Path,
    files: dict[str, dict[str, Any]],
    export_id: str,
    splits: dict[str, list[_Row]],
    selection: Selection,
    excluded: list[tuple[str, str]],
    tokenizer: Any,
    lengths: LengthCheck,
    reports: _Reports | None,
) -> ExportResult:
    """Provenance, excluded items, manifest and card."""
    with (staging / "provenance.jsonl").open("wb") as handle:
        for name, part in splits.items():
            for index, row in enumerate(part):
                if row.approved is not None:
                    entry = record.provenance_record(row.approved, name, index)
                else:
                    entry = {
                        "item_id": None,
                        "split": name,
                        "row": index,
                        "source": "existing",
                        "source_file": str(options.merge),
                        "source_line": row.line,
                    }
                handle.write(orjson.dumps(entry) + b"\n")
    with (staging / "excluded.jsonl").open("wb") as handle:
        for item_id, reason in [*excluded, *selection.refused]:
            handle.write(orjson.dumps({"item": item_id, "reason": reason}) + b"\n")
    for name in ("provenance.jsonl", "excluded.jsonl", *(reports.hashes if reports else ())):
        path = staging / name
        files[name] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}

    approved = [r.approved for part in splits.values() for r in part if r.approved]
    items = [a.item for a in approved]
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
            "by_gap": dict(sorted(Counter(i["gap_id"] for i in items).items())),
            "by_source": dict(
                sorted(
                    Counter(
                        ["existing"]
                        * sum(1 for p in splits.values() for r in p if r.approved is None)
                        + [i.get("provenance", {}).get("source", "generated") for i in items]
                    ).items()
                )
            ),
            "by_run": dict(sorted(Counter(i["run_id"] for i in items).items())),
            "excluded": len(excluded),
            "refused_pii": len(selection.refused),
            "length_checked_with_tokenizer": lengths.tokenised,
            "length_counts_from_cache": lengths.cached,
        },
        "generation": record.generation_summary(items),
        "filters": {
            "config": {
                run: (c.filters.model_dump(mode="json") if c else None)
                for run, c in run_configs.items()
            },
            "pass_rates": record.pass_rates(
                [i.get("scores", {}) for i in items] + _scored_elsewhere(store, options.runs)
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
                "tokenizer": options.tokenizer or "embedded SmolLM2-135M-Instruct",
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
