"""The store, against real servers: the bundled Valkey and (in CI) the machine's Redis."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime

import pytest
import redis

from generator.errors import (
    InvalidTransitionError,
    ItemNotFoundError,
    LeaseError,
    StaleVersionError,
    StoreError,
)
from generator.schema import CandidateStatus, ReviewSettings, RunConfig
from generator.store import Lease, Store
from tests.factories import candidate, preference, sft, store_url

PENDING = CandidateStatus.PENDING
ACCEPTED = CandidateStatus.ACCEPTED
REJECTED = CandidateStatus.REJECTED


def test_the_same_content_put_twice_is_one_item(store: Store) -> None:
    assert store.put(candidate(1)) is True
    assert store.put(candidate(1)) is False
    assert store.put_many([candidate(1), candidate(2)]) == 1
    assert store.counts("run-1") == {"gap-a": {"pending": 2}}
    assert store.get(candidate(1).id).payload == candidate(1).payload


def test_item_round_trips_with_its_provenance_and_status(store: Store) -> None:
    item = preference(7)
    store.put(item)
    loaded = store.get(item.id)
    assert loaded.model_dump(exclude={"version"}) == item.model_dump(exclude={"version"})
    assert loaded.version == 0


def test_counts_are_kept_per_run_gap_and_status(store: Store) -> None:
    store.put_many(candidate(i, gap="gap-a") for i in range(3))
    store.put_many(candidate(i, gap="gap-b", status=CandidateStatus.GENERATED) for i in range(3, 5))
    store.put(candidate(9, run="run-2"))
    assert store.runs() == ["run-1", "run-2"]
    assert store.counts("run-1") == {"gap-a": {"pending": 3}, "gap-b": {"generated": 2}}
    assert store.count("run-1", PENDING) == 3
    assert store.count("run-1", CandidateStatus.GENERATED, gap_id="gap-b") == 2
    assert store.queue_depth("run-1") == 3
    assert sorted(store.ids("run-1", PENDING)) == sorted(candidate(i).id for i in range(3))


def test_routing_moves_generated_items_into_the_queue_or_out(store: Store) -> None:
    generated = [candidate(i, status=CandidateStatus.GENERATED) for i in range(2)]
    store.put_many(generated)
    assert store.queue_depth("run-1") == 0
    assert store.route(generated[0].id, PENDING, priority=5.0) == 1
    assert store.route(generated[1].id, CandidateStatus.AUTO_REJECTED) == 1
    assert store.counts("run-1") == {"gap-a": {"pending": 1, "auto_rejected": 1}}
    lease = store.claim("alice", "run-1")
    assert lease is not None and lease.item_id == generated[0].id
    assert lease.item.priority == 5.0


def test_claim_hands_out_the_highest_priority_first(store: Store) -> None:
    store.put_many(candidate(i, priority=float(p)) for i, p in enumerate([1, 9, 5]))
    order, held = [], []
    while (lease := store.claim("alice", "run-1", holding=held)) is not None:
        held.append(lease.item_id)
        order.append(lease.item.priority)
    assert order == [9.0, 5.0, 1.0]


def test_claim_on_an_empty_queue_returns_none(store: Store) -> None:
    assert store.claim("alice", "no-such-run") is None


def test_eight_racing_reviewers_decide_1000_items_each_exactly_once(store: Store) -> None:
    store.put_many(candidate(i) for i in range(1000))
    claimed: dict[str, list[str]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def review(reviewer: str) -> None:
        own = Store(
            redis.Redis.from_url(store_url(store), decode_responses=True), store.keys.prefix
        )
        mine: list[str] = []
        try:
            start.wait()
            while (lease := own.claim(reviewer, "run-1")) is not None:
                mine.append(lease.item_id)
                verdict = "reject" if len(mine) % 3 == 0 else "accept"
                own.decide(lease.item_id, reviewer, verdict, lease.version)
        except BaseException as exc:
            errors.append(exc)
        claimed[reviewer] = mine

    threads = [threading.Thread(target=review, args=(f"r{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    every_claim = [item for items in claimed.values() for item in items]
    assert len(every_claim) == 1000
    assert len(set(every_claim)) == 1000, "an item was handed to two reviewers"
    assert sum(1 for items in claimed.values() if items) > 1, "the race never happened"
    assert store.count("run-1", ACCEPTED) + store.count("run-1", REJECTED) == 1000
    assert Counter(d.decision.item_id for d in store.decisions("run-1")) == Counter(every_claim)


def test_an_expired_lease_returns_the_item_to_the_queue(store: Store) -> None:
    store.put(candidate(1))
    first = store.claim("alice", "run-1", lease_seconds=60)
    assert first is not None
    assert 50 < (first.expires_at - datetime.now(UTC)).total_seconds() <= 61  # two clocks
    assert store.claim("bob", "run-1") is None  # still leased to alice
    assert store.expire_leases("run-1") == 1
    second = store.claim("bob", "run-1")
    assert second is not None and second.item_id == first.item_id
    with pytest.raises(LeaseError, match="leased to 'bob'"):
        store.decide(first.item_id, "alice", "accept", first.version)
    store.decide(second.item_id, "bob", "accept", second.version)
    assert store.get(first.item_id).status is ACCEPTED


def test_a_reviewers_leases_come_back_in_the_order_taken_even_within_one_millisecond(
    store: Store,
) -> None:
    # Ids chosen so the later claim sorts first: a tie on expiry would hand it back first.
    items = sorted((candidate(i) for i in range(6)), key=lambda c: c.id, reverse=True)
    store.put_many(c.model_copy(update={"priority": float(10 - n)}) for n, c in enumerate(items))
    taken = []
    for _ in range(6):
        lease = store.claim("alice", "run-1", lease_seconds=60, holding=taken)
        assert lease is not None
        taken.append(lease.item_id)
    for _ in range(3):  # each new session: the same leases, in the order first taken
        back: list[str] = []
        for _ in range(6):
            lease = store.claim("alice", "run-1", lease_seconds=60, holding=back)
            assert lease is not None and lease.reclaimed
            back.append(lease.item_id)
        assert back == taken


def test_a_release_naming_its_lease_gives_back_only_that_lease(store: Store) -> None:
    store.put(candidate(1))
    old = store.claim("alice", "run-1")
    again = store.claim("alice", "run-1")  # the reviewer's new session, handed it back
    assert old is not None and again is not None and again.reclaimed
    assert again.seq > old.seq
    assert store.release(old.item_id, "alice", seq=old.seq) is False, "claimed again since"
    assert store.leased_count("run-1") == 1
    assert store.release(again.item_id, "alice", seq=again.seq) is True
    assert store.queue_figures("run-1") == (1, 0)


def test_a_claim_lasts_the_runs_lease_seconds_when_its_campaign_set_one(store: Store) -> None:
    store.put(candidate(1))
    store.put(candidate(2, run="run-2"))
    store.save_run(RunConfig(run_id="run-1", review=ReviewSettings(lease_seconds=30)))
    store.save_run(RunConfig(run_id="run-2"))  # unset: the store's default (300 s here)

    def seconds_left(lease: Lease | None) -> float:
        assert lease is not None
        return (lease.expires_at - datetime.now(UTC)).total_seconds()

    assert 20 < seconds_left(store.claim("alice", "run-1")) <= 31
    assert 290 < seconds_left(store.claim("alice", "run-2")) <= 301
    store.release(candidate(1).id, "alice")
    assert 50 < seconds_left(store.claim("alice", "run-1", lease_seconds=60)) <= 61, "asked for"


def test_a_decision_after_the_lease_expired_is_refused_and_requeues(store: Store) -> None:
    store.put(candidate(1))
    lease = store.claim("alice", "run-1")
    assert lease is not None
    store.expire_leases("run-1")
    with pytest.raises(LeaseError, match="expired"):
        store.decide(lease.item_id, "alice", "accept", lease.version)
    assert store.get(lease.item_id).status is PENDING
    assert store.queue_depth("run-1") == 1
    assert store.decisions() == []


def test_a_reviewer_back_in_a_new_session_gets_their_own_leases_first(store: Store) -> None:
    store.put_many(candidate(i, priority=float(10 - i)) for i in range(4))
    shown = store.claim("alice", "run-1", lease_seconds=60)  # a tab: the item on screen...
    assert shown is not None
    prefetched = store.claim("alice", "run-1", holding=[shown.item_id])  # ...and the next one
    assert prefetched is not None and not prefetched.reclaimed
    # The tab is closed; a new one holds nothing yet and claims as any session does.
    again = store.claim("alice", "run-1")
    assert again is not None and again.item_id == shown.item_id, "the item the tab showed"
    assert again.reclaimed and again.version == shown.version
    assert again.expires_at > shown.expires_at, "renewed for the new session"
    then = store.claim("alice", "run-1", holding=[again.item_id])
    assert then is not None and then.item_id == prefetched.item_id and then.reclaimed
    new = store.claim("alice", "run-1", holding=[again.item_id, then.item_id])
    assert new is not None and new.item_id == candidate(2).id and not new.reclaimed
    assert store.leased_count("run-1") == 3 and store.queue_depth("run-1") == 1


def test_another_reviewer_never_gets_a_lease_someone_holds(store: Store) -> None:
    store.put_many(candidate(i, priority=float(10 - i)) for i in range(3))
    first = store.claim("alice", "run-1")
    assert first is not None
    second = store.claim("alice", "run-1", holding=[first.item_id])
    assert second is not None
    bobs = store.claim("bob", "run-1")
    assert bobs is not None and bobs.item_id == candidate(2).id and not bobs.reclaimed
    assert store.claim("bob", "run-1", holding=[bobs.item_id]) is None
    with pytest.raises(LeaseError, match="leased to 'alice'"):
        store.decide(first.item_id, "bob", "accept", first.version)


def test_two_sessions_of_one_reviewer_on_the_same_item_decide_it_once(store: Store) -> None:
    store.put_many(candidate(i) for i in range(2))
    tab_1 = store.claim("alice", "run-1")
    tab_2 = store.claim("alice", "run-1")  # another tab: handed the same lease
    assert tab_1 is not None and tab_2 is not None and tab_1.item_id == tab_2.item_id
    store.decide(tab_1.item_id, "alice", "accept", tab_1.version)
    with pytest.raises(InvalidTransitionError, match="already accepted"):
        store.decide(tab_2.item_id, "alice", "reject", tab_2.version)
    assert [d.decision.verdict for d in store.decisions("run-1")] == ["accept"]
    skipped = store.claim("alice", "run-1")
    assert skipped is not None
    store.decide(skipped.item_id, "alice", "skip", skipped.version)
    with pytest.raises(StaleVersionError):  # the skip moved the version on
        store.decide(skipped.item_id, "alice", "accept", skipped.version)


def test_an_expired_lease_is_not_counted_as_leased_and_its_item_waits(store: Store) -> None:
    store.put_many(candidate(i) for i in range(3))
    first = store.claim("alice", "run-1")
    assert first is not None
    assert store.claim("alice", "run-1", holding=[first.item_id]) is not None
    assert store.queue_figures("run-1") == (1, 2)
    store.expire_leases("run-1")
    assert store.leased_count("run-1") == 0, "expired: no one holds them"
    assert store.queue_depth("run-1") == 3, "the next claim hands them out again"
    taken = store.claim("bob", "run-1")
    assert taken is not None and store.queue_figures("run-1") == (2, 1)
    store.decide(taken.item_id, "bob", "accept", taken.version)
    assert store.queue_figures("run-1") == (2, 0)


def test_a_stale_version_is_refused_and_changes_nothing(store: Store) -> None:
    store.put(candidate(1))
    lease = store.claim("alice", "run-1")
    assert lease is not None
    with pytest.raises(StaleVersionError):
        store.decide(lease.item_id, "alice", "accept", lease.version + 1)
    item = store.get(lease.item_id)
    assert (item.status, item.version) == (PENDING, lease.version)
    assert store.decisions() == []
    store.decide(lease.item_id, "alice", "reject", lease.version, reason_tags=["wrong"])
    assert store.get(lease.item_id).status is REJECTED


def test_a_foreign_decision_is_refused(store: Store) -> None:
    store.put(candidate(1))
    lease = store.claim("alice", "run-1")
    assert lease is not None
    with pytest.raises(LeaseError, match="leased to 'alice'"):
        store.decide(lease.item_id, "mallory", "accept", lease.version)
    assert store.get(lease.item_id).status is PENDING
    assert store.decisions() == []


def test_an_unclaimed_item_cannot_be_decided(store: Store) -> None:
    store.put(candidate(1))
    with pytest.raises(LeaseError, match="nobody holds it"):
        store.decide(candidate(1).id, "alice", "accept", 0)


def test_a_decided_item_cannot_be_decided_or_routed_again(store: Store) -> None:
    store.put(candidate(1))
    lease = store.claim("alice", "run-1")
    assert lease is not None
    store.decide(lease.item_id, "alice", "accept", lease.version)
    with pytest.raises(InvalidTransitionError, match="already accepted"):
        store.decide(lease.item_id, "alice", "reject", lease.version + 1)
    with pytest.raises(InvalidTransitionError):
        store.route(lease.item_id, PENDING)


def test_unknown_items_are_reported(store: Store) -> None:
    with pytest.raises(ItemNotFoundError):
        store.get("nope")
    with pytest.raises(ItemNotFoundError):
        store.decide("nope", "alice", "accept", 0)
    with pytest.raises(ItemNotFoundError):
        store.route("nope", PENDING)


def test_skip_returns_the_item_to_others_but_not_to_the_skipper(store: Store) -> None:
    store.put(candidate(1))
    lease = store.claim("alice", "run-1")
    assert lease is not None
    store.decide(lease.item_id, "alice", "skip", lease.version)
    assert store.get(lease.item_id).status is PENDING
    assert store.claim("alice", "run-1") is None
    again = store.claim("bob", "run-1")
    assert again is not None and again.item_id == lease.item_id
    assert again.version == lease.version + 1


def test_release_gives_the_item_back_at_once(store: Store) -> None:
    store.put(candidate(1))
    lease = store.claim("alice", "run-1")
    assert lease is not None
    assert store.release(lease.item_id, "bob") is False
    assert store.release(lease.item_id, "alice") is True
    assert store.claim("bob", "run-1") is not None


def test_an_edit_keeps_the_original_and_stores_the_edited_payload(store: Store) -> None:
    original = candidate(1)
    store.put(original)
    lease = store.claim("alice", "run-1")
    assert lease is not None
    edited = sft("Question number 1?", "A better answer.")
    store.decide(lease.item_id, "alice", "edit", lease.version, edited_payload=edited)
    item = store.get(original.id)
    assert item.status is ACCEPTED
    assert item.payload == original.payload
    assert item.edited == edited
    [logged] = store.decisions()
    assert logged.decision.edited_payload == edited


def test_the_log_holds_every_decision_in_order(store: Store) -> None:
    store.put_many(candidate(i, priority=float(-i)) for i in range(6))
    verdicts = ["accept", "reject", "skip", "accept", "reject", "accept", "accept"]
    made = []
    for verdict in verdicts:
        lease = store.claim("alice" if verdict != "accept" or len(made) % 2 else "bob", "run-1")
        assert lease is not None
        logged = store.decide(lease.item_id, lease.reviewer, verdict, lease.version)  # type: ignore[arg-type]
        made.append((lease.item_id, verdict, lease.reviewer))
        assert logged.decision.gap_id == "gap-a"
    log = store.decisions("run-1")
    assert [(d.decision.item_id, d.decision.verdict, d.decision.reviewer) for d in log] == made
    entry_ids = [tuple(map(int, d.entry_id.split("-"))) for d in log]
    assert entry_ids == sorted(entry_ids)
    assert store.decisions("other-run") == []
    assert store.decisions(after=log[2].entry_id) == log[3:]


def test_decision_records_carry_the_logged_facts_of_one_run(store: Store) -> None:
    store.put_many(candidate(i, priority=float(-i)) for i in range(3))
    store.put(candidate(9, run="run-2"))
    for verdict, tags in (("accept", ["pii-cleared"]), ("reject", ["wrong"]), ("accept", [])):
        lease = store.claim("alice", "run-1")
        assert lease is not None
        store.decide(lease.item_id, "alice", verdict, lease.version, reason_tags=tags, note="n")  # type: ignore[arg-type]
    other = store.claim("bob", "run-2")
    assert other is not None
    store.decide(other.item_id, "bob", "accept", other.version)
    store.undo(store.decisions("run-1")[-1].decision.item_id, "alice")
    logged = [d.decision for d in store.decisions("run-1")]
    records = store.decision_records("run-1")
    assert [
        (
            r.item_id,
            r.reviewer,
            r.verdict,
            r.reason_tags,
            r.note,
            datetime.fromisoformat(r.decided_at),
        )
        for r in records
    ] == [(d.item_id, d.reviewer, d.verdict, d.reason_tags, d.note, d.decided_at) for d in logged]
    assert [r.verdict for r in records] == ["accept", "reject", "accept", "undo"]
    assert [r.reviewer for r in store.decision_records("run-2")] == ["bob"]


def test_the_log_can_be_read_a_page_at_a_time(store: Store) -> None:
    store.put_many(candidate(i) for i in range(5))
    while (lease := store.claim("alice", "run-1")) is not None:
        store.decide(lease.item_id, "alice", "accept", lease.version)
    whole = store.decisions("run-1")
    pages, after = [], "-"
    while page := store.decisions("run-1", after=after, count=2):
        pages.append(page)
        after = page[-1].entry_id
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [d for page in pages for d in page] == whole


def test_bulk_reads_return_every_item_in_order_chunk_by_chunk(store: Store) -> None:
    items = [candidate(i) for i in range(23)]
    store.put_many(items)
    ids = sorted(i.id for i in items)
    chunks = list(store.iter_raw(ids, chunk=5))
    assert [len(c) for c in chunks] == [5, 5, 5, 5, 3]
    read = [item for chunk in chunks for item in chunk]
    assert [item["id"] for item in read] == ids
    assert all(item["status"] == "pending" and item["exported"] is None for item in read)
    assert read[0]["payload"] == store.get(ids[0]).payload.model_dump()  # type: ignore[union-attr]
    assert list(store.iter_raw([], chunk=5)) == []
    with pytest.raises(ItemNotFoundError, match="no-such-item"):
        list(store.iter_raw([*ids[:7], "no-such-item"], chunk=5))


def test_an_export_marks_its_items_and_is_recorded(store: Store) -> None:
    items = [candidate(i, status=CandidateStatus.ACCEPTED) for i in range(3)]
    store.put_many(items)
    read = {i.id: store.get(i.id).version for i in items}  # marking checks the version read

    def marks() -> list[str | None]:
        return [store.redis.hget(store.keys.item(i.id), "exported") for i in items]

    first = store.mark_exported("exp-1", {i.id: read[i.id] for i in (items[0], items[2])})
    assert first.previous == {items[0].id: None, items[2].id: None} and not first.refused
    store.record_export({"export_id": "exp-1", "out": "/tmp/x"})
    assert marks() == ["exp-1", None, "exp-1"]
    assert store.exports() == [{"export_id": "exp-1", "out": "/tmp/x"}]

    previous = store.mark_exported("exp-2", read).previous
    assert list(previous.values()) == ["exp-1", None, "exp-1"] and marks() == ["exp-2"] * 3
    store.redis.hset(store.keys.item(items[1].id), "exported", "exp-3")  # exported since
    store.unmark_exported("exp-2", previous)
    assert marks() == ["exp-1", "exp-3", "exp-1"], "own marks put back, a later one left alone"


def test_token_counts_are_kept_per_tokenizer(store: Store) -> None:
    store.save_token_counts("tok-a", {"conv-1": 12, "conv-2": 700})
    assert store.token_counts("tok-a", ["conv-2", "conv-3", "conv-1"]) == [700, None, 12]
    assert store.token_counts("tok-b", ["conv-1"]) == [None]


def test_run_configs_are_stored(store: Store) -> None:
    config = RunConfig(run_id="run-1", description="filling gaps")
    store.save_run(config)
    assert store.get_run("run-1") == config
    assert store.get_run("missing") is None
    assert "run-1" in store.runs()


def test_prefixes_never_see_each_other(store: Store) -> None:
    other = Store(store.redis, prefix=store.keys.prefix + "-other")
    try:
        other.put(candidate(1))
        assert not store.exists(candidate(1).id)
        assert store.runs() == []
        store.put(candidate(2))
        store.delete_prefix()
        assert other.exists(candidate(1).id)
    finally:
        other.delete_prefix()


def test_a_candidate_whose_id_does_not_match_its_content_is_refused(store: Store) -> None:
    forged = candidate(1).model_copy(update={"id": "0" * 32})
    with pytest.raises(StoreError, match="content hash"):
        store.put(forged)
    assert store.runs() == []


def test_the_store_refuses_unsafe_prefixes_and_byte_clients(server_url: str) -> None:
    text_client = redis.Redis.from_url(server_url, decode_responses=True)
    with pytest.raises(StoreError, match="prefix"):
        Store(text_client, prefix="a:b*")
    with pytest.raises(StoreError, match="decode_responses"):
        Store(redis.Redis.from_url(server_url), prefix="x")


def test_a_reviewer_can_undo_their_decision_until_it_is_exported(store: Store) -> None:
    item = candidate(1)
    store.put(item)
    lease = store.claim("alice", "run-1")
    assert lease is not None
    store.decide(item.id, "alice", "accept", lease.version)
    with pytest.raises(LeaseError, match="decided by 'alice'"):
        store.undo(item.id, "bob")
    undone = store.undo(item.id, "alice")
    assert undone.decision.verdict == "undo"
    assert store.get(item.id).status is CandidateStatus.PENDING
    assert store.count("run-1", CandidateStatus.ACCEPTED) == 0
    again = store.claim("alice", "run-1")
    assert again is not None and again.item.id == item.id, "back in the queue"
    store.decide(item.id, "alice", "reject", again.version, reason_tags=["wrong"])
    store.redis.hset(store.keys.item(item.id), "exported", "export-1")
    with pytest.raises(InvalidTransitionError, match="exported"):
        store.undo(item.id, "alice")
    assert [d.decision.verdict for d in store.decisions("run-1")] == ["accept", "undo", "reject"]


def test_bulk_actions_reopen_auto_rejected_items_and_reject_unleased_ones(store: Store) -> None:
    dropped = candidate(1, status=CandidateStatus.AUTO_REJECTED)
    waiting, held = candidate(2), candidate(3, priority=9)
    store.put_many([dropped, waiting, held])
    lease = store.claim("bob", "run-1")
    assert lease is not None and lease.item.id == held.id
    store.reopen(dropped.id, "alice")
    assert store.get(dropped.id).status is CandidateStatus.PENDING
    store.bulk_reject(waiting.id, "alice", ["duplicate"])
    assert store.get(waiting.id).status is CandidateStatus.REJECTED
    with pytest.raises(LeaseError):
        store.bulk_reject(held.id, "alice", ["duplicate"])  # bob holds it: not taken from him
    with pytest.raises(InvalidTransitionError):
        store.reopen(waiting.id, "alice")  # a human's rejection is not reopened in bulk
    logged = [(d.decision.verdict, d.decision.reason_tags) for d in store.decisions("run-1")]
    assert logged == [("reopen", []), ("bulk_reject", ["duplicate"])]


def overlap_run(store: Store, k: int, rule: str = "majority") -> None:
    config = RunConfig.model_validate(
        {"run_id": "run-1", "review": {"reviewers_per_item": k, "overlap_rule": rule}}
    )
    store.save_run(config)


def vote(store: Store, reviewer: str, verdict: str) -> str:
    lease = store.claim(reviewer, "run-1")
    assert lease is not None, f"{reviewer} got nothing"
    store.decide(lease.item_id, reviewer, verdict, lease.version)  # type: ignore[arg-type]
    return lease.item_id


def test_with_overlap_an_item_goes_to_k_different_reviewers_then_follows_the_majority(
    store: Store,
) -> None:
    overlap_run(store, k=3)
    item = candidate(1)
    store.put(item)
    assert vote(store, "alice", "accept") == item.id
    assert store.get(item.id).status is PENDING, "one vote of three settles nothing"
    assert store.claim("alice", "run-1") is None, "alice never gets an item she voted on"
    vote(store, "bob", "reject")
    assert store.votes(item.id) == {"alice": "accept", "bob": "reject"}
    vote(store, "carol", "accept")
    assert store.get(item.id).status is ACCEPTED
    assert store.claim("dave", "run-1") is None, "a settled item leaves the queue"
    assert store.review_rule("run-1") == (3, "majority")


def test_a_split_vote_rejects_and_unanimous_needs_every_accept(store: Store) -> None:
    overlap_run(store, k=2)
    store.put(candidate(1))
    vote(store, "alice", "accept")
    vote(store, "bob", "reject")
    assert store.get(candidate(1).id).status is REJECTED, "a tie rejects"

    overlap_run(store, k=3, rule="unanimous")
    store.put(candidate(2))
    for reviewer in ("alice", "bob"):
        vote(store, reviewer, "accept")
    vote(store, "carol", "reject")
    assert store.get(candidate(2).id).status is REJECTED
    store.put(candidate(3))
    for reviewer in ("alice", "bob", "carol"):
        vote(store, reviewer, "accept")
    assert store.get(candidate(3).id).status is ACCEPTED


def test_an_admin_settles_split_votes_once_and_the_log_says_who(store: Store) -> None:
    from generator.export.selection import Selection
    from generator.schema import CandidateKind

    overlap_run(store, k=2)
    split, agreed = candidate(1), candidate(2)
    store.put_many([split, agreed])
    for reviewer, verdicts in (("alice", ("accept", "accept")), ("bob", ("reject", "accept"))):
        for verdict in verdicts:
            vote(store, reviewer, verdict)
    assert store.get(split.id).status is REJECTED, "a tie rejects"
    assert store.split_votes("run-1") == [split.id], "the agreed item needs no adjudication"
    with pytest.raises(InvalidTransitionError, match="did not split"):
        store.adjudicate(agreed.id, "root", accept=False)
    store.adjudicate(split.id, "root", accept=True, note="the answer is right")
    settled = store.get(split.id)
    assert settled.status is ACCEPTED and store.split_votes("run-1") == []
    last = store.decisions("run-1")[-1].decision
    assert (last.verdict, last.reviewer, last.reason_tags, last.note) == (
        "adjudicate",
        "root",
        ["accept"],
        "the answer is right",
    )
    with pytest.raises(InvalidTransitionError, match="adjudicated by root"):
        store.adjudicate(split.id, "root", accept=False)
    for voter in ("alice", "bob", "root"):  # the admin's own undo in the queue included
        with pytest.raises(InvalidTransitionError, match="adjudicated by root"):
            store.undo(split.id, voter)
    assert store.get(split.id).status is ACCEPTED and store.votes(split.id) == {
        "alice": "accept",
        "bob": "reject",
    }
    approved = {a.id: a.reviewers for a in Selection(store, ["run-1"], CandidateKind.SFT)}
    assert approved[split.id] == ["alice", "root"], "the voter who accepted, and the admin"
    store.put(candidate(3))
    with pytest.raises(InvalidTransitionError, match="pending"):
        store.adjudicate(candidate(3).id, "root", accept=True)


def test_a_vote_leaves_another_reviewers_lease_valid(store: Store) -> None:
    overlap_run(store, k=2)
    store.put(candidate(1))
    first = store.claim("alice", "run-1")
    assert first is not None
    assert store.claim("bob", "run-1") is None, "one lease at a time per item"
    store.decide(first.item_id, "alice", "accept", first.version)
    second = store.claim("bob", "run-1")
    assert second is not None and second.item_id == first.item_id
    assert second.version == first.version, "a plain vote changes nothing bob sees"
    store.decide(second.item_id, "bob", "accept", second.version)
    assert store.get(first.item_id).status is ACCEPTED


def test_under_overlap_a_second_tabs_vote_on_the_same_item_is_refused(store: Store) -> None:
    overlap_run(store, k=2)
    store.put(candidate(1))
    tab_1 = store.claim("alice", "run-1")
    tab_2 = store.claim("alice", "run-1")
    assert tab_1 is not None and tab_2 is not None
    store.decide(tab_1.item_id, "alice", "accept", tab_1.version)
    with pytest.raises(LeaseError, match="nobody holds it"):
        store.decide(tab_2.item_id, "alice", "accept", tab_2.version)
    assert store.votes(tab_1.item_id) == {"alice": "accept"}, "one vote, not two"


def test_a_vote_can_be_withdrawn_and_the_settling_vote_undone(store: Store) -> None:
    overlap_run(store, k=2)
    item = candidate(1)
    store.put(item)
    vote(store, "alice", "reject")
    store.undo(item.id, "alice")
    assert store.votes(item.id) == {}
    vote(store, "alice", "accept")
    vote(store, "bob", "accept")
    assert store.get(item.id).status is ACCEPTED
    with pytest.raises(LeaseError, match="decided by 'bob'"):
        store.undo(item.id, "alice")  # only the vote that settled it reopens it
    store.undo(item.id, "bob")
    assert store.get(item.id).status is PENDING
    assert store.votes(item.id) == {"alice": "accept"}, "alice's vote stands"
    vote(store, "bob", "reject")
    assert store.get(item.id).status is REJECTED
    verdicts = [d.decision.verdict for d in store.decisions("run-1")]
    assert verdicts == ["reject", "undo", "accept", "accept", "undo", "reject"]


def test_an_edit_under_overlap_is_an_accepting_vote_that_replaces_the_payload(
    store: Store,
) -> None:
    overlap_run(store, k=2)
    item = candidate(1)
    store.put(item)
    edited = sft("An edited question?", "A better answer.")
    lease = store.claim("alice", "run-1")
    assert lease is not None
    store.decide(item.id, "alice", "edit", lease.version, edited_payload=edited)
    second = store.claim("bob", "run-1")
    assert second is not None and second.item.edited == edited, "bob reviews the edit"
    store.decide(item.id, "bob", "accept", second.version)
    settled = store.get(item.id)
    assert settled.status is ACCEPTED and settled.edited == edited
