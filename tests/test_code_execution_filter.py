"""The code_execution filter runs an answer's Python blocks (its code, then the tests it
states) in the sandbox, off unless a campaign turns it on; its score says how the run ended,
with the output as evidence for the reviewer."""

from __future__ import annotations

from generator.code_blocks import python_code
from generator.filters.execution import CodeExecutionFilter
from generator.filters.pipeline import FilterPipeline
from generator.filters.settings import FilterSettings
from generator.sandbox import SandboxLimits
from generator.schema import Candidate, CandidateKind
from tests.factories import pair, sft

SOLUTION = "```python\ndef add(a, b):\n    return a + b\n```"
TESTS = "Tests:\n\n```python\nassert add(2, 3) == 5\nassert add(-1, 1) == 0\n```"
LIMITS = SandboxLimits(wall_seconds=3, cpu_seconds=1)


def answer(text: str) -> Candidate:
    return Candidate(kind=CandidateKind.SFT, payload=sft("Write add(a, b).", text), run_id="r")


def test_a_solution_that_passes_its_own_tests_passes() -> None:
    [score] = CodeExecutionFilter(LIMITS).score([answer(f"{SOLUTION}\n\n{TESTS}")])
    assert (score.passed, score.value, score.reason) == (True, 1.0, "passed: exited 0")
    assert score.evidence["blocks"] == 2


def test_a_wrong_solution_is_flagged_with_the_failing_assertion_as_evidence() -> None:
    wrong = SOLUTION.replace("a + b", "a - b")
    [score] = CodeExecutionFilter(LIMITS).score([answer(f"{wrong}\n\n{TESTS}")])
    assert not score.passed
    assert score.reason == "failed: exited 1: AssertionError"
    assert "assert add(2, 3) == 5" in score.evidence["stderr"]


def test_code_that_never_terminates_is_flagged_not_waited_for() -> None:
    endless = "```python\nwhile True:\n    pass\n```"
    [score] = CodeExecutionFilter(LIMITS).score([answer(endless)])
    assert not score.passed
    assert score.evidence["outcome"] in ("killed", "timeout")


def test_an_answer_without_python_passes_as_nothing_to_run() -> None:
    [score] = CodeExecutionFilter(LIMITS).score([answer("Use a loop.\n\n```js\nx()\n```")])
    assert (score.passed, score.evidence) == (True, {"ran": False})


def test_both_answers_of_a_pair_run() -> None:
    both = Candidate(
        kind=CandidateKind.PREFERENCE,
        payload=pair("Write add.", f"{SOLUTION}\n{TESTS}", "```python\nraise SystemExit(3)\n```"),
        run_id="r",
    )
    [score] = CodeExecutionFilter(LIMITS).score([both])
    assert score.evidence["exit_code"] == 3


def test_python_blocks_are_the_named_ones_or_else_the_unnamed_ones() -> None:
    assert python_code("```py\na = 1\n```\n```\nb = 2\n```") == ["a = 1"]
    assert python_code("```\nb = 2\n```\n```bash\nls\n```") == ["b = 2"]
    assert python_code("no code here") == []


def test_the_pipeline_runs_code_only_when_the_campaign_asks() -> None:
    names = [f.name for f in FilterPipeline.build(FilterSettings()).filters]
    assert "code_execution" not in names
    settings = FilterSettings.model_validate({"code_execution": True, "code_execution_hard": True})
    [execution] = [f for f in FilterPipeline.build(settings).filters if f.name == "code_execution"]
    assert execution.hard
