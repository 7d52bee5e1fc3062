"""Campaigns from a config file: planning the run (gaps, run config, tasks for the largest gaps)
and `gapfill run --workers external`, on the demo campaign's real data."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.campaign import load_campaign, plan
from generator.errors import ConfigError
from generator.evaluation.runner import EvalOptions, evaluate, read_input
from generator.store import Store
from tests.factories import run_cli

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo" / "campaign.yaml"


def test_the_demo_campaign_plans_tasks_for_its_largest_gaps(
    store: Store, embedder: object, model_dir: Path
) -> None:
    config = load_campaign(DEMO, {"gaps": 2, "per_gap": 3})
    assert config.data.is_absolute() and config.eval_sets[0].name == "HumanEval.jsonl.gz"
    planned = plan(config, store, embedder)  # type: ignore[arg-type]
    deficits = sorted((g.deficit for g in planned.report.gaps), reverse=True)
    chosen = [g for g in planned.report.gaps if g.id in planned.chosen]
    assert sorted((g.deficit for g in chosen), reverse=True) == deficits[:2]
    assert planned.tasks == len(store.open_tasks("demo")) and planned.tasks >= 2
    run = store.get_run("demo")
    assert run is not None and run.eval_sets == [str(config.eval_sets[0])]
    assert {t.gap_id for t in store.get_tasks(store.open_tasks("demo"))} == set(planned.chosen)

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
    with pytest.raises(ConfigError, match=r"campaign.yaml: .*missing.jsonl: no such file"):
        load_campaign(config)
    config.write_text("run: x\ndata: d.jsonl\ncolour: red\n")
    with pytest.raises(ConfigError, match=r"yaml: colour: Extra inputs are not permitted"):
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
