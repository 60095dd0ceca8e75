"""Methods that work within the run's k-means concept clusters, and their shared k-means options.

The clusters are a stage of their own (curate.concepts.partition): a method with the same k-means options reuses
them; other options recluster, and the stage graph invalidates what was decided on the old clusters.
ClusterMethod (SemDeDup, DBP, DQ) runs on the partition: one task per bucket of clusters on the runner, each
reading its bucket's file and writing its scores file, with anything whole-pool decided on the driver from
per-cluster figures, so no process holds the pool.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.catalogs import connect
from curate.catalogs.selection import selected_query
from curate.concepts.kmeans import (
    DEFAULT_MAX_POINTS_PER_CENTROID,
    DEFAULT_NITER,
    KMeansConfig,
)
from curate.concepts.partition import STAGE, Partition, ensure_partition, kmeans_step
from curate.graph import StageRun
from curate.options import option, positive_int
from curate.rundir import RunDir
from curate.runners import Runner, as_runner
from curate.stages.embeddings import EMBEDDING_COLUMNS, write_clusters_table
from curate.stages.pool import SelectionMethod, embedding_stage
from curate.stages.step import check_plan, stage_step

CLUSTERS = "clusters"  # the table of a ClusterMethod's per-cluster figures
EMBEDDED = "cluster_id IS NOT NULL"  # the embedded samples: those the k-means assigned


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
    def write(self, run: RunDir, partition: Partition, plan: Any, runner: Runner) -> tuple[dict, dict[str, pa.Table]]:
        """Writes scores/<name>/ for the input samples; returns the stage's counts and its tables: CLUSTERS, the
        per-cluster figures the `clusters` view joins, and others written as <name>_<table> (a view each)."""

    def apply(self, run: RunDir, runner: str | Runner = "local", **runner_options) -> dict:
        """Runs the method on the run's partition as a stage (clustering first when needed); returns its counts."""
        runner = as_runner(runner, **runner_options)
        with run.writing():
            check_plan(run, [*self.upstream(run), self.step(run)])
            partition = self.partition(run, runner)
            step = self.step(run)  # the k-means stage may have changed the columns the predicate names
            with stage_step(run, step, lambda: self.plan(run, partition, step.where, runner)) as (record, plan):
                counts, tables = self.write(run, partition, plan, runner)
                for table, rows in tables.items():
                    write_clusters_table(run, self.name if table == CLUSTERS else f"{self.name}_{table}", rows)
                record["counts"] = counts
        return counts


def route_selection(run: RunDir, where: str | None, partition: Partition, folder: str) -> list[Path]:
    """Writes the uids of embedded samples `where` selects to <folder>/<bucket>.parquet (folder relative to the
    run) by their cluster's bucket, in one pass over the catalog ordered by cluster (DuckDB sorts out of core), so
    one file is open at a time whatever the number of buckets; returns the files in bucket order."""
    targets = [run.path / folder / path.name for path in partition.bucket_files(run)]
    con = connect(run)
    pending: list[pa.Array] = []
    written = 0  # buckets whose file is written

    def write_until(bucket: int) -> None:  # the pending uids are bucket `written`'s; buckets before `bucket` end
        nonlocal written, pending
        while written < bucket:
            run.write_table(f"{folder}/{targets[written].name}", pa.table(
                {"uid": pa.concat_arrays(pending) if pending else pa.array([], pa.string())}))
            written, pending = written + 1, []

    try:
        for batch in selected_query(con, where, "uid, cluster_id", f"AND {EMBEDDED} ORDER BY cluster_id"):
            bucket = partition.bucket_of(batch.column(1).to_numpy(zero_copy_only=False))
            for b in np.unique(bucket):
                write_until(int(b))
                pending.append(batch.column(0).filter(pa.array(bucket == b)))
    finally:
        con.close()
    write_until(len(targets))
    return targets


def bucket_input(bucket: str | Path, selected: str | Path | None, columns: list[str] | None = None) -> pa.Table:
    """Returns the `columns` of a bucket's rows (all, or those whose uid the file `selected` lists), in its order."""
    table = pq.read_table(bucket, columns=columns)
    if selected is None:
        return table
    return table.filter(pc.is_in(table["uid"], value_set=pq.read_table(selected)["uid"].combine_chunks()))
