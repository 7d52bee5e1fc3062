"""Prompt templates: gaps rendered into generation tasks, versioned, with varied seeds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from generator.prompts import PromptTemplates, TemplateRenderError, tasks_for_gap
from generator.schema import CandidateKind, Gap, TaskStage

GAP = Gap(
    id="ref-1",
    run_id="run-1",
    kind="reference",
    label="Netflix",
    description="recommendations and descriptions of films and shows",
    have=2,
    target=14,
    examples=[f"Existing request number {i} about films." for i in range(10)],
)


def test_a_gap_becomes_instruction_tasks_asking_for_its_deficit() -> None:
    tasks = tasks_for_gap(GAP, PromptTemplates())
    assert len(tasks) == 3  # 12 requests, 5 per task
    asked = [
        next(line[:11] for line in t.messages[0].content.splitlines() if line.startswith("Write"))
        for t in tasks
    ]
    assert asked == ["Write 5 mor", "Write 5 mor", "Write 2 mor"]
    # The schema holds the model to exactly the number asked (enforced by every backend).
    assert [t.json_schema["properties"]["instructions"]["maxItems"] for t in tasks] == [5, 5, 2]
    assert [t.json_schema["properties"]["instructions"]["minItems"] for t in tasks] == [5, 5, 2]
    for task in tasks:
        assert task.stage is TaskStage.INSTRUCTIONS and task.gap_id == "ref-1"
        assert "Netflix" in task.messages[0].content
        assert task.json_schema is not None
        assert task.response_system and "helpful" in task.response_system
        assert task.priority == 12.0


def test_seeds_come_from_the_gap_and_vary_per_task() -> None:
    tasks = tasks_for_gap(GAP, PromptTemplates())
    shown = [
        {line[2:] for line in t.messages[0].content.splitlines() if line.startswith("- ")}
        for t in tasks
    ]
    assert all(len(s) == 3 and s <= set(GAP.examples) for s in shown)
    assert len({frozenset(s) for s in shown}) > 1, (
        "every task showing the same seeds invites copying"
    )
    assert tasks_for_gap(GAP, PromptTemplates()) == tasks, "rendering is deterministic"


def test_templates_are_versioned_by_their_content(tmp_path: Path) -> None:
    packaged = PromptTemplates()
    copy = tmp_path / "prompts"
    shutil.copytree(packaged.directory, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    assert PromptTemplates(copy).hash("instructions.jinja") == packaged.hash("instructions.jinja")
    (copy / "instructions.jinja").write_text(packaged.source("instructions.jinja") + "\nBe brief.")
    changed = tasks_for_gap(GAP, PromptTemplates(copy))[0]
    assert changed.template_hash != packaged.hash("instructions.jinja")
    assert changed.id != tasks_for_gap(GAP, packaged)[0].id


def test_preference_runs_answer_each_request_under_two_settings() -> None:
    [task, *_] = tasks_for_gap(GAP, PromptTemplates(), kind=CandidateKind.PREFERENCE)
    assert task.kind is CandidateKind.PREFERENCE
    assert len(task.variants) == 2 and task.variants[0].temperature != task.variants[1].temperature


def test_a_covered_gap_needs_no_tasks() -> None:
    assert tasks_for_gap(GAP.model_copy(update={"have": 20}), PromptTemplates()) == []


def test_a_missing_variable_names_the_template_the_variable_and_the_gap(tmp_path: Path) -> None:
    copy = tmp_path / "prompts"
    shutil.copytree(
        PromptTemplates().directory, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__")
    )
    (copy / "instructions.jinja").write_text("Cover {{ gap.label }} in {{ language }}.")
    with pytest.raises(
        TemplateRenderError,
        match=r"template 'instructions.jinja' for gap 'ref-1': 'language' is undefined",
    ):
        tasks_for_gap(GAP, PromptTemplates(copy))
    (copy / "instructions.jinja").write_text("Cover {{ gap.colour }}.")
    with pytest.raises(TemplateRenderError, match=r"for gap 'ref-1': .*has no attribute 'colour'"):
        tasks_for_gap(GAP, PromptTemplates(copy))


def test_the_judge_template_renders_a_rubric() -> None:
    text = PromptTemplates().render("judge.jinja", prompt="What is 2+2?", answer="4", rubric="")
    assert "What is 2+2?" in text and '"helpfulness"' in text


def test_conversation_settings_leave_a_plain_runs_seeds_and_prompts_as_they_were() -> None:
    from generator.conversations import ConversationSettings
    from generator.prompts import PromptTemplates, tasks_for_gap
    from generator.schema import Gap

    gap = Gap(
        id="g", run_id="r", label="sleep", target=15,
        examples=[f"How do I sleep better, tip {i}?" for i in range(8)],
    )  # fmt: skip
    plain = tasks_for_gap(gap, PromptTemplates())
    talking = tasks_for_gap(gap, PromptTemplates(), conversation=ConversationSettings(turns=3))
    assert [t.sampling.seed for t in plain] == [t.sampling.seed for t in talking]
    assert [t.messages for t in plain] == [t.messages for t in talking]
