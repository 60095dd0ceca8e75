"""The run's concept clusters at any scale: spherical k-means trained on a seeded sample of the embeddings, every
embedding file assigned by a task of the runner, and the embeddings written grouped by cluster (the partition)
for the methods that work within clusters (curate.concepts.clustering.ClusterMethod).

The kmeans stage owns these files:
  scores/kmeans/<shard>.parquet       uid, cluster_id, dist_to_centroid (columns of the `samples` view)
  concepts/kmeans_centroids.parquet   cluster_id, centroid
  concepts/kmeans.parquet             cluster_id, size, mean_distance, bucket
  partitions/kmeans/<bucket>.parquet  uid, position, cluster_id, dist_to_centroid, vector (packed bytes); sorted by
                                      cluster, then by position (the sample's row in the run's embedding files)
A bucket is a run of consecutive clusters holding at most CURATE_PARTITION_BYTES of vectors (default 256 MiB), so a
task that reads one holds a bounded amount. The driver holds the training sample (at most k x
max_points_per_centroid rows) and per-cluster figures; every pass is resumable: an embedding file's assignment is
marked done, a bucket is written once, whole.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.concepts.kmeans import KMeansConfig, assign, train_centroids
from curate.errors import UsageError, first_line
from curate.graph import StageRun, current_versions, entries
from curate.rundir import DONE, RunDir
from curate.runners import Runner, quiet
from curate.stages.buckets import BUCKET_BYTES_VARIABLE, bucket_bytes, bucket_target
from curate.stages.embeddings import (
    normalized,
    packed,
    packed_field,
    read_stored,
    read_vectors,
    vector_files,
    write_clusters_table,
)
from curate.stages.pool import embedding_stage
from curate.stages.step import stage_step, step_version

STAGE = "kmeans"
COLUMNS = ("cluster_id", "dist_to_centroid")
PARTITION = f"partitions/{STAGE}"
ASSIGN_ROWS = 32768  # rows normalized and assigned at a time
WRITE_ROWS = 65536  # rows of a bucket gathered and written at a time


def kmeans_step(run: RunDir, config: KMeansConfig, kind: str) -> StageRun:
    """Returns the k-means stage with these options over the run's `kind` embeddings, as a step of the graph."""
    options = dict(clusters=config.clusters, niter=config.niter, max_points_per_centroid=config.max_points_per_centroid,
                   seed=config.seed, embedding=kind)
    return StageRun(STAGE, options, (embedding_stage(run),), columns=COLUMNS,
                    hint="rerun SemDeDup, DBP or DQ, which recluster with their k-means options")


@dataclass(frozen=True)
class Partition:
    """The run's clusters: normalized centroids, each cluster's size and mean distance, and the buckets (bucket b
    holds clusters bounds[b] to bounds[b + 1] - 1)."""

    centroids: np.ndarray
    sizes: np.ndarray
    mean_distance: np.ndarray
    bounds: np.ndarray
    seed: int

    def bucket_files(self, run: RunDir) -> list[Path]:
        """Returns the path of each bucket's file, in bucket order."""
        return [run.path / PARTITION / f"{b:05d}.parquet" for b in range(len(self.bounds) - 1)]

    def bucket_of(self, cluster: np.ndarray) -> np.ndarray:
        """Returns the bucket holding each cluster id."""
        return np.searchsorted(self.bounds, cluster, side="right") - 1


@dataclass(frozen=True)
class _Files:
    """The embedding files k-means reads: paths, the vector column, rows per file and each file's first position."""

    paths: list[Path]
    column: str
    rows: np.ndarray

    @property
    def firsts(self) -> np.ndarray:
        """Returns the position of each file's first row among all embedded samples."""
        return np.concatenate([[0], np.cumsum(self.rows)[:-1]]).astype(np.int64)


def ensure_partition(run: RunDir, config: KMeansConfig, kind: str, runner: Runner) -> Partition:
    """Returns the run's Partition under these k-means options, clustering and partitioning first unless the run
    holds it current (a kill part-way resumes where it stopped)."""
    step = kmeans_step(run, config, kind)
    version = step_version(run, step)
    stored = read_partition(run) if current_versions(entries(run)).get(STAGE) == version else None
    if stored is not None:
        return stored
    files = _embedding_files(run, kind)
    n = int(files.rows.sum())
    with stage_step(run, step, lambda: _centroids(run, files, config, runner, version)) as (record, trained):
        record["counts"] = _partition(run, files, trained, runner) | dict(
            seed=trained.seed, train_points=min(n, config.k_for(n) * config.max_points_per_centroid))
    return read_partition(run)


def _embedding_files(run: RunDir, kind: str) -> _Files:
    """Returns the run's embedding files of `kind` with their row counts; raises UsageError naming the stage to
    rerun when one is missing (an embedded shard without its file) or unreadable."""
    paths, column = vector_files(run, kind)
    stage = embedding_stage(run)
    missing = [m["shard_id"] for m in run.markers(stage) if stage == "embed"
               and not (run.path / "embeddings" / f"{m['shard_id']}.parquet").exists()]
    if missing:
        raise UsageError(f"{run.path}/embeddings lacks {len(missing)} embedded shards' files (first: {missing[0]}); "
                         f"rerun `curate embed` in a new run, or restore the files")
    rows = []
    for path in paths:  # each footer read once: its row count, or the file named as unreadable
        try:
            rows.append(pq.ParquetFile(path).metadata.num_rows)
        except (OSError, pa.ArrowException) as exc:
            raise UsageError(f"{path} is unreadable ({first_line(exc)}); rerun the {stage} stage in a new run, or "
                             "restore the file") from None
    return _Files(paths, column, np.array(rows, dtype=np.int64))


def _centroids(run: RunDir, files: _Files, config: KMeansConfig, runner: Runner, version: str) -> Partition:
    """Returns the Partition to write (sizes still zero): the one an interrupted run of this version stored, else
    centroids trained on a seeded sample of config.max_points_per_centroid rows per cluster, with buckets planned
    from the sample's cluster sizes. Raises UsageError for a cluster over the bucket budget."""
    path = run.path / "concepts" / f"{STAGE}_centroids.parquet"
    if entries(run).get(STAGE, {}).get("version") == version and path.exists():
        return _read_centroids(path)
    n = int(files.rows.sum())
    k = config.k_for(n)
    positions = np.sort(np.random.default_rng(config.seed).choice(n, min(n, k * config.max_points_per_centroid),
                                                                  replace=False)) if n else np.zeros(0, np.int64)
    ends = np.searchsorted(positions, files.firsts + files.rows)
    items = [(str(path), files.column, positions[a:b] - first) for path, first, a, b in
             zip(files.paths, files.firsts, [0, *ends[:-1]], ends, strict=True) if b > a]
    blocks = quiet(runner).map(_sample_rows, None, items, desc="kmeans sample")
    sample = np.concatenate(blocks) if blocks else np.zeros((0, 1), np.float32)
    centroids, seed = train_centroids(sample, k, config, n)
    estimated = np.bincount(assign(sample, centroids)[0], minlength=k) * (n / max(len(sample), 1))
    row_bytes = sample.shape[1] * _itemsize(files)
    _check_budget(estimated, row_bytes)
    return Partition(centroids, np.zeros(k, np.int64), np.zeros(k, np.float32), bucket_bounds(estimated, row_bytes),
                     seed)


def _sample_rows(_, item: tuple) -> np.ndarray:
    path, column, rows = item
    return read_vectors(path, column, rows)[1]


def _value_type(files: _Files) -> pa.DataType:
    """Returns the type the run stores its vectors' values in (float16 or float32)."""
    return pq.read_schema(files.paths[0]).field(files.column).type.value_type


def _itemsize(files: _Files) -> int:
    return _value_type(files).bit_width // 8


def _check_budget(sizes: np.ndarray, row_bytes: int) -> None:
    """Raises UsageError when a cluster's vectors would not fit one bucket."""
    budget = bucket_bytes()
    largest = int(np.argmax(sizes)) if len(sizes) else 0
    if len(sizes) and sizes[largest] * row_bytes > budget:
        raise UsageError(
            f"cluster {largest} holds about {int(sizes[largest]):,} samples ({sizes[largest] * row_bytes / 2**20:,.1f}"
            f" MiB of vectors), more than one task may hold ({budget / 2**20:,.1f} MiB, {BUCKET_BYTES_VARIABLE}): pass "
            f"a larger --clusters (now {len(sizes)}) or raise {BUCKET_BYTES_VARIABLE}")


def bucket_bounds(sizes: np.ndarray, row_bytes: int) -> np.ndarray:
    """Returns the first cluster of each bucket and k at the end: consecutive clusters filled up to the pool's
    bucket_target (curate.stages.buckets); a cluster may fill one alone."""
    target = bucket_target(sizes.sum() * row_bytes)
    starts, filled = [0], 0.0
    for cluster, size in enumerate(sizes):
        if filled and filled + size * row_bytes > target:
            starts.append(cluster)
            filled = 0.0
        filled += float(size) * row_bytes
    return np.array([*starts, len(sizes)], dtype=np.int64)


def _partition(run: RunDir, files: _Files, plan: Partition, runner: Runner) -> dict:
    """Assigns every embedding file, writes the buckets and the per-cluster tables; returns the stage's counts."""
    k, buckets = len(plan.centroids), len(plan.bounds) - 1
    bucket = np.repeat(np.arange(buckets, dtype=np.int32), np.diff(plan.bounds))
    write_clusters_table(run, f"{STAGE}_centroids", pa.table({
        "cluster_id": pa.array(np.arange(k, dtype=np.int32)), "bucket": pa.array(bucket),
        "centroid": pa.FixedSizeListArray.from_arrays(pa.array(plan.centroids.reshape(-1).astype(np.float32)),
                                                      plan.centroids.shape[1])}, metadata={"seed": str(plan.seed)}))
    if not (run.path / PARTITION / "parts").exists():  # nothing left to gather: files marked done assign again
        shutil.rmtree(run.path / DONE / STAGE, ignore_errors=True)
    schema = pa.schema([pa.field("uid", pa.string()), pa.field("position", pa.int64()),
                        pa.field("cluster_id", pa.int32()), pa.field("dist_to_centroid", pa.float32()),
                        packed_field("vector", _value_type(files).to_pandas_dtype(), plan.centroids.shape[1])])
    items = [(str(path), files.column, int(first)) for path, first in zip(files.paths, files.firsts, strict=True)]
    sizes, distance = np.zeros(k, np.int64), np.zeros(k)
    for counts, distances in runner.each(_assign_file, (str(run.path), plan.centroids, bucket, schema), items,
                                         desc="kmeans"):
        sizes += counts
        distance += distances
    quiet(runner).map(_write_bucket, (str(run.path), schema), list(range(buckets)), desc="kmeans partition")
    write_clusters_table(run, STAGE, pa.table({
        "cluster_id": pa.array(np.arange(k, dtype=np.int32)), "size": pa.array(sizes.astype(np.int64)),
        "mean_distance": pa.array((distance / np.maximum(sizes, 1)).astype(np.float32))}))
    shutil.rmtree(run.path / PARTITION / "parts", ignore_errors=True)
    return dict(samples=int(sizes.sum()), clusters=k, buckets=buckets)


def _assign_file(shared: tuple, item: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Assigns one embedding file (once: a marked file is read back) and writes its kmeans scores and its rows of
    each bucket; returns its per-cluster (count, summed distance)."""
    run_path, centroids, bucket_of, schema = shared
    path, column, first = item
    run, stem, k = RunDir(run_path), Path(path).stem, len(centroids)
    if not run.is_done(STAGE, stem):
        uids, [stored] = read_stored(path, [column])
        cluster, distance = _assign_in_blocks(stored, centroids)
        run.write_table(f"scores/{STAGE}/{stem}.parquet", pa.table(
            {"uid": uids, "cluster_id": cluster, "dist_to_centroid": distance}))
        rows = pa.table([  # the vectors as the run stores them: a task normalizes them as read_vectors does
            uids, pa.array(first + np.arange(len(uids)), pa.int64()), cluster, distance, packed(stored)],
            schema=schema)
        buckets = bucket_of[cluster]
        for b in np.unique(buckets):
            chunk = rows.filter(pa.array(buckets == b))
            run.write_table(f"{PARTITION}/parts/{b:05d}/{stem}.parquet", chunk)
        run.write_json(run.marker(STAGE, stem), dict(rows=len(uids)))
    scores = pq.read_table(run.path / "scores" / STAGE / f"{stem}.parquet", columns=list(COLUMNS))
    cluster = scores["cluster_id"].to_numpy()
    return (np.bincount(cluster, minlength=k),
            np.bincount(cluster, weights=scores["dist_to_centroid"].to_numpy().astype(np.float64), minlength=k))


def _assign_in_blocks(stored: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns each stored vector's nearest centroid and cosine distance, normalizing ASSIGN_ROWS rows at a time (a
    file's float32 copy is never made whole)."""
    parts = [assign(normalized(stored[start:start + ASSIGN_ROWS]), centroids)
             for start in range(0, len(stored), ASSIGN_ROWS)]
    return (np.concatenate([np.zeros(0, np.int32), *(p[0] for p in parts)]),
            np.concatenate([np.zeros(0, np.float32), *(p[1] for p in parts)]))


def _write_bucket(shared: tuple, bucket: int) -> None:
    """Writes one bucket (once) from every file's rows of it, sorted by cluster then position, and removes them."""
    run_path, schema = shared
    run = RunDir(run_path)
    relative, parts = f"{PARTITION}/{bucket:05d}.parquet", run.path / PARTITION / "parts" / f"{bucket:05d}"
    if not (run.path / relative).exists():
        tables = [pq.read_table(p) for p in sorted(parts.glob("*.parquet"))]
        table = pa.concat_tables(tables) if tables else schema.empty_table()
        order = pc.sort_indices(table, [("cluster_id", "ascending"), ("position", "ascending")])
        slices = (table.take(order[start:start + WRITE_ROWS]) for start in range(0, len(order), WRITE_ROWS))
        run.write_batches(relative, schema, slices)
    shutil.rmtree(parts, ignore_errors=True)


def read_partition(run: RunDir) -> Partition | None:
    """Returns the run's Partition as its kmeans stage wrote it, or None when a file of it is missing."""
    concepts = run.path / "concepts"
    table_path, centroid_path = concepts / f"{STAGE}.parquet", concepts / f"{STAGE}_centroids.parquet"
    if not table_path.exists() or not centroid_path.exists():
        return None
    if "bucket" not in pq.read_schema(centroid_path).names:
        return None  # written before the partition existed
    table = pq.read_table(table_path)
    partition = replace(_read_centroids(centroid_path), sizes=table["size"].to_numpy(),
                        mean_distance=table["mean_distance"].to_numpy())
    return partition if all(p.exists() for p in partition.bucket_files(run)) else None


def _read_centroids(path: Path) -> Partition:
    """Returns the Partition a stored k-means planned: centroids, buckets and seed (sizes zero)."""
    table = pq.read_table(path)
    column = table["centroid"].combine_chunks()
    centroids = column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), -1)
    bucket = table["bucket"].to_numpy()
    bounds = np.concatenate([np.searchsorted(bucket, np.arange(int(bucket.max(initial=-1)) + 1)), [len(bucket)]])
    return Partition(centroids, np.zeros(len(bucket), np.int64), np.zeros(len(bucket), np.float32),
                     bounds.astype(np.int64), int((table.schema.metadata or {}).get(b"seed", b"0")))


