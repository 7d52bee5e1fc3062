"""Progress per gap, the funnel, reviewer throughput, how the judge and the filters agree with
reviewers, and what the pre-screen did."""

from __future__ import annotations

from collections import defaultdict

import pandas as pd
import streamlit as st
from pydantic import ValidationError

from generator.agreement import agreement, votes_by_item
from generator.calibration import run_calibration, table_rows
from generator.costs import run_costs
from generator.evaluation.report import EvalReport
from generator.export.selection import model_only_accepted
from generator.prescreening import PreScreenStatus
from generator.rounds import accepted_in, chain, round_yields
from generator.schema import AUTO_REVIEWER, CandidateStatus, Gap
from generator.throughput import human_decisions
from generator.throughput import throughput as rated
from review_ui.resources import settings, store
from review_ui.signin import signed_in_reviewer


def gap_names(run_id: str) -> list[tuple[Gap, str]]:
    """Each gap with the name the Overview shows: its label, with its id where labels repeat."""
    gaps = store().gaps(run_id)
    labels = [g.label for g in gaps]
    return [(g, g.label if labels.count(g.label) <= 1 else f"{g.label} ({g.id})") for g in gaps]


def funnel(run_id: str) -> pd.DataFrame:
    """One row per gap, by its name (its id where names repeat), the gaps that still need the
    most first: what the run's deficit is, after what reviewers accepted (the pre-screen's own
    acceptances fill nothing: exports leave them out unless asked)."""
    counts = store().counts(run_id)
    model_only = model_only_accepted(store(), run_id)  # left out of exports unless asked for
    named = gap_names(run_id)
    # A later round's gaps keep their measured deficit: the rounds before it filled some.
    before = accepted_in(store(), chain(store(), run_id)[:-1], [g for g, _ in named])
    gaps = {g.id: g for g, _ in named}
    names = {g.id: name or g.id for g, name in named}
    rows: list[dict[str, str | int]] = []
    for gap_id in set(counts) | set(gaps):
        by, gap = counts.get(gap_id, {}), gaps.get(gap_id)
        accepted, rejected = by.get("accepted", 0), by.get("rejected", 0)
        rows.append(
            {
                "gap": names.get(gap_id, gap_id),
                "generated": sum(by.values()),
                "auto_rejected": by.get("auto_rejected", 0),
                "pending": by.get("pending", 0),
                "reviewed": accepted + rejected,
                "accepted": accepted,
                "target": gap.target if gap is not None else 0,
                "still needed": max(
                    (gap.deficit if gap is not None else 0)
                    - before.get(gap_id, 0)
                    - accepted
                    + model_only[gap_id],
                    0,
                ),
            }
        )
    rows.sort(key=lambda row: (-int(row["still needed"]), str(row["gap"])))  # most needed first
    return pd.DataFrame(rows).set_index("gap") if rows else pd.DataFrame()


def rounds(run_id: str) -> pd.DataFrame:
    """Yield per round and gap over the campaign's rounds up to this run (empty for a run that
    is no round of a campaign)."""
    rows = round_yields(store(), run_id)
    if not any(row.round > 1 for row in rows):
        return pd.DataFrame()
    return pd.DataFrame(
        [
            {
                "round": row.round,
                "run": row.run_id,
                "gap": row.gap_id,
                "label": row.gap_label,
                "generated": row.generated,
                "auto_rejected": row.auto_rejected,
                "pending": row.pending,
                "reviewed": row.reviewed,
                "accepted": row.accepted,
                "accepted by model": row.accepted_by_model,
                "yield": None if row.rate is None else round(row.rate, 3),
            }
            for row in rows
        ]
    )


def throughput(run_id: str, labels: dict[str, str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reviewer throughput per reviewer and per gap (named as in the funnel)."""
    timed = human_decisions(d.decision for d in store().decisions(run_id))

    def table(by: str, column: str) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    column: labels.get(row.key, row.key) if by == "gap" else row.key,
                    "decisions": row.decisions,
                    "median s/item": round(row.median_seconds, 1) if row.median_seconds else None,
                    "items/hour": row.per_hour,
                }
                for row in rated(timed, by)
            ]
        )

    return table("reviewer", "reviewer"), table("gap", "gap")


def reviewer_agreement(run_id: str) -> None:
    k, rule = store().review_rule(run_id)
    figures = agreement(
        votes_by_item(
            d.decision for d in store().decisions(run_id) if d.decision.reviewer != AUTO_REVIEWER
        )
    )
    if figures.items == 0:
        overlap = f"{k} reviewers per item ({rule})" if k > 1 else "one reviewer per item"
        st.caption(f"No item has two votes yet, so no agreement figures ({overlap}).")
        return

    def shown(value: float | None) -> str:
        return "undefined" if value is None else f"{value:.2f}"

    left, middle, right = st.columns(3)
    left.metric("Items with overlap", figures.items)
    middle.metric("Pairs agreeing", shown(figures.pair_agreement))
    right.metric("Krippendorff's alpha", shown(figures.alpha))
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "reviewers": " & ".join(p.reviewers),
                    "shared items": p.shared_items,
                    "agreement": round(p.agreement, 2),
                    "Cohen's kappa": None if p.kappa is None else round(p.kappa, 2),
                }
                for p in figures.pairs
            ]
        ),
        hide_index=True,
    )


def latest_eval_report(run_id: str) -> None:
    raw = store().eval_report_json(run_id)
    if raw is None:
        st.caption("No eval report yet: `gapfill export` writes one (or `gapfill eval --run`).")
        return
    try:
        report = EvalReport.model_validate_json(raw)
    except ValidationError:
        # Written by another gapfill version (another schema): say so instead of guessing.
        st.caption("The stored eval report is from another gapfill version: export again.")
        return
    fmt, safety = report.format, report.safety
    st.caption(f"{report.source}, {report.generated_at} ({report.stage}, {report.rows} rows)")
    columns = st.columns(5)
    columns[0].metric("Valid rows", f"{fmt.valid_share:.0%}")
    columns[1].metric("Refusals", f"{report.refusals.share:.1%}")
    columns[2].metric(f"Over {fmt.max_length} tokens", fmt.over_max_length)
    columns[3].metric("PII / unsafe rows", f"{safety.pii_rows} / {safety.unsafe_rows}")
    matched = sum(section.rows_matched for section in report.contamination.values())
    columns[4].metric("Eval-set matches", matched)
    with st.expander("The whole report"):
        st.json(report.model_dump(mode="json"), expanded=False)


def filters_vs_humans(run_id: str) -> pd.DataFrame:
    """Per filter flag: how reviewers decided the flagged items. A flag whose items reviewers
    nearly always reject could auto-reject and save that review time."""
    by_model = {  # settled by the pre-screen: not the reviewers' verdicts
        d.decision.item_id
        for d in store().decisions(run_id)
        if d.decision.reviewer == AUTO_REVIEWER
    }
    decided = [
        c
        for status in (CandidateStatus.ACCEPTED, CandidateStatus.REJECTED)
        for c in store().get_many(list(store().ids(run_id, status)))
        if c.id not in by_model
    ]
    flagged: dict[str, list[bool]] = defaultdict(list)
    for item in decided:
        for name, score in item.scores.items():
            if not score.passed:
                flagged[name].append(item.status is CandidateStatus.REJECTED)
    return pd.DataFrame(
        [
            {
                "filter flag": name,
                "flagged and reviewed": len(verdicts),
                "reviewers rejected": f"{sum(verdicts) / len(verdicts):.0%}",
                "review decisions saved if it auto-rejected": sum(verdicts),
            }
            for name, verdicts in sorted(flagged.items())
        ]
    )


COLUMNS = ["scope", "who", "comparisons", "agreement", "no tie", "kappa [95% CI]"]


def judge_calibration(run_id: str) -> None:
    """The judge against the reviewers' majority, run then gap, beside the reviewers' own
    agreement (each vote against the majority of the other votes on the item)."""
    results = run_calibration(store(), run_id)
    if results[0].judge is None and not results[0].humans.pairs:
        st.caption(
            "Nothing to compare yet: no item has both a judge verdict and a human vote, and no "
            "item has two human votes."
        )
        return
    rows = [row for result in results for row in table_rows(result)]
    st.dataframe(pd.DataFrame(rows, columns=COLUMNS), hide_index=True)
    if results[0].judge_meets_humans:
        st.caption("The judge agrees with the reviewers at least as well as they agree.")
    elif results[0].judge is not None:
        st.caption("The judge agrees with the reviewers less than they agree with each other.")


def prescreen_status(run_id: str) -> None:
    raw = store().prescreen_status(run_id)
    if raw is None:
        st.caption("No pre-screen has run (campaign: review.prescreen).")
        return
    status = PreScreenStatus.model_validate_json(raw)
    audit = status.audit
    audited = f", agreeing {audit.agreement:.0%}" if audit.agreement is not None else ""
    # gapfill's own figures and words: plain text all the same.
    st.text(
        f"Last retrained {status.at:%Y-%m-%d %H:%M} UTC on {status.trained_on} human-decided "
        f"items; queue reordered: {status.reordered}; decided by the model: "
        f"{status.auto_decided}; audit share: {audit.decided} of {audit.drawn} decided by "
        f"humans{audited}. Auto-decisions {'on' if status.auto_on else 'off'}: {status.message}"
    )


def costs(run_id: str, labels: dict[str, str]) -> pd.DataFrame:
    """What each accepted item cost per gap (reads every item of the run: shown on request)."""
    rows = run_costs(store(), run_id, settings().prices_per_million_tokens)
    return pd.DataFrame(
        [
            {
                "gap": labels.get(row.gap_id, row.gap_id),
                "generated": row.generated,
                "accepted": row.accepted,
                "tokens / accepted": row.per_accepted(row.tokens),
                "backend s / accepted": row.per_accepted(row.backend_seconds),
                "reviewer s / accepted": row.per_accepted(row.reviewer_seconds),
                "money / accepted": row.per_accepted(row.money),
            }
            for row in rows
        ]
    )


def page() -> None:
    signed_in_reviewer()
    run_id = st.session_state.get("run_id")
    if not run_id:
        st.info("No run yet.")
        return
    st.header(f"Run {run_id}")
    table = funnel(run_id)
    if table.empty:
        st.info("No items in this run yet.")
        return
    st.subheader("Accepted vs target per gap")
    # In the table's order (most still needed first), not alphabetically by name.
    st.bar_chart(table[["accepted", "target"]], stack=False, sort=False, horizontal=True)
    st.subheader("Funnel: generated → auto-rejected → reviewed → accepted")
    st.dataframe(table)
    by_round = rounds(run_id)
    if not by_round.empty:
        st.subheader("Yield per round: accepted / generated")
        st.dataframe(by_round, hide_index=True)
    st.subheader("Reviewer throughput")
    labels = {g.id: name for g, name in gap_names(run_id)}
    per_reviewer, per_gap = throughput(run_id, labels)
    left, right = st.columns(2)
    left.caption("Per reviewer")
    left.dataframe(per_reviewer, hide_index=True)
    right.caption("Per gap: how fast each gap's items are decided")
    right.dataframe(per_gap, hide_index=True)
    st.subheader("Cost per accepted item")
    if st.toggle("Count the costs (reads every item of the run)", key="show-costs"):
        st.dataframe(costs(run_id, labels), hide_index=True)
        st.caption(
            "Tokens and backend seconds of everything generated for the gap, reviewer seconds "
            "of its decisions, over the items accepted; money where the settings price the "
            "backend (prices_per_million_tokens)."
        )
    st.subheader("Agreement between reviewers")
    reviewer_agreement(run_id)
    st.subheader("Judge against reviewers")
    judge_calibration(run_id)
    st.subheader("Pre-screen")
    prescreen_status(run_id)
    st.subheader("Latest eval report")
    latest_eval_report(run_id)
    st.subheader("Filters vs reviewers")
    st.dataframe(filters_vs_humans(run_id), hide_index=True)


page()
