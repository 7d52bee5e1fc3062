"""Provenance reproduces: every template behind an exported row (instruction, response, judge,
pairwise) is on the row's record with its hash and the exact messages it rendered, and the
manifest lists them all. Real templates, the real bundled model, a real export."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from generator.backends import Backend, ChatRequest, ChatResult, Completion
from generator.export.writer import ExportOptions, export
from generator.filters.judge import JudgeFilter
from generator.generation import run_batch
from generator.prompts import PromptDefaults, PromptTemplates, tasks_for_gap
from generator.schema import (
    Candidate,
    CandidateKind,
    CandidateStatus,
    Gap,
    GenerationTask,
    RunConfig,
    SamplingParams,
)
from generator.screening import screen_all
from generator.store import Store

pytestmark = pytest.mark.slow

GAP = Gap(
    id="cooking",
    run_id="run-1",
    label="Cooking questions",
    description="Short questions about cooking at home",
    target=2,
    examples=["How long should I boil an egg?", "What is a roux?"],
)
SHORT = SamplingParams(max_tokens=24, temperature=0.7, seed=3)


class WrittenRequests:
    """The real backend, except that the instruction step's output is written here: the 135M
    model's JSON lists are rarely usable, and what is under test is the record of each step,
    not the requests' quality (the demo test runs that step on the model)."""

    def __init__(self, backend: Backend) -> None:
        self.backend, self.name, self.model = backend, backend.name, backend.model

    def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        asked = [
            r for r in requests if "instructions" in (r.json_schema or {}).get("properties", {})
        ]
        text = json.dumps({"instructions": ["How do I poach an egg?", "What is a good soup?"]})
        written = [
            ChatResult(
                request_id=r.id,
                completions=[Completion(text=text, finish_reason="stop", tokens=9)],
                prompt_tokens=9,
                seconds=0.0,
            )
            for r in asked
        ]
        rest = [r for r in requests if r not in asked]
        return [*written, *(self.backend.generate(rest) if rest else [])]


def generate(store: Store, real: Backend, kind: CandidateKind) -> list[Candidate]:
    """The gap through the packaged templates: instruction tasks, then the response tasks the
    model's requests become, then the answers (with their scores: the judge's, and the PII
    screen an export needs)."""
    variants = [SHORT, SHORT.model_copy(update={"temperature": 1.2, "seed": 4})]
    defaults = PromptDefaults(
        requests_per_task=2,
        instruction_sampling=SamplingParams(max_tokens=96, temperature=0.7, seed=1),
        response_sampling=SHORT,
        preference_variants=variants if kind is CandidateKind.PREFERENCE else [],
    )
    tasks = tasks_for_gap(GAP, PromptTemplates(), kind=kind, defaults=defaults)
    store.add_tasks(tasks)
    ids: list[str] = []
    pending = [t.id for t in tasks]
    backend = WrittenRequests(real)
    while pending:  # instructions, then responses
        outcome = run_batch(store, backend, pending)  # type: ignore[arg-type]
        ids += outcome.candidate_ids
        pending = outcome.new_task_ids
    made = [c for c in store.get_many(ids) if c.payload is not None]
    assert made, "the model's requests became no answer: nothing to check"
    judged = [
        c.model_copy(update={"scores": {**c.scores, "judge": s}})
        for c, s in zip(made, JudgeFilter(real).score(made), strict=True)
    ]
    return screen_all(judged)


def export_rows(
    store: Store, items: list[Candidate], kind: CandidateKind, model_dir: Path, out: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    store.save_run(RunConfig(run_id="run-1", kind=kind))
    for item in items:  # stored by generation: routed to review with their scores, as filters do
        store.route(item.id, CandidateStatus.PENDING, candidate=item)
    while (lease := store.claim("alice", "run-1")) is not None:
        store.decide(lease.item_id, "alice", "accept", lease.version)
    options = ExportOptions(runs=["run-1"], kind=kind, out=out, tokenizer=str(model_dir))
    export(store, options, out.parent)
    records = [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]
    return records, json.loads((out / "manifest.json").read_text())


def sent(task: GenerationTask) -> list[dict[str, str]]:
    return [m.model_dump() for m in task.messages]


def test_an_sft_row_records_its_instruction_response_and_judge_templates(
    store: Store, local_backend: Backend, model_dir: Path, tmp_path: Path
) -> None:
    items = generate(store, local_backend, CandidateKind.SFT)
    records, manifest = export_rows(store, items, CandidateKind.SFT, model_dir, tmp_path / "out")
    templates = PromptTemplates()
    assert records
    for record in records:
        uses = record["templates"]
        assert [u["step"] for u in uses] == ["instructions", "response", "judge"]
        for use in uses:
            assert use["hash"] == templates.hash(use["name"]), use["name"]
        # Each step's messages are exactly what its model was sent.
        task = store.get_tasks([record["task_id"]])[0]
        assert uses[1]["messages"] == sent(task)
        assert task.parent_id is not None
        [parent] = store.get_tasks([task.parent_id])
        assert uses[0]["messages"] == sent(parent)
        assert "Short questions about cooking at home" in uses[0]["messages"][0]["content"]
        [judge] = uses[2:]
        assert task.example_prompt[0].content in judge["messages"][0]["content"]
        assert record["template_name"] == "response.jinja"
        assert "templates" not in record["scores"]["judge"]["evidence"], "written once, not twice"
    assert set(manifest["generation"]["templates"]) == {
        "instructions.jinja",
        "response.jinja",
        "judge.jinja",
    }
    assert manifest["generation"]["templates"]["response.jinja"] == {
        templates.hash("response.jinja"): len(records)
    }


def test_a_preference_row_records_both_pairwise_orders(
    store: Store, local_backend: Backend, model_dir: Path, tmp_path: Path
) -> None:
    items = generate(store, local_backend, CandidateKind.PREFERENCE)
    records, manifest = export_rows(
        store, items, CandidateKind.PREFERENCE, model_dir, tmp_path / "out"
    )
    assert records
    for record in records:
        uses = record["templates"]
        assert [u["step"] for u in uses] == ["instructions", "response", "pairwise", "pairwise"]
        first, second = (u["messages"][0]["content"] for u in uses[2:])
        assert first != second, "the judge saw the pair in both orders"
    assert "judge_pairwise.jinja" in manifest["generation"]["templates"]


def test_an_instruction_prompt_holding_a_secret_leaves_without_its_messages(
    store: Store, local_backend: Backend, model_dir: Path, tmp_path: Path
) -> None:
    """The instruction prompt quotes rows of the existing dataset as seeds: untrusted text that
    no screen has seen. One holding a key leaves as name and hash only, with the reason."""
    key = "AKIAIOSFODNN7EXAMPLE"
    leaky = GAP.model_copy(update={"examples": [f"Why does my AWS key {key} not work?"]})
    task = tasks_for_gap(leaky, PromptTemplates(), defaults=PromptDefaults(requests_per_task=2))[0]
    made = generate(store, local_backend, CandidateKind.SFT)
    items = [
        c.model_copy(
            update={
                "provenance": c.provenance.model_copy(
                    update={"templates": [*task.templates, *c.provenance.templates[1:]]}
                )
            }
        )
        for c in made
    ]
    records, _ = export_rows(store, items, CandidateKind.SFT, model_dir, tmp_path / "out")
    for record in records:
        [instructions, *_] = record["templates"]
        assert "messages" not in instructions
        assert instructions["messages_withheld"].startswith("PII/secrets")
        assert instructions["hash"] == PromptTemplates().hash("instructions.jinja")
    for path in (tmp_path / "out").iterdir():
        assert key not in path.read_text(errors="replace"), path.name
