"""Generation batches: tasks in, candidates (or follow-up tasks) out, each task stored once."""

from __future__ import annotations

import pytest

from generator.backends import Backend, ChatRequest, ChatResult, Completion
from generator.filters.pipeline import FilterPipeline
from generator.generation import parse_instructions, requests_for, run_batch
from generator.schema import (
    CandidateKind,
    CandidateStatus,
    GenerationTask,
    Message,
    PreferenceExample,
    SamplingParams,
    SFTExample,
    TaskStage,
    Usage,
)
from generator.store import Store


def response_task(
    question: str, *, gap: str = "gap-a", n: int = 1, tokens: int = 24
) -> GenerationTask:
    return GenerationTask(
        run_id="run-1",
        gap_id=gap,
        messages=[Message(role="user", content=question)],
        sampling=SamplingParams(max_tokens=tokens, n=n, seed=1),
        template_name="answer",
        template_hash="abc123",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"instructions": ["a", "b"]}', ["a", "b"]),
        ('```json\n{"instructions": ["a", " b "]}\n```', ["a", "b"]),
        ('Sure! Here you go: {"instructions": ["a"]} Hope it helps.', ["a"]),
        ('["a", "a", "b"]', ["a", "b"]),
        ('{"instructions": []}', None),
        ('{"questions": ["a"]}', None),
        ("1. How do I cook rice?\n2. What is pasta?", None),
        ("", None),
    ],
)
def test_instruction_output_is_parsed_leniently_or_refused(
    text: str, expected: list[str] | None
) -> None:
    assert parse_instructions(text) == expected


def test_a_preference_task_asks_once_per_variant() -> None:
    task = GenerationTask(
        run_id="r",
        kind=CandidateKind.PREFERENCE,
        messages=[Message(role="user", content="q")],
        variants=[SamplingParams(temperature=0.2, n=3), SamplingParams(temperature=1.2)],
    )
    requests = requests_for(task)
    assert [r.sampling.temperature for r in requests] == [0.2, 1.2]
    assert all(r.sampling.n == 1 for r in requests)


def test_a_preference_task_needs_two_variants() -> None:
    with pytest.raises(ValueError, match="two sampling variants"):
        GenerationTask(
            run_id="r", kind=CandidateKind.PREFERENCE, messages=[Message(role="user", content="q")]
        )


def test_responses_become_candidates_with_their_provenance(
    store: Store, local_backend: Backend
) -> None:
    tasks = [response_task("What is bread?", n=2), response_task("Name a river.", gap="gap-b")]
    store.add_tasks(tasks)
    outcome = run_batch(store, local_backend, [t.id for t in tasks], worker_id="w1")
    assert (outcome.tasks_done, outcome.tasks_skipped) == (2, 0)
    assert outcome.completion_tokens > 0
    items = store.get_many(outcome.candidate_ids)
    assert len(items) == 3
    first = next(i for i in items if i.gap_id == "gap-a")
    assert first.status is CandidateStatus.GENERATED
    assert isinstance(first.payload, SFTExample)
    assert first.payload.messages[0].content == "What is bread?"
    provenance = first.provenance
    assert (provenance.backend, provenance.model) == ("local", local_backend.model)
    assert provenance.sampling["seed"] == 1 and provenance.sampling["n"] == 2
    assert (provenance.template_name, provenance.template_hash) == ("answer", "abc123")
    assert provenance.rendered_prompt == tasks[0].messages
    assert (provenance.run_id, provenance.worker_id, provenance.task_id) == (
        "run-1",
        "w1",
        tasks[0].id,
    )
    assert provenance.finish_reason in ("stop", "length")
    assert provenance.timings["batch_seconds"] > 0
    # Its share of the real model's work: the prompt split over the request's two answers.
    assert provenance.usage is not None
    assert provenance.usage.completion_tokens == 24 or provenance.finish_reason == "stop"
    assert provenance.usage.prompt_tokens > 0 and provenance.usage.backend_seconds > 0
    assert store.task_counts("run-1") == (2, 2)
    assert store.run_stats("run-1")["candidates"] == 3
    # The run counts outputs cut off at max_tokens (24 here: most are), for generate to report.
    cut = sum(item.provenance.finish_reason == "length" for item in items)
    assert cut > 0 and store.run_stats("run-1")["truncated"] == cut


def test_a_task_is_stored_once_even_if_its_batch_runs_twice(
    store: Store, local_backend: Backend
) -> None:
    task = response_task("Describe a cat.")
    store.add_tasks([task])
    first = run_batch(store, local_backend, [task.id])
    again = run_batch(store, local_backend, [task.id])
    assert (first.tasks_done, again.tasks_done, again.tasks_skipped) == (1, 0, 1)
    assert store.count("run-1", CandidateStatus.GENERATED) == 1
    assert store.task_result(task.id) == {"candidates": first.candidate_ids, "tasks": []}


class ScriptedBackend:
    """A fake for the pure routing logic only; real-model behaviour is tested above."""

    name, model = "scripted", "script"

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts

    def load(self) -> None: ...

    def close(self) -> None: ...

    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        return [
            ChatResult(
                request_id=r.id,
                completions=[
                    Completion(text=t, finish_reason="stop", tokens=3)
                    for t in self.texts[: r.sampling.n]
                ],
                prompt_tokens=5,
                seconds=0.01,
            )
            for r in requests
        ]


def instruction_task(n: int = 1) -> GenerationTask:
    return GenerationTask(
        run_id="run-1",
        gap_id="cooking",
        stage=TaskStage.INSTRUCTIONS,
        messages=[Message(role="user", content="Write cooking questions as JSON.")],
        sampling=SamplingParams(n=n),
        response_sampling=SamplingParams(max_tokens=32, temperature=0.3),
        response_system="You are a chef.",
    )


def test_instructions_spawn_response_tasks_and_junk_is_kept_as_malformed(store: Store) -> None:
    task = instruction_task(n=2)
    assert task.json_schema is not None  # instruction tasks ask for structured output
    store.add_tasks([task])
    backend = ScriptedBackend(
        ['{"instructions": ["How long to boil an egg?", "What is roux?"]}', "Sure, here are some!"]
    )
    outcome = run_batch(store, backend, [task.id])
    children = store.get_tasks(outcome.new_task_ids)
    assert [c.example_prompt[0].content for c in children] == [
        "How long to boil an egg?",
        "What is roux?",
    ]
    assert all(c.messages[0] == Message(role="system", content="You are a chef.") for c in children)
    assert all(c.sampling.temperature == 0.3 and c.parent_id == task.id for c in children)
    [malformed] = store.get_many(outcome.candidate_ids)
    assert malformed.payload is None and malformed.raw == "Sure, here are some!"
    assert sorted(store.open_tasks("run-1")) == sorted(outcome.new_task_ids)
    FilterPipeline.default().score_and_route(store, outcome.candidate_ids)
    routed = store.get(malformed.id)
    assert routed.status is CandidateStatus.AUTO_REJECTED
    assert routed.scores["malformed"].reason == "unparseable output (expected JSON)"
    assert routed.scores["malformed"].evidence["raw"] == "Sure, here are some!"


def test_what_an_instruction_cost_travels_to_the_answers_it_asked_for(store: Store) -> None:
    """An instruction request (5 prompt tokens, two outputs of 3) that wrote two requests: each
    request carries half of its output's share; the answer adds its own request's tokens."""
    task = instruction_task(n=2)
    store.add_tasks([task])
    backend = ScriptedBackend(['{"instructions": ["Boil an egg?", "What is roux?"]}', "junk"])
    outcome = run_batch(store, backend, [task.id])
    [junk] = store.get_many(outcome.candidate_ids)
    assert junk.provenance.usage == Usage(
        prompt_tokens=2.5, completion_tokens=3, backend_seconds=0.005
    )
    children = store.get_tasks(outcome.new_task_ids)
    assert all(
        c.upstream == Usage(prompt_tokens=1.25, completion_tokens=1.5, backend_seconds=0.0025)
        for c in children
    )
    answered = run_batch(store, ScriptedBackend(["Two minutes."]), [children[0].id])
    [answer] = store.get_many(answered.candidate_ids)
    assert answer.provenance.usage == Usage(
        prompt_tokens=6.25, completion_tokens=4.5, backend_seconds=0.0125
    )


def test_preference_tasks_make_pairs_from_two_variants(
    store: Store, local_backend: Backend
) -> None:
    task = GenerationTask(
        run_id="run-1",
        kind=CandidateKind.PREFERENCE,
        messages=[Message(role="user", content="Give advice on sleeping well.")],
        variants=[
            SamplingParams(temperature=0.3, max_tokens=24, seed=1),
            SamplingParams(temperature=1.3, max_tokens=24, seed=2),
        ],
    )
    store.add_tasks([task])
    outcome = run_batch(store, local_backend, [task.id])
    [pair] = store.get_many(outcome.candidate_ids)
    assert isinstance(pair.payload, PreferenceExample)
    assert pair.payload.prompt_text() == "Give advice on sleeping well."
    assert pair.provenance.sampling["chosen"]["temperature"] == 0.3
    assert pair.provenance.sampling["rejected"]["temperature"] == 1.3
    usage = pair.provenance.usage  # both sides' requests: the prompt counted twice
    assert usage is not None and usage.completion_tokens > 0
    assert usage.prompt_tokens % 2 == 0 and usage.prompt_tokens >= 2 * 5


def test_an_empty_answer_is_kept_as_malformed(store: Store) -> None:
    task = response_task("Say nothing.")
    store.add_tasks([task])
    outcome = run_batch(store, ScriptedBackend(["   "]), [task.id])
    [item] = store.get_many(outcome.candidate_ids)
    assert item.payload is None and item.raw == "   "


class RefusingBackend(ScriptedBackend):
    def generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        return [
            ChatResult(
                request_id=r.id, completions=[], prompt_tokens=0, seconds=0, error="prompt too long"
            )
            for r in requests
        ]


def test_a_refused_request_is_kept_as_malformed_with_the_reason(store: Store) -> None:
    task = response_task("A very long prompt.")
    store.add_tasks([task])
    outcome = run_batch(store, RefusingBackend([]), [task.id])
    assert outcome.tasks_done == 1
    FilterPipeline.default().score_and_route(store, outcome.candidate_ids)
    [item] = store.get_many(outcome.candidate_ids)
    assert item.status is CandidateStatus.AUTO_REJECTED
    assert item.scores["malformed"].reason == "no output: prompt too long"


def test_three_variants_make_a_ranking_of_three_answers_in_variant_order(
    store: Store, local_backend: Backend
) -> None:
    temperatures = [0.3, 0.9, 1.3]
    task = GenerationTask(
        run_id="run-1",
        kind=CandidateKind.PREFERENCE,
        messages=[Message(role="user", content="Give advice on sleeping well.")],
        variants=[
            SamplingParams(temperature=t, max_tokens=24, seed=i) for i, t in enumerate(temperatures)
        ],
    )
    store.add_tasks([task])
    outcome = run_batch(store, local_backend, [task.id])
    [item] = store.get_many(outcome.candidate_ids)
    assert isinstance(item.payload, PreferenceExample) and item.payload.ranked is not None
    assert len(item.payload.ranked) == 3
    assert [s["temperature"] for s in item.provenance.sampling["ranked"]] == temperatures
    usage = item.provenance.usage  # three requests: the prompt counted three times
    assert usage is not None and usage.prompt_tokens % 3 == 0


def test_a_campaign_asking_for_four_answers_takes_the_variants_in_turn() -> None:
    from generator.prompts import PromptTemplates, tasks_for_gap
    from generator.schema import Gap

    gap = Gap(id="g", run_id="r", label="sleep", target=5, examples=["How do I sleep well?"])
    [task] = tasks_for_gap(gap, PromptTemplates(), kind=CandidateKind.PREFERENCE, answers=4)
    variants = PromptTemplates().defaults().preference_variants
    assert [v.temperature for v in task.variants] == [
        variants[i % len(variants)].temperature for i in range(4)
    ]


def test_a_code_gaps_answer_without_tests_gets_tests_written_then_becomes_a_candidate(
    store: Store,
) -> None:
    """The routing only (a scripted backend): the real model's steps run in test_whole_loop."""
    from generator.generation import answer_task
    from generator.prompts import PromptTemplates, tasks_for_gap
    from generator.schema import Gap, TaskStage

    gap = Gap(id="py", run_id="run-1", label="python", target=2, code=True, examples=["x"])
    [instructions] = tasks_for_gap(gap, PromptTemplates(), wanted=1)
    assert instructions.code and instructions.code_tests_system
    task = answer_task(instructions, "Write add(a, b).")
    store.add_tasks([task])
    code = "```python\ndef add(a, b):\n    return a + b\n```"
    answered = run_batch(store, ScriptedBackend([code]), [task.id])
    assert answered.candidate_ids == [] and len(answered.new_task_ids) == 1
    [step] = store.get_tasks(answered.new_task_ids)
    assert step.stage is TaskStage.CODE_TESTS and "def add(a, b)" in step.messages[-1].content
    tested = run_batch(store, ScriptedBackend(['{"tests": "assert add(2, 3) == 5"}']), [step.id])
    [item] = store.get_many(tested.candidate_ids)
    assert item.provenance.code_tests == "assert add(2, 3) == 5"
    assert item.payload is not None and item.payload.turns()[-1].content == code
    assert [use.step for use in item.provenance.templates][-1] == "code_tests"
    # An answer that states its tests is a candidate at once.
    stated = answer_task(instructions, "Write sub(a, b).")
    store.add_tasks([stated])
    with_tests = "```python\ndef add(a, b):\n    return a + b\n\nassert add(1, 1) == 2\n```"
    assert len(run_batch(store, ScriptedBackend([with_tests]), [stated.id]).candidate_ids) == 1
