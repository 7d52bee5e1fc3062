"""Campaigns from a config file: planning the run (gaps, run config, tasks for the largest gaps)
and `gapfill run --workers external`, on the demo campaign's real data; the file's keys, each
described in the model, printed by `gapfill run --schema` and in docs/campaign.md (generated from
the model, so it cannot drift); a mistyped key named with its line and the key it resembles."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import get_args

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml
from pydantic import BaseModel

from generator.campaign import CampaignConfig, load_campaign, plan
from generator.errors import ConfigError
from generator.evaluation.runner import EvalOptions, evaluate, read_input
from generator.store import Store
from tests.factories import cli_env, run_cli

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo" / "campaign.yaml"


def test_the_demo_campaign_plans_tasks_for_its_largest_gaps(
    store: Store, embedder: object, model_dir: Path
) -> None:
    config = load_campaign(DEMO, {"gaps": 2, "per_gap": 3, "max_tokens": 200})
    assert config.data.is_absolute() and config.eval_sets[0].name == "HumanEval.jsonl.gz"
    planned = plan(config, store, embedder)  # type: ignore[arg-type]
    deficits = sorted((g.deficit for g in planned.report.gaps), reverse=True)
    chosen = [g for g in planned.report.gaps if g.id in planned.chosen]
    assert sorted((g.deficit for g in chosen), reverse=True) == deficits[:2]
    assert planned.tasks == len(store.open_tasks("demo")) and planned.tasks >= 2
    run = store.get_run("demo")
    assert run is not None and run.eval_sets == [str(config.eval_sets[0])]
    tasks = store.get_tasks(store.open_tasks("demo"))
    assert {t.gap_id for t in tasks} == set(planned.chosen)
    # max_tokens raises (or lowers) every generation's limit: the requests' and the answers'.
    assert all(t.sampling.max_tokens == 200 for t in tasks)
    assert all(t.response_sampling and t.response_sampling.max_tokens == 200 for t in tasks)

    # The eval report's coverage section: the reference traffic itself, evaluated against this
    # gap report, fills the reference gaps it was clustered into.
    data = read_input(config.reference, "sft")  # type: ignore[arg-type]
    data.gap_reports = {"demo": planned.report}
    options = EvalOptions(stage="sft", tokenizer=str(model_dir))
    coverage = evaluate(data, options, embedder, model_dir.parent).report.coverage  # type: ignore[arg-type]
    assert coverage is not None and coverage.runs == ["demo"]
    assert all(g.after == g.have + g.added for g in coverage.gaps)
    assert sum(g.added for g in coverage.gaps) > 0


def test_a_bad_campaign_config_names_the_file_and_the_key(tmp_path: Path) -> None:
    config = tmp_path / "campaign.yaml"
    config.write_text("run: x\ndata: missing.jsonl\nreference: also-missing.jsonl\n")
    with pytest.raises(ConfigError, match=r"campaign.yaml:2: data: .*/missing.jsonl: no such file"):
        load_campaign(config)
    (tmp_path / "d.jsonl").write_text('{"messages": []}\n')
    config.write_text(
        "run: x\ndata: d.jsonl\nreference: d.jsonl\neval_sets:\n  - d.jsonl\n  - e.jsonl\n"
    )
    with pytest.raises(ConfigError, match=r"campaign.yaml:6: eval_sets.1: .*/e.jsonl: no such"):
        load_campaign(config)
    config.write_text("run: x\ndata: d.jsonl\ncolour: red\n")
    with pytest.raises(ConfigError, match=r"yaml:3: colour: unknown key; `gapfill run --schema`"):
        load_campaign(config)
    (tmp_path / "d.jsonl").write_text('{"messages": []}\n')
    config.write_text("run: x\ndata: d.jsonl\n")
    with pytest.raises(ConfigError, match="give a taxonomy or a reference set"):
        load_campaign(config)


@pytest.mark.slow
def test_gapfill_run_with_external_workers_enqueues_and_stops(
    server_url: str, key_prefix: str, store: Store, tmp_path: Path
) -> None:
    env = {
        "GAPFILL_REDIS_URL": server_url,
        "GAPFILL_KEY_PREFIX": key_prefix,
        "GAPFILL_DATA_DIR": str(tmp_path / "data"),
        "PATH": "/usr/bin:/bin",
        "HF_HUB_OFFLINE": "1",
    }
    done = run_cli(env, "run", str(DEMO), "--workers", "external")
    assert done.returncode == 0, done.stderr
    assert "gaps of seed_tasks.jsonl" in done.stdout and "start workers with" in done.stdout
    assert store.task_counts("demo")[1] > 0
    bad = run_cli(env, "run", str(DEMO), "--workers", "threads")
    message = " ".join(bad.stderr.replace("│", " ").split())  # typer's usage error, boxed
    assert bad.returncode == 2 and "'threads' is not one of 'inprocess', 'external'" in message


def _models(model: type[BaseModel]) -> list[type[BaseModel]]:
    """The model and every section it nests, at any depth (a section may be null)."""
    found = [model]
    for field in model.model_fields.values():
        for inner in (field.annotation, *get_args(field.annotation)):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                found += _models(inner)
    return found


def test_every_key_of_the_campaign_file_is_described() -> None:
    undescribed = [
        f"{model.__name__}.{name}"
        for model in _models(CampaignConfig)
        for name, field in model.model_fields.items()
        if not field.description
    ]
    assert undescribed == []


def test_gapfill_run_schema_prints_the_json_schema_the_demo_campaign_meets() -> None:
    done = run_cli(cli_env(), "run", "--schema", timeout=120)
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    sections = [schema, *schema["$defs"].values()]
    assert {"filters", "review", "taxonomy", "reference_threshold"} <= set(schema["properties"])
    assert all(section["additionalProperties"] is False for section in sections)
    assert all("description" in key for s in sections for key in s["properties"].values())
    demo = yaml.safe_load(DEMO.read_text())
    jsonschema.validate(demo, schema)
    with pytest.raises(jsonschema.ValidationError, match="'reveiw' was unexpected"):
        jsonschema.validate({**demo, "reveiw": {}}, schema)


def test_the_committed_campaign_reference_is_what_its_script_writes_now() -> None:
    """docs/campaign.md is generated from the model: a key added or changed without rerunning
    `python scripts/campaign_reference.py` fails here."""
    script = ROOT / "scripts" / "campaign_reference.py"
    done = subprocess.run(
        [sys.executable, str(script), "--stdout"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert (ROOT / "docs" / "campaign.md").read_text(encoding="utf-8") == done.stdout
    for model in _models(CampaignConfig):
        for name, field in model.model_fields.items():
            assert f"| `{name}` |" in done.stdout and str(field.description) in done.stdout


def test_the_demo_campaign_points_at_the_reference() -> None:
    header = [line for line in DEMO.read_text().splitlines() if line.startswith("#")]
    assert any("docs/campaign.md" in line for line in header)


TYPOS = {
    "a section": ("reveiw:\n  reviewers_per_item: 2\n", 4, "reveiw", "review"),
    "a nested key": (
        "filters:\n  judge: false\n  min_qualty: 0.5\n",
        6,
        "filters.min_qualty",
        "quality",
    ),
    "a required key": ("", 2, "dta", "data"),
    "a threshold": ("refernce_threshold: 0.4\n", 4, "refernce_threshold", "reference_threshold"),
}


@pytest.mark.parametrize("case", sorted(TYPOS))
def test_a_mistyped_key_is_one_line_naming_its_line_and_the_key_it_resembles(
    tmp_path: Path, case: str
) -> None:
    extra, line, where, meant = TYPOS[case]
    (tmp_path / "d.jsonl").write_text('{"messages": []}\n')
    data = "dta" if case == "a required key" else "data"
    config = tmp_path / "campaign.yaml"
    config.write_text(f"run: x\n{data}: d.jsonl\nreference: d.jsonl\n{extra}")
    done = run_cli(cli_env(), "run", str(config), timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr == (
        f"error: {config}:{line}: {where}: unknown key; did you mean '{meant}'?\n"
    )


def test_the_next_round_takes_the_earlier_rounds_accepted_requests_and_avoid_list(
    store: Store, embedder: object
) -> None:
    from generator.schema import Candidate, CandidateKind, CandidateStatus
    from tests.factories import sft

    first = load_campaign(DEMO, {"gaps": 2, "per_gap": 3})
    planned = plan(first, store, embedder)  # type: ignore[arg-type]
    gap = next(g for g in planned.report.gaps if g.id == planned.chosen[0])
    items = [
        Candidate(
            kind=CandidateKind.SFT,
            payload=sft(question, "An answer."),
            run_id="demo",
            gap_id=gap.id,
            status=CandidateStatus.PENDING,
        )
        for question in ("An accepted request?", "A duplicate request?", "Another duplicate?")
    ]
    store.put_many(items)
    for item, verdict in zip(items, ("accept", "reject", "reject"), strict=True):
        lease = store.claim_item(item.id, "ann")
        tags = ["duplicate"] if verdict == "reject" else None
        store.decide(item.id, "ann", verdict, lease.version, reason_tags=tags)  # type: ignore[arg-type]
    second = load_campaign(DEMO, {"gaps": 2, "per_gap": 3, "run": "demo-2"})
    again = plan(second, store, embedder, after="demo")  # type: ignore[arg-type]
    assert gap.id in again.chosen and again.feedback[gap.id].seeds == ["An accepted request?"]
    tasks = [t for t in store.get_tasks(store.open_tasks("demo-2")) if t.gap_id == gap.id]
    prompt = tasks[0].messages[0].content
    assert "- An accepted request?" in prompt
    assert "- repeating a request already made (2 turned down as duplicates)" in prompt
    run = store.get_run("demo-2")
    assert run is not None and run.description.endswith("the round after run demo")
    with pytest.raises(ConfigError, match="--after: no earlier run 'nope'"):
        plan(second, store, embedder, after="nope")  # type: ignore[arg-type]


CONVERSATION_ERRORS = {
    "a tool whose parameters are no JSON Schema": (
        "conversation:\n  tools:\n    - function: {name: f, parameters: {type: nope}}\n",
        r"conversation.tools.0.function.parameters: .*not a valid JSON Schema",
    ),
    "a tool name an API would refuse": (
        "conversation:\n  tools:\n    - function: {name: 'send mail'}\n",
        r"conversation.tools.0.function.name",
    ),
    "more turns for a preference run": (
        "kind: preference\nconversation: {turns: 3}\n",
        r"conversation: more turns and tools are generated for kind sft only",
    ),
    "too many turns": ("conversation: {turns: 50}\n", r"conversation.turns"),
}


@pytest.mark.parametrize("case", sorted(CONVERSATION_ERRORS))
def test_a_bad_conversation_section_is_one_error_naming_the_key(tmp_path: Path, case: str) -> None:
    text, reason = CONVERSATION_ERRORS[case]
    (tmp_path / "d.jsonl").write_text('{"messages": []}\n')
    config = tmp_path / "campaign.yaml"
    config.write_text(f"run: x\ndata: d.jsonl\nreference: d.jsonl\n{text}")
    with pytest.raises(ConfigError, match=rf"campaign.yaml(:\d+)?: (file: )?{reason}"):
        load_campaign(config)
