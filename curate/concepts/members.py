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
    if keep not in MEMBER_ORDERS:
        raise UsageError(f"unknown --keep {keep!r}; choose one of {', '.join(MEMBER_ORDERS)}")
    order = MEMBER_ORDERS[keep]
    by_cluster = np.argsort(assignment, kind="stable")
    bounds = np.searchsorted(assignment[by_cluster], np.arange(int(assignment.max(initial=-1)) + 2))
    members = []
    for cluster in range(len(bounds) - 1):
        rows = by_cluster[bounds[cluster]:bounds[cluster + 1]]
        members.append(rows[order(distance[rows], np.random.default_rng([seed, cluster]))])
    return members
