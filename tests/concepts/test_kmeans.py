"""faiss spherical k-means: seeded, nearest-centroid assignment, guards against degenerate input."""

import numpy as np
import pytest

from curate.concepts.kmeans import KMeansConfig, spherical_kmeans
from curate.errors import UsageError


def blobs(n_per: int = 40, k: int = 5, dim: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, dim))
    return np.concatenate([c + 0.05 * rng.normal(size=(n_per, dim)) for c in centers]).astype(np.float32)


def test_recovers_separated_concepts_and_is_deterministic():
    x = blobs()
    first = spherical_kmeans(x, KMeansConfig(clusters=5, seed=3))
    again = spherical_kmeans(x, KMeansConfig(clusters=5, seed=3))
    assert np.array_equal(first.assignment, again.assignment)
    assert sorted(first.sizes.tolist()) == [40] * 5
    for blob in range(5):  # each planted blob lands in one cluster
        assert len(set(first.assignment[blob * 40:(blob + 1) * 40].tolist())) == 1
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = xn @ first.centroids.T
    assert np.array_equal(first.assignment, sims.argmax(1))
    np.testing.assert_allclose(first.distance, 1 - sims.max(1), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(first.centroids, axis=1), 1, rtol=1e-5)


def test_default_k_is_the_square_root_of_n():
    assert KMeansConfig().k_for(10_000) == 100 and KMeansConfig().k_for(2) == 1
    assert len(spherical_kmeans(blobs(), KMeansConfig()).centroids) == 14  # round(sqrt(200))


def test_degenerate_inputs_are_clear_errors():
    with pytest.raises(UsageError, match="more than the 10 embeddings"):
        spherical_kmeans(blobs()[:10], KMeansConfig(clusters=11))
    with pytest.raises(UsageError, match="all 50 embeddings are identical"):
        spherical_kmeans(np.ones((50, 4), np.float32), KMeansConfig(clusters=5))
    three_points = np.repeat(np.eye(3, dtype=np.float32), 20, axis=0)
    with pytest.raises(UsageError, match=r"empty.*pass a smaller --clusters"):
        spherical_kmeans(three_points, KMeansConfig(clusters=5))
