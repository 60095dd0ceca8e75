"""The common machinery of the dynamic pruners: a Sampler over dataset indices that picks a subset each epoch
from per-sample scores (each sample's latest loss), shards it across DDP ranks, and counts what was skipped."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, Dataset, Sampler

from curate.dynamic.distributed import gather_updates, per_rank_count, resolve_rank, shard
from curate.errors import UsageError

# Both references start every score at 3.0: NUS-HPC-AI-Lab/InfoBatch infobatch/infobatch.py and mrazhou/SeTa
# seta.py use `torch.ones(N) * 3` (InfoBatch's older research/infobatch.py used 1.0). Only ties matter at first.
INITIAL_SCORE = 3.0
MIN_KEEP_RATIO = 0.1  # both references clamp the keep ratio to [0.1, 1]

_SELECT, _SHUFFLE = 0, 1  # independent random streams per epoch


@dataclass(frozen=True)
class PruningStats:
    """What the pruner selected so far: per epoch (in epoch order) and in total.

    `forwarded` counts the epoch's global selection and `skipped` is num_samples minus it; DDP padding repeats
    (see `shard`) are not counted. `saved_fraction` = total_skipped / (num_samples * number of epochs selected).
    """

    num_samples: int
    epochs: list[int]
    forwarded: list[int]
    skipped: list[int]
    total_forwarded: int
    total_skipped: int
    saved_fraction: float


def _check_int(name: str, value: Any, minimum: int) -> int:
    """Returns `value` when it is an integer >= minimum; raises UsageError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise UsageError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_ratio(name: str, value: Any, *, closed_top: bool = False) -> float:
    """Returns `value` as a float when it lies in [0, 1) (or [0, 1] with closed_top); raises UsageError otherwise."""
    top = "1]" if closed_top else "1)"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UsageError(f"{name} must be a number in [0, {top}, got {value!r}")
    if not (0 <= value <= 1 if closed_top else 0 <= value < 1):
        raise UsageError(f"{name} must be in [0, {top}, got {value!r}")
    return float(value)


class IndexedDataset(Dataset):
    """Wraps a map-style dataset so item i is `(i, dataset[i])`: the training loop then knows which dataset
    indices a batch holds, to report their losses with `pruner.update(indices, losses)`."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        """Returns the wrapped dataset's length."""
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[int, Any]:
        """Returns `(index, dataset[index])`."""
        return index, self.dataset[index]


class DynamicPruner(Sampler[int]):
    """Base class of the dynamic pruners: a `Sampler[int]` over dataset indices [0, num_samples).

    Per epoch: call `set_epoch(epoch)`, iterate (yields this rank's share of the epoch's selection, shuffled),
    and report per-sample losses with `update(indices, losses)`; scale them with `weights(indices)`. The
    selection is computed once per epoch, on first use after `set_epoch`, from (seed, epoch) and the scores
    at that moment, so it is reproducible and, with the scores gathered by `update`, the same on every rank.
    Randomness comes only from the pruner's own torch.Generator; the global RNGs are never read or seeded.
    Without torch.distributed, `rank`/`world_size` shard as DistributedSampler would (they are taken from
    torch.distributed when not given); `update` gathers across ranks whenever torch.distributed is initialised.
    """

    def __init__(
        self,
        num_samples: int,
        epochs: int,
        prune_ratio: float = 0.5,
        seed: int = 0,
        *,
        initial_score: float = INITIAL_SCORE,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        self.num_samples = _check_int("num_samples", num_samples, 1)
        self.epochs = _check_int("epochs", epochs, 1)
        self.prune_ratio = _check_ratio("prune_ratio", prune_ratio)
        self.seed = _check_int("seed", seed, 0)
        if isinstance(initial_score, bool) or not isinstance(initial_score, int | float):
            raise UsageError(f"initial_score must be a number, got {initial_score!r}")
        resolve_rank(rank, world_size)  # validates an explicit pair now
        self._rank, self._world_size = rank, world_size
        self.scores = torch.full((self.num_samples,), float(initial_score), dtype=torch.float32)
        self._weights = torch.ones(self.num_samples, dtype=torch.float32)
        self._generator = torch.Generator()
        self._epoch = 0
        self._selection: torch.Tensor | None = None
        self._forwarded: dict[int, int] = {}

    # --- per-epoch selection -------------------------------------------------------------------------------

    @property
    def keep_ratio(self) -> float:
        """Returns 1 - prune_ratio, floored at 0.1 as in both references."""
        return min(1.0, max(MIN_KEEP_RATIO, 1.0 - self.prune_ratio))

    @property
    def epoch(self) -> int:
        """Returns the epoch set by the last `set_epoch` (0 before any)."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Makes `epoch` the current epoch; its selection is computed on next use. Returns None."""
        self._epoch = _check_int("epoch", epoch, 0)
        self._selection = None

    def _select(self, epoch: int) -> torch.Tensor:
        """Returns the epoch's selected dataset indices (int64, unique); may set `self._weights`."""
        raise NotImplementedError

    def selection(self) -> torch.Tensor:
        """Returns the current epoch's global selection (all ranks together): sorted unique int64 indices."""
        if self._selection is None:
            self._weights.fill_(1.0)
            chosen = torch.unique(self._select(self._epoch))
            self._selection = chosen
            self._forwarded[self._epoch] = chosen.numel()
        return self._selection.clone()

    def generator(self, epoch: int, stream: int = _SELECT) -> torch.Generator:
        """Returns the pruner's generator re-seeded from (seed, epoch, stream); identical on every rank."""
        state = np.random.SeedSequence([self.seed, epoch, stream]).generate_state(1, dtype=np.uint64)[0]
        return self._generator.manual_seed(int(state) & (2**63 - 1))

    def random_share(self, epoch: int) -> torch.Tensor:
        """Returns floor(keep_ratio * num_samples) (at least 1) distinct indices drawn uniformly for `epoch`, in
        random order. (The references use int(N * keep_ratio); a 1e-9 slack keeps float error from losing one.)"""
        count = max(1, math.floor(self.keep_ratio * self.num_samples + 1e-9))
        return torch.randperm(self.num_samples, generator=self.generator(epoch))[:count]

    # --- Sampler interface ---------------------------------------------------------------------------------

    @property
    def rank(self) -> int:
        """Returns this process's rank (explicit, else torch.distributed's, else 0)."""
        return resolve_rank(self._rank, self._world_size)[0]

    @property
    def world_size(self) -> int:
        """Returns the number of ranks sharing each epoch (explicit, else torch.distributed's, else 1)."""
        return resolve_rank(self._rank, self._world_size)[1]

    def epoch_order(self) -> torch.Tensor:
        """Returns the epoch's global selection in its shuffled order (the same on every rank, before sharding)."""
        chosen = self.selection()
        return chosen[torch.randperm(chosen.numel(), generator=self.generator(self._epoch, _SHUFFLE))]

    def __iter__(self) -> Iterator[int]:
        """Yields this rank's share of the current epoch's selection, in shuffled order."""
        rank, world_size = resolve_rank(self._rank, self._world_size)
        yield from shard(self.epoch_order(), rank, world_size).tolist()

    def __len__(self) -> int:
        """Returns how many indices this rank yields this epoch (selection size / world_size, rounded up)."""
        return per_rank_count(self.selection().numel(), self.world_size)

    def batch_sampler(self, batch_size: int, drop_last: bool = False) -> BatchSampler:
        """Returns a torch BatchSampler over this pruner, for `DataLoader(dataset, batch_sampler=...)`."""
        return BatchSampler(self, _check_int("batch_size", batch_size, 1), drop_last)

    # --- scores and weights --------------------------------------------------------------------------------

    def _as_updates(self, indices: Any, losses: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns `(indices, losses)` as flat CPU int64 / float32 tensors; raises UsageError when malformed."""
        idx = torch.as_tensor(indices).detach()
        if idx.is_floating_point() or idx.is_complex() or idx.dtype == torch.bool:
            raise UsageError(f"indices must be integers (dataset indices), got dtype {idx.dtype}")
        idx = idx.to("cpu", torch.int64).reshape(-1)
        values = torch.as_tensor(losses).detach().to("cpu", torch.float32).reshape(-1)
        if idx.numel() != values.numel():
            raise UsageError(f"update got {idx.numel()} indices but {values.numel()} losses; pass one loss per sample")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.num_samples):
            raise UsageError(f"indices must lie in [0, {self.num_samples}), got {int(idx.min())}..{int(idx.max())}")
        return idx, values

    def update(self, indices: Sequence[int] | torch.Tensor, losses: Sequence[float] | torch.Tensor) -> None:
        """Records per-sample losses (e.g. from a loss with reduction='none') as the samples' scores. Returns None.

        Under torch.distributed every rank's reports are all-gathered first (int64 indices, float32 losses), so
        all ranks hold the same scores; call it on every rank for every batch. For an index reported more than
        once the last report (in rank order) wins. Raises UsageError for non-finite losses.
        """
        idx, values = gather_updates(*self._as_updates(indices, losses))
        if not bool(torch.isfinite(values).all()):
            raise UsageError("update got a non-finite loss (nan or inf); report finite per-sample losses")
        if idx.numel() == 0:
            return
        reversed_idx = idx.flip(0).numpy()
        unique, first = np.unique(reversed_idx, return_index=True)
        last = idx.numel() - 1 - torch.from_numpy(first)
        self.scores[torch.from_numpy(unique)] = values[last]

    def weights(self, indices: Sequence[int] | torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
        """Returns the current epoch's float32 loss weights for `indices` (1 unless the method rescales)."""
        self.selection()
        idx = torch.as_tensor(indices).detach().to("cpu", torch.int64).reshape(-1)
        return self._weights[idx].to(device) if device is not None else self._weights[idx].clone()

    # --- accounting and checkpoints ------------------------------------------------------------------------

    def stats(self) -> PruningStats:
        """Returns per-epoch and total counts of forwarded and skipped samples, measured from the selections made."""
        epochs = sorted(self._forwarded)
        forwarded = [self._forwarded[e] for e in epochs]
        skipped = [self.num_samples - f for f in forwarded]
        seen = self.num_samples * len(epochs)
        saved = sum(skipped) / seen if seen else 0.0
        return PruningStats(self.num_samples, epochs, forwarded, skipped, sum(forwarded), sum(skipped), saved)

    def state_dict(self) -> dict[str, Any]:
        """Returns what resuming needs: the scores, the current epoch and the per-epoch selection counts."""
        return {"scores": self.scores.clone(), "epoch": self._epoch, "forwarded": dict(self._forwarded)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a `state_dict()`; the current epoch's selection is recomputed on next use. Returns None."""
        scores = torch.as_tensor(state["scores"], dtype=torch.float32)
        if scores.shape != self.scores.shape:
            raise UsageError(f"state has {scores.numel()} scores but the pruner has {self.num_samples} samples")
        self.scores = scores.clone()
        self._forwarded = {int(k): int(v) for k, v in state["forwarded"].items()}
        self.set_epoch(int(state["epoch"]))
