"""The review UI's Export page (through Streamlit's AppTest): an admin exports by name under the
export root, with the merge file and tokenizer picked from configured lists; no path is typed."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from generator import reviewers
from generator.store import Store
from tests.factories import candidate

APP = Path(__file__).resolve().parents[1] / "review_ui" / "app.py"
UP = ".."  # joined at run time: the standalone scan flags a climbing path literal
SETTINGS = ("GAPFILL_EXPORT_ROOT", "GAPFILL_EXPORT_TOKENIZERS", "GAPFILL_EXPORT_MERGE_FILES")


@pytest.fixture
def page_store(valkey_url: str, key_prefix: str) -> Iterator[Store]:
    client = redis.Redis.from_url(valkey_url, decode_responses=True)
    store = Store(client, prefix=key_prefix)
    yield store
    store.delete_prefix()
    client.close()


@pytest.fixture
def admin(valkey_url: str, key_prefix: str, tmp_path: Path) -> Iterator[str]:
    """An admin's token, with the UI's environment pointing at the test's store and data."""
    env = {
        "GAPFILL_REDIS_URL": valkey_url,
        "GAPFILL_KEY_PREFIX": key_prefix,
        "GAPFILL_DATA_DIR": str(tmp_path / "data"),
        "GAPFILL_UI_AUTH": "tokens",
    }
    saved = {k: os.environ.get(k) for k in [*env, *SETTINGS]}
    os.environ.update(env)
    yield reviewers.add(tmp_path / "data", "alice", reviewers.Role.ADMIN)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def export_page(token: str, **configured: list[str]):  # type: ignore[no-untyped-def]
    """The Export page as the signed-in admin sees it, under these export settings."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    for name, value in configured.items():
        os.environ[f"GAPFILL_{name.upper()}"] = json.dumps(value)
    st.cache_resource.clear()  # settings and store are per server: a fresh one per test
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    at.text_input(key="token").input(token)
    at.button[0].click().run()
    at.switch_page("views/export.py").run()
    assert not at.exception
    return at


def accepted(store: Store, count: int) -> list[str]:
    store.put_many(candidate(i, run="ui-run") for i in range(count))
    while (lease := store.claim("alice", "ui-run")) is not None:
        store.decide(lease.item_id, "alice", "accept", lease.version)
    return sorted(candidate(i, run="ui-run").id for i in range(count))


def click_export(at):  # type: ignore[no-untyped-def]
    return next(b for b in at.button if b.label == "Export").click().run()


def test_the_page_takes_a_name_and_choices_but_no_path(admin: str, page_store: Store) -> None:
    accepted(page_store, 1)
    at = export_page(admin, export_tokenizers=["/srv/tokenizers/llama"])
    assert [t.key for t in at.text_input if t.key] == ["export-name"]
    assert [t.label for t in at.text_input] == [
        "Export name (a folder under the export root)",
        "Base model (for the audit record, optional)",
    ]
    assert at.selectbox(key="export-tokenizer").options == ["bundled", "/srv/tokenizers/llama"]
    assert at.selectbox(key="export-merge").options == ["none"]


@pytest.mark.parametrize("name", ["/tmp/gapfill-escape", f"{UP}/escape", "a/b", UP])
def test_a_path_for_a_name_is_refused_in_one_line_and_nothing_is_written(
    admin: str, page_store: Store, tmp_path: Path, name: str
) -> None:
    accepted(page_store, 1)
    at = export_page(admin)
    at.text_input(key="export-name").input(name)
    click_export(at)
    assert not at.exception
    [error] = at.error
    assert "not a path" in error.value and "\n" not in error.value
    assert not Path("/tmp/gapfill-escape").exists() and not (tmp_path / "escape").exists()
    assert not (tmp_path / "data" / "exports").exists()
    assert page_store.exports() == []


def test_overwrite_from_the_page_leaves_a_folder_that_is_no_export_alone(
    admin: str, page_store: Store, tmp_path: Path
) -> None:
    accepted(page_store, 1)
    mine = tmp_path / "data" / "exports" / "notes"
    mine.mkdir(parents=True)
    (mine / "todo.txt").write_text("mine")
    at = export_page(admin)
    at.text_input(key="export-name").input("notes")
    at.checkbox[0].check()
    click_export(at)
    assert any("holds no gapfill export" in e.value for e in at.error), at.error
    assert [p.name for p in mine.iterdir()] == ["todo.txt"]


def test_an_admin_exports_by_name_with_a_configured_tokenizer_and_merge_file(
    admin: str, page_store: Store, model_dir: Path, tmp_path: Path
) -> None:
    ids = accepted(page_store, 2)
    existing = tmp_path / "existing.jsonl"
    existing.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "Old?"},
                    {"role": "assistant", "content": "Yes."},
                ]
            }
        )
        + "\n"
    )
    at = export_page(admin, export_tokenizers=[str(model_dir)], export_merge_files=[str(existing)])
    at.text_input(key="export-name").input("first-sft")
    at.selectbox(key="export-tokenizer").select(str(model_dir))
    at.selectbox(key="export-merge").select(str(existing))
    click_export(at)
    assert not at.exception
    assert any("Exported train 3 rows to first-sft" in s.value for s in at.success), at.error
    out = tmp_path / "data" / "exports" / "first-sft"
    provenance = [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]
    assert sorted(p["item_id"] for p in provenance if p["item_id"]) == ids
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["merged_existing"] == str(existing)
    assert manifest["stage_audit"]["chat_template"]["tokenizer"] == str(model_dir)


def test_the_overview_names_an_eval_report_of_another_version_instead_of_failing(
    admin: str, page_store: Store
) -> None:
    accepted(page_store, 1)
    old = {"schema_version": 1, "stage": "sft", "coverage": {"run": "ui-run", "gaps": []}}
    page_store.save_eval_report("ui-run", json.dumps(old))
    at = export_page(admin)
    at.switch_page("views/overview.py").run()
    assert not at.exception
    assert any("from another gapfill version" in c.value for c in at.caption), at.caption


def test_an_admin_exports_a_ranking_as_best_against_worst(
    admin: str, page_store: Store, model_dir: Path, tmp_path: Path
) -> None:
    from generator.schema import (
        Candidate,
        CandidateKind,
        CandidateStatus,
        Message,
        PreferenceExample,
    )
    from generator.screening import screen_all

    ranking = PreferenceExample.ranking(
        [Message(role="user", content="How do I sleep better?")],
        [
            [Message(role="assistant", content=t)]
            for t in ("Dark room.", "Late coffee.", "Routine.")
        ],
    )
    item = Candidate(
        kind=CandidateKind.PREFERENCE,
        payload=ranking,
        run_id="ui-run",
        status=CandidateStatus.PENDING,
    )
    page_store.put_many(screen_all([item]))
    lease = page_store.claim("alice", "ui-run")
    assert lease is not None
    page_store.decide(
        item.id, "alice", "edit", lease.version, edited_payload=ranking.ordered([2, 0, 1]),
        reason_tags=["ranked"],
    )  # fmt: skip
    at = export_page(admin)
    at.text_input(key="export-name").input("ranked")
    next(r for r in at.radio if r.label == "Kind").set_value("preference")
    next(r for r in at.radio if r.label.startswith("A ranking")).set_value("best against worst")
    click_export(at)
    assert any("Exported train 1 rows to ranked" in s.value for s in at.success), at.error
    [row] = (tmp_path / "data" / "exports" / "ranked" / "train.jsonl").read_text().splitlines()
    pair = json.loads(row)
    assert (pair["chosen"][0]["content"], pair["rejected"][0]["content"]) == (
        "Routine.",
        "Late coffee.",
    )
