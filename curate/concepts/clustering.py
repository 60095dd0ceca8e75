"""The run's concept clusters: k-means over its embeddings once, shared by SemDeDup and DBP.

Writes scores/kmeans/ (uid, cluster_id, dist_to_centroid: columns of the `samples` view),
concepts/centroids.parquet (cluster_id, centroid) and concepts/kmeans.parquet (cluster_id, size, mean_distance).
A rerun with the same options and embeddings reuses them; new ones recluster and discard what SemDeDup and DBP
had decided on the old clusters.
"""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.concepts.data import RunEmbeddings, load_embeddings, write_clusters_table, write_scores
from curate.concepts.kmeans import DEFAULT_KMEANS, Clustering, KMeansConfig, spherical_kmeans
from curate.rundir import RunDir
from curate.stages.common import record_stage

STAGE = "kmeans"
DEPENDENTS = ("semdedup", "dbp")


def stage_config(run: RunDir, config: KMeansConfig, kind: str) -> dict:
    """Returns the manifest config of a clustering: its options and what made the embeddings."""
    stages = run.manifest()["stages"]
    source = stages.get("embed", stages.get("ingest", {})).get("config")
    return dict(clusters=config.clusters, niter=config.niter, max_points_per_centroid=config.max_points_per_centroid,
                seed=config.seed, embedding=kind, embeddings_from=source)


def reset_stage(run: RunDir, stage: str) -> None:
    """Deletes a whole-pool stage's scores, per-cluster table and manifest entry."""
    shutil.rmtree(run.path / "scores" / stage, ignore_errors=True)
    (run.path / "concepts" / f"{stage}.parquet").unlink(missing_ok=True)
    run.update_manifest(stages={k: v for k, v in run.manifest()["stages"].items() if k != stage})


def ensure_clusters(run: RunDir, config: KMeansConfig = DEFAULT_KMEANS, kind: str = "image",
                    progress: bool = True) -> tuple[RunEmbeddings, Clustering]:
    """Returns the run's embeddings and their Clustering, computing and writing it unless it is up to date."""
    embeddings = load_embeddings(run, kind, progress)
    wanted = stage_config(run, config, kind)
    previous = run.manifest()["stages"].get(STAGE)
    if previous is not None and previous["config"] == wanted:
        stored = read_clustering(run, embeddings, previous["counts"]["seed"])
        if stored is not None:
            return embeddings, stored
    for stage in (STAGE, *DEPENDENTS):
        reset_stage(run, stage)
    clustering = spherical_kmeans(embeddings.vectors, config)
    write_clustering(run, embeddings, clustering)
    record_stage(run, STAGE, wanted, counts=dict(samples=len(embeddings), clusters=len(clustering.centroids),
                                                 seed=clustering.seed))
    return embeddings, clustering


def write_clustering(run: RunDir, embeddings: RunEmbeddings, clustering: Clustering) -> None:
    """Writes the clustering's per-sample columns, centroids and per-cluster sizes."""
    write_scores(run, STAGE, embeddings, {"cluster_id": pa.array(clustering.assignment),
                                          "dist_to_centroid": pa.array(clustering.distance)})
    k, dim = clustering.centroids.shape
    ids = pa.array(np.arange(k, dtype=np.int32))
    flat = pa.array(clustering.centroids.reshape(-1).astype(np.float32))
    write_clusters_table(run, "centroids", pa.table({"cluster_id": ids,
                                                     "centroid": pa.FixedSizeListArray.from_arrays(flat, dim)}))
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
    centroids = pq.read_table(run.path / "concepts" / "centroids.parquet")["centroid"].combine_chunks()
    matrix = centroids.values.to_numpy(zero_copy_only=False).reshape(len(centroids), -1)
    return Clustering(matrix, table["cluster_id"].to_numpy(), table["dist_to_centroid"].to_numpy(), seed)
