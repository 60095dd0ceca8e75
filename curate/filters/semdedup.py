"""SemDeDup (Abbas et al. 2023): drop semantic duplicates within concept clusters of the run's embeddings.

Columns in the samples view: cluster_id and dist_to_centroid (the shared k-means), semdedup_max_sim (highest
cosine similarity to an earlier member of the cluster in SemDeDup's order; NULL for the first), semdedup_dup_of
(the uid of that member, for removed samples) and semdedup_keep. `--keep-fraction` finds the eps that keeps
that share of the embedded pool, exactly, from the similarities (no trial runs).

On the partition: one task per bucket searches its clusters and writes partitions/semdedup/<bucket>.parquet (each
member's highest similarity and the uid of that earlier member); the eps of --keep-fraction is an exact rank
over those files; a second task per bucket writes scores/semdedup/<bucket>.parquet with the decisions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.concepts.clustering import CLUSTERS, ClusterMethod
from curate.concepts.members import MEMBER_ORDERS, sorted_members
from curate.concepts.partition import Partition
from curate.concepts.similarity import cluster_similarities, eps_for_fraction, gather_scores, kept_at
from curate.errors import UsageError
from curate.options import option
from curate.rundir import RunDir
from curate.runners import Runner, quiet
from curate.stages.embeddings import normalized, unpacked
from curate.stages.ranks import ColumnRanks

SEARCHES = "partitions/semdedup"


@dataclass(frozen=True, kw_only=True)
class SemDeDup(ClusterMethod):
    """SemDeDup over every embedded sample of the run."""

    name = "semdedup"
    columns = ("semdedup_max_sim", "semdedup_dup_of", "semdedup_keep")
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

    def plan(self, run: RunDir, partition: Partition, where: str | None, runner: Runner) -> None:
        """Raises UsageError when --keep-fraction keeps fewer samples than there are clusters (each keeps its
        first member); returns nothing."""
        if self.keep_fraction is not None:
            total, firsts = int(partition.sizes.sum()), int((partition.sizes > 0).sum())
            if int(total * self.keep_fraction) < firsts:
                raise UsageError(f"--keep-fraction {self.keep_fraction} keeps {int(total * self.keep_fraction)} "
                                 f"samples, fewer than the {firsts} clusters (SemDeDup keeps one per cluster): raise "
                                 "it or pass fewer --clusters")

    def write(self, run: RunDir, partition: Partition, plan: None, runner: Runner) -> tuple[dict, dict]:
        """Searches every bucket, finds eps, writes the decisions; returns the counts and kept per cluster."""
        buckets = [(str(path), f"{SEARCHES}/{path.name}") for path in partition.bucket_files(run)]
        runner.map(_search_bucket, (str(run.path), self.keep, self.seed), buckets, desc="semdedup")
        searches = [run.path / relative for _, relative in buckets]
        total = int(partition.sizes.sum())
        eps = self.eps
        if eps is None:
            eps = eps_for_fraction(total, ColumnRanks(quiet(runner), searches, "semdedup_max_sim"), self.keep_fraction)
        k = len(partition.centroids)
        kept = np.sum(quiet(runner).map(_decide_bucket, (str(run.path), eps, k), [str(p) for p in searches],
                                 desc="semdedup keep"), axis=0) if searches else np.zeros(k, np.int64)
        counts = dict(scored=total, kept=int(kept.sum()), dropped=total - int(kept.sum()), eps=eps, clusters=k)
        return counts, {CLUSTERS: pa.table({"cluster_id": pa.array(np.arange(k, dtype=np.int32)),
                                            "semdedup_kept": pa.array(kept.astype(np.int64))})}


def _search_bucket(shared: tuple, item: tuple) -> None:
    """Writes each member's highest similarity to an earlier member of its cluster, and that member's uid (once)."""
    run_path, keep, seed = shared
    bucket, relative = item
    run = RunDir(run_path)
    if (run.path / relative).exists():
        return
    table = pq.read_table(bucket)
    vectors = normalized(unpacked(table))
    cluster = table["cluster_id"].to_numpy()
    members = [rows for _, rows in sorted_members(cluster, table["dist_to_centroid"].to_numpy(), keep, seed)]
    scores = gather_scores(len(table), members, cluster_similarities(vectors, members))
    earlier = table["uid"].take(pa.array(np.maximum(scores.earlier_row, 0)))
    run.write_table(relative, pa.table({
        "uid": table["uid"], "cluster_id": table["cluster_id"],
        "semdedup_max_sim": pa.array(scores.max_similarity, mask=np.isnan(scores.max_similarity)),
        "earlier_uid": pa.array(earlier.to_numpy(zero_copy_only=False), pa.string(), mask=scores.earlier_row < 0)}))


def _decide_bucket(shared: tuple, path: str) -> np.ndarray:
    """Writes a bucket's semdedup scores at eps; returns the number kept per cluster (length k)."""
    run_path, eps, k = shared
    table = pq.read_table(path)
    similarity = table["semdedup_max_sim"].to_numpy(zero_copy_only=False).astype(np.float32)
    kept = kept_at(similarity, eps)
    dup_of = table["earlier_uid"].to_numpy(zero_copy_only=False)
    RunDir(run_path).write_table(f"scores/semdedup/{path.rsplit('/', 1)[-1]}", pa.table({
        "uid": table["uid"], "semdedup_max_sim": table["semdedup_max_sim"],
        "semdedup_dup_of": pa.array(dup_of, pa.string(), mask=kept), "semdedup_keep": pa.array(kept)}))
    return np.bincount(table["cluster_id"].to_numpy(), weights=kept, minlength=k).astype(np.int64)
