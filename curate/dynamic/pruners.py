"""SeTa, InfoBatch and random dynamic pruning, a registry of them and a factory.

References: SeTa, "Scale Efficient Training for Large Datasets" (CVPR 2025), github.com/mrazhou/SeTa seta.py;
InfoBatch (ICLR 2024), github.com/NUS-HPC-AI-Lab/InfoBatch infobatch/infobatch.py.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from curate.dynamic.base import DynamicPruner, _check_int, _check_ratio
from curate.dynamic.kmeans import DEFAULT_MAX_ITER, group_by_score
from curate.errors import UsageError

DEFAULT_DELTA = 0.875


def is_annealing(epoch: int, epochs: int, delta: float) -> bool:
    """Returns True when `epoch` (0-based) is past the pruning phase: epoch + 1 > delta * epochs.

    Both references count sampler resets from 1 and stop pruning once that count exceeds delta * epochs, so
    annealing starts at epoch floor(delta * epochs): epoch 175 of 200 at delta 0.875 (= delta * epochs when that
    is a whole number), epoch 8 of 10.
    """
    return epoch + 1 > delta * epochs


class SeTaPruner(DynamicPruner):
    """SeTa: each epoch a random keep_ratio share of the data, clustered by loss into `num_groups` groups ordered
    easy to hard, of which a window of round(num_groups * window_scale) groups is trained on; the window slides one
    group per epoch from easy to hard and wraps. Losses are never rescaled (weights are 1).

    As in the reference (seta.py `SeTa.prune`, `slide_easy2hard`, `SeTa.no_prune`): epoch 0 trains on all groups,
    i.e. the whole random share (not the full dataset); from epoch floor(delta * epochs) on ("partial annealing")
    it trains on a random keep_ratio share without clustering. The reference's CIFAR setting is num_groups=5,
    window_scale=0.9 (window of 4 groups); its code defaults are the ones here (10, 0.5). With num_groups=1 it is
    random dynamic pruning, as the reference's "Dynamic Random" run.
    """

    def __init__(
        self,
        num_samples: int,
        epochs: int,
        prune_ratio: float = 0.5,
        seed: int = 0,
        *,
        num_groups: int = 10,
        window_scale: float = 0.5,
        delta: float = DEFAULT_DELTA,
        max_iter: int = DEFAULT_MAX_ITER,
        **base: Any,
    ) -> None:
        super().__init__(num_samples, epochs, prune_ratio, seed, **base)
        self.num_groups = _check_int("num_groups", num_groups, 1)
        self.window_scale = _check_ratio("window_scale", window_scale, closed_top=True)
        if self.window_scale == 0:
            raise UsageError("window_scale must be in (0, 1], got 0")
        self.delta = _check_ratio("delta", delta, closed_top=True)
        self.max_iter = _check_int("max_iter", max_iter, 1)

    @property
    def window_size(self) -> int:
        """Returns how many groups the window spans: round(num_groups * window_scale), at least 1."""
        return max(1, round(self.num_groups * self.window_scale))

    def window(self, epoch: int) -> tuple[int, int]:
        """Returns `(start, size)` of the window of groups for `epoch`: epoch 0 spans all groups, later epochs
        start at epoch mod (num_groups - size + 1)."""
        if epoch == 0:
            return 0, self.num_groups
        size = self.window_size
        return epoch % (self.num_groups - size + 1), size

    def groups(self, epoch: int) -> list[torch.Tensor]:
        """Returns the epoch's random share split into `num_groups` index groups ordered by mean score ascending."""
        share = self.random_share(epoch)
        return group_by_score(self.scores[share], share, self.num_groups, self.max_iter)

    def _select(self, epoch: int) -> torch.Tensor:
        """Returns the random share (epoch 0, annealing) or the share's samples in the epoch's window of groups."""
        if epoch == 0 or is_annealing(epoch, self.epochs, self.delta):
            return self.random_share(epoch)
        groups = self.groups(epoch)
        start, size = self.window(epoch)
        chosen = torch.cat(groups[start : start + size])
        return chosen if chosen.numel() else self.random_share(epoch)[:1]  # the reference also avoids an empty epoch


class InfoBatchPruner(DynamicPruner):
    """InfoBatch: samples scoring below the mean score (well learned) are pruned at prune_ratio, the rest kept;
    kept below-mean samples get loss weight 1 / keep_ratio (= 1 / (1 - prune_ratio) for prune_ratio <= 0.9),
    all others weight 1.

    As in the reference (infobatch.py `InfoBatch.prune`): exactly int(keep_ratio * n_below) of the n_below
    below-mean samples are kept, drawn uniformly without replacement. Epoch 0 trains on the full data (in the
    reference because every score starts equal and none is strictly below the mean), and so does every epoch
    from floor(delta * epochs) on (annealing), all at weight 1.
    """

    def __init__(
        self,
        num_samples: int,
        epochs: int,
        prune_ratio: float = 0.5,
        seed: int = 0,
        *,
        delta: float = DEFAULT_DELTA,
        **base: Any,
    ) -> None:
        super().__init__(num_samples, epochs, prune_ratio, seed, **base)
        self.delta = _check_ratio("delta", delta, closed_top=True)

    def _select(self, epoch: int) -> torch.Tensor:
        """Returns all indices (epoch 0, annealing) or the above-mean ones plus a random keep_ratio share of the
        below-mean ones, whose weights it sets to 1 / keep_ratio."""
        if epoch == 0 or is_annealing(epoch, self.epochs, self.delta):
            return torch.arange(self.num_samples)
        scores = self.scores.double()
        below = scores < scores.mean()
        candidates = torch.nonzero(below).reshape(-1)
        count = int(self.keep_ratio * candidates.numel())
        kept = candidates[torch.randperm(candidates.numel(), generator=self.generator(epoch))[:count]]
        self._weights[kept] = 1.0 / self.keep_ratio
        return torch.cat([torch.nonzero(~below).reshape(-1), kept])


class RandomPruner(DynamicPruner):
    """Random dynamic pruning: a fresh uniform keep_ratio share of the data every epoch (epoch 0 included), all
    at weight 1 (the reference's "Dynamic Random" is SeTa with one group)."""

    def _select(self, epoch: int) -> torch.Tensor:
        """Returns the epoch's random share."""
        return self.random_share(epoch)


PRUNERS: dict[str, type[DynamicPruner]] = {"seta": SeTaPruner, "infobatch": InfoBatchPruner, "random": RandomPruner}

_COMMON = ("initial_score", "rank", "world_size")


def _options_of(cls: type[DynamicPruner]) -> list[str]:
    """Returns the keyword options `cls` accepts beyond num_samples, epochs, prune_ratio and seed."""
    fixed = {"self", "num_samples", "epochs", "prune_ratio", "seed", "base"}
    names = [name for name in inspect.signature(cls.__init__).parameters if name not in fixed]
    return sorted({*names, *_COMMON})


def make_pruner(
    name: str, num_samples: int, epochs: int, prune_ratio: float = 0.5, seed: int = 0, **options: Any
) -> DynamicPruner:
    """Returns the pruner registered as `name` in PRUNERS ("seta", "infobatch", "random"), built with `options`.

    Raises UsageError, with a one-line message saying what to fix, for an unknown name or option or an invalid
    argument (prune_ratio outside [0, 1), epochs < 1, ...).
    """
    cls = PRUNERS.get(str(name).lower())
    if cls is None:
        raise UsageError(f"unknown pruner {name!r}; choose one of {', '.join(sorted(PRUNERS))}")
    accepted = _options_of(cls)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UsageError(f"pruner {name!r} has no option {', '.join(unknown)}; its options: {', '.join(accepted)}")
    return cls(num_samples, epochs, prune_ratio, seed, **options)
