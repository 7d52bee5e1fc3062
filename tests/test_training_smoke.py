"""What gapfill exports trains as it is: TRL's SFTTrainer and DPOTrainer each take one optimizer
step on an export with the bundled SmolLM2 on CPU (tiny lengths), the SFT export holding real
multi-turn conversations (Anthropic HH: several user and assistant turns) and the preference
export real HH pairs. Parsing is the export tests' business; here the files meet a trainer."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from generator.dataset_reader import read_examples
from generator.export.writer import ExportOptions, export
from generator.schema import (
    Candidate,
    CandidateKind,
    CandidateStatus,
    Message,
    PreferenceExample,
    SFTExample,
)
from generator.screening import screen_all
from generator.store import Store
from tests.factories import tool_conversations, tool_tokenizer

pytestmark = pytest.mark.slow

HH = Path(__file__).parent / "data" / "hh-rlhf" / "harmless-base-test.jsonl.gz"
LLMFAO = Path(__file__).parent / "data" / "llmfao"
MAX_LENGTH = 96  # tokens: enough for a short conversation, small enough for a CPU step


def hh_pairs(count: int, *, turns: int) -> list[PreferenceExample]:
    """Real HH pairs whose prompt holds at least ``turns`` messages, shortest first."""
    rows = read_examples(HH, collect_errors=True).examples
    pairs = [r.example for r in rows if isinstance(r.example, PreferenceExample)]
    chosen = [p for p in pairs if len(p.prompt) >= turns]
    chosen.sort(key=lambda p: sum(len(m.content) for m in p.turns()))
    return chosen[:count]


def accepted_export(
    store: Store, items: list[Candidate], kind: CandidateKind, out: Path, model: Path
) -> Path:
    store.put_many(screen_all(items))
    while (lease := store.claim("alice", "train-run")) is not None:
        payload = lease.item.payload
        if isinstance(payload, PreferenceExample) and payload.ranked is not None:
            # A ranking leaves only as a reviewer's: alice keeps the order it came in (the
            # crowd's), as pressing r 1 2 would.
            ranked = payload.ordered(list(range(len(payload.ranked))))
            store.decide(
                lease.item_id, "alice", "edit", lease.version,
                edited_payload=ranked, reason_tags=["ranked"],
            )  # fmt: skip
            continue
        store.decide(lease.item_id, "alice", "accept", lease.version)
    options = ExportOptions.model_validate(
        {
            "runs": ["train-run"],
            "kind": kind,
            "out": out,
            "tokenizer": str(model),
            "evaluate": False,
        }
    )
    export(store, options, out.parent)
    return out / "train.jsonl"


def rows_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def one_step(trainer: Any) -> float:
    """Train one step; the loss, and a check that the step changed the weights."""
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    result = trainer.train()
    changed = any(
        not (p.detach() == before[n]).all()
        for n, p in trainer.model.named_parameters()
        if n in before
    )
    assert changed, "the optimizer step changed no weight"
    assert result.global_step == 1
    return float(result.training_loss)


def one_step_on(
    trainer_class: Any,
    config_class: Any,
    path: Path,
    model_dir: Path,
    out: Path,
    rate: float,
    *,
    tokenizer_dir: Path | None = None,
    max_length: int = MAX_LENGTH,
    seen: list[str] | None = None,
) -> float:
    """One optimizer step of a TRL trainer on the export at ``path``, tiny and on CPU; the
    texts it trained on are appended to ``seen``."""
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = config_class(
        output_dir=str(out),
        max_length=max_length,
        per_device_train_batch_size=2,
        max_steps=1,
        learning_rate=rate,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        dataloader_num_workers=0,
    )
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir or model_dir))
    trainer = trainer_class(
        model=AutoModelForCausalLM.from_pretrained(str(model_dir)),
        args=config,
        train_dataset=load_dataset("json", data_files=str(path))["train"],
        processing_class=tokenizer,
    )
    if seen is not None:
        seen += [tokenizer.decode(row["input_ids"]) for row in trainer.train_dataset]
    return one_step(trainer)


def test_sft_trainer_takes_a_step_on_an_export_of_multi_turn_conversations(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    from trl import SFTConfig, SFTTrainer

    conversations = [SFTExample(messages=[*p.prompt, *p.chosen]) for p in hh_pairs(4, turns=3)]
    items = [
        Candidate(
            kind=CandidateKind.SFT,
            payload=c,
            run_id="train-run",
            gap_id="hh",
            status=CandidateStatus.PENDING,
        )
        for c in conversations
    ]
    path = accepted_export(store, items, CandidateKind.SFT, tmp_path / "sft", model_dir)
    rows = rows_of(path)
    assert len(rows) == 4 and all(len(r["messages"]) >= 4 for r in rows), "multi-turn rows"
    loss = one_step_on(SFTTrainer, SFTConfig, path, model_dir, tmp_path / "sft-out", 1e-4)
    assert math.isfinite(loss) and loss > 0


def test_sft_trainer_takes_a_step_on_an_export_of_tool_calling_conversations(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    from trl import SFTConfig, SFTTrainer

    items = [
        Candidate(
            kind=CandidateKind.SFT,
            payload=example,
            run_id="train-run",
            gap_id="tools",
            status=CandidateStatus.PENDING,
        )
        for example in tool_conversations()
    ]
    tokenizer_dir = tool_tokenizer(model_dir, tmp_path / "tokenizer")
    path = accepted_export(store, items, CandidateKind.SFT, tmp_path / "tools", tokenizer_dir)
    rows = rows_of(path)
    assert len(rows) == 3 and all(r["tools"] for r in rows)
    seen: list[str] = []
    loss = one_step_on(
        SFTTrainer,
        SFTConfig,
        path,
        model_dir,
        tmp_path / "tools-out",
        1e-4,
        tokenizer_dir=tokenizer_dir,
        max_length=512,
        seen=seen,
    )
    assert math.isfinite(loss) and loss > 0
    # What the step trained on holds the tools, each call with its own arguments, the results.
    text = "\n".join(seen)
    assert '"name": "convert_currency"' in text and "<tools>" in text
    assert '<tool_call>{"name": "get_weather", "arguments": {"city": "Madrid"}}</tool_call>' in text
    assert "<|im_start|>tool" in text


def test_dpo_trainer_takes_a_step_on_an_export_of_real_pairs(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    from trl import DPOConfig, DPOTrainer

    items = [
        Candidate(
            kind=CandidateKind.PREFERENCE,
            payload=p,
            run_id="train-run",
            gap_id="hh",
            status=CandidateStatus.PENDING,
        )
        for p in hh_pairs(4, turns=1)
    ]
    path = accepted_export(store, items, CandidateKind.PREFERENCE, tmp_path / "dpo", model_dir)
    assert len(rows_of(path)) == 4
    loss = one_step_on(DPOTrainer, DPOConfig, path, model_dir, tmp_path / "dpo-out", 1e-5)
    assert math.isfinite(loss)
    assert loss == pytest.approx(math.log(2), abs=0.05), "a first DPO step starts at ln 2"


def llmfao_rankings(count: int, answers: int) -> list[PreferenceExample]:
    """Real rankings: LLMFAO's answers to its haiku prompt by different models, ordered by
    how often the crowd preferred each model's answer to that prompt (ties count half)."""
    import csv
    import gzip

    with gzip.open(LLMFAO / "pairs-crowd.jsonl.gz", "rt", encoding="utf-8") as handle:
        pairs = [json.loads(line) for line in handle]
    prompt_id = 8  # "Argue for and against the use of kubernetes in the style of a haiku."
    texts: dict[int, str] = {}
    for pair in (p for p in pairs if p["prompt"] == prompt_id):
        texts.setdefault(pair["model_x"], pair["result_x"].strip())
        texts.setdefault(pair["model_y"], pair["result_y"].strip())
    wins: dict[int, float] = dict.fromkeys(texts, 0.0)
    with (LLMFAO / "crowd-comparisons.csv").open(encoding="utf-8") as handle:
        for vote in csv.DictReader(handle):
            if int(vote["prompt"]) != prompt_id:
                continue
            x, y = int(vote["model_x"]), int(vote["model_y"])
            if vote["winner"] == "tie":
                wins[x] += 0.5
                wins[y] += 0.5
            else:
                wins[x if vote["winner"] == "left" else y] += 1
    short = sorted(
        (m for m in texts if texts[m] and len(texts[m]) < 300), key=lambda m: len(texts[m])
    )
    asked = next(p["text"] for p in pairs if p["prompt"] == prompt_id)
    prompt = [Message(role="user", content=asked)]
    rankings = []
    for start in range(0, count * answers, answers):
        group = sorted(short[start : start + answers], key=lambda m: -wins[m])
        rankings.append(
            PreferenceExample.ranking(
                prompt, [[Message(role="assistant", content=texts[m])] for m in group]
            )
        )
    return rankings


def test_dpo_trainer_takes_a_step_on_the_pairs_of_real_rankings(
    store: Store, model_dir: Path, tmp_path: Path
) -> None:
    from trl import DPOConfig, DPOTrainer

    rankings = llmfao_rankings(2, answers=3)
    assert all(r.ranked is not None and len(r.ranked) == 3 for r in rankings)
    items = [
        Candidate(
            kind=CandidateKind.PREFERENCE,
            payload=ranking,
            run_id="train-run",
            gap_id="haiku",
            status=CandidateStatus.PENDING,
        )
        for ranking in rankings
    ]
    path = accepted_export(store, items, CandidateKind.PREFERENCE, tmp_path / "ranked", model_dir)
    rows = rows_of(path)
    assert len(rows) == 6, "all pairs of two rankings of three"
    loss = one_step_on(DPOTrainer, DPOConfig, path, model_dir, tmp_path / "ranked-out", 1e-5)
    assert loss == pytest.approx(math.log(2), abs=0.05), "a first DPO step starts at ln 2"
