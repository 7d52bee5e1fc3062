"""Coverage gaps on real data: the 175 self-instruct seed tasks as the existing dataset, the 252
user-oriented instructions (labelled by app) as the reference set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generator.coverage import (
    GapReport,
    TaxonomyCell,
    analyse,
    cell_targets,
    count_into_gaps,
    load_reference,
    load_taxonomy,
    short_label,
)
from generator.dataset_reader import load_examples
from generator.embeddings import Embedder
from generator.errors import DataFileError, InvalidRowError
from generator.schema import SFTExample
from generator.store import Store
from tests.factories import candidate, cli_env, run_cli, sft


@pytest.fixture(scope="module")
def seed_tasks(real_data: Path) -> list[SFTExample]:
    return load_examples(real_data / "self-instruct" / "seed_tasks.jsonl")  # type: ignore[return-value]


@pytest.fixture(scope="module")
def reference_path(real_data: Path) -> Path:
    return real_data / "self-instruct" / "user_oriented_instructions.jsonl"


@pytest.fixture(scope="module")
def report(seed_tasks: list[SFTExample], reference_path: Path, embedder: Embedder) -> GapReport:
    reference = load_reference(reference_path, "motivation_app")
    return analyse("run-1", "seed_tasks.jsonl", seed_tasks, embedder, reference=reference)


def test_each_reference_gap_names_the_existing_example_nearest_its_centroid(
    report: GapReport, seed_tasks: list[SFTExample], embedder: Embedder
) -> None:
    import numpy as np

    prompts = [example.prompt_text() for example in seed_tasks]
    vectors = embedder.embed(prompts)
    for gap in report.gaps:
        centroid = np.asarray(report.centroids[gap.id], dtype=np.float32)
        best = int(np.argmax(vectors @ centroid))
        assert gap.nearest_existing == prompts[best], gap.id
        assert gap.nearest_similarity == pytest.approx(float(vectors[best] @ centroid), abs=1e-3)


def test_the_real_reference_set_has_uncovered_clusters_with_app_labels(report: GapReport) -> None:
    assert len(report.reference_coverage) == 252
    uncovered = [r for r in report.reference_coverage if not r.covered]
    assert 100 < len(uncovered) < 252
    assert 2 <= len(report.gaps) <= 12
    assert all(g.kind == "reference" and g.deficit > 0 for g in report.gaps)
    assert sum(g.target - g.have for g in report.gaps) == len(uncovered)
    apps = {r.label for r in report.reference_coverage}
    assert {g.label for g in report.gaps} <= apps, "each cluster is named by its majority label"
    assert [g.deficit for g in report.gaps] == sorted(
        (g.deficit for g in report.gaps), reverse=True
    )
    assert all(r.gap_id for r in uncovered) and not any(
        r.gap_id for r in report.reference_coverage if r.covered
    )


def test_a_reference_prompt_copied_into_the_dataset_is_covered(
    seed_tasks: list[SFTExample], reference_path: Path, report: GapReport, embedder: Embedder
) -> None:
    target = next(r for r in report.reference_coverage if not r.covered)
    reference = load_reference(reference_path, "motivation_app")
    dataset = [*seed_tasks, sft(target.text, "An answer.")]
    again = analyse("run-1", "x", dataset, embedder, reference=reference)
    copied = next(r for r in again.reference_coverage if r.line == target.line)
    assert copied.covered and copied.similarity > 0.99
    assert copied.nearest == target.text


def test_gaps_are_topics_of_the_reference_set_and_stay_put_when_prompts_get_covered(
    seed_tasks: list[SFTExample], reference_path: Path, report: GapReport, embedder: Embedder
) -> None:
    """Covering a few prompts shrinks their gaps and leaves every other prompt where it was:
    the topics come from the reference set alone, not from which prompts are uncovered."""
    reference = load_reference(reference_path, "motivation_app")
    copied = [r for r in report.reference_coverage if not r.covered][::40][:4]
    dataset = [*seed_tasks, *(sft(r.text, "An answer.") for r in copied)]
    again = analyse("run-1", "x", dataset, embedder, reference=reference)
    before = {r.line: r.gap_id for r in report.reference_coverage if r.gap_id}
    after = {r.line: r.gap_id for r in again.reference_coverage if r.gap_id}
    newly_covered = set(before) - set(after)  # the copies, and prompts close to one
    assert {r.line for r in copied} <= newly_covered and set(after) <= set(before)
    assert len(after) > 100

    def together(gaps: dict[int, str]) -> set[frozenset[int]]:
        return {
            frozenset(line for line in after if gaps[line] == gap) for gap in set(gaps.values())
        }

    assert together(after) == together(before) - {frozenset()}, "the same prompts share a gap"
    assert all(after[line] == before[line] for line in after), "and it keeps its id"
    labels = {g.id: g.label for g in report.gaps}
    assert all(labels[g.id] == g.label for g in again.gaps), "and its label"
    deficits = sum(g.deficit for g in report.gaps) - len(newly_covered)
    assert sum(g.deficit for g in again.gaps) == deficits


def test_accepted_items_covering_a_gap_shrink_its_deficit(
    store: Store, report: GapReport, embedder: Embedder
) -> None:
    gap = report.gaps[0]
    fillers = [
        candidate(i, gap=gap.id).model_copy(
            update={"payload": sft(text, "A helpful answer.")}, deep=True
        )
        for i, text in enumerate(gap.examples[:5])
    ]
    fillers = [f.model_copy(update={"id": f.compute_id()}) for f in fillers]
    other = candidate(99, gap=gap.id)  # reviewed but rejected: must not count
    store.put_many([*fillers, other])
    while (lease := store.claim("alice", "run-1")) is not None:
        verdict = "reject" if lease.item_id == other.id else "accept"
        store.decide(lease.item_id, "alice", verdict, lease.version)
    accepted = store.accepted_payloads("run-1")
    assert len(accepted) == 5
    gained = count_into_gaps(report, [p.prompt_text() for p in accepted], embedder)
    assert gained[gap.id] >= 4
    assert sum(gained.values()) - gained[gap.id] <= 1
    assert max(gap.target - gap.have - gained[gap.id], 0) < gap.deficit


TAXONOMY = """
threshold: 0.2
cells:
  - id: cooking
    description: Cooking, recipes, ingredients and kitchen techniques
    examples: ["How do I make a tomato sauce?", "How long should I boil an egg?"]
    share: 0.5
  - id: programming
    description: Writing and debugging computer programs and code
    examples: ["Write a Python function that reverses a list."]
    target: 4
    code: true
  - id: travel
    description: Planning trips, flights, hotels and sightseeing
    labels: {domain: leisure}
"""


def test_examples_go_to_their_nearest_taxonomy_cell(tmp_path: Path, embedder: Embedder) -> None:
    path = tmp_path / "taxonomy.yaml"
    path.write_text(TAXONOMY)
    taxonomy = load_taxonomy(path)
    dataset = [
        sft("What spices go well in a lentil soup?"),
        sft("How do I caramelise onions without burning them?"),
        sft("How do I debug a segmentation fault in my C program?"),
        sft("Which museums should I visit in Rome on a weekend trip?"),
        sft("Xq zzv bbrrt 42 ###"),
    ]
    report = analyse("run-t", "x", dataset, embedder, taxonomy=taxonomy, taxonomy_path=str(path))
    by_id = {g.id: g for g in report.gaps}
    assert (by_id["cooking"].have, by_id["programming"].have, by_id["travel"].have) == (2, 1, 1)
    assert report.unassigned == 1
    gibberish = report.assignments[4]
    assert gibberish.cell is None and gibberish.confidence < taxonomy.threshold
    assert [a.cell for a in report.assignments[:4]] == [
        "cooking",
        "cooking",
        "programming",
        "travel",
    ]
    assert all(a.confidence >= taxonomy.threshold for a in report.assignments[:4])
    assert by_id["cooking"].target == 3  # share 0.5 of 5 examples, rounded up
    # What the dataset already has nearest each cell: the reviewer's yardstick for the gap.
    assert by_id["programming"].nearest_existing.startswith("How do I debug a segmentation")
    assert by_id["travel"].nearest_existing.startswith("Which museums")
    assert 0 < (by_id["travel"].nearest_similarity or 0) <= 1
    assert by_id["programming"].target == 4 and by_id["programming"].deficit == 3
    assert [g.id for g in report.gaps if g.code] == ["programming"], "the cell marked code"
    # No target given: an even part of what the others leave, and 3 + 4 leave none of 5.
    assert by_id["travel"].target == 0
    assert by_id["cooking"].examples[0] in {
        "What spices go well in a lentil soup?",
        "How do I caramelise onions without burning them?",
    }
    gained = count_into_gaps(report, ["Give me a recipe for banana bread."], embedder)
    assert gained == {"cooking": 1, "programming": 0, "travel": 0}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "cells: [{id: a, description: Cooking things, colour: red}]",
            r"cells\.0\.colour: unknown key; README.md.s .Coverage gaps. lists the keys",
        ),
        ("cells: [{id: a}]", r"cells\.0\.description: Field required"),
        (
            "cells: [{id: a, description: x}]",
            r"cells\.0\.description: String should have at least 3",
        ),
        (
            "cells: [{id: a, description: Cook, share: 0.7},"
            " {id: b, description: Code, share: 0.6}]",
            "shares add up to 1.30",
        ),
        ("cells: [{id: a, description: Cook}, {id: a, description: Code}]", "repeated: a"),
        ("cells: [{id: a, description: Cook, share: 0.5, target: 3}]", "not both"),
        ("cells: []", "cells: List should have at least 1 item"),
        ("colour: red", r"tax.yaml:1: colour: unknown key"),
        (
            "cells:\n  - id: a\n    descripton: Cooking\n",
            r"tax.yaml:3: cells.0.descripton: unknown key; did you mean 'description'\?",
        ),
        ("- a", "expected a mapping"),
        ("cells: [unclosed", "not valid YAML"),
    ],
)
def test_a_bad_taxonomy_is_one_error_naming_the_key(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "tax.yaml"
    path.write_text(content)
    with pytest.raises(DataFileError, match=message):
        load_taxonomy(path)


def test_an_unreadable_reference_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "ref.jsonl"
    path.write_text('{"prompt": "ok"}\n{broken\n')
    with pytest.raises(InvalidRowError, match=r"ref\.jsonl:2: no reference prompt: invalid JSON"):
        load_reference(path)
    path.write_text('{"prompt": "ok"}\n{"answer": "no prompt here"}\n')
    with pytest.raises(
        InvalidRowError, match=r"ref\.jsonl:2: no reference prompt: cannot tell the format"
    ):
        load_reference(path)


def test_an_empty_dataset_is_refused(embedder: Embedder, tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="no examples"):
        analyse("r", "empty.jsonl", [], embedder, reference=load_reference(_one_prompt(tmp_path)))


def _one_prompt(tmp_path: Path) -> Path:
    path = tmp_path / "one.jsonl"
    path.write_text('{"prompt": "Plan a trip to Lisbon."}\n')
    return path


def test_the_embedding_cache_means_each_text_is_embedded_once(tmp_path: Path) -> None:
    embedder = Embedder(cache_dir=tmp_path)
    first = embedder.embed(["a sentence", "another one", "a sentence"])
    assert embedder.computed == 2
    again = Embedder(cache_dir=tmp_path)
    second = again.embed(["another one", "a sentence"])
    assert again.computed == 0
    assert (second == first[[1, 0]]).all()


@pytest.mark.slow
def test_gapfill_gaps_stores_gaps_and_tasks_and_writes_the_report(
    store: Store,
    server_url: str,
    real_data: Path,
    reference_path: Path,
    tmp_path: Path,
) -> None:
    data = real_data / "self-instruct" / "seed_tasks.jsonl"
    out, png = tmp_path / "report.json", tmp_path / "chart.png"
    filters = tmp_path / "filters.yaml"
    filters.write_text("filters: {near_duplicate_threshold: 0.7, judge: false}\n")
    humaneval = real_data / "humaneval" / "HumanEval.jsonl.gz"
    env = cli_env(store, server_url)
    result = run_cli(
        env,
        "gaps",
        "--data",
        str(data),
        "--reference",
        str(reference_path),
        "--label-field",
        "motivation_app",
        "--run",
        "cov",
        "--json",
        str(out),
        "--png",
        str(png),
        "--eval",
        str(humaneval),
        "--filters",
        str(filters),
        "--reviewers-per-item",
        "3",
        "--overlap-rule",
        "unanimous",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "reference prompts covered:" in result.stdout
    config = store.get_run("cov")
    assert config is not None and config.existing == [str(data.resolve())]
    assert config.eval_sets == [str(humaneval.resolve())]
    assert config.filters.near_duplicate_threshold == 0.7, "scoring jobs read these"
    assert store.review_rule("cov") == (3, "unanimous"), "the decide script reads this"
    report = json.loads(out.read_text())
    assert all(
        {"id", "kind", "label", "have", "target", "deficit", "examples"} <= set(g)
        for g in report["gaps"]
    )
    assert all({"text", "similarity", "covered"} <= set(r) for r in report["reference_coverage"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    gaps = store.gaps("cov")
    assert [g.id for g in gaps] and all(g.run_id == "cov" for g in gaps)
    done, total = store.task_counts("cov")
    assert done == 0 and total == sum(-(-g.deficit // 5) for g in gaps)
    task = store.get_tasks(store.open_tasks("cov")[:1])[0]
    assert task.template_name == "instructions.jinja" and task.template_hash
    assert task.gap_id in {g.id for g in gaps}
    compare = run_cli(env, "gaps", "--compare", "cov", timeout=300)
    assert compare.returncode == 0, compare.stderr
    assert "0 accepted items counted in" in compare.stdout and "after" in compare.stdout


def test_gapfill_gaps_with_a_bad_taxonomy_writes_nothing(
    store: Store, server_url: str, real_data: Path, tmp_path: Path
) -> None:
    env = cli_env(store, server_url)
    bad = tmp_path / "tax.yaml"
    bad.write_text("cells: [{id: a, description: Cooking, colour: red}]")
    data = real_data / "self-instruct" / "seed_tasks.jsonl"
    result = run_cli(
        env, "gaps", "--data", str(data), "--taxonomy", str(bad), "--run", "nope", timeout=300
    )
    assert result.returncode == 1
    assert f"{bad}:1: cells.0.colour: unknown key" in result.stderr
    assert "Traceback" not in result.stderr
    assert store.runs() == []
    odd = run_cli(
        env, "gaps", "--data", str(data), "--run", "x", "--overlap-rule", "loudest", timeout=300
    )
    message = " ".join(odd.stderr.replace("│", " ").split())  # typer's usage error, boxed
    assert odd.returncode == 2 and "'loudest' is not one of 'majority', 'unanimous'" in message
    assert store.runs() == []


def test_cells_without_a_target_share_what_the_counts_and_shares_leave() -> None:
    """150 rows, a 0.2 share and a count of 10: the three other cells split the 110 left, and the
    targets add up to the dataset (they once got 50 each: 190 for 150 rows)."""
    cells = [
        TaxonomyCell(id="cooking", description="Cooking", share=0.2),
        TaxonomyCell(id="coding", description="Coding", target=10),
        *(TaxonomyCell(id=f"free{i}", description="Anything") for i in range(3)),
    ]
    targets = cell_targets(cells, 150)
    assert targets == [30, 10, 37, 37, 36]
    assert sum(targets) == 150


def test_counts_and_shares_that_take_the_whole_dataset_leave_the_other_cells_nothing() -> None:
    cells = [
        TaxonomyCell(id="cooking", description="Cooking", target=200),
        TaxonomyCell(id="travel", description="Travel"),
    ]
    assert cell_targets(cells, 150) == [200, 0]


def test_a_reference_gap_without_labels_is_named_by_its_prompt_cut_at_a_word() -> None:
    prompt = "Write a friendly reminder to my landlord that the kitchen tap has been dripping"
    assert short_label(prompt) == "Write a friendly reminder to my landlord that the kitchen …"
    assert short_label("  two\n words ") == "two words"
    assert short_label("x" * 80) == "x" * 59 + "…"
