"""Running a batch of generation tasks through a backend and storing what comes out.

This is the body of a generation job, kept in the library so it runs the same in an RQ worker,
in-process, or in a test. Each task is completed exactly once (``Store.complete_task``): a job
that is retried after its worker died skips the tasks already stored and redoes only the rest.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from generator.backends import Backend, ChatRequest, ChatResult, Completion
from generator.code_blocks import states_tests
from generator.code_tests import code_of, parsed_tests, tests_messages, tests_schema
from generator.conversations import (
    assistant_turn,
    backend_messages,
    calls_since_user,
    results_schema,
    tool_choice_schema,
    tool_results,
    tool_results_messages,
    user_message,
    user_turn_messages,
    user_turn_schema,
    user_turns,
)
from generator.prompts import (
    CODE_TESTS_TEMPLATE,
    RESPONSE_TEMPLATE,
    TOOL_RESULTS_TEMPLATE,
    TOOLS_TEMPLATE,
    USER_TURN_TEMPLATE,
)
from generator.schema import (
    Candidate,
    CandidateKind,
    CandidateStatus,
    GenerationTask,
    Message,
    PreferenceExample,
    Provenance,
    SamplingParams,
    SFTExample,
    TaskStage,
    TemplateUse,
    Usage,
    content_hash,
)
from generator.store import Store

logger = logging.getLogger(__name__)

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.MULTILINE)


@dataclass
class BatchOutcome:
    """What one batch produced; returned by the job (small, not the system of record)."""

    tasks_done: int = 0
    tasks_skipped: int = 0
    candidate_ids: list[str] = field(default_factory=list)
    new_task_ids: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "tasks_done": self.tasks_done,
            "tasks_skipped": self.tasks_skipped,
            "candidates": len(self.candidate_ids),
            "new_tasks": len(self.new_task_ids),
            "completion_tokens": self.completion_tokens,
            "seconds": round(self.seconds, 3),
        }


def parse_instructions(text: str) -> list[str] | None:
    """The user requests in an instruction-generation output, or None if it is not usable JSON.

    Accepts ``{"instructions": [...]}`` or a bare list, inside a code fence or surrounded by
    chatter (small models add both).
    """
    cleaned = _FENCE.sub("", text.strip())
    snippets = [cleaned]
    try:
        json.loads(cleaned)
    except json.JSONDecodeError:  # only then look for JSON inside surrounding chatter
        for opening, closing in (("{", "}"), ("[", "]")):
            start, end = cleaned.find(opening), cleaned.rfind(closing)
            if 0 <= start < end:
                snippets.append(cleaned[start : end + 1])
    for snippet in snippets:
        try:
            data = json.loads(snippet)
        except json.JSONDecodeError:
            continue
        items = data.get("instructions") if isinstance(data, dict) else data
        if isinstance(items, list):
            found = [item.strip() for item in items if isinstance(item, str) and item.strip()]
            if found:
                return list(dict.fromkeys(found))  # drop repeats, keep order
        return None
    return None


def requests_for(task: GenerationTask) -> list[ChatRequest]:
    """A preference response task asks once per sampling variant; any other task asks once."""
    if task.stage is TaskStage.RESPONSE and task.kind is CandidateKind.PREFERENCE:
        return [
            ChatRequest(
                id=f"{task.id}:{index}",
                messages=task.messages,
                sampling=variant.model_copy(update={"n": 1}),
            )
            for index, variant in enumerate(task.variants)
        ]
    return [
        ChatRequest(
            id=task.id, messages=task.messages, sampling=task.sampling, json_schema=task.json_schema
        )
    ]


class _Outputs:
    """Turns one task's results into candidates and follow-up tasks."""

    def __init__(self, task: GenerationTask, backend: Backend, worker_id: str, batch: int) -> None:
        self.task, self.backend, self.worker_id, self.batch = task, backend, worker_id, batch

    def provenance(
        self,
        sampling: dict[str, Any],
        finish_reason: str,
        seconds: float,
        error: str | None = None,
        usage: Usage | None = None,
    ) -> Provenance:
        task = self.task
        return Provenance(
            source="generated",
            backend=self.backend.name,
            model=self.backend.model,
            sampling=sampling,
            template_name=task.template_name,
            template_hash=task.template_hash,
            templates=task.templates,
            rendered_prompt=task.messages,
            run_id=task.run_id,
            worker_id=self.worker_id,
            task_id=task.id,
            finish_reason=finish_reason,
            error=error,
            timings={"batch_seconds": round(seconds, 4), "batch_requests": float(self.batch)},
            usage=usage if usage is not None else task.upstream,
        )

    def usage(self, result: ChatResult, completion: Completion) -> Usage:
        """One completion's share of its request: the prompt and the call's seconds split over
        the request's completions (the call's seconds first over the batch's requests), its
        own output tokens, and its share of what wrote the request."""
        parts = max(len(result.completions), 1)
        return Usage(
            prompt_tokens=result.prompt_tokens / parts,
            completion_tokens=completion.tokens,
            backend_seconds=result.seconds / max(self.batch, 1) / parts,
        ) + self.task.upstream.share(parts)

    def candidate(self, payload: Any, raw: str, provenance: Provenance) -> Candidate:
        task = self.task
        common = {
            "kind": task.kind,
            "run_id": task.run_id,
            "gap_id": task.gap_id,
            "provenance": provenance,
            "status": CandidateStatus.GENERATED,
            "priority": task.priority,
        }
        try:
            return Candidate(payload=payload(), **common)
        except ValidationError:
            return Candidate(raw=raw, **common)  # empty or invalid: kept, filters flag it

    def from_instructions(self, result: ChatResult) -> tuple[list[Candidate], list[GenerationTask]]:
        task = self.task
        candidates: list[Candidate] = []
        children: list[GenerationTask] = []
        sampling = task.sampling.model_dump()
        for completion in result.completions:
            instructions = parse_instructions(completion.text)
            spent = self.usage(result, completion)
            if instructions is None:
                provenance = self.provenance(
                    sampling, completion.finish_reason, result.seconds, usage=spent
                )
                candidates.append(
                    Candidate(
                        kind=task.kind,
                        raw=completion.text or "(empty output)",
                        run_id=task.run_id,
                        gap_id=task.gap_id,
                        provenance=provenance,
                        status=CandidateStatus.GENERATED,
                        priority=task.priority,
                    )
                )
                continue
            share = spent.share(len(instructions))
            children.extend(self.response_task(text, share) for text in instructions)
        return candidates, children

    def response_task(self, instruction: str, upstream: Usage | None = None) -> GenerationTask:
        task = self.task
        user = Message(role="user", content=instruction)
        system = (
            [Message(role="system", content=task.response_system)] if task.response_system else []
        )
        messages = [*system, user]
        # The request the instruction step produced, answered under response.jinja's system
        # prompt: both templates are on the answer's record (the answer's own step last).
        # (An instruction task written by hand, not from templates, has no response template.)
        made = task.response_template_hash is not None
        response = TemplateUse(
            step="response",
            name=RESPONSE_TEMPLATE,
            hash=task.response_template_hash,
            messages=messages,
        )
        return GenerationTask(
            run_id=task.run_id,
            gap_id=task.gap_id,
            stage=TaskStage.RESPONSE,
            kind=task.kind,
            messages=messages,
            example_prompt=[user],
            sampling=self.seeded(task.response_sampling or SamplingParams(), instruction),
            variants=task.variants,
            template_name=RESPONSE_TEMPLATE if made else task.template_name,
            template_hash=task.response_template_hash if made else task.template_hash,
            templates=[*task.templates, *([response] if made else [])],
            parent_id=task.id,
            priority=task.priority,
            upstream=upstream if upstream is not None else Usage(),
            json_schema=(
                tool_choice_schema(task.tools, calls_allowed=True) if task.tools else None
            ),
            **self.conversation_fields(),
        )

    def seeded(self, sampling: SamplingParams, salt: str) -> SamplingParams:
        """A conversation's steps get a seed of their own where none is set (derived from
        the step's parent and place), so a conversation reruns as it ran; a plain answer's
        sampling is left as it was."""
        task = self.task
        if sampling.seed is not None or not (task.turns > 1 or task.tools):
            return sampling
        seed = int(content_hash("seed", [task.id, salt])[:8], 16) % 2**31
        return sampling.model_copy(update={"seed": seed})

    def conversation_fields(self) -> dict[str, Any]:
        """What every step of a conversation passes on to the next."""
        task = self.task
        return {
            "response_system": task.response_system,
            "turns": task.turns,
            "user_system": task.user_system,
            "tools": task.tools,
            "tool_system": task.tool_system,
            "max_tool_rounds": task.max_tool_rounds,
            "step_template_hashes": task.step_template_hashes,
            "code": task.code,
            "code_tests_system": task.code_tests_system,
        }

    def next_step(
        self, stage: TaskStage, conversation: list[Message], upstream: Usage
    ) -> GenerationTask:
        """The conversation's next step: the backend as the user, as the tools, or as the
        assistant again. One output each (a conversation branches at its first answer only)."""
        task = self.task
        tools = task.tools or []
        hashes = task.step_template_hashes
        schema: dict[str, Any] | None = None
        if stage is TaskStage.USER_TURN:
            messages = user_turn_messages(task.user_system or "", conversation)
            schema = user_turn_schema()
            step, name = "user_turn", USER_TURN_TEMPLATE
        elif stage is TaskStage.CODE_TESTS:
            messages = tests_messages(task.code_tests_system or "", conversation)
            schema = tests_schema()
            step, name = "code_tests", CODE_TESTS_TEMPLATE
        elif stage is TaskStage.TOOL_RESULTS:
            messages = tool_results_messages(task.tool_system or "", tools, conversation)
            schema = results_schema(len(conversation[-1].tool_calls or []))
            step, name = "tool_results", TOOL_RESULTS_TEMPLATE
        else:
            messages = backend_messages(task.response_system, conversation)
            if tools:
                allowed = calls_since_user(conversation) < task.max_tool_rounds
                schema = tool_choice_schema(tools, calls_allowed=allowed)
            step, name = "response", TOOLS_TEMPLATE if tools else RESPONSE_TEMPLATE
        use = TemplateUse(step=step, name=name, hash=hashes.get(name), messages=messages)
        return GenerationTask(
            run_id=task.run_id,
            gap_id=task.gap_id,
            stage=stage,
            kind=task.kind,
            messages=messages,
            example_prompt=conversation,
            sampling=self.seeded(task.sampling.model_copy(update={"n": 1}), str(len(conversation))),
            json_schema=schema,
            template_name=name,
            template_hash=hashes.get(name),
            templates=[*task.templates, use],
            parent_id=task.id,
            priority=task.priority,
            upstream=upstream,
            **self.conversation_fields(),
        )

    def broken(self, text: str, provenance: Provenance) -> Candidate:
        """A conversation that cannot go on (an empty or cut-off step, no result per call):
        kept as raw output for the malformed filter, never silently dropped."""
        task = self.task
        transcript = [m.model_dump(mode="json") for m in task.example_prompt]
        return Candidate(
            kind=task.kind,
            raw=json.dumps({"conversation": transcript, "last_output": text}, ensure_ascii=False),
            run_id=task.run_id,
            gap_id=task.gap_id,
            provenance=provenance,
            status=CandidateStatus.GENERATED,
            priority=task.priority,
        )

    def from_conversation(self, result: ChatResult) -> tuple[list[Candidate], list[GenerationTask]]:
        """The assistant's turn in a conversation: calls go to the tools, an answer to the
        user (while turns are left), else the conversation is a candidate."""
        task = self.task
        sampling = task.sampling.model_dump()
        candidates: list[Candidate] = []
        children: list[GenerationTask] = []
        for completion in result.completions:
            spent = self.usage(result, completion)
            provenance = self.provenance(
                sampling, completion.finish_reason, result.seconds, usage=spent
            )
            turn = assistant_turn(completion.text, tools_offered=bool(task.tools))
            if turn is None or completion.finish_reason == "length":
                candidates.append(self.broken(completion.text, provenance))
                continue
            conversation = [*task.example_prompt, turn]
            if turn.tool_calls and calls_since_user(conversation) > task.max_tool_rounds:
                # The schema allows no more calls; a backend that does not hold it to that
                # (an OpenAI server without strict schemas) ends the conversation here.
                candidates.append(self.broken(completion.text, provenance))
            elif turn.tool_calls:
                children.append(self.next_step(TaskStage.TOOL_RESULTS, conversation, spent))
            elif user_turns(conversation) < task.turns:
                children.append(self.next_step(TaskStage.USER_TURN, conversation, spent))
            elif self.needs_tests(conversation):
                children.append(self.next_step(TaskStage.CODE_TESTS, conversation, spent))
            else:
                candidates.append(
                    self.candidate(
                        lambda c=conversation: SFTExample(messages=c, tools=task.tools),
                        completion.text,
                        provenance,
                    )
                )
        return candidates, children

    def needs_tests(self, conversation: list[Message]) -> bool:
        """A code gap's answer with Python that states no tests: the backend writes some."""
        if not self.task.code or not self.task.code_tests_system:
            return False
        code = code_of(conversation[-1].content)
        return bool(code.strip()) and not states_tests(code)

    def from_code_tests(self, result: ChatResult) -> list[Candidate]:
        """The answer, now a candidate, with the tests written for it on its record (none if
        the step gave no usable tests: the filter then runs the code alone)."""
        task = self.task
        completion = result.completions[0]
        tests = parsed_tests(completion.text) if completion.finish_reason == "stop" else None
        provenance = self.provenance(
            task.sampling.model_dump(), "stop", result.seconds, usage=self.usage(result, completion)
        )
        provenance.code_tests = tests
        return [
            self.candidate(
                lambda: SFTExample(messages=task.example_prompt, tools=task.tools),
                task.example_prompt[-1].content,
                provenance,
            )
        ]

    def from_user_turn(self, result: ChatResult) -> tuple[list[Candidate], list[GenerationTask]]:
        task = self.task
        completion = result.completions[0]
        spent = self.usage(result, completion)
        text = user_message(completion.text)
        if text is None or completion.finish_reason == "length":
            provenance = self.provenance(
                task.sampling.model_dump(), completion.finish_reason, result.seconds, usage=spent
            )
            return [self.broken(completion.text, provenance)], []
        conversation = [*task.example_prompt, Message(role="user", content=text)]
        return [], [self.next_step(TaskStage.RESPONSE, conversation, spent)]

    def from_tool_results(self, result: ChatResult) -> tuple[list[Candidate], list[GenerationTask]]:
        task = self.task
        completion = result.completions[0]
        spent = self.usage(result, completion)
        results = tool_results(completion.text, task.example_prompt[-1])
        if results is None or completion.finish_reason == "length":
            provenance = self.provenance(
                task.sampling.model_dump(), completion.finish_reason, result.seconds, usage=spent
            )
            return [self.broken(completion.text, provenance)], []
        conversation = [*task.example_prompt, *results]
        return [], [self.next_step(TaskStage.RESPONSE, conversation, spent)]

    def from_responses(self, result: ChatResult) -> tuple[list[Candidate], list[GenerationTask]]:
        task = self.task
        sampling = task.sampling.model_dump()
        candidates: list[Candidate] = []
        children: list[GenerationTask] = []
        for completion in result.completions:
            spent = self.usage(result, completion)
            if completion.finish_reason == "stop" and completion.text.strip():
                conversation = [
                    *task.example_prompt,
                    Message(role="assistant", content=completion.text),
                ]
                if self.needs_tests(conversation):
                    children.append(self.next_step(TaskStage.CODE_TESTS, conversation, spent))
                    continue
            candidates.append(
                self.candidate(
                    lambda text=completion.text: SFTExample(
                        messages=[*task.example_prompt, Message(role="assistant", content=text)]
                    ),
                    completion.text,
                    self.provenance(
                        sampling, completion.finish_reason, result.seconds, usage=spent
                    ),
                )
            )
        return candidates, children

    def from_pair(self, results: Sequence[ChatResult]) -> list[Candidate]:
        """Each variant's answer, in variant order: two are proposed as chosen/rejected (a
        reviewer confirms or swaps them; the judge can propose the order), three or more as a
        ranking for the reviewer to order."""
        task = self.task
        answers = [r.completions[0] for r in results]
        finish = "length" if any(a.finish_reason == "length" for a in answers) else "stop"
        sampling: dict[str, Any]
        if len(answers) == 2:
            sampling = {
                "chosen": task.variants[0].model_dump(),
                "rejected": task.variants[1].model_dump(),
            }
            raw = json.dumps({"chosen": answers[0].text, "rejected": answers[1].text})
        else:
            sampling = {"ranked": [variant.model_dump() for variant in task.variants]}
            raw = json.dumps({"ranked": [answer.text for answer in answers]})
        pair_usage = task.upstream
        for result in results:  # one request per answer, each its own share of the batch
            pair_usage = pair_usage + Usage(
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completions[0].tokens,
                backend_seconds=result.seconds / max(self.batch, 1),
            )
        return [
            self.candidate(
                lambda: PreferenceExample.ranking(
                    task.example_prompt,
                    [[Message(role="assistant", content=answer.text)] for answer in answers],
                ),
                raw,
                self.provenance(sampling, finish, results[0].seconds, usage=pair_usage),
            )
        ]


def answer_task(instructions: GenerationTask, request: str) -> GenerationTask:
    """The response task an instruction task spawns for ``request`` (one of the requests it
    wrote): its first turn, with everything the conversation's later steps need."""
    return _Outputs(instructions, _NO_BACKEND, "local", 1).response_task(request)


class _NoBackend:
    name, model = "none", "none"


_NO_BACKEND: Any = _NoBackend()


def _no_output(outputs: _Outputs, raw: str, error: str) -> Candidate:
    """A task that gave no usable output: kept as malformed, with why."""
    task = outputs.task
    return Candidate(
        kind=task.kind,
        raw=raw,
        run_id=task.run_id,
        gap_id=task.gap_id,
        provenance=outputs.provenance(task.sampling.model_dump(), "error", 0.0, error),
        status=CandidateStatus.GENERATED,
        priority=task.priority,
    )


def _outputs_of(
    outputs: _Outputs, task: GenerationTask, results: list[ChatResult]
) -> tuple[list[Candidate], list[GenerationTask]]:
    """One task's candidates and follow-up tasks, by its stage."""
    failed = next((r for r in results if r.error), None)
    if failed is not None:
        # A request the backend refused (e.g. a prompt too long).
        error = failed.error or "refused"
        return [_no_output(outputs, f"(no output: {error})", error)], []
    if task.stage is TaskStage.INSTRUCTIONS:
        return outputs.from_instructions(results[0])
    if task.stage is TaskStage.USER_TURN:
        return outputs.from_user_turn(results[0])
    if task.stage is TaskStage.TOOL_RESULTS:
        return outputs.from_tool_results(results[0])
    if task.stage is TaskStage.CODE_TESTS:
        return outputs.from_code_tests(results[0]), []
    if task.kind is CandidateKind.PREFERENCE:
        return outputs.from_pair(results), []
    if task.turns > 1 or task.tools:
        return outputs.from_conversation(results[0])
    return outputs.from_responses(results[0])


def run_batch(
    store: Store, backend: Backend, task_ids: Sequence[str], *, worker_id: str = "local"
) -> BatchOutcome:
    """Generate for every open task of the batch and store each task's outputs exactly once."""
    outcome = BatchOutcome()
    tasks = [t for t in store.get_tasks(task_ids) if not store.task_done(t.id)]
    outcome.tasks_skipped = len(task_ids) - len(tasks)
    if not tasks:
        return outcome
    requests = {task.id: requests_for(task) for task in tasks}
    flat = [request for batch in requests.values() for request in batch]
    results = {r.request_id: r for r in backend.generate(flat)}
    for task in tasks:
        task_results = [results[r.id] for r in requests[task.id]]
        outputs = _Outputs(task, backend, worker_id, len(flat))
        try:
            candidates, children = _outputs_of(outputs, task, task_results)
        except (ValueError, TypeError, RecursionError) as exc:
            # One task's output that breaks its step (JSON nested past any limit, say) is
            # that task's malformed candidate, never the failure of the batch's 63 others.
            logger.warning("task %s: output not usable: %s", task.id, exc)
            why = f"{type(exc).__name__}: {str(exc)[:300]}"
            candidates, children = [_no_output(outputs, f"(output not usable: {why})", why)], []
        prompt_tokens = sum(r.prompt_tokens for r in task_results)
        completion_tokens = sum(r.completion_tokens for r in task_results)
        stats: dict[str, float] = {
            "tasks_done": 1,
            "candidates": len(candidates),
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            # Outputs cut off at max_tokens: counted so the run says how many, not only the filter.
            "truncated": sum(
                c.finish_reason == "length" for r in task_results for c in r.completions
            ),
        }
        if not store.complete_task(task, candidates, children, stats):
            outcome.tasks_skipped += 1  # another worker finished it first
            continue
        outcome.tasks_done += 1
        outcome.candidate_ids.extend(c.id for c in candidates)
        outcome.new_task_ids.extend(t.id for t in children)
        outcome.prompt_tokens += prompt_tokens
        outcome.completion_tokens += completion_tokens
    outcome.seconds = max((r.seconds for r in results.values()), default=0.0)
    logger.info("batch: %s", outcome.summary())
    return outcome
