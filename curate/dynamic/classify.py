"""A small image-classification trainer for labelled data, driven by a dynamic pruner (or none: the full data).

Labelled data comes in `curate evaluate`'s held-out formats (a Parquet file of jpg + label, or a folder of class
folders). The model is a small VGG-style CNN (BatchNorm, global pooling), trained with SGD + Nesterov momentum,
weight decay, random crops with 4 px padding and horizontal flips: the CIFAR recipe of the SeTa and InfoBatch
papers at a size 2 CPU cores can run. The step-based schedule (linear warmup over the first epoch, then cosine)
is rebuilt per epoch: it is laid on the full-data timeline and each epoch's batches, however few the pruner
kept, advance through that epoch's share of it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

if TYPE_CHECKING:
    import torch

    from curate.dynamic.base import DynamicPruner


@dataclass(frozen=True)
class ClassifyConfig:
    """How to train the classifier: epochs, batch, SGD settings, seed."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    width: int = 32
    pad: int = 4  # random-crop padding, in pixels
    flip: bool = True  # random horizontal flips (off where a flip changes the class, as for digits)
    seed: int = 0
    progress: bool = False


@dataclass
class ClassifyResult:
    """What training did: samples forwarded, steps, mean loss per epoch, seconds, and the pruner's saved share."""

    samples_forwarded: int = 0
    steps: int = 0
    epoch_losses: list[float] = field(default_factory=list)
    saved_fraction: float = 0.0
    seconds: float = 0.0


def load_labelled(path: str | Path, image_size: int,
                  classnames: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Returns (standardized float images, int64 labels, class names) of a labelled set in a held-out format.

    With `classnames` (a training set's), labels index into that list; raises UsageError for a class it lacks.
    """
    import torch

    from curate.errors import UsageError
    from curate.models.heldout import load_heldout

    held = load_heldout(path, image_size)
    names = list(held.classnames)
    if classnames is not None:
        missing = sorted(set(names) - set(classnames))
        if missing:
            raise UsageError(f"{path} has classes the training set lacks: {', '.join(missing[:5])}")
        position = {name: i for i, name in enumerate(classnames)}
        held.labels = np.array([position[names[label]] for label in held.labels])
        names = list(classnames)
    return to_tensor(held.pixels), torch.as_tensor(held.labels, dtype=torch.long), names


def small_cnn(classes: int, width: int = 32) -> torch.nn.Module:
    """Returns a 5-conv CNN (widths w, w, 2w, 2w, 4w with BatchNorm and ReLU, two 2x poolings, global average
    pooling) with a linear head over `classes`."""
    from torch import nn

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(*block(3, width), *block(width, width), nn.MaxPool2d(2), *block(width, 2 * width),
                         *block(2 * width, 2 * width), nn.MaxPool2d(2), *block(2 * width, 4 * width),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, classes))


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """Returns uint8 N x S x S x 3 pixels as float N x 3 x S x S, per-channel standardized by the set's own
    statistics (so train and test use their own; both are drawn from the same distribution)."""
    import torch

    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div_(255)
    mean, std = x.mean(dim=(0, 2, 3), keepdim=True), x.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return (x - mean) / std


def augment(images: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Returns random `pad`-px-padded crops of the images, each flipped horizontally with probability 1/2 when
    `flip`."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(n, 3, h, w + 2 * pad)
    crops = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(n, 3, h, w)
    crops = crops.gather(3, cols)
    flipped = torch.rand(n, generator=generator) < 0.5
    if flip:
        crops[flipped] = crops[flipped].flip(3)
    return crops


def schedule(progress: float, epochs: int, base: float) -> float:
    """Returns the learning rate at `progress` epochs into training: linear warmup over the first epoch, then
    cosine decay to 0 at `epochs`."""
    if progress < 1:
        return base * max(progress, 1e-3)
    return 0.5 * (1 + math.cos(math.pi * (progress - 1) / max(1, epochs - 1))) * base


def train_classifier(images: torch.Tensor, labels: torch.Tensor, classes: int, config: ClassifyConfig,
                     pruner: DynamicPruner | None = None) -> tuple[torch.nn.Module, ClassifyResult]:
    """Trains a small_cnn on the images for config.epochs epochs over the pruner's selections (all the data,
    shuffled, without one); returns the model (in eval mode) and its ClassifyResult."""
    import torch
    import torch.nn.functional as F

    from curate.dynamic import make_pruner

    with torch.random.fork_rng(devices=[]):  # seeded initial weights without touching the caller's RNG
        torch.manual_seed(config.seed)
        model = small_cnn(classes, config.width)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=True,
                                weight_decay=config.weight_decay)
    pruner = pruner or make_pruner("random", len(images), config.epochs, 0.0, config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    result, start = ClassifyResult(), time.perf_counter()
    model.train()
    for epoch in tqdm(range(config.epochs), desc="classify", unit="epoch", disable=not config.progress):
        pruner.set_epoch(epoch)
        batches, total_loss = list(pruner.batch_sampler(config.batch_size)), 0.0
        for step, batch in enumerate(batches):
            indices = torch.tensor(batch, dtype=torch.long)
            for group in optimizer.param_groups:
                group["lr"] = schedule(epoch + step / len(batches), config.epochs, config.lr)
            batch_images = augment(images[indices], generator, config.pad, config.flip)
            losses = F.cross_entropy(model(batch_images), labels[indices], reduction="none")
            optimizer.zero_grad(set_to_none=True)
            (losses * pruner.weights(indices)).mean().backward()
            optimizer.step()
            pruner.update(indices, losses.detach())
            total_loss += float(losses.detach().sum())
            result.samples_forwarded += len(indices)
            result.steps += 1
        result.epoch_losses.append(total_loss / max(1, sum(len(b) for b in batches)))
    model.eval()
    result.saved_fraction, result.seconds = pruner.stats().saved_fraction, time.perf_counter() - start
    return model, result


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 512) -> float:
    """Returns the model's top-1 accuracy on the images."""
    import torch

    with torch.inference_mode():
        predictions = torch.cat([model(images[i:i + batch]).argmax(1) for i in range(0, len(images), batch)])
    return float((predictions == labels).float().mean())
