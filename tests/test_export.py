"""Export: only human-accepted items leave, as files TRL loads as they are, with their record."""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator.dataset_import import ingest_file
from generator.errors import ExportError, InvalidTransitionError
from generator.export import writer
from generator.export.checks import (
    LengthCheck,
    conversation_key,
    load_tokenizer,
    payload_conversations,
    structure_problem,
)
from generator.export.rows import sft_row
from generator.export.writer import ExportOptions, export
from generator.schema import (
    PII_CLEARED_TAG,
    PREFERENCE_PAIR_TAG,
    Candidate,
    CandidateKind,
    CandidateStatus,
    PreferenceExample,
    ReviewSettings,
    RunConfig,
    Score,
)
from generator.screening import screen_all
from generator.store import Store
from tests.factories import (
    TOOLS_DATA,
    candidate,
    preference,
    run_cli,
    sft,
    tool_conversations,
    tool_tokenizer,
)
from workers.registry import WorkerContext

SFT = CandidateKind.SFT
PREFERENCE = CandidateKind.PREFERENCE


def put(store: Store, items: Iterable[Candidate]) -> None:
    """Store items as import and the filter pipeline do: each with a current PII/secret screen
    (the real filter's), without which the export refuses it."""
    store.put_many(screen_all(list(items)))


def accept_all(store: Store, run: str = "run-1", reviewer: str = "alice", **kwargs: object) -> None:
    while (lease := store.claim(reviewer, run)) is not None:
        store.decide(lease.item_id, reviewer, "accept", lease.version, **kwargs)  # type: ignore[arg-type]


def decide(store: Store, item: Candidate, verdict: str, **kwargs: object) -> None:
    """Claim until this item comes up (others go back), then decide it."""
    held = []
    while (lease := store.claim("alice", item.run_id, holding=held)) and lease.item_id != item.id:
        held.append(lease.item_id)
    assert lease is not None, f"{item.id} is not in the queue"
    store.decide(item.id, "alice", verdict, lease.version, **kwargs)  # type: ignore[arg-type]
    for other in held:
        store.release(other, "alice")


def options(tmp_path: Path, model_dir: Path, **kwargs: object) -> ExportOptions:
    values: dict[str, object] = {
        "runs": ["run-1"],
        "kind": SFT,
        "out": tmp_path / "export",
        "tokenizer": str(model_dir),
    }
    values.update(kwargs)
    return ExportOptions.model_validate(values)


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_an_sft_export_loads_in_datasets_and_passes_trl_preparation(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    from datasets import load_dataset
    from transformers import AutoTokenizer
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    put(store, [candidate(i) for i in range(6)])
    accept_all(store)
    result = export(store, options(tmp_path, model_dir), tmp_path / "data")
    assert result.rows == {"train": 6}
    dataset = load_dataset("json", data_files=str(tmp_path / "export" / "train.jsonl"))["train"]
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    for example in dataset:
        assert is_conversational(example)
        text = maybe_apply_chat_template(example, tokenizer)["text"]
        assert "Question number" in text and "<|im_start|>assistant" in text
    parquet = export(
        store, options(tmp_path, model_dir, format="parquet", out=tmp_path / "pq"), tmp_path
    )
    table = pq.read_table(tmp_path / "pq" / "train.parquet")
    assert parquet.rows == {"train": 6} and table.column_names == ["messages"]
    assert table.to_pylist() == lines(tmp_path / "export" / "train.jsonl")


def test_the_manifest_card_and_provenance_trace_every_row(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    store.save_run(RunConfig(run_id="run-1"))
    items = [candidate(i, gap="gap-a" if i < 3 else "gap-b") for i in range(5)]
    items[0] = items[0].model_copy(
        update={"scores": {"quality": Score(filter="quality", value=0.9, passed=True)}}
    )
    put(store, items)
    edited = sft("Question number 4?", "A reviewer's better answer.")
    decide(store, items[4], "edit", edited_payload=edited)
    accept_all(store)
    export(store, options(tmp_path, model_dir, base_model="HuggingFaceTB/SmolLM2-135M"), tmp_path)
    out = tmp_path / "export"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["by_gap"] == {"run-1": {"gap-a": 3, "gap-b": 2}}
    assert manifest["counts"]["rows"] == 5
    for name, entry in manifest["files"].items():
        assert (
            entry["sha256"] == __import__("hashlib").sha256((out / name).read_bytes()).hexdigest()
        )
    audit = manifest["stage_audit"]
    assert audit["base_model"] == "HuggingFaceTB/SmolLM2-135M"
    assert audit["sft_dataset"] == {"train.jsonl": manifest["files"]["train.jsonl"]["sha256"]}
    assert audit["preference_dataset"] is None
    assert set(audit) >= {"eval_report", "safety_report", "rollback_artifacts", "chat_template"}
    assert manifest["filters"]["pass_rates"]["quality"] == {"scored": 1, "passed": 1, "rate": 1.0}
    assert manifest["review"]["decisions_by_reviewer"] == {"alice": 5}
    provenance = {p["item_id"]: p for p in lines(out / "provenance.jsonl")}
    assert set(provenance) == {i.id for i in items}
    assert provenance[items[4].id]["review"]["reviewers"] == ["alice"]
    diff = provenance[items[4].id]["review"]["edit_diff"]
    assert diff.startswith("--- original\n+++ edited\n"), "an imported item was not generated"
    assert "+assistant: A reviewer's better answer." in diff
    rows = lines(out / "train.jsonl")
    assert {"role": "assistant", "content": "A reviewer's better answer."} in [
        m for r in rows for m in r["messages"]
    ], "the edit is exported, not the original"
    card = (out / "README.md").read_text()
    assert 'load_dataset("json"' in card and "| gap-a | 3 |" in card, "one run: no run column"


def test_preference_exports_include_pairs_made_from_edits_and_pass_trl(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer
    from trl.data_utils import maybe_apply_chat_template

    pairs = [preference(i) for i in range(3)]
    plain, paired = candidate(1), candidate(2)
    put(store, [*pairs, plain, paired])
    better = sft("Question number 2?", "A much better answer.")
    decide(store, paired, "edit", edited_payload=better, reason_tags=[PREFERENCE_PAIR_TAG])
    accept_all(store)
    export(store, options(tmp_path, model_dir, kind=PREFERENCE), tmp_path)
    rows = lines(tmp_path / "export" / "train.jsonl")
    assert len(rows) == 4, "three pairs and the reviewer's edit; the plain SFT item stays out"
    made = next(r for r in rows if r["chosen"][0]["content"] == "A much better answer.")
    assert made["rejected"] == [{"role": "assistant", "content": "Answer number 2."}]
    assert made["prompt"] == [{"role": "user", "content": "Question number 2?"}]
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    for row in rows:
        prepared = maybe_apply_chat_template(row, tokenizer)
        assert set(prepared) == {"prompt", "chosen", "rejected"}
        assert prepared["prompt"].rstrip().endswith("<|im_start|>assistant")


STATUSES = list(CandidateStatus)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(mix=st.lists(st.sampled_from(["accept", "reject", "pending", "auto", "undo"]), max_size=12))
def test_nothing_but_accepted_items_is_exported_for_any_mix_of_statuses(
    store: Store, model_dir: Path, tmp_path_factory: pytest.TempPathFactory, mix: list[str]
) -> None:
    store.delete_prefix()
    store.save_run(RunConfig(run_id="run-1"))
    items = [candidate(i) for i in range(len(mix))]
    for item, fate in zip(items, mix, strict=True):
        status = CandidateStatus.AUTO_REJECTED if fate == "auto" else CandidateStatus.PENDING
        put(store, [item.model_copy(update={"status": status})])
    for item, fate in zip(items, mix, strict=True):
        if fate in ("accept", "reject", "undo"):
            decide(store, item, "reject" if fate == "reject" else "accept")
        if fate == "undo":
            store.undo(item.id, "alice")
    accepted = {i.id for i, fate in zip(items, mix, strict=True) if fate == "accept"}
    out = tmp_path_factory.mktemp("prop") / "export"
    if not accepted:
        with pytest.raises(ExportError, match="nothing to export"):
            export(store, options(out.parent, model_dir, evaluate=False), out.parent)
        assert not out.exists()
        return
    export(store, options(out.parent, model_dir, evaluate=False), out.parent)
    exported = {p["item_id"] for p in lines(out / "provenance.jsonl")}
    assert exported == accepted
    assert len(lines(out / "train.jsonl")) == len(accepted)


def test_real_hh_pairs_export_as_valid_preference_pairs(
    store: Store, real_data: Path, model_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer
    from trl.data_utils import maybe_apply_chat_template

    hh = real_data / "hh-rlhf" / "harmless-base-test.jsonl.gz"
    imported = ingest_file(store, hh, "run-1", gap_id="hh", skip_invalid=True)
    assert imported.rows == 2312 and all(e.reason for e in imported.skipped)
    accept_all(store)
    # The eval report on all 2,304 pairs is the eval tests' business; here: the files.
    result = export(store, options(tmp_path, model_dir, kind=PREFERENCE, evaluate=False), tmp_path)
    rows = lines(tmp_path / "export" / "train.jsonl")
    excluded = lines(tmp_path / "export" / "excluded.jsonl")
    assert len(rows) + len(excluded) == imported.stored
    assert imported.stored + imported.already_present + len(imported.skipped) == 2312
    assert len(rows) == result.rows["train"] and len(rows) >= 2200
    assert all(e["reason"] for e in excluded), "every exclusion says why"
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    for row in rows[:200]:
        assert maybe_apply_chat_template(row, tokenizer)["chosen"]
    print(
        f"HH: {imported.rows} rows, {len(imported.skipped)} invalid at import, "
        f"{imported.already_present} duplicates, {len(excluded)} excluded at export, "
        f"{len(rows)} exported"
    )


def leaky(index: int, answer: str) -> Candidate:
    return Candidate(
        kind=SFT,
        payload=sft(f"How do I reach support, case {index}?", answer),
        run_id="run-1",
        gap_id="gap-a",
        status=CandidateStatus.PENDING,
    )


def test_pii_flagged_items_stay_out_unless_a_reviewer_cleared_the_flag(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    flagged, cleared = (leaky(i, "Write to jane.doe@example.com, she answers.") for i in (1, 2))
    put(store, [flagged, cleared, candidate(3)])
    decide(store, cleared, "accept", reason_tags=[PII_CLEARED_TAG])
    accept_all(store)
    result = export(store, options(tmp_path, model_dir), tmp_path)
    assert [item for item, _ in result.refused] == [flagged.id]
    assert "PII/secret flag not cleared" in result.refused[0][1]
    exported = {p["item_id"] for p in lines(tmp_path / "export" / "provenance.jsonl")}
    assert exported == {cleared.id, candidate(3).id}
    excluded = {e["item"]: e["reason"] for e in lines(tmp_path / "export" / "excluded.jsonl")}
    assert excluded == {flagged.id: result.refused[0][1]}, "each refusal is listed with why"


def test_an_accepted_item_never_screened_for_pii_is_refused_with_its_reason(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    unscreened = leaky(1, "Mail jane.doe@example.com, SSN 219-09-9999, key AKIAIOSFODNN7EXAMPLE")
    put(store, [unscreened, candidate(2)])
    accept_all(store)
    # As an item accepted before every item was screened holds it (neither import nor a
    # decision screened then): no pii score in its stored data.
    key = store.keys.item(unscreened.id)
    data = orjson.loads(store.redis.hget(key, "data") or "")
    del data["scores"]["pii"]
    store.redis.hset(key, "data", orjson.dumps(data).decode())
    result = export(store, options(tmp_path, model_dir, evaluate=False), tmp_path)
    assert result.refused == [(unscreened.id, result.refused[0][1])]
    assert "never screened for PII/secrets" in result.refused[0][1]
    out = tmp_path / "export"
    assert "jane.doe" not in (out / "train.jsonl").read_text()
    assert lines(out / "excluded.jsonl") == [
        {"item": unscreened.id, "reason": result.refused[0][1]}
    ]
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["counts"]["rows"], manifest["counts"]["refused_pii"]) == (1, 1)


def test_an_imported_row_holding_pii_and_a_key_does_not_leave_after_one_accept(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    # The audit's proof of concept: an imported row with an e-mail address, a social security
    # number and an AWS key, accepted once, was exported.
    data = tmp_path / "import.jsonl"
    secret = "Mail jane.doe@example.com, SSN 219-09-9999, key AKIAIOSFODNN7EXAMPLE."
    rows = [sft("Who do I contact?", secret), sft("What is two plus two?", "Four.")]
    data.write_text("".join(r.model_dump_json() + "\n" for r in rows))
    ingest_file(store, data, "run-1", gap_id="imported")
    accept_all(store)
    result = export(store, options(tmp_path, model_dir, evaluate=False), tmp_path)
    out = tmp_path / "export"
    assert result.rows == {"train": 1}
    assert "AKIA" not in (out / "train.jsonl").read_text()
    [refusal] = lines(out / "excluded.jsonl")
    assert "PII/secret" in str(refusal["reason"])


def test_an_item_changed_since_its_pii_screen_is_refused(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    put(store, [candidate(1), candidate(2)])
    accept_all(store)
    # An edit the screen never saw (stored by a writer that does not screen): the pii score
    # on the item was made on the text before it.
    changed = sft("Question number 1?", "Now with a key: AKIAIOSFODNN7EXAMPLE")
    store.redis.hset(store.keys.item(candidate(1).id), "edited", changed.model_dump_json())
    result = export(store, options(tmp_path, model_dir, evaluate=False), tmp_path)
    assert [item for item, _ in result.refused] == [candidate(1).id]
    assert "changed since its PII/secret screen" in result.refused[0][1]
    assert "AKIA" not in (tmp_path / "export" / "train.jsonl").read_text()


def test_the_same_accepted_set_exports_to_identical_bytes(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    put(store, [candidate(i) for i in range(20)])
    accept_all(store)
    first = export(store, options(tmp_path, model_dir, eval_fraction=0.3), tmp_path)
    second = export(
        store, options(tmp_path, model_dir, eval_fraction=0.3, out=tmp_path / "again"), tmp_path
    )
    for name in ("train.jsonl", "eval.jsonl"):
        assert (tmp_path / "export" / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    assert first.export_id == second.export_id
    rollback = json.loads((tmp_path / "again" / "manifest.json").read_text())["stage_audit"]
    assert rollback["rollback_artifacts"]["previous_export_id"] == first.export_id


def test_near_duplicates_never_straddle_the_split(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    families = []
    for family in range(12):
        base = f"Write a short poem about the {family}th planet and its {family} moons at night"
        members = [
            Candidate(
                kind=SFT,
                payload=sft(f"{base}{suffix}", f"Poem {family}.{n}"),
                run_id="run-1",
                gap_id="gap-a",
                status=CandidateStatus.PENDING,
            )
            for n, suffix in enumerate(["", ", please", "!"])
        ]
        families.append(members)
    put(store, [m for f in families for m in f])
    accept_all(store)
    result = export(store, options(tmp_path, model_dir, eval_fraction=0.4), tmp_path)
    assert result.rows["train"] and result.rows["eval"]
    side = {p["item_id"]: p["split"] for p in lines(tmp_path / "export" / "provenance.jsonl")}
    for members in families:
        assert len({side[m.id] for m in members}) == 1, "a family split across train/eval"


def test_merging_keeps_the_existing_rows_and_drops_generated_copies_of_them(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    existing = tmp_path / "existing.jsonl"
    existing.write_text(
        "\n".join(
            json.dumps({"messages": [m.model_dump() for m in sft(q, a).messages]})
            for q, a in [("Question number 1?", "Answer number 1."), ("Old one?", "Old answer.")]
        )
    )
    put(store, [candidate(i) for i in (1, 2)])
    accept_all(store)
    result = export(store, options(tmp_path, model_dir, merge=existing), tmp_path)
    rows = lines(tmp_path / "export" / "train.jsonl")
    assert [r["messages"][0]["content"] for r in rows] == [
        "Question number 1?",
        "Old one?",
        "Question number 2?",
    ], "existing rows first, in file order; the generated copy of line 1 is dropped"
    assert result.excluded == [(candidate(1).id, f"already in {existing} (line 1)")]


def test_too_long_and_malformed_rows_are_excluded_with_a_reason(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    long = Candidate(
        kind=SFT,
        payload=sft("Tell me everything.", "word " * 400),
        run_id="run-1",
        status=CandidateStatus.PENDING,
    )
    put(store, [long, candidate(1)])
    accept_all(store)
    result = export(store, options(tmp_path, model_dir, max_length=128), tmp_path)
    reasons = dict(result.excluded)
    assert "tokens under the chat template > 128" in reasons[long.id]
    assert result.rows == {"train": 1}


def long_items(count: int) -> list[Candidate]:
    """Items too long (in bytes) to pass a 128-token limit without counting their tokens."""
    return [
        Candidate(
            kind=SFT,
            payload=sft(f"Tell me about topic {i}.", f"Topic {i} in a few words. " * (6 + i % 20)),
            run_id="run-1",
            status=CandidateStatus.PENDING,
        )
        for i in range(count)
    ]


def test_token_counts_are_counted_once_and_reused_by_later_exports(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    items = long_items(12)
    put(store, items)
    accept_all(store)
    first = export(store, options(tmp_path, model_dir, max_length=128), tmp_path)
    again = export(
        store, options(tmp_path, model_dir, max_length=128, out=tmp_path / "again"), tmp_path
    )
    counted = json.loads((tmp_path / "export" / "manifest.json").read_text())["counts"]
    reused = json.loads((tmp_path / "again" / "manifest.json").read_text())["counts"]
    assert (counted["length_checked_with_tokenizer"], counted["length_counts_from_cache"]) == (
        12,
        0,
    )
    assert (reused["length_checked_with_tokenizer"], reused["length_counts_from_cache"]) == (0, 12)
    assert first.excluded and sorted(first.excluded) == sorted(again.excluded)
    train = "train.jsonl"
    assert (tmp_path / "export" / train).read_bytes() == (tmp_path / "again" / train).read_bytes()


def test_the_length_check_trusts_the_cached_count_of_exactly_that_conversation(
    store: Store, model_dir: Path
) -> None:
    tokenizer = load_tokenizer(str(model_dir), model_dir)
    lengths = LengthCheck(tokenizer, 128, cache=store)
    [short_enough, edited] = [sft_row(c.payload.model_dump()) for c in long_items(2)]  # type: ignore[union-attr]
    [exact] = lengths.count([short_enough["messages"]])
    assert exact <= 128, "the item fits; only a planted count can make it too long"
    store.save_token_counts(lengths.fingerprint, {conversation_key(short_enough["messages"]): 999})
    assert lengths.problems([short_enough]) == ["999 tokens under the chat template > 128"]
    edited["messages"][-1]["content"] += " One more sentence."
    assert lengths.problems([edited]) == [None], "a changed conversation is counted afresh"
    other = LengthCheck(tokenizer, 128, cache=store)
    other.tokenizer = copy.deepcopy(tokenizer)
    other.tokenizer.chat_template = tokenizer.chat_template + "{# another template #}"
    assert other.fingerprint != lengths.fingerprint, "counts under one template are not another's"


def test_a_tokenizer_is_loaded_once_until_its_files_change(model_dir: Path, tmp_path: Path) -> None:
    copied = tmp_path / "tokenizer"
    copied.mkdir()
    for path in model_dir.iterdir():
        if path.is_file() and path.suffix not in (".safetensors", ".bin", ".gguf"):
            shutil.copy(path, copied / path.name)
    first = load_tokenizer(str(copied), tmp_path)
    assert load_tokenizer(str(copied), tmp_path) is first, "loaded once per process"
    config = copied / "tokenizer_config.json"
    os.utime(config, ns=(config.stat().st_atime_ns, config.stat().st_mtime_ns + 10**9))
    assert load_tokenizer(str(copied), tmp_path) is not first, "a changed file is read again"


@pytest.mark.slow
def test_what_the_scoring_workers_count_spares_the_export_its_tokenizer(
    store: Store, tmp_path: Path
) -> None:
    items = long_items(6)
    lengths = WorkerContext().length_check(store)  # the default (bundled) tokenizer
    assert lengths is not None
    primed = lengths.prime(
        [c for item in items for c in payload_conversations(item.payload.model_dump())]  # type: ignore[union-attr]
    )
    assert primed == 6
    put(store, items)
    accept_all(store)
    defaults = ExportOptions(runs=["run-1"], kind=SFT, out=tmp_path / "out", max_length=128)
    export(store, defaults.model_copy(update={"evaluate": False}), tmp_path / "data")
    counts = json.loads((tmp_path / "out" / "manifest.json").read_text())["counts"]
    assert (counts["length_checked_with_tokenizer"], counts["length_counts_from_cache"]) == (0, 6)


def test_rows_that_are_no_well_formed_conversation_are_named() -> None:
    # The schema already refuses these on the way in; the export checks again what it writes.
    def turns(*pairs: tuple[str, str]) -> dict[str, list[dict[str, str]]]:
        return {"messages": [{"role": r, "content": c} for r, c in pairs]}

    assert structure_problem(turns(("user", "Hi"), ("assistant", " "))) == (
        "turn 2 (assistant) is empty"
    )
    assert "do not alternate" in str(
        structure_problem(turns(("user", "a"), ("user", "b"), ("assistant", "c")))
    )
    assert structure_problem(turns(("system", "s"), ("user", "a"), ("assistant", "b"))) is None
    assert structure_problem(turns(("user", "a"))) == (
        "the conversation does not end with an assistant turn"
    )


def test_an_exported_item_can_no_longer_be_undone(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    put(store, [candidate(1)])
    accept_all(store)
    result = export(store, options(tmp_path, model_dir), tmp_path)
    with pytest.raises(InvalidTransitionError, match="exported"):
        store.undo(candidate(1).id, "alice")
    assert store.exports()[-1]["export_id"] == result.export_id


def test_overwrite_replaces_only_an_earlier_export_and_a_failed_write_leaves_nothing(
    store: Store, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(store, [candidate(i) for i in range(3)])
    accept_all(store)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"not empty .*--overwrite"):
        export(store, options(tmp_path, model_dir, out=mine), tmp_path / "data")
    for manifest in (None, '{"export_id": "not ours"}', "[1, 2"):
        if manifest is not None:  # a manifest.json that is not a gapfill manifest is no export
            (mine / "manifest.json").write_text(manifest)
        with pytest.raises(ExportError, match=r"mine: holds no gapfill export"):
            export(store, options(tmp_path, model_dir, out=mine, overwrite=True), tmp_path)
    assert (mine / "notes.txt").read_text() == "mine", "a directory not an export is untouched"
    assert store.exports() == [] and not store.redis.hget(
        store.keys.item(candidate(0).id), "exported"
    )

    out = tmp_path / "export"
    first = export(store, options(tmp_path, model_dir, evaluate=False), tmp_path / "data")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken_card(manifest: object) -> str:
        raise OSError("disk full")

    monkeypatch.setattr(writer.record, "dataset_card", broken_card)
    with pytest.raises(OSError, match="disk full"):
        export(store, options(tmp_path, model_dir, overwrite=True), tmp_path / "data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "export", "mine"], "no temp dir"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before, "the old export is intact"
    assert [e["export_id"] for e in store.exports()] == [first.export_id]
    monkeypatch.undo()
    export(store, options(tmp_path, model_dir, overwrite=True), tmp_path / "data")
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "eval_report.json",
        "eval_report.md",
        "excluded.jsonl",
        "gaps.png",
        "lengths.png",
        "manifest.json",
        "provenance.jsonl",
        "safety_report.json",
        "train.jsonl",
    ]


def test_overwrite_refuses_a_symbolic_link_even_to_an_earlier_export(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    put(store, [candidate(1)])
    accept_all(store)
    export(store, options(tmp_path, model_dir, evaluate=False), tmp_path / "data")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "export")
    before = sorted(p.name for p in (tmp_path / "export").iterdir())
    with pytest.raises(ExportError, match=r"link: is a symbolic link"):
        export(store, options(tmp_path, model_dir, out=link, overwrite=True), tmp_path / "data")
    assert link.is_symlink() and sorted(p.name for p in link.iterdir()) == before


def test_a_failed_re_export_leaves_the_earlier_exports_marks(
    store: Store, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(store, [candidate(i) for i in range(2)])
    accept_all(store)
    first = export(store, options(tmp_path, model_dir, evaluate=False), tmp_path / "data")
    put(store, [candidate(2)])
    accept_all(store)

    def broken_card(manifest: object) -> str:
        raise OSError("disk full")

    monkeypatch.setattr(writer.record, "dataset_card", broken_card)
    again = options(tmp_path, model_dir, evaluate=False, overwrite=True)
    with pytest.raises(OSError, match="disk full"):
        export(store, again, tmp_path / "data")
    marks = [store.redis.hget(store.keys.item(candidate(i).id), "exported") for i in range(3)]
    assert marks == [first.export_id, first.export_id, None]
    store.undo(candidate(2).id, "alice")  # never exported: still undoable
    assert [e["export_id"] for e in store.exports()] == [first.export_id]


def test_rows_of_several_runs_come_out_in_item_id_order(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    store.save_run(RunConfig(run_id="run-2"))
    items = [candidate(i, run="run-1" if i % 2 else "run-2") for i in range(8)]
    put(store, items)
    accept_all(store, "run-1")
    accept_all(store, "run-2")
    out = tmp_path / "export"
    export(store, options(tmp_path, model_dir, runs=["run-1", "run-2"], evaluate=False), tmp_path)
    provenance = lines(out / "provenance.jsonl")
    assert [p["item_id"] for p in provenance] == sorted(i.id for i in items)
    assert [p["row"] for p in provenance] == list(range(8))
    by_id = {i.id: i for i in items}
    assert [r["messages"][0]["content"] for r in lines(out / "train.jsonl")] == [
        by_id[p["item_id"]].payload.messages[0].content for p in provenance
    ]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["by_run"] == {"run-1": 4, "run-2": 4}
    assert manifest["counts"]["by_gap"] == {"run-1": {"gap-a": 4}, "run-2": {"gap-a": 4}}
    assert "| run-1 | gap-a | 4 |" in (out / "README.md").read_text()


def test_the_cli_exports_and_reports_bad_options_in_one_line(
    store: Store, server_url: str, key_prefix: str, model_dir: Path, tmp_path: Path
) -> None:
    put(store, [candidate(i) for i in range(2)])
    accept_all(store)
    env = {
        "GAPFILL_REDIS_URL": server_url,
        "GAPFILL_KEY_PREFIX": key_prefix,
        "GAPFILL_DATA_DIR": str(tmp_path / "data"),
        "PATH": "/usr/bin:/bin",
        "HF_HUB_OFFLINE": "1",
    }

    out = tmp_path / "cli-export"
    done = run_cli(
        env, "export", "--run", "run-1", "--kind", "sft", "--out", str(out),
        "--tokenizer", str(model_dir), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "train 2 rows" in done.stdout
    assert orjson.loads((out / "manifest.json").read_bytes())["counts"]["rows"] == 2
    bad = run_cli(
        env, "export", "--run", "run-1", "--kind", "dpo", "--out", str(tmp_path / "x"), timeout=300
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    message = " ".join(bad.stderr.replace("│", " ").split())  # typer's usage error, boxed
    assert "'dpo' is not one of 'sft', 'preference'" in message
    again = run_cli(
        env, "export", "--run", "run-1", "--kind", "sft", "--out", str(out), timeout=300
    )
    assert again.returncode != 0 and "not empty" in again.stderr
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    refused = run_cli(
        env, "export", "--run", "run-1", "--kind", "sft", "--out", str(precious), "--overwrite",
        "--tokenizer", str(model_dir), timeout=300,
    )  # fmt: skip
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"{precious}: holds no gapfill export" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert [p.name for p in precious.iterdir()] == ["thesis.tex"]
    missing = run_cli(
        env, "export", "--run", "nope", "--kind", "sft", "--out", str(tmp_path / "y"), timeout=300
    )
    assert "--run nope: no such run" in missing.stderr


def test_the_audit_record_links_the_reports_and_catches_tampering(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    from generator.export.audit import read_audit

    put(store, [candidate(i) for i in range(4)])
    accept_all(store)
    export(store, options(tmp_path, model_dir, base_model="SmolLM2-135M"), tmp_path / "data")
    out = tmp_path / "export"
    record = read_audit(out)
    assert record.problems == []
    assert record.fields["base_model"] == "SmolLM2-135M"
    assert record.fields["sft_dataset"].startswith("train.jsonl ")
    assert record.fields["eval_report"] and record.fields["safety_report"]
    missing = [name for name, value in record.fields.items() if not value]
    assert missing == ["continued_pretraining_data", "preference_dataset", "rollback_artifacts"]
    report = json.loads((out / "eval_report.json").read_text())
    assert report["stage"] == "sft" and report["rows"] == 4
    assert json.loads(store.eval_report_json("run-1") or "{}")["rows"] == 4, "for the Overview"
    with (out / "train.jsonl").open("a") as handle:
        handle.write('{"messages": []}\n')
    assert read_audit(out).problems == ["train.jsonl: content differs from the manifest's sha256"]


def test_marking_exported_checks_each_item_is_still_accepted_at_the_version_read(
    store: Store,
) -> None:
    items = [candidate(i) for i in range(3)]
    put(store, items)
    accept_all(store)
    read = {i.id: store.get(i.id).version for i in items}
    store.undo(items[0].id, "alice")  # pending again, a new version
    store.redis.hincrby(store.keys.item(items[1].id), "version", 1)  # changed since read
    marks = store.mark_exported("exp-1", read)
    assert marks.previous == {items[2].id: None}
    assert "pending while the export ran" in marks.refused[items[0].id]
    assert "changed while the export ran" in marks.refused[items[1].id]
    exported = [store.redis.hget(store.keys.item(i.id), "exported") for i in items]
    assert exported == [None, None, "exp-1"], "only what was still as read is marked"
    again = store.mark_exported("exp-2", {items[2].id: read[items[2].id]}, replacing="exp-0")
    assert "marked by another export (exp-1)" in again.refused[items[2].id]


def test_an_undo_racing_an_export_leaves_the_item_out_and_unmarked(
    store: Store, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = [candidate(i) for i in range(6)]
    put(store, items)
    accept_all(store)
    undone, redone = items[1], items[4]
    write_data = writer.files.write_data
    raced: list[str] = []

    def undo_while_writing(*args: Any, **kwargs: Any) -> dict[str, int]:
        # The export has read every item and is about to write: a reviewer undoes one and
        # rejects it, and undoes another and accepts it again (a new version).
        if not raced:
            for item, verdict in ((undone, "reject"), (redone, "accept")):
                store.undo(item.id, "alice")
                decide(store, item, verdict)
                raced.append(item.id)
        return write_data(*args, **kwargs)

    monkeypatch.setattr(writer.files, "write_data", undo_while_writing)
    result = export(store, options(tmp_path, model_dir, eval_fraction=0.3), tmp_path / "data")
    out = tmp_path / "export"
    written = [p["item_id"] for p in lines(out / "provenance.jsonl")]
    marked = [i.id for i in items if store.redis.hget(store.keys.item(i.id), "exported")]
    assert sorted(written) == sorted(marked) == sorted(i.id for i in items if i.id not in raced)
    assert store.redis.hget(store.keys.item(undone.id), "exported") is None
    rows = sum(
        len(lines(out / name)) for name in ("train.jsonl", "eval.jsonl") if (out / name).exists()
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert rows == len(marked) == manifest["counts"]["rows"] == sum(result.rows.values())
    assert sum(f.get("rows", 0) for f in manifest["files"].values()) == rows
    assert (
        manifest["counts"]["excluded"] == 2
        and json.loads((out / "eval_report.json").read_text())["rows"] == rows
    ), "the reports cover the rows written"
    reasons = {e["item"]: e["reason"] for e in lines(out / "excluded.jsonl")}
    assert "rejected while the export ran" in reasons[undone.id]
    assert "changed while the export ran" in reasons[redone.id]
    from generator.export.audit import read_audit

    assert read_audit(out).problems == [], "the manifest's hashes are those of the files written"
    assert store.exports()[-1]["export_id"] == result.export_id == manifest["export_id"]
    assert {store.redis.hget(store.keys.item(i), "exported") for i in marked} == {result.export_id}
    store.undo(undone.id, "alice")  # never exported: its decision can still be undone


def test_an_export_that_fails_after_writing_again_without_a_raced_item_puts_every_mark_back(
    store: Store, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = [candidate(i) for i in range(4)]
    put(store, items)
    accept_all(store)
    write_data = writer.files.write_data

    def undo_while_writing(*args: Any, **kwargs: Any) -> dict[str, int]:
        if store.get(items[2].id).status is CandidateStatus.ACCEPTED:
            store.undo(items[2].id, "alice")
        return write_data(*args, **kwargs)

    def broken_card(manifest: object) -> str:
        raise OSError("disk full")

    monkeypatch.setattr(writer.files, "write_data", undo_while_writing)
    monkeypatch.setattr(writer.record, "dataset_card", broken_card)
    with pytest.raises(OSError, match="disk full"):
        export(store, options(tmp_path, model_dir, evaluate=False), tmp_path / "data")
    marks = [store.redis.hget(store.keys.item(i.id), "exported") for i in items]
    assert marks == [None] * 4, "the marks made under both ids are put back"
    assert not [p.name for p in tmp_path.iterdir() if p.name != "data"], "no export, no temp dir"
    store.undo(items[0].id, "alice")  # not exported: still undoable


LEAK = (
    "My SSN is 078-05-1120, mail john.doe@example.com, key AKIAIOSFODNN7QZX4PLE and "
    "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A"
)


def _edited_leak(store: Store, *tags: str) -> Candidate:
    """An SFT item whose generated answer leaks, edited by a reviewer into a clean one."""
    item = Candidate(
        kind=SFT,
        payload=sft("Question number 2?", LEAK),
        run_id="run-1",
        gap_id="gap-a",
        status=CandidateStatus.PENDING,
    )
    put(store, [item])
    clean = sft("Question number 2?", "A clean answer.")
    decide(store, item, "edit", edited_payload=clean, reason_tags=list(tags))
    return item


def test_a_pair_made_from_an_edit_is_refused_when_its_original_rejected_side_leaks(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    item = _edited_leak(store, PREFERENCE_PAIR_TAG)
    put(store, [preference(1)])
    accept_all(store)
    result = export(store, options(tmp_path, model_dir, kind=PREFERENCE), tmp_path)
    assert [refused for refused, _ in result.refused] == [item.id]
    assert "the pair's rejected side, holds PII/secrets" in result.refused[0][1]
    assert "078-05-1120" not in (tmp_path / "export" / "train.jsonl").read_text()


def test_the_edit_diff_of_an_item_whose_original_leaks_is_withheld_from_provenance(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    item = _edited_leak(store)
    export(store, options(tmp_path, model_dir), tmp_path)
    [record] = lines(tmp_path / "export" / "provenance.jsonl")
    review: Any = record["review"]
    assert record["item_id"] == item.id
    assert review["edit_diff"] is None
    assert "holds PII/secrets" in review["edit_diff_withheld"]
    for path in (tmp_path / "export").iterdir():
        assert "078-05-1120" not in path.read_text(errors="replace"), path.name


def test_a_clearance_given_before_another_reviewer_edits_in_leaks_does_not_let_it_out(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    review = ReviewSettings(reviewers_per_item=2, overlap_rule="majority")
    store.save_run(RunConfig(run_id="run-1", review=review))
    item = candidate(7)
    put(store, [item])
    lease = store.claim("alice", "run-1")
    assert lease is not None
    store.decide(item.id, "alice", "accept", lease.version, reason_tags=[PII_CLEARED_TAG])
    lease = store.claim("bob", "run-1")
    assert lease is not None
    leaky_edit = sft(item.payload.prompt_text(), LEAK)  # type: ignore[union-attr]
    store.decide(item.id, "bob", "edit", lease.version, edited_payload=leaky_edit)
    put(store, [candidate(8)])
    for reviewer in ("alice", "bob"):
        accept_all(store, reviewer=reviewer)
    result = export(store, options(tmp_path, model_dir), tmp_path)
    assert [refused for refused, _ in result.refused] == [item.id]
    assert "078-05-1120" not in (tmp_path / "export" / "train.jsonl").read_text()


# -- tool-calling conversations ----------------------------------------------------------------


def tool_items() -> list[Candidate]:
    return [
        Candidate(kind=SFT, payload=example, run_id="run-1", status=CandidateStatus.PENDING)
        for example in tool_conversations()
    ]


def test_tool_calling_rows_export_in_trl_layout_and_render_their_calls(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    from datasets import load_dataset
    from transformers import AutoTokenizer

    put(store, tool_items())
    accept_all(store)
    tokenizer_dir = tool_tokenizer(model_dir, tmp_path / "tokenizer")
    export(store, options(tmp_path, tokenizer_dir), tmp_path)
    path = tmp_path / "export" / "train.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    expected = sorted(
        (json.loads(line) for line in (TOOLS_DATA / "trl_tools.jsonl").read_text().splitlines()),
        key=lambda r: r["messages"][-1]["content"],
    )
    for row in expected:  # the row given as a JSON string is exported as TRL's list
        row["tools"] = json.loads(row["tools"]) if isinstance(row["tools"], str) else row["tools"]
    assert sorted(rows, key=lambda r: r["messages"][-1]["content"]) == expected
    # datasets reads it back without merging the tools' argument fields, and the template
    # renders each call with its own arguments.
    loaded = load_dataset("json", data_files=str(path))["train"]
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    texts = [
        tokenizer.apply_chat_template(r["messages"], tools=r["tools"], tokenize=False)
        for r in loaded
    ]
    assert any(
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Lisbon"}}' in t for t in texts
    )
    assert all('"unit": null' not in t for t in texts)


def test_tool_rows_are_refused_where_they_would_not_train_as_they_are(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    put(store, tool_items())
    accept_all(store)
    with pytest.raises(
        ExportError, match="its chat template drops tool calls, and 3 rows call tools"
    ):
        export(store, options(tmp_path, model_dir), tmp_path)
    tokenizer_dir = tool_tokenizer(model_dir, tmp_path / "tokenizer")
    with pytest.raises(
        ExportError, match="--format parquet: 3 rows call tools; export them as JSONL"
    ):
        export(store, options(tmp_path, tokenizer_dir, format="parquet"), tmp_path)
    assert not (tmp_path / "export").exists()


def test_a_stored_tool_row_whose_call_breaks_its_schema_is_excluded_not_exported() -> None:
    row = sft_row(tool_conversations()[0].model_dump(mode="json"))
    assert structure_problem(row) is None
    row["messages"][1]["tool_calls"][0]["function"]["arguments"] = {"city": 7}
    assert structure_problem(row) == (
        "messages.1.tool_calls.0: arguments for 'get_weather' break its schema: "
        "city: 7 is not of type 'string'"
    )


# -- rankings ----------------------------------------------------------------------------------


def ranking_item(run: str = "run-1") -> Candidate:
    from generator.schema import Message, PreferenceExample

    answers = ["Sleep eight hours.", "Keep a fixed bedtime.", "Avoid screens late.", "Nap often."]
    return Candidate(
        kind=PREFERENCE,
        payload=PreferenceExample.ranking(
            [Message(role="user", content="How do I sleep better?")],
            [[Message(role="assistant", content=text)] for text in answers],
        ),
        run_id=run,
        gap_id="sleep",
        status=CandidateStatus.PENDING,
    )


def ranked_by_alice(store: Store, order: list[int]) -> Candidate:
    item = ranking_item()
    put(store, [item])
    lease = store.claim("alice", "run-1")
    assert lease is not None and isinstance(item.payload, PreferenceExample)
    store.decide(
        item.id,
        "alice",
        "edit",
        lease.version,
        edited_payload=item.payload.ordered(order),
        reason_tags=["ranked"],
    )
    return item


@pytest.mark.parametrize(("how", "rows"), [("all", 6), ("best_worst", 1)])
def test_a_ranking_exports_as_pairs_better_chosen_with_the_order_in_provenance(
    store: Store, model_dir: Path, tmp_path: Path, how: str, rows: int
) -> None:
    ranked_by_alice(store, [2, 0, 3, 1])  # best: "Avoid screens late.", worst: "Keep a fixed..."
    result = export(
        store, options(tmp_path, model_dir, kind=PREFERENCE, ranking_pairs=how), tmp_path
    )
    assert result.rows["train"] == rows
    out = tmp_path / "export"
    written = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    order = ["Avoid screens late.", "Sleep eight hours.", "Nap often.", "Keep a fixed bedtime."]
    for row in written:
        assert set(row) == {"prompt", "chosen", "rejected"}
        better, worse = row["chosen"][0]["content"], row["rejected"][0]["content"]
        assert order.index(better) < order.index(worse)
    if how == "best_worst":
        assert (better, worse) == (order[0], order[-1])
    lines = [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]
    assert all(line["review"]["ranking"] == {"answers": 4, "order": [2, 0, 3, 1]} for line in lines)
    assert all("ranked" in line["review"]["decisions"][0]["reason_tags"] for line in lines)


def test_a_ranking_accepted_as_generated_is_refused_its_order_unchecked(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    # An accept through the store (a bulk action, the pre-screen): no reviewer ranked it.
    put(store, [ranking_item()])
    accept_all(store)
    with pytest.raises(ExportError, match="nothing to export"):
        export(store, options(tmp_path, model_dir, kind=PREFERENCE), tmp_path)
