"""Code checked by running it: a candidate's Python blocks (the solution and the tests it
states) run in the sandbox; the score says how the run ended, with its output as evidence."""

from __future__ import annotations

import os
import time
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor

from generator.code_blocks import python_code
from generator.filters.base import response_texts
from generator.sandbox import SandboxLimits, run_python
from generator.schema import Candidate, Score

BATCH_BUDGET_S = 300.0  # half a scoring job's timeout


class CodeExecutionFilter:
    """Soft unless made hard: a reviewer sees why the code failed (stderr, the limit it hit)
    beside the answer. An answer with no Python block passes: nothing to run."""

    name = "code_execution"
    hard = False
    cost = 50  # after every cheap filter: a run takes up to the wall-clock limit

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        gaps: Collection[str] | None = None,
        *,
        parallel: int | None = None,
        budget_seconds: float = BATCH_BUDGET_S,
    ) -> None:
        """``gaps``: run only candidates of these gaps (those marked code); None: every one.
        ``parallel`` runs at once (default: the cores, 2 to 8); ``budget_seconds``: a batch's
        time for code, after which the rest is flagged as not run."""
        self.limits = limits or SandboxLimits()
        self.gaps = None if gaps is None else frozenset(gaps)
        self.parallel = parallel or max(2, min(8, os.cpu_count() or 2))
        self.budget_seconds = budget_seconds

    def score(self, candidates: list[Candidate]) -> list[Score]:
        """Several runs at once: code that sleeps uses no CPU, and one after another a batch
        of it would outlast its scoring job (600 s). Whatever the budget leaves unstarted is
        flagged, never waited for."""
        deadline = time.monotonic() + self.budget_seconds
        with ThreadPoolExecutor(self.parallel, thread_name_prefix="sandbox") as pool:
            return list(pool.map(lambda candidate: self._one(candidate, deadline), candidates))

    def _one(self, candidate: Candidate, deadline: float) -> Score:
        if self.gaps is not None and candidate.gap_id not in self.gaps:
            return self._not_run("not run: its gap is not marked code", passed=True)
        blocks = [code for text in response_texts(candidate) for code in python_code(text)]
        if not blocks:
            return self._not_run("no Python code block to run", passed=True)
        written = candidate.provenance.code_tests
        if written:  # the answer stated no tests: the backend's run after its code
            blocks.append(written)
        if time.monotonic() > deadline:
            budget = f"{self.budget_seconds:g} s"
            return self._not_run(f"not run: this batch's {budget} for running code ran out")
        # The blocks run as one script, in order: a solution, then the tests that use it.
        try:
            result = run_python("\n\n".join(blocks), self.limits)
        except OSError as exc:  # this machine's trouble (no process, no disk), not the code's
            return self._not_run(f"not run: the sandbox failed to start ({exc})")
        return Score(
            filter=self.name,
            value=1.0 if result.passed else 0.0,
            passed=result.passed,
            reason=f"{result.outcome}: {result.reason}",
            evidence={
                "ran": True,
                "blocks": len(blocks),
                "tests": "written by the backend" if written else "stated in the answer, if any",
                **result.model_dump(),
            },
        )

    def _not_run(self, reason: str, *, passed: bool = False) -> Score:
        return Score(
            filter=self.name,
            value=1.0 if passed else 0.0,
            passed=passed,
            reason=reason,
            evidence={"ran": False},
        )
