"""Density-based pruning, DBP (Abbas et al. 2024): each concept cluster keeps a share set by its complexity.

For cluster j with members M_j (the samples DBP is given) and normalized centroid c_j:
  d_intra(j) = mean cosine distance of M_j to c_j;  d_inter(j) = mean cosine distance of c_j to its l nearest
  other centroids;  C_j = d_inter * d_intra (NaN, e.g. an empty cluster, replaced by the mean);
  P = softmax(C / tau);  quotas x = argmin ||x - N P||^2 s.t. sum x = N, lb_j <= x_j <= |M_j|.
The quadratic program's solution is x_j = clip(N P_j + lambda, lb_j, |M_j|) with one lambda, found by bisection;
integer rounding then gives the largest fractional parts the remaining units so the sum stays exactly N.
Within a cluster the x_j hardest members (farthest from the centroid) are kept, or the easiest, or random ones.
Defaults from the paper and its code: l = 20, tau = 0.1, lb_j = 1 (0 for a cluster with no members).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curate.concepts.members import cluster_members
from curate.errors import UsageError

DEFAULT_NEIGHBORS = 20
DEFAULT_TAU = 0.1
BISECTION_STEPS = 200


@dataclass
class ClusterComplexity:
    """Per cluster: input size, d_intra, d_inter, complexity C (NaN filled), softmax probability."""

    size: np.ndarray
    d_intra: np.ndarray
    d_inter: np.ndarray
    complexity: np.ndarray
    probability: np.ndarray


def inter_distance(centroids: np.ndarray, neighbors: int) -> np.ndarray:
    """Returns each centroid's mean cosine distance to its `neighbors` nearest other centroids (NaN if k = 1)."""
    k = len(centroids)
    if k == 1:
        return np.full(1, np.nan)
    distance = 1 - centroids.astype(np.float64) @ centroids.astype(np.float64).T
    np.fill_diagonal(distance, np.inf)
    l_nearest = min(neighbors, k - 1)
    nearest = np.partition(distance, l_nearest - 1, axis=1)[:, :l_nearest]
    return nearest.mean(axis=1)


def complexity(centroids: np.ndarray, assignment: np.ndarray, distance: np.ndarray, neighbors: int = DEFAULT_NEIGHBORS,
               tau: float = DEFAULT_TAU) -> ClusterComplexity:
    """Returns the ClusterComplexity of the members given (rows: cluster id, cosine distance to its centroid)."""
    k = len(centroids)
    return cluster_complexity(centroids, np.bincount(assignment, minlength=k),
                              np.bincount(assignment, weights=distance.astype(np.float64), minlength=k), neighbors, tau)


def cluster_complexity(centroids: np.ndarray, size: np.ndarray, distance_sum: np.ndarray,
                       neighbors: int = DEFAULT_NEIGHBORS, tau: float = DEFAULT_TAU) -> ClusterComplexity:
    """Returns the ClusterComplexity from per-cluster figures: members given and their summed distance."""
    if neighbors < 1 or not tau > 0:
        raise UsageError(f"--neighbors must be >= 1 and --tau > 0 (got {neighbors}, {tau})")
    with np.errstate(invalid="ignore", divide="ignore"):
        d_intra = distance_sum / size
    d_inter = inter_distance(centroids, neighbors)
    value = d_inter * d_intra
    value = np.where(np.isnan(value), np.nanmean(value) if np.isfinite(value).any() else 0.0, value)
    logits = value / tau
    probability = np.exp(logits - logits.max())
    return ClusterComplexity(size, d_intra, d_inter, value, probability / probability.sum())


def quotas(probability: np.ndarray, size: np.ndarray, total: int, lower: int = 1) -> np.ndarray:
    """Returns integer quotas x (sum exactly `total`, min(lower, size_j) <= x_j <= size_j) nearest to total * P.

    Raises UsageError when no such x exists: total above the members given or below the clusters' floors.
    """
    size = size.astype(np.int64)
    lb, ub = np.minimum(lower, size).astype(np.float64), size.astype(np.float64)
    if total > ub.sum():
        raise UsageError(f"DBP cannot keep {total} samples from {int(ub.sum())}, all its input holds; pass a smaller "
                         "--keep-fraction (of the whole embedded pool) or a --where that selects more")
    if total < lb.sum():
        raise UsageError(f"DBP cannot keep {total} samples from {int(ub.sum())} in {int((size > 0).sum())} non-empty"
                         f" clusters (each keeps at least {lower}); change --keep-fraction or --clusters")
    target = total * probability

    def filled(lam: float) -> np.ndarray:
        return np.clip(target + lam, lb, ub)

    low, high = float((lb - target).min()), float((ub - target).max())
    for _ in range(BISECTION_STEPS):
        mid = (low + high) / 2
        low, high = (mid, high) if filled(mid).sum() < total else (low, mid)
    return round_to_total(filled(high), ub.astype(np.int64), total)


def round_to_total(x: np.ndarray, upper: np.ndarray, total: int) -> np.ndarray:
    """Returns floor(x) plus one for the largest fractional parts (below `upper`), summing exactly to `total`."""
    base = np.minimum(np.floor(x + 1e-9).astype(np.int64), upper)
    missing = total - int(base.sum())
    fraction = np.where(base < upper, x - base, -np.inf)
    order = np.lexsort((np.arange(len(x)), -fraction))  # largest fraction first, ties by cluster id
    if missing > 0:
        base[order[:missing]] += 1
    elif missing < 0:
        surplus = np.lexsort((np.arange(len(x)), x - base))  # smallest fractional part gives back first
        base[surplus[base[surplus] > 0][:-missing]] -= 1
    return base


def keep_in_clusters(assignment: np.ndarray, distance: np.ndarray, quota: np.ndarray, keep: str,
                     seed: int) -> np.ndarray:
    """Returns a boolean mask keeping quota[j] members of each cluster j: the hardest (farthest from the
    centroid), the easiest, or random ones (seeded by (seed, cluster)); ties by row order."""
    mask = np.zeros(len(assignment), dtype=bool)
    for cluster, rows in enumerate(cluster_members(assignment, distance, keep, seed)):
        if cluster < len(quota):
            mask[rows[: quota[cluster]]] = True
    return mask
