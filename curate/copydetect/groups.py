"""Duplicate groups from similar pairs: connected components, the member each group keeps, and the threshold
that keeps a given share of the pool."""

from __future__ import annotations

import numpy as np


def components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Returns each of the n rows' component label (0..c-1) in the graph whose edges are the pairs (i, j)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)


def kept_rows(labels: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """Returns, per row, the row its group keeps: the member with the highest priority (NaN lowest), ties to the
    earliest row."""
    rows = np.arange(len(labels))
    rank = np.where(np.isnan(priority), -np.inf, priority)
    order = np.lexsort((rows, -rank, labels))
    first = np.ones(len(order), dtype=bool)
    first[1:] = labels[order][1:] != labels[order][:-1]
    winner = np.empty(labels.max() + 1 if len(labels) else 0, dtype=np.int64)
    winner[labels[order][first]] = order[first]
    return winner[labels]


def threshold_for_fraction(n: int, i: np.ndarray, j: np.ndarray, sims: np.ndarray, fraction: float) -> float:
    """Returns the similarity threshold at which the pairs' components number round(fraction * n) (one sample
    kept per group): union-find over the pairs in descending similarity (Kruskal), the similarity of the merge
    that reaches the count; +inf when the pool already has no more components than that. With ties at that
    similarity, more merges may happen and a little less than the fraction is kept."""
    target = max(1, round(fraction * n))
    parent = np.arange(n)

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    count = n
    for edge in np.argsort(-sims, kind="stable"):
        if count <= target:
            break
        a, b = root(int(i[edge])), root(int(j[edge]))
        if a != b:
            parent[max(a, b)] = min(a, b)
            count -= 1
            if count == target:
                return float(sims[edge])
    return float("inf") if count >= n else float(sims[np.argsort(-sims, kind="stable")][-1])
