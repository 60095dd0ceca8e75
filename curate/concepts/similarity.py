"""SemDeDup's search (Abbas et al. 2023): each member's highest similarity to an earlier member of its cluster.

Within a cluster the members are put in an order (keep="hard", the default: farthest from the centroid first;
"easy": nearest first; "random": a shuffle seeded by (seed, cluster)). Member j is removed iff its highest
cosine similarity to any earlier member in that order exceeds 1 - eps. This is the reference rule, not a
transitive closure: with A~B and B~C but not A~C, both B and C go (C is compared with B even though B goes).
The first member of every cluster, singletons included, is always kept.

Similarities are computed in blocks of rows against their prefix, so memory stays bounded for a cluster of any
size, and every pair (i < j) is compared exactly once: no duplicate is missed at a block edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curate.errors import UsageError
from curate.stages.ranks import ColumnRanks

# Similarity block budget in float32 entries (128 MiB): a cluster of 100,000 members runs in blocks of 335 rows.
BLOCK_ENTRIES = 1 << 25


def earlier_max_similarity(x: np.ndarray, block_entries: int = BLOCK_ENTRIES) -> tuple[np.ndarray, np.ndarray]:
    """Returns (best, which) for rows of x in order: each row's highest cosine similarity to an earlier row and
    that row's position (the first one on ties); NaN and -1 for row 0, which has no earlier row."""
    n = len(x)
    best = np.full(n, np.nan, dtype=np.float32)
    which = np.full(n, -1, dtype=np.int64)
    rows = max(1, min(n, block_entries // max(n, 1)))
    for start in range(1, n, rows):
        end = min(n, start + rows)
        sims = x[start:end] @ x[:end].T
        diagonal = sims[:, start:]  # row r is member start + r; it may only see members before it
        diagonal[np.triu_indices(end - start)] = -np.inf
        which[start:end] = sims.argmax(axis=1)
        best[start:end] = sims[np.arange(end - start), which[start:end]]
    return best, which


def cluster_similarities(x: np.ndarray, members: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Returns earlier_max_similarity for each cluster's members (row indices into x, in SemDeDup order), with
    the earlier member given as a row index into x (-1 for none)."""
    out = []
    for rows in members:
        best, which = earlier_max_similarity(np.ascontiguousarray(x[rows]))
        out.append((best, np.where(which >= 0, rows[which], -1)))
    return out


@dataclass
class DuplicateScores:
    """Per row: its highest similarity to an earlier member of its cluster (NaN for a cluster's first member),
    and that member's row (-1 for none)."""

    max_similarity: np.ndarray
    earlier_row: np.ndarray

    def keep(self, eps: float) -> np.ndarray:
        """Returns the rows SemDeDup keeps at eps (kept_at)."""
        return kept_at(self.max_similarity, eps)


def kept_at(max_similarity: np.ndarray, eps: float) -> np.ndarray:
    """Returns SemDeDup's keep flags at eps: a row is kept unless an earlier member of its cluster has similarity
    > 1 - eps to it (NaN, a cluster's first member, is kept)."""
    return ~(max_similarity > np.float32(1 - eps))


def gather_scores(n: int, members: list[np.ndarray], results: list[tuple[np.ndarray, np.ndarray]]) -> DuplicateScores:
    """Returns the DuplicateScores of n rows from the per-cluster results of cluster_similarities."""
    scores = DuplicateScores(np.full(n, np.nan, dtype=np.float32), np.full(n, -1, dtype=np.int64))
    for rows, (best, earlier) in zip(members, results, strict=True):
        scores.max_similarity[rows] = best
        scores.earlier_row[rows] = earlier
    return scores


def eps_for_fraction(total: int, similarities: ColumnRanks, fraction: float) -> float:
    """Returns the eps whose SemDeDup keeps int(total * fraction) of `total` samples, or the fewest above that when
    ties decide; `similarities` ranks the scored samples' highest similarities (a cluster's first member has none).

    Kept samples are those with max_similarity <= 1 - eps (a cluster's first member is always kept), so the
    threshold is read off the ranked similarities: no trial runs. Raises UsageError for a fraction that would need
    fewer samples than there are clusters.
    """
    if not 0 < fraction <= 1:
        raise UsageError(f"--keep-fraction must be in (0, 1], got {fraction}")
    target = int(total * fraction)
    scored = len(similarities)
    firsts = total - scored
    if target < firsts:
        raise UsageError(f"--keep-fraction {fraction} keeps {target} samples, fewer than the {firsts} clusters"
                         " (SemDeDup keeps one per cluster): raise it or pass fewer --clusters")
    if target - firsts >= scored:
        return 0.0 if scored == 0 else 1.0 - similarities.kth_smallest(scored)
    if target == firsts:
        return 1.0 - float(np.nextafter(np.float32(similarities.kth_smallest(1)), np.float32(-np.inf)))
    return 1.0 - similarities.kth_smallest(target - firsts)
