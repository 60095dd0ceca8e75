"""The order of a concept cluster's members that SemDeDup and DBP walk: hardest first (farthest from the
centroid), easiest first, or a seeded shuffle."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from curate.errors import UsageError


def order_hard(distance: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Returns member positions farthest-from-centroid first (ties in member order)."""
    return np.argsort(-distance, kind="stable")


def order_easy(distance: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Returns member positions nearest-to-centroid first (ties in member order)."""
    return np.argsort(distance, kind="stable")


def order_random(distance: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Returns member positions in a seeded random order."""
    return rng.permutation(len(distance))


MEMBER_ORDERS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "hard": order_hard, "easy": order_easy, "random": order_random,
}


def cluster_members(assignment: np.ndarray, distance: np.ndarray, keep: str, seed: int) -> list[np.ndarray]:
    """Returns, per cluster id, the row indices of its members in SemDeDup order (see the module docstring)."""
    by_cluster = np.argsort(assignment, kind="stable")
    members = [np.zeros(0, np.int64)] * (int(assignment.max(initial=-1)) + 1)
    for cluster, rows in sorted_members(assignment[by_cluster], distance[by_cluster], keep, seed):
        members[cluster] = by_cluster[rows]
    return members


def segments(ids: np.ndarray) -> list[tuple[int, int]]:
    """Returns the (start, end) row spans of the runs of equal values in `ids` (rows grouped by id), in order."""
    if not len(ids):
        return []
    starts = np.flatnonzero(np.diff(ids, prepend=ids[0] - 1)).tolist()
    return list(zip(starts, [*starts[1:], len(ids)], strict=True))


def sorted_members(cluster: np.ndarray, distance: np.ndarray, keep: str, seed: int) -> list[tuple[int, np.ndarray]]:
    """Returns (cluster id, row indices in SemDeDup order) for each cluster present in rows already grouped by
    cluster (in row order within each, as a partition bucket holds them)."""
    if keep not in MEMBER_ORDERS:
        raise UsageError(f"unknown --keep {keep!r}; choose one of {', '.join(MEMBER_ORDERS)}")
    order = MEMBER_ORDERS[keep]
    out = []
    for start, end in segments(cluster):
        rows = np.arange(start, end)
        rng = np.random.default_rng([seed, int(cluster[start])])
        out.append((int(cluster[start]), rows[order(distance[rows], rng)]))
    return out
