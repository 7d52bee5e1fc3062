"""Every item gets a current PII/secret screen: at import, from the filter pipeline, and again
with every edit (in the same atomic step as the decision), so the export can refuse anything
whose screen is missing, stale or failed."""

from __future__ import annotations

import json
from pathlib import Path
from random import Random
from typing import Any

import orjson
import pytest

from generator.errors import LeaseError, StaleVersionError
from generator.filters.pii import PIIFilter
from generator.filters.pipeline import FilterPipeline
from generator.schema import Candidate, CandidateKind, CandidateStatus, SFTExample
from generator.screening import (
    PII_FILTER,
    SCREENED_HASH,
    candidate_screened_hash,
    pii_score_is_current,
    screen,
    screen_all,
    screened_hash,
)
from generator.store import Store
from tests.factories import candidate, cli_env, preference, run_cli, sft

# The finding's reproduction: an imported row with an e-mail address, a US social security
# number and an AWS access key id (a fake: AKIA and 16 random base32 characters).
AWS_KEY = "AKIA" + "".join(Random(5).choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", k=16))
LEAKY = f"Reach me at jane.doe@example.org; SSN 536-22-8726; aws_access_key_id={AWS_KEY}"


def raw_item(store: Store, item_id: str) -> dict[str, Any]:
    """The item as the export reads it: stored JSON, not a model."""
    [item] = store.get_many_raw([item_id])
    return item


def pii(store: Store, item_id: str) -> dict[str, Any]:
    return raw_item(store, item_id)["scores"][PII_FILTER]  # type: ignore[no-any-return]


def claim(store: Store, item: Candidate, reviewer: str = "alice") -> int:
    lease = store.claim(reviewer, item.run_id)
    assert lease is not None and lease.item_id == item.id
    return lease.version


def with_payload(text: str, index: int = 0) -> Candidate:
    return Candidate(
        kind=CandidateKind.SFT,
        payload=sft(f"Question {index}?", text),
        run_id="run-1",
        gap_id="gap-a",
        status=CandidateStatus.PENDING,
    )


def test_the_hash_of_a_model_is_the_hash_of_its_stored_json() -> None:
    edited = candidate(1).model_copy(update={"edited": sft("Edited?", "Edited.")})
    malformed = Candidate(kind=CandidateKind.SFT, raw="not json {", run_id="r")
    for item in (candidate(1), edited, preference(2), malformed):
        assert candidate_screened_hash(item) == screened_hash(item.model_dump(mode="json"))
        assert candidate_screened_hash(item) == screened_hash(orjson.loads(item.model_dump_json()))
    assert candidate_screened_hash(edited) != candidate_screened_hash(candidate(1))


def test_a_screened_item_stored_and_read_back_raw_has_a_current_score(store: Store) -> None:
    items = screen_all([candidate(1), preference(2), with_payload(LEAKY, 3)])
    store.put_many(items)
    for chunk in store.iter_raw([c.id for c in items]):
        assert all(pii_score_is_current(item) for item in chunk)
    assert [pii(store, c.id)["passed"] for c in items] == [True, True, False]


def test_every_pii_score_the_filter_makes_records_what_it_screened() -> None:
    item = candidate(1)
    [score] = PIIFilter().score([item])
    assert score.evidence[SCREENED_HASH] == candidate_screened_hash(item)
    edited = item.model_copy(update={"edited": sft("New?", f"Mail {LEAKY}")})
    assert not screen(edited).passed, "the edit is screened, not the original"


def write_rows(path: Path, outputs: list[str]) -> Path:
    rows = [{"instruction": f"Task {i}", "output": out} for i, out in enumerate(outputs)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_gapfill_import_flags_a_row_with_an_email_an_ssn_and_an_aws_key(
    store: Store, server_url: str, tmp_path: Path
) -> None:
    path = write_rows(tmp_path / "rows.jsonl", [LEAKY, "A clean answer."])
    result = run_cli(cli_env(store, server_url), "import", str(path), "--run", "run-1", timeout=120)
    assert result.returncode == 0, result.stderr
    items = store.get_many_raw(list(store.ids("run-1", CandidateStatus.PENDING)))
    assert len(items) == 2 and all(pii_score_is_current(item) for item in items)
    leaky = next(i for i in items if "jane.doe" in json.dumps(i["payload"]))
    clean = next(i for i in items if i is not leaky)
    score = leaky["scores"][PII_FILTER]
    assert not score["passed"]
    for kind in ("email", "US SSN", "AWS Access Key"):
        assert kind in score["reason"]
    evidence = json.dumps(score["evidence"])
    assert AWS_KEY not in evidence and "536-22-8726" not in evidence and "jane.doe" not in evidence
    assert clean["scores"][PII_FILTER]["passed"]


def test_an_edit_that_adds_an_email_is_screened_with_the_decision(store: Store) -> None:
    item = screen_all([candidate(1)])[0]
    store.put(item)
    version = claim(store, item)
    edit = sft("Question number 1?", "Write to jane.doe@example.org for the answer.")
    store.decide(item.id, "alice", "edit", version, edited_payload=edit)
    score = pii(store, item.id)
    assert not score["passed"] and "email" in score["reason"]
    assert pii_score_is_current(raw_item(store, item.id))
    assert store.get(item.id).status is CandidateStatus.ACCEPTED, (
        "the edit stands; the export refuses it until a reviewer clears the flag"
    )


def test_an_edit_that_removes_the_personal_data_passes_the_screen(store: Store) -> None:
    item = screen_all([with_payload(LEAKY)])[0]
    store.put(item)
    assert not pii(store, item.id)["passed"]
    version = claim(store, item)
    store.decide(item.id, "alice", "edit", version, edited_payload=sft("Question 0?", "Redacted."))
    assert pii(store, item.id)["passed"]
    assert pii_score_is_current(raw_item(store, item.id))


def test_an_undo_that_drops_the_edit_screens_the_original_again(store: Store) -> None:
    item = screen_all([with_payload(LEAKY)])[0]
    store.put(item)
    version = claim(store, item)
    store.decide(item.id, "alice", "edit", version, edited_payload=sft("Question 0?", "Redacted."))
    store.undo(item.id, "alice")
    after = raw_item(store, item.id)
    assert after["edited"] is None and pii_score_is_current(after)
    assert not pii(store, item.id)["passed"], "the original's PII is flagged again"


def test_a_decision_on_an_item_never_screened_screens_it(store: Store) -> None:
    item = candidate(1)  # stored as before screening existed: no pii score
    store.put(item)
    assert PII_FILTER not in raw_item(store, item.id)["scores"]
    store.decide(item.id, "alice", "accept", claim(store, item))
    assert pii_score_is_current(raw_item(store, item.id))


def test_under_overlap_the_last_edit_is_the_one_screened(store: Store) -> None:
    item = screen_all([candidate(1)])[0]
    store.put(item)
    store.redis.hset(store.keys.run("run-1", "review"), mapping={"k": 2, "rule": "majority"})
    edit = sft("Question number 1?", f"Key: {AWS_KEY}")
    store.decide(item.id, "alice", "edit", claim(store, item), edited_payload=edit)
    assert not pii(store, item.id)["passed"]
    store.decide(item.id, "bob", "accept", claim(store, item, "bob"))
    assert store.get(item.id).status is CandidateStatus.ACCEPTED
    assert pii_score_is_current(raw_item(store, item.id)) and not pii(store, item.id)["passed"]


def test_a_refused_edit_changes_neither_the_item_nor_its_screen(store: Store) -> None:
    item = screen_all([candidate(1)])[0]
    store.put(item)
    version = claim(store, item)
    before = raw_item(store, item.id)
    edit = sft("Question number 1?", "Mail jane.doe@example.org")
    with pytest.raises(StaleVersionError):
        store.decide(item.id, "alice", "edit", version + 1, edited_payload=edit)
    with pytest.raises(LeaseError):
        store.decide(item.id, "bob", "edit", version, edited_payload=edit)
    assert raw_item(store, item.id) == before


def test_the_filter_pipeline_leaves_generated_items_with_a_current_screen(store: Store) -> None:
    generated = [
        with_payload(text, i).model_copy(update={"status": CandidateStatus.GENERATED})
        for i, text in enumerate(["A clean answer.", LEAKY])
    ]
    store.put_many(generated)
    FilterPipeline([PIIFilter()]).score_and_route(store, [c.id for c in generated])
    items = store.get_many_raw([c.id for c in generated])
    assert all(pii_score_is_current(i) for i in items)
    assert [i["status"] for i in items] == ["pending", "auto_rejected"]


def test_an_edit_screen_is_made_on_the_stored_json_form(store: Store) -> None:
    """The edit's hash is computed before the script stores the edit: it must match what a
    reader computes from the stored edit."""
    item = screen_all([candidate(1)])[0]
    store.put(item)
    edit = SFTExample.model_validate(
        {"messages": [{"role": "user", "content": "Q é ✓?"}, {"role": "assistant", "content": "A"}]}
    )
    store.decide(item.id, "alice", "edit", claim(store, item), edited_payload=edit)
    stored = store.get(item.id)
    assert stored.edited == edit
    assert stored.scores[PII_FILTER].evidence[SCREENED_HASH] == candidate_screened_hash(stored)


def test_gapfill_rescreen_screens_the_items_an_older_gapfill_stored_unscreened(
    store: Store, server_url: str
) -> None:
    unscreened = Candidate(
        kind=CandidateKind.SFT,
        payload=sft("Who do I write to?", LEAKY),
        run_id="run-1",
        status=CandidateStatus.PENDING,
    )
    store.put_many([unscreened, candidate(2)])  # no screen, as before screening existed
    version = raw_item(store, unscreened.id)["version"]
    assert not pii_score_is_current(raw_item(store, unscreened.id))
    env = cli_env(store, server_url)
    result = run_cli(env, "rescreen", "--run", "run-1", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "2 items, 2 screened now, 0 current" in result.stdout
    item = raw_item(store, unscreened.id)
    assert pii_score_is_current(item) and not item["scores"][PII_FILTER]["passed"]
    assert item["version"] == version, "a screen is no decision: leases stay valid"
    again = run_cli(env, "rescreen", "--run", "run-1", timeout=120)
    assert "0 screened now, 2 current" in again.stdout


def test_gapfill_rescreen_of_an_unknown_or_malformed_run_is_one_line(
    store: Store, server_url: str
) -> None:
    env = cli_env(store, server_url)
    for run, reason in (("nope", "no run 'nope' in the store"), ("a:b", "is not a valid id")):
        result = run_cli(env, "rescreen", "--run", run, timeout=120)
        assert result.returncode == 1 and reason in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
