"""DBP by hand: complexity, the quota program's closed form and rounding, and the choice within clusters."""

import numpy as np
import pytest

from curate.concepts.quotas import complexity, inter_distance, keep_in_clusters, quotas, round_to_total
from curate.errors import UsageError


def test_quotas_follow_the_closed_form():
    # N P = [30, 18, 12]; cluster 0 holds 10, so lambda = 10 spreads the rest: [10, 28, 22].
    assert quotas(np.array([0.5, 0.3, 0.2]), np.array([10, 100, 100]), 60).tolist() == [10, 28, 22]
    # Lower bound 1: a cluster with negligible probability still keeps one sample.
    assert quotas(np.array([0.999, 0.001]), np.array([100, 100]), 10).tolist() == [9, 1]
    # An empty cluster keeps nothing and takes no floor.
    assert quotas(np.array([0.4, 0.2, 0.4]), np.array([5, 0, 5]), 6).tolist() == [3, 0, 3]


def test_rounding_keeps_the_sum_exact_and_breaks_ties_by_cluster():
    assert quotas(np.full(3, 1 / 3), np.array([10, 10, 10]), 10).tolist() == [4, 3, 3]
    x = round_to_total(np.array([1.6, 2.3, 3.1]), np.array([5, 5, 5]), 7)
    assert x.tolist() == [2, 2, 3]
    for total in range(3, 31):
        q = quotas(np.array([0.7, 0.2, 0.1]), np.array([10, 10, 10]), total)
        assert q.sum() == total and (q >= 1).all() and (q <= 10).all()


def test_infeasible_quotas_say_what_to_change():
    with pytest.raises(UsageError, match="cannot keep 25 samples from 20"):
        quotas(np.array([0.5, 0.5]), np.array([10, 10]), 25)
    with pytest.raises(UsageError, match="at least 1"):
        quotas(np.full(3, 1 / 3), np.array([5, 5, 5]), 2)


def test_complexity_by_hand():
    # Three centroids on a circle at 0, 90 and 180 degrees: cosine distances 1 (neighbours) and 2 (opposite).
    centroids = np.array([[1, 0], [0, 1], [-1, 0]], np.float32)
    np.testing.assert_allclose(inter_distance(centroids, 1), [1, 1, 1])
    np.testing.assert_allclose(inter_distance(centroids, 2), [1.5, 1, 1.5])
    assignment = np.array([0, 0, 1, 1, 1], np.int32)  # cluster 2 has no members: NaN -> the mean
    distance = np.array([0.1, 0.3, 0.2, 0.2, 0.2], np.float32)
    stats = complexity(centroids, assignment, distance, neighbors=2, tau=0.1)
    assert stats.size.tolist() == [2, 3, 0]
    np.testing.assert_allclose(stats.d_intra[:2], [0.2, 0.2], rtol=1e-6)
    np.testing.assert_allclose(stats.complexity, [0.3, 0.2, 0.25], rtol=1e-6)
    expected = np.exp(np.array([3.0, 2.0, 2.5]))
    np.testing.assert_allclose(stats.probability, expected / expected.sum(), rtol=1e-6)


def test_keep_in_clusters_takes_the_hardest():
    assignment = np.array([0, 0, 0, 1, 1], np.int32)
    distance = np.array([0.1, 0.5, 0.3, 0.2, 0.4], np.float32)
    quota = np.array([2, 1])
    assert keep_in_clusters(assignment, distance, quota, "hard", 0).tolist() == [False, True, True, False, True]
    assert keep_in_clusters(assignment, distance, quota, "easy", 0).tolist() == [True, False, True, True, False]
    assert keep_in_clusters(assignment, distance, quota, "random", 0).sum() == 3
