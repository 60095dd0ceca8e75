"""Dynamic data pruning during training: SeTa, InfoBatch and random dynamic pruning as torch Samplers.

    pruner = make_pruner("seta", len(dataset), epochs, prune_ratio=0.3, seed=0)
    loader = DataLoader(IndexedDataset(dataset), batch_sampler=pruner.batch_sampler(256))
    for epoch in range(epochs):
        pruner.set_epoch(epoch)
        for indices, (x, y) in loader:
            losses = F.cross_entropy(model(x), y, reduction="none")
            pruner.update(indices, losses)
            (losses * pruner.weights(indices, losses.device)).mean().backward()
    pruner.stats().saved_fraction
"""

from curate.dynamic.base import INITIAL_SCORE, DynamicPruner, IndexedDataset, PruningStats
from curate.dynamic.distributed import gather_updates, resolve_rank, shard
from curate.dynamic.kmeans import group_by_score, kmeans_1d
from curate.dynamic.pruners import (
    DEFAULT_DELTA,
    PRUNERS,
    InfoBatchPruner,
    RandomPruner,
    SeTaPruner,
    is_annealing,
    make_pruner,
)

__all__ = [
    "DEFAULT_DELTA", "INITIAL_SCORE", "PRUNERS", "DynamicPruner", "IndexedDataset", "InfoBatchPruner",
    "PruningStats", "RandomPruner", "SeTaPruner", "gather_updates", "group_by_score", "is_annealing", "kmeans_1d",
    "make_pruner", "resolve_rank", "shard",
]
