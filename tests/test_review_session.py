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


def test_a_new_session_of_the_reviewer_shows_the_items_a_closed_one_held(store: Store) -> None:
    ids = seeded(store, 2)
    closed = ReviewSession(store, "alice", "run-1")  # a tab, then closed or reloaded: no close()
    closed.refresh()
    reopened = ReviewSession(store, "alice", "run-1")
    assert reopened.refresh() is not None and reopened.current is not None
    assert reopened.current.item_id == ids[0], "not 'nothing left' while both sit leased"
    assert reopened.upcoming is not None and reopened.upcoming.item_id == ids[1]
    assert store.queue_figures("run-1") == (0, 2), "the same two leases, nothing more"
    assert ReviewSession(store, "bob", "run-1").refresh() is None, "still alice's"


def test_a_tab_that_ends_gives_back_its_prefetched_item_and_keeps_the_one_shown(
    store: Store,
) -> None:
    ids = seeded(store, 3)
    tab = ReviewSession(store, "alice", "run-1")
    tab.refresh()
    tab.end()  # the tab closed: Streamlit released its session's resources
    assert store.queue_figures("run-1") == (2, 1), "ids[1] back in the queue at once"
    bob = ReviewSession(store, "bob", "run-1")
    assert bob.refresh() is not None and bob.current is not None
    assert bob.current.item_id == ids[1], "another reviewer takes it now, not in 300 s"
    back = ReviewSession(store, "alice", "run-1")
    assert back.refresh() is not None and back.current is not None
    assert back.current.item_id == ids[0], "the item alice saw is still hers"


def test_a_reloaded_tabs_old_session_ending_late_keeps_the_new_sessions_leases(
    store: Store,
) -> None:
    ids = seeded(store, 3)
    old = ReviewSession(store, "alice", "run-1")
    old.refresh()
    new = ReviewSession(store, "alice", "run-1")  # the reload: the new session claims first...
    new.refresh()
    assert new.upcoming is not None and new.upcoming.item_id == ids[1]
    old.end()  # ...and the old one's end comes after: its lease of ids[1] is gone already
    assert store.queue_figures("run-1") == (1, 2)
    assert store.redis.hget(store.keys.item(ids[1]), "lease_owner") == "alice"
    assert new.accept().ok and new.accept().ok, "both of the new session's items decide"


def test_signing_out_in_one_tab_leaves_the_other_tabs_claims_of_the_same_items(
    store: Store,
) -> None:
    ids = seeded(store, 3)
    tab_1 = ReviewSession(store, "alice", "run-1")
    tab_1.refresh()
    tab_2 = ReviewSession(store, "alice", "run-1")
    tab_2.refresh()  # the same two items, claimed again: tab 2's leases now
    tab_1.close()
    assert store.queue_figures("run-1") == (1, 2), "tab 2 still holds both"
    assert tab_2.accept().ok and tab_2.accept().ok
    assert {d.decision.item_id for d in store.decisions("run-1")} == {ids[0], ids[1]}


def test_an_ended_tab_prefetches_nothing_until_its_connection_comes_back(store: Store) -> None:
    seeded(store, 3)
    tab = ReviewSession(store, "alice", "run-1")
    tab.refresh()
    tab.end()  # the server thread, as the tab goes; a script run may still be finishing
    tab.refresh()
    assert tab.upcoming is None and store.queue_figures("run-1") == (2, 1)
    tab.resume()
    tab.refresh()
    assert tab.upcoming is not None and store.queue_figures("run-1") == (1, 2)


def test_a_decision_from_either_of_two_tabs_counts_once(store: Store) -> None:
    ids = seeded(store, 3)
    tab_1, tab_2 = ReviewSession(store, "alice", "run-1"), ReviewSession(store, "alice", "run-1")
    tab_1.refresh()
    tab_2.refresh()
    assert tab_1.current is not None and tab_2.current is not None
    assert tab_1.current.item_id == tab_2.current.item_id == ids[0]
    assert tab_1.accept().ok
    refused = tab_2.reject("wrong")
    assert not refused.ok and "already accepted" in refused.message
    assert tab_2.current is not None and tab_2.current.item_id == ids[1], "and it moves on"
    assert [(d.decision.item_id, d.decision.verdict) for d in store.decisions("run-1")] == [
        (ids[0], "accept")
    ]


def test_an_undo_brings_the_item_back_past_the_leases_another_tab_holds(store: Store) -> None:
    ids = seeded(store, 5)
    tab_1 = ReviewSession(store, "alice", "run-1")
    tab_1.refresh()
    tab_1.accept()  # ids[0]; tab 1 now shows ids[1], ids[2] prefetched
    tab_2 = ReviewSession(store, "alice", "run-1")
    tab_2.refresh()  # handed ids[1] and ids[2], alice's leases
    tab_2.accept()  # ids[1]; tab 2 now shows ids[2], ids[3] prefetched
    assert tab_2.upcoming is not None and tab_2.upcoming.item_id == ids[3]
    assert tab_1.undo().ok
    assert tab_1.current is not None and tab_1.current.item_id == ids[0]
    owner = store.redis.hget(store.keys.item(ids[3]), "lease_owner")
    assert owner == "alice", "tab 2's prefetched item is still alice's, not given back"
