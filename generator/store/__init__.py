"""The store: Redis as gapfill's system of record.

Every key lies under one configurable prefix; ``keys.py`` lists each key, its type and content.
Every change that touches more than one key runs as one Lua script (``lua/*.lua``), so it is
atomic and costs a single round trip; lease times come from the server's clock (``TIME``), so
reviewers on machines with skewed clocks still agree on who holds what.

Overlap: a run with k > 1 reviewers per item hands each item to k different reviewers, one lease
at a time. A vote puts the item back in the queue (still pending, same version, so another
reviewer's lease stays valid) until k votes are in; the k-th vote settles it by the run's rule:
``majority`` accepts when more than half accept (a tie rejects: nothing enters a dataset on a
split vote), ``unanimous`` only when all accept. An edit is an accepting vote that also replaces
the payload.

``Store`` is one object made of four parts: ``items`` (candidates, their status indexes and
reads), ``tasks`` (generation tasks, runs and gaps), ``review`` (leases, decisions, votes, the
log), ``exports`` (export marks and records, token counts, eval reports) and ``blobs``
(content-addressed run inputs, so workers on any host can read them).
"""

from __future__ import annotations

from generator.store.blobs import BlobsMixin
from generator.store.exports import ExportsMixin
from generator.store.keys import Keys
from generator.store.review import Lease, LoggedDecision, ReviewMixin
from generator.store.tasks import TasksMixin

__all__ = ["Keys", "Lease", "LoggedDecision", "Store"]


class Store(TasksMixin, ReviewMixin, ExportsMixin, BlobsMixin):
    """Candidates, their status indexes, review leases and the decision log, on Redis."""
