"""SemDeDup (Abbas et al. 2023): drop semantic duplicates within concept clusters of the run's embeddings.

Columns in the samples view: cluster_id and dist_to_centroid (the shared k-means), semdedup_max_sim (highest
cosine similarity to an earlier member of the cluster in SemDeDup's order; NULL for the first), semdedup_dup_of
(the uid of that member, for removed samples) and semdedup_keep. `--keep-fraction` finds the eps that keeps
that share of the embedded pool, exactly, from the similarities (no trial runs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from curate.concepts.clustering import ClusterMethod
from curate.concepts.members import MEMBER_ORDERS, cluster_members
from curate.concepts.similarity import (
    DuplicateScores,
    cluster_similarities,
    eps_for_fraction,
    gather_scores,
    task_groups,
)
from curate.errors import UsageError
from curate.options import option
from curate.stages.pool import Pool, PoolResult

# Per-cluster searches are dealt into at most this many tasks of similar work.
TASKS = 64


@dataclass(frozen=True, kw_only=True)
class SemDeDup(ClusterMethod):
    """SemDeDup over every embedded sample of the run."""

    name = "semdedup"
    columns = ("semdedup_max_sim", "semdedup_dup_of", "semdedup_keep")
    uses_runner = True
    hint = "curate filter semdedup RUN --eps E"

    eps: float | None = option(None, "remove a sample whose similarity to an earlier one is > 1 - eps", group="eps")
    keep_fraction: float | None = option(None, "find the eps that keeps this share of the pool", group="eps")
    keep: str = option("hard", "which member of a duplicate group stays: hard (farthest from the centroid), easy, "
                       "random", choices=tuple(MEMBER_ORDERS))
    seed: int = option(0, "seed of keep=random")

    def validate(self) -> None:
        """Raises UsageError unless exactly one of eps and keep_fraction is given, eps within [0, 2]."""
        if (self.eps is None) == (self.keep_fraction is None):
            raise UsageError("give exactly one of --eps or --keep-fraction")
        if self.eps is not None and not 0 <= self.eps <= 2:
            raise UsageError(f"--eps must be in [0, 2] (1 - cosine similarity), got {self.eps}")

    def duplicate_scores(self, pool: Pool) -> tuple[int, np.ndarray, DuplicateScores]:
        """Returns (clusters, assignment, DuplicateScores), the per-cluster search spread over the runner."""
        clustering = self.clustering(pool)
        members = cluster_members(clustering.assignment, clustering.distance, self.keep, self.seed)
        groups = task_groups(members, TASKS)
        results = pool.runner.map(cluster_similarities, pool.embeddings(self.embedding).vectors, groups,
                                  desc="semdedup")
        flat_members = [rows for group in groups for rows in group]
        flat_results = [result for group in results for result in group]
        scores = gather_scores(len(pool.index), flat_members, flat_results)
        return len(clustering.centroids), clustering.assignment, scores

    def compute(self, pool: Pool) -> PoolResult:
        """Returns each sample's highest similarity, the uid it duplicates when dropped, and semdedup_keep."""
        k, assignment, scores = self.duplicate_scores(pool)
        eps = self.eps if self.eps is not None else eps_for_fraction(scores.max_similarity, self.keep_fraction)
        kept = scores.keep(eps)
        dup_rows = np.where(kept, -1, scores.earlier_row)
        dup_of = pool.index.uids.take(pa.array(np.maximum(dup_rows, 0))).to_numpy(zero_copy_only=False)
        per_cluster = np.bincount(assignment, weights=kept, minlength=k).astype(np.int64)
        return PoolResult(
            columns={
                "semdedup_max_sim": pa.array(scores.max_similarity, mask=np.isnan(scores.max_similarity)),
                "semdedup_dup_of": pa.array(dup_of, pa.string(), mask=dup_rows < 0),
                "semdedup_keep": pa.array(kept),
            },
            counts=dict(scored=len(kept), kept=int(kept.sum()), dropped=int((~kept).sum()), eps=eps, clusters=k),
            clusters=pa.table({"cluster_id": pa.array(np.arange(k, dtype=np.int32)),
                               "semdedup_kept": pa.array(per_cluster)}),
        )
