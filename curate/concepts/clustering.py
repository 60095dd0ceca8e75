"""The run's concept clusters: one k-means over its embeddings, a stage of its own that SemDeDup and DBP read.

Writes scores/kmeans/ (uid, cluster_id, dist_to_centroid: columns of the `samples` view),
concepts/kmeans_centroids.parquet (cluster_id, centroid) and concepts/kmeans.parquet (cluster_id, size,
mean_distance). A method with the same k-means options reuses them; other options recluster, and the stage graph
invalidates what was decided on the old clusters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.concepts.kmeans import (
    DEFAULT_MAX_POINTS_PER_CENTROID,
    DEFAULT_NITER,
    Clustering,
    KMeansConfig,
    spherical_kmeans,
)
from curate.graph import StageRun, current_versions, entries, version_of
from curate.options import option, positive_int
from curate.rundir import RunDir
from curate.stages.embeddings import EMBEDDING_COLUMNS, RunEmbeddings, write_clusters_table, write_scores
from curate.stages.pool import Pool, PoolMethod, embedding_stage
from curate.stages.step import stage_step

STAGE = "kmeans"
COLUMNS = ("cluster_id", "dist_to_centroid")


def kmeans_step(run: RunDir, config: KMeansConfig, kind: str) -> StageRun:
    """Returns the k-means stage with these options over the run's `kind` embeddings, as a step of the graph."""
    options = dict(clusters=config.clusters, niter=config.niter, max_points_per_centroid=config.max_points_per_centroid,
                   seed=config.seed, embedding=kind)
    return StageRun(STAGE, options, (embedding_stage(run),), columns=COLUMNS,
                    hint="rerun SemDeDup or DBP, which recluster with their k-means options")


def ensure_clusters(run: RunDir, embeddings: RunEmbeddings, config: KMeansConfig, kind: str) -> Clustering:
    """Returns the Clustering of the embeddings, computing and recording it unless the run has it current."""
    step = kmeans_step(run, config, kind)
    versions = current_versions(entries(run))
    if versions.get(STAGE) == version_of(step, {n: versions.get(n) for n in step.inputs}):
        stored = read_clustering(run, embeddings, entries(run)[STAGE]["counts"]["seed"])
        if stored is not None:
            return stored
    with stage_step(run, step, lambda: spherical_kmeans(embeddings.vectors, config)) as (record, clustering):
        write_clustering(run, embeddings, clustering)
        record["counts"] = dict(samples=len(embeddings), clusters=len(clustering.centroids), seed=clustering.seed)
    return clustering


def write_clustering(run: RunDir, embeddings: RunEmbeddings, clustering: Clustering) -> None:
    """Writes the clustering's per-sample columns, centroids and per-cluster sizes."""
    write_scores(run, STAGE, embeddings, {"cluster_id": pa.array(clustering.assignment),
                                          "dist_to_centroid": pa.array(clustering.distance)})
    k, dim = clustering.centroids.shape
    ids = pa.array(np.arange(k, dtype=np.int32))
    flat = pa.array(clustering.centroids.reshape(-1).astype(np.float32))
    write_clusters_table(run, f"{STAGE}_centroids", pa.table({
        "cluster_id": ids, "centroid": pa.FixedSizeListArray.from_arrays(flat, dim)}))
    sizes = clustering.sizes
    mean_distance = np.bincount(clustering.assignment, weights=clustering.distance, minlength=k) / np.maximum(sizes, 1)
    write_clusters_table(run, STAGE, pa.table({"cluster_id": ids, "size": pa.array(sizes, pa.int64()),
                                               "mean_distance": pa.array(mean_distance, pa.float32())}))


def read_clustering(run: RunDir, embeddings: RunEmbeddings, seed: int) -> Clustering | None:
    """Returns the stored Clustering when its rows match the embeddings' uids, else None."""
    paths = [run.path / "scores" / STAGE / f"{shard}.parquet" for shard, _, _ in embeddings.shards]
    tables = [pq.read_table(path) for path in paths if path.exists()]
    table = pa.concat_tables(tables) if tables else None
    if table is None or not table["uid"].combine_chunks().equals(embeddings.uids):
        return None
    centroids = pq.read_table(run.path / "concepts" / f"{STAGE}_centroids.parquet")["centroid"].combine_chunks()
    matrix = centroids.values.to_numpy(zero_copy_only=False).reshape(len(centroids), -1)
    return Clustering(matrix, table["cluster_id"].to_numpy(), table["dist_to_centroid"].to_numpy(), seed)


@dataclass(frozen=True, kw_only=True)
class ClusterMethod(PoolMethod):
    """A whole-pool method that works within the run's k-means concept clusters; these are its k-means options."""

    clusters: int | None = option(None, "k (default: round(sqrt(N)))", type=positive_int)
    niter: int = option(DEFAULT_NITER, "k-means iterations", type=positive_int)
    max_points_per_centroid: int = option(DEFAULT_MAX_POINTS_PER_CENTROID, "k-means trains on at most k times this "
                                          "many points", type=positive_int)
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

    def run_upstream(self, pool: Pool) -> None:
        """Brings the k-means stage up to date with these options."""
        self.clustering(pool)

    def clustering(self, pool: Pool) -> Clustering:
        """Returns the pool's concept clusters under these k-means options (computed once per run and options)."""
        return ensure_clusters(pool.run, pool.embeddings(self.embedding), self.kmeans, self.embedding)

    def config(self) -> dict:
        """Returns the method's own options; the k-means ones belong to the k-means stage it reads."""
        return {k: v for k, v in super().config().items() if k not in self.kmeans_fields}
