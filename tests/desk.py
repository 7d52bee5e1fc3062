"""A reviewer's desk with real signals: a run whose gaps are measured on the real self-instruct
data, whose inputs travel in the store, and whose items are real model outputs (plus a planted
eval item, a planted e-mail and a duplicate of an existing row) scored by the real filter
pipeline with the real embedding model. Every item is put in review (as an admin's "reopen"
puts an auto-rejected one), so the queue shows each kind of evidence."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

from generator.coverage import analyse, load_reference
from generator.dataset_reader import read_examples
from generator.embeddings import Embedder
from generator.filters.contamination import load_eval_items
from generator.filters.pipeline import FilterPipeline
from generator.filters.settings import FilterSettings
from generator.filters.stored_run import existing_indexes
from generator.run_inputs import pack_run
from generator.schema import (
    Candidate,
    CandidateKind,
    CandidateStatus,
    PreferenceExample,
    Provenance,
    RunConfig,
)
from generator.store import Store
from tests.conftest import REAL_DATA
from tests.factories import pair, sft

RUN = "desk"
SEED_TASKS = REAL_DATA / "self-instruct" / "seed_tasks.jsonl"
REFERENCE = REAL_DATA / "self-instruct" / "user_oriented_instructions.jsonl"
HUMANEVAL = REAL_DATA / "humaneval" / "HumanEval.jsonl.gz"
PREDICTIONS = REAL_DATA / "self-instruct" / "predictions" / "text-davinci-003.jsonl"
HH = REAL_DATA / "hh-rlhf" / "harmless-base-test.jsonl.gz"


@dataclass
class Desk:
    """The seeded run's item ids, by what each one shows."""

    contaminated: str
    duplicate: str
    pii: str
    pair: str
    code: str
    long: str
    plain: list[str]

    def queue_order(self) -> list[str]:
        return [self.contaminated, self.pair, self.duplicate, self.pii, self.code, self.long]


def _hh_pair(index: int) -> PreferenceExample:
    with gzip.open(HH, "rt", encoding="utf-8") as rows:
        for number, line in enumerate(rows):
            if number == index:
                row = json.loads(line)
                return PreferenceExample.model_validate(_split_hh(row))
    raise AssertionError(f"no HH row {index}")


def _split_hh(row: dict[str, str]) -> dict[str, object]:
    """The shared prompt and the two final answers of an HH row (its last Assistant turn)."""
    cut = row["chosen"].rfind("\n\nAssistant:")
    prompt = row["chosen"][:cut].split("\n\nHuman:")[-1].strip()
    chosen = row["chosen"][cut + len("\n\nAssistant:") :].strip()
    rejected = row["rejected"][row["rejected"].rfind("\n\nAssistant:") + 12 :].strip()
    return pair(prompt, chosen, rejected).model_dump()


def _predictions(count: int) -> list[tuple[str, str]]:
    rows = []
    for line in PREDICTIONS.open(encoding="utf-8"):
        row = json.loads(line)
        if row.get("response", "").strip():
            rows.append((row["prompt"].strip(), row["response"].strip()))
    return rows[:count]


def seed_desk(store: Store, embedder: Embedder, work: Path, plain: int = 6) -> Desk:
    reference = load_reference(REFERENCE)
    existing = [row.example for row in read_examples(SEED_TASKS).examples]
    report = analyse(
        RUN, SEED_TASKS, existing, embedder, reference=reference, reference_path=str(REFERENCE)
    )
    store.save_gaps(RUN, report.gaps, report.model_dump_json())
    config = RunConfig.model_validate(
        {"run_id": RUN, "existing": [str(SEED_TASKS)], "eval_sets": [str(HUMANEVAL)]}
    )
    store.save_run(pack_run(store, config, embedder))
    gap = report.gaps[0].id

    answers = _predictions(plain + 2)
    humaneval = dict(load_eval_items(HUMANEVAL))["HumanEval/0"]
    seed = json.loads(SEED_TASKS.open(encoding="utf-8").readline())
    long_answer = "\n\n".join(answer for _, answer in answers[:4])
    code = (
        "Here is a function that reverses the words of a sentence:\n\n```python\n"
        "def reverse_words(sentence: str) -> str:\n"
        '    """Return the words of sentence in reverse order."""\n'
        '    return " ".join(reversed(sentence.split()))\n```\n\n'
        'For example, `reverse_words("a b c")` returns `"c b a"`.'
    )
    examples = {  # in queue order (priority)
        "contaminated": sft("Complete this function.", humaneval),
        "pair": _hh_pair(3),
        "duplicate": sft(seed["instruction"], seed["instances"][0]["output"]),
        "pii": sft(answers[0][0], answers[0][1] + "\n\nQuestions? Mail jane.doe@example.org."),
        "code": sft("Write a Python function that reverses the words in a sentence.", code),
        "long": sft("Summarise these notes for me, please.", long_answer),
    }
    examples |= {f"plain-{i}": sft(q, a) for i, (q, a) in enumerate(answers[2 : 2 + plain])}
    candidates = [
        Candidate(
            kind=CandidateKind.PREFERENCE
            if isinstance(example, PreferenceExample)
            else CandidateKind.SFT,
            payload=example,
            run_id=RUN,
            gap_id=gap,
            provenance=Provenance(backend="local", model="text-davinci-003", run_id=RUN),
            priority=float(100 - index),
        )
        for index, example in enumerate(examples.values())
    ]
    shared = existing_indexes([SEED_TASKS], FilterSettings(), embedder, work / "index-cache")
    pipeline = FilterPipeline.build(
        FilterSettings(),
        eval_items=load_eval_items(HUMANEVAL),
        embedder=embedder,
        shared=shared,
        centroids=report.centroids,
    )
    scored = [
        c.model_copy(update={"status": CandidateStatus.PENDING}) for c in pipeline.score(candidates)
    ]
    store.put_many(scored)
    ids = dict(zip(examples, (c.id for c in scored), strict=True))
    return Desk(
        contaminated=ids["contaminated"],
        duplicate=ids["duplicate"],
        pii=ids["pii"],
        pair=ids["pair"],
        code=ids["code"],
        long=ids["long"],
        plain=[ids[f"plain-{i}"] for i in range(plain)],
    )
