"""Spherical k-means with faiss: the concept clusters SemDeDup and DBP work within.

Embeddings are L2-normalized, centroids are normalized after each update (faiss `spherical=True`), and each
sample is assigned to the centroid of highest cosine similarity; its distance is 1 - that cosine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from curate.errors import UsageError
from curate.stages.embeddings import normalized

DEFAULT_NITER = 20
DEFAULT_MAX_POINTS_PER_CENTROID = 256  # faiss's own default: it trains on a sample of k * 256 points
RESEEDS = 3


@dataclass(frozen=True)
class KMeansConfig:
    """How to cluster: k (None: round(sqrt(N))), Lloyd iterations, training sample cap per centroid, seed."""

    clusters: int | None = None
    niter: int = DEFAULT_NITER
    max_points_per_centroid: int = DEFAULT_MAX_POINTS_PER_CENTROID
    seed: int = 0

    def k_for(self, n: int) -> int:
        """Returns the number of clusters for n points: the configured k, else round(sqrt(n)) (at least 1)."""
        return self.clusters if self.clusters is not None else max(1, round(math.sqrt(n)))


DEFAULT_KMEANS = KMeansConfig()


@dataclass
class Clustering:
    """k-means output: normalized k x d centroids, each point's cluster and cosine distance to its centroid."""

    centroids: np.ndarray
    assignment: np.ndarray
    distance: np.ndarray
    seed: int

    @property
    def sizes(self) -> np.ndarray:
        """Returns the number of points in each cluster (length k)."""
        return np.bincount(self.assignment, minlength=len(self.centroids))


def assign(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns (nearest centroid index int32, cosine distance float32) of each normalized row of x."""
    import faiss

    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    similarity, nearest = index.search(x, 1)
    return nearest[:, 0].astype(np.int32), (1 - similarity[:, 0]).astype(np.float32)


def _train(x: np.ndarray, k: int, config: KMeansConfig, seed: int) -> np.ndarray:
    import faiss

    kmeans = faiss.Kmeans(x.shape[1], k, niter=config.niter, seed=seed, spherical=True, verbose=False,
                          max_points_per_centroid=config.max_points_per_centroid)
    kmeans.train(x)
    return normalized(kmeans.centroids)


def _check(n: int, k: int, config: KMeansConfig) -> None:
    if k < 1 or config.niter < 1 or config.max_points_per_centroid < 1:
        raise UsageError(f"--clusters, --niter and --max-points-per-centroid must be >= 1 (got {k}, {config.niter},"
                         f" {config.max_points_per_centroid})")
    if n == 0:
        raise UsageError("the run has no embedded samples to cluster (every sample was quarantined, or none was "
                         "ingested)")
    if n < k:
        raise UsageError(f"--clusters {k} is more than the {n} embeddings to cluster; pass a smaller --clusters")


def train_centroids(sample: np.ndarray, k: int, config: KMeansConfig, n: int | None = None) -> tuple[np.ndarray, int]:
    """Returns (normalized k x d centroids, the seed that made them) trained on the normalized rows of `sample`
    (drawn from n points; default: the sample is all of them).

    Seeded and deterministic for the same input. Centroids that leave a sample cluster empty are retrained with
    the next seeds (up to 3 more); raises UsageError when clusters stay empty (fewer distinct points than
    clusters), all points are identical, or k does not fit n.
    """
    _check(len(sample) if n is None else n, k, config)
    if k > 1 and float(np.ptp(sample, axis=0).max()) < 1e-6:
        raise UsageError(f"all {len(sample)} embeddings are identical: nothing to cluster; check the embed stage")
    for attempt in range(RESEEDS + 1):
        seed = config.seed + attempt
        centroids = _train(sample, k, config, seed)
        empty = int((np.bincount(assign(sample, centroids)[0], minlength=k) == 0).sum())
        if empty == 0:
            return centroids, seed
    raise UsageError(f"k-means left {empty} of {k} clusters empty with seeds {config.seed}..{seed}: the embeddings"
                     " have fewer distinct points than clusters; pass a smaller --clusters")


def spherical_kmeans(x: np.ndarray, config: KMeansConfig = DEFAULT_KMEANS) -> Clustering:
    """Returns the Clustering of the rows of x (normalized here) into config.k_for(N) concepts, trained on all of
    them (see train_centroids for seeding and errors)."""
    x = normalized(x)
    centroids, seed = train_centroids(x, config.k_for(len(x)), config)
    assignment, distance = assign(x, centroids)
    return Clustering(centroids, assignment, distance, seed)
