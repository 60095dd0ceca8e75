"""Duplicate groups from similar pairs: connected components, the member each group keeps (a rule from KEEP_RULES),
and the threshold that leaves a given number of groups.

A group is a connected component of the graph whose edges are the similar pairs, so duplication is transitive:
with A~B and B~C, A, B and C are one group even when A and C are not similar. Each group keeps exactly one member;
a sample without a similar pair is a group of its own and is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from curate.copydetect.search import TOLERANCE
from curate.errors import UsageError
from curate.rundir import RunDir


def components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Returns each of the n rows' component label (0..c-1, numbered in order of each component's first row) in
    the undirected graph whose edges are the pairs (i, j)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if n == 0:
        return np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n)).tocsr()
    labels = connected_components(graph, directed=False)[1].astype(np.int64)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    renumber = np.empty(len(first), np.int64)
    renumber[np.argsort(first, kind="stable")] = np.arange(len(first))
    return renumber[inverse.reshape(-1)]


def count_components(n: int, i: np.ndarray, j: np.ndarray) -> int:
    """Returns the number of connected components of the n rows joined by the pairs (i, j)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n)).tocsr()
    return int(connected_components(graph, directed=False)[0])


def threshold_for_count(n: int, i: np.ndarray, j: np.ndarray, sims: np.ndarray, count: int) -> float | None:
    """Returns the highest similarity t among the pairs such that linking the pairs with sim >= t - TOLERANCE
    leaves at most `count` components of the n rows: the similarity of the link that brings the count there when
    the pairs are added in descending similarity (Kruskal), found by bisection over the sorted similarities.
    Returns None when no link is needed (count >= n); raises ValueError when all the pairs leave more than
    `count`. Links tied with the deciding one (within TOLERANCE) all join, so ties leave fewer than `count`."""
    if count >= n:
        return None
    order = np.argsort(-sims, kind="stable")
    ordered = sims[order]
    ascending = ordered[::-1]

    def components_at(m: int) -> int:  # components when every pair with sim >= ordered[m] - TOLERANCE links
        linked = len(ordered) - np.searchsorted(ascending, ordered[m] - TOLERANCE, side="left")
        return count_components(n, i[order[:linked]], j[order[:linked]])

    if len(ordered) == 0 or components_at(len(ordered) - 1) > count:
        raise ValueError(f"the {len(ordered)} pairs leave more than {count} components")
    low, high = 0, len(ordered) - 1  # the answer is the smallest m with components_at(m) <= count
    while low < high:
        middle = (low + high) // 2
        if components_at(middle) <= count:
            high = middle
        else:
            low = middle + 1
    return float(ordered[low])


def _first(run: RunDir, uids: pa.Array, argument: str | None) -> np.ndarray:
    """Returns the rows' ranks in pool order: the earliest row is kept."""
    return np.arange(len(uids), dtype=np.int64)


def _highest(run: RunDir, uids: pa.Array, column: str | None) -> np.ndarray:
    """Returns the rows' ranks by the samples column `column`, highest first, NULL (or no samples row) last, ties
    in pool order; raises UsageError for an unknown column."""
    from curate.catalogs import connect
    from curate.catalogs.views import quoted, require_columns

    require_columns(run, [column])
    con = connect(run)
    try:
        con.register("neardup_pool_rows", pa.table({"uid": uids, "pool_row": np.arange(len(uids), dtype=np.int64)}))
        order = con.execute(f"SELECT p.pool_row FROM neardup_pool_rows AS p LEFT JOIN samples AS s ON s.uid = p.uid"
                            f" ORDER BY s.{quoted(column)} DESC NULLS LAST, p.pool_row").fetchnumpy()["pool_row"]
    finally:
        con.close()
    _, first = np.unique(order, return_index=True)  # a uid listed twice in samples counts at its best place
    rank = np.empty(len(uids), np.int64)
    rank[np.asarray(order)[np.sort(first)]] = np.arange(len(uids))
    return rank


# --keep rule name -> (run, uids of the input rows, the text after "name:") -> each row's rank, 0 = kept first.
KEEP_RULES: dict[str, Callable[[RunDir, pa.Array, str | None], np.ndarray]] = {
    "first": _first,
    "highest": _highest,
}


def parse_keep(rule: str) -> tuple[str, str | None]:
    """Returns (rule name, its argument or None) of a --keep rule such as first or highest:dfn_score; raises
    UsageError for an unknown rule."""
    name, _, argument = rule.partition(":")
    if name not in KEEP_RULES:
        raise UsageError(f"unknown --keep rule {rule!r}; use first or highest:<column> (e.g. highest:dfn_score)")
    if name == "highest" and not argument:
        raise UsageError("--keep highest:<column> needs a column of the samples view, e.g. highest:dfn_score")
    if name == "first" and argument:
        raise UsageError(f"--keep first takes no column, got {rule!r}")
    return name, argument or None


def keep_rank(run: RunDir, uids: pa.Array, rule: str) -> np.ndarray:
    """Returns each row's rank under the --keep rule (0 is the member a group keeps first), the rows being the
    samples `uids` in pool order; raises UsageError for a bad rule or unknown column."""
    name, argument = parse_keep(rule)
    return KEEP_RULES[name](run, uids, argument)


@dataclass
class Groups:
    """Duplicate groups of n rows: each row's group (-1 for a row with no similar pair), the row its group keeps
    (itself for kept rows), and each group's size."""

    group: np.ndarray
    kept: np.ndarray
    sizes: np.ndarray

    @property
    def keep(self) -> np.ndarray:
        """Returns whether each row is the one its group keeps (singletons are)."""
        return self.kept == np.arange(len(self.kept))


def duplicate_groups(n: int, i: np.ndarray, j: np.ndarray, rank: np.ndarray) -> Groups:
    """Returns the Groups of n rows linked by the pairs (i, j), each keeping its member of lowest `rank`. Groups
    (of two or more rows) are numbered 0.. in the order of their first row."""
    labels = components(n, i, j)
    sizes = np.bincount(labels, minlength=labels.max() + 1 if n else 0)
    order = np.lexsort((rank, labels))  # by group, then rank
    first = np.ones(n, bool)
    first[1:] = labels[order][1:] != labels[order][:-1]
    winner = np.empty(len(sizes), np.int64)
    winner[labels[order][first]] = order[first]
    grouped = sizes[labels] > 1
    number = np.cumsum(sizes > 1) - 1  # components are numbered by first row, so this keeps that order
    group = np.where(grouped, number[labels], -1)
    return Groups(group=group.astype(np.int64), kept=winner[labels], sizes=sizes[sizes > 1])
