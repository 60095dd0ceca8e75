"""DDP helpers for the dynamic pruners: which rank this is, each rank's share of an epoch, and gathering the
losses every rank reported so that all ranks hold the same scores."""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from curate.errors import UsageError


def is_distributed() -> bool:
    """Returns True when torch.distributed is available and its default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Returns `(rank, world_size)`: the explicit pair when given, else torch.distributed's when initialised,
    else `(0, 1)`. Raises UsageError for half a pair or a rank outside [0, world_size)."""
    if (rank is None) != (world_size is None):
        raise UsageError("give both rank and world_size, or neither (then they come from torch.distributed)")
    if rank is None or world_size is None:
        return (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise UsageError(f"world_size must be an integer >= 1, got {world_size!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise UsageError(f"rank must be an integer in [0, {world_size}), got {rank!r}")
    return rank, world_size


def per_rank_count(total: int, world_size: int) -> int:
    """Returns how many indices each rank gets from `total`: ceil(total / world_size), as DistributedSampler."""
    return math.ceil(total / world_size)


def shard(order: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Returns this rank's share of `order` (the epoch's selection in its shuffled order, the same on every rank).

    Like torch's DistributedSampler without drop_last: `order` is padded by repeating it from its start until its
    length is a multiple of `world_size`, then rank r takes positions r, r + world_size, ... So all ranks get the
    same count and, apart from the at most world_size - 1 padding repeats, disjoint indices.
    """
    if world_size == 1 or order.numel() == 0:
        return order
    total = per_rank_count(order.numel(), world_size) * world_size
    if total > order.numel():
        order = order.repeat(math.ceil(total / order.numel()))[:total]
    return order[rank:total:world_size]


def _comm_device() -> torch.device:
    """Returns the device collectives run on: CUDA for a NCCL-only group, else the CPU (gloo, mpi)."""
    backend = str(dist.get_backend()).lower()
    if "nccl" in backend and "gloo" not in backend and "mpi" not in backend:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _gather_padded(tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Returns the concatenation, in rank order, of every rank's `tensor` (of length sizes[rank]): all_gather
    needs equal shapes, so each is zero-padded to the longest and trimmed after."""
    longest = max(sizes)
    padded = torch.zeros(longest, dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.numel()] = tensor
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])


@torch.no_grad()
def gather_updates(indices: torch.Tensor, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns every rank's `(indices, losses)` concatenated in rank order (int64 and float32, on the CPU) when
    torch.distributed is initialised, else the inputs unchanged. Ranks may report different counts. Indices
    travel as int64 (the reference packs them into the float loss tensor, which loses indices above 2**24)."""
    if not is_distributed():
        return indices, losses
    device = _comm_device()
    count = torch.tensor([indices.numel()], dtype=torch.int64, device=device)
    counts = [torch.empty_like(count) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    if max(sizes) == 0:
        return indices, losses
    all_indices = _gather_padded(indices.to(device, torch.int64), sizes)
    all_losses = _gather_padded(losses.to(device, torch.float32), sizes)
    return all_indices.cpu(), all_losses.cpu()
