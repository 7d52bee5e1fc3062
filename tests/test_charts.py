"""Report charts: every gap named once and in full under its bars."""

from __future__ import annotations

from pathlib import Path

from generator.charts import gap_chart, gap_tick_label
from generator.schema import Gap

LONG = "Questions about planning multi-city train journeys across Europe on a budget"


def test_a_taxonomy_cell_is_named_once() -> None:
    """A cell's label is its id: it once appeared twice, the second time cut to 18 characters."""
    cell = Gap(
        id="arithmetic_word_problems", run_id="r", kind="taxonomy", label="arithmetic_word_problems"
    )
    assert gap_tick_label(cell) == "arithmetic_word_problems"


def test_a_long_label_is_wrapped_in_full_never_cut() -> None:
    cluster = Gap(id="ref-3", run_id="r", kind="reference", label=LONG)
    lines = gap_tick_label(cluster).splitlines()
    assert lines[0] == "ref-3"
    assert " ".join(lines[1:]) == LONG
    assert all(len(line) <= 24 for line in lines[1:])


def test_the_gap_chart_is_a_png(tmp_path: Path) -> None:
    gaps = [
        Gap(id="ref-3", run_id="r", kind="reference", label=LONG, have=2, target=9),
        Gap(id="coding", run_id="r", kind="taxonomy", label="coding", have=5, target=5),
    ]
    path = gap_chart(gaps, tmp_path / "gaps.png", "gaps", after={"ref-3": 4})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
