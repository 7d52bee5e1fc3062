"""PNG charts for reports (matplotlib, headless)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from generator.schema import Gap


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers and in CI
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    _pyplot().close(figure)
    return path


def gap_tick_label(gap: Gap, width: int = 24) -> str:
    """A gap's name under its bars, in full: the id, then the label when it says something the id
    does not (a taxonomy cell's label is its id), wrapped at word boundaries, never cut."""
    lines = [gap.id]
    if gap.label.strip() and gap.label.strip() != gap.id:
        lines += textwrap.wrap(gap.label.strip(), width, break_long_words=False)
    return "\n".join(lines)


def gap_chart(gaps: list[Gap], path: Path, title: str, after: dict[str, int] | None = None) -> Path:
    """Bars of have vs target per gap (and have after, when comparing)."""
    plt = _pyplot()
    labels = [gap_tick_label(g) for g in gaps]
    series = [("have", [g.have for g in gaps])]
    if after is not None:
        series.append(("have after", [after.get(g.id, g.have) for g in gaps]))
    series.append(("target", [g.target for g in gaps]))
    width = 0.8 / len(series)
    figure, axes = plt.subplots(figsize=(max(6.0, 0.9 * len(gaps) + 2), 4.5))
    for index, (name, values) in enumerate(series):
        offset = (index - (len(series) - 1) / 2) * width
        axes.bar([p + offset for p in range(len(gaps))], values, width, label=name)
    axes.set_xticks(list(range(len(gaps))), labels, rotation=45, ha="right", fontsize=8)
    axes.set_ylabel("examples")
    axes.set_title(title)
    axes.legend()
    return _save(figure, path)


def histogram_chart(values: list[int], path: Path, title: str, limit: int | None = None) -> Path:
    """A histogram (e.g. rendered lengths in tokens), with the limit drawn where there is one."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.hist(values or [0], bins=40)
    if limit is not None:
        axes.axvline(limit, color="red", linestyle="--", label=f"max {limit}")
        axes.legend()
    axes.set_xlabel("tokens")
    axes.set_ylabel("rows")
    axes.set_title(title)
    return _save(figure, path)


def bar_chart(counts: dict[str, dict[str, int]], path: Path, title: str) -> Path:
    """Grouped bars: per label (e.g. gap), one bar per series (e.g. rows, refusals)."""
    plt = _pyplot()
    labels = list(counts)
    names = sorted({name for series in counts.values() for name in series})
    width = 0.8 / max(len(names), 1)
    figure, axes = plt.subplots(figsize=(max(6.0, 0.7 * len(labels) + 2), 4.5))
    for index, name in enumerate(names):
        offset = (index - (len(names) - 1) / 2) * width
        values = [counts[label].get(name, 0) for label in labels]
        axes.bar([p + offset for p in range(len(labels))], values, width, label=name)
    axes.set_xticks(list(range(len(labels))), labels, rotation=45, ha="right", fontsize=8)
    axes.set_title(title)
    axes.legend()
    return _save(figure, path)
