"""Density-based pruning, DBP (Abbas et al. 2024): each concept cluster keeps a share set by its complexity.

Runs on what remains after the earlier steps (by default the SemDeDup survivors when SemDeDup has run; any
SQL predicate with --where, e.g. "semdedup_keep AND dfn_keep"), on the same k-means clusters. The number kept
is int(N_pool * keep_fraction), N_pool being every embedded sample, so fractions compare with the DFN filter's.
Columns in the samples view: dbp_keep (NULL for samples DBP was not given); the `clusters` view gains each
cluster's input size, d_intra, d_inter, complexity, probability and quota.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from curate.concepts.clustering import ClusterMethod
from curate.concepts.members import MEMBER_ORDERS
from curate.concepts.quotas import DEFAULT_NEIGHBORS, DEFAULT_TAU, complexity, keep_in_clusters, quotas
from curate.graph import entries
from curate.options import option, positive_float, positive_int
from curate.rundir import RunDir
from curate.stages.pool import Pool, PoolResult


@dataclass(frozen=True, kw_only=True)
class DBP(ClusterMethod):
    """DBP over the embedded samples `where` selects (default: SemDeDup's survivors when SemDeDup ran)."""

    name = "dbp"
    columns = ("dbp_keep",)
    hint = "curate filter dbp RUN --keep-fraction F"

    keep_fraction: float = option(help="keep int(N * this) samples, N = every embedded sample of the run")
    where: str | None = option(None, "SQL predicate choosing DBP's input (default: semdedup_keep if SemDeDup ran)")
    tau: float = option(DEFAULT_TAU, "softmax temperature", type=positive_float)
    neighbors: int = option(DEFAULT_NEIGHBORS, "nearest centroids in d_inter", type=positive_int)
    keep: str = option("hard", "which members a cluster keeps: hard (farthest from the centroid), easy, random",
                       choices=tuple(MEMBER_ORDERS))
    seed: int = option(0, "seed of keep=random")

    def input_predicate(self, run: RunDir) -> str | None:
        """Returns --where, else the SemDeDup survivors when the run has SemDeDup, else None (everything)."""
        if self.where is not None:
            return self.where
        return "semdedup_keep" if "semdedup" in entries(run) else None

    def compute(self, pool: Pool) -> PoolResult:
        """Returns dbp_keep for the input rows, and each cluster's complexity and quota."""
        clustering = self.clustering(pool)
        rows = pool.rows
        target = int(len(pool.index) * self.keep_fraction)
        stats = complexity(clustering.centroids, clustering.assignment[rows], clustering.distance[rows],
                           self.neighbors, self.tau)
        quota = quotas(stats.probability, stats.size, target)
        kept = np.zeros(len(pool.index), dtype=bool)
        kept[np.flatnonzero(rows)] = keep_in_clusters(clustering.assignment[rows], clustering.distance[rows], quota,
                                                      self.keep, self.seed)
        clusters = pa.table({
            "cluster_id": pa.array(np.arange(len(quota), dtype=np.int32)), "dbp_input": pa.array(stats.size),
            "d_intra": pa.array(stats.d_intra), "d_inter": pa.array(stats.d_inter),
            "complexity": pa.array(stats.complexity), "probability": pa.array(stats.probability),
            "quota": pa.array(quota),
        })
        counts = dict(input=int(rows.sum()), kept=int(kept.sum()), dropped=int(rows.sum() - kept.sum()),
                      pool=len(pool.index), clusters=len(quota))
        return PoolResult({"dbp_keep": kept}, counts, clusters)
