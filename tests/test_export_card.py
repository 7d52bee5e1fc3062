"""The dataset card, the manifest's counts and the eval report's coverage say exactly what an
export holds: rows by origin (merged existing, accepted as generated, accepted after an edit),
and coverage gained only from what the export adds, per run, over every run exported."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from generator.coverage import ReferencePrompt, Taxonomy, TaxonomyCell, analyse
from generator.dataset_import import ingest_file
from generator.dataset_reader import read_examples
from generator.evaluation.measured import measured_on
from generator.export.manifest import dataset_card
from generator.export.reports import gap_reports_of, measured_runs
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
    if not path.exists():
        rows = [sft(q, "An existing answer.") for q in CODING + COOKING]
        path.write_text("".join(json.dumps(r.model_dump(mode="json")) + "\n" for r in rows))
    return path


def measured_run(
    store: Store,
    embedder: Any,
    data: Path,
    run: str,
    cells: list[TaxonomyCell] | None = None,
    reference: list[ReferencePrompt] | None = None,
) -> None:
    """A run whose gaps were measured on the dataset ``data``, as `gapfill gaps --run` does."""
    existing = [row.example for row in read_examples(data).examples]
    taxonomy = Taxonomy(cells=cells) if cells else None
    report = analyse(run, data, existing, embedder, taxonomy=taxonomy, reference=reference)
    store.save_run(RunConfig(run_id=run, existing=[str(data.resolve())]))
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
    cell, data = TaxonomyCell, existing_file(tmp_path)
    measured_run(
        store,
        embedder,
        data,
        "tax1",
        [
            cell(id="coding", description="programming and code", examples=CODING[:2]),
            cell(id="cooking", description="cooking and recipes", examples=COOKING),
        ],
    )
    measured_run(
        store,
        embedder,
        data,
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
    return data


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def table(markdown: str, head: str) -> list[str]:
    """The rows of the table under ``head``, up to the first line that is not a row."""
    text = markdown.splitlines()
    rows = text[text.index(head) + 2 :]
    return rows[: next((i for i, line in enumerate(rows) if not line.startswith("| ")), None)]


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
        "auto_decided": 0,
    }
    assert sum(counts["by_origin"].values()) == counts["rows"]
    card = (out / "README.md").read_text()
    assert "Nothing here was exported without" not in card, "6 of 9 rows were never reviewed"
    assert "Of 9 rows, 3 went through gapfill's review" in card
    assert "The other 6 are the existing dataset merged in" in card
    assert "| accepted by a human after an edit | 1 |" in card
    assert "| merged existing dataset (not reviewed in gapfill) | 6 |" in card
    gap_table = table(card, "| run | gap | rows |")
    assert gap_table[-1] == (  # the merge is the dataset both runs' gaps were measured on
        "| - | merged existing rows (no gap here: they are the dataset the gaps were measured "
        "on, in each gap's 'have') | 6 |"
    )
    assert sum(int(line.rsplit("|", 2)[1]) for line in gap_table) == 9, "the gap table adds up"


def test_the_card_says_what_provenance_records_of_a_merged_row(
    store: Store, model_dir: Path, tmp_path: Path, embedder: Any, two_runs_and_a_merge: Path
) -> None:
    out = exported(store, model_dir, tmp_path, embedder, merge=two_runs_and_a_merge, evaluate=False)
    card = " ".join((out / "README.md").read_text().split())
    assert "`provenance.jsonl` record only the file and line each came from" in card
    merged = [p for p in lines(out / "provenance.jsonl") if p["item_id"] is None]
    assert len(merged) == 6, "a line for every merged row"
    assert all(
        set(p) == {"item_id", "split", "row", "source", "source_file", "source_line"}
        and (p["source"], p["source_file"]) == ("existing", str(two_runs_and_a_merge))
        for p in merged
    )
    assert sorted(p["source_line"] for p in merged) == [1, 2, 3, 4, 5, 6]


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
    assert coverage["not_counted"] == {"merged_existing": 6, "no_gap_report": 0}
    assert coverage["runs_without_gap_report"] == []
    markdown = (out / "eval_report.md").read_text()
    assert "| tax2 | gardening | gardening | 0 | 1 | 1 |" in markdown
    assert "Not counted: 6 merged existing rows (existing data, not added here)." in markdown


def test_merged_rows_are_the_gaps_have_only_when_the_merge_is_the_measured_dataset(
    store: Store, model_dir: Path, tmp_path: Path, embedder: Any, two_runs_and_a_merge: Path
) -> None:
    out = exported(store, model_dir, tmp_path, embedder, merge=two_runs_and_a_merge)
    measured = json.loads((out / "eval_report.json").read_text())["coverage"]["measured_on"]
    assert [(m["run"], m["merged_is_measured"]) for m in measured] == [
        ("tax1", True),
        ("tax2", True),
    ]
    markdown = " ".join((out / "eval_report.md").read_text().split())
    assert (
        f"run tax1's gaps were measured on {two_runs_and_a_merge} (6 rows, "
        f"{measured[0]['measured_at']}); the merged file is that dataset (the same content, "
        "6 rows): 'have' counts its rows, so they are not counted again as added." in markdown
    )
    card = card_as_measured(store, out, two_runs_and_a_merge)
    assert "they are the dataset the gaps were measured on, in each gap's 'have'" in card

    other = tmp_path / "other.jsonl"  # the measured rows and one more: another dataset
    other.write_text(
        two_runs_and_a_merge.read_text() + sft("What is a monad?").model_dump_json() + "\n"
    )
    out = exported(store, model_dir, tmp_path / "o", embedder, merge=other)
    [tax1, _] = json.loads((out / "eval_report.json").read_text())["coverage"]["measured_on"]
    assert (tax1["merged"], tax1["merged_is_measured"]) == (str(other), False)
    markdown = " ".join((out / "eval_report.md").read_text().split())
    assert f"the merged file {other} has other content (sha256 " in markdown
    assert (
        "so it is not known to be the dataset these gaps were measured on: 'have' (and so "
        "'after') counts that dataset's rows, not this export's." in markdown
    )
    assert "not counted again" not in markdown
    card = card_as_measured(store, out, other)
    assert "not known to be the dataset the gaps were measured on" in card
    assert "has other content" in card, "the card gives each run's reason"
    assert "measured_on" in json.loads((out / "manifest.json").read_text()), "the export's own"
    copy = tmp_path / "copy.jsonl"  # the measured content under another name: the same dataset
    copy.write_bytes(two_runs_and_a_merge.read_bytes())
    out = exported(store, model_dir, tmp_path / "c", embedder, merge=copy)
    measured = json.loads((out / "eval_report.json").read_text())["coverage"]["measured_on"]
    assert all(m["merged_is_measured"] for m in measured)


def card_as_measured(store: Store, out: Path, merge: Path) -> str:
    """The export's card from its manifest with each run's ``measured_on`` added to it."""
    manifest = json.loads((out / "manifest.json").read_text())
    measured = measured_runs(store, manifest["runs"], merge)
    manifest["measured_on"] = [m.model_dump() for m in measured.values()]
    return " ".join(dataset_card(manifest).split())


def test_a_changed_measured_file_is_not_taken_for_the_dataset_the_gaps_were_measured_on(
    store: Store, two_runs_and_a_merge: Path
) -> None:
    data = two_runs_and_a_merge
    [hashed] = gap_reports_of(store, ["tax1"]).values()
    assert hashed.data_sha256 is not None
    # A gap report from before data_sha256: the file is compared by path, time and rows.
    report = hashed.model_copy(update={"data_sha256": None})
    recorded = [str(data.resolve())]
    assert measured_on("tax1", report, recorded, data).merged_is_measured is True
    data.write_text(data.read_text() + sft("What is a monad?").model_dump_json() + "\n")
    assert "has other content" in measured_on("tax1", hashed, recorded, data).note
    later = report.created_at.timestamp() + 60
    os.utime(data, (later, later))
    changed = measured_on("tax1", report, recorded, data)
    assert changed.merged_is_measured is False
    assert "was modified after the gaps were measured" in changed.note
    earlier = report.created_at.timestamp() - 60  # a row more, however old the file says it is
    os.utime(data, (earlier, earlier))
    assert "has 7 rows, not 6" in measured_on("tax1", report, recorded, data).note
    relative = report.model_copy(update={"data": "my_sft.jsonl"})
    unknown = measured_on("tax1", relative, [], data)
    assert unknown.merged_is_measured is False and "cannot be compared" in unknown.note


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


GARDENING = ["How do I prune a rose bush in winter?", "When should I repot a houseplant?"]
ASTRONOMY = ["How far away is the Andromeda galaxy?", "Why does Jupiter have a red spot?"]


def test_two_runs_gaps_of_one_name_are_kept_apart_in_the_card_manifest_and_report(
    store: Store, model_dir: Path, tmp_path: Path, embedder: Any
) -> None:
    # Every run names its reference gaps ref-N (N: the topic): two runs' ref-1 are two gaps.
    data = existing_file(tmp_path)
    for run, prompts, label in (("refA", GARDENING, "gardening"), ("refB", ASTRONOMY, "stars")):
        reference = [ReferencePrompt(text=t, label=label, line=i) for i, t in enumerate(prompts)]
        measured_run(store, embedder, data, run, reference=reference)
        assert [(g.id, g.label) for g in store.gaps(run)] == [("ref-1", label)]
    store.put_many(
        screen_all(
            [generated("refA", "ref-1", q) for q in GARDENING]
            + [generated("refB", "ref-1", ASTRONOMY[0])]
        )
    )
    review(store, "refA")
    review(store, "refB")
    out = exported(store, model_dir, tmp_path, embedder, runs=["refA", "refB"], merge=data)

    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert counts["by_gap"] == {"refA": {"ref-1": 2}, "refB": {"ref-1": 1}}
    card = (out / "README.md").read_text()
    assert table(card, "| run | gap | rows |")[:2] == [
        "| refA | ref-1 | 2 |",
        "| refB | ref-1 | 1 |",
    ]
    report = json.loads((out / "eval_report.json").read_text())
    coverage = {(g["run"], g["gap"]): (g["label"], g["added"]) for g in report["coverage"]["gaps"]}
    assert coverage == {("refA", "ref-1"): ("gardening", 2), ("refB", "ref-1"): ("stars", 1)}
    per_gap = {g["gap"]: g["rows"] for g in report["refusals"]["per_gap"]}
    assert per_gap == {"existing": 6, "refA/ref-1": 2, "refB/ref-1": 1}
    markdown = (out / "eval_report.md").read_text()
    assert "| refA | ref-1 | gardening | 0 | 2 | 2 |" in markdown
    assert "| refB | ref-1 | stars | 0 | 1 | 1 |" in markdown
    assert "| refA/ref-1 | 2 | 0 |" in markdown and "| refB/ref-1 | 1 | 0 |" in markdown


def test_one_runs_card_names_its_gaps_without_the_run(
    store: Store, model_dir: Path, tmp_path: Path, embedder: Any, two_runs_and_a_merge: Path
) -> None:
    out = exported(store, model_dir, tmp_path, embedder, runs=["tax1"])
    assert table((out / "README.md").read_text(), "| gap | rows |") == ["| cooking | 2 |"]
    report = json.loads((out / "eval_report.json").read_text())
    assert [g["gap"] for g in report["refusals"]["per_gap"]] == ["cooking"]


def test_rows_of_a_run_without_a_gap_report_are_named_as_not_counted(
    store: Store, model_dir: Path, tmp_path: Path, embedder: Any, two_runs_and_a_merge: Path
) -> None:
    imported = tmp_path / "imported.jsonl"
    rows = [sft("What is a monad?", "A monoid in the category of endofunctors."), sft("Hi?")]
    imported.write_text("".join(r.model_dump_json() + "\n" for r in rows))
    ingest_file(store, imported, "imp1")  # as `gapfill import` does: a run with no gap report
    review(store, "imp1")
    out = exported(store, model_dir, tmp_path, embedder, runs=["tax1", "imp1"])
    coverage = json.loads((out / "eval_report.json").read_text())["coverage"]
    assert (coverage["runs"], coverage["runs_without_gap_report"]) == (["tax1"], ["imp1"])
    assert (coverage["counted_rows"], coverage["not_counted_rows"]) == (2, 2)
    assert coverage["not_counted"] == {"merged_existing": 0, "no_gap_report": 2}
    markdown = (out / "eval_report.md").read_text()
    section = markdown[markdown.index("## Coverage") : markdown.index("## Contamination")]
    assert (
        "Counted: the reviewed rows of each run with a gap report, into that run's gaps (2 rows). "
        "Not counted: 2 rows of run imp1, which has no gap report to count them into." in section
    )
    assert "merged" not in section, "nothing was merged"
