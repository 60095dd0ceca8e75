"""The 1-D k-means that groups samples by loss for SeTa, and the grouping built on it."""

from __future__ import annotations

import pytest
import torch

from curate.dynamic import group_by_score, kmeans_1d


def test_kmeans_1d_separates_levels_and_orders_centers():
    values = torch.tensor([9.2, 1.0, 5.1, 1.1, 9.0, 5.0, 1.2])
    labels, centers = kmeans_1d(values, 3)
    assert labels.tolist() == [2, 0, 1, 0, 2, 1, 0]
    assert torch.allclose(centers, torch.tensor([1.1, 5.05, 9.1], dtype=torch.float64))


def test_kmeans_1d_lloyd_moves_off_the_quantile_seeds():
    # seeds are 1 and 4 (mid-quantiles); Lloyd must move the split to isolate the outlier
    labels, centers = kmeans_1d(torch.tensor([0.0, 1, 2, 3, 4, 100]), 2)
    assert labels.tolist() == [0, 0, 0, 0, 0, 1]
    assert centers.tolist() == [2.0, 100.0]


def test_kmeans_1d_needs_enough_distinct_values():
    with pytest.raises(ValueError, match="distinct"):
        kmeans_1d(torch.tensor([1.0, 1.0, 2.0]), 3)


def test_group_by_score_orders_clusters_by_mean_loss():
    scores = torch.tensor([30.0, 10.0, 20.0, 10.5, 30.5, 20.5])
    indices = torch.tensor([100, 101, 102, 103, 104, 105])
    groups = group_by_score(scores, indices, 3)
    assert [sorted(g.tolist()) for g in groups] == [[101, 103], [102, 105], [100, 104]]


def test_group_by_score_equal_scores_fall_back_to_equal_chunks():
    indices = torch.arange(25).flip(0)
    groups = group_by_score(torch.full((25,), 3.0), indices, 10)
    assert [g.numel() for g in groups] == [3, 3, 3, 3, 3, 2, 2, 2, 2, 2]
    assert torch.equal(torch.cat(groups), indices)  # stable sort: the given order


def test_group_by_score_few_distinct_values_chunk_the_sorted_order():
    scores = torch.tensor([2.0, 1.0, 2.0, 0.0, 1.0, 0.0])
    groups = group_by_score(scores, torch.arange(6), 4)
    assert [g.tolist() for g in groups] == [[3, 5], [1, 4], [0], [2]]
