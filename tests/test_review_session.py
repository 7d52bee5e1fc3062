"""A reviewer's queue session against the real store: decisions, prefetch, undo, refusals."""

from __future__ import annotations

import pytest

from generator.errors import StoreError
from generator.schema import CandidateStatus, PreferenceExample, SFTExample
from generator.store import Store
from review_ui.session import PAIR_TAG, ReviewSession, edited_sft
from tests.factories import candidate, preference


def seeded(store: Store, count: int) -> list[str]:
    items = [candidate(i, priority=count - i) for i in range(count)]
    store.put_many(items)
    return [i.id for i in items]


def test_no_session_without_a_reviewer(store: Store) -> None:
    with pytest.raises(StoreError):
        ReviewSession(store, "", "run-1")


def test_the_next_item_is_leased_while_the_current_one_is_shown(store: Store) -> None:
    ids = seeded(store, 3)
    session = ReviewSession(store, "alice", "run-1")
    assert session.refresh() is not None and session.current is not None
    assert session.upcoming is not None and session.upcoming.item_id == ids[1]
    assert store.leased_count("run-1") == 2
    assert session.accept().ok
    assert session.current.item_id == ids[1] and session.upcoming.item_id == ids[2]
    assert store.get(ids[0]).status is CandidateStatus.ACCEPTED


def test_accept_reject_skip_edit_and_undo_change_the_store(store: Store) -> None:
    ids = seeded(store, 4)
    session = ReviewSession(store, "alice", "run-1")
    session.refresh()
    session.accept()
    session.reject("duplicate")
    session.skip()
    current = session.current
    assert current is not None and isinstance(current.item.payload, SFTExample)
    edited = edited_sft(current.item.payload, ["Edited question?", "Edited answer."])
    assert session.edit(edited, as_pair=True).ok
    assert [store.get(i).status for i in ids] == [
        CandidateStatus.ACCEPTED,
        CandidateStatus.REJECTED,
        CandidateStatus.PENDING,  # skipped: back for others, not for alice
        CandidateStatus.ACCEPTED,
    ]
    item = store.get(ids[3])
    assert item.edited == edited and item.payload != edited, "the original is kept"
    log = [d.decision for d in store.decisions("run-1")]
    assert [d.verdict for d in log] == ["accept", "reject", "skip", "edit"]
    assert log[1].reason_tags == ["duplicate"] and log[3].reason_tags == [PAIR_TAG]
    assert all(d.reviewer == "alice" for d in log)
    undone = session.undo()
    assert undone.ok and session.current is not None and session.current.item_id == ids[3]
    assert store.get(ids[3]).status is CandidateStatus.PENDING and store.get(ids[3]).edited is None
    session.undo()  # and the reject before it
    assert store.get(ids[1]).status is CandidateStatus.PENDING


def test_a_decision_on_an_expired_lease_is_refused_with_a_message(store: Store) -> None:
    ids = seeded(store, 2)
    session = ReviewSession(store, "alice", "run-1")
    session.refresh()
    store.expire_leases("run-1")
    outcome = session.accept()
    assert not outcome.ok and "expired" in outcome.message
    assert store.get(ids[0]).status is CandidateStatus.PENDING, "nothing recorded silently"


def test_an_item_taken_by_someone_else_is_refused_not_lost(store: Store) -> None:
    ids = seeded(store, 1)
    alice = ReviewSession(store, "alice", "run-1")
    alice.refresh()
    store.expire_leases("run-1")
    bob = ReviewSession(store, "bob", "run-1")
    assert bob.refresh() is not None and bob.current is not None
    assert bob.current.item_id == ids[0]
    outcome = alice.reject("wrong")
    assert not outcome.ok and "bob" in outcome.message
    assert bob.accept().ok and store.get(ids[0]).status is CandidateStatus.ACCEPTED


def test_a_preference_pair_can_be_swapped(store: Store) -> None:
    pair = preference(1)
    store.put(pair)
    session = ReviewSession(store, "alice", "run-1")
    session.refresh()
    assert session.swap().ok
    edited = store.get(pair.id).edited
    assert isinstance(edited, PreferenceExample) and edited.chosen[-1].content == "bad"
