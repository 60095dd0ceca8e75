"""Density-based pruning, DBP (Abbas et al. 2024): each concept cluster keeps a share set by its complexity.

Runs on what remains after the earlier steps (by default the SemDeDup survivors when SemDeDup has run; any
SQL predicate with --where, e.g. "semdedup_keep AND dfn_keep"), on the same k-means clusters. The number kept
is int(N * keep_fraction), N its input; `--fraction-of pool` makes N every embedded sample, as the paper states
DBP's kept sizes against the whole pool after SemDeDup.
Columns in the samples view: dbp_keep (NULL for samples DBP was not given); the `clusters` view gains each
cluster's input size, d_intra, d_inter, complexity, probability and quota.

On the partition: the catalog counts the input per cluster (d_intra from the same pass), the driver solves the
quotas from per-cluster figures, the input's uids are routed to one file per bucket in one streamed pass, and one
task per bucket keeps each cluster's quota, reading only the bucket's uids and distances.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from curate.catalogs import connect
from curate.catalogs.selection import selected_query
from curate.concepts.clustering import CLUSTERS, EMBEDDED, ClusterMethod, bucket_input, route_selection
from curate.concepts.members import MEMBER_ORDERS
from curate.concepts.partition import Partition
from curate.concepts.quotas import (
    DEFAULT_NEIGHBORS,
    DEFAULT_TAU,
    ClusterComplexity,
    cluster_complexity,
    keep_in_clusters,
    quotas,
)
from curate.graph import entries
from curate.options import option, positive_float, positive_int
from curate.rundir import RunDir
from curate.runners import Runner
from curate.stages.pool import FractionOf

INPUTS = "partitions/dbp"


@dataclass(frozen=True)
class Quotas:
    """What DBP decided before writing: each cluster's complexity and how many of its input it keeps."""

    stats: ClusterComplexity
    quota: np.ndarray


@dataclass(frozen=True, kw_only=True)
class DBP(FractionOf, ClusterMethod):
    """DBP over the embedded samples `where` selects (default: SemDeDup's survivors when SemDeDup ran)."""

    name = "dbp"
    columns = ("dbp_keep",)
    hint = "curate filter dbp RUN --keep-fraction F"

    keep_fraction: float = option(help="keep int(N * this) samples, N its input (or the pool: --fraction-of)")
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

    def plan(self, run: RunDir, partition: Partition, where: str | None, runner: Runner) -> Quotas:
        """Returns each cluster's complexity and quota from the input's per-cluster size and summed distance;
        raises UsageError for a predicate that fails or quotas no input can meet."""
        k = len(partition.centroids)
        size, distance = np.zeros(k, np.int64), np.zeros(k)
        con = connect(run)
        try:
            suffix = f"AND {EMBEDDED} GROUP BY cluster_id"
            for batch in selected_query(con, where, "cluster_id, count(*), sum(dist_to_centroid::DOUBLE)", suffix):
                cluster, count, total = (batch.column(i).to_numpy(zero_copy_only=False) for i in range(3))
                size[cluster], distance[cluster] = count, total
        finally:
            con.close()
        stats = cluster_complexity(partition.centroids, size, distance, self.neighbors, self.tau)
        total = self.kept_total(self.keep_fraction, int(size.sum()), int(partition.sizes.sum()))
        return Quotas(stats, quotas(stats.probability, size, total))

    def write(self, run: RunDir, partition: Partition, plan: Quotas, runner: Runner) -> tuple[dict, dict]:
        """Routes the input's uids to their buckets, keeps each cluster's quota; returns counts and quotas."""
        inputs = route_selection(run, self.input_predicate(run), partition, INPUTS)
        items = [(str(path), str(selected)) for path, selected in zip(partition.bucket_files(run), inputs, strict=True)]
        kept = sum(runner.map(_keep_bucket, (str(run.path), plan.quota, self.keep, self.seed), items,
                              desc="dbp"))
        stats, total = plan.stats, int(plan.stats.size.sum())
        clusters = pa.table({
            "cluster_id": pa.array(np.arange(len(plan.quota), dtype=np.int32)), "dbp_input": pa.array(stats.size),
            "d_intra": pa.array(stats.d_intra), "d_inter": pa.array(stats.d_inter),
            "complexity": pa.array(stats.complexity), "probability": pa.array(stats.probability),
            "quota": pa.array(plan.quota),
        })
        counts = dict(input=total, kept=int(kept), dropped=total - int(kept), pool=int(partition.sizes.sum()),
                      clusters=len(plan.quota))
        return counts, {CLUSTERS: clusters}


def _keep_bucket(shared: tuple, item: tuple) -> int:
    """Writes a bucket's dbp scores (its input rows only); returns how many it kept."""
    run_path, quota, keep, seed = shared
    bucket, selected = item
    table = bucket_input(bucket, selected, ["uid", "cluster_id", "dist_to_centroid"])
    kept = keep_in_clusters(table["cluster_id"].to_numpy(), table["dist_to_centroid"].to_numpy(), quota, keep, seed)
    RunDir(run_path).write_table(f"scores/dbp/{os.path.basename(bucket)}", pa.table(
        {"uid": table["uid"], "dbp_keep": pa.array(kept)}))
    return int(kept.sum())
