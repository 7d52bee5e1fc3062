"""The store's key layout: every key it writes, its Redis type and what it holds.

All keys lie under one configurable prefix ``P``, so campaigns and test sessions never collide:
``TABLE`` below lists them (``P:<pattern>``). ``Keys`` builds each name; the Lua scripts in
``lua/`` build some of the same names from item and run ids (``P:item:<id>``,
``P:item:<id>:votes``, ``P:run:<run>:counts|status:<s>|pending``), which keeps them
single-instance (not Redis Cluster) safe: gapfill targets one primary, as RQ does.
tests/test_store_keys.py runs a workload and checks that the keys on the server are exactly these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

# No ':' or glob characters, so one prefix's keys can never match another prefix's SCAN pattern.
PREFIX = re.compile(r"[A-Za-z0-9_.-]+")


# Every key, one entry each: its name after ``P:`` (``<...>`` stands for an id), its Redis type,
# and what it holds (continued on indented lines). ``LAYOUT`` is this table, parsed.
TABLE = """
item:<id>                      hash    data (the candidate JSON without the fields that follow),
                                       status, version, run, gap, priority, lease_owner,
                                       lease_expires (ms, server clock), lease_seq (the order
                                       of leases taken in the run), edited (payload JSON),
                                       edited_by, decided_by, adjudicated_by (the admin who
                                       settled split votes), exported (the export that took it),
                                       swap_edit and swap_data (a pair swapped and its screen,
                                       taken if the swapped order wins the overlap votes)
item:<id>:votes                hash    reviewer -> accept|swap|reject, for runs with overlap
                                       (k > 1; swap: a pair accepted in the other order)
runs                           set     run ids (of items, tasks, configs and gaps)
run:<run>:config               string  the RunConfig JSON
run:<run>:review               hash    k (reviewers per item), rule (majority|unanimous),
                                       lease_ms (the campaign's review.lease_seconds, if set)
run:<run>:gaps                 hash    gap id -> Gap JSON
run:<run>:gap-report           string  the run's full gap report JSON
run:<run>:eval_report          string  the latest eval report JSON (gapfill eval / export)
run:<run>:counts               hash    "<gap>|<status>" -> count (O(1) status figures)
run:<run>:status:<status>      set     item ids with that status
run:<run>:pending              zset    the review queue: pending, unleased items by priority
run:<run>:leased               zset    leased items by lease expiry (ms, server clock)
run:<run>:lease_seq            string  a counter: the order of the run's leases (item lease_seq)
run:<run>:skipped:<reviewer>   set     items a reviewer skipped (not handed to them again)
run:<run>:tasks                set     every generation task of the run
run:<run>:tasks-open           set     tasks not yet completed
run:<run>:stats                hash    generation figures: tokens, tasks done, backend seconds
run:<run>:prescreen            string  the pre-screen's last status JSON (what it learnt from,
                                       its threshold, its audit figures, why auto-decisions are
                                       off)
run:<run>:audit                hash    item -> the label the pre-screen would have given, for
                                       items drawn for the audit share (left to humans)
task:<id>                      hash    data (GenerationTask JSON), state (open|done), run,
                                       job (the RQ job last enqueued for it),
                                       result (JSON: the candidates and tasks it made)
log                            stream  the decision log: item, run, gap, verdict, decision (JSON);
                                       appended, never trimmed or rewritten
exports                        list    one JSON record per export (newest last)
tokens:<fingerprint>           hash    conversation key -> token count, under one tokenizer
blob:<sha256>                  hash    a content-addressed file (a run's input): chunks, bytes,
                                       and fields 0..chunks-1, its zlib-compressed content
signed-out:<session>           string  a review UI session signed out: its cookie no longer
                                       signs anyone in (expires when the cookie would)
index:<digest>                 string  a dataset `gapfill index` split for workers (digest: of
                                       its items): JSON with its rows and its chunks' item
                                       blobs, in order
index-chunk:<key>              string  the blob holding one chunk's MinHash signatures and
                                       static vectors (key: the chunk's items and how they
                                       were computed)
"""


@dataclass(frozen=True)
class KeySpec:
    """One entry of ``TABLE``."""

    pattern: str
    type: str
    holds: str


def parse_table(table: str) -> tuple[KeySpec, ...]:
    specs: list[KeySpec] = []
    for line in table.strip("\n").splitlines():
        if line.startswith(" "):  # what the entry above holds, continued
            specs[-1] = replace(specs[-1], holds=f"{specs[-1].holds} {line.strip()}")
        else:
            pattern, kind, holds = line.split(None, 2)
            specs.append(KeySpec(pattern, kind, holds))
    return tuple(specs)


LAYOUT = parse_table(TABLE)

# What each ``<...>`` may stand for: ids hold no ':'; a reviewer id may ("local:<user>").
PLACEHOLDERS = {"reviewer": ".+"}


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A layout pattern as a regular expression over the key name after ``P:``."""
    parts = re.split(r"<(\w+)>", pattern)  # literal, name, literal, name, ..., literal
    return re.compile(
        "".join(
            PLACEHOLDERS.get(part, "[^:]+") if index % 2 else re.escape(part)
            for index, part in enumerate(parts)
        )
    )


class Keys:
    """Key names under one prefix (see ``LAYOUT``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.runs = f"{prefix}:runs"
        self.log = f"{prefix}:log"
        self.exports = f"{prefix}:exports"

    def item(self, item_id: str) -> str:
        return f"{self.prefix}:item:{item_id}"

    def votes(self, item_id: str) -> str:
        return f"{self.prefix}:item:{item_id}:votes"

    def task(self, task_id: str) -> str:
        return f"{self.prefix}:task:{task_id}"

    def tokens(self, fingerprint: str) -> str:
        """Token counts of conversations under one tokenizer (see export.checks)."""
        return f"{self.prefix}:tokens:{fingerprint}"

    def blob(self, sha256: str) -> str:
        """A run input's content, by its SHA-256 (see ``store.blobs``)."""
        return f"{self.prefix}:blob:{sha256}"

    def index(self, digest: str) -> str:
        """A dataset split into chunks for workers (see ``generator.index_chunks``)."""
        return f"{self.prefix}:index:{digest}"

    def index_chunk(self, key: str) -> str:
        """One chunk's computed result, by what it was computed from."""
        return f"{self.prefix}:index-chunk:{key}"

    def signed_out(self, session_id: str) -> str:
        """A review UI session signed out (see ``generator.ui_sessions``)."""
        return f"{self.prefix}:signed-out:{session_id}"

    def run(self, run_id: str, suffix: str) -> str:
        """``P:run:<run>:<suffix>``: one of the run's keys, e.g. ``run(r, "pending")``."""
        return f"{self.prefix}:run:{run_id}:{suffix}"

    def status(self, run_id: str, status: str) -> str:
        return self.run(run_id, f"status:{status}")

    def skipped(self, run_id: str, reviewer: str) -> str:
        return self.run(run_id, f"skipped:{reviewer}")
