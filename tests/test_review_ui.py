"""The review UI: its logic through Streamlit's AppTest, then a real browser (Playwright driving
Debian's chromium) against `gapfill ui` with a store seeded from real model outputs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from generator import reviewers
from generator.export.writer import ExportOptions, export
from generator.filters.execution import CodeExecutionFilter
from generator.redis_server import free_port
from generator.schema import (
    Candidate,
    CandidateKind,
    CandidateStatus,
    Message,
    PreferenceExample,
    Provenance,
    SFTExample,
    Usage,
)
from generator.screening import screen_all
from generator.store import Store
from review_ui.widgets import WARM_UP_CODE
from tests.conftest import REAL_DATA
from tests.factories import cli_env, run_cli, serving_ui, sft, tool_conversations, tool_tokenizer

REVIEW_UI = Path(__file__).resolve().parents[1] / "review_ui"
APP = REVIEW_UI / "app.py"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("GAPFILL_TEST_ARTIFACTS", "test-artifacts"))


def real_candidates(count: int, run: str = "ui-run") -> list[Candidate]:
    """Answers text-davinci-003 gave to the user-oriented instructions: real model output."""
    path = REAL_DATA / "self-instruct" / "predictions" / "text-davinci-003.jsonl"
    items = []
    for line in path.open(encoding="utf-8"):
        row = json.loads(line)
        if row.get("response", "").strip():
            items.append(
                Candidate(
                    kind=CandidateKind.SFT,
                    payload=sft(row["prompt"].strip(), row["response"].strip()),
                    run_id=run,
                    gap_id="gap-a",
                    status=CandidateStatus.PENDING,
                    priority=float(count - len(items)),
                )
            )
        if len(items) == count:
            break
    return items


@pytest.fixture
def ui_env(valkey_url: str, key_prefix: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {
        "GAPFILL_REDIS_URL": valkey_url,
        "GAPFILL_KEY_PREFIX": key_prefix,
        "GAPFILL_DATA_DIR": str(tmp_path / "data"),
    }
    saved = {k: os.environ.get(k) for k in [*env, "GAPFILL_UI_AUTH"]}
    os.environ.update(env)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def ui_store(valkey_url: str, key_prefix: str) -> Iterator[Store]:
    client = redis.Redis.from_url(valkey_url, decode_responses=True)
    store = Store(client, prefix=key_prefix)
    yield store
    store.delete_prefix()
    client.close()


# -- logic, through AppTest ------------------------------------------------------------------


def app_test(mode: str):  # type: ignore[no-untyped-def]
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_resource.clear()  # the store and settings are per-server: a fresh one per test
    os.environ["GAPFILL_UI_AUTH"] = mode
    return AppTest.from_file(str(APP), default_timeout=30)


def test_no_decision_without_sign_in(ui_env: dict[str, str], ui_store: Store) -> None:
    ui_store.put_many(real_candidates(2))
    at = app_test("tokens").run()
    assert not at.exception
    assert [t.label for t in at.text_input] == ["Reviewer token"]
    assert not [b for b in at.button if b.label.startswith("Accept")], "no queue before sign-in"
    at.text_input[0].input("not-a-token")
    at.button[0].click().run()
    assert any("Unknown token" in e.value for e in at.error)
    assert ui_store.leased_count("ui-run") == 0


def test_a_token_signs_in_and_decisions_carry_the_reviewer(
    ui_env: dict[str, str], ui_store: Store
) -> None:
    token = reviewers.add(Path(ui_env["GAPFILL_DATA_DIR"]), "alice")
    items = real_candidates(3)
    ui_store.put_many(items)
    at = app_test("tokens").run()
    at.text_input[0].input(token)
    at.button[0].click().run()
    assert not at.exception
    at.button(key="key-a").click().run()
    at.button(key="key-x").click().run()
    at.button(key="reason-1").click().run()  # duplicate
    at.button(key="key-s").click().run()
    log = [d.decision for d in ui_store.decisions("ui-run")]
    assert [(d.verdict, d.reviewer) for d in log] == [
        ("accept", "alice"),
        ("reject", "alice"),
        ("skip", "alice"),
    ]
    assert log[1].reason_tags == ["duplicate"]
    at.button(key="key-u").click().run()
    assert ui_store.get(items[1].id).status is CandidateStatus.PENDING, "undo of the reject"


def test_edit_in_place_stores_the_edit_and_keeps_the_original(
    ui_env: dict[str, str], ui_store: Store
) -> None:
    [item] = real_candidates(1)
    ui_store.put(item)
    at = app_test("local").run()
    at.button(key="key-e").click().run()
    answer = next(t for t in at.text_area if t.label == "assistant")
    answer.input("A better answer.")
    at.checkbox[0].check()
    at.button[0].click().run()  # Save and accept
    assert not at.exception
    stored = ui_store.get(item.id)
    assert stored.status is CandidateStatus.ACCEPTED and stored.payload == item.payload
    assert isinstance(stored.edited, SFTExample)
    assert stored.edited.messages[-1].content == "A better answer."
    [decision] = [d.decision for d in ui_store.decisions("ui-run")]
    assert decision.reviewer.startswith("local:") and decision.reason_tags == ["preference_pair"]


def test_an_expired_lease_is_refused_with_a_message(
    ui_env: dict[str, str], ui_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ui_store.put_many(real_candidates(2))
    monkeypatch.setenv("GAPFILL_LEASE_SECONDS", "7")
    at = app_test("local").run()
    seconds, micros = ui_store.redis.time()
    now_ms = seconds * 1000 + micros // 1000
    leases = ui_store.redis.zrange(ui_store.keys.run("ui-run", "leased"), 0, -1, withscores=True)
    assert len(leases) == 2  # the item shown and the one prefetched
    assert all(5_000 < expiry - now_ms <= 7_000 for _id, expiry in leases), "the UI's lease length"
    assert ui_store.expire_leases("ui-run") == 2
    at.button(key="key-a").click().run()
    assert any("not recorded" in w.value and "expired" in w.value for w in at.warning)
    assert ui_store.count("ui-run", CandidateStatus.ACCEPTED) == 0


def test_with_overlap_each_reviewer_votes_blind_and_the_overview_shows_agreement(
    ui_env: dict[str, str], ui_store: Store
) -> None:
    from generator.schema import RunConfig

    ui_store.save_run(
        RunConfig.model_validate({"run_id": "ui-run", "review": {"reviewers_per_item": 2}})
    )
    items = real_candidates(4)
    ui_store.put_many(items)
    for verdict in ("accept", "accept", "reject"):  # bob votes first, on items 0-2
        lease = ui_store.claim("bob", "ui-run")
        assert lease is not None
        ui_store.decide(lease.item_id, "bob", verdict, lease.version)  # type: ignore[arg-type]
    at = app_test("local").run()
    assert any("vote 2 of 2" in t.value for t in at.text), "bob voted, but how is not shown"
    at.button(key="key-a").click().run()  # items[0]: agrees with bob -> accepted
    at.button(key="key-x").click().run()
    at.button(key="reason-1").click().run()  # items[1]: disagrees -> a tie rejects
    at.button(key="key-x").click().run()
    at.button(key="reason-1").click().run()  # items[2]: agrees with bob's reject
    assert [ui_store.get(i.id).status for i in items[:3]] == [
        CandidateStatus.ACCEPTED,
        CandidateStatus.REJECTED,
        CandidateStatus.REJECTED,
    ]
    assert any("vote 1 of 2" in t.value for t in at.text)
    at.button(key="key-a").click().run()  # items[3]: alice's vote, a second still to come
    assert ui_store.get(items[3].id).status is CandidateStatus.PENDING
    assert len(ui_store.votes(items[3].id)) == 1
    at.switch_page("views/overview.py").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Items with overlap"] == "3"
    assert metrics["Pairs agreeing"] == "0.67"
    assert float(metrics["Krippendorff's alpha"]) < 0.67, "chance-corrected: lower"


def test_the_overview_sets_the_judge_beside_the_reviewers_and_says_what_the_prescreen_did(
    ui_env: dict[str, str], ui_store: Store, tmp_path: Path
) -> None:
    from generator.prescreening import PreScreenStatus
    from generator.replay import replay

    rows = []
    for n, (votes, judge) in enumerate(
        [
            (("accept", "accept"), "accept"),
            (("swap", "swap"), "accept"),
            (("accept", "swap"), "swap"),
        ]
    ):
        rows.append(
            {
                "id": f"p{n}",
                "gap": "gap-a",
                "example": {
                    "prompt": [{"role": "user", "content": f"Which is better, {n}?"}],
                    "chosen": [{"role": "assistant", "content": f"The first answer {n}."}],
                    "rejected": [{"role": "assistant", "content": f"The second answer {n}."}],
                },
                "votes": [
                    {"reviewer": r, "vote": v} for r, v in zip(("ann", "bob"), votes, strict=True)
                ],
                "judge": {"model": "gpt-4", "vote": judge},
            }
        )
    path = tmp_path / "replay.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    replay(ui_store, path, "ui-run")
    status = PreScreenStatus(
        run_id="ui-run", trained_on=120, reordered=40, message="no human yardstick: <b>off</b>"
    )
    ui_store.save_prescreen_status("ui-run", status.model_dump_json())
    at = app_test("local").run()
    at.switch_page("views/overview.py").run()
    assert not at.exception
    table = next(d.value for d in at.dataframe if "kappa [95% CI]" in d.value.columns)
    judge = table[(table["scope"] == "run ui-run") & (table["who"] == "judge")].iloc[0]
    assert (judge["comparisons"], judge["agreement"]) == ("2", "50%")  # p2's votes tie
    humans = table[(table["scope"] == "run ui-run") & (table["who"] == "humans")].iloc[0]
    assert humans["comparisons"] == "6" and humans["agreement"] == "67%"  # p2's two disagree
    assert "gap gap-a" in set(table["scope"])
    assert any("less than they agree with each other" in c.value for c in at.caption)
    shown = [t.value for t in at.text if t.value.startswith("Last retrained")]
    assert shown and "on 120 human-decided items; queue reordered: 40" in shown[0]
    assert "Auto-decisions off: no human yardstick: <b>off</b>" in shown[0], "text, not HTML"


def test_a_decision_in_the_queue_enqueues_the_prescreens_retraining_when_due(
    ui_env: dict[str, str], ui_store: Store, valkey_url: str
) -> None:
    from generator.config import QueueSettings
    from generator.queueing import WorkQueue
    from generator.schema import RunConfig

    config = {
        "run_id": "ui-run",
        "review": {"prescreen": {"min_decisions": 10, "retrain_every": 1}},
    }
    ui_store.save_run(RunConfig.model_validate(config))
    ui_store.put_many(real_candidates(14))
    work = WorkQueue(ui_store, redis.Redis.from_url(valkey_url), QueueSettings())
    for _ in range(9):
        lease = ui_store.claim("bob", "ui-run")
        assert lease is not None
        ui_store.decide(lease.item_id, "bob", "accept", lease.version)
    at = app_test("local").run()
    at.button(key="key-a").click().run()  # the 10th settled item: due
    assert not at.exception
    [job] = work.score.get_job_ids()
    assert job.endswith("-prescreen-ui-run-10")
    at.button(key="key-a").click().run()
    assert work.score.get_job_ids()[-1].endswith("-prescreen-ui-run-11")


def test_a_pii_flag_is_cleared_per_item_and_the_export_page_writes_the_accepted(
    ui_env: dict[str, str],
    ui_store: Store,
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GAPFILL_EXPORT_TOKENIZERS", json.dumps([str(model_dir)]))
    items = real_candidates(3)
    for index in (0, 1):  # real PII, so the real screen (made at each decision) flags it
        question = items[index].payload.messages[0].content  # type: ignore[union-attr]
        data = {**items[index].model_dump(exclude={"id"}), "payload": sft(question, "Mail x@y.org")}
        items[index] = Candidate.model_validate(data)
    ui_store.put_many(screen_all(items))  # as import and the filters store them: screened
    at = app_test("local").run()
    at.checkbox(key="pii-cleared").check().run()
    at.button(key="key-a").click().run()  # items[0]: cleared
    assert not at.checkbox(key="pii-cleared").value, "a clearance holds for one item only"
    at.button(key="key-a").click().run()  # items[1]: accepted without clearing
    at.button(key="key-a").click().run()  # items[2]: no flag
    at.switch_page("views/export.py").run()
    assert not at.exception
    out = Path(ui_env["GAPFILL_DATA_DIR"]) / "exports" / "ui-export"  # under the export root
    at.text_input(key="export-name").input("ui-export")
    at.selectbox(key="export-tokenizer").select(str(model_dir))
    next(b for b in at.button if b.label == "Export").click().run()
    assert not at.exception
    assert any("Exported train 2 rows" in s.value for s in at.success), [e.value for e in at.error]
    provenance = [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]
    assert {p["item_id"] for p in provenance} == {items[0].id, items[2].id}
    assert any("1 approved items left out" in w.value for w in at.warning), at.warning
    assert "PII/secret flag not cleared" in at.dataframe[0].value.to_string()
    at.switch_page("views/overview.py").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Valid rows"] == "100%" and metrics["Eval-set matches"] == "0", metrics


# -- roles, revocation and OIDC, through AppTest -------------------------------------------------


def test_the_overview_counts_the_cost_per_accepted_item_when_asked(
    ui_env: dict[str, str], ui_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GAPFILL_PRICES_PER_MILLION_TOKENS", '{"local": 10.0}')
    spent = Usage(prompt_tokens=50, completion_tokens=200, backend_seconds=0.5)
    items = [
        c.model_copy(update={"provenance": Provenance(backend="local", usage=spent)})
        for c in real_candidates(3)
    ]
    ui_store.put_many(screen_all(items))
    at = app_test("local").run()
    at.button(key="key-a").click().run()
    at.switch_page("views/overview.py").run()
    assert not any("tokens / accepted" in d.value.columns for d in at.dataframe), "on request"
    at.toggle(key="show-costs").set_value(True).run()
    assert not at.exception
    table = next(d.value for d in at.dataframe if "tokens / accepted" in d.value.columns)
    row = table.iloc[0]
    assert (row["generated"], row["accepted"], row["tokens / accepted"]) == (3, 1, 750.0)
    assert row["backend s / accepted"] == 1.5
    assert row["money / accepted"] == pytest.approx(750 * 10.0 / 1e6)


def test_code_that_failed_its_own_tests_shows_the_failure_beside_the_answer(
    ui_env: dict[str, str], ui_store: Store
) -> None:
    code = (
        "```python\ndef add(a, b):\n    return a - b\n\nassert add(2, 3) == 5, 'add is wrong'\n```"
    )
    item = Candidate(
        kind=CandidateKind.SFT,
        payload=sft("Write add(a, b) with a test.", code),
        run_id="ui-run",
        gap_id="gap-a",
        status=CandidateStatus.PENDING,
    )
    [score] = CodeExecutionFilter().score([item])  # the real sandbox runs it
    ui_store.put_many(screen_all([item.model_copy(update={"scores": {score.filter: score}})]))
    at = app_test("local").run()
    assert not at.exception
    shown = "\n".join(t.value for t in at.text)
    assert "failed: exited 1; the code's last line on stderr: AssertionError: add is wrong" in shown
    assert "assert add(2, 3) == 5, 'add is wrong'" in shown  # the traceback, as text
    assert "The code's output (isolation: " in shown


def signed_in(token: str):  # type: ignore[no-untyped-def]
    at = app_test("tokens").run()
    at.text_input(key="token").input(token)
    at.button[0].click().run()
    assert not at.exception
    return at


def not_in_navigation(at, page: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        at.switch_page(page)
    except ValueError as exc:  # AppTest lists the pages st.navigation registered
        return "Could not find a navigation page" in str(exc)
    return False


def run_page_directly(page: str, name: str, token: str):  # type: ignore[no-untyped-def]
    """A page file run on its own, past app.py, by a session signed in with ``token``."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REVIEW_UI / "views" / page), default_timeout=30)
    at.session_state["reviewer"] = name
    at.session_state["token_hash"] = reviewers.token_hash(token)
    return at.run()


def test_a_reviewer_has_no_export_no_reviewers_page_and_no_bulk_actions(
    ui_env: dict[str, str], ui_store: Store
) -> None:
    token = reviewers.add(Path(ui_env["GAPFILL_DATA_DIR"]), "bob")
    ui_store.put_many(real_candidates(3))
    at = signed_in(token)
    assert any("Signed in as bob (reviewer)" in t.value for t in at.text)
    assert not_in_navigation(at, "views/export.py")
    assert not_in_navigation(at, "views/reviewers.py")
    at.switch_page("views/browse.py").run()
    assert not at.exception and len(at.dataframe) == 1
    assert [b.label for b in at.button] == ["Sign out"], "no bulk action for a reviewer"
    for page in ("export.py", "reviewers.py"):  # each admin page refuses on its own, too
        direct = run_page_directly(page, "bob", token)
        assert any("for admins only" in e.value for e in direct.error), page
        assert not direct.header and not direct.button, page


def tokens_shown(at) -> list[str]:  # type: ignore[no-untyped-def]
    """The code blocks on the page but the hidden highlighter warm-up every page draws."""
    return [c.value for c in at.code if c.value != WARM_UP_CODE]


def test_an_admin_exports_manages_reviewers_and_acts_in_bulk(
    ui_env: dict[str, str], ui_store: Store
) -> None:
    data_dir = Path(ui_env["GAPFILL_DATA_DIR"])
    token = reviewers.add(data_dir, "alice", reviewers.Role.ADMIN)
    reviewers.add(data_dir, "bob")
    ui_store.put_many(real_candidates(3))
    at = signed_in(token)
    at.switch_page("views/export.py").run()
    assert [h.value for h in at.header] == ["Export what reviewers accepted"]
    at.switch_page("views/reviewers.py").run()
    assert not at.exception
    assert at.dataframe[0].value.to_dict("records") == [
        {"reviewer": "alice", "role": "admin"},
        {"reviewer": "bob", "role": "reviewer"},
    ]
    at.text_input(key="add-name").input("carol")
    next(b for b in at.button if b.label == "Add").click().run()
    [shown] = tokens_shown(at)
    assert reviewers.who(data_dir, shown) == "carol", "the token shown signs carol in"
    assert not tokens_shown(at.run()), "a new token is shown once"
    at.selectbox(key="role-name").select("bob")
    at.selectbox(key="role-new").select("admin")
    next(b for b in at.button if b.label == "Change role").click().run()
    at.selectbox(key="remove-name").select("carol")
    next(b for b in at.button if b.label == "Remove").click().run()
    assert not at.exception and not at.error
    assert {n: e.role for n, e in reviewers.load(data_dir).items()} == {
        "alice": "admin",
        "bob": "admin",
    }
    assert "alice" not in at.selectbox(key="remove-name").options, "not one's own account"
    at.switch_page("views/browse.py").run()
    at.session_state["items"] = {"selection": {"rows": [0, 1, 2], "columns": [], "cells": []}}
    next(b for b in at.run().button if b.label == "Reject selected").click().run()
    assert not at.exception
    rejected = [d.decision for d in ui_store.decisions("ui-run")]
    assert [(d.verdict, d.reviewer) for d in rejected] == [("bulk_reject", "alice")], "unleased"
    assert ui_store.count("ui-run", CandidateStatus.REJECTED) == 1


@pytest.mark.parametrize("change", ["remove", "rotate"])
def test_a_removed_or_rotated_token_ends_its_session_at_the_next_rerun(
    ui_env: dict[str, str], ui_store: Store, change: str
) -> None:
    data_dir = Path(ui_env["GAPFILL_DATA_DIR"])
    token = reviewers.add(data_dir, "bob")
    ui_store.put_many(real_candidates(3))
    at = signed_in(token)
    assert ui_store.leased_count("ui-run") == 2, "the item shown and the next one"
    if change == "remove":
        reviewers.remove(data_dir, "bob")
    else:
        reviewers.add(data_dir, "bob")  # a new token for bob
    at.button(key="key-a").click().run()  # bob's next action
    assert not at.exception
    assert [t.label for t in at.text_input] == ["Reviewer token"], "the sign-in again"
    assert any("removed or replaced" in w.value for w in at.warning)
    assert ui_store.decisions("ui-run") == [], "the accept was not recorded"
    assert ui_store.leased_count("ui-run") == 0, "bob's items went back to the queue"
    assert "reviewer_id" not in at.session_state


def test_a_demoted_admin_loses_admin_pages_and_bulk_actions_at_the_next_rerun(
    ui_env: dict[str, str], ui_store: Store
) -> None:
    data_dir = Path(ui_env["GAPFILL_DATA_DIR"])
    token = reviewers.add(data_dir, "alice", reviewers.Role.ADMIN)
    ui_store.put_many(real_candidates(3))
    at = signed_in(token)
    at.switch_page("views/browse.py").run()
    at.session_state["items"] = {"selection": {"rows": [0, 1, 2], "columns": [], "cells": []}}
    stale = next(b for b in at.run().button if b.label == "Reject selected")
    reviewers.set_role(data_dir, "alice", reviewers.Role.REVIEWER)
    stale.click().run()  # the button of the page drawn while alice was an admin
    assert not at.exception
    assert ui_store.decisions("ui-run") == [], "nothing rejected"
    assert [b.label for b in at.button] == ["Sign out"]
    assert not_in_navigation(at, "views/export.py")
    assert any("Signed in as alice (reviewer)" in t.value for t in at.text)


def test_an_unreadable_reviewers_file_is_one_error_and_admits_no_one(
    ui_env: dict[str, str], ui_store: Store
) -> None:
    data_dir = Path(ui_env["GAPFILL_DATA_DIR"])
    token = reviewers.add(data_dir, "bob")
    ui_store.put_many(real_candidates(2))
    at = signed_in(token)
    (data_dir / "reviewers.json").write_text("{not json")
    at.button(key="key-a").click().run()
    assert not at.exception
    [error] = [e.value for e in at.error]
    assert error.startswith(f"{data_dir / 'reviewers.json'}: not valid JSON")
    assert ui_store.decisions("ui-run") == []
    assert not [b for b in at.button if b.label == "Accept"]


def oidc_app(monkeypatch: pytest.MonkeyPatch, **claims: object):  # type: ignore[no-untyped-def]
    """The app in OIDC mode, with ``st.user`` seeded through AppTest.user (Streamlit's own
    way to test a signed-in user without a provider) and example.com on the allow-list."""
    monkeypatch.setenv("GAPFILL_OIDC_ALLOWED_DOMAINS", '["example.com"]')
    at = app_test("oidc")
    at.user = {"is_logged_in": True, **claims}
    return at.run()


@pytest.mark.parametrize(
    "claims",
    [
        {"email": "eve@gmail.com", "email_verified": True},
        {"email": "eve@evil-example.com", "email_verified": True},
        {"email": "eve@example.com", "email_verified": False},
        {"email": "eve@example.com"},
    ],
    ids=["other domain", "look-alike domain", "unverified", "no verified claim"],
)
def test_an_oidc_account_the_allow_list_refuses_sees_only_not_allowed_and_sign_out(
    ui_env: dict[str, str],
    ui_store: Store,
    monkeypatch: pytest.MonkeyPatch,
    claims: dict[str, object],
) -> None:
    ui_store.put_many(real_candidates(2))
    at = oidc_app(monkeypatch, **claims)
    assert not at.exception
    assert [e.value for e in at.error] == [at.error[0].value] and "Not allowed" in at.error[0].value
    assert [b.label for b in at.button] == ["Sign out"]
    assert not at.text and not at.selectbox, "no run, no queue, no item"
    assert ui_store.leased_count("ui-run") == 0 and "reviewer_id" not in at.session_state


def test_an_allowed_oidc_account_reviews_and_an_admin_e_mail_gets_admin_pages(
    ui_env: dict[str, str], ui_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ui_store.put_many(real_candidates(2))
    at = oidc_app(monkeypatch, email="Ann@Example.com", email_verified=True)
    assert not at.exception and not at.error
    assert any("Signed in as ann@example.com (reviewer)" in t.value for t in at.text)
    assert at.button(key="key-a") is not None and not_in_navigation(at, "views/export.py")
    reviewers.add(Path(ui_env["GAPFILL_DATA_DIR"]), "ann@example.com", reviewers.Role.ADMIN)
    at.switch_page("views/overview.py").run()
    at.switch_page("views/export.py").run()
    assert [h.value for h in at.header] == ["Export what reviewers accepted"]


# -- a real browser ----------------------------------------------------------------------------


@pytest.fixture
def served(ui_env: dict[str, str], request: pytest.FixtureRequest) -> Iterator[str]:
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is missing: apt-get install -y chromium")
    port = free_port()
    mode = getattr(request, "param", "--local")
    if mode == "--no-local":
        request.getfixturevalue("tokens")  # the UI refuses to start without reviewers
    with serving_ui({**os.environ, **ui_env}, port, mode) as url:
        yield url


ITEM = re.compile(r"item ([0-9a-f]{8,})")


def shown_item(page) -> str:  # type: ignore[no-untyped-def]
    text = page.get_by_text(ITEM).first.inner_text(timeout=15_000)
    match = ITEM.search(text)
    assert match is not None
    return match.group(1)


def idle(page) -> None:  # type: ignore[no-untyped-def]
    """Wait until the app's script run is over (a screenshot or a DOM check sees the page whole)."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]')


def keys_ready(page) -> None:  # type: ignore[no-untyped-def]
    """Wait until the page's keyboard is listening: its script loads after the first render, and
    a key pressed before that reaches no script of the page at all."""
    page.wait_for_function("() => window.__gapfillKeys && window.__gapfillKeys.data !== null")


def press(page, key: str) -> None:  # type: ignore[no-untyped-def]
    idle(page)
    keys_ready(page)
    page.keyboard.press(key)


def wait_for_next(page, previous: str, timeout: float = 15) -> str:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            current = shown_item(page)
        except Exception:  # the element is re-rendering
            current = previous
        if current != previous:
            return current
        time.sleep(0.02)
    raise AssertionError(f"item {previous} still shown")


def decide_by_key(page, keys: list[str], current: str, store: Store, before: int):  # type: ignore[no-untyped-def]
    """Press ``keys`` until the next item shows; (next item, times pressed again).

    Presses are never dropped (the keyboard tests check it); pressing again is for the restart
    test, where a press made while the store is away is refused on the page. Only when the store
    holds no new decision, so none is ever doubled."""
    for attempt in range(3):
        for key in keys:
            press(page, key)
            if key == "x":
                page.get_by_text("Reject because").wait_for(timeout=15_000)
        try:
            return wait_for_next(page, current, timeout=5), attempt
        except AssertionError:
            assert len(store.decisions("ui-run")) == before, "decided, not shown"
            page.keyboard.press("Escape")
    raise AssertionError(f"decision {before + 1} never registered")


def test_a_reviewer_decides_20_items_with_the_keyboard_only(
    served: str, ui_store: Store, browser
) -> None:  # type: ignore[no-untyped-def]
    ui_store.put_many(real_candidates(24))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(served)
    current = shown_item(page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "queue.png"), full_page=True)
    # Streamlit's chrome is not the reviewer's: no Deploy button, no developer menu.
    assert page.title() == "gapfill review"
    for chrome in ("stAppDeployButton", "stMainMenu"):
        assert page.locator(f'[data-testid="{chrome}"]').count() == 0, chrome
    repeated = 0
    for number in range(20):
        keys = ["x", "2"] if number % 4 == 3 else ["a"]  # reject as "wrong", or accept
        current, again = decide_by_key(page, keys, current, ui_store, number)
        repeated += again
    assert repeated == 0, "a key press was lost"
    log = [d.decision for d in ui_store.decisions("ui-run")]
    assert len(log) == 20 and len({d.item_id for d in log}) == 20
    assert [d.verdict for d in log].count("reject") == 5
    assert all(d.reason_tags == ["wrong"] for d in log if d.verdict == "reject")
    assert ui_store.count("ui-run", CandidateStatus.ACCEPTED) == 15


XSS = [
    "<script>alert('xss-script')</script>",
    "<img src=x onerror=\"alert('xss-img')\">",
    "[click me](javascript:alert('xss-link'))",
    "![tracker](http://198.51.100.7/pixel.png)",
]


def test_untrusted_candidate_text_stays_inert_in_the_browser(
    served: str, ui_store: Store, browser
) -> None:  # type: ignore[no-untyped-def]
    items = [
        Candidate(
            kind=CandidateKind.SFT,
            payload=sft(f"Show this: {text}", f"Here it is: {text}"),
            run_id="ui-run",
            gap_id="gap-a",
            status=CandidateStatus.PENDING,
            priority=float(10 - i),
        )
        for i, text in enumerate(XSS)
    ]
    ui_store.put_many(items)
    page = browser.new_page()
    dialogs: list[str] = []
    outside: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on(
        "request",
        lambda request: (
            outside.append(request.url)
            # blob: URLs of the page's own origin carry gapfill's component scripts.
            if not request.url.startswith((served, f"blob:{served}", "data:"))
            else None
        ),
    )
    page.goto(served)
    current = shown_item(page)
    for text in XSS:
        # The item id is drawn before the item's text: wait for the text itself.
        page.get_by_text(text, exact=False).first.wait_for(timeout=15_000)
        assert page.get_by_text(text, exact=False).count() >= 1, f"{text!r} shown as text"
        assert page.locator("a[href^='javascript']").count() == 0
        current = _accept(page, current) if text != XSS[-1] else current
    page.wait_for_timeout(500)
    assert dialogs == [] and outside == []


def _accept(page, current: str) -> str:  # type: ignore[no-untyped-def]
    """Accept the shown item and return the next one's id."""
    press(page, "a")
    return wait_for_next(page, current)


def press_until_shown(page, key: str, text: str) -> None:  # type: ignore[no-untyped-def]
    """Press ``key`` once, then wait for ``text`` (a press is never dropped)."""
    press(page, key)
    page.get_by_text(text).wait_for(timeout=15_000)


@pytest.fixture
def tokens(ui_env: dict[str, str]) -> dict[str, str]:
    data_dir = Path(ui_env["GAPFILL_DATA_DIR"])
    return {name: reviewers.add(data_dir, name) for name in ("alice", "bob")}


@pytest.mark.parametrize("served", ["--no-local"], indirect=True)
def test_two_reviewers_never_see_the_same_item(
    tokens: dict[str, str], ui_store: Store, browser, served: str
) -> None:  # type: ignore[no-untyped-def]
    ui_store.put_many(real_candidates(12))
    pages = {}
    for name, token in tokens.items():
        page = browser.new_context().new_page()
        page.goto(served)
        page.get_by_label("Reviewer token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        pages[name] = page
    seen: dict[str, list[str]] = {"alice": [], "bob": []}
    for _ in range(4):
        for name, page in pages.items():
            item = shown_item(page)
            seen[name].append(item)
            decide_by_key(page, ["a"], item, ui_store, len(ui_store.decisions("ui-run")))
    assert not set(seen["alice"]) & set(seen["bob"])
    reviewers_of = {d.decision.item_id: d.decision.reviewer for d in ui_store.decisions("ui-run")}
    assert all(reviewers_of[i] == name for name, ids in seen.items() for i in ids)


def test_a_reviewers_leases_follow_them_to_a_new_tab_and_count_once(
    served: str, ui_store: Store, browser
) -> None:  # type: ignore[no-untyped-def]
    first, second = real_candidates(2)
    ui_store.put_many([first, second])
    tab = browser.new_context().new_page()
    tab.goto(served)
    assert shown_item(tab) == first.id
    assert ui_store.queue_figures("ui-run") == (0, 2), "the item shown and the one prefetched"
    tab.context.close()  # the session ends: its prefetched lease goes back, the shown one stays
    deadline = time.monotonic() + 15
    while ui_store.queue_figures("ui-run") != (1, 1) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ui_store.queue_figures("ui-run") == (1, 1), "the prefetched item back in the queue"
    tab = browser.new_context().new_page()
    tab.goto(served)
    assert shown_item(tab) == first.id, "the closed tab's item, not 'Nothing left to review'"
    status = run_cli(cli_env(ui_store), "status", "--run", "ui-run", timeout=120)
    assert "ui-run: 0 waiting for review, 2 leased to reviewers" in status.stdout, status.stdout
    tab.reload()
    assert shown_item(tab) == first.id
    shown = decide_by_key(tab, ["a"], first.id, ui_store, 0)[0]
    assert shown == second.id
    other = browser.new_context().new_page()  # a second tab, open beside the first
    other.goto(served)
    assert shown_item(other) == second.id, "the reviewer's lease, in either tab"
    press_until_shown(other, "a", "Nothing left to review")
    press_until_shown(tab, "a", "not recorded")  # the same item, decided in the other tab already
    log = [(d.decision.item_id, d.decision.verdict) for d in ui_store.decisions("ui-run")]
    assert log == [(first.id, "accept"), (second.id, "accept")], "each decision once"
    assert ui_store.queue_figures("ui-run") == (0, 0)


@pytest.mark.parametrize("served", ["--no-local"], indirect=True)
def test_every_page_asked_for_directly_without_a_session_shows_the_sign_in(
    tokens: dict[str, str], ui_store: Store, browser, served: str
) -> None:  # type: ignore[no-untyped-def]
    # A fresh server that no reviewer has used yet: the state in which a folder named pages/
    # once let Streamlit serve a page file (Export included) past app.py's sign-in.
    ui_store.put_many(real_candidates(2))
    pages = ("export", "reviewers", "browse", "overview", "queue", "")
    for path in (*pages, "pages/export", "views/export", "views/reviewers"):
        page = browser.new_context().new_page()
        page.goto(f"{served}/{path}")
        if "/" in path:  # a file path: no page of the app at all, not even the sign-in
            page.wait_for_timeout(3000)
        else:
            page.get_by_label("Reviewer token").wait_for(timeout=20_000)
            idle(page)
        body = page.inner_text("body")
        assert "Export what reviewers accepted" not in body, path
        assert "Add a reviewer" not in body, path
        assert not ITEM.search(body), f"{path}: an item was shown before sign-in"
        page.context.close()
    assert ui_store.decisions("ui-run") == [] and not list(REVIEW_UI.rglob("pages"))


def test_a_reviewer_with_only_skipped_items_left_is_told_why_not_nothing_left(
    served: str, ui_store: Store, browser
) -> None:  # type: ignore[no-untyped-def]
    ui_store.put_many(real_candidates(1))
    page = browser.new_context().new_page()
    page.goto(served)
    shown_item(page)
    press_until_shown(page, "s", "1 waiting: items you skipped or already voted on")
    assert page.get_by_text("Nothing left to review in this run").count() == 0
    assert ui_store.queue_figures("ui-run") == (1, 0)


@pytest.mark.slow
def test_sigterm_to_gapfill_ui_stops_the_server_and_its_port_closes(
    ui_env: dict[str, str],
) -> None:
    """What `docker stop` or a supervisor does: one SIGTERM to the process it started."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "ui", "--port", str(port), "--local"],
        env={**os.environ, **ui_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not port_open(port):
            assert process.poll() is None and time.monotonic() < deadline, "did not start"
            time.sleep(0.3)
        process.send_signal(signal.SIGTERM)  # to that process alone, not to its group
        # Streamlit's own handler exits 0; a SIGTERM that lands before it installs one ends the
        # process by the default action. Either way the process signalled was the server.
        assert process.wait(timeout=20) in (0, -signal.SIGTERM)
        deadline = time.monotonic() + 10
        while port_open(port):
            assert time.monotonic() < deadline, "something still serves the port"
            time.sleep(0.2)
    finally:
        if process.poll() is None:
            process.kill()


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_an_unexpected_error_shows_an_incident_id_and_logs_the_traceback_not_the_page(
    ui_env: dict[str, str],
    ui_store: Store,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ui_store.put_many(real_candidates(2))

    def broken(*_args: object, **_kwargs: object) -> None:
        raise KeyError("/srv/secret/path in a bug")

    monkeypatch.setattr(Store, "queue_figures", broken)
    with caplog.at_level("ERROR", logger="review_ui"):
        at = app_test("local").run()
    assert not at.exception, "no traceback on the page"
    [shown] = [e.value for e in at.error]
    incident = re.search(r"incident ([0-9a-f]{8})", shown)
    assert incident and "/srv/secret" not in shown
    [record] = [r for r in caplog.records if incident.group(1) in r.getMessage()]
    assert record.exc_info is not None and "/srv/secret" in str(record.exc_info[1])


def test_an_unexpected_error_in_an_action_is_an_incident_not_a_crash(
    ui_env: dict[str, str], ui_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ui_store.put_many(real_candidates(2))
    at = app_test("local").run()

    def broken(*_args: object, **_kwargs: object) -> None:
        raise ValueError("a bug in decide")

    monkeypatch.setattr(Store, "decide", broken)
    at.button(key="key-a").click().run()
    assert not at.exception
    assert any("incident" in w.value for w in at.warning), [w.value for w in at.warning]
    assert len(ui_store.decisions("ui-run")) == 0


def test_the_overview_names_gaps_and_puts_the_most_needed_first(
    ui_env: dict[str, str], ui_store: Store
) -> None:
    from generator.schema import Gap

    gaps = [
        Gap(id=f"ref-{n}", run_id="ui-run", label=label, target=target)
        for n, label, target in ((1, "Netflix", 3), (2, "Gmail", 30), (10, "Excel", 12))
    ]
    ui_store.save_gaps("ui-run", gaps, "{}")
    ui_store.put_many(real_candidates(2))
    at = app_test("local").run()
    at.switch_page("views/overview.py").run()
    assert not at.exception
    [table] = [frame.value for frame in at.dataframe][:1]
    # gap-a: the items' gap, with no gap record (no name, no target): last, by its id.
    assert list(table.index) == ["Gmail", "Excel", "Netflix", "gap-a"]
    assert list(table["still needed"]) == [30, 12, 3, 0]


def test_a_later_rounds_overview_counts_the_earlier_rounds_and_shows_yield_per_round(
    ui_env: dict[str, str], ui_store: Store
) -> None:
    from generator.schema import AUTO_REVIEWER, Gap, RunConfig

    ui_store.save_run(RunConfig(run_id="ui-run-0"))
    ui_store.save_run(RunConfig(run_id="ui-run", after="ui-run-0", round=2))
    for run in ("ui-run-0", "ui-run"):
        ui_store.save_gaps(run, [Gap(id="gap-a", run_id=run, label="Netflix", target=5)], "{}")
    first = real_candidates(3, run="ui-run-0")
    ui_store.put_many(first)
    for item, who in zip(first[:2], ("ann", AUTO_REVIEWER), strict=True):
        lease = ui_store.claim_item(item.id, who)
        ui_store.decide(item.id, who, "accept", lease.version)
    ui_store.put_many(real_candidates(5)[3:])  # other answers: an item's id is its content's
    at = app_test("local").run()
    at.switch_page("views/overview.py").run()
    assert not at.exception
    funnel, by_round = (frame.value for frame in at.dataframe[:2])
    # Round 1's reviewer acceptance fills the gap; the pre-screen's alone does not.
    assert list(funnel["still needed"]) == [4]
    assert list(by_round["round"]) == [1, 2] and list(by_round["run"]) == ["ui-run-0", "ui-run"]
    assert list(by_round["accepted"]) == [1, 0]
    assert list(by_round["accepted by model"]) == [1, 0]
    assert list(by_round["yield"]) == [round(1 / 3, 3), 0.0]
    assert "Yield per round: accepted / generated" in [h.value for h in at.subheader]


CLIPPED = """() => Array.from(document.querySelectorAll('button'))
  .filter(b => b.offsetParent !== null && b.innerText.trim())
  .filter(b => [b, ...b.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1))
  .map(b => b.innerText.replace(/\\s+/g, ' ').trim())"""


@pytest.mark.parametrize("width", [1280, 1920])
def test_no_button_label_is_clipped_in_the_queue_or_the_reject_mode(
    served: str, ui_store: Store, browser, width: int
) -> None:  # type: ignore[no-untyped-def]
    ui_store.put_many(real_candidates(3))
    page = browser.new_page(viewport={"width": width, "height": 1000})
    page.goto(served)
    current = shown_item(page)
    idle(page)
    assert page.evaluate(CLIPPED) == [], "clipped in the queue"
    press(page, "x")
    page.get_by_text("Reject because").wait_for(timeout=15_000)
    idle(page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"reject-mode-{width}.png"), full_page=True)
    for reason in ("duplicate", "wrong", "unsafe", "low quality", "off-gap", "PII", "other"):
        assert page.get_by_role("button", name=reason).first.is_visible(), reason
    assert page.evaluate(CLIPPED) == [], "clipped in the reject mode"
    assert shown_item(page) == current


# -- keys: none lost, none applied twice ----------------------------------------------------------

OUTCOMES = "() => ({presses: window.__gapfillKeys.seq, outcomes: window.__gapfillKeys.outcomes})"


def settled(page, presses: int, timeout: float = 20) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Wait until every one of ``presses`` has its outcome from the server; the outcomes."""
    deadline = time.monotonic() + timeout
    while True:
        state = page.evaluate(OUTCOMES)
        assert state["presses"] == presses, state
        if sum(state["outcomes"].values()) == presses:
            return dict(state["outcomes"])
        assert time.monotonic() < deadline, f"presses without an outcome: {state}"
        time.sleep(0.05)


def test_keys_pressed_while_the_page_re_renders_are_applied_once_or_refused_on_screen(
    served: str, ui_store: Store, browser
) -> None:  # type: ignore[no-untyped-def]
    items = real_candidates(14)
    ui_store.put_many(items)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(served)
    assert shown_item(page) == items[0].id
    idle(page)
    keys_ready(page)
    page.keyboard.press("x")  # no wait: '2' arrives while the reasons are being drawn
    page.keyboard.press("2")
    assert wait_for_next(page, items[0].id) == items[1].id
    assert settled(page, 2) == {"applied": 2}
    [decision] = [d.decision for d in ui_store.decisions("ui-run")]
    assert (decision.item_id, decision.verdict, decision.reason_tags) == (
        items[0].id,
        "reject",
        ["wrong"],
    )
    idle(page)
    page.keyboard.press("a")
    page.keyboard.press("a")  # pressed for items[1] too: it must not accept items[2] unseen
    assert settled(page, 4) == {"applied": 3, "refused": 1}
    page.get_by_text("not applied").first.wait_for(timeout=10_000)
    assert [d.decision.item_id for d in ui_store.decisions("ui-run")] == [items[0].id, items[1].id]
    assert ui_store.get(items[2].id).status is CandidateStatus.PENDING
    idle(page)
    for _ in range(8):  # a burst: each press is applied to the item it was made for, or refused
        page.keyboard.press("a")
    outcomes = settled(page, 12)
    log = [d.decision for d in ui_store.decisions("ui-run")]
    assert outcomes["applied"] == len(log) + 1, "every applied press is a decision (x was one)"
    assert len({d.item_id for d in log}) == len(log), "no item decided twice"
    assert len(log) >= 3, "the burst decided at least the item on screen"


@pytest.mark.parametrize("served", ["--no-local"], indirect=True)
def test_a_key_pressed_as_the_queue_appears_after_sign_in_is_answered_not_dropped(
    tokens: dict[str, str], ui_store: Store, browser, served: str
) -> None:  # type: ignore[no-untyped-def]
    items = real_candidates(3)
    ui_store.put_many(items)
    page = browser.new_context().new_page()
    page.goto(served)
    page.get_by_label("Reviewer token").fill(tokens["alice"])
    keys_ready(page)  # the sign-in page listens already
    page.get_by_role("button", name="Sign in").click()
    page.keyboard.press("a")  # at once: the queue is still being drawn
    assert shown_item(page) == items[0].id
    assert settled(page, 1) == {"refused": 1}
    page.get_by_text("not applied").first.wait_for(timeout=10_000)
    assert ui_store.decisions("ui-run") == [], "nothing the reviewer had not seen was decided"
    idle(page)
    page.keyboard.press("a")
    assert wait_for_next(page, items[0].id) == items[1].id
    assert settled(page, 2) == {"refused": 1, "applied": 1}
    assert [d.decision.item_id for d in ui_store.decisions("ui-run")] == [items[0].id]


# -- the reviewer's desk: what a decision needs, on one screen, at 1280 and 1920 px --------------


@pytest.fixture
def desk(ui_store: Store, embedder, tmp_path: Path):  # type: ignore[no-untyped-def]
    from tests.desk import seed_desk

    return seed_desk(ui_store, embedder, tmp_path)


def pane_scroll(page) -> int:  # type: ignore[no-untyped-def]
    return int(
        page.evaluate(
            """() => { const p = document.querySelector('.st-key-item-pane');
            return Math.max(...[p, ...p.querySelectorAll('div')].map(e => e.scrollTop)); }"""
        )
    )


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


@pytest.mark.parametrize("width", [1280, 1920])
def test_the_desk_shows_each_flag_with_its_evidence_and_the_gap_and_clips_nothing(
    desk, served: str, browser, width: int
) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": width, "height": 1000})
    page.goto(f"{served}/?run=desk")
    assert shown_item(page) == desk.contaminated
    idle(page)
    keys_ready(page)
    # Contamination: the matched eval item's text beside the candidate, flagged first.
    page.get_by_text("Eval item HumanEval/0", exact=True).wait_for()
    assert page.get_by_text("def has_close_elements", exact=False).count() >= 2
    first_signal = page.get_by_text("Signals", exact=True).evaluate(
        "e => e.closest('[data-testid=stColumn]').innerText"
    )
    assert (
        first_signal.index("flagged")
        < first_signal.index("contamination")
        < first_signal.index("passed:")
    ), "the flag first, the clear passes after it on one line"
    # The gap: what it must cover and the nearest existing example.
    for text in ("Prompts it must cover", "Nearest existing example", "still needed"):
        assert page.get_by_text(text).first.is_visible(), text
    assert page.get_by_text("No judge ran on this run").is_visible()
    shot(page, f"queue-{width}.png")
    assert page.evaluate(CLIPPED) == [], "clipped in the queue"
    # A long item scrolls in its pane by j/k, the action bar stays on screen.
    page.keyboard.press("j")
    page.wait_for_function("() => document.querySelector('.st-key-item-pane').matches('*') && true")
    assert pane_scroll(page) > 0, "j scrolled the item"
    assert page.get_by_role("button", name="a · Accept").is_visible()
    page.keyboard.press("k")
    page.wait_for_timeout(300)
    assert pane_scroll(page) == 0
    # The key map.
    press(page, "?")
    page.get_by_text("show or hide this key map").wait_for()
    press(page, "?")
    # The reject mode.
    press(page, "x")
    page.get_by_text("Reject because").wait_for()
    idle(page)
    shot(page, f"reject-mode-{width}.png")
    assert page.evaluate(CLIPPED) == [], "clipped in the reject mode"
    press(page, "Escape")
    # The preference pair: side by side, with its word diff.
    press(page, "s")
    assert wait_for_next(page, desk.contaminated) == desk.pair
    page.get_by_text("What differs").wait_for()
    idle(page)
    assert page.locator("mark.del").count() > 0 and page.locator("mark.add").count() > 0
    assert page.get_by_text("Chosen").first.is_visible()
    assert page.get_by_text("Rejected").first.is_visible()
    shot(page, f"pair-{width}.png")
    assert page.evaluate(CLIPPED) == [], "clipped on the pair"
    # A duplicate: the existing row it repeats, as text.
    press(page, "s")
    assert wait_for_next(page, desk.pair) == desk.duplicate
    page.get_by_text("Matches seed_tasks.jsonl:1").wait_for()
    # PII: the finding masked where it is, in the evidence (the item itself shows the text).
    press(page, "s")
    assert wait_for_next(page, desk.duplicate) == desk.pii
    mark = page.locator("mark.pii").first
    mark.wait_for()
    assert mark.inner_text() == "[email: j" + "*" * 18 + "g]"  # jane.doe@example.org
    # The Overview, by gap name.
    page.goto(f"{served}/overview?run=desk")
    page.get_by_text("Reviewer throughput").first.wait_for(timeout=20_000)
    idle(page)
    shot(page, f"overview-{width}.png")
    assert page.evaluate(CLIPPED) == [], "clipped on the Overview"


# -- sessions across reloads ------------------------------------------------------------------


def sign_in(page, served: str, token: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(served)
    page.get_by_label("Reviewer token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def asks_for_the_token(page) -> bool:  # type: ignore[no-untyped-def]
    page.get_by_label("Reviewer token").wait_for(timeout=20_000)
    idle(page)
    return not ITEM.search(page.inner_text("body"))


STORED = "() => window.localStorage.getItem('gapfill_session')"


@pytest.mark.parametrize("served", ["--no-local"], indirect=True)
def test_a_token_sign_in_lasts_across_a_reload_until_sign_out_or_a_new_token(
    tokens: dict[str, str], ui_store: Store, ui_env: dict[str, str], browser, served: str
) -> None:  # type: ignore[no-untyped-def]
    items = real_candidates(4)
    ui_store.put_many(items)
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, served, tokens["alice"])
    assert shown_item(page) == items[0].id
    idle(page)
    page.reload()
    assert shown_item(page) == items[0].id, "still signed in after a reload"
    stored = page.evaluate(STORED)
    assert stored and tokens["alice"] not in stored
    assert reviewers.token_hash(tokens["alice"]) not in stored
    assert context.cookies() == [] or all(c["name"] != "gapfill_session" for c in context.cookies())
    # Another web app on the same host, another port: it cannot read the session.
    with other_origin() as elsewhere:
        page_elsewhere = context.new_page()
        page_elsewhere.goto(elsewhere)
        assert page_elsewhere.evaluate(STORED) is None
    # A tampered value signs nobody in.
    assert asks_for_the_token(_offering(browser, served, stored[:-3] + "AAA"))
    # Sign-out: the stored value is deleted, and a copy of it no longer signs in.
    page.get_by_role("button", name="Sign out").click()
    assert asks_for_the_token(page)
    assert page.evaluate(STORED) is None
    page.reload()
    assert asks_for_the_token(page)
    assert asks_for_the_token(_offering(browser, served, stored)), "a signed-out session, replayed"
    # A new token for alice ends the session her old token opened, at her next key press.
    sign_in(page, served, tokens["alice"])
    shown_item(page)
    idle(page)
    reviewers.add(Path(ui_env["GAPFILL_DATA_DIR"]), "alice")
    press(page, "a")  # the item area reruns on its own: it checks the token too
    assert asks_for_the_token(page)
    page.reload()
    assert asks_for_the_token(page)
    assert ui_store.decisions("ui-run") == []


@contextlib.contextmanager
def other_origin() -> Iterator[str]:
    """Another web server on this host name, another port: another origin."""
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()


def _offering(browser, served: str, value: str):  # type: ignore[no-untyped-def]
    """A fresh browser whose storage for the UI's origin holds ``value``, on the UI."""
    page = browser.new_context().new_page()
    page.goto(served)
    page.get_by_label("Reviewer token").wait_for(timeout=20_000)
    page.evaluate("(v) => window.localStorage.setItem('gapfill_session', v)", value)
    page.reload()
    page.wait_for_timeout(1500)  # time for the page to offer it, and the server to answer
    return page


def _goto(context, served: str):  # type: ignore[no-untyped-def]
    page = context.new_page()
    page.goto(served)
    return page


# -- adjudication of split votes --------------------------------------------------------------


def test_an_admin_sees_the_split_votes_and_settles_the_item(
    ui_env: dict[str, str], ui_store: Store
) -> None:
    from generator.schema import RunConfig

    ui_store.save_run(
        RunConfig.model_validate({"run_id": "ui-run", "review": {"reviewers_per_item": 2}})
    )
    [item] = real_candidates(1)
    ui_store.put(item)
    for reviewer, verdict in (("bob", "accept"), ("carol", "reject")):
        lease = ui_store.claim(reviewer, "ui-run")
        assert lease is not None
        ui_store.decide(lease.item_id, reviewer, verdict, lease.version)  # type: ignore[arg-type]
    assert ui_store.get(item.id).status is CandidateStatus.REJECTED, "the tie rejected it"
    at = app_test("local").run()
    at.switch_page("views/adjudicate.py").run()
    assert not at.exception
    votes = at.dataframe[0].value
    assert sorted(map(tuple, votes[["reviewer", "vote"]].values.tolist())) == [
        ("bob", "accept"),
        ("carol", "reject"),
    ]
    at.text_input(key=f"note-{item.id}").input("bob is right")
    at.button(key="adj-a").click().run()
    assert not at.exception
    assert ui_store.get(item.id).status is CandidateStatus.ACCEPTED
    last = ui_store.decisions("ui-run")[-1].decision
    assert (last.verdict, last.reason_tags, last.note) == ("adjudicate", ["accept"], "bob is right")
    assert last.reviewer.startswith("local:")
    assert any("No split votes waiting" in i.value for i in at.info)


def test_a_reviewer_cannot_adjudicate(ui_env: dict[str, str], ui_store: Store) -> None:
    token = reviewers.add(Path(ui_env["GAPFILL_DATA_DIR"]), "bob")
    ui_store.put_many(real_candidates(1))
    at = signed_in(token)
    assert not_in_navigation(at, "views/adjudicate.py")
    direct = run_page_directly("adjudicate.py", "bob", token)
    assert any("for admins only" in e.value for e in direct.error)
    assert not direct.button and not direct.dataframe


def test_the_judges_verdict_and_reason_are_shown_and_its_absence_is_said(
    ui_env: dict[str, str], ui_store: Store
) -> None:
    from generator.schema import Score

    judged, unjudged = real_candidates(2)
    verdict = Score(
        filter="judge",
        value=2.3,
        passed=False,
        reason="judge score 2.3 of 5: invents a 1951 fairy tale that does not exist",
        evidence={"judge_model": "smollm2", "helpfulness": 3, "correctness": 1, "safety": 3},
    )
    well_formed = Score(filter="malformed", value=1.0, passed=True, reason="well-formed")
    ui_store.put_many(
        [
            judged.model_copy(update={"scores": {"judge": verdict}}),
            unjudged.model_copy(update={"scores": {"malformed": well_formed}}),
        ]
    )
    at = app_test("local").run()
    assert not at.exception
    assert any("invents a 1951 fairy tale" in t.value for t in at.text)
    assert any("judge: flagged" in m.value and "correctness 1" in m.value for m in at.markdown)
    at.button(key="key-s").click().run()  # the next item: no judge ran on it
    assert any("No judge ran" in c.value for c in at.caption)


def test_untrusted_text_stays_inert_in_a_pairs_diff_and_in_masked_evidence(
    served: str, ui_store: Store, browser
) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import pair

    hostile = " ".join(XSS)
    items = screen_all(
        [
            Candidate(
                kind=CandidateKind.PREFERENCE,
                payload=pair("Say it.", f"Chosen: {hostile}", f"Rejected: {hostile} <b>x</b>"),
                run_id="ui-run",
                status=CandidateStatus.PENDING,
                priority=2.0,
            ),
            Candidate(
                kind=CandidateKind.SFT,
                payload=sft("Say it.", f"{hostile} Mail eve@example.org"),
                run_id="ui-run",
                status=CandidateStatus.PENDING,
                priority=1.0,
            ),
        ]
    )
    ui_store.put_many(items)
    page = browser.new_page()
    dialogs: list[str] = []
    outside: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on(
        "request",
        lambda request: (
            outside.append(request.url)
            if not request.url.startswith((served, f"blob:{served}", "data:"))
            else None
        ),
    )
    page.goto(served)
    assert shown_item(page) == items[0].id
    page.get_by_text("What differs").wait_for()
    diff = page.locator('[data-testid="marked-text"]').first
    diff.wait_for()
    assert "<script>alert('xss-script')</script>" in diff.inner_text(), "shown as text"
    assert page.locator("mark.add").count() and page.locator("mark.del").count()
    assert page.locator("mark.del").first.inner_text() == "Rejected", "words, not markup"
    press(page, "s")
    assert wait_for_next(page, items[0].id) == items[1].id
    page.locator("mark.pii").first.wait_for()
    marks = page.locator("mark.pii").all_inner_texts()
    assert "[email: e" + "*" * 13 + "g]" in marks, marks  # eve@example.org
    assert "[IP address: 1**********7]" in marks, marks  # the tracker's 198.51.100.7
    evidence = page.locator('[data-testid="marked-text"]').last.inner_text()
    assert "eve@example.org" not in evidence and "javascript:alert('xss-link')" in evidence
    page.wait_for_timeout(500)
    assert page.locator("a[href^='javascript']").count() == 0
    assert page.locator("img[src*='198.51.100.7']").count() == 0
    assert dialogs == [] and outside == []


def test_signing_out_while_the_store_is_away_is_done_once_it_is_back(
    ui_env: dict[str, str], ui_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    token = reviewers.add(Path(ui_env["GAPFILL_DATA_DIR"]), "bob")
    ui_store.put_many(real_candidates(3))
    at = signed_in(token)
    claim = at.session_state["session-claim"]
    assert ui_store.leased_count("ui-run") == 2
    release, sign_out_session = Store.release, Store.sign_out_session
    refused: list[str] = []

    def away_twice(real):  # type: ignore[no-untyped-def]
        """The store refuses the first two sign-out attempts (the click's, then the page's
        first run after it), as a restarting server does, then answers."""

        def call(*args: object, **kwargs: object) -> object:
            if len(refused) < 2:
                refused.append(real.__name__)
                raise RedisConnectionError("Connection refused")
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(Store, "release", away_twice(release))
    monkeypatch.setattr(Store, "sign_out_session", away_twice(sign_out_session))
    monkeypatch.setattr("review_ui.failures.RETRY_SECONDS", 0.0)
    next(b for b in at.button if b.label == "Sign out").click().run()
    assert not at.exception, "no traceback, no Streamlit error page"
    assert refused == ["release", "release"], "the click's attempt, then the page's retry"
    assert "reviewer" not in at.session_state and at.session_state["signed-out"]
    assert ui_store.signed_out(claim.session), "recorded once the store answered"
    assert ui_store.leased_count("ui-run") == 0, "bob's items went back to the queue"
    assert [t.label for t in at.text_input] == ["Reviewer token"]


# -- conversations with tools ------------------------------------------------------------------


def tool_items(run: str = "ui-run") -> list[Candidate]:
    """The hand-written tool conversations, the first with hostile text in a call's argument."""
    examples = tool_conversations()
    first = examples[0].model_dump(mode="json")
    first["messages"][1]["tool_calls"][0]["function"]["arguments"]["city"] = XSS[1]
    examples[0] = SFTExample.model_validate(first)
    return [
        Candidate(
            kind=CandidateKind.SFT,
            payload=example,
            run_id=run,
            gap_id="gap-a",
            status=CandidateStatus.PENDING,
            priority=float(10 - index),
        )
        for index, example in enumerate(examples)
    ]


def test_editing_a_tool_conversation_keeps_its_calls_results_and_tools(
    ui_env: dict[str, str], ui_store: Store
) -> None:
    item = tool_items()[1]  # the calendar conversation: two calls, ids on the results
    ui_store.put_many(screen_all([item]))
    at = app_test("local").run()
    assert not at.exception
    shown = "\n".join(c.value for c in at.code)
    assert '"attendees": [\n    "Dana",\n    "Lee"\n  ]' in shown, "the call's arguments as JSON"
    at.button(key="key-e").click().run()
    answer = [t for t in at.text_area if t.label == "assistant"][-1]
    answer.input("250 EUR is 271.50 USD today.")
    at.button[0].click().run()  # Save and accept
    assert not at.exception
    stored = ui_store.get(item.id)
    assert stored.status is CandidateStatus.ACCEPTED
    assert isinstance(stored.edited, SFTExample) and isinstance(item.payload, SFTExample)
    assert stored.edited.messages[-1].content == "250 EUR is 271.50 USD today."
    assert stored.edited.calls() == item.payload.calls()
    assert stored.edited.tools == item.payload.tools
    assert stored.edited.messages[:-1] == item.payload.messages[:-1]


def test_tool_conversations_are_reviewed_in_the_browser_and_export_in_trl_layout(
    served: str, ui_store: Store, browser, model_dir: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    items = tool_items()
    ui_store.put_many(screen_all(items))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(served)
    current = shown_item(page)
    page.get_by_text("calls get_weather").first.wait_for(timeout=15_000)
    page.get_by_text("result of get_weather").first.wait_for(timeout=15_000)
    page.get_by_text("Tools it may call (1): get_weather").wait_for(timeout=15_000)
    assert page.get_by_text("onerror", exact=False).count() >= 1, "the argument shown as text"
    assert page.locator("img[src='x']").count() == 0
    for _ in range(len(items) - 1):
        current = _accept(page, current)
    press(page, "a")
    page.get_by_text("Nothing left").first.wait_for(timeout=15_000)
    assert dialogs == []
    assert ui_store.count("ui-run", CandidateStatus.ACCEPTED) == 3
    options = ExportOptions.model_validate(
        {
            "runs": ["ui-run"],
            "kind": CandidateKind.SFT,
            "out": tmp_path / "export",
            "tokenizer": str(tool_tokenizer(model_dir, tmp_path / "tokenizer")),
            "evaluate": False,
        }
    )
    export(ui_store, options, tmp_path)
    rows = [
        json.loads(line) for line in (tmp_path / "export" / "train.jsonl").read_text().splitlines()
    ]
    assert sorted(r["messages"][-1]["content"] for r in rows) == sorted(
        i.payload.messages[-1].content
        for i in items  # type: ignore[union-attr]
    )
    assert all(r["tools"] and any("tool_calls" in m for m in r["messages"]) for r in rows)


# -- rankings ----------------------------------------------------------------------------------

RANKED_ANSWERS = [
    "Go to bed at the same time every night.",
    "Sleep is for the weak.",
    "Keep the bedroom cool and dark.",
    "Drink coffee at midnight.",
]


def ranking_candidate(run: str = "ui-run") -> Candidate:
    return Candidate(
        kind=CandidateKind.PREFERENCE,
        payload=PreferenceExample.ranking(
            [Message(role="user", content="How can I sleep better?")],
            [[Message(role="assistant", content=text)] for text in RANKED_ANSWERS],
        ),
        run_id=run,
        gap_id="gap-a",
        status=CandidateStatus.PENDING,
    )


def test_a_reviewer_ranks_four_answers_and_the_order_is_recorded_and_accepted(
    ui_env: dict[str, str], ui_store: Store
) -> None:
    item = ranking_candidate()
    ui_store.put_many(screen_all([item]))
    at = app_test("local").run()
    assert not at.exception
    shown = "\n".join(m.value for m in at.markdown)
    assert "4 answers to rank" in shown and "Answer 4" in shown
    at.button(key="key-r").click().run()
    at.button(key="rank-3").click().run()
    assert "Ranked so far: 3" in "\n".join(m.value for m in at.markdown)
    at.button(key="rank-3").click().run()  # twice: refused, the ranking goes on
    assert any("ranked already" in w.value for w in at.warning)
    at.button(key="rank-1").click().run()
    at.button(key="rank-4").click().run()  # the last (answer 2) places itself
    assert not at.exception
    stored = ui_store.get(item.id)
    assert stored.status is CandidateStatus.ACCEPTED
    assert isinstance(stored.edited, PreferenceExample) and stored.edited.ranked is not None
    assert [a[0].content for a in stored.edited.ranked] == [
        RANKED_ANSWERS[2],
        RANKED_ANSWERS[0],
        RANKED_ANSWERS[3],
        RANKED_ANSWERS[1],
    ]
    [decision] = [d.decision for d in ui_store.decisions("ui-run")]
    assert decision.verdict == "edit" and decision.reason_tags == ["ranked"]


def test_a_ranking_is_made_by_keyboard_in_the_browser(
    served: str, ui_store: Store, browser
) -> None:  # type: ignore[no-untyped-def]
    item = ranking_candidate()
    ui_store.put_many(screen_all([item]))
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(served)
    shown_item(page)
    page.get_by_text("Answer 4").first.wait_for(timeout=15_000)
    press_until_shown(page, "r", "Rank the 4 answers")
    for key in ("3", "1"):
        press(page, key)
    page.get_by_text("Ranked so far: 3 > 1").first.wait_for(timeout=15_000)
    press(page, "4")
    page.get_by_text("Nothing left").first.wait_for(timeout=15_000)
    stored = ui_store.get(item.id)
    assert isinstance(stored.edited, PreferenceExample) and stored.edited.ranked is not None
    assert [a[0].content for a in stored.edited.ranked] == [RANKED_ANSWERS[i] for i in (2, 0, 3, 1)]
