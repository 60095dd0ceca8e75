"""Deterministic 1-D k-means over per-sample scores, and SeTa's grouping of samples into clusters ordered easy to hard.

The SeTa reference (mrazhou/SeTa, seta.py `kmeans_group`) calls scikit-learn's KMeans (k-means++ init,
random_state=0). Here it is plain Lloyd iterations from quantile seeds in torch: no global random state, no
scikit-learn, the same answer for the same scores on every run and every DDP rank.
"""

from __future__ import annotations

import torch

DEFAULT_MAX_ITER = 100


def _initial_centers(sorted_values: torch.Tensor, num_clusters: int) -> torch.Tensor:
    """Returns `num_clusters` strictly increasing seeds: the data's mid-quantiles, or evenly spaced distinct
    values when quantiles coincide (many tied scores)."""
    n = sorted_values.numel()
    positions = ((torch.arange(num_clusters, dtype=torch.float64) + 0.5) * n / num_clusters).long()
    centers = sorted_values[positions.clamp(max=n - 1)]
    if bool((centers[1:] > centers[:-1]).all()):
        return centers
    distinct = torch.unique(sorted_values)
    positions = torch.linspace(0, distinct.numel() - 1, num_clusters, dtype=torch.float64).round().long()
    return distinct[positions]


def kmeans_1d(
    values: torch.Tensor, num_clusters: int, max_iter: int = DEFAULT_MAX_ITER
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clusters 1-D values with Lloyd's algorithm from quantile seeds, stopping when no assignment changes
    (or after `max_iter` rounds).

    Returns `(labels, centers)`: int64 labels in [0, num_clusters) aligned with `values`, and the float64
    centers in ascending order, so label 0 is the cluster of lowest values. A value exactly halfway between
    two centers joins the lower one. A cluster left empty keeps its previous center.
    Raises ValueError when `values` has fewer distinct values than `num_clusters`.
    """
    x = values.detach().reshape(-1).to("cpu", torch.float64)
    if num_clusters < 1:
        raise ValueError(f"num_clusters must be at least 1, got {num_clusters}")
    if torch.unique(x).numel() < num_clusters:
        raise ValueError(f"k-means needs at least {num_clusters} distinct values, got {torch.unique(x).numel()}")
    centers = _initial_centers(torch.sort(x).values, num_clusters)
    labels = torch.full_like(x, -1, dtype=torch.int64)
    for _ in range(max_iter):
        new_labels = torch.bucketize(x, (centers[1:] + centers[:-1]) / 2)
        if torch.equal(new_labels, labels):
            break
        labels = new_labels
        sums = torch.zeros(num_clusters, dtype=torch.float64).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=num_clusters)
        centers = torch.where(counts > 0, sums / counts.clamp(min=1), centers).sort().values
    return labels, centers


def _sorted_chunks(scores: torch.Tensor, indices: torch.Tensor, num_groups: int) -> list[torch.Tensor]:
    """Returns `num_groups` chunks of `indices` in stable ascending-score order, sizes differing by at most one."""
    order = torch.sort(scores, stable=True).indices
    return list(torch.tensor_split(indices[order], num_groups))


def group_by_score(
    scores: torch.Tensor, indices: torch.Tensor, num_groups: int, max_iter: int = DEFAULT_MAX_ITER
) -> list[torch.Tensor]:
    """Splits `indices` (aligned with `scores`) into exactly `num_groups` groups ordered by mean score ascending,
    easy (low loss) to hard.

    Returns a list of int64 index tensors (a group may be empty only in the fallback). Groups are the clusters
    of `kmeans_1d`; when there are fewer distinct scores than groups (all scores equal, as before any loss is
    reported), they are instead equal-size chunks of the stable ascending-score order. The reference uses
    `torch.chunk` there, which can return fewer than `num_groups` chunks; `torch.tensor_split` always returns
    `num_groups`, so the sliding window keeps its size.
    """
    scores = scores.detach().reshape(-1).to("cpu", torch.float64)
    indices = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
    if scores.numel() != indices.numel():
        raise ValueError(f"{scores.numel()} scores for {indices.numel()} indices")
    if num_groups == 1:
        return [indices]
    if torch.unique(scores).numel() < num_groups:
        return _sorted_chunks(scores, indices, num_groups)
    labels, centers = kmeans_1d(scores, num_groups, max_iter)
    counts = torch.bincount(labels, minlength=num_groups)
    sums = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, labels, scores)
    means = torch.where(counts > 0, sums / counts.clamp(min=1), centers)
    order = torch.sort(means, stable=True).indices.tolist()
    return [indices[labels == cluster] for cluster in order]
