"""SSCD's score normalization with the pool as background, one-sided: the background term against a hand
computation, a sample's own copies skipped, the excess over the median, identical images, and dense against sparse
samples."""

import numpy as np
import pytest

from curate.copydetect import scorenorm
from curate.copydetect.scorenorm import (
    CANDIDATES,
    NEIGHBOURS,
    background_excess,
    background_similarity,
    normalized,
)


def unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def random_unit(n, dim, seed=0):
    return unit(np.random.default_rng(seed).normal(size=(n, dim)))


def test_background_is_the_mean_of_the_nearest_non_copies_by_hand():
    vectors, copy_level = random_unit(40, 8), 0.6
    rows = np.array([0, 7, 39])
    got = background_similarity(vectors, rows, copy_level)
    sims = vectors @ vectors.T
    for k, i in enumerate(rows):
        others = np.sort(np.delete(sims[i], i))[::-1][:CANDIDATES]
        assert got[k] == pytest.approx(others[others < copy_level][:NEIGHBOURS].mean(), abs=1e-5)


def test_a_samples_own_copies_are_not_its_background():
    base = random_unit(30, 16, seed=1)
    copies = unit(base[:1] + 0.01 * np.random.default_rng(2).normal(size=(3, 16)))  # three copies of row 0
    vectors = np.concatenate([base, copies])
    alone = background_similarity(base, np.array([0]), 0.9)[0]
    assert background_similarity(vectors, np.array([0]), 0.9)[0] == pytest.approx(alone, abs=1e-5)


def test_no_background_without_non_copies():
    assert np.isnan(background_similarity(unit([[1, 0], [1, 0.001]]), np.array([0, 1]), 0.5)).all()
    assert np.isnan(background_similarity(unit([[1, 0]]), np.array([0]), 0.5)).all()
    assert background_excess(unit([[1, 0], [1, 0.001]]), np.array([0, 1]), 0.5).tolist() == [0, 0]


def test_excess_is_the_background_above_the_pools_median(monkeypatch):
    vectors = random_unit(50, 8, seed=6)
    rows = np.arange(50)
    background = background_similarity(vectors, rows, 0.8)
    expected = np.maximum(background - np.median(background), 0)
    np.testing.assert_allclose(background_excess(vectors, rows, 0.8), expected, atol=1e-6)
    monkeypatch.setattr(scorenorm, "MEDIAN_SAMPLE", 20)  # the median from a seeded draw of the pool
    drawn = background_excess(vectors, rows[:5], 0.8)
    assert drawn.shape == (5,) and (drawn >= 0).all()


def test_normalized_subtracts_the_excess_but_never_from_an_identical_image():
    sims = np.array([0.9, 0.9, 1.0], np.float32)
    np.testing.assert_allclose(normalized(sims, np.array([0.0, 0.2, 0.3])), [0.9, 0.7, 1.0], atol=1e-6)


def test_dense_samples_need_more_similarity_than_sparse_ones():
    """Equal similarity to an eval image: a sample in a tight cluster of distinct images scores lower than any in a
    sparse part of the pool, where the typical ones keep their similarity."""
    rng = np.random.default_rng(3)
    dense = unit(random_unit(1, 32, seed=4) + 0.08 * rng.normal(size=(20, 32)))
    vectors = np.concatenate([dense, random_unit(40, 32, seed=5)])
    rows = np.arange(len(vectors))
    scores = normalized(np.full(len(vectors), 0.8, np.float32), background_excess(vectors, rows, 0.95))
    assert scores[:20].max() < scores[20:].min() and scores[20:].max() == np.float32(0.8)
