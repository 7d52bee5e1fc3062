"""Prompt templates: gaps rendered into generation tasks.

Templates are Jinja2 files in ``prompts/`` (or a directory given instead), rendered with
``StrictUndefined`` so a missing variable is an error naming the template, the variable and the
gap, never an empty string in a prompt. Each template is versioned by the hash of its source,
recorded on every task and candidate it produces.

Seeds (existing examples shown to the model "write something different from these") are sampled
per task from the gap's nearest existing examples, so the model does not copy one example.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field

from generator.conversations import ConversationSettings
from generator.errors import ConfigError, GapfillError
from generator.schema import (
    CandidateKind,
    Gap,
    GenerationTask,
    Message,
    SamplingParams,
    TaskStage,
    TemplateUse,
    instructions_schema,
)
from generator.yaml_file import read_yaml

INSTRUCTIONS_TEMPLATE = "instructions.jinja"  # asks for new user requests of a gap
RESPONSE_TEMPLATE = "response.jinja"  # the system prompt of the answers to them
JUDGE_TEMPLATE = "judge.jinja"
PAIRWISE_TEMPLATE = "judge_pairwise.jinja"
AVOID_TEMPLATE = "avoid.jinja"  # a gap's avoid-list from review (generator/feedback.py)
USER_TURN_TEMPLATE = "user_turn.jinja"  # the backend playing the user in a conversation
TOOL_RESULTS_TEMPLATE = "tool_results.jinja"  # the backend playing the tools
TOOLS_TEMPLATE = "tools.jinja"  # the offered tools, added to the answering system prompt
CODE_TESTS_TEMPLATE = "code_tests.jinja"  # tests for a code answer that stated none
DEFAULT_PERSONA = "a user who wants a clear, correct answer"


class TemplateRenderError(GapfillError):
    """A template could not be rendered for a gap. Seen by whoever edits prompts/."""


class PromptDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests_per_task: int = Field(default=5, ge=1, le=50)
    seeds_per_task: int = Field(default=3, ge=0, le=20)
    instruction_sampling: SamplingParams = Field(default_factory=SamplingParams)
    response_sampling: SamplingParams = Field(default_factory=SamplingParams)
    preference_variants: list[SamplingParams] = Field(default_factory=list)
    personas: list[str] = Field(default_factory=list)

    def with_max_tokens(self, max_tokens: int) -> PromptDefaults:
        """These defaults with every generation (requests, answers, both preference answers)
        allowed ``max_tokens`` tokens: a campaign's ``max_tokens`` key."""

        def capped(sampling: SamplingParams) -> SamplingParams:
            return sampling.model_copy(update={"max_tokens": max_tokens})

        return self.model_copy(
            update={
                "instruction_sampling": capped(self.instruction_sampling),
                "response_sampling": capped(self.response_sampling),
                "preference_variants": [capped(v) for v in self.preference_variants],
            }
        )


class PromptTemplates:
    """The templates of one directory (default: the packaged ``prompts/``)."""

    def __init__(self, directory: Path | None = None) -> None:
        root = directory or Path(str(resources.files("prompts")))
        if not root.is_dir():
            raise TemplateRenderError(f"{root}: no such template directory")
        self.directory = root
        # Sandboxed: a run's templates reach its workers through the store, which is untrusted
        # (whoever can write to it must not be able to run code on a worker through a template).
        self.environment = ImmutableSandboxedEnvironment(
            loader=jinja2.FileSystemLoader(root),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
            autoescape=False,  # prompts are plain text; nothing here is rendered as HTML
        )

    def source(self, name: str) -> str:
        path = self.directory / name
        if not path.is_file():
            raise TemplateRenderError(f"template {name!r} not found in {self.directory}")
        return path.read_text(encoding="utf-8")

    def hash(self, name: str) -> str:
        return hashlib.sha256(self.source(name).encode()).hexdigest()[:16]

    def render(self, name: str, *, gap: Gap | None = None, **variables: Any) -> str:
        try:
            template = self.environment.get_template(name)
            return template.render(gap=gap, **variables).strip()
        except jinja2.TemplateNotFound as exc:
            raise TemplateRenderError(f"template {name!r} not found in {self.directory}") from exc
        except SecurityError as exc:
            raise TemplateRenderError(f"template {name!r}: refused: {exc}") from exc
        except jinja2.UndefinedError as exc:
            where = f" for gap {gap.id!r}" if gap is not None else ""
            raise TemplateRenderError(f"template {name!r}{where}: {exc.message}") from exc
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateRenderError(
                f"template {name!r} line {exc.lineno}: {exc.message}"
            ) from exc

    def defaults(self) -> PromptDefaults:
        path = self.directory / "defaults.yaml"
        if not path.is_file():
            return PromptDefaults()
        return PromptDefaults.model_validate(read_yaml(path, ConfigError) or {})


def tasks_for_gap(
    gap: Gap,
    templates: PromptTemplates,
    *,
    kind: CandidateKind = CandidateKind.SFT,
    defaults: PromptDefaults | None = None,
    wanted: int | None = None,
    seed: int = 0,
    accepted: Sequence[str] = (),
    avoid: Sequence[str] = (),
    conversation: ConversationSettings | None = None,
    answers: int = 2,
) -> list[GenerationTask]:
    """Instruction tasks that together ask for ``wanted`` (default: the gap's deficit) requests.

    In a later round (``generator/feedback.py``), ``accepted`` (requests reviewers accepted)
    come first among the seeds, and ``avoid`` (lines of the gap's avoid-list) goes in the prompt.
    ``conversation`` makes each request the start of a longer conversation (more user turns,
    tools): what its later steps need is rendered here, once. ``answers``: per request of a
    preference run, 2 (a pair) or more (a ranking), the defaults' variants taken in turn.
    """
    settings = defaults or templates.defaults()
    count = gap.deficit if wanted is None else wanted
    if count <= 0:
        return []
    per_task = settings.requests_per_task
    system = templates.render(RESPONSE_TEMPLATE, gap=gap) or None
    talk = conversation or ConversationSettings()
    if kind is CandidateKind.PREFERENCE and (talk.turns > 1 or talk.tools):
        raise TemplateRenderError(
            "conversation: more turns and tools are generated for sft runs only (a preference "
            "pair compares single answers)"
        )
    tools = list(talk.tools) or None
    if tools:
        offered = templates.render(TOOLS_TEMPLATE, gap=gap, tools=tools)
        system = f"{system}\n\n{offered}" if system else offered
    personas = talk.personas or settings.personas or [DEFAULT_PERSONA]
    instructions_hash = templates.hash(INSTRUCTIONS_TEMPLATE)
    response_hash = templates.hash(RESPONSE_TEMPLATE)
    variants = settings.preference_variants if kind is CandidateKind.PREFERENCE else []
    if kind is CandidateKind.PREFERENCE and len(variants) < 2:
        raise TemplateRenderError("preference runs need two preference_variants in defaults.yaml")
    if variants and answers > 2:
        # More answers than variants: the variants in turn, a seeded one shifted each time
        # round, so two answers under the same setting still differ.
        variants = [_nth_variant(variants, i) for i in range(answers)]
    rng = random.Random(f"{gap.run_id}:{gap.id}:{seed}")
    # Personas from a generator of their own: the seeds and samples drawn from ``rng`` stay
    # what they were before conversations existed, so a stored run's tasks come out the same.
    persona_rng = random.Random(f"{gap.run_id}:{gap.id}:{seed}:persona")
    tasks = []
    for index in range(math.ceil(count / per_task)):
        asked = min(per_task, count - index * per_task)
        seeds = _seeds(list(accepted), gap.examples, settings.seeds_per_task, rng)
        prompt = templates.render(
            INSTRUCTIONS_TEMPLATE, gap=gap, seeds=seeds, count=asked, avoid=list(avoid)
        )
        messages = [Message(role="user", content=prompt)]
        persona = persona_rng.choice(personas)
        tasks.append(
            GenerationTask(
                run_id=gap.run_id,
                gap_id=gap.id,
                stage=TaskStage.INSTRUCTIONS,
                kind=kind,
                messages=messages,
                sampling=settings.instruction_sampling.model_copy(
                    update={"seed": rng.randrange(2**31)}
                ),
                response_sampling=settings.response_sampling,
                response_system=system,
                variants=variants,
                json_schema=instructions_schema(asked),
                template_name=INSTRUCTIONS_TEMPLATE,
                template_hash=instructions_hash,
                templates=[
                    TemplateUse(
                        step="instructions",
                        name=INSTRUCTIONS_TEMPLATE,
                        hash=instructions_hash,
                        messages=messages,
                    )
                ],
                response_template_hash=response_hash,
                priority=float(gap.deficit),
                turns=talk.turns,
                user_system=(
                    templates.render(USER_TURN_TEMPLATE, gap=gap, persona=persona)
                    if talk.turns > 1
                    else None
                ),
                tools=tools,
                tool_system=templates.render(TOOL_RESULTS_TEMPLATE, gap=gap) if tools else None,
                max_tool_rounds=talk.max_tool_rounds,
                step_template_hashes=_step_hashes(templates, talk, code=gap.code),
                code=gap.code,
                code_tests_system=templates.render(CODE_TESTS_TEMPLATE, gap=gap)
                if gap.code
                else None,
            )
        )
    return tasks


def _nth_variant(variants: list[SamplingParams], index: int) -> SamplingParams:
    variant = variants[index % len(variants)]
    if variant.seed is None or index < len(variants):
        return variant
    return variant.model_copy(update={"seed": variant.seed + index})


def _step_hashes(
    templates: PromptTemplates, talk: ConversationSettings, *, code: bool
) -> dict[str, str]:
    names = [USER_TURN_TEMPLATE] if talk.turns > 1 else []
    names += [TOOL_RESULTS_TEMPLATE, TOOLS_TEMPLATE] if talk.tools else []
    names += [CODE_TESTS_TEMPLATE] if code else []
    return {name: templates.hash(name) for name in names}


def _seeds(accepted: list[str], pool: list[str], wanted: int, rng: random.Random) -> list[str]:
    """Reviewers' accepted requests first (a sample of them), then the gap's own examples."""
    taken = rng.sample(accepted, min(wanted, len(accepted))) if accepted else []
    left = [example for example in pool if example not in taken]
    return taken + (rng.sample(left, min(wanted - len(taken), len(left))) if left else [])
