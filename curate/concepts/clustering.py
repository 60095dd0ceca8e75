"""Methods that work within the run's k-means concept clusters, and their shared k-means options.

The clusters are a stage of their own (curate.concepts.partition): a method with the same k-means options reuses
them; other options recluster, and the stage graph invalidates what was decided on the old clusters.
ClusterMethod (SemDeDup, DBP) runs on the partition: one task per bucket of clusters on the runner, each reading
its bucket's file and writing its scores file, with anything whole-pool decided on the driver from per-cluster
figures, so no process holds the pool. DQ, still a PoolMethod, reads the same clusters beside its vectors.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.concepts.kmeans import (
    DEFAULT_MAX_POINTS_PER_CENTROID,
    DEFAULT_NITER,
    Clustering,
    KMeansConfig,
)
from curate.concepts.partition import STAGE, Partition, ensure_partition, kmeans_step, read_partition
from curate.graph import StageRun
from curate.options import option, positive_int
from curate.rundir import RunDir
from curate.runners import Runner, as_runner
from curate.stages.embeddings import EMBEDDING_COLUMNS, RunEmbeddings, write_clusters_table
from curate.stages.pool import Pool, SelectionMethod, embedding_stage
from curate.stages.step import check_plan, stage_step


@dataclass(frozen=True, kw_only=True)
class KMeansOptions:
    """The k-means options of a method that works within concept clusters (they belong to the kmeans stage)."""

    clusters: int | None = option(None, "k (default: round(sqrt(N)))", type=positive_int)
    niter: int = option(DEFAULT_NITER, "k-means iterations", type=positive_int)
    max_points_per_centroid: int = option(DEFAULT_MAX_POINTS_PER_CENTROID, "k-means trains on a seeded sample of at "
                                          "most k times this many points", type=positive_int)
    kmeans_seed: int = option(0, "k-means seed")
    embedding: str = option("image", "which embedding to cluster", choices=tuple(EMBEDDING_COLUMNS))
    kmeans_fields: ClassVar[tuple[str, ...]] = ("clusters", "niter", "max_points_per_centroid", "kmeans_seed",
                                                "embedding")

    @property
    def kmeans(self) -> KMeansConfig:
        """Returns the k-means configuration these options name."""
        return KMeansConfig(self.clusters, self.niter, self.max_points_per_centroid, self.kmeans_seed)

    def reads(self, run: RunDir) -> tuple[str, ...]:
        """Returns the embeddings' stage and the k-means stage."""
        return (embedding_stage(run), STAGE)

    def upstream(self, run: RunDir) -> list[StageRun]:
        """Returns the k-means step these options name."""
        return [kmeans_step(run, self.kmeans, self.embedding)]

    def partition(self, run: RunDir, runner: Runner) -> Partition:
        """Returns the run's partition under these k-means options (clustered once per run and options)."""
        return ensure_partition(run, self.kmeans, self.embedding, runner)

    def config(self) -> dict:
        """Returns the method's own options; the k-means ones belong to the k-means stage it reads."""
        return {k: v for k, v in super().config().items() if k not in self.kmeans_fields}


@dataclass(frozen=True, kw_only=True)
class ClusterMethod(KMeansOptions, SelectionMethod):
    """A method that decides within concept clusters, on the run's partition (see the module docstring)."""

    uses_runner: ClassVar[bool] = True

    @abstractmethod
    def plan(self, run: RunDir, partition: Partition, where: str | None, runner: Runner) -> Any:
        """Returns what the method decides before writing anything (e.g. per-cluster quotas); raises UsageError
        for input it refuses, with nothing recorded."""

    @abstractmethod
    def write(self, run: RunDir, partition: Partition, plan: Any, runner: Runner) -> tuple[dict, pa.Table]:
        """Writes scores/<name>/ for the input samples; returns the stage's counts and its per-cluster table."""

    def apply(self, run: RunDir, runner: str | Runner = "local", **runner_options) -> dict:
        """Runs the method on the run's partition as a stage (clustering first when needed); returns its counts."""
        runner = as_runner(runner, **runner_options)
        with run.writing():
            check_plan(run, [*self.upstream(run), self.step(run)])
            partition = self.partition(run, runner)
            step = self.step(run)  # the k-means stage may have changed the columns the predicate names
            with stage_step(run, step, lambda: self.plan(run, partition, step.where, runner)) as (record, plan):
                counts, clusters = self.write(run, partition, plan, runner)
                write_clusters_table(run, self.name, clusters)
                record["counts"] = counts
        return counts


def read_clustering(run: RunDir, embeddings: RunEmbeddings) -> Clustering:
    """Returns the run's current k-means as a Clustering in the rows of `embeddings` (for a method that holds the
    pool's vectors in memory); raises RuntimeError when the run has no partition (a programming error)."""
    partition = read_partition(run)
    if partition is None:
        raise RuntimeError(f"{run.path} has no k-means partition")
    table = pa.concat_tables([pq.read_table(p) for p in sorted((run.path / "scores" / STAGE).glob("*.parquet"))])
    row = pc.index_in(embeddings.uids, value_set=table["uid"].combine_chunks()).to_numpy(zero_copy_only=False)
    return Clustering(partition.centroids, table["cluster_id"].to_numpy()[row],
                      table["dist_to_centroid"].to_numpy()[row], partition.seed)


@dataclass(frozen=True, kw_only=True)
class PoolClusters(KMeansOptions):
    """KMeansOptions for a PoolMethod: brings the clusters up to date before it computes, and reads them."""

    def run_upstream(self, pool: Pool) -> None:
        """Brings the k-means stage up to date with these options."""
        self.partition(pool.run, pool.runner)

    def clustering(self, pool: Pool) -> Clustering:
        """Returns the pool's concept clusters as a Clustering in the pool's rows."""
        return read_clustering(pool.run, pool.index)
