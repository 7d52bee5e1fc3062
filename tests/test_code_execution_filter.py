"""The code_execution filter runs an answer's Python blocks (its code, then the tests it
states) in the sandbox, off unless a campaign turns it on; its score says how the run ended,
with the output as evidence for the reviewer."""

from __future__ import annotations

import time
from pathlib import Path

from generator.code_blocks import python_code
from generator.embeddings import Embedder
from generator.filters.execution import CodeExecutionFilter
from generator.filters.pipeline import FilterPipeline
from generator.filters.settings import FilterSettings
from generator.filters.stored_run import RunPipelines
from generator.sandbox import SandboxLimits
from generator.schema import Candidate, CandidateKind, CandidateStatus, Gap, RunConfig
from generator.store import Store
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
    assert score.reason == "failed: exited 1; the code's last line on stderr: AssertionError"
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


def test_a_taxonomy_cell_marked_code_runs_its_own_candidates_code_only() -> None:
    wrong = "```python\nassert 1 + 1 == 3\n```"
    coding, chat = answer(wrong), answer(wrong).model_copy(update={"gap_id": "chat"})
    coding = coding.model_copy(update={"gap_id": "python-functions"})
    pipeline = FilterPipeline.build(FilterSettings(), code_gaps=["python-functions"])
    [execution] = [f for f in pipeline.filters if f.name == "code_execution"]
    coded, chatted = execution.score([coding, chat])
    assert (coded.passed, coded.evidence["ran"]) == (False, True)
    assert (chatted.passed, chatted.reason) == (True, "not run: its gap is not marked code")


def test_a_scoring_worker_runs_the_code_of_the_gaps_the_run_marked_code(
    store: Store, embedder: Embedder, tmp_path: Path
) -> None:
    store.save_run(RunConfig(run_id="r"))
    gaps = [
        Gap(id="python-functions", run_id="r", label="p", code=True),
        Gap(id="chat", run_id="r", label="c"),
    ]
    store.save_gaps("r", gaps, "{}")
    texts = [  # wrong code in each gap
        "Here is the function and its test:\n```python\nassert 1 + 1 == 3\n```",
        "Small talk rarely needs code, but this snippet checks arithmetic: "
        "```python\nassert 2 * 2 == 5, 'bad maths'\n```",
    ]
    items = [
        answer(text).model_copy(update={"gap_id": gap.id, "status": CandidateStatus.GENERATED})
        for gap, text in zip(gaps, texts, strict=True)
    ]
    items = [i.model_copy(update={"id": i.compute_id()}) for i in items]
    store.put_many(items)
    ids = [i.id for i in items]
    RunPipelines(embedder, tmp_path / "indexes").for_run(store, "r", ids).score_and_route(
        store, ids
    )
    coded, chatted = store.get_many(ids)
    assert not coded.scores["code_execution"].passed
    assert chatted.scores["code_execution"].evidence == {"ran": False}


def test_a_batch_of_code_that_sleeps_runs_at_once_and_within_its_budget() -> None:
    sleepers = [answer(f"```python\nimport time\ntime.sleep(60)  # {i}\n```") for i in range(3)]
    started = time.monotonic()
    scores = CodeExecutionFilter(SandboxLimits(wall_seconds=2), parallel=3).score(sleepers)
    assert [s.evidence["outcome"] for s in scores] == ["timeout"] * 3
    assert time.monotonic() - started < 2 * 3, "side by side, not one after another"
    one_at_a_time = CodeExecutionFilter(
        SandboxLimits(wall_seconds=2), parallel=1, budget_seconds=1
    ).score(sleepers)
    assert one_at_a_time[0].evidence["outcome"] == "timeout"
    assert [s.reason for s in one_at_a_time[1:]] == [
        "not run: this batch's 1 s for running code ran out"
    ] * 2


# -- tests the backend writes ------------------------------------------------------------------


def test_tests_the_backend_wrote_run_after_a_solution_that_stated_none() -> None:
    from generator.schema import Provenance

    wrong = answer(SOLUTION.replace("a + b", "a * b"))
    wrong.provenance = Provenance(code_tests="assert add(2, 3) == 5")
    [score] = CodeExecutionFilter(LIMITS).score([wrong])
    assert not score.passed and "AssertionError" in score.reason
    assert score.evidence["tests"] == "written by the backend"
    assert score.evidence["blocks"] == 2


def test_code_stating_its_own_tests_is_told_apart_from_code_without() -> None:
    from generator.code_blocks import states_tests

    assert states_tests("def f():\n    return 1\n\nassert f() == 1")
    assert states_tests("import unittest\nclass T(unittest.TestCase):\n    pass")
    assert states_tests("def test_f():\n    assert f() == 1")
    assert not states_tests("def f():\n    return 1  # assert nothing here\nprint(f())")
