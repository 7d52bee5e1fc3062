"""Run HF datatrove's MinHash deduplication over a JSONL file; print the removed ids as JSON.

    .venv-datatrove/bin/python bench/_datatrove_minhash.py INPUT.jsonl WORK_DIR

Runs in datatrove's own environment (``scripts/install-datatrove.sh``), never gapfill's:
``bench/dedup_peer.py`` calls it. The four stages of datatrove's own MinHash example
(signatures, buckets, clusters, filter) with its defaults: 5-gram shingles, 14 buckets of 8
hashes. Within a cluster datatrove keeps one document and removes the rest; the input lists the
existing rows first, so a removed candidate is one datatrove calls a duplicate of an earlier
text.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import (
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.dedup.minhash import MinhashConfig
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter


def main() -> None:
    source, work = Path(sys.argv[1]), Path(sys.argv[2])
    config = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8)
    reader = JsonlReader(str(source.parent), glob_pattern=source.name, text_key="text")
    stages = [
        ([reader, MinhashDedupSignature(str(work / "signatures"), config=config)], 1),
        (
            [MinhashDedupBuckets(str(work / "signatures"), str(work / "buckets"), config=config)],
            config.num_buckets,
        ),
        ([MinhashDedupCluster(str(work / "buckets"), str(work / "remove"), config=config)], 1),
        (
            [
                JsonlReader(str(source.parent), glob_pattern=source.name, text_key="text"),
                MinhashDedupFilter(
                    str(work / "remove"),
                    exclusion_writer=JsonlWriter(str(work / "removed"), compression=None),
                ),
                JsonlWriter(str(work / "kept"), compression=None),
            ],
            1,
        ),
    ]
    for index, (pipeline, tasks) in enumerate(stages):
        LocalPipelineExecutor(
            pipeline=pipeline,
            tasks=tasks,
            workers=2,
            logging_dir=str(work / "logs" / str(index)),
        ).run()
    removed = [
        json.loads(line)["id"]
        for path in sorted((work / "removed").glob("*.jsonl"))
        # "\n" only: a text may hold U+2028 and its kin, which str.splitlines also splits on.
        for line in path.read_text(encoding="utf-8").split("\n")
        if line.strip()
    ]
    print(json.dumps(removed))


if __name__ == "__main__":
    main()
