"""The CLIP trainer driven by a dynamic pruner: `epochs` passes, each over the pruner's selection for that epoch.

The learning-rate schedule is rebuilt per epoch, as the references require of step-based schedules: warmup and
cosine decay are laid on the full-data timeline (epochs x N samples) and each epoch's batches, however few the
pruner kept, advance through that epoch's share of it. So a pruned run ends at the same final learning rate as
a full one, having forwarded fewer samples.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tqdm import tqdm

from curate.models.train import TrainConfig, TrainResult, learning_rate, train_step, training_state

if TYPE_CHECKING:
    from curate.dynamic.base import DynamicPruner
    from curate.models.loading import LoadedModel
    from curate.models.pairs import PairDataset


def train_clip_pruned(loaded: LoadedModel, pairs: PairDataset, config: TrainConfig,
                      pruner: DynamicPruner) -> TrainResult:
    """Trains `loaded.model` in place for config.epochs pruned epochs; returns its TrainResult, whose
    samples_seen counts the samples actually forwarded (pruner.stats() has the per-epoch accounting).

    Each step reports its per-sample losses to the pruner and weights the loss by pruner.weights (InfoBatch).
    """
    import torch

    if len(pairs) != pruner.num_samples:
        raise ValueError(f"the pruner covers {pruner.num_samples} samples, the dataset has {len(pairs)}")
    generator, tokens, optimizer = training_state(loaded, pairs, config)
    n, batch_size = len(pairs), min(config.batch_size, len(pairs))
    total = config.epochs * n
    result = TrainResult()
    start = time.perf_counter()
    loaded.model.train()
    bar = tqdm(total=config.epochs, desc="train (pruned)", unit="epoch", disable=not config.progress)
    for epoch in range(config.epochs):
        pruner.set_epoch(epoch)
        batches = list(pruner.batch_sampler(batch_size))
        for step, batch in enumerate(batches):
            indices = torch.tensor(batch, dtype=torch.long)
            virtual_seen = round((epoch + step / len(batches)) * n)
            lr = learning_rate(virtual_seen, round(len(indices) * n / len(pruner)), total, config, batch_size)
            losses = train_step(loaded, optimizer, lr, pairs.pixels[indices], tokens[indices], config, generator,
                                weights=pruner.weights(indices))
            pruner.update(indices, losses)
            result.record(losses)
        bar.update(1)
        bar.set_postfix(loss=f"{result.losses[-1]:.3f}", kept=len(pruner), refresh=False)
    bar.close()
    loaded.model.eval()
    result.seconds = time.perf_counter() - start
    return result
