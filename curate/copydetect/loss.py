"""The copy descriptor's training objective (SSCD, Pizzi et al. 2022): InfoNCE over two augmented views of each
image, plus the KoLeo differential-entropy regularizer that spreads descriptors apart."""

from __future__ import annotations

import torch


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Returns the symmetric InfoNCE loss of two batches of unit descriptors: row i of z1 and of z2 are views of
    one image (the positive pair); every other view in the 2B batch is a negative."""
    z = torch.cat([z1, z2])
    self_pairs = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(self_pairs, float("-inf"))  # a view is not its own pair
    batch = len(z1)
    targets = torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)]).to(z.device)
    return torch.nn.functional.cross_entropy(logits, targets)


def koleo(z: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Returns the KoLeo regularizer of a batch of descriptors: minus the mean log distance of each one to its
    nearest other descriptor in the batch (Sablayrolles et al. 2019; SSCD's entropy term)."""
    self_pairs = torch.eye(len(z), dtype=torch.bool, device=z.device)
    distances = torch.cdist(z, z).masked_fill(self_pairs, float("inf"))
    return -torch.log(distances.min(dim=1).values + eps).mean()
