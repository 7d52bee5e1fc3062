"""Export: the same code as `gapfill export`, from a form."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from generator.errors import GapfillError
from generator.export.writer import ExportOptions, export
from generator.schema import CandidateKind
from review_ui.resources import embedder, settings, store
from review_ui.signin import signed_in_reviewer


def page() -> None:
    signed_in_reviewer(admin=True)
    runs = sorted(store().runs())
    if not runs:
        st.info("No run yet.")
        return
    st.header("Export what reviewers accepted")
    current = st.session_state.get("run_id")
    with st.form("export"):
        chosen = st.multiselect("Runs", runs, default=[current] if current in runs else [])
        kind = st.radio("Kind", ["sft", "preference"], horizontal=True)
        row_format = st.radio("Format", ["jsonl", "parquet"], horizontal=True)
        out = st.text_input("Output directory (on the server)", key="export-out")
        eval_fraction = st.number_input("Eval fraction", 0.0, 0.5, 0.0, step=0.05)
        max_length = st.number_input("Max tokens under the chat template", 16, 131072, 2048)
        tokenizer = st.text_input(
            "Tokenizer directory (default: the bundled model's)", key="export-tokenizer"
        )
        merge = st.text_input("Merge an existing dataset (path, optional)")
        base_model = st.text_input("Base model (for the audit record, optional)")
        overwrite = st.checkbox("Replace a non-empty output directory")
        submitted = st.form_submit_button("Export", type="primary")
    if not submitted:
        return
    if not chosen or not out.strip():
        st.error("Choose at least one run and an output directory.")
        return
    try:
        options = ExportOptions(
            runs=chosen,
            kind=CandidateKind(kind),
            format=row_format,
            out=Path(out.strip()).expanduser(),
            overwrite=overwrite,
            merge=Path(merge.strip()).expanduser() if merge.strip() else None,
            eval_fraction=float(eval_fraction),
            max_length=int(max_length),
            tokenizer=tokenizer.strip() or None,
            base_model=base_model.strip() or None,
        )
        with st.spinner("Exporting…"):
            result = export(store(), options, settings().data_dir, embedder())
    except (GapfillError, ValueError, OSError) as exc:
        st.error(str(exc))
        return
    rows = ", ".join(f"{name} {count}" for name, count in result.rows.items())
    st.success(f"Exported {rows} rows to {options.out} (export {result.export_id[:12]})")
    problems = [*result.excluded, *result.refused]
    if problems:
        st.warning(f"{len(problems)} approved items left out:")
        st.dataframe(pd.DataFrame(problems, columns=["item", "reason"]), hide_index=True)


page()
