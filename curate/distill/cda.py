"""Recover (SRe2L, CDA): synthesize images from noise that a frozen batch-norm teacher (curate.distill.teacher)
classifies as their class and whose features match, at every BN layer, the statistics the layer recorded on the
real data:

    loss = CE(teacher(aug(x)), y) + r_bn * sum_l w_l (||mu_l - running_mean_l||_2 + ||var_l - running_var_l||_2)

with w_1 = first_bn_multiplier (10) for the first BN layer and 1 after, mu_l and var_l (biased) per channel over
the batch and the positions of the layer's input (bn_matching_loss). Adam (betas 0.5, 0.9) at a cosine lr from
`lr` to 0 without warmup; after every step each pixel is clipped to its channel's valid range [-mean/std,
(1 - mean)/std]. aug: a RandomResizedCrop back to the image's size with scale (lower, 1) and ratio (3/4, 4/3),
bilinear; a horizontal flip with probability 1/2; a circular roll by (0..jitter, 0..jitter) pixels. CDA's
curriculum lowers the crop's lower scale bound from 1.0 (the whole image: easy) to min_scale (0.08: hard) by
milestone x iterations (crop_lower_bound); SRe2L (curriculum 'none') keeps it at min_scale. The last iterate is
kept (the reference stores the last inputs too). Images start as N(0, 1) noise in the normalized space.

Reference: VILA-Lab/SRe2L, CDA/recover_cda_*.py and utils.py (BNFeatureHook, lr_cosine_policy, clip): lr 0.25 and
r_bn 0.01 as its ImageNet-1K command (and SRe2L's CIFAR one), cosine curriculum with milestone 1 as every CDA
command, 1000 iterations as SRe2L's small-dataset recipe (CDA's commands use 4000).

Slices and independence. The reference recovers one IPC index at a time, in batches of 100 classes whose images
share the batch's BN statistics. A slice here is that unit: one IPC index for a group of classes (the classes in
order, `class_batch` at a time; 100 as the reference), recovered alone, so the set does not depend on how slices
are spread over tasks or workers. Departure: each image draws its noise and its augmentations (crop, flip, roll)
from its own generator seeded by (seed, class, IPC index); the reference draws one crop, flip and roll per batch
from the global RNG.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import torch
    from torch import nn

CURRICULA = ("cosine", "linear", "step", "none")
RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's aspect ratio range
ATTEMPTS = 10  # RandomResizedCrop's tries before it falls back to a center crop
DRAWS = 2 * ATTEMPTS + 5  # uniforms per image per iteration: attempts, crop position, flip, roll


@dataclass(frozen=True)
class CDAConfig:
    """The recovery's settings (defaults: the reference's, see the module docstring)."""

    iterations: int = 1000
    lr: float = 0.25
    betas: tuple[float, float] = (0.5, 0.9)
    r_bn: float = 0.01
    first_bn_multiplier: float = 10.0
    jitter: int = 4
    flip: bool = True
    curriculum: str = "cosine"
    milestone: float = 1.0
    min_scale: float = 0.08
    class_batch: int = 100

    def check(self) -> None:
        """Raises ValueError (naming the command-line flag) for settings no recovery can run with."""
        if self.curriculum not in CURRICULA:
            raise ValueError(f"unknown --curriculum {self.curriculum!r}; choose one of {', '.join(CURRICULA)}")
        if not 0 < self.milestone <= 1:
            raise ValueError(f"--milestone must be in (0, 1], got {self.milestone}")
        if not 0 < self.min_scale <= 1:
            raise ValueError(f"--min-scale must be in (0, 1], got {self.min_scale}")
        for flag, value in (("iterations", self.iterations), ("class-batch", self.class_batch)):
            if value < 1:
                raise ValueError(f"--{flag} must be at least 1, got {value}")
        if not self.lr > 0:
            raise ValueError(f"--recover-lr must be positive, got {self.lr}")
        for flag, value in (("r-bn", self.r_bn), ("first-bn-multiplier", self.first_bn_multiplier),
                            ("jitter", self.jitter)):
            if not value >= 0:
                raise ValueError(f"--{flag} must be at least 0, got {value}")


class View(NamedTuple):
    """One image's augmentation at one iteration: the crop box (top, left, height, width), the flip, the roll."""

    top: int
    left: int
    height: int
    width: int
    flip: bool
    down: int
    right: int


@dataclass
class Recovered:
    """A recovered slice: its images (normalized, clipped, on the CPU), the loss of every iteration (before that
    iteration's step) and the seconds it took."""

    images: torch.Tensor
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def crop_lower_bound(iteration: int, iterations: int, curriculum: str, milestone: float = 1.0,
                     min_scale: float = 0.08) -> float:
    """Returns the RandomResizedCrop lower scale bound at `iteration` (0-based) of `iterations`: 1.0 at the start
    falling to min_scale at milestone x iterations ('step': 1.0 until then; 'linear', 'cosine': that curve), then
    min_scale; always min_scale for 'none' (SRe2L)."""
    if curriculum not in CURRICULA:
        raise ValueError(f"unknown curriculum {curriculum!r}; choose one of {', '.join(CURRICULA)}")
    end = milestone * iterations
    if curriculum == "none" or iteration >= end:
        return min_scale
    if curriculum == "step":
        return 1.0
    done = iteration / end
    fall = 1 - done if curriculum == "linear" else (1 + math.cos(math.pi * done)) / 2
    return min_scale + (1.0 - min_scale) * fall


def cosine_lr(base: float, iteration: int, iterations: int) -> float:
    """Returns the reference's lr_cosine_policy without warmup: base x (1 + cos(pi x iteration / iterations)) / 2."""
    return 0.5 * (1 + math.cos(math.pi * iteration / iterations)) * base


def image_generator(seed: int, cls: int, ipc_index: int) -> torch.Generator:
    """Returns the generator of one image's noise and augmentations, seeded by (seed, class, IPC index)."""
    import numpy as np
    import torch

    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 2, cls, ipc_index]).generate_state(1)[0]))


def draw_view(generator: torch.Generator, size: int, lower: float, jitter: int, flip: bool) -> View:
    """Returns one image's augmentation drawn from DRAWS uniforms of `generator` (as many whatever the settings):
    torchvision's RandomResizedCrop box for scale (lower, 1) on a size x size image, a flip with probability 1/2
    (when `flip`) and a roll by 0..jitter pixels down and right."""
    import torch

    u = torch.rand(DRAWS, generator=generator, dtype=torch.float64).tolist()
    area, (low_ratio, high_ratio) = size * size, (math.log(RATIO[0]), math.log(RATIO[1]))
    height = width = size
    for attempt in range(ATTEMPTS):
        target = area * (lower + (1.0 - lower) * u[2 * attempt])
        ratio = math.exp(low_ratio + (high_ratio - low_ratio) * u[2 * attempt + 1])
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= size and 0 < h <= size:
            height, width = h, w
            break
    top = min(int(u[-5] * (size - height + 1)), size - height)  # (a square image's fallback is the whole image)
    left = min(int(u[-4] * (size - width + 1)), size - width)
    down, right = (min(int(v * (jitter + 1)), jitter) for v in (u[-2], u[-1]))
    return View(top, left, height, width, flip and u[-3] < 0.5, down, right)


def augment(x: torch.Tensor, views: Sequence[View]) -> torch.Tensor:
    """Returns the N x C x S x S images each cropped to its view's box and resized back (bilinear, as a crop then
    a resize: samples stay inside the box), flipped when its view says so, then rolled circularly by (down,
    right) pixels; differentiable w.r.t. x."""
    import torch
    import torch.nn.functional as F

    from curate.distill.teacher import take_pixels

    size = x.shape[-1]
    box = torch.tensor([[v.top, v.left, v.height, v.width] for v in views], dtype=x.dtype)
    centres = torch.arange(size, dtype=x.dtype) + 0.5

    def sources(start: torch.Tensor, extent: torch.Tensor) -> torch.Tensor:  # pixel coordinates, N x S
        at = start[:, None] + centres[None, :] * extent[:, None] / size - 0.5
        return torch.minimum(torch.maximum(at, start[:, None]), (start + extent - 1)[:, None])

    rows, cols = sources(box[:, 0], box[:, 2]), sources(box[:, 1], box[:, 3])
    cols = torch.where(torch.tensor([v.flip for v in views])[:, None], cols.flip(1), cols)
    n = len(views)
    grid = torch.stack([cols[:, None, :].expand(n, size, size), rows[:, :, None].expand(n, size, size)], dim=-1)
    cropped = F.grid_sample(x, ((2 * grid + 1) / size - 1).to(x.device), mode="bilinear", align_corners=False)
    shifts = torch.tensor([[v.down, v.right] for v in views])
    positions = torch.arange(size)
    return take_pixels(cropped, (positions - shifts[:, :1]) % size, (positions - shifts[:, 1:]) % size)


def bn_matching_loss(model: nn.Module, images: torch.Tensor,
                     first_bn_multiplier: float = 10.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (model(images), the BN-matching loss): the sum over the model's BatchNorm2d layers, in
    model.modules() order, of w_l (||mu_l - running_mean_l||_2 + ||var_l - running_var_l||_2), mu_l and var_l
    (biased) being the per-channel mean and variance of the layer's input over the batch and positions, w_1 =
    first_bn_multiplier and w_l = 1 after. Raises ValueError for a model without BatchNorm2d layers."""
    import torch
    from torch import nn

    layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not layers:
        raise ValueError("the teacher has no BatchNorm2d layer to match")
    terms: dict[nn.Module, torch.Tensor] = {}

    def record(module: nn.BatchNorm2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        x = inputs[0]
        mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), correction=0)
        terms[module] = (torch.linalg.vector_norm(mean - module.running_mean)
                         + torch.linalg.vector_norm(var - module.running_var))

    handles = [layer.register_forward_hook(record) for layer in layers]
    try:
        logits = model(images)
    finally:
        for handle in handles:
            handle.remove()
    missed = [i for i, layer in enumerate(layers) if layer not in terms]
    if missed:
        raise ValueError(f"BatchNorm2d layer {missed[0]} of the teacher did not run in its forward pass")
    weights = [first_bn_multiplier] + [1.0] * (len(layers) - 1)
    return logits, torch.stack([w * terms[layer] for w, layer in zip(weights, layers, strict=True)]).sum()


def recover_slice(teacher: nn.Module, classes: Sequence[int], ipc_index: int, image_size: int,
                  mean: Sequence[float], std: Sequence[float], config: CDAConfig, seed: int) -> Recovered:
    """Recovers the images of IPC index `ipc_index` of `classes` together (sharing BN statistics), each from its
    own generator (image_generator); returns the Recovered slice, images in the order of `classes`. The teacher
    (frozen here: eval mode, no parameter gradients) runs on its own device; mean and std are the normalization's,
    per channel."""
    import torch
    import torch.nn.functional as F

    began = time.perf_counter()
    teacher.eval().requires_grad_(False)
    device = next(teacher.parameters()).device
    generators = [image_generator(seed, c, ipc_index) for c in classes]
    channels = len(mean)
    x = torch.stack([torch.randn(channels, image_size, image_size, generator=g) for g in generators])
    x = x.to(device).requires_grad_(True)
    targets = torch.tensor(list(classes), device=device)
    m, s = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
    low, high = (-m / s).to(device), ((1 - m) / s).to(device)
    optimizer = torch.optim.Adam([x], lr=config.lr, betas=config.betas, eps=1e-8)
    losses = []
    for iteration in range(config.iterations):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(config.lr, iteration, config.iterations)
        lower = crop_lower_bound(iteration, config.iterations, config.curriculum, config.milestone, config.min_scale)
        views = [draw_view(g, image_size, lower, config.jitter, config.flip) for g in generators]
        logits, matching = bn_matching_loss(teacher, augment(x, views), config.first_bn_multiplier)
        loss = F.cross_entropy(logits, targets) + config.r_bn * matching
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            x.copy_(torch.maximum(torch.minimum(x, high), low))
        losses.append(float(loss.detach()))
    return Recovered(x.detach().cpu(), losses, time.perf_counter() - began)
