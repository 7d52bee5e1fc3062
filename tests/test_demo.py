"""The whole loop, end to end, as a new user runs it: `gapfill demo --size small --no-ui` with the
real bundled model, then review through the store API, export (SFT, and a preference pair from
a reviewer's edit) and the gap report after review.

Minutes of CPU: the demo generates about a dozen candidates with SmolLM2-135M.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from generator.coverage import GapReport, count_into_gaps
from generator.embeddings import Embedder
from generator.schema import PREFERENCE_PAIR_TAG, CandidateStatus, Message, SFTExample
from generator.store import Store
from tests.factories import run_cli

# The whole demo campaign in a subprocess: gaps, generation by the bundled model, scoring.
pytestmark = pytest.mark.slow

RUN = "demo"


@pytest.fixture(scope="module")
def demo(
    valkey_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, str], str]]:
    """The demo, run once for this module on the session's bundled Valkey."""
    prefix = "gapfill-demo-test"
    env = {
        "GAPFILL_REDIS_URL": valkey_url,
        "GAPFILL_KEY_PREFIX": prefix,
        "GAPFILL_DATA_DIR": str(tmp_path_factory.mktemp("demo") / "data"),
        "PATH": "/usr/bin:/bin",
        "HF_HUB_OFFLINE": "1",
    }
    done = run_cli(env, "demo", "--size", "small", "--no-ui", timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    yield env, done.stdout
    client = redis.Redis.from_url(valkey_url)
    for key in client.scan_iter(f"{prefix}:*", count=1000):
        client.delete(key)


def test_the_demo_measures_generates_scores_and_reports_the_funnel(
    demo: tuple[dict[str, str], str],
) -> None:
    env, stdout = demo
    assert "1/4 gaps of seed_tasks.jsonl" in stdout
    assert "reference prompts covered" in stdout
    assert "3/4 the funnel" in stdout and "all gaps" in stdout
    assert "next: gapfill ui --local" in stdout
    store = Store(
        redis.Redis.from_url(env["GAPFILL_REDIS_URL"], decode_responses=True),
        prefix=env["GAPFILL_KEY_PREFIX"],
    )
    items = [store.get(i) for s in CandidateStatus for i in store.ids(RUN, s)]
    assert len(items) >= 6, "the bundled model's JSON is constrained: requests parse"
    assert all(i.status is not CandidateStatus.GENERATED for i in items), "every item scored"
    assert {i.provenance.backend for i in items} == {"local"}
    assert sum(i.status is CandidateStatus.PENDING for i in items) >= 3


def test_review_export_and_the_gap_report_close_the_loop(
    demo: tuple[dict[str, str], str], tmp_path: Path, embedder: Embedder
) -> None:
    env, _ = demo
    store = Store(
        redis.Redis.from_url(env["GAPFILL_REDIS_URL"], decode_responses=True),
        prefix=env["GAPFILL_KEY_PREFIX"],
    )
    before = GapReport.model_validate_json(store.gap_report_json(RUN) or "")

    # A reviewer works through the queue: edits the first answer (marking the edit as a
    # preference pair), rejects the second, accepts the rest.
    decided: dict[str, str] = {}
    while (lease := store.claim("alice", RUN)) is not None:
        item = store.get(lease.item_id)
        assert isinstance(item.payload, SFTExample)
        if not decided:
            better = item.payload.model_copy(
                update={
                    "messages": [
                        *item.payload.messages[:-1],
                        Message(role="assistant", content="A corrected, complete answer."),
                    ]
                }
            )
            store.decide(
                item.id,
                "alice",
                "edit",
                lease.version,
                edited_payload=better,
                reason_tags=[PREFERENCE_PAIR_TAG],
            )
            decided[item.id] = "edit"
        elif len(decided) == 1:
            store.decide(item.id, "alice", "reject", lease.version)
            decided[item.id] = "reject"
        else:
            store.decide(item.id, "alice", "accept", lease.version)
            decided[item.id] = "accept"
    accepted = [i for i, verdict in decided.items() if verdict != "reject"]
    assert len(accepted) >= 2

    sft_out = tmp_path / "sft"
    done = run_cli(env, "export", "--run", RUN, "--kind", "sft", "--out", str(sft_out))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (sft_out / "train.jsonl").read_text().splitlines()]
    excluded = (sft_out / "excluded.jsonl").read_text().splitlines()
    assert len(rows) + len(excluded) == len(accepted), "every accepted item, kept or excused"
    assert rows, "something the reviewer accepted was exported"
    assert "A corrected, complete answer." in {r["messages"][-1]["content"] for r in rows}
    provenance = [json.loads(line) for line in (sft_out / "provenance.jsonl").open()]
    assert {p["item_id"] for p in provenance} <= set(accepted)
    assert all(p["review"]["reviewers"] == ["alice"] for p in provenance)
    assert all(p["model"] and p["template_name"] for p in provenance)
    assert sum(p["review"]["edit_diff"] is not None for p in provenance) == 1
    audit = run_cli(env, "audit", str(sft_out))
    assert audit.returncode == 0, audit.stdout + audit.stderr

    from datasets import load_dataset
    from trl.data_utils import is_conversational

    dataset = load_dataset("json", data_files=str(sft_out / "train.jsonl"), split="train")
    assert all(is_conversational(row) for row in dataset)

    pair_out = tmp_path / "pairs"
    done = run_cli(env, "export", "--run", RUN, "--kind", "preference", "--out", str(pair_out))
    assert done.returncode == 0, done.stderr
    [pair] = [json.loads(line) for line in (pair_out / "train.jsonl").read_text().splitlines()]
    assert pair["chosen"] == [{"role": "assistant", "content": "A corrected, complete answer."}]
    assert pair["rejected"][0]["content"] != pair["chosen"][0]["content"]
    assert is_conversational(pair)

    # The gap report after review: the reviewed gaps gained what was accepted into them.
    gained = count_into_gaps(
        before, [p.prompt_text() for p in store.accepted_payloads(RUN)], embedder
    )
    reviewed = {store.get(i).gap_id for i in accepted}
    assert sum(gained[g] for g in reviewed) >= 1, gained
    for gap in before.gaps:
        if gained[gap.id]:
            assert max(gap.target - gap.have - gained[gap.id], 0) < gap.deficit
    compare = run_cli(env, "gaps", "--compare", RUN)
    assert compare.returncode == 0, compare.stderr
    assert f"{len(store.accepted_payloads(RUN))} accepted items counted in" in compare.stdout
