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
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from generator.dataset_reader import read_examples
from generator.embeddings import Embedder
from generator.errors import ExportError
from generator.export import files
from generator.export import manifest as record
from generator.export.checks import LengthCheck, load_tokenizer, template_problem
from generator.export.manifest_writer import ExportState, write_manifest
from generator.export.options import ExportOptions, ExportResult
from generator.export.prepare import Prepared, approved_rows, existing_row
from generator.export.reports import run_reports
from generator.export.rows import Row, RowRefused, preference_row, sft_row, uses_tools
from generator.export.selection import Selection
from generator.export.split import split
from generator.export.target import check_target
from generator.filters.text import normalise
from generator.schema import CandidateKind, PreferenceExample, SFTExample
from generator.store import Store

# What callers import from here (the CLI, the review UI's Export page, bench, tests).
__all__ = ["ExportOptions", "ExportResult", "export", "record"]


class _Clock:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now


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
            prepared += approved_rows(approved, options.kind, lengths, options.ranking_pairs)
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


def _versions(splits: dict[str, list[Prepared]]) -> dict[str, int]:
    """Each exported item's version as the export read it (what marking checks against)."""
    return {
        entry.approved.id: int(entry.approved.item["version"])
        for part in splits.values()
        for entry in part
        if entry.approved is not None
    }


def _without(
    splits: dict[str, list[Prepared]], gone: Mapping[str, str]
) -> dict[str, list[Prepared]]:
    return {
        name: [e for e in part if e.approved is None or e.approved.id not in gone]
        for name, part in splits.items()
    }


def _written(
    store: Store,
    options: ExportOptions,
    staging: Path,
    splits: dict[str, list[Prepared]],
    ledger: files.Ledger,
) -> tuple[dict[str, list[Prepared]], files.Identity, list[tuple[str, str]]]:
    """Data files and provenance written and their items marked exported: the splits written,
    the data files' identity, and the items left out because they changed since they were read.

    Rows written = items marked. Marking checks each item is still accepted at the version read
    (an undo may have come since); the files are then written again without the ones that were
    not, under the new id their hashes give (rare: only an export racing a reviewer pays it).
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="gapfill-export") as background:
        rows_per_file = files.write_data(options, staging, splits)
        # While this thread writes the provenance, a second one hashes the data files (hashlib
        # lets go of the interpreter lock) and marks the items exported under the id the hashes
        # give (the server's work): both overlap this thread's instead of following it. The marks
        # come before the export is in place, so no item of a placed export can still be undone;
        # a failure puts them back (the ledger).
        identified = background.submit(
            files.identify_and_mark, store, staging, rows_per_file, _versions(splits), ledger
        )
        files.write_provenance(options, staging, splits)
        identity, marks = identified.result()
    changed: list[tuple[str, str]] = []
    while marks.refused:
        changed.extend(sorted(marks.refused.items()))
        splits = _without(splits, marks.refused)
        if not any(splits.values()):
            raise ExportError("nothing to export: every item changed while the export ran")
        rows_per_file = files.write_data(options, staging, splits)
        files.write_provenance(options, staging, splits)
        identity, marks = files.identify_and_mark(
            store, staging, rows_per_file, _versions(splits), ledger
        )
    return splits, identity, changed


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


def _check_tool_rows(options: ExportOptions, rows: list[Prepared], tokenizer: Any) -> None:
    """Tool-calling rows leave only where they train as they are: in JSONL (Parquet's columns
    would merge every tool's argument fields into each call, filling the others with nulls)
    and checked with a tokenizer whose chat template renders calls and tools (else the rows
    would train without them)."""
    calling = sum(1 for entry in rows if uses_tools(entry.row))
    if not calling:
        return
    if options.format == "parquet":
        raise ExportError(
            f"--format parquet: {calling} rows call tools; export them as JSONL (Parquet would "
            "merge the tools' argument fields, filling each call with other tools' nulls)"
        )
    problem = template_problem(tokenizer)
    if problem is not None:
        raise ExportError(
            f"--tokenizer {options.tokenizer or 'bundled'}: {problem}, and {calling} rows call "
            "tools; give the tokenizer of the model you will train (its chat template must "
            "render tool calls)"
        )


def export(
    store: Store, options: ExportOptions, data_dir: Path, embedder: Embedder | None = None
) -> ExportResult:
    """Write the approved items of the runs; raises ExportError (nothing written) when it can't."""
    with _collector_paused():
        return _export(store, options, data_dir, embedder)


def _export(
    store: Store, options: ExportOptions, data_dir: Path, embedder: Embedder | None
) -> ExportResult:
    check_target(options.out, overwrite=options.overwrite)
    known = set(store.runs())
    for run_id in options.runs:
        if run_id not in known:
            raise ExportError(f"--run {run_id}: no such run in the store")
    clock = _Clock()
    tokenizer = load_tokenizer(options.tokenizer, data_dir)
    lengths = LengthCheck(tokenizer, options.max_length, cache=store)
    clock.lap("tokenizer")

    selection = Selection(
        store, options.runs, options.kind, include_auto_decided=options.include_auto_decided
    )
    generated, excluded = _prepared_rows(options, selection, lengths)
    clock.lap("select")
    rows = _checked_rows(options, generated, excluded, lengths)
    _check_tool_rows(options, rows, tokenizer)
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
    ledger = files.Ledger()
    try:
        splits, identity, changed = _written(store, options, staging, splits, ledger)
        excluded.extend(changed)
        clock.lap("write")
        reports = (
            run_reports(
                store, options, splits, staging=staging, data_dir=data_dir, embedder=embedder
            )
            if options.evaluate
            else None
        )
        clock.lap("evaluate")
        files.write_excluded(staging, [*excluded, *selection.refused])
        state = ExportState(
            options=options,
            staging=staging,
            identity=identity,
            splits=splits,
            selection=selection,
            excluded=excluded,
            tokenizer=tokenizer,
            lengths=lengths,
            reports=reports,
        )
        result = write_manifest(store, state)
        files.set_mode(staging, options.mode)
        files.place(staging, options.out, overwrite=options.overwrite)
        clock.lap("manifest")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        ledger.put_back(store)
        raise
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
