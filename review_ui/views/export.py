"""Export: the same code as `gapfill export`, from a form, for admins.

Nothing on this page takes a path: the export goes into a folder *named* here under the
configured export root, and the merge file and the tokenizer are picked from the lists the
operator configured (``export_merge_files``, ``export_tokenizers``). A visitor can thus neither
write nor read anywhere else on the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from generator.config import Settings
from generator.errors import GapfillError
from generator.export.target import confined_target
from generator.export.writer import ExportOptions, ExportResult, export
from generator.schema import CandidateKind
from review_ui.resources import embedder, settings, store
from review_ui.signin import signed_in_reviewer

BUNDLED = "bundled"
NO_MERGE = "none"
RANKING_PAIRS = {"all pairs": "all", "best against worst": "best_worst"}


@dataclass
class Asked:
    """What the form asked for, as chosen (names and list entries, never paths)."""

    runs: list[str]
    kind: str
    row_format: str
    name: str
    eval_fraction: float
    max_length: int
    tokenizer: str
    merge: str
    base_model: str
    overwrite: bool
    ranking_pairs: str = "all pairs"


def _merge_files(config: Settings) -> dict[str, Path | None]:
    return {NO_MERGE: None, **{str(path): path for path in config.export_merge_files}}


def _form(runs: list[str], config: Settings) -> Asked | None:
    current = st.session_state.get("run_id")
    with st.form("export"):
        chosen = st.multiselect("Runs", runs, default=[current] if current in runs else [])
        kind = st.radio("Kind", ["sft", "preference"], horizontal=True)
        row_format = st.radio("Format", ["jsonl", "parquet"], horizontal=True)
        name = st.text_input(
            "Export name (a folder under the export root)", key="export-name", max_chars=100
        )
        eval_fraction = st.number_input("Eval fraction", 0.0, 0.5, 0.0, step=0.05)
        max_length = st.number_input("Max tokens under the chat template", 16, 131072, 2048)
        tokenizer = st.selectbox(
            "Tokenizer for the length check", [BUNDLED, *config.export_tokenizers],
            key="export-tokenizer",
        )  # fmt: skip
        merge = st.selectbox(
            "Merge an existing dataset", list(_merge_files(config)), key="export-merge"
        )
        ranking_pairs = st.radio(
            "A ranking of 3+ answers becomes", list(RANKING_PAIRS), horizontal=True
        )
        base_model = st.text_input("Base model (for the audit record, optional)")
        overwrite = st.checkbox("Replace an earlier export of that name")
        if not st.form_submit_button("Export", type="primary"):
            return None
    return Asked(
        chosen, kind, row_format, name.strip(), float(eval_fraction), int(max_length),
        str(tokenizer), str(merge), base_model.strip(), overwrite, str(ranking_pairs),
    )  # fmt: skip


def _options(asked: Asked, config: Settings) -> ExportOptions:
    """The export's options; raises GapfillError for a name that is no folder of the root, and
    for a choice that is not on the configured lists (a forged widget value)."""
    merges = _merge_files(config)
    if asked.merge not in merges or asked.tokenizer not in [BUNDLED, *config.export_tokenizers]:
        raise GapfillError("choose the merge file and the tokenizer from the lists")
    if asked.ranking_pairs not in RANKING_PAIRS:
        raise GapfillError("choose how rankings become pairs from the list")
    return ExportOptions(
        runs=asked.runs,
        kind=CandidateKind(asked.kind),
        format=asked.row_format,
        out=confined_target(config.export_root_dir(), asked.name),
        overwrite=asked.overwrite,
        merge=merges[asked.merge],
        eval_fraction=asked.eval_fraction,
        max_length=asked.max_length,
        tokenizer=None if asked.tokenizer == BUNDLED else asked.tokenizer,
        base_model=asked.base_model or None,
        ranking_pairs=RANKING_PAIRS[asked.ranking_pairs],
        mode=config.export_dir_mode(),
    )


def _report(result: ExportResult, name: str) -> None:
    rows = ", ".join(f"{split} {count}" for split, count in result.rows.items())
    st.success(f"Exported {rows} rows to {name} (export {result.export_id[:12]})")
    problems = [*result.excluded, *result.refused]
    if problems:
        st.warning(f"{len(problems)} approved items left out:")
        st.dataframe(pd.DataFrame(problems, columns=["item", "reason"]), hide_index=True)


def page() -> None:
    signed_in_reviewer(admin=True)
    runs = sorted(store().runs())
    if not runs:
        st.info("No run yet.")
        return
    config = settings()
    st.header("Export what reviewers accepted")
    st.caption(f"Exports are written under the export root, {config.export_root_dir()}.")
    asked = _form(runs, config)
    if asked is None:
        return
    if not asked.runs or not asked.name:
        st.error("Choose at least one run and name the export.")
        return
    try:
        options = _options(asked, config)
        with st.spinner("Exporting…"):
            result = export(store(), options, config.data_dir, embedder())
    except (GapfillError, ValueError, OSError) as exc:
        st.error(str(exc))
        return
    _report(result, asked.name)


page()
