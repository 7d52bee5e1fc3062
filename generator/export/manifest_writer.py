"""manifest.json and the dataset card: the export's record, written last into its staging
directory (file hashes, counts, generation, filters, review, the stage-audit block)."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from generator import __version__
from generator.errors import ExportError
from generator.export import manifest as record
from generator.export.checks import LengthCheck
from generator.export.files import Identity, sha256
from generator.export.options import ExportOptions, ExportResult
from generator.export.prepare import Prepared
from generator.export.reports import Reports, measured_runs
from generator.export.selection import Selection
from generator.schema import CandidateKind, CandidateStatus
from generator.store import Store


@dataclass(kw_only=True)
class ExportState:
    """What an export has done by the time its manifest is written."""

    options: ExportOptions
    staging: Path
    identity: Identity  # the data files and the export id their hashes give
    splits: dict[str, list[Prepared]]
    selection: Selection
    excluded: list[tuple[str, str]]
    tokenizer: Any
    lengths: LengthCheck
    reports: Reports | None


def previous_manifest(store: Store, options: ExportOptions) -> dict[str, Any]:
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


def scored_elsewhere(store: Store, run_ids: list[str]) -> list[dict[str, Any]]:
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


def write_manifest(store: Store, state: ExportState) -> ExportResult:
    """The manifest (file hashes, counts, generation, filters, review, stage audit) and card."""
    options, staging, splits, reports = state.options, state.staging, state.splits, state.reports
    selection, excluded, lengths = state.selection, state.excluded, state.lengths
    files, export_id = dict(state.identity.files), state.identity.export_id
    for name in ("provenance.jsonl", "excluded.jsonl", *(reports.hashes if reports else ())):
        path = staging / name
        files[name] = {"bytes": path.stat().st_size, "sha256": sha256(path)}

    generated = [entry for part in splits.values() for entry in part if entry.origin]
    origins = Counter([entry.origin for entry in generated if entry.origin])
    rows_by_origin = Counter(
        record.row_origin(
            entry.approved.item if entry.approved else None,
            auto_decided=entry.approved is not None and entry.approved.auto_decided,
        )
        for part in splits.values()
        for entry in part
    )
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
            **record.origin_counts(
                origins, sum(len(p) for p in splits.values()) - len(generated), rows_by_origin
            ),
            "excluded": len(excluded),
            "refused_pii": len(selection.refused),
            "auto_decided_left_out": len(selection.auto_left_out),
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
                [entry.scores or {} for entry in generated] + scored_elsewhere(store, options.runs)
            ),
        },
        "review": record.review_summary(
            decisions, {run: store.review_rule(run) for run in options.runs}
        ),
        "merged_existing": str(options.merge) if options.merge else None,
        # Per run: whether the merged file is the dataset its gaps were measured on (the card
        # says whether merged rows are the gaps' "have" from this).
        "measured_on": [
            m.model_dump()
            for m in (
                reports.measured_on
                if reports
                else measured_runs(store, options.runs, options.merge).values()
            )
        ],
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
                "sha256": hashlib.sha256(str(state.tokenizer.chat_template).encode()).hexdigest(),
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
            "rollback_artifacts": previous_manifest(store, options),
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
        auto_left_out=len(selection.auto_left_out),
        manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(),
    )
