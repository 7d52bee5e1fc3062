"""The record that travels with an export: per-example provenance, the manifest (counts,
generators, templates, filters, reviewers, file hashes, the stage-audit block) and a dataset card.
"""

from __future__ import annotations

import difflib
from collections import Counter, defaultdict
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

from generator.agreement import agreement, votes_by_item
from generator.export.selection import Approved
from generator.schema import AUTO_REVIEWER, Candidate, DecisionRecord
from generator.screening import original_flag, screen


def _lines(example: dict[str, Any]) -> list[str]:
    if "messages" in example:
        return [f"{m['role']}: {m['content']}" for m in example["messages"]]
    return [
        *(f"prompt {m['role']}: {m['content']}" for m in example["prompt"]),
        *(f"chosen: {m['content']}" for m in example["chosen"]),
        *(f"rejected: {m['content']}" for m in example["rejected"]),
    ]


def edit_diff(item: dict[str, Any]) -> str | None:
    """The reviewer's edit as a unified diff of the turns, or None."""
    if item.get("edited") is None or item.get("payload") is None:
        return None
    original = "\n".join(_lines(item["payload"])).splitlines(keepends=True)
    edited = "\n".join(_lines(item["edited"])).splitlines(keepends=True)
    return "".join(difflib.unified_diff(original, edited, "original", "edited", n=1))


def _edit_diff_record(item: dict[str, Any]) -> dict[str, Any]:
    """The edit diff, unless the original it quotes holds PII/secrets: only the exported
    (screened) content may leave, so such a diff is withheld and the reason given instead."""
    flag = original_flag(item)
    if flag is None:
        return {"edit_diff": edit_diff(item)}
    return {"edit_diff": None, "edit_diff_withheld": f"the original holds PII/secrets ({flag})"}


def _ranking_record(item: dict[str, Any]) -> dict[str, Any]:
    """For a ranking: the order the reviewers settled on, as positions in the order the
    answers were generated in (best first; None for an answer a reviewer's edit changed)."""
    final = item.get("edited") or item.get("payload") or {}
    ranked = final.get("ranked")
    if not ranked:
        return {}
    generated = list(enumerate((item.get("payload") or {}).get("ranked") or []))
    order: list[int | None] = []
    for answer in ranked:  # each generated answer matched once (two may be identical)
        position = next((i for i, (_, a) in enumerate(generated) if a == answer), None)
        order.append(None if position is None else generated.pop(position)[0])
    return {"ranking": {"answers": len(ranked), "order": order}}


@lru_cache(maxsize=4096)
def _unsafe_prompt(messages: bytes) -> str | None:
    """Why a rendered prompt must not leave (PII/secrets in it), or None. Cached: the rows of
    one instruction task (up to requests_per_task) share its prompt."""
    turns = orjson.loads(messages)
    text = "\n".join(str(turn.get("content", "")) for turn in turns)
    score = screen(Candidate(kind="sft", raw=text or "-", run_id="export", gap_id="none"))
    return None if score.passed else score.reason


def _withheld(use: dict[str, Any], why: str) -> dict[str, Any]:
    return {**{k: v for k, v in use.items() if k != "messages"}, "messages_withheld": why}


def template_uses(item: dict[str, Any]) -> list[dict[str, Any]]:
    """Every template behind an item, in order (instructions, response, judge or pairwise), each
    with its hash and the messages it rendered, so each step can be rerun as it ran.

    Rendered messages quote untrusted text, so none leaves unscreened: the instruction prompt
    (its seeds are rows of the existing dataset) is screened here; the later steps quote the
    request and answer, which the item's own screen covers, unless a reviewer edited them out:
    then they leave only if the original passes (as the edit diff)."""
    made = item.get("provenance") or {}
    judge = (item.get("scores") or {}).get("judge") or {}
    uses = [*made.get("templates", []), *(judge.get("evidence") or {}).get("templates", [])]
    original = original_flag(item)
    records = []
    for use in uses:
        if use.get("step") == "instructions":
            why = _unsafe_prompt(orjson.dumps(use.get("messages", [])))
            records.append(use if why is None else _withheld(use, f"PII/secrets ({why})"))
        elif original is not None:
            records.append(_withheld(use, f"the original holds PII/secrets ({original})"))
        else:
            records.append(use)
    return records


def _scores_without_prompts(scores: dict[str, Any]) -> dict[str, Any]:
    """The scores, with the judge's rendered prompts left to ``templates`` (not written twice)."""
    judge = scores.get("judge")
    if not judge or "templates" not in (judge.get("evidence") or {}):
        return scores
    evidence = {k: v for k, v in judge["evidence"].items() if k != "templates"}
    return {**scores, "judge": {**judge, "evidence": evidence}}


def provenance_record(approved: Approved, split: str, row: int) -> dict[str, Any]:
    """An item's line of provenance.jsonl.

    The generation record is the item's own (but its ``templates`` are screened, see
    ``template_uses``, and the rendered prompt is left to them) and so are its scores: at
    100,000 rows, reshaping them field by field was a tenth of an export's time.
    """
    item = approved.item
    record = {
        "item_id": item["id"],
        "split": split,
        "row": row,
        **item.get("provenance", {}),
        "templates": template_uses(item),
        "run_id": item["run_id"],
        "gap_id": item["gap_id"],
        "scores": _scores_without_prompts(item.get("scores", {})),
        "review": {
            "reviewers": approved.reviewers,
            # True: the pre-screen model accepted it, no human did (exported only when asked).
            "auto_decided": approved.auto_decided,
            "decisions": [
                # A dict each: orjson takes a dict in a tenth of the time of a dataclass.
                {
                    "reviewer": d.reviewer,
                    "verdict": d.verdict,
                    "reason_tags": d.reason_tags,
                    "note": d.note,
                    "decided_at": d.decided_at,
                }
                for d in approved.decisions
            ],
            **_edit_diff_record(item),
            **_ranking_record(item),
        },
    }
    record.pop("rendered_prompt", None)
    return record


class Origin(NamedTuple):
    """What the manifest counts an exported item by."""

    gap_id: str
    run_id: str
    source: str | None
    backend: str | None
    model: str | None
    templates: tuple[tuple[str, str], ...]  # (name, hash) of every template behind the item
    sampling: bytes  # the sampling parameters as JSON, keys as the producer wrote them

    @classmethod
    def of(cls, item: dict[str, Any]) -> Origin:
        made = item.get("provenance") or {}
        sampling = orjson.dumps(made.get("sampling") or {})
        judge = (item.get("scores") or {}).get("judge") or {}
        uses = [*made.get("templates", []), *(judge.get("evidence") or {}).get("templates", [])]
        named = {(use["name"], use.get("hash") or "-") for use in uses}
        if not uses and made.get("template_name"):  # an item stored before templates were listed
            named.add((made["template_name"], made.get("template_hash") or "-"))
        return cls._make(
            (
                item["gap_id"],
                item["run_id"],
                *map(made.get, _MADE_BY),
                tuple(sorted(named)),
                sampling,
            )
        )

    @property
    def generator(self) -> str:
        """ "backend:model", or "source:-" for an imported item."""
        return f"{self.backend or self.source or 'generated'}:{self.model or '-'}"


_MADE_BY = ("source", "backend", "model")


# Where an exported row came from, as the card and the manifest count it. Every row is exactly
# one of these, so the counts add up to the export's rows.
ROW_ORIGINS = (
    "merged_existing",
    "generated_accepted",
    "imported_accepted",
    "human_edited",
    "auto_decided",
)


def row_origin(item: dict[str, Any] | None, *, auto_decided: bool = False) -> str:
    """A row's origin: its approved item (None for a merged existing row); ``auto_decided``
    where the pre-screen model accepted it and no human did."""
    if item is None:
        return "merged_existing"
    if auto_decided:
        return "auto_decided"
    if item.get("edited") is not None:
        return "human_edited"
    made = item.get("provenance") or {}
    return "imported_accepted" if made.get("source") == "imported" else "generated_accepted"


def origin_counts(
    origins: Counter[Origin], existing: int, rows_by_origin: Counter[str]
) -> dict[str, Any]:
    """Rows per origin, per gap, per source and per run (``existing``: merged rows of the old
    dataset, which have no gap or run: they are counted under ``by_origin`` and ``by_source``).

    ``by_gap`` is nested per run, ``{run: {gap: rows}}``, whatever the number of runs: a gap id
    is its run's own (every run names its reference gaps ref-N, by topic), so two runs'
    ``ref-1`` are two gaps, never added together. ``by_run`` is each run's total."""
    by_gap: defaultdict[str, Counter[str]] = defaultdict(Counter)
    by_source: Counter[str] = Counter({"existing": existing} if existing else {})
    by_run: Counter[str] = Counter()
    for origin, n in origins.items():
        by_gap[origin.run_id][origin.gap_id] += n
        by_source[origin.source or "generated"] += n
        by_run[origin.run_id] += n
    return {
        "by_origin": {name: rows_by_origin.get(name, 0) for name in ROW_ORIGINS},
        "by_gap": {run: dict(sorted(gaps.items())) for run, gaps in sorted(by_gap.items())},
        "by_source": dict(sorted(by_source.items())),
        "by_run": dict(sorted(by_run.items())),
    }


def generation_summary(origins: Counter[Origin]) -> dict[str, Any]:
    """Models, templates (by hash) and sampling parameters, with the items each made."""
    models: Counter[str] = Counter()
    templates: dict[str, Counter[str]] = defaultdict(Counter)
    sampling: Counter[bytes] = Counter()
    for origin, n in origins.items():
        models[origin.generator] += n
        for name, template_hash in origin.templates:
            templates[name][template_hash] += n
        if origin.sampling != b"{}":  # key order as each producer wrote it: normalised here
            sampling[orjson.dumps(orjson.loads(origin.sampling), option=orjson.OPT_SORT_KEYS)] += n
    return {
        "models": dict(sorted(models.items())),
        "templates": {name: dict(sorted(h.items())) for name, h in sorted(templates.items())},
        "sampling": [
            {"params": orjson.loads(params), "items": n} for params, n in sorted(sampling.items())
        ],
    }


def pass_rates(scored: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per filter, over every scored item of the runs: how many it scored and passed."""
    seen: Counter[str] = Counter()
    passed: Counter[str] = Counter()
    for scores in scored:
        for name, score in scores.items():
            seen[name] += 1
            passed[name] += bool(score.get("passed"))
    return {
        name: {"scored": seen[name], "passed": passed[name], "rate": passed[name] / seen[name]}
        for name in sorted(seen)
    }


def review_summary(
    decisions: list[DecisionRecord], rules: dict[str, tuple[int, str]]
) -> dict[str, Any]:
    by_reviewer = Counter(d.reviewer for d in decisions if d.verdict != "undo")
    # Agreement between humans: the pre-screen's decisions (counted above, by name) are not votes.
    figures = agreement(votes_by_item(d for d in decisions if d.reviewer != AUTO_REVIEWER))
    return {
        "decisions_by_reviewer": dict(sorted(by_reviewer.items())),
        "overlap": {run: {"reviewers_per_item": k, "rule": r} for run, (k, r) in rules.items()},
        "agreement": figures.model_dump(),
    }


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def provenance_sentence(counts: dict[str, Any], merged: str | None) -> str:
    """What the card says of where the rows came from: every figure from ``by_origin``, and the
    claim that humans accepted everything only when every row went through review."""
    origin = counts["by_origin"]
    rows, existing = counts["rows"], origin["merged_existing"]
    reviewed = rows - existing
    edited = origin["human_edited"]
    parts = [
        f"{origin['generated_accepted']} generated and accepted as written",
        f"{origin['imported_accepted']} imported and accepted",
        f"{edited} accepted after a reviewer's edit",
    ]
    accepted = f"a human reviewer accepted each one ({', '.join(parts)})"
    auto = origin.get("auto_decided", 0)
    if auto:
        accepted = (
            f"a human reviewer accepted each one ({', '.join(parts)}) except "
            f"{_plural(auto, 'row')} that gapfill's pre-screen model accepted without a human, "
            "as the export was asked to include (`auto_decided` in `provenance.jsonl`)"
        )
    if not existing:
        return f"All {_plural(rows, 'row')} went through gapfill's review, and {accepted}."
    return (
        f"Of {_plural(rows, 'row')}, {reviewed} went through gapfill's review, and {accepted}. "
        f"The other {existing} are the existing dataset merged in with `--merge` ({merged}), "
        "copied as they are: gapfill did not generate, filter or review them, and their lines "
        "of `provenance.jsonl` record only the file and line each came from."
    )


def dataset_card(manifest: dict[str, Any]) -> str:
    kind, files = manifest["kind"], manifest["files"]
    counts = manifest["counts"]
    data_files = {n.split(".")[0]: n for n in files if n.split(".")[0] in ("train", "eval")}
    loader = "json" if manifest["format"] == "jsonl" else "parquet"
    layout = (
        '`{"messages": [{"role", "content"}, ...]}` (TRL conversational language modelling)'
        if kind == "sft"
        else '`{"prompt": [...], "chosen": [...], "rejected": [...]}` (TRL conversational '
        "preference)"
    )
    origin = counts["by_origin"]
    origin_rows = "\n".join(f"| {_ORIGIN_LABELS[name]} | {n} |" for name, n in origin.items() if n)
    gaps = gap_table(manifest)
    models = "\n".join(f"- {m}: {n}" for m, n in manifest["generation"]["models"].items())
    audit = manifest["stage_audit"]
    previous = audit["rollback_artifacts"]["previous_manifest_sha256"] or "none (first export)"
    runs = ", ".join(f"{run} ({n})" for run, n in counts["by_run"].items()) or "none"
    return f"""# gapfill export {manifest["export_id"][:12]} ({kind})

Rows from run(s) {", ".join(manifest["runs"])}, exported {manifest["exported_at"]}. Every row is
{layout}. {provenance_sentence(counts, manifest.get("merged_existing"))}
For each reviewed row, `provenance.jsonl` traces it to its gap, prompt templates, model,
sampling parameters, filter scores and reviewer decisions (with the edit diff).

```python
from datasets import load_dataset
ds = load_dataset("{loader}", data_files={data_files!r})
```

Rows: {counts["rows"]} ({", ".join(f"{k} {v}" for k, v in counts["by_split"].items())}); excluded
before writing: {counts["excluded"]} (reasons in `excluded.jsonl`); refused by the PII/secret
gate (no screen of the content as exported, or a flag no reviewer cleared): {counts["refused_pii"]}.

| origin | rows |
|---|---|
{origin_rows}

Reviewed rows per run: {runs}.

{gaps}

Generators of the reviewed rows:
{models or "- none"}

Base model: {audit["base_model"] or "not given"}. Chat template checked:
{audit["chat_template"]["tokenizer"]} (max {audit["chat_template"]["max_length"]} tokens).
Previous export (rollback): {previous}.

Synthetic data can amplify a generator's errors and narrow a dataset's style: read the filter
pass rates and reviewer agreement in `manifest.json` before training on it.
"""


def gap_table(manifest: dict[str, Any]) -> str:
    """Reviewed rows per gap, with a column for the run when the export spans several (gap ids
    are a run's own), and the merged rows on a line of their own; then what coverage's 'have'
    was measured on, where the manifest says (``measured_on``, per run)."""
    counts, several = manifest["counts"], len(manifest["runs"]) > 1
    rows = [
        f"| {run} | {gap} | {n} |" if several else f"| {gap} | {n} |"
        for run, gaps in counts["by_gap"].items()
        for gap, n in gaps.items()
    ]
    measured = manifest.get("measured_on") or []
    if merged := counts["by_origin"]["merged_existing"]:
        what = f"merged existing rows ({_merged_in_coverage(measured)})"
        rows.append(f"| - | {what} | {merged} |" if several else f"| {what} | {merged} |")
    head = "| run | gap | rows |\n|---|---|---|" if several else "| gap | rows |\n|---|---|"
    notes = "".join(f"\n- {m['note']}" for m in measured)
    return f"{head}\n" + "\n".join(rows) + (f"\n\nCoverage's 'have':{notes}" if notes else "")


def _merged_in_coverage(measured: list[dict[str, Any]]) -> str:
    """What the merged rows are to the eval report's coverage, as far as it is known."""
    if measured and all(m["merged_is_measured"] for m in measured):
        return "no gap here: they are the dataset the gaps were measured on, in each gap's 'have'"
    if measured:
        return (
            "no gap here, and not known to be the dataset the gaps were measured on: "
            "coverage's 'have' counts that dataset, not this export"
        )
    return "no gap here; coverage does not count them as added"


_ORIGIN_LABELS = {
    "merged_existing": "merged existing dataset (not reviewed in gapfill)",
    "generated_accepted": "generated, accepted by a human as written",
    "imported_accepted": "imported, accepted by a human as written",
    "human_edited": "accepted by a human after an edit",
    "auto_decided": "accepted by the pre-screen model, not by a human",
}
