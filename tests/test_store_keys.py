"""The key layout documented in generator/store/keys.py is the one the store writes: a workload
touching every part of the store, then every key under the test prefix checked against LAYOUT."""

from __future__ import annotations

import dataclasses

from generator.schema import CandidateStatus, Gap, GenerationTask, Message, RunConfig
from generator.store import Store
from generator.store.keys import LAYOUT, KeySpec, pattern_regex
from tests.factories import candidate


def workload(store: Store) -> None:
    """Items, tasks, runs and gaps, leases, decisions, votes, undo, bulk actions, exports, token
    counts, an eval report, a blob, a signed-out UI session and a pre-screen's status and
    audit share, leaving every kind of key non-empty."""
    store.save_run(RunConfig(run_id="run-1"))
    store.save_run(
        RunConfig.model_validate({"run_id": "run-2", "review": {"reviewers_per_item": 2}})
    )
    store.save_gaps("run-1", [Gap(id="gap-a", run_id="run-1", label="A gap")], '{"gaps": 1}')
    done, still_open = (
        GenerationTask(run_id="run-1", gap_id="gap-a", messages=[Message(role="user", content=q)])
        for q in ("One?", "Two?")
    )
    assert store.add_tasks([done, still_open]) == 2
    store.set_task_job([done.id], "job-1")
    assert store.complete_task(done, [candidate(i) for i in range(6)], [], {"tokens": 12.0})
    store.put(candidate(9, status=CandidateStatus.GENERATED))
    store.route(candidate(9).id, CandidateStatus.AUTO_REJECTED)
    store.reopen(candidate(9).id, "alice")
    for verdict in ("accept", "reject", "skip", "accept"):
        lease = store.claim("local:alice", "run-1")
        assert lease is not None
        store.decide(lease.item_id, "local:alice", verdict, lease.version)  # type: ignore[arg-type]
    store.undo(lease.item_id, "local:alice")
    waiting = store.claim("bob", "run-1")
    assert waiting is not None
    store.release(waiting.item_id, "bob")
    store.bulk_reject(waiting.item_id, "bob", ["duplicate"])
    assert store.claim("bob", "run-1") is not None, "one lease left held"
    assert store.queue_depth("run-1") > 0

    store.put(candidate(20, run="run-2"))
    vote = store.claim("alice", "run-2")
    assert vote is not None
    store.decide(vote.item_id, "alice", "accept", vote.version)
    assert store.votes(vote.item_id) == {"alice": "accept"}

    accepted = list(store.ids("run-1", CandidateStatus.ACCEPTED))
    store.mark_exported("exp-1", {i: store.get(i).version for i in accepted})
    store.record_export({"export_id": "exp-1", "runs": ["run-1"]})
    store.save_token_counts("tokenizer-fp", {"conversation": 7})
    store.save_eval_report("run-1", '{"report": 1}')
    store.put_blob(b"a run's existing data")
    # a dataset indexed in chunks (gapfill index): its plan and one chunk's result
    from generator.filters.reference import IndexOptions, ReferenceItem
    from generator.index_chunks import compute_and_store, publish

    plan = publish(store, [ReferenceItem("d:1", ("a row to index",))], chunk_rows=1)
    compute_and_store(store, plan.chunks[0][0], None, IndexOptions(semantic=False))
    store.sign_out_session("0123456789abcdef01234567", 3600)
    store.save_prescreen_status("run-1", '{"run_id": "run-1"}')
    store.add_audit("run-1", {candidate(1).id: "accept"})


def written_keys(store: Store) -> list[tuple[str, str]]:
    """(name after the prefix, Redis type) of every key under the store's prefix."""
    names = sorted(store.redis.scan_iter(match=f"{store.keys.prefix}:*", count=1000))
    with store.redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.type(name)
        types = pipe.execute()
    return [(name.split(":", 1)[1], kind) for name, kind in zip(names, types, strict=True)]


def mismatches(
    keys: list[tuple[str, str]], layout: tuple[KeySpec, ...]
) -> tuple[list[str], list[str]]:
    """Keys that match no documented pattern exactly once with its type, and the documented
    patterns that no key matched."""
    regexes = [(spec, pattern_regex(spec.pattern)) for spec in layout]
    undocumented, seen = [], set()
    for name, kind in keys:
        matched = [spec for spec, regex in regexes if regex.fullmatch(name)]
        if len(matched) == 1 and matched[0].type == kind:
            seen.add(matched[0].pattern)
        else:
            undocumented.append(f"{name} ({kind})")
    return undocumented, [spec.pattern for spec in layout if spec.pattern not in seen]


def test_every_key_the_store_writes_is_documented_and_every_documented_key_is_written(
    store: Store,
) -> None:
    workload(store)
    keys = written_keys(store)
    assert {spec.type for spec in LAYOUT} <= {"string", "hash", "set", "zset", "list", "stream"}
    assert mismatches(keys, LAYOUT) == ([], [])


def test_the_check_finds_an_undocumented_key_a_wrong_type_and_a_key_never_written(
    store: Store,
) -> None:
    workload(store)
    keys = written_keys(store)
    without_gaps = tuple(spec for spec in LAYOUT if spec.pattern != "run:<run>:gaps")
    assert mismatches(keys, without_gaps) == (["run:run-1:gaps (hash)"], [])
    wrong_type = tuple(
        dataclasses.replace(spec, type="string") if spec.pattern == "log" else spec
        for spec in LAYOUT
    )
    assert mismatches(keys, wrong_type) == (["log (stream)"], ["log"])
    never = KeySpec("run:<run>:never", "set", "nothing")
    assert mismatches(keys, (*LAYOUT, never)) == ([], ["run:<run>:never"])


def test_layout_patterns_match_ids_but_not_across_colons() -> None:
    item = pattern_regex("item:<id>")
    assert item.fullmatch("item:0123abcd")
    assert not item.fullmatch("item:0123abcd:votes")
    assert pattern_regex("run:<run>:skipped:<reviewer>").fullmatch("run:r1:skipped:local:alice")
