"""The dataset card, the manifest's counts and the eval report's coverage say exactly what an
export holds: rows by origin (merged existing, accepted as generated, accepted after an edit),
and coverage gained only from what the export adds, per run, over every run exported."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from generator.coverage import Taxonomy, TaxonomyCell, analyse
from generator.export.writer import ExportOptions, export
from generator.schema import Candidate, CandidateKind, CandidateStatus, RunConfig
from generator.screening import screen_all
from generator.store import Store
from tests.factories import cli_env, run_cli, sft

CODING = [
    "Write a Python function that reverses a linked list.",
    "Fix the off-by-one error in this for loop in C.",
    "How do I read a CSV file with pandas?",
    "Write a SQL query that finds duplicate e-mail addresses.",
]
COOKING = ["How long should I boil an egg for a soft yolk?", "Give me a recipe for pancakes."]
NEW_COOKING = [
    "What can I cook for dinner with rice, eggs and spinach?",
    "How do I make a tomato sauce from fresh tomatoes?",
]
NEW_GARDENING = "When should I plant tomato seedlings outdoors in my vegetable garden?"


def existing_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_sft.jsonl"
    rows = [sft(q, "An existing answer.") for q in CODING + COOKING]
    path.write_text("".join(json.dumps(r.model_dump(mode="json")) + "\n" for r in rows))
    return path


def measured_run(store: Store, embedder: Any, run: str, cells: list[TaxonomyCell]) -> None:
    """A run whose gaps were measured on the existing dataset, as `gapfill gaps --run` does."""
    existing = [sft(q, "An existing answer.") for q in CODING + COOKING]
    report = analyse(run, "my_sft.jsonl", existing, embedder, taxonomy=Taxonomy(cells=cells))
    store.save_run(RunConfig(run_id=run))
    store.save_gaps(run, report.gaps, report.model_dump_json())


def generated(run: str, gap: str, question: str) -> Candidate:
    return Candidate(
        kind=CandidateKind.SFT,
        payload=sft(question, "A generated answer that helps."),
        run_id=run,
        gap_id=gap,
        status=CandidateStatus.PENDING,
    )


def review(store: Store, run: str, edit_first: bool = False) -> None:
    """Alice accepts every item of the run; with ``edit_first`` the first one after an edit."""
    while (lease := store.claim("alice", run)) is not None:
        if edit_first:
            edited = sft(NEW_COOKING[0], "A reviewer's better answer about rice and spinach.")
            store.decide(lease.item_id, "alice", "edit", lease.version, edited_payload=edited)
            edit_first = False
        else:
            store.decide(lease.item_id, "alice", "accept", lease.version)


@pytest.fixture
def two_runs_and_a_merge(store: Store, embedder: Any, tmp_path: Path) -> Path:
    """The user's campaign: two runs over one existing dataset, exported with --merge."""
    cell = TaxonomyCell
    measured_run(
        store,
        embedder,
        "tax1",
        [
            cell(id="coding", description="programming and code", examples=CODING[:2]),
            cell(id="cooking", description="cooking and recipes", examples=COOKING),
        ],
    )
    measured_run(
        store,
        embedder,
        "tax2",
        [cell(id="gardening", description="gardening and plants", examples=[NEW_GARDENING])],
    )
    store.put_many(
        screen_all(
            [generated("tax1", "cooking", q) for q in NEW_COOKING]
            + [generated("tax2", "gardening", NEW_GARDENING)]
        )
    )
    review(store, "tax1", edit_first=True)
    review(store, "tax2")
    return existing_file(tmp_path)


def exported(store: Store, model_dir: Path, tmp_path: Path, embedder: Any, **kwargs: Any) -> Path:
    options = ExportOptions.model_validate(
        {
            "runs": ["tax1", "tax2"],
            "kind": CandidateKind.SFT,
            "out": tmp_path / "export",
            "tokenizer": str(model_dir),
            **kwargs,
        }
    )
    export(store, options, tmp_path / "data", embedder)
    return tmp_path / "export"


def test_a_merged_export_counts_rows_by_origin_in_the_manifest_and_the_card(
    store: Store, model_dir: Path, tmp_path: Path, embedder: Any, two_runs_and_a_merge: Path
) -> None:
    out = exported(store, model_dir, tmp_path, embedder, merge=two_runs_and_a_merge)
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert counts["rows"] == 9
    assert counts["by_origin"] == {
        "merged_existing": 6,
        "generated_accepted": 2,
        "imported_accepted": 0,
        "human_edited": 1,
    }
    assert sum(counts["by_origin"].values()) == counts["rows"]
    card = (out / "README.md").read_text()
    assert "Nothing here was exported without" not in card, "6 of 9 rows were never reviewed"
    assert "Of 9 rows, 3 went through gapfill's review" in card
    assert "The other 6 are the existing dataset merged in" in card
    assert "| accepted by a human after an edit | 1 |" in card
    assert "| merged existing dataset (not reviewed in gapfill) | 6 |" in card
    assert "| (merged existing rows: no gap) | 6 |" in card
    gap_rows = [line for line in card.splitlines() if line.startswith("| ") and "|---" not in line]
    gap_table = gap_rows[gap_rows.index("| gap | rows |") + 1 :]
    assert sum(int(line.rsplit("|", 2)[1]) for line in gap_table) == 9, "the gap table adds up"


def test_a_card_without_a_merge_says_every_row_was_accepted_by_a_human(
    store: Store, model_dir: Path, tmp_path: Path, embedder: Any, two_runs_and_a_merge: Path
) -> None:
    card = (exported(store, model_dir, tmp_path, embedder) / "README.md").read_text()
    assert "All 3 rows went through gapfill's review, and a human reviewer accepted each one" in (
        " ".join(card.split())
    )
    assert "merged" not in card


def test_coverage_counts_only_what_the_export_adds_per_run_over_every_run(
    store: Store, model_dir: Path, tmp_path: Path, embedder: Any, two_runs_and_a_merge: Path
) -> None:
    out = exported(store, model_dir, tmp_path, embedder, merge=two_runs_and_a_merge)
    coverage = json.loads((out / "eval_report.json").read_text())["coverage"]
    assert coverage["runs"] == ["tax1", "tax2"]
    assert (coverage["counted_rows"], coverage["not_counted_rows"]) == (3, 6)
    added = {(g["run"], g["gap"]): g["added"] for g in coverage["gaps"]}
    assert added == {
        ("tax1", "coding"): 0,  # the merged coding rows are what it had, not gains
        ("tax1", "cooking"): 2,
        ("tax2", "gardening"): 1,  # the second run's gaps are in the report too
    }
    had = {g.id: g.have for run in ("tax1", "tax2") for g in store.gaps(run)}
    assert all(g["have"] == had[g["gap"]] for g in coverage["gaps"])
    assert all(g["after"] == g["have"] + g["added"] for g in coverage["gaps"])
    markdown = (out / "eval_report.md").read_text()
    assert "| tax2 | gardening | 0 | 1 | 1 |" in markdown


def test_export_folders_are_group_readable_by_default_and_the_mode_is_configurable(
    store: Store, model_dir: Path, tmp_path: Path, embedder: Any, two_runs_and_a_merge: Path
) -> None:
    out = exported(store, model_dir, tmp_path, embedder, evaluate=False)
    assert stat.S_IMODE(out.stat().st_mode) == 0o750
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o640}
    private = exported(store, model_dir, tmp_path / "p", embedder, evaluate=False, mode=0o700)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in private.iterdir()} == {0o600}


def test_the_cli_export_takes_its_mode_from_the_settings(
    store: Store, model_dir: Path, tmp_path: Path, two_runs_and_a_merge: Path
) -> None:
    env = cli_env(store, GAPFILL_EXPORT_MODE="0700")
    out = tmp_path / "cli-export"
    args = ["export", "--run", "tax1", "--kind", "sft", "--out", str(out), "--no-evaluate"]
    done = run_cli(env, *args, "--tokenizer", str(model_dir))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    bad = run_cli(cli_env(store, GAPFILL_EXPORT_MODE="999"), *args, "--out", str(tmp_path / "x"))
    assert bad.returncode == 1 and "export_mode" in bad.stderr and "Traceback" not in bad.stderr


def test_a_standalone_eval_with_a_run_puts_each_row_under_the_gap_it_falls_into(
    store: Store, tmp_path: Path, model_dir: Path, two_runs_and_a_merge: Path
) -> None:
    dataset = tmp_path / "new.jsonl"
    rows = [sft(q, "An answer.") for q in [*NEW_COOKING, "Tell me about the history of Rome."]]
    dataset.write_text("".join(json.dumps(r.model_dump(mode="json")) + "\n" for r in rows))
    done = run_cli(
        cli_env(store),
        *["eval", str(dataset), "--stage", "sft", "--out", str(tmp_path / "ev")],
        *["--run", "tax1", "--tokenizer", str(model_dir)],
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "ev" / "eval_report.json").read_text())
    per_gap = {g["gap"]: g["rows"] for g in report["refusals"]["per_gap"]}
    assert per_gap == {"cooking": 2, "no gap": 1}
    assert report["coverage"]["counted"].startswith(f"every row of {dataset}")
