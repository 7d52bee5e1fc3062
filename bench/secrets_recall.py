"""Benchmark: the secret detectors' recall on planted keys and false positives on real text.

    python bench/secrets_recall.py [--draws 20]

Planted: every format in tests/secret_samples.py (cloud, code hosting, payments, LLM API and
model-hub keys, Slack tokens, JWTs, private keys), ``--draws`` fakes of each from a seeded
generator, each inside the text of a dataset row. A text counts as caught when the detector
reports a secret in it (for the current rules, the test suite also checks the kind).

Real text: the 175 self-instruct seed tasks (tests/data/self-instruct/seed_tasks.jsonl), none of
which holds a secret, so every seed task reported is a false positive; the same for the 2,304
valid HH harmless test pairs and the 164 HumanEval problems (prompt, solution and tests: code,
where hashes and hex constants live); and the near misses (prefixes, placeholders, identifiers)
of tests/secret_samples.py.

Baseline, in the same run: the PII filter as it was before the current-format rules, i.e.
detect-secrets' plugins alone (``PIIFilter(current_formats=False)``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from collections import defaultdict
from random import Random

from _data import HH, HUMANEVAL, ROOT, SEED_TASKS

from generator.dataset_reader import load_examples, read_examples
from generator.filters.pii import PIIFilter

sys.path.insert(0, str(ROOT))  # the planted samples are the tests' own
from tests.secret_samples import NEAR_MISSES, PLANTED


def rate(hits: int, total: int) -> str:
    return f"{hits}/{total} ({hits / total:.0%})"


def turns(example: object) -> str:
    return "\n".join(m.content for m in example.turns())  # type: ignore[attr-defined]


def real_texts() -> dict[str, list[str]]:
    """Real rows with no secret in them, by source."""
    seeds = [turns(e) for e in load_examples(SEED_TASKS)]
    hh = [turns(row.example) for row in read_examples(HH, None, collect_errors=True).examples]
    with gzip.open(HUMANEVAL, "rt") as handle:
        problems = [json.loads(line) for line in handle]
    code = [p["prompt"] + p["canonical_solution"] + p["test"] for p in problems]
    return {
        f"{len(seeds)} seed tasks": seeds,
        f"{len(hh):,} HH pairs": hh,
        f"{len(code)} HumanEval problems": code,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=20, help="Fakes of each format.")
    args = parser.parse_args()
    detectors = {"baseline": PIIFilter(current_formats=False), "current": PIIFilter()}

    by_family: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    print("| format | family | baseline | current | current, right kind |")
    print("|---|---|---|---|---|")
    for planted in PLANTED:
        rng = Random(planted.name)
        texts = [planted.make(rng)[0] for _ in range(args.draws)]
        caught = {n: sum(bool(d.secrets(t)) for t in texts) for n, d in detectors.items()}
        kinds = sum(
            planted.kind in {f.kind for f in detectors["current"].secrets(t)} for t in texts
        )
        for name, hits in caught.items():
            by_family[planted.family][name][0] += hits
            by_family[planted.family][name][1] += len(texts)
        print(
            f"| {planted.name} | {planted.family} | {rate(caught['baseline'], len(texts))} "
            f"| {rate(caught['current'], len(texts))} | {rate(kinds, len(texts))} |"
        )

    print("\n| family | baseline recall | current recall |")
    print("|---|---|---|")
    totals = {name: [0, 0] for name in detectors}
    for family, counts in by_family.items():
        for name, (hits, total) in counts.items():
            totals[name][0] += hits
            totals[name][1] += total
        print(f"| {family} | {rate(*counts['baseline'])} | {rate(*counts['current'])} |")
    print(f"| **all** | {rate(*totals['baseline'])} | {rate(*totals['current'])} |")

    print("\n| real text | baseline false positives | current false positives | current ms/text |")
    print("|---|---|---|---|")
    for label, texts in real_texts().items():
        flagged = {n: sum(bool(d.secrets(t)) for t in texts) for n, d in detectors.items()}
        started = time.perf_counter()
        for text in texts:
            detectors["current"].secrets(text)
        ms = (time.perf_counter() - started) * 1000 / len(texts)
        print(
            f"| {label} | {rate(flagged['baseline'], len(texts))} "
            f"| {rate(flagged['current'], len(texts))} | {ms:.2f} |"
        )
    misses = list(NEAR_MISSES.values())
    near = {n: sum(bool(d.secrets(t)) for t in misses) for n, d in detectors.items()}
    print(
        f"| {len(misses)} near misses | {rate(near['baseline'], len(misses))} "
        f"| {rate(near['current'], len(misses))} | |"
    )


if __name__ == "__main__":
    main()
