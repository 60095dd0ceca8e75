"""The distillation papers' evaluation protocol (`evaluate_synset` in the MTT and TESLA references' utils.py):
train fresh ConvNets on a (distilled or selected) set only, then measure top-1 on real held-out images.

Reference recipe: ConvNet-3 (width 128, instance norm, ReLU, average pooling; curate.distill.convnet), SGD with
momentum 0.9 and weight decay 0.0005, lr = the distilled learning rate when the method learned one (`args.lr_net =
syn_lr.item()`), else 0.01 (the DC/DSA/DM default `--lr_net`), batch 256 (`--batch_train`) over a reshuffled set
each epoch (the last batch may be smaller), DSA ('color_crop_cutout_flip_scale_rotate', one per-image draw per
batch; curate.distill.dsa) on every training batch, cross-entropy against the labels, or against the soft targets
when the set carries them (TESLA's --teacher_label evaluation: nn.CrossEntropyLoss on probability targets).
Several networks (seeds); the mean and the population standard deviation (np.std, as the references print it).

The reference's schedule, kept as it is: `for ep in range(Epoch + 1)` trains Epoch + 1 passes, and after pass
index Epoch // 2 + 1 it multiplies the lr by 0.1 by building a fresh SGD optimizer (so the momentum restarts).
`EvalConfig.epochs` is the reference's Epoch (`--epoch_eval_train`): 1000 in the papers' tables; the default here is
300, for CPU budgets at IPC <= 10 (a departure the benchmark records in its results).

Relabelled sets (SRe2L/CDA; curate.distill.relabel): given SoftCrops, pass p trains on the crops stored for epoch
p (modulo the stored epochs) with the KL divergence at temperature T to the teacher's logits on them, and no DSA (the
SRe2L students' only augmentation is those crops); the optimizer, lr schedule, batch and seeds stay the protocol's.

Departure: every random choice (initialization, shuffling, augmentation) comes from the seed given, so a network is
reproducible; the reference draws them from the global RNG.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

    from curate.distill.relabel import SoftCrops


@dataclass(frozen=True)
class EvalConfig:
    """The evaluation network's training: epochs (the reference's Epoch; Epoch + 1 passes are run), the lr used
    when the set has no learned one, SGD momentum and weight decay, batch, network width/depth, DSA on or off, and
    the batch of the test pass."""

    epochs: int = 300
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0005
    batch_size: int = 256
    width: int = 128
    depth: int = 3
    dsa: bool = True
    test_batch: int = 512

    @property
    def decay_after(self) -> int:
        """Returns the index of the pass after which the lr drops x0.1 (the reference's lr_schedule)."""
        return self.epochs // 2 + 1


def _check_targets(images: torch.Tensor, targets: torch.Tensor, classes: int) -> None:
    if len(images) == 0:
        raise ValueError("no images to train on")
    if len(targets) != len(images):
        raise ValueError(f"{len(images)} images but {len(targets)} labels")
    if targets.is_floating_point():
        if targets.shape != (len(images), classes):
            raise ValueError(f"soft labels must be N x {classes}, got {tuple(targets.shape)}")
    elif targets.dim() != 1 or int(targets.min()) < 0 or int(targets.max()) >= classes:
        raise ValueError(f"hard labels must be one class index in [0, {classes}) per image")


def _sgd(model: nn.Module, lr: float, config: EvalConfig) -> torch.optim.Optimizer:
    import torch

    return torch.optim.SGD(model.parameters(), lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)


def train_on_set(images: torch.Tensor, labels: torch.Tensor, classes: int, config: EvalConfig = EvalConfig(),
                 seed: int = 0, lr: float | None = None, crops: SoftCrops | None = None) -> nn.Module:
    """Trains a fresh ConvNet (initialized from `seed`) on the images (N x C x S x S) by the reference protocol;
    returns the trained model (in eval mode, on the images' device).

    `labels` are class indices (int64, N) or soft targets (float, N x classes: the loss is the cross-entropy
    against them). `lr` is the set's learned learning rate; None uses config.lr. With `crops` (the set's
    relabelling), every pass trains on its epoch's stored crops against the teacher's logits instead
    (curate.distill.relabel.kd_epoch; no DSA) and the labels are only checked. The caller's global RNG is not
    touched."""
    import torch

    from curate.distill.convnet import ConvNetSpec, convnet
    from curate.distill.experts import sgd_epoch
    from curate.distill.relabel import check_crops, kd_epoch

    _check_targets(images, labels, classes)
    if crops is not None:
        check_crops(crops, images, classes)
    spec = ConvNetSpec(images.shape[1], classes, images.shape[-1], config.width, config.depth)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = convnet(spec).to(images.device)
    rate = config.lr if lr is None else float(lr)
    optimizer = _sgd(model, rate, config)
    generator = torch.Generator().manual_seed(seed)
    labels = labels.to(images.device)
    model.train()
    for index in range(config.epochs + 1):
        if crops is None:
            sgd_epoch(model, optimizer, images, labels, config.batch_size, config.dsa, generator)
        else:
            kd_epoch(model, optimizer, images, crops, index, config.batch_size, generator)
        if index == config.decay_after:
            rate *= 0.1
            optimizer = _sgd(model, rate, config)
    return model.eval()


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 512) -> float:
    """Returns the model's top-1 accuracy (a fraction) on the images, in batches of `batch`."""
    import torch

    device = next(model.parameters()).device
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            logits = model(images[start:start + batch].to(device))
            correct += int((logits.argmax(1).cpu() == labels[start:start + batch].cpu()).sum())
    return correct / len(images)


def evaluate_set(images: torch.Tensor, labels: torch.Tensor, test_images: torch.Tensor, test_labels: torch.Tensor,
                 classes: int, config: EvalConfig = EvalConfig(), seeds: Sequence[int] = (0, 1, 2),
                 lr: float | None = None, crops: SoftCrops | None = None) -> dict:
    """Trains one network per seed on (images, labels) (hard or soft labels, or the soft crops `crops`: see
    train_on_set) and tests each on the held-out (test_images, test_labels); returns a dict: seeds, accuracies
    (one per seed, fractions), mean, std (population, as the references report it), epochs (config.epochs;
    epochs + 1 passes ran), lr (the one used), soft (whether the labels were soft), relabelled (whether soft crops
    trained), images (the set's size) and seconds (training and testing, all seeds)."""
    if not seeds:
        raise ValueError("evaluate_set needs at least one seed")
    began = time.perf_counter()
    accuracies = []
    for seed in seeds:
        model = train_on_set(images, labels, classes, config, seed, lr, crops)
        accuracies.append(accuracy(model, test_images, test_labels, config.test_batch))
    return dict(seeds=list(seeds), accuracies=accuracies, mean=statistics.fmean(accuracies),
                std=statistics.pstdev(accuracies), epochs=config.epochs,
                lr=config.lr if lr is None else float(lr), soft=bool(labels.is_floating_point()),
                relabelled=crops is not None, images=len(images), seconds=time.perf_counter() - began)
