"""A deterministic train/eval split in which near duplicates never straddle the line.

Items are grouped by near-duplicate prompts (MinHash LSH over word 3-shingles, verified with
the true Jaccard), and each group goes to eval when the hash of its smallest id falls under the
fraction. The same items always split the same way, whatever their order.
"""

from __future__ import annotations

import hashlib

from datasketch import MinHash, MinHashLSH

from generator.filters.text import jaccard, shingles

SHINGLE = 3
NUM_PERM = 64


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def near_duplicate_groups(keys: list[str], prompts: list[str], threshold: float) -> list[int]:
    """For each item, the index of its group's representative."""
    parent = list(range(len(prompts)))
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    sets = [shingles(p, SHINGLE) for p in prompts]
    for index, grams in enumerate(sets):
        minhash = MinHash(num_perm=NUM_PERM)
        minhash.update_batch([gram.encode() for gram in grams])
        for other in lsh.query(minhash):
            if jaccard(grams, sets[int(other)]) >= threshold:
                parent[_find(parent, index)] = _find(parent, int(other))
        lsh.insert(str(index), minhash)
    return [_find(parent, i) for i in range(len(prompts))]


def in_eval(key: str, fraction: float) -> bool:
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split(
    keys: list[str], prompts: list[str], fraction: float, threshold: float = 0.7
) -> list[bool]:
    """Per item: True for eval. Near-duplicate prompts share a side."""
    if fraction <= 0:
        return [False] * len(keys)
    groups = near_duplicate_groups(keys, prompts, threshold)
    smallest: dict[int, str] = {}
    for key, group in zip(keys, groups, strict=True):
        if group not in smallest or key < smallest[group]:
            smallest[group] = key
    return [in_eval(smallest[g], fraction) for g in groups]
