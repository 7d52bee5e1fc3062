"""The texts behind a run's evidence ids (generator/run_texts.py), read from the run's own inputs
in the store, on a host that has none of the files the run was created from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from generator.embeddings import Embedder
from generator.run_inputs import InputCache, pack_run
from generator.run_texts import RunTexts
from generator.schema import RunConfig
from generator.store import Store
from tests.factories import candidate

DATA = Path(__file__).parent / "data"


def packed_run(store: Store, tmp_path: Path, embedder: Embedder) -> RunConfig:
    """A run whose existing data and eval set were copied to a directory then deleted: only the
    store holds them."""
    creator = tmp_path / "creator"
    creator.mkdir()
    existing = shutil.copy(DATA / "self-instruct" / "seed_tasks.jsonl", creator)
    evals = shutil.copy(DATA / "humaneval" / "HumanEval.jsonl.gz", creator)
    config = pack_run(
        store,
        RunConfig.model_validate({"run_id": "run-1", "existing": [existing], "eval_sets": [evals]}),
        embedder,
    )
    shutil.rmtree(creator)
    return config


def test_eval_items_existing_rows_and_candidates_by_their_evidence_ids(
    store: Store, tmp_path: Path, embedder: Embedder
) -> None:
    config = packed_run(store, tmp_path, embedder)
    texts = RunTexts(store, config, InputCache(tmp_path / "inputs"))
    eval_text = texts.eval_item("HumanEval/0")
    assert eval_text is not None and "def has_close_elements" in eval_text
    first = json.loads((DATA / "self-instruct" / "seed_tasks.jsonl").open().readline())
    row = texts.neighbour("seed_tasks.jsonl:1")
    assert row is not None and row.startswith(first["instruction"])
    item = candidate(7)
    store.put(item)
    assert texts.neighbour(item.id) == "\n\n".join(m.content for m in item.payload.turns())  # type: ignore[union-attr]


def test_an_unknown_id_is_no_text_and_never_an_error(
    store: Store, tmp_path: Path, embedder: Embedder
) -> None:
    config = packed_run(store, tmp_path, embedder)
    texts = RunTexts(store, config, InputCache(tmp_path / "inputs"))
    assert texts.eval_item("HumanEval/9999") is None
    assert texts.neighbour("seed_tasks.jsonl:100000") is None
    assert texts.neighbour("0" * 32) is None
    assert texts.neighbour("HumanEval.jsonl.gz:1") is None, "an eval file is no existing data"


def test_a_run_whose_inputs_are_gone_gives_no_texts_rather_than_failing(
    store: Store, tmp_path: Path
) -> None:
    config = RunConfig.model_validate(
        {
            "run_id": "old",
            "existing": [str(tmp_path / "gone.jsonl")],
            "eval_sets": [str(tmp_path / "gone.gz")],
        }
    )
    texts = RunTexts(store, config, InputCache(tmp_path / "inputs"))
    assert texts.eval_item("HumanEval/0") is None
    assert texts.neighbour("gone.jsonl:1") is None
