"""The copy descriptor's training objective (SSCD, Pizzi et al. 2022): InfoNCE over two augmented views of each
image, plus the KoLeo differential-entropy regularizer that spreads descriptors apart.

As in SSCD, the regularizer measures each descriptor's distance to its nearest *negative*: the other view of the
same image is no neighbour (pushing it away would fight InfoNCE, which pulls it close).
"""

from __future__ import annotations

import torch


def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Returns the symmetric InfoNCE loss of two batches of unit descriptors: row i of z1 and of z2 are views of
    one image (the positive pair); every other view in the 2B batch is a negative. A scalar tensor: the mean over
    the 2B views of -log softmax of the positive's similarity / temperature."""
    z = torch.cat([z1, z2])
    self_pairs = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(self_pairs, float("-inf"))  # a view is not its own pair
    batch = len(z1)
    targets = torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)]).to(z.device)
    return torch.nn.functional.cross_entropy(logits, targets)


def koleo(z: torch.Tensor, instances: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """Returns the KoLeo regularizer of a batch of descriptors: minus the mean log distance of each one to its
    nearest other descriptor in the batch (Sablayrolles et al. 2019; SSCD's entropy term). With `instances` (one
    id per row), rows of the same id are not neighbours: as in SSCD, the nearest is the nearest other image's view,
    so the term never pushes two views of one image apart."""
    if instances is None:
        instances = torch.arange(len(z), device=z.device)
    same = instances[:, None].to(z.device) == instances[None, :].to(z.device)
    distances = torch.cdist(z, z).masked_fill(same, float("inf"))
    return -torch.log(distances.min(dim=1).values + eps).mean()
